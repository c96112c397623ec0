//! The module rules of `node/src` that keep it free of import circles (docs/architecture.md,
//! "Checking the structure"), checked on the source text: a rule broken here fails the
//! tests, not a later reader.
//!
//! - `daemon` never uses `cli`;
//! - `cli` uses of the daemon only its entry points (`daemon::run`, `daemon::Config`): the
//!   API's types come from `api`, paths from `layout`;
//! - `api`, `layout`, `procs`, `files`, `parse` and `http` use neither `cli` nor `daemon`.

use std::fs;
use std::path::{Path, PathBuf};

fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(sources(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Lines of `file` (comments left out) that mention `needle`.
fn uses(file: &Path, needle: &str) -> Vec<String> {
    fs::read_to_string(file)
        .unwrap()
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .filter(|l| l.contains(needle))
        .map(|l| format!("{}: {}", file.display(), l.trim()))
        .collect()
}

#[test]
fn the_daemon_never_uses_the_cli() {
    let bad: Vec<String> = sources(&src().join("daemon"))
        .iter()
        .flat_map(|f| uses(f, "crate::cli"))
        .collect();
    assert!(bad.is_empty(), "{bad:#?}");
}

#[test]
fn the_cli_uses_only_the_daemons_entry_points() {
    let allowed = [
        "use crate::daemon::{self, Config};",
        "use crate::daemon::Config;",
    ];
    let bad: Vec<String> = sources(&src().join("cli"))
        .iter()
        .flat_map(|f| uses(f, "daemon::"))
        .filter(|l| !allowed.iter().any(|a| l.ends_with(a)))
        .filter(|l| !l.contains("daemon::run("))
        .collect();
    assert!(bad.is_empty(), "{bad:#?}");
}

#[test]
fn the_shared_modules_use_neither_cli_nor_daemon() {
    let bad: Vec<String> = ["api", "layout", "procs", "files", "parse", "http"]
        .iter()
        .flat_map(|m| {
            let f = src().join(format!("{m}.rs"));
            let mut v = uses(&f, "crate::cli");
            v.extend(uses(&f, "crate::daemon"));
            v
        })
        .collect();
    assert!(bad.is_empty(), "{bad:#?}");
}
