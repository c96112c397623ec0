//! Benchmark helper for `scripts/bench-store.sh`: the download side's verify + store, as a
//! daemon does it, on a local file.
//!
//! `verify_store SRC DEST [CHUNK_SIZE=1048576]`
//!
//! Untimed: SRC's chunk index and whole-file hash are computed (a receiver has them from the
//! signed manifest). Timed, printed as `verify+store: SECONDS`: every chunk is read from SRC
//! (standing in for the network's buffers), verified against the index and written into the
//! partial file at its offset — by two worker threads taking the chunks in a shuffled order,
//! as rarest-first scheduling delivers them — then the artifact is completed: whole-file hash
//! read back, mode set, fsync, rename to DEST.

use std::error::Error;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use upswarm_content::{ChunkStore, PartialFile};
use upswarm_proto::{Artifact, ChunkIndex, Hash32};

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(src), Some(dest)) = (args.get(1), args.get(2)) else {
        return Err("usage: verify_store SRC DEST [CHUNK_SIZE]".into());
    };
    let chunk_size: u32 = args.get(3).map_or(Ok(1 << 20), |s| s.parse())?;
    let (src, dest) = (PathBuf::from(src), PathBuf::from(dest));
    let dir = dest.parent().ok_or("DEST has no directory")?;
    let store = ChunkStore::open(dir.join(".verify-store-bench"))?;

    // Untimed: what the manifest tells a receiver.
    let file = std::fs::File::open(&src)?;
    let size = file.metadata()?.len();
    let n = size.div_ceil(u64::from(chunk_size)) as usize;
    let mut hashes = Vec::with_capacity(n);
    let mut buf = vec![0u8; chunk_size as usize];
    let mut whole = blake3::Hasher::new();
    for i in 0..n {
        let len = (size - i as u64 * u64::from(chunk_size)).min(u64::from(chunk_size)) as usize;
        file.read_exact_at(&mut buf[..len], i as u64 * u64::from(chunk_size))?;
        hashes.push(Hash32::of(&buf[..len]));
        whole.update(&buf[..len]);
    }
    let index = ChunkIndex::new(size, chunk_size, &hashes);
    let artifact = Artifact {
        name: "bench".into(),
        platform: "any".into(),
        size,
        mode: 0o644,
        hash: Hash32::from(whole.finalize()),
        chunk_size,
        chunk_index: Hash32::of(&index.encode()),
        forms: None,
    };
    // A fixed shuffle (xorshift), the same every run.
    let mut order: Vec<usize> = (0..n).collect();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in (1..n).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        order.swap(i, (x % (i as u64 + 1)) as usize);
    }

    let t = Instant::now();
    let part = PartialFile::open(&store, &dest, &index)?;
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| -> Result<(), Box<dyn Error + Send + Sync>> {
        let workers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| -> Result<(), Box<dyn Error + Send + Sync>> {
                    let mut buf = vec![0u8; chunk_size as usize];
                    loop {
                        let k = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&i) = order.get(k) else {
                            return Ok(());
                        };
                        let len = index.chunk_len(i) as usize;
                        file.read_exact_at(&mut buf[..len], i as u64 * u64::from(chunk_size))?;
                        part.put(&store, i, &buf[..len])?;
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().map_err(|_| "a worker panicked")??;
        }
        Ok(())
    })
    .map_err(|e| e.to_string())?;
    part.finish(&store, &artifact, &dest)?;
    println!("verify+store: {:.3}", t.elapsed().as_secs_f64());
    std::fs::remove_dir_all(store.root())?;
    Ok(())
}
