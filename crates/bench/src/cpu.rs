//! Where a phase's CPU time went: the service, PostgreSQL, the bench's own
//! client, and everything else on the machine (other builds, kernel threads),
//! from /proc.

use std::collections::HashMap;
use std::time::Duration;

/// `/proc` counts in USER_HZ, which is 100 on every Linux the bench runs on.
const TICKS_PER_SECOND: f64 = 100.0;
/// How many of the other processes to name.
const NAMED_OTHERS: usize = 3;

/// Cumulative CPU ticks at one moment.
#[derive(Debug, Clone)]
pub struct CpuSample {
    machine_busy: u64,
    machine_idle: u64,
    /// Command name and user+system ticks of every process, by pid.
    processes: HashMap<u32, (String, u64)>,
}

/// CPU seconds spent between two samples.
#[derive(Debug, Clone)]
pub struct CpuUsage {
    pub service: f64,
    pub postgres: f64,
    pub bench: f64,
    /// Busy time not spent by the three above, whoever spent it.
    pub other: f64,
    /// The part of `other` that processes spent (all of them, named or
    /// not); the rest is the kernel's own (softirq, steal) and processes
    /// that exited.
    pub other_processes: f64,
    /// The other processes that spent the most, by command name.
    pub top_others: Vec<(String, f64)>,
    pub idle: f64,
}

impl CpuSample {
    /// `None` where /proc cannot be read.
    pub fn take() -> Option<CpuSample> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let fields: Vec<u64> = stat
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .filter_map(|f| f.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal (guest time is in user).
        let (idle, busy) = match fields.as_slice() {
            [user, nice, system, idle, iowait, irq, softirq, steal, ..] => {
                (idle + iowait, user + nice + system + irq + softirq + steal)
            }
            _ => return None,
        };
        let processes = std::fs::read_dir("/proc")
            .ok()?
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter_map(|pid| Some((pid, process_ticks(pid)?)))
            .collect();
        Some(CpuSample {
            machine_busy: busy,
            machine_idle: idle,
            processes,
        })
    }

    /// What was spent from this sample to `later`. A process that exited in
    /// between took its time with it: that time counts as "other".
    pub fn until(&self, later: &CpuSample, service_pid: Option<u32>) -> CpuUsage {
        let secs = |ticks: u64| ticks as f64 / TICKS_PER_SECOND;
        let bench_pid = std::process::id();
        let (mut service, mut postgres, mut bench, mut other_processes) = (0, 0, 0, 0);
        let mut others: HashMap<&str, u64> = HashMap::new();
        for (pid, (name, ticks)) in &later.processes {
            // Kernel workers rename themselves as they go, so a pid is matched
            // by number; a count that went down means the pid was reused.
            let before = self.processes.get(pid).map_or(0, |(_, t)| *t);
            let spent = if *ticks >= before {
                ticks - before
            } else {
                *ticks
            };
            match name.as_str() {
                _ if Some(*pid) == service_pid => service += spent,
                _ if *pid == bench_pid => bench += spent,
                "postgres" => postgres += spent,
                other => {
                    other_processes += spent;
                    *others.entry(other).or_default() += spent;
                }
            }
        }
        let busy = later.machine_busy.saturating_sub(self.machine_busy);
        let mut top_others: Vec<(String, f64)> = others
            .into_iter()
            .filter(|(_, ticks)| *ticks > 0)
            .map(|(name, ticks)| (name.to_owned(), secs(ticks)))
            .collect();
        top_others.sort_by(|a, b| b.1.total_cmp(&a.1));
        top_others.truncate(NAMED_OTHERS);
        CpuUsage {
            service: secs(service),
            postgres: secs(postgres),
            bench: secs(bench),
            other: secs(busy.saturating_sub(service + postgres + bench)),
            other_processes: secs(other_processes),
            top_others,
            idle: secs(later.machine_idle.saturating_sub(self.machine_idle)),
        }
    }

    /// CPU seconds the process `pid` spent from this sample to `later`.
    pub fn pid_secs(&self, later: &CpuSample, pid: u32) -> f64 {
        let before = self.processes.get(&pid).map_or(0, |(_, t)| *t);
        let after = later.processes.get(&pid).map_or(0, |(_, t)| *t);
        after.saturating_sub(before) as f64 / TICKS_PER_SECOND
    }

    /// CPU seconds the processes named `name` (all of them) spent from this
    /// sample to `later`.
    pub fn named_secs(&self, later: &CpuSample, name: &str) -> f64 {
        let ticks: u64 = later
            .processes
            .iter()
            .filter(|(_, (n, _))| n == name)
            .map(|(pid, (_, ticks))| {
                let before = self.processes.get(pid).map_or(0, |(_, t)| *t);
                ticks.saturating_sub(before)
            })
            .sum();
        ticks as f64 / TICKS_PER_SECOND
    }

    /// As [`CpuSample::named_secs`], leaving out the process `except` (one
    /// counted on its own, such as the measured service).
    pub fn named_secs_except(&self, later: &CpuSample, name: &str, except: Option<u32>) -> f64 {
        let excepted = except
            .filter(|pid| later.processes.get(pid).is_some_and(|(n, _)| n == name))
            .map_or(0.0, |pid| self.pid_secs(later, pid));
        (self.named_secs(later, name) - excepted).max(0.0)
    }
}

impl CpuUsage {
    pub fn total(&self) -> f64 {
        self.service + self.postgres + self.bench + self.other + self.idle
    }

    /// Whether processes outside the benchmark took a noticeable share of the
    /// machine, making the figures less trustworthy.
    pub fn disturbed(&self) -> bool {
        self.other > 0.05 * self.total()
    }

    /// CPU time of the service per request.
    pub fn service_per(&self, requests: u64) -> Duration {
        Duration::from_secs_f64(self.service / requests.max(1) as f64)
    }

    /// CPU time of PostgreSQL per request.
    pub fn postgres_per(&self, requests: u64) -> Duration {
        Duration::from_secs_f64(self.postgres / requests.max(1) as f64)
    }
}

/// The command name and user+system ticks (all threads) of a process.
fn process_ticks(pid: u32) -> Option<(String, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The name is in parentheses and may hold spaces: fields follow the last `)`.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat[open + 1..close].to_owned();
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // Counting from the state (field 3 of the whole line): utime is 14, stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((name, utime + stime))
}
