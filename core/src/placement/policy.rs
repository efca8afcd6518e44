//! The move rule: parameters, estimates, decisions with their figures, and the policy.

use std::cmp::Ordering;
use std::fmt;

use rand_core::RngCore;
use serde::{Deserialize, Serialize};
use wasm_host::manifest::Kind;

use super::*;

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
        /// The hot object (`namespace/key`) to replicate next to the function.
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
pub(super) struct View<'a, N, R> {
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
    pub(super) fn new(
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
    pub(super) fn link(&self, a: N, b: N) -> f64 {
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

    pub(super) fn estimate(&self, c: &Candidate<N>) -> Estimate<N> {
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
pub(super) fn better<N: Ord>(a: &Estimate<N>, b: &Estimate<N>) -> Ordering {
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
