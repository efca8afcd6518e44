//! Unit tests of [`Replica`]: convergence, bounded messages, loss and reset, refusals.

use automerge::ActorId;
use serde_json::json;

use super::*;
use crate::ops::Op;

fn replica(name: &str, config: Config) -> Replica<&'static str> {
    Replica::new(Document::new(ActorId::from(name.as_bytes())), config)
}

fn write(r: &mut Replica<&'static str>, j: serde_json::Value) {
    let ops: Vec<Op> = serde_json::from_value(j).unwrap();
    r.doc_mut().apply(&ops, 0).unwrap();
}

/// Runs the protocol between `a` (called "a") and `b` ("b") until both are quiet; returns
/// (messages, bytes, largest message).
fn pump(a: &mut Replica<&'static str>, b: &mut Replica<&'static str>) -> (usize, usize, usize) {
    let (mut n, mut bytes, mut largest) = (0, 0, 0);
    for _ in 0..10_000 {
        let to_b = a.generate(&"b");
        if let Some(m) = &to_b {
            b.receive(&"a", m).unwrap();
        }
        let to_a = b.generate(&"a");
        if let Some(m) = &to_a {
            a.receive(&"b", m).unwrap();
        }
        for m in to_a.iter().chain(&to_b) {
            (n, bytes, largest) = (n + 1, bytes + m.len(), largest.max(m.len()));
        }
        if to_a.is_none() && to_b.is_none() {
            return (n, bytes, largest);
        }
    }
    panic!("no quiescence")
}

#[test]
fn concurrent_writes_converge_and_increments_add_up() {
    let (mut a, mut b) = (replica("a", Config::default()), replica("b", Config::default()));
    write(&mut a, json!([{"op":"inc","path":"n","by":0}]));
    pump(&mut a, &mut b);
    for i in 0..10 {
        write(&mut a, json!([{"op":"inc","path":"n","by":i}]));
        write(&mut b, json!([{"op":"inc","path":"n","by":100}]));
    }
    write(&mut b, json!([{"op":"set","path":"only_b","value":[1,2]}]));
    assert_ne!(a.digest(), b.digest());
    pump(&mut a, &mut b);
    assert_eq!(a.doc().read(), b.doc().read());
    assert_eq!(a.doc().value()["n"], json!(45 + 1000));
    assert_eq!(a.digest(), b.digest());
    assert_eq!(a.peer_heads(&"b"), Some(b.doc().heads()));
    assert!(a.peer_in_sync(&"b") && b.peer_in_sync(&"a"));
    write(&mut a, json!([{"op":"inc","path":"n"}]));
    assert!(!a.peer_in_sync(&"b"));
}

#[test]
fn large_differences_travel_in_bounded_messages() {
    let config = Config { message_bytes_max: 4096, ..Config::default() };
    let (mut a, mut b) = (replica("a", config.clone()), replica("b", config));
    for i in 0..500 {
        let incompressible = blake3::hash(&[i as u8, (i >> 8) as u8]).to_hex().to_string();
        write(&mut a, json!([{"op":"set","path":format!("k{i}"),"value":incompressible}]));
    }
    let (messages, _, largest) = pump(&mut a, &mut b);
    assert!(largest <= 4096, "largest message {largest}");
    assert!(messages > 4, "the difference should take several messages, took {messages}");
    assert_eq!(a.doc().read(), b.doc().read());
    // And the other way, after more changes on both sides (V2 "send the whole doc" path).
    for i in 0..300 {
        write(&mut b, json!([{"op":"inc","path":format!("c{}", i % 7)}]));
        write(&mut a, json!([{"op":"insert","path":"list","value":i}]));
    }
    let (_, _, largest) = pump(&mut a, &mut b);
    assert!(largest <= 4096, "largest message {largest}");
    assert_eq!(a.doc().read(), b.doc().read());
}

#[test]
fn a_new_empty_peer_gets_the_document_in_bounded_messages() {
    let mut a = replica("a", Config { message_bytes_max: 2000, ..Config::default() });
    for i in 0..300 {
        let incompressible = blake3::hash(&[i as u8, (i >> 8) as u8]).to_hex().to_string();
        write(&mut a, json!([{"op":"set","path":format!("k{i}"),"value":incompressible}]));
    }
    let mut b = replica("b", Config::default());
    let (messages, _, largest) = pump(&mut a, &mut b);
    assert!(largest <= 2000, "largest message {largest}");
    assert!(messages > 4, "took {messages} messages");
    assert_eq!(a.doc().read(), b.doc().read());
}

#[test]
fn a_change_bigger_than_the_limit_still_travels() {
    let config = Config { message_bytes_max: 100, ..Config::default() };
    let (mut a, mut b) = (replica("a", config.clone()), replica("b", config));
    write(&mut a, json!([{"op":"set","path":"big","value":"x".repeat(1000)}]));
    write(&mut a, json!([{"op":"set","path":"big2","value":"y".repeat(1000)}]));
    pump(&mut a, &mut b);
    assert_eq!(a.doc().read(), b.doc().read());
}

#[test]
fn a_lost_message_is_recovered_by_a_reset() {
    let (mut a, mut b) = (replica("a", Config::default()), replica("b", Config::default()));
    write(&mut a, json!([{"op":"set","path":"x","value":1}]));
    pump(&mut a, &mut b);
    write(&mut a, json!([{"op":"set","path":"y","value":2}]));
    let lost = a.generate(&"b").unwrap();
    assert_eq!(a.generate(&"b"), None, "waits for a reply");
    drop(lost);
    a.reset(&"b");
    b.reset(&"a");
    pump(&mut a, &mut b);
    assert_eq!(a.doc().read(), b.doc().read());
}

#[test]
fn duplicated_messages_are_harmless() {
    let (mut a, mut b) = (replica("a", Config::default()), replica("b", Config::default()));
    write(&mut a, json!([{"op":"inc","path":"n","by":3}]));
    // The first exchange only compares heads; the changes travel in the third message.
    let hello = a.generate(&"b").unwrap();
    assert!(!b.receive(&"a", &hello).unwrap());
    let reply = b.generate(&"a").unwrap();
    a.receive(&"b", &reply).unwrap();
    let changes = a.generate(&"b").unwrap();
    assert!(b.receive(&"a", &changes).unwrap());
    for m in [&changes, &hello, &changes] {
        assert!(!b.receive(&"a", m).unwrap(), "a copy changes nothing");
    }
    a.receive(&"b", &reply).unwrap();
    pump(&mut a, &mut b);
    assert_eq!(b.doc().value(), json!({"n":3}));
    assert_eq!(a.doc().read(), b.doc().read());
}

#[test]
fn garbage_is_refused_without_change() {
    let mut a = replica("a", Config::default());
    write(&mut a, json!([{"op":"set","path":"x","value":1}]));
    let before = a.doc().read();
    for bad in [&b""[..], b"\x42", b"hello", &[0x43, 0xff, 0xff, 0xff][..]] {
        assert!(a.receive(&"b", bad).is_err(), "{bad:?}");
    }
    assert_eq!(a.doc().read(), before);
}

#[test]
fn sessions_are_bounded() {
    let mut a = replica("a", Config { peers_max: 2, ..Config::default() });
    for p in ["p1", "p2", "p3"] {
        a.generate(&p);
    }
    assert_eq!(a.peers().copied().collect::<Vec<_>>(), ["p2", "p3"]);
    a.remove(&"p2");
    assert_eq!(a.peers().count(), 1);
}

#[test]
fn digests_follow_heads() {
    let (mut a, b) = (replica("a", Config::default()), replica("b", Config::default()));
    assert_eq!(a.digest(), b.digest(), "two empty documents");
    write(&mut a, json!([{"op":"set","path":"x","value":1}]));
    assert_ne!(a.digest(), b.digest());
    assert_eq!(a.digest(), Digest::of(&a.doc().heads()));
}

/// Two replicas that each *create* the same counter while apart (issue 17: three agents
/// incrementing a counter that did not exist yet lost 1-2 of 120 acknowledged increments):
/// the structural change makes it one counter, and every increment counts.
#[test]
fn concurrent_counter_creation_counts_every_increment() {
    let (mut a, mut b) = (replica("a", Config::default()), replica("b", Config::default()));
    write(&mut a, json!([{"op":"inc","path":"n","by":5},{"op":"inc","path":"deep.er.n","by":1}]));
    write(&mut b, json!([{"op":"inc","path":"n","by":7},{"op":"inc","path":"deep.er.n","by":2}]));
    pump(&mut a, &mut b);
    assert_eq!(a.doc().value(), json!({"n":12,"deep":{"er":{"n":3}}}));
    assert_eq!(a.doc().read(), b.doc().read());
    write(&mut a, json!([{"op":"inc","path":"n","by":1}]));
    write(&mut b, json!([{"op":"inc","path":"n","by":10}]));
    pump(&mut a, &mut b);
    assert_eq!(a.doc().value()["n"], json!(23));
    assert_eq!(a.doc().read(), b.doc().read());
}

/// Maps and lists created concurrently at the same path are one map, one list.
#[test]
fn concurrent_map_and_list_creation_keeps_both_sides() {
    let (mut a, mut b) = (replica("a", Config::default()), replica("b", Config::default()));
    write(&mut a, json!([{"op":"set","path":"profile.name","value":"Ada"},{"op":"insert","path":"log","value":"a1"}]));
    write(&mut b, json!([{"op":"set","path":"profile.city","value":"Oslo"},{"op":"insert","path":"log","value":"b1"}]));
    pump(&mut a, &mut b);
    let v = a.doc().value();
    assert_eq!(v["profile"], json!({"name":"Ada","city":"Oslo"}));
    let mut log: Vec<String> = serde_json::from_value(v["log"].clone()).unwrap();
    log.sort();
    assert_eq!(log, ["a1", "b1"]);
    assert_eq!(a.doc().read(), b.doc().read());
}

/// A deleted counter re-created on two replicas that both saw the delete is again one
/// counter (the next generation), not the old one resurrected.
#[test]
fn recreation_after_delete_is_a_new_shared_generation() {
    let (mut a, mut b) = (replica("a", Config::default()), replica("b", Config::default()));
    write(&mut a, json!([{"op":"inc","path":"n","by":5}]));
    pump(&mut a, &mut b);
    write(&mut b, json!([{"op":"del","path":"n"}]));
    pump(&mut a, &mut b);
    write(&mut a, json!([{"op":"inc","path":"n","by":2}]));
    write(&mut b, json!([{"op":"inc","path":"n","by":4}]));
    pump(&mut a, &mut b);
    assert_eq!(a.doc().value(), json!({"n":6}));
    assert_eq!(a.doc().read(), b.doc().read());
}

/// Runs the protocol between `x` (called `xn` by the other) and `y` until both are quiet.
fn pump_named(x: &mut Replica<&'static str>, xn: &'static str, y: &mut Replica<&'static str>, yn: &'static str) {
    for _ in 0..10_000 {
        let to_y = x.generate(&yn);
        if let Some(m) = &to_y {
            y.receive(&xn, m).unwrap();
        }
        let to_x = y.generate(&xn);
        if let Some(m) = &to_x {
            x.receive(&yn, m).unwrap();
        }
        if to_x.is_none() && to_y.is_none() {
            return;
        }
    }
    panic!("no quiescence")
}

/// What the law below does on one replica.
#[derive(Clone, Debug)]
enum Step {
    Inc { on: usize, counter: usize, by: i64 },
    Set { on: usize, field: usize, value: i64 },
    Insert { on: usize, list: usize },
    Sync { a: usize, b: usize },
}

const COUNTERS: [&str; 4] = ["c", "m.c", "m.n.c", "other.deep.c"];
const FIELDS: [&str; 4] = ["f", "m.f", "m.n.f", "fresh.map.f"];
const LISTS: [&str; 2] = ["l", "m.l"];
const NAMES: [&str; 3] = ["r0", "r1", "r2"];

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    prop_oneof![
        4 => (0..3usize, 0..COUNTERS.len(), -1000i64..1000).prop_map(|(on, counter, by)| Step::Inc { on, counter, by }),
        2 => (0..3usize, 0..FIELDS.len(), any::<i64>()).prop_map(|(on, field, value)| Step::Set { on, field, value }),
        1 => (0..3usize, 0..LISTS.len()).prop_map(|(on, list)| Step::Insert { on, list }),
        2 => (0..3usize, 0..3usize).prop_filter("two replicas", |(a, b)| a != b).prop_map(|(a, b)| Step::Sync { a, b }),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    /// The law of issue 17: any interleaving of `inc`, `set` and creation on any replicas,
    /// with syncs between them, converges to the sum of the acknowledged increments, and
    /// every list holds every acknowledged insert.
    #[test]
    fn acknowledged_increments_always_add_up(steps in proptest::collection::vec(step(), 1..60)) {
        let mut rs: Vec<_> = NAMES.iter().map(|n| replica(n, Config::default())).collect();
        let mut sums = [None::<i64>; COUNTERS.len()];
        let mut inserts = [0usize; LISTS.len()];
        for s in &steps {
            match *s {
                Step::Inc { on, counter, by } => {
                    let ops = vec![Op::Inc { path: crate::Path::parse(COUNTERS[counter]).unwrap(), by }];
                    rs[on].doc_mut().apply(&ops, 0).unwrap();
                    sums[counter] = Some(sums[counter].unwrap_or(0) + by);
                }
                Step::Set { on, field, value } => {
                    let ops = vec![Op::Set { path: crate::Path::parse(FIELDS[field]).unwrap(), value: value.into(), text: false }];
                    rs[on].doc_mut().apply(&ops, 0).unwrap();
                }
                Step::Insert { on, list } => {
                    let ops = vec![Op::Insert { path: crate::Path::parse(LISTS[list]).unwrap(), index: None, value: json!(on) }];
                    rs[on].doc_mut().apply(&ops, 0).unwrap();
                    inserts[list] += 1;
                }
                Step::Sync { a, b } => {
                    let (lo, hi) = (a.min(b), a.max(b));
                    let (left, right) = rs.split_at_mut(hi);
                    pump_named(&mut left[lo], NAMES[lo], &mut right[0], NAMES[hi]);
                }
            }
        }
        for (a, b) in [(0, 1), (1, 2), (0, 2), (0, 1)] {
            let (left, right) = rs.split_at_mut(b);
            pump_named(&mut left[a], NAMES[a], &mut right[0], NAMES[b]);
        }
        let v = rs[0].doc().value();
        for (i, path) in COUNTERS.iter().enumerate() {
            let got = path.split('.').fold(&v, |v, k| &v[k]);
            proptest::prop_assert_eq!(got, &json!(sums[i]), "counter {}", path);
        }
        for (i, path) in LISTS.iter().enumerate() {
            let got = path.split('.').fold(&v, |v, k| &v[k]);
            proptest::prop_assert_eq!(got.as_array().map_or(0, Vec::len), inserts[i], "list {}", path);
        }
        for r in &rs[1..] {
            proptest::prop_assert_eq!(r.doc().read(), rs[0].doc().read());
        }
    }
}

#[test]
fn replicas_are_settled_once_quiet_and_not_while_an_exchange_is_open() {
    let (mut a, mut b) = (replica("a", Config::default()), replica("b", Config::default()));
    assert!(a.settled(), "no sessions: nothing to lose");
    write(&mut a, json!([{ "op": "set", "path": "x", "value": 1 }]));
    write(&mut b, json!([{ "op": "set", "path": "y", "value": 2 }]));
    let first = a.generate(&"b").unwrap();
    b.receive(&"a", &first).unwrap();
    assert!(!a.settled() && !b.settled(), "mid-exchange");
    pump(&mut a, &mut b);
    assert!(a.settled(), "{:?}", a.peers.get("b").map(|s| &s.state));
    assert!(b.settled(), "{:?}", b.peers.get("a").map(|s| &s.state));
    write(&mut a, json!([{ "op": "set", "path": "z", "value": 3 }]));
    assert!(!a.settled(), "a new change is not sent yet");
}
