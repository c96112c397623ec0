//! `upswarm testnet`: a local network of daemons on loopback, each supervising the demo
//! program, and a scenario played on it — the first thing to run.
//!
//! It must not import daemon internals (`crate::daemon::…`): it starts `upswarm` processes through
//! `localnet` and talks to their control APIs. It writes only in its own temporary directory,
//! removed at the end unless `--keep`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::Value;
use upswarm_proto::{Electorate, ReleaseRole, Role, Roles, TrustRoot, UpdateType, Voter};
use upswarm_trust::{SecretKey, unix_now, write_keypair};

use crate::localnet::{self, LocalDaemon};

/// Which story to play.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// A good release rolls out in phases to every node.
    Good,
    /// A bad release (fails its health check) is installed by the canaries only, rolled back
    /// there, and halts network-wide.
    Bad,
    /// Nodes upgrade to software supporting a protocol, vote, and all activate it at the
    /// same second.
    Vote,
}

#[derive(Debug, clap::Args)]
pub struct TestnetArgs {
    /// Managed nodes (plus one seed that publishes).
    #[arg(long, default_value_t = 8)]
    nodes: usize,
    #[arg(long, value_enum, default_value_t = Scenario::Good)]
    scenario: Scenario,
    /// Keep the working directory (keys, configs, logs) instead of deleting it.
    #[arg(long)]
    keep: bool,
    /// Give up after this long.
    #[arg(long, value_parser = crate::parse::duration, default_value = "6m")]
    timeout: Duration,
}

struct Node {
    daemon: LocalDaemon,
    port: Option<u16>,
}

struct Net {
    dir: PathBuf,
    exe: PathBuf,
    demo: PathBuf,
    nodes: Vec<Node>,
    keep: bool,
    tmp: Option<tempfile::TempDir>,
}

impl Drop for Net {
    fn drop(&mut self) {
        // Each daemon stops its demo program on SIGTERM; then whatever is left of anything
        // this testnet started is killed.
        let mut daemons: Vec<LocalDaemon> = self.nodes.drain(..).map(|n| n.daemon).collect();
        localnet::stop_network(&mut daemons, &self.dir, Duration::from_secs(10));
        if self.keep
            && let Some(t) = self.tmp.take()
        {
            let p = t.keep();
            eprintln!("kept the testnet directory {}", p.display());
        }
    }
}

fn run(exe: &Path, net_dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = localnet::run_marked(Command::new(exe).args(args), net_dir)
        .with_context(|| format!("running upswarm {args:?}"))?;
    if !out.status.success() {
        bail!(
            "upswarm {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Net {
    fn path(&self, p: &str) -> String {
        self.dir.join(p).to_string_lossy().into_owned()
    }

    fn keys(&self, nodes: usize) -> anyhow::Result<()> {
        let keygen = |name: &str| -> anyhow::Result<SecretKey> {
            let k = SecretKey::generate()?;
            write_keypair(&self.dir.join(name), &k)?;
            Ok(k)
        };
        let root = [keygen("root-1")?, keygen("root-2")?];
        let release = [
            keygen("signer-1")?,
            keygen("signer-2")?,
            keygen("signer-3")?,
        ];
        let control = [keygen("control-1")?, keygen("control-2")?];
        let mut voters = Vec::new();
        for i in 0..nodes {
            voters.push(Voter {
                key: keygen(&format!("voter-{i}"))?.public(),
                weight: 1 + (i % 3) as u64,
            });
        }
        let roles = Roles {
            root: Role {
                keys: root.iter().map(SecretKey::public).collect(),
                threshold: 2,
            },
            release: ReleaseRole {
                keys: release.iter().map(SecretKey::public).collect(),
                threshold: 2,
                floor: 1,
                types: [(UpdateType::Hotfix, 2)].into_iter().collect(),
            },
            control: Some(Role {
                keys: control.iter().map(SecretKey::public).collect(),
                threshold: 2,
            }),
            electorate: Electorate { voters },
        };
        let tr = TrustRoot {
            v: 1,
            version: 1,
            expires_at: unix_now() + 30 * 86400,
            roles,
        };
        let mut env = upswarm_proto::SignedEnvelope::wrap(&tr);
        for k in &root {
            k.sign_envelope(upswarm_proto::Context::Root, &mut env);
        }
        fs::write(self.dir.join("root.cbor"), env.encode())?;
        Ok(())
    }

    fn spawn(&mut self, name: &str, managed: bool, voter: Option<usize>) -> anyhow::Result<()> {
        let dir = self.dir.join(name);
        fs::create_dir_all(&dir)?;
        let boot: Vec<String> = self
            .nodes
            .iter()
            .take(2)
            .map(|n| format!("\"{}\"", n.daemon.addr))
            .collect();
        let port = if managed {
            Some(localnet::free_port()?)
        } else {
            None
        };
        let mut cfg = format!(
            "network = \"testnet\"\ndata_dir = \"data\"\ntrust_root = \"../root.cbor\"\nproducts = [\"demo\"]\n\
             [network_options]\nlisten = [\"/ip4/127.0.0.1/tcp/0\"]\nbootstrap = [{}]\ndht_refresh = \"3s\"\n\
             [api]\nlisten = \"127.0.0.1:0\"\n[rollout]\nspread = \"3s\"\nresync_interval = \"2s\"\n",
            boot.join(", ")
        );
        if let Some(v) = voter {
            cfg.push_str(&format!("[voting]\nvoter_key = \"../voter-{v}.key\"\n"));
        }
        if let Some(port) = port {
            cfg.push_str(&format!(
                "[managed]\ncommand = \"app\"\nargs = [\"--listen\", \"127.0.0.1:{port}\", \"--data\", \"{{data_dir}}\"]\n\
                 data_dir = \"app-data\"\nshutdown_grace = \"5s\"\nrestart_backoff = \"500ms\"\n\
                 [managed.health]\nhttp = \"http://127.0.0.1:{port}/health\"\ninterval = \"300ms\"\nsuccesses = 3\ndeadline = \"6s\"\n"
            ));
        }
        fs::write(dir.join("node.toml"), cfg)?;
        let mut daemon = LocalDaemon::new(&self.exe, &self.dir, name);
        daemon.start()?;
        self.nodes.push(Node { daemon, port });
        Ok(())
    }

    /// Creates and co-signs (2 of 3) a release of the demo program.
    fn release(
        &self,
        version: &str,
        mode: &str,
        ty: &str,
        extra: &[&str],
    ) -> anyhow::Result<PathBuf> {
        let src = self.dir.join(format!("build-{version}"));
        fs::create_dir_all(&src)?;
        fs::copy(&self.demo, src.join("app"))?;
        fs::write(
            src.join("demo.toml"),
            format!("version = \"{version}\"\nmode = \"{mode}\"\n"),
        )?;
        let out = self.dir.join(format!("release-{version}"));
        let (app, toml, out_s) = (
            format!("app={}", src.join("app").display()),
            format!("demo.toml={}", src.join("demo.toml").display()),
            out.to_string_lossy().into_owned(),
        );
        let mut args = vec![
            "release",
            "create",
            "--name",
            "demo",
            "--version",
            version,
            "--type",
            ty,
            "--channel",
            "stable",
            "--platform",
            "any",
            "--artifact",
            &app,
            "--artifact",
            &toml,
            "--chunk-size",
            "256KiB",
            "--out",
            &out_s,
        ];
        args.extend_from_slice(extra);
        run(&self.exe, &self.dir, &args)?;
        let m = out.join("manifest.cbor").to_string_lossy().into_owned();
        for k in ["signer-1", "signer-3"] {
            run(
                &self.exe,
                &self.dir,
                &[
                    "release",
                    "sign",
                    "--key",
                    &self.path(&format!("{k}.key")),
                    &m,
                ],
            )?;
        }
        Ok(out)
    }

    fn seed(&self) -> &Node {
        &self.nodes[0]
    }

    fn token(n: &Node) -> String {
        crate::layout::Layout::new(&n.daemon.data_dir())
            .token
            .to_string_lossy()
            .into_owned()
    }

    fn publish(&self, dir: &Path) -> anyhow::Result<()> {
        let s = self.seed();
        run(
            &self.exe,
            &self.dir,
            &[
                "release",
                "publish",
                &dir.to_string_lossy(),
                "--api",
                &s.daemon.api,
                "--token-file",
                &Self::token(s),
            ],
        )?;
        Ok(())
    }

    fn managed(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.port.is_some())
    }
}

async fn get(api: &str, path: &str) -> Option<Value> {
    let url = format!("http://{api}{path}");
    let client = crate::http::local_client(Some(Duration::from_secs(5))).ok()?;
    client.get(url).send().await.ok()?.json().await.ok()
}

async fn served(port: u16) -> Option<String> {
    let r = crate::http::local_client(Some(Duration::from_secs(1))).ok()?;
    let resp = r
        .get(format!("http://127.0.0.1:{port}/version"))
        .send()
        .await
        .ok()?;
    resp.status().is_success().then_some(())?;
    resp.text().await.ok()
}

/// One line of live view: versions served, installs, failures, rollout phase, votes.
struct Snapshot {
    versions: BTreeMap<String, usize>,
    rolled_back: usize,
    open: String,
    halted: bool,
    votes: String,
    activation: Option<u64>,
    all_active: bool,
    activation_times: Vec<Option<u64>>,
}

async fn snapshot(net: &Net, version: &str) -> Snapshot {
    let mut versions = BTreeMap::new();
    let mut rolled_back = 0;
    let mut open = String::from("-");
    let mut halted = false;
    let mut voted = 0;
    let mut total = 0;
    let mut states = Vec::new();
    let mut times = Vec::new();
    for n in net.managed() {
        let v = match n.port {
            Some(p) => served(p).await.unwrap_or_else(|| "none".into()),
            None => continue,
        };
        *versions.entry(v).or_default() += 1;
        if let Some(h) = get(&n.daemon.api, "/v1/history").await
            && h.as_array().is_some_and(|a| {
                a.iter()
                    .any(|e| e["to"] == version && e["outcome"] == "rolled_back")
            })
        {
            rolled_back += 1;
        }
        if let Some(e) = get(&n.daemon.api, &format!("/v1/explain?version={version}")).await {
            let ev = &e["rollout"]["evaluation"];
            open = format!(
                "{}/{}",
                ev["open"],
                ev["opened_at"].as_array().map_or(0, Vec::len)
            );
            halted |= !ev["halted"].is_null();
        }
        if let Some(a) = get(&n.daemon.api, "/v1/activations").await
            && let Some(first) = a.as_array().and_then(|a| a.first())
        {
            total += 1;
            voted += usize::from(first["voted"] == true);
            states.push(first["state"].as_str().unwrap_or("").to_string());
            times.push(first["activation_at"].as_u64());
        }
    }
    let votes = if total == 0 {
        "-".to_string()
    } else {
        format!(
            "{voted}/{total} voted, {}",
            states.first().cloned().unwrap_or_default()
        )
    };
    Snapshot {
        versions,
        rolled_back,
        open,
        halted,
        votes,
        activation: times.first().copied().flatten(),
        all_active: !states.is_empty() && states.iter().all(|s| s == "ACTIVE"),
        activation_times: times,
    }
}

fn line(t0: Instant, s: &Snapshot) -> String {
    let versions: Vec<String> = s.versions.iter().map(|(v, n)| format!("{v}×{n}")).collect();
    format!(
        "[{:>5.1}s] nodes on {:<28} phases open {:<5} rolled back {:<2} {}{}",
        t0.elapsed().as_secs_f64(),
        versions.join(" "),
        s.open,
        s.rolled_back,
        if s.halted { "HALTED " } else { "" },
        if s.votes == "-" {
            String::new()
        } else {
            format!("votes {}", s.votes)
        }
    )
}

/// Polls until `done` says so (printing a live line each second) or the timeout passes.
async fn watch(
    net: &Net,
    version: &str,
    timeout: Duration,
    done: impl Fn(&Snapshot) -> bool,
) -> anyhow::Result<Snapshot> {
    let t0 = Instant::now();
    loop {
        let s = snapshot(net, version).await;
        println!("{}", line(t0, &s));
        if done(&s) {
            return Ok(s);
        }
        if t0.elapsed() > timeout {
            bail!("the scenario did not finish within {timeout:?}; see the logs (--keep)");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

pub(super) fn run_testnet(a: &TestnetArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.nodes >= 2, "--nodes must be at least 2");
    let exe = std::env::current_exe().context("locating the upswarm binary")?;
    let demo = exe.with_file_name("upswarm-demo-app");
    if !demo.exists() {
        bail!(
            "{} not found: build the workspace first (`cargo build --release` builds both binaries)",
            demo.display()
        );
    }
    let tmp = tempfile::Builder::new()
        .prefix("upswarm-testnet.")
        .tempdir()?;
    let dir = tmp.path().to_path_buf();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // Ctrl-C or SIGTERM: stop every process this testnet started, then exit. The handlers
    // are in place before the first daemon starts.
    {
        use tokio::signal::unix::{SignalKind, signal};
        let _rt = rt.enter();
        let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
        let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
        let (dir, keep) = (dir.clone(), a.keep);
        rt.spawn(async move {
            let code = tokio::select! {
                _ = int.recv() => 130,
                _ = term.recv() => 143,
            };
            eprintln!("\n== interrupted: stopping every process this testnet started");
            localnet::stop_everything_for_exit(&dir, Duration::from_secs(10));
            if keep {
                eprintln!("kept the testnet directory {}", dir.display());
            } else {
                let _ = fs::remove_dir_all(&dir);
            }
            std::process::exit(code);
        });
    }
    let mut net = Net {
        dir,
        exe,
        demo,
        nodes: Vec::new(),
        keep: a.keep,
        tmp: Some(tmp),
    };
    println!(
        "== upswarm testnet: {} nodes + 1 seed on loopback, scenario {:?}",
        a.nodes, a.scenario
    );
    println!("   working directory {}", net.dir.display());
    net.keys(a.nodes)?;
    net.spawn("seed", false, None)?;
    for i in 0..a.nodes {
        net.spawn(&format!("node-{i}"), true, Some(i))?;
    }
    println!(
        "== {} daemons started; every node installs demo 1.0.0 (a hotfix: all at once)",
        net.nodes.len()
    );
    let v1 = net.release("1.0.0", "healthy", "hotfix", &[])?;
    net.publish(&v1)?;
    let n = a.nodes;
    rt.block_on(async {
        watch(&net, "1.0.0", a.timeout, |s| {
            s.versions.get("1.0.0") == Some(&n)
        })
        .await?;
        // Three phases: 25 % (canary, soak 10 s), 60 % (soak 5 s), everyone.
        let plan = [
            "--phase",
            "25:10s:20:1",
            "--phase",
            "60:5s:20:1",
            "--phase",
            "100",
        ];
        match a.scenario {
            Scenario::Good => {
                println!(
                    "== publishing demo 1.1.0 (minor, with deltas from 1.0.0) with phases 25 % → 60 % → 100 %"
                );
                let base = net.dir.join("build-1.0.0").to_string_lossy().into_owned();
                let mut args = plan.to_vec();
                args.extend(["--delta-from", base.as_str()]);
                net.publish(&net.release("1.1.0", "healthy", "minor", &args)?)?;
                let s = watch(&net, "1.1.0", a.timeout, |s| {
                    s.versions.get("1.1.0") == Some(&n)
                })
                .await?;
                println!(
                    "\nOK: all {n} nodes run 1.1.0 ({} rolled back)",
                    s.rolled_back
                );
                // What the compressed and delta forms saved (1.0.0's compressed program,
                // 1.1.0's deltas; an unchanged file is not fetched at all).
                let (mut fetched, mut saved) = (0u64, 0u64);
                for node in net.managed() {
                    if let Some(st) = get(&node.daemon.api, "/v1/status").await {
                        fetched += st["counters"]["bytes_fetched"].as_u64().unwrap_or(0);
                        saved += st["counters"]["transfer_saved_bytes"]
                            .as_u64()
                            .unwrap_or(0);
                    }
                }
                println!(
                    "transfer: the nodes fetched {fetched} bytes in all; compressed and delta forms saved {saved} bytes"
                );
                anyhow::ensure!(s.rolled_back == 0, "a node rolled back a good release");
            }
            Scenario::Bad => {
                println!(
                    "== publishing demo 1.1.0 that FAILS its health check, phases 25 % → 60 % → 100 %"
                );
                net.publish(&net.release("1.1.0", "unhealthy", "minor", &plan)?)?;
                watch(&net, "1.1.0", a.timeout, |s| {
                    s.halted && s.rolled_back > 0 && s.versions.get("1.0.0") == Some(&n)
                })
                .await?;
                println!(
                    "== halted; waiting past the canary soak to show that no later phase installs it"
                );
                // A canary serves 1.0.0 again a little before its rollback is committed to
                // its history: count rollbacks once they have settled, then watch for more.
                tokio::time::sleep(Duration::from_secs(10)).await;
                let settled = snapshot(&net, "1.1.0").await;
                tokio::time::sleep(Duration::from_secs(15)).await;
                let after = snapshot(&net, "1.1.0").await;
                println!("{}", line(Instant::now(), &after));
                anyhow::ensure!(
                    after.versions.get("1.0.0") == Some(&n),
                    "not every node is back on 1.0.0"
                );
                anyhow::ensure!(
                    after.rolled_back == settled.rolled_back,
                    "a node outside the canary cohort installed the bad release"
                );
                println!(
                    "\nOK: the bad release reached {} canary node(s) of {n}, each rolled back; the rollout halted network-wide",
                    after.rolled_back
                );
            }
            Scenario::Vote => {
                let file = net.path("proposal.cbor");
                run(
                    &net.exe,
                    &net.dir,
                    &[
                        "proposal",
                        "create",
                        "--protocol",
                        "proto-v2",
                        "--threshold",
                        "75%",
                        "--activation-delay",
                        "15s",
                        "--deadline-in",
                        "1h",
                        "--out",
                        &file,
                    ],
                )?;
                for k in ["signer-1", "signer-2"] {
                    run(
                        &net.exe,
                        &net.dir,
                        &[
                            "proposal",
                            "sign",
                            "--key",
                            &net.path(&format!("{k}.key")),
                            &file,
                        ],
                    )?;
                }
                let s = net.seed();
                run(
                    &net.exe,
                    &net.dir,
                    &[
                        "proposal",
                        "publish",
                        &file,
                        "--api",
                        &s.daemon.api,
                        "--token-file",
                        &Net::token(s),
                    ],
                )?;
                println!(
                    "== proposal proto-v2 (75 % of voter weight) published; publishing demo 1.1.0 providing proto-v2"
                );
                net.publish(&net.release(
                    "1.1.0",
                    "healthy",
                    "hotfix",
                    &["--provides", "proto-v2"],
                )?)?;
                let s = watch(&net, "1.1.0", a.timeout, |s| s.all_active).await?;
                let at = s.activation.context("no activation time")?;
                anyhow::ensure!(
                    s.activation_times.iter().all(|t| *t == Some(at)),
                    "nodes disagree on the activation time: {:?}",
                    s.activation_times
                );
                println!(
                    "\nOK: proto-v2 ACTIVE on all {n} nodes at the same second ({})",
                    super::show::time(at)
                );
            }
        }
        Ok(())
    })
}
