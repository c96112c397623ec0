//! The release manifest.
//!
//! Owns the manifest's fields, limits and structural checks (artifact names, mirror URLs, plans)
//! and the default rollout plan of each update type. It checks no signature and no expiry against a
//! clock (`upswarm-trust` does) and decides no install (`upswarm-rollout` and the daemon's policy
//! do).

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::envelope::{Context, Message};
use crate::{Hash32, ProtoError, check_ident};

/// Format version 1 of [`Manifest`]: what a release that uses no newer field is written as,
/// so that every daemon since the first one reads it.
pub const MANIFEST_VERSION: u32 = 1;
/// Format version 2 of [`Manifest`]: adds `mirrors` to the manifest and `forms` (compressed
/// and delta encodings) to every artifact. Written only when one of them is not empty.
pub const MANIFEST_V2: u32 = 2;
/// Most mirror URLs in one manifest.
pub const MAX_MIRRORS: usize = 8;
/// Longest mirror URL, in bytes.
pub const MAX_MIRROR_URL: usize = 512;
/// Most encoded forms of one artifact.
pub const MAX_FORMS: usize = 8;
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
    /// Version 2: HTTP(S) mirrors holding the release's artifacts, tried when no peer holds
    /// a chunk (see [`Manifest::mirror_url`]). `None` exactly in version 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirrors: Option<Vec<String>>,
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
    /// Version 2: other encodings of this artifact a node may fetch instead and decode into
    /// it. `None` exactly in version 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forms: Option<Vec<Form>>,
}

/// How an encoded [`Form`] decodes into its artifact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FormKind {
    /// A zstd frame of the whole artifact.
    Zstd,
    /// A zstd frame of the whole artifact, compressed with the base artifact (the file whose
    /// blake3 is [`Form::base`]) as a raw-content prefix (zstd's `--patch-from`).
    ZstdPatch,
}

impl FormKind {
    /// The name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            FormKind::Zstd => "zstd",
            FormKind::ZstdPatch => "zstd-patch",
        }
    }
}

/// One encoded form of an artifact: a file of its own, chunked and distributed like an
/// artifact, that decodes into the artifact (whose whole-file hash is checked after).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Form {
    pub kind: FormKind,
    /// `zstd-patch`: blake3 of the whole base file; `zstd`: `None`.
    pub base: Option<Hash32>,
    /// Size of the encoded form in bytes.
    pub size: u64,
    /// blake3 of the whole encoded form.
    pub hash: Hash32,
    pub chunk_size: u32,
    /// blake3 of the encoded [`crate::ChunkIndex`] of the encoded form.
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
        let forms = self.forms.as_deref().unwrap_or_default();
        if forms.len() > MAX_FORMS {
            return Err(ProtoError::invalid(
                WHAT,
                format!("artifacts[{i}].forms"),
                format!("{} forms, more than the limit of {MAX_FORMS}", forms.len()),
            ));
        }
        let mut bases = BTreeSet::new();
        for (j, f) in forms.iter().enumerate() {
            let field = |name: &str| format!("artifacts[{i}].forms[{j}].{name}");
            match (f.kind, &f.base) {
                (FormKind::Zstd, Some(_)) => {
                    return Err(ProtoError::invalid(
                        WHAT,
                        field("base"),
                        "a zstd form has no base (null)",
                    ));
                }
                (FormKind::ZstdPatch, None) => {
                    return Err(ProtoError::invalid(
                        WHAT,
                        field("base"),
                        "a zstd-patch form needs the hash of its base",
                    ));
                }
                (FormKind::ZstdPatch, Some(b)) if *b == self.hash => {
                    return Err(ProtoError::invalid(
                        WHAT,
                        field("base"),
                        "is the artifact itself",
                    ));
                }
                _ => {}
            }
            if !bases.insert(f.base) {
                return Err(ProtoError::invalid(
                    WHAT,
                    field("base"),
                    "two forms of one artifact have the same kind and base",
                ));
            }
            if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&f.chunk_size) {
                return Err(ProtoError::invalid(
                    WHAT,
                    field("chunk_size"),
                    format!(
                        "{} is outside {MIN_CHUNK_SIZE}..={MAX_CHUNK_SIZE}",
                        f.chunk_size
                    ),
                ));
            }
            if f.size.div_ceil(u64::from(f.chunk_size)) > MAX_CHUNKS {
                return Err(ProtoError::invalid(
                    WHAT,
                    field("size"),
                    format!("{} bytes is more than {MAX_CHUNKS} chunks", f.size),
                ));
            }
        }
        Ok(())
    }

    /// The encoded forms (empty in a version-1 manifest).
    pub fn forms(&self) -> &[Form] {
        self.forms.as_deref().unwrap_or_default()
    }
}

impl Form {
    /// Number of chunks: `ceil(size / chunk_size)`.
    pub fn chunk_count(&self) -> u64 {
        if self.chunk_size == 0 {
            0
        } else {
            self.size.div_ceil(u64::from(self.chunk_size))
        }
    }
}

/// Checks a mirror URL: `https://` or `http://`, then 1 or more bytes of printable ASCII
/// without spaces, quotes, `<>\^`{|}`, `?` or `#`, not ending with `/`; at most
/// [`MAX_MIRROR_URL`] bytes in all.
pub fn check_mirror_url(url: &str) -> Result<(), String> {
    if url.len() > MAX_MIRROR_URL {
        return Err(format!("longer than {MAX_MIRROR_URL} bytes"));
    }
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or("does not start with https:// or http://")?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err("has no host".into());
    }
    if let Some(c) = url
        .chars()
        .find(|c| !c.is_ascii_graphic() || "\"<>\\^`{|}?#".contains(*c))
    {
        return Err(format!("contains {c:?}"));
    }
    if url.ends_with('/') {
        return Err("ends with '/'".into());
    }
    Ok(())
}

/// Percent-encodes every byte outside `A-Z a-z 0-9 - . _ ~` (RFC 3986 unreserved).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
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

    /// The mirror URLs (empty in a version-1 manifest).
    pub fn mirrors(&self) -> &[String] {
        self.mirrors.as_deref().unwrap_or_default()
    }

    /// Where mirror `mirror` serves artifact `a`: `MIRROR/PLATFORM/NAME`, the platform and
    /// the name percent-encoded.
    pub fn mirror_url(mirror: &str, a: &Artifact) -> String {
        format!(
            "{mirror}/{}/{}",
            percent_encode(&a.platform),
            percent_encode(&a.name)
        )
    }

    /// Sets `v` to the oldest format version that can carry this manifest: version 2 (with
    /// every version-2 field present) when it names a mirror or any artifact has a form,
    /// else version 1 (with no version-2 field). Writers call it before encoding.
    pub fn settle_version(&mut self) {
        let v2 = !self.mirrors().is_empty() || self.artifacts.iter().any(|a| !a.forms().is_empty());
        if v2 {
            self.v = MANIFEST_V2;
            self.mirrors.get_or_insert_with(Vec::new);
            for a in &mut self.artifacts {
                a.forms.get_or_insert_with(Vec::new);
            }
        } else {
            self.v = MANIFEST_VERSION;
            self.mirrors = None;
            for a in &mut self.artifacts {
                a.forms = None;
            }
        }
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
    const VERSION: u32 = MANIFEST_V2;
    const OLDEST_VERSION: u32 = MANIFEST_VERSION;
    const MAX_BYTES: usize = MAX_MANIFEST_BYTES;
    const CONTEXT: Context = Context::Manifest;

    fn version_field(&self) -> u32 {
        self.v
    }

    fn validate(&self) -> Result<(), ProtoError> {
        // Version 2's fields are present exactly in version 2 (every field of a version is
        // present; a field of a later version is unknown to an earlier one).
        let v2 = self.v == MANIFEST_V2;
        if self.mirrors.is_some() != v2 {
            return Err(version_field(self.v, "mirrors"));
        }
        if let Some(i) = self.artifacts.iter().position(|a| a.forms.is_some() != v2) {
            return Err(version_field(self.v, &format!("artifacts[{i}].forms")));
        }
        let mirrors = self.mirrors();
        if mirrors.len() > MAX_MIRRORS {
            return Err(ProtoError::invalid(
                WHAT,
                "mirrors",
                format!(
                    "{} mirrors, more than the limit of {MAX_MIRRORS}",
                    mirrors.len()
                ),
            ));
        }
        for (i, m) in mirrors.iter().enumerate() {
            check_mirror_url(m)
                .map_err(|e| ProtoError::invalid(WHAT, format!("mirrors[{i}]"), e))?;
        }
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

fn version_field(v: u32, field: &str) -> ProtoError {
    ProtoError::invalid(
        WHAT,
        field,
        if v == MANIFEST_V2 {
            format!("is missing; every field of manifest version {MANIFEST_V2} is present")
        } else {
            format!("is a field of manifest version {MANIFEST_V2}, not of version {v}")
        },
    )
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
            mirrors: None,
            artifacts: vec![Artifact {
                name: "app".into(),
                platform: "any".into(),
                size: 10,
                mode: 0o755,
                hash: Hash32([1; 32]),
                chunk_size: MIN_CHUNK_SIZE,
                chunk_index: Hash32([2; 32]),
                forms: None,
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

    fn form(kind: FormKind, base: Option<Hash32>) -> Form {
        Form {
            kind,
            base,
            size: 5,
            hash: Hash32([7; 32]),
            chunk_size: MIN_CHUNK_SIZE,
            chunk_index: Hash32([8; 32]),
        }
    }

    #[test]
    fn version_two_fields_come_exactly_with_version_two() {
        // A plain release stays version 1, byte for byte.
        let mut m = minimal();
        let v1 = m.encode();
        m.settle_version();
        assert_eq!(m.v, MANIFEST_VERSION);
        assert_eq!(m.encode(), v1);
        assert_eq!(Manifest::decode(&v1).unwrap(), m);

        let mut m2 = minimal();
        m2.mirrors = Some(vec!["https://mirror.example/releases".into()]);
        m2.settle_version();
        assert_eq!(m2.v, MANIFEST_V2);
        assert_eq!(m2.artifacts[0].forms, Some(vec![]));
        let bytes = m2.encode();
        assert_eq!(Manifest::decode(&bytes).unwrap(), m2);

        // Version 1 carrying a version-2 field, version 2 missing one: refused by name.
        let mut bad = m2.clone();
        bad.v = MANIFEST_VERSION;
        let e = Manifest::decode(&bad.encode()).unwrap_err().to_string();
        assert!(e.contains("mirrors") && e.contains("version 2"), "{e}");
        let mut bad = m2.clone();
        bad.artifacts[0].forms = None;
        let e = Manifest::decode(&bad.encode()).unwrap_err().to_string();
        assert!(
            e.contains("artifacts[0].forms") && e.contains("missing"),
            "{e}"
        );
        let mut bad = m2.clone();
        bad.v = 3;
        let e = Manifest::decode(&bad.encode()).unwrap_err().to_string();
        assert!(e.contains("versions 1 to 2"), "{e}");
    }

    #[test]
    fn mirrors_and_forms_are_bounded() {
        let mut m = minimal();
        for bad in [
            "ftp://x",
            "https://",
            "https:///path",
            "https://x/",
            "https://x y",
            "https://x?y=1",
            "https://x#f",
            "https://ünicode",
        ] {
            m.mirrors = Some(vec![bad.into()]);
            m.settle_version();
            let e = m.validate().unwrap_err().to_string();
            assert!(e.contains("mirrors[0]"), "{bad}: {e}");
        }
        m.mirrors = Some(vec![format!("https://{}", "a".repeat(MAX_MIRROR_URL))]);
        assert!(m.validate().is_err());
        m.mirrors = Some(vec!["http://m".into(); MAX_MIRRORS + 1]);
        assert!(m.validate().unwrap_err().to_string().contains("limit"));

        let mut m = minimal();
        let base = Some(Hash32([9; 32]));
        m.artifacts[0].forms = Some(vec![
            form(FormKind::Zstd, None),
            form(FormKind::ZstdPatch, base),
        ]);
        m.settle_version();
        m.validate().unwrap();
        for (forms, what) in [
            (vec![form(FormKind::Zstd, base)], "has no base"),
            (vec![form(FormKind::ZstdPatch, None)], "needs the hash"),
            (
                vec![form(FormKind::ZstdPatch, Some(Hash32([1; 32])))],
                "the artifact itself",
            ),
            (
                vec![form(FormKind::Zstd, None), form(FormKind::Zstd, None)],
                "same kind and base",
            ),
            (vec![form(FormKind::Zstd, None); MAX_FORMS + 1], "limit"),
        ] {
            m.artifacts[0].forms = Some(forms);
            let e = m.validate().unwrap_err().to_string();
            assert!(e.contains(what), "{what}: {e}");
        }
    }

    #[test]
    fn mirror_urls_percent_encode_platform_and_name() {
        let mut a = minimal().artifacts.remove(0);
        a.name = "my app v1+x.tar.gz".into();
        assert_eq!(
            Manifest::mirror_url("https://m.example/r", &a),
            "https://m.example/r/any/my%20app%20v1%2Bx.tar.gz"
        );
    }
}
