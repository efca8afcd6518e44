//! The member table: every member known, found by id in O(1) and iterated in id order.
//!
//! Members are never removed (see the module docs), so each keeps the slot it was given when
//! it was learned. A hash index finds a slot from an id; a list of slots sorted by id gives the
//! id order that random choices, full states and `members()` use. Keeping the members
//! themselves sorted and binary-searching them cost about ten cache misses per lookup and a
//! move of half the table per newcomer: lookups were a third of the simulator's time at a
//! thousand nodes.

use super::{Member, member_key};
use crate::NodeId;

/// The members of one view.
pub(super) struct Table {
    /// By slot, in the order they were learned.
    slots: Vec<Member>,
    /// Slots, sorted by the members' ids.
    by_id: Vec<u32>,
    /// Open addressing with linear probing: the high 32 bits of the id's hash, then
    /// `slot + 1`; 0 for empty. Its length is a power of two, at most three quarters full.
    /// The hash bits let a probe skip other members without reading them: each read is a
    /// cache miss.
    index: Vec<u64>,
    /// Keys the hash, so that peers cannot pick ids that collide (ids in claims are chosen by
    /// whoever makes the claim).
    secret: u64,
}

/// splitmix64's finaliser.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Table {
    /// An empty table; `secret` keys its hash.
    pub(super) fn new(secret: u64) -> Self {
        Table { slots: Vec::new(), by_id: Vec::new(), index: Vec::new(), secret }
    }

    /// How many members.
    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    /// The member in `slot`.
    pub(super) fn get(&self, slot: usize) -> &Member {
        &self.slots[slot]
    }

    /// The member in `slot`, to change. Its id must not change.
    pub(super) fn get_mut(&mut self, slot: usize) -> &mut Member {
        &mut self.slots[slot]
    }

    /// The slot of the member with this id.
    pub(super) fn find(&self, id: &NodeId) -> Option<usize> {
        if self.index.is_empty() {
            return None;
        }
        let mask = self.index.len() - 1;
        let hash = self.hash(id);
        let mut at = hash as usize & mask;
        loop {
            let entry = self.index[at];
            if entry == 0 {
                return None;
            }
            if entry >> 32 == hash >> 32 {
                let slot = (entry as u32 - 1) as usize;
                if self.slots[slot].info.id == *id {
                    return Some(slot);
                }
            }
            at = (at + 1) & mask;
        }
    }

    /// Reads where these ids would be found, without acting on it, so that the lookups that
    /// follow hit the cache: the reads depend on nothing but the ids and have no branches to
    /// mispredict, so the CPU overlaps their misses, where a loop of lookups waits for each
    /// in turn (a view is far too large, and visited too rarely, to stay cached).
    pub(super) fn warm<'a>(&self, ids: impl Iterator<Item = &'a NodeId>) {
        if self.index.is_empty() {
            return;
        }
        let mask = self.index.len() - 1;
        let mut sink = 0u8;
        for id in ids {
            let slot = (self.index[self.hash(id) as usize & mask] as u32).wrapping_sub(1) as usize;
            // The member, then its id, which `find` compares.
            sink ^= self.slots.get(slot).map_or(0, |m| m.info.id.0[0]);
        }
        std::hint::black_box(sink);
    }

    /// The `k`-th member in id order.
    pub(super) fn nth_by_id(&self, k: usize) -> &Member {
        &self.slots[self.by_id[k] as usize]
    }

    /// Slots in id order.
    pub(super) fn by_id(&self) -> &[u32] {
        &self.by_id
    }

    /// Members in id order.
    pub(super) fn iter_by_id(&self) -> impl Iterator<Item = &Member> + '_ {
        self.by_id.iter().map(|&s| &self.slots[s as usize])
    }

    /// How many members have an id below `id`.
    pub(super) fn rank(&self, id: &NodeId) -> usize {
        let key = member_key(id);
        self.by_id.partition_point(|&s| {
            let m = &self.slots[s as usize];
            (m.key, &m.info.id) < (key, id)
        })
    }

    /// Adds a member whose id is not in the table yet.
    pub(super) fn insert(&mut self, m: Member) {
        let at = self.rank(&m.info.id);
        let slot = self.push(m);
        self.by_id.insert(at, slot);
    }

    /// Adds members whose ids are not in the table yet, each with its rank among the members
    /// already there; ranks must be in order, and the members in id order.
    pub(super) fn insert_ranked(&mut self, fresh: Vec<(usize, Member)>) {
        let mut by_id = Vec::with_capacity(self.by_id.len() + fresh.len());
        let mut done = 0;
        let old = std::mem::take(&mut self.by_id);
        for (at, m) in fresh {
            by_id.extend_from_slice(&old[done..at]);
            done = at;
            by_id.push(self.push(m));
        }
        by_id.extend_from_slice(&old[done..]);
        self.by_id = by_id;
    }

    /// Stores a member in a new slot and indexes it; returns the slot.
    fn push(&mut self, m: Member) -> u32 {
        // Members are bounded by `members_max`, far below `u32::MAX`.
        let slot = self.slots.len() as u32;
        if (self.slots.len() + 1) * 4 > self.index.len() * 3 {
            self.grow();
        }
        self.place(&m.info.id, slot);
        self.slots.push(m);
        slot
    }

    fn place(&mut self, id: &NodeId, slot: u32) {
        let mask = self.index.len() - 1;
        let hash = self.hash(id);
        let mut at = hash as usize & mask;
        while self.index[at] != 0 {
            at = (at + 1) & mask;
        }
        self.index[at] = (hash & !0xFFFF_FFFF) | u64::from(slot + 1);
    }

    fn grow(&mut self) {
        let len = (self.index.len() * 2).max(16);
        self.index = vec![0; len];
        for slot in 0..self.slots.len() {
            let id = self.slots[slot].info.id;
            self.place(&id, slot as u32);
        }
    }

    fn hash(&self, id: &NodeId) -> u64 {
        let mut h = self.secret;
        for word in id.0.chunks_exact(8) {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            h = (h ^ u64::from_le_bytes(w)).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29);
        }
        mix(h)
    }
}
