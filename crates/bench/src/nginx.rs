//! nginx as the trivial upstream every proxy forwards to, as the reference
//! proxy (`proxy_pass`), and as the reference file server (files written
//! below [`Nginx::files_root`]): the Debian package, installed with apt-get
//! when missing.

use crate::external::{self, ExternalProcess};
use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// nginx's keep-alive connections to the upstream, per worker.
const UPSTREAM_KEEPALIVE: u32 = 64;

/// nginx in the foreground with three servers: the trivial upstream,
/// answering `200 ok` to every request, the reference proxy in front of it,
/// and a static file server of [`Nginx::files_root`]. Stopped (master and
/// workers) when dropped.
pub struct Nginx {
    _process: ExternalProcess,
    pub upstream: SocketAddr,
    pub proxy: SocketAddr,
    /// Serves the files below `files_root` (`sendfile`, no access log).
    pub files: SocketAddr,
    pub files_root: PathBuf,
    pub version: String,
}

impl Nginx {
    /// Starts it below `dir` and waits until the upstream and the proxy
    /// answer `GET path` (the file server is in the same process).
    pub async fn start(dir: &Path, path: &str) -> Result<Nginx> {
        let binary = external::program_or_apt("nginx", &["nginx-light", "nginx"])?;
        let version = external::version_line(&binary, &["-v"])
            .map(|v| v.trim_start_matches("nginx version: ").to_owned())
            .unwrap_or_default();
        let prefix = dir.join("nginx");
        let files_root = prefix.join("files");
        for dir in [prefix.join("logs"), files_root.clone()] {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let (upstream, proxy, files) = (
            launcher::free_port()?,
            launcher::free_port()?,
            launcher::free_port()?,
        );
        let conf = prefix.join("nginx.conf");
        std::fs::write(&conf, nginx_conf(&prefix, upstream, proxy, files))
            .with_context(|| format!("writing {}", conf.display()))?;
        let mut process = ExternalProcess::spawn(
            "nginx",
            Command::new(&binary)
                .arg("-p")
                .arg(&prefix)
                .arg("-c")
                .arg(&conf)
                .arg("-e")
                .arg(prefix.join("logs/error.log"))
                .args(["-g", "daemon off;"]),
            &prefix.join("logs/stderr.log"),
        )?;
        for addr in [upstream, proxy] {
            process
                .wait_answering(&format!("http://{addr}{path}"))
                .await
                .with_context(|| {
                    let errors = std::fs::read_to_string(prefix.join("logs/error.log"));
                    format!("nginx's error log:\n{}", errors.unwrap_or_default())
                })?;
        }
        Ok(Nginx {
            _process: process,
            upstream,
            proxy,
            files,
            files_root,
            version,
        })
    }
}

/// Two workers (the machine's cores); no access log; everything it writes
/// below `prefix`. Keep-alive requests are not capped, as the gateway's are
/// not.
fn nginx_conf(prefix: &Path, upstream: SocketAddr, proxy: SocketAddr, files: SocketAddr) -> String {
    let prefix = prefix.display();
    format!(
        "worker_processes 2;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    keepalive_requests 100000000;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    upstream trivial {{
        server {upstream};
        keepalive {UPSTREAM_KEEPALIVE};
        keepalive_requests 100000000;
    }}
    server {{
        listen {upstream};
        location / {{
            default_type text/plain;
            return 200 \"ok\";
        }}
    }}
    server {{
        listen {proxy};
        location / {{
            proxy_pass http://trivial;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }}
    }}
    server {{
        listen {files};
        root {prefix}/files;
        sendfile on;
        tcp_nopush on;
        location / {{
            types {{
                image/webp webp;
            }}
            default_type application/octet-stream;
        }}
    }}
}}
"
    )
}
