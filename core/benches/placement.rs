//! Time of one placement decision with 1,000 and 10,000 candidate nodes.
//!
//! `cargo bench -p liquid-core --bench placement`.
//! Prints a table: median and p99 of many runs of `Policy::decide` and `Policy::spread`, and the
//! one-off cost of indexing the candidates (`Nodes::new`).

// A benchmark measures wall time: the core's ban on reading clocks (clippy.toml) is for the
// node's logic, not for the harness that times it.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use liquid_core::Tier;
use liquid_core::placement::{Access, Call, Candidate, Constraints, Facts, Nodes, Policy, Subject};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use wasm_host::Kind;

const PER_SITE: u32 = 20;

/// A continuum: sites of 20 nodes on a 2-D map; the first tenth of the sites are cloud
/// regions, the rest edge sites. RTT: 1 ms within a site, else 2 + distance.
struct World {
    nodes: Vec<Candidate<u32>>,
    pos: Vec<(f64, f64)>,
}

fn world(n: u32, rng: &mut ChaCha8Rng) -> World {
    let sites = n.div_ceil(PER_SITE);
    let pos: Vec<(f64, f64)> =
        (0..sites).map(|_| ((rng.next_u32() % 100) as f64, (rng.next_u32() % 100) as f64)).collect();
    let nodes = (0..n)
        .map(|i| {
            let site = i / PER_SITE;
            let cloud = site < sites / 10;
            Candidate {
                id: i,
                tier: if cloud { Tier::Cloud } else { Tier::Edge },
                site: Some(format!("site-{site}")),
                labels: BTreeMap::from([("site".to_string(), format!("site-{site}"))]),
                fuel_per_ms: if cloud { 4_000.0 } else { 1_000.0 },
                slots: 16,
                busy: rng.next_u32() % 17,
                alive: !rng.next_u32().is_multiple_of(50),
            }
        })
        .collect();
    World { nodes, pos }
}

fn time<T>(runs: usize, mut f: impl FnMut(usize) -> T) -> (Duration, Duration) {
    let mut times: Vec<Duration> = (0..runs)
        .map(|i| {
            let t = Instant::now();
            black_box(f(i));
            t.elapsed()
        })
        .collect();
    times.sort();
    (times[runs / 2], times[runs * 99 / 100])
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn main() {
    let runs = 2_000;
    println!("| candidates | samples (k) | decide median | decide p99 | spread median | Nodes::new (once) |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for n in [1_000u32, 10_000] {
        for k in [16usize, 32, 64] {
            let mut rng = ChaCha8Rng::seed_from_u64(42);
            let w = world(n, &mut rng);
            let t = Instant::now();
            let nodes = Nodes::new(w.nodes.clone());
            let index_time = t.elapsed();
            let pos = &w.pos;
            let rtt = |a: u32, b: u32| -> Option<f64> {
                let (sa, sb) = ((a / PER_SITE) as usize, (b / PER_SITE) as usize);
                if a == b {
                    return Some(0.0);
                }
                if sa == sb {
                    return Some(1.0);
                }
                let (pa, pb) = (pos[sa], pos[sb]);
                Some(2.0 + ((pa.0 - pb.0).powi(2) + (pa.1 - pb.1).powi(2)).sqrt())
            };
            // 16 busy origins over 4 sites and a long tail; 4 objects with 3 replicas each.
            let mut facts = Facts::new(60.0);
            let objects = ["o/a", "o/b", "o/c", "o/d"];
            for t in 0..600u32 {
                for j in 0..10u32 {
                    let origin = if j < 8 { (j % 4) * 7 * PER_SITE + (t + j) % 4 } else { rng.next_u32() % n };
                    let site = format!("site-{}", origin / PER_SITE);
                    let acc = [Access {
                        object: objects[(j % 4) as usize],
                        reads: 2,
                        writes: 1,
                        read_bytes: 2_000,
                        write_bytes: 200,
                    }];
                    facts.observe(
                        f64::from(t) * 0.1,
                        &Call { origin, site: Some(&site), fuel: 50_000, latency_ms: 10.0, accesses: &acc },
                    );
                }
            }
            for (i, o) in objects.iter().enumerate() {
                let base = (i as u32 * 13 + 5) * PER_SITE;
                facts.set_replicas(o, &[base % n, (base + 3 * PER_SITE) % n, (base + 9 * PER_SITE + 1) % n], 1_000_000);
            }
            let subject = Subject {
                kind: Kind::Stateless,
                home: n - 1,
                last_move_s: None,
                module_bytes: 2_000_000,
                module_holders: vec![],
                state_bytes: 0,
                constraints: Constraints::default(),
            };
            let mut policy = Policy::default();
            policy.params.samples = k;
            let mut rng = ChaCha8Rng::seed_from_u64(7);
            let (med, p99) = time(runs, |_| policy.decide(60.0, &subject, &facts, &nodes, &rtt, &mut rng));
            let (smed, _) = time(runs / 4, |_| policy.spread(60.0, &subject, &facts, &nodes, &rtt, &[], &mut rng));
            println!("| {n} | {k} | {} | {} | {} | {} |", us(med), us(p99), us(smed), us(index_time));
        }
    }
}
