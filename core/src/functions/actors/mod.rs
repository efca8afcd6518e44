//! Actors in the core: the one activation of each actor, its lease, and its migration.
//!
//! An activation serves a call only while its lease (a majority of the actor's granters, see
//! [`lease`]) has at least [`admission_margin`] left; calls that arrive while it has none
//! (it is starting, renewing after a cut, or being handed over) wait, bounded by
//! [`HOLD_MAX`]. A migration from this node (the source, epoch `e`) to a target:
//!
//! 1. **prepare**: the target fetches and compiles the module ([`Output::Prefetch`]) and says
//!    so; a refusal or silence rolls back (the source never stopped serving);
//! 2. **drain**: the source admits nothing new (new calls wait) and lets running calls end;
//! 3. **hand off**: the driver snapshots the instance and streams it to the target
//!    ([`Output::Handoff`]); the target's driver stores it as epoch `e + 1`;
//! 4. **release**: once sent, the source releases its lease and never serves at `e` again;
//!    waiting calls and stragglers go to the target;
//! 5. **activate**: the target asks for the lease at `e + 1` from state `e`, which the granters
//!    give once the source's lease is released or expired; then it records itself as home.
//!
//! If the hand-off fails after the snapshot may have left, the source does not simply resume
//! at `e`: it takes a lease at `e + 2` (from its own state `e`), which fences the target's
//! `e + 1` at the granters, so a late snapshot can never activate beside it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use wasm_host::{Durability, InvokeError, Kind, Manifest, ModuleHash};

pub mod failover;
pub mod group;
pub mod lease;

use self::lease::{Denial, Holder, Verdict};
use super::invocations::{Origin, Stage};
use super::registry::record::{PlacementRecord, promise_of, promise_op};
use super::registry::{Awaiting, Registered, registry_object};
use super::{Ctx, Functions, Message, Output, event};
use crate::membership::Status;
use crate::{NodeId, Time};

/// How long a call may wait for its actor's activation to be able to serve.
pub const HOLD_MAX: Duration = Duration::from_secs(10);

/// How soon a holder without a lease asks again after a denial.
pub const RETRY: Duration = Duration::from_millis(100);

/// How long each migration step may take before the migration is rolled back.
pub const STEP_MAX: Duration = Duration::from_secs(30);

/// How often a call whose registry record is stale (it names an epoch this node was fenced
/// at) reads the record again, waiting for the new home to announce itself.
pub const REREAD: Duration = Duration::from_millis(250);

/// How long after a hand-off that never completed (the source crashed with its snapshot sent
/// or in flight, and no new home ever announced itself) the source serves again, at a new
/// epoch: beyond the target's whole wait for the snapshot and a lease on top.
const RESUME_AFTER: Duration = Duration::from_secs(3 * 30 + 10);

/// How the driver runs an actor's call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActorRun {
    /// The activation's epoch: the driver keeps one live instance per actor and a durable
    /// checkpoint per epoch.
    pub epoch: u64,
    /// No earlier state exists for this activation (a new deploy): with no live instance and
    /// no checkpoint of `epoch`, start a fresh instance. Otherwise the driver restores the
    /// newest checkpoint not above `epoch`, and fails the call if there is none.
    pub fresh: bool,
    /// The actor's group members other than this node (its standbys): after the call's
    /// checkpoint the driver copies it to them (see [`failover`]).
    pub standbys: Vec<NodeId>,
    /// How many standbys must hold the call's checkpoint durably before the call is
    /// answered (`group` durability; 0 for `local`). A call that cannot reach that many in
    /// time fails as unavailable — its effect may still survive (the usual ambiguity of an
    /// error after execution).
    pub quorum: usize,
}

/// Fetch and compile this module now (a migration target preparing); answer with
/// [`crate::Node::handle_prefetched`].
#[derive(Clone, Debug)]
pub struct Prefetch {
    /// The function.
    pub name: String,
    /// Its module.
    pub hash: ModuleHash,
    /// The module's size.
    pub size: u64,
    /// Its manifest.
    pub manifest: Manifest,
    /// Nodes holding the module, best first.
    pub sources: Vec<NodeId>,
}

/// Snapshot actor `name` (its live instance, else its newest checkpoint) and stream it to
/// `to`, which stores it as the checkpoint of `epoch`; answer with
/// [`crate::Node::handle_handoff_sent`]. The receiving driver calls
/// [`crate::Node::handle_snapshot_received`].
#[derive(Clone, Debug)]
pub struct Handoff {
    /// The actor, by its function's name (also its registry key).
    pub name: String,
    /// Its module.
    pub hash: ModuleHash,
    /// The epoch the target will serve at.
    pub epoch: u64,
    /// The target.
    pub to: NodeId,
}

/// A migration step or an activation's state, for `fn where`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Serving (when its lease is valid).
    Serving,
    /// Waiting for the target to prepare.
    Preparing {
        /// The target.
        to: NodeId,
    },
    /// Admitting nothing new, waiting for running calls to end.
    Draining {
        /// The target.
        to: NodeId,
    },
    /// Streaming its snapshot.
    Sending {
        /// The target.
        to: NodeId,
    },
    /// Handed over: everything goes to `to`.
    Gone {
        /// The new home.
        to: NodeId,
    },
}

/// One actor's activation on this node.
#[derive(Debug)]
pub(super) struct Activation {
    pub(super) hash: ModuleHash,
    pub(super) holder: Holder,
    pub(super) phase: Phase,
    /// Calls waiting for the lease or for a migration step, with their deadline.
    pub(super) held: Vec<(u64, Time)>,
    /// Calls executing.
    pub(super) running: BTreeSet<u64>,
    /// The registry's placement has been set to this activation.
    pub(super) announced: bool,
    /// Started by a standby whose home was down, from its copy at this position: it gives
    /// way to a rival that holds the lease or a newer copy (see [`failover`]).
    pub(super) takeover_from: Option<lease::Pos>,
    /// Why it is here (written with the placement).
    pub(super) reason: String,
    pub(super) figures: Option<serde_json::Value>,
    /// When the current migration step gives up.
    pub(super) step_deadline: Time,
    pub(super) migration_reason: String,
    /// When it last moved here, or was last asked to move.
    pub(super) since: Time,
    /// Its state's size as last checkpointed (what a move ships).
    pub(super) state_bytes: u64,
}

/// A migration into this node, before its snapshot arrived.
#[derive(Debug)]
pub(super) struct Incoming {
    pub(super) from: NodeId,
    pub(super) epoch: u64,
    pub(super) base: u64,
    pub(super) hash: ModuleHash,
    pub(super) granters: Vec<NodeId>,
    /// The group before the move: the first lease needs a majority of it too.
    pub(super) joint: Vec<NodeId>,
    pub(super) deadline: Time,
    pub(super) reason: String,
    pub(super) figures: Option<serde_json::Value>,
}

/// What `fn where` shows of an actor's activation here.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActivationView {
    /// Its epoch.
    pub epoch: u64,
    /// What it is doing.
    pub phase: Phase,
    /// Whether its lease lets it serve now.
    pub leased: bool,
    /// Milliseconds of lease left.
    pub lease_left_ms: u64,
    /// Calls waiting.
    pub held: usize,
    /// Calls running.
    pub running: usize,
}

/// Migration counters, for metrics.
#[derive(Clone, Debug, Default)]
pub struct MigrationStats {
    /// Migrations started from this node.
    pub started: u64,
    /// Migrations completed (handed off) from this node.
    pub finished: u64,
    /// Migrations rolled back, by reason.
    pub rolled_back: BTreeMap<String, u64>,
    /// Activations started here from a received snapshot.
    pub received: u64,
    /// Activations fenced here (a higher epoch exists).
    pub fenced: u64,
    /// Object replicas the policy added next to functions homed here.
    pub replicas_added: u64,
    /// Added replicas removed again (the function moved away, or stopped reading the object).
    pub replicas_pruned: u64,
    /// Activations this node started as a standby because the actor's home was down.
    pub failovers: u64,
}

/// Log lines the driver prints (migrations are rare and worth a line each).
#[derive(Clone, Debug, PartialEq)]
pub struct MigrationEvent {
    /// The actor, by its function's name (also its registry key).
    pub name: String,
    /// `started`, `finished`, `rolled_back`, `activated`, `fenced`, `replica_added`,
    /// `replica_pruned`.
    pub what: &'static str,
    /// The other node.
    pub peer: Option<NodeId>,
    /// The epoch concerned.
    pub epoch: u64,
    /// Why.
    pub reason: String,
}

/// The actors part's state: this node's activations, its role as a lease granter, and
/// migrations in and out.
pub(super) struct Actors {
    pub(super) lease_cfg: lease::LeaseConfig,
    /// This node as a lease granter.
    pub(super) granter: lease::Granter,
    /// Actor activations on this node.
    pub(super) active: BTreeMap<String, Activation>,
    /// Migrations into this node waiting for their snapshot.
    pub(super) incoming: BTreeMap<String, Incoming>,
    /// Calls held by an activation: their registry entry, to run them later.
    pub(super) held_entries: HashMap<u64, Registered>,
    /// Calls waiting for an incoming snapshot.
    pub(super) waiting_for_snapshot: BTreeMap<String, Vec<u64>>,
    /// Per actor, the highest epoch this node knows it may no longer serve at (it was fenced
    /// there): a registry record naming this node at or below it is stale. Kept with the
    /// deployment it applies to (`deployed_at_ms`): a redeploy starts afresh.
    pub(super) fenced: BTreeMap<String, (u64, u64)>,
    /// Calls whose registry record is stale (see `fenced`): when to read it again.
    pub(super) parked: BTreeMap<u64, Time>,
    /// When this subsystem started (a restart forgets migrations in progress).
    pub(super) booted: Time,
    pub(super) migrations: MigrationStats,
    /// Actors whose checkpoint this node holds (as a standby, or as a former home): the
    /// position of the newest copy acknowledged.
    pub(super) replicas: BTreeMap<String, lease::Pos>,
    /// Standby actors whose home looks gone: since when (see [`failover`]).
    pub(super) silent: BTreeMap<String, Time>,
    /// When standbys next look at their actors' homes.
    pub(super) failover_check: Time,
}

impl Actors {
    pub(super) fn new(lease_cfg: lease::LeaseConfig, now: Time) -> Actors {
        Actors {
            lease_cfg,
            granter: lease::Granter::new(lease_cfg, now),
            active: BTreeMap::new(),
            incoming: BTreeMap::new(),
            held_entries: HashMap::new(),
            waiting_for_snapshot: BTreeMap::new(),
            fenced: BTreeMap::new(),
            parked: BTreeMap::new(),
            booted: now,
            migrations: MigrationStats::default(),
            replicas: BTreeMap::new(),
            silent: BTreeMap::new(),
            failover_check: now,
        }
    }
}

impl Functions {
    /// Routes an actor call that resolved to `reg` (the registry entry); `key` is pending.
    pub(super) fn route_actor(&mut self, now: Time, key: u64, reg: Registered, ctx: &mut Ctx<'_>) {
        let Some(p) = self.calls.pending.get(&key) else { return };
        let name = p.name.clone();
        let origin = p.origin;
        let placement = reg.placement.clone();
        // A newer epoch in the registry fences an older activation here.
        if let (Some(act), Some(pl)) = (self.actors.active.get(&name), &placement)
            && pl.epoch > act.holder.epoch
            && !matches!(act.phase, Phase::Gone { .. })
        {
            self.fence(now, &name, format!("the registry names epoch {} on {}", pl.epoch, pl.home.short()), ctx);
        }
        if let Some(act) = self.actors.active.get(&name) {
            if let Phase::Gone { to } = act.phase {
                return self.pass_on(now, key, to, ctx);
            }
            return self.admit(now, key, reg, ctx);
        }
        if let Some(inc) = self.actors.incoming.get(&name)
            && matches!(origin, Origin::Peer(from, _) if from == inc.from)
            && placement.as_ref().is_none_or(|pl| pl.epoch < inc.epoch)
        {
            // A straggler the source passed on while handing the actor over to this node,
            // whose record predates the move: wait for the snapshot rather than point the call
            // back at the source, which would pass it here again. (The source's own forward
            // deadline bounds what its caller waits.)
            return self.hold_for_incoming(now, key, &name, ctx);
        }
        let home = match &placement {
            Some(pl) => pl.home,
            // Deployed before placement records existed: the rendezvous choice.
            None => match super::choose(
                &name,
                Kind::Actor,
                &super::eligible(&reg.entry.manifest, ctx.membership, now),
                &self.me,
            ) {
                Some(h) => h,
                None => {
                    let err = InvokeError::Unavailable(format!("no alive node may run actor {name:?}"));
                    return self.finish(key, Err(err), ctx.out);
                }
            },
        };
        if home != self.me {
            // A home that is down cannot answer: its group's standby takes over (or holds
            // the newest copy), so the call goes there and waits for it.
            if let Some(pl) = &placement
                && let Some(standby) = self.standby_for(pl, ctx)
            {
                if standby == self.me {
                    return self.park(
                        now,
                        key,
                        format!("its home {} is down; this standby takes over", home.short()),
                        ctx,
                    );
                }
                return self.pass_on(now, key, standby, ctx);
            }
            return self.pass_on(now, key, home, ctx);
        }
        // This node is the home: start the activation (its lease is sought now).
        let (mut epoch, mut base, granters, mut reason) = match &placement {
            Some(pl) => (pl.epoch, pl.base, pl.granters.clone(), pl.reason.clone()),
            None => (1, 0, vec![self.me], "chosen by rendezvous hashing".to_string()),
        };
        // Never again at an epoch this node was fenced at or handed over: the record is stale
        // and the new home will announce itself (the call waits, reading the record again).
        let deployed = reg.entry.deployed_at_ms;
        let fenced = self.actors.fenced.get(&name).filter(|(d, _)| *d == deployed).map_or(0, |(_, f)| *f);
        let handed = reg.handoffs.get(&self.me).copied().unwrap_or(0);
        if epoch <= fenced {
            return self.park(now, key, format!("this node was fenced at epoch {fenced}"), ctx);
        }
        if epoch <= handed {
            // Handed over and then restarted (or forgotten): the target activates and
            // announces itself, unless the hand-off died with it; only long after any target
            // gave up does this node serve again, at a new epoch that fences a late one.
            if now.since(self.actors.booted) < RESUME_AFTER {
                return self.park(now, key, format!("this node handed epoch {handed} over"), ctx);
            }
            (epoch, base) = (handed + 2, handed);
            reason = format!("resumed here: the hand-off of epoch {handed} never completed");
        }
        if self.actors.incoming.contains_key(&name) && placement.as_ref().is_some_and(|pl| pl.home == self.me) {
            // Being handed over to this node: the snapshot has not arrived yet.
            return self.hold_for_incoming(now, key, &name, ctx);
        }
        let granters = if granters.is_empty() { vec![self.me] } else { granters };
        let announced = placement.as_ref().is_some_and(|pl| pl.home == self.me && pl.epoch == epoch);
        self.actors.active.insert(
            name.clone(),
            Activation {
                hash: reg.entry.hash,
                holder: Holder::new(epoch, base, granters),
                phase: Phase::Serving,
                held: Vec::new(),
                running: BTreeSet::new(),
                announced,
                takeover_from: None,
                reason,
                figures: placement.and_then(|p| p.figures),
                step_deadline: Time(u64::MAX),
                migration_reason: String::new(),
                since: now,
                state_bytes: 0,
            },
        );
        self.admit(now, key, reg, ctx);
        self.lease_rounds(now, ctx);
    }

    /// A peer's call goes on to `to` by redirect (the peer follows it); a local one is
    /// forwarded.
    fn pass_on(&mut self, now: Time, key: u64, to: NodeId, ctx: &mut Ctx<'_>) {
        let Some(p) = self.calls.pending.get(&key) else { return };
        if to == self.me {
            let err = InvokeError::Unavailable("the actor's home is this node, but it has no activation here".into());
            return self.finish(key, Err(err), ctx.out);
        }
        if let Origin::Peer(from, id) = p.origin
            && from != to
        {
            self.calls.pending.remove(&key);
            self.calls.stats.redirects += 1;
            ctx.out.push(Output::send(from, Message::Redirect { id, to }));
            return;
        }
        self.forward(now, key, to, ctx.out);
    }

    fn hold_for_incoming(&mut self, now: Time, key: u64, name: &str, ctx: &mut Ctx<'_>) {
        let _ = (now, ctx);
        if let Some(p) = self.calls.pending.get_mut(&key) {
            p.stage = Stage::Held;
        }
        // Bounded by the incoming migration's deadline.
        self.actors.waiting_for_snapshot.entry(name.to_string()).or_default().push(key);
    }

    /// Call `key`'s registry record names this node at an epoch it may not serve: read the
    /// record again soon, until the call's hold time runs out.
    fn park(&mut self, now: Time, key: u64, why: String, ctx: &mut Ctx<'_>) {
        let Some(p) = self.calls.pending.get_mut(&key) else { return };
        if now >= p.arrived + HOLD_MAX {
            let err = InvokeError::Unavailable(format!(
                "actor {:?} is between homes ({why}) and its new home has not announced itself yet",
                p.name
            ));
            return self.finish(key, Err(err), ctx.out);
        }
        p.stage = Stage::Held;
        self.actors.parked.insert(key, now + REREAD);
    }

    /// Reads the records of parked calls again.
    fn reread_parked(&mut self, now: Time, ctx: &mut Ctx<'_>) {
        let due: Vec<u64> = self.actors.parked.iter().filter(|(_, t)| **t <= now).map(|(k, _)| *k).collect();
        for key in due {
            self.actors.parked.remove(&key);
            let Some(p) = self.calls.pending.get(&key) else { continue };
            match registry_object(&p.name) {
                Ok(object) => self.resolve(now, key, object, ctx),
                Err(e) => self.finish(key, Err(InvokeError::Invalid(e)), ctx.out),
            }
        }
    }

    /// Runs `key` on the local activation if its lease allows, or holds it.
    pub(super) fn admit(&mut self, now: Time, key: u64, reg: Registered, ctx: &mut Ctx<'_>) {
        let Some(p) = self.calls.pending.get_mut(&key) else { return };
        let name = p.name.clone();
        let wall = p.wall;
        let Some(act) = self.actors.active.get_mut(&name) else {
            return self.finish(key, Err(InvokeError::Unavailable("no activation here".into())), ctx.out);
        };
        let serving = matches!(act.phase, Phase::Serving | Phase::Preparing { .. });
        // The lease must not be about to run out; it need not outlast the whole wall-time
        // limit (see `admission_margin`).
        if serving && act.holder.valid_for(now, admission_margin(wall, &self.actors.lease_cfg)) {
            act.running.insert(key);
            let standbys: Vec<NodeId> = act.holder.granters().iter().copied().filter(|g| *g != self.me).collect();
            // With `group` durability the answer waits until this many standbys hold the
            // checkpoint: with the home (when it is a member) a majority of the group.
            let me_member = usize::from(standbys.len() < act.holder.granters().len());
            let quorum = match reg.entry.manifest.actor.durability {
                Durability::Group => act.holder.majority().saturating_sub(me_member),
                Durability::Local => 0,
            };
            let run = ActorRun { epoch: act.holder.epoch, fresh: act.holder.base == 0, standbys, quorum };
            return self.execute(now, key, reg, Some(run), ctx);
        }
        if let Phase::Gone { to } = act.phase {
            return self.pass_on(now, key, to, ctx);
        }
        let deadline = now + HOLD_MAX;
        p.stage = Stage::Held;
        act.held.push((key, deadline));
        self.actors.held_entries.insert(key, reg);
    }

    /// An actor call ended (its execution finished): a draining source may hand off now.
    pub(super) fn actor_call_ended(&mut self, now: Time, name: &str, key: u64, ctx: &mut Ctx<'_>) {
        if let Some(act) = self.actors.active.get_mut(name) {
            act.running.remove(&key);
        }
        self.step(now, name, ctx);
    }

    /// Re-admits held calls whose activation may serve now.
    fn release_held(&mut self, now: Time, name: &str, ctx: &mut Ctx<'_>) {
        let Some(act) = self.actors.active.get_mut(name) else { return };
        let held = std::mem::take(&mut act.held);
        for (key, _) in held {
            match self.actors.held_entries.remove(&key) {
                Some(reg) => self.admit(now, key, reg, ctx),
                None => self.finish(key, Err(InvokeError::Unavailable("lost its registry entry".into())), ctx.out),
            }
        }
    }

    /// Starts moving actor `name` from this node to `to`.
    pub(super) fn migrate(
        &mut self,
        now: Time,
        name: &str,
        to: NodeId,
        reason: String,
        figures: Option<serde_json::Value>,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), String> {
        let Some(act) = self.actors.active.get_mut(name) else {
            return Err(format!("actor {name:?} has no activation on this node"));
        };
        if act.phase != Phase::Serving {
            return Err(format!("actor {name:?} is already moving ({:?})", act.phase));
        }
        if to == self.me {
            return Err(format!("actor {name:?} already runs on this node"));
        }
        if ctx.membership.status_of(&to) != Some(Status::Alive) {
            return Err(format!("node {} is not alive", to.short()));
        }
        if !act.holder.valid_for(now, Duration::ZERO) {
            return Err(format!("actor {name:?} holds no lease here right now"));
        }
        let next = act.holder.epoch + 1;
        act.phase = Phase::Preparing { to };
        act.step_deadline = now + STEP_MAX;
        act.migration_reason = reason.clone();
        act.figures = figures;
        // The group moves with the actor: the target's first lease needs majorities of both.
        let old = act.holder.granters().to_vec();
        let mut granters = group::group_for(name, to, &group::alive_sites(ctx.membership, now), group::SIZE);
        if granters.len() < old.len().min(group::SIZE) {
            // This node's view lacks members: keep the group rather than shrink it.
            granters = old.clone();
        }
        let joint = if granters == old { Vec::new() } else { old };
        let msg = Message::Prepare {
            name: name.to_string(),
            epoch: next,
            base: act.holder.epoch,
            hash: act.hash,
            granters,
            joint,
            reason: reason.clone(),
            figures: act.figures.as_ref().map(|f| f.to_string()),
        };
        self.actors.migrations.started += 1;
        event(ctx.out, name, "started", Some(to), next, reason);
        ctx.out.push(Output::send(to, msg));
        Ok(())
    }

    /// An operator's request to move actor `name` to `to`, made at this node: started here
    /// if the activation is here, else passed to the home the registry names. Returns the
    /// home.
    pub fn request_migration(
        &mut self,
        now: Time,
        name: &str,
        to: NodeId,
        reason: String,
        ctx: &mut Ctx<'_>,
    ) -> Result<NodeId, String> {
        let reg = super::registry::local_entry(ctx.objects, name)
            .ok_or_else(|| format!("no function {name:?} in this node's registry"))??;
        if reg.entry.deleted {
            return Err(format!("function {name:?} was removed"));
        }
        if reg.entry.manifest.kind != Kind::Actor {
            return Err(format!(
                "{name:?} is stateless: it runs wherever it is invoked within its placement; pin it to move it"
            ));
        }
        let target = ctx.membership.info_of(&to).ok_or_else(|| format!("node {} is not a member", to.short()))?;
        if !super::allows(&reg.entry.manifest, target) {
            return Err(format!(
                "node {} does not match the placement of {name:?} ({})",
                to.short(),
                super::invocations::describe(&reg.entry.manifest)
            ));
        }
        if self.actors.active.get(name).is_some_and(|a| !matches!(a.phase, Phase::Gone { .. })) {
            self.migrate(now, name, to, reason, None, ctx)?;
            return Ok(self.me);
        }
        let home = reg.placement.map(|p| p.home).ok_or_else(|| format!("{name:?} has no recorded home yet"))?;
        if home == self.me {
            return Err(format!("{name:?} has not been activated yet: invoke it once first"));
        }
        ctx.out.push(Output::send(home, Message::MigrateAsk { name: name.to_string(), to, reason }));
        Ok(home)
    }

    /// Advances a migration out of this node when its step is done.
    fn step(&mut self, now: Time, name: &str, ctx: &mut Ctx<'_>) {
        let Some(act) = self.actors.active.get_mut(name) else { return };
        if let Phase::Draining { to } = act.phase
            && act.running.is_empty()
        {
            act.phase = Phase::Sending { to };
            act.step_deadline = now + STEP_MAX;
            // Durable before the snapshot leaves: restarted, this node must not serve at
            // this epoch again (the target may serve the same state at the next).
            let epoch = act.holder.epoch;
            let written =
                state_sync::Path::parse(&format!("handoffs.{}", self.me)).map_err(|e| e.to_string()).and_then(|path| {
                    let op = state_sync::ops::Op::Set { path, value: epoch.into(), text: false };
                    // The answer comes after this returns: `mark_written`.
                    let then = Awaiting::HandOff { name: name.to_string(), epoch };
                    self.write_registry(now, name, op, Some(then), ctx)
                });
            if let Err(e) = written {
                self.roll_back(now, name, format!("hand-off marker: {e}"), ctx);
            }
        }
    }

    /// The hand-off marker of a migration out of this node is durable (or failed): send the
    /// snapshot (or roll back).
    ///
    /// The lease is released here, before the snapshot leaves, not after the target has it:
    /// from `Sending` on this node admits nothing and never serves at this epoch again (a
    /// roll-back serves at `e + 2` under a new holder), and only the target asks for
    /// `e + 1`. Released later, the target's first lease round met this node's grant still
    /// held at its granters and waited a retry (100 ms) — most of a move's fixed cost.
    pub(super) fn mark_written(&mut self, now: Time, name: String, epoch: u64, ok: bool, ctx: &mut Ctx<'_>) {
        let Some(act) = self.actors.active.get_mut(&name) else { return };
        let Phase::Sending { to } = act.phase else { return };
        if act.holder.epoch != epoch {
            return;
        }
        if !ok {
            return self.roll_back(now, &name, "disk: the hand-off could not be recorded".into(), ctx);
        }
        for g in act.holder.granters().to_vec() {
            if g == self.me {
                self.actors.granter.release(&name, self.me, epoch);
            } else {
                ctx.out.push(Output::send(g, Message::LeaseRelease { name: name.clone(), epoch }));
            }
        }
        act.holder.release();
        let handoff = Handoff { name: name.clone(), hash: act.hash, epoch: epoch + 1, to };
        ctx.out.push(Output::Handoff(Box::new(handoff)));
    }

    /// A migration out of this node failed: serve again. After a snapshot may have left,
    /// serve at a new epoch (`e + 2`) so the target's `e + 1` is fenced.
    fn roll_back(&mut self, now: Time, name: &str, why: String, ctx: &mut Ctx<'_>) {
        let Some(act) = self.actors.active.get_mut(name) else { return };
        let (to, sent) = match act.phase {
            Phase::Preparing { to } | Phase::Draining { to } => (to, false),
            Phase::Sending { to } => (to, true),
            _ => return,
        };
        let epoch = act.holder.epoch;
        if sent {
            let granters = act.holder.granters().to_vec();
            act.holder = Holder::new(epoch + 2, epoch, granters);
            act.announced = false;
        }
        act.phase = Phase::Serving;
        act.step_deadline = Time(u64::MAX);
        act.reason = format!("stayed: a move to {} was rolled back ({why})", to.short());
        let key = why.split(':').next().unwrap_or("failed").to_string();
        *self.actors.migrations.rolled_back.entry(key).or_default() += 1;
        event(ctx.out, name, "rolled_back", Some(to), epoch + 1, why);
        self.lease_rounds(now, ctx);
        self.release_held(now, name, ctx);
    }

    /// `peer` went down: migrations from here to it that have not sent their snapshot roll
    /// back at once (one that is sending learns the outcome from its driver).
    pub(super) fn target_down(&mut self, now: Time, peer: NodeId, ctx: &mut Ctx<'_>) {
        let stuck: Vec<String> = self
            .actors
            .active
            .iter()
            .filter(|(_, a)| matches!(a.phase, Phase::Preparing { to } | Phase::Draining { to } if to == peer))
            .map(|(n, _)| n.clone())
            .collect();
        for name in stuck {
            self.roll_back(now, &name, format!("target down: {} left the mesh", peer.short()), ctx);
        }
    }

    /// This activation learned it is fenced: it stops at once and its calls follow the
    /// registry.
    pub(super) fn fence(&mut self, now: Time, name: &str, why: String, ctx: &mut Ctx<'_>) {
        let Some(act) = self.actors.active.remove(name) else { return };
        let deployed =
            super::registry::local_entry(ctx.objects, name).and_then(Result::ok).map_or(0, |r| r.entry.deployed_at_ms);
        let floor = self.actors.fenced.entry(name.to_string()).or_insert((deployed, 0));
        if floor.0 != deployed {
            *floor = (deployed, 0);
        }
        floor.1 = floor.1.max(act.holder.epoch);
        self.actors.migrations.fenced += 1;
        event(ctx.out, name, "fenced", None, act.holder.epoch, why.clone());
        ctx.out.push(Output::Deactivate { name: name.to_string(), epoch: act.holder.epoch });
        for (key, _) in act.held {
            self.actors.held_entries.remove(&key);
            // Resolve afresh: the registry (or a redirect) leads to the current home.
            if let Some(p) = self.calls.pending.remove(&key) {
                self.start(now, p.origin, p.name, p.input, p.depth, p.hops, ctx);
            }
        }
    }

    /// Starts due lease rounds of every activation here.
    pub(super) fn lease_rounds(&mut self, now: Time, ctx: &mut Ctx<'_>) {
        let cfg = self.actors.lease_cfg;
        let mut mine = Vec::new();
        for (name, act) in &mut self.actors.active {
            if matches!(act.phase, Phase::Gone { .. }) {
                continue;
            }
            if let Some(granters) = act.holder.poll(now, &cfg) {
                let msg = Message::LeaseAsk {
                    name: name.clone(),
                    epoch: act.holder.epoch,
                    base: act.holder.base,
                    sent: now.0,
                    // Only an election carries the copy's position: once it holds the lease,
                    // its own calls put other members' copies past it.
                    pos: act.takeover_from.filter(|_| !act.announced),
                };
                for g in granters {
                    if g == self.me {
                        mine.push(msg.clone());
                    } else {
                        ctx.out.push(Output::send(g, msg.clone()));
                    }
                }
                if act.holder.ask_self_now() {
                    mine.push(msg);
                }
            }
        }
        let me = self.me;
        for msg in mine {
            self.handle_lease_message(now, me, msg, ctx);
        }
    }

    /// Lease and migration messages.
    pub(super) fn handle_lease_message(&mut self, now: Time, from: NodeId, msg: Message, ctx: &mut Ctx<'_>) {
        match msg {
            Message::LeaseAsk { name, epoch, base, sent, pos } => {
                if let Ok(object) = registry_object(&name)
                    && let Some(doc) = ctx.objects.doc(&object)
                {
                    self.actors.granter.restore(&name, promise_of(doc, &self.me));
                }
                let behind = match (pos, self.actors.replicas.get(&name)) {
                    (Some(theirs), Some(mine)) if theirs < *mine => Some(*mine),
                    _ => None,
                };
                match self.actors.granter.ask(now, &name, from, epoch, base, behind) {
                    Verdict::Grant => self.reply_lease(now, from, Message::LeaseGrant { name, epoch, sent }, ctx),
                    Verdict::GrantAfterPersist(p) => {
                        // Granted once the promise is durable (`handle_object_reply`).
                        let then =
                            Awaiting::Grant { to: from, msg: Message::LeaseGrant { name: name.clone(), epoch, sent } };
                        let _ =
                            promise_op(&self.me, p).and_then(|op| self.write_registry(now, &name, op, Some(then), ctx));
                    }
                    Verdict::Deny(denial) => {
                        self.reply_lease(now, from, Message::LeaseDeny { name, epoch, sent, denial }, ctx)
                    }
                }
            }
            Message::LeaseGrant { name, epoch, sent } => {
                let cfg = self.actors.lease_cfg;
                let Some(act) = self.actors.active.get_mut(&name) else { return };
                if act.holder.epoch != epoch {
                    return;
                }
                let extended = act.holder.granted(from, Time(sent), &cfg);
                if act.holder.ask_self_now() {
                    let me = self.me;
                    let (epoch, base, pos) = (act.holder.epoch, act.holder.base, act.takeover_from);
                    self.handle_lease_message(
                        now,
                        me,
                        Message::LeaseAsk { name: name.clone(), epoch, base, sent, pos },
                        ctx,
                    );
                }
                let Some(act) = self.actors.active.get_mut(&name) else { return };
                if extended {
                    if !act.announced {
                        act.announced = true;
                        self.announce(now, &name, ctx);
                    }
                    self.release_held(now, &name, ctx);
                }
            }
            Message::LeaseDeny { name, epoch, denial, .. } => {
                if self.rival_holds(now, &name, epoch, &denial, ctx) {
                    return;
                }
                let Some(act) = self.actors.active.get_mut(&name) else { return };
                if act.holder.epoch == epoch && act.holder.denied_at(now, RETRY, &denial, self.me) {
                    let why = match denial {
                        Denial::Fenced { promise } => format!("a granter promised epoch {}", promise.promised),
                        other => format!("{other:?}"),
                    };
                    self.fence(now, &name, why, ctx);
                }
            }
            Message::LeaseRelease { name, epoch } => self.actors.granter.release(&name, from, epoch),
            Message::Prepare { name, epoch, base, hash, granters, joint, reason, figures } => {
                let figures = figures.and_then(|f| serde_json::from_str(&f).ok());
                self.prepare(now, from, name, epoch, base, hash, (granters, joint), (reason, figures), ctx);
            }
            Message::Prepared { name, epoch, result } => {
                let Some(act) = self.actors.active.get_mut(&name) else { return };
                let Phase::Preparing { to } = act.phase else { return };
                if to != from || act.holder.epoch + 1 != epoch {
                    return;
                }
                match result {
                    Ok(()) => {
                        act.phase = Phase::Draining { to };
                        act.step_deadline = now + STEP_MAX;
                        self.step(now, &name, ctx);
                    }
                    Err(why) => self.roll_back(now, &name, format!("target refused: {why}"), ctx),
                }
            }
            Message::MigrateAsk { name, to, reason } => {
                if let Err(why) = self.migrate(now, &name, to, reason, None, ctx) {
                    ctx.out.push(Output::send(from, Message::MigrateRefused { name, reason: why }));
                }
            }
            Message::MigrateRefused { name, reason } => {
                event(ctx.out, &name, "refused", Some(from), 0, reason);
            }
            _ => {}
        }
    }

    pub(super) fn reply_lease(&mut self, now: Time, to: NodeId, msg: Message, ctx: &mut Ctx<'_>) {
        if to == self.me {
            let me = self.me;
            self.handle_lease_message(now, me, msg, ctx);
        } else {
            ctx.out.push(Output::send(to, msg));
        }
    }

    /// Writes this activation into the registry's placement record.
    fn announce(&mut self, now: Time, name: &str, ctx: &mut Ctx<'_>) {
        let Some(act) = self.actors.active.get(name) else { return };
        let Ok(object) = registry_object(name) else { return };
        let previous =
            ctx.objects.doc(&object).and_then(|d| d.value().get("placement").and_then(PlacementRecord::from_value));
        let pl = PlacementRecord {
            home: self.me,
            epoch: act.holder.epoch,
            base: act.holder.base,
            serving: Vec::new(),
            auto: previous.as_ref().is_none_or(|p| p.auto),
            granters: act.holder.granters().to_vec(),
            reason: act.reason.clone(),
            figures: act.figures.clone(),
        };
        let moved = act.holder.base != 0;
        let (epoch, reason) = (act.holder.epoch, act.reason.clone());
        let Ok(op) = pl.op() else { return };
        if self.write_registry(now, name, op, None, ctx).is_err() {
            return;
        }
        if moved {
            event(ctx.out, name, "activated", None, epoch, reason);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn prepare(
        &mut self,
        now: Time,
        from: NodeId,
        name: String,
        epoch: u64,
        base: u64,
        hash: ModuleHash,
        (granters, joint): (Vec<NodeId>, Vec<NodeId>),
        (reason, figures): (String, Option<serde_json::Value>),
        ctx: &mut Ctx<'_>,
    ) {
        let entry = super::registry::local_entry(ctx.objects, &name);
        let reg = match entry {
            Some(Ok(r)) if r.entry.hash == hash && !r.entry.deleted => r,
            _ => {
                let msg = Message::Prepared {
                    name,
                    epoch,
                    result: Err("this node's registry does not have that module".into()),
                };
                return ctx.out.push(Output::send(from, msg));
            }
        };
        if !super::allows(&reg.entry.manifest, ctx.membership.me()) {
            let msg = Message::Prepared {
                name,
                epoch,
                result: Err("the manifest's placement does not allow this node".into()),
            };
            return ctx.out.push(Output::send(from, msg));
        }
        let sources = self.sources(&reg, ctx);
        self.actors.incoming.insert(
            name.clone(),
            Incoming { from, epoch, base, hash, granters, joint, deadline: now + STEP_MAX * 3, reason, figures },
        );
        ctx.out.push(Output::Prefetch(Box::new(Prefetch {
            name,
            hash,
            size: reg.entry.size,
            manifest: reg.entry.manifest,
            sources,
        })));
    }

    /// The driver fetched and compiled a module for a migration target.
    pub fn handle_prefetched(&mut self, _now: Time, name: &str, result: Result<(), String>, ctx: &mut Ctx<'_>) {
        if self.warmed(name, &result, ctx) {
            return;
        }
        let Some(inc) = self.actors.incoming.get(name) else { return };
        let msg = Message::Prepared { name: name.to_string(), epoch: inc.epoch, result: result.clone() };
        ctx.out.push(Output::send(inc.from, msg));
        if result.is_err() {
            self.actors.incoming.remove(name);
        }
    }

    /// The driver finished streaming a snapshot.
    pub fn handle_handoff_sent(
        &mut self,
        now: Time,
        name: &str,
        epoch: u64,
        result: Result<u64, String>,
        ctx: &mut Ctx<'_>,
    ) {
        let Some(act) = self.actors.active.get_mut(name) else { return };
        let Phase::Sending { to } = act.phase else { return };
        if act.holder.epoch + 1 != epoch {
            return;
        }
        match result {
            Ok(bytes) => {
                // Never serve at this epoch again (the lease went when the marker was
                // durable, `mark_written`): send everything to the target.
                let old = act.holder.epoch;
                act.phase = Phase::Gone { to };
                act.step_deadline = Time(u64::MAX);
                let why = format!("{} ({} bytes of state)", act.migration_reason, bytes);
                self.actors.migrations.finished += 1;
                event(ctx.out, name, "finished", Some(to), epoch, why);
                ctx.out.push(Output::Deactivate { name: name.to_string(), epoch: old });
                self.release_held(now, name, ctx);
            }
            Err(why) => self.roll_back(now, name, format!("snapshot: {why}"), ctx),
        }
    }

    /// A snapshot for a migration into this node arrived (stored by the driver as the
    /// checkpoint of `epoch`).
    pub fn handle_snapshot_received(&mut self, now: Time, from: NodeId, name: &str, epoch: u64, ctx: &mut Ctx<'_>) {
        let Some(inc) = self.actors.incoming.remove(name) else { return };
        if inc.from != from || inc.epoch != epoch {
            self.actors.incoming.insert(name.to_string(), inc);
            return;
        }
        self.actors.migrations.received += 1;
        let reason = inc.reason.clone();
        let figures = inc.figures.clone();
        // An activation left here at an older or equal epoch (one that never won its lease)
        // ends: its waiting calls resolve afresh once the new one is in place.
        let replaced = self.actors.active.remove(name);
        if let Some(old) = &replaced {
            ctx.out.push(Output::Deactivate { name: name.to_string(), epoch: old.holder.epoch });
        }
        self.actors.active.insert(
            name.to_string(),
            Activation {
                hash: inc.hash,
                holder: Holder::new(inc.epoch, inc.base, inc.granters).joint_with(inc.joint),
                phase: Phase::Serving,
                held: Vec::new(),
                running: BTreeSet::new(),
                announced: false,
                takeover_from: None,
                reason,
                figures,
                step_deadline: Time(u64::MAX),
                migration_reason: String::new(),
                since: now,
                state_bytes: 0,
            },
        );
        self.lease_rounds(now, ctx);
        for (key, _) in replaced.map(|a| a.held).unwrap_or_default() {
            self.actors.held_entries.remove(&key);
            if let Some(p) = self.calls.pending.remove(&key) {
                self.start(now, p.origin, p.name, p.input, p.depth, p.hops, ctx);
            }
        }
        for key in self.actors.waiting_for_snapshot.remove(name).unwrap_or_default() {
            if let Some(p) = self.calls.pending.remove(&key) {
                self.start(now, p.origin, p.name, p.input, p.depth, p.hops, ctx);
            }
        }
    }

    /// Deadlines: held calls, migration steps, incoming migrations; lease rounds.
    pub(super) fn actor_timeouts(&mut self, now: Time, ctx: &mut Ctx<'_>) {
        self.actors.granter.expire(now);
        self.reread_parked(now, ctx);
        // Held calls past their deadline fail.
        let mut late = Vec::new();
        for act in self.actors.active.values_mut() {
            act.held.retain(|(k, d)| {
                if *d <= now {
                    late.push(*k);
                    false
                } else {
                    true
                }
            });
        }
        for key in late {
            self.actors.held_entries.remove(&key);
            let err =
                InvokeError::Unavailable("the actor's activation could not serve in time (no lease, or moving)".into());
            self.finish(key, Err(err), ctx.out);
        }
        let stuck: Vec<String> =
            self.actors.active.iter().filter(|(_, a)| a.step_deadline <= now).map(|(n, _)| n.clone()).collect();
        for name in stuck {
            self.roll_back(now, &name, "timeout: a migration step took too long".into(), ctx);
        }
        let expired: Vec<String> =
            self.actors.incoming.iter().filter(|(_, i)| i.deadline <= now).map(|(n, _)| n.clone()).collect();
        for name in expired {
            self.actors.incoming.remove(&name);
            // The hand-over did not complete (rolled back, or the source died): the calls
            // resolve afresh, and reach the source again if it serves.
            for key in self.actors.waiting_for_snapshot.remove(&name).unwrap_or_default() {
                if let Some(p) = self.calls.pending.remove(&key) {
                    self.start(now, p.origin, p.name, p.input, p.depth, p.hops, ctx);
                }
            }
        }
        // Handed-over activations are forgotten after a while (stragglers are redirected
        // by the registry by then).
        self.actors
            .active
            .retain(|_, a| !matches!(a.phase, Phase::Gone { .. }) || now.since(a.since) < Duration::from_secs(600));
        self.failovers(now, ctx);
        self.lease_rounds(now, ctx);
    }

    /// The next actor deadline.
    pub(super) fn actor_poll_timeout(&self) -> Time {
        let mut t = Time(u64::MAX);
        for a in self.actors.active.values() {
            if !matches!(a.phase, Phase::Gone { .. }) {
                t = t.min(a.holder.next_round(&self.actors.lease_cfg));
            }
            t = t.min(a.step_deadline);
            for (_, d) in &a.held {
                t = t.min(*d);
            }
        }
        for i in self.actors.incoming.values() {
            t = t.min(i.deadline);
        }
        if !self.actors.replicas.is_empty() {
            t = t.min(self.actors.failover_check);
        }
        t
    }

    /// What `fn where` shows of actor `name`'s activation here.
    pub fn activation(&self, now: Time, name: &str) -> Option<ActivationView> {
        let a = self.actors.active.get(name)?;
        Some(ActivationView {
            epoch: a.holder.epoch,
            phase: a.phase.clone(),
            leased: a.holder.valid_for(now, Duration::ZERO),
            lease_left_ms: a.holder.valid_until().since(now).as_millis() as u64,
            held: a.held.len(),
            running: a.running.len(),
        })
    }

    /// Migration counters.
    pub fn migration_stats(&self) -> &MigrationStats {
        &self.actors.migrations
    }
}

/// How much lease a call needs left to be admitted: its wall-time limit, capped at one
/// renewal period.
///
/// The lease keeps two activations from *accepting* work at once. A call that outlives the
/// lease cannot meet another activation of the same state: a new epoch starts only from this
/// activation's snapshot, which is taken after its running calls have ended, or (a redeploy)
/// from fresh state on purpose. Requiring the whole wall-time limit instead would hold calls
/// whenever the limit is close to the lease's span (the default 5 s against 6 s), most of each
/// renewal period.
pub fn admission_margin(wall: Duration, cfg: &lease::LeaseConfig) -> Duration {
    wall.min(cfg.renew_every)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use wasm_host::{InvokeError, Kind, Manifest};

    use super::super::{Registered, registry_object};
    use crate::testing::{Cluster as H, id};

    pub(crate) fn deploy_actor(h: &mut H, k: usize, name: &str) {
        let mut manifest = Manifest::for_module(name);
        manifest.kind = Kind::Actor;
        h.deploy(k, manifest);
    }

    /// Invokes `name` at node `k` and runs (executing actors as the agent would) until it is
    /// answered.
    pub(crate) fn call(h: &mut H, k: usize, name: &str) -> Result<Vec<u8>, InvokeError> {
        let inv = h.invoke(k, name, b"");
        for _ in 0..400 {
            h.run_actors();
            if let Some(r) = h.invoked.remove(&(k, inv)) {
                return r;
            }
            h.run_for(Duration::from_millis(50));
        }
        panic!("call {inv} at node {k} was never answered");
    }

    fn placement(h: &H, k: usize, name: &str) -> Option<super::PlacementRecord> {
        let o = registry_object(name).ok()?;
        let doc = h.nodes[k].as_ref()?.objects().doc(&o)?;
        Registered::from_value(&doc.value()).ok()?.placement
    }

    fn settle(h: &mut H, d: Duration) {
        let end = h.now + d;
        while h.now < end {
            h.run_actors();
            h.run_for(Duration::from_millis(50));
        }
    }

    #[test]
    fn an_actor_serves_under_a_lease_and_moves_with_its_state() {
        let mut h = H::new(3);
        deploy_actor(&mut h, 0, "a");
        let p = placement(&h, 2, "a").unwrap_or_else(|| panic!("no placement"));
        assert_eq!((p.home, p.epoch, p.granters.len()), (id(0), 1, 3));
        for n in 1..=3 {
            assert_eq!(call(&mut h, 2, "a"), Ok(n.to_string().into_bytes()));
        }
        let now = h.now;
        let home = h.nodes[2].as_mut().map(|n| n.handle_migrate(now, "a", id(1), "by hand".into()));
        assert_eq!(home, Some(Ok(id(0))), "the request goes to the home");
        h.drain(2);
        settle(&mut h, Duration::from_secs(2));
        assert!(h.deactivated.iter().any(|(k, n, e)| (*k, n.as_str(), *e) == (0, "a", 1)), "{:?}", h.deactivated);
        assert_eq!(call(&mut h, 2, "a"), Ok(b"4".to_vec()), "the state moved with it");
        assert_eq!(call(&mut h, 0, "a"), Ok(b"5".to_vec()), "the old home passes calls on");
        let p = placement(&h, 2, "a").unwrap_or_else(|| panic!("no placement"));
        assert_eq!((p.home, p.epoch, p.base), (id(1), 2, 1));
        assert!(p.reason.contains("by hand"), "{}", p.reason);
        let stats = h.nodes[0].as_ref().map(|n| n.functions().migration_stats().finished);
        assert_eq!(stats, Some(1));
    }

    #[test]
    fn a_refused_prepare_rolls_back_and_the_source_keeps_serving() {
        let mut h = H::new(3);
        deploy_actor(&mut h, 0, "a");
        assert_eq!(call(&mut h, 1, "a"), Ok(b"1".to_vec()));
        h.prefetch_fails.insert(2);
        let now = h.now;
        let started = h.nodes[0].as_mut().map(|n| n.handle_migrate(now, "a", id(2), "test".into()));
        assert_eq!(started, Some(Ok(id(0))));
        h.drain(0);
        settle(&mut h, Duration::from_secs(1));
        assert_eq!(call(&mut h, 1, "a"), Ok(b"2".to_vec()));
        let p = placement(&h, 1, "a").unwrap_or_else(|| panic!("no placement"));
        assert_eq!((p.home, p.epoch), (id(0), 1));
        let rolled = h.nodes[0].as_ref().map(|n| n.functions().migration_stats().rolled_back.values().sum::<u64>());
        assert_eq!(rolled, Some(1));
    }

    #[test]
    fn a_lost_snapshot_rolls_back_at_a_new_epoch_that_fences_the_target() {
        let mut h = H::new(3);
        deploy_actor(&mut h, 0, "a");
        assert_eq!(call(&mut h, 2, "a"), Ok(b"1".to_vec()));
        let now = h.now;
        assert!(h.nodes[0].as_mut().is_some_and(|n| n.handle_migrate(now, "a", id(1), "test".into()).is_ok()));
        h.drain(0);
        // Prepare succeeds, then the link to the target breaks before the snapshot arrives.
        h.run_for(Duration::from_millis(35));
        h.partition(&[0], &[1]);
        settle(&mut h, Duration::from_secs(1));
        assert_eq!(call(&mut h, 2, "a"), Ok(b"2".to_vec()), "the source serves again");
        let p = placement(&h, 0, "a").unwrap_or_else(|| panic!("no placement"));
        assert_eq!((p.home, p.epoch), (id(0), 3), "at epoch e + 2");
        h.cut.clear();
        settle(&mut h, Duration::from_secs(10));
        assert_eq!(call(&mut h, 1, "a"), Ok(b"3".to_vec()));
    }

    /// Calls `name` at `k` until one succeeds; its answer and when it came.
    fn call_until_ok(h: &mut H, k: usize, name: &str, within: Duration) -> (Vec<u8>, crate::Time) {
        let end = h.now + within;
        while h.now < end {
            if let Ok(v) = call(h, k, name) {
                return (v, h.now);
            }
        }
        panic!("no call of {name} at node {k} succeeded within {within:?}");
    }

    #[test]
    fn a_dead_homes_actor_fails_over_to_a_standby_with_its_state() {
        let mut h = H::new(4);
        deploy_actor(&mut h, 0, "a");
        let p = placement(&h, 0, "a").unwrap_or_else(|| panic!("no placement"));
        let home = crate::testing::index(&p.home);
        let caller = (0..4).find(|k| *k != home).unwrap_or(0);
        for n in 1..=3 {
            assert_eq!(call(&mut h, caller, "a"), Ok(n.to_string().into_bytes()));
        }
        let killed = h.now;
        h.crash(home);
        let (answer, at) = call_until_ok(&mut h, caller, "a", Duration::from_secs(60));
        assert_eq!(answer, b"4".to_vec(), "the standby's copy held every answered call");
        let lease = crate::functions::actors::lease::LeaseConfig::default();
        // Detection and the old grants' expiry overlap; the bound is the issue's.
        assert!(at.since(killed) <= lease.duration + Duration::from_secs(5), "took {:?}", at.since(killed));
        let q = placement(&h, caller, "a").unwrap_or_else(|| panic!("no placement"));
        assert!(q.home != p.home && p.granters.contains(&q.home), "{q:?}");
        assert!(q.epoch > p.epoch && q.base == p.epoch, "{q:?}");
        assert!(q.reason.contains("failover"), "{}", q.reason);
        let took = h.nodes[crate::testing::index(&q.home)].as_ref().map(|n| n.functions().migration_stats().failovers);
        assert_eq!(took, Some(1));
        // The old home comes back: it serves nothing at its old epoch, and calls through it
        // reach the new home.
        h.restart(home);
        settle(&mut h, Duration::from_secs(3));
        assert_eq!(call(&mut h, caller, "a"), Ok(b"5".to_vec()));
        assert_eq!(call_until_ok(&mut h, home, "a", Duration::from_secs(30)).0, b"6".to_vec());
        let served_old = h.actor_log.iter().any(|x| x.node == home && x.at > killed);
        assert!(!served_old, "the old home ran a call after it came back: {:?}", h.actor_log);
    }

    #[test]
    fn the_old_home_rejoins_as_a_standby() {
        let mut h = H::new(3);
        deploy_actor(&mut h, 0, "a");
        let p = placement(&h, 0, "a").unwrap_or_else(|| panic!("no placement"));
        let home = crate::testing::index(&p.home);
        assert_eq!(p.granters.len(), 3, "every node is in the group");
        let caller = (home + 1) % 3;
        assert_eq!(call(&mut h, caller, "a"), Ok(b"1".to_vec()));
        h.crash(home);
        assert_eq!(call_until_ok(&mut h, caller, "a", Duration::from_secs(60)).0, b"2".to_vec());
        h.restart(home);
        settle(&mut h, Duration::from_secs(3));
        assert_eq!(call(&mut h, caller, "a"), Ok(b"3".to_vec()));
        let q = placement(&h, caller, "a").unwrap_or_else(|| panic!("no placement"));
        let copy = h.actor_disks.get(&(home, "a".to_string())).and_then(|d| d.checkpoints.get(&q.epoch).copied());
        assert_eq!(copy, Some(3), "the old home holds the new home's checkpoint");
    }

    #[test]
    fn a_standby_cut_off_from_the_home_alone_takes_nothing_over() {
        let mut h = H::new(3);
        deploy_actor(&mut h, 0, "a");
        let p = placement(&h, 0, "a").unwrap_or_else(|| panic!("no placement"));
        let home = crate::testing::index(&p.home);
        let (s1, s2) = ((home + 1) % 3, (home + 2) % 3);
        assert_eq!(call(&mut h, s2, "a"), Ok(b"1".to_vec()));
        // The home still reaches one standby, which keeps it alive in the other's view too
        // (indirect probes), and keeps renewing its lease through it.
        h.partition(&[home], &[s1]);
        for n in 2..=20 {
            assert_eq!(call(&mut h, s2, "a"), Ok(n.to_string().into_bytes()));
            settle(&mut h, Duration::from_millis(500));
        }
        let q = placement(&h, s2, "a").unwrap_or_else(|| panic!("no placement"));
        assert_eq!((q.home, q.epoch), (p.home, p.epoch), "no takeover");
        assert!(h.actor_log.iter().all(|x| x.node == home), "only the home ran calls");
    }

    #[test]
    fn the_group_moves_with_the_actor_and_its_site_serves_it_when_cut_off() {
        use crate::info::Tier;
        let site = |k: usize| if k < 3 { "a" } else { "b" };
        let layout: Vec<(Tier, Option<&str>)> = (0..6).map(|k| (Tier::Edge, Some(site(k)))).collect();
        let mut h = H::with_layout(&layout, Default::default());
        deploy_actor(&mut h, 0, "a");
        let p = placement(&h, 0, "a").unwrap_or_else(|| panic!("no placement"));
        let home = crate::testing::index(&p.home);
        let in_site = |g: &[crate::NodeId], s: &str| g.iter().filter(|n| site(crate::testing::index(n)) == s).count();
        assert_eq!(in_site(&p.granters, site(home)), 2, "a majority in the home's site: {p:?}");
        assert_eq!(call(&mut h, home, "a"), Ok(b"1".to_vec()));
        // Move it to the other site: the group follows (joint leases on the way).
        let to = if home < 3 { 4 } else { 1 };
        let now = h.now;
        assert!(h.nodes[home].as_mut().is_some_and(|n| n.handle_migrate(now, "a", id(to), "test".into()).is_ok()));
        h.drain(home);
        settle(&mut h, Duration::from_secs(3));
        assert_eq!(call(&mut h, to, "a"), Ok(b"2".to_vec()));
        let q = placement(&h, to, "a").unwrap_or_else(|| panic!("no placement"));
        assert_eq!(q.home, id(to));
        assert_eq!(in_site(&q.granters, site(to)), 2, "the group moved along: {q:?}");
        // Cut the two sites apart: the actor's site keeps serving it.
        let (a, b): (Vec<usize>, Vec<usize>) = (0..6).partition(|k| *k < 3);
        h.partition(&a, &b);
        for n in 3..=12 {
            assert_eq!(call(&mut h, to, "a"), Ok(n.to_string().into_bytes()), "served inside the cut-off site");
            settle(&mut h, Duration::from_millis(500));
        }
    }

    #[test]
    fn a_restarted_home_serves_again_from_its_checkpoint() {
        let mut h = H::new(3);
        deploy_actor(&mut h, 1, "a");
        assert_eq!(call(&mut h, 2, "a"), Ok(b"1".to_vec()));
        assert_eq!(call(&mut h, 2, "a"), Ok(b"2".to_vec()));
        h.crash(1);
        h.start(1);
        h.connect(1, 0);
        h.connect(1, 2);
        settle(&mut h, Duration::from_secs(3));
        assert_eq!(call(&mut h, 2, "a"), Ok(b"3".to_vec()));
    }
}
