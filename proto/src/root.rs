//! The trust root: who may sign what.
//!
//! Owns the roles, thresholds and electorate, and their structural checks. Signature, expiry and
//! rotation checks are `upswarm-trust`'s; nothing here reads a clock.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::envelope::{Context, Message};
use crate::{KeyId, ProtoError, PublicKey, UpdateType};

/// Format version of [`TrustRoot`].
pub const ROOT_VERSION: u32 = 1;
/// Limit on an encoded, signed trust root.
pub const MAX_ROOT_BYTES: usize = 64 * 1024;
/// Most keys one role may list.
pub const MAX_ROLE_KEYS: usize = 255;
/// Most voters in the electorate.
pub const MAX_VOTERS: usize = 1024;

const WHAT: &str = "trust root";

/// A trust root (`root.cbor` holds it inside a [`crate::SignedEnvelope`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustRoot {
    /// Format version, [`ROOT_VERSION`].
    pub v: u32,
    /// Root version: 1 for the first root, +1 per rotation.
    pub version: u64,
    /// Unix seconds after which this root is expired.
    pub expires_at: u64,
    pub roles: Roles,
}

/// The four roles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Roles {
    /// Signs trust roots (including the next one in a rotation).
    pub root: Role,
    /// Signs release manifests and protocol proposals.
    pub release: ReleaseRole,
    /// Signs rollout control messages. `None`: no control messages are accepted.
    pub control: Option<Role>,
    /// Voter keys and weights for protocol activation.
    pub electorate: Electorate,
}

/// A set of keys with an m-of-n threshold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Role {
    pub keys: Vec<PublicKey>,
    pub threshold: u32,
}

/// The release role: keys, a default threshold, per-update-type thresholds and a floor no
/// threshold may go under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRole {
    pub keys: Vec<PublicKey>,
    /// Threshold for update types not listed in `types`.
    pub threshold: u32,
    /// No threshold of this role, default or per type, is ever below this (≥ 1).
    pub floor: u32,
    /// Per-update-type thresholds.
    pub types: BTreeMap<UpdateType, u32>,
}

/// Voters for protocol activation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Electorate {
    pub voters: Vec<Voter>,
}

/// One voter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Voter {
    pub key: PublicKey,
    pub weight: u64,
}

impl Role {
    /// Key ids of the role's keys.
    pub fn key_ids(&self) -> impl Iterator<Item = (KeyId, &PublicKey)> {
        self.keys.iter().map(|k| (k.key_id(), k))
    }

    fn validate(&self, name: &str) -> Result<(), ProtoError> {
        check_keys(name, &self.keys)?;
        check_threshold(name, "threshold", self.threshold, 1, self.keys.len())
    }
}

impl ReleaseRole {
    /// The threshold that applies to releases of `ty`: the per-type value if set, else the
    /// default, and never below the floor (nor below 1).
    pub fn threshold_for(&self, ty: UpdateType) -> u32 {
        let t = self.types.get(&ty).copied().unwrap_or(self.threshold);
        t.max(self.floor).max(1)
    }

    /// The release keys viewed as a plain role with the threshold for `ty`.
    pub fn as_role(&self, ty: UpdateType) -> Role {
        Role {
            keys: self.keys.clone(),
            threshold: self.threshold_for(ty),
        }
    }

    fn validate(&self) -> Result<(), ProtoError> {
        check_keys("release", &self.keys)?;
        if self.floor == 0 {
            return Err(ProtoError::invalid(
                WHAT,
                "roles.release.floor",
                "must be at least 1",
            ));
        }
        check_threshold(
            "release",
            "threshold",
            self.threshold,
            self.floor,
            self.keys.len(),
        )?;
        for (ty, t) in &self.types {
            check_threshold(
                "release",
                &format!("types.{ty}"),
                *t,
                self.floor,
                self.keys.len(),
            )?;
        }
        Ok(())
    }
}

impl Electorate {
    /// Total weight of all voters.
    pub fn total_weight(&self) -> u64 {
        self.voters.iter().map(|v| v.weight).sum()
    }

    /// Weight of the voter with key id `id`, if it is one.
    pub fn weight_of(&self, id: &KeyId) -> Option<u64> {
        self.voters
            .iter()
            .find(|v| v.key.key_id() == *id)
            .map(|v| v.weight)
    }

    fn validate(&self) -> Result<(), ProtoError> {
        if self.voters.len() > MAX_VOTERS {
            return Err(ProtoError::invalid(
                WHAT,
                "roles.electorate.voters",
                format!(
                    "{} voters, more than the limit of {MAX_VOTERS}",
                    self.voters.len()
                ),
            ));
        }
        let mut seen = BTreeSet::new();
        let mut total: u64 = 0;
        for v in &self.voters {
            if !seen.insert(v.key) {
                return Err(ProtoError::invalid(
                    WHAT,
                    "roles.electorate.voters",
                    format!("voter key {} listed twice", v.key.key_id()),
                ));
            }
            if v.weight == 0 {
                return Err(ProtoError::invalid(
                    WHAT,
                    "roles.electorate.voters",
                    format!("voter {} has weight 0", v.key.key_id()),
                ));
            }
            total = total.checked_add(v.weight).ok_or_else(|| {
                ProtoError::invalid(
                    WHAT,
                    "roles.electorate.voters",
                    "total weight overflows 64 bits",
                )
            })?;
        }
        Ok(())
    }
}

fn check_keys(role: &str, keys: &[PublicKey]) -> Result<(), ProtoError> {
    let field = format!("roles.{role}.keys");
    if keys.is_empty() {
        return Err(ProtoError::invalid(WHAT, field, "role has no keys"));
    }
    if keys.len() > MAX_ROLE_KEYS {
        return Err(ProtoError::invalid(
            WHAT,
            field,
            format!(
                "{} keys, more than the limit of {MAX_ROLE_KEYS}",
                keys.len()
            ),
        ));
    }
    let mut seen = BTreeSet::new();
    for k in keys {
        if !seen.insert(k) {
            return Err(ProtoError::invalid(
                WHAT,
                field,
                format!("key {} listed twice", k.key_id()),
            ));
        }
    }
    Ok(())
}

fn check_threshold(
    role: &str,
    field: &str,
    t: u32,
    min: u32,
    keys: usize,
) -> Result<(), ProtoError> {
    let field = format!("roles.{role}.{field}");
    if t < min.max(1) {
        return Err(ProtoError::invalid(
            WHAT,
            field,
            format!("threshold {t} is below the minimum of {}", min.max(1)),
        ));
    }
    if t as usize > keys {
        return Err(ProtoError::invalid(
            WHAT,
            field,
            format!("threshold {t} is more than the {keys} keys of the role"),
        ));
    }
    Ok(())
}

impl Message for TrustRoot {
    const WHAT: &'static str = WHAT;
    const VERSION: u32 = ROOT_VERSION;
    const MAX_BYTES: usize = MAX_ROOT_BYTES;
    const CONTEXT: Context = Context::Root;

    fn version_field(&self) -> u32 {
        self.v
    }

    fn validate(&self) -> Result<(), ProtoError> {
        if self.version == 0 {
            return Err(ProtoError::invalid(
                WHAT,
                "version",
                "root versions start at 1",
            ));
        }
        crate::check_time(WHAT, "expires_at", self.expires_at)?;
        self.roles.root.validate("root")?;
        self.roles.release.validate()?;
        if let Some(control) = &self.roles.control {
            control.validate("control")?;
        }
        self.roles.electorate.validate()
    }
}
