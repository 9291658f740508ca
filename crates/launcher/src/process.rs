//! One part running as a child process.

use anyhow::{Context, Result, bail};
use std::ffi::OsStr;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A running part; killed when dropped.
pub struct PartProcess {
    name: String,
    child: Child,
    addr: SocketAddr,
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

impl PartProcess {
    /// Starts `binary serve` in `dir`, listening on `addr`, with `env` added to
    /// this process's environment (`<PREFIX>__HTTP__ADDR` is set from `addr`).
    /// Its output goes to `<dir>/<name>.log`.
    pub fn start(
        name: &str,
        binary: &Path,
        env_prefix: &str,
        addr: SocketAddr,
        env: &[(String, String)],
        dir: &Path,
    ) -> Result<PartProcess> {
        Self::start_with_args(name, binary, env_prefix, addr, env, dir, &[])
    }

    /// As [`PartProcess::start`], with `args` before `serve`: the options every
    /// part binary takes, such as `--config FILE`.
    pub fn start_with_args(
        name: &str,
        binary: &Path,
        env_prefix: &str,
        addr: SocketAddr,
        env: &[(String, String)],
        dir: &Path,
        args: &[&OsStr],
    ) -> Result<PartProcess> {
        if !binary.is_file() {
            bail!(
                "{} not found: build it first (cargo build --bins)",
                binary.display()
            );
        }
        // The child starts in `dir`, where a relative path would not resolve.
        let binary = std::path::absolute(binary)
            .with_context(|| format!("resolving {}", binary.display()))?;
        let log_path = dir.join(format!("{name}.log"));
        let child = spawn_logged(
            Command::new(&binary)
                .args(args)
                .arg("serve")
                .current_dir(dir)
                .env(format!("{env_prefix}__HTTP__ADDR"), addr.to_string())
                .envs(service_kit::ALLOCATOR_ENV)
                .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
            &log_path,
        )?;
        Ok(PartProcess {
            name: name.to_owned(),
            child,
            addr,
            log_path,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Polls `/readyz` until it answers 200; fails early if the process exits.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        service_kit::tls::ensure_provider();
        let http = reqwest::Client::new();
        let url = format!("http://{}/readyz", self.addr);
        let deadline = Instant::now() + timeout;
        loop {
            self.ensure_running()?;
            if let Ok(response) = http.get(&url).send().await
                && response.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} was not ready within {timeout:?}; its log:\n{}",
                    self.name,
                    self.log_tail(30).join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Fails when the process has exited (it should run until stopped).
    pub fn ensure_running(&mut self) -> Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => bail!(
                "{} exited ({status}); its log:\n{}",
                self.name,
                self.log_tail(30).join("\n")
            ),
        }
    }

    /// SIGTERM: the part stops accepting, finishes what it is serving, exits.
    pub fn terminate(&self) -> Result<()> {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .context("running kill")?;
        if !status.success() {
            bail!("kill -TERM {} failed ({status})", self.pid());
        }
        Ok(())
    }

    /// SIGKILL: gone at once, mid-request.
    pub fn kill(&mut self) -> Result<()> {
        self.child.kill().context("killing the process")
    }

    /// Waits for the process to exit, at most `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("{} still running {timeout:?} later", self.name);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
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

    /// The last `n` lines the part logged.
    pub fn log_tail(&self, n: usize) -> Vec<String> {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..]
            .iter()
            .map(|l| (*l).to_owned())
            .collect()
    }

    /// How many lines the part logged in all.
    pub fn log_lines(&self) -> usize {
        std::fs::read_to_string(&self.log_path)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }
}

impl Drop for PartProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns `command` with no input and its output to `log_path`, in a
/// process group of its own: Ctrl-C reaches the launcher, which then stops
/// its children and drops the databases in order.
pub fn spawn_logged(command: &mut Command, log_path: &Path) -> Result<Child> {
    let log = std::fs::File::create(log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    command
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {}", command.get_program().to_string_lossy()))
}

/// A port nobody listens on right now. Another process could take it before
/// the part binds it; on a developer machine that is rare enough.
pub fn free_port() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?)
}
