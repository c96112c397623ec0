//! Real `upswarm daemon` processes on loopback, each with its own data directory, for the
//! process-level tests — on the harness `upswarm testnet` uses too
//! ([`upswarm::localnet`]): every process a test starts is stopped when its [`Testnet`]
//! is dropped, also when the test fails or panics.

use std::fs;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use upswarm::localnet::{self, LocalDaemon};

use super::{FAR, key, roles, signed_root, upswarm};

/// A test network: a trust root, signing keys and daemons.
pub struct Testnet {
    pub dir: tempfile::TempDir,
    pub daemons: Vec<Daemon>,
    /// Listen addresses of the daemons started from now on (default: TCP on 127.0.0.1).
    pub listen: Vec<String>,
    /// Extra lines of `[network_options]` for the daemons started from now on.
    pub network_extra: String,
    /// Command prefix of the daemons added from now on (see [`LocalDaemon::prefix`]), also
    /// used for the CLI commands run against them (e.g. `ip netns exec NS`).
    pub prefix: Vec<String>,
}

/// One daemon process (the shared harness's [`LocalDaemon`], with test helpers).
pub struct Daemon(LocalDaemon);

impl Deref for Daemon {
    type Target = LocalDaemon;
    fn deref(&self) -> &LocalDaemon {
        &self.0
    }
}

impl DerefMut for Daemon {
    fn deref_mut(&mut self) -> &mut LocalDaemon {
        &mut self.0
    }
}

/// Polls `f` every 200 ms until it returns true or `timeout` passes.
/// Tests that run fleets of daemons take this lock, so that one runs at a time in the test
/// binary (the machines are small and the tests wait on timers): a test that starts a
/// daemon holds `let _g = serial();` for its whole run.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The version the demo program on `port` serves, if it answers.
pub fn version_served(port: u16) -> Option<String> {
    http_get(port, "/version")
        .filter(|(c, _)| *c == 200)
        .map(|(_, b)| b)
}

/// Whether the demo program on `port` answers its health check.
pub fn healthy(port: u16) -> bool {
    http_get(port, "/health").is_some_and(|(c, _)| c == 200)
}

/// The outcomes recorded in daemon `i`'s history for transitions to version `to`.
pub fn outcomes(net: &Testnet, i: usize, to: &str) -> Vec<String> {
    net.daemons[i]
        .history()
        .iter()
        .filter(|e| e["to"] == to)
        .map(|e| e["outcome"].as_str().unwrap_or("").to_string())
        .collect()
}

pub fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    f()
}

impl Testnet {
    /// A temp dir with `root.cbor` (the standard test root) and release keys s10, s11, s12
    /// written as key files.
    pub fn new() -> Self {
        Self::with_roles(roles())
    }

    /// Like [`Testnet::new`] with other roles (signed by root keys 1 and 2).
    pub fn with_roles(roles: upswarm_proto::Roles) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = signed_root(1, FAR, roles, &[&key(1), &key(2)]);
        fs::write(dir.path().join("root.cbor"), root.encode()).unwrap();
        for n in [10u8, 11, 12] {
            upswarm_trust::write_keypair(&dir.path().join(format!("s{n}")), &key(n)).unwrap();
        }
        for n in [20u8, 21] {
            upswarm_trust::write_keypair(&dir.path().join(format!("c{n}")), &key(n)).unwrap();
        }
        Testnet {
            dir,
            daemons: Vec::new(),
            listen: vec!["/ip4/127.0.0.1/tcp/0".into()],
            network_extra: String::new(),
            prefix: Vec::new(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Starts a daemon bootstrapped to the daemons at `bootstrap` (indexes), with extra TOML
    /// appended to its configuration. Returns its index.
    pub fn spawn(&mut self, name: &str, bootstrap: &[usize], extra: &str) -> usize {
        self.spawn_denying(name, bootstrap, extra, &[])
    }

    /// Like [`Testnet::spawn`], refusing connections with the given peer ids.
    pub fn spawn_denying(
        &mut self,
        name: &str,
        bootstrap: &[usize],
        extra: &str,
        denied: &[&str],
    ) -> usize {
        let i = self.add(name, bootstrap, extra, denied);
        self.daemons[i].start();
        i
    }

    /// Starts a daemon bootstrapped to the given multiaddrs (daemons' or other peers').
    pub fn spawn_at(
        &mut self,
        name: &str,
        bootstrap: &[String],
        extra: &str,
        denied: &[&str],
    ) -> usize {
        let i = self.add_at(name, bootstrap, extra, denied);
        self.daemons[i].start();
        i
    }

    /// Writes the configuration of a daemon without starting it. Returns its index.
    pub fn add(&mut self, name: &str, bootstrap: &[usize], extra: &str, denied: &[&str]) -> usize {
        let addrs: Vec<String> = bootstrap
            .iter()
            .map(|&i| self.daemons[i].addr.clone())
            .collect();
        self.add_at(name, &addrs, extra, denied)
    }

    /// Like [`Testnet::add`], bootstrapped to multiaddrs.
    pub fn add_at(
        &mut self,
        name: &str,
        bootstrap: &[String],
        extra: &str,
        denied: &[&str],
    ) -> usize {
        let mut d = LocalDaemon::new(Path::new(env!("CARGO_BIN_EXE_upswarm")), self.path(), name);
        d.log_filter = "info,upswarm=debug".into();
        d.prefix = self.prefix.clone();
        fs::create_dir_all(&d.dir).unwrap();
        let boot: Vec<String> = bootstrap.iter().map(|a| format!("\"{a}\"")).collect();
        let (top, sections) = split_extra(extra);
        let config = format!(
            "network = \"test\"\ndata_dir = \"data\"\ntrust_root = \"../root.cbor\"\n{top}\n\
             [network_options]\nlisten = [{}]\nbootstrap = [{}]\ndht_refresh = \"2s\"\n\
             denied_peers = [{}]\n{}\n[api]\nlisten = \"127.0.0.1:0\"\n{sections}\n",
            self.listen
                .iter()
                .map(|a| format!("\"{a}\""))
                .collect::<Vec<_>>()
                .join(", "),
            boot.join(", "),
            denied
                .iter()
                .map(|p| format!("\"{p}\""))
                .collect::<Vec<_>>()
                .join(", "),
            self.network_extra
        );
        fs::write(&d.config, config).unwrap();
        self.daemons.push(Daemon(d));
        self.daemons.len() - 1
    }

    /// Processes this network started that are still alive.
    pub fn leftovers(&self) -> Vec<i32> {
        localnet::leftovers(self.path())
    }

    /// Creates and signs (with s10 and s11) a release of a `size`-byte artifact.
    pub fn release(&self, name: &str, version: &str, size: usize, extra_args: &[&str]) -> PathBuf {
        // Pseudo-random bytes (xorshift), different per version.
        let mut x: u64 =
            0x9e37_79b9_7f4a_7c15 ^ u64::from(blake3::hash(version.as_bytes()).as_bytes()[0]);
        let data: Vec<u8> = (0..size)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        self.release_with(name, version, &data, extra_args)
    }

    /// Creates and signs (with s10 and s11) a release whose artifact is `data`.
    pub fn release_with(
        &self,
        name: &str,
        version: &str,
        data: &[u8],
        extra_args: &[&str],
    ) -> PathBuf {
        let art = self.path().join(format!("{name}-{version}.bin"));
        fs::write(&art, data).unwrap();
        let out = self.path().join(format!("rel-{name}-{version}"));
        let artifact = format!("node={}", art.display());
        let mut args = vec![
            "release",
            "create",
            "--name",
            name,
            "--version",
            version,
            "--type",
            "patch",
            "--channel",
            "stable",
            "--artifact",
            &artifact,
            "--chunk-size",
            "256KiB",
            "--platform",
            "any",
            "--out",
        ];
        let out_s = out.to_string_lossy().into_owned();
        args.push(&out_s);
        args.extend_from_slice(extra_args);
        run_ok(&args);
        let manifest = out.join("manifest.cbor");
        for k in ["s10.key", "s11.key"] {
            let key = self.path().join(k);
            run_ok(&[
                "release",
                "sign",
                "--key",
                &key.to_string_lossy(),
                &manifest.to_string_lossy(),
            ]);
        }
        out
    }

    /// `upswarm release publish DIR` against daemon `i`; returns (success, output).
    pub fn publish(&self, i: usize, dir: &Path) -> (bool, String) {
        let d = &self.daemons[i];
        let out = d
            .command()
            .args([
                "release",
                "publish",
                &dir.to_string_lossy(),
                "--api",
                &d.api,
                "--token-file",
            ])
            .arg(d.dir.join("data/api.token"))
            .output()
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// The release `version` as daemon `i` sees it, if known.
    pub fn release_view(&self, i: usize, version: &str) -> Option<Value> {
        let s = self.daemons[i].status()?;
        s["releases"]
            .as_array()?
            .iter()
            .find(|r| r["version"] == version)
            .cloned()
    }

    /// Whether daemon `i` has `version` complete.
    pub fn complete(&self, i: usize, version: &str) -> bool {
        self.release_view(i, version)
            .is_some_and(|r| r["download"]["state"] == "complete")
    }
}

impl Daemon {
    /// Starts (or restarts) the process and waits for its API and listen address.
    pub fn start(&mut self) {
        if let Err(e) = self.0.start() {
            panic!("{e}");
        }
    }

    /// The `upswarm` CLI, run through the daemon's prefix (in its network namespace).
    pub fn command(&self) -> std::process::Command {
        match self.prefix.split_first() {
            Some((first, rest)) => {
                let mut c = std::process::Command::new(first);
                c.args(rest).arg(env!("CARGO_BIN_EXE_upswarm"));
                c
            }
            None => upswarm(),
        }
    }

    /// `upswarm status --json`.
    pub fn status(&self) -> Option<Value> {
        let out = self
            .command()
            .args(["status", "--json", "--api", &self.api])
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    pub fn counter(&self, name: &str) -> u64 {
        self.status()
            .and_then(|s| s["counters"][name].as_u64())
            .unwrap_or(0)
    }
}

impl Drop for Testnet {
    fn drop(&mut self) {
        // Every daemon stops its program on SIGTERM; whatever is left is killed.
        let mut daemons: Vec<LocalDaemon> = self.daemons.drain(..).map(|d| d.0).collect();
        localnet::stop_network(&mut daemons, self.dir.path(), Duration::from_secs(10));
        if std::env::var_os("UPSWARM_KEEP_TEST_DIRS").is_some() {
            let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
            eprintln!("keeping test directory {}", dir.keep().display());
        }
    }
}

fn split_extra(extra: &str) -> (String, String) {
    // Lines before the first [section] belong at the top of the file.
    match extra
        .find("\n[")
        .or_else(|| extra.starts_with('[').then_some(0))
    {
        Some(i) => (extra[..i].to_string(), extra[i..].to_string()),
        None => (extra.to_string(), String::new()),
    }
}

fn run_ok(args: &[&str]) {
    let out = upswarm().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "upswarm {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The demo managed program, built next to the `upswarm` binary.
pub fn demo_app_binary() -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_upswarm")).parent().unwrap();
    let bin = dir.join("upswarm-demo-app");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p upswarm-demo-app` (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// A free loopback port for a demo program (below the ephemeral range; see
/// [`upswarm::localnet::free_port`]).
pub fn free_port() -> u16 {
    localnet::free_port().expect("a free loopback port")
}

/// `GET path` on loopback; returns (status code, body), or None if nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((code, body))
}

impl Testnet {
    /// A release of the demo program: artifacts `app` (the binary) and `demo.toml`.
    pub fn demo_release(
        &self,
        version: &str,
        mode: &str,
        ty: &str,
        extra_args: &[&str],
    ) -> PathBuf {
        self.demo_release_with(
            version,
            &format!("mode = \"{mode}\"\nstart_delay = \"2s\"\n"),
            ty,
            extra_args,
        )
    }

    /// A release of the demo program behaving as `behaviour` (lines of its `demo.toml`:
    /// `mode`, `start_delay`, `stop_delay`).
    pub fn demo_release_with(
        &self,
        version: &str,
        behaviour: &str,
        ty: &str,
        extra_args: &[&str],
    ) -> PathBuf {
        let src = self.path().join(format!("demo-src-{version}"));
        fs::create_dir_all(&src).unwrap();
        fs::copy(demo_app_binary(), src.join("app")).unwrap();
        fs::write(
            src.join("demo.toml"),
            format!("version = \"{version}\"\n{behaviour}"),
        )
        .unwrap();
        let out = self.path().join(format!("rel-demo-{version}"));
        let app = format!("app={}", src.join("app").display());
        let toml = format!("demo.toml={}", src.join("demo.toml").display());
        let out_s = out.to_string_lossy().into_owned();
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
            "--artifact",
            &app,
            "--artifact",
            &toml,
            "--platform",
            "any",
            "--chunk-size",
            "256KiB",
            "--out",
            &out_s,
        ];
        args.extend_from_slice(extra_args);
        run_ok(&args);
        let manifest = out.join("manifest.cbor");
        for k in ["s10.key", "s11.key", "s12.key"] {
            let key = self.path().join(k);
            run_ok(&[
                "release",
                "sign",
                "--key",
                &key.to_string_lossy(),
                &manifest.to_string_lossy(),
            ]);
        }
        out
    }
}

/// Configuration lines for a node supervising the demo program on `port`.
pub fn managed_config(port: u16, extra_managed: &str) -> String {
    format!(
        "products = [\"demo\"]\n\
         [managed]\ncommand = \"app\"\nargs = [\"--listen\", \"127.0.0.1:{port}\", \"--data\", \"{{data_dir}}\"]\n\
         data_dir = \"appdata\"\nshutdown_grace = \"5s\"\nrestart_backoff = \"300ms\"\n{extra_managed}\n\
         [managed.health]\nhttp = \"http://127.0.0.1:{port}/health\"\ninterval = \"200ms\"\nsuccesses = 3\ndeadline = \"20s\"\n\
         [rollout]\nspread = \"1s\"\nresync_interval = \"2s\"\n"
    )
}

impl Daemon {
    /// Runs a CLI command against this daemon's API (with its token); returns (ok, output).
    pub fn cli(&self, args: &[&str]) -> (bool, String) {
        let out = self
            .command()
            .args(args)
            .args(["--api", &self.api, "--token-file"])
            .arg(self.dir.join("data/api.token"))
            .output()
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// `upswarm history --json`.
    pub fn history(&self) -> Vec<Value> {
        let (ok, out) = self.cli(&["history", "--json"]);
        if !ok {
            return Vec::new();
        }
        serde_json::from_str::<Value>(&out)
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    }

    /// The port of this daemon's control API.
    pub fn api_port(&self) -> u16 {
        self.api
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("an API address")
    }

    /// `GET /v1/status`, directly (fast enough to poll for an apply step).
    pub fn status_fast(&self) -> Option<Value> {
        let (code, body) = http_get(self.api_port(), "/v1/status")?;
        (code == 200).then(|| serde_json::from_str(&body).ok())?
    }

    /// Processes of this daemon's managed program: those whose environment names this
    /// daemon's `activations.json` (every program the daemon starts gets it).
    pub fn managed_processes(&self) -> Vec<i32> {
        let entry = format!(
            "UPSWARM_ACTIVATIONS={}",
            self.data_dir().join("activations.json").display()
        );
        let mut pids = upswarm::procs::with_env(&entry);
        pids.sort_unstable();
        pids
    }

    /// The managed program's current version per the daemon.
    pub fn managed_version(&self) -> Option<String> {
        self.status()?["managed"]["current"]
            .as_str()
            .map(str::to_string)
    }
}

/// A tiny HTTP server on loopback that records the JSON bodies POSTed to it (webhooks).
pub struct HookSink {
    pub port: u16,
    pub bodies: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
}

impl HookSink {
    pub fn start() -> Self {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let b = bodies.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut len = 0usize;
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                    if line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                    line.clear();
                }
                let mut body = vec![0u8; len];
                if reader.read_exact(&mut body).is_ok()
                    && let Ok(v) = serde_json::from_slice::<Value>(&body)
                {
                    b.lock().unwrap().push(v);
                }
                let mut s = stream;
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
            }
        });
        HookSink { port, bodies }
    }

    pub fn events(&self) -> Vec<String> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .map(|v| v["event"].as_str().unwrap_or("").to_string())
            .collect()
    }
}
