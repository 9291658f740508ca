//! Services refuse every request that does not carry a valid identity token.

use crate::keys::{PublicKeys, SigningKey};
use crate::token::{HEADER, Identity, IdentityVerifier};
use actix_web::dev::{Payload, ServiceRequest};
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use service_kit::config::{ConfigError, IdentityConfig};
use service_kit::{ApiError, RequestGuard};

impl RequestGuard for IdentityVerifier {
    fn admit(&self, req: &ServiceRequest) -> Result<(), ApiError> {
        let token = req
            .headers()
            .get(HEADER)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ApiError::unauthorized("requests must come through the gateway"))?;
        match self.verify(token) {
            Ok(identity) => {
                req.extensions_mut().insert(identity);
                Ok(())
            }
            Err(reason) => {
                tracing::warn!(%reason, "identity token refused");
                Err(ApiError::unauthorized(
                    "requests must come through the gateway",
                ))
            }
        }
    }
}

/// Handlers take `identity: Identity`; the guard has verified it already.
impl FromRequest for Identity {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Identity, ApiError>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        std::future::ready(
            req.extensions()
                .get::<Identity>()
                .cloned()
                .ok_or_else(|| ApiError::unauthorized("requests must come through the gateway")),
        )
    }
}

/// The verifier a service builds from its `identity.*` settings.
pub fn verifier_from_config(
    audience: &str,
    config: &IdentityConfig,
) -> Result<IdentityVerifier, ConfigError> {
    let (key, pem) = if config.gateway_public_keys.trim().is_empty() {
        let path = &config.gateway_public_key_file;
        let pem = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::invalid(
                "identity.gateway_public_key_file",
                format!(
                    "{path}: {e} (start the gateway first, or set identity.gateway_public_keys)"
                ),
            )
        })?;
        ("identity.gateway_public_key_file", pem)
    } else {
        (
            "identity.gateway_public_keys",
            config.gateway_public_keys.clone(),
        )
    };
    let keys =
        PublicKeys::from_pem_bundle(&pem).map_err(|e| ConfigError::invalid(key, e.to_string()))?;
    Ok(IdentityVerifier::new(audience, keys))
}

/// Loads the gateway's signing key: inline PEM if given, otherwise the key file,
/// created on first start. The public key is written beside it (`.pub.pem`) for
/// services on the same machine.
pub fn signing_key_from_config(inline_pem: &str, file: &str) -> Result<SigningKey, ConfigError> {
    if !inline_pem.trim().is_empty() {
        return SigningKey::from_pem(inline_pem)
            .map_err(|e| ConfigError::invalid("identity.signing_key", e.to_string()));
    }
    let path = std::path::Path::new(file);
    let key = SigningKey::load_or_create(path)
        .map_err(|e| ConfigError::invalid("identity.signing_key_file", e.to_string()))?;
    let public_path = public_key_path(file);
    std::fs::write(&public_path, key.public_pem()).map_err(|e| {
        ConfigError::invalid("identity.signing_key_file", format!("{public_path}: {e}"))
    })?;
    Ok(key)
}

/// `./data/gateway-identity.pem` → `./data/gateway-identity.pub.pem`
pub fn public_key_path(private_key_file: &str) -> String {
    match private_key_file.strip_suffix(".pem") {
        Some(stem) => format!("{stem}.pub.pem"),
        None => format!("{private_key_file}.pub.pem"),
    }
}
