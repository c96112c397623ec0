//! Protocol activation on this node: voting, `activations.json`, hooks, alarms.

use super::*;

impl Core {
    /// Loads the voter key and the operator's withheld votes. Called once at start.
    pub fn load_voting(&mut self) -> anyhow::Result<()> {
        if let Some(path) = &self.ctx.config.voting.voter_key {
            let key = upswarm_trust::read_secret_key(path)?;
            let root = self.chain.current().root();
            if root.roles.electorate.weight_of(&key.key_id()).is_none() {
                warn!(voter = %key.key_id(), "the voter key is not in the trust root's electorate; its votes will not count");
            }
            self.voter_key = Some(key);
        }
        self.withheld = self
            .ctx
            .state
            .withheld
            .iter()
            .filter_map(Result::ok)
            .filter_map(|(k, v)| v.then(|| Hash32::from_slice(&k).ok()).flatten())
            .collect();
        Ok(())
    }

    /// The protocols the software this node runs declares (its current release's manifest).
    pub(super) fn running_provides(&self) -> Vec<String> {
        let Some(a) = &self.apply else {
            return Vec::new();
        };
        let Some(current) = a.installed().current else {
            return Vec::new();
        };
        self.releases
            .get(&current.release)
            .map(|k| k.verified.manifest.protocols.provides.clone())
            .unwrap_or_default()
    }

    /// Whether this node may attest readiness for `protocol` now: it runs, healthy, software
    /// that declares support for it, and no update is in progress.
    pub(super) fn ready_for(&self, protocol: &str) -> bool {
        let Some(a) = &self.apply else { return false };
        a.view().idle()
            && a.program().running
            && self.running_provides().iter().any(|p| p == protocol)
    }

    /// Re-evaluates every proposal: votes where ready, updates `activations.json`, runs the
    /// activation hook, raises or clears the upgrade-required alarm.
    pub(super) fn voting_tick(&mut self) {
        let now = self.now();
        let root = self.chain.current().root().clone();
        // Vote where this node is ready.
        if let Some(key) = self
            .voter_key
            .as_ref()
            .map(|k| upswarm_trust::SecretKey::from_seed(&k.seed()))
        {
            let me = key.key_id();
            let mut to_sign = Vec::new();
            for (id, s) in self.voting.statuses(&root, now) {
                let Some(p) = self.voting.proposal(&id) else {
                    continue;
                };
                let protocol = p.proposal.protocol.clone();
                let open = matches!(s.state, upswarm_activation::ActivationState::Started)
                    || (matches!(s.state, upswarm_activation::ActivationState::LockedIn)
                        && now <= p.proposal.lock_in_deadline);
                if open
                    && !self.voting.has_voted(&id, &me)
                    && !self.withheld.contains(&id)
                    && !self.ctx.config.voting.withhold.contains(&protocol)
                    && self.ready_for(&protocol)
                {
                    to_sign.push(id);
                }
            }
            for id in to_sign {
                let env = upswarm_activation::sign_vote(&key, id, now);
                let bytes = env.encode();
                if self.on_signed(SignedKind::Vote, &bytes).is_ok() {
                    info!(proposal = %id, "voted READY");
                    self.gossip(Topic::Votes, bytes, "a vote");
                }
            }
        }
        let statuses = self.voting.statuses(&root, now);
        let me = self.voter_key.as_ref().map(|k| k.key_id());
        let views = crate::daemon::voting::views(
            &self.voting,
            &statuses,
            &self.running_provides(),
            me.as_ref(),
            &self.withheld,
        );
        if views != self.activations {
            let path = self.ctx.layout.activations.clone();
            match serde_json::to_vec_pretty(&views) {
                Ok(json) => {
                    let written = crate::daemon::state::outside_workers(|| {
                        crate::files::write_atomic(&path, &json)
                    });
                    if let Err(e) = written {
                        warn!("cannot write {}: {e:#}", path.display());
                    }
                }
                Err(e) => warn!("activations: {e}"),
            }
            self.activations = views.clone();
        }
        for id in self.voting.newly_active(&statuses) {
            if let Some(v) = views.iter().find(|v| v.proposal == id.to_hex()) {
                info!(protocol = %v.protocol, activation_at = ?v.activation_at, "protocol ACTIVE");
                crate::daemon::voting::run_hook(&self.ctx.config.voting.activation_hook, v);
            }
        }
        let missing = crate::daemon::voting::upgrade_required(&views);
        let alarms: Vec<String> = missing
            .iter()
            .map(|p| format!("upgrade required: protocol {p} is ACTIVE and the software this node runs does not support it"))
            .collect();
        if alarms != self.alarms {
            for a in &alarms {
                warn!("{a}");
                self.webhook("upgrade_required", serde_json::json!({ "alarm": a }));
            }
            self.ctx.metrics.upgrade_required.store(
                u64::from(!alarms.is_empty()),
                std::sync::atomic::Ordering::Relaxed,
            );
            self.alarms = alarms;
        }
    }

    pub(super) fn set_vote(
        &mut self,
        proposal: Hash32,
        withhold: Option<bool>,
    ) -> Result<ActivationView, VoteError> {
        if self.voting.proposal(&proposal).is_none() {
            return Err(VoteError::UnknownProposal(proposal));
        }
        if let Some(w) = withhold {
            if w {
                self.withheld.insert(proposal);
            } else {
                self.withheld.remove(&proposal);
            }
            self.ctx
                .state
                .withheld
                .put(proposal.as_bytes(), &w)
                .map_err(|e| VoteError::Store(e.to_string()))?;
        }
        if self.voter_key.is_none() && withhold != Some(true) {
            return Err(VoteError::NoVoterKey);
        }
        self.voting_tick();
        self.activations
            .iter()
            .find(|v| v.proposal == proposal.to_hex())
            .cloned()
            .ok_or(VoteError::UnknownProposal(proposal))
    }
}
