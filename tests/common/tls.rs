//! A test certificate authority and an HTTPS server on loopback that records the JSON
//! bodies POSTed to it: a real TLS listener (rustls) for the daemon's outbound HTTPS.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::Value;

/// A CA (its certificate written as PEM to `ca_pem`) and a server certificate it signed for
/// `localhost` and 127.0.0.1.
pub struct TestCa {
    pub ca_pem: PathBuf,
    server_chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    server_key: rustls::pki_types::PrivateKeyDer<'static>,
}

impl TestCa {
    pub fn new(dir: &Path) -> Self {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "upswarm test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .unwrap();
        let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
        let ca_pem = dir.join("test-ca.pem");
        std::fs::write(&ca_pem, ca.pem()).unwrap();
        TestCa {
            ca_pem,
            server_chain: vec![cert.der().clone()],
            server_key: rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        }
    }
}

/// An HTTPS server recording the JSON bodies POSTed to it, and how many TLS handshakes
/// failed (a client that did not trust its certificate).
pub struct TlsHookSink {
    pub port: u16,
    pub bodies: Arc<Mutex<Vec<Value>>>,
    pub failed_handshakes: Arc<Mutex<u32>>,
}

impl TlsHookSink {
    pub fn start(ca: &TestCa) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = Arc::new(
            rustls::ServerConfig::builder()
                .with_no_client_auth()
                .with_single_cert(ca.server_chain.clone(), ca.server_key.clone_key())
                .unwrap(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let failed = Arc::new(Mutex::new(0));
        let (b, f) = (bodies.clone(), failed.clone());
        std::thread::spawn(move || {
            for tcp in listener.incoming().flatten() {
                let Ok(conn) = rustls::ServerConnection::new(config.clone()) else {
                    continue;
                };
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                let mut reader = BufReader::new(&mut tls);
                let mut len = 0usize;
                let mut line = String::new();
                let mut ok = false;
                loop {
                    line.clear();
                    match reader.read_line(&mut line) {
                        Ok(0) | Err(_) => break,
                        Ok(_) if line == "\r\n" => {
                            ok = true;
                            break;
                        }
                        Ok(_) => {
                            if let Some(v) =
                                line.to_ascii_lowercase().strip_prefix("content-length:")
                            {
                                len = v.trim().parse().unwrap_or(0);
                            }
                        }
                    }
                }
                if !ok {
                    *f.lock().unwrap() += 1;
                    continue;
                }
                let mut body = vec![0u8; len];
                if reader.read_exact(&mut body).is_ok()
                    && let Ok(v) = serde_json::from_slice::<Value>(&body)
                {
                    b.lock().unwrap().push(v);
                }
                let _ = tls.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
                tls.conn.send_close_notify();
                let _ = tls.flush();
            }
        });
        TlsHookSink {
            port,
            bodies,
            failed_handshakes: failed,
        }
    }

    /// Events received, with the node id that sent each.
    pub fn events(&self) -> Vec<(String, String)> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .map(|v| {
                (
                    v["event"].as_str().unwrap_or("").to_string(),
                    v["node_id"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }
}

/// What a [`TlsFileServer`] answered with content: (path, range asked for, bytes sent).
pub type Served = Arc<Mutex<Vec<(String, Option<String>, u64)>>>;

/// A static HTTPS file server (the mirror a test release names): `GET /PATH` serves the
/// file `root/PATH`, whole (200) or one byte range (`Range: bytes=A-B` → 206 with
/// `Content-Range`). It can be told to corrupt the bytes it serves at one offset of every
/// file, and counts what it served.
pub struct TlsFileServer {
    pub port: u16,
    /// Serve the byte at this file offset flipped, in every answer that covers it.
    pub corrupt_at: Arc<Mutex<Option<u64>>>,
    /// Answers that carried a corrupted byte.
    pub corrupted: Arc<Mutex<u32>>,
    /// Requests answered with content: (path, range asked for, bytes sent).
    pub served: Served,
}

impl TlsFileServer {
    pub fn start(ca: &TestCa, root: &Path) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = Arc::new(
            rustls::ServerConfig::builder()
                .with_no_client_auth()
                .with_single_cert(ca.server_chain.clone(), ca.server_key.clone_key())
                .unwrap(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let corrupt_at: Arc<Mutex<Option<u64>>> = Arc::default();
        let corrupted: Arc<Mutex<u32>> = Arc::default();
        let served: Served = Arc::default();
        let (c, n, s, root) = (
            corrupt_at.clone(),
            corrupted.clone(),
            served.clone(),
            root.to_path_buf(),
        );
        std::thread::spawn(move || {
            for tcp in listener.incoming().flatten() {
                let (config, c, n, s, root) = (
                    config.clone(),
                    c.clone(),
                    n.clone(),
                    s.clone(),
                    root.clone(),
                );
                std::thread::spawn(move || {
                    let Ok(conn) = rustls::ServerConnection::new(config) else {
                        return;
                    };
                    let mut tls = rustls::StreamOwned::new(conn, tcp);
                    serve_one(&mut tls, &root, &c, &n, &s);
                    tls.conn.send_close_notify();
                    let _ = tls.flush();
                });
            }
        });
        TlsFileServer {
            port,
            corrupt_at,
            corrupted,
            served,
        }
    }

    /// Bytes sent for `path` (`/…`).
    pub fn bytes_served(&self, path: &str) -> u64 {
        self.served
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _, _)| p == path)
            .map(|(_, _, n)| n)
            .sum()
    }
}

fn serve_one(
    tls: &mut (impl Read + Write),
    root: &Path,
    corrupt_at: &Mutex<Option<u64>>,
    corrupted: &Mutex<u32>,
    served: &Mutex<Vec<(String, Option<String>, u64)>>,
) {
    let mut reader = BufReader::new(&mut *tls);
    let mut request = String::new();
    if reader.read_line(&mut request).unwrap_or(0) == 0 {
        return;
    }
    let mut range: Option<String> = None;
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) if line == "\r\n" => break,
            Ok(_) => {
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("range:") {
                    range = Some(v.trim().to_string());
                }
            }
        }
    }
    drop(reader);
    let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
    let file = root.join(path.trim_start_matches('/'));
    let Ok(data) = std::fs::read(&file) else {
        let _ = tls
            .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        return;
    };
    let len = data.len() as u64;
    let span = range.as_deref().and_then(|r| {
        let (a, b) = r.strip_prefix("bytes=")?.split_once('-')?;
        let a: u64 = a.parse().ok()?;
        let b: u64 = if b.is_empty() {
            len - 1
        } else {
            b.parse().ok()?
        };
        (a <= b && b < len).then_some((a, b))
    });
    let (start, end, head) = match (range.is_some(), span) {
        (true, None) => {
            let _ = tls.write_all(
                format!("HTTP/1.1 416 Range Not Satisfiable\r\ncontent-range: bytes */{len}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").as_bytes(),
            );
            return;
        }
        (true, Some((a, b))) => (
            a,
            b,
            format!(
                "HTTP/1.1 206 Partial Content\r\ncontent-range: bytes {a}-{b}/{len}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                b - a + 1
            ),
        ),
        (false, _) => (
            0,
            len.saturating_sub(1),
            format!("HTTP/1.1 200 OK\r\ncontent-length: {len}\r\nconnection: close\r\n\r\n"),
        ),
    };
    let mut body = if len == 0 {
        Vec::new()
    } else {
        data[start as usize..=end as usize].to_vec()
    };
    if let Some(at) = *corrupt_at.lock().unwrap()
        && (start..=end).contains(&at)
        && len > 0
    {
        body[(at - start) as usize] ^= 0x5a;
        *corrupted.lock().unwrap() += 1;
    }
    served
        .lock()
        .unwrap()
        .push((path, range, body.len() as u64));
    let _ = tls.write_all(head.as_bytes());
    let _ = tls.write_all(&body);
}
