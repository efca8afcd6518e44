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
    // Scenarios are the .toml files (guests/ holds packages they use; liquid-gen.py writes some).
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
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

#[test]
fn workload_mistakes_name_their_line_and_field() {
    let wl = |body: &str| error(&format!("\n[[workload]]\n{body}"));
    let e = wl("stop = \"50s\"\nrate = 5\nrte = 3\n");
    assert!(e.starts_with("t.toml:13:1: unknown field `rte`"), "{e}");
    let e = wl("stop = \"50s\"\nrate = 0\n");
    assert_eq!(e, "t.toml:12:8: workload[0].rate: writes per second: more than 0, at most 1000000");
    let e = wl("stop = \"50s\"\nrate = 5\nwriters = [\"edge-4\"]\n");
    assert_eq!(e, "t.toml:13:11: workload[0].writers: unknown node or site \"edge-4\"");
    let e = wl("stop = \"50s\"\nrate = 5\nkeys = \"pareto\"\n");
    assert!(e.starts_with("t.toml:13:8:") && e.contains("pareto"), "{e}");
    let e = wl("stop = \"50s\"\nrate = 5\nzipf_exponent = 1.2\n");
    assert_eq!(e, "t.toml:13:17: workload[0].zipf_exponent: only applies to keys = \"zipf\"");
    let e = wl("stop = \"50s\"\nrate = 5\nkeys = \"zipf\"\nzipf_exponent = -1\n");
    assert!(e.starts_with("t.toml:14:17: workload[0].zipf_exponent: must be more than 0"), "{e}");
    let e = wl("stop = \"2m\"\nrate = 5\n");
    assert_eq!(e, "t.toml:11:8: workload[0].stop: after the end of the run (`duration`)");
    let e = wl("start = \"50s\"\nstop = \"40s\"\nrate = 5\n");
    assert_eq!(e, "t.toml:11:9: workload[0].start: must come before `stop`");
    let e = wl("stop = \"50s\"\nrate = 5\ncreator = \"edge-0\"\n");
    assert_eq!(e, "t.toml:13:11: workload[0].creator: unknown node \"edge-0\"");
    let e = wl("stop = \"50s\"\nrate = 5\ncreate = false\ncreate_at = \"1s\"\n");
    assert_eq!(e, "t.toml:14:13: workload[0].create_at: only applies with create = true");
    let e = wl("start = \"20s\"\nstop = \"50s\"\nrate = 5\ncreate_at = \"30s\"\n");
    assert_eq!(e, "t.toml:14:13: workload[0].create_at: must not come after `start`");
    let e = wl("namespace = \"Bad NS\"\nstop = \"50s\"\nrate = 5\n");
    assert!(e.starts_with("t.toml:11:13: workload[0].namespace: invalid namespace \"Bad NS\""), "{e}");
    let e = wl("stop = \"50s\"\n");
    assert!(e.contains("missing field `rate`"), "{e}");
    let e = wl("stop = \"50s\"\nrate = 5\ndurability = \"eventually\"\n");
    assert!(e.starts_with("t.toml:13:14:") && e.contains("eventually"), "{e}");
    let e = error("\n[objects]\nanti_entropy_interval = \"0s\"\n");
    assert_eq!(e, "t.toml:11:25: objects.anti_entropy_interval: must be longer than 0");
}

#[test]
fn a_workload_writes_and_the_report_says_what_became_of_it() {
    let base = BASE.replacen("\n\n", "\nfsync_latency = \"3ms\"\n\n", 1);
    let text = format!(
        "{base}\n[[workload]]\nname = \"w\"\nnamespace = \"t\"\nobjects = 3\nstop = \"40s\"\nrate = 4\nwriters = [\"edge-0\", \"edge-1-2\"]\nkeys = \"zipf\"\ninc = 1.0\nvalue_bytes = 64\n"
    );
    let s = Scenario::parse(&text, "t.toml").unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert!(s.has_workloads());
    let report = sim::run(&s, 5, |_| {});
    assert!(report.final_check.ok, "{}", report.summary());
    assert_eq!(report.workloads.len(), 1);
    assert_eq!((report.workloads[0].objects, report.workloads[0].writers), (3, 5));
    let check = report.final_check.objects.as_ref().unwrap();
    let totals = report.totals.objects.as_ref().unwrap();
    // Writes from 10s (the end of the join window) to 40s at 4/s, plus 3 creations.
    assert!((90..=160).contains(&totals.writes.attempted), "{}", report.summary());
    assert_eq!(check.acked_writes, totals.writes.acked);
    assert_eq!(check.verified, check.acked_writes);
    assert_eq!(check.objects, 3);
    assert!(totals.sync.count > 0 && report.totals.messages_by_kind.contains_key("obj_sync"));
    let json = report.to_json();
    assert!(json.contains("\"ack_latency_ms\"") && json.contains("\"converged_after_s\""));
    // Scenarios without workloads keep their reports free of object fields.
    let plain = sim::run(&Scenario::parse(BASE, "t.toml").unwrap(), 5, |_| {});
    assert!(plain.final_check.objects.is_none() && !plain.to_json().contains("objects"));
}
