//! The HTTP API: JSON under `/v1/`, Prometheus text at `/metrics`. Every route needs the
//! bearer token from the data dir's `api.token`; without it the answer is 401 and nothing
//! happens.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::handler::Handler;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use liquid_core::objects::{Change, Durability, ObjectError, Reply, Request as ObjRequest};
use prometheus_client::registry::Registry;
use serde::Deserialize;
use state_sync::ops::Op;
use state_sync::{Heads, ObjectName};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::daemon::inbox::DriverMsg;
use crate::views::{BlockedJson, ListedJson, MANIFEST_HEADER, MemberJson, NEXT_AFTER, ObjectJson, PlacementChange};

/// The largest request body: an object import or an operation batch.
pub const BODY_BYTES_MAX: usize = 16 * 1024 * 1024;

/// The largest module a deploy accepts (the runtime's own limit).
pub const MODULE_BYTES_MAX: usize = 64 * 1024 * 1024;

#[derive(Clone)]
struct AppState {
    modules: Arc<wasm_host::store::ModuleStore>,
    trust: Arc<crate::signing::Trust>,
    token: Arc<str>,
    driver: mpsc::Sender<DriverMsg>,
    registry: Arc<Registry>,
    changes: broadcast::Sender<ObjectName>,
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

async fn ask<T>(st: &AppState, make: impl FnOnce(oneshot::Sender<T>) -> DriverMsg) -> Result<T, Response> {
    let (tx, rx) = oneshot::channel();
    st.driver.send(make(tx)).await.map_err(|_| error(StatusCode::SERVICE_UNAVAILABLE, "the agent is shutting down"))?;
    rx.await.map_err(|_| error(StatusCode::SERVICE_UNAVAILABLE, "the agent is shutting down"))
}

async fn status(State(st): State<AppState>) -> Response {
    match ask(&st, DriverMsg::Status).await {
        Ok(s) => Json(s).into_response(),
        Err(r) => r,
    }
}

async fn nodes(State(st): State<AppState>) -> Response {
    match ask(&st, DriverMsg::Nodes).await {
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

/// A refused request, before it reaches the core.
struct BadRequest(String);

impl IntoResponse for BadRequest {
    fn into_response(self) -> Response {
        error(StatusCode::BAD_REQUEST, &self.0)
    }
}

fn object_name(ns: &str, key: &str) -> Result<ObjectName, BadRequest> {
    ObjectName::new(ns, key).map_err(|e| BadRequest(e.to_string()))
}

/// An object the API may write: not in a reserved namespace.
fn writable_object(ns: &str, key: &str) -> Result<ObjectName, BadRequest> {
    if ns.starts_with(liquid_core::functions::RESERVED_PREFIX) {
        return Err(BadRequest(format!(
            "namespace {ns:?} is reserved for the system (liquid-fn is the function registry: use `liquid fn deploy`/`rm`)"
        )));
    }
    object_name(ns, key)
}

fn object_error(e: &ObjectError) -> Response {
    let (code, kind) = match e {
        ObjectError::Damaged { kept, .. } => {
            let body = serde_json::json!({ "error": e.to_string(), "kind": "damaged", "kept": kept });
            return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
        }
        ObjectError::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
        ObjectError::Invalid { .. } => (StatusCode::BAD_REQUEST, "invalid"),
        ObjectError::Unavailable { .. } => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        // The node holds all the objects it may: storage, like a full disk.
        ObjectError::Full { what: "objects", .. } => (StatusCode::INSUFFICIENT_STORAGE, "full"),
        ObjectError::Full { .. } => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
        ObjectError::Quota { .. } => (StatusCode::FORBIDDEN, "quota"),
        ObjectError::Storage { .. } => (StatusCode::INSUFFICIENT_STORAGE, "storage"),
        ObjectError::Disk { message, .. } if disk_full(message) => (StatusCode::INSUFFICIENT_STORAGE, "disk_full"),
        ObjectError::Disk { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "disk"),
        ObjectError::HeadsTimeout { .. } => (StatusCode::GATEWAY_TIMEOUT, "heads_timeout"),
        ObjectError::Quorum { .. } => (StatusCode::GATEWAY_TIMEOUT, "quorum"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    };
    (code, Json(serde_json::json!({ "error": e.to_string(), "kind": kind }))).into_response()
}

/// Whether the disk's error is "no space" (ENOSPC) or "quota exceeded" (EDQUOT): the driver
/// passes the OS error's text, which ends in `(os error N)`.
fn disk_full(message: &str) -> bool {
    message.contains("(os error 28)") || message.contains("(os error 122)")
}

fn value_json(reply: Reply) -> Response {
    match reply {
        Reply::Value { object, snapshot, durable_on } => Json(ObjectJson {
            object: object.to_string(),
            value: snapshot.value,
            heads: snapshot.heads.to_hex(),
            durable_on: Some(durable_on).filter(|n| *n > 0),
        })
        .into_response(),
        Reply::Error(e) => object_error(&e),
        _ => error(StatusCode::INTERNAL_SERVER_ERROR, "unexpected reply from the core"),
    }
}

async fn object_call(st: &AppState, req: ObjRequest) -> Result<Reply, Response> {
    ask(st, |tx| DriverMsg::Object(req, tx)).await
}

#[derive(Deserialize)]
struct GetQuery {
    /// Comma-separated heads the answer must include.
    after: Option<String>,
}

async fn object_get(
    State(st): State<AppState>,
    Path((ns, key)): Path<(String, String)>,
    Query(q): Query<GetQuery>,
) -> Response {
    let object = match object_name(&ns, &key) {
        Ok(o) => o,
        Err(r) => return r.into_response(),
    };
    let after = match q.after.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(list) => match Heads::parse_hex(&list.split(',').collect::<Vec<_>>()) {
            Ok(h) => Some(h),
            Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
        },
    };
    match object_call(&st, ObjRequest::Get { object, after }).await {
        Ok(reply) => value_json(reply),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct WriteQuery {
    /// `local` (default) or `quorum`.
    durability: Option<String>,
}

fn durability(q: &WriteQuery) -> Result<Durability, BadRequest> {
    match q.durability.as_deref() {
        None | Some("local") => Ok(Durability::Local),
        Some("quorum") => Ok(Durability::Quorum),
        Some(other) => Err(BadRequest(format!("durability {other:?}: use local or quorum"))),
    }
}

async fn object_post(
    State(st): State<AppState>,
    Path((ns, key)): Path<(String, String)>,
    Query(q): Query<WriteQuery>,
    body: Bytes,
) -> Response {
    let (object, durability) = match (writable_object(&ns, &key), durability(&q)) {
        (Ok(o), Ok(d)) => (o, d),
        (Err(r), _) | (_, Err(r)) => return r.into_response(),
    };
    let Ok(text) = std::str::from_utf8(&body) else {
        return error(StatusCode::BAD_REQUEST, "the body is not UTF-8 JSON");
    };
    let ops = match Op::parse_batch(text) {
        Ok(ops) if ops.is_empty() => return error(StatusCode::BAD_REQUEST, "an empty list of operations"),
        Ok(ops) => ops,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!(
                    "the body must be a JSON list of operations, e.g. [{{\"op\":\"set\",\"path\":\"a.b\",\"value\":1}}]: {e}"
                ),
            );
        }
    };
    match object_call(&st, ObjRequest::Write { object, change: Change::Ops(ops), durability }).await {
        Ok(reply) => value_json(reply),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct ListQuery {
    prefix: Option<String>,
    after: Option<String>,
    limit: Option<usize>,
}

/// The most names in one page of a listing.
const LIST_PAGE_MAX: usize = 10_000;

async fn object_list(State(st): State<AppState>, Query(q): Query<ListQuery>) -> Response {
    let limit = q.limit.unwrap_or(1000);
    if limit == 0 || limit > LIST_PAGE_MAX {
        return error(StatusCode::BAD_REQUEST, &format!("limit={limit}: a page holds 1 to {LIST_PAGE_MAX} names"));
    }
    let req = ObjRequest::List { prefix: q.prefix.unwrap_or_default(), after: q.after, limit };
    match object_call(&st, req).await {
        Ok(Reply::List(list)) => {
            // A full page may have a next one: say where it starts (the last name), so that
            // a client pages with `after=` until a page comes back short.
            let next = (list.len() == limit).then(|| list.last().map(|l| l.object.to_string())).flatten();
            let body = Json(
                list.into_iter()
                    .map(|l| ListedJson {
                        object: l.object.to_string(),
                        heads: l.heads.to_hex(),
                        replicas: l.replicas.iter().map(ToString::to_string).collect(),
                    })
                    .collect::<Vec<_>>(),
            );
            let mut h = HeaderMap::new();
            if let Some(v) = next.and_then(|n| header::HeaderValue::from_str(&n).ok()) {
                h.insert(NEXT_AFTER, v);
            }
            (h, body).into_response()
        }
        Ok(Reply::Error(e)) => object_error(&e),
        Ok(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "unexpected reply from the core"),
        Err(r) => r,
    }
}

async fn object_raw_get(State(st): State<AppState>, Path((ns, key)): Path<(String, String)>) -> Response {
    let object = match object_name(&ns, &key) {
        Ok(o) => o,
        Err(r) => return r.into_response(),
    };
    match object_call(&st, ObjRequest::Export { object }).await {
        Ok(Reply::Export { bytes, heads, .. }) => {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/octet-stream"));
            if let Ok(v) = header::HeaderValue::from_str(&heads.to_hex().join(",")) {
                h.insert("x-liquid-heads", v);
            }
            (h, bytes).into_response()
        }
        Ok(Reply::Error(e)) => object_error(&e),
        Ok(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "unexpected reply from the core"),
        Err(r) => r,
    }
}

async fn object_raw_put(
    State(st): State<AppState>,
    Path((ns, key)): Path<(String, String)>,
    Query(q): Query<WriteQuery>,
    body: Bytes,
) -> Response {
    let (object, durability) = match (writable_object(&ns, &key), durability(&q)) {
        (Ok(o), Ok(d)) => (o, d),
        (Err(r), _) | (_, Err(r)) => return r.into_response(),
    };
    match object_call(&st, ObjRequest::Write { object, change: Change::Import(body.to_vec()), durability }).await {
        Ok(reply) => value_json(reply),
        Err(r) => r,
    }
}

/// Server-sent events: the current value, then every new one (`event: value`, data an
/// [`ObjectJson`]); an `event: error` if the object cannot be read.
async fn object_watch(State(st): State<AppState>, Path((ns, key)): Path<(String, String)>) -> Response {
    let object = match object_name(&ns, &key) {
        Ok(o) => o,
        Err(r) => return r.into_response(),
    };
    // Subscribe before the first read so no change between the two is missed.
    let rx = st.changes.subscribe();
    let stream = futures::stream::unfold(
        (st, rx, object, None::<Vec<String>>, true),
        |(st, mut rx, object, last, first)| async move {
            loop {
                if !first {
                    match rx.recv().await {
                        Ok(name) if name != object => continue,
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
                let reply = object_call(&st, ObjRequest::Get { object: object.clone(), after: None }).await.ok()?;
                let event = match reply {
                    Reply::Value { snapshot, .. } => {
                        let heads = snapshot.heads.to_hex();
                        if last.as_ref() == Some(&heads) {
                            if first {
                                return None;
                            }
                            continue;
                        }
                        let json = ObjectJson {
                            object: object.to_string(),
                            value: snapshot.value,
                            heads: heads.clone(),
                            durable_on: None,
                        };
                        let ev = Event::default().event("value").json_data(&json).ok()?;
                        return Some((Ok::<_, std::convert::Infallible>(ev), (st, rx, object, Some(heads), false)));
                    }
                    Reply::Error(ObjectError::NotFound { .. }) if !first => continue,
                    Reply::Error(e) => Event::default().event("error").data(e.to_string()),
                    _ => return None,
                };
                return Some((Ok(event), (st, rx, object, last, false)));
            }
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}

/// Fault injection, only on agents started with `--dev`: cut this agent off from some peers.
async fn debug_block(State(st): State<AppState>, Json(body): Json<BlockedJson>) -> Response {
    let mut ids = Vec::new();
    for p in &body.peers {
        match p.parse::<libp2p::PeerId>().ok().and_then(|p| mesh::node_id(&p)) {
            Some(id) => ids.push(id),
            None => return error(StatusCode::BAD_REQUEST, &format!("{p:?} is not a peer id (12D3KooW…)")),
        }
    }
    match ask(&st, |tx| DriverMsg::Block(ids, tx)).await {
        Ok(list) => Json(BlockedJson { peers: list.iter().map(ToString::to_string).collect() }).into_response(),
        Err(r) => r,
    }
}

async fn function_deploy(
    State(st): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    use base64::Engine as _;
    let manifest = match headers.get(MANIFEST_HEADER) {
        None => wasm_host::Manifest::for_module(&name),
        Some(v) => {
            let text = v
                .to_str()
                .ok()
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                .and_then(|b| String::from_utf8(b).ok());
            let Some(text) = text else {
                return error(StatusCode::BAD_REQUEST, "the liquid-manifest header must be base64 of UTF-8 TOML");
            };
            match wasm_host::Manifest::from_toml(&text) {
                Ok(m) => m,
                Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
            }
        }
    };
    if let Err(e) = manifest.validate() {
        return error(StatusCode::BAD_REQUEST, &e.to_string());
    }
    if manifest.name != name {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("the URL names {name:?} but the manifest names {:?}", manifest.name),
        );
    }
    let signature = match headers.get(crate::signing::SIGNATURE_HEADER) {
        None => None,
        Some(v) => match v.to_str().ok().and_then(crate::signing::parse_header) {
            Some(sig) => Some(sig),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "the liquid-signature header must be PUBLISHER_HEX:SIGNATURE_HEX",
                );
            }
        },
    };
    // Hashing the module (up to 64 MiB) is needed only to check a signature; the store
    // hashes it again as it installs it.
    if signature.is_some() || st.trust.required {
        let hash = wasm_host::manifest::ModuleHash::of(&body);
        if let Err(why) = st.trust.check(signature.as_ref(), &hash, &manifest) {
            return error(StatusCode::FORBIDDEN, &format!("package refused: {why}"));
        }
    }
    let size = body.len() as u64;
    let modules = st.modules.clone();
    let m2 = manifest.clone();
    let installed = tokio::task::spawn_blocking(move || modules.install(&body, &m2)).await;
    let hash = match installed {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => return error(StatusCode::BAD_REQUEST, &format!("module refused: {e}")),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let deployed_at_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    let entry = liquid_core::functions::Entry {
        hash,
        size,
        manifest,
        deployed_by: String::new(),
        deployed_at_ms,
        deleted: false,
        signature,
    };
    match ask(&st, |tx| DriverMsg::Deploy(Box::new(entry), tx)).await {
        Ok(Reply::Value { .. }) => {
            (StatusCode::CREATED, Json(serde_json::json!({"name": name, "hash": hash.to_hex(), "size": size})))
                .into_response()
        }
        Ok(Reply::Error(e)) => object_error(&e),
        Ok(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "unexpected reply from the core"),
        Err(r) => r,
    }
}

async fn function_list(State(st): State<AppState>) -> Response {
    match ask(&st, DriverMsg::Functions).await {
        Ok(list) => Json(list.into_iter().filter(|f| !f.deleted).collect::<Vec<_>>()).into_response(),
        Err(r) => r,
    }
}

async fn function_get(State(st): State<AppState>, Path(name): Path<String>) -> Response {
    match ask(&st, DriverMsg::Functions).await {
        Ok(list) => match list.into_iter().find(|f| f.name == name && !f.deleted) {
            Some(f) => Json(f).into_response(),
            None => {
                error(StatusCode::NOT_FOUND, &format!("no function named {name:?} is deployed (as this node knows)"))
            }
        },
        Err(r) => r,
    }
}

async fn function_delete(State(st): State<AppState>, Path(name): Path<String>) -> Response {
    let object = match liquid_core::functions::registry_object(&name) {
        Ok(o) => o,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    match object_call(&st, ObjRequest::Get { object: object.clone(), after: None }).await {
        Ok(Reply::Value { .. }) => {}
        Ok(Reply::Error(e)) => return object_error(&e),
        Ok(_) => return error(StatusCode::INTERNAL_SERVER_ERROR, "unexpected reply from the core"),
        Err(r) => return r,
    }
    let write = match liquid_core::functions::registry::removal(&name) {
        Ok(w) => w,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e),
    };
    match object_call(&st, write).await {
        Ok(Reply::Value { .. }) => Json(serde_json::json!({"name": name, "deleted": true})).into_response(),
        Ok(Reply::Error(e)) => object_error(&e),
        Ok(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "unexpected reply from the core"),
        Err(r) => r,
    }
}

/// The HTTP status of an invocation error.
pub fn invoke_status(e: &wasm_host::InvokeError) -> StatusCode {
    use wasm_host::InvokeError as E;
    match e {
        E::NotFound(_) => StatusCode::NOT_FOUND,
        E::Overloaded(_) => StatusCode::TOO_MANY_REQUESTS,
        E::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        E::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        E::Invalid(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

async fn function_invoke(State(st): State<AppState>, Path(name): Path<String>, body: Bytes) -> Response {
    let input = body.to_vec();
    match ask(&st, |tx| DriverMsg::Invoke { name, input, depth: 0, reply: tx }).await {
        Ok(Ok(out)) => ([(header::CONTENT_TYPE, "application/octet-stream")], out).into_response(),
        Ok(Err(e)) => {
            (invoke_status(&e), Json(serde_json::json!({"error": e.to_string(), "kind": e.kind()}))).into_response()
        }
        Err(r) => r,
    }
}

async fn function_logs(State(st): State<AppState>, Path(name): Path<String>) -> Response {
    match ask(&st, |tx| DriverMsg::Logs(name, tx)).await {
        Ok(lines) => Json(lines).into_response(),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct MigrateBody {
    to: String,
}

/// Resolves a node given by peer id or by name.
async fn resolve_node(st: &AppState, given: &str) -> Result<liquid_core::NodeId, Response> {
    if let Some(id) = liquid_core::NodeId::parse(given) {
        return Ok(id);
    }
    let nodes = ask(st, DriverMsg::Nodes).await?;
    let found: Vec<&MemberJson> = nodes.iter().filter(|n| n.name == given).collect();
    match found.as_slice() {
        [one] => liquid_core::NodeId::parse(&one.id)
            .ok_or_else(|| error(StatusCode::INTERNAL_SERVER_ERROR, "a member has a malformed id")),
        [] => Err(error(
            StatusCode::NOT_FOUND,
            &format!("no member is named or has the id {given:?}: see `liquid nodes`"),
        )),
        _ => Err(error(StatusCode::CONFLICT, &format!("several members are named {given:?}: give the peer id"))),
    }
}

async fn function_migrate(
    State(st): State<AppState>,
    Path(name): Path<String>,
    body: Result<Json<MigrateBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("expected {{\"to\": NODE}}: {e}")),
    };
    let to = match resolve_node(&st, &body.to).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    match ask(&st, |reply| DriverMsg::Migrate { name, to, reply }).await {
        Ok(Ok(home)) => {
            Json(serde_json::json!({ "home": home.to_string(), "to": to.to_string(), "started": true })).into_response()
        }
        Ok(Err(e)) => error(StatusCode::CONFLICT, &e),
        Err(r) => r,
    }
}

async fn function_placement(
    State(st): State<AppState>,
    Path(name): Path<String>,
    body: Result<Json<PlacementChange>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(mut change) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("expected {{\"node\", \"tier\", \"auto\"}}: {e}")),
    };
    if let Some(n) = change.node.as_deref().filter(|n| !n.is_empty()) {
        match resolve_node(&st, n).await {
            Ok(id) => change.node = Some(id.to_string()),
            Err(r) => return r,
        }
    }
    match ask(&st, |reply| DriverMsg::SetPlacement { name, change, reply }).await {
        Ok(Ok(())) => Json(serde_json::json!({ "ok": true })).into_response(),
        Ok(Err(e)) => error(StatusCode::CONFLICT, &e),
        Err(r) => r,
    }
}

/// Every refusal answers JSON (`{"error": "..."}`), including those axum's extractors make
/// (a bad query string, a body over the limit, a wrong method), which are plain text.
async fn json_errors(res: Response) -> Response {
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return res;
    }
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return res;
    }
    let text = match axum::body::to_bytes(res.into_body(), 64 * 1024).await {
        Ok(b) => String::from_utf8_lossy(&b).trim().to_owned(),
        Err(_) => String::new(),
    };
    let msg = match status {
        StatusCode::PAYLOAD_TOO_LARGE => format!(
            "the request body is too large: at most {} MiB ({} MiB for a module)",
            BODY_BYTES_MAX >> 20,
            MODULE_BYTES_MAX >> 20
        ),
        _ if text.is_empty() => status.canonical_reason().unwrap_or("refused").to_owned(),
        _ => text,
    };
    error(status, &msg)
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such route: see docs/api.md")
}

/// The API's routes.
pub fn router(
    modules: Arc<wasm_host::store::ModuleStore>,
    trust: crate::signing::Trust,
    token: String,
    driver: mpsc::Sender<DriverMsg>,
    registry: Registry,
    changes: broadcast::Sender<ObjectName>,
    dev: bool,
) -> Router {
    let st = AppState {
        modules,
        trust: Arc::new(trust),
        token: token.into(),
        driver,
        registry: Arc::new(registry),
        changes,
    };
    let mut r = Router::new();
    if dev {
        r = r.route("/v1/debug/blocked", axum::routing::put(debug_block));
    }
    r.route("/v1/status", get(status))
        .route("/v1/nodes", get(nodes))
        .route("/v1/objects", get(object_list))
        .route("/v1/objects/{ns}/{key}", get(object_get).post(object_post))
        .route("/v1/objects/{ns}/{key}/raw", get(object_raw_get).put(object_raw_put))
        .route("/v1/objects/{ns}/{key}/watch", get(object_watch))
        .route("/v1/functions", get(function_list))
        .route(
            "/v1/functions/{name}",
            get(function_get)
                .delete(function_delete)
                .put(function_deploy.layer(DefaultBodyLimit::max(MODULE_BYTES_MAX))),
        )
        .route("/v1/functions/{name}/invoke", axum::routing::post(function_invoke))
        .route("/v1/functions/{name}/logs", get(function_logs))
        .route("/v1/functions/{name}/migrate", axum::routing::post(function_migrate))
        .route("/v1/functions/{name}/placement", axum::routing::post(function_placement))
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(st.clone(), require_token))
        .layer(middleware::map_response(json_errors))
        .with_state(st)
}
