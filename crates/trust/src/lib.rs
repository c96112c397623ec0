//! # upswarm-trust — who may sign what, and did they
//!
//! Goals:
//! - ed25519 keys and their files (secret 0600, public separate), key ids.
//! - Trust roots: self-signature check, expiry with a clock-skew allowance, rotation chains
//!   (root N+1 must be signed by the root threshold of N *and* of N+1; versions never go
//!   back).
//! - Release manifests: the release threshold for the manifest's update type.
//! - ONE function, [`count_signatures`], counts distinct valid signatures of a role; every
//!   threshold check in upswarm goes through it.
//!
//! Non-goals: no networking, no policy about *whether* to install something; this crate only
//! answers "is this authentic and current".
//!
//! Secure by default: expiry is always enforced; the only way around it is to pass a clock
//! value, which callers get from the system.

mod error;
mod keys;
mod manifest;
mod root;
mod tally;

pub use error::TrustError;
pub use keys::{SecretKey, read_public_key, read_secret_key, write_keypair};
pub use manifest::{VerifiedManifest, verify_manifest, verify_manifest_signatures};
pub use root::{RootChain, VerifiedRoot, verify_root, verify_root_signatures, verify_rotation};
pub use tally::{Outcome, SigVerdict, Tally, count_signatures};

/// The time against which expiry is checked: now, plus how much clock skew to tolerate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeCheck {
    /// Unix seconds.
    pub now: u64,
    /// Seconds of skew tolerated: something that expired less than `skew` seconds ago is
    /// still accepted.
    pub skew: u64,
}

/// Default clock-skew allowance: 5 minutes.
pub const DEFAULT_SKEW_SECS: u64 = 300;

impl TimeCheck {
    /// The system clock with the default skew allowance.
    pub fn system() -> Self {
        TimeCheck {
            now: unix_now(),
            skew: DEFAULT_SKEW_SECS,
        }
    }

    /// Errors with [`TrustError::Expired`] when `expires_at + skew` is in the past.
    pub fn check(&self, what: &'static str, expires_at: u64) -> Result<(), TrustError> {
        if expires_at.saturating_add(self.skew) < self.now {
            return Err(TrustError::Expired {
                what,
                expired_at: expires_at,
                now: self.now,
                skew: self.skew,
            });
        }
        Ok(())
    }
}

impl TimeCheck {
    /// Errors with [`TrustError::FromTheFuture`] when `at` (a payload's creation or issue
    /// time) is later than now plus the skew allowance: a signed message cannot have been
    /// made after it was received. Without this, a message dated far ahead would win every
    /// "latest wins" comparison for good (a pause no resume could lift).
    pub fn not_in_future(
        &self,
        what: &'static str,
        field: &'static str,
        at: u64,
    ) -> Result<(), TrustError> {
        if at > self.now.saturating_add(self.skew) {
            return Err(TrustError::FromTheFuture {
                what,
                field,
                at,
                now: self.now,
                skew: self.skew,
            });
        }
        Ok(())
    }
}

/// Unix seconds from the system clock (0 if the clock is before 1970).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
