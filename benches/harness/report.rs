//! The printed table and the optional JSON.
use std::fmt::Write as _;

use serde_json::{json, Value};

use crate::load::{LevelResult, Scenario};

pub struct Meta {
    pub date: String,
    pub database: String,
    pub duration_s: u64,
    pub warmup_s: u64,
    pub cpus: usize,
    pub gateway_log: String,
    pub restarts: bool,
}

fn cpu(r: &LevelResult) -> String {
    r.cpu.map_or_else(
        || "-".into(),
        |c| {
            format!(
                "{:.2} / {:.2} / {:.2} / {:.2}",
                c.bench, c.gateway, c.database, c.other
            )
        },
    )
}

/// `16`, or `≤16 at 1000/s` for an open-loop level.
fn level(r: &LevelResult) -> String {
    match r.rate {
        None => r.concurrency.to_string(),
        Some(rate) => format!("≤{} at {rate:.0}/s", r.concurrency),
    }
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.2}"))
}

/// One progress line.
pub fn line(r: &LevelResult) -> String {
    format!(
        "{:<14} c{:<14} {:>8} req {:>6} err {:>9.0} req/s  p50 {:>7} ms  p99 {:>7} ms  cpu {}",
        r.scenario.label(),
        level(r),
        r.requests,
        r.errors,
        r.throughput(),
        ms(r.quantile_ms(0.50)),
        ms(r.quantile_ms(0.99)),
        cpu(r),
    )
}

/// `onetime p99 − sandbox key-in p99` per level (concurrency, and rate when open loop) where both
/// ran.
fn gateway_added(results: &[LevelResult]) -> Vec<(String, f64, f64)> {
    let find = |s: Scenario, c: usize| {
        results
            .iter()
            .find(|r| r.scenario == s && r.concurrency == c)
            .and_then(|r| r.quantile_ms(0.99))
    };
    let mut out = Vec::new();
    for r in results.iter().filter(|r| r.scenario == Scenario::Onetime) {
        if let (Some(a), Some(b)) = (
            find(Scenario::Onetime, r.concurrency),
            find(Scenario::SandboxKeyin, r.concurrency),
        ) {
            out.push((level(r), a, b));
        }
    }
    out
}

pub fn table(meta: &Meta, results: &[LevelResult]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\nopenport-bench {} · {} · {} CPUs · {} s per level after {} s warm-up · gateway RUST_LOG {} · {}",
        meta.date,
        meta.database,
        meta.cpus,
        meta.duration_s,
        meta.warmup_s,
        meta.gateway_log,
        if meta.restarts {
            "fresh gateway process (same database) per level"
        } else {
            "one gateway process for the run"
        }
    );
    let _ = writeln!(
        s,
        "\n| scenario | concurrency | requests | errors | throughput (ok req/s) | p50 (ms) | p99 (ms) | CPU cores bench / gateway / postgres / other |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in results {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {:.0} | {} | {} | {} |",
            r.scenario.label(),
            level(r),
            r.requests,
            r.errors,
            r.throughput(),
            ms(r.quantile_ms(0.50)),
            ms(r.quantile_ms(0.99)),
            cpu(r),
        );
    }
    let _ = writeln!(s);
    for (c, a, b) in gateway_added(results) {
        let _ = writeln!(
            s,
            "gateway-added p99 at c{c} = onetime p99 − sandbox key-in p99 = {a:.2} − {b:.2} = {:.2} ms",
            a - b
        );
    }
    let with_errors: Vec<&LevelResult> = results.iter().filter(|r| r.errors > 0).collect();
    if !with_errors.is_empty() {
        let _ = writeln!(s, "\nerrors (distinct answers, first {} kept):", 8);
        for r in with_errors {
            for (text, n) in &r.error_kinds {
                let _ = writeln!(
                    s,
                    "  {} c{}: {n} × {text}",
                    r.scenario.label(),
                    r.concurrency
                );
            }
        }
    }
    s
}

pub fn json(meta: &Meta, results: &[LevelResult]) -> Value {
    json!({
        "date": meta.date,
        "database": meta.database,
        "cpus": meta.cpus,
        "duration_s": meta.duration_s,
        "warmup_s": meta.warmup_s,
        "gateway_rust_log": meta.gateway_log,
        "gateway_restarted_per_level": meta.restarts,
        "results": results.iter().map(|r| json!({
            "scenario": r.scenario,
            "concurrency": r.concurrency,
            "offered_per_s": r.rate,
            "requests": r.requests,
            "errors": r.errors,
            "elapsed_s": r.elapsed.as_secs_f64(),
            "throughput_ok_per_s": r.throughput(),
            "p50_ms": r.quantile_ms(0.50),
            "p90_ms": r.quantile_ms(0.90),
            "p99_ms": r.quantile_ms(0.99),
            "max_ms": r.quantile_ms(1.0),
            "error_kinds": r.error_kinds,
            "cpu_cores": r.cpu,
        })).collect::<Vec<_>>(),
        "gateway_added_p99_ms": gateway_added(results).into_iter().map(|(c, a, b)| json!({
            "level": c, "onetime_p99_ms": a, "sandbox_keyin_p99_ms": b, "added_ms": a - b,
        })).collect::<Vec<_>>(),
    })
}
