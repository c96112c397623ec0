//! A small client for the daemon's control API, used by the CLI commands.
//!
//! Owns the HTTP calls and the reading of the token file. It must not import daemon internals
//! (`crate::daemon::…`): its types come from `crate::api`. It reads the token, and sends it, only
//! for POST calls (those that change the node).

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::ApiError;

/// Where the API is, and the token for mutating calls.
#[derive(Debug, clap::Args)]
pub struct ApiArgs {
    /// Address of the daemon's control API.
    #[arg(
        long,
        value_name = "ADDR",
        env = "UPSWARM_API",
        default_value = "127.0.0.1:7780"
    )]
    pub api: String,
    /// File holding the API token (the daemon writes it to <data_dir>/api.token); needed for
    /// calls that change the node.
    #[arg(long, value_name = "FILE", env = "UPSWARM_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
}

/// A blocking-free client over reqwest.
#[derive(Debug)]
pub struct ApiClient {
    base: String,
    /// Read only by calls that change the node: a command that only reads (`status`)
    /// works whatever `--token-file` names.
    token_file: Option<PathBuf>,
    http: reqwest::Client,
}

impl ApiClient {
    pub fn new(args: &ApiArgs) -> anyhow::Result<Self> {
        let base = if args.api.starts_with("http://") {
            args.api.clone()
        } else {
            format!("http://{}", args.api)
        };
        Ok(ApiClient {
            base,
            token_file: args.token_file.clone(),
            http: crate::http::local_client(None)?,
        })
    }

    fn token(&self) -> anyhow::Result<Option<String>> {
        let Some(p) = &self.token_file else {
            return Ok(None);
        };
        let t = std::fs::read_to_string(p).with_context(|| {
            format!(
                "{}: cannot read the API token (--token-file names the daemon's <data_dir>/api.token)",
                p.display()
            )
        })?;
        Ok(Some(t.trim().to_string()))
    }

    async fn handle<T: DeserializeOwned>(
        &self,
        path: &str,
        resp: reqwest::Response,
    ) -> anyhow::Result<T> {
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .with_context(|| format!("{}{path}: reading the answer", self.base))?;
        if !status.is_success() {
            let msg = serde_json::from_slice::<ApiError>(&bytes)
                .map(|e| e.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
            bail!("the daemon at {} refused: {msg} (HTTP {status})", self.base);
        }
        serde_json::from_slice(&bytes)
            .with_context(|| format!("{}{path}: unexpected answer", self.base))
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .with_context(|| {
                format!(
                    "cannot reach the daemon's API at {} (is `upswarm daemon` running?)",
                    self.base
                )
            })?;
        self.handle(path, resp).await
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let mut req = self.http.post(format!("{}{path}", self.base)).json(body);
        if let Some(t) = self.token()? {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.with_context(|| {
            format!(
                "cannot reach the daemon's API at {} (is `upswarm daemon` running?)",
                self.base
            )
        })?;
        self.handle(path, resp).await
    }
}

/// Runs an async CLI command on a fresh runtime.
pub fn block_on<F: std::future::Future<Output = anyhow::Result<()>>>(f: F) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(f)
}
