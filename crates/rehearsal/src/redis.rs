//! A Redis server of one's own: `redis-server` on a free loopback port,
//! without persistence (`--save "" --appendonly no`, as the dev overlay and
//! compose run it), which can be killed and started again on the same port.
//! A restart therefore loses every key, stream and consumer group, as a
//! restarted cache without persistence does.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a start may take before it counts as failed.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `redis-server`; killed when dropped.
pub struct RedisServer {
    binary: PathBuf,
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
    /// Starts so far: each writes its own log, `redis-<n>.log`.
    starts: usize,
}

impl RedisServer {
    /// Starts `redis-server` (from `PATH`, or the path in `REDIS_SERVER`) on
    /// a free port, its working directory and logs in `dir`, and waits until
    /// it answers `PING`.
    pub async fn start(dir: &Path) -> Result<RedisServer> {
        let binary = std::env::var_os("REDIS_SERVER")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("redis-server"));
        let port = launcher::free_port()?.port();
        let mut server = RedisServer {
            binary,
            port,
            dir: dir.to_owned(),
            child: None,
            starts: 0,
        };
        server.start_again().await?;
        Ok(server)
    }

    /// `redis://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL, and waits for the process to be gone: every connection drops
    /// at once, and the data with it.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().context("killing redis-server")?;
            child.wait().context("waiting for redis-server to exit")?;
        }
        Ok(())
    }

    /// Starts the server (again) on its port, empty, and waits until it
    /// answers `PING`.
    pub async fn start_again(&mut self) -> Result<()> {
        if self.child.is_some() {
            bail!("redis-server on port {} is running already", self.port);
        }
        self.starts += 1;
        let log = self.dir.join(format!("redis-{}.log", self.starts));
        let child = launcher::spawn_logged(
            Command::new(&self.binary)
                .current_dir(&self.dir)
                .args(["--port", &self.port.to_string()])
                .args(["--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .args(["--daemonize", "no"]),
            &log,
        )
        .with_context(|| {
            format!(
                "starting {} (install Redis, or set REDIS_SERVER)",
                self.binary.display()
            )
        })?;
        self.child = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                bail!(
                    "redis-server on port {} exited ({status}); its log:\n{}",
                    self.port,
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            if ping(self.port).await {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "redis-server on port {} did not answer PING within {READY_TIMEOUT:?}",
                    self.port
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills the server, leaves it down for `down`, and starts it again on the
    /// same port, empty.
    pub async fn restart(&mut self, down: Duration) -> Result<()> {
        self.kill()?;
        tokio::time::sleep(down).await;
        self.start_again().await
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// Whether a Redis on `port` answers `PING` with `+PONG`.
async fn ping(port: u16) -> bool {
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        stream.write_all(b"PING\r\n").await?;
        let mut reply = [0u8; 7];
        stream.read_exact(&mut reply).await?;
        Ok::<_, std::io::Error>(&reply == b"+PONG\r\n")
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), attempt).await,
        Ok(Ok(true))
    )
}
