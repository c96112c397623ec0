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
}

fn healthy() -> String {
    "healthy".into()
}

const USAGE: &str = "usage: upswarm-demo-app [--listen ADDR] [--data DIR]";

const HELP: &str = "upswarm-demo-app: the demo program upswarm supervises in tests, the testnet and
the day-one walk-through. Not for production.

usage: upswarm-demo-app [--listen ADDR] [--data DIR]

  --listen ADDR  where to serve HTTP (default 127.0.0.1:9000):
                 GET /health, GET /version, GET /activations
  --data DIR     its data directory (default demo-data); each start appends
                 its version to DIR/starts
  -h, --help     this text

It behaves as the demo.toml next to its executable says:
  version = \"1.1.0\"
  mode = \"healthy\"     # healthy | unhealthy (health returns 503) | crash | slow
  start_delay = \"3s\"   # how long a \"slow\" start takes before it listens
  stop_delay = \"2s\"    # on SIGTERM / SIGINT, keep serving this long
";

struct Args {
    listen: String,
    data: PathBuf,
}

fn args() -> anyhow::Result<Args> {
    let mut listen = "127.0.0.1:9000".to_string();
    let mut data = PathBuf::from("demo-data");
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--listen" => listen = it.next().context("--listen needs an address")?,
            "--data" => data = PathBuf::from(it.next().context("--data needs a directory")?),
            "-h" | "--help" => {
                print!("{HELP}");
                std::process::exit(0);
            }
            other => anyhow::bail!("unknown argument {other:?}; {USAGE} (see --help)"),
        }
    }
    Ok(Args { listen, data })
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
