//! Running the managed program: as our child (restarted with backoff when it exits), or
//! through the operator's hooks in external mode.
//!
//! One task owns the child process; others send it `Start` / `Stop` and watch its status.
//! `Stop` returns only once the process has exited (not after a fixed sleep), so the next
//! version never starts while the old one still holds its files and locks.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{info, warn};

use crate::daemon::config::{Managed, ManagedMode};

/// What the supervisor knows about the program.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProgramStatus {
    /// The daemon wants it running.
    pub wanted: bool,
    pub running: bool,
    pub pid: Option<u32>,
    /// The version directory it was started from.
    pub version_dir: Option<PathBuf>,
    /// Starts since the daemon started.
    pub starts: u64,
    /// Exits (expected or not) since the daemon started.
    pub exits: u64,
    /// How the last exit went, e.g. "exit status: 3".
    pub last_exit: Option<String>,
}

enum Cmd {
    Start(oneshot::Sender<Result<(), String>>),
    Stop(oneshot::Sender<Result<(), String>>),
}

/// Handle to the supervisor task.
#[derive(Debug, Clone)]
pub struct Supervisor {
    tx: mpsc::Sender<Cmd>,
    status: watch::Receiver<ProgramStatus>,
}

/// Where things live for the supervisor.
#[derive(Debug, Clone)]
pub struct Layout {
    /// `<data_dir>/current`, a symlink to the version directory in use.
    pub current: PathBuf,
    /// `<data_dir>/versions`.
    pub versions: PathBuf,
    /// `<data_dir>/managed.pid`.
    pub pidfile: PathBuf,
    /// `<data_dir>/managed.log`.
    pub log: PathBuf,
    /// `<data_dir>/activations.json`, passed to the program.
    pub activations: PathBuf,
}

impl Layout {
    pub fn new(data_dir: &Path) -> Self {
        Layout {
            current: data_dir.join("current"),
            versions: data_dir.join("versions"),
            pidfile: data_dir.join("managed.pid"),
            log: data_dir.join("managed.log"),
            activations: data_dir.join("activations.json"),
        }
    }
}

impl Supervisor {
    /// Starts the supervisor task. The program is not started until [`Supervisor::start`].
    pub fn spawn(config: Managed, layout: Layout) -> Self {
        let (tx, rx) = mpsc::channel(16);
        let (status_tx, status) = watch::channel(ProgramStatus::default());
        let actor = Actor {
            config,
            layout,
            rx,
            status: status_tx,
            child: None,
            restart_at: None,
            backoff: None,
            up_since: None,
        };
        tokio::spawn(actor.run());
        Supervisor { tx, status }
    }

    /// Starts the program from the current version (no-op if it runs).
    pub async fn start(&self) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Start(tx))
            .await
            .map_err(|_| "supervisor stopped".to_string())?;
        rx.await.map_err(|_| "supervisor stopped".to_string())?
    }

    /// Stops the program and waits until it has exited.
    pub async fn stop(&self) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Stop(tx))
            .await
            .map_err(|_| "supervisor stopped".to_string())?;
        rx.await.map_err(|_| "supervisor stopped".to_string())?
    }

    pub fn status(&self) -> ProgramStatus {
        self.status.borrow().clone()
    }

    /// A receiver that sees every status change.
    pub fn watch(&self) -> watch::Receiver<ProgramStatus> {
        self.status.clone()
    }
}

struct Actor {
    config: Managed,
    layout: Layout,
    rx: mpsc::Receiver<Cmd>,
    status: watch::Sender<ProgramStatus>,
    child: Option<Child>,
    restart_at: Option<tokio::time::Instant>,
    backoff: Option<Duration>,
    up_since: Option<Instant>,
}

/// Uptime after which a crash no longer counts as a crash loop (backoff resets).
const STABLE_AFTER: Duration = Duration::from_secs(60);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

impl Actor {
    async fn run(mut self) {
        loop {
            let restart_at = self.restart_at;
            tokio::select! {
                cmd = self.rx.recv() => match cmd {
                    Some(Cmd::Start(reply)) => {
                        self.status.send_modify(|s| s.wanted = true);
                        self.restart_at = None;
                        let r = if self.child.is_some() { Ok(()) } else { self.launch().await };
                        let _ = reply.send(r);
                    }
                    Some(Cmd::Stop(reply)) => {
                        self.status.send_modify(|s| s.wanted = false);
                        self.restart_at = None;
                        let _ = reply.send(self.halt().await);
                    }
                    None => {
                        // The daemon is going away: leave the program running; the next
                        // daemon start finds it through the pid file.
                        break;
                    }
                },
                exit = wait(&mut self.child), if self.child.is_some() => {
                    self.child = None;
                    let _ = fs::remove_file(&self.layout.pidfile);
                    let how = match exit { Ok(s) => s.to_string(), Err(e) => e.to_string() };
                    warn!("managed program exited unexpectedly: {how}");
                    self.status.send_modify(|s| { s.running = false; s.pid = None; s.exits += 1; s.last_exit = Some(how.clone()); });
                    if self.status.borrow().wanted {
                        let stable = self.up_since.is_some_and(|t| t.elapsed() >= STABLE_AFTER);
                        let delay = match (self.backoff, stable) {
                            (Some(b), false) => (b * 2).min(MAX_BACKOFF),
                            _ => self.config.restart_backoff,
                        };
                        self.backoff = Some(delay);
                        self.restart_at = Some(tokio::time::Instant::now() + delay);
                        info!("restarting the managed program in {delay:?}");
                    }
                }
                _ = sleep_until(restart_at), if restart_at.is_some() => {
                    self.restart_at = None;
                    if let Err(e) = self.launch().await {
                        warn!("cannot restart the managed program: {e}");
                        let delay = self.backoff.unwrap_or(self.config.restart_backoff);
                        self.restart_at = Some(tokio::time::Instant::now() + delay);
                    }
                }
            }
        }
    }

    async fn launch(&mut self) -> Result<(), String> {
        if self.config.mode == ManagedMode::External {
            run_hook(&self.config.hooks.start, "start", &[]).await?;
            self.status.send_modify(|s| {
                s.running = true;
                s.starts += 1;
            });
            return Ok(());
        }
        let version_dir = fs::canonicalize(&self.layout.current).map_err(|e| {
            format!(
                "{}: no current version to start: {e}",
                self.layout.current.display()
            )
        })?;
        let version = version_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let program = if Path::new(&self.config.command).is_absolute() {
            PathBuf::from(&self.config.command)
        } else {
            version_dir.join(&self.config.command)
        };
        let data_dir = self.config.data_dir.clone();
        let subst = |a: &str| {
            a.replace("{version_dir}", &version_dir.to_string_lossy())
                .replace("{version}", &version)
                .replace(
                    "{data_dir}",
                    &data_dir
                        .as_ref()
                        .map(|d| d.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                )
        };
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.layout.log)
            .map_err(|e| format!("{}: {e}", self.layout.log.display()))?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let cwd = self
            .config
            .working_dir
            .clone()
            .or_else(|| data_dir.clone())
            .unwrap_or_else(|| version_dir.clone());
        if let Some(d) = &data_dir {
            fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        let mut cmd = Command::new(&program);
        cmd.args(self.config.args.iter().map(|a| subst(a)))
            .envs(&self.config.env)
            .env("UPSWARM_VERSION", &version)
            .env("UPSWARM_VERSION_DIR", &version_dir)
            .env("UPSWARM_ACTIVATIONS", &self.layout.activations)
            .current_dir(&cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2));
        if let Some(d) = &data_dir {
            cmd.env("UPSWARM_DATA_DIR", d);
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
        let pid = child.id();
        if let Some(pid) = pid {
            let _ = crate::files::write_atomic(&self.layout.pidfile, format!("{pid}\n").as_bytes());
        }
        info!(program = %program.display(), ?pid, %version, "managed program started");
        self.child = Some(child);
        self.up_since = Some(Instant::now());
        self.status.send_modify(|s| {
            s.running = true;
            s.pid = pid;
            s.version_dir = Some(version_dir.clone());
            s.starts += 1;
        });
        Ok(())
    }

    async fn halt(&mut self) -> Result<(), String> {
        if self.config.mode == ManagedMode::External {
            run_hook(&self.config.hooks.stop, "stop", &[]).await?;
            self.status.send_modify(|s| s.running = false);
            return Ok(());
        }
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let signal = self
            .config
            .stop_signal
            .parse::<Signal>()
            .unwrap_or(Signal::SIGTERM);
        let how = stop_child(&mut child, signal, self.config.shutdown_grace).await;
        let _ = fs::remove_file(&self.layout.pidfile);
        self.status.send_modify(|s| {
            s.running = false;
            s.pid = None;
            s.exits += 1;
            s.last_exit = Some(how.clone());
        });
        info!("managed program stopped: {how}");
        Ok(())
    }
}

async fn wait(child: &mut Option<Child>) -> std::io::Result<std::process::ExitStatus> {
    match child {
        Some(c) => c.wait().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Signals the child, waits up to `grace` for it to exit, then kills it. Returns how it ended.
async fn stop_child(child: &mut Child, signal: Signal, grace: Duration) -> String {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = kill(Pid::from_raw(pid), signal);
    }
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(Ok(status)) => status.to_string(),
        Ok(Err(e)) => e.to_string(),
        Err(_) => {
            warn!("managed program did not stop within {grace:?}; killing it");
            let _ = child.kill().await;
            "killed after the shutdown grace period".to_string()
        }
    }
}

/// Runs an operator hook; returns its exit code (or an error if it could not run).
pub async fn run_hook_code(
    argv: &[String],
    what: &str,
    env: &[(&str, String)],
) -> Result<i32, String> {
    let Some((prog, args)) = argv.split_first() else {
        return Ok(0);
    };
    let out = Command::new(prog)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("{what} hook {prog:?} could not run: {e}"))?;
    Ok(out.status.code().unwrap_or(-1))
}

async fn run_hook(argv: &[String], what: &str, env: &[(&str, String)]) -> Result<(), String> {
    match run_hook_code(argv, what, env).await? {
        0 => Ok(()),
        code => Err(format!("{what} hook {argv:?} exited with {code}")),
    }
}

/// A managed program left running by a daemon that was killed: stop it, so that the new
/// daemon starts exactly one. Only a process whose executable lives under our `versions`
/// directory is touched.
pub async fn reap_orphan(layout: &Layout, grace: Duration) {
    let Ok(text) = fs::read_to_string(&layout.pidfile) else {
        return;
    };
    let _ = fs::remove_file(&layout.pidfile);
    let Ok(pid) = text.trim().parse::<i32>() else {
        return;
    };
    let Ok(exe) = fs::read_link(format!("/proc/{pid}/exe")) else {
        return;
    };
    let versions = fs::canonicalize(&layout.versions).unwrap_or_else(|_| layout.versions.clone());
    if !exe.starts_with(&versions) {
        return;
    }
    warn!(pid, exe = %exe.display(), "stopping the managed program left by a previous daemon");
    let pid = Pid::from_raw(pid);
    let _ = kill(pid, Signal::SIGTERM);
    let start = Instant::now();
    while start.elapsed() < grace {
        if kill(pid, None).is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = kill(pid, Signal::SIGKILL);
    // Wait for the kernel to reap it (it is not our child; init does).
    for _ in 0..100 {
        if kill(pid, None).is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
