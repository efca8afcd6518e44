//! The queue of changes waiting to be piggybacked on messages.
//!
//! Changes go out least-sent first (so new ones spread fastest), ties broken by member id (so
//! runs are deterministic). Sorting the whole queue on every message did that in O(n log n)
//! and was a third of the simulator's time at a thousand nodes, where queues hold hundreds of
//! changes for minutes after a mass join.
//!
//! With a thousand simulated nodes no node's queue stays in the CPU caches between two of its
//! messages, so what costs is cache lines touched, not comparisons. A heap touches a few
//! scattered lines per change taken, and measured slower than a sequential pass over an array
//! of 8-byte ranks (the send order packed into an integer), which the CPU prefetches and
//! predicts well. The changes themselves, twice as large, are read only when sent.
//!
//! One pass per message was still 28 % of the simulator's time, so a pass now finds the
//! [`FRONT`] first changes, kept sorted, and the messages that follow take from them: a change
//! sent once more stays among them while it is still ahead of every change outside, and a new
//! change joins them if it is. The next pass comes when fewer are left than a message takes.
//! (Lists by send count, each in id order, measured slower still: a change sent once more
//! lands in the middle of the next list.)
//!
//! A queued change holds its member's info (which has the id) instead of an [`Update`]: 16
//! bytes instead of 48. At 10,000 nodes every queue fills up during the join (changes arrive
//! faster than they can be sent their quota of times), so queues hold tens of millions of
//! changes overall.

use std::cmp::Ordering;
use std::sync::Arc;

use super::{Status, Update, id_key};
use crate::{NodeId, NodeInfo};

/// Sends are counted up to this; a change is forgotten after at most this many.
pub(super) const SENT_MAX: u32 = 0xFFFF;

/// The send order as an integer: times sent (below [`SENT_MAX`], 16 bits), then the first 48
/// bits of the id. Equal ranks (same count, same 48-bit prefix) are told apart by the full id.
fn rank(sent: u32, id: &NodeId) -> u64 {
    (u64::from(sent.min(SENT_MAX)) << 48) | (id_key(id) >> 16)
}

/// The times sent in a rank.
fn sent(rank: u64) -> u32 {
    (rank >> 48) as u32
}

/// One more send, in a rank.
const ONE_SEND: u64 = 1 << 48;

/// One change waiting: an [`Update`] about `info.id`, with `info` only if `with_info`.
struct Pending {
    info: Arc<NodeInfo>,
    incarnation: u32,
    status: Status,
    with_info: bool,
}

impl Pending {
    fn id(&self) -> &NodeId {
        &self.info.id
    }

    fn update(&self) -> Update {
        Update {
            id: self.info.id,
            incarnation: self.incarnation,
            status: self.status,
            info: self.with_info.then(|| self.info.clone()),
        }
    }
}

/// How many of the first changes a pass over the queue keeps at hand (a few in tests, so that
/// the proptest below crosses the bar all the time).
const FRONT: usize = if cfg!(test) { 4 } else { 128 };

/// Changes to disseminate, at most one per member.
#[derive(Default)]
pub(super) struct GossipQueue {
    /// `ranks[i]` is the rank of `items[i]`, which holds how often it was sent; both in no
    /// particular order.
    ranks: Vec<u64>,
    items: Vec<Pending>,
    /// `(rank, index)` of every change ahead of `bar` in send order, in that order.
    front: Vec<(u64, u32)>,
    /// Every change outside `front` is at or after this (rank, id) in send order; `None`
    /// when `front` holds them all.
    bar: Option<(u64, NodeId)>,
}

impl GossipQueue {
    /// Whether nothing is waiting.
    pub(super) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// How many changes are waiting.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.items.len()
    }

    /// Queues `update` as never sent, replacing any change about the same member. `info` is
    /// the member's info (`update.info` if it has one): `update.id` must be `info.id`. If the
    /// queue already holds `max` changes, the most-sent one (the last in send order) is dropped
    /// first; returns whether one was.
    pub(super) fn push(&mut self, update: &Update, info: Arc<NodeInfo>, max: usize) -> bool {
        debug_assert_eq!(update.id, info.id);
        let low = rank(0, &update.id);
        if let Some(i) = self.position(&update.id, low) {
            self.remove(i);
        }
        let mut dropped = false;
        if self.items.len() >= max
            && let Some(i) = (0..self.items.len()).max_by(|&a, &b| self.order(a, b))
        {
            self.remove(i);
            dropped = true;
        }
        self.ranks.push(low);
        self.items.push(Pending {
            info,
            incarnation: update.incarnation,
            status: update.status,
            with_info: update.info.is_some(),
        });
        let i = self.items.len() - 1;
        if self.ahead_of_bar(i) {
            self.enter_front(i);
            if self.front.len() > FRONT
                && let Some((r, last)) = self.front.pop()
            {
                self.bar = Some((r, *self.items[last as usize].id()));
            }
        }
        dropped
    }

    /// The first `n` changes in send order, each counted as sent once more; those sent `limit`
    /// times (at most [`SENT_MAX`]) are then forgotten.
    pub(super) fn take(&mut self, n: usize, limit: u32) -> Vec<Update> {
        let limit = limit.min(SENT_MAX);
        if self.front.len() < n && self.front.len() < self.items.len() {
            self.refill(n.max(FRONT));
        }
        let best: Vec<usize> = self.front.drain(..n.min(self.front.len())).map(|(_, i)| i as usize).collect();
        // Read what the loop below needs first, in a pass whose reads depend on nothing but
        // the indices: the CPU overlaps their cache misses (a queue is far too cold to be
        // cached), where the loop would wait for each rank, then each member id, in turn.
        let mut sink = 0u64;
        for &i in &best {
            sink ^= self.ranks[i] ^ u64::from(self.items[i].id().0[0]);
        }
        std::hint::black_box(sink);
        let mut gone = Vec::new();
        for &i in &best {
            self.ranks[i] += ONE_SEND;
            if sent(self.ranks[i]) >= limit {
                gone.push(i);
            } else if self.ahead_of_bar(i) {
                self.enter_front(i);
            }
        }
        let taken = best.iter().map(|&i| self.items[i].update()).collect();
        // From the highest index down, so that `swap_remove` moves only entries kept.
        gone.sort_unstable_by(|a, b| b.cmp(a));
        for i in gone {
            self.remove_outside(i);
        }
        // A queue that filled up during a mass join drains over minutes: give back what it no
        // longer uses, or every node keeps its peak allocation for ever.
        if self.items.capacity() > 64 && self.items.len() * 4 < self.items.capacity() {
            self.items.shrink_to(self.items.len() * 2);
            self.ranks.shrink_to(self.ranks.len() * 2);
        }
        if self.items.is_empty() {
            self.front = Vec::new();
            self.bar = None;
        }
        taken
    }

    /// Where the change about `id` is; `low` is `rank(0, id)`.
    ///
    /// The low 48 bits of a rank are the id's prefix: ranks are compared first, a block at a
    /// time without branching (which the compiler vectorises), and ids only within a block
    /// that has a match. A search that stops at the first match cannot be vectorised, and this
    /// one runs for every change learned, over queues of a thousand during a mass join.
    fn position(&self, id: &NodeId, low: u64) -> Option<usize> {
        const BLOCK: usize = 16;
        const PREFIX: u64 = 0xFFFF_FFFF_FFFF;
        for (b, block) in self.ranks.chunks(BLOCK).enumerate() {
            if !block.iter().fold(false, |hit, r| hit | (r & PREFIX == low)) {
                continue;
            }
            for (k, r) in block.iter().enumerate() {
                let i = b * BLOCK + k;
                if r & PREFIX == low && self.items[i].id() == id {
                    return Some(i);
                }
            }
        }
        None
    }

    /// Rebuilds `front` from a pass over the whole queue, with the `k` first changes.
    fn refill(&mut self, k: usize) {
        let mut best = self.least(k + 1);
        self.bar = None;
        if best.len() > k
            && let Some(b) = best.pop()
        {
            self.bar = Some((self.ranks[b], *self.items[b].id()));
        }
        self.front.clear();
        self.front.extend(best.into_iter().map(|i| (self.ranks[i], i as u32)));
    }

    /// Whether change `i` is ahead of `bar` (so it belongs in `front`).
    fn ahead_of_bar(&self, i: usize) -> bool {
        match &self.bar {
            None => true,
            Some((r, id)) => self.ranks[i] < *r || (self.ranks[i] == *r && self.items[i].id() < id),
        }
    }

    /// Where change `i` is, or would go, in `front`.
    fn front_position(&self, i: usize) -> Result<usize, usize> {
        let (r, id) = (self.ranks[i], self.items[i].id());
        self.front.binary_search_by(|&(fr, fi)| fr.cmp(&r).then_with(|| self.items[fi as usize].id().cmp(id)))
    }

    /// Puts change `i`, which is ahead of `bar` and not in `front`, into `front`.
    fn enter_front(&mut self, i: usize) {
        let at = self.front_position(i).unwrap_or_else(|at| at);
        self.front.insert(at, (self.ranks[i], i as u32));
    }

    /// Indices of the `n` first changes in send order, in that order.
    fn least(&self, n: usize) -> Vec<usize> {
        if n == 0 {
            return Vec::new();
        }
        let order = |a: &(u64, u32), b: &(u64, u32)| {
            a.0.cmp(&b.0).then_with(|| self.items[a.1 as usize].id().cmp(self.items[b.1 as usize].id()))
        };
        // Candidates, cut back to the `n` first whenever there are `2n`: each cut is linear,
        // so the pass is too. (Insertion into a sorted list of the `n` first, fine for the
        // few a message takes, shifts half the list per candidate at this size.)
        let mut best: Vec<(u64, u32)> = Vec::with_capacity(2 * n);
        // No candidate ranked above this can be among the `n` first.
        let mut bar = u64::MAX;
        for (i, &r) in self.ranks.iter().enumerate() {
            if r > bar {
                continue;
            }
            best.push((r, i as u32));
            if best.len() == 2 * n {
                best.select_nth_unstable_by(n - 1, order);
                best.truncate(n);
                bar = best[n - 1].0;
            }
        }
        // Ranks tie only for changes sent as often about ids with the same 48-bit prefix:
        // sort by rank alone (a plain integer sort, several times faster than one through the
        // comparator), then put each run of equal ranks in id order.
        best.sort_unstable_by_key(|&(r, _)| r);
        let mut start = 0;
        while start < best.len() {
            let r = best[start].0;
            let end = start + best[start..].iter().take_while(|&&(x, _)| x == r).count();
            if end - start > 1 {
                best[start..end].sort_unstable_by(order);
            }
            start = end;
        }
        best.truncate(n);
        best.into_iter().map(|(_, i)| i as usize).collect()
    }

    /// The send order between two entries: fewest sends first, then by id.
    fn order(&self, a: usize, b: usize) -> Ordering {
        self.ranks[a].cmp(&self.ranks[b]).then_with(|| self.items[a].id().cmp(self.items[b].id()))
    }

    /// Removes change `i`, from `front` too if it is there.
    fn remove(&mut self, i: usize) {
        if self.ahead_of_bar(i)
            && let Ok(at) = self.front_position(i)
        {
            self.front.remove(at);
        }
        self.remove_outside(i);
    }

    /// Removes change `i`, which is not in `front`.
    fn remove_outside(&mut self, i: usize) {
        let last = self.items.len() - 1;
        // The last change takes the freed index: `front` must follow it.
        if i != last
            && self.ahead_of_bar(last)
            && let Ok(at) = self.front_position(last)
        {
            self.front[at].1 = i as u32;
        }
        self.ranks.swap_remove(i);
        self.items.swap_remove(i);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(k: u8) -> Update {
        // Ids that share their first eight bytes in pairs, to exercise the full comparison.
        let mut id = [k / 2; 32];
        id[31] = k;
        // Some with their info, most without.
        let info = k.is_multiple_of(3).then(|| info(NodeId(id)));
        Update { id: NodeId(id), incarnation: u32::from(k % 5), status: Status::Alive, info }
    }

    fn info(id: NodeId) -> Arc<NodeInfo> {
        Arc::new(NodeInfo {
            id,
            name: String::new(),
            tier: crate::Tier::Edge,
            labels: Default::default(),
            arch: String::new(),
            cpus: 1,
            memory_mib: 1,
            addrs: Vec::new(),
            version: String::new(),
        })
    }

    fn push(q: &mut GossipQueue, u: Update, max: usize) -> bool {
        let i = u.info.clone().unwrap_or_else(|| info(u.id));
        q.push(&u, i, max)
    }

    /// The queue as it was before: sort everything on every take.
    #[derive(Default)]
    struct Reference(Vec<(Update, u32)>);

    impl Reference {
        fn push(&mut self, u: Update, max: usize) -> bool {
            self.0.retain(|(p, _)| p.id != u.id);
            let full = self.0.len() >= max;
            if full {
                self.0.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.id.cmp(&b.0.id)));
                self.0.pop();
            }
            self.0.push((u, 0));
            full
        }

        fn take(&mut self, n: usize, limit: u32) -> Vec<Update> {
            self.0.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.id.cmp(&b.0.id)));
            let n = n.min(self.0.len());
            let taken = self.0[..n]
                .iter_mut()
                .map(|(u, sent)| {
                    *sent += 1;
                    u.clone()
                })
                .collect();
            self.0.retain(|(_, sent)| *sent < limit);
            taken
        }
    }

    proptest::proptest! {
        #[test]
        fn sends_in_the_same_order_as_sorting_everything(
            ops in proptest::collection::vec((0u8..120, 0usize..5), 1..600),
            max in 1usize..90,
        ) {
            let (mut q, mut r) = (GossipQueue::default(), Reference::default());
            for (k, n) in ops {
                if n <= 1 {
                    proptest::prop_assert_eq!(push(&mut q, update(k), max), r.push(update(k), max));
                } else {
                    // Takes of 1 to 3 changes leave most of the queue out of the lookahead.
                    proptest::prop_assert_eq!(q.take(n - 1, 5), r.take(n - 1, 5));
                }
                proptest::prop_assert_eq!(q.len(), r.0.len());
            }
        }
    }
}
