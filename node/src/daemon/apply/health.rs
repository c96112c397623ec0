//! Health checks of the managed program.
//!
//! Owns the probing: an HTTP GET and/or a command, repeated until enough pass in a row, the
//! deadline passes or the program exits. It only answers healthy or not: it never starts, stops or
//! rolls back the program and writes nothing (the transition decides what follows).

use std::time::Duration;

use tokio::sync::watch;

use super::command;
use super::supervisor::ProgramStatus;
use crate::daemon::config::HealthCheck;

/// Probes until `successes` consecutive probes pass (`Ok`), or the deadline passes, or the
/// program exits (`Err` with the reason).
pub async fn wait_healthy(
    check: &HealthCheck,
    mut program: watch::Receiver<ProgramStatus>,
) -> Result<(), String> {
    let exits_at_start = program.borrow().exits;
    let deadline = tokio::time::Instant::now() + check.deadline;
    let client = crate::http::client(check.timeout).map_err(|e| e.to_string())?;
    let mut streak = 0u32;
    let mut last_error = String::from("no probe has run yet");
    loop {
        if program.borrow().exits > exits_at_start {
            let how = program.borrow().last_exit.clone().unwrap_or_default();
            return Err(format!(
                "the program exited during the health check ({how})"
            ));
        }
        match probe(check, &client).await {
            Ok(()) => {
                streak += 1;
                if streak >= check.successes {
                    return Ok(());
                }
            }
            Err(e) => {
                streak = 0;
                last_error = e;
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "not healthy within {:?}: {last_error}",
                check.deadline
            ));
        }
        tokio::select! {
            _ = tokio::time::sleep(check.interval) => {}
            _ = program.changed() => {}
        }
    }
}

async fn probe(check: &HealthCheck, client: &reqwest::Client) -> Result<(), String> {
    if let Some(url) = &check.http {
        let resp = client
            .get(url)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("GET {url}: HTTP {}", resp.status()));
        }
    }
    if !check.command.is_empty() {
        let run = command::run(&check.command, "health command", &[], check.timeout)
            .await
            .map_err(|e| e.to_string())?;
        if !run.success() {
            return Err(format!(
                "health command {:?}: {}{}",
                check.command,
                run.how,
                if run.output.trim().is_empty() {
                    String::new()
                } else {
                    format!(": {}", run.output.trim())
                }
            ));
        }
    }
    if check.http.is_none() && check.command.is_empty() {
        // No probe configured: staying up for one interval is the only evidence.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}
