//! Parsers for command-line values: durations, sizes, `KEY=VALUE` pairs, rollout phases.
//!
//! Pure functions from text to values, shared by the CLI and the configuration (`daemon::config`).
//! No I/O, and it uses neither `cli` nor `daemon` (`tests/structure.rs` checks).

use std::path::PathBuf;
use std::time::Duration;

use upswarm_proto::{Phase, UpdateType};

/// A duration such as `30s`, `10m`, `365d`.
pub fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration like 30s, 10m or 365d: {e}"))
}

/// A byte size such as `1048576`, `64KiB`, `1MiB`.
pub fn size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mult) = [
        ("KiB", 1u64 << 10),
        ("MiB", 1 << 20),
        ("GiB", 1 << 30),
        ("K", 1 << 10),
        ("M", 1 << 20),
    ]
    .iter()
    .find_map(|(suffix, m)| t.strip_suffix(suffix).map(|n| (n, *m)))
    .unwrap_or((t, 1));
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 4096, 64KiB or 1MiB"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// `NAME=PATH` for `--artifact`.
/// `NAME[@PLATFORM]=PATH` for `release create --artifact`: the platform after the last `@`
/// of the name, when it is a platform name (`[A-Za-z0-9._-]`).
pub fn artifact_spec(s: &str) -> Result<(String, Option<String>, PathBuf), String> {
    let (name, path) = name_path(s)?;
    if let Some((n, p)) = name.rsplit_once('@')
        && !n.is_empty()
        && !p.is_empty()
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Ok((n.to_string(), Some(p.to_string()), path));
    }
    Ok((name, None, path))
}

pub fn name_path(s: &str) -> Result<(String, PathBuf), String> {
    let (name, path) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} must be NAME=PATH"))?;
    if name.is_empty() || path.is_empty() {
        return Err(format!("{s:?} must be NAME=PATH with both parts non-empty"));
    }
    Ok((name.to_string(), PathBuf::from(path)))
}

/// `TYPE=N` for `--type-threshold`.
pub fn type_threshold(s: &str) -> Result<(UpdateType, u32), String> {
    let (ty, n) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} must be TYPE=N, e.g. major=3"))?;
    let ty: UpdateType = ty.parse()?;
    let n: u32 = n
        .parse()
        .map_err(|_| format!("{s:?}: {n:?} is not a whole number"))?;
    Ok((ty, n))
}

/// `PUBFILE=WEIGHT` for `--voter`.
pub fn voter(s: &str) -> Result<(PathBuf, u64), String> {
    let (path, w) = s
        .rsplit_once('=')
        .ok_or_else(|| format!("{s:?} must be PUBFILE=WEIGHT"))?;
    let w: u64 = w
        .parse()
        .map_err(|_| format!("{s:?}: weight {w:?} is not a whole number"))?;
    if w == 0 {
        return Err(format!("{s:?}: weight must be at least 1"));
    }
    Ok((PathBuf::from(path), w))
}

/// A rollout phase: `PERCENT[:SOAK[:MAXFAIL[:MINREPORTS]]]`, e.g. `5:10m:20:2` is "up to 5 %
/// of nodes, soak 10 minutes, halt above 20 % failures, need 2 reports". Defaults: soak 0,
/// max failure 10 %, 1 report. Percentages may have decimals (`0.5`).
pub fn phase(s: &str) -> Result<Phase, String> {
    let mut parts = s.split(':');
    let pct = parts.next().unwrap_or_default();
    let until_bp = percent_bp(pct).map_err(|e| format!("phase {s:?}: {e}"))?;
    let min_soak_secs = match parts.next() {
        Some(d) if !d.is_empty() => duration(d)?.as_secs(),
        _ => 0,
    };
    let max_failure_bp = match parts.next() {
        Some(p) if !p.is_empty() => percent_bp(p).map_err(|e| format!("phase {s:?}: {e}"))?,
        _ => 1_000,
    };
    let min_reports = match parts.next() {
        Some(n) if !n.is_empty() => n
            .parse()
            .map_err(|_| format!("phase {s:?}: {n:?} is not a whole number"))?,
        _ => 1,
    };
    if parts.next().is_some() {
        return Err(format!(
            "phase {s:?} has more than four ':'-separated parts"
        ));
    }
    Ok(Phase {
        until_bp,
        min_soak_secs,
        max_failure_bp,
        min_reports,
    })
}

/// A percentage such as `90%`, `0.5` or `100`, in basis points.
pub fn percent_bp(s: &str) -> Result<u16, String> {
    let p: f64 = s
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("{s:?} is not a percentage"))?;
    if !(0.0..=100.0).contains(&p) {
        return Err(format!("{s:?} is not between 0 and 100"));
    }
    Ok((p * 100.0).round() as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(size("4096").unwrap(), 4096);
        assert_eq!(size("64KiB").unwrap(), 65536);
        assert_eq!(size("1MiB").unwrap(), 1 << 20);
        assert!(size("lots").is_err());
    }

    #[test]
    fn phases() {
        let p = phase("5:10m:20:2").unwrap();
        assert_eq!(
            (p.until_bp, p.min_soak_secs, p.max_failure_bp, p.min_reports),
            (500, 600, 2000, 2)
        );
        assert_eq!(phase("100").unwrap().until_bp, 10_000);
        assert_eq!(phase("0.5").unwrap().until_bp, 50);
        assert!(phase("101").is_err());
        assert!(phase("5:x").is_err());
        assert!(phase("5:1s:1:1:1").is_err());
    }

    #[test]
    fn pairs() {
        assert!(name_path("node=/tmp/x").is_ok());
        assert_eq!(
            artifact_spec("node@linux-aarch64=/tmp/x").unwrap(),
            ("node".into(), Some("linux-aarch64".into()), "/tmp/x".into())
        );
        assert_eq!(artifact_spec("node=/tmp/x").unwrap().1, None);
        assert!(name_path("node").is_err());
        assert_eq!(type_threshold("major=3").unwrap(), (UpdateType::Major, 3));
        assert!(type_threshold("mayor=3").is_err());
        assert!(voter("a.pub=0").is_err());
        assert_eq!(voter("a=b.pub=5").unwrap(), (PathBuf::from("a=b.pub"), 5));
    }
}
