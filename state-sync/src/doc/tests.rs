//! Unit tests of [`Document`]: every operation, every refusal, atomicity, saving.

use serde_json::json;

use super::*;
use crate::object::Path;
use crate::ops::OpError;

fn doc() -> Document {
    Document::new(ActorId::from(b"actor-1".as_slice()))
}

fn ops(j: Json) -> Vec<Op> {
    serde_json::from_value(j).unwrap()
}

fn apply(d: &mut Document, j: Json) -> Result<Heads, BatchError> {
    d.apply(&ops(j), 0)
}

fn op_error(r: Result<Heads, BatchError>) -> OpError {
    match r {
        Err(BatchError::Op { source, .. }) => source,
        other => panic!("expected an op error, got {other:?}"),
    }
}

#[test]
fn set_creates_maps_and_reads_back() {
    let mut d = doc();
    apply(
        &mut d,
        json!([{"op":"set","path":"a.b.c","value":{"x":[1,-2,3.5,"s",true,null,{"y":18446744073709551615u64}]}}]),
    )
    .unwrap();
    assert_eq!(d.value(), json!({"a":{"b":{"c":{"x":[1,-2,3.5,"s",true,null,{"y":18446744073709551615u64}]}}}}));
    apply(&mut d, json!([{"op":"set","path":"a.b.c.x.1","value":"two"}])).unwrap();
    assert_eq!(d.value()["a"]["b"]["c"]["x"][1], json!("two"));
    apply(&mut d, json!([{"op":"set","path":"a.b","value":5}])).unwrap();
    assert_eq!(d.value(), json!({"a":{"b":5}}));
}

#[test]
fn counters_count_and_refuse_misuse() {
    let mut d = doc();
    apply(&mut d, json!([{"op":"inc","path":"stats.n"},{"op":"inc","path":"stats.n","by":4},{"op":"inc","path":"stats.n","by":-2}]))
        .unwrap();
    assert_eq!(d.value(), json!({"stats":{"n":3}}));
    let e = op_error(apply(&mut d, json!([{"op":"set","path":"stats.n","value":0}])));
    assert_eq!(e, OpError::SetOnCounter { path: Path::parse("stats.n").unwrap() });
    assert!(e.to_string().contains("with inc"), "{e}");
    apply(&mut d, json!([{"op":"set","path":"s","value":"x"}])).unwrap();
    let e = op_error(apply(&mut d, json!([{"op":"inc","path":"s"}])));
    assert!(matches!(e, OpError::NotACounter { found: "string", .. }), "{e:?}");
    let e = op_error(apply(&mut d, json!([{"op":"inc","path":"stats.n","by":i64::MAX}])));
    assert!(matches!(e, OpError::InvalidValue { .. }) && e.to_string().contains("2^53"), "{e}");
    apply(&mut d, json!([{"op":"inc","path":"stats.n","by":-(1i64 << 53)}])).unwrap();
    apply(&mut d, json!([{"op":"del","path":"stats.n"},{"op":"set","path":"stats.n","value":0}])).unwrap();
    assert_eq!(d.value()["stats"]["n"], json!(0));
}

#[test]
fn lists_insert_and_delete() {
    let mut d = doc();
    apply(
        &mut d,
        json!([{"op":"insert","path":"l","value":"b"},{"op":"insert","path":"l","index":0,"value":"a"},
        {"op":"insert","path":"l","value":{"k":[1]}}]),
    )
    .unwrap();
    assert_eq!(d.value(), json!({"l":["a","b",{"k":[1]}]}));
    apply(&mut d, json!([{"op":"del","path":"l.1"},{"op":"inc","path":"l.1.n"}])).unwrap();
    assert_eq!(d.value(), json!({"l":["a",{"k":[1],"n":1}]}));
    let e = op_error(apply(&mut d, json!([{"op":"insert","path":"l","index":3,"value":0}])));
    assert!(matches!(e, OpError::IndexOutOfRange { index: 3, len: 2, .. }), "{e:?}");
    let e = op_error(apply(&mut d, json!([{"op":"del","path":"l.5"}])));
    assert!(matches!(e, OpError::IndexOutOfRange { index: 5, len: 2, .. }), "{e:?}");
    assert!(e.to_string().contains(" l,"), "names the list: {e}");
    let e = op_error(apply(&mut d, json!([{"op":"set","path":"l.x","value":0}])));
    assert!(matches!(&e, OpError::BadIndex { segment, .. } if segment == "x"), "{e:?}");
    let e = op_error(apply(&mut d, json!([{"op":"set","path":"l.7.x","value":0}])));
    assert!(matches!(e, OpError::IndexOutOfRange { index: 7, .. }), "no creation inside lists: {e:?}");
    apply(&mut d, json!([{"op":"set","path":"m","value":{}}])).unwrap();
    let e = op_error(apply(&mut d, json!([{"op":"insert","path":"m","value":0}])));
    assert!(matches!(e, OpError::NotAList { found: "map", .. }), "{e:?}");
}

#[test]
fn text_splices() {
    let mut d = doc();
    apply(&mut d, json!([{"op":"set","path":"t","value":"hello","text":true},{"op":"splice","path":"t","index":5,"insert":" wörld"}]))
        .unwrap();
    apply(&mut d, json!([{"op":"splice","path":"t","index":7,"delete":1,"insert":"o"}])).unwrap();
    assert_eq!(d.value(), json!({"t":"hello world"}));
    let e = op_error(apply(&mut d, json!([{"op":"splice","path":"t","index":10,"delete":5}])));
    assert!(matches!(e, OpError::IndexOutOfRange { index: 15, len: 11, .. }), "{e:?}");
    apply(&mut d, json!([{"op":"set","path":"plain","value":"abc"}])).unwrap();
    let e = op_error(apply(&mut d, json!([{"op":"splice","path":"plain","index":0,"insert":"x"}])));
    assert!(matches!(e, OpError::NotText { found: "string", .. }) && e.to_string().contains("\"text\":true"), "{e}");
    let e = op_error(apply(&mut d, json!([{"op":"set","path":"t2","value":1,"text":true}])));
    assert!(matches!(e, OpError::InvalidValue { .. }), "{e:?}");
    let e = op_error(apply(&mut d, json!([{"op":"set","path":"t.x","value":1}])));
    assert!(matches!(e, OpError::NotAContainer { found: "text", .. }), "{e:?}");
    let e = op_error(apply(&mut d, json!([{"op":"splice","path":"nope","index":0}])));
    assert!(matches!(e, OpError::NotFound { .. }), "{e:?}");
}

#[test]
fn paths_through_scalars_and_missing_things_fail() {
    let mut d = doc();
    apply(&mut d, json!([{"op":"set","path":"a","value":1}])).unwrap();
    let e = op_error(apply(&mut d, json!([{"op":"set","path":"a.b","value":1}])));
    assert_eq!(e, OpError::NotAContainer { path: Path::parse("a").unwrap(), found: "number" });
    let e = op_error(apply(&mut d, json!([{"op":"del","path":"x.y"}])));
    assert_eq!(e, OpError::NotFound { path: Path::parse("x").unwrap() });
    let e = op_error(apply(&mut d, json!([{"op":"del","path":"b"}])));
    assert_eq!(e, OpError::NotFound { path: Path::parse("b").unwrap() });
}

#[test]
fn a_failing_batch_applies_nothing() {
    let mut d = doc();
    let before = apply(&mut d, json!([{"op":"set","path":"keep","value":1}])).unwrap();
    let err = apply(&mut d, json!([{"op":"set","path":"new","value":2},{"op":"inc","path":"keep.x"}])).unwrap_err();
    assert!(matches!(err, BatchError::Op { index: 1, kind: "inc", .. }), "{err:?}");
    assert!(err.to_string().contains("#1 (inc keep.x)") && err.to_string().contains("nothing was applied"), "{err}");
    assert_eq!(d.heads(), before);
    assert_eq!(d.value(), json!({"keep":1}));
    let too_many = vec![Op::Del { path: Path::parse("x").unwrap() }; OPS_PER_BATCH_MAX + 1];
    assert!(matches!(d.apply(&too_many, 0), Err(BatchError::TooManyOps { .. })));
}

#[test]
fn a_batch_is_one_change() {
    let mut d = doc();
    apply(
        &mut d,
        json!([{"op":"set","path":"a","value":1},{"op":"set","path":"b","value":2},{"op":"set","path":"c","value":3}]),
    )
    .unwrap();
    assert_eq!(d.automerge().get_changes(&[]).len(), 1);
    // Creating a counter adds one structural change (timestamp 0, a synthetic actor) before
    // the batch's own change, which holds every write.
    apply(&mut d, json!([{"op":"set","path":"d","value":1},{"op":"inc","path":"e","by":2}])).unwrap();
    let changes = d.automerge().get_changes(&[]);
    assert_eq!(changes.len(), 3);
    assert_eq!((changes[1].timestamp(), changes[1].len()), (0, 1));
    assert_ne!(changes[1].actor_id(), changes[2].actor_id());
    assert_eq!(changes[2].len(), 2);
    assert_eq!(d.value(), json!({"a":1,"b":2,"c":3,"d":1,"e":2}));
}

#[test]
fn counters_stay_in_range() {
    let mut d = doc();
    let max = 1i64 << 53;
    apply(&mut d, json!([{"op":"inc","path":"n","by":max}])).unwrap();
    let e = op_error(apply(&mut d, json!([{"op":"inc","path":"n","by":1}])));
    assert_eq!(e, OpError::CounterOutOfRange { path: Path::parse("n").unwrap(), before: max, by: 1 });
    assert!(e.to_string().contains("2^53"), "{e}");
    assert_eq!(d.value(), json!({"n":max}));
    // The same at the bottom, and a refused batch changes nothing.
    apply(&mut d, json!([{"op":"inc","path":"n","by":-max},{"op":"inc","path":"n","by":-max}])).unwrap();
    let heads = d.heads();
    let e = op_error(apply(&mut d, json!([{"op":"set","path":"x","value":1},{"op":"inc","path":"n","by":-1}])));
    assert!(matches!(e, OpError::CounterOutOfRange { before, by: -1, .. } if before == -max), "{e:?}");
    assert_eq!((d.heads(), d.value()), (heads, json!({"n":-max})));
}

/// The issue-17 overflow: a counter that peers pushed past `i64` (each side within its own
/// bounds, or a peer that lies) neither panics on merge nor on read.
#[test]
fn a_counter_overflowing_on_merge_never_panics() {
    let mut sides: Vec<Document> = (0..3u8).map(|i| Document::new(ActorId::from([i + 1; 16].as_slice()))).collect();
    let mut base = doc();
    apply(&mut base, json!([{"op":"inc","path":"n","by":0}])).unwrap();
    let shared = base.save();
    for side in &mut sides {
        side.import(&shared).unwrap();
        // A lying peer: raw automerge increments, past every bound of ours.
        let mut tx = side.automerge_mut().transaction();
        for _ in 0..2 {
            automerge::transaction::Transactable::increment(&mut tx, ROOT, "n", i64::MAX / 2).unwrap();
        }
        tx.commit();
    }
    for side in &sides {
        base.import(&side.save()).unwrap();
    }
    let v = base.value();
    assert!(v["n"].is_i64(), "{v}");
    let e = apply(&mut base, json!([{"op":"inc","path":"n","by":1}]));
    assert!(e.is_err(), "an increment of a counter out of range is refused: {e:?}");
}

#[test]
fn values_nest_boundedly() {
    let mut d = doc();
    let mut v = json!(1);
    for _ in 0..=VALUE_DEPTH {
        v = json!([v]);
    }
    let e = op_error(apply(&mut d, json!([{"op":"set","path":"deep","value":v}])));
    assert!(matches!(e, OpError::InvalidValue { .. }), "{e:?}");
}
const VALUE_DEPTH: usize = crate::ops::VALUE_DEPTH_MAX;

#[test]
fn unsaved_changes_round_trip_through_load() {
    let mut d = doc();
    assert_eq!(d.unsaved(), None);
    apply(&mut d, json!([{"op":"set","path":"a","value":1}])).unwrap();
    let first = d.unsaved().unwrap();
    d.mark_saved(&first.heads);
    assert_eq!(d.unsaved(), None);
    apply(&mut d, json!([{"op":"inc","path":"n","by":2}])).unwrap();
    apply(&mut d, json!([{"op":"set","path":"t","value":"x","text":true}])).unwrap();
    let second = d.unsaved().unwrap();
    assert_eq!(second.heads, d.heads());
    let actor = ActorId::from(b"actor-2".as_slice());
    let loaded = Document::load(actor.clone(), [first.bytes.as_slice(), second.bytes.as_slice()]).unwrap();
    assert_eq!((loaded.value(), loaded.heads()), (d.value(), d.heads()));
    assert_eq!(loaded.unsaved(), None);
    let full = Document::load(actor.clone(), [d.save().as_slice()]).unwrap();
    assert_eq!(full.read(), d.read());
    assert_eq!(full.automerge().get_actor(), &actor);
    assert!(Document::load(actor, [b"garbage".as_slice()]).is_err());
}

/// Bytes holding a document and, after it, a change whose dependency they lack (an automerge
/// *orphan*, as a whole-document sync message from a peer holding one carries it), and the
/// hash of that missing dependency.
fn with_an_orphan() -> (Vec<u8>, ChangeHash) {
    let mut peer = Document::new(ActorId::from(b"peer".as_slice()));
    apply(&mut peer, json!([{"op":"set","path":"x","value":1}])).unwrap();
    let mut bytes = peer.save();
    let lost = apply(&mut peer, json!([{"op":"set","path":"y","value":2}])).unwrap();
    apply(&mut peer, json!([{"op":"set","path":"z","value":3}])).unwrap();
    bytes.extend(peer.automerge().save_after(&lost.0));
    (bytes, lost.0[0])
}

/// The objects-cold finding: a copy that took a peer's orphan along with the document wrote
/// it into its compacted log, and the log then read back as lacking a change (which a store
/// can only take for damage). `save` keeps orphans, like automerge's; `save_applied`, what
/// logs are compacted to, leaves them out.
#[test]
fn save_applied_leaves_out_changes_waiting_for_dependencies() {
    let (bytes, lost) = with_an_orphan();
    let mut d = doc();
    assert!(d.import(&bytes).unwrap());
    assert_eq!((d.value(), d.missing_deps()), (json!({"x":1}), vec![lost]));
    let actor = ActorId::from(b"actor-2".as_slice());
    let kept = Document::load(actor.clone(), [d.save().as_slice()]).unwrap();
    assert_eq!(kept.missing_deps(), vec![lost], "save keeps the orphan");
    let applied = Document::load(actor, [d.save_applied().as_slice()]).unwrap();
    assert!(applied.missing_deps().is_empty(), "{:?}", applied.missing_deps());
    assert_eq!(applied.read(), d.read());
}

#[test]
fn import_merges_and_reports_news() {
    let (mut a, mut b) = (doc(), Document::new(ActorId::from(b"actor-2".as_slice())));
    apply(&mut a, json!([{"op":"inc","path":"n"}])).unwrap();
    apply(&mut b, json!([{"op":"set","path":"x","value":true}])).unwrap();
    assert!(b.import(&a.save()).unwrap());
    assert!(!b.import(&a.save()).unwrap());
    assert_eq!(b.value(), json!({"n":1,"x":true}));
    assert!(b.has_heads(&a.heads()) && !a.has_heads(&b.heads()));
    assert!(b.import(b"nope").is_err());
}

#[test]
fn heads_serialize_as_hex() {
    let mut d = doc();
    let heads = apply(&mut d, json!([{"op":"set","path":"a","value":1}])).unwrap();
    let j = serde_json::to_value(&heads).unwrap();
    assert_eq!(j.as_array().unwrap()[0].as_str().unwrap().len(), 64);
    assert_eq!(serde_json::from_value::<Heads>(j).unwrap(), heads);
    assert!(Heads::parse_hex(&["zz"]).is_err());
    let snap = serde_json::to_value(d.read()).unwrap();
    assert_eq!(snap["value"], json!({"a":1}));
}
