//! Calls to auth-service as the gateway makes them: straight to the service,
//! each with an identity token signed by the gateway's key.

use anyhow::{Context, Result, bail};
use identity::{Identity, IdentitySigner};
use std::net::SocketAddr;
use std::time::Duration;

const AUDIENCE: &str = "auth-service";

pub struct AuthApi {
    http: reqwest::Client,
    base: String,
    signer: IdentitySigner,
}

/// A status and the whole body, read before the request counts as done.
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.body).context("the answer is not JSON")
    }

    /// The JSON body when the status is `expected`, an error naming `what` otherwise.
    pub fn expect(&self, expected: u16, what: &str) -> Result<serde_json::Value> {
        if self.status != expected {
            bail!(
                "{what}: HTTP {} (expected {expected}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            );
        }
        self.json().with_context(|| what.to_owned())
    }
}

impl AuthApi {
    pub fn new(addr: SocketAddr, signer: IdentitySigner) -> Result<AuthApi> {
        let http = reqwest::Client::builder()
            // One keep-alive connection per worker, like a gateway's pool.
            .pool_max_idle_per_host(usize::MAX)
            .timeout(Duration::from_secs(30))
            .no_proxy()
            .build()
            .context("building the HTTP client")?;
        Ok(AuthApi {
            http,
            base: format!("http://{addr}"),
            signer,
        })
    }

    /// POSTs `body` as JSON on behalf of `caller`.
    pub async fn post(
        &self,
        path: &str,
        caller: &Identity,
        body: &serde_json::Value,
    ) -> reqwest::Result<Reply> {
        // Cached by the signer: one signature per caller every half minute.
        let token = self.signer.token_for(caller, AUDIENCE);
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .header(identity::HEADER, token)
            .json(body)
            .send()
            .await?;
        let status = response.status().as_u16();
        let body = response.bytes().await?.to_vec();
        Ok(Reply { status, body })
    }
}
