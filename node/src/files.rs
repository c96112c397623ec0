//! Reading and writing the files signers pass around: every error names the file.
//!
//! Owns bounded reads and atomic writes of single files. It uses neither `cli` nor `daemon`
//! (`tests/structure.rs` checks) and checks no signature: `read_signed` only decodes and validates
//! the message.

use std::fs;
use std::io::{Read, Write};
use std::path::Path;

use anyhow::{Context as _, bail};
use upswarm_proto::{Message, SignedEnvelope};

/// Reads a file of at most `limit` bytes. The size is checked from metadata first, and the
/// read itself is bounded, so a huge file (or a device) is refused without reading it all.
pub fn read_limited(path: &Path, what: &str, limit: usize) -> anyhow::Result<Vec<u8>> {
    let f =
        fs::File::open(path).with_context(|| format!("{}: cannot open {what}", path.display()))?;
    let meta = f
        .metadata()
        .with_context(|| format!("{}: cannot stat {what}", path.display()))?;
    if meta.is_dir() {
        bail!("{}: is a directory, expected a {what} file", path.display());
    }
    if meta.len() > limit as u64 {
        bail!(
            "{}: {what} is {} bytes, over the limit of {limit} bytes; this is not a {what}",
            path.display(),
            meta.len()
        );
    }
    let mut buf = Vec::with_capacity(meta.len() as usize);
    f.take(limit as u64 + 1)
        .read_to_end(&mut buf)
        .with_context(|| format!("{}: cannot read {what}", path.display()))?;
    if buf.len() > limit {
        bail!(
            "{}: {what} is over the limit of {limit} bytes",
            path.display()
        );
    }
    Ok(buf)
}

/// Reads a signed envelope holding an `M` and decodes (and validates) the message.
pub fn read_signed<M: Message>(path: &Path) -> anyhow::Result<(SignedEnvelope, M)> {
    let bytes = read_limited(path, M::WHAT, M::MAX_BYTES)?;
    let env = SignedEnvelope::decode::<M>(&bytes)
        .with_context(|| format!("{}: not a valid {}", path.display(), M::WHAT))?;
    let msg = env
        .open::<M>()
        .with_context(|| format!("{}: not a valid {}", path.display(), M::WHAT))?;
    Ok((env, msg))
}

/// Writes `bytes` to `path` atomically: temp file in the same directory, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("{}: cannot write", path.display()));
    }
    Ok(())
}
