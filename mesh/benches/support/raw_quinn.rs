//! The benches' raw-quinn baseline: one quinn client and one quinn server endpoint on loopback,
//! connected once, with nothing of Liquid in between.
//!
//! A self-signed rcgen certificate for `localhost`, rustls (TLS 1.3 only) with the ring
//! provider, quinn's default transport settings. The cipher order is the one knob
//! ([`Cipher`]): ChaCha20-Poly1305 first is what libp2p's TLS negotiates for the mesh, so a
//! comparison does not credit or blame the mesh for a cipher choice.
//!
//! The caller decides what the server does with the connection: it gets both ends in a
//! [`Pair`] and spawns its own accept loops.
//!
//! Included by `mesh/benches/transport.rs` and `node-agent/benches/migration.rs` with
//! `#[path = ...] mod raw_quinn;` (bench-only: the crates' normal dependencies do not change).
//! Both need `anyhow`, `quinn`, `rustls`, `rcgen` and `tokio` as dev-dependencies.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The cipher-suite order both ends offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cipher {
    /// rustls/ring's default order: AES-256-GCM first (what a plain quinn user gets).
    RingDefault,
    /// ChaCha20-Poly1305 first, like libp2p-tls (AES-128-GCM stays listed: QUIC needs it for
    /// the initial packets).
    ChaCha20,
}

/// Both ends of one connection, and the endpoints that keep them alive.
pub struct Pair {
    /// The server endpoint (dropping it ends its connections).
    pub server: quinn::Endpoint,
    /// The client endpoint.
    pub client: quinn::Endpoint,
    /// The client's end of the connection.
    pub conn: quinn::Connection,
    /// The server's end of the same connection.
    pub server_conn: quinn::Connection,
}

/// Two endpoints on 127.0.0.1, then one connection from the client to the server.
pub async fn connect(cipher: Cipher) -> Result<Pair> {
    let (server, client, server_addr) = endpoints(cipher)?;
    let accept = tokio::spawn({
        let server = server.clone();
        async move {
            let incoming = server.accept().await.context("the server endpoint closed")?;
            anyhow::Ok(incoming.await?)
        }
    });
    let conn = client.connect(server_addr, "localhost")?.await?;
    let server_conn = accept.await??;
    Ok(Pair { server, client, conn, server_conn })
}

/// The ring provider with `cipher`'s order.
fn provider(cipher: Cipher) -> Arc<rustls::crypto::CryptoProvider> {
    use rustls::crypto::ring::cipher_suite as cs;
    let mut p = rustls::crypto::ring::default_provider();
    if cipher == Cipher::ChaCha20 {
        p.cipher_suites =
            vec![cs::TLS13_CHACHA20_POLY1305_SHA256, cs::TLS13_AES_256_GCM_SHA384, cs::TLS13_AES_128_GCM_SHA256];
    }
    Arc::new(p)
}

/// A server and a client endpoint on loopback, and the server's address.
fn endpoints(cipher: Cipher) -> Result<(quinn::Endpoint, quinn::Endpoint, SocketAddr)> {
    let rcgen::CertifiedKey { cert, key_pair } = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
    let cert_der: CertificateDer<'static> = cert.der().clone();
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pair.serialize_der()));

    let server_tls = rustls::ServerConfig::builder_with_provider(provider(cipher))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(vec![cert_der.clone()], key_der)?;
    let server_cfg = quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(server_tls)?));
    let server = quinn::Endpoint::server(server_cfg, "127.0.0.1:0".parse()?)?;
    let server_addr = server.local_addr()?;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert_der)?;
    let client_tls = rustls::ClientConfig::builder_with_provider(provider(cipher))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut client = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
    client.set_default_client_config(quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(client_tls)?)));
    Ok((server, client, server_addr))
}
