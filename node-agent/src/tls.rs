//! The HTTP API over TLS (issue 17: no clear-text token over a network).
//!
//! An API bound to a loopback address stays plain HTTP (the token never leaves the host). Any
//! other address is served over TLS with rustls: the operator's certificate and key
//! (`--api-cert`, `--api-key`, PEM), or else a self-signed certificate the agent makes once
//! and keeps in its data dir (`api-cert.pem`, `api-key.pem`). Either way the agent writes the
//! certificate's SHA-256 fingerprint to `api.fingerprint`, and the CLI *pins* it: it talks to
//! an `https://` API only if the certificate it is shown has the fingerprint it was given
//! (`--api-fingerprint`, `LIQUID_API_FINGERPRINT`, or the data dir's `api.fingerprint`). No CA
//! is involved, so a self-signed certificate is as safe as a CA-signed one and nothing on the
//! path can stand in for the agent. `--api-insecure-plaintext` keeps plain HTTP on a private
//! network, loudly.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::Digest as _;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// The certificate and key the agent makes for itself, in its data dir.
pub const SELF_CERT: &str = "api-cert.pem";
/// Its private key (mode 0600).
pub const SELF_KEY: &str = "api-key.pem";
/// The served certificate's SHA-256 fingerprint, hex, for the CLI to pin.
pub const FINGERPRINT: &str = "api.fingerprint";
/// How long a client may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes ring the process's rustls provider (reqwest builds a TLS configuration for every
/// client, even a plain-HTTP one, and panics without a provider). Idempotent.
pub fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The SHA-256 fingerprint of a certificate, hex.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    hex::encode(sha2::Sha256::digest(cert.as_ref()))
}

/// The server side: what to serve, and the fingerprint to publish.
pub struct ServerTls {
    /// The rustls configuration.
    pub config: Arc<rustls::ServerConfig>,
    /// The certificate's fingerprint.
    pub fingerprint: String,
}

/// Loads the operator's certificate and key, or the agent's own (made on first use, with the
/// bind address, `localhost` and the node's name as subject names).
pub fn server(data_dir: &Path, operator: Option<(&Path, &Path)>, bind: IpAddr, name: &str) -> Result<ServerTls> {
    let (cert_path, key_path) = match operator {
        Some((c, k)) => (c.to_path_buf(), k.to_path_buf()),
        None => {
            let (c, k) = (data_dir.join(SELF_CERT), data_dir.join(SELF_KEY));
            if !c.exists() || !k.exists() {
                let mut names = vec!["localhost".to_string(), name.to_string()];
                if !bind.is_unspecified() {
                    names.push(bind.to_string());
                }
                let made = rcgen::generate_simple_self_signed(names).context("making the API's certificate")?;
                mesh::identity::write_private(&k, made.key_pair.serialize_pem().as_bytes())
                    .with_context(|| format!("writing {}", k.display()))?;
                std::fs::write(&c, made.cert.pem()).with_context(|| format!("writing {}", c.display()))?;
            }
            (c, k)
        }
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .and_then(|it| it.collect())
        .with_context(|| format!("{}: not a PEM certificate file", cert_path.display()))?;
    let Some(leaf) = certs.first() else { bail!("{}: no certificate in it", cert_path.display()) };
    let fingerprint = fingerprint(leaf);
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .with_context(|| format!("{}: not a PEM private key", key_path.display()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .with_context(|| format!("{} and {} do not make a usable key pair", cert_path.display(), key_path.display()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(ServerTls { config: Arc::new(config), fingerprint })
}

/// A TCP listener whose connections are TLS streams. Handshakes run in their own tasks (with a
/// deadline), so a slow or silent client cannot hold up the others.
pub struct TlsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(tokio_rustls::server::TlsStream<tokio::net::TcpStream>, SocketAddr)>,
}

impl TlsListener {
    /// Starts accepting on `tcp`.
    pub fn new(tcp: TcpListener, config: Arc<rustls::ServerConfig>) -> Result<TlsListener> {
        let local = tcp.local_addr()?;
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let (tx, ready) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::debug!(error = %e, "API accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (acceptor, ready) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = ready.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "API TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "API TLS handshake timed out"),
                    }
                });
                if tx.is_closed() {
                    break;
                }
            }
        });
        Ok(TlsListener { local, ready })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accept task never ends while the listener lives.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> tokio::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// Accepts exactly the certificate with the pinned fingerprint (any name, any issuer); the
/// handshake's signatures are still checked.
#[derive(Debug)]
struct Pinned {
    fingerprint: String,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = fingerprint(end_entity);
        if got == self.fingerprint {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "the agent's certificate has fingerprint {got}, not the pinned {} (a different agent, or someone in between)",
                self.fingerprint
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// An HTTP client for the API: plain for `http://`, pinned TLS for `https://`.
pub fn client(base: &str, pin: Option<&str>) -> Result<reqwest::Client> {
    install_provider();
    if !base.starts_with("https://") {
        return Ok(reqwest::Client::new());
    }
    let Some(pin) = pin else {
        bail!(
            "{base} is served over TLS: give its certificate's fingerprint with --api-fingerprint (it is in the agent's data dir, {FINGERPRINT})"
        );
    };
    let pin = pin.trim().to_ascii_lowercase().replace(':', "");
    if pin.len() != 64 || !pin.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("--api-fingerprint {pin:?} is not a SHA-256 fingerprint (64 hex digits)");
    }
    let provider = provider();
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned { fingerprint: pin, provider }))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    reqwest::Client::builder().use_preconfigured_tls(config).build().context("building the API client")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The server's own certificate is made once and kept; the CLI's client accepts it only
    /// with the right pin.
    #[tokio::test]
    async fn a_pinned_client_talks_only_to_the_pinned_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let tls = server(dir.path(), None, "127.0.0.1".parse().unwrap(), "node-1").unwrap();
        let again = server(dir.path(), None, "127.0.0.1".parse().unwrap(), "node-1").unwrap();
        assert_eq!(tls.fingerprint, again.fingerprint, "made once, then reused");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(SELF_KEY)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let listener = TlsListener::new(tcp, tls.config.clone()).unwrap();
        let app = axum::Router::new().route("/x", axum::routing::get(|| async { "over tls" }));
        tokio::spawn(async move { axum::serve(listener, app).await });
        let base = format!("https://{addr}");
        let good = client(&base, Some(&tls.fingerprint)).unwrap();
        let body = good.get(format!("{base}/x")).send().await.unwrap().text().await.unwrap();
        assert_eq!(body, "over tls");
        let wrong = client(&base, Some(&"0".repeat(64))).unwrap();
        let e = wrong.get(format!("{base}/x")).send().await.unwrap_err();
        assert!(format!("{e:?}").contains("fingerprint"), "{e:?}");
        assert!(client(&base, None).is_err(), "https without a pin is refused");
        assert!(client(&base, Some("nope")).is_err());
        // Plain HTTP to the TLS port fails: the token is never sent in the clear by mistake.
        let plain = client("http://x", None).unwrap().get(format!("http://{addr}/x")).send().await;
        assert!(plain.is_err() || !plain.unwrap().status().is_success());
    }
}
