//! The event queue: a binary heap ordered by (virtual time, sequence number), so events at the
//! same instant run in the order they were scheduled.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use liquid_core::Time;
use liquid_core::wire::Message;

/// What happens at a point of virtual time.
pub(crate) enum Ev {
    /// A node's first boot.
    Boot(u32),
    /// `from` dials `to` (to join through it); with `if_alone`, only if `from` still knows no
    /// other member.
    Dial { from: u32, life: u32, to: u32, if_alone: bool },
    /// The transport handshake finished: both ends learn of the connection.
    Connected { a: u32, a_life: u32, b: u32, b_life: u32 },
    /// A message arrives.
    Deliver { from: u32, to: u32, to_life: u32, msg: Message },
    /// A node's timer.
    Wake { node: u32, life: u32 },
    /// The scenario's fault number k.
    Fault(u32),
    /// A node's object store finished the flush with this ticket.
    Flushed { node: u32, life: u32, ticket: u64 },
    /// A node's object store read a cold object back.
    Loaded { node: u32, life: u32, object: state_sync::ObjectName },
    /// Workload k's creator creates its objects.
    Create(u32),
    /// Workload k's next write.
    Write(u32),
    /// Function k of the scenario is deployed.
    Deploy(u32),
    /// Invocation stream k's next call.
    Invoke(u32),
    /// An execution's module arrived; run it.
    ExecReady(u64),
    /// An execution's virtual compute time is over; deliver its outcome.
    Executed(u64),
    /// A migration target's module fetch is over (`Err`: no reachable source held it).
    Prefetched { node: u32, life: u32, name: String, result: Result<(), String> },
    /// An actor's snapshot, sent at `sent`, reaches its target.
    SnapshotArrives {
        from: u32,
        from_life: u32,
        to: u32,
        to_life: u32,
        name: String,
        epoch: u64,
        bytes: u64,
        sent: Time,
    },
    /// The source of a hand-off learns how it went.
    HandoffDone { node: u32, life: u32, name: String, epoch: u64, result: Result<u64, String> },
    /// Check convergence and report progress.
    Sample,
}

/// A scheduled event in the heap: the event itself waits in [`Queue::events`], so that the
/// heap moves 24-byte entries, not messages (moving whole events was a tenth of the
/// simulator's time at a thousand nodes).
struct Entry {
    at: Time,
    seq: u64,
    slot: u32,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    /// Reversed, so that `BinaryHeap` pops the earliest (then the first scheduled) first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// The queue.
pub(crate) struct Queue {
    heap: BinaryHeap<Entry>,
    /// The events, by slot; `None` in free slots.
    events: Vec<Option<Ev>>,
    free: Vec<u32>,
    seq: u64,
}

impl Queue {
    pub fn with_capacity(n: usize) -> Self {
        Queue { heap: BinaryHeap::with_capacity(n), events: Vec::with_capacity(n), free: Vec::new(), seq: 0 }
    }

    /// Schedules `ev` at `at`, after everything already scheduled at `at`.
    pub fn push(&mut self, at: Time, ev: Ev) {
        self.seq += 1;
        let slot = match self.free.pop() {
            Some(slot) => {
                self.events[slot as usize] = Some(ev);
                slot
            }
            None => {
                self.events.push(Some(ev));
                // 2^32 pending events would take hundreds of GB: a slot fits in 32 bits.
                (self.events.len() - 1) as u32
            }
        };
        self.heap.push(Entry { at, seq: self.seq, slot });
    }

    /// The next event, unless it comes after `end`.
    pub fn pop_until(&mut self, end: Time) -> Option<(Time, Ev)> {
        if self.heap.peek()?.at > end {
            return None;
        }
        let e = self.heap.pop()?;
        self.free.push(e.slot);
        self.events[e.slot as usize].take().map(|ev| (e.at, ev))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_pop_by_time_then_in_scheduling_order() {
        let mut q = Queue::with_capacity(4);
        q.push(Time(5), Ev::Boot(1));
        q.push(Time(3), Ev::Boot(2));
        q.push(Time(5), Ev::Boot(3));
        q.push(Time(9), Ev::Boot(4));
        let mut order = Vec::new();
        while let Some((at, Ev::Boot(i))) = q.pop_until(Time(8)) {
            order.push((at.0, i));
        }
        assert_eq!(order, [(3, 2), (5, 1), (5, 3)]);
        assert!(q.pop_until(Time(9)).is_some());
    }

    #[test]
    fn freed_slots_are_reused_without_mixing_events_up() {
        let mut q = Queue::with_capacity(1);
        let mut popped = Vec::new();
        for round in 0..50u32 {
            q.push(Time(u64::from(round) * 10 + 7), Ev::Boot(round * 2));
            q.push(Time(u64::from(round) * 10 + 3), Ev::Boot(round * 2 + 1));
            while let Some((at, Ev::Boot(i))) = q.pop_until(Time(u64::from(round) * 10 + 5)) {
                popped.push((at.0, i));
            }
        }
        while let Some((at, Ev::Boot(i))) = q.pop_until(Time(u64::MAX)) {
            popped.push((at.0, i));
        }
        let mut want: Vec<(u64, u32)> =
            (0..50u32).flat_map(|r| [(u64::from(r) * 10 + 3, r * 2 + 1), (u64::from(r) * 10 + 7, r * 2)]).collect();
        want.sort();
        assert_eq!(popped, want);
        assert!(q.events.len() <= 3, "slots are reused: {} were made", q.events.len());
    }
}
