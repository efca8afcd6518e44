//! Object replication on the virtual-time harness ([`crate::testing`]).

use std::time::Duration;

use super::*;
use crate::testing::*;

#[test]
fn a_write_on_one_node_is_read_on_another() {
    let mut h = Cluster::new(4);
    let r = h.write(1, "app/greeting", r#"[{"op":"set","path":"text","value":"hi"}]"#);
    assert_eq!(value_of(&r)["text"], "hi");
    // Any node, replica or not, reads it (a non-replica fetches a follower copy).
    for k in 0..4 {
        assert_eq!(value_of(&h.get(k, "app/greeting"))["text"], "hi", "node {k}");
    }
}

#[test]
fn concurrent_increments_all_count() {
    let mut h = Cluster::new(3);
    h.write(0, "app/c", r#"[{"op":"inc","path":"n","by":0}]"#);
    h.run_for(Duration::from_secs(1));
    for k in 0..3 {
        h.get(k, "app/c");
    }
    for round in 0..5 {
        for k in 0..3 {
            let by = (k + 1) as i64;
            let req = Request::Write {
                object: obj("app/c"),
                change: ops(&format!(r#"[{{"op":"inc","path":"n","by":{by}}}]"#)),
                durability: Durability::Local,
            };
            h.request(k, req);
        }
        h.run_for(Duration::from_millis(1 + round));
    }
    h.run_for(Duration::from_secs(2));
    for k in 0..3 {
        assert_eq!(h.value(k, "app/c").unwrap()["n"], 30, "node {k}");
    }
}

#[test]
fn both_sides_of_a_partition_write_and_converge_after_the_heal() {
    let mut h = Cluster::new(5);
    h.write(0, "app/p", r#"[{"op":"inc","path":"n","by":0}]"#);
    h.run_for(Duration::from_secs(1));
    for k in 0..5 {
        h.get(k, "app/p");
    }
    h.partition(&[0, 1], &[2, 3, 4]);
    for k in 0..5 {
        let r =
            h.write(k, "app/p", &format!(r#"[{{"op":"inc","path":"n"}},{{"op":"set","path":"w{k}","value":{k}}}]"#));
        assert!(matches!(r, Reply::Value { .. }), "node {k} keeps accepting writes: {r:?}");
    }
    h.run_for(Duration::from_secs(20));
    assert_eq!(h.value(0, "app/p").unwrap()["n"], 2);
    assert_eq!(h.value(3, "app/p").unwrap()["n"], 3);
    h.cut.clear();
    h.run_for(Duration::from_secs(40));
    let v = h.value(0, "app/p").unwrap();
    assert_eq!(v["n"], 5);
    for k in 1..5 {
        assert_eq!(h.value(k, "app/p").unwrap(), v, "node {k}");
    }
}

#[test]
fn an_acknowledged_write_survives_a_crash_and_an_unflushed_one_is_not_acknowledged() {
    let mut h = Cluster::new(1);
    let r = h.write(0, "app/d", r#"[{"op":"set","path":"a","value":1}]"#);
    assert!(matches!(r, Reply::Value { .. }));
    // A second write whose flush never completes: not acknowledged, and may be lost.
    let req = Request::Write {
        object: obj("app/d"),
        change: ops(r#"[{"op":"set","path":"b","value":2}]"#),
        durability: Durability::Local,
    };
    let rid = h.request(0, req);
    assert!(!h.replies.contains_key(&(0, rid)), "acknowledged before the flush");
    h.crash(0);
    h.start(0);
    let v = h.value(0, "app/d").unwrap();
    assert_eq!(v["a"], 1);
    assert!(v.get("b").is_none(), "an unsynced append survived a crash: {v}");
    // The new boot writes with a new actor, so nothing collides with the lost change.
    let r = h.write(0, "app/d", r#"[{"op":"set","path":"b","value":3}]"#);
    assert_eq!(value_of(&r)["b"], 3);
}

#[test]
fn invalid_changes_are_refused_and_create_nothing() {
    let mut h = Cluster::new(2);
    h.write(0, "app/x", r#"[{"op":"inc","path":"n"}]"#);
    let r = h.write(0, "app/x", r#"[{"op":"set","path":"n.deeper","value":1}]"#);
    assert!(matches!(r, Reply::Error(ObjectError::Invalid { .. })), "{r:?}");
    let r = h.ask(
        1,
        Request::Write {
            object: obj("app/new"),
            change: Change::Import(b"not automerge".to_vec()),
            durability: Durability::Local,
        },
        Duration::from_secs(10),
    );
    assert!(matches!(r, Some(Reply::Error(ObjectError::Invalid { .. }))), "{r:?}");
    assert!(h.nodes[1].as_ref().unwrap().objects().doc(&obj("app/new")).is_none());
}

#[test]
fn a_missing_object_is_not_found_once_every_replica_says_so() {
    let mut h = Cluster::new(4);
    let r = h.get(2, "app/none");
    assert!(matches!(r, Reply::Error(ObjectError::NotFound { .. })), "{r:?}");
    // Nothing is remembered as missing: once written elsewhere, it is found.
    h.write(3, "app/none", r#"[{"op":"set","path":"x","value":1}]"#);
    h.run_for(Duration::from_secs(1));
    assert_eq!(value_of(&h.get(2, "app/none"))["x"], 1);
}

#[test]
fn a_read_waits_for_replicas_to_come_back_and_times_out_if_they_do_not() {
    // One replica per object, and the cloud node 0 is always it: node 1 only reads.
    let mut cfg = Config::default();
    cfg.replication.insert("app".into(), 1);
    let mut h = Cluster::with(2, cfg);
    h.write(0, "app/w", r#"[{"op":"set","path":"x","value":7}]"#);
    h.run_for(Duration::from_secs(1));
    // Node 1 has not read it; node 0 goes away for a while.
    h.partition(&[0], &[1]);
    let r = h.get(1, "app/w");
    assert!(matches!(r, Reply::Error(ObjectError::Unavailable { .. })), "{r:?}");
    // Asked again while cut off, then the link returns before the timeout: answered.
    let rid = h.request(1, Request::Get { object: obj("app/w"), after: None });
    h.run_for(Duration::from_secs(1));
    h.cut.clear();
    h.connect(1, 0);
    h.run_for(Duration::from_secs(3));
    let r = h.replies.remove(&(1, rid)).expect("answered after the heal");
    assert_eq!(value_of(&r)["x"], 7);
}

#[test]
fn quorum_writes_wait_for_a_majority_and_fail_clearly_without_one() {
    let mut h = Cluster::new(4);
    let req = |v: i64| Request::Write {
        object: obj("app/q"),
        change: ops(&format!(r#"[{{"op":"set","path":"v","value":{v}}}]"#)),
        durability: Durability::Quorum,
    };
    let r = h.ask(1, req(1), Duration::from_secs(20)).unwrap();
    match r {
        Reply::Value { durable_on, .. } => assert!(durable_on >= 2, "{durable_on}"),
        other => panic!("{other:?}"),
    }
    // Cut node 1 off from everyone: local durability only, then a clear quorum error.
    h.partition(&[1], &[0, 2, 3]);
    let r = h.ask(1, req(2), Duration::from_secs(30)).unwrap();
    assert!(matches!(r, Reply::Error(ObjectError::Quorum { .. })), "{r:?}");
    // The write was not lost: it replicates after the heal.
    h.cut.clear();
    h.run_for(Duration::from_secs(30));
    assert_eq!(h.value(0, "app/q").unwrap()["v"], 2);
}

#[test]
fn a_restarted_replica_catches_up() {
    let mut h = Cluster::new(3);
    h.write(0, "app/r", r#"[{"op":"set","path":"v","value":1}]"#);
    h.run_for(Duration::from_secs(1));
    for k in 0..3 {
        h.get(k, "app/r");
    }
    h.crash(2);
    h.write(0, "app/r", r#"[{"op":"set","path":"v","value":2}]"#);
    h.run_for(Duration::from_secs(1));
    h.start(2);
    h.connect(2, 0);
    h.run_for(Duration::from_secs(15));
    assert_eq!(h.value(2, "app/r").unwrap()["v"], 2);
}

#[test]
fn listing_and_export() {
    let mut h = Cluster::new(1);
    h.run_for(Duration::from_secs(6));
    h.write(0, "app/a", r#"[{"op":"set","path":"x","value":1}]"#);
    h.write(0, "app/b", r#"[{"op":"set","path":"x","value":2}]"#);
    h.write(0, "other/c", r#"[{"op":"set","path":"x","value":3}]"#);
    let r = h.ask(0, Request::List { prefix: "app/".into(), after: None, limit: 10 }, Duration::from_secs(1)).unwrap();
    let Reply::List(list) = r else { panic!("{r:?}") };
    assert_eq!(list.iter().map(|l| l.object.as_str()).collect::<Vec<_>>(), ["app/a", "app/b"]);
    let r = h.ask(0, Request::Export { object: obj("app/a") }, Duration::from_secs(1)).unwrap();
    let Reply::Export { bytes, .. } = r else { panic!("{r:?}") };
    let doc = Document::load(ActorId::from(b"reader".as_slice()), [bytes.as_slice()]).unwrap();
    assert_eq!(doc.value()["x"], 1);
    // A lone node that has been up a while answers "not found" at once.
    let r = h.ask(0, Request::Get { object: obj("app/zzz"), after: None }, Duration::from_millis(1)).unwrap();
    assert!(matches!(r, Reply::Error(ObjectError::NotFound { .. })), "{r:?}");
}

#[test]
fn listing_pages_after_a_cursor_and_stays_inside_the_prefix() {
    let mut h = Cluster::new(1);
    h.run_for(Duration::from_secs(6));
    for k in ["a", "b", "c", "d", "e"] {
        h.write(0, &format!("app/{k}"), r#"[{"op":"set","path":"x","value":1}]"#);
    }
    // Names that sort right before and after the prefix must never leak into a page.
    h.write(0, "ap/z", r#"[{"op":"set","path":"x","value":1}]"#);
    h.write(0, "apq/a", r#"[{"op":"set","path":"x","value":1}]"#);
    let mut page = |after: Option<&str>, prefix: &str| {
        let req = Request::List { prefix: prefix.into(), after: after.map(str::to_string), limit: 2 };
        let Some(Reply::List(list)) = h.ask(0, req, Duration::from_secs(1)) else { panic!("no list") };
        list.iter().map(|l| l.object.as_str().to_string()).collect::<Vec<_>>()
    };
    assert_eq!(page(None, "app/"), ["app/a", "app/b"]);
    assert_eq!(page(Some("app/b"), "app/"), ["app/c", "app/d"]);
    assert_eq!(page(Some("app/d"), "app/"), ["app/e"]);
    assert!(page(Some("app/e"), "app/").is_empty());
    // A cursor before the prefix starts at the prefix; one past it lists nothing.
    assert_eq!(page(Some("aa"), "app/"), ["app/a", "app/b"]);
    assert!(page(Some("zzz"), "app/").is_empty());
    // A cursor that is not a valid name (any string sorts) works too.
    assert_eq!(page(Some("app/b\u{ff}"), "app/"), ["app/c", "app/d"]);
    assert_eq!(page(None, ""), ["ap/z", "app/a"]);
}

#[test]
fn a_flood_of_creations_meets_the_namespace_quota_and_loses_nothing() {
    let cfg = Config { namespace_objects_max: 3, ..Config::default() };
    let mut h = Cluster::with(1, cfg);
    h.run_for(Duration::from_secs(6));
    for k in 0..3 {
        let r = h.write(0, &format!("flood/k{k}"), r#"[{"op":"inc","path":"n"}]"#);
        assert!(matches!(r, Reply::Value { .. }), "{r:?}");
    }
    let r = h.write(0, "flood/k3", r#"[{"op":"inc","path":"n"}]"#);
    assert!(matches!(&r, Reply::Error(ObjectError::Quota { namespace, max: 3 }) if namespace == "flood"), "{r:?}");
    // The refused creation left nothing behind, existing objects still take writes, and
    // other namespaces are not affected.
    let r = h.ask(0, Request::Get { object: obj("flood/k3"), after: None }, Duration::from_millis(1)).unwrap();
    assert!(matches!(r, Reply::Error(ObjectError::NotFound { .. })), "{r:?}");
    let r = h.write(0, "flood/k0", r#"[{"op":"inc","path":"n"}]"#);
    assert_eq!(value_of(&r)["n"], 2);
    let r = h.write(0, "other/a", r#"[{"op":"inc","path":"n"}]"#);
    assert!(matches!(r, Reply::Value { .. }), "{r:?}");
    for k in 0..3 {
        assert_eq!(h.value(0, &format!("flood/k{k}")).unwrap()["n"], if k == 0 { 2 } else { 1 });
    }
}

#[test]
fn writes_past_the_storage_budget_are_refused_and_what_was_acknowledged_stays() {
    let cfg = Config { storage_bytes_max: 4_000, ..Config::default() };
    let mut h = Cluster::with(1, cfg);
    h.run_for(Duration::from_secs(6));
    let mut acked = 0;
    let mut refused = None;
    for k in 0..200 {
        let value = "x".repeat(100);
        let r = h.write(0, &format!("app/k{k}"), &format!(r#"[{{"op":"set","path":"v","value":"{value}"}}]"#));
        match r {
            Reply::Value { .. } => acked += 1,
            Reply::Error(e @ ObjectError::Storage { .. }) => {
                refused = Some(e);
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    let Some(ObjectError::Storage { used, max }) = refused else { panic!("never refused after {acked} writes") };
    assert!(used >= max && acked > 5, "used {used} max {max} after {acked}");
    for k in 0..acked {
        assert_eq!(h.value(0, &format!("app/k{k}")).unwrap()["v"].as_str().map(str::len), Some(100), "k{k}");
    }
}

/// Flips a byte in the payload of the middle record of node `k`'s log of `name` (a disk
/// that damaged durable bytes), and returns how many records the log holds.
fn damage_middle_record(h: &mut Cluster, k: usize, name: &str) -> usize {
    damage_record(h, k, name, |records| records / 2)
}

/// Flips a byte in the payload of record `which(records)` of node `k`'s log of `name`.
fn damage_record(h: &mut Cluster, k: usize, name: &str, which: fn(usize) -> usize) -> usize {
    let object = obj(name);
    let image = h.disks[k].durable_image(&object).expect("a log").to_vec();
    let mut starts = Vec::new();
    let mut off = 8 + 9 + name.len();
    while off + 4 <= image.len() {
        starts.push(off);
        let len = u32::from_le_bytes(image[off..off + 4].try_into().unwrap()) as usize;
        off += 9 + len;
    }
    let at = starts[which(starts.len())] + 6;
    assert!(h.disks[k].damage(&object, at, image[at] ^ 0x40));
    starts.len()
}

fn count_to(h: &mut Cluster, k: usize, name: &str, n: usize) {
    for _ in 0..n {
        let r = h.write(k, name, r#"[{"op":"inc","path":"n"}]"#);
        assert!(matches!(r, Reply::Value { .. }), "{r:?}");
    }
}

/// The story (issue 17): node 0's disk damages the middle of a counter's log while it is
/// down. At restart the later records survive but depend on the lost one, so node 0 refuses
/// to serve the counter (rather than an older value) until a replica sends the lost
/// changes back; then it reads the full count again, and keeps it across another restart.
#[test]
fn a_damaged_object_is_refused_until_a_replica_repairs_it() {
    let mut h = Cluster::new(3);
    count_to(&mut h, 0, "app/c", 20);
    h.run_for(Duration::from_secs(2));
    for k in 1..3 {
        assert_eq!(h.value(k, "app/c").unwrap()["n"], 20, "node {k} is a replica");
    }
    h.crash(0);
    assert!(damage_middle_record(&mut h, 0, "app/c") >= 10);
    h.start(0);
    match h.get(0, "app/c") {
        Reply::Error(ObjectError::Damaged { object, kept }) => {
            assert_eq!(object, obj("app/c"));
            assert!(kept.contains("corrupt"), "{kept}");
        }
        r => panic!("a damaged object was served: {r:?}"),
    }
    assert_eq!(h.node(0).objects().damaged().count(), 1);
    h.connect(0, 1);
    h.connect(0, 2);
    h.run_for(Duration::from_secs(15));
    assert_eq!(h.node(0).objects().damaged().count(), 0, "repaired by sync");
    assert_eq!(value_of(&h.get(0, "app/c"))["n"], 20);
    count_to(&mut h, 0, "app/c", 1);
    h.run_for(Duration::from_secs(1));
    h.crash(0);
    h.start(0);
    assert_eq!(value_of(&h.get(0, "app/c"))["n"], 21, "the repaired log is whole");
}

/// The story: the same damage on a node with no replica. Its changes after the damage
/// cannot be applied and nobody can send the lost ones, so reads and writes are refused
/// with an error naming the kept file — never answered with the older count — even after
/// a restart.
#[test]
fn a_damaged_object_without_a_replica_refuses_reads() {
    let mut h = Cluster::new(1);
    count_to(&mut h, 0, "app/solo", 20);
    h.crash(0);
    damage_middle_record(&mut h, 0, "app/solo");
    for _restart in 0..2 {
        h.start(0);
        h.run_for(Duration::from_secs(30));
        let r = h.get(0, "app/solo");
        assert!(matches!(&r, Reply::Error(ObjectError::Damaged { .. })), "{r:?}");
        let r = h.write(0, "app/solo", r#"[{"op":"inc","path":"n"}]"#);
        assert!(matches!(&r, Reply::Error(ObjectError::Damaged { .. })), "{r:?}");
        assert_eq!(h.disks[0].kept().len(), 1, "the damaged log is kept once");
        h.crash(0);
    }
}

/// The story: the damage hits the log's first record (the snapshot every later change builds
/// on), so nothing at all applies at restart: the object has no heads, yet it is held (not
/// fetched over, not forgotten as empty), refused, offered to peers by digest, and repaired.
#[test]
fn a_damaged_first_record_leaves_nothing_applied_and_is_still_repaired() {
    let mut h = Cluster::new(3);
    count_to(&mut h, 0, "app/first", 10);
    h.run_for(Duration::from_secs(2));
    h.crash(0);
    damage_record(&mut h, 0, "app/first", |_| 0);
    h.partition(&[0], &[1, 2]);
    h.start(0);
    assert!(h.node(0).objects().doc(&obj("app/first")).unwrap().heads().is_empty());
    h.run_for(Duration::from_secs(11)); // an anti-entropy round, cut off: nothing is dropped
    let r = h.get(0, "app/first");
    assert!(matches!(&r, Reply::Error(ObjectError::Damaged { .. })), "{r:?}");
    h.heal();
    h.run_for(Duration::from_secs(15));
    assert_eq!(value_of(&h.get(0, "app/first"))["n"], 10);
}

/// The story: the same damage to the first record, on each node of a two-node cluster whose
/// objects have one replica, so one of the two runs damages a follower copy (which nobody
/// sends digests to unless it offers its own): both are repaired.
#[test]
fn a_damaged_follower_copy_with_nothing_applied_is_repaired_too() {
    for victim in 0..2 {
        let cfg = Config { replication_default: 1, ..Default::default() };
        let mut h = Cluster::with(2, cfg);
        // Both nodes write, so both logs hold records after their first one.
        count_to(&mut h, 0, "app/one", 5);
        h.run_for(Duration::from_secs(1));
        count_to(&mut h, 1, "app/one", 5);
        h.run_for(Duration::from_secs(2));
        count_to(&mut h, 0, "app/one", 1);
        h.run_for(Duration::from_secs(2));
        h.crash(victim);
        assert!(damage_record(&mut h, victim, "app/one", |_| 0) > 2, "victim {victim}");
        h.partition(&[0], &[1]);
        h.start(victim);
        h.run_for(Duration::from_secs(11));
        let r = h.get(victim, "app/one");
        assert!(matches!(&r, Reply::Error(ObjectError::Damaged { .. })), "victim {victim}: {r:?}");
        h.heal();
        h.run_for(Duration::from_secs(25));
        assert_eq!(value_of(&h.get(victim, "app/one"))["n"], 11, "victim {victim}");
    }
}

/// A cache that holds a handful of small documents.
fn small_cache() -> Config {
    Config { cache_bytes: 200 * 1024, ..Config::default() }
}

#[test]
fn documents_beyond_the_cache_go_cold_and_are_read_back_on_demand() {
    let mut h = Cluster::with(1, small_cache());
    h.run_for(Duration::from_secs(6));
    for k in 0..60 {
        let r = h.write(0, &format!("app/k{k:02}"), &format!(r#"[{{"op":"set","path":"v","value":{k}}}]"#));
        assert!(matches!(r, Reply::Value { .. }), "{r:?}");
    }
    let o = h.node(0).objects();
    let (hot, bytes) = o.in_memory();
    assert_eq!(o.held(), 60);
    assert!(hot < 20 && bytes <= 200 * 1024, "{hot} documents, {bytes} bytes in memory");
    assert!(o.stats().evictions >= 40, "{:?}", o.stats());
    // Every object reads back whole, cold or not, and a write to a cold one lands on the
    // document read back (not on an empty one).
    for k in 0..60 {
        let r = h.get(0, &format!("app/k{k:02}"));
        assert_eq!(value_of(&r)["v"], k, "app/k{k:02}");
    }
    let r = h.write(0, "app/k00", r#"[{"op":"set","path":"w","value":true}]"#);
    assert_eq!(value_of(&r)["v"], 0);
    assert_eq!(value_of(&r)["w"], true);
    assert!(h.node(0).objects().stats().loads >= 59, "{:?}", h.node(0).objects().stats());
    // Listing covers cold objects, in order.
    let req = Request::List { prefix: "app/".into(), after: Some("app/k09".into()), limit: 3 };
    let Some(Reply::List(list)) = h.ask(0, req, Duration::from_secs(1)) else { panic!("no list") };
    assert_eq!(list.iter().map(|l| l.object.as_str()).collect::<Vec<_>>(), ["app/k10", "app/k11", "app/k12"]);
    assert!(list.iter().all(|l| !l.heads.is_empty()));
}

#[test]
fn cold_replicas_take_changes_and_converge_across_a_partition_and_a_crash() {
    let mut h = Cluster::with(3, small_cache());
    h.run_for(Duration::from_secs(2));
    for k in 0..40 {
        h.write(k % 3, &format!("app/k{k:02}"), r#"[{"op":"inc","path":"n"}]"#);
    }
    h.run_for(Duration::from_secs(15));
    for n in 0..3 {
        let o = h.node(n).objects();
        assert_eq!(o.held(), 40, "node {n}");
        assert!(o.in_memory().0 < 40, "node {n} keeps every document in memory: {:?}", o.in_memory());
    }
    // Both sides write to every object while cut off: the changes land on cold documents
    // (parked syncs and requests), and anti-entropy compares cold digests after the heal.
    h.partition(&[0], &[1, 2]);
    for k in 0..40 {
        h.write(0, &format!("app/k{k:02}"), r#"[{"op":"inc","path":"n"}]"#);
        h.write(1 + k % 2, &format!("app/k{k:02}"), r#"[{"op":"inc","path":"n"}]"#);
    }
    h.run_for(Duration::from_secs(5));
    h.crash(2);
    h.start(2);
    h.heal();
    h.run_for(Duration::from_secs(40));
    for n in 0..3 {
        for k in 0..40 {
            assert_eq!(
                h.value(n, &format!("app/k{k:02}")).map(|v| v["n"].clone()),
                Some(3.into()),
                "node {n} app/k{k:02}"
            );
        }
        assert!(h.node(n).objects().in_memory().1 <= 200 * 1024, "node {n}");
    }
}

/// Damage found when a cold document is read back is handled like damage found at start:
/// the object is refused as damaged (never served older), the others are served, and a
/// replica repairs it.
#[test]
fn damage_found_when_a_cold_document_is_read_back_is_refused_then_repaired() {
    let mut h = Cluster::with(3, small_cache());
    h.run_for(Duration::from_secs(2));
    count_to(&mut h, 0, "app/c", 20);
    for k in 0..40 {
        h.write(0, &format!("app/k{k:02}"), r#"[{"op":"inc","path":"n"}]"#);
    }
    h.run_for(Duration::from_secs(40));
    assert!(h.node(0).objects().is_cold(&obj("app/c")), "app/c went cold on node 0");
    assert!(damage_middle_record(&mut h, 0, "app/c") >= 10);
    h.partition(&[0], &[1, 2]);
    match h.get(0, "app/c") {
        Reply::Error(ObjectError::Damaged { object, .. }) => assert_eq!(object, obj("app/c")),
        r => panic!("a damaged cold object was served: {r:?}"),
    }
    assert_eq!(value_of(&h.get(0, "app/k07"))["n"], 1, "the others are served");
    h.heal();
    h.run_for(Duration::from_secs(30));
    assert_eq!(h.node(0).objects().damaged().count(), 0, "repaired by sync");
    assert_eq!(value_of(&h.get(0, "app/c"))["n"], 20);
}

/// Bytes holding a document and, after it, a change whose dependency they lack: an automerge
/// *orphan*, as a whole-document sync message from a peer that holds one carries it.
fn document_with_an_orphan() -> Vec<u8> {
    let batch = |json: &str| Op::parse_batch(json).unwrap();
    let mut peer = Document::new(ActorId::from(b"peer".as_slice()));
    peer.apply(&batch(r#"[{"op":"set","path":"x","value":1}]"#), 0).unwrap();
    let mut bytes = peer.save();
    let lost = peer.apply(&batch(r#"[{"op":"set","path":"y","value":2}]"#), 0).unwrap();
    peer.apply(&batch(r#"[{"op":"set","path":"z","value":3}]"#), 0).unwrap();
    bytes.extend(peer.automerge().save_after(&lost.0));
    bytes
}

/// The objects-cold finding (seed 10): a node's new copy of an object took a peer's orphan
/// along with the document, its first log record (a snapshot) kept the orphan, and when the
/// cold document was read back the log lacked the orphan's dependency: an intact log taken
/// for damage, and the object refused until a replica repaired it. Orphans stay out of
/// snapshots, so the document reads back whole, cold and after a restart.
#[test]
fn an_orphan_taken_from_a_peer_is_not_read_back_as_damage() {
    let mut h = Cluster::with(1, small_cache());
    h.run_for(Duration::from_secs(6));
    let req = Request::Write {
        object: obj("app/orphan"),
        change: Change::Import(document_with_an_orphan()),
        durability: Durability::Local,
    };
    let r = h.ask(0, req, Duration::from_secs(10)).expect("answered");
    assert_eq!(value_of(&r), serde_json::json!({"x":1}));
    let doc = h.node(0).objects().doc(&obj("app/orphan")).expect("in memory");
    assert_eq!(doc.missing_deps().len(), 1, "the orphan waits in memory");
    for k in 0..40 {
        h.write(0, &format!("app/k{k:02}"), r#"[{"op":"inc","path":"n"}]"#);
    }
    assert!(h.node(0).objects().is_cold(&obj("app/orphan")), "app/orphan went cold");
    assert_eq!(value_of(&h.get(0, "app/orphan")), serde_json::json!({"x":1}), "read back, not refused");
    assert_eq!(h.node(0).objects().damaged().count(), 0);
    h.crash(0);
    h.start(0);
    assert_eq!(value_of(&h.get(0, "app/orphan")), serde_json::json!({"x":1}), "restored, not refused");
    assert_eq!(h.node(0).objects().damaged().count(), 0);
}

/// Documents that must stay in memory (a pinned namespace) at the old end of the cache do
/// not stop others from going cold, though more of them than one eviction pass looks at.
#[test]
fn pinned_documents_do_not_block_eviction_of_the_others() {
    let mut cfg = small_cache();
    cfg.everywhere.insert("pin".into());
    let mut h = Cluster::with(1, cfg);
    h.run_for(Duration::from_secs(6));
    for k in 0..300 {
        h.write(0, &format!("pin/k{k:03}"), r#"[{"op":"inc","path":"n"}]"#);
    }
    for k in 0..50 {
        h.write(0, &format!("app/k{k:02}"), r#"[{"op":"inc","path":"n"}]"#);
    }
    h.run_for(Duration::from_secs(1));
    let o = h.node(0).objects();
    let cold_app = (0..50).filter(|k| o.is_cold(&obj(&format!("app/k{k:02}")))).count();
    let cold_pin = (0..300).filter(|k| o.is_cold(&obj(&format!("pin/k{k:03}")))).count();
    assert_eq!(cold_pin, 0, "pinned documents stay in memory");
    assert!(cold_app >= 45, "only {cold_app} of 50 went cold");
}
