//! The module rules of `node/src` that keep it free of import circles (docs/architecture.md,
//! "Checking the structure"), checked on the source text: a rule broken here fails the
//! tests, not a later reader.
//!
//! - `daemon` never uses `cli`;
//! - `cli` uses of the daemon only its entry points (`daemon::run`, `daemon::Config`): the
//!   API's types come from `api`, paths from `layout`;
//! - `api`, `layout`, `procs`, `files`, `parse` and `http` use neither `cli` nor `daemon`;
//! - no two files of any crate of the workspace import each other, directly or round a
//!   loop (an import: a `crate::`, `super::` or `self::` path, a child module's name, or a
//!   sibling's name in a file that imports its parent with `use super::*`; a use of a
//!   module above the file — its parent, the crate root — is the folder's face, not an
//!   arrow).

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

/// The modules of a crate, by path (`["daemon", "core"]`), with the file of each.
fn modules(src: &Path) -> Vec<(Vec<String>, PathBuf)> {
    sources(src)
        .into_iter()
        .filter_map(|f| {
            let rel = f.strip_prefix(src).ok()?.with_extension("");
            let mut path: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(
                path.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                path.pop();
            }
            // Binaries, examples and tests under src/ are no modules of the library.
            (path.first().map(String::as_str) != Some("bin")).then_some((path, f))
        })
        .collect()
}

/// The text of a file without comments (`//` to the end of a line) and without its
/// `#[cfg(test)]` modules (their `super` is the file itself, and tests ship in no build);
/// strings are not parsed, which is good enough for import paths.
fn code(file: &Path) -> String {
    let text = fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "#[cfg(test)]".len()..];
        let item = after.trim_start();
        if !item.starts_with("mod ") {
            out.push_str("#[cfg(test)]");
            rest = after;
            continue;
        }
        // Up to the brace that closes the module.
        let mut depth = 0usize;
        let mut end = item.len();
        for (i, c) in item.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = i + 1;
                        break;
                    }
                }
                ';' if depth == 0 => {
                    end = i + 1;
                    break;
                }
                _ => {}
            }
        }
        rest = &item[end..];
    }
    out.push_str(rest);
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Every path in `text` that starts with one of `starts` and goes on with `::`: its
/// segments; a brace group (`use super::{a, b::c}`) gives one path per item.
fn paths(text: &str, starts: &[String]) -> Vec<Vec<String>> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if !is_ident(chars[i]) || (i > 0 && (is_ident(chars[i - 1]) || chars[i - 1] == ':')) {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && is_ident(chars[i]) {
            i += 1;
        }
        let word: String = chars[start..i].iter().collect();
        if starts.contains(&word) && chars.get(i) == Some(&':') && chars.get(i + 1) == Some(&':') {
            let mut prefix = vec![word];
            i = segments(&chars, i, &mut prefix, &mut out);
        }
    }
    out
}

/// Reads `::a::b…` (or `::{…}`) at `i` after `prefix`; pushes the paths; returns where it
/// stopped.
fn segments(
    chars: &[char],
    mut i: usize,
    prefix: &mut Vec<String>,
    out: &mut Vec<Vec<String>>,
) -> usize {
    while chars.get(i) == Some(&':') && chars.get(i + 1) == Some(&':') {
        i += 2;
        while chars.get(i).is_some_and(|c| c.is_whitespace()) {
            i += 1;
        }
        if chars.get(i) == Some(&'{') {
            // One path per item of the group, up to its matching brace.
            i += 1;
            loop {
                while chars.get(i).is_some_and(|c| c.is_whitespace() || *c == ',') {
                    i += 1;
                }
                match chars.get(i) {
                    None => return i,
                    Some('}') => return i + 1,
                    _ => {}
                }
                let start = i;
                while chars.get(i).copied().is_some_and(is_ident) {
                    i += 1;
                }
                if i == start {
                    // `*` or something else: skip one character.
                    i += 1;
                    out.push(prefix.clone());
                    continue;
                }
                let mut item = prefix.clone();
                let word: String = chars[start..i].iter().collect();
                if word != "self" {
                    item.push(word);
                }
                i = segments(chars, i, &mut item, out);
            }
        }
        let start = i;
        while chars.get(i).copied().is_some_and(is_ident) {
            i += 1;
        }
        if i == start {
            break;
        }
        prefix.push(chars[start..i].iter().collect());
    }
    out.push(prefix.clone());
    i
}

/// The import arrows between the files of the crate at `src`: file → the files whose
/// modules it names (through `crate::`, `super::`, `self::`, a child module it declares,
/// or a sibling module when it imports its parent with `use super::*`).
fn arrows(src: &Path) -> Vec<(PathBuf, PathBuf, String)> {
    let mods = modules(src);
    let file_of = |m: &[String]| mods.iter().find(|(p, _)| p == m).map(|(_, f)| f.clone());
    let mut out = Vec::new();
    for (m, file) in &mods {
        let text = code(file);
        let children: Vec<String> = mods
            .iter()
            .filter(|(p, _)| p.len() == m.len() + 1 && p.starts_with(m))
            .map(|(p, _)| p[m.len()].clone())
            .filter(|c| text.contains(&format!("mod {c};")))
            .collect();
        let parent = &m[..m.len().saturating_sub(1)];
        let siblings: Vec<String> = if text.contains("use super::*;") {
            mods.iter()
                .filter(|(p, _)| p.len() == m.len() && p.starts_with(parent) && p != m)
                .map(|(p, _)| p[parent.len()].clone())
                .collect()
        } else {
            Vec::new()
        };
        let mut starts: Vec<String> = ["crate", "super", "self"].map(String::from).to_vec();
        starts.extend(children.iter().cloned());
        starts.extend(siblings.iter().cloned());
        for path in paths(&text, &starts) {
            let mut at: Vec<String> = Vec::new();
            let mut rest = path.iter().peekable();
            match rest.peek().map(|s| s.as_str()) {
                Some("crate") => {
                    rest.next();
                }
                Some("self") => {
                    rest.next();
                    at = m.clone();
                }
                Some("super") => {
                    at = m.clone();
                    while rest.peek().map(|s| s.as_str()) == Some("super") {
                        rest.next();
                        at.pop();
                    }
                }
                Some(w) if children.iter().any(|c| c == w) => at = m.clone(),
                _ => at = parent.to_vec(),
            }
            // The longest module named by the path.
            let mut target = at.clone();
            let mut best = file_of(&target).map(|f| (f, target.len()));
            for seg in rest {
                target.push(seg.clone());
                if let Some(f) = file_of(&target) {
                    best = Some((f, target.len()));
                } else {
                    break;
                }
            }
            // A module above this one (its parent, the crate root) is its folder's face:
            // using it is no arrow (farm-studio draws it as one that runs back up).
            if let Some((to, depth)) = best
                && to != *file
                && !(depth < m.len() && m.starts_with(&target[..depth]))
            {
                out.push((file.clone(), to, path.join("::")));
            }
        }
    }
    out.sort();
    out.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
    out
}

/// The groups of files that import each other in a loop (strongly connected components
/// of more than one file), each with the arrows inside it.
fn circles(src: &Path) -> Vec<Vec<String>> {
    let arrows = arrows(src);
    let files: Vec<PathBuf> = modules(src).into_iter().map(|(_, f)| f).collect();
    let reach = |from: &PathBuf| {
        let mut seen = vec![from.clone()];
        let mut todo = vec![from.clone()];
        while let Some(f) = todo.pop() {
            for (a, b, _) in &arrows {
                if *a == f && !seen.contains(b) {
                    seen.push(b.clone());
                    todo.push(b.clone());
                }
            }
        }
        seen
    };
    let reaches: Vec<Vec<PathBuf>> = files.iter().map(reach).collect();
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut placed: Vec<PathBuf> = Vec::new();
    for (i, f) in files.iter().enumerate() {
        if placed.contains(f) {
            continue;
        }
        let group: Vec<&PathBuf> = files
            .iter()
            .enumerate()
            .filter(|(j, g)| reaches[i].contains(g) && reaches[*j].contains(f))
            .map(|(_, g)| g)
            .collect();
        if group.len() > 1 {
            placed.extend(group.iter().map(|g| (*g).clone()));
            out.push(
                arrows
                    .iter()
                    .filter(|(a, b, _)| group.contains(&a) && group.contains(&b))
                    .map(|(a, b, via)| format!("{} -> {} ({via})", a.display(), b.display()))
                    .collect(),
            );
        }
    }
    out
}

/// No two files of any crate of the workspace import each other, directly or round a loop
/// (`docs/architecture.md`, "Checking the structure").
#[test]
fn no_import_circle_in_any_crate() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut srcs = vec![src(), root.join("proto/src")];
    for e in fs::read_dir(root.join("crates")).unwrap().flatten() {
        if e.path().join("src").is_dir() {
            srcs.push(e.path().join("src"));
        }
    }
    let found: Vec<Vec<String>> = srcs.iter().flat_map(|s| circles(s)).collect();
    assert!(found.is_empty(), "import circles: {found:#?}");
}

/// The checker sees a circle when there is one: two sibling files that name each other,
/// through a path and through `use super::*` with a sibling's name — and a child using its
/// parent is no circle.
#[test]
fn the_circle_check_finds_a_circle() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    fs::create_dir_all(src.join("a")).unwrap();
    fs::write(src.join("lib.rs"), "mod a;\n").unwrap();
    fs::write(src.join("a/mod.rs"), "mod b;\nmod c;\nuse self::{b::X};\n").unwrap();
    fs::write(src.join("a/b.rs"), "pub struct X;\n").unwrap();
    fs::write(src.join("a/c.rs"), "use super::*;\nfn f() { b::g(); }\n").unwrap();
    assert!(circles(src).is_empty(), "{:#?}", arrows(src));
    // b names c, which names b (as a sibling, through its parent's glob): a circle.
    fs::write(src.join("a/b.rs"), "pub struct X;\nuse crate::a::c;\n").unwrap();
    let found = circles(src);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].iter().any(|a| a.contains("b.rs -> ")),
        "{found:#?}"
    );
    assert!(
        found[0].iter().any(|a| a.contains("c.rs -> ")),
        "{found:#?}"
    );
}
