//! Whether a verified manifest is news: the staleness rule, as a pure function of the
//! candidate and the releases already known.
//!
//! Rules (SemVer precedence throughout: build metadata ignored):
//!
//! 1. Releases form one **line** per (product, channel, platform): a known release competes
//!    with the candidate only if they share the product, the channel and at least one
//!    platform (`any` shares every platform). Same-version releases for other platforms
//!    are therefore not stale.
//! 2. A candidate **older** than the newest competing release is stale: a replay, refused
//!    (and its sender penalised) unless it is signed as a rollback release.
//! 3. A candidate with the **same version** as a competing release but another release id
//!    is superseded: two validly signed releases disagree, which is the signers' matter,
//!    not the forwarding peer's — it is dropped without penalty.
//! 4. Otherwise it is fresh.
//!
//! Not here: signature and expiry checks (before this), policy (after).

use upswarm_proto::Manifest;

/// The verdict of the staleness rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Staleness {
    Fresh,
    /// Rule 3: `newest` has the same version.
    SameVersion {
        newest: semver::Version,
    },
    /// Rule 2: `newest` is newer.
    Older {
        newest: semver::Version,
    },
}

/// Whether `a` and `b` share a platform (`any` shares every platform).
pub fn platforms_overlap(a: &Manifest, b: &Manifest) -> bool {
    a.artifacts.iter().any(|x| {
        b.artifacts
            .iter()
            .any(|y| x.platform == y.platform || x.platform == "any" || y.platform == "any")
    })
}

/// Applies the rules to `candidate` against the `known` releases.
pub fn staleness<'a>(
    candidate: &Manifest,
    known: impl IntoIterator<Item = &'a Manifest>,
) -> Staleness {
    if candidate.rollback {
        return Staleness::Fresh;
    }
    let newest = known
        .into_iter()
        .filter(|k| {
            k.name == candidate.name
                && k.channel == candidate.channel
                && platforms_overlap(k, candidate)
        })
        .map(|k| &k.version)
        .max_by(|a, b| a.cmp_precedence(b));
    match newest.map(|n| (n, n.cmp_precedence(&candidate.version))) {
        Some((n, std::cmp::Ordering::Greater)) => Staleness::Older { newest: n.clone() },
        Some((n, std::cmp::Ordering::Equal)) => Staleness::SameVersion { newest: n.clone() },
        _ => Staleness::Fresh,
    }
}

#[cfg(test)]
mod tests {
    use upswarm_proto::manifest::{MANIFEST_VERSION, MIN_CHUNK_SIZE};
    use upswarm_proto::{Artifact, Changelog, Hash32, Protocols, UpdateType};

    use super::*;

    fn m(name: &str, version: &str, platforms: &[&str]) -> Manifest {
        Manifest {
            v: MANIFEST_VERSION,
            name: name.into(),
            version: version.parse().unwrap(),
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
            artifacts: platforms
                .iter()
                .map(|p| Artifact {
                    name: "app".into(),
                    platform: (*p).into(),
                    size: 1,
                    mode: 0o755,
                    hash: Hash32([1; 32]),
                    chunk_size: MIN_CHUNK_SIZE,
                    chunk_index: Hash32([2; 32]),
                    forms: None,
                })
                .collect(),
        }
    }

    #[test]
    fn lines_are_per_product_channel_and_platform() {
        let linux = m("demo", "1.2.0", &["linux-x86_64"]);
        let known = [linux.clone()];
        // Same version, another platform: its own line.
        assert_eq!(
            staleness(&m("demo", "1.2.0", &["linux-aarch64"]), &known),
            Staleness::Fresh
        );
        // Older on another platform: fresh too.
        assert_eq!(
            staleness(&m("demo", "1.1.0", &["linux-aarch64"]), &known),
            Staleness::Fresh
        );
        // Same line: older is stale, same version is superseded, newer is fresh.
        assert!(matches!(
            staleness(&m("demo", "1.1.0", &["linux-x86_64"]), &known),
            Staleness::Older { .. }
        ));
        assert!(matches!(
            staleness(&m("demo", "1.2.0+rebuild", &["linux-x86_64"]), &known),
            Staleness::SameVersion { .. }
        ));
        assert_eq!(
            staleness(&m("demo", "1.3.0", &["linux-x86_64"]), &known),
            Staleness::Fresh
        );
        // `any` competes with every platform; another product never does.
        assert!(matches!(
            staleness(&m("demo", "1.0.0", &["any"]), &known),
            Staleness::Older { .. }
        ));
        assert_eq!(
            staleness(&m("other", "0.1.0", &["linux-x86_64"]), &known),
            Staleness::Fresh
        );
        // A multi-platform release competes with each of its platforms' lines.
        assert!(matches!(
            staleness(
                &m("demo", "1.2.0", &["linux-aarch64", "linux-x86_64"]),
                &known
            ),
            Staleness::SameVersion { .. }
        ));
        // Rollback releases are never stale.
        let mut rb = m("demo", "1.0.0", &["linux-x86_64"]);
        rb.rollback = true;
        assert_eq!(staleness(&rb, &known), Staleness::Fresh);
    }
}
