//! The local control API: HTTP/JSON on loopback.
//!
//! Reading endpoints are open to local processes; mutating ones need the token the daemon
//! writes to `<data_dir>/api.token` (mode 0600), sent as `Authorization: Bearer <token>`.
//!
//! Every input is checked at the door: bodies are at most [`MAX_BODY`] bytes, unknown
//! fields are refused, and every field has a bound (versions: valid semver of at most
//! [`MAX_VERSION_LEN`] characters; paths, addresses, ids, envelopes: a length and a
//! charset). A refused request changes nothing.
//!
//! Owns the routes, the token check and those bounds. It keeps no state of its own and persists
//! nothing: releases, signed messages and votes go to the core (`CoreMsg`), transitions and the
//! operator's preferences to the apply actor (`ApplyHandle`), a dial to the network client; it
//! never checks a signature itself (the core does).

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};

use super::apply::{ApplyError, ApplyHandle, HistoryEntry, Kind, Origin, TransitionRequest};
use super::core::{
    CheckItem, CoreMsg, ExplainView, PublishError, ReleaseView, ResolveError, SignedError,
    StatusView, VoteError,
};
use super::ctx::Ctx;
use super::voting::ActivationView;
pub use crate::api::{
    ApiError, ControlRequest, GcRequest, PeerRequest, PublishRequest, TransitionResult,
    VersionRequest, VoteRequest,
};
use crate::api::{FleetQuery, FleetView, MAX_ADDR_LEN, MAX_PATH_LEN, bounded_version};

#[derive(Clone)]
struct Api {
    ctx: Arc<Ctx>,
    core: mpsc::Sender<CoreMsg>,
    apply: Option<ApplyHandle>,
    token_hash: blake3::Hash,
}

/// Largest request body accepted.
pub const MAX_BODY: usize = 256 * 1024;
/// A failed call: status and message, rendered as an [`ApiError`] body.
#[derive(Debug)]
struct Failure(StatusCode, String);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.0, Json(ApiError { error: self.1 })).into_response()
    }
}

fn error(status: StatusCode, msg: impl Into<String>) -> Failure {
    Failure(status, msg.into())
}

/// The router.
pub fn router(
    ctx: Arc<Ctx>,
    core: mpsc::Sender<CoreMsg>,
    apply_handle: Option<ApplyHandle>,
    token: &str,
) -> Router {
    let api = Api {
        ctx,
        core,
        apply: apply_handle,
        token_hash: blake3::hash(token.as_bytes()),
    };
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/releases", get(releases))
        .route("/v1/publish", post(publish))
        .route("/v1/check", get(check))
        .route("/v1/history", get(history))
        .route("/v1/apply", post(apply))
        .route("/v1/rollback", post(rollback))
        .route("/v1/pin", post(pin))
        .route("/v1/unpin", post(unpin))
        .route("/v1/defer", post(defer))
        .route("/v1/explain", get(explain))
        .route("/v1/control", post(control))
        .route("/v1/activations", get(activations))
        .route("/v1/vote", post(vote))
        .route("/v1/proposal", post(proposal))
        .route("/v1/peers", post(add_peer))
        .route("/v1/root", post(root))
        .route("/v1/gc", post(gc))
        .route("/v1/fleet", get(fleet))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/", get(dashboard))
        .route("/ui", get(dashboard))
        .route(super::dashboard::STYLE_PATH, get(dashboard_style))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(api)
}

impl Api {
    fn authorised(&self, headers: &HeaderMap) -> Result<(), Failure> {
        let given = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match given {
            // Compare hashes, not the secrets, so timing says nothing about the token.
            Some(t) if blake3::hash(t.trim().as_bytes()) == self.token_hash => Ok(()),
            Some(_) => Err(error(
                StatusCode::UNAUTHORIZED,
                "wrong API token: pass --token-file with this daemon's <data_dir>/api.token",
            )),
            None => Err(error(
                StatusCode::UNAUTHORIZED,
                "this call changes the node and needs the API token: pass --token-file <data_dir>/api.token (or set UPSWARM_TOKEN_FILE)",
            )),
        }
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> CoreMsg) -> Result<T, Failure> {
        let (tx, rx) = oneshot::channel();
        self.core.send(make(tx)).await.map_err(|_| {
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the daemon is shutting down",
            )
        })?;
        rx.await.map_err(|_| {
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the daemon is shutting down",
            )
        })
    }
}

async fn status(State(api): State<Api>) -> Result<Json<StatusView>, Failure> {
    Ok(Json(api.ask(CoreMsg::Status).await?))
}

async fn releases(State(api): State<Api>) -> Result<Json<Vec<ReleaseView>>, Failure> {
    Ok(Json(api.ask(CoreMsg::Status).await?.releases))
}

async fn publish(
    State(api): State<Api>,
    headers: HeaderMap,
    body: Result<Json<PublishRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<ReleaseView>, Failure> {
    api.authorised(&headers)?;
    let Json(req) =
        body.map_err(|e| error(StatusCode::BAD_REQUEST, format!("bad request body: {e}")))?;
    if req.dir.as_os_str().len() > MAX_PATH_LEN {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!("dir: longer than {MAX_PATH_LEN} bytes"),
        ));
    }
    if !req.dir.is_absolute() {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!(
                "{}: the release directory must be an absolute path",
                req.dir.display()
            ),
        ));
    }
    match api
        .ask(|reply| CoreMsg::Publish {
            dir: req.dir,
            reply,
        })
        .await?
    {
        Ok(view) => Ok(Json(view)),
        Err(e @ PublishError::Superseded { .. }) => Err(error(StatusCode::CONFLICT, e.to_string())),
        Err(e) => Err(error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())),
    }
}

async fn metrics(State(api): State<Api>) -> impl IntoResponse {
    if let Ok(info) = api.ctx.client.info().await {
        api.ctx.metrics.peers_connected.store(
            info.connected.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }
    // Disk use: a walk of the data directory and a statvfs, off the async threads.
    let ctx = api.ctx.clone();
    let _ = tokio::task::spawn_blocking(move || {
        let used = ctx.disk.get(&ctx.layout).total;
        ctx.metrics.record_disk(used, &ctx.layout.root);
    })
    .await;
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        api.ctx.metrics.render(),
    )
}

type Body<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;

fn body<T>(b: Body<T>) -> Result<T, Failure> {
    b.map(|Json(v)| v)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("bad request body: {e}")))
}

impl Api {
    fn apply(&self) -> Result<&ApplyHandle, Failure> {
        self.apply.as_ref().ok_or_else(|| {
            error(
                StatusCode::CONFLICT,
                "this daemon manages no program (no [managed] section in its configuration)",
            )
        })
    }
}

/// The HTTP answer to an apply actor's error.
fn apply_failure(e: ApplyError) -> Failure {
    let status = match &e {
        ApplyError::Busy(_) => StatusCode::CONFLICT,
        ApplyError::Refused(_) | ApplyError::Postponed(_) | ApplyError::Invalid(_) => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        ApplyError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        ApplyError::Unfinished { .. } | ApplyError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, e.to_string())
}

async fn check(State(api): State<Api>) -> Result<Json<Vec<CheckItem>>, Failure> {
    api.apply()?;
    Ok(Json(api.ask(CoreMsg::Check).await?))
}

async fn history(State(api): State<Api>) -> Result<Json<Vec<HistoryEntry>>, Failure> {
    api.apply()?
        .history()
        .await
        .map(Json)
        .map_err(apply_failure)
}

/// 404 for a version or release this node does not have, 409 for one it refuses now.
fn resolve_failure(e: ResolveError) -> Failure {
    let status = if e.not_found() {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::CONFLICT
    };
    error(status, e.to_string())
}

/// `upswarm apply` / `upswarm rollback`: resolved by the core, run by the apply actor. The
/// transition runs on the actor's task: a client that goes away does not stop it.
async fn transition(
    api: &Api,
    req: VersionRequest,
    rollback: bool,
) -> Result<Json<TransitionResult>, Failure> {
    let a = api.apply()?.clone();
    let target = api
        .ask(|reply| CoreMsg::Resolve {
            version: req.version,
            force: req.force,
            rollback,
            reply,
        })
        .await?
        .map_err(resolve_failure)?;
    let version = target.to.version.to_string();
    let kind = if rollback {
        Kind::Rollback
    } else {
        Kind::Apply
    };
    let outcome = a
        .transition(TransitionRequest {
            kind,
            origin: Origin::Manual,
            target,
            mark_failed: None,
            note: None,
        })
        .await
        .map_err(apply_failure)?;
    Ok(Json(TransitionResult { version, outcome }))
}

async fn apply(
    State(api): State<Api>,
    headers: HeaderMap,
    b: Body<VersionRequest>,
) -> Result<Json<TransitionResult>, Failure> {
    api.authorised(&headers)?;
    transition(&api, body(b)?, false).await
}

async fn rollback(
    State(api): State<Api>,
    headers: HeaderMap,
    b: Body<VersionRequest>,
) -> Result<Json<TransitionResult>, Failure> {
    api.authorised(&headers)?;
    transition(&api, body(b)?, true).await
}

async fn gc(
    State(api): State<Api>,
    headers: HeaderMap,
    b: Body<GcRequest>,
) -> Result<Json<crate::daemon::gc::GcReport>, Failure> {
    api.authorised(&headers)?;
    let dry_run = body(b)?.dry_run;
    Ok(Json(api.ask(|reply| CoreMsg::Gc { dry_run, reply }).await?))
}

async fn pin(
    State(api): State<Api>,
    headers: HeaderMap,
    b: Body<VersionRequest>,
) -> Result<Json<serde_json::Value>, Failure> {
    api.authorised(&headers)?;
    let v = body(b)?
        .version
        .ok_or_else(|| error(StatusCode::BAD_REQUEST, "version: pin needs a version"))?;
    let shown = v.to_string();
    api.apply()?.pin(Some(v)).await.map_err(apply_failure)?;
    // Pinning to a version no release has is allowed (it may come), but said.
    let known = api
        .ask(CoreMsg::Status)
        .await?
        .releases
        .iter()
        .any(|r| r.version == shown);
    Ok(Json(serde_json::json!({ "pinned": shown, "known": known })))
}

async fn unpin(
    State(api): State<Api>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, Failure> {
    api.authorised(&headers)?;
    api.apply()?.pin(None).await.map_err(apply_failure)?;
    Ok(Json(serde_json::json!({ "pinned": null })))
}

async fn defer(
    State(api): State<Api>,
    headers: HeaderMap,
    b: Body<VersionRequest>,
) -> Result<Json<serde_json::Value>, Failure> {
    api.authorised(&headers)?;
    let req = body(b)?;
    let a = api.apply()?.clone();
    let target = api
        .ask(|reply| CoreMsg::Resolve {
            version: req.version,
            force: true,
            rollback: false,
            reply,
        })
        .await?
        .map_err(resolve_failure)?;
    let policy = &api.ctx.config.policy;
    let max = policy.max_defers;
    let d = a
        .defer(target.to.release, max, policy.defer_period)
        .await
        .map_err(|e| match e {
            ApplyError::Invalid(msg) => error(
                StatusCode::CONFLICT,
                format!("{}: {msg}", target.to.version),
            ),
            other => apply_failure(other),
        })?;
    Ok(Json(
        serde_json::json!({ "version": target.to.version.to_string(), "deferred_until": d.until, "count": d.count, "max": max }),
    ))
}

/// Query of `GET /v1/explain`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplainQuery {
    #[serde(default, deserialize_with = "bounded_version")]
    pub version: Option<semver::Version>,
}

async fn explain(
    State(api): State<Api>,
    q: Result<axum::extract::Query<ExplainQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ExplainView>, Failure> {
    let axum::extract::Query(q) = q.map_err(|e| error(StatusCode::BAD_REQUEST, e.to_string()))?;
    api.ask(|reply| CoreMsg::Explain {
        version: q.version,
        reply,
    })
    .await?
    .map(Json)
    .map_err(|e| error(StatusCode::NOT_FOUND, e.to_string()))
}

async fn fleet(
    State(api): State<Api>,
    q: Result<axum::extract::Query<FleetQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<FleetView>, Failure> {
    let axum::extract::Query(query) =
        q.map_err(|e| error(StatusCode::BAD_REQUEST, e.to_string()))?;
    api.ask(|reply| CoreMsg::Fleet { query, reply })
        .await?
        .map(Json)
        .map_err(|e| error(StatusCode::BAD_REQUEST, e.to_string()))
}

/// Headers of the dashboard's answers: the CSP, no sniffing, no referrer, no caching.
fn page_headers(content_type: &'static str) -> [(axum::http::HeaderName, &'static str); 5] {
    use axum::http::header;
    [
        (header::CONTENT_TYPE, content_type),
        (header::CONTENT_SECURITY_POLICY, super::dashboard::CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
    ]
}

/// `GET /` (and `/ui`): the read-only dashboard, from the views of `/v1/status`,
/// `/v1/explain` (each followed release), `/v1/fleet` and `/v1/activations`. No token.
async fn dashboard(State(api): State<Api>) -> Result<Response, Failure> {
    let status = api.ask(CoreMsg::Status).await?;
    let most = super::dashboard::MAX_ROLLOUTS;
    let rollouts = api.ask(|reply| CoreMsg::Rollouts { most, reply }).await?;
    let query = FleetQuery::default();
    let fleet = api
        .ask(|reply| CoreMsg::Fleet { query, reply })
        .await?
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let activations = api.ask(CoreMsg::Activations).await?;
    let page = super::dashboard::render(&super::dashboard::Dashboard {
        status,
        rollouts,
        fleet,
        activations,
        daemon_version: env!("CARGO_PKG_VERSION").to_string(),
        now: upswarm_trust::unix_now(),
    });
    Ok((page_headers("text/html; charset=utf-8"), page).into_response())
}

async fn dashboard_style() -> Response {
    (
        page_headers("text/css; charset=utf-8"),
        super::dashboard::STYLE,
    )
        .into_response()
}

/// How long `/healthz` and `/readyz` wait for the core before saying it does not answer.
const PROBE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// `GET /healthz`: 200 `ok` when the process is up and its core answers within
/// [`PROBE_WAIT`]; 503 otherwise. No token.
async fn healthz(State(api): State<Api>) -> (StatusCode, String) {
    match tokio::time::timeout(PROBE_WAIT, api.ask(CoreMsg::Ready)).await {
        Ok(Ok(_)) => (StatusCode::OK, "ok\n".into()),
        Ok(Err(Failure(_, why))) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the core did not answer within {} s\n",
                PROBE_WAIT.as_secs()
            ),
        ),
    }
}

/// `GET /readyz`: 200 with the checks when every one passes, 503 with them otherwise. No
/// token.
async fn readyz(State(api): State<Api>) -> Response {
    match tokio::time::timeout(PROBE_WAIT, api.ask(CoreMsg::Ready)).await {
        Ok(Ok(v)) => {
            let status = if v.ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            (status, Json(v)).into_response()
        }
        Ok(Err(f)) => f.into_response(),
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the core did not answer within {} s", PROBE_WAIT.as_secs()),
        )
        .into_response(),
    }
}

/// The envelope bytes of a [`ControlRequest`]-shaped body.
fn envelope(b: Body<ControlRequest>) -> Result<Vec<u8>, Failure> {
    let hex_text = body(b)?.envelope_hex;
    let hex_text = hex_text.trim();
    // The largest signed message carried (a manifest) is 64 KiB.
    let limit = 2 * upswarm_proto::manifest::MAX_MANIFEST_BYTES;
    if hex_text.len() > limit {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!(
                "envelope_hex: {} characters, more than the limit of {limit}",
                hex_text.len()
            ),
        ));
    }
    hex::decode(hex_text).map_err(|_| error(StatusCode::BAD_REQUEST, "envelope_hex: not hex"))
}

async fn control(
    State(api): State<Api>,
    headers: HeaderMap,
    b: Body<ControlRequest>,
) -> Result<Json<serde_json::Value>, Failure> {
    api.authorised(&headers)?;
    let bytes = envelope(b)?;
    api.ask(|reply| CoreMsg::Control { bytes, reply })
        .await?
        .map_err(|e| signed_failure("control message", e))?;
    Ok(Json(serde_json::json!({ "published": true })))
}

async fn activations(State(api): State<Api>) -> Result<Json<Vec<ActivationView>>, Failure> {
    Ok(Json(api.ask(CoreMsg::Activations).await?))
}

async fn vote(
    State(api): State<Api>,
    headers: HeaderMap,
    b: Body<VoteRequest>,
) -> Result<Json<ActivationView>, Failure> {
    api.authorised(&headers)?;
    let req = body(b)?;
    let proposal = (req.proposal.len() == 64)
        .then(|| upswarm_proto::Hash32::from_hex(&req.proposal).ok())
        .flatten()
        .ok_or_else(|| {
            error(
                StatusCode::BAD_REQUEST,
                format!(
                    "proposal: {} is not a proposal id (64 hex digits)",
                    short(&req.proposal)
                ),
            )
        })?;
    api.ask(|reply| CoreMsg::Vote {
        proposal,
        withhold: req.withhold,
        reply,
    })
    .await?
    .map(Json)
    .map_err(|e| {
        let status = match e {
            VoteError::UnknownProposal(_) => StatusCode::NOT_FOUND,
            VoteError::NoVoterKey => StatusCode::CONFLICT,
            VoteError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        error(status, e.to_string())
    })
}

async fn proposal(
    State(api): State<Api>,
    headers: HeaderMap,
    b: Body<ControlRequest>,
) -> Result<Json<serde_json::Value>, Failure> {
    api.authorised(&headers)?;
    let bytes = envelope(b)?;
    let id = api
        .ask(|reply| CoreMsg::Proposal { bytes, reply })
        .await?
        .map_err(|e| signed_failure("proposal", e))?;
    Ok(Json(serde_json::json!({ "proposal": id })))
}

/// How long `POST /v1/peers` waits for the connection.
const DIAL_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

async fn add_peer(
    State(api): State<Api>,
    headers: HeaderMap,
    b: Body<PeerRequest>,
) -> Result<Json<serde_json::Value>, Failure> {
    api.authorised(&headers)?;
    let req = body(b)?;
    if req.addr.len() > MAX_ADDR_LEN {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!("addr: longer than {MAX_ADDR_LEN} characters"),
        ));
    }
    let addr: upswarm_net::Multiaddr = req.addr.parse().map_err(|_| {
        error(
            StatusCode::BAD_REQUEST,
            format!("addr: {} is not a multiaddr", short(&req.addr)),
        )
    })?;
    // Answer when the connection is up or has failed; a dial that hangs (an address that
    // drops packets) is given up on after DIAL_WAIT.
    match tokio::time::timeout(DIAL_WAIT, api.ctx.client.dial(addr)).await {
        Ok(Ok(())) => Ok(Json(serde_json::json!({ "connected": req.addr }))),
        Ok(Err(e)) => Err(error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())),
        Err(_) => Err(error(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "cannot dial {}: no connection within {} s",
                req.addr,
                DIAL_WAIT.as_secs()
            ),
        )),
    }
}

async fn root(
    State(api): State<Api>,
    headers: HeaderMap,
    b: Body<ControlRequest>,
) -> Result<Json<serde_json::Value>, Failure> {
    api.authorised(&headers)?;
    let bytes = envelope(b)?;
    let version = api
        .ask(|reply| CoreMsg::Root { bytes, reply })
        .await?
        .map_err(|e| signed_failure("trust root", e))?;
    Ok(Json(serde_json::json!({ "root_version": version })))
}

/// A signed message the core did not take: 422 when it is invalid or untrusted, 409 when
/// it is valid but changes nothing (a trust root not newer than the current one).
fn signed_failure(what: &str, e: SignedError) -> Failure {
    let status = match e {
        SignedError::Rejected(_) => StatusCode::UNPROCESSABLE_ENTITY,
        SignedError::NotNewer { .. } => StatusCode::CONFLICT,
    };
    error(status, format!("{what} refused: {e}"))
}

/// A value for an error message: quoted, cut short if long.
fn short(s: &str) -> String {
    if s.chars().count() > 80 {
        let head: String = s.chars().take(80).collect();
        format!("{head:?}… ({} characters)", s.chars().count())
    } else {
        format!("{s:?}")
    }
}
