//! The task that owns the libp2p swarm: transports, gating, queues.
//!
//! Bounds: messages waiting for a peer to connect and authenticate — `PENDING_PER_PEER` per
//! peer and `PENDING_PEERS` peers (further messages are dropped and counted as `queue_full`);
//! unanswered inbound requests — `INBOUND_MAX` (further requests are dropped); events to the
//! owner — a channel of `EVENTS_MAX` (messages beyond it are dropped as `queue_full`); banned
//! peers — `BANNED_MAX`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::{ConnectionId, NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm, mdns, multiaddr::Protocol, noise, tcp, yamux};
use liquid_core::wire;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::codec::{Frame, FrameCodec, ONE_WAY};
use crate::metrics::label;
use crate::{BULK_PROTOCOL, Config, Event, Mesh, MeshError, Metrics, Reply};

const AUTH_PROTOCOL: StreamProtocol = StreamProtocol::new("/liquid/auth/1");
const MSG_PROTOCOL: StreamProtocol = StreamProtocol::new("/liquid/msg/1");
const PENDING_PER_PEER: usize = 256;
const PENDING_PEERS: usize = 1024;
const INBOUND_MAX: usize = 1024;
const EVENTS_MAX: usize = 4096;
const BANNED_MAX: usize = 4096;
const BAN_FOR: Duration = Duration::from_secs(60);
/// A connection opened this long before a fresh, re-authenticated one is presumed stale.
const STALE_AFTER: Duration = Duration::from_secs(2);

type Answer = oneshot::Sender<Result<Vec<u8>, MeshError>>;
/// A frame waiting for its peer to connect and authenticate.
type Queued = (Frame, &'static str, Option<Answer>);

pub(crate) enum Command {
    Send { to: PeerId, addrs: Vec<Multiaddr>, frame: Frame, kind: &'static str, reply: Option<Answer> },
    Respond { id: u64, bytes: Vec<u8> },
    Dial(Multiaddr),
    Shutdown(oneshot::Sender<()>),
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    auth: request_response::Behaviour<FrameCodec>,
    msg: request_response::Behaviour<FrameCodec>,
    bulk: libp2p_stream::Behaviour,
    mdns: Toggle<mdns::tokio::Behaviour>,
}

struct Task {
    swarm: Swarm<Behaviour>,
    cfg: Config,
    me: PeerId,
    metrics: Metrics,
    events: mpsc::Sender<Event>,
    cmd_tx: mpsc::UnboundedSender<Command>,
    authenticated: Arc<Mutex<HashSet<PeerId>>>,
    auth_deadline: HashMap<PeerId, Instant>,
    pending: HashMap<PeerId, VecDeque<Queued>>,
    outstanding: HashMap<OutboundRequestId, Option<Answer>>,
    inbound: HashMap<u64, ResponseChannel<Frame>>,
    next_inbound: u64,
    banned: HashMap<PeerId, Instant>,
    /// Open connections per peer, to close stale ones when a peer proves itself anew.
    connections: HashMap<PeerId, Vec<(ConnectionId, Instant)>>,
    /// This process's nonce, sent with every proof: a peer that sees a new nonce on a new
    /// connection knows the old connections lead to a previous process.
    nonce: [u8; NONCE_BYTES],
    /// The nonce each proven connection's peer process sent.
    conn_nonce: HashMap<ConnectionId, [u8; NONCE_BYTES]>,
    /// The nonce of each peer's latest process (the last one that proved itself).
    peer_nonce: HashMap<PeerId, [u8; NONCE_BYTES]>,
}

/// The length of a process nonce, appended to the 32-byte cluster proof in auth frames.
const NONCE_BYTES: usize = 16;

/// Splits an auth frame into the proof and the sender's process nonce.
fn split_auth(bytes: &[u8]) -> Option<(&[u8], [u8; NONCE_BYTES])> {
    if bytes.len() != 32 + NONCE_BYTES {
        return None;
    }
    let (proof, nonce) = bytes.split_at(32);
    Some((proof, nonce.try_into().ok()?))
}

pub(crate) fn start(
    cfg: Config,
    key: libp2p::identity::Keypair,
    metrics: Metrics,
) -> Result<(Mesh, mpsc::Receiver<Event>), MeshError> {
    let me = key.public().to_peer_id();
    let mdns_on = cfg.mdns;
    let request_timeout = cfg.request_timeout;
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)
        .map_err(|e| MeshError::Transport(e.to_string()))?
        .with_quic()
        .with_behaviour(|key| {
            let rr = |proto, max| {
                request_response::Behaviour::with_codec(
                    FrameCodec { max },
                    [(proto, ProtocolSupport::Full)],
                    request_response::Config::default().with_request_timeout(request_timeout),
                )
            };
            let mdns = if mdns_on {
                Some(mdns::tokio::Behaviour::new(mdns::Config::default(), key.public().to_peer_id())?)
            } else {
                None
            };
            Ok(Behaviour {
                auth: rr(AUTH_PROTOCOL, 64),
                msg: rr(MSG_PROTOCOL, wire::MESSAGE_BYTES_MAX),
                bulk: libp2p_stream::Behaviour::new(),
                mdns: Toggle::from(mdns),
            })
        })
        .map_err(|e| MeshError::Transport(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
        .build();
    for addr in &cfg.listen {
        swarm.listen_on(addr.clone()).map_err(|e| MeshError::Transport(format!("cannot listen on {addr}: {e}")))?;
    }
    let mut control = swarm.behaviour().bulk.new_control();
    let incoming = control.accept(BULK_PROTOCOL).map_err(|e| MeshError::Transport(e.to_string()))?;
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (ev_tx, ev_rx) = mpsc::channel(EVENTS_MAX);
    let authenticated = Arc::new(Mutex::new(HashSet::new()));
    let mesh = Mesh { peer_id: me, cmd: cmd_tx.clone(), control, authenticated: authenticated.clone() };
    let task = Task {
        swarm,
        cfg,
        me,
        metrics,
        events: ev_tx,
        cmd_tx,
        authenticated,
        auth_deadline: HashMap::new(),
        pending: HashMap::new(),
        outstanding: HashMap::new(),
        inbound: HashMap::new(),
        next_inbound: 0,
        banned: HashMap::new(),
        connections: HashMap::new(),
        nonce: rand::random(),
        conn_nonce: HashMap::new(),
        peer_nonce: HashMap::new(),
    };
    tokio::spawn(accept_bulk(incoming, mesh.clone(), task.events.clone()));
    tokio::spawn(task.run(cmd_rx));
    Ok((mesh, ev_rx))
}

async fn accept_bulk(mut incoming: libp2p_stream::IncomingStreams, mesh: Mesh, events: mpsc::Sender<Event>) {
    while let Some((from, stream)) = incoming.next().await {
        if !mesh.is_authenticated(&from) {
            warn!(%from, "bulk stream from an unauthenticated peer refused");
            continue;
        }
        if events.send(Event::Bulk { from, stream }).await.is_err() {
            return;
        }
    }
}

impl Task {
    async fn run(mut self, mut cmds: mpsc::UnboundedReceiver<Command>) {
        for addr in self.cfg.bootstrap.clone() {
            self.dial_addr(addr);
        }
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut ticks = 0u64;
        loop {
            tokio::select! {
                ev = self.swarm.select_next_some() => self.on_swarm(ev).await,
                cmd = cmds.recv() => match cmd {
                    Some(Command::Shutdown(done)) => {
                        let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
                        for p in peers {
                            let _ = self.swarm.disconnect_peer_id(p);
                        }
                        let _ = done.send(());
                        return;
                    }
                    Some(cmd) => self.on_command(cmd),
                    None => return,
                },
                _ = tick.tick() => {
                    ticks += 1;
                    self.on_tick(ticks);
                }
            }
        }
    }

    fn is_authenticated(&self, peer: &PeerId) -> bool {
        self.authenticated.lock().map(|s| s.contains(peer)).unwrap_or(false)
    }

    fn set_authenticated(&mut self, peer: PeerId, yes: bool) -> bool {
        let changed = match self.authenticated.lock() {
            Ok(mut s) if yes => s.insert(peer),
            Ok(mut s) => s.remove(&peer),
            Err(_) => false,
        };
        let n = self.authenticated.lock().map(|s| s.len()).unwrap_or(0);
        self.metrics.peers_authenticated.set(i64::try_from(n).unwrap_or(i64::MAX));
        changed
    }

    fn dial_addr(&mut self, addr: Multiaddr) {
        if let Some(Protocol::P2p(peer)) = addr.iter().last()
            && (peer == self.me || self.swarm.is_connected(&peer))
        {
            return;
        }
        if let Err(e) = self.swarm.dial(addr.clone()) {
            debug!(%addr, error = %e, "dial failed");
        }
    }

    fn on_tick(&mut self, ticks: u64) {
        let now = Instant::now();
        let late: Vec<PeerId> = self.auth_deadline.iter().filter(|(_, d)| **d <= now).map(|(p, _)| *p).collect();
        for peer in late {
            self.auth_deadline.remove(&peer);
            if !self.is_authenticated(&peer) {
                warn!(%peer, "peer did not prove the cluster secret in time: disconnecting");
                self.metrics.auth_failures.inc();
                self.ban(peer);
            }
        }
        self.banned.retain(|_, until| *until > now);
        // Keep trying the bootstrap peers while alone: they may start after us.
        let alone = self.authenticated.lock().map(|s| s.is_empty()).unwrap_or(true);
        if alone && ticks.is_multiple_of(5) {
            for addr in self.cfg.bootstrap.clone() {
                self.dial_addr(addr);
            }
        }
    }

    fn ban(&mut self, peer: PeerId) {
        if self.banned.len() < BANNED_MAX {
            self.banned.insert(peer, Instant::now() + BAN_FOR);
        }
        let _ = self.swarm.disconnect_peer_id(peer);
        self.fail_pending(peer, "unauthenticated");
    }

    fn fail_pending(&mut self, peer: PeerId, reason: &str) {
        if let Some(queue) = self.pending.remove(&peer) {
            for (_, _, reply) in queue {
                self.metrics.dropped(reason);
                if let Some(r) = reply {
                    let _ = r.send(Err(MeshError::Request { peer, reason: reason.to_string() }));
                }
            }
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Send { to, addrs, frame, kind, reply } => {
                if self.is_authenticated(&to) {
                    self.transmit(to, frame, kind, reply);
                    return;
                }
                let full =
                    self.pending.get(&to).map_or(self.pending.len() >= PENDING_PEERS, |q| q.len() >= PENDING_PER_PEER);
                if full {
                    self.metrics.dropped("queue_full");
                    if let Some(r) = reply {
                        let _ = r.send(Err(MeshError::Request { peer: to, reason: "send queue full".into() }));
                    }
                    return;
                }
                self.pending.entry(to).or_default().push_back((frame, kind, reply));
                if !self.swarm.is_connected(&to) && !self.banned.contains_key(&to) {
                    let opts = DialOpts::peer_id(to).addresses(addrs).build();
                    if let Err(e) = self.swarm.dial(opts) {
                        debug!(peer = %to, error = %e, "dial failed");
                        self.fail_pending(to, "unreachable");
                    }
                }
            }
            Command::Respond { id, bytes } => {
                if let Some(ch) = self.inbound.remove(&id) {
                    self.metrics.bytes_sent.inc_by(bytes.len() as u64);
                    let _ = self.swarm.behaviour_mut().msg.send_response(ch, Frame { kind: ONE_WAY, bytes });
                }
            }
            Command::Dial(addr) => self.dial_addr(addr),
            Command::Shutdown(_) => {}
        }
    }

    fn transmit(&mut self, to: PeerId, frame: Frame, kind: &'static str, reply: Option<Answer>) {
        self.metrics.messages_sent.get_or_create(&label("kind", kind)).inc();
        self.metrics.bytes_sent.inc_by(frame.bytes.len() as u64);
        let id = self.swarm.behaviour_mut().msg.send_request(&to, frame);
        self.outstanding.insert(id, reply);
    }

    async fn on_swarm(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        match ev {
            SwarmEvent::NewListenAddr { address, .. } => {
                let addr = address.with_p2p(self.me).unwrap_or_else(|a| a);
                info!(%addr, "listening");
                let _ = self.events.send(Event::Listening(addr)).await;
            }
            SwarmEvent::ConnectionEstablished { peer_id, connection_id, .. } => {
                self.connections.entry(peer_id).or_default().push((connection_id, Instant::now()));
                if self.banned.contains_key(&peer_id) {
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                    return;
                }
                // Prove ourselves on every new connection, not once per peer: the peer may have
                // restarted with the same identity while we still hold a connection to its
                // previous process. (Its answer carries its own proof, on the same connection.)
                debug!(peer = %peer_id, "connected: proving the cluster secret");
                let proof = self.auth_frame(&peer_id);
                self.swarm.behaviour_mut().auth.send_request(&peer_id, Frame { kind: 0, bytes: proof });
                if !self.is_authenticated(&peer_id) {
                    self.auth_deadline.insert(peer_id, Instant::now() + self.cfg.auth_timeout);
                }
            }
            SwarmEvent::ConnectionClosed { peer_id, connection_id, num_established, .. } => {
                if let Some(list) = self.connections.get_mut(&peer_id) {
                    list.retain(|(c, _)| *c != connection_id);
                }
                self.conn_nonce.remove(&connection_id);
                if num_established > 0 {
                    return;
                }
                self.connections.remove(&peer_id);
                self.peer_nonce.remove(&peer_id);
                if self.auth_deadline.remove(&peer_id).is_some() && !self.is_authenticated(&peer_id) {
                    // It left before proving the secret: usually because it refused ours
                    // first (another cluster key), which races with our refusal of its proof.
                    warn!(peer = %peer_id, "peer closed the connection before proving the cluster secret");
                    self.metrics.auth_failures.inc();
                }
                self.fail_pending(peer_id, "unreachable");
                if self.set_authenticated(peer_id, false) {
                    debug!(peer = %peer_id, "disconnected");
                    let _ = self.events.send(Event::Disconnected(peer_id)).await;
                }
            }
            SwarmEvent::OutgoingConnectionError { peer_id: Some(peer), error, .. }
                if !self.swarm.is_connected(&peer) =>
            {
                debug!(%peer, %error, "could not connect");
                self.fail_pending(peer, "unreachable");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Auth(ev)) => self.on_auth(ev).await,
            SwarmEvent::Behaviour(BehaviourEvent::Msg(ev)) => self.on_msg(ev),
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
                let mut seen = HashSet::new();
                for (peer, addr) in found {
                    if peer == self.me || self.banned.contains_key(&peer) || self.swarm.is_connected(&peer) {
                        continue;
                    }
                    if seen.insert(peer) {
                        debug!(%peer, %addr, "discovered by mDNS");
                        let _ = self.swarm.dial(DialOpts::peer_id(peer).addresses(vec![addr]).build());
                    }
                }
            }
            _ => {}
        }
    }

    /// A peer proved itself on `fresh`: its other connections may lead to a previous process
    /// of the same identity (killed and restarted) and would swallow messages until they time
    /// out, so close them.
    ///
    /// Only connections opened well before the fresh one are closed: two connections opened
    /// at once (both sides dialled) are both live, and each side might pick a different one.
    ///
    /// A connection whose peer process sent another nonce than the fresh one is closed at
    /// once, whatever its age: it leads to a previous process (a restart within seconds).
    ///
    /// When the fresh proof comes from a new process of the peer (its nonce changed), every
    /// connection opened before the fresh one that this new process has not proven is closed
    /// too. Such a connection may never have carried a proof at all: a request-response
    /// request goes out on whichever of the peer's connections libp2p picks, so the proof sent
    /// for a new connection may travel on another one, and an unproven connection to a dead
    /// process would swallow every other message sent to the peer until it timed out. Only
    /// the side that saw the restart closes unproven connections, so the two sides never
    /// close each other's only live connection.
    fn close_others(&mut self, peer: PeerId, fresh: ConnectionId) {
        let Some(list) = self.connections.get(&peer) else { return };
        let Some(&(_, fresh_at)) = list.iter().find(|(c, _)| *c == fresh) else { return };
        let fresh_nonce = self.conn_nonce.get(&fresh).copied();
        let restarted = match fresh_nonce {
            Some(n) => self.peer_nonce.insert(peer, n).is_some_and(|before| before != n),
            None => false,
        };
        let nonces = &self.conn_nonce;
        let others: Vec<ConnectionId> = list
            .iter()
            .filter(|(c, at)| {
                let nonce = nonces.get(c);
                let previous_process = fresh_nonce.is_some() && nonce.is_some_and(|n| Some(*n) != fresh_nonce);
                let unproven_before_restart = restarted && nonce.is_none() && *at <= fresh_at;
                *c != fresh
                    && (previous_process || unproven_before_restart || fresh_at.duration_since(*at) > STALE_AFTER)
            })
            .map(|(c, _)| *c)
            .collect();
        for c in others {
            debug!(%peer, connection = ?c, "closing an older connection to a peer that re-authenticated");
            self.swarm.close_connection(c);
        }
    }

    async fn admit(&mut self, peer: PeerId) {
        self.auth_deadline.remove(&peer);
        if self.set_authenticated(peer, true) {
            info!(%peer, "peer authenticated");
            if let Some(queue) = self.pending.remove(&peer) {
                for (frame, kind, reply) in queue {
                    self.transmit(peer, frame, kind, reply);
                }
            }
            let _ = self.events.send(Event::Authenticated(peer)).await;
        }
    }

    /// Our proof for `peer` followed by this process's nonce.
    fn auth_frame(&self, peer: &PeerId) -> Vec<u8> {
        let mut bytes = self.cfg.cluster_key.proof(&self.me, peer).to_vec();
        bytes.extend_from_slice(&self.nonce);
        bytes
    }

    /// Checks an auth frame from `peer`; on success returns the peer process's nonce.
    fn check_auth(&self, peer: &PeerId, bytes: &[u8]) -> Option<[u8; NONCE_BYTES]> {
        let (proof, nonce) = split_auth(bytes)?;
        self.cfg.cluster_key.verify(peer, &self.me, proof).then_some(nonce)
    }

    async fn on_auth(&mut self, ev: request_response::Event<Frame, Frame>) {
        match ev {
            request_response::Event::Message {
                peer,
                connection_id,
                message: request_response::Message::Request { request, channel, .. },
            } => {
                if let Some(nonce) = self.check_auth(&peer, &request.bytes) {
                    self.conn_nonce.insert(connection_id, nonce);
                    self.close_others(peer, connection_id);
                    // Answer with our own proof: the answer travels on the connection the
                    // proof came on, even if we hold other (possibly stale) connections to
                    // this peer, e.g. from before it restarted.
                    let mine = self.auth_frame(&peer);
                    let _ = self.swarm.behaviour_mut().auth.send_response(channel, Frame { kind: 0, bytes: mine });
                    self.admit(peer).await;
                } else {
                    warn!(%peer, "peer failed to prove the cluster secret: disconnecting");
                    self.metrics.auth_failures.inc();
                    self.ban(peer);
                }
            }
            // The answer to our proof carries the peer's own proof, on the same connection.
            request_response::Event::Message {
                peer,
                connection_id,
                message: request_response::Message::Response { response, .. },
            } => match self.check_auth(&peer, &response.bytes) {
                Some(nonce) => {
                    self.conn_nonce.insert(connection_id, nonce);
                    self.close_others(peer, connection_id);
                    self.admit(peer).await;
                }
                None => {
                    warn!(%peer, "peer answered with a proof of another cluster key: disconnecting (do both agents use the same --cluster-key?)");
                    self.metrics.auth_failures.inc();
                    self.ban(peer);
                }
            },
            // The side that is refused must say so too (issue 17: only the member it contacted
            // logged anything): its proof went unanswered because the peer dropped it.
            request_response::Event::OutboundFailure { peer, error, .. } if !self.is_authenticated(&peer) => {
                warn!(%peer, %error, "peer did not accept our proof of the cluster secret: is this agent's --cluster-key the mesh's?");
            }
            _ => {}
        }
    }

    fn on_msg(&mut self, ev: request_response::Event<Frame, Frame>) {
        match ev {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request { request, channel, .. } => {
                    if !self.is_authenticated(&peer) {
                        // Never answer, never deliver: an outsider learns nothing.
                        self.metrics.dropped("unauthenticated");
                        return;
                    }
                    self.metrics.bytes_received.inc_by(request.bytes.len() as u64);
                    let msg = match wire::decode(&request.bytes) {
                        Ok(m) => m,
                        Err(e) => {
                            let reason = match e {
                                wire::WireError::UnsupportedVersion { .. } => "unsupported_version",
                                wire::WireError::TooLarge { .. } => "too_large",
                                _ => "malformed",
                            };
                            warn!(%peer, error = %e, "dropping a message");
                            self.metrics.dropped(reason);
                            let _ = self
                                .swarm
                                .behaviour_mut()
                                .msg
                                .send_response(channel, Frame { kind: ONE_WAY, bytes: Vec::new() });
                            return;
                        }
                    };
                    self.metrics.messages_received.get_or_create(&label("kind", msg.kind())).inc();
                    let event = if request.kind == ONE_WAY {
                        let _ = self
                            .swarm
                            .behaviour_mut()
                            .msg
                            .send_response(channel, Frame { kind: ONE_WAY, bytes: Vec::new() });
                        Event::Message { from: peer, msg }
                    } else {
                        if self.inbound.len() >= INBOUND_MAX {
                            self.metrics.dropped("queue_full");
                            return;
                        }
                        self.next_inbound += 1;
                        self.inbound.insert(self.next_inbound, channel);
                        Event::Request {
                            from: peer,
                            msg,
                            reply: Reply { id: self.next_inbound, cmd: self.cmd_tx.clone() },
                        }
                    };
                    if self.events.try_send(event).is_err() {
                        self.metrics.dropped("queue_full");
                    }
                }
                request_response::Message::Response { request_id, response } => {
                    if let Some(Some(reply)) = self.outstanding.remove(&request_id) {
                        self.metrics.bytes_received.inc_by(response.bytes.len() as u64);
                        let _ = reply.send(Ok(response.bytes));
                    }
                }
            },
            request_response::Event::OutboundFailure { peer, request_id, error, .. } => {
                self.metrics.dropped("send_failed");
                if let Some(Some(reply)) = self.outstanding.remove(&request_id) {
                    let _ = reply.send(Err(MeshError::Request { peer, reason: error.to_string() }));
                }
            }
            request_response::Event::InboundFailure { .. } | request_response::Event::ResponseSent { .. } => {}
        }
    }
}
