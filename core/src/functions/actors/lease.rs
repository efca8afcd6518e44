//! Actor leases: an activation serves only while a majority of the actor's granters lease it
//! the actor at its epoch (docs/placement.md, "Fencing").
//!
//! The rules, which make two activations never accept work at the same time and never let an
//! activation start from older state than one already granted:
//!
//! - A granter grants `(holder, epoch, base)` — `base` is the epoch whose state the holder
//!   starts from (0: fresh state) — only if `epoch ≥ promised`, `base ≥ granted` (unless
//!   `base = 0`: a redeploy discards state on purpose; or `epoch = granted`: the one node
//!   given that epoch, asking again after a restart), and no unexpired, unreleased grant to
//!   another holder exists (a holder may raise its own epoch). Its `promised` and `granted` epochs are durable before
//!   it answers; its grants are not, so after a restart it grants nothing (for an actor it
//!   made a promise for before the restart) for one lease duration plus the drift bound:
//!   every grant it made before has run out by then.
//! - A granter measures a grant from when it *received* the request; the holder measures its
//!   lease from when it *sent* the request, shortened by the drift bound. With clock rates
//!   that differ by at most `drift`, the holder's lease ends before any granter's grant does.
//! - A holder admits a call only while its lease has at least the call's wall-time limit, or
//!   one renewal period, left (`super::actor::admission_margin` says why that suffices).
//!
//! Majorities of the same granter list intersect, and a granter holds one unexpired grant per
//! actor: at most one holder has a valid lease at any time.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{NodeId, Time};

/// Lease timing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LeaseConfig {
    /// How long a grant lasts, from its request.
    pub duration: Duration,
    /// A holder renews this often.
    pub renew_every: Duration,
    /// The bound on relative clock-rate error between nodes (0.01 = 1 %).
    pub drift: f64,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        LeaseConfig { duration: Duration::from_secs(6), renew_every: Duration::from_secs(2), drift: 0.01 }
    }
}

impl LeaseConfig {
    /// How long a holder may count on a lease from the moment it asked.
    pub fn holder_span(&self) -> Duration {
        self.duration.mul_f64((1.0 - self.drift).max(0.0))
    }

    /// How long a restarted granter stays silent.
    pub fn quiet_after_boot(&self) -> Duration {
        self.duration.mul_f64(1.0 + self.drift)
    }
}

/// A granter's durable promise for one actor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Promise {
    /// No grant at a lower epoch, ever again.
    pub promised: u64,
    /// The highest epoch granted: no grant to a holder whose state is older (unless fresh).
    pub granted: u64,
    /// The node `granted` went to: only it may ask for that epoch again from older state
    /// (after a restart). Two nodes may choose the same new epoch — a migration's target
    /// and a standby taking over — and the second must not start from its own state beside
    /// the first. Absent in promises written before failover existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granted_to: Option<NodeId>,
}

/// Why a granter said no.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Denial {
    /// The granter restarted recently and grants nothing yet.
    Starting,
    /// A higher epoch was promised: the asker is fenced.
    Fenced {
        /// The granter's promise.
        promise: Promise,
    },
    /// Another activation holds an unexpired lease.
    Held {
        /// Its node.
        holder: NodeId,
        /// Its epoch.
        epoch: u64,
    },
    /// A takeover whose copy of the actor's state is older than this granter's: it may not
    /// take over (a member holding the newer copy will).
    Behind {
        /// This granter's copy.
        have: Pos,
    },
}

/// A checkpoint's position: the epoch of the home that wrote it and its number within that
/// epoch (`node-agent/src/daemon/checkpoint.rs`). Ordered by epoch, then number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Pos {
    /// The epoch.
    pub epoch: u64,
    /// The checkpoint's number within it.
    pub n: u64,
}

#[derive(Clone, Copy, Debug)]
struct Grant {
    holder: NodeId,
    epoch: u64,
    until: Time,
    released: bool,
}

/// What a granter does with a request.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Grant now.
    Grant,
    /// Grant once this promise is durable.
    GrantAfterPersist(Promise),
    /// Refuse.
    Deny(Denial),
}

/// The granter's side, for every actor this node grants for.
#[derive(Debug)]
pub struct Granter {
    cfg: LeaseConfig,
    quiet_until: Time,
    grants: BTreeMap<String, Grant>,
    promises: BTreeMap<String, Promise>,
    /// Per actor, whether its durable promise was already there when this granter first
    /// looked in this life: only then may a grant from before the restart still run.
    from_before: BTreeMap<String, bool>,
}

impl Granter {
    /// A granter that started at `boot`.
    pub fn new(cfg: LeaseConfig, boot: Time) -> Granter {
        Granter {
            cfg,
            quiet_until: boot + cfg.quiet_after_boot(),
            grants: BTreeMap::new(),
            promises: BTreeMap::new(),
            from_before: BTreeMap::new(),
        }
    }

    /// A durable promise read back (from disk, or this node's replica of the registry).
    pub fn restore(&mut self, actor: &str, p: Promise) {
        let known = self.promises.get(actor).is_some_and(|q| q.promised > 0);
        self.from_before.entry(actor.to_string()).or_insert(p.promised > 0 && !known);
        let e = self.promises.entry(actor.to_string()).or_default();
        e.promised = e.promised.max(p.promised);
        if p.granted > e.granted || (p.granted == e.granted && e.granted_to.is_none()) {
            e.granted_to = p.granted_to;
        }
        e.granted = e.granted.max(p.granted);
    }

    /// The durable promise for `actor`.
    pub fn promise(&self, actor: &str) -> Promise {
        self.promises.get(actor).copied().unwrap_or_default()
    }

    /// `holder` asks for `actor` at `epoch`, starting from the state of epoch `base`.
    ///
    /// On [`Verdict::Grant`] and [`Verdict::GrantAfterPersist`] the grant is recorded at
    /// once (so a concurrent request is refused), but must not be answered before the
    /// promise is durable.
    ///
    /// `behind`: the asker is a takeover whose copy is older than this node's copy (at that
    /// position): refused, so only a member holding the newest copy can win an election
    /// (Raft's election restriction).
    pub fn ask(
        &mut self,
        now: Time,
        actor: &str,
        holder: NodeId,
        epoch: u64,
        base: u64,
        behind: Option<Pos>,
    ) -> Verdict {
        let promise = self.promise(actor);
        // A granter with no durable promise for this actor never answered a grant for it
        // (grants wait for their promise), so only actors it promised *before this start*
        // wait out the quiet time: a promise made in this life has its grants in memory.
        let before = self.from_before.get(actor).copied().unwrap_or(promise.promised > 0);
        if now < self.quiet_until && before {
            return Verdict::Deny(Denial::Starting);
        }
        // Older state than a granted epoch's may not serve again — except the activation of
        // that very epoch (the one node given it), e.g. after it restarted.
        let other = promise.granted_to.is_some_and(|h| h != holder);
        let stale = base != 0 && base < promise.granted && (epoch != promise.granted || other);
        if epoch < promise.promised || stale || epoch < base {
            return Verdict::Deny(Denial::Fenced { promise });
        }
        if let Some(g) = self.grants.get(actor)
            && g.until > now
            && !g.released
            && g.holder != holder
        {
            return Verdict::Deny(Denial::Held { holder: g.holder, epoch: g.epoch });
        }
        if let Some(have) = behind {
            return Verdict::Deny(Denial::Behind { have });
        }
        self.grants.insert(actor.to_string(), Grant { holder, epoch, until: now + self.cfg.duration, released: false });
        if epoch > promise.promised || epoch > promise.granted {
            let granted_to = if epoch > promise.granted { Some(holder) } else { promise.granted_to };
            let p = Promise { promised: epoch.max(promise.promised), granted: epoch.max(promise.granted), granted_to };
            self.promises.insert(actor.to_string(), p);
            Verdict::GrantAfterPersist(p)
        } else {
            Verdict::Grant
        }
    }

    /// `holder` gives up its lease at `epoch` (it handed the actor over, or stopped).
    pub fn release(&mut self, actor: &str, holder: NodeId, epoch: u64) {
        if let Some(g) = self.grants.get_mut(actor)
            && g.holder == holder
            && g.epoch == epoch
        {
            g.released = true;
        }
    }

    /// Forgets expired grants (bounded memory).
    pub fn expire(&mut self, now: Time) {
        self.grants.retain(|_, g| g.until > now && !g.released);
    }

    /// Grants held now, for `fn where`: actor → (holder, epoch).
    pub fn current(&self, now: Time) -> impl Iterator<Item = (&str, NodeId, u64)> {
        self.grants
            .iter()
            .filter(move |(_, g)| g.until > now && !g.released)
            .map(|(a, g)| (a.as_str(), g.holder, g.epoch))
    }
}

/// The holder's side for one activation.
#[derive(Clone, Debug)]
pub struct Holder {
    /// The epoch held (or sought).
    pub epoch: u64,
    /// The state it starts from.
    pub base: u64,
    granters: Vec<NodeId>,
    /// The round in progress: when it was sent, who granted so far.
    round: Option<(Time, BTreeSet<NodeId>)>,
    /// The lease is valid until then (`Time(0)`: never held).
    valid_until: Time,
    /// A denial said a higher epoch exists.
    pub fenced: bool,
    /// An early next round (a denial while the lease is not held: ask again soon).
    retry_at: Option<Time>,
    /// A takeover's own id: until it first holds the lease it asks its own granter only once
    /// a majority less one of the others granted, so a candidate cut off from the group raises
    /// no promise anywhere (one it raised alone would fence the live home later).
    self_last: Option<NodeId>,
    /// Whether this round asked `self_last` already.
    asked_self: bool,
    /// The group before a move: until the lease is first held, a round needs a majority of
    /// these too (joint consensus), so a member of the old group cannot hand the same epoch
    /// to anyone else while the actor changes groups.
    joint: Vec<NodeId>,
}

impl Holder {
    /// Seeks a lease at `epoch` from `granters`.
    pub fn new(epoch: u64, base: u64, granters: Vec<NodeId>) -> Holder {
        Holder {
            epoch,
            base,
            granters,
            round: None,
            valid_until: Time(0),
            fenced: false,
            retry_at: None,
            self_last: None,
            asked_self: false,
            joint: Vec::new(),
        }
    }

    /// A holder whose first lease also needs a majority of `old` (the group before a move).
    pub fn joint_with(mut self, old: Vec<NodeId>) -> Holder {
        self.joint = old;
        self
    }

    /// Everyone a round asks: the group, and the old group while joint.
    fn askable(&self) -> Vec<NodeId> {
        let mut all = self.granters.clone();
        for g in &self.joint {
            if !all.contains(g) {
                all.push(*g);
            }
        }
        all
    }

    /// A takeover by `me`: it asks itself last (see `self_last`).
    pub fn asking_self_last(mut self, me: NodeId) -> Holder {
        self.self_last = Some(me);
        self
    }

    /// Whether the current round should ask this node's own granter now (a takeover that has
    /// a majority less one of the others' grants). Returns `true` once per round.
    pub fn ask_self_now(&mut self) -> bool {
        let majority = self.majority();
        let (Some(_), Some((_, got))) = (self.self_last, &self.round) else { return false };
        if self.asked_self || got.len() + 1 < majority {
            return false;
        }
        self.asked_self = true;
        true
    }

    /// Whether this holder still holds back its own grant (see `self_last`).
    fn holds_back_self(&self) -> Option<NodeId> {
        self.self_last.filter(|_| self.valid_until == Time(0))
    }

    /// The granters.
    pub fn granters(&self) -> &[NodeId] {
        &self.granters
    }

    /// A majority of the granters.
    pub fn majority(&self) -> usize {
        self.granters.len() / 2 + 1
    }

    /// Whether the lease holds for `span` more.
    pub fn valid_for(&self, now: Time, span: Duration) -> bool {
        !self.fenced && self.valid_until >= now + span
    }

    /// When the lease runs out.
    pub fn valid_until(&self) -> Time {
        self.valid_until
    }

    /// Starts a round if one is due (`renew_every` after the last, or none yet). Returns the
    /// granters to ask.
    pub fn poll(&mut self, now: Time, cfg: &LeaseConfig) -> Option<Vec<NodeId>> {
        if self.fenced {
            return None;
        }
        let due = match &self.round {
            None => true,
            Some((sent, _)) => now >= *sent + cfg.renew_every || self.retry_at.is_some_and(|r| now >= r),
        };
        if !due {
            return None;
        }
        self.retry_at = None;
        self.round = Some((now, BTreeSet::new()));
        match self.holds_back_self() {
            Some(me) if self.granters.contains(&me) => {
                self.asked_self = false;
                Some(self.askable().into_iter().filter(|g| *g != me).collect())
            }
            _ => {
                self.asked_self = true;
                Some(self.askable())
            }
        }
    }

    /// When the next round is due.
    pub fn next_round(&self, cfg: &LeaseConfig) -> Time {
        match &self.round {
            None => Time(0),
            Some(_) if self.fenced => Time(u64::MAX),
            Some((sent, _)) => {
                let renew = *sent + cfg.renew_every;
                self.retry_at.map_or(renew, |r| r.min(renew))
            }
        }
    }

    /// A grant for the current round (`sent`: the round's send time, echoed by the granter).
    /// Returns `true` if the lease was extended.
    pub fn granted(&mut self, from: NodeId, sent: Time, cfg: &LeaseConfig) -> bool {
        let majority = self.majority();
        let Some((round_sent, got)) = self.round.as_mut() else { return false };
        if *round_sent != sent || !(self.granters.contains(&from) || self.joint.contains(&from)) {
            return false;
        }
        got.insert(from);
        let count = |set: &[NodeId]| got.iter().filter(|g| set.contains(g)).count();
        let joint_ok = self.joint.is_empty() || count(&self.joint) > self.joint.len() / 2;
        if count(&self.granters) >= majority && joint_ok {
            // Held once: the new group alone leases from now on.
            self.joint.clear();
            let until = sent + cfg.holder_span();
            if until > self.valid_until {
                self.valid_until = until;
                return true;
            }
        }
        false
    }

    /// A denial at `now`. Returns `true` if it fences this activation. A holder without a
    /// valid lease asks again after `retry` (a migration target waiting for the source's
    /// release, a granter that is starting) rather than a whole renewal period later.
    pub fn denied_at(&mut self, now: Time, retry: Duration, denial: &Denial, me: NodeId) -> bool {
        if !self.fenced && self.valid_until <= now + retry {
            self.retry_at = Some(self.retry_at.map_or(now + retry, |r| r.min(now + retry)));
        }
        self.denied(denial, me)
    }

    /// A denial to `me`. Returns `true` if it fences this activation.
    pub fn denied(&mut self, denial: &Denial, me: NodeId) -> bool {
        if let Denial::Fenced { promise } = denial
            && (promise.promised > self.epoch
                || (self.base != 0
                    && promise.granted > self.base
                    && (promise.granted != self.epoch || promise.granted_to.is_some_and(|h| h != me))))
        {
            self.fenced = true;
            self.valid_until = Time(0);
        }
        self.fenced
    }

    /// Gives the lease up (the granters are told separately).
    pub fn release(&mut self) {
        self.valid_until = Time(0);
        self.fenced = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(k: u8) -> NodeId {
        NodeId([k; 32])
    }

    fn at(ms: u64) -> Time {
        Time(ms * 1000)
    }

    #[test]
    fn one_holder_at_a_time_until_release_or_expiry() {
        let cfg = LeaseConfig::default();
        let mut g = Granter::new(cfg, at(0));
        let t = at(10_000);
        g.restore("b", Promise { promised: 1, granted: 1, granted_to: None });
        assert_eq!(g.ask(at(1000), "b", n(1), 1, 1, None), Verdict::Deny(Denial::Starting), "quiet after boot");
        assert!(matches!(g.ask(at(1000), "new", n(1), 1, 0, None), Verdict::GrantAfterPersist(_)), "never promised");
        // Its promise, durable and read back, was made in this life: no grant from before the
        // start can be running, so the next holder need not wait out the quiet time.
        g.restore("new", Promise { promised: 1, granted: 1, granted_to: None });
        g.release("new", n(1), 1);
        assert!(
            matches!(g.ask(at(1500), "new", n(2), 2, 1, None), Verdict::GrantAfterPersist(_)),
            "promised in this life"
        );
        assert_eq!(
            g.ask(t, "a", n(1), 1, 0, None),
            Verdict::GrantAfterPersist(Promise { promised: 1, granted: 1, granted_to: Some(n(1)) })
        );
        assert_eq!(g.ask(t, "a", n(1), 1, 1, None), Verdict::Grant, "a renewal needs no new promise");
        assert_eq!(g.ask(t, "a", n(2), 2, 1, None), Verdict::Deny(Denial::Held { holder: n(1), epoch: 1 }));
        g.release("a", n(1), 1);
        assert_eq!(
            g.ask(t, "a", n(2), 2, 1, None),
            Verdict::GrantAfterPersist(Promise { promised: 2, granted: 2, granted_to: Some(n(2)) })
        );
        // The old holder is fenced now, and cannot come back with its older state.
        match g.ask(t + cfg.duration * 2, "a", n(1), 3, 1, None) {
            Verdict::Deny(Denial::Fenced { promise }) => assert_eq!(promise.granted, 2),
            other => panic!("{other:?}"),
        }
        // Expiry frees it for the next epoch.
        let later = t + cfg.duration + Duration::from_millis(1);
        assert!(matches!(g.ask(later, "a", n(3), 3, 2, None), Verdict::GrantAfterPersist(_)));
    }

    #[test]
    fn a_holder_needs_a_majority_and_its_lease_ends_before_the_grants() {
        let cfg = LeaseConfig::default();
        let mut h = Holder::new(1, 0, vec![n(1), n(2), n(3)]);
        let t0 = at(5000);
        let ask = h.poll(t0, &cfg).unwrap_or_default();
        assert_eq!(ask.len(), 3);
        assert!(!h.granted(n(1), t0, &cfg));
        assert!(!h.valid_for(t0, Duration::ZERO));
        assert!(!h.granted(n(9), t0, &cfg), "not a granter");
        assert!(h.granted(n(2), t0, &cfg));
        assert!(h.valid_for(t0, Duration::from_secs(5)));
        assert!(h.valid_until() < t0 + cfg.duration, "shorter than any grant");
        assert!(h.poll(t0 + Duration::from_secs(1), &cfg).is_none(), "not due yet");
        assert!(h.denied(&Denial::Fenced { promise: Promise { promised: 2, granted: 2, granted_to: None } }, n(9)));
        assert!(!h.valid_for(t0, Duration::ZERO));
        assert!(h.poll(t0 + Duration::from_secs(10), &cfg).is_none(), "a fenced holder stops asking");
    }

    #[test]
    fn a_fresh_redeploy_may_start_below_the_granted_epoch_state() {
        let cfg = LeaseConfig::default();
        let mut g = Granter::new(cfg, at(0));
        g.restore("a", Promise { promised: 4, granted: 4, granted_to: None });
        let t = at(20_000);
        assert!(matches!(g.ask(t, "a", n(1), 5, 3, None), Verdict::Deny(Denial::Fenced { .. })), "older state");
        assert!(matches!(g.ask(t, "a", n(1), 5, 0, None), Verdict::GrantAfterPersist(_)), "fresh state");
        assert!(matches!(g.ask(t, "a", n(1), 3, 0, None), Verdict::Deny(Denial::Fenced { .. })), "older epoch");
    }
}
