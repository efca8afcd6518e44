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
    let SimCmd::Run(args) = cmd;
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
