//! CPU time from `/proc`: of processes (the workers, the client), of the
//! server's processes, and of the whole machine, over a measured window.

use std::collections::HashMap;

/// Clock ticks per second of `/proc`'s CPU times (`USER_HZ`, 100 on every
/// Linux this runs on).
const TICKS: f64 = 100.0;

/// The fields of `/proc/PID/stat` after the command name, and the name.
fn stat_of(pid: &str) -> Option<(String, Vec<u64>)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text[open + 1..close].to_owned();
    // Field 3 (the state) is the first after the name; it is not a number.
    let fields = text[close + 1..]
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    Some((comm, fields))
}

/// User and system CPU time of process `pid`, in seconds (0 when it is
/// gone).
pub(crate) fn cpu_of(pid: u32) -> f64 {
    // utime and stime are fields 14 and 15: 10 and 11 after the state.
    stat_of(&pid.to_string()).map_or(0.0, |(_, f)| (f[10] + f[11]) as f64 / TICKS)
}

/// CPU time of each `postgres` process on the machine, in seconds, by
/// process id: the server's work, and that of any other client of the
/// server at the time.
fn server_cpu() -> HashMap<u32, f64> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return HashMap::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = name.parse().ok()?;
            let (comm, f) = stat_of(&name)?;
            (comm == "postgres").then(|| (pid, (f[10] + f[11]) as f64 / TICKS))
        })
        .collect()
}

/// Busy and total CPU time of the machine (all cores), in ticks.
pub(crate) fn machine_cpu() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = text.lines().next() else {
        return (0, 0);
    };
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    let total: u64 = f.iter().take(8).sum();
    // idle and iowait are the fourth and fifth.
    let idle = f.get(3).copied().unwrap_or(0) + f.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// The load averages, as `uptime` prints them.
pub(crate) fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// CPU seconds over a window: the worker processes, the server's
/// processes, this process (the client), and the whole machine's busy
/// share.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Cpu {
    pub(super) workers: f64,
    pub(super) server: f64,
    pub(super) client: f64,
    pub(super) busy: f64,
}

/// The counters a [`Cpu`] window is the difference of.
pub(super) struct CpuMark {
    workers: f64,
    server: HashMap<u32, f64>,
    client: f64,
    machine: (u64, u64),
}

impl CpuMark {
    pub(super) fn now(workers: &[u32]) -> Self {
        Self {
            workers: workers.iter().map(|&p| cpu_of(p)).sum(),
            server: server_cpu(),
            client: cpu_of(std::process::id()),
            machine: machine_cpu(),
        }
    }

    pub(super) fn since(&self, before: &Self) -> Cpu {
        let busy = (self.machine.0 - before.machine.0) as f64
            / (self.machine.1 - before.machine.1).max(1) as f64;
        Cpu {
            workers: self.workers - before.workers,
            // Processes that ended meanwhile are left out, with their time
            // before the window; those that began count from zero.
            server: self
                .server
                .iter()
                .map(|(pid, t)| t - before.server.get(pid).copied().unwrap_or(0.0))
                .sum(),
            client: self.client - before.client,
            busy,
        }
    }
}
