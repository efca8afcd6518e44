//! The placement policy: where a function should serve, decided from measured facts.
//!
//! Pure: no clock, no I/O, no randomness of its own. The caller passes the time (`now_s`,
//! seconds on whatever monotonic scale it likes), the facts, the candidate nodes, a round-trip
//! lookup and a random source; the same inputs and the same random stream give the same
//! decision. The node id is a type parameter (`N: Copy + Ord`), so the core uses its own
//! `NodeId` directly and the simulator its own indices.
//!
//! The pieces:
//! - [`Facts`]: what the serving node(s) measured for one function, as decaying counters —
//!   calls by origin node and site (top-K, the rest folded), objects touched per call and
//!   where their replicas live, fuel and latency per call. Mergeable, serializable.
//! - [`Candidate`] / [`Nodes`]: the nodes the policy may choose from, indexed by id, site and
//!   tier so that a decision samples instead of scanning.
//! - [`Rtt`]: round-trip times between nodes; unknown ones fall back to pessimistic defaults
//!   by tier pair ([`UnknownRtt`]).
//! - [`Constraints`] and [`Subject`]: the manifest's placement and SLO, the current home, the
//!   last move, sizes.
//! - [`Policy::decide`]: the move rule (cost model, hysteresis, cool-down, data placement),
//!   answering a [`Decision`] that carries its figures; [`Policy::spread`]: the serving set of
//!   a stateless function, one node per busy site.
//!
//! The cost model and the rules are written down in `docs/placement.md`.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;

use rand_core::RngCore;
use serde::{Deserialize, Serialize};

use crate::manifest::{Kind, Manifest};

// ---------------------------------------------------------------------------------------------
// Decaying counters and facts
// ---------------------------------------------------------------------------------------------

/// An exponentially decaying counter: every amount added loses half its weight each half-life.
///
/// With a steady rate `r` per second the value settles at `r · h / ln 2` (`h` the half-life),
/// so [`Decaying::rate`] is `value · ln 2 / h`. The half-life is passed in (it belongs to the
/// [`Facts`] that own the counter), so a counter is 16 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Decaying {
    value: f64,
    at_s: f64,
}

impl Decaying {
    /// The value at `now_s` (a time before the last update counts as no time at all).
    pub fn value(&self, now_s: f64, half_life_s: f64) -> f64 {
        let dt = now_s - self.at_s;
        if dt <= 0.0 || self.value == 0.0 {
            return self.value;
        }
        self.value * (-dt * std::f64::consts::LN_2 / half_life_s).exp()
    }

    /// The rate per second this counter represents at `now_s`.
    pub fn rate(&self, now_s: f64, half_life_s: f64) -> f64 {
        self.value(now_s, half_life_s) * std::f64::consts::LN_2 / half_life_s
    }

    /// Adds `amount` at `now_s`.
    pub fn add(&mut self, now_s: f64, amount: f64, half_life_s: f64) {
        let v = self.value(now_s, half_life_s);
        self.value = v + amount;
        self.at_s = self.at_s.max(now_s);
    }

    /// This counter decayed to `from_s`, as if last updated at `to_s` (moves it to another
    /// node's clock).
    pub fn rebased(&self, from_s: f64, to_s: f64, half_life_s: f64) -> Decaying {
        Decaying { value: self.value(from_s, half_life_s), at_s: to_s }
    }

    /// Finite and not negative (what a peer sent may be neither).
    pub fn is_sane(&self) -> bool {
        self.value.is_finite() && self.value >= 0.0 && self.at_s.is_finite()
    }

    /// Adds another counter's value (both decayed to `now_s`).
    pub fn merge(&mut self, now_s: f64, other: &Decaying, half_life_s: f64) {
        let amount = other.value(now_s, half_life_s);
        self.add(now_s, amount, half_life_s);
    }
}

/// Calls from one origin node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OriginStat<N> {
    /// The node the calls entered at.
    pub node: N,
    /// Its site, if known.
    pub site: Option<String>,
    /// Calls.
    pub calls: Decaying,
}

/// Calls from one site.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SiteStat {
    /// The site.
    pub site: String,
    /// Calls.
    pub calls: Decaying,
}

/// One object the function touches: accesses, bytes and where its replicas live.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ObjectStat<N> {
    /// The object's name (`namespace/key`).
    pub object: String,
    /// Reads.
    pub reads: Decaying,
    /// Writes.
    pub writes: Decaying,
    /// Bytes read plus bytes written.
    pub bytes: Decaying,
    /// The nodes holding a replica (as last told by [`Facts::set_replicas`]).
    pub replicas: Vec<N>,
    /// The object's size, bytes (what adding a replica copies).
    pub size_bytes: u64,
}

/// One object access made by one call (an input to [`Facts::observe`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access<'a> {
    /// The object's name.
    pub object: &'a str,
    /// Reads made.
    pub reads: u32,
    /// Writes made.
    pub writes: u32,
    /// Bytes read.
    pub read_bytes: u64,
    /// Bytes written.
    pub write_bytes: u64,
}

/// One finished call, as the serving node saw it (an input to [`Facts::observe`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Call<'a, N> {
    /// The node the call entered at.
    pub origin: N,
    /// The origin's site, if known.
    pub site: Option<&'a str>,
    /// Fuel the call used.
    pub fuel: u64,
    /// Latency seen at the serving node, ms.
    pub latency_ms: f64,
    /// Objects touched.
    pub accesses: &'a [Access<'a>],
}

/// The measured facts about one function: compact, decaying, mergeable.
///
/// Origins, sites and objects are each bounded (top-K by decayed count); when a new one
/// arrives at a full table the smallest entry is folded into an "other" counter. The folded
/// callers are assumed to be distributed like the tracked ones; folded objects carry no
/// location, so they do not pull the function anywhere.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Facts<N> {
    /// Half-life of every counter, seconds.
    pub half_life_s: f64,
    /// Origins kept (K).
    pub max_origins: usize,
    /// Sites kept.
    pub max_sites: usize,
    /// Objects kept.
    pub max_objects: usize,
    /// All calls.
    pub calls: Decaying,
    /// Fuel summed over calls.
    pub fuel: Decaying,
    /// Latency summed over calls, ms.
    pub latency_ms: Decaying,
    /// The top origins.
    pub origins: Vec<OriginStat<N>>,
    /// Calls from origins folded out of the table.
    pub other_origins: Decaying,
    /// The top sites.
    pub sites: Vec<SiteStat>,
    /// The top objects.
    pub objects: Vec<ObjectStat<N>>,
    /// Accesses to objects folded out of the table.
    pub other_accesses: Decaying,
}

impl<N: Copy + Ord> Facts<N> {
    /// Empty facts with this half-life and the default table sizes (16 origins, 8 sites,
    /// 16 objects).
    pub fn new(half_life_s: f64) -> Self {
        Facts::with_limits(half_life_s, 16, 8, 16)
    }

    /// Empty facts with explicit table sizes (each at least 1).
    pub fn with_limits(half_life_s: f64, max_origins: usize, max_sites: usize, max_objects: usize) -> Self {
        Facts {
            half_life_s: if half_life_s.is_finite() && half_life_s > 0.0 { half_life_s } else { 60.0 },
            max_origins: max_origins.max(1),
            max_sites: max_sites.max(1),
            max_objects: max_objects.max(1),
            calls: Decaying::default(),
            fuel: Decaying::default(),
            latency_ms: Decaying::default(),
            origins: Vec::new(),
            other_origins: Decaying::default(),
            sites: Vec::new(),
            objects: Vec::new(),
            other_accesses: Decaying::default(),
        }
    }

    /// Records one finished call.
    pub fn observe(&mut self, now_s: f64, call: &Call<'_, N>) {
        let h = self.half_life_s;
        self.calls.add(now_s, 1.0, h);
        self.fuel.add(now_s, call.fuel as f64, h);
        if call.latency_ms.is_finite() && call.latency_ms >= 0.0 {
            self.latency_ms.add(now_s, call.latency_ms, h);
        }
        self.add_origin(now_s, call.origin, call.site, 1.0);
        if let Some(site) = call.site {
            self.add_site(now_s, site, 1.0);
        }
        for a in call.accesses {
            self.add_access(now_s, a);
        }
    }

    fn add_origin(&mut self, now_s: f64, node: N, site: Option<&str>, amount: f64) {
        let h = self.half_life_s;
        if let Some(o) = self.origins.iter_mut().find(|o| o.node == node) {
            o.calls.add(now_s, amount, h);
            if o.site.is_none() {
                o.site = site.map(str::to_string);
            }
            return;
        }
        if self.origins.len() >= self.max_origins
            && let Some(i) = argmin(&self.origins, |o| o.calls.value(now_s, h))
        {
            let gone = self.origins.swap_remove(i);
            self.other_origins.merge(now_s, &gone.calls, h);
        }
        let mut calls = Decaying::default();
        calls.add(now_s, amount, h);
        self.origins.push(OriginStat { node, site: site.map(str::to_string), calls });
    }

    fn add_site(&mut self, now_s: f64, site: &str, amount: f64) {
        let h = self.half_life_s;
        if let Some(s) = self.sites.iter_mut().find(|s| s.site == site) {
            s.calls.add(now_s, amount, h);
            return;
        }
        if self.sites.len() >= self.max_sites
            && let Some(i) = argmin(&self.sites, |s| s.calls.value(now_s, h))
        {
            self.sites.swap_remove(i);
        }
        let mut calls = Decaying::default();
        calls.add(now_s, amount, h);
        self.sites.push(SiteStat { site: site.to_string(), calls });
    }

    fn object_slot(&mut self, now_s: f64, object: &str) -> usize {
        let h = self.half_life_s;
        if let Some(i) = self.objects.iter().position(|o| o.object == object) {
            return i;
        }
        if self.objects.len() >= self.max_objects
            && let Some(i) = argmin(&self.objects, |o| o.reads.value(now_s, h) + o.writes.value(now_s, h))
        {
            let gone = self.objects.swap_remove(i);
            self.other_accesses.merge(now_s, &gone.reads, h);
            self.other_accesses.merge(now_s, &gone.writes, h);
        }
        self.objects.push(ObjectStat {
            object: object.to_string(),
            reads: Decaying::default(),
            writes: Decaying::default(),
            bytes: Decaying::default(),
            replicas: Vec::new(),
            size_bytes: 0,
        });
        self.objects.len() - 1
    }

    fn add_access(&mut self, now_s: f64, a: &Access<'_>) {
        let h = self.half_life_s;
        let i = self.object_slot(now_s, a.object);
        let o = &mut self.objects[i];
        o.reads.add(now_s, f64::from(a.reads), h);
        o.writes.add(now_s, f64::from(a.writes), h);
        o.bytes.add(now_s, (a.read_bytes + a.write_bytes) as f64, h);
    }

    /// Tells where an object's replicas live and how big it is (the core knows this from
    /// the object layer; it changes rarely). Unknown objects are ignored: only the objects
    /// the function touches are tracked.
    pub fn set_replicas(&mut self, object: &str, replicas: &[N], size_bytes: u64) {
        if let Some(o) = self.objects.iter_mut().find(|o| o.object == object) {
            o.replicas = replicas.to_vec();
            o.replicas.sort();
            o.replicas.dedup();
            // 0: not measured by this call (it only wrote); the last size stands.
            if size_bytes > 0 {
                o.size_bytes = size_bytes;
            }
        }
    }

    /// These facts with every counter decayed to `from_s` and stamped `to_s`: facts travel
    /// between nodes whose clocks have different origins, so the sender sends them rebased
    /// to 0 and the receiver rebases them to its own now.
    pub fn rebased(&self, from_s: f64, to_s: f64) -> Facts<N> {
        let h = self.half_life_s;
        let r = |d: &Decaying| d.rebased(from_s, to_s, h);
        let mut f = self.clone();
        f.calls = r(&self.calls);
        f.fuel = r(&self.fuel);
        f.latency_ms = r(&self.latency_ms);
        f.other_origins = r(&self.other_origins);
        f.other_accesses = r(&self.other_accesses);
        f.origins.iter_mut().for_each(|o| o.calls = r(&o.calls));
        f.sites.iter_mut().for_each(|x| x.calls = r(&x.calls));
        for o in &mut f.objects {
            o.reads = r(&o.reads);
            o.writes = r(&o.writes);
            o.bytes = r(&o.bytes);
        }
        f
    }

    /// Whether facts that came from a peer can be used: a positive finite half-life, tables
    /// within the default bounds, every counter finite and not negative.
    pub fn is_sane(&self) -> bool {
        let d = Facts::<N>::new(1.0);
        self.half_life_s.is_finite()
            && self.half_life_s > 0.0
            && self.origins.len() <= d.max_origins
            && self.sites.len() <= d.max_sites
            && self.objects.len() <= d.max_objects
            && [&self.calls, &self.fuel, &self.latency_ms, &self.other_origins, &self.other_accesses]
                .iter()
                .all(|c| c.is_sane())
            && self.origins.iter().all(|o| o.calls.is_sane())
            && self.sites.iter().all(|x| x.calls.is_sane())
            && self.objects.iter().all(|o| o.reads.is_sane() && o.writes.is_sane() && o.bytes.is_sane())
    }

    /// Adds another node's facts about the same function (a stateless function serving from
    /// several nodes sends its facts to the home, which merges them). Table bounds hold.
    pub fn merge(&mut self, now_s: f64, other: &Facts<N>) {
        let h = self.half_life_s;
        let oh = other.half_life_s;
        self.calls.add(now_s, other.calls.value(now_s, oh), h);
        self.fuel.add(now_s, other.fuel.value(now_s, oh), h);
        self.latency_ms.add(now_s, other.latency_ms.value(now_s, oh), h);
        self.other_origins.add(now_s, other.other_origins.value(now_s, oh), h);
        self.other_accesses.add(now_s, other.other_accesses.value(now_s, oh), h);
        for o in &other.origins {
            self.add_origin(now_s, o.node, o.site.as_deref(), o.calls.value(now_s, oh));
        }
        for s in &other.sites {
            self.add_site(now_s, &s.site, s.calls.value(now_s, oh));
        }
        for o in &other.objects {
            let i = self.object_slot(now_s, &o.object);
            let mine = &mut self.objects[i];
            mine.reads.add(now_s, o.reads.value(now_s, oh), h);
            mine.writes.add(now_s, o.writes.value(now_s, oh), h);
            mine.bytes.add(now_s, o.bytes.value(now_s, oh), h);
            if mine.replicas.is_empty() {
                mine.replicas = o.replicas.clone();
                mine.size_bytes = o.size_bytes;
            }
        }
    }

    /// Calls per second at `now_s`.
    pub fn rate(&self, now_s: f64) -> f64 {
        self.calls.rate(now_s, self.half_life_s)
    }

    /// Mean fuel per call (0 without calls).
    pub fn fuel_per_call(&self, now_s: f64) -> f64 {
        per_call(self.fuel.value(now_s, self.half_life_s), self.calls.value(now_s, self.half_life_s))
    }

    /// Mean latency per call as measured, ms (0 without calls).
    pub fn latency_per_call(&self, now_s: f64) -> f64 {
        per_call(self.latency_ms.value(now_s, self.half_life_s), self.calls.value(now_s, self.half_life_s))
    }

    /// The share of calls from `site` among all calls (0..=1).
    pub fn site_share(&self, now_s: f64, site: &str) -> f64 {
        let h = self.half_life_s;
        let all = self.calls.value(now_s, h);
        let s = self.sites.iter().find(|s| s.site == site).map_or(0.0, |s| s.calls.value(now_s, h));
        if all > 0.0 { (s / all).min(1.0) } else { 0.0 }
    }
}

fn per_call(total: f64, calls: f64) -> f64 {
    if calls > 1e-12 { total / calls } else { 0.0 }
}

fn argmin<T>(items: &[T], key: impl Fn(&T) -> f64) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, it) in items.iter().enumerate() {
        let k = key(it);
        if best.is_none_or(|(_, b)| k < b) {
            best = Some((i, k));
        }
    }
    best.map(|(i, _)| i)
}

// ---------------------------------------------------------------------------------------------
// Nodes, round trips, constraints
// ---------------------------------------------------------------------------------------------

/// A node's tier (mirrors the core's `Tier`; kept here so this crate does not depend on it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Edge.
    #[default]
    Edge,
    /// Fog.
    Fog,
    /// Cloud.
    Cloud,
}

impl Tier {
    /// Parses `edge`, `fog` or `cloud`.
    pub fn parse(s: &str) -> Option<Tier> {
        match s {
            "edge" => Some(Tier::Edge),
            "fog" => Some(Tier::Fog),
            "cloud" => Some(Tier::Cloud),
            _ => None,
        }
    }

    fn index(self) -> usize {
        match self {
            Tier::Edge => 0,
            Tier::Fog => 1,
            Tier::Cloud => 2,
        }
    }
}

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

    fn has_room(&self) -> bool {
        self.busy < self.slots
    }
}

/// The candidate nodes, indexed by id, site and tier. The core rebuilds (or [`Nodes::upsert`]s)
/// it when membership changes, not per decision; a decision then costs O(samples + origins +
/// replicas), not O(nodes).
#[derive(Clone, Debug, Default)]
pub struct Nodes<N> {
    list: Vec<Candidate<N>>,
    by_id: BTreeMap<N, usize>,
    by_site: BTreeMap<String, Vec<usize>>,
    by_tier: [Vec<usize>; 3],
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

    fn in_site(&self, site: &str) -> &[usize] {
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
            tier: m.placement.tier.as_deref().and_then(Tier::parse),
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

// ---------------------------------------------------------------------------------------------
// Parameters, estimates, decisions
// ---------------------------------------------------------------------------------------------

/// The policy's knobs. The defaults are documented in `docs/placement.md`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Params {
    /// The window over which a move must pay for itself, seconds.
    pub window_s: f64,
    /// Hysteresis: the gain must beat the move cost by this fraction.
    pub margin: f64,
    /// At most one move per cool-down, seconds.
    pub cooldown_s: f64,
    /// Random candidates sampled per decision (k).
    pub samples: usize,
    /// Top origins (and objects) whose neighbourhoods are evaluated.
    pub near: usize,
    /// Nodes sampled from each such neighbourhood's site.
    pub per_site: usize,
    /// Link bandwidth assumed for bytes moved, bytes per ms (12 500 = 100 Mbit/s).
    pub bandwidth_bytes_per_ms: f64,
    /// Fixed cost of activating on a new node (compile, instantiate, route change), ms.
    pub activation_ms: f64,
    /// Extra cost per ms of expected latency above the SLO.
    pub slo_penalty: f64,
    /// Load is capped here in the queueing factor `1 / (1 - load)`.
    pub max_load: f64,
    /// Fewer calls than this expected over the window: no decision.
    pub min_calls: f64,
    /// A replica is considered when the data term is at least this share of the cost at home.
    pub replica_data_share: f64,
    /// No replica is added to an object with this many replicas already.
    pub max_replicas: usize,
    /// A site is "busy" (gets its own serving node) above this share of calls.
    pub spread_site_share: f64,
    /// Serving nodes proposed at most.
    pub spread_max: usize,
    /// Round trips assumed when unmeasured.
    pub unknown_rtt: UnknownRtt,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            window_s: 60.0,
            margin: 0.5,
            cooldown_s: 120.0,
            samples: 32,
            near: 8,
            per_site: 4,
            bandwidth_bytes_per_ms: 12_500.0,
            activation_ms: 100.0,
            slo_penalty: 10.0,
            max_load: 0.9,
            min_calls: 1.0,
            replica_data_share: 0.5,
            max_replicas: 5,
            spread_site_share: 0.2,
            spread_max: 4,
            unknown_rtt: UnknownRtt::default(),
        }
    }
}

/// The expected cost of a call at one node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Estimate<N> {
    /// The node.
    pub node: N,
    /// Round trips to the callers, weighted by their share, ms.
    pub callers_ms: f64,
    /// The objects touched: how far behind a copy there is (objects only read) plus the bytes
    /// over the link, unless the node is a replica, ms (see `docs/placement.md`).
    pub data_ms: f64,
    /// Fuel at the node's speed, times the queueing factor, ms.
    pub compute_ms: f64,
    /// `callers + data + compute`: the latency a caller should expect, ms.
    pub latency_ms: f64,
    /// The latency plus the SLO penalty: what is compared, ms.
    pub cost_ms: f64,
    /// Within the SLO (or no SLO)?
    pub meets_slo: bool,
}

/// Why the function stays.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum StayReason {
    /// Too few calls to judge.
    NoCalls,
    /// Home is the cheapest candidate evaluated.
    HomeIsBest,
    /// A cheaper node exists, but the gain does not pay for the move with the margin.
    GainBelowMargin,
    /// It would move, but moved less than a cool-down ago.
    CoolingDown {
        /// Seconds until it may move again.
        remaining_s: f64,
    },
    /// Pinned to its home.
    Pinned,
    /// No eligible node (constraints, capacity, liveness) — home included.
    NoEligibleNode,
}

/// Why the function moves.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum MoveReason {
    /// The gain over the window beats the move cost by the margin.
    Cheaper,
    /// Home is dead or no longer eligible: move now, no hysteresis, no cool-down.
    HomeIneligible,
}

/// The numbers behind a decision (what `liquid fn where` prints).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Figures<N> {
    /// The estimate at home (`None` if home is not a candidate).
    pub home: Option<Estimate<N>>,
    /// The cheapest eligible candidate evaluated.
    pub best: Option<Estimate<N>>,
    /// Calls expected over the window.
    pub window_calls: f64,
    /// `(cost(home) - cost(best)) × window_calls`, ms.
    pub gain_ms: f64,
    /// The one-off cost of moving to `best`, ms.
    pub move_cost_ms: f64,
    /// The margin applied.
    pub margin: f64,
    /// Candidates evaluated.
    pub evaluated: usize,
}

/// The numbers behind an [`Decision::AddReplica`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReplicaFigures {
    /// The object's data cost per call at home now, ms.
    pub object_ms: f64,
    /// `object_ms × window_calls`, ms.
    pub gain_ms: f64,
    /// Copying the object, ms.
    pub copy_cost_ms: f64,
}

/// What the policy proposes for one function.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Decision<N> {
    /// Keep serving where it is.
    Stay {
        /// Why.
        reason: StayReason,
        /// The numbers.
        figures: Figures<N>,
    },
    /// Move (an actor: migrate its single activation; stateless: change its home).
    Move {
        /// The target.
        to: N,
        /// Why.
        reason: MoveReason,
        /// The numbers.
        figures: Figures<N>,
    },
    /// Stay, but add a replica of a hot object next to the function.
    AddReplica {
        /// The object.
        object: String,
        /// Where the new replica should live.
        near: N,
        /// The numbers of the (rejected) move.
        figures: Figures<N>,
        /// The numbers of the replica.
        replica: ReplicaFigures,
    },
}

impl<N> Decision<N> {
    /// The figures.
    pub fn figures(&self) -> &Figures<N> {
        match self {
            Decision::Stay { figures, .. } | Decision::Move { figures, .. } | Decision::AddReplica { figures, .. } => {
                figures
            }
        }
    }

    /// The target of a move.
    pub fn moves_to(&self) -> Option<&N> {
        match self {
            Decision::Move { to, .. } => Some(to),
            _ => None,
        }
    }
}

impl<N: fmt::Display> fmt::Display for Decision<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fig = self.figures();
        let home_ms = fig.home.as_ref().map(|e| e.cost_ms);
        let gain_line = |f: &mut fmt::Formatter<'_>, op: &str| {
            let per_call = fig.gain_ms / fig.window_calls.max(1e-12);
            write!(
                f,
                "gain {:.1} ms × {:.0} calls {op} move cost {:.0} ms × {:.1}",
                per_call,
                fig.window_calls,
                fig.move_cost_ms,
                1.0 + fig.margin
            )
        };
        match self {
            Decision::Move { to, reason, .. } => {
                let best = fig.best.as_ref().map_or(0.0, |e| e.cost_ms);
                match (reason, home_ms) {
                    (MoveReason::Cheaper, Some(h)) => {
                        write!(f, "moved to {to}: expected {best:.1} ms/call vs {h:.1} ms at home; ")?;
                        gain_line(f, ">")
                    }
                    _ => write!(f, "moved to {to}: home is down or no longer eligible; expected {best:.1} ms/call"),
                }
            }
            Decision::Stay { reason, .. } => match reason {
                StayReason::NoCalls => f.write_str("stays: too few calls to judge"),
                StayReason::Pinned => f.write_str("stays: pinned"),
                StayReason::NoEligibleNode => f.write_str("stays: no eligible node"),
                StayReason::HomeIsBest => {
                    write!(f, "stays: home is the cheapest ({:.1} ms/call)", home_ms.unwrap_or(0.0))
                }
                StayReason::GainBelowMargin => {
                    let (b, best) = fig.best.as_ref().map_or((0.0, None), |e| (e.cost_ms, Some(&e.node)));
                    if let Some(best) = best {
                        write!(
                            f,
                            "stays: {best} would cost {b:.1} ms/call vs {:.1} ms at home; ",
                            home_ms.unwrap_or(0.0)
                        )?;
                    }
                    gain_line(f, "≤")
                }
                StayReason::CoolingDown { remaining_s } => {
                    write!(f, "stays: would move, but cooling down for {remaining_s:.0} s more")
                }
            },
            Decision::AddReplica { object, near, replica, .. } => write!(
                f,
                "add a replica of {object} at {near}: {:.1} ms/call of data; gain {:.0} ms > copy cost {:.0} ms × {:.1}",
                replica.object_ms,
                replica.gain_ms,
                replica.copy_cost_ms,
                1.0 + fig.margin
            ),
        }
    }
}

/// One node of a stateless function's serving set, proposed by [`Policy::spread`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Serving<N> {
    /// The node.
    pub node: N,
    /// The busy site it serves (`None`: the home, serving everyone else).
    pub site: Option<String>,
    /// That site's share of calls.
    pub share: f64,
    /// The estimate for that site's callers.
    pub estimate: Estimate<N>,
}

// ---------------------------------------------------------------------------------------------
// The policy
// ---------------------------------------------------------------------------------------------

/// The placement policy: parameters plus the decision rules.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    /// The knobs.
    pub params: Params,
}

/// The per-decision view of the facts, computed once (O(origins + objects)).
struct View<'a, N, R> {
    nodes: &'a Nodes<N>,
    rtt: &'a R,
    params: &'a Params,
    /// Origins and their (normalised) share.
    origins: Vec<(N, f64)>,
    /// Objects: per-call accesses, per-call bytes, replicas, size, name.
    objects: Vec<ObjectView<'a, N>>,
    fuel_per_call: f64,
    slo_ms: Option<f64>,
}

struct ObjectView<'a, N> {
    name: &'a str,
    /// Reads per call.
    reads: f64,
    /// Writes per call.
    writes: f64,
    /// Bytes read and written per call.
    bytes: f64,
    replicas: &'a [N],
    size_bytes: u64,
}

impl<'a, N: Copy + Ord, R: Rtt<N>> View<'a, N, R> {
    fn new(
        now_s: f64,
        facts: &'a Facts<N>,
        nodes: &'a Nodes<N>,
        rtt: &'a R,
        params: &'a Params,
        slo_ms: Option<f64>,
        site: Option<&str>,
    ) -> Self {
        let h = facts.half_life_s;
        let calls = facts.calls.value(now_s, h);
        let mut origins: Vec<(N, f64)> = facts
            .origins
            .iter()
            .filter(|o| site.is_none() || o.site.as_deref() == site)
            .map(|o| (o.node, o.calls.value(now_s, h)))
            .filter(|&(_, c)| c > 0.0)
            .collect();
        let total: f64 = origins.iter().map(|&(_, c)| c).sum();
        if total > 0.0 {
            for o in &mut origins {
                o.1 /= total;
            }
        }
        origins.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let objects = facts
            .objects
            .iter()
            .map(|o| ObjectView {
                name: &o.object,
                reads: per_call(o.reads.value(now_s, h), calls),
                writes: per_call(o.writes.value(now_s, h), calls),
                bytes: per_call(o.bytes.value(now_s, h), calls),
                replicas: &o.replicas,
                size_bytes: o.size_bytes,
            })
            .filter(|o| o.reads > 0.0 || o.writes > 0.0 || o.bytes > 0.0)
            .collect();
        View { nodes, rtt, params, origins, objects, fuel_per_call: facts.fuel_per_call(now_s), slo_ms }
    }

    /// The round trip a ↔ b: measured, else the pessimistic default.
    fn link(&self, a: N, b: N) -> f64 {
        if a == b {
            return 0.0;
        }
        if let Some(ms) = self.rtt.rtt_ms(a, b).filter(|ms| ms.is_finite() && *ms >= 0.0) {
            return ms;
        }
        let u = &self.params.unknown_rtt;
        match (self.nodes.get(&a), self.nodes.get(&b)) {
            (Some(x), Some(y)) => {
                if x.site.is_some() && x.site == y.site {
                    u.same_site_ms
                } else {
                    u.by_tier_ms[x.tier.index()][y.tier.index()]
                }
            }
            _ => u.unknown_ms,
        }
    }

    /// The round trip from `c` to the nearest replica of `o` (pessimistic when none is known).
    fn nearest_replica(&self, c: N, o: &ObjectView<'_, N>) -> f64 {
        let nearest = o.replicas.iter().map(|&r| self.link(c, r)).min_by(f64::total_cmp);
        nearest.unwrap_or(self.params.unknown_rtt.unknown_ms)
    }

    /// The per-call cost of `o` at `c`. Objects are local-first: a node serving the function
    /// holds a copy (a replica, or a follower copy made at its first access), so reads and
    /// writes never wait for the network. What remains is how far behind the copy is and the
    /// bytes it exchanges with the replica set:
    ///
    /// - **lag**: an object the function only reads is written elsewhere; its changes reach a
    ///   follower copy one push after they reach the nearest replica, half a round trip later.
    ///   An object the function writes is its own data (its writes are the news), so no lag;
    /// - **bytes**: the bytes the call reads and writes, over the link, unless `c` is a
    ///   replica.
    fn object_ms(&self, c: N, o: &ObjectView<'_, N>) -> f64 {
        if o.replicas.contains(&c) {
            return 0.0;
        }
        let lag = if o.writes > 0.0 { 0.0 } else { o.reads.min(1.0) * 0.5 * self.nearest_replica(c, o) };
        lag + o.bytes / self.params.bandwidth_bytes_per_ms.max(1e-9)
    }

    /// The one-off cost of the first call at `c`: it fetches every object it touches that `c`
    /// holds no copy of (not a replica, and not `holder`, the node that served so far), ms.
    fn fetch_ms(&self, c: N, holder: N) -> f64 {
        if c == holder {
            return 0.0;
        }
        let bw = self.params.bandwidth_bytes_per_ms.max(1e-9);
        self.objects
            .iter()
            .filter(|o| !o.replicas.contains(&c))
            .map(|o| self.nearest_replica(c, o) + o.size_bytes as f64 / bw)
            .sum()
    }

    fn estimate(&self, c: &Candidate<N>) -> Estimate<N> {
        let callers_ms = self.origins.iter().fold(0.0, |acc, &(o, share)| acc + share * self.link(o, c.id));
        let data_ms = self.objects.iter().fold(0.0, |acc, o| acc + self.object_ms(c.id, o));
        let load = c.load().clamp(0.0, self.params.max_load.clamp(0.0, 0.99));
        let speed = if c.fuel_per_ms.is_finite() && c.fuel_per_ms > 0.0 { c.fuel_per_ms } else { 1e-9 };
        let compute_ms = self.fuel_per_call / speed / (1.0 - load);
        let latency_ms = callers_ms + data_ms + compute_ms;
        let over = self.slo_ms.map_or(0.0, |slo| (latency_ms - slo).max(0.0));
        Estimate {
            node: c.id,
            callers_ms,
            data_ms,
            compute_ms,
            latency_ms,
            cost_ms: latency_ms + self.params.slo_penalty * over,
            meets_slo: over <= 0.0,
        }
    }
}

/// Orders estimates: cheaper first, then by node id (deterministic ties).
fn better<N: Ord>(a: &Estimate<N>, b: &Estimate<N>) -> Ordering {
    a.cost_ms.total_cmp(&b.cost_ms).then_with(|| a.node.cmp(&b.node))
}

fn pick(rng: &mut impl RngCore, n: usize) -> usize {
    // Lemire's multiply-shift: unbiased enough for sampling, no division.
    ((u128::from(rng.next_u64()) * n as u128) >> 64) as usize
}

impl Policy {
    /// A policy with these parameters.
    pub fn new(params: Params) -> Self {
        Policy { params }
    }

    /// Whether `c` may serve the function now: constraints, liveness, and a free slot (home
    /// keeps its own slots).
    pub fn eligible<N: Copy + Ord>(subject: &Subject<N>, c: &Candidate<N>) -> bool {
        subject.constraints.allows(c) && (c.id == subject.home || c.has_room())
    }

    /// The one-off cost of moving from `from` to `to`, ms: the module (unless `to` holds it)
    /// and an actor's state over the link, one round trip for the hand-off, and the fixed
    /// activation cost.
    pub fn move_cost_ms<N: Copy + Ord>(&self, subject: &Subject<N>, rtt_ms: f64, to: N) -> f64 {
        let bw = self.params.bandwidth_bytes_per_ms.max(1e-9);
        let module = if subject.module_holders.contains(&to) { 0.0 } else { subject.module_bytes as f64 / bw };
        let state = match subject.kind {
            Kind::Actor => subject.state_bytes as f64 / bw,
            Kind::Stateless => 0.0,
        };
        module + state + rtt_ms + self.params.activation_ms
    }

    /// The candidates worth evaluating: home, the pin, the top origins and their site-mates,
    /// the replica holders of the top objects and their site-mates, and `samples` random
    /// nodes (from the required tier, if any). Sorted, deduplicated indices into `nodes`.
    fn gather<N: Copy + Ord>(
        &self,
        now_s: f64,
        subject: &Subject<N>,
        facts: &Facts<N>,
        nodes: &Nodes<N>,
        only_site: Option<&str>,
        rng: &mut impl RngCore,
    ) -> Vec<usize> {
        let p = &self.params;
        let mut out: Vec<usize> = Vec::with_capacity(p.samples + 4 * p.near * (p.per_site + 1) + 2);
        let near_site = |site: Option<&str>, out: &mut Vec<usize>, rng: &mut _| {
            if let Some(site) = site {
                let mates = nodes.in_site(site);
                if mates.len() <= p.per_site {
                    out.extend_from_slice(mates);
                } else {
                    for _ in 0..p.per_site {
                        out.push(mates[pick(rng, mates.len())]);
                    }
                }
            }
        };
        let in_scope = |i: usize| only_site.is_none() || nodes.list[i].site.as_deref() == only_site;
        let push_id = |id: &N, out: &mut Vec<usize>| {
            if let Some(&i) = nodes.by_id.get(id)
                && in_scope(i)
            {
                out.push(i);
            }
        };
        push_id(&subject.home, &mut out);
        if let Pin::Node(n) = &subject.constraints.pin {
            push_id(n, &mut out);
        }
        // The neighbourhoods of the top origins.
        let mut top: Vec<&OriginStat<N>> =
            facts.origins.iter().filter(|o| only_site.is_none() || o.site.as_deref() == only_site).collect();
        let h = facts.half_life_s;
        top.sort_by(|a, b| b.calls.value(now_s, h).total_cmp(&a.calls.value(now_s, h)).then(a.node.cmp(&b.node)));
        for o in top.iter().take(p.near) {
            push_id(&o.node, &mut out);
            let site = o.site.as_deref().or_else(|| nodes.get(&o.node).and_then(|c| c.site.as_deref()));
            if only_site.is_none() {
                near_site(site, &mut out, rng);
            }
        }
        // The replica holders of the top objects.
        let mut objs: Vec<&ObjectStat<N>> = facts.objects.iter().collect();
        let hits = |o: &ObjectStat<N>| o.reads.value(now_s, h) + o.writes.value(now_s, h);
        objs.sort_by(|a, b| hits(b).total_cmp(&hits(a)).then(a.object.cmp(&b.object)));
        for o in objs.iter().take(p.near) {
            for r in o.replicas.iter().take(p.per_site.max(1)) {
                push_id(r, &mut out);
                if only_site.is_none() {
                    near_site(nodes.get(r).and_then(|c| c.site.as_deref()), &mut out, rng);
                }
            }
        }
        if only_site.is_some() {
            // Restricted to a site: sample that site.
            let mates = only_site.map_or(&[][..], |s| nodes.in_site(s));
            if mates.len() <= p.samples {
                out.extend_from_slice(mates);
            } else {
                let mut found = 0;
                for _ in 0..p.samples.saturating_mul(4) {
                    let i = mates[pick(rng, mates.len())];
                    if Self::eligible(subject, &nodes.list[i]) {
                        out.push(i);
                        found += 1;
                        if found == p.samples {
                            break;
                        }
                    }
                }
            }
        } else if matches!(subject.constraints.pin, Pin::Anywhere) {
            // k random samples, from the required tier if any; ineligible draws are retried
            // (at most 4k draws), so a rare label still finds some.
            let pool: Option<&[usize]> = subject.constraints.tier.map(|t| nodes.by_tier[t.index()].as_slice());
            let n = pool.map_or(nodes.len(), <[usize]>::len);
            if n > 0 {
                let mut found = 0;
                for _ in 0..p.samples.saturating_mul(4) {
                    let j = pick(rng, n);
                    let i = pool.map_or(j, |pl| pl[j]);
                    if Self::eligible(subject, &nodes.list[i]) {
                        out.push(i);
                        found += 1;
                        if found == p.samples {
                            break;
                        }
                    }
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Decides where one function should serve.
    ///
    /// `now_s` is the caller's clock; `facts` what was measured; `nodes` the candidates
    /// (home should be among them — if it is not, or is ineligible, the function moves to the
    /// best eligible node without hysteresis or cool-down); `rtt` the measured round trips;
    /// `rng` drives the sampling. Deterministic in all of them.
    pub fn decide<N: Copy + Ord, R: Rtt<N>>(
        &self,
        now_s: f64,
        subject: &Subject<N>,
        facts: &Facts<N>,
        nodes: &Nodes<N>,
        rtt: &R,
        rng: &mut impl RngCore,
    ) -> Decision<N> {
        let p = &self.params;
        let window_calls = facts.rate(now_s) * p.window_s;
        let mut figures = Figures {
            home: None,
            best: None,
            window_calls,
            gain_ms: 0.0,
            move_cost_ms: 0.0,
            margin: p.margin,
            evaluated: 0,
        };
        let view = View::new(now_s, facts, nodes, rtt, p, subject.constraints.slo_ms, None);
        let home = nodes.get(&subject.home);
        let home_ok = home.is_some_and(|c| Self::eligible(subject, c));
        figures.home = home.map(|c| view.estimate(c));

        if home_ok && window_calls < p.min_calls {
            return Decision::Stay { reason: StayReason::NoCalls, figures };
        }

        let idx = self.gather(now_s, subject, facts, nodes, None, rng);
        let mut best: Option<Estimate<N>> = None;
        for &i in &idx {
            let c = &nodes.list[i];
            if !Self::eligible(subject, c) {
                continue;
            }
            figures.evaluated += 1;
            let e = if c.id == subject.home {
                match &figures.home {
                    Some(e) => e.clone(),
                    None => view.estimate(c),
                }
            } else {
                view.estimate(c)
            };
            if best.as_ref().is_none_or(|b| better(&e, b) == Ordering::Less) {
                best = Some(e);
            }
        }
        figures.best = best.clone();
        let Some(best) = best else {
            return Decision::Stay { reason: StayReason::NoEligibleNode, figures };
        };
        let link = view.link(subject.home, best.node);
        figures.move_cost_ms = self.move_cost_ms(subject, link, best.node) + view.fetch_ms(best.node, subject.home);

        if !home_ok {
            return Decision::Move { to: best.node, reason: MoveReason::HomeIneligible, figures };
        }
        let home_est = figures.home.clone();
        let home_cost = home_est.as_ref().map_or(f64::INFINITY, |e| e.cost_ms);
        let stay_reason = if best.node == subject.home {
            if matches!(subject.constraints.pin, Pin::Node(_)) { StayReason::Pinned } else { StayReason::HomeIsBest }
        } else {
            figures.gain_ms = (home_cost - best.cost_ms).max(0.0) * window_calls;
            if figures.gain_ms <= figures.move_cost_ms * (1.0 + p.margin) {
                StayReason::GainBelowMargin
            } else if let Some(last) = subject.last_move_s
                && now_s - last < p.cooldown_s
            {
                StayReason::CoolingDown { remaining_s: p.cooldown_s - (now_s - last) }
            } else {
                return Decision::Move { to: best.node, reason: MoveReason::Cheaper, figures };
            }
        };
        // Staying: would a replica of a hot object next to the function pay instead?
        if let Some(h) = home
            && let Some(he) = &home_est
            && let Some((object, replica)) = self.replica_for(&view, h.id, he, window_calls)
        {
            return Decision::AddReplica { object, near: h.id, figures, replica };
        }
        Decision::Stay { reason: stay_reason, figures }
    }

    /// The object whose replica next to `at` pays the most, if the data term dominates the
    /// cost at `at` and the replica pays for its copy by the margin.
    fn replica_for<N: Copy + Ord, R: Rtt<N>>(
        &self,
        view: &View<'_, N, R>,
        at: N,
        est: &Estimate<N>,
        window_calls: f64,
    ) -> Option<(String, ReplicaFigures)> {
        let p = &self.params;
        if est.latency_ms <= 0.0 || est.data_ms < p.replica_data_share * est.latency_ms {
            return None;
        }
        let mut best: Option<(&str, ReplicaFigures)> = None;
        for o in &view.objects {
            if o.replicas.is_empty() || o.replicas.contains(&at) || o.replicas.len() >= p.max_replicas {
                continue;
            }
            let object_ms = view.object_ms(at, o);
            // Conservative: as if `at` copied the whole object (it usually holds a follower copy).
            let copy_cost_ms = view.nearest_replica(at, o) + o.size_bytes as f64 / p.bandwidth_bytes_per_ms.max(1e-9);
            let gain_ms = object_ms * window_calls;
            if gain_ms <= copy_cost_ms * (1.0 + p.margin) {
                continue;
            }
            let r = ReplicaFigures { object_ms, gain_ms, copy_cost_ms };
            let net = gain_ms - copy_cost_ms;
            if best.as_ref().is_none_or(|(name, b)| {
                let bnet = b.gain_ms - b.copy_cost_ms;
                net > bnet || (net == bnet && o.name < *name)
            }) {
                best = Some((o.name, r));
            }
        }
        best.map(|(n, r)| (n.to_string(), r))
    }

    /// The serving set of a function.
    ///
    /// An actor gets exactly one node: where [`Policy::decide`] puts it. A stateless function
    /// gets one node per busy site (a site with at least `spread_site_share` of the calls, at
    /// most `spread_max` sites, busiest first), each the cheapest eligible node *of that site*
    /// for *that site's* callers. A site's current server (in `current`) is kept unless the
    /// challenger's gain over the window beats the move cost by the margin. The home (as
    /// `decide` leaves or moves it) is always in the set, serving the remaining callers; it
    /// comes first.
    #[allow(clippy::too_many_arguments)]
    pub fn spread<N: Copy + Ord, R: Rtt<N>>(
        &self,
        now_s: f64,
        subject: &Subject<N>,
        facts: &Facts<N>,
        nodes: &Nodes<N>,
        rtt: &R,
        current: &[N],
        rng: &mut impl RngCore,
    ) -> Vec<Serving<N>> {
        let p = &self.params;
        let decision = self.decide(now_s, subject, facts, nodes, rtt, rng);
        let home_node = decision.moves_to().copied().unwrap_or(subject.home);
        let view = View::new(now_s, facts, nodes, rtt, p, subject.constraints.slo_ms, None);
        let mut out: Vec<Serving<N>> = Vec::new();
        if let Some(c) = nodes.get(&home_node)
            && Self::eligible(subject, c)
        {
            out.push(Serving { node: home_node, site: None, share: 1.0, estimate: view.estimate(c) });
        }
        if subject.kind == Kind::Actor || !matches!(subject.constraints.pin, Pin::Anywhere) {
            return out;
        }
        let mut sites: Vec<(&str, f64)> =
            facts.sites.iter().map(|s| (s.site.as_str(), facts.site_share(now_s, &s.site))).collect();
        sites.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
        let window_calls = facts.rate(now_s) * p.window_s;
        for (site, share) in sites.into_iter().filter(|s| s.1 >= p.spread_site_share) {
            if out.len() >= p.spread_max.max(1) {
                break;
            }
            let home_site = nodes.get(&home_node).and_then(|c| c.site.as_deref());
            if home_site == Some(site) {
                // The home already serves this site.
                continue;
            }
            let sv = View::new(now_s, facts, nodes, rtt, p, subject.constraints.slo_ms, Some(site));
            let mut idx = self.gather(now_s, subject, facts, nodes, Some(site), rng);
            for n in current {
                if let Some(&i) = nodes.by_id.get(n)
                    && nodes.list[i].site.as_deref() == Some(site)
                {
                    idx.push(i);
                }
            }
            idx.sort_unstable();
            idx.dedup();
            let mut best: Option<Estimate<N>> = None;
            let mut incumbent: Option<Estimate<N>> = None;
            for &i in &idx {
                let c = &nodes.list[i];
                let is_current = current.contains(&c.id);
                // A current server keeps its own slots, like a home.
                if !(subject.constraints.allows(c) && (is_current || c.has_room())) {
                    continue;
                }
                let e = sv.estimate(c);
                if is_current && incumbent.as_ref().is_none_or(|b| better(&e, b) == Ordering::Less) {
                    incumbent = Some(e.clone());
                }
                if best.as_ref().is_none_or(|b| better(&e, b) == Ordering::Less) {
                    best = Some(e);
                }
            }
            let Some(mut chosen) = best else { continue };
            if let Some(inc) = incumbent {
                let gain = (inc.cost_ms - chosen.cost_ms).max(0.0) * window_calls * share;
                let cost = self.move_cost_ms(subject, sv.link(inc.node, chosen.node), chosen.node)
                    + sv.fetch_ms(chosen.node, inc.node);
                if gain <= cost * (1.0 + p.margin) {
                    chosen = inc;
                }
            }
            if out.iter().any(|s| s.node == chosen.node) {
                continue;
            }
            out.push(Serving { node: chosen.node, site: Some(site.to_string()), share, estimate: chosen });
        }
        let spread_share: f64 = out.iter().skip(1).map(|s| s.share).sum();
        if let Some(first) = out.first_mut() {
            first.share = (1.0 - spread_share).max(0.0);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use proptest::prelude::*;
    use rand_chacha::ChaCha8Rng;
    use rand_core::SeedableRng;

    /// Node `i` lives at site `i / 10`, tier edge for sites < 5, cloud above.
    fn node(i: u32) -> Candidate<u32> {
        let site = i / 10;
        Candidate {
            id: i,
            tier: if site < 5 { Tier::Edge } else { Tier::Cloud },
            site: Some(format!("s{site}")),
            labels: BTreeMap::from([("site".to_string(), format!("s{site}"))]),
            fuel_per_ms: if site < 5 { 1_000.0 } else { 4_000.0 },
            slots: 8,
            busy: 0,
            alive: true,
        }
    }

    fn nodes(n: u32) -> Nodes<u32> {
        Nodes::new((0..n).map(node))
    }

    /// 2 ms within a site, 40 ms between sites (plus a little per site distance).
    fn rtt(a: u32, b: u32) -> Option<f64> {
        let (sa, sb) = (a / 10, b / 10);
        Some(if a == b {
            0.0
        } else if sa == sb {
            2.0
        } else {
            40.0 + f64::from(sa.abs_diff(sb))
        })
    }

    fn subject(home: u32) -> Subject<u32> {
        Subject {
            kind: Kind::Stateless,
            home,
            last_move_s: None,
            module_bytes: 1_000_000,
            module_holders: vec![],
            state_bytes: 0,
            constraints: Constraints::default(),
        }
    }

    fn rng(seed: u64) -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(seed)
    }

    /// `per_s` calls per second for `secs` seconds from these origins (round-robin), each
    /// touching `accesses`.
    fn facts_from(origins: &[u32], per_s: u32, secs: u32, fuel: u64, accesses: &[Access<'_>]) -> Facts<u32> {
        let mut f = Facts::new(30.0);
        let mut k = 0;
        for t in 0..secs {
            for _ in 0..per_s {
                let o = origins[k % origins.len()];
                k += 1;
                let site = format!("s{}", o / 10);
                f.observe(f64::from(t), &Call { origin: o, site: Some(&site), fuel, latency_ms: 5.0, accesses });
            }
        }
        f
    }

    const NOW: f64 = 100.0;

    #[test]
    fn decaying_counter_halves_each_half_life_and_reports_rates() {
        let mut d = Decaying::default();
        d.add(0.0, 8.0, 10.0);
        assert!((d.value(10.0, 10.0) - 4.0).abs() < 1e-9);
        assert!((d.value(30.0, 10.0) - 1.0).abs() < 1e-9);
        // A steady 5/s settles at a rate of 5/s.
        let mut d = Decaying::default();
        for i in 0..10_000 {
            d.add(f64::from(i) * 0.1, 0.5, 10.0);
        }
        let r = d.rate(1000.0, 10.0);
        assert!((r - 5.0).abs() < 0.2, "{r}");
        // Time going backwards is no time.
        assert_eq!(d.value(0.0, 10.0), d.value(999.9, 10.0));
    }

    #[test]
    fn origins_are_bounded_and_fold_into_other() {
        let mut f = Facts::<u32>::with_limits(60.0, 4, 2, 2);
        for i in 0..100u32 {
            let calls = if i < 3 { 50 } else { 1 };
            for _ in 0..calls {
                f.observe(1.0, &Call { origin: i, site: Some("x"), fuel: 1, latency_ms: 1.0, accesses: &[] });
            }
        }
        assert_eq!(f.origins.len(), 4);
        for heavy in 0..3 {
            assert!(f.origins.iter().any(|o| o.node == heavy), "heavy origin {heavy} kept");
        }
        assert!(f.other_origins.value(1.0, 60.0) > 90.0);
        let a = [Access { object: "a/1", reads: 1, writes: 0, read_bytes: 10, write_bytes: 0 }];
        let b = [Access { object: "a/2", reads: 1, writes: 0, read_bytes: 10, write_bytes: 0 }];
        let c = [Access { object: "a/3", reads: 1, writes: 0, read_bytes: 10, write_bytes: 0 }];
        for acc in [&a[..], &a[..], &b[..], &c[..]] {
            f.observe(2.0, &Call { origin: 0, site: None, fuel: 1, latency_ms: 1.0, accesses: acc });
        }
        assert_eq!(f.objects.len(), 2);
        assert!(f.objects.iter().any(|o| o.object == "a/1"));
    }

    #[test]
    fn facts_merge_and_round_trip_through_serde() {
        let a = facts_from(&[11], 2, 10, 1000, &[]);
        let b = facts_from(&[21], 2, 10, 1000, &[]);
        let mut m = a.clone();
        m.merge(10.0, &b);
        let r = m.rate(10.0);
        assert!((r - a.rate(10.0) - b.rate(10.0)).abs() < 1e-9);
        assert_eq!(m.origins.len(), 2);
        let json = serde_json::to_string(&m).unwrap();
        let back: Facts<u32> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn callers_all_at_one_site_pull_the_function_there() {
        let nodes = nodes(100);
        let facts = facts_from(&[31, 32, 33], 10, 100, 1_000, &[]);
        let d = Policy::default().decide(NOW, &subject(75), &facts, &nodes, &rtt, &mut rng(1));
        let to = *d.moves_to().unwrap_or_else(|| panic!("{d:?}"));
        assert_eq!(to / 10, 3, "moved into the callers' site: {d:?}");
        assert!(matches!(d, Decision::Move { reason: MoveReason::Cheaper, .. }));
        let text = d.to_string();
        assert!(text.starts_with(&format!("moved to {to}: expected")), "{text}");
        assert!(text.contains("ms/call vs") && text.contains("calls > move cost"), "{text}");
    }

    #[test]
    fn hysteresis_keeps_it_home_when_the_gain_is_small() {
        let nodes = nodes(100);
        // Callers at site 3; home at site 4: 41 ms vs 2 ms, but only a trickle of calls.
        let facts = facts_from(&[31], 1, 100, 1_000, &[]);
        let mut p = Policy::default();
        p.params.window_s = 5.0;
        let d = p.decide(NOW, &subject(45), &facts, &nodes, &rtt, &mut rng(1));
        assert!(matches!(d, Decision::Stay { reason: StayReason::GainBelowMargin, .. }), "{d:?}");
        // The same with a busy function moves.
        let facts = facts_from(&[31], 50, 100, 1_000, &[]);
        let d = p.decide(NOW, &subject(45), &facts, &nodes, &rtt, &mut rng(1));
        assert!(d.moves_to().is_some(), "{d:?}");
    }

    #[test]
    fn no_flapping_between_two_nearly_equal_sites() {
        let nodes = nodes(100);
        // Half the calls from site 2, half from site 3: both sites cost the same ± 0.
        let facts = facts_from(&[21, 31], 20, 100, 1_000, &[]);
        let p = Policy::default();
        let mut home = 22;
        let mut moves = 0;
        for round in 0..20 {
            let mut s = subject(home);
            s.last_move_s = Some(-1e9);
            if let Some(&to) = p.decide(NOW, &s, &facts, &nodes, &rtt, &mut rng(round)).moves_to() {
                home = to;
                moves += 1;
            }
        }
        assert!(moves <= 1, "{moves} moves");
    }

    #[test]
    fn cooldown_is_respected() {
        let nodes = nodes(100);
        let facts = facts_from(&[31, 32], 20, 100, 1_000, &[]);
        let p = Policy::default();
        let mut s = subject(75);
        s.last_move_s = Some(NOW - 10.0);
        let d = p.decide(NOW, &s, &facts, &nodes, &rtt, &mut rng(1));
        match d {
            Decision::Stay { reason: StayReason::CoolingDown { remaining_s }, .. } => {
                assert!((remaining_s - 110.0).abs() < 1e-9)
            }
            other => panic!("{other:?}"),
        }
        s.last_move_s = Some(NOW - 120.0);
        assert!(p.decide(NOW, &s, &facts, &nodes, &rtt, &mut rng(1)).moves_to().is_some());
    }

    #[test]
    fn constraints_and_pinning_are_respected() {
        let nodes = nodes(100);
        let facts = facts_from(&[31, 32], 20, 100, 1_000, &[]);
        let p = Policy::default();
        // Tier cloud: callers are at an edge site, the function stays in the cloud.
        let mut s = subject(75);
        s.constraints.tier = Some(Tier::Cloud);
        let d = p.decide(NOW, &s, &facts, &nodes, &rtt, &mut rng(1));
        if let Some(&to) = d.moves_to() {
            assert_eq!(nodes.get(&to).unwrap().tier, Tier::Cloud);
        }
        // Labels: only site s4.
        let mut s = subject(75);
        s.constraints.labels.insert("site".into(), "s4".into());
        let d = p.decide(NOW, &s, &facts, &nodes, &rtt, &mut rng(1));
        assert_eq!(d.moves_to().map(|n| n / 10), Some(4), "{d:?}");
        // Pinned to home: stays.
        let mut s = subject(75);
        s.constraints.pin = Pin::Node(75);
        let d = p.decide(NOW, &s, &facts, &nodes, &rtt, &mut rng(1));
        assert!(matches!(d, Decision::Stay { reason: StayReason::Pinned, .. }), "{d:?}");
        // Pinned elsewhere: goes there at once.
        s.constraints.pin = Pin::Node(5);
        s.last_move_s = Some(NOW);
        let d = p.decide(NOW, &s, &facts, &nodes, &rtt, &mut rng(1));
        assert!(matches!(d, Decision::Move { to: 5, reason: MoveReason::HomeIneligible, .. }), "{d:?}");
        // Pinned to a node nobody knows: nothing is eligible.
        s.constraints.pin = Pin::Unresolved("12D3KooWnope".into());
        let d = p.decide(NOW, &s, &facts, &nodes, &rtt, &mut rng(1));
        assert!(matches!(d, Decision::Stay { reason: StayReason::NoEligibleNode, .. }), "{d:?}");
    }

    #[test]
    fn full_and_dead_nodes_are_not_chosen() {
        let mut nodes = nodes(100);
        for i in 30..40 {
            let mut c = node(i);
            if i % 2 == 0 {
                c.busy = c.slots;
            } else {
                c.alive = false;
            }
            nodes.upsert(c);
        }
        let facts = facts_from(&[31, 32], 20, 100, 1_000, &[]);
        let d = Policy::default().decide(NOW, &subject(75), &facts, &nodes, &rtt, &mut rng(1));
        if let Some(&to) = d.moves_to() {
            assert_ne!(to / 10, 3, "{d:?}");
        }
        // A dead home moves without waiting for the cool-down.
        let mut c = node(75);
        c.alive = false;
        nodes.upsert(c);
        let mut s = subject(75);
        s.last_move_s = Some(NOW);
        let d = Policy::default().decide(NOW, &s, &facts, &nodes, &rtt, &mut rng(1));
        assert!(matches!(d, Decision::Move { reason: MoveReason::HomeIneligible, .. }), "{d:?}");
    }

    #[test]
    fn slo_penalises_nodes_that_would_break_it() {
        let nodes = nodes(100);
        // Heavy compute: 200k fuel is 200 ms on an edge node, 50 ms in the cloud. Callers at
        // edge site 3: at site 3 the call costs ~201 ms; in the cloud (site 5) ~42 + 50 ms.
        let facts = facts_from(&[31], 20, 100, 200_000, &[]);
        let p = Policy::default();
        let mut s = subject(55);
        s.constraints.slo_ms = Some(100.0);
        let d = p.decide(NOW, &s, &facts, &nodes, &rtt, &mut rng(1));
        assert!(d.moves_to().is_none(), "the cloud meets the SLO, the edge does not: {d:?}");
        let home = d.figures().home.clone().unwrap();
        assert!(home.meets_slo && home.cost_ms == home.latency_ms);
        // An estimate over the SLO carries the penalty.
        let view = View::new(NOW, &facts, &nodes, &rtt, &p.params, Some(100.0), None);
        let e = view.estimate(&node(31));
        assert!(!e.meets_slo && e.cost_ms > e.latency_ms * 5.0, "{e:?}");
    }

    #[test]
    fn data_it_only_reads_pulls_the_function_toward_its_objects() {
        let mut nodes = nodes(100);
        // Callers at site 1; three objects it only reads (written elsewhere) live at site 2.
        let names = ["sensors/a", "sensors/b", "sensors/c"];
        let acc: Vec<Access<'_>> = names
            .iter()
            .map(|o| Access { object: o, reads: 2, writes: 0, read_bytes: 5_000, write_bytes: 0 })
            .collect();
        let mut facts = facts_from(&[11], 20, 100, 1_000, &acc);
        for o in names {
            facts.set_replicas(o, &[21, 22], 1_000_000);
        }
        let d = Policy::default().decide(NOW, &subject(11), &facts, &nodes, &rtt, &mut rng(1));
        assert_eq!(d.moves_to().map(|n| n / 10), Some(2), "{d:?}");
        let home = d.figures().home.clone().unwrap();
        // Each object lags half a round trip (41 ms) behind at home, plus its bytes.
        assert!((home.data_ms - 3.0 * (20.5 + 0.4)).abs() < 0.01, "{home:?}");
        // The first call at the target fetches nothing: it is a replica of all three.
        let best = d.figures().best.clone().unwrap();
        assert_eq!(best.data_ms, 0.0);
        // Pinned at home instead: add a replica next to it.
        let mut s = subject(11);
        s.constraints.pin = Pin::Node(11);
        let d = Policy::default().decide(NOW, &s, &facts, &nodes, &rtt, &mut rng(1));
        match &d {
            Decision::AddReplica { object, near, replica, .. } => {
                assert_eq!((object.as_str(), *near), ("sensors/a", 11));
                assert!(replica.gain_ms > replica.copy_cost_ms);
            }
            other => panic!("{other:?}"),
        }
        assert!(d.to_string().starts_with("add a replica of sensors/a at 11"));
        // Once the replicas exist, nothing more to do.
        for o in names {
            facts.set_replicas(o, &[11, 21, 22], 1_000_000);
        }
        let d = Policy::default().decide(NOW, &s, &facts, &nodes, &rtt, &mut rng(1));
        assert!(matches!(d, Decision::Stay { reason: StayReason::Pinned, .. }), "{d:?}");
        // A site constraint that excludes the objects' site: a replica, not a move.
        nodes.upsert(node(12));
        let mut s = subject(11);
        s.constraints.labels.insert("site".into(), "s1".into());
        for o in names {
            facts.set_replicas(o, &[21, 22], 1_000_000);
        }
        let d = Policy::default().decide(NOW, &s, &facts, &nodes, &rtt, &mut rng(1));
        assert!(matches!(d, Decision::AddReplica { .. }), "{d:?}");
    }

    #[test]
    fn data_it_writes_is_local_and_only_costs_the_first_fetch() {
        let nodes = nodes(100);
        // Home at site 3, callers at site 1, and an object the function reads and writes whose
        // replicas are at site 2: its follower copy serves every access locally, so the data
        // does not pull it to site 2; the callers pull it to site 1.
        let acc = [Access { object: "agg/s1", reads: 1, writes: 1, read_bytes: 2_000, write_bytes: 200 }];
        let mut facts = facts_from(&[11, 12], 20, 100, 1_000, &acc);
        facts.set_replicas("agg/s1", &[21, 22], 500_000);
        let d = Policy::default().decide(NOW, &subject(31), &facts, &nodes, &rtt, &mut rng(1));
        assert_eq!(d.moves_to().map(|n| n / 10), Some(1), "{d:?}");
        let f = d.figures();
        let best = f.best.clone().unwrap();
        assert!((best.data_ms - 2_200.0 / 12_500.0).abs() < 1e-6, "{best:?}");
        // The move pays the object's first fetch: a round trip to its replicas and its size.
        let without = Policy::default().move_cost_ms(&subject(31), rtt(31, best.node).unwrap(), best.node);
        let fetch = rtt(best.node, 21).unwrap() + 500_000.0 / 12_500.0;
        assert!((f.move_cost_ms - without - fetch).abs() < 1e-6, "{f:?}");
    }

    #[test]
    fn unknown_rtts_fall_back_to_pessimistic_tier_defaults() {
        let nodes = nodes(100);
        let facts = facts_from(&[31, 32], 20, 100, 1_000, &[]);
        let none = |_: u32, _: u32| None;
        let p = Policy::default();
        let view = View::new(NOW, &facts, &nodes, &none, &p.params, None, None);
        assert_eq!(view.link(31, 32), p.params.unknown_rtt.same_site_ms);
        assert_eq!(view.link(31, 55), 100.0, "edge ↔ cloud");
        assert_eq!(view.link(31, 5_000), p.params.unknown_rtt.unknown_ms, "not a candidate");
        assert_eq!(view.link(7, 7), 0.0);
        // Garbage measurements count as unknown.
        let nan = |_: u32, _: u32| Some(f64::NAN);
        let view = View::new(NOW, &facts, &nodes, &nan, &p.params, None, None);
        assert_eq!(view.link(31, 55), 100.0);
        // Still decides: into the callers' site.
        let d = p.decide(NOW, &subject(75), &facts, &nodes, &none, &mut rng(1));
        assert_eq!(d.moves_to().map(|n| n / 10), Some(3), "{d:?}");
    }

    #[test]
    fn no_calls_no_decision() {
        let nodes = nodes(100);
        let facts = Facts::<u32>::new(30.0);
        let d = Policy::default().decide(NOW, &subject(75), &facts, &nodes, &rtt, &mut rng(1));
        assert!(matches!(d, Decision::Stay { reason: StayReason::NoCalls, .. }), "{d:?}");
        // Old calls decay away.
        let facts = facts_from(&[31], 10, 10, 1_000, &[]);
        let d = Policy::default().decide(10_000.0, &subject(75), &facts, &nodes, &rtt, &mut rng(1));
        assert!(matches!(d, Decision::Stay { reason: StayReason::NoCalls, .. }), "{d:?}");
    }

    #[test]
    fn actors_pay_for_their_state_and_get_exactly_one_node() {
        let nodes = nodes(100);
        let facts = facts_from(&[31, 11, 12], 20, 100, 1_000, &[]);
        let p = Policy::default();
        let mut s = subject(75);
        s.kind = Kind::Actor;
        s.state_bytes = 0;
        let light = p.decide(NOW, &s, &facts, &nodes, &rtt, &mut rng(1));
        s.state_bytes = 500_000_000;
        let heavy = p.decide(NOW, &s, &facts, &nodes, &rtt, &mut rng(1));
        assert!(light.moves_to().is_some(), "{light:?}");
        assert!(heavy.moves_to().is_none(), "a 500 MB snapshot does not pay: {heavy:?}");
        s.state_bytes = 0;
        let set = p.spread(NOW, &s, &facts, &nodes, &rtt, &[], &mut rng(1));
        assert_eq!(set.len(), 1);
        assert_eq!(Some(&set[0].node), light.moves_to());
    }

    #[test]
    fn stateless_spreads_one_node_per_busy_site() {
        let nodes = nodes(100);
        // 45% site 1, 45% site 3, 10% site 4.
        let mut origins = vec![11; 9];
        origins.extend([31; 9]);
        origins.extend([41; 2]);
        let facts = facts_from(&origins, 20, 100, 1_000, &[]);
        let p = Policy::default();
        let set = p.spread(NOW, &subject(75), &facts, &nodes, &rtt, &[], &mut rng(1));
        // Home moves into one busy site (3, the nearer to its old place), site 1 gets its
        // own node; site 4 (10%) is not busy enough.
        let sites: Vec<u32> = set.iter().map(|s| s.node / 10).collect();
        assert_eq!(sites, vec![3, 1], "{set:?}");
        assert!(set[0].site.is_none());
        assert_eq!(set[1].site.as_deref(), Some("s1"));
        assert!((set.iter().map(|s| s.share).sum::<f64>() - 1.0).abs() < 1e-6);
        // Home already at site 1: sites 1 and 3 are both covered, and so on: every busy
        // site has a node in it.
        let set13 = p.spread(NOW, &subject(15), &facts, &nodes, &rtt, &[], &mut rng(1));
        let mut sites: Vec<u32> = set13.iter().map(|s| s.node / 10).collect();
        sites.sort();
        assert_eq!(sites, vec![1, 3], "{set13:?}");
        // An incumbent in a site is kept when the challenger is barely better.
        let mut s = subject(75);
        s.last_move_s = Some(NOW);
        let d = p.decide(NOW, &s, &facts, &nodes, &rtt, &mut rng(1));
        assert!(d.moves_to().is_none());
        // 12 and 33 serve sites 1 and 3 now; every caller of site 1 is node 11 (of site 3, 31):
        // moving saves 2 ms × ~540 calls = ~1080 ms against a move cost of ~182 ms × 1.5, so
        // the incumbents are replaced; with a margin of 10 they are kept.
        let set = p.spread(NOW, &s, &facts, &nodes, &rtt, &[12, 33], &mut rng(7));
        let nodes_: Vec<u32> = set.iter().map(|s| s.node).collect();
        assert_eq!(nodes_, vec![75, 11, 31], "{set:?}");
        let mut sticky = p.clone();
        sticky.params.margin = 10.0;
        let set = sticky.spread(NOW, &s, &facts, &nodes, &rtt, &[12, 33], &mut rng(7));
        let nodes_: Vec<u32> = set.iter().map(|s| s.node).collect();
        assert_eq!(nodes_, vec![75, 12, 33], "{set:?}");
        let set = p.spread(NOW, &s, &facts, &nodes, &rtt, &[], &mut rng(7));
        assert_eq!(set.len(), 3, "{set:?}");
        // A full incumbent is still kept (it holds its own slots); a dead one is replaced.
        let mut nodes2 = nodes.clone();
        let mut dead = node(12);
        dead.alive = false;
        nodes2.upsert(dead);
        let set = sticky.spread(NOW, &s, &facts, &nodes2, &rtt, &[12, 33], &mut rng(7));
        assert!(set.iter().all(|s| s.node != 12) && set.iter().any(|s| s.node / 10 == 1), "{set:?}");
        // spread_max bounds the set.
        let mut p1 = p.clone();
        p1.params.spread_max = 2;
        assert_eq!(p1.spread(NOW, &s, &facts, &nodes, &rtt, &[], &mut rng(1)).len(), 2);
    }

    #[test]
    fn constraints_come_from_the_manifest() {
        let m = Manifest::from_toml(
            "name = \"f\"\n[placement]\ntier = \"fog\"\nlabels = { site = \"lyon\" }\nnode = \"abc\"\n[slo]\nlatency_ms = 50",
        )
        .unwrap();
        let c = Constraints::from_manifest(&m, |s| (s == "abc").then_some(7u32));
        assert_eq!(c.tier, Some(Tier::Fog));
        assert_eq!(c.pin, Pin::Node(7));
        assert_eq!(c.slo_ms, Some(50.0));
        assert_eq!(c.labels["site"], "lyon");
        let c = Constraints::from_manifest(&m, |_| None::<u32>);
        assert_eq!(c.pin, Pin::Unresolved("abc".into()));
    }

    // ---- properties ----

    #[derive(Debug, Clone)]
    struct World {
        n: u32,
        home: u32,
        origins: Vec<u32>,
        rate: u32,
        fuel: u64,
        replicas: Vec<u32>,
        tier: Option<Tier>,
        pin: Option<u32>,
        dead: Vec<u32>,
        full: Vec<u32>,
        last_move_ago: Option<f64>,
        slo: Option<f64>,
        kind: Kind,
    }

    fn world() -> impl Strategy<Value = World> {
        (20u32..300).prop_flat_map(|n| {
            (
                Just(n),
                0..n,
                proptest::collection::vec(0..n, 1..6),
                1u32..40,
                1u64..300_000,
                proptest::collection::vec(0..n, 0..4),
                prop_oneof![Just(None), Just(Some(Tier::Edge)), Just(Some(Tier::Cloud))],
                proptest::option::weighted(0.15, 0..n),
                proptest::collection::vec(0..n, 0..20),
                proptest::collection::vec(0..n, 0..20),
                proptest::option::of(0.0f64..400.0),
                (proptest::option::of(5.0f64..200.0), prop_oneof![Just(Kind::Stateless), Just(Kind::Actor)]),
            )
                .prop_map(
                    |(n, home, origins, rate, fuel, replicas, tier, pin, dead, full, last_move_ago, (slo, kind))| {
                        World {
                            n,
                            home,
                            origins,
                            rate,
                            fuel,
                            replicas,
                            tier,
                            pin,
                            dead,
                            full,
                            last_move_ago,
                            slo,
                            kind,
                        }
                    },
                )
        })
    }

    fn build(w: &World) -> (Subject<u32>, Facts<u32>, Nodes<u32>) {
        let nodes = Nodes::new((0..w.n).map(|i| {
            let mut c = node(i);
            c.alive = !w.dead.contains(&i);
            if w.full.contains(&i) {
                c.busy = c.slots;
            }
            c
        }));
        let acc = [Access { object: "o/1", reads: 3, writes: 1, read_bytes: 4_000, write_bytes: 100 }];
        let mut facts = facts_from(&w.origins, w.rate, 60, w.fuel, &acc);
        facts.set_replicas("o/1", &w.replicas, 100_000);
        let mut s = subject(w.home);
        s.kind = w.kind;
        s.state_bytes = 10_000;
        s.constraints.tier = w.tier;
        s.constraints.pin = w.pin.map_or(Pin::Anywhere, Pin::Node);
        s.constraints.slo_ms = w.slo;
        s.last_move_s = w.last_move_ago.map(|ago| 60.0 - ago);
        (s, facts, nodes)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn decisions_are_deterministic_for_a_seed(w in world(), seed in any::<u64>()) {
            let (s, f, nodes) = build(&w);
            let p = Policy::default();
            let a = p.decide(60.0, &s, &f, &nodes, &rtt, &mut rng(seed));
            let b = p.decide(60.0, &s, &f, &nodes, &rtt, &mut rng(seed));
            prop_assert_eq!(a, b);
            let a = p.spread(60.0, &s, &f, &nodes, &rtt, &[], &mut rng(seed));
            let b = p.spread(60.0, &s, &f, &nodes, &rtt, &[], &mut rng(seed));
            prop_assert_eq!(a, b);
        }

        #[test]
        fn never_an_ineligible_node(w in world(), seed in any::<u64>()) {
            let (s, f, nodes) = build(&w);
            let p = Policy::default();
            let d = p.decide(60.0, &s, &f, &nodes, &rtt, &mut rng(seed));
            if let Some(to) = d.moves_to() {
                let c = nodes.get(to).unwrap();
                prop_assert!(Policy::eligible(&s, c), "{:?} -> {:?}", d, c);
                prop_assert!(*to != s.home);
            }
            if let Decision::AddReplica { near, .. } = &d {
                prop_assert_eq!(*near, s.home);
            }
            for sv in p.spread(60.0, &s, &f, &nodes, &rtt, &[], &mut rng(seed)) {
                let c = nodes.get(&sv.node).unwrap();
                prop_assert!(s.constraints.allows(c), "{:?}", sv);
                prop_assert!(c.id == s.home || c.has_room() || d.moves_to() == Some(&c.id));
            }
        }

        #[test]
        fn no_move_within_the_cooldown(w in world(), seed in any::<u64>()) {
            let (s, f, nodes) = build(&w);
            let p = Policy::default();
            let d = p.decide(60.0, &s, &f, &nodes, &rtt, &mut rng(seed));
            let home_ok = nodes.get(&s.home).is_some_and(|c| Policy::eligible(&s, c));
            if let (Some(last), true) = (s.last_move_s, home_ok)
                && 60.0 - last < p.params.cooldown_s
            {
                prop_assert!(d.moves_to().is_none(), "{:?}", d);
            }
        }

        #[test]
        fn no_move_when_home_is_best(w in world(), seed in any::<u64>()) {
            let (s, f, nodes) = build(&w);
            let p = Policy::default();
            let home_ok = nodes.get(&s.home).is_some_and(|c| Policy::eligible(&s, c));
            // Score every eligible node: if none beats home, no move.
            let view = View::new(60.0, &f, &nodes, &rtt, &p.params, s.constraints.slo_ms, None);
            let home = view.estimate(nodes.get(&s.home).unwrap());
            let home_best = nodes
                .iter()
                .filter(|c| Policy::eligible(&s, c))
                .all(|c| better(&home, &view.estimate(c)) != Ordering::Greater);
            if home_ok && home_best {
                let d = p.decide(60.0, &s, &f, &nodes, &rtt, &mut rng(seed));
                prop_assert!(d.moves_to().is_none(), "{:?}", d);
            }
        }

        #[test]
        fn a_move_pays_for_itself_with_the_margin(w in world(), seed in any::<u64>()) {
            let (s, f, nodes) = build(&w);
            let p = Policy::default();
            if let Decision::Move { reason: MoveReason::Cheaper, figures, .. } =
                p.decide(60.0, &s, &f, &nodes, &rtt, &mut rng(seed))
            {
                prop_assert!(figures.gain_ms > figures.move_cost_ms * (1.0 + p.params.margin));
            }
        }
    }
}
