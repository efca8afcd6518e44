//! The real driver: runs the pure core on tokio, feeding it mesh events, timers and API
//! requests, and carrying out its outputs. Everything it decides is in the core; this loop
//! only translates.

use std::path::PathBuf;
use std::time::Instant;

use liquid_core::membership::Persisted;
use liquid_core::{Node, NodeId, Output, Time};
use mesh::{Event, Mesh};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::api::{MemberJson, StatusJson};

/// A question from the HTTP API, answered from the core's state.
pub enum ApiRequest {
    /// This node's status.
    Status(oneshot::Sender<StatusJson>),
    /// Every member.
    Nodes(oneshot::Sender<Vec<MemberJson>>),
}

/// The driver's own metrics.
#[derive(Clone, Default)]
pub struct DriverMetrics {
    members: Family<Vec<(String, String)>, Gauge>,
    changes: Family<Vec<(String, String)>, Counter>,
}

impl DriverMetrics {
    /// Registers the metrics.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("liquid");
        r.register("members", "Members in this node's view, by status (this node included)", self.members.clone());
        r.register("member_changes", "Status changes in this node's view, by new status", self.changes.clone());
    }
}

/// Everything the loop needs.
pub struct Driver {
    /// The core.
    pub node: Node,
    /// The transport.
    pub mesh: Mesh,
    /// Transport events.
    pub events: mpsc::Receiver<Event>,
    /// Events that arrived before the core existed.
    pub early: Vec<Event>,
    /// API questions.
    pub api: mpsc::Receiver<ApiRequest>,
    /// The core's epoch.
    pub epoch: Instant,
    /// Where the membership memory is persisted.
    pub state_file: PathBuf,
    /// Addresses actually listened on.
    pub listen_addrs: Vec<String>,
    /// Metrics.
    pub metrics: DriverMetrics,
}

impl Driver {
    fn now(&self) -> Time {
        Time::from_micros(u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX))
    }

    /// Runs until `shutdown` fires, then leaves the mesh gracefully.
    pub async fn run(mut self, mut shutdown: oneshot::Receiver<()>) {
        let (persist_tx, persist_rx) = mpsc::unbounded_channel();
        let persister = tokio::spawn(persist_loop(self.state_file.clone(), persist_rx));
        for ev in std::mem::take(&mut self.early) {
            self.on_event(ev);
        }
        self.flush(&persist_tx);
        loop {
            let wake = self.epoch + std::time::Duration::from_micros(self.node.poll_timeout().as_micros());
            tokio::select! {
                _ = tokio::time::sleep_until(wake.into()) => {
                    let now = self.now();
                    self.node.handle_timeout(now);
                }
                ev = self.events.recv() => match ev {
                    Some(ev) => self.on_event(ev),
                    None => break,
                },
                Some(req) = self.api.recv() => self.on_api(req),
                _ = &mut shutdown => {
                    info!("leaving the mesh");
                    let now = self.now();
                    self.node.handle_leave(now);
                    self.flush(&persist_tx);
                    // Give the farewells a moment to leave before closing connections.
                    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                    self.mesh.shutdown().await;
                    break;
                }
            }
            self.flush(&persist_tx);
        }
        drop(persist_tx);
        let _ = persister.await;
    }

    fn on_event(&mut self, ev: Event) {
        let now = self.now();
        match ev {
            Event::Listening(addr) => {
                let addr = addr.to_string();
                if !self.listen_addrs.contains(&addr) {
                    self.listen_addrs.push(addr);
                }
            }
            Event::Authenticated(peer) => match mesh::node_id(&peer) {
                Some(id) => self.node.handle_connected(now, id),
                None => warn!(%peer, "peer id is not an Ed25519 key: ignored"),
            },
            Event::Message { from, msg } => match mesh::node_id(&from) {
                Some(id) => self.node.handle_message(now, id, msg),
                None => warn!(%from, "message from a non-Ed25519 peer id: ignored"),
            },
            Event::Request { from, msg, reply } => {
                // No request kinds exist yet; dropping the reply fails the call at the caller.
                debug!(%from, kind = msg.kind(), "no handler for this request");
                drop(reply);
            }
            Event::Bulk { from, .. } => debug!(%from, "no handler for bulk streams yet"),
            Event::Disconnected(peer) => debug!(%peer, "disconnected"),
            _ => {}
        }
    }

    fn flush(&mut self, persist: &mpsc::UnboundedSender<Persisted>) {
        while let Some(out) = self.node.poll_output() {
            match out {
                Output::Send { to, msg } => {
                    let Some(peer) = mesh::peer_id(&to) else { continue };
                    let addrs = self
                        .node
                        .membership()
                        .addrs_of(&to)
                        .map(|a| a.iter().filter_map(|s| s.parse().ok()).collect())
                        .unwrap_or_default();
                    self.mesh.send(peer, addrs, &msg);
                }
                Output::Persist(p) => {
                    let _ = persist.send(p);
                }
                Output::Event(change) => {
                    let name = self.name_of(&change.id);
                    info!(member = %name, id = %change.id, from = ?change.from, to = ?change.to, "member status changed");
                    self.metrics.changes.get_or_create(&vec![("status".into(), change.to.as_str().into())]).inc();
                }
                _ => {}
            }
        }
        let counts = self.node.membership().counts();
        for (status, n) in [("alive", counts[0] + 1), ("suspect", counts[1]), ("down", counts[2] + counts[3])] {
            self.metrics.members.get_or_create(&vec![("status".into(), status.into())]).set(n as i64);
        }
    }

    fn name_of(&self, id: &NodeId) -> String {
        let now = self.now();
        self.node.membership().members(now).find(|m| m.info.id == *id).map(|m| m.info.name.clone()).unwrap_or_default()
    }

    fn on_api(&mut self, req: ApiRequest) {
        let now = self.now();
        match req {
            ApiRequest::Status(tx) => {
                let m = self.node.membership();
                let me = m.me();
                let c = m.counts();
                let _ = tx.send(StatusJson {
                    id: me.id.to_string(),
                    name: me.name.clone(),
                    tier: me.tier.as_str().to_string(),
                    labels: me.labels.clone(),
                    arch: me.arch.clone(),
                    version: me.version.clone(),
                    incarnation: m.incarnation(),
                    listen_addrs: self.listen_addrs.clone(),
                    uptime_s: self.epoch.elapsed().as_secs_f64(),
                    peers: crate::api::PeerCounts {
                        alive: c[0],
                        suspect: c[1],
                        down: c[2] + c[3],
                        total: c.iter().sum(),
                    },
                });
            }
            ApiRequest::Nodes(tx) => {
                let list = self.node.membership().members(now).map(|m| MemberJson::from_view(&m, now)).collect();
                let _ = tx.send(list);
            }
        }
    }
}

/// Writes the membership memory, one write at a time so an older one never lands last.
async fn persist_loop(path: PathBuf, mut rx: mpsc::UnboundedReceiver<Persisted>) {
    while let Some(mut p) = rx.recv().await {
        while let Ok(newer) = rx.try_recv() {
            p = newer;
        }
        let path = path.clone();
        let res = tokio::task::spawn_blocking(move || {
            let mut bytes = Vec::new();
            encode_persisted(&p, &mut bytes)?;
            mesh::identity::write_private(&path, &bytes)
        })
        .await;
        match res {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(error = %e, "could not persist the membership state"),
            Err(e) => warn!(error = %e, "persist task failed"),
        }
    }
}

fn encode_persisted(p: &Persisted, out: &mut Vec<u8>) -> std::io::Result<()> {
    serde_json::to_writer(out, p).map_err(std::io::Error::other)
}

/// Reads what a previous life persisted; a missing or damaged file means a fresh start.
pub fn load_persisted(path: &std::path::Path) -> Option<Persisted> {
    let bytes = std::fs::read(path).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(p) => Some(p),
        Err(e) => {
            warn!(path = %path.display(), error = %e, "ignoring a damaged membership state file");
            None
        }
    }
}
