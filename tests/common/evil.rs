//! The hostile peer (`upswarm-evil-peer`) as a child process of a test.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

/// A running evil peer, its JSON lines arriving on a channel. Killed on drop.
pub struct Evil {
    child: Child,
    lines: mpsc::Receiver<Value>,
    pub seen: Vec<Value>,
}

impl Evil {
    pub fn spawn(args: &[String]) -> Self {
        let mut child = Command::new(evil_binary())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && tx.send(v).is_err()
                {
                    break;
                }
            }
        });
        Evil {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for the event named `name`; every event before it is kept in `seen`.
    pub fn wait_event(&mut self, name: &str, timeout: Duration) -> Value {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if v["event"] == name {
                        return v;
                    }
                }
                Err(_) => panic!("the evil peer did not report {name}; saw {:#?}", self.seen),
            }
        }
    }

    pub fn events(&self, name: &str) -> Vec<&Value> {
        self.seen.iter().filter(|v| v["event"] == name).collect()
    }
}

impl Drop for Evil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn evil_binary() -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_upswarm")).parent().unwrap();
    let bin = dir.join("upswarm-evil-peer");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p upswarm-evil-peer` (scripts/test.sh does)",
        bin.display()
    );
    bin
}

impl Evil {
    /// Starts an evil peer on network `test` (the test daemons' network) connected to
    /// `bootstrap`, with further `args`; waits until it is ready and returns it with its
    /// peer id and dialable address.
    pub fn start(bootstrap: &[&str], args: &[&str]) -> (Self, String, String) {
        let mut all: Vec<String> = vec!["--network".into(), "test".into()];
        for b in bootstrap {
            all.push("--bootstrap".into());
            all.push((*b).into());
        }
        all.extend(args.iter().map(|a| (*a).to_string()));
        let mut evil = Evil::spawn(&all);
        let ready = evil.wait_event("ready", Duration::from_secs(30));
        let id = ready["peer_id"].as_str().unwrap_or_default().to_string();
        let addr = ready["addr"].as_str().unwrap_or_default().to_string();
        (evil, id, addr)
    }
}
