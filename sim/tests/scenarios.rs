//! Scenario files: the shipped ones load; mistakes are reported with their line and field.

use std::path::Path;

use sim::{Scenario, ScenarioError};

const BASE: &str = r#"name = "t"
duration = "1m"

[[sites]]
name = "edge"
tier = "edge"
count = 3
nodes = 4
"#;

fn error(extra: &str) -> String {
    let text = format!("{BASE}{extra}");
    parse_error(&text)
}

/// `extra` goes before the sites (for top-level keys).
fn error_top(extra: &str) -> String {
    parse_error(&BASE.replacen("\n\n", &format!("\n{extra}\n"), 1))
}

fn parse_error(text: &str) -> String {
    match Scenario::parse(text, "t.toml") {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn shipped_scenarios_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    names.sort();
    assert!(names.len() >= 3);
    for path in names {
        let s = Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(s.node_count() > 0);
    }
    let big = Scenario::load(&dir.join("continuum-1000.toml")).unwrap();
    assert!(big.node_count() >= 1000);
    let huge = Scenario::load(&dir.join("continuum-10000.toml")).unwrap();
    assert!(huge.node_count() >= 10_000);
}

#[test]
fn an_unknown_field_names_its_line() {
    let e = error("\n[network.lan]\nlatency = \"1ms\"\nlantency = \"2ms\"\n");
    assert!(e.starts_with("t.toml:12:1: unknown field `lantency`"), "{e}");
}

#[test]
fn bad_values_name_their_line_and_column() {
    let e = error("\n[network.wan]\nloss = 1.5\n");
    assert!(e.starts_with("t.toml:11:8:") && e.contains("loss must be between 0 and 1"), "{e}");
    let e = error_top("join_window = \"ten seconds\"");
    assert!(e.starts_with("t.toml:3:15:") && e.contains("invalid duration"), "{e}");
    let e = error("\n[network.lan]\nbandwidth = \"fast\"\n");
    assert!(e.starts_with("t.toml:11:13:") && e.contains("invalid bandwidth"), "{e}");
    let e = Scenario::parse(&BASE.replace("nodes = 4", "nodes = 0"), "t.toml").unwrap_err().to_string();
    assert!(e.starts_with("t.toml:8:9:") && e.contains("between 1 and"), "{e}");
    let e = Scenario::parse(&BASE.replace("tier = \"edge\"", "tier = \"edgy\""), "t.toml").unwrap_err().to_string();
    assert!(e.starts_with("t.toml:6:8:") && e.contains("edgy"), "{e}");
    let e = Scenario::parse("name = \"t\"\nduration = [", "t.toml").unwrap_err();
    assert!(matches!(e, ScenarioError::Syntax { .. }), "{e}");
}

#[test]
fn semantic_errors_name_the_field() {
    let e = error("\n[[faults]]\nat = \"30s\"\npartition = [\"edge-7\"]\n");
    assert_eq!(e, "t.toml:12:13: faults[0].partition: unknown site \"edge-7\"");
    let e = error("\n[[faults]]\nat = \"30s\"\ncrash = [\"edge-1-9\"]\n");
    assert_eq!(e, "t.toml:12:9: faults[0].crash: unknown node or site \"edge-1-9\"");
    let e = error("\n[[faults]]\nat = \"30s\"\nrestart = [\"edge-1-0\"]\n");
    assert!(e.starts_with("t.toml:11:6: faults[0]: node edge-1-0 is running"), "{e}");
    let e = error("\n[[faults]]\nat = \"2m\"\nheal = \"all\"\n");
    assert!(e.starts_with("t.toml:11:6: faults[0].at: after the end"), "{e}");
    let e = error("\n[[faults]]\nat = \"30s\"\n");
    assert!(e.contains("faults[0]: needs exactly one of"), "{e}");
    let e = error("\n[[faults]]\nat = \"30s\"\npartition = [\"edge-0-1\"]\n");
    assert!(e.contains("is a node; name sites here"), "{e}");
    let e = error_top("bootstrap = \"cloud-0-0\"");
    assert!(e.starts_with("t.toml:3:13: bootstrap: unknown node"), "{e}");
    let e = error("\n[[sites]]\nname = \"edge-1\"\ntier = \"fog\"\nnodes = 1\n");
    assert!(e.contains("sites[1].name: the name \"edge-1-0\" is used twice"), "{e}");
}

#[test]
fn targets_resolve_nodes_sites_groups_and_ranges() {
    let text = format!(
        "{BASE}\n[[faults]]\nat = \"20s\"\npartition = [\"edge-0..2\"]\n[[faults]]\nat = \"30s\"\ncrash = [\"edge-2\", \"edge-0-0\"]\n[[faults]]\nat = \"40s\"\nrestart = [\"edge\"]\nfresh = true\n"
    );
    let e = Scenario::parse(&text, "t.toml").unwrap_err().to_string();
    // Restarting the whole group includes nodes that are running.
    assert!(e.contains("faults[2]: node edge-0-1 is running"), "{e}");
    let ok = text.replace("restart = [\"edge\"]", "restart = [\"edge-2\", \"edge-0-0\"]");
    let s = Scenario::parse(&ok, "t.toml").unwrap();
    let report = sim::run(&s, 1, |_| {});
    assert_eq!(report.phases.len(), 4);
    assert_eq!(report.final_check.islands, 2, "the partition never heals: {}", report.summary());
}
