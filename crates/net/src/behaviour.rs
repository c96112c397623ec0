//! The composed libp2p behaviour and its construction.
//!
//! Owns which protocols run and how they are configured: topics, limits, gossipsub scoring,
//! Kademlia's record filtering and in-memory store. It must not drive the swarm or handle its
//! events (`event_loop` does) and persists nothing.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use libp2p::gossipsub::{self, IdentTopic, MessageAuthenticity, ValidationMode};
use libp2p::identity::Keypair;
use libp2p::kad::store::{MemoryStore, MemoryStoreConfig};
use libp2p::kad::{self, StoreInserts};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{
    StreamProtocol, allow_block_list, autonat, connection_limits, dcutr, identify, ping, relay,
    upnp,
};

use crate::{FetchCodec, NetConfig, NetError};

/// Gossip topics, one set per network: `/upswarm/<network>/<kind>/1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    Releases,
    Health,
    Votes,
    Control,
    Roots,
    Proposals,
}

impl Topic {
    pub const ALL: [Topic; 6] = [
        Topic::Releases,
        Topic::Health,
        Topic::Votes,
        Topic::Control,
        Topic::Roots,
        Topic::Proposals,
    ];

    pub fn kind(self) -> &'static str {
        match self {
            Topic::Releases => "releases",
            Topic::Health => "health",
            Topic::Votes => "votes",
            Topic::Control => "control",
            Topic::Roots => "roots",
            Topic::Proposals => "proposals",
        }
    }

    pub(crate) fn ident(self, network: &str) -> IdentTopic {
        IdentTopic::new(format!("/upswarm/{network}/{}/1", self.kind()))
    }
}

/// Largest gossip message: a signed manifest (64 KiB) plus framing.
const MAX_GOSSIP_BYTES: usize = 80 * 1024;

#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    pub(crate) blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    pub(crate) limits: connection_limits::Behaviour,
    pub(crate) identify: identify::Behaviour,
    pub(crate) ping: ping::Behaviour,
    pub(crate) kad: kad::Behaviour<MemoryStore>,
    pub(crate) gossipsub: gossipsub::Behaviour,
    pub(crate) fetch: request_response::Behaviour<FetchCodec>,
    /// Reservations on relays and circuits through them (always on: a node may learn any
    /// time that it is behind a NAT).
    pub(crate) relay_client: relay::client::Behaviour,
    /// Serving as a relay for others: only when the operator opted in.
    pub(crate) relay: Toggle<relay::Behaviour>,
    /// Hole punching over a relayed connection.
    pub(crate) dcutr: dcutr::Behaviour,
    /// Are we publicly reachable? Peers dial us back on the addresses they observed.
    pub(crate) autonat: autonat::Behaviour,
    /// Port mapping on the local router, when the operator enabled it.
    pub(crate) upnp: Toggle<upnp::tokio::Behaviour>,
}

pub(crate) fn protocol(network: &str, what: &str) -> Result<StreamProtocol, NetError> {
    StreamProtocol::try_from_owned(format!("/upswarm/{network}/{what}")).map_err(|e| {
        NetError::Config(format!(
            "network name {network:?} makes an invalid protocol name: {e}"
        ))
    })
}

pub(crate) fn build(
    key: &Keypair,
    relay_client: relay::client::Behaviour,
    config: &NetConfig,
) -> Result<Behaviour, NetError> {
    let peer_id = key.public().to_peer_id();
    let network = &config.network;

    let mut kad_config = kad::Config::new(protocol(network, "kad/1.0.0")?);
    kad_config
        .set_record_filtering(StoreInserts::FilterBoth)
        .set_max_packet_size(256 * 1024)
        .set_query_timeout(Duration::from_secs(30))
        .set_publication_interval(Some(Duration::from_secs(600)))
        .set_provider_publication_interval(Some(Duration::from_secs(600)))
        .set_periodic_bootstrap_interval(Some(Duration::from_secs(120)));
    let store = MemoryStore::with_config(
        peer_id,
        MemoryStoreConfig {
            max_records: 4096,
            max_value_bytes: 80 * 1024,
            max_providers_per_key: 64,
            max_provided_keys: 1024,
        },
    );
    let mut kad = kad::Behaviour::with_config(peer_id, store, kad_config);
    // Server until AutoNAT says we are not reachable (then client: a NATed node must not
    // advertise itself as a DHT server nobody can dial); see `EventLoop::on_nat_status`.
    kad.set_mode(Some(kad::Mode::Server));

    let gossip_config = gossipsub::ConfigBuilder::default()
        .validation_mode(ValidationMode::Strict)
        .validate_messages()
        .max_transmit_size(MAX_GOSSIP_BYTES)
        .heartbeat_interval(Duration::from_millis(700))
        // Content-addressed ids: the same bytes from two publishers are one message.
        .message_id_fn(|m: &gossipsub::Message| {
            gossipsub::MessageId::from(blake3::hash(&m.data).as_bytes().to_vec())
        })
        .duplicate_cache_time(Duration::from_secs(120))
        .build()
        .map_err(|e| NetError::Config(format!("gossipsub: {e}")))?;
    let mut gossipsub =
        gossipsub::Behaviour::new(MessageAuthenticity::Signed(key.clone()), gossip_config)
            .map_err(|e| NetError::Config(format!("gossipsub: {e}")))?;
    let (params, thresholds) = score_params(network);
    gossipsub
        .with_peer_score(params, thresholds)
        .map_err(|e| NetError::Config(format!("gossipsub peer score: {e}")))?;
    for t in Topic::ALL {
        gossipsub
            .subscribe(&t.ident(network))
            .map_err(|e| NetError::Config(format!("gossipsub subscribe: {e}")))?;
    }

    let fetch = request_response::Behaviour::with_codec(
        FetchCodec,
        [(protocol(network, "fetch/1")?, ProtocolSupport::Full)],
        request_response::Config::default()
            .with_request_timeout(config.request_timeout)
            .with_max_concurrent_streams(config.max_concurrent_streams),
    );

    let limits = connection_limits::ConnectionLimits::default()
        .with_max_established(Some(config.max_connections))
        // A direct and a relayed connection while hole punching, and AutoNAT's dial-back
        // besides the connection the request came on.
        .with_max_established_per_peer(Some(4))
        .with_max_pending_incoming(Some(64));

    let mut blocked = allow_block_list::Behaviour::default();
    for p in &config.denied_peers {
        blocked.block_peer(*p);
    }

    Ok(Behaviour {
        blocked,
        limits: connection_limits::Behaviour::new(limits),
        identify: identify::Behaviour::new(
            identify::Config::new(format!("/upswarm/{network}/1"), key.public())
                .with_agent_version(format!("upswarm/{}", env!("CARGO_PKG_VERSION"))),
        ),
        ping: ping::Behaviour::new(ping::Config::new()),
        kad,
        gossipsub,
        fetch,
        relay_client,
        relay: config
            .relay_server
            .as_ref()
            .map(|l| relay::Behaviour::new(peer_id, l.to_config()))
            .into(),
        dcutr: dcutr::Behaviour::new(peer_id),
        autonat: autonat::Behaviour::new(
            peer_id,
            autonat::Config {
                boot_delay: Duration::from_secs(5),
                retry_interval: Duration::from_secs(30),
                refresh_interval: Duration::from_secs(300),
                throttle_server_period: Duration::from_secs(10),
                // Private fleets (a LAN, a VPN, the test namespaces) count too: reachable
                // from the peers is what matters, not a globally routable address.
                only_global_ips: false,
                ..Default::default()
            },
        ),
        upnp: config.upnp.then(upnp::tokio::Behaviour::default).into(),
    })
}

/// Weight of the invalid-message counter (gossipsub P4) on every topic: the counter is
/// squared, so `n` rejected messages cost `-100 · n²`.
pub const INVALID_MESSAGE_WEIGHT: f64 = -100.0;
/// The invalid-message counter is multiplied by this once a second (half-life ≈ 69 s).
pub const INVALID_MESSAGE_DECAY: f64 = 0.99;
/// Credit for each message a peer was first to deliver on a topic, up to
/// [`FIRST_DELIVERIES_CAP`] per topic; positive scores are capped at [`TOPIC_SCORE_CAP`] in
/// all, so no amount of good behaviour banks enough credit to absorb four invalid messages.
pub const FIRST_DELIVERY_WEIGHT: f64 = 1.0;
pub const FIRST_DELIVERIES_CAP: f64 = 50.0;
pub const TOPIC_SCORE_CAP: f64 = 100.0;
/// Below this score a peer gets no gossip (IHAVE/IWANT) from us: one rejected message.
pub const GOSSIP_THRESHOLD: f64 = -100.0;
/// Below this score we do not publish our own messages to the peer.
pub const PUBLISH_THRESHOLD: f64 = -500.0;
/// Below this score every message from the peer is ignored unread (graylist): four
/// rejected messages in quick succession get a peer here.
pub const GRAYLIST_THRESHOLD: f64 = -1000.0;

/// Peer scoring: invalid messages (bad signatures, stale releases) weigh heavily against the
/// peer that delivered them; the rest is gossipsub's defaults, forgiving for churn. The
/// parameters are documented in `docs/wire-format.md` §8.
fn score_params(network: &str) -> (gossipsub::PeerScoreParams, gossipsub::PeerScoreThresholds) {
    let mut params = gossipsub::PeerScoreParams {
        topic_score_cap: TOPIC_SCORE_CAP,
        ..Default::default()
    };
    // Many peers behind one address are penalised (a cheap Sybil signal), but not on
    // loopback: there they are the operator's own processes (a local testnet, a signer's
    // daemon next to a node), and more than ten of them would otherwise be graylisted.
    params.ip_colocation_factor_whitelist.extend([
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ]);
    for t in Topic::ALL {
        let topic = gossipsub::TopicScoreParams {
            topic_weight: 1.0,
            invalid_message_deliveries_weight: INVALID_MESSAGE_WEIGHT,
            invalid_message_deliveries_decay: INVALID_MESSAGE_DECAY,
            // Time in the mesh earns nothing: with gossipsub's default (+1 per millisecond,
            // up to 3600 per topic) any peer that stayed connected a few seconds could send
            // invalid messages for free.
            time_in_mesh_weight: 0.0,
            // Deliveries are sporadic (a release now and then): do not punish quiet meshes.
            mesh_message_deliveries_weight: 0.0,
            mesh_failure_penalty_weight: 0.0,
            first_message_deliveries_weight: FIRST_DELIVERY_WEIGHT,
            first_message_deliveries_cap: FIRST_DELIVERIES_CAP,
            ..Default::default()
        };
        params.topics.insert(t.ident(network).hash(), topic);
    }
    let thresholds = gossipsub::PeerScoreThresholds {
        gossip_threshold: GOSSIP_THRESHOLD,
        publish_threshold: PUBLISH_THRESHOLD,
        graylist_threshold: GRAYLIST_THRESHOLD,
        ..Default::default()
    };
    (params, thresholds)
}
