//! The registry: every read and write of a function's registry document — the entry
//! (`current`), the nodes holding its module (`holders`), its placement record
//! ([`record`]), lease promises, hand-off markers and added replicas — and the writes and
//! reads waiting for the object layer's answer.
//!
//! A registry document is an ordinary object in the reserved namespace [`REGISTRY_NS`],
//! replicated to every node: the node writes it as its own local writes
//! ([`crate::objects::Objects::handle_internal_request`]) and reads its local copy.

pub mod record;

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use state_sync::ObjectName;
use state_sync::ops::Op;
use wasm_host::{Kind, Manifest, ModuleHash};

pub use record::PlacementRecord;

use super::invocations::{allows, choose, describe, eligible};
use super::{Ctx, Functions, Message};
use crate::membership::Membership;
use crate::objects::{Change, Durability, Objects, Request};
use crate::{NodeId, Time};

/// The reserved object namespace of the function registry: `liquid-fn/<name>`.
pub const REGISTRY_NS: &str = "liquid-fn";

/// Namespaces starting with this are the system's own: the API and functions may read them but
/// never write them.
pub const RESERVED_PREFIX: &str = "liquid-";

/// A registered function, as stored at `liquid-fn/<name>` under `current`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The module's hash.
    pub hash: ModuleHash,
    /// The module's size, bytes.
    pub size: u64,
    /// The manifest.
    pub manifest: Manifest,
    /// The node it was deployed on (a peer id).
    pub deployed_by: String,
    /// When, Unix ms (for humans).
    pub deployed_at_ms: u64,
    /// Set by `fn rm`: the name is free and calls get "not found".
    #[serde(default)]
    pub deleted: bool,
    /// The publisher's signature of the module and manifest, if it was signed (verified by
    /// the agents, which may require one: the core only carries it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<PackageSignature>,
}

/// A publisher's Ed25519 signature of a package (module hash and manifest), both in hex.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageSignature {
    /// The publisher's public key (32 bytes).
    pub publisher: String,
    /// The signature (64 bytes).
    pub signature: String,
}

/// A registry document: the current entry and the nodes known to hold the module's bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct Registered {
    /// The entry.
    pub entry: Entry,
    /// Nodes that hold the module (the deployer, and every node that fetched it).
    pub holders: Vec<NodeId>,
    /// Where it runs, if recorded.
    pub placement: Option<PlacementRecord>,
    /// Per node, the highest epoch of the actor it handed over (made durable before its
    /// snapshot left): it never serves at that epoch again.
    pub handoffs: BTreeMap<NodeId, u64>,
    /// Replicas placement added next to the function (`replicas`; see
    /// [`record::replicas_op`]): each object is also replicated at its node.
    pub added_replicas: Vec<(ObjectName, NodeId)>,
}

impl Registered {
    /// Reads a registry document's JSON value.
    pub fn from_value(value: &Json) -> Result<Registered, String> {
        let entry: Entry = serde_json::from_value(value.get("current").cloned().unwrap_or(Json::Null))
            .map_err(|e| format!("damaged registry entry: {e}"))?;
        let holders = value
            .get("holders")
            .and_then(Json::as_object)
            .map(|m| {
                m.iter().filter(|(_, v)| v.as_bool() == Some(true)).filter_map(|(k, _)| NodeId::parse(k)).collect()
            })
            .unwrap_or_default();
        let placement = value.get("placement").and_then(PlacementRecord::from_value);
        let handoffs = value
            .get("handoffs")
            .and_then(Json::as_object)
            .map(|m| m.iter().filter_map(|(k, v)| Some((NodeId::parse(k)?, v.as_u64()?))).collect())
            .unwrap_or_default();
        let added_replicas = record::added_replicas(value);
        Ok(Registered { entry, holders, placement, handoffs, added_replicas })
    }
}

/// Function `name`'s registry entry as this node holds it (`None`: not here; `Err`: damaged).
pub fn local_entry(objects: &Objects, name: &str) -> Option<Result<Registered, String>> {
    let object = registry_object(name).ok()?;
    objects.doc(&object).map(|d| Registered::from_value(&d.value()))
}

/// The registry object of function `name`.
pub fn registry_object(name: &str) -> Result<ObjectName, String> {
    wasm_host::manifest::validate_name(name).map_err(|e| e.to_string())?;
    ObjectName::parse(&format!("{REGISTRY_NS}/{name}")).map_err(|e| e.to_string())
}

/// The operations that register `entry` (deploy), record this node as a holder, and set the
/// function's placement (see [`initial_placement`]).
pub fn deploy_ops(entry: &Entry, me: &NodeId, placement: &PlacementRecord) -> Result<Vec<Op>, String> {
    let value = serde_json::to_value(entry).map_err(|e| e.to_string())?;
    let parse = |p: &str| state_sync::Path::parse(p).map_err(|e| e.to_string());
    Ok(vec![
        Op::Set { path: parse("current")?, value, text: false },
        Op::Set { path: parse(&format!("holders.{me}"))?, value: Json::Bool(true), text: false },
        placement.op()?,
    ])
}

/// Where a function deployed from this node starts: its previous home if it had one and the
/// manifest still allows it, else this node if allowed, else the eligible node chosen by
/// rendezvous hashing. A (re)deployed actor starts a new epoch from fresh state; its lease
/// granters are kept, or chosen among the alive nodes by rendezvous hashing.
pub fn initial_placement(
    manifest: &Manifest,
    objects: &Objects,
    membership: &Membership,
    now: Time,
    reason: &str,
) -> Result<PlacementRecord, String> {
    let previous = registry_object(&manifest.name)
        .ok()
        .and_then(|o| objects.doc(&o).and_then(|d| d.value().get("placement").and_then(PlacementRecord::from_value)));
    let me = membership.me();
    let eligible = eligible(manifest, membership, now);
    let home = match &previous {
        Some(p) if eligible.contains(&p.home) => p.home,
        _ if allows(manifest, me) => me.id,
        _ => match choose(&manifest.name, Kind::Actor, &eligible, &me.id) {
            Some(h) => h,
            // A stateless function may wait for a matching node to join; an actor needs a home.
            None if manifest.kind == Kind::Stateless => me.id,
            None => {
                return Err(format!(
                    "no alive node matches the placement of actor {:?} ({})",
                    manifest.name,
                    describe(manifest)
                ));
            }
        },
    };
    let granters = match &previous {
        Some(p) if !p.granters.is_empty() => p.granters.clone(),
        // The actor's group: the home, a majority in its site, one member elsewhere.
        _ => {
            use super::actors::group;
            group::group_for(&manifest.name, home, &group::alive_sites(membership, now), group::SIZE)
        }
    };
    Ok(PlacementRecord {
        home,
        epoch: previous.as_ref().map_or(1, |p| p.epoch + 1),
        base: 0,
        serving: Vec::new(),
        // A pin keeps the policy on: it never moves the function off its node, but may still
        // add replicas of what it reads next to it.
        auto: previous.as_ref().is_none_or(|p| p.auto),
        granters,
        reason: reason.to_string(),
        figures: None,
    })
}

/// Every function registered in this node's copy of the registry (deleted ones included),
/// by name; a damaged entry is reported as an error string.
pub fn registry(objects: &Objects) -> Vec<(String, Result<Registered, String>)> {
    let mut out: Vec<(String, Result<Registered, String>)> = objects
        .digests()
        .filter(|(name, _)| name.namespace() == REGISTRY_NS)
        .filter_map(|(name, _)| {
            let doc = objects.doc(name)?;
            Some((name.key().to_string(), Registered::from_value(&doc.value())))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// What a registry request's answer is awaited for.
pub(super) enum Awaiting {
    /// A call's registry read: route the call with this key.
    Route(u64),
    /// A granter's lease promise: send this grant to the asker once the promise is durable.
    Grant {
        /// The asker.
        to: NodeId,
        /// The grant.
        msg: Message,
    },
    /// A hand-off marker: this node never serves actor `name` at `epoch` again; once it is
    /// durable, the snapshot may leave.
    HandOff {
        /// The actor, by its function's name (also its registry key).
        name: String,
        /// The epoch handed off.
        epoch: u64,
    },
}

/// The registry part's state: requests to the object layer whose answer something waits for.
#[derive(Default)]
pub(super) struct Registry {
    awaiting: HashMap<u64, Awaiting>,
}

impl Registry {
    /// Reads `object` (a registry document) as this node holds it; the answer comes back
    /// with `token` and is handed to whatever `then` names.
    pub(super) fn read(&mut self, now: Time, token: u64, object: ObjectName, then: Awaiting, ctx: &mut Ctx<'_>) {
        self.awaiting.insert(token, then);
        ctx.objects.handle_internal_request(now, token, Request::Get { object, after: None }, ctx.membership, ctx.out);
    }

    /// Applies `op` to registry document `object` as this node's own local write (durable on
    /// this node's disk, then synced like any object).
    pub(super) fn write(
        &mut self,
        now: Time,
        token: u64,
        object: ObjectName,
        op: Op,
        then: Option<Awaiting>,
        ctx: &mut Ctx<'_>,
    ) {
        if let Some(then) = then {
            self.awaiting.insert(token, then);
        }
        let request = Request::Write { object, change: Change::Ops(vec![op]), durability: Durability::Local };
        ctx.objects.handle_internal_request(now, token, request, ctx.membership, ctx.out);
    }

    /// The request with `token` was answered: what waited for it, if anything still does.
    pub(super) fn answered(&mut self, token: u64) -> Option<Awaiting> {
        self.awaiting.remove(&token)
    }
}

impl Functions {
    /// Writes `op` into `name`'s registry document; `then` waits for the answer.
    pub(super) fn write_registry(
        &mut self,
        now: Time,
        name: &str,
        op: Op,
        then: Option<Awaiting>,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), String> {
        let object = registry_object(name)?;
        let token = self.calls.next_id();
        self.registry.write(now, token, object, op, then, ctx);
        Ok(())
    }
}

/// An operator's change to a function's placement (`fn pin`, `fn auto`): the manifest's pin
/// in `current`, and `placement.auto`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PlacementChange {
    /// Pin to this node (peer id); `Some("")` unpins from a node.
    pub node: Option<String>,
    /// Pin to this tier; `Some("")` unpins from a tier.
    pub tier: Option<String>,
    /// Automatic placement on or off.
    pub auto: Option<bool>,
}

/// The registry write that applies `change` to function `name`, as this node's copy of the
/// registry holds it.
pub fn placement_change(objects: &Objects, name: &str, change: &PlacementChange) -> Result<Request, String> {
    let object = registry_object(name)?;
    let doc = objects.doc(&object).ok_or_else(|| format!("no function {name:?}"))?;
    let reg = Registered::from_value(&doc.value())?;
    if reg.entry.deleted {
        return Err(format!("function {name:?} was removed"));
    }
    let mut entry = reg.entry;
    if let Some(n) = &change.node {
        entry.manifest.placement.node = (!n.is_empty()).then(|| n.clone());
    }
    if let Some(t) = &change.tier {
        entry.manifest.placement.tier = (!t.is_empty()).then(|| t.clone());
    }
    entry.manifest.validate().map_err(|e| e.to_string())?;
    let parse = |p: &str| state_sync::Path::parse(p).map_err(|e| e.to_string());
    let mut ops = vec![Op::Set {
        path: parse("current")?,
        value: serde_json::to_value(&entry).map_err(|e| e.to_string())?,
        text: false,
    }];
    if let Some(auto) = change.auto {
        if reg.placement.is_none() {
            return Err(format!("{name:?} has no placement record yet (deployed by an older agent)"));
        }
        ops.push(Op::Set { path: parse("placement.auto")?, value: auto.into(), text: false });
    }
    Ok(Request::Write { object, change: Change::Ops(ops), durability: Durability::Local })
}

/// The registry write that removes function `name` (`fn rm`): its name is free again and
/// calls get "not found".
pub fn removal(name: &str) -> Result<Request, String> {
    let object = registry_object(name)?;
    let path = state_sync::Path::parse("current.deleted").map_err(|e| e.to_string())?;
    let ops = vec![Op::Set { path, value: Json::Bool(true), text: false }];
    Ok(Request::Write { object, change: Change::Ops(ops), durability: Durability::Local })
}
