//! ed25519 keys and key files.
//!
//! Key files are one line of text, so that a human can tell them apart:
//! `upswarm-ed25519-secret:<64 hex digits of the 32-byte seed>` and
//! `upswarm-ed25519-public:<64 hex digits of the 32-byte public key>`.
//!
//! Owns key generation, signing and the key-file format. It never verifies a signature (`tally`
//! does); it writes secrets with mode 0600, never over an existing key file, and refuses to read a
//! secret file that group or others can read.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signer, SigningKey};
use upswarm_proto::{Context, KeyId, PublicKey, SignatureBytes, SignatureEntry, SignedEnvelope};
use zeroize::Zeroizing;

use crate::TrustError;

const SECRET_PREFIX: &str = "upswarm-ed25519-secret:";
const PUBLIC_PREFIX: &str = "upswarm-ed25519-public:";

/// A signing key. Its secret never appears in `Debug` output or logs.
pub struct SecretKey {
    inner: SigningKey,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey(key id {})", self.key_id())
    }
}

impl SecretKey {
    /// A fresh key from the operating system's random number generator.
    pub fn generate() -> Result<Self, TrustError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut()).map_err(|e| TrustError::Random(e.to_string()))?;
        Ok(Self::from_seed(&seed))
    }

    /// The key for a 32-byte seed (deterministic; for tests and fixtures).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        SecretKey {
            inner: SigningKey::from_bytes(seed),
        }
    }

    /// The 32-byte seed, for handing the same identity to libp2p. Keep it in the returned
    /// zeroizing buffer and drop it as soon as possible.
    pub fn seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.inner.to_bytes())
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.inner.verifying_key().to_bytes())
    }

    /// The key id of the public half.
    pub fn key_id(&self) -> KeyId {
        self.public().key_id()
    }

    /// Signs `payload` under `context`.
    pub fn sign(&self, context: Context, payload: &[u8]) -> SignatureEntry {
        let sig = self.inner.sign(&context.signing_message(payload));
        SignatureEntry {
            key: self.key_id(),
            sig: SignatureBytes(sig.to_bytes()),
        }
    }

    /// Adds this key's signature to `envelope`. Returns false (and changes nothing) when the
    /// envelope already carries a signature by this key.
    pub fn sign_envelope(&self, context: Context, envelope: &mut SignedEnvelope) -> bool {
        if envelope.sigs.iter().any(|s| s.key == self.key_id()) {
            return false;
        }
        let entry = self.sign(context, &envelope.payload);
        envelope.add_signature(entry)
    }
}

/// Writes `PREFIX.key` (mode 0600) and `PREFIX.pub` for `key`. Refuses to overwrite either.
/// Returns the two paths.
pub fn write_keypair(prefix: &Path, key: &SecretKey) -> Result<(PathBuf, PathBuf), TrustError> {
    let secret_path = with_suffix(prefix, "key");
    let public_path = with_suffix(prefix, "pub");
    for p in [&secret_path, &public_path] {
        if p.exists() {
            return Err(TrustError::KeyFileExists { path: p.clone() });
        }
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TrustError::KeyFileIo { path, source }
    };
    let secret = Zeroizing::new(format!(
        "{SECRET_PREFIX}{}\n",
        hex::encode(key.inner.to_bytes())
    ));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&secret_path)
        .map_err(io(&secret_path))?;
    f.write_all(secret.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(io(&secret_path))?;
    let public = format!("{PUBLIC_PREFIX}{}\n", key.public().to_hex());
    fs::write(&public_path, public).map_err(io(&public_path))?;
    Ok((secret_path, public_path))
}

fn with_suffix(prefix: &Path, ext: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_os_string();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

/// Longest key file we read; anything longer is not a key file.
const MAX_KEY_FILE: u64 = 1024;

fn read_small(path: &Path) -> Result<Zeroizing<String>, TrustError> {
    let io = |source| TrustError::KeyFileIo {
        path: path.to_path_buf(),
        source,
    };
    let meta = fs::metadata(path).map_err(io)?;
    if meta.len() > MAX_KEY_FILE {
        return Err(TrustError::BadKeyFile {
            path: path.to_path_buf(),
            reason: format!("{} bytes is too long for a key file", meta.len()),
        });
    }
    let bytes = Zeroizing::new(fs::read(path).map_err(io)?);
    let text = std::str::from_utf8(&bytes).map_err(|_| TrustError::BadKeyFile {
        path: path.to_path_buf(),
        reason: "not UTF-8 text".into(),
    })?;
    Ok(Zeroizing::new(text.trim().to_string()))
}

/// Reads a secret key file, refusing one readable by group or others.
pub fn read_secret_key(path: &Path) -> Result<SecretKey, TrustError> {
    let meta = fs::metadata(path).map_err(|source| TrustError::KeyFileIo {
        path: path.to_path_buf(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(TrustError::InsecureKeyFile {
            path: path.to_path_buf(),
            mode,
        });
    }
    let text = read_small(path)?;
    let bad = |reason: &str| TrustError::BadKeyFile {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    if text.starts_with(PUBLIC_PREFIX) {
        return Err(bad(
            "this is a public key file; a secret key file (.key) is needed here",
        ));
    }
    let hex_part = text
        .strip_prefix(SECRET_PREFIX)
        .ok_or_else(|| bad("it does not start with `upswarm-ed25519-secret:`"))?;
    let mut seed = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(hex_part, seed.as_mut())
        .map_err(|_| bad("the secret is not 64 hex digits"))?;
    Ok(SecretKey::from_seed(&seed))
}

/// Reads a public key file. A secret key file is refused (so that nobody hands a secret to
/// a command that would copy it somewhere).
pub fn read_public_key(path: &Path) -> Result<PublicKey, TrustError> {
    let text = read_small(path)?;
    let bad = |reason: &str| TrustError::BadKeyFile {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    if text.starts_with(SECRET_PREFIX) {
        return Err(bad("this is a SECRET key file; pass the .pub file instead"));
    }
    let hex_part = text
        .strip_prefix(PUBLIC_PREFIX)
        .ok_or_else(|| bad("it does not start with `upswarm-ed25519-public:`"))?;
    // Exactly the digits after the prefix, as for secret keys: no whitespace in between.
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut bytes)
        .map_err(|_| bad("the public key is not 64 hex digits"))?;
    ed25519_dalek::VerifyingKey::from_bytes(&bytes)
        .map_err(|_| bad("not a valid ed25519 public key"))?;
    Ok(PublicKey(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keypair_files_roundtrip_with_modes() {
        let dir = tempfile::tempdir().unwrap();
        let key = SecretKey::generate().unwrap();
        let (sk, pk) = write_keypair(&dir.path().join("alice"), &key).unwrap();
        assert_eq!(
            fs::metadata(&sk).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(read_secret_key(&sk).unwrap().public(), key.public());
        assert_eq!(read_public_key(&pk).unwrap(), key.public());
        // No overwrite.
        assert!(matches!(
            write_keypair(&dir.path().join("alice"), &key),
            Err(TrustError::KeyFileExists { .. })
        ));
    }

    #[test]
    fn key_file_confusion_and_bad_modes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = SecretKey::from_seed(&[1; 32]);
        let (sk, pk) = write_keypair(&dir.path().join("k"), &key).unwrap();
        assert!(matches!(
            read_public_key(&sk),
            Err(TrustError::BadKeyFile { .. })
        ));
        assert!(matches!(
            read_secret_key(&pk),
            Err(TrustError::InsecureKeyFile { .. })
        ));
        fs::set_permissions(&pk, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            read_secret_key(&pk),
            Err(TrustError::BadKeyFile { .. })
        ));
        fs::set_permissions(&sk, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            read_secret_key(&sk),
            Err(TrustError::InsecureKeyFile { mode: 0o644, .. })
        ));
        let junk = dir.path().join("junk.pub");
        fs::write(&junk, "hello").unwrap();
        assert!(matches!(
            read_public_key(&junk),
            Err(TrustError::BadKeyFile { .. })
        ));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let key = SecretKey::from_seed(&[7; 32]);
        let dbg = format!("{key:?}");
        assert!(!dbg.contains(&hex::encode([7u8; 32])));
        assert!(dbg.contains("key id"));
    }
}
