//! What every task of the daemon shares: the one context (`Ctx`) built by `run` and handed
//! to the core, the API, the seeder and each download. Owns no state of its own: each field
//! has one owner of its mutable state (documented on its type); it must not grow methods
//! that decide anything.

use std::sync::Arc;

use upswarm_content::ChunkStore;
use upswarm_net::Client;
use upswarm_trust::SecretKey;

use super::config::Config;
use super::metrics::Metrics;
use super::state::{Haves, PeerBook, RateLimit, StateDb};
use super::{gc, signed};
use crate::layout::Layout;

/// What every task of the daemon shares. Each field has one owner of its mutable state
/// (documented on the type); this struct only hands out references.
#[derive(Debug)]
pub struct Ctx {
    pub config: Config,
    pub layout: Layout,
    pub client: Client,
    pub store: Arc<ChunkStore>,
    pub state: StateDb,
    pub metrics: Metrics,
    pub peers: PeerBook,
    pub haves: Haves,
    /// Accepted health reports, control messages, votes and proposals.
    pub signed: signed::SignedStore,
    pub download_limit: RateLimit,
    pub upload_limit: RateLimit,
    /// The node's identity key (also its libp2p identity).
    pub node_key: SecretKey,
    /// The last measure of the data directory's size (see `gc::DiskCache`).
    pub disk: gc::DiskCache,
}
