//! The shapes the HTTP API and the command-line tool share: the JSON bodies of `/v1/` (built
//! by the daemon, read by `liquid` subcommands) and the deploy's manifest header.
//!
//! A leaf: it imports neither [`crate::daemon`] nor [`crate::cli`], so both sides depend on it
//! and not on each other.

use std::collections::BTreeMap;

use liquid_core::Time;
use liquid_core::membership::MemberView;
use serde::{Deserialize, Serialize};

/// `GET /v1/status`.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct StatusJson {
    /// Peer id.
    pub id: String,
    /// Node name.
    pub name: String,
    /// Tier.
    pub tier: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// CPU architecture.
    pub arch: String,
    /// Agent version.
    pub version: String,
    /// Membership incarnation.
    pub incarnation: u32,
    /// Multiaddrs listened on, each ending in `/p2p/<id>`.
    pub listen_addrs: Vec<String>,
    /// Seconds since the agent started.
    pub uptime_s: f64,
    /// Other members by status.
    pub peers: PeerCounts,
    /// Objects whose log on this node was damaged and that lack changes until a replica
    /// sends them back; reads of them are refused meanwhile.
    #[serde(default)]
    pub damaged_objects: Vec<DamagedJson>,
}

/// An object awaiting repair from its replicas (see [`StatusJson::damaged_objects`]).
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct DamagedJson {
    /// The object (`namespace/key`).
    pub object: String,
    /// Where the damaged log file was kept.
    pub kept: String,
}

/// Members other than this node, by status.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct PeerCounts {
    /// Alive.
    pub alive: usize,
    /// Suspect.
    pub suspect: usize,
    /// Down or left.
    pub down: usize,
    /// All of them.
    pub total: usize,
}

/// One entry of `GET /v1/nodes`.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct MemberJson {
    /// Peer id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Tier.
    pub tier: String,
    /// CPU architecture.
    pub arch: String,
    /// `alive`, `suspect` or `down`.
    pub status: String,
    /// Whether it left on purpose (then `status` is `down`).
    pub left: bool,
    /// Smoothed round-trip time, if measured.
    pub rtt_ms: Option<f64>,
    /// Its multiaddrs.
    pub addrs: Vec<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Logical CPUs.
    pub cpus: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Agent version.
    pub version: String,
    /// Incarnation.
    pub incarnation: u32,
    /// Whether this is the node answering.
    pub is_self: bool,
    /// Seconds since its status last changed (as seen here).
    pub status_age_s: f64,
}

impl MemberJson {
    /// From the core's view.
    pub fn from_view(m: &MemberView, now: Time) -> Self {
        MemberJson {
            id: m.info.id.to_string(),
            name: m.info.name.clone(),
            tier: m.info.tier.as_str().into(),
            arch: m.info.arch.clone(),
            status: m.status.as_str().into(),
            left: m.status == liquid_core::Status::Left,
            rtt_ms: m.rtt.map(|d| d.as_secs_f64() * 1000.0),
            addrs: m.info.addrs.clone(),
            labels: m.info.labels.clone(),
            cpus: m.info.cpus,
            memory_mib: m.info.memory_mib,
            version: m.info.version.clone(),
            incarnation: m.incarnation,
            is_self: m.is_self,
            status_age_s: if m.is_self { 0.0 } else { now.since(m.since).as_secs_f64() },
        }
    }
}

/// An object's value, as `GET`/`POST /v1/objects/{ns}/{key}` and `liquid obj get --json` show it.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct ObjectJson {
    /// `namespace/key`.
    pub object: String,
    /// The document as JSON.
    pub value: serde_json::Value,
    /// The heads it was read at (hex change hashes); pass them as `?after=` to read your
    /// own write elsewhere.
    pub heads: Vec<String>,
    /// For a write: how many replica-set members hold it durably.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub durable_on: Option<usize>,
}

/// One entry of `GET /v1/objects`.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct ListedJson {
    /// `namespace/key`.
    pub object: String,
    /// Its heads on this node.
    pub heads: Vec<String>,
    /// Its replica set in this node's view (peer ids, best first).
    pub replicas: Vec<String>,
}

/// A function as `GET /v1/functions` shows it.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct FunctionJson {
    /// Its name.
    pub name: String,
    /// Manifest version.
    pub version: String,
    /// `stateless` or `actor`.
    pub kind: String,
    /// The module's BLAKE3 hash (hex).
    pub hash: String,
    /// Module size, bytes.
    pub size: u64,
    /// The node it was deployed on.
    pub deployed_by: String,
    /// When, Unix ms.
    pub deployed_at_ms: u64,
    /// Removed with `fn rm`.
    pub deleted: bool,
    /// Nodes holding the module bytes.
    pub holders: Vec<String>,
    /// The placement constraints, in words.
    pub placement: String,
    /// Alive nodes that may run it, in this node's view.
    pub eligible: Vec<String>,
    /// The node an actor (or a call from a node that is not eligible) goes to: the
    /// registry's placement record, else the rendezvous choice.
    pub home: Option<String>,
    /// An actor's activation epoch (raised by every move).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
    /// Whether the placement policy may move it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto: Option<bool>,
    /// Why it is where it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The cost figures behind the last move.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub figures: Option<serde_json::Value>,
    /// An actor's lease granters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub granters: Vec<String>,
    /// A stateless function's serving set: nodes that may not run it pass calls to the nearest
    /// of these (empty: to the node in `home`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub serving: Vec<String>,
    /// The actor's activation on this node, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation_here: Option<liquid_core::functions::ActivationView>,
    /// The placement policy's latest decision on this node (its home), with its figures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_here: Option<serde_json::Value>,
    /// The whole manifest.
    pub manifest: Option<wasm_host::Manifest>,
    /// Set if this node's registry entry is damaged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What this node measured of the calls it ran (decaying: recent calls weigh most).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facts_here: Option<FactsJson>,
}

/// A function's measured facts on one node (the placement policy's input).
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct FactsJson {
    /// Calls per second run here.
    pub calls_per_s: f64,
    /// Mean fuel per call.
    pub fuel_per_call: f64,
    /// Mean latency from the call's arrival here to its outcome, ms.
    pub latency_ms: f64,
    /// Where the calls entered the mesh: node, site, calls per second.
    pub origins: Vec<OriginJson>,
    /// Objects the calls touched, with their replica sets.
    pub objects: Vec<TouchedJson>,
}

/// An object a function's calls touched.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct TouchedJson {
    /// `namespace/key`.
    pub object: String,
    /// Reads per second.
    pub reads_per_s: f64,
    /// Writes per second.
    pub writes_per_s: f64,
    /// Its replica set, as last seen here.
    pub replicas: Vec<String>,
}

/// One origin of a function's calls.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct OriginJson {
    /// The node the calls entered at.
    pub node: String,
    /// Its `site` label.
    pub site: Option<String>,
    /// Calls per second.
    pub calls_per_s: f64,
}

impl FactsJson {
    /// From the core's facts, read at `now_s`.
    pub fn new(f: &liquid_core::placement::Facts<liquid_core::NodeId>, now_s: f64) -> FactsJson {
        let h = liquid_core::functions::FACTS_HALF_LIFE_S;
        let mut origins: Vec<OriginJson> = f
            .origins
            .iter()
            .map(|o| OriginJson { node: o.node.to_string(), site: o.site.clone(), calls_per_s: o.calls.rate(now_s, h) })
            .collect();
        origins.sort_by(|a, b| b.calls_per_s.total_cmp(&a.calls_per_s));
        let objects = f
            .objects
            .iter()
            .map(|o| TouchedJson {
                object: o.object.clone(),
                reads_per_s: o.reads.rate(now_s, h),
                writes_per_s: o.writes.rate(now_s, h),
                replicas: o.replicas.iter().map(ToString::to_string).collect(),
            })
            .collect();
        FactsJson {
            calls_per_s: f.rate(now_s),
            fuel_per_call: f.fuel_per_call(now_s),
            latency_ms: f.latency_per_call(now_s),
            origins,
            objects,
        }
    }
}

impl FunctionJson {
    /// From the core's registry and view.
    pub fn new(
        name: &str,
        reg: Result<liquid_core::functions::Registered, String>,
        m: &liquid_core::membership::Membership,
        now: Time,
    ) -> FunctionJson {
        match reg {
            Ok(r) => {
                let (eligible, home) = liquid_core::functions::placement_of(name, &r.entry.manifest, m, now);
                FunctionJson {
                    name: name.into(),
                    version: r.entry.manifest.version.clone(),
                    kind: r.entry.manifest.kind.as_str().into(),
                    hash: r.entry.hash.to_hex(),
                    size: r.entry.size,
                    deployed_by: r.entry.deployed_by.clone(),
                    deployed_at_ms: r.entry.deployed_at_ms,
                    deleted: r.entry.deleted,
                    holders: r.holders.iter().map(ToString::to_string).collect(),
                    placement: liquid_core::functions::describe_placement(&r.entry.manifest),
                    eligible: eligible.iter().map(ToString::to_string).collect(),
                    home: r.placement.as_ref().map(|p| p.home).or(home).map(|h| h.to_string()),
                    epoch: r.placement.as_ref().map(|p| p.epoch),
                    auto: r.placement.as_ref().map(|p| p.auto),
                    reason: r.placement.as_ref().map(|p| p.reason.clone()),
                    figures: r.placement.as_ref().and_then(|p| p.figures.clone()),
                    granters: r.placement.iter().flat_map(|p| p.granters.iter().map(ToString::to_string)).collect(),
                    serving: r.placement.iter().flat_map(|p| p.serving.iter().map(ToString::to_string)).collect(),
                    activation_here: None,
                    decision_here: None,
                    manifest: Some(r.entry.manifest),
                    error: None,
                    facts_here: None,
                }
            }
            Err(e) => FunctionJson { name: name.into(), error: Some(e), ..Default::default() },
        }
    }
}

/// `PUT /v1/debug/blocked` body.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct BlockedJson {
    /// Peer ids whose messages this agent drops, both ways; empty heals.
    pub peers: Vec<String>,
}

/// The response header of a full page of `GET /v1/objects`: the name the next page starts
/// after (`?after=`). Absent on the last page.
pub const NEXT_AFTER: &str = "x-liquid-next-after";

/// The header that carries a deploy's manifest: `liquid.toml`, base64 (standard alphabet).
pub const MANIFEST_HEADER: &str = "liquid-manifest";

/// One line of a function's log (`GET /v1/functions/{name}/logs`).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct LogLine {
    /// Unix ms.
    pub at_ms: u64,
    /// `error`, `warn`, `info`, `debug`.
    pub level: String,
    /// The text.
    pub line: String,
}

/// A change to a function's placement from `liquid fn pin` / `fn auto`
/// (`POST /v1/functions/{name}/placement`): the registry part of the core applies it.
pub use liquid_core::functions::PlacementChange;
