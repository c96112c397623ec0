//! Rollout gates on this node: signed health reports and control messages, reports of
//! its own, re-sync with peers, yank, `upswarm explain`.

use super::*;

impl Core {
    /// Validates a signed health report, control message, trust root, proposal or vote
    /// (from gossip, a peer's resync answer or the API; see [`super::judge::judge_signed`]),
    /// takes it into the books and stores it. `Accept`: new here, to be spread; `Ignore`:
    /// valid but nothing to spread.
    pub(super) fn on_signed(
        &mut self,
        kind: SignedKind,
        bytes: &[u8],
    ) -> Result<MessageAcceptance, Rejected> {
        let time = self.time();
        let releases = &self.releases;
        let judged = super::judge::judge_signed(
            super::judge::Books {
                chain: &mut self.chain,
                rollout: &mut self.book,
                voting: &mut self.voting,
            },
            |id| releases.contains_key(id),
            kind,
            bytes,
            time,
        );
        Ok(match judged? {
            super::judge::Judged::Accept { about, durable } => {
                if !self.ctx.signed.insert(kind, about, bytes) {
                    return Ok(MessageAcceptance::Ignore);
                }
                // A rotation, a control message (a yank, a halt) or a proposal changes what
                // this node does: on disk before it is acted on or passed on, so a crash
                // cannot undo it. (Health reports and votes are many, and peers hand them
                // over again.)
                if durable && let Err(e) = self.ctx.state.flush_durably() {
                    warn!(
                        ?kind,
                        "cannot flush an accepted signed message to disk: {e}"
                    );
                }
                MessageAcceptance::Accept
            }
            super::judge::Judged::Keep { about } => {
                // Kept for when its proposal arrives, but not spread yet.
                self.ctx.signed.insert(kind, about, bytes);
                MessageAcceptance::Ignore
            }
            super::judge::Judged::Ignore => MessageAcceptance::Ignore,
        })
    }

    /// [`Self::on_signed`] for gossip: a rejection is logged and penalises the sender.
    pub(super) fn acceptance(&mut self, kind: SignedKind, bytes: &[u8]) -> MessageAcceptance {
        self.on_signed(kind, bytes).unwrap_or_else(|e| {
            debug!(?kind, "rejected a signed message: {e}");
            MessageAcceptance::Reject
        })
    }

    /// Signs, stores and gossips this node's health report about `release`.
    pub(super) fn send_report(
        &mut self,
        release: Hash32,
        status: HealthStatus,
        running: &semver::Version,
        detail: &str,
    ) {
        let report = HealthReport {
            v: upswarm_proto::health::HEALTH_VERSION,
            node: self.ctx.node_key.public(),
            release,
            status,
            running: running.clone(),
            at: self.now(),
            detail: detail.chars().take(200).collect(),
        };
        let mut env = SignedEnvelope::wrap(&report);
        self.ctx
            .node_key
            .sign_envelope(upswarm_proto::Context::Health, &mut env);
        let bytes = env.encode();
        self.book.add_health(&report);
        self.ctx.signed.insert(SignedKind::Health, release, &bytes);
        info!(release = %release, status = status.as_str(), "health report");
        self.gossip(Topic::Health, bytes, "a health report");
    }

    /// Reports what the apply actor did: health reports for the rollout (installing,
    /// healthy, rolled back) and webhooks, for automatic and manual transitions alike.
    pub(super) fn on_apply_event(&mut self, ev: ApplyEvent) {
        // An apply or rollback adds versions and backups: disk use is measured again.
        self.ctx.disk.invalidate();
        match ev {
            ApplyEvent::Started {
                kind: Kind::Apply,
                to,
                ..
            } => self.send_report(
                to.release,
                HealthStatus::Installed,
                &to.version,
                "installing",
            ),
            ApplyEvent::Started { .. } => {}
            ApplyEvent::Finished {
                kind,
                origin,
                from,
                to,
                outcome,
                reason,
                current,
            } => {
                let running = current.as_ref().map(|c| c.version.clone());
                let details = serde_json::json!({
                    "release": to.release.to_hex(),
                    "version": to.version.to_string(),
                    "from": from.as_ref().map(|f| f.version.to_string()),
                    "origin": origin,
                    "reason": reason,
                });
                let m = &self.ctx.metrics;
                match (kind, outcome) {
                    (Kind::Apply, Outcome::Applied) => Metrics::inc(&m.updates_applied),
                    (Kind::Apply, Outcome::RolledBack) => Metrics::inc(&m.updates_rolled_back),
                    (_, Outcome::Refused) | (Kind::Rollback, Outcome::RolledBack) => {
                        Metrics::inc(&m.updates_failed)
                    }
                    _ => {}
                }
                match (kind, outcome) {
                    (Kind::Apply, Outcome::Applied) => {
                        self.webhook("applied", details);
                        self.send_report(to.release, HealthStatus::Healthy, &to.version, "healthy");
                    }
                    (Kind::Apply, Outcome::RolledBack) => {
                        self.webhook("rolled_back", details);
                        self.send_report(
                            to.release,
                            HealthStatus::RolledBack,
                            running.as_ref().unwrap_or(&to.version),
                            "failed and rolled back",
                        );
                    }
                    (Kind::Rollback, Outcome::Applied) => {
                        // Back on an earlier version: by a yank of the one left (its
                        // report says so) or by the operator (not a verdict on it).
                        let details = serde_json::json!({
                            "release": from.as_ref().map(|f| f.release.to_hex()),
                            "version": from.as_ref().map(|f| f.version.to_string()),
                            "to": to.version.to_string(),
                            "origin": origin,
                        });
                        self.webhook("rolled_back", details);
                        match (origin, &from) {
                            (Origin::Yank, Some(f)) => self.send_report(
                                f.release,
                                HealthStatus::RolledBack,
                                &to.version,
                                "yanked; rolled back",
                            ),
                            _ => self.send_report(
                                to.release,
                                HealthStatus::Healthy,
                                &to.version,
                                "healthy (rolled back to by the operator)",
                            ),
                        }
                    }
                    (_, Outcome::Refused) | (Kind::Rollback, Outcome::RolledBack) => {
                        self.webhook("failed", details)
                    }
                    (_, Outcome::Halted) => {
                        self.webhook("failed", details);
                        self.send_report(
                            to.release,
                            HealthStatus::Failed,
                            &to.version,
                            "unhealthy at the chain upgrade height; the chain is stopped",
                        );
                    }
                    (_, Outcome::Postponed) => {
                        info!(version = %to.version, "apply postponed: {}", reason.unwrap_or_default())
                    }
                }
            }
        }
    }

    /// Pulls health reports and control messages of recent releases from a few peers.
    pub(super) fn resync(&self) {
        let mut recent: Vec<(&Hash32, &Known)> = self.releases.iter().collect();
        recent.sort_by_key(|(_, k)| std::cmp::Reverse(k.stored.first_seen));
        let mut subjects: Vec<(SignedKind, Hash32)> = Vec::new();
        for (id, _) in recent.into_iter().take(8) {
            subjects.push((SignedKind::Health, *id));
            subjects.push((SignedKind::Control, *id));
        }
        subjects.push((SignedKind::Proposal, ALL_PROPOSALS));
        subjects.push((SignedKind::Root, ALL_PROPOSALS));
        for p in self.voting.proposal_ids() {
            subjects.push((SignedKind::Vote, p));
        }
        let client = self.ctx.client.clone();
        let to_self = self.to_self.clone();
        tokio::spawn(async move {
            let Ok(info) = client.info().await else {
                return;
            };
            let mut peers = info.connected;
            // One random key per peer (a key drawn per comparison is no order: sort panics).
            peers.sort_by_cached_key(|_| rand::random::<u32>());
            for peer in peers.into_iter().take(3) {
                for (kind, about) in &subjects {
                    let req = FetchRequest::new(Want::Signed {
                        kind: *kind,
                        about: *about,
                    });
                    if let Ok(resp) = client.request(peer, req).await
                        && let Answer::Signed { envelopes } = resp.answer
                    {
                        let envelopes = envelopes
                            .into_iter()
                            .map(serde_bytes::ByteBuf::into_vec)
                            .collect();
                        let _ = to_self
                            .send(CoreMsg::Resynced {
                                kind: *kind,
                                envelopes,
                            })
                            .await;
                    }
                }
            }
        });
    }

    /// Rebuilds the rollout book from stored signed messages (after a restart).
    pub(super) fn load_signed(&mut self) {
        for (kind, _, bytes) in self.ctx.signed.all() {
            let _ = self.acceptance(kind, &bytes);
        }
        // A node that installs releases takes its place in every release's install order;
        // one that manages no program (a publisher, a seed) never fills it, so it does not.
        if self.apply.is_some() {
            self.book.know(self.ctx.node_key.key_id());
        }
    }

    /// A yanked release that this node runs is rolled back to the previous version (see
    /// [`decide::yank`]).
    pub(super) fn obey_yank(&mut self) {
        let Some(a) = self.apply.clone() else {
            return;
        };
        let view = a.view();
        let versions = a.layout().versions.clone();
        let kept = |v: &semver::Version| crate::daemon::apply::versions::dir(&versions, v).is_dir();
        match decide::yank(&self.book, &view.installed, view.idle(), kept) {
            // Said once per yanked release, not on every tick.
            Some(decide::YankAction::Stuck { yanked })
                if self.yank_stuck_said.insert(yanked.release) =>
            {
                warn!(version = %yanked.version, "this version was yanked, but there is no earlier version to roll back to");
            }
            None | Some(decide::YankAction::Stuck { .. }) => {}
            Some(decide::YankAction::RollBack { to, yanked, note }) => {
                warn!(version = %yanked.version, to = %to.version, "release yanked by the control role; rolling back");
                let source = crate::daemon::apply::versions::dir(&versions, &to.version);
                a.offer(TransitionRequest {
                    kind: Kind::Rollback,
                    origin: Origin::Yank,
                    target: Target { to, source },
                    mark_failed: Some(yanked.release),
                    note: Some(note),
                });
            }
        }
    }

    /// Tells the apply actor which releases are yanked (retention never keeps one as a
    /// rollback target), when that changed.
    pub(super) fn report_yanks(&mut self) {
        let Some(a) = &self.apply else {
            return;
        };
        let yanked = decide::yanked(&self.book, self.releases.keys().copied());
        if yanked != self.yanks_reported && a.set_yanked(yanked.clone()) {
            self.yanks_reported = yanked;
        }
    }

    pub(super) fn explain(
        &self,
        version: Option<semver::Version>,
    ) -> Result<ExplainView, ExplainError> {
        let list = self.followed_newest_first();
        let (id, k) = match version {
            Some(v) => list
                .into_iter()
                .find(|(_, k)| k.verified.manifest.version == v)
                .ok_or(ExplainError::NotFollowed(v))?,
            None => list.into_iter().next().ok_or(ExplainError::NothingKnown)?,
        };
        Ok(self.explain_release(id, k))
    }

    /// `explain` of each followed release, newest first, at most `most` (the dashboard).
    pub(super) fn rollouts(&self, most: usize) -> Vec<ExplainView> {
        self.followed_newest_first()
            .into_iter()
            .take(most)
            .map(|(id, k)| self.explain_release(id, k))
            .collect()
    }

    fn explain_release(&self, id: &Hash32, k: &Known) -> ExplainView {
        let m = &k.verified.manifest;
        let me = self.ctx.node_key.key_id();
        let (hold, verdict) = match &self.apply {
            None => (
                None,
                "this daemon manages no program: it installs nothing".to_string(),
            ),
            Some(_)
                if self
                    .ctx
                    .config
                    .managed_product()
                    .is_some_and(|p| p != m.name) =>
            {
                (
                    None,
                    format!(
                        "never installed here: this node's program runs {} releases, not {}",
                        self.ctx.config.managed_product().unwrap_or_default(),
                        m.name
                    ),
                )
            }
            Some(a) if a.cosmovisor_mode() => (
                None,
                super::apply::cosmovisor_verdict(a, m).unwrap_or_default(),
            ),
            Some(a) => {
                let hold = self.hold(id, k, &a.installed());
                let verdict = match &hold {
                    Some(h) => h.to_string(),
                    None if !matches!(k.stored.download, DownloadState::Complete { .. }) => {
                        "will be applied once downloaded".to_string()
                    }
                    None => "will be applied now".to_string(),
                };
                (hold, verdict)
            }
        };
        ExplainView {
            release: id.to_hex(),
            name: m.name.clone(),
            version: m.version.to_string(),
            node_id: me.to_hex(),
            rollout: self.book.view(
                id,
                m,
                &me,
                self.ctx.config.rollout.spread,
                self.now(),
                self.ctx.config.clock_skew.as_secs(),
            ),
            hold,
            verdict,
            download: k.stored.download.clone(),
            progress: self.downloads.get(id).map(|(p, _)| p.view()),
            known_nodes: self.book.known_nodes(),
            changelog: m.changelog.clone(),
        }
    }
}
