//! Outbound HTTP(S): how every client the daemon uses for webhooks and health probes is
//! built.
//!
//! TLS is rustls with the *ring* crypto provider (the one libp2p's QUIC already brings)
//! and the platform's certificate verifier (the system's trusted roots), plus the extra
//! roots an operator names in `tls.extra_ca_file`. The extra roots are configured once at
//! daemon start ([`configure`]) and apply to every client made after it; like the crypto
//! provider, this is process-wide TLS configuration, not state of any task.
//!
//! A system without CA certificates (a minimal container without `ca-certificates`) still
//! gets working clients: plain `http://` works, and `https://` is verified against the extra
//! roots alone (none: every certificate is refused), with a warning at the first client.
//! The CLI's client of the local control API never loads roots ([`local_client`]).
//!
//! Non-goals: no client certificates, no disabling of verification.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

/// Extra trusted roots, set once at start.
static EXTRA_ROOTS: OnceLock<Vec<reqwest::Certificate>> = OnceLock::new();

/// Why the TLS configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a PEM file of certificates: {reason}")]
    Pem { path: String, reason: String },
    #[error("{path}: holds no certificate")]
    Empty { path: String },
    #[error("building an HTTP client: {0}")]
    Client(String),
}

/// Reads a PEM bundle of root certificates.
pub fn load_roots(path: &Path) -> Result<Vec<reqwest::Certificate>, TlsError> {
    let shown = path.display().to_string();
    let pem = std::fs::read(path).map_err(|source| TlsError::Read {
        path: shown.clone(),
        source,
    })?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| TlsError::Pem {
        path: shown.clone(),
        reason: e.to_string(),
    })?;
    if certs.is_empty() {
        return Err(TlsError::Empty { path: shown });
    }
    Ok(certs)
}

/// Makes *ring* the process's TLS crypto provider (every HTTP client needs one). Idempotent;
/// `main` calls it first thing.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Installs the crypto provider and the extra roots (from `extra_ca_file`, if any). Call
/// once, before the first client is built; later calls change nothing.
pub fn configure(extra_ca_file: Option<&Path>) -> Result<(), TlsError> {
    install_crypto_provider();
    let roots = match extra_ca_file {
        Some(p) => load_roots(p)?,
        None => Vec::new(),
    };
    let _ = EXTRA_ROOTS.set(roots);
    Ok(())
}

/// A client for outbound requests, with `timeout` per request, verifying TLS against the
/// system's roots and the configured extra ones — or, where the system has no usable roots,
/// against the extra ones alone (see the module's documentation).
pub fn client(timeout: Duration) -> Result<reqwest::Client, TlsError> {
    install_crypto_provider();
    let extra = EXTRA_ROOTS.get().cloned().unwrap_or_default();
    let mut b = reqwest::Client::builder().timeout(timeout);
    if !extra.is_empty() {
        b = b.tls_certs_merge(extra.iter().cloned());
    }
    match b.build() {
        Ok(c) => Ok(c),
        Err(system) => {
            static WARNED: OnceLock<()> = OnceLock::new();
            if WARNED.set(()).is_ok() {
                tracing::warn!(
                    error = %system,
                    extra_roots = extra.len(),
                    "the system's trusted CA certificates cannot be loaded (install the \
                     ca-certificates package, or name roots in tls.extra_ca_file): https:// \
                     URLs are verified against tls.extra_ca_file only"
                );
            }
            reqwest::Client::builder()
                .timeout(timeout)
                .tls_certs_only(extra)
                .build()
                .map_err(|e| TlsError::Client(e.to_string()))
        }
    }
}

/// A client for the local control API, which is plain HTTP: it loads no trusted roots, so
/// it works on any system.
pub fn local_client(timeout: Option<Duration>) -> Result<reqwest::Client, TlsError> {
    install_crypto_provider();
    let mut b = reqwest::Client::builder().tls_certs_only([]);
    if let Some(t) = timeout {
        b = b.timeout(t);
    }
    b.build().map_err(|e| TlsError::Client(e.to_string()))
}
