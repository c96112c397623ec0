//! Serving chunks, chunk indexes and availability bitmaps to peers.
//!
//! Owns the answers to inbound fetch requests and their limits (permits, upload slots, watchers).
//! It never writes to the chunk store, the sled database or the bitmaps (a damaged blob is dropped
//! by the store's own read and fetched again by the core), and it reads disk only in
//! `spawn_blocking`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use tracing::{debug, warn};
use upswarm_content::ContentError;
use upswarm_net::InboundFetch;
use upswarm_proto::fetch::{Answer, FetchResponse, MAX_HAVE_WAIT_MS, MAX_RESPONSE_BYTES, Want};

use super::core::CoreMsg;
use super::ctx::Ctx;
use super::metrics::Metrics;
use super::uploads::Uploads;

/// Requests other than chunk uploads served at once; more wait in the (bounded) channel,
/// and beyond that the network task answers `Busy`.
const CONCURRENT: usize = 64;
/// How long a chunk request waits for an upload slot before it is answered `Busy`.
const SLOT_WAIT: Duration = Duration::from_secs(2);
/// Chunk requests waiting for an upload slot at most; more are answered `Busy` at once.
const SLOT_QUEUE: usize = 256;
/// A slot is given back after this long even if the network never reported the answer
/// sent or failed (it always should: the fetch protocol times a response out at 15 s).
const SLOT_HOLD_MAX: Duration = Duration::from_secs(30);
/// `HaveChanged` requests held open at once; more are answered at once, like `Have`.
const WATCHERS: usize = 1024;

/// Serves inbound fetch requests until the channel closes. A blob found damaged on disk
/// while serving is removed by the store and reported to the core on `damaged`, which
/// gets it back (from the assembled artifact or from peers).
///
/// Chunk uploads take one of `transfer.upload_slots` slots ([`Uploads`]), held until the
/// answer has been written to the peer's stream: the uplink carries a few chunks at full
/// speed rather than dozens at a crawl, so each chunk reaches a first holder soon and is
/// shared on from there (BitTorrent's upload slots, per chunk); a free slot goes to the
/// chunk sent least often. A request that finds no slot within [`SLOT_WAIT`] is answered
/// `Busy`, and the requester asks another holder.
///
/// A `HaveChanged` request is held (up to [`WATCHERS`] of them, outside the other limits)
/// until this node's bitmap for the artifact changes: its peers learn of a new chunk as
/// soon as it is stored, not at their next poll.
pub(crate) async fn serve(
    ctx: Arc<Ctx>,
    mut inbound: mpsc::Receiver<InboundFetch>,
    damaged: mpsc::Sender<CoreMsg>,
) {
    let permits = Arc::new(Semaphore::new(CONCURRENT));
    let slots = match ctx.config.transfer.upload_slots {
        0 => None,
        n => Some(Uploads::new(n, SLOT_QUEUE)),
    };
    let watchers = Arc::new(Semaphore::new(WATCHERS));
    while let Some(fetch) = inbound.recv().await {
        // Chunk uploads wait for a slot (bounded below), watchers take a watcher place (or
        // are answered at once), everything else waits for a permit.
        let mut wait = true;
        let upload = match (&slots, &fetch.request.want) {
            (Some(slots), Want::Blob { hash, max_len }) => Some((slots.clone(), *hash, *max_len)),
            _ => None,
        };
        let permit = match (&upload, &fetch.request.want) {
            (Some(_), _) => None,
            (None, Want::HaveChanged { .. }) => {
                let p = watchers.clone().try_acquire_owned().ok();
                wait = p.is_some();
                p
            }
            _ => {
                let Ok(p) = permits.clone().acquire_owned().await else {
                    break;
                };
                Some(p)
            }
        };
        let (ctx, damaged) = (ctx.clone(), damaged.clone());
        tokio::spawn(async move {
            let slot = match upload {
                None => None,
                Some((slots, hash, len)) => {
                    match slots.take(fetch.peer, hash, len, SLOT_WAIT).await {
                        Some(s) => Some(s),
                        None => {
                            Metrics::inc(&ctx.metrics.requests_busy);
                            let busy = FetchResponse::new(Answer::Busy);
                            let _ = ctx.client.respond(fetch.id, fetch.channel, busy).await;
                            return;
                        }
                    }
                }
            };
            debug!(peer = %fetch.peer, want = ?fetch.request.want, "serving");
            let answer = answer(&ctx, fetch.request.want, wait, &damaged).await;
            debug!(peer = %fetch.peer, ?answer, "answered");
            // Returns once the answer is written: the slot is held until then.
            let sent = ctx
                .client
                .respond(fetch.id, fetch.channel, FetchResponse::new(answer));
            let _ = tokio::time::timeout(SLOT_HOLD_MAX, sent).await;
            drop((slot, permit));
        });
    }
}

/// The answer to `want`; `wait`: a `HaveChanged` may be held open.
async fn answer(ctx: &Arc<Ctx>, want: Want, wait: bool, damaged: &mpsc::Sender<CoreMsg>) -> Answer {
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
        Want::HaveChanged {
            held,
            wait_ms,
            chunk_index,
        } => {
            let wait_ms = if wait {
                wait_ms.min(MAX_HAVE_WAIT_MS)
            } else {
                0
            };
            let deadline = tokio::time::Instant::now() + Duration::from_millis(u64::from(wait_ms));
            match ctx
                .haves
                .wait_changed(&chunk_index, held as usize, deadline)
                .await
            {
                Some(bitmap) => Answer::Have {
                    bitmap: bitmap.as_bytes().to_vec(),
                },
                None => Answer::DontHave,
            }
        }
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
