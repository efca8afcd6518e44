//! What a run found: `report.json` and a short human summary.
//!
//! Everything serialized is a function of the scenario and the seed alone (virtual times,
//! counts, `BTreeMap`s), so the same run writes byte-identical JSON. The wall-clock speed of the
//! run is kept in [`Report::speed`], which is not serialized.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

/// The result of one run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The scenario's name.
    pub scenario: String,
    /// The seed the run used.
    pub seed: u64,
    /// Virtual seconds simulated.
    pub duration_s: f64,
    /// The simulated nodes.
    pub nodes: NodeCounts,
    /// Inputs processed by the event loop (deliveries, timers, faults, samples, …).
    pub events: u64,
    /// One entry per phase; phases are delimited by fault times.
    pub phases: Vec<Phase>,
    /// Sums over all phases.
    pub totals: Totals,
    /// The core's own counters, summed over the nodes running at the end.
    pub core: CoreStats,
    /// Whether every live node's view agrees at the end (see [`FinalCheck`]).
    pub final_check: FinalCheck,
    /// How fast the run went. Wall-clock, so not serialized.
    #[serde(skip)]
    pub speed: Speed,
}

/// Node counts.
#[derive(Clone, Debug, Serialize)]
pub struct NodeCounts {
    /// All nodes.
    pub total: usize,
    /// By tier name.
    pub by_tier: BTreeMap<&'static str, usize>,
}

/// One phase of the run: from one fault time to the next.
#[derive(Clone, Debug, Serialize)]
pub struct Phase {
    /// `boot`, then the fault's name (several faults at one time are joined with ` + `).
    pub name: String,
    /// Virtual start, in seconds.
    pub start_s: f64,
    /// Virtual end, in seconds.
    pub end_s: f64,
    /// Time from the phase start to the first sample at which membership had converged;
    /// `null` if it never did within the phase.
    pub converged_after_s: Option<f64>,
    /// Whether membership was converged at the last sample of the phase.
    pub converged_at_end: bool,
    /// Suspicions of nodes that were up and reachable.
    pub false_suspicions: FalseSuspicions,
    /// Messages sent during the phase.
    pub messages: Traffic,
    /// Messages sent during the phase, by kind.
    pub messages_by_kind: BTreeMap<&'static str, KindCount>,
}

/// Message totals.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Traffic {
    /// Messages sent.
    pub sent: u64,
    /// Their encoded bytes.
    pub bytes: u64,
    /// Lost to link loss.
    pub dropped_loss: u64,
    /// Dropped because the ends were on different islands at send or delivery time.
    pub dropped_partition: u64,
    /// Dropped because the recipient was down (or restarted) on arrival.
    pub dropped_down: u64,
}

/// Messages of one kind.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct KindCount {
    /// How many.
    pub count: u64,
    /// Their encoded bytes.
    pub bytes: u64,
}

/// Status changes to suspect or down about a node that was, at that moment, running and
/// reachable from the observer, and had been so (both ends up, no partition change at either
/// site) for at least one probe interval (for `suspect`) or one probe interval plus the
/// suspicion timeout (for `down`). Changes about an older incarnation that arrive late are thus
/// not counted right after a crash, a restart or a heal.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FalseSuspicions {
    /// Suspicions the observer decided itself (a failed probe).
    pub local_suspect: u64,
    /// Down declarations the observer decided itself (an expired suspicion).
    pub local_down: u64,
    /// False suspect or down claims the observer learned from others.
    pub learned: u64,
    /// The first few local ones, for debugging.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<Suspicion>,
}

/// One false suspicion.
#[derive(Clone, Debug, Serialize)]
pub struct Suspicion {
    /// When, in virtual seconds.
    pub at_s: f64,
    /// Who decided it.
    pub observer: String,
    /// About whom.
    pub subject: String,
    /// `suspect` or `down`.
    pub to: liquid_core::Status,
}

/// Sums over the whole run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Totals {
    /// False suspicions (without examples).
    pub false_suspicions: FalseSuspicions,
    /// Messages sent.
    pub messages: Traffic,
    /// Messages sent, by kind.
    pub messages_by_kind: BTreeMap<&'static str, KindCount>,
}

/// The core's counters ([`liquid_core::membership::Stats`]) summed over running nodes.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CoreStats {
    /// Times a node refuted a claim about itself.
    pub refutations: u64,
    /// Gossip dropped because a queue was full.
    pub gossip_dropped: u64,
    /// Newcomers refused because a view was full.
    pub members_refused: u64,
    /// Indirect probes refused because too many were running.
    pub relays_refused: u64,
}

/// The invariant checked at the end of the run: after the last heal, the views of all running
/// nodes agree. For every island of running nodes (one, unless a partition is still in force),
/// all members have equal membership digests and a member's view marks as alive exactly the
/// running nodes of that island.
#[derive(Clone, Debug, Serialize)]
pub struct FinalCheck {
    /// Whether the invariant holds.
    pub ok: bool,
    /// Running nodes at the end.
    pub live_nodes: usize,
    /// Islands with running nodes.
    pub islands: usize,
    /// What disagrees, if anything.
    pub detail: String,
}

/// Wall-clock speed of a run.
#[derive(Clone, Copy, Debug, Default)]
pub struct Speed {
    /// Wall time the run took.
    pub wall: Duration,
    /// Virtual seconds simulated per wall second.
    pub virtual_per_wall: f64,
    /// Events processed per wall second.
    pub events_per_s: f64,
}

/// Sums the phases.
pub(crate) fn totals(phases: &[Phase]) -> Totals {
    let mut t = Totals::default();
    for p in phases {
        let (m, f) = (&p.messages, &p.false_suspicions);
        t.messages.sent += m.sent;
        t.messages.bytes += m.bytes;
        t.messages.dropped_loss += m.dropped_loss;
        t.messages.dropped_partition += m.dropped_partition;
        t.messages.dropped_down += m.dropped_down;
        t.false_suspicions.local_suspect += f.local_suspect;
        t.false_suspicions.local_down += f.local_down;
        t.false_suspicions.learned += f.learned;
        for (kind, k) in &p.messages_by_kind {
            let e = t.messages_by_kind.entry(*kind).or_default();
            e.count += k.count;
            e.bytes += k.bytes;
        }
    }
    t
}

fn human(n: u64) -> String {
    match n {
        0..1_000 => n.to_string(),
        1_000..1_000_000 => format!("{:.1}k", n as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1}M", n as f64 / 1e6),
        _ => format!("{:.1}G", n as f64 / 1e9),
    }
}

impl Report {
    /// A few lines for humans: nodes, phases, the final check and the speed.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let tiers: Vec<String> = self.nodes.by_tier.iter().map(|(t, n)| format!("{n} {t}")).collect();
        let _ = writeln!(
            s,
            "scenario {} (seed {}): {} nodes ({}), {} virtual s, {} events",
            self.scenario,
            self.seed,
            self.nodes.total,
            tiers.join(", "),
            self.duration_s,
            human(self.events)
        );
        let _ = writeln!(
            s,
            "{:<28} {:>8} {:>8} {:>10} {:>11} {:>9} {:>9}",
            "phase", "start", "end", "converged", "false susp", "messages", "bytes"
        );
        for p in &self.phases {
            let conv = match p.converged_after_s {
                Some(c) => format!("{c:.0}s"),
                None => "never".to_string(),
            };
            let fs = &p.false_suspicions;
            let mut name = p.name.clone();
            if name.len() > 28 {
                name.truncate(25);
                name.push_str("...");
            }
            let _ = writeln!(
                s,
                "{name:<28} {:>7.0}s {:>7.0}s {conv:>10} {:>11} {:>9} {:>9}",
                p.start_s,
                p.end_s,
                format!("{}/{}/{}", fs.local_suspect, fs.local_down, fs.learned),
                human(p.messages.sent),
                human(p.messages.bytes)
            );
        }
        let t = &self.totals.messages;
        let _ = writeln!(
            s,
            "messages: {} sent, {} bytes; dropped {} loss, {} partition, {} down (false susp = local suspect/local down/learned)",
            human(t.sent),
            human(t.bytes),
            human(t.dropped_loss),
            human(t.dropped_partition),
            human(t.dropped_down)
        );
        let verdict = if self.final_check.ok { "ok" } else { "FAILED" };
        let _ = writeln!(
            s,
            "final check: {verdict}: {} live nodes on {} island(s){}{}",
            self.final_check.live_nodes,
            self.final_check.islands,
            if self.final_check.detail.is_empty() { "" } else { ": " },
            self.final_check.detail
        );
        let sp = &self.speed;
        let prec = if sp.virtual_per_wall < 10.0 { 2 } else { 0 };
        let _ = writeln!(
            s,
            "speed: {:.2} s wall, {:.prec$} virtual s per wall s, {} events/s",
            sp.wall.as_secs_f64(),
            sp.virtual_per_wall,
            human(sp.events_per_s as u64)
        );
        s
    }

    /// The report as pretty JSON with a trailing newline.
    pub fn to_json(&self) -> String {
        let mut json = serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
        json.push('\n');
        json
    }

    /// Writes `dir/report.json`, creating `dir` if needed.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("report.json"), self.to_json())
    }
}
