//! The core's side of applying updates: candidates, holds, auto-apply, manual targets.

use super::*;
use crate::daemon::apply::cosmovisor::{self, UpgradeRelease};

impl Core {
    /// Complete releases of the managed product, newest first.
    ///
    /// Only releases of the product the managed program is bound to
    /// ([`Config::managed_product`](crate::daemon::Config::managed_product)) are candidates:
    /// another product's release on the same channel is never applied to this program.
    pub(super) fn installable(&self) -> Vec<(&Hash32, &Known)> {
        let product = self.ctx.config.managed_product();
        let mut v = self.followed_newest_first();
        v.retain(|(_, k)| {
            matches!(k.stored.download, DownloadState::Complete { .. })
                && product.is_none_or(|p| k.verified.manifest.name == p)
        });
        v
    }

    /// Cosmovisor mode: the downloaded releases of the managed product that name a chain
    /// upgrade (`cosmos-upgrade.<name>` in `provides`), newest first; never a yanked one.
    fn upgrade_releases(&self) -> Vec<UpgradeRelease> {
        let platform = &self.ctx.config.platform;
        self.installable()
            .into_iter()
            .filter(|(id, _)| !self.book.yanked(id))
            .filter_map(|(id, k)| {
                let m = &k.verified.manifest;
                let upgrade = cosmovisor::upgrade_of(&m.protocols.provides)?;
                Some(UpgradeRelease {
                    upgrade: upgrade.to_string(),
                    release: *id,
                    version: m.version.clone(),
                    source: release_dir(&self.ctx, id),
                    artifacts: crate::daemon::fetcher::wanted_artifacts(m, platform)
                        .into_iter()
                        .map(|a| (a.name.clone(), a.hash))
                        .collect(),
                })
            })
            .collect()
    }

    /// The apply actor, or why there is none.
    fn managed(&self) -> Result<&ApplyHandle, ResolveError> {
        self.apply.as_ref().ok_or(ResolveError::NotManaged)
    }

    /// This node's rules for applying (see [`decide::Rules`]).
    pub(super) fn rules(&self) -> decide::Rules<'_> {
        let c = &self.ctx.config;
        decide::Rules {
            policy: &c.policy,
            spread: c.rollout.spread,
            skew: c.clock_skew.as_secs(),
            me: self.ctx.node_key.key_id(),
        }
    }

    /// What hold-back decisions see of a known release.
    pub(super) fn release_facts<'a>(id: &Hash32, k: &'a Known) -> decide::Release<'a> {
        decide::Release {
            id: *id,
            manifest: &k.verified.manifest,
            first_seen: k.stored.first_seen,
        }
    }

    /// What holds `id` back on this node now (see [`decide::hold`]).
    pub(super) fn hold(
        &self,
        id: &Hash32,
        k: &Known,
        installed: &crate::daemon::apply::Installed,
    ) -> Option<Hold> {
        decide::hold(
            &self.book,
            self.rules(),
            Self::release_facts(id, k),
            installed,
            self.now(),
        )
    }

    pub(super) fn check(&self) -> Vec<CheckItem> {
        let Some(a) = &self.apply else {
            return Vec::new();
        };
        let installed = a.installed();
        self.installable()
            .into_iter()
            .map(|(id, k)| {
                let hold = self.hold(id, k, &installed);
                let m = &k.verified.manifest;
                let why = match cosmovisor_verdict(a, m) {
                    Some(v) => v,
                    None => hold
                        .as_ref()
                        .map_or_else(|| "will be applied now".to_string(), ToString::to_string),
                };
                CheckItem {
                    id: id.to_hex(),
                    name: m.name.clone(),
                    version: m.version.to_string(),
                    update_type: m.update_type.to_string(),
                    security_critical: m.security_critical,
                    why,
                    hold,
                }
            })
            .collect()
    }

    /// Offers the apply actor the newest release the policy lets this node apply now, if
    /// any (it starts it unless a transition runs or recovery is not over).
    pub(super) fn maybe_apply(&mut self) {
        let Some(a) = self.apply.clone() else {
            return;
        };
        if a.cosmovisor_mode() {
            // Releases are not applied by the policy here: those that name a chain upgrade
            // are staged, and switched to when the chain halts for it.
            a.set_upgrades(self.upgrade_releases());
            return;
        }
        let view = a.view();
        if !view.idle() {
            return;
        }
        let pick = decide::auto_apply(
            &self.book,
            self.rules(),
            self.installable()
                .into_iter()
                .map(|(id, k)| Self::release_facts(id, k)),
            &view.installed,
            self.now(),
        );
        let Some(to) = pick else { return };
        a.offer(TransitionRequest {
            kind: Kind::Apply,
            origin: Origin::Auto,
            target: Target {
                source: release_dir(&self.ctx, &to.release),
                to,
            },
            mark_failed: None,
            note: None,
        });
    }

    pub(super) fn resolve_apply(
        &self,
        version: Option<semver::Version>,
        force: bool,
    ) -> Result<Target, ResolveError> {
        let installed = self.managed()?.installed();
        let list = self.installable();
        let (id, k) = match &version {
            Some(v) => list
                .into_iter()
                .find(|(_, k)| &k.verified.manifest.version == v)
                .ok_or_else(|| ResolveError::NoSuchRelease(v.clone()))?,
            None => list
                .into_iter()
                .next()
                .ok_or(ResolveError::NothingToApply)?,
        };
        let c = decide::candidate(Self::release_facts(id, k), &installed);
        if self.book.yanked(id) {
            // A yank is final for the whole fleet: no --force for it.
            return Err(ResolveError::Yanked(c.version));
        }
        policy::compatible(&c, &decide::policy_installed(&installed), force)
            .map_err(|h| ResolveError::NeedsForce(h.to_string()))?;
        if c.already_failed && !force {
            return Err(ResolveError::FailedBefore(c.version));
        }
        Ok(Target {
            to: VersionRef {
                version: c.version,
                release: *id,
            },
            source: release_dir(&self.ctx, id),
        })
    }

    pub(super) fn resolve_rollback(
        &self,
        version: Option<semver::Version>,
    ) -> Result<Target, ResolveError> {
        let a = self.managed()?;
        let installed = a.installed();
        let to = match version {
            // The last known-good version: never a failed or yanked one, never one gone.
            None => decide::last_good(&self.book, &installed, |v| {
                crate::daemon::apply::versions::dir(&a.layout().versions, v).is_dir()
            })
            .ok_or(ResolveError::NoEarlierVersion)?,
            Some(v) => installed
                .previous
                .iter()
                .find(|p| p.version == v)
                .cloned()
                .ok_or(ResolveError::NotKept(v))?,
        };
        let dir = crate::daemon::apply::versions::dir(&a.layout().versions, &to.version);
        if !dir.is_dir() {
            return Err(ResolveError::Gone {
                dir,
                version: to.version,
            });
        }
        Ok(Target { to, source: dir })
    }
}

/// Cosmovisor mode: what becomes of a release of the managed product (`None`: not in that
/// mode).
pub(super) fn cosmovisor_verdict(a: &ApplyHandle, m: &upswarm_proto::Manifest) -> Option<String> {
    if !a.cosmovisor_mode() {
        return None;
    }
    Some(match cosmovisor::upgrade_of(&m.protocols.provides) {
        Some(u) => format!(
            "cosmovisor mode: installed under cosmovisor/upgrades/{u} and switched to when the \
             chain halts for upgrade {u}"
        ),
        None => format!(
            "cosmovisor mode: never applied (it names no chain upgrade: \
             {}<name> in provides)",
            cosmovisor::UPGRADE_PREFIX
        ),
    })
}
