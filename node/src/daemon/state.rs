//! What the daemon persists (sled, small metadata only) and the small shared registries
//! its tasks use.
//!
//! Owns the sled trees `releases`, `peers` and `withheld`, the peer fault book (`PeerBook`), the
//! chunk bitmaps announced to peers (`Haves`) and the byte-rate limits. It never puts artifact or
//! chunk bytes into sled, and never holds one of its mutexes across an `.await` or a sled write.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;

pub use crate::api::{DownloadState, Source};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};
use upswarm_net::PeerId;
use upswarm_proto::Hash32;
use upswarm_proto::fetch::Bitmap;
use upswarm_store::{Db, StoreError, Tree};

/// A release as stored in the `releases` tree, keyed by release id.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredRelease {
    /// The signed manifest envelope, exactly as received.
    #[serde(with = "serde_bytes")]
    pub envelope: Vec<u8>,
    pub first_seen: u64,
    pub source: Source,
    pub download: DownloadState,
}

/// A peer's record of faults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRecord {
    /// Bad chunks received from it since its last ban ended.
    pub faults: u32,
    /// Requests it failed to answer in time since its last ban ended.
    pub stalls: u32,
    /// Unix seconds at which its current ban ends; `None`: not banned.
    pub banned_until: Option<u64>,
    /// How many times it was banned (each ban lasts twice the previous one).
    pub bans: u32,
}

/// The daemon's sled trees.
#[derive(Debug, Clone)]
pub struct StateDb {
    pub db: Db,
    pub releases: Tree<StoredRelease>,
    pub peers: Tree<PeerRecord>,
    /// Proposals whose vote the operator withholds (true) or allows again (false).
    pub withheld: Tree<bool>,
}

/// Runs blocking file work `f` (an fsync, a directory walk, reading an index) from async
/// code without stalling the runtime: on a multi-threaded runtime the wait happens outside
/// the worker set (`block_in_place`), so the network and API tasks keep running; the caller
/// itself waits for the result, which keeps its order of effects (an actor's writes land in
/// the order it made them). Elsewhere (a current-thread runtime, a plain thread) it simply
/// runs `f`.
pub fn outside_workers<T>(f: impl FnOnce() -> T) -> T {
    let multi = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if multi {
        tokio::task::block_in_place(f)
    } else {
        f()
    }
}

impl StateDb {
    /// Writes everything to disk, and returns once it is there (see [`outside_workers`]):
    /// what the caller does next relies on the data being durable.
    pub fn flush_durably(&self) -> Result<(), StoreError> {
        outside_workers(|| self.db.flush())
    }

    pub fn open(db: Db) -> Result<Self, StoreError> {
        Ok(StateDb {
            releases: db.tree("releases")?,
            peers: db.tree("peers")?,
            withheld: db.tree("withheld")?,
            db,
        })
    }
}

/// Faults per peer; decides bans. Owned here, behind a mutex held only for map updates.
///
/// A peer is banned when `faults + stalls / 3` reaches `ban_after`. A ban blocks the peer
/// id at the connection level (its connections are closed and refused, gossipsub
/// blacklists it) and keeps it out of downloads. It lasts `ban_duration` the first time
/// and twice as long each time after (at most 64 times `ban_duration`), survives a
/// restart (it is persisted with its end time), and when it ends the peer starts again
/// with no faults. Bans are per peer id: they do not follow an operator who makes a new
/// identity.
#[derive(Debug)]
pub struct PeerBook {
    tree: Tree<PeerRecord>,
    peers: Mutex<HashMap<PeerId, PeerRecord>>,
    ban_after: u32,
    ban_secs: u64,
}

/// What a recorded fault led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultOutcome {
    Noted,
    /// This fault crossed the threshold: ban the peer now.
    BanNow,
    AlreadyBanned,
}

impl PeerBook {
    pub fn load(tree: Tree<PeerRecord>, ban_after: u32, ban_duration: std::time::Duration) -> Self {
        let mut peers = HashMap::new();
        for (k, v) in tree.iter().flatten() {
            if let Ok(p) = PeerId::from_bytes(&k) {
                peers.insert(p, v);
            }
        }
        PeerBook {
            tree,
            peers: Mutex::new(peers),
            ban_after: ban_after.max(1),
            ban_secs: ban_duration.as_secs().max(1),
        }
    }

    /// Peers banned at `now` (to block again at start).
    pub fn banned(&self, now: u64) -> Vec<PeerId> {
        self.peers
            .lock()
            .map(|m| {
                m.iter()
                    .filter(|(_, r)| r.banned_until.is_some_and(|t| t > now))
                    .map(|(p, _)| *p)
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn is_banned(&self, peer: &PeerId, now: u64) -> bool {
        self.peers
            .lock()
            .map(|m| {
                m.get(peer)
                    .is_some_and(|r| r.banned_until.is_some_and(|t| t > now))
            })
            .unwrap_or(false)
    }

    /// Records a bad chunk (or chunk index) from `peer`.
    pub fn fault(&self, peer: PeerId, now: u64) -> FaultOutcome {
        self.update(peer, now, |r| r.faults += 1)
    }

    /// Records a request `peer` did not answer in time. Stalls count a third as much as
    /// bad data: slow peers are forgiven far longer than lying ones.
    pub fn stall(&self, peer: PeerId, now: u64) -> FaultOutcome {
        self.update(peer, now, |r| r.stalls += 1)
    }

    /// Ends the bans that are over at `now`; returns the peers to unblock.
    pub fn expire(&self, now: u64) -> Vec<PeerId> {
        let Ok(mut map) = self.peers.lock() else {
            return Vec::new();
        };
        let mut ended = Vec::new();
        for (p, r) in map.iter_mut() {
            if r.banned_until.is_some_and(|t| t <= now) {
                *r = PeerRecord {
                    bans: r.bans,
                    ..PeerRecord::default()
                };
                ended.push((*p, r.clone()));
            }
        }
        drop(map);
        for (p, r) in &ended {
            self.persist(p, r);
        }
        ended.into_iter().map(|(p, _)| p).collect()
    }

    fn update(&self, peer: PeerId, now: u64, f: impl FnOnce(&mut PeerRecord)) -> FaultOutcome {
        let Ok(mut map) = self.peers.lock() else {
            return FaultOutcome::Noted;
        };
        let r = map.entry(peer).or_default();
        if r.banned_until.is_some_and(|t| t > now) {
            return FaultOutcome::AlreadyBanned;
        }
        f(r);
        let outcome = if r.faults.saturating_add(r.stalls / 3) >= self.ban_after {
            let factor = 1u64 << r.bans.min(6);
            r.bans = r.bans.saturating_add(1);
            r.banned_until = Some(now.saturating_add(self.ban_secs.saturating_mul(factor)));
            FaultOutcome::BanNow
        } else {
            FaultOutcome::Noted
        };
        let snapshot = r.clone();
        drop(map);
        self.persist(&peer, &snapshot);
        outcome
    }

    fn persist(&self, peer: &PeerId, r: &PeerRecord) {
        if let Err(e) = self.tree.put(peer.to_bytes(), r) {
            tracing::warn!("cannot persist peer record: {e}");
        }
    }

    pub fn snapshot(&self) -> Vec<(PeerId, PeerRecord)> {
        self.peers
            .lock()
            .map(|m| m.iter().map(|(p, r)| (*p, r.clone())).collect())
            .unwrap_or_default()
    }
}

/// Which chunks of each artifact (by chunk-index hash) this node holds, for answering
/// `Have` requests; `HaveChanged` requests wait on [`Haves::wait_changed`].
#[derive(Debug, Default)]
pub struct Haves {
    map: Mutex<HashMap<Hash32, Bitmap>>,
    /// Woken on every change of any bitmap.
    changed: tokio::sync::Notify,
}

impl Haves {
    pub fn register(&self, index: Hash32, bitmap: Bitmap) {
        if let Ok(mut m) = self.map.lock() {
            m.insert(index, bitmap);
        }
        self.changed.notify_waiters();
    }

    pub fn set(&self, index: &Hash32, chunk: usize) {
        self.update(index, |b| b.set(chunk));
    }

    /// Stops announcing chunk `chunk` (it was found damaged and is being fetched again).
    pub fn clear(&self, index: &Hash32, chunk: usize) {
        self.update(index, |b| b.clear(chunk));
    }

    fn update(&self, index: &Hash32, change: impl FnOnce(&mut Bitmap)) {
        if let Ok(mut m) = self.map.lock()
            && let Some(b) = m.get_mut(index)
        {
            change(b);
        }
        self.changed.notify_waiters();
    }

    /// Stops announcing every chunk of an artifact (its chunk index was damaged).
    pub fn forget(&self, index: &Hash32) {
        if let Ok(mut m) = self.map.lock() {
            m.remove(index);
        }
        self.changed.notify_waiters();
    }

    pub fn get(&self, index: &Hash32) -> Option<Bitmap> {
        self.map.lock().ok().and_then(|m| m.get(index).cloned())
    }

    fn count(&self, index: &Hash32) -> usize {
        self.map
            .lock()
            .ok()
            .and_then(|m| m.get(index).map(Bitmap::count))
            .unwrap_or(0)
    }

    /// The bitmap for `index` once it holds a number of chunks other than `held` (an unknown
    /// index holds 0), or at `deadline` whatever it holds then; `None`: the index is unknown.
    pub async fn wait_changed(
        &self,
        index: &Hash32,
        held: usize,
        deadline: tokio::time::Instant,
    ) -> Option<Bitmap> {
        loop {
            // Registered before looking, so a change between the look and the wait wakes us.
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.count(index) != held
                || tokio::time::timeout_at(deadline, notified).await.is_err()
            {
                return self.get(index);
            }
        }
    }
}

/// A byte-rate limit (token bucket in KiB), or none.
#[derive(Debug)]
pub struct RateLimit {
    limiter: Option<(DefaultDirectRateLimiter, u32)>,
}

impl RateLimit {
    /// `bytes_per_sec == 0`: unlimited.
    pub fn new(bytes_per_sec: u64) -> Self {
        let kib = u32::try_from(bytes_per_sec.div_ceil(1024)).unwrap_or(u32::MAX);
        let limiter = NonZeroU32::new(kib).map(|rate| {
            // Burst of at most a quarter second, so the limit holds at fine time scales.
            let burst = NonZeroU32::new((rate.get() / 4).max(64)).unwrap_or(rate);
            (
                RateLimiter::direct(Quota::per_second(rate).allow_burst(burst)),
                burst.get(),
            )
        });
        RateLimit { limiter }
    }

    /// Waits until `bytes` may pass.
    pub async fn acquire(&self, bytes: usize) {
        let Some((limiter, burst)) = &self.limiter else {
            return;
        };
        let mut kib = u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX);
        while kib > 0 {
            let step = kib.min(*burst);
            if let Some(n) = NonZeroU32::new(step) {
                let _ = limiter.until_n_ready(n).await;
            }
            kib -= step;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn book(dir: &std::path::Path) -> PeerBook {
        let db = Db::open(&dir.join("db")).unwrap();
        PeerBook::load(
            db.tree("peers").unwrap(),
            3,
            std::time::Duration::from_secs(100),
        )
    }

    #[test]
    fn bans_after_faults_expire_persist_and_double() {
        let dir = tempfile::tempdir().unwrap();
        let peer = PeerId::random();
        let b = book(dir.path());
        assert_eq!(b.fault(peer, 1000), FaultOutcome::Noted);
        assert_eq!(b.stall(peer, 1000), FaultOutcome::Noted);
        assert_eq!(b.stall(peer, 1000), FaultOutcome::Noted);
        assert_eq!(b.fault(peer, 1000), FaultOutcome::Noted);
        // faults 2 + stalls 3/3 = 3: banned for 100 s.
        assert_eq!(b.stall(peer, 1000), FaultOutcome::BanNow);
        assert!(b.is_banned(&peer, 1099));
        assert_eq!(b.fault(peer, 1050), FaultOutcome::AlreadyBanned);
        drop(b);
        // The ban survives a restart.
        let b = book(dir.path());
        assert_eq!(b.banned(1099), vec![peer]);
        assert!(b.expire(1099).is_empty());
        // It ends, and the peer starts again with a clean record.
        assert_eq!(b.expire(1100), vec![peer]);
        assert!(!b.is_banned(&peer, 1100));
        assert!(b.banned(1100).is_empty());
        assert_eq!(b.fault(peer, 1200), FaultOutcome::Noted);
        assert_eq!(b.fault(peer, 1200), FaultOutcome::Noted);
        // The second ban lasts twice as long.
        assert_eq!(b.fault(peer, 1200), FaultOutcome::BanNow);
        assert!(b.is_banned(&peer, 1399));
        assert!(!b.is_banned(&peer, 1400));
    }

    /// A waiting `HaveChanged` is answered when a chunk arrives, before its deadline; one
    /// whose count is already out of date is answered at once; a quiet artifact is answered
    /// at the deadline with what is held; an unknown one as unknown.
    #[tokio::test]
    async fn have_changed_is_answered_by_the_change_or_at_the_deadline() {
        use std::sync::Arc;
        use tokio::time::{Duration, Instant};
        let haves = Arc::new(Haves::default());
        let index = Hash32([7; 32]);
        haves.register(index, Bitmap::new(10));
        let far = Instant::now() + Duration::from_secs(60);

        let waiter = {
            let haves = haves.clone();
            tokio::spawn(async move { haves.wait_changed(&index, 0, far).await })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!waiter.is_finished(), "answered before anything changed");
        haves.set(&index, 4);
        let got = waiter.await.unwrap().unwrap();
        assert!(
            Instant::now() < far,
            "answered at the deadline, not by the change"
        );
        assert_eq!(got.count(), 1);
        assert!(got.get(4));

        // The requester's count is stale: answered at once (before a far deadline).
        let got = haves.wait_changed(&index, 0, far).await.unwrap();
        assert_eq!(got.count(), 1);
        assert!(Instant::now() < far);
        // Nothing changes: answered at the deadline, with what is held.
        let soon = Instant::now() + Duration::from_millis(300);
        let got = haves.wait_changed(&index, 1, soon).await.unwrap();
        assert_eq!(got.count(), 1);
        assert!(Instant::now() >= soon);
        // An unknown artifact counts as holding nothing.
        let other = Hash32([8; 32]);
        let soon = Instant::now() + Duration::from_millis(100);
        assert!(haves.wait_changed(&other, 0, soon).await.is_none());
        assert!(haves.wait_changed(&other, 5, far).await.is_none());
        // A cleared chunk is a change too.
        let waiter = {
            let haves = haves.clone();
            tokio::spawn(async move { haves.wait_changed(&index, 1, far).await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        haves.clear(&index, 4);
        assert_eq!(waiter.await.unwrap().unwrap().count(), 0);
        assert!(Instant::now() < far);
    }
}
