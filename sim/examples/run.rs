//! Runs a scenario and prints the summary, the speed and the peak memory.
//!
//! `cargo run --release -p sim --example run -- sim/scenarios/continuum-1000.toml [--seed N] [--out DIR] [--policy cloud|pinned|liquid|all]`

use std::path::PathBuf;
use std::process::ExitCode;

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Progress lines show wall time; the report itself never depends on it.
#[allow(clippy::disallowed_methods)]
fn wall_clock() -> std::time::Instant {
    std::time::Instant::now()
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (mut path, mut seed, mut out, mut policy) = (None, None, None, None);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seed" => seed = args.next().and_then(|s| s.parse::<u64>().ok()),
            "--out" => out = args.next().map(PathBuf::from),
            "--policy" => policy = args.next(),
            _ => path = Some(PathBuf::from(a)),
        }
    }
    let Some(path) = path else {
        eprintln!("usage: run SCENARIO.toml [--seed N] [--out DIR] [--policy cloud|pinned|liquid|all]");
        return ExitCode::from(2);
    };
    let scenario = match sim::Scenario::load(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let seed = seed.unwrap_or(scenario.seed());
    sim::tune_allocator();
    let started = wall_clock();
    let mut next_line = 0;
    let policies: Vec<sim::PolicyKind> = match policy.as_deref() {
        None => Vec::new(),
        Some("all") => sim::PolicyKind::ALL.to_vec(),
        Some(p) => match sim::PolicyKind::parse(p) {
            Some(p) => vec![p],
            None => {
                eprintln!("error: --policy: expected cloud, pinned, liquid or all");
                return ExitCode::from(2);
            }
        },
    };
    let progress = |p: &sim::Progress| {
        // A progress line on stderr every 30 virtual seconds.
        if p.virtual_now.as_secs() >= next_line {
            next_line = p.virtual_now.as_secs() + 30;
            eprintln!(
                "  {:>5} virtual s  {:>12} events  {:>7.2} wall s",
                p.virtual_now.as_secs(),
                p.events,
                started.elapsed().as_secs_f64()
            );
        }
    };
    let report = if policies.is_empty() {
        sim::run(&scenario, seed, progress)
    } else {
        sim::compare(&scenario, seed, &policies, progress)
    };
    print!("{}", report.summary());
    let nodes = report.nodes.total as u64;
    if let Some(kib) = peak_rss_kib() {
        println!("peak RSS: {:.1} MiB ({:.1} KiB per simulated node)", kib as f64 / 1024.0, kib as f64 / nodes as f64);
    }
    if let Some(dir) = out
        && let Err(e) = report.write(&dir)
    {
        eprintln!("error: writing {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    match report.failure() {
        None => ExitCode::SUCCESS,
        Some(failure) => {
            eprintln!("{failure}");
            ExitCode::FAILURE
        }
    }
}
