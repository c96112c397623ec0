//! `upswarm key …`
//!
//! Owns the key subcommands (`gen`, `peer-id`, `id`). It must not import daemon internals, print a
//! secret (its output is key ids, peer ids and file names) or overwrite a key file (`write_keypair`
//! refuses).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use upswarm_trust::{SecretKey, read_public_key, read_secret_key, write_keypair};

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Generate a key pair: PREFIX.key (secret, mode 0600) and PREFIX.pub. Prints the key id.
    Gen {
        /// Path prefix of the two files.
        #[arg(long, value_name = "PREFIX")]
        out: PathBuf,
    },
    /// Print the libp2p peer id a node with this identity key (.key) has.
    PeerId {
        #[arg(value_name = "KEYFILE")]
        file: PathBuf,
    },
    /// Print the key id of a public (.pub) or secret (.key) key file.
    Id {
        #[arg(value_name = "KEYFILE")]
        file: PathBuf,
    },
}

pub(super) fn run(cmd: KeyCommand) -> anyhow::Result<()> {
    match cmd {
        KeyCommand::Gen { out } => {
            let key = SecretKey::generate()?;
            let (sk, pk) = write_keypair(&out, &key)?;
            eprintln!("wrote {} (secret, 0600) and {}", sk.display(), pk.display());
            println!("{}", key.key_id().to_hex());
        }
        KeyCommand::PeerId { file } => {
            let key = read_secret_key(&file)?;
            let kp = upswarm_net::identity::Keypair::ed25519_from_bytes(*key.seed())
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            println!("{}", kp.public().to_peer_id());
        }
        KeyCommand::Id { file } => {
            let id = match read_public_key(&file) {
                Ok(pk) => pk.key_id(),
                Err(_) => read_secret_key(&file)
                    .with_context(|| format!("{}: not a key file", file.display()))?
                    .key_id(),
            };
            println!("{}", id.to_hex());
        }
    }
    Ok(())
}
