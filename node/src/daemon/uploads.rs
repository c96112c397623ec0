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
//! One peer holds at most half the slots (rounded up): a peer that reads slowly, or asks
//! for everything at once, cannot take the whole uplink; its further requests wait.
//!
//! A chunk (a blob of at least [`BIG`] bytes) is not sent to a second peer while it is being
//! sent to one, nor for [`RESEND_GRACE`] after: its receiver tells its peers of it within a
//! round trip (`have_changed`), so the second requester finds it there. Such a request is
//! answered `busy` at once, without taking a slot. The same peer asking again is served (it
//! did not get the chunk).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use upswarm_net::PeerId;
use upswarm_proto::Hash32;

/// Chunks remembered by how often they were sent; past this the counts start again.
const REMEMBERED: usize = 1 << 16;
/// Blobs at least this long are not sent twice at once (smaller ones — chunk indexes, tail
/// chunks — are cheap, and every newcomer asks for the chunk index first).
pub(crate) const BIG: u32 = 64 * 1024;
/// How long after a chunk was sent it is not sent to another peer.
pub(crate) const RESEND_GRACE: Duration = Duration::from_secs(1);

/// A limited number of upload slots with a bounded queue of waiting requests.
#[derive(Debug)]
pub(crate) struct Uploads {
    inner: Mutex<Inner>,
    queue_max: usize,
    per_peer: usize,
}

#[derive(Debug)]
struct Inner {
    free: usize,
    waiting: Vec<Waiter>,
    /// Big blobs sent.
    sent: HashMap<Hash32, Sent>,
    /// Slots held by each peer.
    holding: HashMap<PeerId, usize>,
    seq: u64,
}

/// What is known of sending one big blob.
#[derive(Debug, Default, Clone, Copy)]
struct Sent {
    times: u32,
    /// Sends under way.
    active: u32,
    /// When the last send ended.
    ended: Option<Instant>,
    /// Whom it was last sent to.
    to: Option<PeerId>,
}

impl Sent {
    /// Being sent, or sent within [`RESEND_GRACE`], to another peer than `peer`: that
    /// receiver is about to share it.
    fn fresh(&self, now: Instant, peer: &PeerId) -> bool {
        let recent = self.active > 0
            || self
                .ended
                .is_some_and(|t| now.duration_since(t) < RESEND_GRACE);
        recent && self.to.is_some_and(|to| to != *peer)
    }
}

#[derive(Debug)]
struct Waiter {
    peer: PeerId,
    hash: Hash32,
    big: bool,
    seq: u64,
    tx: oneshot::Sender<Slot>,
}

/// One upload slot, given back when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    uploads: Arc<Uploads>,
    peer: PeerId,
    hash: Hash32,
    big: bool,
    armed: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.armed {
            self.uploads.release(self.peer, self.hash, self.big);
        }
    }
}

impl Inner {
    fn note_sending(&mut self, peer: PeerId, hash: Hash32, big: bool) {
        *self.holding.entry(peer).or_default() += 1;
        if !big {
            return;
        }
        if self.sent.len() >= REMEMBERED && !self.sent.contains_key(&hash) {
            self.sent.retain(|_, s| s.active > 0);
        }
        let s = self.sent.entry(hash).or_default();
        s.times += 1;
        s.active += 1;
        s.to = Some(peer);
    }

    fn note_ended(&mut self, peer: PeerId, hash: Hash32, big: bool, now: Instant) {
        if big && let Some(s) = self.sent.get_mut(&hash) {
            s.active = s.active.saturating_sub(1);
            s.ended = Some(now);
        }
        if let Some(n) = self.holding.get_mut(&peer) {
            *n -= 1;
            if *n == 0 {
                self.holding.remove(&peer);
            }
        }
    }

    fn holds(&self, peer: &PeerId) -> usize {
        self.holding.get(peer).copied().unwrap_or(0)
    }

    fn sent(&self, hash: &Hash32) -> Sent {
        self.sent.get(hash).copied().unwrap_or_default()
    }
}

impl Uploads {
    /// `slots` uploads at once (at least one), at most half of them (rounded up) to one
    /// peer; at most `queue_max` requests wait.
    pub(crate) fn new(slots: usize, queue_max: usize) -> Arc<Self> {
        let slots = slots.max(1);
        Arc::new(Uploads {
            inner: Mutex::new(Inner {
                free: slots,
                waiting: Vec::new(),
                sent: HashMap::new(),
                holding: HashMap::new(),
                seq: 0,
            }),
            queue_max,
            per_peer: slots.div_ceil(2),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing panics while holding it; a poisoned lock still holds consistent counts.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A slot to send `peer` the blob `hash` of at most `len` bytes, at once or within
    /// `wait`; `None` (answer `busy`) when the queue is full, no slot came in time, or it is
    /// a chunk just sent to another peer.
    pub(crate) async fn take(
        self: &Arc<Self>,
        peer: PeerId,
        hash: Hash32,
        len: u32,
        wait: Duration,
    ) -> Option<Slot> {
        let big = len >= BIG;
        let rx = {
            let mut inner = self.lock();
            if big && inner.sent(&hash).fresh(Instant::now(), &peer) {
                return None;
            }
            inner.waiting.retain(|w| !w.tx.is_closed());
            // A free slot means no waiting request may have it (their peers hold their
            // share): this one may, if its peer does not.
            if inner.free > 0 && inner.holds(&peer) < self.per_peer {
                inner.free -= 1;
                inner.note_sending(peer, hash, big);
                return Some(Slot {
                    uploads: self.clone(),
                    peer,
                    hash,
                    big,
                    armed: true,
                });
            }
            if inner.waiting.len() >= self.queue_max {
                return None;
            }
            let (tx, rx) = oneshot::channel();
            inner.seq += 1;
            let seq = inner.seq;
            inner.waiting.push(Waiter {
                peer,
                hash,
                big,
                seq,
                tx,
            });
            rx
        };
        // A slot sent just as the wait ran out is dropped with the receiver: given back.
        tokio::time::timeout(wait, rx)
            .await
            .ok()
            .and_then(Result::ok)
    }

    /// Takes back the slot that sent `hash` to `peer` and hands it to the waiting request
    /// for the least-sent chunk whose peer holds less than its share, or keeps it. Waiting
    /// requests for a chunk just sent to another peer are let go (answered `busy`).
    fn release(self: &Arc<Self>, peer: PeerId, hash: Hash32, big: bool) {
        let mut inner = self.lock();
        let now = Instant::now();
        inner.note_ended(peer, hash, big, now);
        loop {
            let best = {
                let inner = &*inner;
                inner
                    .waiting
                    .iter()
                    .enumerate()
                    .filter(|(_, w)| !w.tx.is_closed() && inner.holds(&w.peer) < self.per_peer)
                    .min_by_key(|(_, w)| (inner.sent(&w.hash).times, w.seq))
                    .map(|(i, _)| i)
            };
            let Some(i) = best else {
                inner.waiting.retain(|w| !w.tx.is_closed());
                inner.free += 1;
                return;
            };
            let w = inner.waiting.swap_remove(i);
            if w.big && inner.sent(&w.hash).fresh(now, &w.peer) {
                // Its receiver ends empty: `take` answers `busy`.
                continue;
            }
            let slot = Slot {
                uploads: self.clone(),
                peer: w.peer,
                hash: w.hash,
                big: w.big,
                armed: true,
            };
            match w.tx.send(slot) {
                Ok(()) => {
                    inner.note_sending(w.peer, w.hash, w.big);
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

    /// With the one slot busy, a request for a chunk never sent is served before requests
    /// for a chunk sent (longer ago than the grace) before, though it came last.
    #[tokio::test]
    async fn the_next_slot_goes_to_the_least_sent_chunk() {
        let up = Uploads::new(1, 16);
        drop(up.take(PeerId::random(), h(1), BIG, LONG).await.unwrap());
        tokio::time::sleep(RESEND_GRACE).await;
        let busy = up.take(PeerId::random(), h(3), BIG, LONG).await.unwrap();
        let (tx, mut order) = tokio::sync::mpsc::unbounded_channel();
        let mut tasks = Vec::new();
        for (name, hash) in [("again", h(1)), ("new", h(2))] {
            let (up, tx) = (up.clone(), tx.clone());
            tasks.push(tokio::spawn(async move {
                let slot = up.take(PeerId::random(), hash, BIG, LONG).await.unwrap();
                tx.send(name).unwrap();
                drop(slot);
            }));
            // Queued in this order.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        drop(busy);
        let mut got = Vec::new();
        for _ in 0..2 {
            got.push(order.recv().await.unwrap());
        }
        assert_eq!(got, ["new", "again"]);
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
        let held = up.take(PeerId::random(), h(1), SMALL, LONG).await.unwrap();
        let waiting = {
            let up = up.clone();
            tokio::spawn(async move {
                up.take(PeerId::random(), h(2), SMALL, Duration::from_millis(300))
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            up.take(PeerId::random(), h(3), SMALL, LONG).await.is_none(),
            "a full queue must refuse"
        );
        assert!(waiting.await.unwrap().is_none(), "the wait should run out");
        drop(held);
        assert_eq!(up.lock().free, 1);
        let again = up
            .take(PeerId::random(), h(4), SMALL, Duration::from_millis(1))
            .await;
        assert!(again.is_some(), "the slot was lost");
    }

    /// A chunk being sent, or sent less than the grace ago, is not sent again: busy at
    /// once, without a slot, and a request that waited for it is let go when it is sent
    /// elsewhere; after the grace it is sent again. Small blobs are always sent.
    #[tokio::test]
    async fn a_chunk_just_sent_is_not_sent_again_at_once() {
        let up = Uploads::new(2, 16);
        let first = up.take(PeerId::random(), h(1), BIG, LONG).await.unwrap();
        assert!(
            up.take(PeerId::random(), h(1), BIG, LONG).await.is_none(),
            "sent twice at once"
        );
        let index = up.take(PeerId::random(), h(1), SMALL, LONG).await;
        assert!(index.is_some(), "a small blob is always sent");
        // Both slots taken: a request for another chunk and one for chunk 1 wait.
        let other = {
            let up = up.clone();
            tokio::spawn(async move { up.take(PeerId::random(), h(2), BIG, LONG).await.is_some() })
        };
        let later = {
            let up = up.clone();
            tokio::spawn(async move { up.take(PeerId::random(), h(3), BIG, LONG).await.is_some() })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(first);
        assert!(
            up.take(PeerId::random(), h(1), BIG, LONG).await.is_none(),
            "sent again within the grace"
        );
        assert!(
            other.await.unwrap(),
            "the freed slot went to the waiting request"
        );
        drop(index);
        assert!(later.await.unwrap());
        tokio::time::sleep(RESEND_GRACE).await;
        assert!(
            up.take(PeerId::random(), h(1), BIG, LONG).await.is_some(),
            "never sent again"
        );
    }

    /// One peer holds at most half the slots: its further requests wait, though slots are
    /// free, while another peer's are served at once; it gets the next slot it frees.
    #[tokio::test]
    async fn one_peer_holds_at_most_half_the_slots() {
        let up = Uploads::new(4, 16);
        let (greedy, other) = (PeerId::random(), PeerId::random());
        let a = up.take(greedy, h(1), SMALL, LONG).await.unwrap();
        let _b = up.take(greedy, h(2), SMALL, LONG).await.unwrap();
        let third = {
            let up = up.clone();
            tokio::spawn(async move { up.take(greedy, h(3), SMALL, LONG).await.is_some() })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!third.is_finished(), "a peer took more than half the slots");
        let c = up.take(other, h(4), SMALL, Duration::from_millis(1)).await;
        assert!(c.is_some(), "another peer waited though slots were free");
        drop(a);
        assert!(third.await.unwrap());
        // `_b` and `c` are held; the third's slot came back when its task ended.
        assert_eq!(up.lock().free, 2);
    }

    /// The peer a chunk was just sent to may ask for it again (it did not get it).
    #[tokio::test]
    async fn the_same_peer_asking_again_is_served() {
        let up = Uploads::new(4, 16);
        let peer = PeerId::random();
        drop(up.take(peer, h(1), BIG, LONG).await.unwrap());
        assert!(up.take(peer, h(1), BIG, LONG).await.is_some());
        assert!(up.take(PeerId::random(), h(1), BIG, LONG).await.is_none());
    }
}
