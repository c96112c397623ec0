//! `upswarm root …`: create, co-sign, verify and rotate trust roots.
//!
//! It must not import daemon internals (`crate::daemon::…`): `publish` goes through the control
//! API, and every signature and expiry check is `upswarm_trust`'s (`verify_root`,
//! `verify_rotation`, `TimeCheck`), never re-implemented here. `init` and `rotate` never overwrite
//! a file; `sign` only adds a signature.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use upswarm_proto::root::ROOT_VERSION;
use upswarm_proto::{
    Context, Electorate, Message, PublicKey, ReleaseRole, Role, Roles, SignedEnvelope, TrustRoot,
    UpdateType, Voter,
};
use upswarm_trust::{
    TimeCheck, read_public_key, read_secret_key, unix_now, verify_root, verify_root_signatures,
    verify_rotation,
};

use super::{Failure, show};
use crate::files::{read_signed, write_atomic};
use crate::parse;

#[derive(Debug, Subcommand)]
pub enum RootCommand {
    /// Create an unsigned version-1 trust root.
    Init {
        /// Where to write the root.
        #[arg(long, value_name = "ROOT")]
        out: PathBuf,
        #[command(flatten)]
        roles: RoleArgs,
    },
    /// Add one signature to a trust root, in place.
    Sign {
        /// Secret key file.
        #[arg(long, value_name = "KEY")]
        key: PathBuf,
        #[arg(value_name = "ROOT")]
        root: PathBuf,
    },
    /// Verify a trust root: exit 0 only when it is valid (and, with --previous, a valid
    /// rotation of that root).
    Verify {
        #[arg(value_name = "ROOT")]
        root: PathBuf,
        /// The root this one rotates from.
        #[arg(long, value_name = "OLDROOT")]
        previous: Option<PathBuf>,
        /// Clock-skew allowance for the expiry check.
        #[arg(long, value_name = "DURATION", value_parser = parse::duration, default_value = "5m")]
        skew: Duration,
    },
    /// Create the next version of a trust root (unsigned). Roles not given are carried over.
    /// Then sign it with enough keys of the OLD root role and of the NEW root role.
    Rotate {
        #[arg(long, value_name = "OLDROOT")]
        previous: PathBuf,
        #[arg(long, value_name = "NEWROOT")]
        out: PathBuf,
        #[command(flatten)]
        roles: RoleArgs,
        /// Drop the control role (no control messages accepted under the new root).
        #[arg(long)]
        no_control: bool,
    },
    /// Hand a newer trust root (a rotation) to a running daemon, which verifies it against
    /// its current root, keeps it, and gossips it to the network.
    Publish {
        #[arg(value_name = "ROOT")]
        root: PathBuf,
        #[command(flatten)]
        api: super::client::ApiArgs,
    },
    /// Print a trust root in human-readable form.
    Inspect {
        #[arg(value_name = "ROOT")]
        root: PathBuf,
    },
}

/// Role flags shared by `init` and `rotate`.
#[derive(Debug, Args)]
pub struct RoleArgs {
    /// Public key files of the root role.
    #[arg(long = "root-key", value_name = "PUB", num_args = 1..)]
    root_keys: Vec<PathBuf>,
    #[arg(long, value_name = "N")]
    root_threshold: Option<u32>,
    /// Public key files of the release role.
    #[arg(long = "release-key", value_name = "PUB", num_args = 1..)]
    release_keys: Vec<PathBuf>,
    /// Release threshold for update types without a --type-threshold.
    #[arg(long, value_name = "N")]
    release_threshold: Option<u32>,
    /// No release threshold may be below this (default 1).
    #[arg(long, value_name = "N")]
    release_floor: Option<u32>,
    /// Per-update-type release threshold, e.g. major=3.
    #[arg(long = "type-threshold", value_name = "TYPE=N", value_parser = parse::type_threshold, num_args = 1..)]
    type_thresholds: Vec<(UpdateType, u32)>,
    /// Public key files of the control role.
    #[arg(long = "control-key", value_name = "PUB", num_args = 1..)]
    control_keys: Vec<PathBuf>,
    #[arg(long, value_name = "N")]
    control_threshold: Option<u32>,
    /// A voter and its weight, e.g. alice.pub=10.
    #[arg(long = "voter", value_name = "PUB=WEIGHT", value_parser = parse::voter, num_args = 1..)]
    voters: Vec<(PathBuf, u64)>,
    /// Validity period from now.
    #[arg(long, value_name = "DURATION", value_parser = parse::duration, default_value = "365d")]
    expires_in: Duration,
}

fn load_keys(paths: &[PathBuf]) -> anyhow::Result<Vec<PublicKey>> {
    paths.iter().map(|p| Ok(read_public_key(p)?)).collect()
}

fn role(
    name: &str,
    keys: &[PathBuf],
    threshold: Option<u32>,
    previous: Option<&Role>,
) -> anyhow::Result<Option<Role>> {
    match (keys.is_empty(), threshold, previous) {
        (false, Some(t), _) => Ok(Some(Role {
            keys: load_keys(keys)?,
            threshold: t,
        })),
        (false, None, Some(p)) => Ok(Some(Role {
            keys: load_keys(keys)?,
            threshold: p.threshold,
        })),
        (false, None, None) => bail!("--{name}-key needs --{name}-threshold"),
        (true, Some(t), Some(p)) => Ok(Some(Role {
            keys: p.keys.clone(),
            threshold: t,
        })),
        (true, Some(_), None) => bail!("--{name}-threshold needs --{name}-key"),
        (true, None, p) => Ok(p.cloned()),
    }
}

impl RoleArgs {
    /// Builds the roles from the flags, carrying over whatever `previous` has and the flags
    /// do not say.
    fn build(&self, previous: Option<&TrustRoot>, no_control: bool) -> anyhow::Result<Roles> {
        let prev = previous.map(|p| &p.roles);
        let root = role(
            "root",
            &self.root_keys,
            self.root_threshold,
            prev.map(|r| &r.root),
        )?
        .context("--root-key and --root-threshold are required")?;
        let prev_release = prev.map(|r| Role {
            keys: r.release.keys.clone(),
            threshold: r.release.threshold,
        });
        let rel = role(
            "release",
            &self.release_keys,
            self.release_threshold,
            prev_release.as_ref(),
        )?
        .context("--release-key and --release-threshold are required")?;
        let types = if self.type_thresholds.is_empty() {
            prev.map(|r| r.release.types.clone()).unwrap_or_default()
        } else {
            self.type_thresholds.iter().copied().collect()
        };
        let floor = self
            .release_floor
            .or(prev.map(|r| r.release.floor))
            .unwrap_or(1);
        let release = ReleaseRole {
            keys: rel.keys,
            threshold: rel.threshold,
            floor,
            types,
        };
        let control = if no_control {
            None
        } else {
            role(
                "control",
                &self.control_keys,
                self.control_threshold,
                prev.and_then(|r| r.control.as_ref()),
            )?
        };
        let electorate = if self.voters.is_empty() {
            prev.map(|r| r.electorate.clone()).unwrap_or_default()
        } else {
            let voters = self
                .voters
                .iter()
                .map(|(p, w)| {
                    Ok(Voter {
                        key: read_public_key(p)?,
                        weight: *w,
                    })
                })
                .collect::<anyhow::Result<_>>()?;
            Electorate { voters }
        };
        Ok(Roles {
            root,
            release,
            control,
            electorate,
        })
    }

    fn expires_at(&self) -> u64 {
        unix_now().saturating_add(self.expires_in.as_secs())
    }
}

fn write_new_root(out: &Path, root: &TrustRoot) -> anyhow::Result<()> {
    root.validate()
        .context("the trust root these flags describe is not valid")?;
    if out.exists() {
        bail!(
            "{}: already exists; refusing to overwrite a trust root",
            out.display()
        );
    }
    write_atomic(out, &SignedEnvelope::wrap(root).encode())?;
    print!("{}", describe(root));
    eprintln!(
        "wrote {} (unsigned). Each root signer now runs: upswarm root sign --key KEY {}",
        out.display(),
        out.display()
    );
    Ok(())
}

pub(super) fn run(cmd: RootCommand) -> anyhow::Result<()> {
    match cmd {
        RootCommand::Init { out, roles } => {
            let root = TrustRoot {
                v: ROOT_VERSION,
                version: 1,
                expires_at: roles.expires_at(),
                roles: roles.build(None, false)?,
            };
            write_new_root(&out, &root)
        }
        RootCommand::Rotate {
            previous,
            out,
            roles,
            no_control,
        } => {
            let (_, prev) = read_signed::<TrustRoot>(&previous)?;
            let root = TrustRoot {
                v: ROOT_VERSION,
                version: prev.version + 1,
                expires_at: roles.expires_at(),
                roles: roles.build(Some(&prev), no_control)?,
            };
            write_new_root(&out, &root)?;
            eprintln!(
                "rotation {} -> {}: needs {} signature(s) of the old root role and {} of the new one",
                prev.version, root.version, prev.roles.root.threshold, root.roles.root.threshold
            );
            Ok(())
        }
        RootCommand::Sign { key, root: path } => {
            let key = read_secret_key(&key)?;
            let (mut env, root) = read_signed::<TrustRoot>(&path)?;
            if !env.sigs.iter().any(|s| s.key == key.key_id()) {
                key.sign_envelope(Context::Root, &mut env);
                write_atomic(&path, &env.encode())?;
                println!(
                    "signed {} (version {}) with key {}",
                    path.display(),
                    root.version,
                    key.key_id()
                );
            } else {
                println!(
                    "{} is already signed by key {}; nothing added",
                    path.display(),
                    key.key_id()
                );
            }
            if !root.roles.root.keys.contains(&key.public()) {
                eprintln!(
                    "note: key {} is not a root key of this root; it counts only if it is a root key of the previous root (rotation)",
                    key.key_id()
                );
            }
            Ok(())
        }
        RootCommand::Verify {
            root: path,
            previous,
            skew,
        } => {
            let (env, root) = read_signed::<TrustRoot>(&path)?;
            let time = TimeCheck {
                now: unix_now(),
                skew: skew.as_secs(),
            };
            match previous {
                None => {
                    let (_, tally) =
                        verify_root(&env, time).map_err(|e| reject(&path, &root, e))?;
                    print!("{}", show::tally(&tally, &root));
                }
                Some(prev_path) => {
                    let (prev_env, prev_root) = read_signed::<TrustRoot>(&prev_path)?;
                    // The previous root may itself have expired since; its signatures still chain.
                    let (prev_verified, _) = verify_root_signatures(&prev_env)
                        .map_err(|e| reject(&prev_path, &prev_root, e))
                        .with_context(|| {
                            format!("{}: the previous root is not valid", prev_path.display())
                        })?;
                    let (_, by_old, by_new) = verify_rotation(&prev_verified, &env)
                        .map_err(|e| reject(&path, &root, e))?;
                    print!("{}", show::tally(&by_old, &prev_root));
                    print!("{}", show::tally(&by_new, &root));
                    time.check(TrustRoot::WHAT, root.expires_at)
                        .map_err(|e| reject(&path, &root, e))?;
                }
            }
            println!(
                "OK: {} is a valid trust root, version {}, expires {}",
                path.display(),
                root.version,
                show::time(root.expires_at)
            );
            Ok(())
        }
        RootCommand::Publish { root: path, api } => super::client::block_on(async move {
            let (env, root) = read_signed::<TrustRoot>(&path)?;
            let body = crate::api::ControlRequest {
                envelope_hex: hex::encode(env.encode()),
            };
            let v: serde_json::Value = super::client::ApiClient::new(&api)?
                .post("/v1/root", &body)
                .await?;
            println!(
                "trust root version {} accepted; the daemon now trusts version {}",
                root.version, v["root_version"]
            );
            Ok(())
        }),
        RootCommand::Inspect { root: path } => {
            let (env, root) = read_signed::<TrustRoot>(&path)?;
            print!("{}", describe(&root));
            println!("signatures: {}", env.sigs.len());
            for s in &env.sigs {
                let roles = show::roles_of(&root, &s.key);
                println!(
                    "  key {} ({})",
                    s.key,
                    if roles.is_empty() {
                        "not in this root".into()
                    } else {
                        roles.join("/")
                    }
                );
            }
            Ok(())
        }
    }
}

/// Prints a tally behind a threshold failure and turns the error into a rejection.
fn reject(path: &Path, root: &TrustRoot, e: upswarm_trust::TrustError) -> anyhow::Error {
    if let Some(t) = e.tally() {
        print!("{}", show::tally(t, root));
    }
    Failure::Rejected(format!("{}: {e}", path.display())).into()
}

fn describe(root: &TrustRoot) -> String {
    let r = &root.roles;
    let keys = |ks: &[PublicKey]| {
        ks.iter()
            .map(|k| k.key_id().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut s = format!(
        "trust root version {}, expires {}\n",
        root.version,
        show::time(root.expires_at)
    );
    s += &format!(
        "  root:       {} of [{}]\n",
        r.root.threshold,
        keys(&r.root.keys)
    );
    s += &format!(
        "  release:    {} of [{}] (floor {})\n",
        r.release.threshold,
        keys(&r.release.keys),
        r.release.floor
    );
    for ty in UpdateType::ALL {
        if r.release.types.contains_key(&ty) {
            s += &format!("    {ty}: {} signature(s)\n", r.release.threshold_for(ty));
        }
    }
    match &r.control {
        Some(c) => s += &format!("  control:    {} of [{}]\n", c.threshold, keys(&c.keys)),
        None => s += "  control:    none\n",
    }
    s += &format!(
        "  electorate: {} voter(s), total weight {}\n",
        r.electorate.voters.len(),
        r.electorate.total_weight()
    );
    for v in &r.electorate.voters {
        s += &format!("    {} weight {}\n", v.key.key_id(), v.weight);
    }
    s
}
