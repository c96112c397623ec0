//! Trust roots and rotation chains.
//!
//! Owns the checks of one root and of each rotation step, and the chain a node has accepted. It
//! never reads the clock (callers pass a `TimeCheck`) and keeps the chain in memory only: storing
//! it is the caller's job.

use upswarm_proto::{Context, Message, SignedEnvelope, TrustRoot};

use crate::{Tally, TimeCheck, TrustError, count_signatures};

/// A trust root whose signatures have been checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedRoot {
    root: TrustRoot,
    envelope: SignedEnvelope,
}

impl VerifiedRoot {
    /// The root's content.
    pub fn root(&self) -> &TrustRoot {
        &self.root
    }

    /// The signed envelope as received (for storing and passing on).
    pub fn envelope(&self) -> &SignedEnvelope {
        &self.envelope
    }

    /// The root's version.
    pub fn version(&self) -> u64 {
        self.root.version
    }
}

/// Checks a trust root on its own: well-formed, signed by its own root-role threshold, and
/// not expired.
///
/// This is how the first (pinned) root is checked, and `upswarm root verify` without
/// `--previous`.
pub fn verify_root(
    envelope: &SignedEnvelope,
    time: TimeCheck,
) -> Result<(VerifiedRoot, Tally), TrustError> {
    let (verified, tally) = verify_root_signatures(envelope)?;
    time.check(TrustRoot::WHAT, verified.root.expires_at)?;
    Ok((verified, tally))
}

/// Checks a trust root's form and self-signature, but not its expiry: for a previous root in
/// a rotation chain, which may have expired since it was superseded.
pub fn verify_root_signatures(
    envelope: &SignedEnvelope,
) -> Result<(VerifiedRoot, Tally), TrustError> {
    let root: TrustRoot = envelope.open()?;
    let tally = count_signatures("root", &root.roles.root, Context::Root, envelope).require()?;
    let envelope = envelope.clone();
    Ok((VerifiedRoot { root, envelope }, tally))
}

/// Checks that `next` is a valid rotation of `previous`: its version is exactly one more,
/// and it is signed by the root threshold of `previous` AND by its own root threshold.
///
/// Expiry of `next` is not checked here: an expired root still moves the chain forward
/// (it is newer information), but nothing is installed under it. Use [`TimeCheck::check`].
///
/// Returns the verified root and the two tallies (previous role, new role).
pub fn verify_rotation(
    previous: &VerifiedRoot,
    next: &SignedEnvelope,
) -> Result<(VerifiedRoot, Tally, Tally), TrustError> {
    let root: TrustRoot = next.open()?;
    let current = previous.version();
    if root.version <= current {
        return Err(TrustError::RootRollback {
            current,
            got: root.version,
        });
    }
    if root.version != current + 1 {
        return Err(TrustError::RootVersionGap {
            current,
            got: root.version,
        });
    }
    let by_previous = count_signatures(
        "root (of the previous root)",
        &previous.root.roles.root,
        Context::Root,
        next,
    )
    .require()?;
    let by_self = count_signatures(
        "root (of the new root)",
        &root.roles.root,
        Context::Root,
        next,
    )
    .require()?;
    Ok((
        VerifiedRoot {
            root,
            envelope: next.clone(),
        },
        by_previous,
        by_self,
    ))
}

/// The chain of trust roots a node has accepted, from the pinned one to the newest.
#[derive(Debug, Clone)]
pub struct RootChain {
    roots: Vec<VerifiedRoot>,
}

impl RootChain {
    /// Starts a chain at a pinned root.
    pub fn new(pinned: VerifiedRoot) -> Self {
        RootChain {
            roots: vec![pinned],
        }
    }

    /// Rebuilds a chain from stored envelopes (oldest first), verifying every step again.
    /// The first root is trusted as pinned (its self-signature is still checked, its expiry
    /// is not: later roots supersede it).
    pub fn from_envelopes(envelopes: &[SignedEnvelope]) -> Result<Self, TrustError> {
        let (first, rest) = envelopes.split_first().ok_or_else(|| {
            TrustError::Proto(upswarm_proto::ProtoError::invalid(
                "trust root chain",
                "roots",
                "chain is empty",
            ))
        })?;
        let (pinned, _) = verify_root_signatures(first)?;
        let mut chain = RootChain::new(pinned);
        for env in rest {
            chain.advance(env)?;
        }
        Ok(chain)
    }

    /// The newest root.
    pub fn current(&self) -> &VerifiedRoot {
        // The chain is never empty: it starts with the pinned root and only grows.
        &self.roots[self.roots.len() - 1]
    }

    /// Every root from the pinned one to the newest.
    pub fn roots(&self) -> &[VerifiedRoot] {
        &self.roots
    }

    /// Accepts the next root if it is a valid rotation of the current one. A root of the
    /// current version or older is refused as a rollback; a gap in versions is refused.
    pub fn advance(&mut self, next: &SignedEnvelope) -> Result<&VerifiedRoot, TrustError> {
        let (verified, _, _) = verify_rotation(self.current(), next)?;
        self.roots.push(verified);
        Ok(self.current())
    }
}
