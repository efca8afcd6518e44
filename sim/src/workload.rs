//! Write workloads: which node writes what, when, and what became of every write.
//!
//! Each `[[workload]]` is a Poisson process of `rate` writes per second. A write picks a
//! writer uniformly among `writers` and an object by the workload's key distribution; if the
//! writer is down, the write is skipped (and counted). Every write is one atomic batch:
//! `set w<node>_<seq>` to a value derived from the key (unique to the write, so the end
//! checks can look for it in every replica), plus, for a share `inc` of writes, `inc count`.
//! Before the writers start, a `creator` node creates every object with its counter at 0:
//! counters created concurrently by nodes that did not hold the object lose increments, by
//! automerge's design.
//!
//! Randomness comes from the workloads' own ChaCha8 stream, seeded from the run's seed.

use std::collections::BTreeMap;

use liquid_core::Time;
use liquid_core::objects::{Change, Durability, ObjectError, Reply, Request, RequestId};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use serde_json::Value as Json;
use state_sync::ops::Op;
use state_sync::{ObjectName, Path};

use crate::scenario::Workload;

/// What became of a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// No reply yet.
    Pending,
    /// Acknowledged at this time.
    Acked(Time),
    /// Answered with an error.
    Failed,
    /// The writer crashed before answering.
    Unanswered,
}

/// One write a node was asked to make.
#[derive(Clone, Debug)]
pub(crate) struct WriteRec {
    /// Index into [`Workloads::objects`].
    pub object: u32,
    /// What it added to `count`, if it had an `inc` (0 for the creation).
    pub inc: Option<i64>,
    pub value_bytes: u32,
    pub sent: Time,
    pub outcome: Outcome,
    /// The writer's disk was wiped (a `fresh` restart) after this write: if it never left
    /// the node, it is legitimately gone, so it cannot be checked.
    pub wiped: bool,
}

/// A write about to be handed to a node.
pub(crate) struct Submit {
    pub node: u32,
    pub id: RequestId,
    pub request: Request,
}

/// All workloads of a run, and every write they made.
pub(crate) struct Workloads {
    /// Every object any workload writes, each once, in first-use order.
    pub objects: Vec<ObjectName>,
    index: BTreeMap<ObjectName, u32>,
    /// Per workload: its objects as indexes into `objects`.
    objects_of: Vec<Vec<u32>>,
    /// Per workload with Zipf keys: the cumulative distribution over its objects.
    cdf: Vec<Option<Vec<f64>>>,
    /// Per node: its writes, by sequence number (the `<seq>` of `w<node>_<seq>`).
    pub writes: Vec<Vec<WriteRec>>,
    /// Requests not answered yet: request id → (node, seq).
    pending: BTreeMap<u64, (u32, u32)>,
    next_request: u64,
    rng: ChaCha8Rng,
}

/// The unique key of write `seq` of `node`.
pub(crate) fn key_of(node: u32, seq: u32) -> String {
    format!("w{node}_{seq}")
}

/// The node and sequence number in a key made by [`key_of`].
pub(crate) fn parse_key(key: &str) -> Option<(u32, u32)> {
    let (node, seq) = key.strip_prefix('w')?.split_once('_')?;
    Some((node.parse().ok()?, seq.parse().ok()?))
}

/// The value write `seq` of `node` sets.
pub(crate) fn value_of(node: u32, seq: u32, bytes: u32) -> Json {
    if bytes == 0 {
        return Json::from(seq);
    }
    let mut s = format!("{node}.{seq}.");
    let fill = (bytes as usize).saturating_sub(s.len());
    s.extend(std::iter::repeat_n('x', fill));
    s.truncate(bytes as usize);
    Json::from(s)
}

/// A short, stable name of an error, for the report.
pub(crate) fn error_kind(e: &ObjectError) -> &'static str {
    match e {
        ObjectError::NotFound { .. } => "not_found",
        ObjectError::Unavailable { .. } => "unavailable",
        ObjectError::HeadsTimeout { .. } => "heads_timeout",
        ObjectError::Invalid { .. } => "invalid",
        ObjectError::Disk { .. } => "disk",
        ObjectError::Quorum { .. } => "quorum",
        ObjectError::Full { .. } => "full",
        ObjectError::Quota { .. } => "quota",
        ObjectError::Storage { .. } => "storage",
        _ => "other",
    }
}

impl Workloads {
    pub fn new(workloads: &[Workload], nodes: usize, seed: u64) -> Self {
        let mut w = Workloads {
            objects: Vec::new(),
            index: BTreeMap::new(),
            objects_of: Vec::new(),
            cdf: Vec::new(),
            writes: vec![Vec::new(); if workloads.is_empty() { 0 } else { nodes }],
            pending: BTreeMap::new(),
            next_request: 1,
            rng: ChaCha8Rng::seed_from_u64(seed),
        };
        for wl in workloads {
            let ids = wl
                .objects
                .iter()
                .map(|name| {
                    let next = w.objects.len() as u32;
                    *w.index.entry(name.clone()).or_insert_with(|| {
                        w.objects.push(name.clone());
                        next
                    })
                })
                .collect();
            w.objects_of.push(ids);
            w.cdf.push(wl.zipf.map(|s| {
                let weights: Vec<f64> = (1..=wl.objects.len()).map(|k| (k as f64).powf(-s)).collect();
                let total: f64 = weights.iter().sum();
                let mut acc = 0.0;
                weights
                    .iter()
                    .map(|x| {
                        acc += x / total;
                        acc
                    })
                    .collect()
            }));
        }
        w
    }

    /// The index of an object, if a workload writes it.
    pub fn object_index(&self, name: &ObjectName) -> Option<u32> {
        self.index.get(name).copied()
    }

    /// A uniform number in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The time from one write of workload `wl` to the next (exponential).
    pub fn gap(&mut self, wl: &Workload) -> std::time::Duration {
        let u = self.unit();
        let secs = -(1.0 - u).ln() / wl.rate;
        std::time::Duration::from_micros((secs * 1e6).round().max(1.0) as u64)
    }

    /// Draws the next write of workload `k`: (writer, object index, whether it increments).
    pub fn draw(&mut self, k: usize, wl: &Workload) -> (u32, u32, bool) {
        let writer = wl.writers[(self.rng.next_u64() % wl.writers.len() as u64) as usize];
        let len = self.objects_of[k].len();
        let pick = match &self.cdf[k] {
            None => (self.rng.next_u64() % len as u64) as usize,
            Some(_) => {
                let u = self.unit();
                let cdf = self.cdf[k].as_deref().unwrap_or_default();
                cdf.partition_point(|&c| c <= u).min(len - 1)
            }
        };
        let object = self.objects_of[k][pick];
        let inc = self.unit() < wl.inc;
        (writer, object, inc)
    }

    /// The objects of workload `k`.
    pub fn objects_of(&self, k: usize) -> &[u32] {
        &self.objects_of[k]
    }

    /// Records a write by `node` and builds its request.
    pub fn submit(
        &mut self,
        now: Time,
        node: u32,
        object: u32,
        inc: Option<i64>,
        value_bytes: u32,
        durability: Durability,
    ) -> Submit {
        let writes = &mut self.writes[node as usize];
        let seq = writes.len() as u32;
        writes.push(WriteRec { object, inc, value_bytes, sent: now, outcome: Outcome::Pending, wiped: false });
        let key = key_of(node, seq);
        let mut ops = Vec::with_capacity(2);
        if let Ok(path) = Path::parse(&key) {
            ops.push(Op::Set { path, value: value_of(node, seq, value_bytes), text: false });
        }
        if let (Some(by), Ok(path)) = (inc, Path::parse("count")) {
            ops.push(Op::Inc { path, by });
        }
        let id = self.next_request;
        self.next_request += 1;
        self.pending.insert(id, (node, seq));
        let request =
            Request::Write { object: self.objects[object as usize].clone(), change: Change::Ops(ops), durability };
        Submit { node, id: RequestId(id), request }
    }

    /// A reply from `node`. Returns the write's latency and, for an error, its kind; `None`
    /// if the id is not a pending write of this node.
    pub fn reply(
        &mut self,
        now: Time,
        node: u32,
        id: RequestId,
        reply: &Reply,
    ) -> Option<(Time, Result<(), &'static str>)> {
        let (n, seq) = self.pending.remove(&id.0)?;
        if n != node {
            return None;
        }
        let rec = &mut self.writes[n as usize][seq as usize];
        let result = match reply {
            Reply::Value { .. } => {
                rec.outcome = Outcome::Acked(now);
                Ok(())
            }
            Reply::Error(e) => {
                rec.outcome = Outcome::Failed;
                Err(error_kind(e))
            }
            _ => {
                rec.outcome = Outcome::Failed;
                Err("unexpected_reply")
            }
        };
        Some((rec.sent, result))
    }

    /// `node` crashed: its pending writes will never be answered. Returns how many.
    pub fn crashed(&mut self, node: u32) -> u64 {
        let ids: Vec<u64> = self.pending.iter().filter(|(_, (n, _))| *n == node).map(|(id, _)| *id).collect();
        for id in &ids {
            if let Some((n, seq)) = self.pending.remove(id) {
                self.writes[n as usize][seq as usize].outcome = Outcome::Unanswered;
            }
        }
        ids.len() as u64
    }

    /// `node`'s disk was wiped: what it acknowledged so far may be gone with it.
    pub fn wiped(&mut self, node: u32) {
        if let Some(writes) = self.writes.get_mut(node as usize) {
            for w in writes {
                w.wiped = true;
            }
        }
    }

    /// Writes still waiting for an answer.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_values_have_their_size() {
        assert_eq!(parse_key(&key_of(12, 345)), Some((12, 345)));
        assert_eq!(parse_key("count"), None);
        assert_eq!(parse_key("w1_x"), None);
        assert_eq!(value_of(3, 7, 0), Json::from(7));
        for bytes in [1, 5, 6, 100] {
            assert_eq!(value_of(3, 7, bytes).as_str().map(str::len), Some(bytes as usize));
        }
        assert_ne!(value_of(3, 7, 40), value_of(3, 8, 40));
    }
}
