//! Property tests of the wire format: every message survives a round trip, and no sequence of
//! bytes — random, truncated or bit-flipped — makes the decoder panic.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;

use liquid_core::membership::{Message as M, Part, Status, Update};
use liquid_core::wire::{self, Message};
use liquid_core::{NodeId, NodeInfo, Tier};
use proptest::prelude::*;

fn node_id() -> impl Strategy<Value = NodeId> {
    any::<[u8; 32]>().prop_map(NodeId)
}

fn info() -> impl Strategy<Value = Arc<NodeInfo>> {
    (
        node_id(),
        "[a-z0-9-]{0,12}",
        prop_oneof![Just(Tier::Edge), Just(Tier::Fog), Just(Tier::Cloud)],
        proptest::collection::btree_map("[a-z]{1,5}", "[a-z0-9]{0,5}", 0..3),
        any::<u32>(),
        any::<u64>(),
        proptest::collection::vec("/ip4/[0-9.]{7,15}/udp/[0-9]{1,5}/quic-v1", 0..3),
    )
        .prop_map(|(id, name, tier, labels, cpus, memory_mib, addrs)| {
            Arc::new(NodeInfo {
                id,
                name,
                tier,
                labels,
                arch: "x86_64".into(),
                cpus,
                memory_mib,
                addrs,
                version: "0.1.0".into(),
            })
        })
}

fn update() -> impl Strategy<Value = Update> {
    (
        node_id(),
        any::<u32>(),
        prop_oneof![Just(Status::Alive), Just(Status::Suspect), Just(Status::Down), Just(Status::Left)],
        proptest::option::of(info()),
    )
        .prop_map(|(id, incarnation, status, info)| Update { id, incarnation, status, info })
}

fn part() -> impl Strategy<Value = Part> {
    (any::<u16>(), proptest::collection::vec((any::<u16>(), any::<u64>()), 0..10))
        .prop_map(|(buckets, digests)| Part { buckets, digests })
}

fn message() -> impl Strategy<Value = Message> {
    let updates = || proptest::collection::vec(update(), 0..6);
    prop_oneof![
        (any::<u64>(), updates()).prop_map(|(seq, gossip)| M::Ping { seq, gossip }),
        (any::<u64>(), updates()).prop_map(|(seq, gossip)| M::Ack { seq, gossip }),
        (any::<u64>(), node_id(), updates()).prop_map(|(seq, target, gossip)| M::PingReq { seq, target, gossip }),
        updates().prop_map(|updates| M::Gossip { updates }),
        (info(), any::<u32>()).prop_map(|(info, incarnation)| M::Join { info, incarnation }),
        (any::<u64>(), proptest::collection::vec(any::<u64>(), 0..40))
            .prop_map(|(digest, buckets)| M::Digest { digest, buckets }),
        (updates(), any::<u64>(), any::<bool>(), proptest::option::of(part()))
            .prop_map(|(entries, digest, respond, part)| M::State { entries, digest, respond, part }),
    ]
    .prop_map(Message::Membership)
}

proptest! {
    #[test]
    fn round_trip(msg in message()) {
        let bytes = wire::encode(&msg);
        prop_assert_eq!(bytes.len(), wire::encoded_len(&msg));
        prop_assert_eq!(wire::decode(&bytes).unwrap(), msg);
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = wire::decode(&bytes);
    }

    #[test]
    fn damaged_messages_are_errors_or_messages_never_panics(msg in message(), cut in any::<prop::sample::Index>(), flip in any::<(prop::sample::Index, u8)>()) {
        let bytes = wire::encode(&msg);
        let truncated = &bytes[..cut.index(bytes.len())];
        prop_assert!(wire::decode(truncated).is_err());
        let mut flipped = bytes.clone();
        let i = flip.0.index(flipped.len());
        flipped[i] ^= flip.1 | 1;
        let _ = wire::decode(&flipped);
    }
}
