//! Local daemons on loopback — the one harness shared by `upswarm testnet` and the
//! process-level tests: start an `upswarm daemon` from a config file, wait until its API
//! and its listen address are up, and stop it and **every process it started**, also when
//! the caller fails, panics or is interrupted.
//!
//! Every process started for one local network (daemons, and through them the managed
//! programs, hooks and whatever those start) carries `UPSWARM_LOCALNET=<network dir>` in
//! its environment, so [`stop_everything`] finds them all — whatever their executable,
//! process group or parent. Daemons run in process groups of their own, so a Ctrl-C in
//! the terminal reaches only the harness, which then stops them in order.
//!
//! Non-goal: anything a production deployment would use (that is systemd's job).
//!
//! Owns the daemon processes it starts and the `UPSWARM_LOCALNET` marker. It must not use
//! `daemon` internals (a daemon is only ever an `upswarm daemon` child process), and it signals
//! only its own children and processes carrying its network's marker. It blocks while it waits
//! (polling with `std::thread::sleep`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::procs;

/// Environment variable marking every process of one local network (value: its directory).
pub const MARKER: &str = "UPSWARM_LOCALNET";

/// Held while a process is being started; `true` once the harness is stopping everything,
/// so nothing new starts after the sweep.
static STARTING: Mutex<bool> = Mutex::new(false);

/// What went wrong starting a daemon.
#[derive(Debug, thiserror::Error)]
pub enum LocalnetError {
    #[error("cannot start {what}: {source}")]
    Spawn {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("daemon {name} did not start within {secs} s; its log ({log}) ends with:\n{tail}")]
    NotUp {
        name: String,
        secs: u64,
        log: PathBuf,
        tail: String,
    },
    #[error("the local network is being stopped")]
    Stopping,
    #[error("no free loopback port between 20000 and 32000")]
    NoPort,
}

/// One `upswarm daemon` process with its own directory `<network dir>/<name>`.
#[derive(Debug)]
pub struct LocalDaemon {
    pub name: String,
    /// `<network dir>/<name>`; the daemon's config says `data_dir = "data"`.
    pub dir: PathBuf,
    /// `<dir>/node.toml`.
    pub config: PathBuf,
    /// Control API address, after [`LocalDaemon::start`].
    pub api: String,
    /// First listen multiaddr, with `/p2p/<peer id>`.
    pub addr: String,
    pub peer_id: String,
    /// Extra environment for the next start.
    pub env: Vec<(String, String)>,
    /// `UPSWARM_LOG` for the daemon.
    pub log_filter: String,
    /// A command the daemon is started through, e.g. `["ip", "netns", "exec", "ns1"]`
    /// (it must exec the daemon, so that the pid is the daemon's). Default: none.
    pub prefix: Vec<String>,
    exe: PathBuf,
    net_dir: PathBuf,
    child: Option<Child>,
}

impl LocalDaemon {
    /// A daemon of the local network in `net_dir`, run from the `upswarm` binary `exe`.
    /// Write its `node.toml` (with `data_dir = "data"`) before [`LocalDaemon::start`].
    pub fn new(exe: &Path, net_dir: &Path, name: &str) -> Self {
        let dir = net_dir.join(name);
        LocalDaemon {
            name: name.to_string(),
            config: dir.join("node.toml"),
            dir,
            api: String::new(),
            addr: String::new(),
            peer_id: String::new(),
            env: Vec::new(),
            log_filter: "info".into(),
            prefix: Vec::new(),
            exe: exe.to_path_buf(),
            net_dir: net_dir.to_path_buf(),
            child: None,
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("daemon.log")
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The daemon's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts (or restarts) the process and waits (up to 30 s) for its API address and
    /// listen address.
    pub fn start(&mut self) -> Result<(), LocalnetError> {
        let data = crate::layout::Layout::new(&self.data_dir());
        let _ = fs::remove_file(&data.api_addr);
        let _ = fs::remove_file(&data.listen_addrs);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|source| LocalnetError::Spawn {
                what: format!("{}", self.log_path().display()),
                source,
            })?;
        let mut cmd = match self.prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(&self.exe);
                c
            }
            None => Command::new(&self.exe),
        };
        cmd.args(["daemon", "--config"])
            .arg(&self.config)
            .env("UPSWARM_LOG", &self.log_filter)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let child =
            spawn_marked(&mut cmd, &self.net_dir, Stdio::from(log)).map_err(|e| match e {
                SpawnFailure::Stopping => LocalnetError::Stopping,
                SpawnFailure::Io(source) => LocalnetError::Spawn {
                    what: format!("daemon {}", self.name),
                    source,
                },
            })?;
        self.child = Some(child);
        let limit = Duration::from_secs(30);
        let start = Instant::now();
        loop {
            if data.api_addr.exists() && data.listen_addrs.exists() {
                break;
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
                .is_some();
            if exited || start.elapsed() > limit {
                let log = self.log();
                let tail: Vec<&str> = log.lines().rev().take(20).collect();
                return Err(LocalnetError::NotUp {
                    name: self.name.clone(),
                    secs: limit.as_secs(),
                    log: self.log_path(),
                    tail: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.api = fs::read_to_string(&data.api_addr)
            .unwrap_or_default()
            .trim()
            .to_string();
        self.addr = fs::read_to_string(&data.listen_addrs)
            .unwrap_or_default()
            .lines()
            .next()
            .unwrap_or_default()
            .to_string();
        self.peer_id = self.addr.rsplit('/').next().unwrap_or_default().to_string();
        Ok(())
    }

    /// SIGKILL to the daemon process alone — a crash: the program it supervises (and a
    /// hook it runs) stay behind, for the next start to deal with.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Asks the daemon to stop (SIGTERM: it stops its managed program, then exits); SIGKILL
    /// after `grace`. Returns how it ended.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        self.terminate();
        self.wait_stopped(grace)
    }

    /// Sends SIGTERM, without waiting.
    pub fn terminate(&self) {
        if let Some(c) = &self.child {
            procs::signal(c.id() as i32, Signal::SIGTERM);
        }
    }

    /// Waits up to `grace` for the daemon to exit, then kills it.
    pub fn wait_stopped(&mut self, grace: Duration) -> Option<ExitStatus> {
        let mut c = self.child.take()?;
        let start = Instant::now();
        loop {
            if let Ok(Some(s)) = c.try_wait() {
                return Some(s);
            }
            if start.elapsed() >= grace {
                let _ = c.kill();
                return c.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for LocalDaemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Asks every daemon to stop (in parallel), waits up to `grace` for each, then kills
/// whatever the network started that is still there ([`stop_everything`]).
pub fn stop_network(daemons: &mut [LocalDaemon], net_dir: &Path, grace: Duration) {
    for d in daemons.iter() {
        d.terminate();
    }
    for d in daemons.iter_mut() {
        d.wait_stopped(grace);
    }
    stop_everything(net_dir, Duration::ZERO);
}

/// Stops every process carrying the marker of the network in `net_dir`: SIGTERM, up to
/// `grace` to exit, then SIGKILL until none is left. Nothing new is started by this
/// harness afterwards (in this process). Returns how many processes were found.
pub fn stop_everything(net_dir: &Path, grace: Duration) -> usize {
    let entry = marker_entry(net_dir);
    let found = procs::with_env(&entry);
    if !found.is_empty() && !grace.is_zero() {
        for &p in &found {
            procs::signal(p, Signal::SIGTERM);
        }
        procs::wait_gone_blocking(&found, grace);
    }
    procs::kill_all_with_env(&entry);
    found.len()
}

/// Forbids new starts (for an interrupted harness about to exit), then
/// [`stop_everything`]. The lock stays held, so no start can slip in before the exit.
pub fn stop_everything_for_exit(net_dir: &Path, grace: Duration) -> usize {
    let mut stopping = STARTING.lock().unwrap_or_else(|e| e.into_inner());
    *stopping = true;
    let n = stop_everything(net_dir, grace);
    std::mem::forget(stopping);
    n
}

/// Live processes carrying the marker of the network in `net_dir`.
pub fn leftovers(net_dir: &Path) -> Vec<i32> {
    procs::with_env(&marker_entry(net_dir))
}

fn marker_entry(net_dir: &Path) -> String {
    format!("{MARKER}={}", net_dir.display())
}

enum SpawnFailure {
    Stopping,
    Io(std::io::Error),
}

fn spawn_marked(cmd: &mut Command, net_dir: &Path, stderr: Stdio) -> Result<Child, SpawnFailure> {
    let stopping = STARTING.lock().unwrap_or_else(|e| e.into_inner());
    if *stopping {
        return Err(SpawnFailure::Stopping);
    }
    cmd.env(MARKER, net_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    std::os::unix::process::CommandExt::process_group(cmd, 0);
    cmd.spawn().map_err(SpawnFailure::Io)
}

/// Runs a short command (e.g. `upswarm release create`) marked as part of the network in
/// `net_dir`, and waits for its output.
pub fn run_marked(
    cmd: &mut Command,
    net_dir: &Path,
) -> Result<std::process::Output, LocalnetError> {
    let stopping = STARTING.lock().unwrap_or_else(|e| e.into_inner());
    if *stopping {
        return Err(LocalnetError::Stopping);
    }
    cmd.env(MARKER, net_dir).stdin(Stdio::null());
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| LocalnetError::Spawn {
            what: format!("{cmd:?}"),
            source,
        })?;
    drop(stopping);
    child
        .wait_with_output()
        .map_err(|source| LocalnetError::Spawn {
            what: format!("{cmd:?}"),
            source,
        })
}

/// A free loopback port for a demo program, below Linux's ephemeral range (32768–60999):
/// a port the kernel handed out with `bind(0)` could be taken by one of the daemons'
/// outgoing connections before the program binds it.
pub fn free_port() -> Result<u16, LocalnetError> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    for _ in 0..12_000 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20_000 + (std::process::id().wrapping_mul(7919).wrapping_add(n) % 12_000);
        let Ok(port) = u16::try_from(port) else {
            continue;
        };
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(LocalnetError::NoPort)
}
