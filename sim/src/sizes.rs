//! Exact encoded sizes of messages, without encoding every byte every time.
//!
//! Every byte count in a report is what [`liquid_core::wire::encoded_len`] would return for the
//! message. Calling it on every message, though, re-serializes every gossiped [`NodeInfo`] and
//! every entry of every full state: at a thousand nodes that was half of the simulator's time.
//! CBOR is a concatenation, so the size of a message with a list of updates is the size of the
//! same message with an empty list, plus the growth of the list's length header, plus the size
//! of each update; and an update's size is its member's size at incarnation 0 and status
//! `alive` without info, adjusted for the width of the incarnation and the name of the status,
//! plus the size of its info. Those per-member sizes are measured once with `encoded_len` and
//! cached. Tests (and, in debug builds, a sample of all messages) check the result against
//! `encoded_len`. Object messages (automerge sync payloads, digests, acks) are measured with
//! `encoded_len` itself: their size is mostly opaque bytes, so there is nothing to cache.
//!
//! [`NodeInfo`]: liquid_core::NodeInfo

use liquid_core::membership::{Message as M, Status, Update};
use liquid_core::wire::{Message, encoded_len};
use liquid_core::{NodeId, NodeInfo};
use std::sync::Arc;

/// Cached per-member sizes.
pub(crate) struct Sizer {
    /// Size of `Update { id, incarnation: 0, status: alive, info: None }`, 0 if not measured.
    base: Vec<u32>,
    /// Extra size of `info: Some(..)` over `None`, 0 if not measured.
    info: Vec<u32>,
    #[cfg(debug_assertions)]
    calls: u64,
}

/// The node index in the last four bytes of a simulated id, if it is one of `ids`.
pub(crate) fn index_in(ids: &[NodeId], id: &NodeId) -> Option<u32> {
    let mut raw = [0u8; 4];
    raw.copy_from_slice(&id.0[28..]);
    let i = u32::from_be_bytes(raw);
    (ids.get(i as usize) == Some(id)).then_some(i)
}

/// Bytes of a CBOR header carrying `n` (major types 0, 2, 3, 4, 5 alike).
fn header_len(n: u64) -> usize {
    match n {
        0..24 => 1,
        24..=0xff => 2,
        0x100..=0xffff => 3,
        0x1_0000..=0xffff_ffff => 5,
        _ => 9,
    }
}

fn status_name_len(s: Status) -> usize {
    match s {
        Status::Alive => 5,
        Status::Suspect => 7,
        Status::Down | Status::Left => 4,
    }
}

/// The size of one update on its own, measured with `encoded_len`.
fn measure(update: Update) -> usize {
    let one = encoded_len(&Message::Membership(M::Gossip { updates: vec![update] }));
    let none = encoded_len(&Message::Membership(M::Gossip { updates: Vec::new() }));
    one - none
}

impl Sizer {
    pub fn new(nodes: usize) -> Self {
        Sizer {
            base: vec![0; nodes],
            info: vec![0; nodes],
            #[cfg(debug_assertions)]
            calls: 0,
        }
    }

    /// `encoded_len(msg)`, computed from cached parts.
    pub fn len(&mut self, ids: &[NodeId], msg: &Message) -> usize {
        let len = self.compose(ids, msg);
        #[cfg(debug_assertions)]
        {
            self.calls += 1;
            if self.calls % 257 == 1 {
                debug_assert_eq!(len, encoded_len(msg), "{msg:?}");
            }
        }
        len
    }

    fn compose(&mut self, ids: &[NodeId], msg: &Message) -> usize {
        let (skeleton, list) = match msg {
            Message::Membership(M::Ping { seq, gossip }) => (M::Ping { seq: *seq, gossip: Vec::new() }, gossip),
            Message::Membership(M::Ack { seq, gossip }) => (M::Ack { seq: *seq, gossip: Vec::new() }, gossip),
            Message::Membership(M::PingReq { seq, target, gossip }) => {
                (M::PingReq { seq: *seq, target: *target, gossip: Vec::new() }, gossip)
            }
            Message::Membership(M::Gossip { updates }) => (M::Gossip { updates: Vec::new() }, updates),
            Message::Membership(M::State { entries, digest, respond, part }) => {
                (M::State { entries: Vec::new(), digest: *digest, respond: *respond, part: part.clone() }, entries)
            }
            Message::Membership(M::Digest { digest, buckets }) if !buckets.is_empty() => {
                // With one zero bucket (two bytes: the list's header and the zero), then each
                // bucket as the unsigned integer it is.
                let one = encoded_len(&Message::Membership(M::Digest { digest: *digest, buckets: vec![0] }));
                let each: usize = buckets.iter().map(|&b| header_len(b)).sum();
                return one - 2 + header_len(buckets.len() as u64) + each;
            }
            // Objects and anything else: the real encoding, every time.
            _ => return encoded_len(msg),
        };
        let mut len = encoded_len(&Message::Membership(skeleton)) + header_len(list.len() as u64) - 1;
        for u in list {
            len += self.update_len(ids, u);
        }
        len
    }

    fn update_len(&mut self, ids: &[NodeId], u: &Update) -> usize {
        let Some(i) = index_in(ids, &u.id) else { return measure(u.clone()) };
        let i = i as usize;
        if self.base[i] == 0 {
            self.base[i] = measure(Update { id: u.id, incarnation: 0, status: Status::Alive, info: None }) as u32;
        }
        let base = self.base[i] as usize;
        let mut len = base + header_len(u64::from(u.incarnation)) - 1 + status_name_len(u.status) - 5;
        if let Some(info) = &u.info {
            if self.info[i] == 0 {
                let with: Option<Arc<NodeInfo>> = Some(info.clone());
                let full = measure(Update { id: u.id, incarnation: 0, status: Status::Alive, info: with });
                self.info[i] = (full - base) as u32;
            }
            len += self.info[i] as usize;
        }
        len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::node_id;
    use liquid_core::Tier;
    use liquid_core::membership::Part;
    use liquid_core::objects::Message as O;

    fn info(id: NodeId, k: u32) -> Arc<NodeInfo> {
        Arc::new(NodeInfo {
            id,
            name: format!("edge-{k}-{}", k % 7),
            tier: Tier::Edge,
            labels: [("site".to_string(), format!("edge-{k}"))].into_iter().collect(),
            arch: "aarch64".into(),
            cpus: 4,
            memory_mib: 4096,
            addrs: vec![format!("/sim/node/{k}")],
            version: "sim".into(),
        })
    }

    #[test]
    fn composed_sizes_equal_encoded_len() {
        let ids: Vec<NodeId> = (0..300).map(|i| node_id(3, i)).collect();
        let infos: Vec<_> = (0..300).map(|i| info(ids[i as usize], i)).collect();
        let statuses = [Status::Alive, Status::Suspect, Status::Down, Status::Left];
        let incs = [0u32, 1, 23, 24, 255, 256, 70_000, u32::MAX];
        let mut sizer = Sizer::new(ids.len());
        for n in [0usize, 1, 5, 23, 24, 255, 256, 300] {
            let updates: Vec<Update> = (0..n)
                .map(|k| Update {
                    id: ids[k],
                    incarnation: incs[k % incs.len()],
                    status: statuses[k % 4],
                    info: (k % 3 != 0).then(|| infos[k].clone()),
                })
                .collect();
            let seqs = [0u64, 30, 1 << 20, u64::MAX];
            let msgs = [
                M::Ping { seq: seqs[n % 4], gossip: updates.clone() },
                M::Ack { seq: seqs[(n + 1) % 4], gossip: updates.clone() },
                M::PingReq { seq: 7, target: ids[n % 300], gossip: updates.clone() },
                M::Gossip { updates: updates.clone() },
                M::State { entries: updates.clone(), digest: u64::MAX - n as u64, respond: n % 2 == 0, part: None },
                M::State {
                    entries: updates.clone(),
                    digest: 3,
                    respond: true,
                    part: Some(Part {
                        buckets: 256,
                        digests: (0..n as u16).map(|i| (i, u64::from(i) << 40)).collect(),
                    }),
                },
                M::Join { info: infos[n % 300].clone(), incarnation: 300 },
                M::Digest { digest: n as u64, buckets: Vec::new() },
                M::Digest {
                    digest: n as u64,
                    buckets: (0..n as u64).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (i % 64)).collect(),
                },
            ];
            for m in msgs {
                let msg = Message::Membership(m);
                assert_eq!(sizer.len(&ids, &msg), encoded_len(&msg), "{} with {n} updates", msg.kind());
            }
        }
        // Object messages are measured exactly too.
        let object = state_sync::ObjectName::parse("sim/key-3").unwrap();
        let heads = state_sync::Heads(vec![state_sync::automerge::ChangeHash([7; 32]); 2]);
        let obj = [
            O::Sync { object: object.clone(), data: serde_bytes::ByteBuf::from(vec![1u8; 300]) },
            O::NotHeld { object: object.clone() },
            O::Digests { entries: vec![(object.clone(), state_sync::Digest([3; 16])); 30] },
            O::AckWanted { object: object.clone(), heads: heads.clone() },
            O::Ack { object, heads },
        ];
        let mut kinds = Vec::new();
        for m in obj {
            let msg = Message::Objects(m);
            assert_eq!(sizer.len(&ids, &msg), encoded_len(&msg), "{}", msg.kind());
            kinds.push(msg.kind());
        }
        assert_eq!(kinds, ["obj_sync", "obj_not_held", "obj_digests", "obj_ack_wanted", "obj_ack"]);
        // A member not of this run is measured directly.
        let stranger = Update { id: NodeId([9; 32]), incarnation: 3, status: Status::Down, info: None };
        let msg = Message::Membership(M::Gossip { updates: vec![stranger] });
        assert_eq!(sizer.len(&ids, &msg), encoded_len(&msg));
    }
}
