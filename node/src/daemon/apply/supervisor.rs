//! Running the managed program: as our child (restarted with backoff when it exits), or
//! through the operator's hooks in external mode.
//!
//! One task owns the child process; the apply actor sends it `Start` / `Stop` and watches
//! its status. `Stop` returns only once the program has exited (not after a fixed sleep),
//! so the next version never starts while the old one still holds its files and locks.
//!
//! The program runs in a process group of its own (the stop signal goes to the whole
//! group, so a script and the processes it started stop together), with
//! `UPSWARM_SUPERVISED_BY=<data dir>` in its environment, and its pid and start time in
//! `<data_dir>/managed.pid`. A daemon that was killed leaves its program running; the next
//! start finds it by either mark — whatever its executable, an interpreter included — and
//! stops it before starting exactly one instance ([`reap_orphans`]).
//!
//! Not here: deciding when to start or stop (the apply actor does).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{Instrument, info, warn};

use super::{chain_home, command};
pub use crate::api::ProgramStatus;
use crate::daemon::config::{Managed, ManagedMode};
use crate::layout::Layout;
use crate::procs;

/// Environment variable naming the daemon data directory of the supervisor, set for the
/// managed program (and inherited by everything it starts).
pub const SUPERVISED_BY: &str = "UPSWARM_SUPERVISED_BY";

/// Why the program could not be started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProgramError {
    #[error("the supervisor task has stopped")]
    SupervisorGone,
    #[error("{}: no current version to start: {source}", path.display())]
    NoCurrentVersion {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start {}: {source}", program.display())]
    Spawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An external-mode hook failed (or timed out).
    #[error("{what} {argv:?}: {how}")]
    Hook {
        what: &'static str,
        argv: Vec<String>,
        how: String,
    },
    #[error(transparent)]
    HookDidNotRun(#[from] command::SpawnError),
    /// Cosmovisor mode: the chain halted for an upgrade that `current` does not run yet;
    /// the old binary is not started again.
    #[error(
        "the chain halted for upgrade {name} at height {height}: its binary is not switched \
         to yet, and the old one must not run past the upgrade height"
    )]
    UpgradePending { name: String, height: i64 },
    /// Cosmovisor mode: the chain's layout is not usable.
    #[error("{0}")]
    Cosmovisor(String),
}

type Reply = oneshot::Sender<Result<(), ProgramError>>;

enum Cmd {
    Start(Reply),
    Stop(Reply),
}

/// Handle to the supervisor task.
#[derive(Debug, Clone)]
pub struct Supervisor {
    tx: mpsc::Sender<Cmd>,
    status: watch::Receiver<ProgramStatus>,
}

/// The `KEY=VALUE` environment entry that marks the managed program of the daemon whose
/// data directory `layout` is.
pub fn marker(layout: &Layout) -> String {
    format!("{SUPERVISED_BY}={}", layout.root.display())
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
        tokio::spawn(actor.run().instrument(tracing::info_span!("supervisor")));
        Supervisor { tx, status }
    }

    /// Starts the program from the current version (no-op if it runs).
    pub async fn start(&self) -> Result<(), ProgramError> {
        self.ask(Cmd::Start).await
    }

    /// Stops the program and waits until it has exited.
    pub async fn stop(&self) -> Result<(), ProgramError> {
        self.ask(Cmd::Stop).await
    }

    async fn ask(&self, make: impl FnOnce(Reply) -> Cmd) -> Result<(), ProgramError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .await
            .map_err(|_| ProgramError::SupervisorGone)?;
        rx.await.map_err(|_| ProgramError::SupervisorGone)?
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

/// The configured stop signal (validated at load; SIGTERM if it somehow does not parse).
pub fn stop_signal(name: &str) -> Signal {
    procs::parse_signal(name).unwrap_or(Signal::SIGTERM)
}

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
                        // Every handle is gone (the daemon is going away without a shutdown
                        // that stopped the program): leave it; the next start reaps it.
                        break;
                    }
                },
                exit = wait(&mut self.child), if self.child.is_some() => {
                    let pgid = self.child.take().and_then(|c| c.id()).and_then(|p| i32::try_from(p).ok());
                    // What it started in its group goes with it (a restart must not meet a
                    // leftover holding the port).
                    if let Some(g) = pgid { procs::signal_group(g, Signal::SIGKILL); }
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
                        if matches!(e, ProgramError::UpgradePending { .. }) {
                            // The cosmovisor watcher starts it once it has switched.
                            continue;
                        }
                        let delay = self.backoff.unwrap_or(self.config.restart_backoff);
                        self.restart_at = Some(tokio::time::Instant::now() + delay);
                    }
                }
            }
        }
    }

    async fn launch(&mut self) -> Result<(), ProgramError> {
        if self.config.mode == ManagedMode::External {
            run_hook(
                &self.config.hooks.start,
                "start hook",
                self.config.hooks.start_timeout(),
            )
            .await?;
            self.status.send_modify(|s| {
                s.running = true;
                s.starts += 1;
            });
            return Ok(());
        }
        let (version_dir, program) = match self.config.cosmovisor.as_ref() {
            Some(cv) if self.config.mode == ManagedMode::Cosmovisor => {
                let paths = chain_home::Paths::new(cv);
                paths
                    .ensure_current()
                    .map_err(|e| ProgramError::Cosmovisor(e.to_string()))?;
                if let Some(info) = paths.pending().map_err(ProgramError::Cosmovisor)? {
                    return Err(ProgramError::UpgradePending {
                        name: info.name,
                        height: info.height,
                    });
                }
                let dir = fs::canonicalize(&paths.current).map_err(|source| {
                    ProgramError::NoCurrentVersion {
                        path: paths.current.clone(),
                        source,
                    }
                })?;
                // Run through `current`, as cosmovisor does.
                (dir, paths.binary(&paths.current))
            }
            _ => {
                let version_dir = fs::canonicalize(&self.layout.current).map_err(|source| {
                    ProgramError::NoCurrentVersion {
                        path: self.layout.current.clone(),
                        source,
                    }
                })?;
                let program = if Path::new(&self.config.command).is_absolute() {
                    PathBuf::from(&self.config.command)
                } else {
                    version_dir.join(&self.config.command)
                };
                (version_dir, program)
            }
        };
        let version = version_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
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
        let log_error = |source| ProgramError::Io {
            path: self.layout.log.clone(),
            source,
        };
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.layout.log)
            .map_err(log_error)?;
        let log2 = log.try_clone().map_err(log_error)?;
        let cwd = self
            .config
            .working_dir
            .clone()
            .or_else(|| data_dir.clone())
            .unwrap_or_else(|| version_dir.clone());
        if let Some(d) = &data_dir {
            fs::create_dir_all(d).map_err(|source| ProgramError::Io {
                path: d.clone(),
                source,
            })?;
        }
        let cosmo = self
            .config
            .cosmovisor
            .as_ref()
            .filter(|_| self.config.mode == ManagedMode::Cosmovisor);
        let args: Vec<String> = match cosmo {
            Some(cv) => cv.args.clone(),
            None => self.config.args.iter().map(|a| subst(a)).collect(),
        };
        let cwd = match cosmo {
            Some(cv) => self.config.working_dir.clone().unwrap_or_else(|| cv.home()),
            None => cwd,
        };
        let mut cmd = Command::new(&program);
        if let Some(cv) = cosmo {
            cmd.env("DAEMON_HOME", cv.home())
                .env("DAEMON_NAME", cv.name());
        }
        cmd.args(args)
            .envs(&self.config.env)
            .env("UPSWARM_VERSION", &version)
            .env("UPSWARM_VERSION_DIR", &version_dir)
            .env("UPSWARM_ACTIVATIONS", &self.layout.activations)
            .env(SUPERVISED_BY, &self.layout.root)
            .current_dir(&cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .process_group(0);
        if let Some(d) = &data_dir {
            cmd.env("UPSWARM_DATA_DIR", d);
        }
        let child = cmd.spawn().map_err(|source| ProgramError::Spawn {
            program: program.clone(),
            source,
        })?;
        let pid = child.id();
        if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
            let start = procs::stat(pid).map_or(0, |s| s.start_time);
            if let Err(e) = crate::files::write_atomic(
                &self.layout.pidfile,
                format!("{pid} {start}\n").as_bytes(),
            ) {
                warn!("{e:#}");
            }
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

    async fn halt(&mut self) -> Result<(), ProgramError> {
        if self.config.mode == ManagedMode::External {
            run_hook(
                &self.config.hooks.stop,
                "stop hook",
                self.config.hooks.stop_timeout(),
            )
            .await?;
            self.status.send_modify(|s| s.running = false);
            return Ok(());
        }
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let signal = stop_signal(&self.config.stop_signal);
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

/// Signals the child's process group, waits up to `grace` for the child to exit, then
/// kills the group. Whatever else is left in the group is killed once the child has gone.
/// Returns how it ended.
async fn stop_child(child: &mut Child, signal: Signal, grace: Duration) -> String {
    let pgid = child.id().and_then(|p| i32::try_from(p).ok());
    if let Some(g) = pgid {
        procs::signal_group(g, signal);
    }
    let how = match tokio::time::timeout(grace, child.wait()).await {
        Ok(Ok(status)) => status.to_string(),
        Ok(Err(e)) => e.to_string(),
        Err(_) => {
            warn!("managed program did not stop within {grace:?}; killing it");
            if let Some(g) = pgid {
                procs::signal_group(g, Signal::SIGKILL);
            }
            let _ = child.kill().await;
            "killed after the shutdown grace period".to_string()
        }
    };
    if let Some(g) = pgid {
        procs::signal_group(g, Signal::SIGKILL);
    }
    how
}

async fn run_hook(
    argv: &[String],
    what: &'static str,
    timeout: Duration,
) -> Result<(), ProgramError> {
    let r = command::run(argv, what, &[], timeout).await?;
    if r.output.trim().is_empty() {
        info!("{what} {argv:?}: {}", r.how);
    } else {
        info!(
            "{what} {argv:?}: {}; output:\n{}",
            r.how,
            r.output.trim_end()
        );
    }
    if r.success() {
        Ok(())
    } else {
        Err(ProgramError::Hook {
            what,
            argv: argv.to_vec(),
            how: r.how,
        })
    }
}

/// Stops a managed program left running by a daemon that was killed (or stopped without
/// stopping it), so that the new daemon starts exactly one. A process is ours when the pid
/// file names it with its start time, or when its environment carries this daemon's
/// [`SUPERVISED_BY`] mark — whatever its executable. Returns how many processes were
/// stopped.
pub async fn reap_orphans(config: &Managed, layout: &Layout, ours: Option<u32>) -> usize {
    if config.mode == ManagedMode::External {
        return 0;
    }
    // The program this daemon runs now (a retried recovery) is not an orphan.
    let ours = ours.and_then(|p| i32::try_from(p).ok());
    let mut groups: Vec<i32> = Vec::new();
    if let Ok(text) = fs::read_to_string(&layout.pidfile) {
        let mut it = text.split_whitespace();
        let pid = it.next().and_then(|p| p.parse::<i32>().ok());
        let start = it.next().and_then(|s| s.parse::<u64>().ok());
        match (pid, start) {
            (Some(pid), _) if Some(pid) == ours => {}
            (Some(pid), Some(start)) if procs::same_process(pid, start) => groups.push(pid),
            (Some(pid), None) if legacy_ours(pid, layout) => groups.push(pid),
            _ => {}
        }
    }
    let marked = procs::with_env(&marker(layout));
    for &p in &marked {
        let g = procs::stat(p).map_or(p, |s| s.pgrp);
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    // Never signal our own group (a program that somehow shares it), nor our program's.
    let own = procs::stat(std::process::id() as i32).map(|s| s.pgrp);
    groups.retain(|g| Some(*g) != own && Some(*g) != ours);
    let marked: Vec<i32> = marked
        .into_iter()
        .filter(|p| ours.is_none() || procs::stat(*p).map(|s| s.pgrp) != ours)
        .collect();
    let mut pids = marked;
    pids.extend(groups.iter().copied());
    pids.sort_unstable();
    pids.dedup();
    if pids.is_empty() {
        if ours.is_none() {
            let _ = fs::remove_file(&layout.pidfile);
        }
        return 0;
    }
    warn!(
        ?pids,
        "stopping the managed program left running by a previous daemon"
    );
    let signal = stop_signal(&config.stop_signal);
    for &g in &groups {
        procs::signal_group(g, signal);
    }
    for &p in &pids {
        procs::signal(p, signal);
    }
    if !procs::wait_gone(&pids, config.shutdown_grace).await {
        for &g in &groups {
            procs::signal_group(g, Signal::SIGKILL);
        }
        for &p in &pids {
            procs::signal(p, Signal::SIGKILL);
        }
        procs::wait_gone(&pids, Duration::from_secs(5)).await;
    }
    // Anything it started that is still around.
    for p in procs::with_env(&marker(layout)) {
        if ours.is_none() || procs::stat(p).map(|s| s.pgrp) != ours {
            procs::signal(p, Signal::SIGKILL);
        }
    }
    if ours.is_none() {
        let _ = fs::remove_file(&layout.pidfile);
    }
    pids.len()
}

/// A pid file written before start times were recorded: ours only if its executable lives
/// under our `versions` directory.
fn legacy_ours(pid: i32, layout: &Layout) -> bool {
    let Ok(exe) = fs::read_link(format!("/proc/{pid}/exe")) else {
        return false;
    };
    let versions = fs::canonicalize(&layout.versions).unwrap_or_else(|_| layout.versions.clone());
    exe.starts_with(&versions) && procs::alive(pid)
}
