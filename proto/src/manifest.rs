//! The release manifest.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::envelope::{Context, Message};
use crate::{Hash32, ProtoError, check_ident};

/// Format version of [`Manifest`].
pub const MANIFEST_VERSION: u32 = 1;
/// Limit on an encoded, signed manifest: it must fit one gossip message and one DHT record.
pub const MAX_MANIFEST_BYTES: usize = 64 * 1024;
/// Smallest chunk size accepted.
pub const MIN_CHUNK_SIZE: u32 = 4 * 1024;
/// Largest chunk size accepted (bounds one request-response message).
pub const MAX_CHUNK_SIZE: u32 = 16 * 1024 * 1024;
/// Chunk size used when the signer does not choose one.
pub const DEFAULT_CHUNK_SIZE: u32 = 1024 * 1024;
/// Most chunks one artifact may have (bounds the chunk index to 8 MiB).
pub const MAX_CHUNKS: u64 = 256 * 1024;
/// Most artifacts in one release.
pub const MAX_ARTIFACTS: usize = 64;
/// Longest artifact file name.
pub const MAX_ARTIFACT_NAME: usize = 255;
/// Most phases in a rollout plan.
pub const MAX_PHASES: usize = 16;
/// Shares and rates are in basis points: 10 000 = 100 %.
pub const BP_ALL: u16 = 10_000;

const WHAT: &str = "manifest";

/// Kind of update, which selects the signature threshold and the default rollout plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpdateType {
    Hotfix,
    Patch,
    Minor,
    Major,
    Config,
    Protocol,
}

impl UpdateType {
    /// All update types, in order.
    pub const ALL: [UpdateType; 6] = [
        UpdateType::Hotfix,
        UpdateType::Patch,
        UpdateType::Minor,
        UpdateType::Major,
        UpdateType::Config,
        UpdateType::Protocol,
    ];

    /// The lowercase name used on the wire and in the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            UpdateType::Hotfix => "hotfix",
            UpdateType::Patch => "patch",
            UpdateType::Minor => "minor",
            UpdateType::Major => "major",
            UpdateType::Config => "config",
            UpdateType::Protocol => "protocol",
        }
    }
}

impl fmt::Display for UpdateType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for UpdateType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        UpdateType::ALL.into_iter().find(|t| t.as_str() == s).ok_or_else(|| {
            format!("unknown update type {s:?}; expected one of hotfix, patch, minor, major, config, protocol")
        })
    }
}

/// A signed release manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Format version, [`MANIFEST_VERSION`].
    pub v: u32,
    /// Product / component name.
    pub name: String,
    pub version: semver::Version,
    /// Channel: `stable`, `beta`, `nightly` or a custom name.
    pub channel: String,
    pub update_type: UpdateType,
    pub security_critical: bool,
    /// Signed as a rollback release: may be installed over a newer version.
    pub rollback: bool,
    /// Oldest version this release may be applied over (upgrade path), if any.
    pub min_version: Option<semver::Version>,
    pub protocols: Protocols,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds after which the release is not installed any more.
    pub expires_at: u64,
    pub changelog: Changelog,
    /// The manifest's own rollout plan; `None`: the default plan of its update type.
    pub rollout: Option<RolloutPlan>,
    pub artifacts: Vec<Artifact>,
}

/// Protocol versions / features the release's software provides and requires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Protocols {
    pub provides: Vec<String>,
    pub requires: Vec<String>,
}

/// Human-readable release notes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Changelog {
    pub features: Vec<String>,
    pub fixes: Vec<String>,
    pub security: Vec<String>,
}

/// One file of a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    /// A plain file name (no `/`, no `..`).
    pub name: String,
    /// Target platform, e.g. `linux-x86_64`, or `any`.
    pub platform: String,
    /// Size in bytes.
    pub size: u64,
    /// Unix permission bits (≤ 0o777; no setuid/setgid/sticky).
    pub mode: u32,
    /// blake3 of the whole file.
    pub hash: Hash32,
    /// Chunk size in bytes; every chunk but the last is exactly this long.
    pub chunk_size: u32,
    /// blake3 of the encoded [`crate::ChunkIndex`].
    pub chunk_index: Hash32,
}

/// A phased rollout plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutPlan {
    pub phases: Vec<Phase>,
}

/// One phase of a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    /// Cumulative share of the fleet reached once this phase is open, in basis points.
    pub until_bp: u16,
    /// The phase must soak this long after it opened before the next one may open.
    pub min_soak_secs: u64,
    /// Failure rate (failed ÷ reports of this phase), in basis points, above which the
    /// rollout halts.
    pub max_failure_bp: u16,
    /// Health reports needed from this phase before the next one may open.
    pub min_reports: u32,
}

impl Artifact {
    /// Number of chunks: `ceil(size / chunk_size)`.
    pub fn chunk_count(&self) -> u64 {
        if self.chunk_size == 0 {
            0
        } else {
            self.size.div_ceil(u64::from(self.chunk_size))
        }
    }

    fn validate(&self, i: usize) -> Result<(), ProtoError> {
        check_artifact_name(&self.name)?;
        check_ident(
            WHAT,
            &format!("artifacts[{i}].platform"),
            &self.platform,
            64,
        )?;
        if self.mode & !0o777 != 0 {
            return Err(ProtoError::invalid(
                WHAT,
                format!("artifacts[{i}].mode"),
                format!(
                    "{:#o} has bits outside 0o777 (setuid, setgid and sticky are refused)",
                    self.mode
                ),
            ));
        }
        if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&self.chunk_size) {
            return Err(ProtoError::invalid(
                WHAT,
                format!("artifacts[{i}].chunk_size"),
                format!(
                    "{} is outside {MIN_CHUNK_SIZE}..={MAX_CHUNK_SIZE}",
                    self.chunk_size
                ),
            ));
        }
        if self.chunk_count() > MAX_CHUNKS {
            return Err(ProtoError::invalid(
                WHAT,
                format!("artifacts[{i}].size"),
                format!(
                    "{} bytes in chunks of {} is {} chunks, more than the limit of {MAX_CHUNKS}",
                    self.size,
                    self.chunk_size,
                    self.chunk_count()
                ),
            ));
        }
        Ok(())
    }
}

/// Checks that `name` is a plain file name that cannot escape a directory and reads the
/// same to every operator: 1 to 255 bytes of printable ASCII (0x20–0x7e), no `/` or `\`,
/// no `..`, not starting with `.`, `-` or a space, not ending with a space.
pub fn check_artifact_name(name: &str) -> Result<(), ProtoError> {
    let bad = |reason| {
        Err(ProtoError::UnsafeArtifactName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > MAX_ARTIFACT_NAME {
        return bad("it is longer than 255 bytes");
    }
    if name.contains('/') || name.contains('\\') {
        return bad("it contains a path separator");
    }
    if name.contains("..") {
        return bad("it contains '..'");
    }
    if name == "." {
        return bad("it is '.'");
    }
    if name.chars().any(char::is_control) {
        return bad("it contains a control character");
    }
    if !name.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        // Unicode would allow look-alikes and bidi overrides (U+202E) in what operators read.
        return bad("it contains a character outside printable ASCII");
    }
    if name.starts_with(['.', '-', ' ']) || name.ends_with(' ') {
        return bad("it starts with '.', '-' or a space, or ends with a space");
    }
    Ok(())
}

impl RolloutPlan {
    /// The plan used when a manifest carries none. Hotfixes and security-critical releases
    /// go to everyone at once; the bigger the change, the smaller and longer the canary.
    pub fn default_for(ty: UpdateType, security_critical: bool) -> RolloutPlan {
        const MIN: u64 = 60;
        let phase = |until_pct: u16, soak_min: u64| Phase {
            until_bp: until_pct * 100,
            min_soak_secs: soak_min * MIN,
            max_failure_bp: 1_000,
            // Judge a failure rate on at least twenty reports (fewer only when the fleet is
            // smaller): a 10 % threshold on one report would halt at the first flake.
            min_reports: 20,
        };
        let phases = if security_critical {
            vec![phase(100, 0)]
        } else {
            match ty {
                UpdateType::Hotfix => vec![phase(100, 0)],
                UpdateType::Patch | UpdateType::Config => {
                    vec![phase(10, 30), phase(50, 30), phase(100, 0)]
                }
                UpdateType::Minor => {
                    vec![phase(5, 60), phase(25, 60), phase(50, 60), phase(100, 0)]
                }
                UpdateType::Major | UpdateType::Protocol => {
                    vec![
                        phase(1, 120),
                        phase(5, 120),
                        phase(25, 120),
                        phase(50, 120),
                        phase(100, 0),
                    ]
                }
            }
        };
        RolloutPlan { phases }
    }

    fn validate(&self) -> Result<(), ProtoError> {
        let field = "rollout.phases";
        if self.phases.is_empty() || self.phases.len() > MAX_PHASES {
            return Err(ProtoError::invalid(
                WHAT,
                field,
                format!("must have 1 to {MAX_PHASES} phases"),
            ));
        }
        let mut prev = 0u16;
        for (i, p) in self.phases.iter().enumerate() {
            if p.until_bp <= prev || p.until_bp > BP_ALL {
                return Err(ProtoError::invalid(
                    WHAT,
                    format!("{field}[{i}].until_bp"),
                    format!(
                        "{} must be above the previous phase's {prev} and at most {BP_ALL}",
                        p.until_bp
                    ),
                ));
            }
            crate::check_duration(
                WHAT,
                &format!("{field}[{i}].min_soak_secs"),
                p.min_soak_secs,
            )?;
            if p.max_failure_bp > BP_ALL {
                return Err(ProtoError::invalid(
                    WHAT,
                    format!("{field}[{i}].max_failure_bp"),
                    format!("{} is over {BP_ALL}", p.max_failure_bp),
                ));
            }
            prev = p.until_bp;
        }
        if prev != BP_ALL {
            return Err(ProtoError::invalid(
                WHAT,
                field,
                format!("the last phase must reach {BP_ALL} (100 %), not {prev}"),
            ));
        }
        Ok(())
    }
}

impl Manifest {
    /// The rollout plan in force: the manifest's own, else the default of its type.
    pub fn effective_plan(&self) -> RolloutPlan {
        self.rollout
            .clone()
            .unwrap_or_else(|| RolloutPlan::default_for(self.update_type, self.security_critical))
    }

    /// The artifact named `name` for `platform` (or for `any`).
    pub fn artifact(&self, name: &str, platform: &str) -> Option<&Artifact> {
        self.artifacts
            .iter()
            .find(|a| a.name == name && a.platform == platform)
            .or_else(|| {
                self.artifacts
                    .iter()
                    .find(|a| a.name == name && a.platform == "any")
            })
    }
}

impl Message for Manifest {
    const WHAT: &'static str = WHAT;
    const VERSION: u32 = MANIFEST_VERSION;
    const MAX_BYTES: usize = MAX_MANIFEST_BYTES;
    const CONTEXT: Context = Context::Manifest;

    fn version_field(&self) -> u32 {
        self.v
    }

    fn validate(&self) -> Result<(), ProtoError> {
        check_ident(WHAT, "name", &self.name, 64)?;
        check_ident(WHAT, "channel", &self.channel, 32)?;
        if let Some(min) = &self.min_version
            && min.cmp_precedence(&self.version).is_gt()
            && !self.rollback
        {
            return Err(ProtoError::invalid(
                WHAT,
                "min_version",
                format!("{min} is above the release's own version {}", self.version),
            ));
        }
        for (i, p) in self.protocols.provides.iter().enumerate() {
            check_ident(WHAT, &format!("protocols.provides[{i}]"), p, 64)?;
        }
        for (i, p) in self.protocols.requires.iter().enumerate() {
            check_ident(WHAT, &format!("protocols.requires[{i}]"), p, 64)?;
        }
        crate::check_time(WHAT, "created_at", self.created_at)?;
        crate::check_time(WHAT, "expires_at", self.expires_at)?;
        if self.expires_at <= self.created_at {
            return Err(ProtoError::invalid(
                WHAT,
                "expires_at",
                format!(
                    "{} is not after created_at {}",
                    self.expires_at, self.created_at
                ),
            ));
        }
        if let Some(plan) = &self.rollout {
            plan.validate()?;
        }
        if self.artifacts.is_empty() || self.artifacts.len() > MAX_ARTIFACTS {
            return Err(ProtoError::invalid(
                WHAT,
                "artifacts",
                format!("must list 1 to {MAX_ARTIFACTS} artifacts"),
            ));
        }
        let mut seen = BTreeSet::new();
        for (i, a) in self.artifacts.iter().enumerate() {
            a.validate(i)?;
            if !seen.insert((&a.name, &a.platform)) {
                return Err(ProtoError::invalid(
                    WHAT,
                    format!("artifacts[{i}]"),
                    format!("{} for {} is listed twice", a.name, a.platform),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_names() {
        for ok in ["node", "node-v1.2.tar.gz", "a b", "x.y"] {
            check_artifact_name(ok).unwrap();
        }
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            "/etc/passwd",
            "a\\b",
            "x..y",
            "a\nb",
            "a\0b",
            "evil\u{202e}txt.exe",
            "zero\u{200b}width",
            "caf\u{e9}",
            ".hidden",
            "-rf",
            " lead",
            "trail ",
        ] {
            assert!(
                matches!(
                    check_artifact_name(bad),
                    Err(ProtoError::UnsafeArtifactName { .. })
                ),
                "{bad:?} should be refused"
            );
        }
    }

    fn minimal() -> Manifest {
        Manifest {
            v: MANIFEST_VERSION,
            name: "demo".into(),
            version: semver::Version::new(1, 0, 0),
            channel: "stable".into(),
            update_type: UpdateType::Patch,
            security_critical: false,
            rollback: false,
            min_version: None,
            protocols: Protocols::default(),
            created_at: 1,
            expires_at: 2,
            changelog: Changelog::default(),
            rollout: None,
            artifacts: vec![Artifact {
                name: "app".into(),
                platform: "any".into(),
                size: 10,
                mode: 0o755,
                hash: Hash32([1; 32]),
                chunk_size: MIN_CHUNK_SIZE,
                chunk_index: Hash32([2; 32]),
            }],
        }
    }

    #[test]
    fn times_and_durations_are_bounded() {
        let mut m = minimal();
        m.expires_at = crate::MAX_TIME;
        m.validate().unwrap();
        m.expires_at = crate::MAX_TIME + 1;
        assert!(m.validate().unwrap_err().to_string().contains("expires_at"));
        let mut m = minimal();
        m.rollout = Some(RolloutPlan {
            phases: vec![Phase {
                until_bp: BP_ALL,
                min_soak_secs: 1 << 63,
                max_failure_bp: 0,
                min_reports: 0,
            }],
        });
        assert!(
            m.validate()
                .unwrap_err()
                .to_string()
                .contains("min_soak_secs")
        );
    }

    #[test]
    fn build_metadata_is_ignored_by_the_upgrade_path_check() {
        let mut m = minimal();
        m.version = "1.2.3".parse().unwrap();
        m.min_version = Some("1.2.3+zzz".parse().unwrap());
        m.validate().unwrap();
    }

    #[test]
    fn default_plans_are_valid_and_end_at_100() {
        for ty in UpdateType::ALL {
            for sec in [false, true] {
                let plan = RolloutPlan::default_for(ty, sec);
                plan.validate().unwrap();
            }
        }
        assert_eq!(
            RolloutPlan::default_for(UpdateType::Patch, false).phases[0].until_bp,
            1000
        );
        assert_eq!(
            RolloutPlan::default_for(UpdateType::Major, false).phases[0].until_bp,
            100
        );
        assert_eq!(
            RolloutPlan::default_for(UpdateType::Minor, true)
                .phases
                .len(),
            1
        );
    }

    #[test]
    fn update_type_parses() {
        assert_eq!("minor".parse::<UpdateType>().unwrap(), UpdateType::Minor);
        assert!("mayor".parse::<UpdateType>().is_err());
    }
}
