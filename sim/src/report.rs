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

mod html;

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
    /// The write workloads (empty without `[[workload]]`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub workloads: Vec<WorkloadInfo>,
    /// One entry per phase; phases are delimited by fault times.
    pub phases: Vec<Phase>,
    /// Sums over all phases.
    pub totals: Totals,
    /// The core's own counters, summed over the nodes running at the end.
    pub core: CoreStats,
    /// Functions: invocations by outcome, latency per site (with `[[invocations]]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub functions: Option<FunctionsReport>,
    /// The placement policy the sections above describe.
    pub policy: &'static str,
    /// Every policy run (one, or the three of `--policy all`), summed up.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<PolicySummary>,
    /// Whether every live node's view agrees at the end (see [`FinalCheck`]).
    pub final_check: FinalCheck,
    /// How fast the run went. Wall-clock, so not serialized.
    #[serde(skip)]
    pub speed: Speed,
}

/// What the functions did in the run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FunctionsReport {
    /// The invocation streams, as declared.
    pub streams: Vec<StreamInfo>,
    /// Functions deployed.
    pub deploys: u64,
    /// Calls made by the invocation streams.
    pub calls: u64,
    /// Calls not made because the chosen caller was down.
    pub skipped_caller_down: u64,
    /// Calls whose caller crashed before their outcome.
    pub lost_with_caller: u64,
    /// Outcomes at the callers: `ok` or the error's kind.
    pub outcomes: BTreeMap<String, u64>,
    /// Calls without an outcome at the end whose caller is running.
    pub pending_at_end: u64,
    /// The oldest of those, seconds (accountability: it must be within the call deadline).
    pub oldest_pending_s: f64,
    /// Latency of successful calls by the caller's site, ms.
    pub latency_by_site: Vec<SiteLatency>,
    /// Latency of all successful calls, ms.
    pub latency_ms: Option<Latency>,
    /// Executions run (for real, in wasmtime).
    pub executions: u64,
    /// Fuel they used.
    pub fuel: u64,
    /// Module fetches between nodes, and their bytes.
    pub module_fetches: u64,
    /// Bytes of modules fetched.
    pub module_bytes: u64,
}

/// An `[[invocations]]` stream.
#[derive(Clone, Debug, Serialize)]
pub struct StreamInfo {
    /// Its name.
    pub name: String,
    /// The function it calls.
    pub function: String,
    /// Calls per second.
    pub rate: f64,
    /// How many nodes call.
    pub callers: usize,
}

/// Call latency at one site.
#[derive(Clone, Debug, Serialize)]
pub struct SiteLatency {
    /// The site's name.
    pub site: String,
    /// Successful calls from it.
    pub calls: usize,
    /// Their latency, ms.
    pub latency_ms: Option<Latency>,
}

/// What one policy achieved.
#[derive(Clone, Debug, Serialize)]
pub struct PolicySummary {
    /// `cloud`, `pinned` or `liquid`.
    pub policy: &'static str,
    /// Calls made by the scenario's streams.
    pub calls: u64,
    /// Calls answered with a result.
    pub ok: u64,
    /// Calls answered with an error.
    pub failed_invocations: u64,
    /// Calls whose caller crashed before the outcome (not counted as failed).
    pub lost_with_caller: u64,
    /// Calls without an outcome at the end.
    pub pending_at_end: u64,
    /// Median latency of answered calls, ms.
    pub p50_ms: Option<f64>,
    /// 99th percentile, ms.
    pub p99_ms: Option<f64>,
    /// Mean, ms.
    pub mean_ms: Option<f64>,
    /// Bytes of every message between sites (membership and objects included).
    pub wan_bytes: u64,
    /// Of those, what functions moved: function messages, module fetches and snapshots.
    pub wan_bytes_functions: u64,
    /// WAN bytes by message kind (`module` and `snapshot`: module fetches and hand-offs).
    pub wan_bytes_by_kind: std::collections::BTreeMap<&'static str, u64>,
    /// Snapshot bytes streamed by hand-offs (WAN or not).
    pub handoff_bytes: u64,
    /// Migrations completed (snapshot handed off and acknowledged).
    pub migrations: u64,
    /// Migrations started.
    pub migrations_started: u64,
    /// Migrations rolled back.
    pub rolled_back: u64,
    /// Activations fenced by a higher epoch.
    pub fenced: u64,
    /// Object replicas the policy added next to functions (docs/placement.md, "Data placement").
    pub replicas_added: u64,
    /// Added replicas pruned again (the function moved away, or stopped reading the object).
    pub replicas_pruned: u64,
    /// Overlapping executions of one actor on two nodes (must be 0).
    pub fencing_violations: usize,
    /// Calls that got a second outcome (must be 0).
    pub duplicate_outcomes: u64,
    /// Fencing, one outcome per call, and the run's final check all hold.
    pub invariants_ok: bool,
    /// Answered calls by the caller's site.
    pub latency_by_site: Vec<SiteLatency>,
    /// Calls and migrations over time.
    pub timeline: Vec<Bucket>,
    /// Migration events (at most [`MOVES_MAX`]), in order.
    pub moves: Vec<Move>,
}

/// At most this many migration events are listed per policy.
pub const MOVES_MAX: usize = 500;

/// Calls sent, and migrations finished, in one time slice.
#[derive(Clone, Debug, Serialize)]
pub struct Bucket {
    /// Start of the slice, virtual s.
    pub start_s: f64,
    /// Answered calls sent in it.
    pub calls: u64,
    /// Of those, failed.
    pub failed: u64,
    /// Latency of its successful calls, ms.
    pub p50_ms: Option<f64>,
    /// 99th percentile.
    pub p99_ms: Option<f64>,
    /// Migrations finished in it.
    pub migrations: u64,
}

/// One migration event.
#[derive(Clone, Debug, Serialize)]
pub struct Move {
    /// When, virtual s.
    pub at_s: f64,
    /// The actor.
    pub actor: String,
    /// `started`, `finished`, `rolled_back`, `activated`, `fenced`, `refused`, `replica_added`.
    pub what: &'static str,
    /// The node that reported it.
    pub node: String,
    /// The other node.
    pub peer: Option<String>,
    /// The epoch concerned.
    pub epoch: u64,
}

/// Node counts.
#[derive(Clone, Debug, Serialize)]
pub struct NodeCounts {
    /// All nodes.
    pub total: usize,
    /// By tier name.
    pub by_tier: BTreeMap<&'static str, usize>,
}

/// A workload, as the scenario declares it.
#[derive(Clone, Debug, Serialize)]
pub struct WorkloadInfo {
    /// Its name (or `workload K (NAMESPACE)`).
    pub name: String,
    /// How many objects it writes.
    pub objects: usize,
    /// How many nodes write.
    pub writers: usize,
    /// Writes per second.
    pub rate: f64,
    /// When writes start and stop, in virtual seconds.
    pub start_s: f64,
    /// See `start_s`.
    pub stop_s: f64,
    /// `local` or `quorum`.
    pub durability: liquid_core::objects::Durability,
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
    /// Objects: convergence, writes and sync traffic (when the scenario has workloads).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub objects: Option<PhaseObjects>,
}

/// What happened to objects in one phase.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PhaseObjects {
    /// Time from the phase start until every running node that holds an object held every
    /// change that any running node of its island held at the phase start (0 if that was
    /// already so; checked at every sample). After a heal, this is how long the two sides
    /// took to exchange what they wrote apart, even while writes go on. `null` if not within
    /// the phase.
    pub converged_after_s: Option<f64>,
    /// Writes handed to nodes in the phase, and the answers received in it.
    pub writes: Writes,
    /// Object messages (every `obj_*` kind) sent in the phase; `messages_by_kind` splits them.
    pub sync: KindCount,
    /// Crashes (at this phase's start) of nodes whose object store held appends not yet
    /// synced, which the crash lost (or tore).
    pub crashes_losing_unsynced: u64,
}

/// Workload writes.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Writes {
    /// Writes handed to a running node.
    pub attempted: u64,
    /// Writes acknowledged (durable as asked).
    pub acked: u64,
    /// Writes answered with an error.
    pub failed: u64,
    /// Errors by kind (`not_found`, `unavailable`, `invalid`, `disk`, `quorum`, `full`, …).
    pub failed_by_kind: BTreeMap<&'static str, u64>,
    /// Writes whose node crashed before answering (not acknowledged, so they may be lost).
    pub unanswered: u64,
    /// Writes not attempted because the chosen writer was down.
    pub skipped_writer_down: u64,
    /// Time from request to acknowledgement, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ack_latency_ms: Option<Latency>,
}

/// A latency distribution.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Maximum.
    pub max: f64,
}

impl Latency {
    /// The distribution of `samples` (microseconds); `None` if empty.
    pub(crate) fn of(samples: &mut [u64]) -> Option<Latency> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize] as f64 / 1e3;
        Some(Latency { p50: at(0.5), p99: at(0.99), max: at(1.0) })
    }
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
    /// Writes and object messages over the whole run (when the scenario has workloads).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub objects: Option<TotalObjects>,
}

/// Object totals.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TotalObjects {
    /// Every workload write.
    pub writes: Writes,
    /// Object messages (every `obj_*` kind).
    pub sync: KindCount,
    /// Crashes that lost (or tore) appends not yet synced.
    pub crashes_losing_unsynced: u64,
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
    /// Object counters ([`liquid_core::objects::Stats`]), when the scenario has workloads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub objects: Option<CoreObjectStats>,
}

/// The core's object counters summed over the nodes running at the end (a restart resets a
/// node's counters).
#[derive(Clone, Debug, Default, Serialize)]
pub struct CoreObjectStats {
    /// Objects held (replicas and follower copies), over all running nodes.
    pub held: u64,
    /// Sync messages sent.
    pub sync_sent: u64,
    /// Their bytes (automerge payloads).
    pub sync_bytes_sent: u64,
    /// Sync messages refused (undecodable or rejected by automerge): should be 0.
    pub sync_refused: u64,
    /// Writes acknowledged.
    pub writes_acked: u64,
    /// Writes failed.
    pub writes_failed: u64,
    /// Group commits.
    pub flushes: u64,
    /// Log compactions.
    pub compactions: u64,
    /// Documents dropped from memory (they stay on disk), over all running nodes.
    pub evictions: u64,
    /// Cold documents read back from disk.
    pub loads: u64,
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
    /// The object invariants (when the scenario has workloads); `ok` includes them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub objects: Option<ObjectsCheck>,
}

/// The object invariants checked at the end of the run (leave a quiet period after the last
/// write and the last heal):
/// - **convergence**: on each island, every running node that holds an object has the same
///   digest (so the same document) as every other;
/// - **no acknowledged write lost**: every acknowledged write is in every running holder's
///   document on the island of the node that acknowledged it, and that node holds it; if
///   that node is down at the end, the write is in its durable store;
/// - **counters**: where an object's counter was created once (no concurrent creations,
///   which automerge resolves by dropping one counter and its increments), it equals the sum
///   of the increments of the writes present in the document;
/// - every stored object loads on restart, and no write waits for an answer for over a
///   minute.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ObjectsCheck {
    /// Whether all of the above hold.
    pub ok: bool,
    /// Distinct objects held by running nodes.
    pub objects: usize,
    /// Copies held by running nodes (replicas and follower copies).
    pub copies: usize,
    /// Whether every island's holders of every object agree.
    pub converged: bool,
    /// Writes acknowledged during the run.
    pub acked_writes: u64,
    /// Acknowledged writes found wherever they must be.
    pub verified: u64,
    /// Acknowledged writes missing somewhere they must be.
    pub lost: u64,
    /// Acknowledged writes of a node whose disk was wiped later (`fresh` restart): not checked.
    pub unverifiable: u64,
    /// Counters checked (per island and object).
    pub counters_checked: u64,
    /// Counters not checked because they were created concurrently (see above).
    pub counters_conflicted: u64,
    /// Counters whose value is not the sum of the increments present.
    pub counters_wrong: u64,
    /// Keys in documents that no workload wrote.
    pub unknown_keys: u64,
    /// Writes still unanswered at the end.
    pub unanswered_at_end: u64,
    /// Of those, writes sent over a minute before the end.
    pub stuck: u64,
    /// Objects that failed to load on a restart (or store writes that failed).
    pub restore_errors: u64,
    /// The first problems found, for debugging.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
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
        if let Some(o) = &p.objects {
            let to = t.objects.get_or_insert_with(TotalObjects::default);
            let (w, tw) = (&o.writes, &mut to.writes);
            tw.attempted += w.attempted;
            tw.acked += w.acked;
            tw.failed += w.failed;
            tw.unanswered += w.unanswered;
            tw.skipped_writer_down += w.skipped_writer_down;
            for (kind, n) in &w.failed_by_kind {
                *tw.failed_by_kind.entry(kind).or_default() += n;
            }
            to.sync.count += o.sync.count;
            to.sync.bytes += o.sync.bytes;
            to.crashes_losing_unsynced += o.crashes_losing_unsynced;
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
        if self.phases.iter().any(|p| p.objects.is_some()) {
            let _ = writeln!(
                s,
                "{:<28} {:>9} {:>9} {:>7} {:>7} {:>7} {:>9} {:>9} {:>9}",
                "objects", "converged", "attempted", "acked", "failed", "unansw", "ack p99", "sync msgs", "sync B"
            );
            for p in &self.phases {
                let Some(o) = &p.objects else { continue };
                let conv = match o.converged_after_s {
                    Some(c) => format!("{c:.0}s"),
                    None => "never".to_string(),
                };
                let p99 = o.writes.ack_latency_ms.map_or("-".to_string(), |l| format!("{:.0}ms", l.p99));
                let mut name = p.name.clone();
                if name.len() > 28 {
                    name.truncate(25);
                    name.push_str("...");
                }
                let w = &o.writes;
                let _ = writeln!(
                    s,
                    "{name:<28} {conv:>9} {:>9} {:>7} {:>7} {:>7} {p99:>9} {:>9} {:>9}",
                    human(w.attempted),
                    human(w.acked),
                    human(w.failed),
                    human(w.unanswered),
                    human(o.sync.count),
                    human(o.sync.bytes)
                );
            }
        }
        if let Some(f) = &self.functions {
            let outcomes: Vec<String> = f.outcomes.iter().map(|(k, v)| format!("{v} {k}")).collect();
            let _ = writeln!(
                s,
                "functions: {} calls ({}), {} skipped (caller down), {} lost with their caller, {} pending at end; {} executions, {} fuel, {} module fetches ({} bytes)",
                human(f.calls),
                outcomes.join(", "),
                human(f.skipped_caller_down),
                human(f.lost_with_caller),
                f.pending_at_end,
                human(f.executions),
                human(f.fuel),
                f.module_fetches,
                human(f.module_bytes)
            );
            for l in &f.latency_by_site {
                if let Some(lat) = l.latency_ms {
                    let _ = writeln!(
                        s,
                        "  {:<24} {:>7} ok calls  p50 {:>7.1} ms  p99 {:>7.1} ms",
                        l.site, l.calls, lat.p50, lat.p99
                    );
                }
            }
        }
        if !self.policies.is_empty() {
            let _ = writeln!(s, "placement policies (the sections above describe `{}`):", self.policy);
            for p in &self.policies {
                let _ = writeln!(
                    s,
                    "  {:<7} {:>7} calls  p50 {:>7.1} ms  p99 {:>7.1} ms  {:>6} failed  WAN {:>10} bytes ({} by functions)  {} migrations ({} started, {} rolled back)  fencing violations {}  {}",
                    p.policy,
                    p.calls,
                    p.p50_ms.unwrap_or(f64::NAN),
                    p.p99_ms.unwrap_or(f64::NAN),
                    p.failed_invocations,
                    human(p.wan_bytes),
                    human(p.wan_bytes_functions),
                    p.migrations,
                    p.migrations_started,
                    p.rolled_back,
                    p.fencing_violations,
                    if p.invariants_ok { "ok" } else { "FAILED" }
                );
            }
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
        if let Some(o) = &self.final_check.objects {
            let verdict = if o.ok { "ok" } else { "FAILED" };
            let _ = writeln!(
                s,
                "objects check: {verdict}: {} objects in {} copies {}; {} acked writes: {} verified, {} lost, {} unverifiable; counters {} ok, {} wrong, {} created concurrently (unchecked); {} unknown keys, {} stuck writes, {} restore errors",
                o.objects,
                o.copies,
                if o.converged { "converged" } else { "NOT converged" },
                o.acked_writes,
                o.verified,
                o.lost,
                o.unverifiable,
                o.counters_checked - o.counters_wrong.min(o.counters_checked),
                o.counters_wrong,
                o.counters_conflicted,
                o.unknown_keys,
                o.stuck,
                o.restore_errors
            );
            for p in &o.problems {
                let _ = writeln!(s, "  {p}");
            }
        }
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

    /// What failed, if anything: `None` when every check passed. Drivers (`liquid sim run`,
    /// tests) should fail with this text and the seed.
    pub fn failure(&self) -> Option<String> {
        if self.final_check.ok {
            return None;
        }
        let mut out = format!("scenario {} seed {}: final check FAILED", self.scenario, self.seed);
        if !self.final_check.detail.is_empty() {
            let _ = write!(out, "; {}", self.final_check.detail);
        }
        if let Some(o) = self.final_check.objects.as_ref().filter(|o| !o.ok) {
            let _ = write!(
                out,
                "; objects: converged={} lost={} counters_wrong={} unknown_keys={} stuck={} restore_errors={}",
                o.converged, o.lost, o.counters_wrong, o.unknown_keys, o.stuck, o.restore_errors
            );
            for p in &o.problems {
                let _ = write!(out, "\n  {p}");
            }
        }
        Some(out)
    }

    /// The report as pretty JSON with a trailing newline.
    pub fn to_json(&self) -> String {
        let mut json = serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
        json.push('\n');
        json
    }

    /// Writes `dir/report.json` (and `dir/report.html` with charts when the run compared
    /// placement policies), creating `dir` if needed.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        if !self.policies.is_empty() {
            std::fs::write(dir.join("report.html"), html::page(self))?;
        }
        std::fs::write(dir.join("report.json"), self.to_json())
    }
}
