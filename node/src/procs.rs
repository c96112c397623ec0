//! Other processes, seen through `/proc` (Linux): start times, states, initial
//! environments; signals to whole process groups.
//!
//! Used by the daemon's supervisor to recognise a managed program left behind by a killed
//! daemon (pid + start time, or the marker in its environment — whatever its executable),
//! and by the local-network harness to stop every process a testnet started.
//!
//! Non-goals: portability beyond Linux; anything that needs privileges. Processes of other
//! users are skipped (their environment is unreadable).
//!
//! It uses neither `cli` nor `daemon` (`tests/structure.rs` checks), and never signals by name
//! nor pid 0 or 1 (`signal` and `signal_group` ignore pids up to 1): a process is picked by its
//! pid and start time, or by a marker in its environment.

use std::fs;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// What `/proc/<pid>/stat` says about a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// `R`, `S`, `D`, `Z` (zombie), `T`, …
    pub state: char,
    /// Parent pid.
    pub ppid: i32,
    /// Process group.
    pub pgrp: i32,
    /// Start time in clock ticks since boot: with the pid, it names one process for good
    /// (pids are reused, start times of a reused pid differ).
    pub start_time: u64,
}

/// Reads `/proc/<pid>/stat`; `None` if there is no such process.
pub fn stat(pid: i32) -> Option<ProcStat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime
    // stime cutime cstime priority nice threads itrealvalue starttime …"; comm may hold
    // spaces and parentheses, so split after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        pgrp: fields.get(2)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

/// Whether `pid` is a live process (exists and is not a zombie waiting to be reaped).
pub fn alive(pid: i32) -> bool {
    stat(pid).is_some_and(|s| s.state != 'Z' && s.state != 'X')
}

/// Whether `pid` is alive and still the process that started at `start_time`.
pub fn same_process(pid: i32, start_time: u64) -> bool {
    stat(pid).is_some_and(|s| s.start_time == start_time && s.state != 'Z' && s.state != 'X')
}

/// Live processes (never this one) whose initial environment holds `entry` exactly, e.g.
/// `UPSWARM_SUPERVISED_BY=/var/lib/upswarm`. Children inherit the environment, so this
/// finds a program's whole family, however it was started and whatever it re-execs.
pub fn with_env(entry: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(env) = fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if env.split(|b| *b == 0).any(|kv| kv == entry.as_bytes()) && alive(pid) {
            found.push(pid);
        }
    }
    found
}

/// Sends `signal` to process group `pgid` (errors, e.g. an empty group, are ignored).
pub fn signal_group(pgid: i32, signal: Signal) {
    if pgid > 1 {
        let _ = killpg(Pid::from_raw(pgid), signal);
    }
}

/// Sends `signal` to process `pid` (errors ignored).
pub fn signal(pid: i32, signal: Signal) {
    if pid > 1 {
        let _ = kill(Pid::from_raw(pid), signal);
    }
}

/// Waits until none of `pids` is alive, polling; returns whether they all went within
/// `timeout`.
pub fn wait_gone_blocking(pids: &[i32], timeout: Duration) -> bool {
    let start = Instant::now();
    loop {
        if pids.iter().all(|p| !alive(*p)) {
            return true;
        }
        if start.elapsed() >= timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Async twin of [`wait_gone_blocking`].
pub async fn wait_gone(pids: &[i32], timeout: Duration) -> bool {
    let start = Instant::now();
    loop {
        if pids.iter().all(|p| !alive(*p)) {
            return true;
        }
        if start.elapsed() >= timeout {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// SIGKILLs every live process whose environment holds `entry`, again and again until none
/// is left (a process may fork while it is being killed). Returns how many were killed.
pub fn kill_all_with_env(entry: &str) -> usize {
    let mut killed = 0;
    for _ in 0..50 {
        let pids = with_env(entry);
        if pids.is_empty() {
            break;
        }
        for &p in &pids {
            signal(p, Signal::SIGKILL);
        }
        killed += pids.len();
        wait_gone_blocking(&pids, Duration::from_secs(2));
    }
    killed
}

/// `SIGTERM`, `TERM`, `sigterm` … as a signal.
pub fn parse_signal(name: &str) -> Option<nix::sys::signal::Signal> {
    let upper = name.trim().to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    full.parse::<nix::sys::signal::Signal>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process_and_finds_a_child_by_its_environment() {
        let me = stat(std::process::id() as i32).expect("own stat");
        assert!(me.start_time > 0);
        assert!(alive(std::process::id() as i32));
        let marker = format!("UPSWARM_PROCS_TEST={}", std::process::id());
        let (k, v) = marker.split_once('=').expect("KEY=VALUE");
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .env(k, v)
            .spawn()
            .expect("sleep");
        let pid = child.id() as i32;
        let st = stat(pid).expect("child stat");
        assert!(same_process(pid, st.start_time));
        assert!(!same_process(pid, st.start_time + 1));
        // Until the child has exec'd, /proc shows the environment it was forked with.
        let start = Instant::now();
        while with_env(&marker).is_empty() && start.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(with_env(&marker), vec![pid]);
        signal(pid, Signal::SIGKILL);
        let _ = child.wait();
        assert!(with_env(&marker).is_empty());
        assert!(!alive(pid));
    }
}
