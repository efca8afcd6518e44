//! Per-phase accounting, filled as the run goes and owned by the engine: phases and their
//! convergence times, false suspicions (found by [`crate::checks`]), write outcomes and
//! acknowledgement latencies, and traffic (every message sent, by kind, with its encoded size,
//! and why drops happened). At the end the phases go into the [`crate::report::Report`].

use std::collections::BTreeMap;
use std::time::Duration;

use liquid_core::Time;
use state_sync::{Heads, ObjectName};

use crate::report::{FalseSuspicions, Latency, Phase, PhaseObjects, Traffic};
use crate::scenario::Scenario;

/// Virtual seconds since the start of the run.
pub(crate) fn secs(t: Time) -> f64 {
    t.as_micros() as f64 / 1e6
}

/// Per-phase counters, filled as the run goes.
pub(crate) struct Metrics {
    pub phases: Vec<Phase>,
    phase_start: Time,
    /// A `suspect` counts as false only if the pair was stable this long before it.
    pub(crate) suspect_window: Duration,
    /// A `down` counts as false only if the pair was stable this long before it.
    pub(crate) down_window: Duration,
    /// Whether the scenario has workloads (phases then carry object figures).
    objects: bool,
    /// Acknowledgement latencies of the current phase, and of the whole run (µs).
    latencies: Vec<u64>,
    pub all_latencies: Vec<u64>,
    /// What the current phase's object convergence waits for, if it has not converged yet.
    pub(crate) obj_target: Option<Target>,
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

    pub(crate) fn current(&mut self) -> &mut Phase {
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

    pub(crate) fn converged(&mut self, now: Time, ok: bool) {
        let start = self.phase_start;
        let p = self.current();
        if ok && p.converged_after_s.is_none() {
            p.converged_after_s = Some(now.since(start).as_micros() as f64 / 1e6);
        }
        p.converged_at_end = ok;
    }
}

/// Per island, per object: the changes every holder must contain.
pub(crate) struct Target(pub(crate) BTreeMap<u32, BTreeMap<ObjectName, Heads>>);
