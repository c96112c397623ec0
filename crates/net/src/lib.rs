//! # upswarm-net — the libp2p side of a daemon
//!
//! One task, the [`EventLoop`], owns the libp2p `Swarm`: TCP + Noise + Yamux and QUIC
//! (v1), over IPv4 and IPv6, with `/dns`, `/dns4` and `/dns6` addresses resolved; identify,
//! ping, connection limits, a block list, Kademlia under upswarm's own protocol name,
//! gossipsub in explicit-validation mode, and the fetch request-response protocol; for
//! nodes behind NAT: AutoNAT (v1), circuit relay v2 (client always, server when configured),
//! DCUtR hole punching and optional UPnP. The rest
//! of the daemon talks to it through a cheap, cloneable [`Client`] (commands over a bounded
//! channel, each with a oneshot reply) and receives domain [`Event`]s and inbound
//! [`FetchRequest`]s on two bounded channels.
//!
//! Goals: translate between libp2p and the domain; bound every queue (when the daemon is
//! slow, inbound fetch requests are answered `Busy` and gossip is left unvalidated rather
//! than buffered without limit); never block the swarm on the application.
//!
//! Non-goals: no validation of content (the daemon decides accept / reject / ignore for
//! gossip and DHT records), no download scheduling, no persistence.

mod behaviour;
mod client;
mod codec;
mod event_loop;

use std::time::Duration;

pub use behaviour::{
    FIRST_DELIVERIES_CAP, FIRST_DELIVERY_WEIGHT, GOSSIP_THRESHOLD, GRAYLIST_THRESHOLD,
    INVALID_MESSAGE_DECAY, INVALID_MESSAGE_WEIGHT, PUBLISH_THRESHOLD, TOPIC_SCORE_CAP, Topic,
};
pub use client::{Client, NetError, NetInfo, PeerLink, Reachability};
pub use codec::FetchCodec;
pub use event_loop::EventLoop;
pub use libp2p::gossipsub::{MessageAcceptance, MessageId};
pub use libp2p::kad::{ProviderRecord, Record, RecordKey};
pub use libp2p::multiaddr::Protocol;
pub use libp2p::request_response::{InboundRequestId, ResponseChannel};
pub use libp2p::{Multiaddr, PeerId, identity};
use tokio::sync::mpsc;
use upswarm_proto::fetch::{FetchRequest, FetchResponse};

/// Capacity of the command channel into the swarm task.
const COMMAND_CAPACITY: usize = 512;
/// Capacity of the event channel out of the swarm task.
const EVENT_CAPACITY: usize = 1024;
/// Capacity of the inbound fetch-request channel.
const FETCH_CAPACITY: usize = 256;

/// How to build the network.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Network name; part of every protocol and topic name, so networks never mix.
    pub network: String,
    /// The node's identity.
    pub keypair: identity::Keypair,
    /// Addresses to listen on, e.g. `/ip4/0.0.0.0/tcp/4001`, `/ip6/::/tcp/4001`,
    /// `/ip4/0.0.0.0/udp/4001/quic-v1`.
    pub listen: Vec<Multiaddr>,
    /// Bootstrap peers (`/ip4/…/tcp/…/p2p/<peer id>`, `/dns4/seed.example/tcp/4001/p2p/…`,
    /// `/ip6/…/udp/…/quic-v1/p2p/…`).
    pub bootstrap: Vec<Multiaddr>,
    /// Most established connections.
    pub max_connections: u32,
    /// Timeout of one fetch request.
    pub request_timeout: Duration,
    /// Peers never to connect with.
    pub denied_peers: Vec<PeerId>,
    /// Close connections idle this long.
    pub idle_timeout: Duration,
    /// Most fetch requests served concurrently per connection.
    pub max_concurrent_streams: usize,
    /// Addresses at which others can reach us, announced as confirmed (e.g. a port forward
    /// on the router).
    pub external_addresses: Vec<Multiaddr>,
    /// Serve as a circuit relay v2 for others, within these limits; `None`: do not.
    pub relay_server: Option<RelayLimits>,
    /// Relays to reserve a slot on when AutoNAT finds us not publicly reachable
    /// (`/ip4/…/tcp/…/p2p/<relay peer id>`), besides connected peers that offer the relay
    /// protocol.
    pub relays: Vec<Multiaddr>,
    /// Ask the local router for a port mapping (UPnP IGD).
    pub upnp: bool,
}

/// Limits of the relay service a node offers with `relay_server = true`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayLimits {
    /// Most reservations held at once, in all.
    pub max_reservations: usize,
    /// Most circuits relayed at once, in all.
    pub max_circuits: usize,
    /// A circuit is closed after this long.
    pub max_circuit_duration: Duration,
    /// A circuit is closed after this many bytes (both directions together).
    pub max_circuit_bytes: u64,
}

impl Default for RelayLimits {
    fn default() -> Self {
        RelayLimits {
            max_reservations: 128,
            max_circuits: 16,
            max_circuit_duration: Duration::from_secs(120),
            max_circuit_bytes: 8 << 20,
        }
    }
}

impl RelayLimits {
    pub(crate) fn to_config(self) -> libp2p::relay::Config {
        libp2p::relay::Config {
            max_reservations: self.max_reservations,
            max_reservations_per_peer: 4,
            reservation_duration: Duration::from_secs(3600),
            max_circuits: self.max_circuits,
            max_circuits_per_peer: 4,
            max_circuit_duration: self.max_circuit_duration,
            max_circuit_bytes: self.max_circuit_bytes,
            ..Default::default()
        }
    }
}

impl NetConfig {
    /// Defaults for everything but the identity and network name.
    pub fn new(network: impl Into<String>, keypair: identity::Keypair) -> Self {
        NetConfig {
            network: network.into(),
            keypair,
            listen: Vec::new(),
            bootstrap: Vec::new(),
            max_connections: 512,
            request_timeout: Duration::from_secs(15),
            denied_peers: Vec::new(),
            idle_timeout: Duration::from_secs(300),
            max_concurrent_streams: 64,
            external_addresses: Vec::new(),
            relay_server: None,
            relays: Vec::new(),
            upnp: false,
        }
    }
}

/// Something the swarm saw that the daemon must act on.
#[derive(Debug)]
pub enum Event {
    /// A gossip message awaiting validation: answer with [`Client::report_validation`].
    Gossip {
        topic: Topic,
        message_id: MessageId,
        source: PeerId,
        data: Vec<u8>,
    },
    /// A peer asks us to store a DHT record; store it with [`Client::store_record`] only if
    /// it is valid.
    InboundPutRecord {
        source: PeerId,
        record: Record,
    },
    /// A peer announces it provides a key; store it with [`Client::store_provider`] if valid.
    InboundAddProvider {
        record: ProviderRecord,
    },
    /// A hole punch (DCUtR) over a relayed connection to `peer` ended: `direct` is whether
    /// it gave a direct connection.
    HolePunch {
        peer: PeerId,
        direct: bool,
    },
    PeerConnected(PeerId),
    PeerDisconnected(PeerId),
    Listening(Multiaddr),
}

/// An inbound fetch request: answer with [`Client::respond`].
#[derive(Debug)]
pub struct InboundFetch {
    pub peer: PeerId,
    pub id: InboundRequestId,
    pub request: FetchRequest,
    pub channel: ResponseChannel<FetchResponse>,
}

/// Builds the network: the client, the two inbound streams, and the event loop to spawn.
pub fn new(
    config: NetConfig,
) -> Result<
    (
        Client,
        mpsc::Receiver<Event>,
        mpsc::Receiver<InboundFetch>,
        EventLoop,
    ),
    NetError,
> {
    let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_CAPACITY);
    let (ev_tx, ev_rx) = mpsc::channel(EVENT_CAPACITY);
    let (fetch_tx, fetch_rx) = mpsc::channel(FETCH_CAPACITY);
    let local_peer_id = config.keypair.public().to_peer_id();
    let event_loop = EventLoop::new(config, cmd_rx, ev_tx, fetch_tx)?;
    Ok((
        Client::new(cmd_tx, local_peer_id),
        ev_rx,
        fetch_rx,
        event_loop,
    ))
}
