//! Encoded forms of an artifact (manifest version 2, `docs/wire-format.md` §5 "Forms"):
//! `zstd` (the artifact compressed) and `zstd-patch` (compressed with an earlier version,
//! the *base*, as a raw-content prefix: what `zstd --patch-from=BASE` does).
//!
//! A form is exactly one zstd frame (RFC 8878) that declares its content size, which must
//! be the artifact's size. Encoders use level [`LEVEL`], long-distance matching and a window
//! of `2^window_log` bytes, [`window_log`] of the bytes the frame may refer back over (the
//! target, plus the base for a patch), capped by the encoder's limit.
//!
//! Decoding is of untrusted bytes until the artifact's whole-file hash is checked, so
//! [`decode`] streams (it never holds the output in memory), refuses a frame whose window
//! is over the decoder's cap (`ZSTD_d_windowLogMax`: zstd itself refuses to allocate it),
//! refuses a frame whose declared content size is not the artifact's, stops at the first
//! byte past that size and refuses trailing bytes after the frame. Memory used while
//! decoding: the base (held whole: zstd refers into it anywhere) plus at most
//! `2^max_window_log` bytes of window, plus zstd's fixed buffers (about 256 KiB).
//!
//! Owns the zstd encoding and the bounded decoding of forms. It opens no file and checks no
//! whole-file hash: `decode` writes into the caller's `Write`, and the caller checks the artifact's
//! hash before anything uses the output.

use std::io::{ErrorKind, Read, Write};

use upswarm_proto::manifest::Form;
use upswarm_proto::{Artifact, ChunkIndex, Hash32};
use zstd::zstd_safe::{self, CParameter, DParameter, InBuffer, OutBuffer};

use crate::{ChunkStore, ContentError};

/// zstd compression level of every form (`zstd -19`).
pub const LEVEL: i32 = 19;
/// Smallest window log zstd accepts.
pub const MIN_WINDOW_LOG: u32 = 10;
/// The largest window (as a log₂) encoders use and decoders accept by default: 128 MiB,
/// what `zstd --long` uses.
pub const DEFAULT_MAX_WINDOW_LOG: u32 = 27;
/// The largest window log any node accepts (zstd's own maximum on 64-bit machines).
pub const MAX_WINDOW_LOG: u32 = 31;

/// The encoded file of form `f` of artifact `a`, described as an artifact, so that it is
/// chunked, indexed, fetched, verified and assembled exactly like one: named
/// `NAME.zstd` or `NAME.zstd-patch.BASE` (`BASE`: the first 16 hex digits of the base's hash),
/// mode 0600.
pub fn form_file(a: &Artifact, f: &Form) -> Artifact {
    let name = match f.base {
        Some(b) => format!("{}.{}.{}", a.name, f.kind.as_str(), &b.to_hex()[..16]),
        None => format!("{}.{}", a.name, f.kind.as_str()),
    };
    Artifact {
        name,
        platform: a.platform.clone(),
        size: f.size,
        mode: 0o600,
        hash: f.hash,
        chunk_size: f.chunk_size,
        chunk_index: f.chunk_index,
        forms: None,
    }
}

/// Why a form could not be made or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FormError {
    #[error("zstd: {0}")]
    Zstd(String),
    #[error(
        "the zstd frame needs a window of more than 2^{max_window_log} bytes, the most this node decodes ({detail})"
    )]
    Window { max_window_log: u32, detail: String },
    #[error("the zstd frame declares {declared} of content; the artifact has {expected} bytes")]
    ContentSize { declared: String, expected: u64 },
    #[error("the zstd frame decodes to more than the artifact's {expected} bytes")]
    TooLong { expected: u64 },
    #[error("the form ends before its zstd frame does")]
    Truncated,
    #[error("the form has bytes after its zstd frame")]
    Trailing,
    #[error("the base is {size} bytes, more than the window cap of 2^{max_window_log} bytes")]
    BaseTooLarge { size: u64, max_window_log: u32 },
    #[error("{0}")]
    Content(#[from] ContentError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

fn zstd_err(code: usize) -> FormError {
    FormError::Zstd(zstd_safe::get_error_name(code).to_string())
}

/// `ceil(log2(bytes))`, clamped to `MIN_WINDOW_LOG..=cap`: the window that lets a frame
/// refer back over `bytes` bytes (the target, plus the base for a patch).
pub fn window_log(bytes: u64, cap: u32) -> u32 {
    let log = if bytes <= 1 {
        0
    } else {
        64 - (bytes - 1).leading_zeros()
    };
    log.clamp(MIN_WINDOW_LOG, cap.max(MIN_WINDOW_LOG))
}

/// Whether `data` looks worth compressing: 8 slices of 128 KiB spread evenly over it (all of
/// it when smaller), compressed at level 3, shrink below 97 %. Lets `release create` skip
/// level 19 on incompressible artifacts (archives, random data), where it would only burn
/// time to make a form that is not smaller.
pub fn looks_compressible(data: &[u8]) -> bool {
    const SLICE: usize = 128 * 1024;
    const SLICES: usize = 8;
    let sample: Vec<u8> = if data.len() <= SLICE * SLICES {
        data.to_vec()
    } else {
        let step = (data.len() - SLICE) / (SLICES - 1);
        (0..SLICES)
            .flat_map(|i| &data[i * step..i * step + SLICE])
            .copied()
            .collect()
    };
    if sample.is_empty() {
        return false;
    }
    match zstd::bulk::compress(&sample, 3) {
        Ok(z) => (z.len() as u64) * 100 < (sample.len() as u64) * 97,
        Err(_) => true,
    }
}

/// Encodes `target` as one zstd frame: level [`LEVEL`], long-distance matching, window
/// [`window_log`]`(target + base, max_window_log)`, content size in the header, no checksum,
/// and `base` (for a `zstd-patch` form) as a raw-content prefix.
pub fn encode(
    target: &[u8],
    base: Option<&[u8]>,
    max_window_log: u32,
) -> Result<Vec<u8>, FormError> {
    let reach = target.len() as u64 + base.map_or(0, |b| b.len() as u64);
    let wlog = window_log(reach, max_window_log.min(MAX_WINDOW_LOG));
    let mut cctx = zstd_safe::CCtx::try_create()
        .ok_or_else(|| FormError::Zstd("cannot create a compression context".into()))?;
    for p in [
        CParameter::CompressionLevel(LEVEL),
        CParameter::WindowLog(wlog),
        CParameter::EnableLongDistanceMatching(true),
        CParameter::ContentSizeFlag(true),
        CParameter::ChecksumFlag(false),
    ] {
        cctx.set_parameter(p).map_err(zstd_err)?;
    }
    if let Some(b) = base {
        cctx.ref_prefix(b).map_err(zstd_err)?;
    }
    let mut out: Vec<u8> = Vec::with_capacity(zstd_safe::compress_bound(target.len()));
    cctx.compress2(&mut out, target).map_err(zstd_err)?;
    Ok(out)
}

/// Decodes the form read from `input` into `out`: exactly one zstd frame, declaring
/// `expected` bytes of content, with `base` as prefix for a `zstd-patch` form; refused when
/// its window is over `2^max_window_log` bytes or the base is larger than that. Returns the
/// bytes written (always `expected` on success). The caller checks the output's hash.
pub fn decode<R: Read, W: Write>(
    mut input: R,
    base: Option<&[u8]>,
    expected: u64,
    max_window_log: u32,
    out: &mut W,
) -> Result<u64, FormError> {
    let max_window_log = max_window_log.clamp(MIN_WINDOW_LOG, MAX_WINDOW_LOG);
    if let Some(b) = base
        && b.len() as u64 > 1u64 << max_window_log
    {
        return Err(FormError::BaseTooLarge {
            size: b.len() as u64,
            max_window_log,
        });
    }
    let mut dctx = zstd_safe::DCtx::try_create()
        .ok_or_else(|| FormError::Zstd("cannot create a decompression context".into()))?;
    dctx.set_parameter(DParameter::WindowLogMax(max_window_log))
        .map_err(zstd_err)?;
    if let Some(b) = base {
        dctx.ref_prefix(b).map_err(zstd_err)?;
    }
    let mut inbuf = vec![0u8; zstd_safe::DCtx::in_size().max(1 << 16)];
    let mut outbuf = vec![0u8; zstd_safe::DCtx::out_size().max(1 << 16)];
    // Bytes in `inbuf` not consumed yet: `inbuf[start..end]`.
    let (mut start, mut end) = (0usize, 0usize);
    let mut eof = false;
    let mut header_checked = false;
    let mut written: u64 = 0;
    let mut finished = false;
    loop {
        if start == end && !eof {
            start = 0;
            end = read_some(&mut input, &mut inbuf)?;
            eof = end == 0;
        }
        if !header_checked {
            // The frame header is at most 18 bytes: gather them before decoding anything.
            while end - start < 18 && !eof {
                if start > 0 {
                    inbuf.copy_within(start..end, 0);
                    end -= start;
                    start = 0;
                }
                let n = read_some(&mut input, &mut inbuf[end..])?;
                eof = n == 0;
                end += n;
            }
            check_header(&inbuf[start..end], expected)?;
            header_checked = true;
        }
        if finished {
            if start < end {
                return Err(FormError::Trailing);
            }
            if eof {
                break;
            }
            continue;
        }
        if start == end && eof {
            return Err(FormError::Truncated);
        }
        let mut inb = InBuffer::around(&inbuf[start..end]);
        let mut outb = OutBuffer::around(&mut outbuf[..]);
        let hint = dctx
            .decompress_stream(&mut outb, &mut inb)
            .map_err(|code| window_or_zstd(code, max_window_log))?;
        let produced = outb.pos();
        start += inb.pos();
        written += produced as u64;
        if written > expected {
            return Err(FormError::TooLong { expected });
        }
        out.write_all(&outbuf[..produced])?;
        if hint == 0 {
            finished = true;
        }
    }
    if written != expected {
        return Err(FormError::ContentSize {
            declared: format!("{written} bytes (decoded)"),
            expected,
        });
    }
    Ok(written)
}

fn read_some<R: Read>(input: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match input.read(buf) {
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            r => return r,
        }
    }
}

/// The frame must start with zstd's magic number and declare `expected` bytes of content.
fn check_header(head: &[u8], expected: u64) -> Result<(), FormError> {
    match zstd_safe::get_frame_content_size(head) {
        Ok(Some(n)) if n == expected => Ok(()),
        Ok(Some(n)) => Err(FormError::ContentSize {
            declared: format!("{n} bytes"),
            expected,
        }),
        Ok(None) => Err(FormError::ContentSize {
            declared: "no size".into(),
            expected,
        }),
        Err(_) => Err(FormError::Zstd(
            "not a zstd frame (bad magic number or header)".into(),
        )),
    }
}

fn window_or_zstd(code: usize, max_window_log: u32) -> FormError {
    let name = zstd_safe::get_error_name(code).to_string();
    if name.contains("memory") || name.contains("window") || name.contains("Window") {
        FormError::Window {
            max_window_log,
            detail: name,
        }
    } else {
        FormError::Zstd(name)
    }
}

/// Reads the chunks of an indexed file from a store, in order, each verified against its
/// hash as it is read (a damaged one is removed and reported as an error).
#[derive(Debug)]
pub struct IndexReader<'a> {
    store: &'a ChunkStore,
    index: &'a ChunkIndex,
    next: usize,
    buf: Vec<u8>,
    pos: usize,
}

impl<'a> IndexReader<'a> {
    pub fn new(store: &'a ChunkStore, index: &'a ChunkIndex) -> Self {
        IndexReader {
            store,
            index,
            next: 0,
            buf: Vec::new(),
            pos: 0,
        }
    }
}

impl Read for IndexReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.pos == self.buf.len() {
            if self.next == self.index.len() {
                return Ok(0);
            }
            let i = self.next;
            let h: Hash32 = self.index.hash(i);
            self.buf = self
                .store
                .get(&h, u64::from(self.index.chunk_len(i)))
                .map_err(std::io::Error::other)?;
            if self.buf.len() != self.index.chunk_len(i) as usize {
                return Err(std::io::Error::other(format!(
                    "chunk {i} is {} bytes, the index says {}",
                    self.buf.len(),
                    self.index.chunk_len(i)
                )));
            }
            self.pos = 0;
            self.next += 1;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(seed: u64, n: usize) -> Vec<u8> {
        // Text-like: compressible, but not trivially.
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b"abcdefghijklmnop"[(x >> 60) as usize]
            })
            .collect()
    }

    fn decode_vec(form: &[u8], base: Option<&[u8]>, expected: u64) -> Result<Vec<u8>, FormError> {
        let mut out = Vec::new();
        decode(form, base, expected, DEFAULT_MAX_WINDOW_LOG, &mut out)?;
        Ok(out)
    }

    #[test]
    fn incompressible_data_is_recognised() {
        assert!(looks_compressible(&data(9, 3 << 20)));
        let mut x = 1u64;
        let random: Vec<u8> = (0..(3 << 20))
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        assert!(!looks_compressible(&random));
        assert!(!looks_compressible(&[]));
    }

    #[test]
    fn window_logs() {
        assert_eq!(window_log(0, 27), MIN_WINDOW_LOG);
        assert_eq!(window_log(1024, 27), 10);
        assert_eq!(window_log(1025, 27), 11);
        assert_eq!(window_log(1 << 20, 27), 20);
        assert_eq!(window_log(60 << 20, 27), 26);
        assert_eq!(window_log(1 << 40, 27), 27);
    }

    #[test]
    fn zstd_and_patch_round_trip() {
        let old = data(1, 300_000);
        let mut new = old.clone();
        new.splice(
            1000..1000,
            b"inserted bytes shift everything".iter().copied(),
        );
        new[200_000] ^= 0xff;
        let z = encode(&new, None, DEFAULT_MAX_WINDOW_LOG).unwrap();
        assert!(z.len() < new.len());
        assert_eq!(decode_vec(&z, None, new.len() as u64).unwrap(), new);
        let p = encode(&new, Some(&old), DEFAULT_MAX_WINDOW_LOG).unwrap();
        assert!(
            p.len() * 20 < z.len(),
            "patch {} vs zstd {}",
            p.len(),
            z.len()
        );
        assert_eq!(decode_vec(&p, Some(&old), new.len() as u64).unwrap(), new);
        // Through the CLI-compatible path: the empty artifact too.
        let e = encode(&[], None, DEFAULT_MAX_WINDOW_LOG).unwrap();
        assert_eq!(decode_vec(&e, None, 0).unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn a_patch_with_the_wrong_base_does_not_give_the_target() {
        let old = data(1, 100_000);
        let mut new = old.clone();
        new[5] ^= 1;
        let p = encode(&new, Some(&old), DEFAULT_MAX_WINDOW_LOG).unwrap();
        let other = data(2, 100_000);
        // Either zstd notices or the output differs: the caller's hash check catches it.
        if let Ok(out) = decode_vec(&p, Some(&other), new.len() as u64) {
            assert_ne!(out, new);
        }
        // No base at all: the frame refers to bytes before its start.
        assert!(decode_vec(&p, None, new.len() as u64).is_err());
    }

    #[test]
    fn hostile_frames_are_refused() {
        let new = data(3, 50_000);
        let z = encode(&new, None, DEFAULT_MAX_WINDOW_LOG).unwrap();
        // Wrong declared size (the manifest says otherwise).
        let e = decode_vec(&z, None, 49_999).unwrap_err();
        assert!(matches!(e, FormError::ContentSize { .. }), "{e}");
        // Truncated and trailing.
        let e = decode_vec(&z[..z.len() - 3], None, 50_000).unwrap_err();
        assert!(matches!(e, FormError::Truncated), "{e}");
        let mut t = z.clone();
        t.extend_from_slice(&z);
        let e = decode_vec(&t, None, 50_000).unwrap_err();
        assert!(matches!(e, FormError::Trailing), "{e}");
        // Not zstd at all.
        let e = decode_vec(b"PK\x03\x04 definitely not zstd....", None, 10).unwrap_err();
        assert!(e.to_string().contains("not a zstd frame"), "{e}");
        // Garbage after a valid header.
        let mut g = z[..12].to_vec();
        g.extend(std::iter::repeat_n(0xffu8, 64));
        assert!(decode_vec(&g, None, 50_000).is_err());
    }

    /// A hand-made frame: declares 1 MiB of content and a window of 2^31 bytes (not
    /// single-segment), then one raw block of 4 bytes. zstd refuses it at the header, before
    /// allocating anything; with a cap of 2^31 it gets as far as the missing content.
    #[test]
    fn a_frame_claiming_a_huge_window_is_refused() {
        let size = 1u32 << 20;
        let mut f = vec![0x28, 0xb5, 0x2f, 0xfd];
        f.push(0b1000_0000); // FHD: 4-byte content size, not single-segment, no checksum.
        f.push((31 - 10) << 3); // Window descriptor: exponent 31, mantissa 0.
        f.extend_from_slice(&size.to_le_bytes());
        f.extend_from_slice(&((4u32 << 3) | 1).to_le_bytes()[..3]); // last raw block of 4
        f.extend_from_slice(b"abcd");
        let e = decode_vec(&f, None, u64::from(size)).unwrap_err();
        assert!(matches!(e, FormError::Window { .. }), "{e}");
        let mut out = Vec::new();
        let e = decode(&f[..], None, u64::from(size), MAX_WINDOW_LOG, &mut out).unwrap_err();
        assert!(!matches!(e, FormError::Window { .. }), "{e}");
        // A base larger than the window cap is not even loaded.
        let big = vec![0u8; (1 << 10) + 1];
        let mut out = Vec::new();
        let e = decode(&f[..], Some(&big), u64::from(size), 10, &mut out).unwrap_err();
        assert!(matches!(e, FormError::BaseTooLarge { .. }), "{e}");
    }

    #[test]
    fn reads_a_form_from_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path()).unwrap();
        let new = data(4, 100_000);
        let z = encode(&new, None, DEFAULT_MAX_WINDOW_LOG).unwrap();
        let c = crate::chunk_reader(&z[..], std::path::Path::new("mem"), 4096, &store).unwrap();
        let mut out = Vec::new();
        decode(
            IndexReader::new(&store, &c.index),
            None,
            new.len() as u64,
            DEFAULT_MAX_WINDOW_LOG,
            &mut out,
        )
        .unwrap();
        assert_eq!(out, new);
    }
}
