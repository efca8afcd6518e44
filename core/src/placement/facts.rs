//! What a function's serving nodes measured: decaying counters of calls by origin node and
//! site, objects touched and where their replicas live, fuel and latency per call.

use serde::{Deserialize, Serialize};

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

pub(super) fn per_call(total: f64, calls: f64) -> f64 {
    if calls > 1e-12 { total / calls } else { 0.0 }
}

pub(super) fn argmin<T>(items: &[T], key: impl Fn(&T) -> f64) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, it) in items.iter().enumerate() {
        let k = key(it);
        if best.is_none_or(|(_, b)| k < b) {
            best = Some((i, k));
        }
    }
    best.map(|(i, _)| i)
}
