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
    /// Where to write report.json.
    #[arg(long, value_name = "DIR", default_value = "sim-out")]
    out: PathBuf,
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
    let end = scenario.duration().as_secs();
    let bar = if args.quiet || args.json { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new(end) };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} virtual s ({elapsed}, eta {eta})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(format!("{} nodes, seed {seed}", scenario.node_count()));
    let report = sim::run(&scenario, seed, |p| {
        bar.set_position(p.virtual_now.as_secs());
    });
    bar.finish_and_clear();
    report.write(&args.out).with_context(|| format!("writing the report into {}", args.out.display()))?;
    if args.json {
        println!("{}", report.to_json());
    } else {
        println!("{}", report.summary());
        println!("report: {}", args.out.join("report.json").display());
        println!("replay: liquid sim run {} --seed {seed}", args.scenario.display());
    }
    Ok(())
}
