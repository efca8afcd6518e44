//! Checkers and per-phase accounting.
//!
//! - **Convergence** (sampled every `sample_interval`, O(n) per sample): membership has
//!   converged when, for every island of running nodes, all its members have equal
//!   `membership().digest()` and one representative's view marks as alive exactly the running
//!   nodes of the island. A phase cannot converge while initial boots are still pending.
//! - **False suspicions**: see [`crate::report::FalseSuspicions`].
//! - **Traffic**: every message sent, by kind, with its encoded size, and why drops happened.
//! - **Objects** (`objects.rs`): per-phase object convergence, write outcomes, and the
//!   end-of-run invariants.

mod objects;

use std::time::Duration;

use liquid_core::membership::StatusChange;
use liquid_core::{Status, Time};

use crate::engine::Engine;
use crate::report::{FalseSuspicions, Latency, Phase, PhaseObjects, Suspicion, Traffic};
use crate::scenario::Scenario;

/// How many false-suspicion examples a phase keeps.
const EXAMPLES_MAX: usize = 5;

fn secs(t: Time) -> f64 {
    t.as_micros() as f64 / 1e6
}

/// Per-phase counters, filled as the run goes.
pub(crate) struct Metrics {
    pub phases: Vec<Phase>,
    phase_start: Time,
    /// A `suspect` counts as false only if the pair was stable this long before it.
    suspect_window: Duration,
    /// A `down` counts as false only if the pair was stable this long before it.
    down_window: Duration,
    /// Whether the scenario has workloads (phases then carry object figures).
    objects: bool,
    /// Acknowledgement latencies of the current phase, and of the whole run (µs).
    latencies: Vec<u64>,
    pub all_latencies: Vec<u64>,
    /// What the current phase's object convergence waits for, if it has not converged yet.
    pub(crate) obj_target: Option<objects::Target>,
}

fn phase(name: &str, start: Time, objects: bool) -> Phase {
    Phase {
        name: name.to_string(),
        start_s: secs(start),
        end_s: secs(start),
        converged_after_s: None,
        converged_at_end: false,
        false_suspicions: FalseSuspicions::default(),
        messages: Traffic::default(),
        messages_by_kind: Default::default(),
        objects: objects.then(PhaseObjects::default),
    }
}

impl Metrics {
    pub fn new(sc: &Scenario) -> Self {
        let m = &sc.membership;
        // The core's suspicion timeout: suspicion_mult × max(1, ceil(log10(n))) × probe_interval.
        let n = sc.node_count().max(1);
        let log10 = (n as f64).log10().ceil().max(1.0) as u32;
        let objects = sc.has_workloads();
        Metrics {
            phases: vec![phase("boot", Time::ZERO, objects)],
            phase_start: Time::ZERO,
            suspect_window: m.probe_interval,
            down_window: m.probe_interval + m.probe_interval * m.suspicion_mult * log10,
            objects,
            latencies: Vec::new(),
            all_latencies: Vec::new(),
            obj_target: None,
        }
    }

    fn objects_mut(&mut self) -> Option<&mut PhaseObjects> {
        self.current().objects.as_mut()
    }

    fn close_latencies(&mut self) {
        let mut l = std::mem::take(&mut self.latencies);
        let latency = Latency::of(&mut l);
        self.all_latencies.extend_from_slice(&l);
        if let Some(o) = self.objects_mut() {
            o.writes.ack_latency_ms = latency;
        }
    }

    pub fn write_attempted(&mut self) {
        if let Some(o) = self.objects_mut() {
            o.writes.attempted += 1;
        }
    }

    pub fn write_skipped(&mut self) {
        if let Some(o) = self.objects_mut() {
            o.writes.skipped_writer_down += 1;
        }
    }

    pub fn crash_lost_unsynced(&mut self) {
        if let Some(o) = self.objects_mut() {
            o.crashes_losing_unsynced += 1;
        }
    }

    pub fn writes_unanswered(&mut self, n: u64) {
        if let Some(o) = self.objects_mut() {
            o.writes.unanswered += n;
        }
    }

    /// A write was answered `latency` after it was sent: acknowledged, or an error of a kind.
    pub fn write_answered(&mut self, latency: Duration, result: Result<(), &'static str>) {
        if result.is_ok() {
            self.latencies.push(latency.as_micros() as u64);
        }
        let Some(o) = self.objects_mut() else { return };
        match result {
            Ok(()) => o.writes.acked += 1,
            Err(kind) => {
                o.writes.failed += 1;
                *o.writes.failed_by_kind.entry(kind).or_default() += 1;
            }
        }
    }

    /// The current phase's objects converged at `now`.
    pub(crate) fn objects_converged(&mut self, now: Time) {
        let start = self.phase_start;
        self.obj_target = None;
        if let Some(o) = self.objects_mut()
            && o.converged_after_s.is_none()
        {
            o.converged_after_s = Some(now.since(start).as_micros() as f64 / 1e6);
        }
    }

    fn current(&mut self) -> &mut Phase {
        let last = self.phases.len() - 1;
        &mut self.phases[last]
    }

    /// A fault at `now`: a new phase, unless one started at this very time.
    pub fn begin_phase(&mut self, now: Time, label: &str) {
        if now == self.phase_start && self.phases.len() > 1 {
            let p = self.current();
            p.name.push_str(" + ");
            p.name.push_str(label);
            return;
        }
        self.current().end_s = secs(now);
        self.close_latencies();
        self.phases.push(phase(label, now, self.objects));
        self.phase_start = now;
    }

    /// Closes the last phase at `end`.
    pub fn finish(&mut self, end: Time) {
        self.current().end_s = secs(end);
        self.close_latencies();
    }

    pub fn sent(&mut self, _now: Time, kind: &'static str, bytes: usize) {
        let p = self.current();
        p.messages.sent += 1;
        p.messages.bytes += bytes as u64;
        let k = p.messages_by_kind.entry(kind).or_default();
        k.count += 1;
        k.bytes += bytes as u64;
        if kind.starts_with("obj_")
            && let Some(o) = p.objects.as_mut()
        {
            o.sync.count += 1;
            o.sync.bytes += bytes as u64;
        }
    }

    pub fn dropped_loss(&mut self, _now: Time) {
        self.current().messages.dropped_loss += 1;
    }

    pub fn dropped_partition(&mut self, _now: Time) {
        self.current().messages.dropped_partition += 1;
    }

    pub fn dropped_down(&mut self, _now: Time) {
        self.current().messages.dropped_down += 1;
    }

    fn converged(&mut self, now: Time, ok: bool) {
        let start = self.phase_start;
        let p = self.current();
        if ok && p.converged_after_s.is_none() {
            p.converged_after_s = Some(now.since(start).as_micros() as f64 / 1e6);
        }
        p.converged_at_end = ok;
    }
}

/// The outcome of a view-agreement check.
pub(crate) struct Agreement {
    pub ok: bool,
    pub live: usize,
    pub islands: usize,
    pub detail: String,
}

#[derive(Clone, Copy)]
struct Island {
    rep: u32,
    digest: u64,
    live: usize,
    digests_equal: bool,
}

impl Engine<'_> {
    /// Feeds a node's status change to the false-suspicion checker.
    pub(crate) fn observe(&mut self, observer: u32, change: &StatusChange) {
        if !matches!(change.to, Status::Suspect | Status::Down) {
            return;
        }
        let Some(subject) = self.index_of(&change.id) else { return };
        if !self.running(subject) || !self.net.reachable(self.site(observer), self.site(subject)) {
            return;
        }
        let stable_since = [
            self.nodes[subject as usize].up_since,
            self.nodes[observer as usize].up_since,
            self.net.changed_at(self.site(observer)),
            self.net.changed_at(self.site(subject)),
        ]
        .into_iter()
        .max()
        .unwrap_or(Time::ZERO);
        let window = if change.to == Status::Suspect { self.metrics.suspect_window } else { self.metrics.down_window };
        if self.now.since(stable_since) < window {
            return;
        }
        let example =
            Suspicion { at_s: secs(self.now), observer: String::new(), subject: String::new(), to: change.to };
        let fs = &mut self.metrics.current().false_suspicions;
        match (change.local, change.to) {
            (false, _) => fs.learned += 1,
            (true, Status::Suspect) => fs.local_suspect += 1,
            (true, _) => fs.local_down += 1,
        }
        if change.local && fs.examples.len() < EXAMPLES_MAX {
            let (o, s) = (self.sc.node_name(observer), self.sc.node_name(subject));
            let fs = &mut self.metrics.current().false_suspicions;
            fs.examples.push(Suspicion { observer: o, subject: s, ..example });
        }
    }

    /// The periodic convergence sample.
    pub(crate) fn sample(&mut self) {
        let ok = self.boots_pending == 0 && self.agreement(false).ok;
        let now = self.now;
        self.metrics.converged(now, ok);
        self.objects_sample();
    }

    /// Checks that every island of running nodes agrees (see the module docs). With `detail`,
    /// says what disagrees.
    pub(crate) fn agreement(&self, detail: bool) -> Agreement {
        let mut islands: Vec<Option<Island>> = vec![None; self.net.islands_bound() as usize];
        let mut live = 0;
        for (i, sn) in self.nodes.iter().enumerate() {
            let Some(node) = &sn.node else { continue };
            live += 1;
            let digest = node.membership().digest();
            let slot = &mut islands[self.net.island(self.site(i as u32)) as usize];
            match slot {
                None => *slot = Some(Island { rep: i as u32, digest, live: 1, digests_equal: true }),
                Some(isl) => {
                    isl.live += 1;
                    isl.digests_equal &= isl.digest == digest;
                }
            }
        }
        let used: Vec<(usize, Island)> = islands.iter().enumerate().filter_map(|(k, i)| i.map(|i| (k, i))).collect();
        let mut out = Agreement { ok: true, live, islands: used.len(), detail: String::new() };
        for (k, isl) in used {
            if !isl.digests_equal {
                out.ok = false;
                if detail {
                    out.detail = format!("island {k}: the {} running nodes hold different digests", isl.live);
                }
                return out;
            }
            let Some(rep) = &self.nodes[isl.rep as usize].node else { continue };
            let mut alive = 0;
            for m in rep.membership().members(self.now) {
                if m.status != Status::Alive {
                    continue;
                }
                let here = self
                    .index_of(&m.info.id)
                    .is_some_and(|j| self.running(j) && self.net.island(self.site(j)) as usize == k);
                if !here {
                    out.ok = false;
                    if detail {
                        out.detail = format!("island {k}: {} is seen alive but is down or cut off", m.info.name);
                    }
                    return out;
                }
                alive += 1;
            }
            if alive != isl.live {
                out.ok = false;
                if detail {
                    out.detail = format!("island {k}: {alive} of its {} running nodes are seen alive", isl.live);
                }
                return out;
            }
        }
        out
    }
}
