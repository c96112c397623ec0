//! The handle the rest of the daemon uses to drive the swarm.
//!
//! Owns the sending side of the command channel, and the errors and snapshots callers see. It must
//! not touch the `Swarm` (only `event_loop` does): each call is one command on the bounded channel,
//! most with a oneshot reply.

use std::collections::HashSet;

use libp2p::gossipsub::{MessageAcceptance, MessageId};
use libp2p::kad::{ProviderRecord, Record, RecordKey};
use libp2p::request_response::{InboundRequestId, ResponseChannel};
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, oneshot};
use upswarm_proto::fetch::{FetchRequest, FetchResponse};

use crate::Topic;

/// Errors from the network layer.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    #[error("network configuration: {0}")]
    Config(String),
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: Multiaddr, reason: String },
    #[error("the network task has stopped")]
    Stopped,
    #[error("gossip publish failed: {0}")]
    Publish(String),
    #[error("DHT: {0}")]
    Dht(String),
    #[error("request to {peer} failed: {reason}")]
    Request { peer: PeerId, reason: String },
    #[error("cannot dial {addr}: {reason}")]
    Dial { addr: Multiaddr, reason: String },
}

/// A snapshot of the swarm's state.
#[derive(Debug, Clone)]
pub struct NetInfo {
    pub peer_id: PeerId,
    pub listeners: Vec<Multiaddr>,
    pub connected: Vec<PeerId>,
    pub gossip_mesh_peers: usize,
    /// Gossipsub score of each connected peer (see `docs/wire-format.md` for the
    /// parameters); `None` for peers gossipsub has no score for yet.
    pub scores: Vec<(PeerId, Option<f64>)>,
    /// How others can reach us.
    pub reachability: Reachability,
    /// Per connected peer: whether we hold a direct connection or only relayed ones.
    pub links: Vec<(PeerId, PeerLink)>,
}

/// Whether a node can be dialled, as AutoNAT and the relay client see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reachability {
    /// Not determined yet (no peer has tried to dial us back).
    Unknown,
    /// Peers could dial us at this address.
    Public(Multiaddr),
    /// Peers could not dial us back; we hold reservations on these relays (maybe none yet).
    Private { relays: Vec<PeerId> },
}

/// The kind of connection held to a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerLink {
    /// At least one connection without a relay in the path.
    Direct,
    /// Only connections through a relay.
    Relayed,
}

pub(crate) type Reply<T> = oneshot::Sender<Result<T, NetError>>;

#[derive(Debug)]
pub(crate) enum Command {
    Dial {
        addr: Multiaddr,
        reply: Reply<()>,
    },
    Publish {
        topic: Topic,
        data: Vec<u8>,
        reply: Reply<MessageId>,
    },
    ReportValidation {
        message_id: MessageId,
        source: PeerId,
        acceptance: MessageAcceptance,
    },
    PutRecord {
        record: Record,
        reply: Reply<()>,
    },
    StoreRecord {
        record: Record,
    },
    StoreProvider {
        record: ProviderRecord,
    },
    GetRecords {
        key: RecordKey,
        reply: Reply<Vec<Record>>,
    },
    StartProviding {
        key: RecordKey,
        reply: Reply<()>,
    },
    GetProviders {
        key: RecordKey,
        reply: Reply<HashSet<PeerId>>,
    },
    Request {
        peer: PeerId,
        request: FetchRequest,
        reply: Reply<FetchResponse>,
    },
    Respond {
        id: InboundRequestId,
        channel: ResponseChannel<FetchResponse>,
        response: FetchResponse,
        reply: Reply<()>,
    },
    Block {
        peer: PeerId,
    },
    Unblock {
        peer: PeerId,
    },
    Info {
        reply: oneshot::Sender<NetInfo>,
    },
}

/// Cheap to clone; every method sends one command to the swarm task.
///
/// All methods are cancel-safe: dropping the future drops the reply, and the swarm task
/// ignores a reply nobody waits for.
#[derive(Debug, Clone)]
pub struct Client {
    tx: mpsc::Sender<Command>,
    local_peer_id: PeerId,
}

impl Client {
    pub(crate) fn new(tx: mpsc::Sender<Command>, local_peer_id: PeerId) -> Self {
        Client { tx, local_peer_id }
    }

    /// This node's peer id.
    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, NetError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| NetError::Stopped)?;
        rx.await.map_err(|_| NetError::Stopped)?
    }

    async fn tell(&self, cmd: Command) -> Result<(), NetError> {
        self.tx.send(cmd).await.map_err(|_| NetError::Stopped)
    }

    /// Dials an address (with or without `/p2p/`); returns once the connection is up, or
    /// with the reason it could not be made.
    pub async fn dial(&self, addr: Multiaddr) -> Result<(), NetError> {
        self.call(|reply| Command::Dial { addr, reply }).await
    }

    /// Publishes on a gossip topic.
    pub async fn publish(&self, topic: Topic, data: Vec<u8>) -> Result<MessageId, NetError> {
        self.call(|reply| Command::Publish { topic, data, reply })
            .await
    }

    /// Tells gossipsub whether to forward (accept), drop (ignore) or drop and penalise
    /// (reject) a message.
    pub async fn report_validation(
        &self,
        message_id: MessageId,
        source: PeerId,
        acceptance: MessageAcceptance,
    ) -> Result<(), NetError> {
        self.tell(Command::ReportValidation {
            message_id,
            source,
            acceptance,
        })
        .await
    }

    /// Stores a record locally and at the closest peers.
    pub async fn put_record(&self, record: Record) -> Result<(), NetError> {
        self.call(|reply| Command::PutRecord { record, reply })
            .await
    }

    /// Stores a validated inbound record locally.
    pub async fn store_record(&self, record: Record) -> Result<(), NetError> {
        self.tell(Command::StoreRecord { record }).await
    }

    /// Stores a validated inbound provider record locally.
    pub async fn store_provider(&self, record: ProviderRecord) -> Result<(), NetError> {
        self.tell(Command::StoreProvider { record }).await
    }

    /// Every record found for `key` (local and remote); the caller validates each.
    pub async fn get_records(&self, key: RecordKey) -> Result<Vec<Record>, NetError> {
        self.call(|reply| Command::GetRecords { key, reply }).await
    }

    /// Announces this node as a provider of `key`.
    pub async fn start_providing(&self, key: RecordKey) -> Result<(), NetError> {
        self.call(|reply| Command::StartProviding { key, reply })
            .await
    }

    /// Peers that announced they provide `key`.
    pub async fn get_providers(&self, key: RecordKey) -> Result<HashSet<PeerId>, NetError> {
        self.call(|reply| Command::GetProviders { key, reply })
            .await
    }

    /// Sends a fetch request and waits for the answer (bounded by the request timeout).
    pub async fn request(
        &self,
        peer: PeerId,
        request: FetchRequest,
    ) -> Result<FetchResponse, NetError> {
        self.call(|reply| Command::Request {
            peer,
            request,
            reply,
        })
        .await
    }

    /// Answers an inbound fetch request.
    /// Answers the inbound request `id`; returns once the response has been written to the
    /// peer's stream (or could not be: the peer went away), so that a caller limiting
    /// concurrent uploads knows when one is over.
    pub async fn respond(
        &self,
        id: InboundRequestId,
        channel: ResponseChannel<FetchResponse>,
        response: FetchResponse,
    ) -> Result<(), NetError> {
        self.call(|reply| Command::Respond {
            id,
            channel,
            response,
            reply,
        })
        .await
    }

    /// Disconnects from a peer and refuses it from now on.
    pub async fn block(&self, peer: PeerId) -> Result<(), NetError> {
        self.tell(Command::Block { peer }).await
    }

    /// Lifts a [`Client::block`]: the peer may connect again.
    pub async fn unblock(&self, peer: PeerId) -> Result<(), NetError> {
        self.tell(Command::Unblock { peer }).await
    }

    /// A snapshot of the swarm.
    pub async fn info(&self) -> Result<NetInfo, NetError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Info { reply })
            .await
            .map_err(|_| NetError::Stopped)?;
        rx.await.map_err(|_| NetError::Stopped)
    }
}
