//! Human-readable renderings shared by `root` and `release` commands.

use std::time::{Duration, UNIX_EPOCH};

use upswarm_proto::{KeyId, TrustRoot};
use upswarm_trust::{Outcome, Tally};

/// RFC 3339 time of unix seconds.
pub(super) fn time(secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

/// Names of the roles of `root` that `key` belongs to.
pub(super) fn roles_of(root: &TrustRoot, key: &KeyId) -> Vec<&'static str> {
    let r = &root.roles;
    let mut out = Vec::new();
    if r.root.keys.iter().any(|k| k.key_id() == *key) {
        out.push("root");
    }
    if r.release.keys.iter().any(|k| k.key_id() == *key) {
        out.push("release");
    }
    if r.control
        .as_ref()
        .is_some_and(|c| c.keys.iter().any(|k| k.key_id() == *key))
    {
        out.push("control");
    }
    if r.electorate.voters.iter().any(|v| v.key.key_id() == *key) {
        out.push("electorate");
    }
    out
}

/// A tally, explaining ignored keys with what `root` knows about them.
pub(super) fn tally(t: &Tally, root: &TrustRoot) -> String {
    let mut s = format!(
        "{} signatures for the {} role: {} valid of {} required — {}\n",
        t.context,
        t.role,
        t.valid,
        t.threshold,
        if t.met() {
            "threshold met"
        } else {
            "THRESHOLD NOT MET"
        }
    );
    if t.verdicts.is_empty() {
        s.push_str("  (no signatures)\n");
    }
    for v in &t.verdicts {
        let why = match v.outcome {
            Outcome::NotInRole => {
                let roles = roles_of(root, &v.key);
                if roles.is_empty() {
                    "ignored: unknown key (not in the trust root)".to_string()
                } else {
                    format!(
                        "ignored: key of the {} role, not of this role",
                        roles.join("/")
                    )
                }
            }
            other => other.to_string(),
        };
        s.push_str(&format!("  key {}  {why}\n", v.key));
    }
    s
}
