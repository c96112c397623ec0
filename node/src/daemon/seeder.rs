//! Serving chunks, chunk indexes and availability bitmaps to peers.

use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc};
use tracing::{debug, warn};
use upswarm_content::ContentError;
use upswarm_net::InboundFetch;
use upswarm_proto::fetch::{Answer, FetchResponse, MAX_RESPONSE_BYTES, Want};

use super::Ctx;
use super::core::CoreMsg;
use super::metrics::Metrics;

/// Requests served at once; more wait in the (bounded) channel, and beyond that the network
/// task answers `Busy`.
const CONCURRENT: usize = 64;

/// Serves inbound fetch requests until the channel closes. A blob found damaged on disk
/// while serving is removed by the store and reported to the core on `damaged`, which
/// gets it back (from the assembled artifact or from peers).
pub(crate) async fn serve(
    ctx: Arc<Ctx>,
    mut inbound: mpsc::Receiver<InboundFetch>,
    damaged: mpsc::Sender<CoreMsg>,
) {
    let permits = Arc::new(Semaphore::new(CONCURRENT));
    while let Some(fetch) = inbound.recv().await {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let ctx = ctx.clone();
        let damaged = damaged.clone();
        tokio::spawn(async move {
            debug!(peer = %fetch.peer, want = ?fetch.request.want, "serving");
            let answer = answer(&ctx, fetch.request.want, &damaged).await;
            debug!(peer = %fetch.peer, ?answer, "answered");
            let _ = ctx
                .client
                .respond(fetch.channel, FetchResponse::new(answer))
                .await;
            drop(permit);
        });
    }
}

async fn answer(ctx: &Arc<Ctx>, want: Want, damaged: &mpsc::Sender<CoreMsg>) -> Answer {
    match want {
        Want::Signed { kind, about } => {
            let envelopes: Vec<serde_bytes::ByteBuf> = ctx
                .signed
                .list(kind, &about)
                .into_iter()
                .map(serde_bytes::ByteBuf::from)
                .collect();
            if envelopes.is_empty() {
                Answer::DontHave
            } else {
                Answer::Signed { envelopes }
            }
        }
        Want::Have { chunk_index } => match ctx.haves.get(&chunk_index) {
            Some(bitmap) => Answer::Have {
                bitmap: bitmap.as_bytes().to_vec(),
            },
            None => Answer::DontHave,
        },
        Want::Blob { hash, max_len } => {
            // The requester's `max_len` only limits the answer; it never changes the store.
            let limit = u64::from(max_len).min(MAX_RESPONSE_BYTES as u64);
            let store = ctx.store.clone();
            match tokio::task::spawn_blocking(move || store.get(&hash, limit)).await {
                Ok(Ok(bytes)) => {
                    ctx.upload_limit.acquire(bytes.len()).await;
                    Metrics::inc(&ctx.metrics.blobs_served);
                    Metrics::add(&ctx.metrics.bytes_served, bytes.len() as u64);
                    Answer::Blob { bytes }
                }
                Ok(Err(ContentError::Missing { .. })) => {
                    Metrics::inc(&ctx.metrics.requests_dont_have);
                    Answer::DontHave
                }
                Ok(Err(ContentError::Corrupt { .. })) => {
                    warn!(%hash, "a stored blob was damaged; getting it again");
                    Metrics::inc(&ctx.metrics.requests_dont_have);
                    let _ = damaged.send(CoreMsg::Damaged { blob: hash }).await;
                    Answer::DontHave
                }
                Ok(Err(e)) => {
                    debug!(%hash, "cannot serve: {e}");
                    Metrics::inc(&ctx.metrics.requests_dont_have);
                    Answer::DontHave
                }
                Err(_) => Answer::Busy,
            }
        }
    }
}
