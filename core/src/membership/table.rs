//! The member table: every member known, found by id in O(1) and iterated in id order.
//!
//! Members are never removed (see the module docs), so each keeps the slot it was given when
//! it was learned. A hash index finds a slot from an id; a list of slots sorted by id gives the
//! id order that random choices, full states and `members()` use. Keeping the members
//! themselves sorted and binary-searching them cost about ten cache misses per lookup and a
//! move of half the table per newcomer: lookups were a third of the simulator's time at a
//! thousand nodes.
//!
//! Every view holds every member, so the simulator holds n² of these entries: at 10,000
//! nodes each byte per entry is 100 MB. An entry costs the member (24 bytes), its place in
//! the id order (8) and its index word (4, at most twice over): ~40 bytes, where it was ~70
//! (a 32-byte member, 8-byte index words, and vectors grown by doubling, up to half empty).

use std::sync::Arc;

use super::{Member, member_key};
use crate::{NodeId, NodeInfo};

/// The members of one view.
pub(super) struct Table {
    /// By slot, in the order they were learned.
    slots: Vec<Member>,
    /// `key << 32 | slot` ([`member_key`]), sorted by the members' ids: a walk in id order
    /// compares keys without reading the members, and reads a member only when keys tie.
    by_id: Vec<u64>,
    /// Open addressing with linear probing: `slot + 1` in the low `shift` bits, the id's
    /// hash bits above them; 0 for empty. Its length is `1 << shift`, at most three quarters
    /// full, so `slot + 1` always fits below `shift`. The hash bits let a probe skip other
    /// members without reading them: each read is a cache miss.
    index: Vec<u32>,
    shift: u32,
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

/// Makes room for one more element, growing by an eighth instead of doubling: views only
/// grow, and a doubled vector of 10,000 members is 6,000 members' worth of unused memory.
/// Copying an eighth more each time keeps pushes amortised O(1) (eight copies per element).
fn reserve_one<T>(v: &mut Vec<T>) {
    if v.len() == v.capacity() {
        v.reserve_exact((v.len() / 8).max(16));
    }
}

impl Table {
    /// An empty table; `secret` keys its hash.
    pub(super) fn new(secret: u64) -> Self {
        Table { slots: Vec::new(), by_id: Vec::new(), index: Vec::new(), shift: 0, secret }
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

    /// The index word's hash bits for `hash`.
    fn tag(&self, hash: u64) -> u32 {
        // The high half of the hash, without the bits that hold the slot (the low half
        // picks the bucket).
        let high = (hash >> 32) as u32;
        high.checked_shr(self.shift).map_or(0, |t| t << self.shift)
    }

    /// The slot in an index word.
    fn slot_of(&self, entry: u32) -> usize {
        let low = if self.shift >= 32 { entry } else { entry & ((1u32 << self.shift) - 1) };
        (low - 1) as usize
    }

    /// The slot of the member with this id.
    pub(super) fn find(&self, id: &NodeId) -> Option<usize> {
        self.find_claimed(id, None)
    }

    /// The slot of the member with this id, where `info`, if given, is a self-description
    /// with this id: when it is the very one the member holds (as it mostly is in the
    /// simulator, where claims share their infos), the member is recognised without reading
    /// its id, a cache miss per claim.
    pub(super) fn find_claimed(&self, id: &NodeId, info: Option<&Arc<NodeInfo>>) -> Option<usize> {
        if self.index.is_empty() {
            return None;
        }
        let mask = self.index.len() - 1;
        let hash = self.hash(id);
        let tag = self.tag(hash);
        let tag_mask = self.tag(u64::MAX);
        let mut at = hash as usize & mask;
        loop {
            let entry = self.index[at];
            if entry == 0 {
                return None;
            }
            if entry & tag_mask == tag {
                let slot = self.slot_of(entry);
                let m = &self.slots[slot];
                if info.is_some_and(|i| Arc::ptr_eq(i, &m.info)) || m.info.id == *id {
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
    pub(super) fn warm<'a>(&self, claims: impl Iterator<Item = (&'a NodeId, Option<&'a Arc<NodeInfo>>)>) {
        if self.index.is_empty() {
            return;
        }
        let mask = self.index.len() - 1;
        let mut sink = 0u8;
        for (id, info) in claims {
            let entry = self.index[self.hash(id) as usize & mask];
            // An empty word gives `usize::MAX`, which `get` turns away.
            let slot = if entry == 0 { usize::MAX } else { self.slot_of(entry) };
            // The member, then its id, which `find_claimed` compares unless the claim shares
            // the member's info.
            sink ^= self.slots.get(slot).map_or(0, |m| match info {
                Some(i) if Arc::ptr_eq(i, &m.info) => 0,
                _ => m.info.id.0[0],
            });
        }
        std::hint::black_box(sink);
    }

    /// The `k`-th member in id order.
    pub(super) fn nth_by_id(&self, k: usize) -> &Member {
        &self.slots[self.nth_slot(k)]
    }

    /// The slot of the `k`-th member in id order.
    pub(super) fn nth_slot(&self, k: usize) -> usize {
        (self.by_id[k] & 0xFFFF_FFFF) as usize
    }

    /// Whether the `k`-th member in id order comes before `id`, whose [`member_key`] is `key`.
    pub(super) fn nth_before(&self, k: usize, key: u32, id: &NodeId) -> bool {
        let word = self.by_id[k];
        let nth_key = (word >> 32) as u32;
        nth_key < key || (nth_key == key && self.slots[(word & 0xFFFF_FFFF) as usize].info.id < *id)
    }

    /// Whether the `k`-th member in id order is `id`, whose [`member_key`] is `key`; `info`
    /// as for [`Table::find_claimed`].
    pub(super) fn nth_is(&self, k: usize, key: u32, id: &NodeId, info: Option<&Arc<NodeInfo>>) -> bool {
        let word = self.by_id[k];
        if (word >> 32) as u32 != key {
            return false;
        }
        let m = &self.slots[(word & 0xFFFF_FFFF) as usize];
        info.is_some_and(|i| Arc::ptr_eq(i, &m.info)) || m.info.id == *id
    }

    /// The members at ranks `range` of the id order, in that order.
    pub(super) fn range_by_id(&self, range: std::ops::Range<usize>) -> impl Iterator<Item = &Member> + '_ {
        self.by_id[range].iter().map(|&w| &self.slots[(w & 0xFFFF_FFFF) as usize])
    }

    /// Members in id order.
    pub(super) fn iter_by_id(&self) -> impl Iterator<Item = &Member> + '_ {
        self.range_by_id(0..self.by_id.len())
    }

    /// How many members have an id below `id`.
    pub(super) fn rank(&self, id: &NodeId) -> usize {
        self.first_not_before(0, self.by_id.len(), member_key(id), id)
    }

    /// Binary search in ranks `lo..hi` for the first whose member does not come before `id`
    /// (whose [`member_key`] is `key`), given that every rank below `lo` does and `hi` does not
    /// (or is the end).
    fn first_not_before(&self, mut lo: usize, mut hi: usize, key: u32, id: &NodeId) -> usize {
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.nth_before(mid, key, id) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// How many members have a [`member_key`] below `key`: read from the id order's keys
    /// alone, without a member.
    pub(super) fn rank_of_key(&self, key: u32) -> usize {
        self.by_id.partition_point(|&w| ((w >> 32) as u32) < key)
    }

    /// The first rank at or after `from` whose member does not come before `id` (whose
    /// [`member_key`] is `key`), given that none before `from` does. Gallops: a walk along a
    /// full state moves a rank or two per entry, a walk along a partial one skips buckets.
    pub(super) fn seek(&self, from: usize, key: u32, id: &NodeId) -> usize {
        let n = self.by_id.len();
        if from >= n || !self.nth_before(from, key, id) {
            return from;
        }
        // Every rank below `lo` comes before `id`; `hi` does not, or is the end.
        let (mut lo, mut step) = (from + 1, 1);
        let mut hi = lo;
        while hi < n && self.nth_before(hi, key, id) {
            lo = hi + 1;
            step *= 2;
            hi = from + step;
        }
        self.first_not_before(lo, hi.min(n), key, id)
    }

    /// Adds a member whose id is not in the table yet.
    pub(super) fn insert(&mut self, m: Member) {
        let at = self.rank(&m.info.id);
        let key = member_key(&m.info.id);
        let word = u64::from(key) << 32 | u64::from(self.push(m));
        reserve_one(&mut self.by_id);
        self.by_id.insert(at, word);
    }

    /// Adds members whose ids are not in the table yet, each with its rank among the members
    /// already there; ranks must be in order, and the members in id order.
    pub(super) fn insert_ranked(&mut self, fresh: Vec<(usize, Member)>) {
        self.slots.reserve_exact(fresh.len());
        let mut by_id = Vec::with_capacity(self.by_id.len() + fresh.len());
        let mut done = 0;
        let old = std::mem::take(&mut self.by_id);
        for (at, m) in fresh {
            by_id.extend_from_slice(&old[done..at]);
            done = at;
            let key = member_key(&m.info.id);
            by_id.push(u64::from(key) << 32 | u64::from(self.push(m)));
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
        reserve_one(&mut self.slots);
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
        self.index[at] = self.tag(hash) | (slot + 1);
    }

    fn grow(&mut self) {
        let len = (self.index.len() * 2).max(16);
        self.index = vec![0; len];
        self.shift = len.trailing_zeros();
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::Status;
    use super::*;
    use crate::{NodeInfo, Tier, Time};

    fn member(k: u32) -> Member {
        let mut id = [0u8; 32];
        // Pairs of ids share their first four bytes (their key), to exercise ties.
        id[..4].copy_from_slice(&(k / 2).to_be_bytes());
        id[4..8].copy_from_slice(&k.to_le_bytes());
        let info = NodeInfo {
            id: NodeId(id),
            name: format!("n{k}"),
            tier: Tier::Edge,
            labels: Default::default(),
            arch: "x86_64".into(),
            cpus: 1,
            memory_mib: 1,
            addrs: Vec::new(),
            version: "t".into(),
        };
        Member::new(Arc::new(info), k, Status::Alive, Time(u64::from(k)))
    }

    #[test]
    fn finds_every_member_and_keeps_id_order_across_growth() {
        let mut t = Table::new(7);
        // Scrambled arrival order, some one by one and some ranked in batches.
        let order: Vec<u32> = (0..3000u32).map(|k| (k * 1237) % 3000).collect();
        for &k in &order[..1000] {
            t.insert(member(k));
        }
        let mut batch: Vec<Member> = order[1000..].iter().map(|&k| member(k)).collect();
        batch.sort_by_key(|a| a.info.id);
        let ranked = batch.into_iter().map(|m| (t.rank(&m.info.id), m)).collect();
        t.insert_ranked(ranked);
        assert_eq!(t.len(), 3000);
        for k in 0..3000 {
            let m = member(k);
            let slot = t.find(&m.info.id).expect("present");
            assert_eq!(t.get(slot).incarnation, k);
        }
        assert!(t.find(&NodeId([0xEE; 32])).is_none());
        let ids: Vec<NodeId> = t.iter_by_id().map(|m| m.info.id).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        for (k, id) in ids.iter().enumerate() {
            assert_eq!(t.rank(id), k);
            assert!(t.nth_is(k, member_key(id), id, None));
        }
        // Seeking from any rank at or before an id's finds it; absent ids land where they
        // would go.
        for (k, id) in ids.iter().enumerate().step_by(7) {
            for from in [0, k / 2, k.saturating_sub(1), k] {
                assert_eq!(t.seek(from, member_key(id), id), k);
            }
        }
        let past = NodeId([0xEE; 32]);
        assert_eq!(t.seek(0, member_key(&past), &past), 3000);
        let between = member(3001).info.id;
        assert_eq!(t.seek(0, member_key(&between), &between), t.rank(&between));
        for key in [0u32, 1, 700, 1499, 1500, u32::MAX] {
            let expect = ids.iter().filter(|id| member_key(id) < key).count();
            assert_eq!(t.rank_of_key(key), expect, "key {key}");
        }
    }
}
