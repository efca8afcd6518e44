//! Tests of both stores: round trips, torn tails at every byte, crashes, compaction.

use std::fs;

use automerge::ActorId;
use serde_json::json;

use super::*;
use crate::ops::Op;

fn name(s: &str) -> ObjectName {
    ObjectName::parse(s).unwrap()
}

fn actor() -> ActorId {
    ActorId::from(b"store-test".as_slice())
}

/// Applies `inc n` and `set k{i}` as one write and appends it (not synced).
fn write<S: Store>(store: &mut S, n: &ObjectName, doc: &mut Document, i: usize) -> Heads {
    let ops: Vec<Op> =
        serde_json::from_value(json!([{"op":"inc","path":"n"},{"op":"set","path":format!("k{i}"),"value":i}])).unwrap();
    doc.apply(&ops, 0).unwrap();
    let compaction = Compaction { tail_bytes_min: u64::MAX };
    persist(store, n, doc, &compaction).unwrap().unwrap()
}

fn durable_write<S: Store>(store: &mut S, n: &ObjectName, doc: &mut Document, i: usize) {
    let heads = write(store, n, doc, i);
    store.sync().unwrap();
    assert_eq!(heads, doc.heads());
    assert_eq!(doc.unsaved(), None);
}

fn round_trip<S: Store>(store: &mut S) {
    let (a, b) = (name("ns/a"), name("ns/b"));
    assert!(store.load(&a).unwrap().is_none());
    let mut doc = Document::new(actor());
    for i in 0..3 {
        durable_write(store, &a, &mut doc, i);
    }
    store.append(&b, b"not automerge, but the store does not care").unwrap();
    store.sync().unwrap();
    assert_eq!(store.list().unwrap(), [a.clone(), b.clone()]);
    let log = store.load(&a).unwrap().unwrap();
    assert_eq!((log.chunks.len(), log.torn, log.stats.records), (3, None, 4));
    assert_eq!(store.stats(&a), Some(log.stats));
    let restored = restore(store, &a, actor()).unwrap().unwrap();
    assert_eq!(restored.doc.read(), doc.read());
    assert!(matches!(restore(store, &b, actor()), Err(RestoreError::Load { .. })));
    store.remove(&b).unwrap();
    assert_eq!(store.list().unwrap(), [a]);
    assert!(store.load(&b).unwrap().is_none());
}

#[test]
fn sim_round_trip() {
    round_trip(&mut SimStore::new());
}

#[test]
fn file_round_trip_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = FileStore::open(dir.path()).unwrap();
    round_trip(&mut store);
    let before = restore(&mut store, &name("ns/a"), actor()).unwrap().unwrap().doc.read();
    drop(store);
    fs::write(dir.path().join("leftover.tmp"), b"half a compaction").unwrap();
    let mut store = FileStore::open(dir.path()).unwrap();
    assert!(!dir.path().join("leftover.tmp").exists());
    assert_eq!(restore(&mut store, &name("ns/a"), actor()).unwrap().unwrap().doc.read(), before);
}

/// The story: a node is killed while appending its last record. Whatever prefix of that
/// record reached the disk, recovery drops exactly that record, keeps every earlier one,
/// cuts the file so later appends are readable, and reports the torn tail.
#[test]
fn file_torn_at_every_offset_of_the_last_record_keeps_all_earlier_records() {
    let dir = tempfile::tempdir().unwrap();
    let n = name("app/counter");
    let mut doc = Document::new(actor());
    let mut store = FileStore::open(dir.path()).unwrap();
    for i in 0..4 {
        durable_write(&mut store, &n, &mut doc, i);
    }
    let earlier = doc.read();
    let path = store.path(&n);
    let start = fs::metadata(&path).unwrap().len() as usize;
    durable_write(&mut store, &n, &mut doc, 4);
    drop(store);
    let full = fs::read(&path).unwrap();
    assert!(full.len() > start + log::OVERHEAD);
    for cut in start..full.len() {
        fs::write(&path, &full[..cut]).unwrap();
        let mut store = FileStore::open(dir.path()).unwrap();
        let restored = restore(&mut store, &n, actor()).unwrap().unwrap();
        assert_eq!(restored.doc.read(), earlier, "cut at {cut}");
        let torn = (cut > start).then(|| TornTail { offset: start as u64, dropped_bytes: (cut - start) as u64 });
        assert_eq!(restored.torn, torn, "cut at {cut}");
        assert_eq!(restored.damage, None, "cut at {cut}: a torn tail is not damage");
        assert_eq!(fs::metadata(&path).unwrap().len() as usize, start, "the torn tail is cut off");
        // Writing on after recovery works, and survives another restart.
        let mut doc = restored.doc;
        durable_write(&mut store, &n, &mut doc, 9);
        drop(store);
        let mut store = FileStore::open(dir.path()).unwrap();
        assert_eq!(restore(&mut store, &n, actor()).unwrap().unwrap().doc.read(), doc.read(), "cut at {cut}");
    }
}

#[test]
fn file_with_an_unfinished_header_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = FileStore::open(dir.path()).unwrap();
    let n = name("ns/new");
    let header = log::header(&n);
    for cut in 0..header.len() {
        fs::write(store.path(&n), &header[..cut]).unwrap();
        assert!(store.load(&n).unwrap().is_none(), "cut at {cut}");
        assert!(!store.path(&n).exists());
    }
    fs::write(store.path(&n), log::header(&name("ns/other"))).unwrap();
    let err = store.load(&n).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }) && err.to_string().contains("move it away"), "{err}");
}

/// The story: a crash loses exactly the writes appended after the last sync — all of them,
/// or (with a torn write) all but a prefix the log then drops — and nothing synced.
#[test]
fn sim_crash_loses_exactly_the_unsynced_writes() {
    let n = name("ns/obj");
    let mut store = SimStore::new();
    let mut doc = Document::new(actor());
    durable_write(&mut store, &n, &mut doc, 0);
    durable_write(&mut store, &n, &mut doc, 1);
    let synced = doc.read();
    let len = |s: &SimStore| s.stats(&n).unwrap().bytes as usize;
    let base = len(&store);
    write(&mut store, &n, &mut doc, 2); // appended, never synced
    let mid = len(&store) - base;
    write(&mut store, &n, &mut doc, 3);
    let end = len(&store) - base;
    assert_eq!(store.durable_image(&n).unwrap().len(), base);
    for keep in 0..=end + 1 {
        let mut crashed = store.clone();
        crashed.crash_torn(|_, unsynced| {
            assert_eq!(unsynced, end);
            keep
        });
        let restored = restore(&mut crashed, &n, actor()).unwrap().unwrap();
        let expected = if keep < mid {
            2
        } else if keep < end {
            3
        } else {
            4
        };
        assert_eq!(restored.doc.value()["n"], json!(expected), "keep {keep}");
        assert!(restored.doc.has_heads(&synced.heads), "keep {keep}: a synced write was lost");
        let torn = ![0, mid].contains(&keep) && keep < end;
        assert_eq!(restored.torn.is_some(), torn, "keep {keep}");
    }
    store.crash();
    assert_eq!(restore(&mut store, &n, actor()).unwrap().unwrap().doc.read(), synced);
    let mut fresh = SimStore::new();
    fresh.append(&n, b"x").unwrap();
    fresh.crash();
    assert!(fresh.load(&n).unwrap().is_none() && fresh.list().unwrap().is_empty(), "a never-synced log vanishes");
}

fn compaction_bounds_the_log<S: Store>(store: &mut S) {
    let n = name("ns/busy");
    let mut doc = Document::new(actor());
    let compaction = Compaction { tail_bytes_min: 2000 };
    let mut compactions = 0;
    for i in 0..300 {
        let ops: Vec<Op> =
            serde_json::from_value(json!([{"op":"inc","path":"n"},{"op":"set","path":"last","value":i}])).unwrap();
        doc.apply(&ops, 0).unwrap();
        let before = store.stats(&n).map_or(0, |s| s.records);
        persist(store, &n, &mut doc, &compaction).unwrap().unwrap();
        store.sync().unwrap();
        let stats = store.stats(&n).unwrap();
        if stats.records < before {
            compactions += 1;
        }
        assert!(stats.bytes <= 2 * stats.base_bytes + 2000 + 200, "log unbounded: {stats:?}");
    }
    assert!(compactions >= 2, "{compactions} compactions");
    let restored = restore(store, &n, actor()).unwrap().unwrap();
    assert_eq!(restored.doc.read(), doc.read());
    assert_eq!(restored.doc.value()["n"], json!(300));
}

#[test]
fn sim_compaction_bounds_the_log() {
    compaction_bounds_the_log(&mut SimStore::new());
}

#[test]
fn file_compaction_bounds_the_log() {
    let dir = tempfile::tempdir().unwrap();
    compaction_bounds_the_log(&mut FileStore::open(dir.path()).unwrap());
    let files: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(files.len(), 1, "{files:?}");
}

#[test]
fn compaction_policy() {
    let c = Compaction { tail_bytes_min: 100 };
    assert!(!c.due(&LogStats { bytes: 150, base_bytes: 100, records: 3 }));
    assert!(!c.due(&LogStats { bytes: 1000, base_bytes: 600, records: 3 }), "tail smaller than the base");
    assert!(c.due(&LogStats { bytes: 1300, base_bytes: 600, records: 3 }));
    assert!(c.due(&LogStats { bytes: 200, base_bytes: 20, records: 3 }));
}

/// `count` durable writes to `n` (each `inc n`), returning the document and the offset at
/// which each record starts in the log.
fn durable_writes<S: Store>(store: &mut S, n: &ObjectName, count: usize) -> (Document, Vec<usize>) {
    let mut doc = Document::new(actor());
    let mut starts = Vec::new();
    for i in 0..count {
        starts.push(store.stats(n).map_or(log::header(n).len(), |s| s.bytes as usize));
        durable_write(store, n, &mut doc, i);
    }
    (doc, starts)
}

/// The story (issue 17): a disk flips one byte in the middle of a counter's log, 200 writes
/// long. That is not a torn tail: the log is not cut at the bad byte, the damaged file is
/// kept aside, every record that still verifies (before and after the bad one) is kept, and
/// the document knows it lacks changes (the later ones depend on the lost one), so it can
/// say so and be repaired by sync.
#[test]
fn file_a_flipped_byte_mid_log_is_damage_not_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let n = name("app/counter");
    let mut store = FileStore::open(dir.path()).unwrap().with_unix_clock(|| 1_700_000_000);
    let (doc, starts) = durable_writes(&mut store, &n, 200);
    drop(store);
    let path = FileStore::open(dir.path()).unwrap().path(&n);
    let original = fs::read(&path).unwrap();
    let mut bad = original.clone();
    let at = starts[66] + 12;
    bad[at] ^= 0x5a;
    fs::write(&path, &bad).unwrap();

    let mut store = FileStore::open(dir.path()).unwrap().with_unix_clock(|| 1_700_000_000);
    let restored = restore(&mut store, &n, actor()).unwrap().unwrap();
    assert_eq!(restored.torn, None, "damage is not a torn tail");
    let damage = restored.damage.clone().expect("damage reported");
    assert_eq!(damage.gaps, [Gap { offset: starts[66] as u64, bytes: (starts[67] - starts[66]) as u64 }]);
    assert_eq!(damage.records_after, 133);
    assert_eq!(
        damage.kept,
        dir.path().join(format!("{}.corrupt-1700000000", path.file_name().unwrap().to_string_lossy()))
    );
    assert_eq!(fs::read(&damage.kept).unwrap(), bad, "the damaged file is kept as it was");
    assert!(restored.incomplete(), "the changes after the damage wait for the lost one");
    assert_eq!(restored.doc.missing_deps().len(), 1);
    assert_eq!(restored.doc.value()["n"], json!(66), "only the changes before the damage apply");
    // The rewritten log holds every record that verifies, and nothing else.
    let log = store.load(&n).unwrap().unwrap();
    assert_eq!((log.chunks.len(), log.torn, log.damage), (199, None, None));
    assert_eq!(fs::metadata(&path).unwrap().len(), (original.len() - (starts[67] - starts[66])) as u64);
    // The lost change, from a replica, makes the document whole, with all 200 writes.
    let mut repaired = restore(&mut store, &n, actor()).unwrap().unwrap().doc;
    // (The lost record's change, found by the hash the document misses: the first record also
    // holds the structural change that created the counter, so change and record numbers differ.)
    let missing = repaired.missing_deps();
    let lost: Vec<_> = doc.automerge().get_changes(&[]).into_iter().filter(|c| missing.contains(&c.hash())).collect();
    assert_eq!(lost.len(), 1, "exactly the damaged record's change is missing");
    repaired.automerge_mut().apply_changes(lost).unwrap();
    assert_eq!(repaired.missing_deps(), []);
    assert_eq!(repaired.read(), doc.read());
    let kept: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(kept.len(), 2, "the log and one kept copy: {kept:?}");
}

/// The story: flipping any one byte of a small log never panics; a flip in a record with
/// intact records after it is reported as damage (never as a torn tail) and every other
/// record is kept; only a flip in the last record is a torn tail.
#[test]
fn sim_a_flip_at_every_offset_is_damage_unless_nothing_follows() {
    let n = name("ns/flip");
    let mut store = SimStore::new();
    let (_, mut starts) = durable_writes(&mut store, &n, 5);
    let image = store.durable_image(&n).unwrap().to_vec();
    starts.push(image.len());
    let header = log::header(&n).len();
    for at in 0..image.len() {
        for mask in [0x01, 0x80, 0xff] {
            let mut s = store.clone();
            assert!(s.damage(&n, at, image[at] ^ mask));
            // Only damage to the name's own bytes hides the log from a listing.
            let in_name = (log::MAGIC.len() + 5..log::MAGIC.len() + 5 + n.as_str().len()).contains(&at);
            let listed = s.list().unwrap();
            assert_eq!(listed.is_empty(), at < log::MAGIC.len() || in_name, "byte {at} ^ {mask:#x}: listed {listed:?}");
            let loaded = s.load(&n);
            let ctx = format!("byte {at} ^ {mask:#x}");
            if at < log::MAGIC.len() {
                assert!(matches!(loaded, Err(StoreError::Corrupt { .. })), "{ctx}: {loaded:?}");
                continue;
            }
            let log = loaded.unwrap().unwrap_or_else(|| panic!("{ctx}: the log vanished"));
            assert_eq!(s.list().unwrap(), std::slice::from_ref(&n), "{ctx}: the log is listed once loaded");
            let record = starts.iter().rposition(|s| *s <= at).filter(|_| at >= header);
            match record {
                Some(4) => {
                    assert_eq!(log.damage, None, "{ctx}");
                    assert_eq!(log.torn.map(|t| t.offset), Some(starts[4] as u64), "{ctx}");
                    assert_eq!(log.chunks.len(), 4, "{ctx}");
                }
                Some(k) => {
                    assert_eq!(log.torn, None, "{ctx}: intact records follow, so it is not a torn tail");
                    let d = log.damage.unwrap_or_else(|| panic!("{ctx}: no damage reported"));
                    assert_eq!(
                        d.gaps,
                        [Gap { offset: starts[k] as u64, bytes: (starts[k + 1] - starts[k]) as u64 }],
                        "{ctx}"
                    );
                    assert_eq!(d.records_after, (4 - k) as u64, "{ctx}");
                    assert_eq!(log.chunks.len(), 4, "{ctx}");
                    assert!(s.kept().values().any(|v| v[at] == image[at] ^ mask), "{ctx}: damaged image kept");
                }
                None => {
                    // The name record: its records are all kept, and the log is listed.
                    assert_eq!(log.torn, None, "{ctx}");
                    assert_eq!(log.damage.map(|d| d.gaps[0].offset), Some(log::MAGIC.len() as u64), "{ctx}");
                    assert_eq!(log.chunks.len(), 5, "{ctx}");
                }
            }
            // The log as kept loads cleanly again.
            let again = s.load(&n).unwrap().unwrap();
            assert_eq!((again.torn, again.damage, again.chunks.len()), (None, None, log.chunks.len()), "{ctx}");
        }
    }
}

/// The story: the checksum of a log's name record is damaged. The log is still listed (its
/// file is named after the name's hash, which damage cannot fake), and its records are kept.
#[test]
fn file_a_damaged_name_record_is_still_listed_and_its_records_kept() {
    let dir = tempfile::tempdir().unwrap();
    let n = name("app/named");
    let mut store = FileStore::open(dir.path()).unwrap();
    let (doc, _) = durable_writes(&mut store, &n, 3);
    drop(store);
    let path = FileStore::open(dir.path()).unwrap().path(&n);
    let mut bytes = fs::read(&path).unwrap();
    bytes[log::header(&n).len() - 1] ^= 0x01;
    fs::write(&path, &bytes).unwrap();
    let mut store = FileStore::open(dir.path()).unwrap();
    assert_eq!(store.list().unwrap(), std::slice::from_ref(&n));
    let restored = restore(&mut store, &n, actor()).unwrap().unwrap();
    assert_eq!(restored.damage.map(|d| d.gaps[0].offset), Some(log::MAGIC.len() as u64));
    assert_eq!(restored.doc.read(), doc.read());
    assert_eq!(store.kept(&n).unwrap().len(), 1);
}
