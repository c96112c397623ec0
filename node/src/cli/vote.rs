//! `upswarm proposal …`, `upswarm vote`, `upswarm activations`, `upswarm peer add`.
//!
//! It must not import daemon internals (`crate::daemon::…`): apart from `proposal create` and
//! `proposal sign`, every command is a call to the control API. It never signs a vote:
//! `upswarm vote` asks the daemon, which signs with its voter key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Subcommand;
use upswarm_proto::activation::ACTIVATION_VERSION;
use upswarm_proto::{Proposal, SignedEnvelope};
use upswarm_trust::unix_now;

use super::client::{ApiArgs, ApiClient, block_on};
use super::show;
use crate::api::{ActivationView, ControlRequest, PeerRequest, VoteRequest};
use crate::files::{read_signed, write_atomic};
use crate::parse;

#[derive(Debug, Subcommand)]
pub enum ProposalCommand {
    /// Write an unsigned protocol activation proposal.
    Create {
        /// The protocol version / feature, as named in manifests' `--provides`.
        #[arg(long)]
        protocol: String,
        #[arg(long, default_value = "")]
        description: String,
        /// Share of the electorate's weight needed, e.g. 90%.
        #[arg(long, default_value = "90%")]
        threshold: String,
        /// Voting starts this long from now.
        #[arg(long, value_parser = parse::duration, default_value = "0s")]
        start_in: Duration,
        /// Lock-in deadline, this long from now.
        #[arg(long, value_parser = parse::duration, default_value = "14d")]
        deadline_in: Duration,
        /// Time between lock-in and activation; keep it well above clock skew and gossip delay.
        #[arg(long, value_parser = parse::duration, default_value = "1h")]
        activation_delay: Duration,
        /// Lock in at the deadline even without the threshold.
        #[arg(long)]
        lock_in_on_timeout: bool,
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Add one signature (release role) to a proposal file, in place.
    Sign {
        #[arg(long, value_name = "KEY")]
        key: PathBuf,
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Hand a signed proposal to a daemon, which checks and gossips it.
    Publish {
        #[arg(value_name = "FILE")]
        file: PathBuf,
        #[command(flatten)]
        api: ApiArgs,
    },
}

pub(super) fn proposal(cmd: ProposalCommand) -> anyhow::Result<()> {
    match cmd {
        ProposalCommand::Create {
            protocol,
            description,
            threshold,
            start_in,
            deadline_in,
            activation_delay,
            lock_in_on_timeout,
            out,
        } => {
            let bp =
                parse::percent_bp(&threshold).map_err(|e| anyhow::anyhow!("--threshold: {e}"))?;
            let now = unix_now();
            let p = Proposal {
                v: ACTIVATION_VERSION,
                protocol,
                description,
                threshold_bp: bp,
                start_at: now + start_in.as_secs(),
                lock_in_deadline: now + deadline_in.as_secs(),
                activation_delay_secs: activation_delay.as_secs(),
                lock_in_on_timeout,
            };
            upswarm_proto::Message::validate(&p).map_err(|e| {
                anyhow::anyhow!("the proposal these flags describe is not valid: {e}")
            })?;
            anyhow::ensure!(!out.exists(), "{}: already exists", out.display());
            let env = SignedEnvelope::wrap(&p);
            write_atomic(&out, &env.encode())?;
            println!(
                "proposal {} for {}, id {}",
                out.display(),
                p.protocol,
                env.payload_hash().to_hex()
            );
            Ok(())
        }
        ProposalCommand::Sign { key, file } => sign(&key, &file),
        ProposalCommand::Publish { file, api } => block_on(async move {
            let (env, _) = read_signed::<Proposal>(&file)?;
            let body = ControlRequest {
                envelope_hex: hex::encode(env.encode()),
            };
            let v: serde_json::Value = ApiClient::new(&api)?.post("/v1/proposal", &body).await?;
            println!(
                "proposal {} published",
                v["proposal"].as_str().unwrap_or("?")
            );
            Ok(())
        }),
    }
}

fn sign(key: &Path, file: &Path) -> anyhow::Result<()> {
    super::signed::sign_file::<Proposal>(key, file, |p| format!("the {} proposal", p.protocol))
}

pub(super) fn vote(api: &ApiArgs, proposal: &str, withhold: Option<bool>) -> anyhow::Result<()> {
    block_on(async {
        let v: ActivationView = ApiClient::new(api)?
            .post(
                "/v1/vote",
                &VoteRequest {
                    proposal: proposal.to_string(),
                    withhold,
                },
            )
            .await?;
        print_view(&v);
        Ok(())
    })
}

pub(super) fn activations(api: &ApiArgs, json: bool) -> anyhow::Result<()> {
    block_on(async {
        let list: Vec<ActivationView> = ApiClient::new(api)?.get("/v1/activations").await?;
        if json {
            println!("{}", serde_json::to_string_pretty(&list)?);
        } else if list.is_empty() {
            println!("no protocol proposals known");
        }
        if !json {
            for v in &list {
                print_view(v);
            }
        }
        Ok(())
    })
}

fn print_view(v: &ActivationView) {
    println!("{} ({}): {}", v.protocol, &v.proposal[..16], v.state);
    println!(
        "  weight {} of {} needed ({} total)",
        v.weight_counted, v.weight_needed, v.weight_total
    );
    if let Some(t) = v.locked_in_at {
        println!("  locked in at {}", show::time(t));
    }
    if let Some(t) = v.activation_at {
        println!("  activates at {}", show::time(t));
    }
    println!(
        "  this node: software {}, {}{}",
        if v.supported {
            "supports it"
        } else {
            "does NOT support it"
        },
        if v.voted {
            "voted READY"
        } else {
            "has not voted"
        },
        if v.withheld {
            ", vote withheld by the operator"
        } else {
            ""
        }
    );
    if v.state == "ACTIVE" && !v.supported {
        println!("  ALARM: upgrade required");
    }
}

pub(super) fn add_peer(api: &ApiArgs, addr: &str) -> anyhow::Result<()> {
    block_on(async {
        let _: serde_json::Value = ApiClient::new(api)?
            .post(
                "/v1/peers",
                &PeerRequest {
                    addr: addr.to_string(),
                },
            )
            .await?;
        println!("connected to {addr}");
        Ok(())
    })
}
