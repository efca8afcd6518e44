//! Failover: a standby takes an actor over when its home is down (issue 18, first step).
//!
//! An actor's *group* is its lease granters: the nodes whose majority leases its home. After
//! every call the home's driver copies the call's checkpoint (the delta it appended, or a new
//! base) to the other members, in the background ([`super::ActorRun::standbys`]); each member's
//! driver tells its core which epoch it holds ([`crate::Node::handle_replica_stored`]).
//!
//! A member `M` holding the checkpoint of the registry's current epoch starts a *takeover* when
//! all of these hold, checked on every tick:
//! - the home is not alive in `M`'s membership view (suspect, down or gone) — SWIM's indirect
//!   probes keep a home that only `M` cannot reach alive, so one cut link moves nothing;
//! - `M`'s own granter holds no unexpired grant for the actor — a live home renews every
//!   [`super::lease::LeaseConfig::renew_every`], so this means the home stopped renewing;
//! - `M` has waited its rank × [`RANK_STEP`] since both first held, the rank being its place
//!   among the alive members in the record's order, so the first alive member goes first and
//!   the next only if that one does not.
//!
//! The takeover is an ordinary activation at a new epoch (above the record's and every
//! promise this node knows), from the epoch whose checkpoint it holds, through the same lease
//! rounds as any activation: it serves only once a majority of the group granted it, which
//! needs the old home's grants to have expired. Fencing is unchanged: the old home, back or
//! reconnected, is refused at its old epoch by every granter that promised the new one, and
//! stops. A candidate that meets a rival already holding the lease at its epoch or above
//! gives way.
//!
//! What this step does not give (docs/functions.md, "Failover"): copies are asynchronous, so
//! calls answered in the last moments before the home died may be missing from the standby's
//! copy (`local` durability); a standby holding only an older epoch's checkpoint (the home
//! moved and died before its first copy arrived) cannot take over, because the granters refuse
//! state older than a granted epoch; and the group does not move with the actor.

use std::time::Duration;

use super::{Activation, Phase};
use crate::functions::actors::lease::{Denial, Holder, Pos};
use crate::functions::registry::record::{PlacementRecord, promise_of};
use crate::functions::registry::{local_entry, registry_object};
use crate::functions::{Ctx, Functions, Message, Output, event};
use crate::membership::Status;
use crate::{NodeId, Time};
use std::collections::BTreeSet;
use wasm_host::Kind;

/// How much longer each member waits than the one before it in the group's order.
pub const RANK_STEP: Duration = Duration::from_secs(1);

/// How often standbys look at their actors' homes.
pub const CHECK_EVERY: Duration = Duration::from_millis(250);

impl Functions {
    /// The driver stored a copy of actor `name`'s checkpoint at `pos` here. Acknowledged
    /// (`true`) unless this node promised a later epoch to another activation: a copy from
    /// a home that epoch replaced must not count towards that home's quorum, or a call could
    /// be answered that the new home's state lacks.
    pub(crate) fn note_replica(&mut self, name: &str, pos: Pos, ctx: &Ctx<'_>) -> bool {
        if let Ok(object) = registry_object(name)
            && let Some(doc) = ctx.objects.doc(&object)
        {
            self.actors.granter.restore(name, promise_of(doc, &self.me));
        }
        if pos.epoch < self.actors.granter.promise(name).promised {
            return false;
        }
        let e = self.actors.replicas.entry(name.to_string()).or_default();
        *e = (*e).max(pos);
        true
    }

    /// Where a call for an actor whose home `pl.home` is not alive goes instead: the first
    /// alive member of its group other than the home (this node, if it is that member).
    /// `None` while the home is alive, or when no other member is.
    pub(super) fn standby_for(&self, pl: &PlacementRecord, ctx: &Ctx<'_>) -> Option<NodeId> {
        if self.alive(&pl.home, ctx) {
            return None;
        }
        pl.granters.iter().copied().find(|g| *g != pl.home && self.alive(g, ctx))
    }

    fn alive(&self, node: &NodeId, ctx: &Ctx<'_>) -> bool {
        *node == self.me || ctx.membership.status_of(node) == Some(Status::Alive)
    }

    /// Starts takeovers that are due (see the module docs).
    pub(super) fn failovers(&mut self, now: Time, ctx: &mut Ctx<'_>) {
        if now < self.actors.failover_check {
            return;
        }
        self.actors.failover_check = now + CHECK_EVERY;
        let held: BTreeSet<String> = self.actors.granter.current(now).map(|(a, _, _)| a.to_string()).collect();
        let replicas: Vec<(String, Pos)> = self.actors.replicas.iter().map(|(n, p)| (n.clone(), *p)).collect();
        for (name, have) in replicas {
            match self.takeover_due(&name, have, &held, ctx) {
                None => {
                    self.actors.silent.remove(&name);
                }
                Some((rank, pl)) => {
                    let since = *self.actors.silent.entry(name.clone()).or_insert(now);
                    if now >= since + RANK_STEP * rank {
                        self.actors.silent.remove(&name);
                        self.take_over(now, &name, have, pl, ctx);
                    }
                }
            }
        }
    }

    /// This node's rank for taking actor `name` over, and its placement record, when the
    /// conditions of the module docs hold.
    fn takeover_due(
        &self,
        name: &str,
        have: Pos,
        held: &BTreeSet<String>,
        ctx: &Ctx<'_>,
    ) -> Option<(u32, PlacementRecord)> {
        if self.actors.active.contains_key(name) || self.actors.incoming.contains_key(name) || held.contains(name) {
            return None;
        }
        let reg = local_entry(ctx.objects, name)?.ok()?;
        if reg.entry.manifest.kind != Kind::Actor {
            return None;
        }
        let pl = reg.placement?;
        if pl.home == self.me || have.epoch != pl.epoch || !pl.granters.contains(&self.me) || self.alive(&pl.home, ctx)
        {
            return None;
        }
        let rank = pl.granters.iter().filter(|g| **g != pl.home && self.alive(g, ctx)).position(|g| *g == self.me)?;
        Some((u32::try_from(rank).unwrap_or(u32::MAX), pl))
    }

    /// Starts an activation of `name` here, at a new epoch, from this node's copy at `have`.
    fn take_over(&mut self, now: Time, name: &str, have: Pos, pl: PlacementRecord, ctx: &mut Ctx<'_>) {
        let Some(Ok(reg)) = local_entry(ctx.objects, name) else { return };
        if let Ok(object) = registry_object(name)
            && let Some(doc) = ctx.objects.doc(&object)
        {
            self.actors.granter.restore(name, promise_of(doc, &self.me));
        }
        let promise = self.actors.granter.promise(name);
        let epoch = pl.epoch.max(promise.promised).max(promise.granted).saturating_add(1);
        let reason = format!("failover: its home {} stopped answering", pl.home.short());
        self.actors.migrations.failovers += 1;
        let from = format!("{reason}; from this node's copy at checkpoint {} of epoch {}", have.n, have.epoch);
        event(ctx.out, name, "takeover", Some(pl.home), epoch, from);
        self.actors.active.insert(
            name.to_string(),
            Activation {
                hash: reg.entry.hash,
                holder: Holder::new(epoch, have.epoch, pl.granters.clone()).asking_self_last(self.me),
                phase: Phase::Serving,
                held: Vec::new(),
                running: BTreeSet::new(),
                announced: false,
                takeover_from: Some(have),
                reason,
                figures: None,
                step_deadline: Time(u64::MAX),
                migration_reason: String::new(),
                since: now,
                state_bytes: 0,
            },
        );
    }

    /// A lease denial for a takeover that should give way: a rival holds the lease, or a
    /// member holds a newer copy. The takeover releases what it was granted and its waiting
    /// calls resolve afresh. `true` if it gave way.
    pub(super) fn rival_holds(
        &mut self,
        now: Time,
        name: &str,
        epoch: u64,
        denial: &Denial,
        ctx: &mut Ctx<'_>,
    ) -> bool {
        let Some(act) = self.actors.active.get(name) else { return false };
        if act.takeover_from.is_none() || act.announced || act.holder.epoch != epoch {
            return false;
        }
        let (why, rival) = match *denial {
            // A rival at this epoch or above, or a holder that is alive (the home came back,
            // or the partition that hid it healed): either serves; waiting for its grant to
            // run out would only fence it.
            Denial::Held { holder, epoch: theirs }
                if holder != self.me && (theirs >= epoch || self.alive(&holder, ctx)) =>
            {
                (format!("{} holds the lease at epoch {theirs}", holder.short()), Some(holder))
            }
            // A member holds a newer copy: it takes over instead.
            Denial::Behind { have } => {
                let mine = act.takeover_from.unwrap_or_default();
                let why = format!(
                    "a member's copy (checkpoint {} of epoch {}) is newer than this node's ({} of {})",
                    have.n, have.epoch, mine.n, mine.epoch
                );
                (why, None)
            }
            _ => return false,
        };
        let Some(act) = self.actors.active.remove(name) else { return false };
        for g in act.holder.granters() {
            if *g == self.me {
                self.actors.granter.release(name, self.me, epoch);
            } else {
                ctx.out.push(Output::send(*g, Message::LeaseRelease { name: name.to_string(), epoch }));
            }
        }
        event(ctx.out, name, "gave_way", rival, epoch, why);
        ctx.out.push(Output::Deactivate { name: name.to_string(), epoch });
        for (key, _) in act.held {
            self.actors.held_entries.remove(&key);
            if let Some(p) = self.calls.pending.remove(&key) {
                self.start(now, p.origin, p.name, p.input, p.depth, p.hops, ctx);
            }
        }
        true
    }
}
