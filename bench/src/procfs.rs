//! CPU time and memory read from /proc, without `unsafe` (no getrusage): a thread's CPU time from
//! `/proc/thread-self/schedstat` (nanoseconds), a process's from `/proc/self/stat` (clock ticks), and the
//! resident set from `/proc/self/status`.

use std::fs;

/// CPU time (user + system) the calling thread has used, in nanoseconds: the first field of
/// `/proc/thread-self/schedstat`.
pub fn thread_cpu_ns() -> Option<u64> {
    schedstat("/proc/thread-self/schedstat")
}

fn schedstat(path: &str) -> Option<u64> {
    fs::read_to_string(path).ok()?.split_whitespace().next()?.parse().ok()
}

/// CPU time of every live thread of this process whose name (`comm`) starts with one of `prefixes`, in
/// nanoseconds.
pub fn named_threads_cpu_ns(prefixes: &[&str]) -> u64 {
    let Ok(dir) = fs::read_dir("/proc/self/task") else {
        return 0;
    };
    let mut total = 0;
    for entry in dir.flatten() {
        let path = entry.path();
        let comm = fs::read_to_string(path.join("comm")).unwrap_or_default();
        let comm = comm.trim_end();
        if prefixes.iter().any(|p| comm.starts_with(p)) {
            total += schedstat(&path.join("schedstat").to_string_lossy()).unwrap_or(0);
        }
    }
    total
}

/// The resident set size of this process, in bytes (`VmRSS` of `/proc/self/status`).
pub fn rss_bytes() -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// A stopwatch over wall time and the calling thread's CPU time.
#[derive(Debug, Clone, Copy)]
pub struct Stopwatch {
    wall: std::time::Instant,
    cpu: Option<u64>,
}

impl Stopwatch {
    pub fn start() -> Stopwatch {
        Stopwatch { wall: std::time::Instant::now(), cpu: thread_cpu_ns() }
    }

    /// Wall seconds and CPU seconds (of the calling thread) since the start.
    pub fn stop(&self) -> (f64, Option<f64>) {
        let wall = self.wall.elapsed().as_secs_f64();
        let cpu = match (self.cpu, thread_cpu_ns()) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / 1e9),
            _ => None,
        };
        (wall, cpu)
    }
}

/// Machine facts for the report: CPU count, CPU model, kernel version.
pub fn machine() -> (usize, String, String) {
    let nproc = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
    (nproc, model, kernel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_proc() {
        assert!(thread_cpu_ns().is_some());
        assert!(rss_bytes().unwrap() > 0);
        let (n, _, k) = machine();
        assert!(n > 0 && !k.is_empty());
    }
}
