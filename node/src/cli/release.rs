//! `upswarm release …`: create a release from build outputs, co-sign, verify, inspect.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Subcommand;
use upswarm_content::{ChunkStore, chunk_file, verify_artifact};
use upswarm_proto::manifest::{DEFAULT_CHUNK_SIZE, MANIFEST_VERSION, check_artifact_name};
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
    /// matches its hashes.
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
    let chunks = dir.join(CHUNKS_DIR);
    if !chunks.is_dir() {
        problems.push(format!(
            "{}: no chunk directory; the artifacts cannot be checked",
            chunks.display()
        ));
    } else {
        // Read-only: a damaged chunk is reported, never removed from the signer's directory.
        let store = ChunkStore::open_read_only(&chunks)?;
        for a in &manifest.artifacts {
            match verify_artifact(&store, a) {
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
