//! `upswarm daemon`: the long-running node.
//!
//! Tasks and channels (see `docs/architecture.md` for the picture):
//! - the **network** task (`upswarm_net::EventLoop`) owns the libp2p swarm;
//! - the **core** task owns the release state and decides on every manifest heard of;
//! - the **apply** task owns the apply lifecycle: installed versions, journal, history and
//!   the supervised program (`apply::ApplyActor`);
//! - the **seeder** serves inbound fetch requests from the chunk store;
//! - one **download** task per release being fetched;
//! - the **API** server answers the CLI.
//!
//! All channels between them are bounded.

pub mod admission;
pub mod api;
pub mod apply;
pub mod config;
pub mod core;
mod ctx;
pub mod dashboard;
mod fetcher;
pub mod gc;
pub mod metrics;
pub mod rollout;
mod seeder;
pub mod signed;
pub mod state;
mod uploads;
pub mod validate;
pub mod voting;

use std::fs;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::mpsc;
use tracing::{Instrument as _, info, warn};
use upswarm_content::ChunkStore;
use upswarm_net::{Multiaddr, NetConfig, PeerId, identity};
use upswarm_proto::TrustRoot;
use upswarm_store::Db;
use upswarm_trust::{
    RootChain, SecretKey, TimeCheck, read_secret_key, unix_now, verify_root_signatures,
    write_keypair,
};

pub use config::Config;
pub use ctx::Ctx;

use self::metrics::Metrics;
use self::state::{Haves, PeerBook, RateLimit, StateDb};
use crate::layout::Layout;

/// Runs the daemon until SIGINT or SIGTERM.
pub async fn run(config: Config) -> anyhow::Result<()> {
    crate::http::configure(config.tls.extra_ca_file.as_deref())?;
    let data_dir = config.data_dir.clone();
    fs::create_dir_all(&data_dir)
        .with_context(|| format!("{}: cannot create data directory", data_dir.display()))?;
    let _ = fs::set_permissions(&data_dir, fs::Permissions::from_mode(0o700));
    let layout = Layout::new(&data_dir);
    for stale in [&layout.api_addr, &layout.listen_addrs] {
        let _ = fs::remove_file(stale);
    }
    // Decodes cut short by a crash or a kill: nothing in there is ever resumed.
    let _ = fs::remove_dir_all(&layout.decoding);

    let node_key = load_identity(&layout)?;
    let keypair =
        identity::Keypair::ed25519_from_bytes(*node_key.seed()).context("node identity key")?;
    let token = load_token(&layout)?;

    let (root_env, _) = crate::files::read_signed::<TrustRoot>(&config.trust_root)?;
    let (root, _) = verify_root_signatures(&root_env).with_context(|| {
        format!(
            "{}: the pinned trust root is not valid",
            config.trust_root.display()
        )
    })?;
    if let Err(e) = (TimeCheck {
        now: unix_now(),
        skew: config.clock_skew.as_secs(),
    })
    .check("trust root", root.root().expires_at)
    {
        warn!(
            "{}: {e}; no release will be accepted until a newer root arrives",
            config.trust_root.display()
        );
    }
    let mut chain = RootChain::new(root);

    let db = Db::open(&layout.db)?;
    let state = StateDb::open(db)?;
    let store = Arc::new(ChunkStore::open(&layout.chunks)?);
    let peers = PeerBook::load(
        state.peers.clone(),
        config.transfer.ban_after_faults,
        config.transfer.ban_duration,
    );
    let signed_store = signed::SignedStore::load(state.db.tree("signed")?);
    // Newer roots accepted earlier (over the network or the API), replayed in order.
    let mut newer: Vec<upswarm_proto::SignedEnvelope> = signed_store
        .all()
        .into_iter()
        .filter(|(k, _, _)| *k == upswarm_proto::fetch::SignedKind::Root)
        .filter_map(|(_, _, b)| upswarm_proto::SignedEnvelope::decode::<TrustRoot>(&b).ok())
        .collect();
    newer.sort_by_key(|e| e.open::<TrustRoot>().map(|r| r.version).unwrap_or(0));
    for env in &newer {
        if env
            .open::<TrustRoot>()
            .is_ok_and(|r| r.version > chain.current().version())
            && let Err(e) = chain.advance(env)
        {
            warn!("a stored trust root rotation no longer verifies: {e}");
        }
    }
    if chain.current().version() > 1 {
        info!(
            version = chain.current().version(),
            "trust root chain restored"
        );
    }

    let mut net = NetConfig::new(config.network.clone(), keypair);
    net.listen = parse_addrs(&config.network_options.listen, "network_options.listen")?;
    net.bootstrap = parse_addrs(
        &config.network_options.bootstrap,
        "network_options.bootstrap",
    )?;
    net.max_connections = config.network_options.max_connections;
    let n = &config.network_options;
    net.external_addresses =
        parse_addrs(&n.external_addresses, "network_options.external_addresses")?;
    net.relays = parse_addrs(&n.relays, "network_options.relays")?;
    net.relay_server = n.relay_server.then_some(upswarm_net::RelayLimits {
        max_reservations: n.relay_max_reservations,
        max_circuits: n.relay_max_circuits,
        max_circuit_duration: n.relay_max_circuit_duration,
        max_circuit_bytes: n.relay_max_circuit_bytes,
    });
    net.upnp = n.upnp;
    net.request_timeout = config.transfer.request_timeout;
    net.denied_peers = config
        .network_options
        .denied_peers
        .iter()
        .map(|p| {
            p.parse::<PeerId>()
                .with_context(|| format!("network_options.denied_peers: {p:?} is not a peer id"))
        })
        .collect::<anyhow::Result<_>>()?;
    net.denied_peers.extend(peers.banned(unix_now()));
    let (client, events, fetches, event_loop) = upswarm_net::new(net)?;
    info!(peer_id = %client.local_peer_id(), node_id = %node_key.key_id(), network = %config.network, "starting");
    tokio::spawn(event_loop.run());

    let ctx = Arc::new(Ctx {
        download_limit: RateLimit::new(config.transfer.max_download_rate),
        upload_limit: RateLimit::new(config.transfer.max_upload_rate),
        config,
        layout: layout.clone(),
        client,
        store,
        state,
        metrics: Metrics::default(),
        peers,
        haves: Haves::default(),
        signed: signed_store,
        disk: Default::default(),
        node_key,
    });

    let (core_tx, core_rx) = mpsc::channel(256);
    tokio::spawn(seeder::serve(ctx.clone(), fetches, core_tx.clone()));

    // Bound before the managed program can start: a port in use stops the daemon here,
    // with nothing to clean up.
    let listener = tokio::net::TcpListener::bind(ctx.config.api.listen)
        .await
        .with_context(|| format!("api.listen: cannot bind {}", ctx.config.api.listen))?;
    let api_addr = listener.local_addr()?;

    let (apply, apply_events) = match ctx.config.managed.clone() {
        Some(managed) => {
            let (actor, handle, events) = apply::ApplyActor::new(
                apply::ApplySettings {
                    managed,
                    data_dir: data_dir.clone(),
                    skip_backup: ctx.config.policy.skip_backup,
                    platform: ctx.config.platform.clone(),
                    keep_backups: ctx.config.retention.keep_backups,
                },
                &ctx.state.db,
            )
            .context("loading the installed state")?;
            tokio::spawn(actor.run().instrument(tracing::info_span!("apply")));
            (Some(handle), Some(events))
        }
        None => (None, None),
    };
    let mut node = core::Core::new(
        ctx.clone(),
        chain,
        core_rx,
        core_tx.clone(),
        events,
        apply.clone(),
        apply_events,
    );
    node.load().await;
    let ready = node.load_voting().and_then(|()| {
        crate::files::write_atomic(&layout.api_addr, format!("{api_addr}\n").as_bytes())
    });
    if let Err(e) = ready {
        // The apply actor may have started the program: stop it before giving up.
        if let Some(a) = &apply {
            a.shutdown().await;
        }
        return Err(e);
    }
    let core_task = tokio::spawn(node.run().instrument(tracing::info_span!("core")));
    info!(%api_addr, "control API listening");

    let app = api::router(ctx.clone(), core_tx.clone(), apply.clone(), &token);
    // On SIGTERM / SIGINT, in this order: the core stops (no new download, gossip or apply
    // is started; downloads in flight stop with what they fetched on disk, and resume at the
    // next start); a transition in progress stops at its journaled step (the next start
    // finishes it) and the managed program is stopped, so no program outlives its daemon;
    // the API stops accepting calls (those in flight get their answer); the state is
    // flushed. See the operator guide, "Stopping the daemon".
    let shutdown = {
        let apply = apply.clone();
        async move {
            shutdown_signal().await;
            info!("shutting down");
            let (tx, rx) = tokio::sync::oneshot::channel();
            if core_tx.send(core::CoreMsg::Shutdown(tx)).await.is_ok() {
                let _ = rx.await;
            }
            if let Some(a) = apply {
                a.shutdown().await;
            }
        }
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .context("control API")?;
    // The core has ended (it answered the shutdown) unless it had failed before.
    if !core_task.is_finished() {
        core_task.abort();
    }
    ctx.state.db.flush()?;
    info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}

fn parse_addrs(list: &[String], field: &str) -> anyhow::Result<Vec<Multiaddr>> {
    list.iter()
        .map(|a| {
            a.parse::<Multiaddr>()
                .with_context(|| format!("{field}: {a:?} is not a multiaddr"))
        })
        .collect()
}

/// Loads `<data_dir>/identity.key`, creating it on first start.
fn load_identity(layout: &Layout) -> anyhow::Result<SecretKey> {
    let prefix = &layout.identity;
    let secret = prefix.with_extension("key");
    if !secret.exists() {
        let key = SecretKey::generate()?;
        write_keypair(prefix, &key)?;
        info!(node_id = %key.key_id(), "generated a new node identity");
    }
    Ok(read_secret_key(&secret)?)
}

/// Loads `<data_dir>/api.token`, creating it (0600) on first start.
fn load_token(layout: &Layout) -> anyhow::Result<String> {
    let path = &layout.token;
    if !path.exists() {
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).map_err(|e| anyhow::anyhow!("random: {e}"))?;
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("{}: cannot create", path.display()))?;
        use std::io::Write;
        writeln!(f, "{}", hex::encode(raw))?;
    }
    let text =
        fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
    Ok(text.trim().to_string())
}
