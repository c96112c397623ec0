//! Human-readable renderings shared by `root` and `release` commands.
//!
//! Owns formatting only: functions from values to `String`. It must not print, do I/O or import
//! daemon internals.

use std::time::{Duration, UNIX_EPOCH};

use upswarm_proto::{KeyId, TrustRoot};
use upswarm_trust::{Outcome, Tally};

/// The last second RFC 3339 can show: 9999-12-31T23:59:59Z.
const LAST_RFC3339: u64 = 253_402_300_799;

/// RFC 3339 time of unix seconds. Times past year 9999 (which signed payloads may carry
/// as "never") are shown as such, never a panic.
pub(crate) fn time(secs: u64) -> String {
    if secs > LAST_RFC3339 {
        return format!("after 9999-12-31T23:59:59Z ({secs} unix seconds)");
    }
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

/// Text written by someone else (a signer's changelog or reason, a peer's report), made
/// safe for a terminal: control characters (escape sequences among them) and invisible
/// Unicode formatting characters (bidi overrides, zero-width ones) are shown as `\u{…}`
/// escapes instead of acting on the terminal or hiding text.
pub(crate) fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() || is_format_char(c) {
            out.push_str(&c.escape_unicode().to_string());
        } else {
            out.push(c);
        }
    }
    out
}

/// Unicode "format" characters that change how text reads without being visible.
fn is_format_char(c: char) -> bool {
    matches!(c,
        '\u{00ad}'
        | '\u{061c}'
        | '\u{180e}'
        | '\u{200b}'..='\u{200f}'
        | '\u{202a}'..='\u{202e}'
        | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{206f}'
        | '\u{feff}'
        | '\u{fff9}'..='\u{fffb}'
        | '\u{e0000}'..='\u{e007f}')
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

/// `12.3 MiB`.
pub(crate) fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes() {
        assert_eq!(human(1300), "1.3 KiB");
        assert_eq!(human(12), "12 B");
    }

    #[test]
    fn time_saturates_instead_of_panicking() {
        assert_eq!(time(0), "1970-01-01T00:00:00Z");
        assert_eq!(time(LAST_RFC3339), "9999-12-31T23:59:59Z");
        assert!(time(LAST_RFC3339 + 1).starts_with("after 9999"));
        assert!(time(u64::MAX).starts_with("after 9999"));
    }

    #[test]
    fn text_defuses_escapes_and_bidi() {
        assert_eq!(text("fix: ok"), "fix: ok");
        assert_eq!(text("\u{1b}[2J"), "\\u{1b}[2J");
        assert_eq!(text("abc\u{202e}fed"), "abc\\u{202e}fed");
        assert_eq!(text("caf\u{e9}"), "caf\u{e9}");
    }
}
