//! The placement record of a function, kept in its registry document under `placement`: where
//! it runs (an actor's home and epoch; a stateless function's serving nodes), whether the
//! policy may move it, and why it is where it is.

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use state_sync::ObjectName;
use state_sync::ops::Op;

use crate::NodeId;
use crate::functions::actors::lease::Promise;

/// Granters per actor (a majority of them must lease an activation).
pub const GRANTERS: usize = 3;

/// Where a function runs, as its registry says.
#[derive(Clone, Debug, PartialEq)]
pub struct PlacementRecord {
    /// An actor's activation; a stateless function's deciding node (also a serving node).
    pub home: NodeId,
    /// An actor's activation epoch (raised by every move).
    pub epoch: u64,
    /// The epoch whose state the activation started from (0: fresh state).
    pub base: u64,
    /// Stateless: the nodes serving it (home included); empty: wherever it is invoked.
    pub serving: Vec<NodeId>,
    /// The policy may move it.
    pub auto: bool,
    /// The actor's lease granters.
    pub granters: Vec<NodeId>,
    /// Why it is there (for `fn where`).
    pub reason: String,
    /// The policy's figures behind the last decision (JSON), if any.
    pub figures: Option<Json>,
}

#[derive(Serialize, Deserialize)]
struct Raw {
    home: String,
    #[serde(default)]
    epoch: u64,
    #[serde(default)]
    base: u64,
    #[serde(default)]
    serving: Vec<String>,
    #[serde(default = "yes")]
    auto: bool,
    #[serde(default)]
    granters: Vec<String>,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    figures: Option<Json>,
}

fn yes() -> bool {
    true
}

fn ids(list: &[String]) -> Vec<NodeId> {
    list.iter().filter_map(|s| NodeId::parse(s)).collect()
}

impl PlacementRecord {
    /// Reads the `placement` value of a registry document (`None` if absent or damaged).
    pub fn from_value(v: &Json) -> Option<PlacementRecord> {
        let raw: Raw = serde_json::from_value(v.clone()).ok()?;
        Some(PlacementRecord {
            home: NodeId::parse(&raw.home)?,
            epoch: raw.epoch,
            base: raw.base,
            serving: ids(&raw.serving),
            auto: raw.auto,
            granters: ids(&raw.granters),
            reason: raw.reason,
            figures: raw.figures,
        })
    }

    /// The JSON value stored in the registry.
    pub fn to_value(&self) -> Json {
        let raw = Raw {
            home: self.home.to_string(),
            epoch: self.epoch,
            base: self.base,
            serving: self.serving.iter().map(|n| n.to_string()).collect(),
            auto: self.auto,
            granters: self.granters.iter().map(|n| n.to_string()).collect(),
            reason: self.reason.clone(),
            figures: self.figures.clone(),
        };
        serde_json::to_value(raw).unwrap_or(Json::Null)
    }

    /// The operation that stores it.
    pub fn op(&self) -> Result<Op, String> {
        let path = state_sync::Path::parse("placement").map_err(|e| e.to_string())?;
        Ok(Op::Set { path, value: self.to_value(), text: false })
    }
}

/// How many replicas placement may add next to one function (a bound on what a damaged or
/// hostile registry record can make every node replicate).
pub const ADDED_REPLICAS_MAX: usize = 16;

/// The replicas placement added next to a function, from its registry document's `replicas`
/// (a list of `{ "object": NAME, "node": ID }`; damaged entries are skipped, at most
/// [`ADDED_REPLICAS_MAX`] are read).
pub fn added_replicas(doc: &Json) -> Vec<(ObjectName, NodeId)> {
    doc.get("replicas").map(replicas_in).unwrap_or_default()
}

/// [`added_replicas`] of a registry document, reading only its `replicas` field (checked on
/// every registry change, and lease renewals change the document every few seconds).
pub fn added_replicas_of(doc: &state_sync::Document) -> Vec<(ObjectName, NodeId)> {
    doc.value_at("replicas").as_ref().map(replicas_in).unwrap_or_default()
}

fn replicas_in(list: &Json) -> Vec<(ObjectName, NodeId)> {
    let Some(list) = list.as_array() else { return Vec::new() };
    list.iter()
        .filter_map(|e| {
            let object = ObjectName::parse(e.get("object")?.as_str()?).ok()?;
            let node = NodeId::parse(e.get("node")?.as_str()?)?;
            Some((object, node))
        })
        .take(ADDED_REPLICAS_MAX)
        .collect()
}

/// The operation that stores the added replicas (the whole list: only the function's home
/// writes it).
pub fn replicas_op(list: &[(ObjectName, NodeId)]) -> Result<Op, String> {
    let path = state_sync::Path::parse("replicas").map_err(|e| e.to_string())?;
    let value = Json::Array(
        list.iter().map(|(o, n)| serde_json::json!({ "object": o.as_str(), "node": n.to_string() })).collect(),
    );
    Ok(Op::Set { path, value, text: false })
}

/// A granter's durable promise as stored in the registry document at `leases.<granter>`.
/// Reads only the `leases` field: a lease ask comes every few seconds per actor, and the
/// whole document (placement, serving set, replicas) as JSON would be read for one entry.
pub fn promise_of(doc: &state_sync::Document, granter: &NodeId) -> Promise {
    doc.value_at("leases").as_ref().map(|l| promise_in(l, granter)).unwrap_or_default()
}

/// [`promise_of`], given the document's `leases` field.
fn promise_in(leases: &Json, granter: &NodeId) -> Promise {
    leases.get(granter.to_string()).and_then(|v| serde_json::from_value(v.clone()).ok()).unwrap_or_default()
}

/// The operation that stores a granter's promise.
pub fn promise_op(granter: &NodeId, p: Promise) -> Result<Op, String> {
    let path = state_sync::Path::parse(&format!("leases.{granter}")).map_err(|e| e.to_string())?;
    let value = serde_json::to_value(p).map_err(|e| e.to_string())?;
    Ok(Op::Set { path, value, text: false })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_damage_reads_as_none() {
        let p = PlacementRecord {
            home: NodeId([1; 32]),
            epoch: 3,
            base: 2,
            serving: vec![NodeId([2; 32])],
            auto: false,
            granters: vec![NodeId([1; 32]), NodeId([3; 32])],
            reason: "moved by hand".into(),
            figures: None,
        };
        assert_eq!(PlacementRecord::from_value(&p.to_value()), Some(p));
        assert_eq!(PlacementRecord::from_value(&serde_json::json!({"home": "nope"})), None);
        assert_eq!(PlacementRecord::from_value(&serde_json::json!(7)), None);
        let mut doc = state_sync::Document::new(state_sync::automerge::ActorId::from(b"record".as_slice()));
        assert_eq!(promise_of(&doc, &NodeId([1; 32])), Promise::default());
        let p = Promise { promised: 4, granted: 3, granted_to: None };
        doc.apply(&[promise_op(&NodeId([1; 32]), p).unwrap()], 0).unwrap();
        assert_eq!(promise_of(&doc, &NodeId([1; 32])), p);
        assert_eq!(promise_of(&doc, &NodeId([2; 32])), Promise::default());
    }

    #[test]
    fn added_replicas_round_trip_and_skip_damage() {
        let list = vec![
            (ObjectName::parse("sensors/a").unwrap(), NodeId([1; 32])),
            (ObjectName::parse("sensors/b").unwrap(), NodeId([2; 32])),
        ];
        let Op::Set { value, .. } = replicas_op(&list).unwrap() else { panic!() };
        assert_eq!(added_replicas(&serde_json::json!({ "replicas": value })), list);
        let damaged = serde_json::json!({ "replicas": [
            {"object": "no slash", "node": NodeId([1; 32]).to_string()},
            {"object": "sensors/a", "node": "nope"},
            {"object": "sensors/a"},
            7,
            {"object": "sensors/c", "node": NodeId([3; 32]).to_string()},
        ]});
        assert_eq!(added_replicas(&damaged), vec![(ObjectName::parse("sensors/c").unwrap(), NodeId([3; 32]))]);
        assert!(added_replicas(&serde_json::json!({"replicas": "x"})).is_empty());
        let many: Vec<Json> = (0..40)
            .map(|i| serde_json::json!({"object": format!("o/{i}"), "node": NodeId([1; 32]).to_string()}))
            .collect();
        assert_eq!(added_replicas(&serde_json::json!({ "replicas": many })).len(), ADDED_REPLICAS_MAX);
    }

    #[test]
    fn added_replicas_of_a_document_reads_its_replicas_field() {
        let mut doc = state_sync::Document::new(state_sync::automerge::ActorId::from(b"record".as_slice()));
        assert!(added_replicas_of(&doc).is_empty());
        let lease = Op::Set { path: state_sync::Path::parse("leases.x").unwrap(), value: Json::from(3), text: false };
        doc.apply(&[lease], 0).unwrap();
        assert!(added_replicas_of(&doc).is_empty());
        let list = vec![(ObjectName::parse("sensors/a").unwrap(), NodeId([1; 32]))];
        doc.apply(&[replicas_op(&list).unwrap()], 0).unwrap();
        assert_eq!(added_replicas_of(&doc), list);
        assert_eq!(added_replicas_of(&doc), added_replicas(&doc.value()));
    }
}
