//! Writes the seed corpus to `fuzz/corpus/<target>/` (replacing what is there):
//! `cd fuzz && cargo run --example seeds`. Deterministic; see `src/seeds.rs`.

use std::fs;
use std::path::Path;

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let seeds = upswarm_fuzz::seeds::all();
    let mut targets: Vec<&str> = seeds.iter().map(|s| s.0).collect();
    targets.sort_unstable();
    targets.dedup();
    for t in &targets {
        let dir = root.join(t);
        if dir.exists() {
            fs::remove_dir_all(&dir)?;
        }
        fs::create_dir_all(&dir)?;
    }
    for (target, name, bytes) in &seeds {
        fs::write(root.join(target).join(name), bytes)?;
    }
    for t in &targets {
        let n = seeds.iter().filter(|s| s.0 == *t).count();
        println!("{t}: {n} seeds");
    }
    Ok(())
}
