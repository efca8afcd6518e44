//! The HTTP API: JSON under `/v1/`, Prometheus text at `/metrics`. Every route needs the
//! bearer token from the data dir's `api.token`; without it the answer is 401 and nothing
//! happens.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use liquid_core::Time;
use liquid_core::membership::MemberView;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::driver::ApiRequest;

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

#[derive(Clone)]
struct AppState {
    token: Arc<str>,
    driver: mpsc::Sender<ApiRequest>,
    registry: Arc<Registry>,
}

fn error(code: StatusCode, msg: &str) -> Response {
    (code, Json(serde_json::json!({ "error": msg }))).into_response()
}

async fn require_token(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let given =
        req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let ok = given.is_some_and(|t| blake3::hash(t.as_bytes()) == blake3::hash(st.token.as_bytes()));
    if !ok {
        return error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token: send `Authorization: Bearer <token>` with the token from the agent's data dir (api.token)",
        );
    }
    next.run(req).await
}

async fn ask<T>(st: &AppState, make: impl FnOnce(oneshot::Sender<T>) -> ApiRequest) -> Result<T, Response> {
    let (tx, rx) = oneshot::channel();
    st.driver.send(make(tx)).await.map_err(|_| error(StatusCode::SERVICE_UNAVAILABLE, "the agent is shutting down"))?;
    rx.await.map_err(|_| error(StatusCode::SERVICE_UNAVAILABLE, "the agent is shutting down"))
}

async fn status(State(st): State<AppState>) -> Response {
    match ask(&st, ApiRequest::Status).await {
        Ok(s) => Json(s).into_response(),
        Err(r) => r,
    }
}

async fn nodes(State(st): State<AppState>) -> Response {
    match ask(&st, ApiRequest::Nodes).await {
        Ok(s) => Json(s).into_response(),
        Err(r) => r,
    }
}

async fn metrics(State(st): State<AppState>) -> Response {
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &st.registry) {
        return error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string());
    }
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text).into_response()
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such route: see docs/api.md")
}

/// The API's routes.
pub fn router(token: String, driver: mpsc::Sender<ApiRequest>, registry: Registry) -> Router {
    let st = AppState { token: token.into(), driver, registry: Arc::new(registry) };
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/nodes", get(nodes))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(st.clone(), require_token))
        .with_state(st)
}
