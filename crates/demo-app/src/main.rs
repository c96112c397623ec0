//! # upswarm-demo-app — a managed program to update
//!
//! The program upswarm supervises in tests and in the testnet. It serves `GET /health`,
//! `GET /version` and `GET /activations` over HTTP, and behaves as the `demo.toml` shipped
//! next to its executable in the release says:
//!
//! ```toml
//! version = "1.1.0"
//! mode = "healthy"      # healthy | unhealthy (health returns 503) | crash (exits at start) | slow
//! start_delay = "3s"    # how long a "slow" start takes before it listens
//! stop_delay = "2s"     # on SIGTERM / SIGINT, keep serving this long before exiting
//! ```
//!
//! It records each start in `<data dir>/starts` (one line: the version), so tests can
//! check that a rollback restored the data directory.
//!
//! With `--home DIR` it plays a Cosmos SDK chain (for cosmovisor mode): its data directory
//! is `DIR/data`, it makes a "block" every `block_time` (the height in `DIR/data/height`, and
//! a line `HEIGHT VERSION` per block in `DIR/data/blocks`), and when demo.toml names an
//! upgrade (`upgrade_name`, `upgrade_height`) it behaves like x/upgrade: on reaching that
//! height it writes `DIR/data/upgrade-info.json` and exits without making the block.
//!
//! Not for production; not a template for one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Behaviour {
    version: String,
    #[serde(default = "healthy")]
    mode: String,
    #[serde(default, with = "humantime_serde")]
    start_delay: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    stop_delay: Option<Duration>,
    /// Chain mode: the upgrade this binary halts for, and at which height.
    #[serde(default)]
    upgrade_name: Option<String>,
    #[serde(default)]
    upgrade_height: Option<u64>,
    /// Chain mode: time between blocks. Default `100ms`.
    #[serde(default, with = "humantime_serde")]
    block_time: Option<Duration>,
}

fn healthy() -> String {
    "healthy".into()
}

const USAGE: &str = "usage: upswarm-demo-app [--listen ADDR] [--data DIR | --home DIR]";

const HELP: &str = "upswarm-demo-app: the demo program upswarm supervises in tests, the testnet and
the day-one walk-through. Not for production.

usage: upswarm-demo-app [--listen ADDR] [--data DIR | --home DIR]

  --listen ADDR  where to serve HTTP (default 127.0.0.1:9000):
                 GET /health, GET /version, GET /activations
  --data DIR     its data directory (default demo-data); each start appends
                 its version to DIR/starts
  --home DIR     play a Cosmos chain with home DIR (data in DIR/data): one block
                 per block_time, and at upgrade_height (demo.toml) write
                 DIR/data/upgrade-info.json and exit, like x/upgrade
  -h, --help     this text

It behaves as the demo.toml next to its executable says:
  version = \"1.1.0\"
  mode = \"healthy\"     # healthy | unhealthy (health returns 503) | crash | slow
  start_delay = \"3s\"   # how long a \"slow\" start takes before it listens
  stop_delay = \"2s\"    # on SIGTERM / SIGINT, keep serving this long
  upgrade_name = \"v2\"  # with --home: the upgrade this binary halts for
  upgrade_height = 50   # with --home: and its height
  block_time = \"100ms\" # with --home: time between blocks
";

struct Args {
    listen: String,
    data: PathBuf,
    home: Option<PathBuf>,
}

fn args() -> anyhow::Result<Args> {
    let mut listen = "127.0.0.1:9000".to_string();
    let mut data = PathBuf::from("demo-data");
    let mut home = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--listen" => listen = it.next().context("--listen needs an address")?,
            "--data" => data = PathBuf::from(it.next().context("--data needs a directory")?),
            "--home" => {
                let h = PathBuf::from(it.next().context("--home needs a directory")?);
                data = h.join("data");
                home = Some(h);
            }
            "-h" | "--help" => {
                print!("{HELP}");
                std::process::exit(0);
            }
            other => anyhow::bail!("unknown argument {other:?}; {USAGE} (see --help)"),
        }
    }
    Ok(Args { listen, data, home })
}

fn behaviour(exe_dir: &Path) -> anyhow::Result<Behaviour> {
    let path = exe_dir.join("demo.toml");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    toml::from_str(&text).with_context(|| format!("{}: invalid", path.display()))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = args()?;
    let exe = std::env::current_exe().context("locating the executable")?;
    let exe_dir = exe.parent().context("executable has no directory")?;
    let b = behaviour(exe_dir)?;
    eprintln!("demo-app {} starting in mode {}", b.version, b.mode);
    std::fs::create_dir_all(&args.data)
        .with_context(|| format!("{}: cannot create", args.data.display()))?;
    let starts = args.data.join("starts");
    let mut log = std::fs::read_to_string(&starts).unwrap_or_default();
    log.push_str(&b.version);
    log.push('\n');
    std::fs::write(&starts, log)?;
    match b.mode.as_str() {
        "crash" => {
            eprintln!("demo-app {}: crashing at start, as configured", b.version);
            std::process::exit(3);
        }
        "slow" => tokio::time::sleep(b.start_delay.unwrap_or(Duration::from_secs(3))).await,
        "healthy" | "unhealthy" => {}
        other => anyhow::bail!("demo.toml: unknown mode {other:?}"),
    }
    if args.home.is_some() {
        tokio::spawn(chain(args.data.clone(), b.clone()));
    }
    let healthy = b.mode != "unhealthy";
    let version = b.version.clone();
    let activations = std::env::var_os("UPSWARM_ACTIVATIONS").map(PathBuf::from);
    let app = Router::new()
        .route(
            "/health",
            get(move || async move {
                if healthy {
                    (StatusCode::OK, "ok")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "unhealthy (demo mode)")
                }
            }),
        )
        .route("/version", get(move || async move { version.clone() }))
        .route(
            "/activations",
            get(move || {
                let path = activations.clone();
                async move {
                    match path.and_then(|p| std::fs::read_to_string(p).ok()) {
                        Some(text) => (StatusCode::OK, text),
                        None => (StatusCode::NOT_FOUND, "no activations file".to_string()),
                    }
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    eprintln!("demo-app {} listening on {}", b.version, args.listen);
    let stop_delay = b.stop_delay;
    let shutdown = async move {
        use tokio::signal::unix::{SignalKind, signal};
        if let (Ok(mut t), Ok(mut i)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            tokio::select! { _ = t.recv() => {}, _ = i.recv() => {} }
        }
        if let Some(d) = stop_delay {
            eprintln!("demo-app: stopping in {d:?}, as configured");
            tokio::time::sleep(d).await;
        }
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    eprintln!("demo-app {} stopped", b.version);
    Ok(())
}

/// Chain mode: one block per `block_time`; at the upgrade height, x/upgrade's halt.
async fn chain(data: PathBuf, b: Behaviour) {
    let height_file = data.join("height");
    let every = b.block_time.unwrap_or(Duration::from_millis(100));
    loop {
        let height: u64 = std::fs::read_to_string(&height_file)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        let next = height + 1;
        if let (Some(name), Some(at)) = (&b.upgrade_name, b.upgrade_height)
            && next >= at
        {
            let info = serde_json::json!({"name": name, "height": at, "info": ""});
            if let Err(e) = std::fs::write(data.join("upgrade-info.json"), info.to_string()) {
                eprintln!("demo-app: cannot write upgrade-info.json: {e}");
            }
            eprintln!("UPGRADE \"{name}\" NEEDED at height: {at}");
            std::process::exit(1);
        }
        let mut log = std::fs::read_to_string(data.join("blocks")).unwrap_or_default();
        log.push_str(&format!("{next} {}\n", b.version));
        if std::fs::write(data.join("blocks"), log)
            .and_then(|()| std::fs::write(&height_file, next.to_string()))
            .is_err()
        {
            eprintln!("demo-app: cannot record block {next}");
            std::process::exit(2);
        }
        tokio::time::sleep(every).await;
    }
}
