//! Release manifest verification.
//!
//! Owns the check that a manifest is authentic and current. It never reads the clock (the caller
//! passes a `TimeCheck`) and never decides whether the release is news or may be installed (the
//! daemon's admission and policy do).

use upswarm_proto::{Context, Hash32, Manifest, Message, SignedEnvelope, TrustRoot};

use crate::{Tally, TimeCheck, TrustError, count_signatures};

/// A manifest whose signatures met the release threshold for its update type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedManifest {
    pub manifest: Manifest,
    pub envelope: SignedEnvelope,
    /// blake3 of the payload bytes; the same whichever signatures are attached.
    pub release_id: Hash32,
    pub tally: Tally,
}

/// Checks a manifest's signatures against the release role of `root` (the threshold for the
/// manifest's update type). Expiry is not checked; see [`verify_manifest`].
pub fn verify_manifest_signatures(
    root: &TrustRoot,
    envelope: &SignedEnvelope,
) -> Result<VerifiedManifest, TrustError> {
    let manifest: Manifest = envelope.open()?;
    let role = root.roles.release.as_role(manifest.update_type);
    let tally = count_signatures("release", &role, Context::Manifest, envelope).require()?;
    Ok(VerifiedManifest {
        release_id: envelope.payload_hash(),
        manifest,
        envelope: envelope.clone(),
        tally,
    })
}

/// Full check before a manifest is acted on: the trust root is not expired, the signatures
/// meet the threshold, the manifest is not expired and was not created in the future.
pub fn verify_manifest(
    root: &TrustRoot,
    envelope: &SignedEnvelope,
    time: TimeCheck,
) -> Result<VerifiedManifest, TrustError> {
    time.check(TrustRoot::WHAT, root.expires_at)?;
    let verified = verify_manifest_signatures(root, envelope)?;
    time.check(Manifest::WHAT, verified.manifest.expires_at)?;
    time.not_in_future(Manifest::WHAT, "created_at", verified.manifest.created_at)?;
    Ok(verified)
}
