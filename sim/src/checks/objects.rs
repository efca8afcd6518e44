//! Object checkers.
//!
//! - **Per-phase convergence**: at the start of every phase (after its fault is applied),
//!   the union of the heads of every running holder of every object, per island, is the
//!   phase's *target*. At each sample the phase has converged once every running holder of
//!   each object contains its island's target (`Document::has_heads`). New writes during the
//!   phase do not move the target, so this measures how long what existed at a heal took to
//!   reach everyone, even under write load. Within a phase nothing crashes (crashes are
//!   faults, so they start phases), so a target never names a change that vanished.
//! - **End-of-run invariants**: see [`crate::report::ObjectsCheck`]. Holders with equal
//!   digests have equal documents, so each document is read once per island, object and
//!   digest.

use std::collections::{BTreeMap, BTreeSet};

use liquid_core::Time;
use serde_json::Value as Json;
use state_sync::automerge::{ChangeHash, ROOT, ReadDoc};
use state_sync::{Digest, Document, Heads, ObjectName};

use crate::engine::Engine;
use crate::metrics::Target;
use crate::report::{CoreObjectStats, ObjectsCheck};
use crate::workload::{Outcome, key_of, parse_key, value_of};

/// How many problems a check keeps as examples.
const PROBLEMS_MAX: usize = 10;
/// A write unanswered this long at the end counts as stuck.
const STUCK_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

/// What one copy's document says.
struct Content<'a> {
    value: Json,
    doc: &'a Document,
}

/// A node's document: in its memory, or read from its store when it is cold there.
enum DocRef<'a> {
    Hot(&'a Document),
    Cold(Box<Document>),
}

impl std::ops::Deref for DocRef<'_> {
    type Target = Document;
    fn deref(&self) -> &Document {
        match self {
            DocRef::Hot(d) => d,
            DocRef::Cold(d) => d,
        }
    }
}

/// Node `i`'s document of `name`, if it is running and holds it.
fn doc_at<'a>(engine: &'a Engine<'_>, i: usize, name: &ObjectName) -> Option<DocRef<'a>> {
    let sn = &engine.nodes[i];
    let node = sn.node.as_ref()?;
    if node.objects().is_cold(name) {
        return sn.store.read(name, node.objects().actor().clone()).map(|d| DocRef::Cold(Box::new(d)));
    }
    node.objects().doc(name).map(DocRef::Hot)
}

fn secs(t: Time) -> f64 {
    t.as_micros() as f64 / 1e6
}

impl ObjectsCheck {
    fn problem(&mut self, text: impl FnOnce() -> String) {
        if self.problems.len() < PROBLEMS_MAX {
            self.problems.push(text());
        }
    }
}

impl Engine<'_> {
    fn island_of(&self, i: u32) -> u32 {
        self.net.island(self.site(i))
    }

    /// A phase began (its fault is applied): sets its convergence target and checks it.
    pub(crate) fn objects_phase_started(&mut self) {
        if !self.sc.has_workloads() {
            return;
        }
        let mut union: BTreeMap<u32, BTreeMap<ObjectName, BTreeSet<ChangeHash>>> = BTreeMap::new();
        for (i, sn) in self.nodes.iter().enumerate() {
            let Some(node) = &sn.node else { continue };
            let island = union.entry(self.island_of(i as u32)).or_default();
            for (name, _) in node.objects().digests() {
                if let Some(doc) = doc_at(self, i, name) {
                    island.entry(name.clone()).or_default().extend(doc.heads().0);
                }
            }
        }
        let target = union
            .into_iter()
            .map(|(k, objs)| (k, objs.into_iter().map(|(n, h)| (n, Heads(h.into_iter().collect()))).collect()))
            .collect();
        self.metrics.obj_target = Some(Target(target));
        self.objects_sample();
    }

    /// Checks the current phase's object convergence (until it converged).
    pub(crate) fn objects_sample(&mut self) {
        let Some(Target(target)) = &self.metrics.obj_target else { return };
        for (i, sn) in self.nodes.iter().enumerate() {
            let Some(node) = &sn.node else { continue };
            let Some(island) = target.get(&self.island_of(i as u32)) else { continue };
            for (name, _) in node.objects().digests() {
                let (Some(heads), Some(doc)) = (island.get(name), doc_at(self, i, name)) else { continue };
                if !doc.has_heads(heads) {
                    return;
                }
            }
        }
        let now = self.now;
        self.metrics.objects_converged(now);
    }

    /// The core's object counters over the running nodes.
    pub(crate) fn core_object_stats(&self) -> CoreObjectStats {
        let mut c = CoreObjectStats::default();
        for node in self.nodes.iter().filter_map(|n| n.node.as_ref()) {
            let o = node.objects();
            let s = o.stats();
            c.held += o.held() as u64;
            c.sync_sent += s.sync_sent;
            c.sync_bytes_sent += s.sync_bytes_sent;
            c.sync_refused += s.sync_refused;
            c.writes_acked += s.writes_acked;
            c.writes_failed += s.writes_failed;
            c.flushes += s.flushes;
            c.compactions += s.compactions;
            c.evictions += s.evictions;
            c.loads += s.loads;
        }
        c
    }

    /// The end-of-run object invariants.
    pub(crate) fn objects_final(&self) -> ObjectsCheck {
        let mut c = ObjectsCheck { restore_errors: self.restore_errors.len() as u64, ..Default::default() };
        for (node, object, error) in &self.restore_errors {
            let name = self.sc.node_name(*node);
            c.problem(|| format!("{name}: object {object} failed to load on restart: {error}"));
        }

        // Holders by island and object.
        let mut groups: BTreeMap<(u32, &ObjectName), Vec<(u32, Digest)>> = BTreeMap::new();
        let mut names = BTreeSet::new();
        for (i, sn) in self.nodes.iter().enumerate() {
            let Some(node) = &sn.node else { continue };
            for (name, digest) in node.objects().digests() {
                groups.entry((self.island_of(i as u32), name)).or_default().push((i as u32, digest));
                names.insert(name);
                c.copies += 1;
            }
        }
        c.objects = names.len();

        // Acknowledged writes by object.
        let mut acked: Vec<Vec<(u32, u32)>> = vec![Vec::new(); self.wl.objects.len()];
        for (n, writes) in self.wl.writes.iter().enumerate() {
            for (seq, w) in writes.iter().enumerate() {
                if !matches!(w.outcome, Outcome::Acked(_)) {
                    continue;
                }
                c.acked_writes += 1;
                if w.wiped {
                    c.unverifiable += 1;
                } else {
                    acked[w.object as usize].push((n as u32, seq as u32));
                }
            }
        }
        let mut lost: BTreeSet<(u32, u32)> = BTreeSet::new();

        // A running node that acknowledged a write holds its object.
        for (oi, writes) in acked.iter().enumerate() {
            let name = &self.wl.objects[oi];
            for &(n, seq) in writes {
                let held = groups.get(&(self.island_of(n), name)).is_some_and(|h| h.iter().any(|(h, _)| *h == n));
                if self.running(n) && !held && lost.insert((n, seq)) {
                    let who = self.sc.node_name(n);
                    c.problem(|| format!("{name}: {who} acknowledged {} but does not hold the object", key_of(n, seq)));
                }
            }
        }

        c.converged = true;
        for (&(island, name), holders) in &groups {
            let digests: BTreeSet<Digest> = holders.iter().map(|(_, d)| *d).collect();
            if digests.len() > 1 {
                c.converged = false;
                let (a, da) = holders[0];
                if let Some((b, _)) = holders.iter().find(|(_, d)| *d != da) {
                    let (a, b) = (self.sc.node_name(a), self.sc.node_name(*b));
                    let (h, d) = (holders.len(), digests.len());
                    c.problem(|| {
                        format!(
                            "{name}: {h} holders on island {island} hold {d} different versions ({a} and {b} differ)"
                        )
                    });
                }
            }
            let Some(oi) = self.wl.object_index(name) else {
                c.unknown_keys += 1;
                c.problem(|| format!("{name}: an object no workload writes"));
                continue;
            };
            // Acknowledged writes that must be here: their node runs on this island.
            let due: Vec<(u32, u32)> = acked[oi as usize]
                .iter()
                .copied()
                .filter(|&(n, _)| self.running(n) && self.island_of(n) == island)
                .collect();
            let mut wrong = false;
            for digest in &digests {
                let Some(&(h, _)) = holders.iter().find(|(_, d)| d == digest) else { continue };
                let Some(doc) = doc_at(self, h as usize, name) else {
                    continue;
                };
                let content = Content { value: doc.value(), doc: &doc };
                let holder = self.sc.node_name(h);
                let copies = holders.iter().filter(|(_, d)| d == digest).count();
                for &(n, seq) in &due {
                    let w = &self.wl.writes[n as usize][seq as usize];
                    let key = key_of(n, seq);
                    if content.value.get(&key) != Some(&value_of(n, seq, w.value_bytes)) && lost.insert((n, seq)) {
                        let who = self.sc.node_name(n);
                        let at = if let Outcome::Acked(t) = w.outcome { secs(t) } else { 0.0 };
                        c.problem(|| {
                            format!("{name}: write {key} acknowledged by {who} at {at:.3}s is missing on {holder} (and {} other copies with its digest)", copies - 1)
                        });
                    }
                }
                if let Err(e) = self.check_counter(name, &content) {
                    wrong = true;
                    c.problem(|| format!("{name} on {holder}: {e}"));
                }
                if let Some(keys) = content.value.as_object() {
                    for key in keys.keys().filter(|k| *k != "count") {
                        let known = parse_key(key)
                            .and_then(|(n, seq)| self.wl.writes.get(n as usize)?.get(seq as usize))
                            .is_some_and(|w| w.object == oi);
                        if !known {
                            c.unknown_keys += 1;
                            c.problem(|| format!("{name} on {holder}: key {key:?} that no write of this object made"));
                        }
                    }
                }
            }
            c.counters_checked += 1;
            c.counters_wrong += u64::from(wrong);
        }

        // Writes acknowledged by nodes that are down at the end: in their durable store.
        let mut by_node: BTreeMap<(u32, u32), Vec<u32>> = BTreeMap::new();
        for (oi, writes) in acked.iter().enumerate() {
            for &(n, seq) in writes {
                if !self.running(n) {
                    by_node.entry((n, oi as u32)).or_default().push(seq);
                }
            }
        }
        for ((n, oi), seqs) in by_node {
            let name = &self.wl.objects[oi as usize];
            let mut store = self.nodes[n as usize].store.clone();
            let actor = state_sync::automerge::ActorId::from(b"sim-check".as_slice());
            let value = match state_sync::store::restore(&mut store, name, actor) {
                Ok(Some(r)) => r.doc.value(),
                Ok(None) => Json::Null,
                Err(e) => {
                    let who = self.sc.node_name(n);
                    c.problem(|| format!("{name}: the store of {who} (down) does not load: {e}"));
                    Json::Null
                }
            };
            for seq in seqs {
                let w = &self.wl.writes[n as usize][seq as usize];
                let key = key_of(n, seq);
                if value.get(&key) != Some(&value_of(n, seq, w.value_bytes)) && lost.insert((n, seq)) {
                    let who = self.sc.node_name(n);
                    c.problem(|| {
                        format!(
                            "{name}: write {key} acknowledged by {who}, down at the end, is not in its durable store"
                        )
                    });
                }
            }
        }
        c.lost = lost.len() as u64;
        c.verified = c.acked_writes - c.unverifiable - c.lost;

        // Writes never answered.
        let end = self.now;
        for (n, writes) in self.wl.writes.iter().enumerate() {
            for (seq, w) in writes.iter().enumerate() {
                if w.outcome == Outcome::Pending {
                    c.unanswered_at_end += 1;
                    if end.since(w.sent) >= STUCK_AFTER {
                        c.stuck += 1;
                        let (who, at) = (self.sc.node_name(n as u32), secs(w.sent));
                        c.problem(|| {
                            format!("write {} by {who} at {at:.3}s was never answered", key_of(n as u32, seq as u32))
                        });
                    }
                }
            }
        }
        debug_assert_eq!(c.unanswered_at_end, self.wl.pending() as u64);

        c.ok = c.converged
            && c.lost == 0
            && c.counters_wrong == 0
            && c.unknown_keys == 0
            && c.stuck == 0
            && c.restore_errors == 0;
        c
    }

    /// Checks a copy's counter: an error unless it equals the sum of the increments of the
    /// writes in the document, or if the key holds several counters (which concurrent creation
    /// made before issue 17, and must not any more; the report's `counters_conflicted` stays 0).
    fn check_counter(&self, name: &ObjectName, content: &Content) -> Result<(), String> {
        let values = content.doc.automerge().get_all(ROOT, "count").map_err(|e| e.to_string())?;
        if values.len() > 1 {
            // Concurrent first `inc`s make one counter (a structural change every replica
            // makes identically, issue 17): two counters at one key mean that broke.
            return Err(format!("{} counters at `count`: concurrent creations were not merged into one", values.len()));
        }
        let oi = self.wl.object_index(name);
        let mut expected: i64 = 0;
        if let Some(keys) = content.value.as_object() {
            for key in keys.keys() {
                let Some((n, seq)) = parse_key(key) else { continue };
                if let Some(w) = self.wl.writes.get(n as usize).and_then(|ws| ws.get(seq as usize))
                    && Some(w.object) == oi
                {
                    expected += w.inc.unwrap_or(0);
                }
            }
        }
        let actual = match content.value.get("count") {
            None => 0,
            Some(v) => v.as_i64().ok_or_else(|| format!("count is {v}, not a number"))?,
        };
        if values.is_empty() && expected != 0 {
            return Err(format!("no counter, but the writes present add up to {expected}"));
        }
        if actual != expected {
            return Err(format!("count is {actual}, but the writes present add up to {expected}"));
        }
        Ok(())
    }
}
