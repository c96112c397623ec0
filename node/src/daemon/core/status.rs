//! What `upswarm status` shows of the core: the node, its network, its releases and their
//! downloads, the managed program, alarms, counters and disk use. Reads only; it must not
//! change the core's state (the disk measure is cached by `gc::DiskCache`).

use super::*;

impl ReachabilityView {
    pub(crate) fn of(r: &upswarm_net::Reachability) -> Self {
        use upswarm_net::Reachability as R;
        match r {
            R::Unknown => ReachabilityView {
                state: "unknown".into(),
                ..Default::default()
            },
            R::Public(a) => ReachabilityView {
                state: "public".into(),
                address: Some(a.to_string()),
                relays: Vec::new(),
            },
            R::Private { relays } => ReachabilityView {
                state: "private".into(),
                address: None,
                relays: relays.iter().map(|p| p.to_base58()).collect(),
            },
        }
    }
}

impl Core {
    pub(super) fn view(&self, id: &Hash32) -> Option<ReleaseView> {
        let k = self.releases.get(id)?;
        let m = &k.verified.manifest;
        Some(ReleaseView {
            id: id.to_hex(),
            name: m.name.clone(),
            version: m.version.to_string(),
            channel: m.channel.clone(),
            update_type: m.update_type.to_string(),
            source: k.stored.source,
            first_seen: k.stored.first_seen,
            download: k.stored.download.clone(),
            progress: self.downloads.get(id).map(|(p, _)| p.view()),
        })
    }

    pub(super) async fn status(&self) -> StatusView {
        let info = self.ctx.client.info().await.ok();
        if let Some(i) = &info {
            self.ctx.metrics.peers_connected.store(
                i.connected.len() as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        let mut releases: Vec<ReleaseView> = self
            .releases
            .keys()
            .filter_map(|id| self.view(id))
            .collect();
        releases.sort_by(|a, b| {
            (&a.name, &a.channel, &b.first_seen).cmp(&(&b.name, &b.channel, &a.first_seen))
        });
        let ctx = self.ctx.clone();
        let disk = tokio::task::spawn_blocking(move || {
            let disk = ctx.disk.get(&ctx.layout);
            ctx.metrics.record_disk(disk.total, &ctx.layout.root);
            disk
        })
        .await
        .unwrap_or_default();
        StatusView {
            node_id: self.ctx.node_key.key_id().to_hex(),
            peer_id: self.ctx.client.local_peer_id().to_base58(),
            network: self.ctx.config.network.clone(),
            listen: info
                .as_ref()
                .map(|i| i.listeners.iter().map(|a| a.to_string()).collect())
                .unwrap_or_default(),
            peers: info
                .as_ref()
                .map(|i| i.connected.iter().map(|p| p.to_base58()).collect())
                .unwrap_or_default(),
            reachability: info
                .as_ref()
                .map(|i| ReachabilityView::of(&i.reachability))
                .unwrap_or_default(),
            peer_links: info
                .as_ref()
                .map(|i| {
                    i.links
                        .iter()
                        .map(|(p, l)| {
                            let kind = match l {
                                upswarm_net::PeerLink::Direct => "direct",
                                upswarm_net::PeerLink::Relayed => "relayed",
                            };
                            (p.to_base58(), kind.to_string())
                        })
                        .collect()
                })
                .unwrap_or_default(),
            peer_scores: info
                .map(|i| i.scores.iter().map(|(p, s)| (p.to_base58(), *s)).collect())
                .unwrap_or_default(),
            banned: {
                let now = self.now();
                self.ctx
                    .peers
                    .snapshot()
                    .into_iter()
                    .filter_map(|(p, r)| {
                        r.banned_until
                            .filter(|t| *t > now)
                            .map(|t| (p.to_base58(), t))
                    })
                    .collect()
            },
            root_version: self.chain.current().version(),
            root_expires_at: self.chain.current().root().expires_at,
            releases,
            managed: self.apply.as_ref().map(|a| {
                let v = a.view();
                let i = &v.installed;
                ManagedView {
                    current: i.current.as_ref().map(|v| v.version.to_string()),
                    // Only what a rollback can reach: kept on disk.
                    previous: i
                        .previous
                        .iter()
                        .filter(|p| {
                            crate::daemon::apply::versions::dir(&a.layout().versions, &p.version)
                                .is_dir()
                        })
                        .map(|v| v.version.to_string())
                        .collect(),
                    pinned: i.pinned.as_ref().map(ToString::to_string),
                    failed: i.failed.iter().map(Hash32::to_hex).collect(),
                    program: a.program(),
                    applying: v
                        .applying
                        .as_ref()
                        .map(|a| (a.step.name().to_string(), a.to.to_string())),
                    recovering: !v.recovered,
                    cosmovisor: a.cosmovisor(),
                }
            }),
            alarms: {
                let mut alarms: Vec<String> = self
                    .alarms
                    .iter()
                    .chain(&self.root_alarm)
                    .cloned()
                    .collect();
                if let Some(a) = self.apply.as_ref().and_then(|a| a.cosmovisor()?.alarm) {
                    alarms.push(a);
                }
                alarms
            },
            counters: self.ctx.metrics.snapshot(),
            disk,
        }
    }
}
