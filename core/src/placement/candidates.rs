//! The nodes the policy may choose from, round trips between them, and the manifest's
//! constraints in the policy's terms.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use wasm_host::manifest::{Kind, Manifest};

use crate::Tier;

// ---------------------------------------------------------------------------------------------
// Nodes, round trips, constraints
// ---------------------------------------------------------------------------------------------

/// A node the policy may choose.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Candidate<N> {
    /// The node.
    pub id: N,
    /// Its tier.
    pub tier: Tier,
    /// Its site, if it has one (the `site` label, typically).
    pub site: Option<String>,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Speed: fuel per millisecond (a slow edge board is, say, 4× slower than a cloud VM).
    pub fuel_per_ms: f64,
    /// Instance slots.
    pub slots: u32,
    /// Slots in use.
    pub busy: u32,
    /// Alive in the caller's membership view.
    pub alive: bool,
}

impl<N> Candidate<N> {
    /// Load: busy / slots (1 without slots).
    pub fn load(&self) -> f64 {
        if self.slots == 0 { 1.0 } else { f64::from(self.busy) / f64::from(self.slots) }
    }

    pub(super) fn has_room(&self) -> bool {
        self.busy < self.slots
    }
}

/// The candidate nodes, indexed by id, site and tier. The core rebuilds (or [`Nodes::upsert`]s)
/// it when membership changes, not per decision; a decision then costs O(samples + origins +
/// replicas), not O(nodes).
#[derive(Clone, Debug, Default)]
pub struct Nodes<N> {
    pub(super) list: Vec<Candidate<N>>,
    pub(super) by_id: BTreeMap<N, usize>,
    pub(super) by_site: BTreeMap<String, Vec<usize>>,
    pub(super) by_tier: [Vec<usize>; 3],
}

impl<N: Copy + Ord> Nodes<N> {
    /// Indexes these candidates (a later duplicate id replaces an earlier one).
    pub fn new(candidates: impl IntoIterator<Item = Candidate<N>>) -> Self {
        let mut nodes =
            Nodes { list: Vec::new(), by_id: BTreeMap::new(), by_site: BTreeMap::new(), by_tier: Default::default() };
        for c in candidates {
            nodes.upsert(c);
        }
        nodes
    }

    /// Adds or replaces one candidate.
    pub fn upsert(&mut self, c: Candidate<N>) {
        if let Some(&i) = self.by_id.get(&c.id) {
            let old = &self.list[i];
            if old.site != c.site || old.tier != c.tier {
                if let Some(s) = &old.site
                    && let Some(v) = self.by_site.get_mut(s)
                {
                    v.retain(|&j| j != i);
                }
                self.by_tier[old.tier.index()].retain(|&j| j != i);
                self.index(i, &c);
            }
            self.list[i] = c;
        } else {
            let i = self.list.len();
            self.by_id.insert(c.id, i);
            self.index(i, &c);
            self.list.push(c);
        }
    }

    fn index(&mut self, i: usize, c: &Candidate<N>) {
        if let Some(s) = &c.site {
            self.by_site.entry(s.clone()).or_default().push(i);
        }
        self.by_tier[c.tier.index()].push(i);
    }

    /// The candidate with this id.
    pub fn get(&self, id: &N) -> Option<&Candidate<N>> {
        self.by_id.get(id).map(|&i| &self.list[i])
    }

    /// How many candidates.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// No candidates?
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// All candidates, in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = &Candidate<N>> {
        self.list.iter()
    }

    pub(super) fn in_site(&self, site: &str) -> &[usize] {
        self.by_site.get(site).map_or(&[], Vec::as_slice)
    }
}

/// Round-trip times between nodes, ms. `None`: not measured.
pub trait Rtt<N> {
    /// The round trip from `a` to `b`.
    fn rtt_ms(&self, a: N, b: N) -> Option<f64>;
}

impl<N, F: Fn(N, N) -> Option<f64>> Rtt<N> for F {
    fn rtt_ms(&self, a: N, b: N) -> Option<f64> {
        self(a, b)
    }
}

/// The round trips assumed when none was measured: pessimistic, so a measured path is
/// preferred over a guess.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UnknownRtt {
    /// Two nodes of the same site.
    pub same_site_ms: f64,
    /// By tier pair, `[edge, fog, cloud] × [edge, fog, cloud]`.
    pub by_tier_ms: [[f64; 3]; 3],
    /// A node the policy knows nothing about (not among the candidates).
    pub unknown_ms: f64,
}

impl Default for UnknownRtt {
    fn default() -> Self {
        UnknownRtt {
            same_site_ms: 10.0,
            by_tier_ms: [[60.0, 30.0, 100.0], [30.0, 40.0, 60.0], [100.0, 60.0, 80.0]],
            unknown_ms: 150.0,
        }
    }
}

/// Where the function is pinned.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Pin<N> {
    /// Not pinned.
    #[default]
    Anywhere,
    /// Only this node.
    Node(N),
    /// Pinned to a node the caller could not resolve: nothing is eligible.
    Unresolved(String),
}

/// The manifest's constraints, in the policy's terms.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Constraints<N> {
    /// Only this tier.
    pub tier: Option<Tier>,
    /// Only nodes with all these labels.
    pub labels: BTreeMap<String, String>,
    /// Pinned.
    pub pin: Pin<N>,
    /// The latency SLO, ms.
    pub slo_ms: Option<f64>,
}

impl<N: Copy + Ord> Constraints<N> {
    /// From a manifest's `[placement]` and `[slo]`; `resolve` maps the pinned peer id string
    /// to a node id.
    pub fn from_manifest(m: &Manifest, resolve: impl FnOnce(&str) -> Option<N>) -> Self {
        let pin = match &m.placement.node {
            None => Pin::Anywhere,
            Some(s) => resolve(s).map_or_else(|| Pin::Unresolved(s.clone()), Pin::Node),
        };
        Constraints {
            tier: m.placement.tier.as_deref().and_then(|t| t.parse().ok()),
            labels: m.placement.labels.clone(),
            pin,
            slo_ms: m.slo.latency_ms.map(|ms| ms as f64),
        }
    }

    /// May the function run on `c` at all (constraints and liveness, not capacity)?
    pub fn allows(&self, c: &Candidate<N>) -> bool {
        c.alive
            && self.tier.is_none_or(|t| t == c.tier)
            && self.labels.iter().all(|(k, v)| c.labels.get(k) == Some(v))
            && match &self.pin {
                Pin::Anywhere => true,
                Pin::Node(n) => *n == c.id,
                Pin::Unresolved(_) => false,
            }
    }
}

/// What the policy knows about the function besides its facts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Subject<N> {
    /// Stateless or actor.
    pub kind: Kind,
    /// Where it serves now (for a stateless function: its home, the node deciding).
    pub home: N,
    /// When it last moved (`now_s` scale); `None`: never.
    pub last_move_s: Option<f64>,
    /// Module size, bytes (what a move fetches, unless the target holds it).
    pub module_bytes: u64,
    /// Nodes already holding the module.
    pub module_holders: Vec<N>,
    /// An actor's memory snapshot, bytes (0 for stateless).
    pub state_bytes: u64,
    /// Constraints.
    pub constraints: Constraints<N>,
}
