//! The task that owns the `Swarm`.
//!
//! Owns the `Swarm` and every pending query, request and dial; nothing else touches them. It never
//! waits for the daemon: events and inbound requests go out with `try_send` (when the channel is
//! full, an event is dropped and a fetch answered `Busy`), and it stores no inbound DHT record
//! itself (`StoreInserts::FilterBoth`: the daemon validates, then calls `store_record` or
//! `store_provider`).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::StreamExt;
use libp2p::core::transport::ListenerId;
use libp2p::gossipsub::{self, TopicHash};
use libp2p::kad::{
    self, GetProvidersOk, GetRecordOk, QueryId, QueryResult, Quorum, store::RecordStore,
};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, InboundRequestId, OutboundRequestId};
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::{ConnectionId, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, autonat, dcutr, identify, noise, relay, tcp, upnp, yamux};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};
use upswarm_proto::fetch::{Answer, FetchResponse};

use crate::behaviour::{self, Behaviour, BehaviourEvent};
use crate::client::{Command, NetInfo, PeerLink, Reachability, Reply};
use crate::{Event, InboundFetch, NetConfig, NetError, Topic};

/// Owns the swarm; run it with [`EventLoop::run`] on its own task.
pub struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
    fetches: mpsc::Sender<InboundFetch>,
    topics: HashMap<TopicHash, Topic>,
    kad_protocol: libp2p::StreamProtocol,
    bootstrap: Vec<Multiaddr>,
    pending_get_records: HashMap<QueryId, (Vec<kad::Record>, Reply<Vec<kad::Record>>)>,
    pending_providers: HashMap<QueryId, (HashSet<PeerId>, Reply<HashSet<PeerId>>)>,
    pending_put: HashMap<QueryId, Reply<()>>,
    pending_provide: HashMap<QueryId, Reply<()>>,
    pending_requests: HashMap<OutboundRequestId, (PeerId, Reply<FetchResponse>)>,
    /// Answers handed to the fetch protocol, until it reports them sent or failed.
    pending_responses: HashMap<InboundRequestId, Reply<()>>,
    /// Dials asked for by [`crate::Client::dial`], answered when the connection is up or
    /// has failed.
    pending_dials: HashMap<ConnectionId, (Multiaddr, Reply<()>)>,
    listeners: Vec<Multiaddr>,
    connected: HashSet<PeerId>,
    /// Every established connection: its peer, whether it goes through a relay, and the
    /// address we dialled (`None` for inbound ones).
    connections: HashMap<ConnectionId, (PeerId, bool, Option<Multiaddr>)>,
    /// Relays we know of: configured ones and connected peers that offer the relay (hop)
    /// protocol, each with an address to reach it.
    relay_candidates: HashMap<PeerId, Multiaddr>,
    /// Circuit listeners asked for, by relay.
    relay_listeners: HashMap<ListenerId, PeerId>,
    /// Relays that accepted our reservation.
    reserved: HashSet<PeerId>,
    /// AutoNAT found us not publicly reachable.
    private: bool,
}

/// Relays a private node holds reservations on at most.
const MAX_RELAYS: usize = 2;

impl std::fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLoop")
            .field("peer_id", self.swarm.local_peer_id())
            .finish()
    }
}

impl EventLoop {
    pub(crate) fn new(
        config: NetConfig,
        commands: mpsc::Receiver<Command>,
        events: mpsc::Sender<Event>,
        fetches: mpsc::Sender<InboundFetch>,
    ) -> Result<Self, NetError> {
        let cfg = config.clone();
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(config.keypair.clone())
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .map_err(|e| NetError::Config(format!("transport: {e}")))?
            .with_quic()
            .with_dns()
            .map_err(|e| NetError::Config(format!("DNS resolver: {e}")))?
            .with_relay_client(noise::Config::new, yamux::Config::default)
            .map_err(|e| NetError::Config(format!("relay transport: {e}")))?
            .with_behaviour(|key, relay_client| {
                behaviour::build(key, relay_client, &cfg)
                    .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
            })
            .map_err(|e| NetError::Config(format!("behaviour: {e}")))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(config.idle_timeout))
            .build();
        for addr in &config.listen {
            swarm
                .listen_on(addr.clone())
                .map_err(|e| NetError::Listen {
                    addr: addr.clone(),
                    reason: e.to_string(),
                })?;
        }
        for addr in &config.external_addresses {
            swarm.add_external_address(addr.clone());
        }
        let mut relay_candidates = HashMap::new();
        for addr in &config.relays {
            let Some(Protocol::P2p(peer)) = addr.iter().last() else {
                return Err(NetError::Config(format!(
                    "relay {addr} does not end in /p2p/<peer id>"
                )));
            };
            let mut base = addr.clone();
            base.pop();
            swarm
                .behaviour_mut()
                .autonat
                .add_server(peer, Some(base.clone()));
            relay_candidates.insert(peer, base);
        }
        let topics = Topic::ALL
            .iter()
            .map(|t| (t.ident(&config.network).hash(), *t))
            .collect();
        Ok(EventLoop {
            swarm,
            commands,
            events,
            fetches,
            topics,
            kad_protocol: behaviour::protocol(&config.network, "kad/1.0.0")?,
            bootstrap: config.bootstrap,
            pending_get_records: HashMap::new(),
            pending_providers: HashMap::new(),
            pending_put: HashMap::new(),
            pending_provide: HashMap::new(),
            pending_requests: HashMap::new(),
            pending_responses: HashMap::new(),
            pending_dials: HashMap::new(),
            listeners: Vec::new(),
            connected: HashSet::new(),
            connections: HashMap::new(),
            relay_candidates,
            relay_listeners: HashMap::new(),
            reserved: HashSet::new(),
            private: false,
        })
    }

    /// Runs until every [`crate::Client`] is dropped.
    ///
    /// Shutdown order: when the command channel closes the loop returns, dropping the swarm
    /// (which closes every connection).
    pub async fn run(mut self) {
        self.dial_bootstrap();
        let mut rebootstrap = tokio::time::interval(Duration::from_secs(10));
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = self.commands.recv() => match command {
                    Some(c) => self.on_command(c),
                    None => break,
                },
                _ = rebootstrap.tick() => {
                    // Until we have peers, keep trying the bootstrap list.
                    if self.connected.is_empty() {
                        self.dial_bootstrap();
                    }
                    // A private node that lost (or never got) its reservations tries again.
                    self.reserve_relays();
                }
            }
        }
        debug!("network task stopped");
    }

    fn dial_bootstrap(&mut self) {
        for addr in self.bootstrap.clone() {
            if let Some(Protocol::P2p(peer)) = addr.iter().last() {
                if peer == *self.swarm.local_peer_id() {
                    continue;
                }
                let mut base = addr.clone();
                base.pop();
                self.swarm.behaviour_mut().kad.add_address(&peer, base);
            }
            if let Err(e) = self.swarm.dial(addr.clone()) {
                debug!(%addr, "bootstrap dial failed: {e}");
            }
        }
        if !self.bootstrap.is_empty() {
            let _ = self.swarm.behaviour_mut().kad.bootstrap();
        }
        // Configured relays: connect now, so that they can also tell us (AutoNAT) whether
        // we are reachable.
        let bootstrap: HashSet<PeerId> = self
            .bootstrap
            .iter()
            .filter_map(|a| match a.iter().last() {
                Some(Protocol::P2p(p)) => Some(p),
                _ => None,
            })
            .collect();
        for (peer, addr) in self.relay_candidates.clone() {
            if !self.connected.contains(&peer) && !bootstrap.contains(&peer) {
                let _ = self.swarm.dial(addr.with(Protocol::P2p(peer)));
            }
        }
    }

    /// While private: listen on `/p2p-circuit` through known relays, up to [`MAX_RELAYS`].
    fn reserve_relays(&mut self) {
        if !self.private {
            return;
        }
        let mut candidates: Vec<(PeerId, Multiaddr)> = self
            .relay_candidates
            .iter()
            .filter(|(p, _)| !self.relay_listeners.values().any(|r| r == *p))
            .map(|(p, a)| (*p, a.clone()))
            .collect();
        candidates.sort_by_key(|(p, _)| *p);
        for (peer, addr) in candidates {
            if self.relay_listeners.len() >= MAX_RELAYS {
                break;
            }
            let circuit = addr.with(Protocol::P2p(peer)).with(Protocol::P2pCircuit);
            match self.swarm.listen_on(circuit.clone()) {
                Ok(id) => {
                    info!(relay = %peer, "reserving a slot on relay");
                    self.relay_listeners.insert(id, peer);
                }
                Err(e) => debug!(%circuit, "cannot listen through relay: {e}"),
            }
        }
    }

    fn on_nat_status(&mut self, status: autonat::NatStatus) {
        let kad_mode = match &status {
            autonat::NatStatus::Private => {
                info!("AutoNAT: not publicly reachable; DHT client mode, reserving relays");
                self.private = true;
                kad::Mode::Client
            }
            autonat::NatStatus::Public(addr) => {
                info!(%addr, "AutoNAT: publicly reachable");
                self.private = false;
                kad::Mode::Server
            }
            autonat::NatStatus::Unknown => {
                self.private = false;
                kad::Mode::Server
            }
        };
        self.swarm.behaviour_mut().kad.set_mode(Some(kad_mode));
        if self.private {
            self.reserve_relays();
        } else {
            // Reachable directly: circuits are not needed any more.
            for id in std::mem::take(&mut self.relay_listeners).into_keys() {
                self.swarm.remove_listener(id);
            }
            self.reserved.clear();
        }
    }

    fn reachability(&self) -> Reachability {
        match self.swarm.behaviour().autonat.nat_status() {
            autonat::NatStatus::Public(addr) => Reachability::Public(addr),
            autonat::NatStatus::Private => {
                let mut relays: Vec<PeerId> = self.reserved.iter().copied().collect();
                relays.sort();
                Reachability::Private { relays }
            }
            autonat::NatStatus::Unknown => Reachability::Unknown,
        }
    }

    fn links(&self) -> Vec<(PeerId, PeerLink)> {
        let mut links: HashMap<PeerId, PeerLink> = HashMap::new();
        for (peer, relayed, _) in self.connections.values() {
            let link = if *relayed {
                PeerLink::Relayed
            } else {
                PeerLink::Direct
            };
            links
                .entry(*peer)
                .and_modify(|l| {
                    if link == PeerLink::Direct {
                        *l = PeerLink::Direct
                    }
                })
                .or_insert(link);
        }
        let mut links: Vec<_> = links.into_iter().collect();
        links.sort_by_key(|(p, _)| *p);
        links
    }

    fn emit(&self, event: Event) {
        if let Err(e) = self.events.try_send(event) {
            warn!("daemon is not keeping up with network events; dropped one: {e}");
        }
    }

    fn on_command(&mut self, command: Command) {
        let b = self.swarm.behaviour_mut();
        match command {
            Command::Dial { addr, reply } => {
                // The peer dialled is the last `/p2p/` (before it, in a circuit address
                // `…/p2p/<relay>/p2p-circuit/p2p/<peer>`, comes the relay).
                let peer = addr
                    .iter()
                    .filter_map(|p| match p {
                        Protocol::P2p(id) => Some(id),
                        _ => None,
                    })
                    .last();
                if peer.is_some_and(|p| self.connected.contains(&p)) {
                    // Already connected to that peer: nothing to do.
                    let _ = reply.send(Ok(()));
                    return;
                }
                let opts = DialOpts::from(addr.clone());
                let id = opts.connection_id();
                match self.swarm.dial(opts) {
                    Ok(()) => {
                        self.pending_dials.insert(id, (addr, reply));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(NetError::Dial {
                            addr,
                            reason: e.to_string(),
                        }));
                    }
                }
            }
            Command::Publish { topic, data, reply } => {
                let ident = self
                    .topics
                    .iter()
                    .find(|(_, t)| **t == topic)
                    .map(|(h, _)| h.clone());
                let r = match ident {
                    Some(hash) => b
                        .gossipsub
                        .publish(hash, data)
                        .map_err(|e| NetError::Publish(e.to_string())),
                    None => Err(NetError::Publish("unknown topic".into())),
                };
                let _ = reply.send(r);
            }
            Command::ReportValidation {
                message_id,
                source,
                acceptance,
            } => {
                b.gossipsub
                    .report_message_validation_result(&message_id, &source, acceptance);
            }
            Command::PutRecord { record, reply } => match b.kad.put_record(record, Quorum::One) {
                Ok(id) => {
                    self.pending_put.insert(id, reply);
                }
                Err(e) => {
                    let _ = reply.send(Err(NetError::Dht(e.to_string())));
                }
            },
            Command::StoreRecord { record } => {
                if let Err(e) = b.kad.store_mut().put(record) {
                    warn!("cannot store DHT record: {e}");
                }
            }
            Command::StoreProvider { record } => {
                if let Err(e) = b.kad.store_mut().add_provider(record) {
                    warn!("cannot store provider record: {e}");
                }
            }
            Command::GetRecords { key, reply } => {
                let id = b.kad.get_record(key);
                self.pending_get_records.insert(id, (Vec::new(), reply));
            }
            Command::StartProviding { key, reply } => match b.kad.start_providing(key) {
                Ok(id) => {
                    self.pending_provide.insert(id, reply);
                }
                Err(e) => {
                    let _ = reply.send(Err(NetError::Dht(e.to_string())));
                }
            },
            Command::GetProviders { key, reply } => {
                let id = b.kad.get_providers(key);
                self.pending_providers.insert(id, (HashSet::new(), reply));
            }
            Command::Request {
                peer,
                request,
                reply,
            } => {
                let id = b.fetch.send_request(&peer, request);
                self.pending_requests.insert(id, (peer, reply));
            }
            Command::Respond {
                id,
                channel,
                response,
                reply,
            } => {
                // Fails only when the peer has gone: nothing more to wait for then.
                if b.fetch.send_response(channel, response).is_ok() {
                    self.pending_responses.insert(id, reply);
                } else {
                    let _ = reply.send(Ok(()));
                }
            }
            Command::Block { peer } => {
                b.blocked.block_peer(peer);
                b.gossipsub.blacklist_peer(&peer);
                b.kad.remove_peer(&peer);
            }
            Command::Unblock { peer } => {
                b.blocked.unblock_peer(peer);
                b.gossipsub.remove_blacklisted_peer(&peer);
            }
            Command::Info { reply } => {
                let gossip = &self.swarm.behaviour().gossipsub;
                let info = NetInfo {
                    peer_id: *self.swarm.local_peer_id(),
                    listeners: self.listeners.clone(),
                    connected: self.connected.iter().copied().collect(),
                    gossip_mesh_peers: gossip.all_mesh_peers().count(),
                    scores: self
                        .connected
                        .iter()
                        .map(|p| (*p, gossip.peer_score(p)))
                        .collect(),
                    reachability: self.reachability(),
                    links: self.links(),
                };
                let _ = reply.send(info);
            }
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match &event {
            SwarmEvent::ConnectionEstablished {
                connection_id,
                peer_id,
                endpoint,
                ..
            } => {
                if let Some((_, reply)) = self.pending_dials.remove(connection_id) {
                    let _ = reply.send(Ok(()));
                }
                let dialled = endpoint
                    .is_dialer()
                    .then(|| endpoint.get_remote_address().clone());
                self.connections
                    .insert(*connection_id, (*peer_id, endpoint.is_relayed(), dialled));
            }
            SwarmEvent::ConnectionClosed { connection_id, .. } => {
                self.connections.remove(connection_id);
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } => {
                if let Some(relay) = self.relay_listeners.remove(listener_id) {
                    info!(%relay, "relay reservation ended: {reason:?}");
                    self.reserved.remove(&relay);
                }
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                error,
                ..
            } => {
                if let Some((addr, reply)) = self.pending_dials.remove(connection_id) {
                    let _ = reply.send(Err(NetError::Dial {
                        addr,
                        reason: dial_reason(error),
                    }));
                }
            }
            _ => {}
        }
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                info!(%address, "listening");
                self.listeners.push(address.clone());
                self.emit(Event::Listening(address));
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                num_established,
                ..
            } if num_established.get() == 1 && self.connected.insert(peer_id) => {
                debug!(peer = %peer_id, "connected");
                self.emit(Event::PeerConnected(peer_id));
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established,
                ..
            } if num_established == 0 && self.connected.remove(&peer_id) => {
                debug!(peer = %peer_id, "disconnected");
                self.emit(Event::PeerDisconnected(peer_id));
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                connection_id,
            })) => {
                if info.protocols.contains(&relay::HOP_PROTOCOL_NAME) {
                    // A relay: reachable at the address we dialled it on.
                    let dialled = self
                        .connections
                        .get(&connection_id)
                        .and_then(|(_, relayed, a)| a.clone().filter(|_| !relayed));
                    if let Some(mut addr) = dialled {
                        if let Some(Protocol::P2p(_)) = addr.iter().last() {
                            addr.pop();
                        }
                        self.relay_candidates.entry(peer_id).or_insert(addr);
                        self.reserve_relays();
                    }
                }
                if info.protocols.contains(&self.kad_protocol) {
                    for addr in info.listen_addrs {
                        self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Autonat(autonat::Event::StatusChanged {
                new,
                ..
            })) => self.on_nat_status(new),
            SwarmEvent::Behaviour(BehaviourEvent::RelayClient(
                relay::client::Event::ReservationReqAccepted {
                    relay_peer_id,
                    renewal,
                    ..
                },
            )) => {
                if !renewal {
                    info!(relay = %relay_peer_id, "relay accepted our reservation");
                }
                self.reserved.insert(relay_peer_id);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Relay(event)) => match event {
                relay::Event::ReservationReqAccepted { src_peer_id, .. } => {
                    debug!(peer = %src_peer_id, "relay: reservation accepted");
                }
                relay::Event::CircuitReqAccepted {
                    src_peer_id,
                    dst_peer_id,
                } => {
                    debug!(src = %src_peer_id, dst = %dst_peer_id, "relay: circuit opened");
                }
                relay::Event::ReservationReqDenied { src_peer_id, .. }
                | relay::Event::CircuitReqDenied { src_peer_id, .. } => {
                    info!(peer = %src_peer_id, "relay: request denied (limits)");
                }
                _ => {}
            },
            SwarmEvent::Behaviour(BehaviourEvent::Dcutr(dcutr::Event {
                remote_peer_id,
                result,
            })) => {
                match &result {
                    Ok(_) => {
                        info!(peer = %remote_peer_id, "hole punch succeeded: direct connection");
                        // Requests are spread over all connections to a peer: close the
                        // relayed ones, so that chunks take the direct path (and the relay's
                        // capacity is left to those who have no other).
                        let relayed: Vec<ConnectionId> = self
                            .connections
                            .iter()
                            .filter(|(_, (p, relayed, _))| *p == remote_peer_id && *relayed)
                            .map(|(id, _)| *id)
                            .collect();
                        for id in relayed {
                            self.swarm.close_connection(id);
                        }
                    }
                    Err(e) => {
                        info!(peer = %remote_peer_id, "hole punch failed, staying relayed: {e}")
                    }
                }
                self.emit(Event::HolePunch {
                    peer: remote_peer_id,
                    direct: result.is_ok(),
                });
            }
            SwarmEvent::Behaviour(BehaviourEvent::Upnp(event)) => match event {
                upnp::Event::NewExternalAddr { external_addr, .. } => {
                    info!(%external_addr, "UPnP: port mapped on the router");
                }
                upnp::Event::ExpiredExternalAddr { external_addr, .. } => {
                    info!(%external_addr, "UPnP: port mapping expired");
                }
                upnp::Event::GatewayNotFound => warn!("UPnP: no gateway found"),
                upnp::Event::NonRoutableGateway => {
                    warn!("UPnP: the gateway is not on the public network")
                }
            },
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => match self.topics.get(&message.topic) {
                Some(topic) => self.emit(Event::Gossip {
                    topic: *topic,
                    message_id,
                    source: propagation_source,
                    data: message.data,
                }),
                None => {
                    self.swarm
                        .behaviour_mut()
                        .gossipsub
                        .report_message_validation_result(
                            &message_id,
                            &propagation_source,
                            gossipsub::MessageAcceptance::Ignore,
                        );
                }
            },
            SwarmEvent::Behaviour(BehaviourEvent::Kad(event)) => self.on_kad_event(event),
            SwarmEvent::Behaviour(BehaviourEvent::Fetch(event)) => self.on_fetch_event(event),
            _ => {}
        }
    }

    fn on_kad_event(&mut self, event: kad::Event) {
        match event {
            kad::Event::InboundRequest { request } => match request {
                kad::InboundRequest::PutRecord {
                    source,
                    record: Some(record),
                    ..
                } => {
                    self.emit(Event::InboundPutRecord { source, record });
                }
                kad::InboundRequest::AddProvider {
                    record: Some(record),
                } => {
                    self.emit(Event::InboundAddProvider { record });
                }
                _ => {}
            },
            kad::Event::OutboundQueryProgressed {
                id, result, step, ..
            } => match result {
                QueryResult::GetRecord(r) => {
                    let mut done = step.last;
                    match r {
                        Ok(GetRecordOk::FoundRecord(found)) => {
                            if let Some((records, _)) = self.pending_get_records.get_mut(&id) {
                                records.push(found.record);
                            }
                        }
                        Ok(GetRecordOk::FinishedWithNoAdditionalRecord { .. }) | Err(_) => {
                            done = true
                        }
                    }
                    if done && let Some((records, reply)) = self.pending_get_records.remove(&id) {
                        let _ = reply.send(Ok(records));
                    }
                }
                QueryResult::GetProviders(r) => {
                    let mut done = step.last;
                    match r {
                        Ok(GetProvidersOk::FoundProviders { providers, .. }) => {
                            if let Some((all, _)) = self.pending_providers.get_mut(&id) {
                                all.extend(providers);
                            }
                        }
                        Ok(GetProvidersOk::FinishedWithNoAdditionalRecord { .. }) | Err(_) => {
                            done = true
                        }
                    }
                    if done && let Some((all, reply)) = self.pending_providers.remove(&id) {
                        let _ = reply.send(Ok(all));
                    }
                }
                QueryResult::PutRecord(r) => {
                    if let Some(reply) = self.pending_put.remove(&id) {
                        // Stored locally either way; a quorum failure only means no peer
                        // took a copy yet (e.g. a lone node).
                        let _ = reply.send(r.map(|_| ()).or_else(|e| match e {
                            kad::PutRecordError::QuorumFailed { .. } => Ok(()),
                            other => Err(NetError::Dht(other.to_string())),
                        }));
                    }
                }
                QueryResult::StartProviding(r) => {
                    if let Some(reply) = self.pending_provide.remove(&id) {
                        let _ = reply.send(r.map(|_| ()).map_err(|e| NetError::Dht(e.to_string())));
                    }
                }
                _ => {}
            },
            _ => {}
        }
    }

    fn on_fetch_event(
        &mut self,
        event: request_response::Event<upswarm_proto::fetch::FetchRequest, FetchResponse>,
    ) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request_id,
                    request,
                    channel,
                } => {
                    if let Err(e) = self.fetches.try_send(InboundFetch {
                        peer,
                        id: request_id,
                        request,
                        channel,
                    }) {
                        // The serving side is saturated: say so rather than queue without bound.
                        let fetch = match e {
                            mpsc::error::TrySendError::Full(f)
                            | mpsc::error::TrySendError::Closed(f) => f,
                        };
                        let _ = self
                            .swarm
                            .behaviour_mut()
                            .fetch
                            .send_response(fetch.channel, FetchResponse::new(Answer::Busy));
                    }
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some((_, reply)) = self.pending_requests.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure {
                request_id,
                error,
                peer,
                ..
            } => {
                if let Some((_, reply)) = self.pending_requests.remove(&request_id) {
                    let _ = reply.send(Err(NetError::Request {
                        peer,
                        reason: error.to_string(),
                    }));
                }
            }
            // Our answer is on its way, or will never be (the peer went, the stream failed).
            request_response::Event::ResponseSent { request_id, .. }
            | request_response::Event::InboundFailure { request_id, .. } => {
                if let Some(reply) = self.pending_responses.remove(&request_id) {
                    let _ = reply.send(Ok(()));
                }
            }
        }
    }
}

/// Why a dial failed, in a few words: the root cause of each transport's failure
/// ("Connection refused (os error 111)"), else the error with its sources.
fn dial_reason(e: &libp2p::swarm::DialError) -> String {
    let libp2p::swarm::DialError::Transport(errors) = e else {
        return with_sources(e);
    };
    let mut causes: Vec<String> = Vec::new();
    for (_, error) in errors {
        let mut root: &dyn std::error::Error = error;
        while let Some(s) = root.source() {
            root = s;
        }
        // Combined transports nest "Multiple dial errors occurred:\n - …": the last line
        // is the innermost cause.
        let text = root.to_string();
        let cause = text
            .lines()
            .last()
            .unwrap_or_default()
            .trim()
            .trim_start_matches("- ")
            .to_string();
        if !cause.is_empty() && !causes.contains(&cause) {
            causes.push(cause);
        }
    }
    if causes.is_empty() {
        with_sources(e)
    } else {
        causes.join("; ")
    }
}

/// An error and its sources, on one line (libp2p's dial errors keep the cause in them).
fn with_sources(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}
