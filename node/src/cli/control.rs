//! `upswarm control …`: signed rollout control messages (pause, resume, abort, advance,
//! yank), co-signed like releases.
//!
//! It must not import daemon internals (`crate::daemon::…`): it reaches the daemon only through the
//! control API, and leaves the check of the control role's threshold to the daemon.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use upswarm_proto::control::CONTROL_VERSION;
use upswarm_proto::{Context, ControlAction, ControlMessage, Hash32, SignedEnvelope};
use upswarm_trust::{read_secret_key, unix_now};

use super::client::{ApiArgs, ApiClient, block_on};
use crate::api::ReleaseView;
use crate::files::{read_signed, write_atomic};

#[derive(Debug, Subcommand)]
pub enum ControlCommand {
    /// No new installs of RELEASE until resumed.
    Pause(Common),
    /// Undo a pause.
    Resume(Common),
    /// Stop RELEASE's rollout for good.
    Abort(Common),
    /// Open the phases of RELEASE up to and including --to-phase, whatever the gates say.
    Advance {
        #[arg(long, value_name = "N")]
        to_phase: u32,
        #[command(flatten)]
        common: Common,
    },
    /// Abort, and nodes that installed RELEASE roll back to their last good version.
    Yank(Common),
    /// Add one signature to a control message file, in place.
    Sign {
        #[arg(long, value_name = "KEY")]
        key: PathBuf,
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Hand a signed control message file to a daemon, which checks and gossips it.
    Publish {
        #[arg(value_name = "FILE")]
        file: PathBuf,
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(Debug, Args)]
pub struct Common {
    /// The release: its id (64 hex digits) or its version (looked up through --api).
    #[arg(value_name = "RELEASE")]
    release: String,
    /// Control keys to sign with (repeat for co-signers present here).
    #[arg(long = "key", value_name = "KEY")]
    keys: Vec<PathBuf>,
    /// Why, for operators.
    #[arg(long, default_value = "")]
    reason: String,
    /// Write the (partly) signed message here instead of publishing it, for co-signing.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    #[command(flatten)]
    api: ApiArgs,
}

pub(super) fn run(cmd: ControlCommand) -> anyhow::Result<()> {
    let (action, common) = match cmd {
        ControlCommand::Pause(c) => (ControlAction::Pause, c),
        ControlCommand::Resume(c) => (ControlAction::Resume, c),
        ControlCommand::Abort(c) => (ControlAction::Abort, c),
        ControlCommand::Yank(c) => (ControlAction::Yank, c),
        ControlCommand::Advance { to_phase, common } => {
            (ControlAction::Advance { to_phase }, common)
        }
        ControlCommand::Sign { key, file } => return sign(&key, &file),
        ControlCommand::Publish { file, api } => {
            let (env, msg) = read_signed::<ControlMessage>(&file)?;
            return block_on(async move {
                let label = describe(&msg, &label_of(&msg.release, None, &api).await);
                publish_async(&api, &env, &label).await
            });
        }
    };
    block_on(async move {
        let (release, version) = resolve(&common.release, &common.api).await?;
        let msg = ControlMessage {
            v: CONTROL_VERSION,
            release,
            action,
            issued_at: unix_now(),
            reason: common.reason.clone(),
        };
        let mut env = SignedEnvelope::wrap(&msg);
        for k in &common.keys {
            read_secret_key(k)?.sign_envelope(Context::Control, &mut env);
        }
        let label = describe(&msg, &label_of(&release, version, &common.api).await);
        match &common.out {
            Some(out) => {
                write_atomic(out, &env.encode())?;
                println!(
                    "wrote {}: {label} ({} signature(s)); co-signers run: upswarm control sign --key KEY {}",
                    out.display(),
                    env.sigs.len(),
                    out.display()
                );
                Ok(())
            }
            None => publish_async(&common.api, &env, &label).await,
        }
    })
}

/// The release id of RELEASE, and the release's name and version when looked up by version.
async fn resolve(release: &str, api: &ApiArgs) -> anyhow::Result<(Hash32, Option<String>)> {
    if release.len() == 64
        && let Ok(h) = Hash32::from_hex(release)
    {
        return Ok((h, None));
    }
    let version: semver::Version = release.parse().map_err(|_| {
        anyhow::anyhow!("{release:?} is neither a release id (64 hex digits) nor a version")
    })?;
    let list: Vec<ReleaseView> = ApiClient::new(api)?.get("/v1/releases").await?;
    let matches: Vec<&ReleaseView> = list
        .iter()
        .filter(|r| r.version == version.to_string())
        .collect();
    match matches.as_slice() {
        [one] => Ok((
            Hash32::from_hex(&one.id)?,
            Some(format!("{} {}", one.name, one.version)),
        )),
        [] => bail!("the daemon knows no release {version}"),
        _ => bail!("several releases are version {version}; give the release id"),
    }
}

/// The release in words: `demo 1.1.0 (release 0123456789abcdef)`; its name and version
/// from the daemon when not known (best effort: the id alone if it does not answer).
async fn label_of(release: &Hash32, known: Option<String>, api: &ApiArgs) -> String {
    let id = &release.to_hex()[..16];
    let name = match known {
        Some(n) => Some(n),
        None => match ApiClient::new(api) {
            Ok(c) => c
                .get::<Vec<ReleaseView>>("/v1/releases")
                .await
                .ok()
                .and_then(|l| {
                    l.into_iter()
                        .find(|r| r.id == release.to_hex())
                        .map(|r| format!("{} {}", r.name, r.version))
                }),
            Err(_) => None,
        },
    };
    match name {
        Some(n) => format!("{n} (release {id})"),
        None => format!("release {id}"),
    }
}

/// The action on the release in words: `yank of demo 1.1.0 (release …)`.
fn describe(m: &ControlMessage, release: &str) -> String {
    match m.action {
        ControlAction::Advance { to_phase } => {
            format!("advance to phase {to_phase} of {release}")
        }
        a => format!("{} of {release}", a.name()),
    }
}

fn sign(key: &Path, file: &Path) -> anyhow::Result<()> {
    super::signed::sign_file::<ControlMessage>(key, file, |m| {
        format!("{} of release {}", m.action.name(), m.release)
    })
}

async fn publish_async(api: &ApiArgs, env: &SignedEnvelope, label: &str) -> anyhow::Result<()> {
    super::signed::publish(api, "/v1/control", env)
        .await
        .with_context(|| format!("publishing the {label}"))?;
    println!("published: {label} ({} signature(s))", env.sigs.len());
    Ok(())
}
