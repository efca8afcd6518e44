//! Liquid's transport between agents.
//!
//! What it does: a persistent Ed25519 identity ([`identity`]); libp2p with QUIC (quinn +
//! rustls, TLS 1.3) as the primary transport and TCP + Noise + Yamux as the fallback for
//! networks that block UDP; discovery by bootstrap addresses and mDNS; cluster gating
//! ([`cluster`]): a peer is admitted only once it proved it holds the cluster secret;
//! one-way messages and request/response carrying the core's versioned CBOR envelopes
//! ([`liquid_core::wire`]); and bulk byte streams for packages and snapshots.
//!
//! What it does not do: decide anything. Who to talk to, when, and what a message means is
//! the core's business (`liquid-core`); this crate only carries bytes for it and refuses what
//! is malformed, oversized or from an unauthenticated peer (counted in [`Metrics`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), mesh::MeshError> {
//! use mesh::{Config, Mesh, cluster::ClusterKey};
//! let key = libp2p::identity::Keypair::generate_ed25519();
//! let cfg = Config::new(ClusterKey::generate(), vec!["/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap()]);
//! let (mesh, mut events) = Mesh::start(cfg, key, mesh::Metrics::default())?;
//! while let Some(event) = events.recv().await {
//!     println!("{event:?}");
//! }
//! # Ok(()) }
//! ```

pub mod cluster;
pub mod codec;
pub mod identity;
mod metrics;
mod swarm;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use libp2p::{Multiaddr, PeerId, Stream, StreamProtocol};
use liquid_core::wire;
use tokio::sync::{mpsc, oneshot};

pub use metrics::Metrics;

/// The protocol of bulk byte streams.
pub const BULK_PROTOCOL: StreamProtocol = StreamProtocol::new("/liquid/bulk/1");

/// Mesh settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// The cluster secret peers must prove they hold.
    pub cluster_key: cluster::ClusterKey,
    /// Addresses to listen on (QUIC `/udp/P/quic-v1` and/or TCP `/tcp/P`).
    pub listen: Vec<Multiaddr>,
    /// Peers to dial at start, and again while no peer is connected.
    pub bootstrap: Vec<Multiaddr>,
    /// Discover peers on the local network with mDNS.
    pub mdns: bool,
    /// How long a connected peer has to prove the cluster secret.
    pub auth_timeout: Duration,
    /// How long a request may take before it fails.
    pub request_timeout: Duration,
}

impl Config {
    /// Settings with the defaults for everything but the key and listen addresses.
    pub fn new(cluster_key: cluster::ClusterKey, listen: Vec<Multiaddr>) -> Self {
        Config {
            cluster_key,
            listen,
            bootstrap: Vec::new(),
            mdns: false,
            auth_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// Errors of the mesh.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MeshError {
    /// The identity key file could not be read or written.
    #[error("identity: {0}")]
    Identity(String),
    /// The cluster key file is missing or invalid.
    #[error("cluster key: {0}")]
    ClusterKey(String),
    /// A listen address could not be bound or the transport could not be built.
    #[error("transport: {0}")]
    Transport(String),
    /// The peer is not connected and authenticated (bulk streams need a live session).
    #[error("peer {0} is not an authenticated member")]
    NotAuthenticated(PeerId),
    /// The peer could not be reached or did not answer.
    #[error("request to {peer} failed: {reason}")]
    Request {
        /// The peer.
        peer: PeerId,
        /// What went wrong.
        reason: String,
    },
    /// The answer was not a valid envelope.
    #[error("bad answer: {0}")]
    Wire(#[from] wire::WireError),
    /// The mesh has shut down.
    #[error("the mesh has shut down")]
    Closed,
}

/// What the mesh reports to its owner.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// Now listening on this address (ends in `/p2p/<id>`).
    Listening(Multiaddr),
    /// A peer proved the cluster secret: it may now send and receive messages.
    Authenticated(PeerId),
    /// The last connection to an authenticated peer closed.
    Disconnected(PeerId),
    /// A one-way message from an authenticated peer.
    Message {
        /// The sender.
        from: PeerId,
        /// The message.
        msg: wire::Message,
    },
    /// A request from an authenticated peer; answer it with [`Reply::send`].
    Request {
        /// The sender.
        from: PeerId,
        /// The request.
        msg: wire::Message,
        /// Where the answer goes.
        reply: Reply,
    },
    /// A bulk stream opened by an authenticated peer.
    Bulk {
        /// The peer.
        from: PeerId,
        /// The stream.
        stream: Stream,
    },
}

/// The answer slot of an inbound request. Dropping it unanswered makes the request fail at
/// the caller.
#[derive(Debug)]
pub struct Reply {
    id: u64,
    cmd: mpsc::UnboundedSender<swarm::Command>,
}

impl Reply {
    /// Sends the answer.
    pub fn send(self, msg: &wire::Message) {
        let _ = self.cmd.send(swarm::Command::Respond { id: self.id, bytes: wire::encode(msg) });
    }
}

/// A handle on a running mesh. Cloning shares it; the mesh stops when the last handle drops
/// or [`Mesh::shutdown`] is called.
#[derive(Clone)]
pub struct Mesh {
    peer_id: PeerId,
    cmd: mpsc::UnboundedSender<swarm::Command>,
    control: libp2p_stream::Control,
    authenticated: Arc<Mutex<HashSet<PeerId>>>,
}

impl Mesh {
    /// Builds the transport, starts listening and dialling, and spawns the mesh's task on the
    /// current tokio runtime.
    pub fn start(
        cfg: Config,
        key: libp2p::identity::Keypair,
        metrics: Metrics,
    ) -> Result<(Mesh, mpsc::Receiver<Event>), MeshError> {
        swarm::start(cfg, key, metrics)
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// Whether `peer` is connected and authenticated.
    pub fn is_authenticated(&self, peer: &PeerId) -> bool {
        self.authenticated.lock().map(|s| s.contains(peer)).unwrap_or(false)
    }

    /// Sends a one-way message. If the peer is not connected, it is dialled at `addrs` and the
    /// message waits (bounded) until the peer has authenticated. Failures are counted, not
    /// returned: one-way messages may be lost, and the protocols above tolerate it.
    pub fn send(&self, to: PeerId, addrs: Vec<Multiaddr>, msg: &wire::Message) {
        let frame = codec::Frame { kind: codec::ONE_WAY, bytes: wire::encode(msg) };
        let _ = self.cmd.send(swarm::Command::Send { to, addrs, frame, kind: msg.kind(), reply: None });
    }

    /// Sends raw bytes as a one-way frame, unencoded: for tests and tools that need to send
    /// what a broken or hostile peer would.
    pub fn send_raw(&self, to: PeerId, addrs: Vec<Multiaddr>, bytes: Vec<u8>) {
        let frame = codec::Frame { kind: codec::ONE_WAY, bytes };
        let _ = self.cmd.send(swarm::Command::Send { to, addrs, frame, kind: "raw", reply: None });
    }

    /// Sends a request and waits for the answer.
    pub async fn request(
        &self,
        to: PeerId,
        addrs: Vec<Multiaddr>,
        msg: &wire::Message,
    ) -> Result<wire::Message, MeshError> {
        let (tx, rx) = oneshot::channel();
        let frame = codec::Frame { kind: codec::REQUEST, bytes: wire::encode(msg) };
        self.cmd
            .send(swarm::Command::Send { to, addrs, frame, kind: msg.kind(), reply: Some(tx) })
            .map_err(|_| MeshError::Closed)?;
        let bytes = rx.await.map_err(|_| MeshError::Closed)??;
        Ok(wire::decode(&bytes)?)
    }

    /// Opens a bulk byte stream to an authenticated peer.
    pub async fn open_bulk(&self, to: PeerId) -> Result<Stream, MeshError> {
        if !self.is_authenticated(&to) {
            return Err(MeshError::NotAuthenticated(to));
        }
        self.control
            .clone()
            .open_stream(to, BULK_PROTOCOL)
            .await
            .map_err(|e| MeshError::Request { peer: to, reason: e.to_string() })
    }

    /// Dials an address (a bootstrap peer given at run time).
    pub fn dial(&self, addr: Multiaddr) {
        let _ = self.cmd.send(swarm::Command::Dial(addr));
    }

    /// Closes every connection and stops the mesh's task, waiting until it has.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.cmd.send(swarm::Command::Shutdown(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

/// Converts a libp2p peer id to the core's node id (`None` unless it is an Ed25519 key).
pub fn node_id(peer: &PeerId) -> Option<liquid_core::NodeId> {
    liquid_core::NodeId::from_peer_id_bytes(&peer.to_bytes())
}

/// Converts the core's node id to a libp2p peer id.
pub fn peer_id(node: &liquid_core::NodeId) -> Option<PeerId> {
    PeerId::from_bytes(&node.to_peer_id_bytes()).ok()
}
