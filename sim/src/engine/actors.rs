//! Actors in the simulator: what the driver does for the core's migration outputs, and the
//! record of every actor execution the fencing check reads.
//!
//! - [`Output::Prefetch`](liquid_core::Output::Prefetch): the target fetches the module like an
//!   execution does (nothing if it holds it; else one round trip plus the transfer from the
//!   first reachable holder the core lists), then gets `handle_prefetched`.
//! - [`Output::Handoff`](liquid_core::Output::Handoff): the snapshot (the function's
//!   `state_kib`) travels one way to the target: latency plus size over the link's bandwidth,
//!   counted as WAN bytes between sites. If the target is down or cut off when it arrives (or
//!   when it leaves), the source gets `handle_handoff_sent(Err)` [`HANDOFF_TIMEOUT`] after it
//!   left. Otherwise the target gets `handle_snapshot_received`, and its acknowledgement takes
//!   one more one-way trip back: the source gets `handle_handoff_sent(Ok(bytes))` then, or
//!   `Err` after the timeout if the link was cut meanwhile (the target may have activated: the
//!   source's roll-back at epoch + 2 must fence it).
//! - `Output::Deactivate`: nothing to drop (the simulator keeps no live actor instance: every
//!   call runs on a fresh instance); counted.
//!
//! Every execution of an actor is recorded with its node, epoch, start (when the core asked
//! for it) and end (its outcome delivered, or its node's crash), for [`fencing_violations`].

use std::collections::BTreeMap;
use std::time::Duration;

use liquid_core::Time;
use liquid_core::functions::{Handoff, MigrationEvent, Prefetch};

use super::Engine;
use super::queue::Ev;

/// How long a hand-off's source waits for the target's acknowledgement.
pub(crate) const HANDOFF_TIMEOUT: Duration = Duration::from_secs(5);

/// One execution of an actor's call.
#[derive(Clone, Debug)]
pub(crate) struct ActorExec {
    pub name: String,
    pub node: u32,
    pub epoch: u64,
    pub start: Time,
    /// `None` while running (at the end of the run: still running).
    pub end: Option<Time>,
}

/// One migration event, as a node reported it.
#[derive(Clone, Debug)]
pub(crate) struct MigrationRecord {
    pub at: Time,
    pub node: u32,
    pub event: MigrationEvent,
}

/// Two executions of one actor on different nodes that overlap in virtual time.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Overlap {
    pub name: String,
    pub a: (u32, u64, Time),
    pub b: (u32, u64, Time),
}

/// Every overlap of executions of one actor on different nodes (executions still running at
/// the end count as running until `end`).
pub(crate) fn fencing_violations(runs: &[ActorExec], end: Time) -> Vec<Overlap> {
    let mut by_actor: BTreeMap<&str, Vec<&ActorExec>> = BTreeMap::new();
    for r in runs {
        by_actor.entry(&r.name).or_default().push(r);
    }
    let mut out = Vec::new();
    for (name, mut list) in by_actor {
        list.sort_by_key(|r| (r.start, r.node));
        // Executions whose end is after the current start.
        let mut open: Vec<&ActorExec> = Vec::new();
        for r in list {
            open.retain(|o| o.end.unwrap_or(end) > r.start);
            if let Some(o) = open.iter().find(|o| o.node != r.node) {
                out.push(Overlap {
                    name: name.to_string(),
                    a: (o.node, o.epoch, o.start),
                    b: (r.node, r.epoch, r.start),
                });
            }
            open.push(r);
        }
    }
    out
}

impl Engine<'_> {
    /// Node `i` is a migration target: fetch the module.
    pub(super) fn prefetch(&mut self, i: u32, p: Prefetch) {
        let life = self.nodes[i as usize].life;
        if self.fx.held[i as usize].contains(&p.hash) {
            self.push(self.now, Ev::Prefetched { node: i, life, name: p.name, result: Ok(()) });
            return;
        }
        let source = p.sources.iter().filter_map(|s| self.index_of(s)).find(|&s| {
            self.running(s)
                && self.fx.held[s as usize].contains(&p.hash)
                && self.net.reachable(self.site(i), self.site(s))
        });
        match source {
            Some(s) => {
                let link = self.link(i, s);
                let d = self.net.delay(&link, 64) + self.net.delay(&link, p.size as usize);
                self.fnm.fetches += 1;
                self.fnm.fetched_bytes += p.size;
                self.count_wan(i, s, p.size + 64, "module");
                self.fx.prefetching.insert((i, p.name.clone()), p.hash);
                self.push(self.now + d, Ev::Prefetched { node: i, life, name: p.name, result: Ok(()) });
            }
            None => {
                let why = format!("module {} is not here and no reachable node holds it", p.hash.short());
                self.push(self.now, Ev::Prefetched { node: i, life, name: p.name, result: Err(why) });
            }
        }
    }

    pub(super) fn prefetched(&mut self, i: u32, life: u32, name: String, result: Result<(), String>) {
        let hash = self.fx.prefetching.remove(&(i, name.clone()));
        if self.nodes[i as usize].life != life || !self.running(i) {
            return;
        }
        if let (Some(hash), Ok(())) = (hash, &result) {
            self.fx.held[i as usize].insert(hash);
        }
        let now = self.now;
        if let Some(n) = self.nodes[i as usize].node.as_mut() {
            n.handle_prefetched(now, &name, result);
        }
        self.drain(i);
    }

    /// Node `i` streams an actor's snapshot.
    pub(super) fn handoff(&mut self, i: u32, h: Handoff) {
        let from_life = self.nodes[i as usize].life;
        let bytes = self.sc.functions.iter().find(|f| f.manifest.name == h.name).map_or(64 * 1024, |f| f.state_bytes);
        let fail_at = self.now + HANDOFF_TIMEOUT;
        let to = self.index_of(&h.to).filter(|&t| self.running(t) && self.net.reachable(self.site(i), self.site(t)));
        let Some(to) = to else {
            let result = Err("the target is down or cut off".to_string());
            self.push(fail_at, Ev::HandoffDone { node: i, life: from_life, name: h.name, epoch: h.epoch, result });
            return;
        };
        let link = self.link(i, to);
        let d = self.net.delay(&link, bytes as usize);
        self.fnm.handoffs += 1;
        self.fnm.handoff_bytes += bytes;
        self.count_wan(i, to, bytes, "snapshot");
        let to_life = self.nodes[to as usize].life;
        let ev = Ev::SnapshotArrives {
            from: i,
            from_life,
            to,
            to_life,
            name: h.name,
            epoch: h.epoch,
            bytes,
            sent: self.now,
        };
        self.push(self.now + d, ev);
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn snapshot_arrives(
        &mut self,
        from: u32,
        from_life: u32,
        to: u32,
        to_life: u32,
        name: String,
        epoch: u64,
        bytes: u64,
        sent: Time,
    ) {
        let fail_at = (sent + HANDOFF_TIMEOUT).max(self.now);
        let arrived = self.nodes[to as usize].life == to_life
            && self.running(to)
            && self.net.reachable(self.site(from), self.site(to));
        if !arrived {
            let result = Err("the snapshot did not arrive (target down or cut off)".to_string());
            self.push(fail_at, Ev::HandoffDone { node: from, life: from_life, name, epoch, result });
            return;
        }
        let (now, from_id) = (self.now, self.ids[from as usize]);
        if let Some(n) = self.nodes[to as usize].node.as_mut() {
            n.handle_snapshot_received(now, from_id, &name, epoch);
        }
        self.drain(to);
        // The acknowledgement travels back; a cut meanwhile loses it.
        let link = self.link(to, from);
        let back = self.now + self.net.delay(&link, 64);
        if self.net.reachable(self.site(from), self.site(to)) {
            self.push(back, Ev::HandoffDone { node: from, life: from_life, name, epoch, result: Ok(bytes) });
        } else {
            let result = Err("the acknowledgement was lost".to_string());
            self.push(fail_at.max(back), Ev::HandoffDone { node: from, life: from_life, name, epoch, result });
        }
    }

    pub(super) fn handoff_done(&mut self, i: u32, life: u32, name: String, epoch: u64, result: Result<u64, String>) {
        if self.nodes[i as usize].life != life || !self.running(i) {
            return;
        }
        let now = self.now;
        if let Some(n) = self.nodes[i as usize].node.as_mut() {
            n.handle_handoff_sent(now, &name, epoch, result);
        }
        self.drain(i);
    }

    /// Function bytes (module, snapshot) between `a` and `b`: WAN bytes if in different sites.
    pub(super) fn count_wan(&mut self, a: u32, b: u32, bytes: u64, kind: &'static str) {
        if self.site(a) != self.site(b) {
            *self.fnm.wan_by_kind.entry(kind).or_default() += bytes;
            self.fnm.wan_bytes += bytes;
            self.fnm.wan_fn_bytes += bytes;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(node: u32, start: u64, end: Option<u64>) -> ActorExec {
        ActorExec { name: "a".into(), node, epoch: 1, start: Time(start), end: end.map(Time) }
    }

    #[test]
    fn overlaps_on_different_nodes_are_violations() {
        let ok = [run(1, 0, Some(10)), run(1, 5, Some(20)), run(2, 20, Some(30)), run(1, 30, None)];
        assert!(fencing_violations(&ok, Time(100)).is_empty());
        let bad = [run(1, 0, Some(10)), run(2, 9, Some(12))];
        assert_eq!(fencing_violations(&bad, Time(100)).len(), 1);
        let open = [run(1, 0, None), run(2, 50, Some(60))];
        assert_eq!(fencing_violations(&open, Time(100)).len(), 1);
    }
}
