//! Structural changes: containers every replica creates identically.
//!
//! Automerge names an object after the operation that created it, so two replicas that each
//! create "the" counter at `stats.visits` while apart create two counters; after they sync
//! one wins the key and the increments made on the other are hidden for ever. Here a missing
//! container is instead created by a change that depends only on the change that created its
//! parent, made by an actor derived from (parent, key, kind, generation), at timestamp 0.
//! Every replica that has the parent computes the byte-identical change, automerge keeps
//! one copy of it, and all replicas write into the same container.
//!
//! A generation counts re-creations: if the structural change of generation 0 is already in
//! the document but the key is empty (the container was deleted or overwritten), generation
//! 1 is tried, and so on. Replicas that saw the same history pick the same generation.
//!
//! Cost: building the change replays the ancestors of the parent's creating change (none
//! for a key of the root, the structural chain for structural parents), once per creation.

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, Automerge, ObjId, ObjType, Prop, ROOT, ReadDoc, ScalarValue, Value};

use crate::object::segment_index;
use crate::ops::{Created, Made};

/// Generations tried before giving up (the creation then happens inside the batch, as a
/// plain last-writer-wins put).
const GENERATIONS_MAX: u32 = 64;

/// Creates `c` with a structural change if its parent exists and its key is empty; returns
/// whether it did. Failing is harmless: the batch then creates the container itself.
pub(crate) fn create(doc: &mut Automerge, c: &Created) -> bool {
    let segments = c.path.segments();
    let Some((key, parents)) = segments.split_last() else { return false };
    let Some(parent) = resolve_map(doc, parents) else { return false };
    if !matches!(doc.get(&parent, key.as_str()), Ok(None)) {
        return false;
    }
    let base = match &parent {
        ObjId::Root => Vec::new(),
        id => match doc.hash_for_opid(id) {
            Some(h) => vec![h],
            None => return false,
        },
    };
    let Ok(fork) = doc.fork_at(&base) else { return false };
    for generation in 0..GENERATIONS_MAX {
        let mut f = fork.clone();
        f.set_actor(actor(&parent, key, c.made, generation));
        let mut tx = f.transaction();
        let made = match c.made {
            Made::Map => tx.put_object(&parent, key.as_str(), ObjType::Map).map(drop),
            Made::List => tx.put_object(&parent, key.as_str(), ObjType::List).map(drop),
            Made::Counter => tx.put(&parent, key.as_str(), ScalarValue::counter(0)),
        };
        if made.is_err() {
            tx.rollback();
            return false;
        }
        let (Some(hash), _) = tx.commit_with(CommitOptions::default().with_time(0)) else { return false };
        if doc.get_change_meta_by_hash(&hash).is_some() {
            continue; // this generation was made before and has since been deleted
        }
        let Some(change) = f.get_change_by_hash(&hash) else { return false };
        return doc.apply_changes([change]).is_ok();
    }
    false
}

/// The map at `segments`, if every step exists and the last is a map.
fn resolve_map(doc: &Automerge, segments: &[String]) -> Option<ObjId> {
    let (mut obj, mut ty) = (ROOT, ObjType::Map);
    for segment in segments {
        let prop = match ty {
            ObjType::Map | ObjType::Table => Prop::Map(segment.clone()),
            ObjType::List => Prop::Seq(segment_index(segment).filter(|i| *i < doc.length(&obj))?),
            ObjType::Text => return None,
        };
        let (value, id) = doc.get(&obj, prop).ok()??;
        let Value::Object(t) = value else { return None };
        (obj, ty) = (id, t);
    }
    matches!(ty, ObjType::Map | ObjType::Table).then_some(obj)
}

/// The synthetic actor of one structural change.
fn actor(parent: &ObjId, key: &str, made: Made, generation: u32) -> ActorId {
    let mut h = blake3::Hasher::new();
    h.update(b"liquid/structural/v1\0");
    h.update(parent.to_string().as_bytes());
    h.update(b"\0");
    h.update(key.as_bytes());
    h.update(b"\0");
    h.update(&[made as u8]);
    h.update(&generation.to_le_bytes());
    ActorId::from(&h.finalize().as_bytes()[..16])
}
