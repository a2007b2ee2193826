//! Who used the CPUs during a level: the harness, the gateway, everything else (Linux `/proc` only;
//! elsewhere nothing is reported). On a shared machine "other" shows when a measurement was
//! disturbed, e.g. by a compiler. PostgreSQL server processes are counted apart.

/// Cumulative tick counters at one moment.
#[derive(Clone, Copy)]
pub struct Sample {
    busy: u64,
    total: u64,
    bench: u64,
    gateway: u64,
    database: u64,
}

/// Average cores used over an interval.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Share {
    pub bench: f64,
    pub gateway: f64,
    /// PostgreSQL server processes (`postgres`), 0 with SQLite (which runs inside the gateway).
    pub database: f64,
    pub other: f64,
}

pub fn sample(gateway_pid: Option<u32>) -> Option<Sample> {
    sample_all(gateway_pid.as_slice())
}

/// Like [`sample`], counting several gateway processes together as "gateway".
pub fn sample_all(gateway_pids: &[u32]) -> Option<Sample> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    if cpu.len() < 8 {
        return None;
    }
    let busy = cpu[0] + cpu[1] + cpu[2] + cpu[5] + cpu[6] + cpu[7];
    let total = busy + cpu[3] + cpu[4];
    Some(Sample {
        busy,
        total,
        bench: process_ticks("self").unwrap_or(0),
        gateway: gateway_pids
            .iter()
            .filter_map(|p| process_ticks(&p.to_string()))
            .sum(),
        database: postgres_ticks(),
    })
}

/// utime + stime of every process named `postgres` (the server and its backends). Backends that
/// exit between two samples are lost, which the benchmark's pooled connections make rare.
fn postgres_ticks() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|name| name.bytes().all(|b| b.is_ascii_digit()))
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim_end() == "postgres")
        })
        .filter_map(|pid| process_ticks(&pid))
        .sum()
}

/// utime + stime of a process (all its threads).
fn process_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields after the command name start at field 3 (state); utime is field 14, stime 15.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

pub fn share(before: Option<Sample>, after: Option<Sample>) -> Option<Share> {
    let (a, b) = (before?, after?);
    let total = b.total.checked_sub(a.total)? as f64;
    if total <= 0.0 {
        return None;
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let cores = |ticks: u64| ticks as f64 / total * cpus;
    let busy = b.busy.saturating_sub(a.busy);
    let bench = b.bench.saturating_sub(a.bench);
    let gateway = b.gateway.saturating_sub(a.gateway);
    let database = b.database.saturating_sub(a.database);
    Some(Share {
        bench: cores(bench),
        gateway: cores(gateway),
        database: cores(database),
        other: cores(busy.saturating_sub(bench + gateway + database)),
    })
}
