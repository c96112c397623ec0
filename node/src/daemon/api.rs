//! The local control API: HTTP/JSON on loopback.
//!
//! Reading endpoints are open to local processes; mutating ones need the token the daemon
//! writes to `<data_dir>/api.token` (mode 0600), sent as `Authorization: Bearer <token>`.

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::Ctx;
use super::core::{CoreMsg, ReleaseView, StatusView};

#[derive(Clone)]
struct Api {
    ctx: Arc<Ctx>,
    core: mpsc::Sender<CoreMsg>,
    token_hash: blake3::Hash,
}

/// Body of `POST /v1/publish`.
#[derive(Debug, Serialize, Deserialize)]
pub struct PublishRequest {
    /// A release directory (as made by `upswarm release create`) on this machine.
    pub dir: PathBuf,
}

/// Error body of every endpoint.
#[derive(Debug, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
}

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
pub fn router(ctx: Arc<Ctx>, core: mpsc::Sender<CoreMsg>, token: &str) -> Router {
    let api = Api {
        ctx,
        core,
        token_hash: blake3::hash(token.as_bytes()),
    };
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/releases", get(releases))
        .route("/v1/publish", post(publish))
        .route("/metrics", get(metrics))
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
            Some(_) => Err(error(StatusCode::UNAUTHORIZED, "wrong API token")),
            None => Err(error(
                StatusCode::UNAUTHORIZED,
                "this call changes the node: send the token from <data_dir>/api.token as `Authorization: Bearer …`",
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
        Err(e) => Err(error(StatusCode::UNPROCESSABLE_ENTITY, e)),
    }
}

async fn metrics(State(api): State<Api>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        api.ctx.metrics.render(),
    )
}
