//! `upswarm release …`: create a release from build outputs, co-sign, verify, inspect.
//!
//! It must not import daemon internals (`crate::daemon::…`): `publish` goes through the control
//! API. `create` writes only under `--out` and never over an existing manifest; `verify` and
//! `inspect` change nothing on disk.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Subcommand;
use upswarm_content::forms;
use upswarm_content::{ChunkStore, chunk_file, verify_artifact, verify_file};
use upswarm_proto::manifest::{
    DEFAULT_CHUNK_SIZE, Form, FormKind, MANIFEST_VERSION, MAX_FORMS, check_artifact_name,
};
use upswarm_proto::{
    Artifact, Changelog, Context, Hash32, KeyId, Manifest, Message, Protocols, RolloutPlan,
    SignedEnvelope, TrustRoot, UpdateType,
};
use upswarm_rollout::{Cohorts, install_delay};
use upswarm_trust::{
    TimeCheck, read_secret_key, unix_now, verify_manifest_signatures, verify_root,
};

use super::{Failure, show};
use crate::files::{read_limited, read_signed, write_atomic};
use crate::layout::{CHUNKS_DIR, MANIFEST_FILE, host_platform};
use crate::parse;

#[derive(Debug, Subcommand)]
pub enum ReleaseCommand {
    /// Create a release: chunk the artifacts into DIR/chunks and write the unsigned
    /// DIR/manifest.cbor.
    Create(Box<CreateArgs>),
    /// Add one signature to a manifest, in place (signing twice with one key adds nothing).
    Sign {
        /// Secret key file.
        #[arg(long, value_name = "KEY")]
        key: PathBuf,
        #[arg(value_name = "MANIFEST")]
        manifest: PathBuf,
    },
    /// Verify a release: exit 0 only when the release threshold for its type is met, neither
    /// the root nor the manifest has expired, and every artifact in the release directory
    /// matches its hashes: a file named as the artifact beside the manifest (a daemon's
    /// copy) is checked whole, otherwise its chunks in `chunks/` (a signer's directory).
    Verify {
        /// The trust root to verify against.
        #[arg(long, value_name = "ROOT")]
        root: PathBuf,
        #[arg(value_name = "MANIFEST")]
        manifest: PathBuf,
        /// Clock-skew allowance for expiry checks.
        #[arg(long, value_name = "DURATION", value_parser = parse::duration, default_value = "5m")]
        skew: Duration,
    },
    /// Hand a signed release (manifest + chunks) to a running daemon, which imports it,
    /// gossips it, stores it in the DHT and seeds it.
    Publish {
        /// The release directory.
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        #[command(flatten)]
        api: super::client::ApiArgs,
    },
    /// Print a human-readable summary of a manifest; with --nodes, also preview the cohorts
    /// of its rollout for a list of node ids.
    Inspect {
        #[arg(value_name = "MANIFEST")]
        manifest: PathBuf,
        /// Print JSON instead.
        #[arg(long)]
        json: bool,
        /// Preview the cohorts for these nodes: a file of node ids (64 hex digits: the
        /// `node_id` of `upswarm status --json`, or `upswarm key id <data_dir>/identity.key`
        /// on the node), one per line; blank lines and `#`
        /// comments are ignored. Shows each node's rank, phase and install delay in install
        /// order, as every node that knows exactly these nodes computes them.
        #[arg(long, value_name = "FILE")]
        nodes: Option<PathBuf>,
        /// With --nodes: the nodes' install spread inside a phase (their `[rollout] spread`).
        #[arg(long, value_name = "DURATION", value_parser = parse::duration, default_value = "60s", requires = "nodes")]
        spread: Duration,
    },
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// Product / component name.
    #[arg(long)]
    name: String,
    /// Semantic version of the release.
    #[arg(long, value_name = "SEMVER")]
    version: semver::Version,
    /// hotfix, patch, minor, major, config or protocol.
    #[arg(long = "type", value_name = "TYPE")]
    update_type: UpdateType,
    /// stable, beta, nightly or a custom channel name.
    #[arg(long)]
    channel: String,
    /// An artifact: its file name in the release, optionally its platform, and the file to
    /// read (`node=build/node`, `node@linux-aarch64=build/arm/node`). Repeat for several
    /// artifacts and platforms: one release carries every platform's build.
    #[arg(long = "artifact", value_name = "NAME[@PLATFORM]=PATH", value_parser = parse::artifact_spec, num_args = 1.., required = true)]
    artifacts: Vec<(String, Option<String>, PathBuf)>,
    /// Platform of the artifacts that name none (default: this machine's, e.g. linux-x86_64).
    #[arg(long)]
    platform: Option<String>,
    /// Oldest version this release may be applied over.
    #[arg(long, value_name = "V")]
    min_version: Option<semver::Version>,
    /// Validity period from now.
    #[arg(long, value_name = "DURATION", value_parser = parse::duration, default_value = "30d")]
    expires_in: Duration,
    /// Markdown changelog with sections "Features", "Fixes" and "Security" and "- " items.
    #[arg(long, value_name = "FILE")]
    changelog: Option<PathBuf>,
    /// Mark the release security-critical (may override maintenance windows; default plan is
    /// all-at-once).
    #[arg(long)]
    security_critical: bool,
    /// Sign as a rollback release: may be installed over newer versions.
    #[arg(long)]
    rollback: bool,
    /// Protocol versions / features the software provides.
    #[arg(long = "provides", value_name = "PROTOCOL", num_args = 1..)]
    provides: Vec<String>,
    /// The Cosmos chain upgrade (the plan name x/upgrade writes to `upgrade-info.json`) this
    /// release implements: adds `cosmos-upgrade.NAME` to `provides`. Nodes in cosmovisor
    /// mode install it under `cosmovisor/upgrades/NAME` and switch to it at the upgrade height.
    #[arg(long = "upgrade", value_name = "NAME")]
    upgrade: Option<String>,
    /// Protocol versions / features the software requires of the network.
    #[arg(long = "requires", value_name = "PROTOCOL", num_args = 1..)]
    requires: Vec<String>,
    /// Rollout phase PERCENT[:SOAK[:MAXFAIL%[:MINREPORTS]]], repeatable; default: the plan of
    /// the update type.
    #[arg(long = "phase", value_name = "PHASE", value_parser = parse::phase, num_args = 1..)]
    phases: Vec<upswarm_proto::Phase>,
    /// Chunk size, e.g. 1MiB or 256KiB.
    #[arg(long, value_name = "SIZE", value_parser = parse::size)]
    chunk_size: Option<u64>,
    /// An HTTP(S) mirror holding the release's artifacts at `URL/<platform>/<name>`
    /// (percent-encoded), signed into the manifest: nodes read chunks from it when no peer
    /// has them. Repeat for several (tried in this order, after each node's own mirrors).
    #[arg(long = "mirror", value_name = "URL")]
    mirrors: Vec<String>,
    /// Output directory (created; must not already hold a manifest).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// An earlier release's artifact files to diff against: a directory holding files named
    /// like the artifacts, or one file (for a release of one artifact). Each artifact gets a
    /// `zstd-patch` form per base found (zstd with the base as prefix, like `zstd -19 --long
    /// --patch-from=BASE`), kept when it is smaller than the form it replaces. Repeatable
    /// (e.g. the last two releases).
    #[arg(long = "delta-from", value_name = "DIR_OR_FILE")]
    delta_from: Vec<PathBuf>,
    /// Do not add a `zstd`-compressed form of each artifact (added by default when it is
    /// smaller than the artifact).
    #[arg(long)]
    no_compress: bool,
}

pub(super) fn run(cmd: ReleaseCommand) -> anyhow::Result<()> {
    match cmd {
        ReleaseCommand::Create(args) => create(*args),
        ReleaseCommand::Sign {
            key,
            manifest: path,
        } => {
            let key = read_secret_key(&key)?;
            let (mut env, m) = read_signed::<Manifest>(&path)?;
            if key.sign_envelope(Context::Manifest, &mut env) {
                let bytes = env.encode();
                if bytes.len() > Manifest::MAX_BYTES {
                    bail!(
                        "{}: one more signature would take the manifest over {} bytes",
                        path.display(),
                        Manifest::MAX_BYTES
                    );
                }
                write_atomic(&path, &bytes)?;
                println!(
                    "signed {} {} with key {} ({} signature(s) now)",
                    m.name,
                    m.version,
                    key.key_id(),
                    env.sigs.len()
                );
            } else {
                println!(
                    "{} is already signed by key {}; nothing added",
                    path.display(),
                    key.key_id()
                );
            }
            Ok(())
        }
        ReleaseCommand::Verify {
            root,
            manifest,
            skew,
        } => verify(&root, &manifest, skew),
        ReleaseCommand::Inspect {
            manifest,
            json,
            nodes,
            spread,
        } => {
            let preview = match &nodes {
                Some(path) => Some((path.as_path(), read_node_ids(path)?)),
                None => None,
            };
            inspect(&manifest, json, preview, spread)
        }
        ReleaseCommand::Publish { dir, api } => super::client::block_on(async move {
            let dir = std::path::absolute(&dir)
                .with_context(|| format!("{}: bad path", dir.display()))?;
            let client = super::client::ApiClient::new(&api)?;
            let body = crate::api::PublishRequest { dir };
            let view: crate::api::ReleaseView = client.post("/v1/publish", &body).await?;
            println!(
                "published {} {} (channel {}), id {}",
                view.name, view.version, view.channel, view.id
            );
            Ok(())
        }),
    }
}

fn create(a: CreateArgs) -> anyhow::Result<()> {
    let chunk_size = match a.chunk_size {
        None => DEFAULT_CHUNK_SIZE,
        Some(s) => u32::try_from(s).context("--chunk-size is too large")?,
    };
    let platform = a.platform.clone().unwrap_or_else(host_platform);
    // Check everything cheap before the expensive chunking.
    let mut seen = std::collections::BTreeSet::new();
    for (name, plat, path) in &a.artifacts {
        check_artifact_name(name)
            .with_context(|| format!("--artifact {name}={}", path.display()))?;
        let p = plat.clone().unwrap_or_else(|| platform.clone());
        if !seen.insert((name.clone(), p.clone())) {
            bail!("--artifact {name}@{p} is given twice");
        }
        let meta = fs::metadata(path)
            .with_context(|| format!("{}: cannot read artifact {name}", path.display()))?;
        if !meta.is_file() {
            bail!("{}: artifact {name} is not a regular file", path.display());
        }
    }
    for (i, m) in a.mirrors.iter().enumerate() {
        upswarm_proto::manifest::check_mirror_url(m)
            .map_err(|e| anyhow::anyhow!("--mirror {m:?}: not a usable mirror URL: {e}"))?;
        if a.mirrors[..i].contains(m) {
            bail!("--mirror {m:?} is given twice");
        }
    }
    if a.mirrors.len() > upswarm_proto::manifest::MAX_MIRRORS {
        bail!(
            "--mirror is given {} times; a manifest holds at most {} mirrors",
            a.mirrors.len(),
            upswarm_proto::manifest::MAX_MIRRORS
        );
    }
    let changelog = match &a.changelog {
        Some(p) => parse_changelog(p)?,
        None => Changelog::default(),
    };
    if a.delta_from.len() > MAX_FORMS - 1 {
        bail!(
            "--delta-from is given {} times; an artifact has at most {} delta forms",
            a.delta_from.len(),
            MAX_FORMS - 1
        );
    }
    for d in &a.delta_from {
        let meta = fs::metadata(d)
            .with_context(|| format!("--delta-from {}: cannot read", d.display()))?;
        if meta.is_file() && a.artifacts.len() != 1 {
            bail!(
                "--delta-from {}: a single file is a base only for a release of one artifact; give a directory holding files named like the artifacts",
                d.display()
            );
        }
    }
    let manifest_path = a.out.join(MANIFEST_FILE);
    if manifest_path.exists() {
        bail!(
            "{}: already exists; use a new --out directory for a new release",
            manifest_path.display()
        );
    }
    fs::create_dir_all(&a.out)
        .with_context(|| format!("{}: cannot create directory", a.out.display()))?;
    let store = ChunkStore::open(a.out.join(CHUNKS_DIR))?;

    let mut artifacts = Vec::with_capacity(a.artifacts.len());
    for (name, plat, path) in &a.artifacts {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(path)?.permissions().mode() & 0o777;
        let c = chunk_file(path, chunk_size, &store)
            .with_context(|| format!("{}: chunking artifact {name}", path.display()))?;
        eprintln!(
            "  {name}: {} bytes, {} chunk(s), blake3 {}",
            c.size,
            c.index.len(),
            c.hash.to_hex()
        );
        artifacts.push(Artifact {
            name: name.clone(),
            platform: plat.clone().unwrap_or_else(|| platform.clone()),
            size: c.size,
            mode,
            hash: c.hash,
            chunk_size,
            chunk_index: c.index_hash,
            forms: None,
        });
        let forms = encode_forms(
            path,
            name,
            &c,
            chunk_size,
            &a.delta_from,
            !a.no_compress,
            &store,
        )?;
        if let Some(last) = artifacts.last_mut()
            && !forms.is_empty()
        {
            last.forms = Some(forms);
        }
    }
    let mut provides = a.provides;
    if let Some(u) = &a.upgrade {
        check_artifact_name(u).map_err(|e| {
            anyhow::anyhow!(
                "--upgrade {u:?}: not usable as a directory name under cosmovisor/upgrades: {e}"
            )
        })?;
        let p = format!("{}{u}", crate::layout::UPGRADE_PREFIX);
        if provides
            .iter()
            .any(|q| q.starts_with(crate::layout::UPGRADE_PREFIX) && *q != p)
        {
            anyhow::bail!("--upgrade {u:?}: --provides already names another cosmos upgrade");
        }
        if !provides.contains(&p) {
            provides.push(p);
        }
    }
    let now = unix_now();
    let mut manifest = Manifest {
        v: MANIFEST_VERSION,
        name: a.name,
        version: a.version,
        channel: a.channel,
        update_type: a.update_type,
        security_critical: a.security_critical,
        rollback: a.rollback,
        min_version: a.min_version,
        protocols: Protocols {
            provides,
            requires: a.requires,
        },
        created_at: now,
        expires_at: now.saturating_add(a.expires_in.as_secs()),
        changelog,
        rollout: if a.phases.is_empty() {
            None
        } else {
            Some(RolloutPlan { phases: a.phases })
        },
        mirrors: (!a.mirrors.is_empty()).then(|| a.mirrors.clone()),
        artifacts,
    };
    manifest.settle_version();
    manifest
        .validate()
        .context("the release these flags describe is not valid")?;
    let env = SignedEnvelope::wrap(&manifest);
    // Leave room for a full set of signatures (about 110 bytes each).
    let room = upswarm_proto::envelope::MAX_SIGNATURES * 110;
    if env.encode().len() + room > Manifest::MAX_BYTES {
        bail!(
            "the manifest would be {} bytes; with room for signatures it must stay under {} bytes (shorten the changelog)",
            env.encode().len(),
            Manifest::MAX_BYTES - room
        );
    }
    write_atomic(&manifest_path, &env.encode())?;
    println!(
        "release {} {} ({}), id {}",
        manifest.name,
        manifest.version,
        manifest.update_type,
        env.payload_hash().to_hex()
    );
    eprintln!(
        "wrote {} (unsigned). Each signer now runs: upswarm release sign --key KEY {}",
        manifest_path.display(),
        manifest_path.display()
    );
    Ok(())
}

/// The encoded forms of one artifact: a `zstd` form (when `compress`) and a `zstd-patch`
/// form per base among `bases`, each kept only when smaller than what it replaces (a patch
/// replaces the `zstd` form, or the plain artifact when there is none), chunked into
/// `store`.
fn encode_forms(
    path: &Path,
    name: &str,
    c: &upswarm_content::ChunkedArtifact,
    chunk_size: u32,
    bases: &[PathBuf],
    compress: bool,
    store: &ChunkStore,
) -> anyhow::Result<Vec<Form>> {
    if !compress && bases.is_empty() {
        return Ok(Vec::new());
    }
    let target = read_whole(path, name)?;
    let mut forms = Vec::new();
    let cap = forms::DEFAULT_MAX_WINDOW_LOG;
    let store_form = |kind: FormKind, base: Option<Hash32>, bytes: &[u8]| -> anyhow::Result<Form> {
        let f =
            upswarm_content::chunk_reader(bytes, path, chunk_size, store).with_context(|| {
                format!(
                    "{}: chunking the {} form of {name}",
                    path.display(),
                    kind.as_str()
                )
            })?;
        Ok(Form {
            kind,
            base,
            size: f.size,
            hash: f.hash,
            chunk_size,
            chunk_index: f.index_hash,
        })
    };
    let pct = |n: u64| n as f64 * 100.0 / (c.size.max(1) as f64);
    let mut replaced = c.size;
    if compress && !forms::looks_compressible(&target) {
        eprintln!("  {name}: zstd form skipped: a sample does not compress");
    } else if compress {
        let z = forms::encode(&target, None, cap)
            .with_context(|| format!("{}: compressing artifact {name}", path.display()))?;
        if (z.len() as u64) < c.size {
            eprintln!(
                "  {name}: zstd form {} bytes ({:.1} %)",
                z.len(),
                pct(z.len() as u64)
            );
            replaced = z.len() as u64;
            forms.push(store_form(FormKind::Zstd, None, &z)?);
        } else {
            eprintln!("  {name}: zstd form skipped: not smaller than the artifact");
        }
    }
    for b in bases {
        let base_path = if b.is_dir() { b.join(name) } else { b.clone() };
        if !base_path.is_file() {
            eprintln!(
                "  {name}: no base in {} (no {})",
                b.display(),
                base_path.display()
            );
            continue;
        }
        let base = read_whole(&base_path, name)?;
        let base_hash = Hash32::of(&base);
        if base_hash == c.hash {
            eprintln!(
                "  {name}: {} is the artifact itself: no delta needed",
                base_path.display()
            );
            continue;
        }
        if forms.iter().any(|f: &Form| f.base == Some(base_hash)) {
            continue;
        }
        let p = forms::encode(&target, Some(&base), cap).with_context(|| {
            format!(
                "{}: diffing artifact {name} against {}",
                path.display(),
                base_path.display()
            )
        })?;
        if (p.len() as u64) < replaced {
            eprintln!(
                "  {name}: zstd-patch form from {} (blake3 {}) {} bytes ({:.1} %)",
                base_path.display(),
                base_hash.to_hex(),
                p.len(),
                pct(p.len() as u64)
            );
            forms.push(store_form(FormKind::ZstdPatch, Some(base_hash), &p)?);
        } else {
            eprintln!(
                "  {name}: zstd-patch form from {} skipped: {} bytes, not smaller than {replaced}",
                base_path.display(),
                p.len()
            );
        }
    }
    Ok(forms)
}

fn read_whole(path: &Path, name: &str) -> anyhow::Result<Vec<u8>> {
    fs::read(path).with_context(|| format!("{}: cannot read (for artifact {name})", path.display()))
}

/// Parses a Markdown changelog: headings select the section (Features, Fixes, Security),
/// `-` or `*` bullets are entries; text before any heading goes to Features.
pub fn parse_changelog(path: &Path) -> anyhow::Result<Changelog> {
    let bytes = read_limited(path, "changelog", 32 * 1024)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("{}: changelog is not UTF-8 text", path.display()))?;
    let mut log = Changelog::default();
    let mut section = 0usize;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(h) = line.strip_prefix('#') {
            let h = h.trim_start_matches('#').trim().to_ascii_lowercase();
            section = if h.starts_with("feature") {
                0
            } else if h.starts_with("fix") || h.starts_with("bug") {
                1
            } else if h.starts_with("security") {
                2
            } else {
                bail!(
                    "{}:{}: unknown section {h:?}; expected Features, Fixes or Security",
                    path.display(),
                    n + 1
                );
            };
            continue;
        }
        let item = line
            .strip_prefix("- ")
            .or_else(|| line.strip_prefix("* "))
            .unwrap_or(line)
            .to_string();
        [&mut log.features, &mut log.fixes, &mut log.security][section].push(item);
    }
    Ok(log)
}

fn verify(root_path: &Path, manifest_path: &Path, skew: Duration) -> anyhow::Result<()> {
    let (root_env, root) = read_signed::<TrustRoot>(root_path)?;
    let time = TimeCheck {
        now: unix_now(),
        skew: skew.as_secs(),
    };
    verify_root(&root_env, time).map_err(|e| {
        if let Some(t) = e.tally() {
            print!("{}", show::tally(t, &root));
        }
        Failure::Rejected(format!("{}: {e}", root_path.display()))
    })?;
    let (env, manifest) = read_signed::<Manifest>(manifest_path)?;
    println!(
        "release {} {} ({}, channel {}), id {}",
        manifest.name,
        manifest.version,
        manifest.update_type,
        manifest.channel,
        env.payload_hash()
    );
    let mut problems = Vec::new();
    match verify_manifest_signatures(&root, &env) {
        Ok(v) => print!("{}", show::tally(&v.tally, &root)),
        Err(e) => {
            if let Some(t) = e.tally() {
                print!("{}", show::tally(t, &root));
            }
            problems.push(format!("signatures: {e}"));
        }
    }
    if let Err(e) = time.check(Manifest::WHAT, manifest.expires_at) {
        problems.push(e.to_string());
    }
    let dir = manifest_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // An artifact is checked from its file beside the manifest when there is one (a
    // daemon's release directory), else from the chunk directory (a signer's).
    let chunks = dir.join(CHUNKS_DIR);
    let store = if chunks.is_dir() {
        // Read-only: a damaged chunk is reported, never removed from the signer's directory.
        Some(ChunkStore::open_read_only(&chunks)?)
    } else {
        None
    };
    for a in &manifest.artifacts {
        let file = dir.join(&a.name);
        if file.is_file() {
            match verify_file(&file, a) {
                Ok(()) => println!(
                    "artifact {} ({}): {}, {} bytes — whole-file hash matches",
                    a.name,
                    a.platform,
                    file.display(),
                    a.size
                ),
                Err(e) => {
                    println!("artifact {} ({}): {e}", a.name, a.platform);
                    problems.push(format!("artifact {}: {e}", a.name));
                }
            }
            continue;
        }
        let Some(store) = &store else {
            problems.push(format!(
                "artifact {}: neither {} nor a chunk directory {} is there; it cannot be checked",
                a.name,
                file.display(),
                chunks.display()
            ));
            continue;
        };
        match verify_artifact(store, a) {
            Ok(idx) => println!(
                "artifact {} ({}): {} bytes, {} chunk(s) — hashes match",
                a.name,
                a.platform,
                a.size,
                idx.len()
            ),
            Err(e) => {
                println!("artifact {} ({}): {e}", a.name, a.platform);
                problems.push(format!("artifact {}: {e}", a.name));
            }
        }
        for f in a.forms() {
            let file = forms::form_file(a, f);
            match verify_artifact(store, &file) {
                Ok(idx) => println!(
                    "  form {}: {} bytes, {} chunk(s) — hashes match",
                    file.name,
                    f.size,
                    idx.len()
                ),
                Err(e) => {
                    println!("  form {}: {e}", file.name);
                    problems.push(format!("form {}: {e}", file.name));
                }
            }
        }
    }
    if problems.is_empty() {
        println!(
            "OK: {} is valid under trust root version {}",
            manifest_path.display(),
            root.version
        );
        Ok(())
    } else {
        Err(Failure::Rejected(format!(
            "{}: {}",
            manifest_path.display(),
            problems.join("; ")
        ))
        .into())
    }
}

/// Most bytes of a `--nodes` file (about 250 000 node ids).
const MAX_NODE_LIST_BYTES: usize = 16 * 1024 * 1024;

/// Reads a list of node ids: one 64-hex-digit key id per line, blank lines and `#` comments
/// ignored, duplicates counted once.
pub fn read_node_ids(path: &Path) -> anyhow::Result<Vec<KeyId>> {
    let bytes = read_limited(path, "node id list", MAX_NODE_LIST_BYTES)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("{}: the node id list is not UTF-8 text", path.display()))?;
    let mut ids = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let id = KeyId::from_hex(line).map_err(|_| {
            anyhow::anyhow!(
                "{}:{}: {:?} is not a node id (64 hex digits, as `upswarm status` prints it)",
                path.display(),
                n + 1,
                show::text(line)
            )
        })?;
        ids.push(id);
    }
    if ids.is_empty() {
        bail!("{}: no node ids in the list", path.display());
    }
    Ok(ids)
}

/// The cohorts of `release` over `nodes`, as JSON: sizes per phase and every node in install
/// order.
fn cohorts_json(c: &Cohorts, release: &Hash32, spread: Duration) -> serde_json::Value {
    let order: Vec<serde_json::Value> = c
        .placements()
        .map(|p| {
            serde_json::json!({
                "position": p.position,
                "node": p.node,
                "rank": p.rank.fraction(),
                "rank_phase": p.rank_phase,
                "phase": p.phase,
                "promoted": p.promoted(),
                "install_delay_secs": install_delay(release, &p.node, spread).as_secs(),
            })
        })
        .collect();
    serde_json::json!({
        "nodes": c.len(),
        "spread_secs": spread.as_secs(),
        "phase_sizes": c.sizes(),
        "order": order,
    })
}

fn inspect(
    path: &Path,
    json: bool,
    nodes: Option<(&Path, Vec<KeyId>)>,
    spread: Duration,
) -> anyhow::Result<()> {
    let (env, m) = read_signed::<Manifest>(path)?;
    let release = env.payload_hash();
    let cohorts = nodes
        .as_ref()
        .map(|(_, ids)| Cohorts::new(&m.effective_plan(), &release, ids.iter().copied()));
    if json {
        let mut value = serde_json::json!({
            "release_id": release,
            "manifest": m,
            "signatures": env.sigs.iter().map(|s| s.key).collect::<Vec<_>>(),
        });
        if let (Some(c), Some(obj)) = (&cohorts, value.as_object_mut()) {
            obj.insert("cohorts".into(), cohorts_json(c, &release, spread));
        }
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    println!("release      {} {}", m.name, m.version);
    println!("id           {}", env.payload_hash().to_hex());
    println!("channel      {}", m.channel);
    println!(
        "type         {}{}{}",
        m.update_type,
        if m.security_critical {
            ", SECURITY-CRITICAL"
        } else {
            ""
        },
        if m.rollback { ", rollback release" } else { "" }
    );
    if let Some(min) = &m.min_version {
        println!("applies over >= {min}");
    }
    println!("created      {}", show::time(m.created_at));
    println!("expires      {}", show::time(m.expires_at));
    if !m.protocols.provides.is_empty() || !m.protocols.requires.is_empty() {
        println!(
            "protocols    provides [{}], requires [{}]",
            m.protocols.provides.join(", "),
            m.protocols.requires.join(", ")
        );
    }
    let plan = m.effective_plan();
    println!(
        "rollout      {}",
        if m.rollout.is_some() {
            "custom plan"
        } else {
            "default plan for this type"
        }
    );
    for (i, p) in plan.phases.iter().enumerate() {
        println!(
            "  phase {}: up to {:.2}% of nodes, soak {}, halt above {:.2}% failures, needs {} report(s)",
            i,
            f64::from(p.until_bp) / 100.0,
            humantime::format_duration(Duration::from_secs(p.min_soak_secs)),
            f64::from(p.max_failure_bp) / 100.0,
            p.min_reports
        );
    }
    println!("artifacts");
    for a in &m.artifacts {
        println!(
            "  {} ({}) {} bytes, mode {:o}, {} chunk(s) of {} bytes\n    blake3 {}\n    chunk index {}",
            a.name,
            a.platform,
            a.size,
            a.mode,
            a.chunk_count(),
            a.chunk_size,
            a.hash.to_hex(),
            a.chunk_index.to_hex()
        );
        for f in a.forms() {
            println!(
                "    form {}{}: {} bytes ({:.1} % of the artifact)",
                f.kind.as_str(),
                f.base
                    .map(|b| format!(" from base {}", b.to_hex()))
                    .unwrap_or_default(),
                f.size,
                f.size as f64 * 100.0 / a.size.max(1) as f64
            );
        }
    }
    if !m.mirrors().is_empty() {
        println!(
            "mirrors      (artifacts at MIRROR/<platform>/<name>, e.g. {})",
            m.artifacts
                .first()
                .map(|a| Manifest::mirror_url(&m.mirrors()[0], a))
                .unwrap_or_default()
        );
        for u in m.mirrors() {
            println!("  {u}");
        }
    }
    for (title, items) in [
        ("features", &m.changelog.features),
        ("fixes", &m.changelog.fixes),
        ("security", &m.changelog.security),
    ] {
        if !items.is_empty() {
            println!("{title}");
            for i in items {
                println!("  - {}", show::text(i));
            }
        }
    }
    println!("signatures   {}", env.sigs.len());
    for s in &env.sigs {
        println!("  key {}", s.key);
    }
    if let (Some(c), Some((list, _))) = (&cohorts, &nodes) {
        print_cohorts(c, &release, list, spread);
    }
    Ok(())
}

/// The cohort preview of `release inspect --nodes`.
fn print_cohorts(c: &Cohorts, release: &Hash32, list: &Path, spread: Duration) {
    println!(
        "cohorts      {} node(s) from {}, as every node that knows exactly these nodes draws them",
        c.len(),
        list.display()
    );
    for (k, n) in c.sizes().iter().enumerate() {
        println!("  phase {k}: {n} node(s)");
    }
    println!(
        "install order (phase by phase; inside a phase each node installs its delay after the phase opened, spread {})",
        humantime::format_duration(spread)
    );
    println!(
        "  {:>5}  {:>5}  {:>9}  {:>7}  node",
        "#", "phase", "rank", "delay"
    );
    for p in c.placements() {
        let promoted = if p.promoted() {
            format!("  (promoted from phase {})", p.rank_phase)
        } else {
            String::new()
        };
        println!(
            "  {:>5}  {:>5}  {:>7.4} %  {:>5} s  {}{promoted}",
            p.position + 1,
            p.phase,
            p.rank.fraction() * 100.0,
            install_delay(release, &p.node, spread).as_secs(),
            p.node.to_hex()
        );
    }
}
