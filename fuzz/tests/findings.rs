//! Findings of the fuzz targets whose fix lies outside the decoders this crate may change
//! (proto's are regression-tested in `proto/tests/fuzz_regressions.rs`). Each test is the
//! minimised reproducer, asserting the behaviour wanted; it was ignored while the finding was
//! open (docs/threat-model.md, "Fuzzing", lists them).

use std::fs;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

fn key_file(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "upswarm-fuzz-finding-{}-{name}",
        std::process::id()
    ));
    let _ = fs::remove_file(&path);
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()))
        .expect("write the key file");
    path
}

/// Target `key_file`, 2026-12-02: `upswarm-ed25519-public:\n<64 hex digits>` (a line break,
/// or any whitespace, between the prefix and the digits) is read as a public key, although
/// the documented format is one line `upswarm-ed25519-public:<64 hex digits>` and the same
/// whitespace in a secret key file is refused. Cause: `read_public_key` parses the digits
/// with `PublicKey::from_hex`, which trims. Fixed: the digits are decoded with
/// `hex::decode_to_slice`, as `read_secret_key` does.
#[test]
fn public_key_file_with_whitespace_after_the_prefix_is_refused() {
    let key = upswarm_trust::SecretKey::from_seed(&[2; 32])
        .public()
        .to_hex();
    for (name, text) in [
        ("newline", format!("upswarm-ed25519-public:\n{key}\n")),
        ("space", format!("upswarm-ed25519-public: {key}")),
    ] {
        let path = key_file(name, &text);
        let read = upswarm_trust::read_public_key(&path);
        let _ = fs::remove_file(&path);
        assert!(read.is_err(), "{name}: {text:?} was read as a public key");
    }
}

/// The same whitespace in a secret key file is refused today (the reference behaviour).
#[test]
fn secret_key_file_with_whitespace_after_the_prefix_is_refused() {
    let seed = "02".repeat(32);
    let path = key_file("secret", &format!("upswarm-ed25519-secret:\n{seed}\n"));
    let read = upswarm_trust::read_secret_key(&path);
    let _ = fs::remove_file(&path);
    assert!(read.is_err());
}

/// The finding's crash input runs clean through the target now that its property states
/// today's behaviour (and would crash again once the flag is set to false before the fix).
#[test]
fn key_file_target_runs_the_finding_clean() {
    let key = upswarm_trust::SecretKey::from_seed(&[2; 32])
        .public()
        .to_hex();
    upswarm_fuzz::key_file(format!("upswarm-ed25519-public:\n{key}\n").as_bytes());
}
