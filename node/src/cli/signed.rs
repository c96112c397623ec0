//! Co-signing and publishing signed message files (control messages, proposals, roots):
//! the same steps whatever the message.
//!
//! It must not import daemon internals (`crate::daemon::…`): publishing is one POST to the control
//! API. `sign_file` only adds a signature and rewrites the file atomically; it never removes one or
//! re-encodes the payload.

use std::path::Path;

use upswarm_proto::{Message, SignedEnvelope};
use upswarm_trust::read_secret_key;

use super::client::{ApiArgs, ApiClient};
use crate::api::ControlRequest;
use crate::files::{read_signed, write_atomic};

/// Adds one signature by `key` to the `M` in `file`, in place. `describe` names the message
/// for the report.
pub(super) fn sign_file<M: Message>(
    key: &Path,
    file: &Path,
    describe: impl Fn(&M) -> String,
) -> anyhow::Result<()> {
    let key = read_secret_key(key)?;
    let (mut env, msg) = read_signed::<M>(file)?;
    if key.sign_envelope(M::CONTEXT, &mut env) {
        write_atomic(file, &env.encode())?;
        println!(
            "signed {} with key {} ({} signature(s) now)",
            describe(&msg),
            key.key_id(),
            env.sigs.len()
        );
    } else {
        println!(
            "{} is already signed by key {}; nothing added",
            file.display(),
            key.key_id()
        );
    }
    Ok(())
}

/// POSTs a signed envelope to the daemon endpoint `path`; returns the daemon's answer.
pub(super) async fn publish(
    api: &ApiArgs,
    path: &str,
    env: &SignedEnvelope,
) -> anyhow::Result<serde_json::Value> {
    let body = ControlRequest {
        envelope_hex: hex::encode(env.encode()),
    };
    ApiClient::new(api)?.post(path, &body).await
}
