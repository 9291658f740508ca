//! node-oidc-provider (npm `oidc-provider`) as the reference token endpoint:
//! one static client exchanging client credentials for EdDSA JWT access
//! tokens, served by `assets/oidc-provider-bench.mjs` on 127.0.0.1.
//!
//! The package is installed with the machine's npm into `bench-node` in the
//! tools directory when missing or another version; node and npm come from
//! PATH (apt-get's `nodejs` and `npm` when missing).

use crate::external::{self, ExternalProcess};
use anyhow::{Context, Result, bail};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

const PACKAGE: &str = "oidc-provider";
/// The version the server file is written against (its configuration API).
pub const PACKAGE_VERSION: &str = "9.13.3";
const SERVER: &str = include_str!("../assets/oidc-provider-bench.mjs");
const SERVER_FILE: &str = "oidc-provider-bench.mjs";
/// The name the server's processes give themselves (`process.title`).
pub const PROCESS_NAME: &str = "oidc-bench";

/// node, and the directory holding the package and the server file.
pub struct Installed {
    node: PathBuf,
    dir: PathBuf,
    /// `node --version`.
    pub node_version: String,
}

/// node-oidc-provider in `<tools_dir>/bench-node`, installed first when
/// missing; the server file is written there on every run.
pub fn install(tools_dir: &Path) -> Result<Installed> {
    let node = external::program_or_apt("node", &["nodejs"])?;
    let node_version = external::version_line(&node, &["--version"])
        .context("`node --version` printed nothing")?;
    let dir = tools_dir.join("bench-node");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    if installed_version(&dir).as_deref() != Some(PACKAGE_VERSION) {
        let npm = external::program_or_apt("npm", &["npm"])?;
        external::run_step(
            &format!(
                "installing {PACKAGE}@{PACKAGE_VERSION} from npm into {}",
                dir.display()
            ),
            Command::new(npm)
                .arg("install")
                .arg("--prefix")
                .arg(&dir)
                .args(["--no-audit", "--no-fund", "--loglevel=error"])
                .arg(format!("{PACKAGE}@{PACKAGE_VERSION}")),
        )?;
        match installed_version(&dir) {
            Some(v) if v == PACKAGE_VERSION => {}
            other => bail!(
                "npm installed {PACKAGE} {} in {}, not {PACKAGE_VERSION}",
                other.as_deref().unwrap_or("nothing"),
                dir.display()
            ),
        }
    }
    let server = dir.join(SERVER_FILE);
    std::fs::write(&server, SERVER).with_context(|| format!("writing {}", server.display()))?;
    Ok(Installed {
        node,
        dir,
        node_version,
    })
}

/// `version` of the installed package's package.json.
fn installed_version(dir: &Path) -> Option<String> {
    let manifest = dir.join("node_modules").join(PACKAGE).join("package.json");
    let text = std::fs::read_to_string(manifest).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json["version"].as_str().map(str::to_owned)
}

/// The running provider; stopped (with its workers) when dropped.
pub struct OidcProvider {
    process: ExternalProcess,
    pub addr: SocketAddr,
}

/// The one client the provider knows.
pub struct Client<'a> {
    pub id: &'a str,
    pub secret: &'a str,
    /// Space-separated scopes it may have.
    pub scope: &'a str,
}

impl OidcProvider {
    /// Starts the server with `workers` processes (node:cluster; 1: a single
    /// process, no cluster) and waits until it answers its discovery document.
    pub async fn start(
        installed: &Installed,
        client: &Client<'_>,
        workers: usize,
        dir: &Path,
    ) -> Result<OidcProvider> {
        let addr = launcher::free_port()?;
        let mut process = ExternalProcess::spawn(
            "node-oidc-provider",
            Command::new(&installed.node)
                .arg(installed.dir.join(SERVER_FILE))
                .current_dir(&installed.dir)
                .env("NODE_ENV", "production")
                .env("BENCH_PORT", addr.port().to_string())
                .env("BENCH_WORKERS", workers.to_string())
                .env("BENCH_CLIENT_ID", client.id)
                .env("BENCH_CLIENT_SECRET", client.secret)
                .env("BENCH_SCOPE", client.scope),
            &dir.join(format!("oidc-provider-{workers}.log")),
        )?;
        process
            .wait_answering(&format!("http://{addr}/.well-known/openid-configuration"))
            .await?;
        Ok(OidcProvider { process, addr })
    }

    /// Its token endpoint.
    pub fn token_url(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    pub fn ensure_running(&mut self) -> Result<()> {
        self.process.ensure_running()
    }

    /// The distinct warnings it printed (oidc-provider's `WARNING` lines,
    /// such as an unsupported Node.js release).
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings: Vec<String> = Vec::new();
        for line in self.process.log_tail(100).lines() {
            if line.contains("WARNING") && !warnings.iter().any(|w| w == line) {
                warnings.push(line.to_owned());
            }
        }
        warnings
    }
}
