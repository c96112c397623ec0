//! The fleet inventory (`GET /v1/fleet`, `upswarm fleet`) and readiness (`GET /readyz`).

use super::*;
use crate::api::{
    COVERAGE_HISTORY_CAP, CoverageSample, FLEET_CAP, FLEET_STATES, FleetNode, FleetQuery,
    FleetRollout, FleetView, ReadyCheck, ReadyView, VersionCount,
};

impl Core {
    /// Every node with a verified health report, filtered by `q`, placed in the rollout of
    /// the newest followed release.
    pub(super) fn fleet(&self, q: &FleetQuery) -> Result<FleetView, FleetQueryError> {
        if let Some(s) = &q.state
            && !FLEET_STATES.contains(&s.as_str())
        {
            return Err(FleetQueryError::State(s.chars().take(40).collect()));
        }
        let release_filter = q
            .release
            .as_deref()
            .map(|r| self.release_filter(r))
            .transpose()?;
        let current = self.followed_newest_first().into_iter().next();
        let cohorts = current.map(|(id, k)| (id, self.book.cohorts(id, &k.verified.manifest)));
        let spread = self.ctx.config.rollout.spread;
        let mut nodes = Vec::new();
        let mut known = 0;
        for (node, e) in self.book.fleet() {
            known += 1;
            if q.version.as_ref().is_some_and(|v| *v != e.running)
                || q.state.as_deref().is_some_and(|s| s != e.status.as_str())
                || release_filter
                    .as_ref()
                    .is_some_and(|f| !f.contains(&e.release))
            {
                continue;
            }
            let placed = cohorts.as_ref().map(|(_, c)| c.cohort(node, spread));
            let about = self.releases.get(&e.release).map(|k| &k.verified.manifest);
            nodes.push(FleetNode {
                node_id: node.to_hex(),
                version: e.running.to_string(),
                state: e.status.as_str().to_string(),
                release: e.release.to_hex(),
                release_name: about.map(|m| m.name.clone()),
                release_version: about.map(|m| m.version.to_string()),
                at: e.at,
                rank: placed.as_ref().map(|c| c.rank.fraction()),
                phase: placed.as_ref().map(|c| c.phase),
                position: placed.as_ref().map(|c| c.position),
            });
        }
        nodes.sort_by(|a, b| (a.position, &a.node_id).cmp(&(b.position, &b.node_id)));
        Ok(FleetView {
            node_id: self.ctx.node_key.key_id().to_hex(),
            nodes_known: known,
            cap: FLEET_CAP,
            rollout: current.map(|(id, k)| FleetRollout {
                release: id.to_hex(),
                name: k.verified.manifest.name.clone(),
                version: k.verified.manifest.version.to_string(),
            }),
            coverage: self.coverage(),
            nodes,
            history: self.coverage_history.iter().cloned().collect(),
        })
    }

    /// How many known nodes run each version: the most common first, among equals the
    /// newest first.
    fn coverage(&self) -> Vec<VersionCount> {
        let mut by_version: std::collections::BTreeMap<&semver::Version, usize> =
            Default::default();
        for (_, e) in self.book.fleet() {
            *by_version.entry(&e.running).or_default() += 1;
        }
        let mut coverage: Vec<VersionCount> = by_version
            .into_iter()
            .rev()
            .map(|(v, n)| VersionCount {
                version: v.to_string(),
                nodes: n,
            })
            .collect();
        coverage.sort_by_key(|c| std::cmp::Reverse(c.nodes));
        coverage
    }

    /// Adds a sample to the coverage history when the coverage changed since the last one
    /// (every [`crate::api::COVERAGE_SAMPLE_SECS`]); at most [`COVERAGE_HISTORY_CAP`] kept.
    pub(super) fn sample_coverage(&mut self) {
        let versions = self.coverage();
        if versions.is_empty()
            || self
                .coverage_history
                .back()
                .is_some_and(|s| s.versions == versions)
        {
            return;
        }
        if self.coverage_history.len() >= COVERAGE_HISTORY_CAP {
            self.coverage_history.pop_front();
        }
        self.coverage_history.push_back(CoverageSample {
            at: self.now(),
            versions,
        });
    }

    /// The releases `--release` names: an id or a prefix of one (8 to 64 hex digits), or a
    /// version.
    fn release_filter(&self, r: &str) -> Result<Vec<Hash32>, FleetQueryError> {
        let shown: String = r.chars().take(80).collect();
        let by_id = r.len() >= 8 && r.len() <= 64 && r.bytes().all(|b| b.is_ascii_hexdigit());
        if by_id {
            let prefix = r.to_ascii_lowercase();
            let ids: Vec<Hash32> = self
                .releases
                .keys()
                .filter(|id| id.to_hex().starts_with(&prefix))
                .copied()
                .collect();
            // A full id of a release this node does not hold may still be reported about.
            if ids.is_empty() && r.len() == 64 {
                return Hash32::from_hex(&prefix)
                    .map(|h| vec![h])
                    .map_err(|e| FleetQueryError::ReleaseId(e.to_string()));
            }
            return Ok(ids);
        }
        let v = crate::api::parse_version(r).map_err(|_| FleetQueryError::Release(shown))?;
        Ok(self
            .releases
            .iter()
            .filter(|(_, k)| k.verified.manifest.version == v)
            .map(|(id, _)| *id)
            .collect())
    }

    /// Whether this node can do its work: the trust root loaded, its state recovered, the
    /// network listening, and a peer connected (unless no bootstrap peer is configured).
    pub(super) async fn ready(&self) -> ReadyView {
        let info = self.ctx.client.info().await.ok();
        let root = self.chain.current();
        let mut checks = vec![ReadyCheck {
            name: "trust_root".into(),
            ok: true,
            detail: format!("version {} loaded", root.version()),
        }];
        let recovering = self.apply.as_ref().is_some_and(|a| !a.view().recovered);
        checks.push(ReadyCheck {
            name: "state".into(),
            ok: !recovering,
            detail: if recovering {
                "finishing an update interrupted by a restart".into()
            } else {
                format!("recovered ({} releases)", self.releases.len())
            },
        });
        let listeners = info.as_ref().map_or(0, |i| i.listeners.len());
        checks.push(ReadyCheck {
            name: "listening".into(),
            ok: listeners > 0,
            detail: format!("{listeners} listen addresses"),
        });
        let peers = info.as_ref().map_or(0, |i| i.connected.len());
        let bootstrap = self.ctx.config.network_options.bootstrap.len();
        checks.push(ReadyCheck {
            name: "peers".into(),
            ok: peers > 0 || bootstrap == 0,
            detail: if bootstrap == 0 {
                format!("{peers} connected (no bootstrap peer configured)")
            } else {
                format!("{peers} connected ({bootstrap} bootstrap peers configured)")
            },
        });
        ReadyView {
            ready: checks.iter().all(|c| c.ok),
            checks,
        }
    }
}
