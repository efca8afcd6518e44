//! Two meshes in one process on loopback: gating, request/response, bulk streams, and what
//! happens to malformed and future-version messages.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt};
use liquid_core::membership::Message as M;
use liquid_core::wire::{self, Message};
use mesh::cluster::ClusterKey;
use mesh::{Config, Event, Mesh, Metrics};
use tokio::sync::mpsc::Receiver;
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(15);

async fn node(
    key: &ClusterKey,
    bootstrap: Option<libp2p::Multiaddr>,
) -> (Mesh, Receiver<Event>, Metrics, libp2p::Multiaddr) {
    let mut cfg = Config::new(key.clone(), vec!["/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap()]);
    cfg.bootstrap = bootstrap.into_iter().collect();
    cfg.auth_timeout = Duration::from_secs(3);
    let metrics = Metrics::default();
    let (mesh, mut events) = Mesh::start(cfg, libp2p::identity::Keypair::generate_ed25519(), metrics.clone()).unwrap();
    let addr = loop {
        match timeout(LIMIT, events.recv()).await.unwrap().unwrap() {
            Event::Listening(a) => break a,
            _ => continue,
        }
    };
    (mesh, events, metrics, addr)
}

async fn authenticated(events: &mut Receiver<Event>) -> libp2p::PeerId {
    loop {
        if let Event::Authenticated(p) = timeout(LIMIT, events.recv()).await.expect("authenticated in time").unwrap() {
            return p;
        }
    }
}

fn ping(seq: u64) -> Message {
    Message::Membership(M::Ping { seq, gossip: vec![] })
}

fn metric(m: &Metrics, reason: &str) -> u64 {
    m.messages_dropped.get_or_create(&vec![("reason".to_string(), reason.to_string())]).get()
}

#[tokio::test]
async fn same_key_peers_talk_request_response_and_bulk() {
    let key = ClusterKey::generate();
    let (a, mut a_ev, _, a_addr) = node(&key, None).await;
    let (b, mut b_ev, _, _) = node(&key, Some(a_addr)).await;
    assert_eq!(authenticated(&mut a_ev).await, b.peer_id());
    assert_eq!(authenticated(&mut b_ev).await, a.peer_id());

    // Request/response: A answers B's ping with an ack carrying the same seq.
    let server = tokio::spawn(async move {
        loop {
            match a_ev.recv().await {
                Some(Event::Request { msg: Message::Membership(M::Ping { seq, .. }), reply, .. }) => {
                    reply.send(&Message::Membership(M::Ack { seq, gossip: vec![] }));
                }
                Some(Event::Bulk { mut stream, .. }) => {
                    let mut buf = Vec::new();
                    stream.read_to_end(&mut buf).await.unwrap();
                    return (a_ev, buf);
                }
                Some(_) => {}
                None => panic!("events closed"),
            }
        }
    });
    let answer = timeout(LIMIT, b.request(a.peer_id(), vec![], &ping(42))).await.unwrap().unwrap();
    assert_eq!(answer, Message::Membership(M::Ack { seq: 42, gossip: vec![] }));

    // Bulk: 4 MiB arrive intact.
    let payload: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let mut stream = b.open_bulk(a.peer_id()).await.unwrap();
    stream.write_all(&payload).await.unwrap();
    stream.close().await.unwrap();
    let (_a_ev, got) = timeout(LIMIT, server).await.unwrap().unwrap();
    assert_eq!(got.len(), payload.len());
    assert!(got == payload);
}

#[tokio::test]
async fn malformed_and_future_messages_are_dropped_and_counted_and_the_next_one_arrives() {
    let key = ClusterKey::generate();
    let (a, mut a_ev, a_metrics, a_addr) = node(&key, None).await;
    let (b, mut b_ev, _, _) = node(&key, Some(a_addr)).await;
    authenticated(&mut a_ev).await;
    authenticated(&mut b_ev).await;

    b.send_raw(a.peer_id(), vec![], b"\xff\x00 not cbor".to_vec());
    let mut future = Vec::new();
    ciborium::into_writer(&(99u16, "a message from a future agent"), &mut future).unwrap();
    b.send_raw(a.peer_id(), vec![], future);
    b.send(a.peer_id(), vec![], &ping(7));
    let delivered = loop {
        match timeout(LIMIT, a_ev.recv()).await.unwrap().unwrap() {
            Event::Message { msg, .. } => break msg,
            _ => continue,
        }
    };
    assert_eq!(delivered, ping(7), "only the valid message is delivered");
    assert_eq!(metric(&a_metrics, "malformed"), 1);
    assert_eq!(metric(&a_metrics, "unsupported_version"), 1);
    let _ = wire::VERSION;
}

#[tokio::test]
async fn a_peer_with_another_key_is_refused_and_receives_nothing() {
    let (a, mut a_ev, a_metrics, a_addr) = node(&ClusterKey::generate(), None).await;
    let (x, mut x_ev, x_metrics, _) = node(&ClusterKey::generate(), Some(a_addr.clone())).await;
    // The outsider also tries to talk to A directly.
    x.send(a.peer_id(), vec![a_addr], &ping(1));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(6);
    loop {
        tokio::select! {
            ev = a_ev.recv() => match ev.unwrap() {
                Event::Authenticated(p) | Event::Message { from: p, .. } => panic!("A admitted or heard the outsider {p}"),
                _ => {}
            },
            ev = x_ev.recv() => match ev.unwrap() {
                Event::Authenticated(p) | Event::Message { from: p, .. } => panic!("the outsider admitted or heard {p}"),
                _ => {}
            },
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    assert!(a_metrics.auth_failures.get() >= 1, "A counted the failed proof");
    assert!(x_metrics.auth_failures.get() >= 1, "the outsider counted A's failed proof");
    assert!(!a.is_authenticated(&x.peer_id()));
    assert!(matches!(x.open_bulk(a.peer_id()).await, Err(mesh::MeshError::NotAuthenticated(_))));
}
