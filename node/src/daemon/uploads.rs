//! Upload slots: how many chunks this node sends at once, and which waiting request gets
//! the next free slot. Owns only that bookkeeping; the seeder asks for a slot before it
//! reads a chunk and holds it until the answer is written.
//!
//! The next slot goes to the waiting request for the chunk this node has sent least often
//! (ties: first come). A seed with one copy in the swarm so sends each chunk once, early,
//! before it sends any chunk twice — the aim of BitTorrent's super-seeding — and the
//! requests for chunks it already sent wait, and are answered `busy` if no slot comes, while
//! their requesters find those chunks at the peers that got them first.
//!
//! A chunk (a blob of at least [`BIG`] bytes) is not sent again while it is being sent, nor
//! for [`RESEND_GRACE`] after: its first receiver tells its peers of it within a round trip
//! (`have_changed`), so the second requester finds it there. Such a request is answered
//! `busy` at once, without taking a slot.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use upswarm_proto::Hash32;

/// Chunks remembered by how often they were sent; past this the counts start again.
const REMEMBERED: usize = 1 << 16;
/// Blobs at least this long are not sent twice at once (smaller ones — chunk indexes, tail
/// chunks — are cheap, and every newcomer asks for the chunk index first).
pub(crate) const BIG: u32 = 64 * 1024;
/// How long after a chunk was sent it is not sent again.
pub(crate) const RESEND_GRACE: Duration = Duration::from_secs(1);

/// A limited number of upload slots with a bounded queue of waiting requests.
#[derive(Debug)]
pub(crate) struct Uploads {
    inner: Mutex<Inner>,
    queue_max: usize,
}

#[derive(Debug)]
struct Inner {
    free: usize,
    waiting: Vec<Waiter>,
    sent: HashMap<Hash32, Sent>,
    seq: u64,
}

/// What is known of sending one blob.
#[derive(Debug, Default, Clone, Copy)]
struct Sent {
    times: u32,
    /// Sends under way.
    active: u32,
    /// When the last send ended.
    ended: Option<Instant>,
}

impl Sent {
    /// Being sent, or sent within [`RESEND_GRACE`]: its receiver is about to share it.
    fn fresh(&self, now: Instant) -> bool {
        self.active > 0
            || self
                .ended
                .is_some_and(|t| now.duration_since(t) < RESEND_GRACE)
    }
}

#[derive(Debug)]
struct Waiter {
    hash: Hash32,
    big: bool,
    seq: u64,
    tx: oneshot::Sender<Slot>,
}

/// One upload slot, given back when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    uploads: Arc<Uploads>,
    hash: Hash32,
    armed: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.armed {
            self.uploads.release(self.hash);
        }
    }
}

impl Inner {
    fn note_sending(&mut self, hash: Hash32) {
        if self.sent.len() >= REMEMBERED && !self.sent.contains_key(&hash) {
            self.sent.retain(|_, s| s.active > 0);
        }
        let s = self.sent.entry(hash).or_default();
        s.times += 1;
        s.active += 1;
    }

    fn note_ended(&mut self, hash: Hash32, now: Instant) {
        if let Some(s) = self.sent.get_mut(&hash) {
            s.active = s.active.saturating_sub(1);
            s.ended = Some(now);
        }
    }

    fn sent(&self, hash: &Hash32) -> Sent {
        self.sent.get(hash).copied().unwrap_or_default()
    }
}

impl Uploads {
    /// `slots` uploads at once (at least one); at most `queue_max` requests wait.
    pub(crate) fn new(slots: usize, queue_max: usize) -> Arc<Self> {
        Arc::new(Uploads {
            inner: Mutex::new(Inner {
                free: slots.max(1),
                waiting: Vec::new(),
                sent: HashMap::new(),
                seq: 0,
            }),
            queue_max,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing panics while holding it; a poisoned lock still holds consistent counts.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A slot to send the blob `hash` of at most `len` bytes, at once or within `wait`;
    /// `None` (answer `busy`) when the queue is full, no slot came in time, or it is a chunk
    /// just sent to another peer.
    pub(crate) async fn take(
        self: &Arc<Self>,
        hash: Hash32,
        len: u32,
        wait: Duration,
    ) -> Option<Slot> {
        let big = len >= BIG;
        let rx = {
            let mut inner = self.lock();
            if big && inner.sent(&hash).fresh(Instant::now()) {
                return None;
            }
            inner.waiting.retain(|w| !w.tx.is_closed());
            if inner.free > 0 && inner.waiting.is_empty() {
                inner.free -= 1;
                inner.note_sending(hash);
                return Some(Slot {
                    uploads: self.clone(),
                    hash,
                    armed: true,
                });
            }
            if inner.waiting.len() >= self.queue_max {
                return None;
            }
            let (tx, rx) = oneshot::channel();
            inner.seq += 1;
            let seq = inner.seq;
            inner.waiting.push(Waiter { hash, big, seq, tx });
            rx
        };
        // A slot sent just as the wait ran out is dropped with the receiver: given back.
        tokio::time::timeout(wait, rx)
            .await
            .ok()
            .and_then(Result::ok)
    }

    /// Takes back the slot that sent `hash` and hands it to the waiting request for the
    /// least-sent chunk, or keeps it. Waiting requests for a chunk just sent are let go.
    fn release(self: &Arc<Self>, hash: Hash32) {
        let mut inner = self.lock();
        let now = Instant::now();
        inner.note_ended(hash, now);
        loop {
            let best = {
                let inner = &*inner;
                inner
                    .waiting
                    .iter()
                    .enumerate()
                    .filter(|(_, w)| !w.tx.is_closed())
                    .min_by_key(|(_, w)| (inner.sent(&w.hash).times, w.seq))
                    .map(|(i, _)| i)
            };
            let Some(i) = best else {
                inner.waiting.clear();
                inner.free += 1;
                return;
            };
            let w = inner.waiting.swap_remove(i);
            if w.big && inner.sent(&w.hash).fresh(now) {
                // Sent to another peer while this request waited: it is answered `busy`
                // (its receiver ends empty) and its requester finds the chunk there.
                continue;
            }
            let slot = Slot {
                uploads: self.clone(),
                hash: w.hash,
                armed: true,
            };
            match w.tx.send(slot) {
                Ok(()) => {
                    inner.note_sending(w.hash);
                    return;
                }
                // Gone between the look and the send: not given back through `drop` (the
                // lock is held here); the loop hands it on.
                Err(mut slot) => slot.armed = false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const LONG: Duration = Duration::from_secs(60);
    const SMALL: u32 = 1000;

    fn h(b: u8) -> Hash32 {
        Hash32([b; 32])
    }

    /// With one slot busy, a request for a chunk never sent is served before requests for
    /// a chunk already sent, though it came last.
    #[tokio::test]
    async fn the_next_slot_goes_to_the_least_sent_chunk() {
        let up = Uploads::new(1, 16);
        let first = up.take(h(1), SMALL, LONG).await.unwrap();
        let (tx, mut order) = tokio::sync::mpsc::unbounded_channel();
        let mut tasks = Vec::new();
        for (name, hash) in [("again-1", h(1)), ("again-2", h(1)), ("new", h(2))] {
            let (up, tx) = (up.clone(), tx.clone());
            tasks.push(tokio::spawn(async move {
                let slot = up.take(hash, SMALL, LONG).await.unwrap();
                tx.send(name).unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
                drop(slot);
            }));
            // Queued in this order.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        drop(first);
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(order.recv().await.unwrap());
        }
        assert_eq!(got, ["new", "again-1", "again-2"]);
        for t in tasks {
            t.await.unwrap();
        }
        // Every slot came back.
        assert_eq!(up.lock().free, 1);
    }

    /// A full queue is refused at once; a wait that runs out is refused and leaks no slot.
    #[tokio::test]
    async fn a_full_queue_and_a_wait_that_runs_out_are_busy_and_leak_nothing() {
        let up = Uploads::new(1, 1);
        let held = up.take(h(1), SMALL, LONG).await.unwrap();
        let waiting = {
            let up = up.clone();
            tokio::spawn(async move { up.take(h(2), SMALL, Duration::from_millis(300)).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            up.take(h(3), SMALL, LONG).await.is_none(),
            "a full queue must refuse"
        );
        assert!(waiting.await.unwrap().is_none(), "the wait should run out");
        drop(held);
        assert_eq!(up.lock().free, 1);
        let again = up.take(h(4), SMALL, Duration::from_millis(1)).await;
        assert!(again.is_some(), "the slot was lost");
    }

    /// A chunk being sent, or sent less than the grace ago, is not sent again: busy at
    /// once, without a slot, and a request that waited for it is let go when it is sent
    /// elsewhere; after the grace it is sent again. Small blobs are always sent.
    #[tokio::test]
    async fn a_chunk_just_sent_is_not_sent_again_at_once() {
        let up = Uploads::new(2, 16);
        let first = up.take(h(1), BIG, LONG).await.unwrap();
        assert!(
            up.take(h(1), BIG, LONG).await.is_none(),
            "sent twice at once"
        );
        let index = up.take(h(1), SMALL, LONG).await;
        assert!(index.is_some(), "a small blob is always sent");
        // Both slots taken: a request for another chunk and one for chunk 1 wait.
        let other = {
            let up = up.clone();
            tokio::spawn(async move { up.take(h(2), BIG, LONG).await.is_some() })
        };
        let later = {
            let up = up.clone();
            tokio::spawn(async move { up.take(h(3), BIG, LONG).await.is_some() })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(first);
        assert!(
            up.take(h(1), BIG, LONG).await.is_none(),
            "sent again within the grace"
        );
        assert!(
            other.await.unwrap(),
            "the freed slot went to the waiting request"
        );
        drop(index);
        assert!(later.await.unwrap());
        tokio::time::sleep(RESEND_GRACE).await;
        assert!(up.take(h(1), BIG, LONG).await.is_some(), "never sent again");
    }
}
