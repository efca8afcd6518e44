//! Unit tests of the membership protocol: scenarios on whole nodes in the virtual-time
//! harness ([`crate::testing`]: a few nodes, a fixed one-way latency, cut links), then
//! exchanges between lone `Membership`s.

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use rand_core::SeedableRng;

use super::*;
use crate::Tier;
use crate::node::Output;
use crate::testing::{Cluster, Join, LATENCY, Setup};

fn info(k: u8) -> NodeInfo {
    NodeInfo {
        id: NodeId([k; 32]),
        name: format!("n{k}"),
        tier: Tier::Edge,
        labels: Default::default(),
        arch: "x86_64".into(),
        cpus: 1,
        memory_mib: 512,
        addrs: vec![format!("/ip4/127.0.0.1/udp/{k}/quic-v1")],
        version: "test".into(),
    }
}

/// `n` edge nodes, each but node 0 joining through node 0, after 10 s.
fn mesh_of(n: usize) -> Cluster {
    Cluster::build(Setup {
        layout: vec![(Tier::Edge, None); n],
        join: Join::Star,
        settle: Duration::from_secs(10),
        ..Setup::new(n)
    })
}

fn digests(h: &Cluster, ks: &[usize]) -> BTreeSet<u64> {
    ks.iter().filter_map(|&k| h.nodes[k].as_ref().map(|n| n.membership().digest())).collect()
}

#[test]
fn joining_through_one_peer_reaches_everyone() {
    let h = mesh_of(6);
    for a in 0..6 {
        for b in 0..6 {
            if a != b {
                assert_eq!(h.status(a, b), Some(Status::Alive), "{a} sees {b}");
            }
        }
    }
    assert_eq!(digests(&h, &[0, 1, 2, 3, 4, 5]).len(), 1);
}

#[test]
fn probes_measure_rtt() {
    let mut h = mesh_of(3);
    h.run_for(Duration::from_secs(10));
    let n = h.node(0).membership();
    let rtts: Vec<_> = n.members(h.now).filter(|m| !m.is_self).map(|m| m.rtt).collect();
    for rtt in rtts {
        let rtt = rtt.expect("probed at least once in 20 s");
        assert!(rtt >= 2 * LATENCY && rtt < 4 * LATENCY, "{rtt:?}");
    }
}

#[test]
fn a_crashed_node_is_suspected_then_down_and_comes_back_with_a_higher_incarnation() {
    let mut h = mesh_of(5);
    h.crash(4);
    h.run_for(Duration::from_secs(3));
    assert!(
        (0..4).any(|k| matches!(h.status(k, 4), Some(Status::Suspect) | Some(Status::Down))),
        "someone suspects the crashed node within 3 s"
    );
    h.run_for(Duration::from_secs(15));
    for k in 0..4 {
        assert_eq!(h.status(k, 4), Some(Status::Down), "node {k}");
    }
    // Restart with what it persisted: a higher incarnation, the same id.
    let persisted = h.persisted[4].clone();
    assert!(persisted.is_some(), "membership was persisted");
    h.start_remembering(4);
    h.connect(4, 0);
    h.run_for(Duration::from_secs(10));
    for k in 0..4 {
        assert_eq!(h.status(k, 4), Some(Status::Alive), "node {k} sees the restarted node");
    }
    assert!(h.node(4).membership().incarnation() >= 1);
}

#[test]
fn a_restart_without_memory_refutes_its_old_death() {
    let mut h = mesh_of(4);
    h.crash(3);
    h.run_for(Duration::from_secs(20));
    assert_eq!(h.status(0, 3), Some(Status::Down));
    h.start(3);
    h.connect(3, 1);
    h.run_for(Duration::from_secs(10));
    for k in 0..3 {
        assert_eq!(h.status(k, 3), Some(Status::Alive), "node {k}");
    }
    assert_eq!(digests(&h, &[0, 1, 2, 3]).len(), 1);
}

#[test]
fn a_healed_partition_converges() {
    let mut h = mesh_of(6);
    let (left, right) = ([0usize, 1, 2], [3usize, 4, 5]);
    h.partition(&left, &right);
    h.run_for(Duration::from_secs(30));
    assert_eq!(h.status(0, 4), Some(Status::Down));
    assert_eq!(h.status(4, 0), Some(Status::Down));
    assert_eq!(h.status(0, 1), Some(Status::Alive), "no false suspicion inside a side");
    h.cut.clear();
    h.run_for(Duration::from_secs(40));
    for a in 0..6 {
        for b in 0..6 {
            if a != b {
                assert_eq!(h.status(a, b), Some(Status::Alive), "{a} sees {b} after the heal");
            }
        }
    }
    assert_eq!(digests(&h, &[0, 1, 2, 3, 4, 5]).len(), 1);
}

#[test]
fn a_leaving_node_is_down_at_once_and_not_probed() {
    let mut h = mesh_of(4);
    h.leave(2);
    h.run_for(Duration::from_millis(100));
    h.crash(2);
    h.run_for(Duration::from_secs(2));
    for k in [0, 1, 3] {
        assert_eq!(h.status(k, 2), Some(Status::Left), "node {k}");
    }
    let suspected = h.events.iter().any(|(_, e)| e.id == crate::testing::id(2) && e.to == Status::Suspect);
    assert!(!suspected, "a node that left is never suspected");
}

#[test]
fn indirect_probes_prevent_false_suspicion_over_one_broken_link() {
    let mut h = mesh_of(5);
    h.events.clear();
    h.cut.insert((0, 1));
    h.run_for(Duration::from_secs(60));
    assert_eq!(h.status(0, 1), Some(Status::Alive));
    assert_eq!(h.status(1, 0), Some(Status::Alive));
}

#[test]
fn claims_with_a_foreign_id_or_without_info_are_ignored() {
    let rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let n = &mut Membership::new(Config::default(), info(1), None, rng, Time::ZERO);
    let mut out: VecDeque<Output> = VecDeque::new();
    let now = Time::ZERO;
    // A join whose info names someone else than the sender.
    n.handle_message(now, NodeId([2; 32]), Message::Join { info: Arc::new(info(9)), incarnation: 0 }, &mut out);
    // A suspicion about someone unknown, without info.
    let u = Update { id: NodeId([42; 32]), incarnation: 3, status: Status::Suspect, info: None };
    n.handle_message(now, NodeId([2; 32]), Message::Gossip { updates: vec![u] }, &mut out);
    assert_eq!(n.counts(), [0, 0, 0, 0]);
}

#[test]
fn view_is_bounded() {
    let mut m = Membership::new(
        Config { members_max: 3, ..Config::default() },
        info(1),
        None,
        rand_chacha::ChaCha8Rng::seed_from_u64(0),
        Time::ZERO,
    );
    let mut out: VecDeque<Output> = VecDeque::new();
    let entries = (2..10)
        .map(|k| Update { id: NodeId([k; 32]), incarnation: 0, status: Status::Alive, info: Some(Arc::new(info(k))) })
        .collect();
    m.handle_message(
        Time::ZERO,
        NodeId([2; 32]),
        Message::State { entries, digest: 0, respond: false, part: None },
        &mut out,
    );
    assert_eq!(m.counts()[0], 3);
    assert_eq!(m.stats().members_refused, 5);
}

/// Member `k`'s info, with ids spread over every bucket.
fn spread_info(k: u32) -> Arc<NodeInfo> {
    let mut id = [0u8; 32];
    // Ids spread over the first byte, so every bucket holds members.
    id[0] = (k.wrapping_mul(97) % 256) as u8;
    id[1..5].copy_from_slice(&k.to_be_bytes());
    Arc::new(NodeInfo { id: NodeId(id), name: format!("s{k}"), ..info(0) })
}

fn spread_node(me: u32, members: impl Iterator<Item = u32>, incarnation_of: impl Fn(u32) -> u32) -> Membership {
    let rng = rand_chacha::ChaCha8Rng::seed_from_u64(u64::from(me));
    let mut m = Membership::new(Config::default(), (*spread_info(me)).clone(), None, rng, Time::ZERO);
    let mut entries: Vec<Update> = members
        .map(|k| {
            let info = spread_info(k);
            Update { id: info.id, incarnation: incarnation_of(k), status: Status::Alive, info: Some(info) }
        })
        .collect();
    entries.sort_by_key(|u| u.id);
    let mut out: VecDeque<Output> = VecDeque::new();
    m.handle_message(
        Time::ZERO,
        NodeId([0xFF; 32]),
        Message::State { entries, digest: 0, respond: false, part: None },
        &mut out,
    );
    m
}

fn only_send(out: &mut VecDeque<Output>) -> Message {
    let sends: Vec<Message> = out
        .drain(..)
        .filter_map(|o| match o {
            Output::Send { msg: crate::wire::Message::Membership(m), .. } => Some(m),
            _ => None,
        })
        .collect();
    assert_eq!(sends.len(), 1, "{sends:?}");
    sends.into_iter().next().unwrap()
}

#[test]
fn digests_that_differ_exchange_only_the_buckets_that_differ() {
    // Two views of 1,000 members that disagree about three of them (a newer incarnation on
    // either side) and where `b` knows one member `a` does not.
    let newer_on_a = [10u32, 500];
    let newer_on_b = [777u32];
    let a = 1000;
    let b = 1001;
    let mut na = spread_node(a, (0..1000).chain([b]), |k| u32::from(newer_on_a.contains(&k)));
    let mut nb = spread_node(b, (0..1000).chain([a, 1002]), |k| u32::from(newer_on_b.contains(&k)));
    let (ida, idb) = (spread_info(a).id, spread_info(b).id);
    assert_ne!(na.digest(), nb.digest());
    let mut out: VecDeque<Output> = VecDeque::new();

    let Message::Digest { digest, buckets } = na.digest_message() else { panic!() };
    assert_eq!(buckets.len(), 256);
    assert_eq!(buckets.iter().fold(0, |x, d| x ^ d), digest, "buckets partition the view");
    nb.handle_message(Time::ZERO, ida, Message::Digest { digest, buckets }, &mut out);
    let Message::State { entries, respond: true, part: Some(part), .. } = only_send(&mut out) else { panic!() };
    // At most one bucket per difference, and only their members (plus the sender).
    assert!(part.digests.len() <= 4, "{part:?}");
    assert!(entries.len() < 1 + 4 * 10, "{} entries", entries.len());
    assert_eq!(entries[0].id, idb);
    na.handle_message(
        Time::ZERO,
        idb,
        Message::State { entries, digest: nb.digest(), respond: true, part: Some(part) },
        &mut out,
    );
    // `a` learned 777's newer incarnation and member 1002; it pushes back its newer two.
    assert_eq!(na.status_of(&spread_info(1002).id), Some(Status::Alive));
    let back = only_send(&mut out);
    let Message::State { entries, respond: false, part: Some(_), .. } = &back else { panic!("{back:?}") };
    assert!(entries.iter().any(|u| u.id == spread_info(10).id));
    assert!(entries.iter().any(|u| u.id == spread_info(500).id));
    nb.handle_message(Time::ZERO, ida, back, &mut out);
    assert_eq!(na.digest(), nb.digest(), "one exchange converges");
}

#[test]
fn malformed_bucket_digests_fall_back_to_the_whole_view_or_nothing() {
    let mut n = spread_node(1000, 0..100, |_| 0);
    let mut out: VecDeque<Output> = VecDeque::new();
    let peer = spread_info(5).id;
    // Not a power of two: the whole view, as to an older agent.
    n.handle_message(Time::ZERO, peer, Message::Digest { digest: 1, buckets: vec![0; 3] }, &mut out);
    let Message::State { entries, part: None, .. } = only_send(&mut out) else { panic!() };
    assert_eq!(entries.len(), 101);
    // A part naming buckets out of range, or a bucket count that is no power of two: merged,
    // and answered with no more than what it could name.
    let part = Part { buckets: 4, digests: vec![(9, 0), (4, 0), (1000, 0)] };
    n.handle_message(
        Time::ZERO,
        peer,
        Message::State { entries: vec![], digest: 1, respond: true, part: Some(part) },
        &mut out,
    );
    assert!(out.iter().all(|o| !matches!(o, Output::Send { .. })), "nothing to send: {out:?}");
    let part = Part { buckets: 6, digests: vec![(0, 0)] };
    n.handle_message(
        Time::ZERO,
        peer,
        Message::State { entries: vec![], digest: 1, respond: true, part: Some(part) },
        &mut out,
    );
    let Message::State { entries, part: None, .. } = only_send(&mut out) else { panic!() };
    assert_eq!(entries.len(), 101);
}
