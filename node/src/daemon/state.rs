//! What the daemon persists (sled, small metadata only) and the small shared registries
//! its tasks use.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};
use upswarm_net::PeerId;
use upswarm_proto::Hash32;
use upswarm_proto::fetch::Bitmap;
use upswarm_store::{Db, StoreError, Tree};

/// Where a release came from first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Gossip,
    Dht,
    Publish,
}

/// What the node is doing with a release's artifacts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum DownloadState {
    /// Known, but not for this node (another channel or product).
    NotFollowed,
    /// Being fetched.
    Downloading,
    /// Every artifact for this node is assembled and verified; the node seeds it.
    Complete { at: u64 },
    /// Fetching failed for a reason that retrying will not fix (e.g. no space).
    Failed { reason: String },
}

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
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PeerRecord {
    /// Bad chunks received from it.
    pub faults: u32,
    /// Requests it failed to answer in time.
    pub stalls: u32,
    pub banned: bool,
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

impl StateDb {
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
#[derive(Debug)]
pub struct PeerBook {
    tree: Tree<PeerRecord>,
    peers: Mutex<HashMap<PeerId, PeerRecord>>,
    ban_after: u32,
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
    pub fn load(tree: Tree<PeerRecord>, ban_after: u32) -> Self {
        let mut peers = HashMap::new();
        for (k, v) in tree.iter().flatten() {
            if let Ok(p) = PeerId::from_bytes(&k) {
                peers.insert(p, v);
            }
        }
        PeerBook {
            tree,
            peers: Mutex::new(peers),
            ban_after,
        }
    }

    /// Peers banned in an earlier run, to block again at start.
    pub fn banned(&self) -> Vec<PeerId> {
        self.peers
            .lock()
            .map(|m| {
                m.iter()
                    .filter(|(_, r)| r.banned)
                    .map(|(p, _)| *p)
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn is_banned(&self, peer: &PeerId) -> bool {
        self.peers
            .lock()
            .map(|m| m.get(peer).is_some_and(|r| r.banned))
            .unwrap_or(false)
    }

    /// Records a bad chunk from `peer`.
    pub fn fault(&self, peer: PeerId) -> FaultOutcome {
        self.update(peer, |r| r.faults += 1)
    }

    /// Records a request `peer` did not answer in time. Stalls count a third as much as
    /// bad data: slow peers are forgiven far longer than lying ones.
    pub fn stall(&self, peer: PeerId) -> FaultOutcome {
        self.update(peer, |r| r.stalls += 1)
    }

    fn update(&self, peer: PeerId, f: impl FnOnce(&mut PeerRecord)) -> FaultOutcome {
        let Ok(mut map) = self.peers.lock() else {
            return FaultOutcome::Noted;
        };
        let r = map.entry(peer).or_default();
        if r.banned {
            return FaultOutcome::AlreadyBanned;
        }
        f(r);
        let outcome = if r.faults + r.stalls / 3 >= self.ban_after {
            r.banned = true;
            FaultOutcome::BanNow
        } else {
            FaultOutcome::Noted
        };
        let snapshot = r.clone();
        drop(map);
        if let Err(e) = self.tree.put(peer.to_bytes(), &snapshot) {
            tracing::warn!("cannot persist peer record: {e}");
        }
        outcome
    }

    pub fn snapshot(&self) -> Vec<(PeerId, PeerRecord)> {
        self.peers
            .lock()
            .map(|m| m.iter().map(|(p, r)| (*p, r.clone())).collect())
            .unwrap_or_default()
    }
}

/// Which chunks of each artifact (by chunk-index hash) this node holds, for answering
/// `Have` requests.
#[derive(Debug, Default)]
pub struct Haves {
    map: Mutex<HashMap<Hash32, Bitmap>>,
}

impl Haves {
    pub fn register(&self, index: Hash32, bitmap: Bitmap) {
        if let Ok(mut m) = self.map.lock() {
            m.insert(index, bitmap);
        }
    }

    pub fn set(&self, index: &Hash32, chunk: usize) {
        if let Ok(mut m) = self.map.lock()
            && let Some(b) = m.get_mut(index)
        {
            b.set(chunk);
        }
    }

    pub fn get(&self, index: &Hash32) -> Option<Bitmap> {
        self.map.lock().ok().and_then(|m| m.get(index).cloned())
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
