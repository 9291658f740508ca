//! The auth-service under test, run as a child process the way it is deployed:
//! its own binary, configured by `AUTH__…` variables only.

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What the bench decides about the service's configuration.
pub struct Settings<'a> {
    pub database_url: &'a str,
    pub pool_size: u32,
    /// The gateway's public key, PEM: the service accepts identity tokens it signed.
    pub gateway_public_pem: &'a str,
    /// Working directory; the mail outbox and the service's log go below it.
    pub dir: &'a Path,
}

/// A running auth-service; killed when dropped.
pub struct ServiceProcess {
    child: Child,
    addr: SocketAddr,
    mail_dir: PathBuf,
    log_path: PathBuf,
}

/// Resident memory of a process, in kB (KiB, as /proc reports it).
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    /// Peak resident set size (`VmHWM`).
    pub peak_kb: u64,
    /// Current resident set size (`VmRSS`).
    pub current_kb: u64,
}

impl ServiceProcess {
    pub fn start(binary: &Path, settings: &Settings<'_>) -> Result<ServiceProcess> {
        if !binary.is_file() {
            bail!(
                "{} not found: build it first (cargo build --release -p auth-service)",
                binary.display()
            );
        }
        let addr = free_port()?;
        let mail_dir = settings.dir.join("outbox");
        let log_path = settings.dir.join("auth-service.log");
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let mut root_secret = [0u8; 32];
        getrandom::fill(&mut root_secret).context("reading random bytes")?;
        let child = Command::new(binary)
            .arg("serve")
            .current_dir(settings.dir)
            .env("AUTH__HTTP__ADDR", addr.to_string())
            .env("AUTH__DATABASE__URL", settings.database_url)
            .env("AUTH__DATABASE__POOL_SIZE", settings.pool_size.to_string())
            .env("AUTH__CACHE__URL", "memory://")
            .env(
                "AUTH__IDENTITY__GATEWAY_PUBLIC_KEYS",
                settings.gateway_public_pem,
            )
            .env("AUTH__SECRET__KEY", STANDARD.encode(root_secret))
            .env("AUTH__MAIL__URL", format!("file://{}", mail_dir.display()))
            .env("AUTH__LOG__LEVEL", "warn")
            // Sign-in is setup here, not the thing measured: the bench signs in
            // a few dozen addresses from one IP within seconds.
            .env("AUTH__OTP__RESEND_INTERVAL_SECS", "1")
            .env("AUTH__OTP__HOURLY_LIMIT", "1000")
            .env("AUTH__OTP__IP_HOURLY_LIMIT", "100000")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Its own process group: Ctrl-C reaches the bench, which then stops
            // the service and drops the database in order.
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        Ok(ServiceProcess {
            child,
            addr,
            mail_dir,
            log_path,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn mail_dir(&self) -> &Path {
        &self.mail_dir
    }

    /// Polls `/healthz` until it answers 200; fails early if the process exits.
    pub async fn wait_healthy(&mut self, timeout: Duration) -> Result<()> {
        let http = reqwest::Client::new();
        let url = format!("http://{}/healthz", self.addr);
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "auth-service exited during start-up ({status}); its log:\n{}",
                    self.log_tail(30).join("\n")
                );
            }
            if let Ok(response) = http.get(&url).send().await
                && response.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "auth-service did not become healthy within {timeout:?}; its log:\n{}",
                    self.log_tail(30).join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Fails when the service has exited (it should run until the bench stops it).
    pub fn ensure_running(&mut self) -> Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => bail!(
                "auth-service exited ({status}); its log:\n{}",
                self.log_tail(30).join("\n")
            ),
        }
    }

    /// `VmHWM` and `VmRSS` from `/proc/<pid>/status`.
    pub fn memory(&self) -> Result<Memory> {
        let path = format!("/proc/{}/status", self.pid());
        let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        let field = |name: &str| -> Result<u64> {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
                .with_context(|| format!("no {name} in {path}"))
        };
        Ok(Memory {
            peak_kb: field("VmHWM:")?,
            current_kb: field("VmRSS:")?,
        })
    }

    /// The last `n` lines the service logged (warnings and errors only).
    pub fn log_tail(&self, n: usize) -> Vec<String> {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..]
            .iter()
            .map(|l| (*l).to_owned())
            .collect()
    }

    /// How many lines the service logged in all.
    pub fn log_lines(&self) -> usize {
        std::fs::read_to_string(&self.log_path)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nobody listens on right now. Another process could take it before
/// the service binds it; on a developer machine that is rare enough.
fn free_port() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?)
}
