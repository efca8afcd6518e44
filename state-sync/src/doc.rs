//! One object's automerge document: apply batches of [`Op`]s, read it as JSON, save it.
//!
//! # Assumptions
//! - **The actor id is unique per process start**, not just per node: after a crash a node
//!   may have lost changes it made but had not persisted; reusing the actor id would create
//!   a second, different change with the same (actor, sequence number), which other
//!   replicas refuse. Derive it from the node id plus a boot counter kept in the data dir
//!   (or the simulator's seeded RNG).
//! - **Timestamps are inputs.** Each change records the `timestamp` passed to
//!   [`Document::apply`] (seconds since the Unix epoch by automerge's convention); it is part
//!   of the change's hash, so the simulator passes virtual time and a seed still reproduces
//!   every hash.
//!
//! # Saving
//! [`Document::unsaved`] returns the changes made or received since the last
//! [`Document::mark_saved`] as one incremental save. [`crate::store::persist`] appends it to
//! the object's log and marks it saved; it is durable once the store's `sync` returns.

use std::fmt;

use automerge::{ActorId, Automerge, ChangeHash, ObjId, ObjType, ROOT, ReadDoc, SaveOptions, ScalarValue, Value};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::ops::{self, BatchError, OPS_PER_BATCH_MAX, Op};

mod structural;

/// Nesting deeper than this is read as `null` (only imported documents can be that deep).
const READ_DEPTH_MAX: usize = 256;

/// A document's heads: the hashes of the changes nothing else depends on yet, sorted.
/// Equal heads mean equal documents. (De)serializes as a list of hex strings.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub struct Heads(pub Vec<ChangeHash>);

impl Heads {
    /// The heads as hex strings.
    pub fn to_hex(&self) -> Vec<String> {
        self.0.iter().map(ToString::to_string).collect()
    }

    /// Parses hex strings (in any order) into sorted heads.
    pub fn parse_hex<S: AsRef<str>>(hex: &[S]) -> Result<Self, HeadsError> {
        let mut heads = hex
            .iter()
            .map(|h| h.as_ref().parse().map_err(|_| HeadsError { head: h.as_ref().to_owned() }))
            .collect::<Result<Vec<ChangeHash>, _>>()?;
        heads.sort();
        heads.dedup();
        Ok(Heads(heads))
    }

    /// No changes at all (an empty document).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Heads {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let short: Vec<String> = self.0.iter().map(|h| h.to_string()[..8].to_owned()).collect();
        write!(f, "Heads{short:?}")
    }
}

impl TryFrom<Vec<String>> for Heads {
    type Error = HeadsError;
    fn try_from(v: Vec<String>) -> Result<Self, HeadsError> {
        Self::parse_hex(&v)
    }
}

impl From<Heads> for Vec<String> {
    fn from(h: Heads) -> Self {
        h.to_hex()
    }
}

/// A string that is not a change hash (64 hex digits).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{head:?} is not a change hash: expected 64 hex digits")]
pub struct HeadsError {
    /// The refused string.
    pub head: String,
}

/// What a read returns: the document's value and the heads it was read at.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The whole document as JSON (see [`Document::value`] for the mapping).
    pub value: Json,
    /// The heads the value was read at.
    pub heads: Heads,
}

/// Changes not yet marked saved, as one incremental save.
#[derive(Clone, Debug, PartialEq)]
pub struct Unsaved {
    /// Bytes for `Automerge::load_incremental` (a sequence of encoded changes).
    pub bytes: Vec<u8>,
    /// The heads these bytes bring a reader up to; pass them to [`Document::mark_saved`].
    pub heads: Heads,
}

/// Bytes that are not an automerge document or changes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid automerge document or change: {message}")]
pub struct LoadError {
    /// Automerge's explanation.
    pub message: String,
}

/// One object's automerge document.
#[derive(Debug)]
pub struct Document {
    doc: Automerge,
    saved: Vec<ChangeHash>,
}

impl Document {
    /// An empty document whose changes will be made by `actor`.
    pub fn new(actor: ActorId) -> Self {
        Document { doc: Automerge::new().with_actor(actor), saved: Vec::new() }
    }

    /// Rebuilds a document from stored chunks (full saves and incremental saves, in order),
    /// all of which count as saved.
    pub fn load<'a>(actor: ActorId, chunks: impl IntoIterator<Item = &'a [u8]>) -> Result<Self, LoadError> {
        let mut doc = Automerge::new().with_actor(actor);
        for chunk in chunks {
            doc.load_incremental(chunk).map_err(|e| LoadError { message: e.to_string() })?;
        }
        let saved = doc.get_heads();
        Ok(Document { doc, saved })
    }

    /// Applies `ops` atomically as one change stamped `timestamp`, and returns the new heads.
    /// On error nothing is applied.
    pub fn apply(&mut self, ops: &[Op], timestamp: i64) -> Result<Heads, BatchError> {
        if ops.len() > OPS_PER_BATCH_MAX {
            return Err(BatchError::TooManyOps { count: ops.len() });
        }
        // The batch runs once; if it created containers at missing paths, it is rolled back,
        // those containers are made by structural changes every replica makes identically
        // (see the ops module's "Concurrency"), and the batch runs again on top of them.
        let mut created = Vec::new();
        self.try_apply(ops, timestamp, &mut created, created_none)?;
        if created.is_empty() {
            return Ok(self.heads());
        }
        for c in &created {
            structural::create(&mut self.doc, c);
        }
        self.try_apply(ops, timestamp, &mut Vec::new(), |_| true)?;
        Ok(self.heads())
    }

    /// Runs `ops` in one transaction, recording what they create in `created`; commits if
    /// `commit(created)` says so, else rolls back.
    fn try_apply(
        &mut self,
        ops: &[Op],
        timestamp: i64,
        created: &mut Vec<ops::Created>,
        commit: impl FnOnce(&[ops::Created]) -> bool,
    ) -> Result<(), BatchError> {
        let mut tx = self.doc.transaction();
        for (index, op) in ops.iter().enumerate() {
            if let Err(source) = ops::apply(&mut tx, op, created) {
                tx.rollback();
                return Err(BatchError::Op { index, kind: op.kind(), path: op.path().clone(), source });
            }
        }
        if commit(created) {
            tx.commit_with(automerge::transaction::CommitOptions::default().with_time(timestamp));
        } else {
            tx.rollback();
        }
        Ok(())
    }

    /// The document's value and heads.
    pub fn read(&self) -> Snapshot {
        Snapshot { value: self.value(), heads: self.heads() }
    }

    /// The document as JSON: maps are objects, lists arrays, texts and strings strings,
    /// counters and timestamps (milliseconds) numbers. Values JSON cannot hold (bytes,
    /// non-finite floats, types from future automerge versions) read as `null`. Where
    /// concurrent writes conflict, the winner automerge picks is shown, the same everywhere.
    pub fn value(&self) -> Json {
        object_json(&self.doc, &ROOT, ObjType::Map, 0)
    }

    /// The value at the top-level `key`, read like [`Document::value`], or `None` if the
    /// document has no such key. Cheaper than reading the whole document for one field.
    pub fn value_at(&self, key: &str) -> Option<Json> {
        let (v, id) = self.doc.get(&ROOT, key).ok()??;
        Some(value_json(&self.doc, v, &id, 0))
    }

    /// The current heads.
    pub fn heads(&self) -> Heads {
        Heads(self.doc.get_heads())
    }

    /// Whether this document contains every change up to `heads` (so a peer at `heads` has
    /// nothing this document lacks).
    pub fn has_heads(&self, heads: &Heads) -> bool {
        heads.0.iter().all(|h| self.doc.get_change_meta_by_hash(h).is_some())
    }

    /// The changes this document knows it lacks: those that changes it holds depend on but
    /// that never arrived (automerge queues such changes, unapplied, until they do). Empty
    /// for a whole document.
    pub fn missing_deps(&self) -> Vec<ChangeHash> {
        self.doc.get_missing_deps(&[])
    }

    /// The changes not yet marked saved, if any.
    pub fn unsaved(&self) -> Option<Unsaved> {
        let heads = self.doc.get_heads();
        if heads == self.saved {
            return None;
        }
        Some(Unsaved { bytes: self.doc.save_after(&self.saved), heads: Heads(heads) })
    }

    /// Records that everything up to `heads` was handed to the store, so the next
    /// [`Document::unsaved`] starts after it.
    pub fn mark_saved(&mut self, heads: &Heads) {
        self.saved.clone_from(&heads.0);
    }

    /// The whole document, compressed (for export, and for compacting the log of a damaged
    /// document). Like `Automerge::save`, it includes the changes still waiting for
    /// dependencies this document lacks (automerge's *orphans*); see
    /// [`Document::save_applied`]. Does not mark anything saved.
    pub fn save(&self) -> Vec<u8> {
        self.doc.save()
    }

    /// The whole document, compressed, without the changes still waiting for dependencies
    /// this document lacks: what a log is compacted to. Orphans picked up from peers (a
    /// whole-document sync message carries the sender's, and `receive_sync_message` only asks
    /// for what the peer's heads need) do not belong in the log: read back, they make it look
    /// like a log that lost a change others depend on, which [`crate::store::restore`] can only
    /// take for damage. They come again, with their dependencies, from a peer that has both.
    /// Does not mark anything saved.
    pub fn save_applied(&self) -> Vec<u8> {
        self.doc.save_with_options(SaveOptions { retain_orphans: false, ..SaveOptions::default() })
    }

    /// Merges a document or changes made elsewhere (an import); returns whether anything
    /// new arrived. The new changes are unsaved until marked.
    pub fn import(&mut self, bytes: &[u8]) -> Result<bool, LoadError> {
        // `load_incremental` skips what it cannot parse; an import must refuse it instead.
        let strict = automerge::LoadOptions::new().on_partial_load(automerge::OnPartialLoad::Error);
        Automerge::load_with_options(bytes, strict).map_err(|e| LoadError { message: e.to_string() })?;
        let before = self.doc.get_heads();
        self.doc.load_incremental(bytes).map_err(|e| LoadError { message: e.to_string() })?;
        Ok(self.doc.get_heads() != before)
    }

    /// The underlying automerge document, to read it in other ways.
    pub fn automerge(&self) -> &Automerge {
        &self.doc
    }

    pub(crate) fn automerge_mut(&mut self) -> &mut Automerge {
        &mut self.doc
    }
}

/// Commits only batches that created nothing.
fn created_none(created: &[ops::Created]) -> bool {
    created.is_empty()
}

fn object_json(doc: &Automerge, obj: &ObjId, ty: ObjType, depth: usize) -> Json {
    if depth > READ_DEPTH_MAX {
        return Json::Null;
    }
    match ty {
        ObjType::Map | ObjType::Table => Json::Object(
            doc.keys(obj)
                .filter_map(|k| {
                    let (v, id) = doc.get(obj, k.as_str()).ok()??;
                    Some((k, value_json(doc, v, &id, depth)))
                })
                .collect(),
        ),
        ObjType::List => Json::Array(
            (0..doc.length(obj))
                .filter_map(|i| doc.get(obj, i).ok().flatten())
                .map(|(v, id)| value_json(doc, v, &id, depth))
                .collect(),
        ),
        ObjType::Text => doc.text(obj).map(Json::String).unwrap_or(Json::Null),
    }
}

fn value_json(doc: &Automerge, v: Value<'_>, id: &ObjId, depth: usize) -> Json {
    match v {
        Value::Object(ty) => object_json(doc, id, ty, depth + 1),
        Value::Scalar(s) => match s.as_ref() {
            ScalarValue::Str(s) => Json::String(s.to_string()),
            ScalarValue::Int(i) | ScalarValue::Timestamp(i) => Json::from(*i),
            ScalarValue::Uint(u) => Json::from(*u),
            ScalarValue::F64(f) => serde_json::Number::from_f64(*f).map(Json::Number).unwrap_or(Json::Null),
            ScalarValue::Counter(c) => Json::from(i64::from(c)),
            ScalarValue::Boolean(b) => Json::Bool(*b),
            ScalarValue::Null | ScalarValue::Bytes(_) | ScalarValue::Unknown { .. } => Json::Null,
        },
    }
}

#[cfg(test)]
mod tests;
