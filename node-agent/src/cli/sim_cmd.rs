//! `liquid sim run`: run a scenario on the simulated continuum.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

/// `liquid sim` subcommands.
#[derive(Subcommand, Debug)]
pub enum SimCmd {
    /// Run a scenario (a TOML file, see sim/scenarios/ and docs/simulator.md) under virtual
    /// time with the real node core, and write DIR/report.json.
    Run(RunArgs),
    /// Run a scenario over many seeds, in parallel, and print the replay command of every
    /// seed whose invariants failed: `liquid sim sweep sim/scenarios/objects-small.toml
    /// --seeds 10000`. Exits non-zero if any seed failed.
    Sweep(SweepArgs),
}

/// `liquid sim sweep` flags.
#[derive(Args, Debug)]
pub struct SweepArgs {
    /// The scenario file.
    scenario: PathBuf,
    /// How many seeds to run.
    #[arg(long, default_value_t = 100)]
    seeds: u64,
    /// The first seed (seeds FROM, FROM+1, … are run).
    #[arg(long, value_name = "FROM", default_value_t = 1)]
    from: u64,
    /// Runs at once (default: the number of CPUs). Each holds a whole simulated continuum in
    /// memory: lower it for big scenarios.
    #[arg(long)]
    jobs: Option<usize>,
    /// Stop at the first failing seed.
    #[arg(long)]
    fail_fast: bool,
    /// The placement policy for every seed (`cloud`, `pinned`, `liquid`); default: the
    /// scenario's.
    #[arg(long, value_name = "POLICY", value_parser = ["cloud", "pinned", "liquid"])]
    policy: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

/// `liquid sim run` flags.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// The scenario file.
    scenario: PathBuf,
    /// The seed (overrides the scenario's `seed`); the same seed gives the same report.
    #[arg(long)]
    seed: Option<u64>,
    /// Where to write report.json (and report.html when placement policies are compared).
    #[arg(long, value_name = "DIR", default_value = "sim-out")]
    out: PathBuf,
    /// The placement policy: `cloud` (every function on a cloud node, never moved), `pinned`
    /// (where it was deployed, never moved), `liquid` (moved by the placement policy), or `all`
    /// (the three on the same seed, compared in one report). Default: the scenario's
    /// `[placement] policy`, else `liquid`.
    #[arg(long, value_name = "POLICY", value_parser = ["cloud", "pinned", "liquid", "all"])]
    policy: Option<String>,
    /// Print the report as JSON instead of the summary.
    #[arg(long)]
    json: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

/// Runs a `liquid sim` command.
pub fn run(cmd: SimCmd) -> Result<()> {
    match cmd {
        SimCmd::Run(args) => run_one(args),
        SimCmd::Sweep(args) => sweep(args),
    }
}

fn run_one(args: RunArgs) -> Result<()> {
    let scenario = sim::Scenario::load(&args.scenario)?;
    let seed = args.seed.unwrap_or_else(|| scenario.seed());
    sim::tune_allocator();
    let end = scenario.duration().as_secs();
    let bar = if args.quiet || args.json { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new(end) };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} virtual s ({elapsed}, eta {eta})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(format!("{} nodes, seed {seed}", scenario.node_count()));
    let policies: Vec<sim::PolicyKind> = match args.policy.as_deref() {
        None => Vec::new(),
        Some("all") => sim::PolicyKind::ALL.to_vec(),
        Some(p) => vec![sim::PolicyKind::parse(p).with_context(|| format!("unknown placement policy {p:?}"))?],
    };
    if policies.len() > 1 {
        bar.set_length(end * policies.len() as u64);
    }
    let mut offset = 0;
    let mut last = 0;
    let progress = |p: &sim::Progress| {
        // Each policy's run starts at virtual 0 again: the bar goes on from where it was.
        if p.virtual_now.as_secs() < last {
            offset += end;
        }
        last = p.virtual_now.as_secs();
        bar.set_position(offset + last);
    };
    let report = if policies.is_empty() {
        sim::run(&scenario, seed, progress)
    } else {
        sim::compare(&scenario, seed, &policies, progress)
    };
    bar.finish_and_clear();
    report.write(&args.out).with_context(|| format!("writing the report into {}", args.out.display()))?;
    if args.json {
        println!("{}", report.to_json());
    } else {
        println!("{}", report.summary());
        println!("report: {}", args.out.join("report.json").display());
        if !report.policies.is_empty() {
            println!("charts: {}", args.out.join("report.html").display());
        }
        let policy = args.policy.as_deref().map(|p| format!(" --policy {p}")).unwrap_or_default();
        println!("replay: liquid sim run {} --seed {seed}{policy}", args.scenario.display());
    }
    if let Some(failure) = report.failure() {
        // A failed invariant is an error for scripts and CI, not a line in a summary.
        anyhow::bail!(
            "{failure}\nreplay: liquid sim run {} --seed {seed}{} (the report is in {})",
            args.scenario.display(),
            args.policy.as_deref().map(|p| format!(" --policy {p}")).unwrap_or_default(),
            args.out.display()
        );
    }
    Ok(())
}

/// One failing seed of a sweep.
#[derive(serde::Serialize)]
struct Failed {
    seed: u64,
    failure: String,
    replay: String,
}

fn sweep(args: SweepArgs) -> Result<()> {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    let scenario = sim::Scenario::load(&args.scenario)?;
    let policy = match args.policy.as_deref() {
        None => None,
        Some(p) => Some(sim::PolicyKind::parse(p).with_context(|| format!("unknown placement policy {p:?}"))?),
    };
    anyhow::ensure!(args.seeds > 0, "--seeds must be at least 1");
    let end = args.from.checked_add(args.seeds).context("--from + --seeds overflows")?;
    let jobs = args.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
    sim::tune_allocator();
    let bar = if args.quiet || args.json {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(args.seeds)
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} seeds ({elapsed}, eta {eta})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(format!("{} nodes, {jobs} at once", scenario.node_count()));
    let policy_flag = args.policy.as_deref().map(|p| format!(" --policy {p}")).unwrap_or_default();
    let replay = |seed: u64| format!("liquid sim run {} --seed {seed}{policy_flag}", args.scenario.display());
    let next = AtomicU64::new(args.from);
    let stop = AtomicBool::new(false);
    let failed = Mutex::new(Vec::<Failed>::new());
    let started = std::time::Instant::now();
    std::thread::scope(|s| {
        for _ in 0..jobs.min(usize::try_from(args.seeds).unwrap_or(usize::MAX)) {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= end {
                        break;
                    }
                    let report = match policy {
                        Some(p) => sim::run_policy(&scenario, seed, p, |_| {}),
                        None => sim::run(&scenario, seed, |_| {}),
                    };
                    if let Some(failure) = report.failure() {
                        bar.println(format!(
                            "seed {seed} FAILED: {}\n  replay: {}",
                            first_line(&failure),
                            replay(seed)
                        ));
                        if let Ok(mut f) = failed.lock() {
                            f.push(Failed { seed, failure, replay: replay(seed) });
                        }
                        if args.fail_fast {
                            stop.store(true, Ordering::Relaxed);
                        }
                    }
                    bar.inc(1);
                }
            });
        }
    });
    bar.finish_and_clear();
    let mut failed = failed.into_inner().unwrap_or_default();
    failed.sort_by_key(|f| f.seed);
    let ran = bar.position();
    let wall_s = started.elapsed().as_secs_f64();
    if args.json {
        let out = serde_json::json!({
            "scenario": scenario.name(), "from": args.from, "seeds": ran, "failed": failed, "wall_s": wall_s,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "{}: {ran} seeds ({}..{}) in {wall_s:.1} s, {} failed",
            scenario.name(),
            args.from,
            args.from + ran.saturating_sub(1),
            failed.len()
        );
        for f in &failed {
            println!("  seed {}: {}\n    replay: {}", f.seed, first_line(&f.failure), f.replay);
        }
    }
    if !failed.is_empty() {
        anyhow::bail!("{} of {ran} seeds failed their invariants (replay commands above)", failed.len());
    }
    Ok(())
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}
