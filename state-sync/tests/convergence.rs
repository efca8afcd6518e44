//! Convergence under an unreliable network, as a property.
//!
//! 2–4 replicas of one object make random writes (counters, map keys, a list, a text,
//! batches that fail half-way) while sync messages between them are generated, delivered
//! out of order, duplicated and lost at random. Then the network heals: what is still in
//! flight is delivered, every session is reset (as a reconnect does), and the protocol runs
//! between every pair until it is quiet. Then:
//! - every replica has the same heads and the same JSON value;
//! - every counter equals the sum of every increment made at any replica;
//! - a batch that failed changed nothing where it was applied.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use automerge::ActorId;
use proptest::prelude::*;
use serde_json::{Value, json};
use state_sync::ops::Op;
use state_sync::replica::Config;
use state_sync::{Document, Replica};

const COUNTERS: usize = 3;

#[derive(Clone, Debug)]
enum Write {
    Inc {
        counter: usize,
        by: i64,
    },
    Set {
        key: u8,
        value: i64,
        nested: bool,
    },
    Del {
        key: u8,
    },
    Insert {
        index: usize,
        value: i64,
    },
    Remove {
        index: usize,
    },
    Splice {
        index: usize,
        delete: usize,
        insert: String,
    },
    /// A valid op followed by one that fails: nothing may apply.
    Failing {
        key: u8,
    },
}

#[derive(Clone, Debug)]
enum Step {
    Write { at: usize, write: Write },
    Send { from: usize, to: usize },
    Deliver { pick: usize, duplicate: bool },
    Lose { pick: usize },
    Reset { a: usize, b: usize },
}

fn write() -> impl Strategy<Value = Write> {
    prop_oneof![
        3 => (0..COUNTERS, -5i64..50).prop_map(|(counter, by)| Write::Inc { counter, by }),
        2 => (0u8..6, any::<i64>(), any::<bool>()).prop_map(|(key, value, nested)| Write::Set { key, value, nested }),
        1 => (0u8..6).prop_map(|key| Write::Del { key }),
        2 => (0usize..20, any::<i64>()).prop_map(|(index, value)| Write::Insert { index, value }),
        1 => (0usize..20).prop_map(|index| Write::Remove { index }),
        2 => (0usize..40, 0usize..4, "[a-zé]{0,5}").prop_map(|(index, delete, insert)| Write::Splice { index, delete, insert }),
        1 => (0u8..6).prop_map(|key| Write::Failing { key }),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0usize..4, write()).prop_map(|(at, write)| Step::Write { at, write }),
        4 => (0usize..4, 0usize..4).prop_map(|(from, to)| Step::Send { from, to }),
        4 => (any::<usize>(), prop::bool::weighted(0.15)).prop_map(|(pick, duplicate)| Step::Deliver { pick, duplicate }),
        1 => any::<usize>().prop_map(|pick| Step::Lose { pick }),
        1 => (0usize..4, 0usize..4).prop_map(|(a, b)| Step::Reset { a, b }),
    ]
}

fn batch(j: Value) -> Vec<Op> {
    serde_json::from_value(j).unwrap()
}

/// Turns a generated write into a batch valid (or, for `Failing`, invalid) at this replica.
fn ops_for(doc: &Document, w: &Write) -> Vec<Op> {
    let v = doc.value();
    let list_len = v["l"].as_array().map_or(0, Vec::len);
    let text_len = v["t"].as_str().map_or(0, |t| t.chars().count());
    match w {
        Write::Inc { counter, by } => batch(json!([{"op":"inc","path":format!("c{counter}"),"by":by}])),
        Write::Set { key, value, nested: false } => batch(json!([{"op":"set","path":format!("k{key}"),"value":value}])),
        Write::Set { key, value, nested: true } => {
            batch(json!([{"op":"set","path":format!("k{key}"),"value":{"v":value,"list":[value,"x"]}}]))
        }
        Write::Del { key } if v.get(format!("k{key}")).is_some() => {
            batch(json!([{"op":"del","path":format!("k{key}")}]))
        }
        Write::Del { .. } => vec![],
        Write::Insert { index, value } => {
            batch(json!([{"op":"insert","path":"l","index":index % (list_len + 1),"value":value}]))
        }
        Write::Remove { index } if list_len > 0 => {
            batch(json!([{"op":"del","path":format!("l.{}", index % list_len)}]))
        }
        Write::Remove { .. } => vec![],
        Write::Splice { index, delete, insert } => {
            let index = index % (text_len + 1);
            let delete = (*delete).min(text_len - index);
            batch(json!([{"op":"splice","path":"t","index":index,"delete":delete,"insert":insert}]))
        }
        Write::Failing { key } => {
            batch(json!([{"op":"set","path":format!("k{key}"),"value":1},{"op":"inc","path":format!("k{key}.x.y")}]))
        }
    }
}

type Net = Vec<(usize, usize, Vec<u8>)>;

/// Runs the protocol between every ordered pair until nobody has anything to say.
fn quiesce(replicas: &mut [Replica<usize>]) {
    for _ in 0..1000 {
        let mut quiet = true;
        for from in 0..replicas.len() {
            for to in 0..replicas.len() {
                if from == to {
                    continue;
                }
                if let Some(m) = replicas[from].generate(&to) {
                    quiet = false;
                    replicas[to].receive(&from, &m).unwrap();
                }
            }
        }
        if quiet {
            return;
        }
    }
    panic!("the sync protocol did not go quiet in 1000 rounds");
}

fn run(n: usize, steps: &[Step], message_bytes_max: usize) -> Result<(), TestCaseError> {
    let config = Config { message_bytes_max, ..Config::default() };
    let mut replicas: Vec<Replica<usize>> =
        (0..n).map(|i| Replica::new(Document::new(ActorId::from(vec![b'r', i as u8])), config.clone())).collect();
    // Genesis: the shared starting point, created once and synced to everyone.
    let mut genesis: Vec<Value> = (0..COUNTERS).map(|c| json!({"op":"inc","path":format!("c{c}"),"by":0})).collect();
    genesis.push(json!({"op":"set","path":"l","value":[]}));
    genesis.push(json!({"op":"set","path":"t","value":"","text":true}));
    replicas[0].doc_mut().apply(&batch(Value::Array(genesis)), 0).unwrap();
    quiesce(&mut replicas);

    let mut sums = [0i64; COUNTERS];
    let mut net: Net = Vec::new();
    for (t, s) in steps.iter().enumerate() {
        match s {
            Step::Write { at, write } => {
                let r = &mut replicas[at % n];
                let ops = ops_for(r.doc(), write);
                let before = r.doc().read();
                let result = r.doc_mut().apply(&ops, t as i64);
                match (write, result) {
                    (Write::Failing { .. }, Err(_)) => {
                        prop_assert_eq!(r.doc().read(), before, "a failed batch changed the doc")
                    }
                    (Write::Failing { .. }, Ok(_)) => prop_assert!(false, "the failing batch applied"),
                    (w, Err(e)) => prop_assert!(false, "{w:?} failed: {e}"),
                    (Write::Inc { counter, by }, Ok(_)) => sums[*counter] += by,
                    (_, Ok(_)) => {}
                }
            }
            Step::Send { from, to } if from % n != to % n => {
                if let Some(m) = replicas[from % n].generate(&(to % n)) {
                    net.push((from % n, to % n, m));
                }
            }
            Step::Send { .. } => {}
            Step::Deliver { pick, duplicate } if !net.is_empty() => {
                let i = pick % net.len();
                let (from, to, m) = if *duplicate { net[i].clone() } else { net.swap_remove(i) };
                replicas[to].receive(&from, &m).map_err(|e| TestCaseError::fail(format!("receive: {e}")))?;
            }
            Step::Lose { pick } if !net.is_empty() => {
                net.swap_remove(pick % net.len());
            }
            Step::Deliver { .. } | Step::Lose { .. } => {}
            Step::Reset { a, b } => replicas[a % n].reset(&(b % n)),
        }
    }

    // Heal: deliver the stragglers, reconnect everyone, sync to quiescence.
    for (from, to, m) in net.drain(..) {
        replicas[to].receive(&from, &m).map_err(|e| TestCaseError::fail(format!("receive: {e}")))?;
    }
    for r in replicas.iter_mut() {
        for b in 0..n {
            r.reset(&b);
        }
    }
    quiesce(&mut replicas);

    let first = replicas[0].doc().read();
    for r in &replicas[1..] {
        prop_assert_eq!(&r.doc().read(), &first);
        prop_assert_eq!(r.digest(), replicas[0].digest());
    }
    for (c, sum) in sums.iter().enumerate() {
        prop_assert_eq!(&first.value[format!("c{c}")], &json!(sum), "counter c{} lost increments", c);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn replicas_converge_and_counters_add_up(
        n in 2usize..=4,
        steps in prop::collection::vec(step(), 0..150),
        small_messages in any::<bool>(),
    ) {
        run(n, &steps, if small_messages { 300 } else { 1 << 20 })?;
    }
}

/// A fixed, lossless schedule of alternating increments: a smoke test of the harness.
#[test]
fn lossless_two_replica_smoke() {
    let steps: Vec<Step> = (0..40)
        .flat_map(|i| {
            [
                Step::Write { at: i % 2, write: Write::Inc { counter: i % COUNTERS, by: i as i64 } },
                Step::Send { from: i % 2, to: (i + 1) % 2 },
                Step::Deliver { pick: 0, duplicate: false },
            ]
        })
        .collect();
    run(2, &steps, 300).unwrap();
}
