//! Running the operator's commands (hooks, health-check commands): each in its own process
//! group, with a timeout after which the whole group is killed, and its output (stdout and
//! stderr, interleaved) kept — bounded — for the log and the history.
//!
//! Non-goal: a shell. The command is an argv; use `["sh", "-c", "…"]` for shell syntax.
//!
//! It signals nothing but the command's own process group (on timeout, or when the run is dropped),
//! leaves stdin unconnected and keeps at most about 4 KiB of output.

use std::collections::VecDeque;
use std::fmt;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio::io::AsyncReadExt;
use tokio::process::Command;

use crate::procs;

/// Bytes of output kept from the start of a run.
const HEAD: usize = 1024;
/// Bytes of output kept from the end of a run.
const TAIL: usize = 3 * 1024;
/// How long to keep reading output after the command itself exited (a background process
/// it started may hold the pipe open).
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(500);

/// How a command run ended.
#[derive(Debug, Clone)]
pub struct CommandRun {
    /// Exit code; `None` if it was killed by a signal (or by the timeout).
    pub code: Option<i32>,
    /// Killed because it ran longer than the timeout.
    pub timed_out: bool,
    /// Its output, at most about 4 KiB: the beginning and the end, with what was left out
    /// marked.
    pub output: String,
    pub took: Duration,
    /// e.g. "exit status 3", "killed by signal 9", "timed out after 5s".
    pub how: String,
}

impl CommandRun {
    pub fn success(&self) -> bool {
        self.code == Some(0) && !self.timed_out
    }
}

/// The command could not be started at all.
#[derive(Debug, thiserror::Error)]
#[error("{what} {prog:?} could not run: {source}")]
pub struct SpawnError {
    pub what: String,
    pub prog: String,
    #[source]
    pub source: std::io::Error,
}

/// Runs `argv` (an empty argv succeeds at once) with `env` added to the environment. The
/// command runs in a new process group; if it is still running after `timeout`, the whole
/// group is killed. Dropping the returned future (cancellation) kills the group too.
pub async fn run(
    argv: &[String],
    what: &str,
    env: &[(&str, String)],
    timeout: Duration,
) -> Result<CommandRun, SpawnError> {
    let start = Instant::now();
    let Some((prog, args)) = argv.split_first() else {
        return Ok(CommandRun {
            code: Some(0),
            timed_out: false,
            output: String::new(),
            took: Duration::ZERO,
            how: "nothing to run".into(),
        });
    };
    let mut child = Command::new(prog)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| SpawnError {
            what: what.to_string(),
            prog: prog.clone(),
            source,
        })?;
    let mut guard = GroupGuard(child.id().and_then(|p| i32::try_from(p).ok()));
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let mut output = Bounded::default();
    let mut status = None;
    let mut timed_out = false;
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let drain = tokio::time::sleep(Duration::from_secs(365 * 86400));
    tokio::pin!(drain);
    let (mut ob, mut eb) = ([0u8; 4096], [0u8; 4096]);
    loop {
        if status.is_some() && stdout.is_none() && stderr.is_none() {
            break;
        }
        tokio::select! {
            r = read(&mut stdout, &mut ob) => match r {
                Some(n) => output.push(&ob[..n]),
                None => stdout = None,
            },
            r = read(&mut stderr, &mut eb) => match r {
                Some(n) => output.push(&eb[..n]),
                None => stderr = None,
            },
            s = child.wait(), if status.is_none() => {
                status = Some(s);
                drain.as_mut().reset(tokio::time::Instant::now() + DRAIN_AFTER_EXIT);
            }
            _ = &mut drain, if status.is_some() => break,
            _ = &mut deadline, if status.is_none() => {
                timed_out = true;
                guard.kill();
                status = Some(child.wait().await);
                break;
            }
        }
    }
    // Finished on its own: leave whatever it started in the background alone.
    guard.disarm();
    let (code, how) = match status {
        _ if timed_out => (None, format!("timed out after {timeout:?} and was killed")),
        Some(Ok(s)) => match (s.code(), s.signal()) {
            (Some(c), _) => (Some(c), format!("exit status {c}")),
            (None, Some(sig)) => (None, format!("killed by signal {sig}")),
            (None, None) => (None, s.to_string()),
        },
        Some(Err(e)) => (None, format!("could not be waited for: {e}")),
        None => (None, "unknown".into()),
    };
    Ok(CommandRun {
        code,
        timed_out,
        output: output.render(),
        took: start.elapsed(),
        how,
    })
}

/// Reads a chunk from an optional pipe; `None` at end of file (or on error, or when there
/// is no pipe: then it never resolves).
async fn read<R: tokio::io::AsyncRead + Unpin>(
    pipe: &mut Option<R>,
    buf: &mut [u8],
) -> Option<usize> {
    match pipe {
        Some(p) => match p.read(buf).await {
            Ok(0) | Err(_) => None,
            Ok(n) => Some(n),
        },
        None => std::future::pending().await,
    }
}

/// Kills the command's process group when dropped, unless disarmed.
struct GroupGuard(Option<i32>);

impl GroupGuard {
    fn kill(&mut self) {
        if let Some(pgid) = self.0.take() {
            procs::signal_group(pgid, Signal::SIGKILL);
        }
    }
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The first [`HEAD`] and the last [`TAIL`] bytes of a stream, and how many were between.
#[derive(Default)]
struct Bounded {
    head: Vec<u8>,
    tail: VecDeque<u8>,
    omitted: u64,
}

impl Bounded {
    fn push(&mut self, mut bytes: &[u8]) {
        if self.head.len() < HEAD {
            let n = (HEAD - self.head.len()).min(bytes.len());
            self.head.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
        }
        self.tail.extend(bytes);
        while self.tail.len() > TAIL {
            self.tail.pop_front();
            self.omitted += 1;
        }
    }

    fn render(&self) -> String {
        let mut s = String::from_utf8_lossy(&self.head).into_owned();
        if self.omitted > 0 {
            s.push_str(&format!("\n[… {} bytes left out …]\n", self.omitted));
        }
        let tail: Vec<u8> = self.tail.iter().copied().collect();
        s.push_str(&String::from_utf8_lossy(&tail));
        s
    }
}

impl fmt::Debug for Bounded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Bounded({} + {} bytes)",
            self.head.len(),
            self.tail.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["sh".into(), "-c".into(), script.into()]
    }

    #[tokio::test]
    async fn exit_codes_and_output_are_kept() {
        let r = run(
            &sh("echo out; echo err >&2; exit 3"),
            "test",
            &[],
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        assert_eq!(r.code, Some(3));
        assert!(!r.timed_out && !r.success());
        assert!(
            r.output.contains("out") && r.output.contains("err"),
            "{}",
            r.output
        );
        let ok = run(
            &sh("exit 0"),
            "test",
            &[("X", "1".into())],
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        assert!(ok.success());
        assert!(
            run(&[], "test", &[], Duration::from_secs(1))
                .await
                .unwrap()
                .success()
        );
        assert!(
            run(
                &["/nonexistent/hook".into()],
                "test",
                &[],
                Duration::from_secs(1)
            )
            .await
            .is_err()
        );
    }

    #[tokio::test]
    async fn a_hanging_command_and_its_children_are_killed_at_the_timeout() {
        let r = run(
            &sh("echo started; sleep 300 & sleep 300"),
            "test",
            &[],
            Duration::from_millis(500),
        )
        .await
        .unwrap();
        assert!(r.timed_out, "{r:?}");
        assert!(r.output.contains("started"), "{}", r.output);
        assert!(r.how.contains("timed out"), "{}", r.how);
        assert!(r.took < Duration::from_secs(60));
    }

    #[tokio::test]
    async fn output_is_bounded() {
        let r = run(
            &sh("head -c 100000 /dev/zero | tr '\\0' x; echo; echo THE-END"),
            "test",
            &[],
            Duration::from_secs(20),
        )
        .await
        .unwrap();
        assert!(r.output.len() < HEAD + TAIL + 100, "{}", r.output.len());
        assert!(r.output.contains("left out") && r.output.contains("THE-END"));
    }
}
