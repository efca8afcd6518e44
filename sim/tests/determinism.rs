//! A seed reproduces a run exactly; another seed gives another run.

use std::path::Path;

fn load(name: &str) -> sim::Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios").join(name);
    sim::Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

fn small() -> sim::Scenario {
    load("small.toml")
}

#[test]
fn the_same_seed_gives_a_byte_identical_report() {
    let scenario = small();
    let a = sim::run(&scenario, 42, |_| {}).to_json();
    let b = sim::run(&scenario, 42, |_| {}).to_json();
    assert_eq!(a, b);
    assert!(a.ends_with("}\n"));
}

#[test]
fn objects_under_faults_are_reproducible_too() {
    // Writes, automerge change hashes (timestamps are virtual time), torn tails, the checks.
    let scenario = load("objects-small.toml");
    let a = sim::run(&scenario, 9, |_| {}).to_json();
    let b = sim::run(&scenario, 9, |_| {}).to_json();
    assert_eq!(a, b);
    assert!(a.contains("\"acked_writes\"") && a.contains("\"obj_sync\""));
    assert_ne!(a, sim::run(&scenario, 10, |_| {}).to_json());
}

#[test]
fn another_seed_gives_another_run() {
    let scenario = small();
    let a = sim::run(&scenario, 1, |_| {}).to_json();
    let b = sim::run(&scenario, 2, |_| {}).to_json();
    assert_ne!(a, b);
}

#[test]
fn the_report_is_written_with_a_trailing_newline_and_no_wall_clock() {
    let scenario = small();
    let report = sim::run(&scenario, 3, |_| {});
    let dir = std::env::temp_dir().join(format!("liquid-sim-report-{}", std::process::id()));
    report.write(&dir).unwrap();
    let text = std::fs::read_to_string(dir.join("report.json")).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(text, report.to_json());
    assert!(!text.contains("wall"), "wall-clock values stay out of report.json");
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["nodes"]["total"], 38);
    assert_eq!(json["phases"].as_array().unwrap().len(), 5);
    assert!(report.summary().contains("virtual s per wall s"));
}

#[test]
fn progress_is_reported_about_once_per_virtual_second() {
    let scenario = small();
    let mut calls = Vec::new();
    sim::run(&scenario, 1, |p| calls.push((p.virtual_now, p.events)));
    assert_eq!(calls.len() as u64, scenario.duration().as_secs());
    assert!(calls.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
}
