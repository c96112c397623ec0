//! Signed messages the node has accepted (health reports, control messages, votes,
//! proposals), kept so they can be handed to peers that missed their gossip.
//!
//! Owns the sled tree `signed` and its in-memory copy, at most 16 384 messages per (kind, subject).
//! It checks nothing itself: only the core inserts, messages it has verified or signed; and it
//! never holds its lock across a sled write.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use serde_bytes::ByteBuf;
use upswarm_proto::Hash32;
use upswarm_proto::fetch::{MAX_RESPONSE_BYTES, MAX_SIGNED_PER_ANSWER, SignedKind};
use upswarm_store::Tree;

/// Most messages kept per (kind, subject); beyond it the oldest-hash entries are dropped.
const MAX_PER_SUBJECT: usize = 16_384;

type Subject = (SignedKind, Hash32);

/// Accepted signed envelopes by kind and subject (release id or proposal id). The core
/// inserts after validating; the seeder reads to answer `Want::Signed`.
#[derive(Debug)]
pub struct SignedStore {
    tree: Tree<ByteBuf>,
    map: Mutex<HashMap<Subject, BTreeMap<Hash32, Vec<u8>>>>,
}

fn kind_byte(k: SignedKind) -> u8 {
    match k {
        SignedKind::Health => 1,
        SignedKind::Control => 2,
        SignedKind::Vote => 3,
        SignedKind::Proposal => 4,
        SignedKind::Root => 5,
    }
}

fn kind_of(b: u8) -> Option<SignedKind> {
    Some(match b {
        1 => SignedKind::Health,
        2 => SignedKind::Control,
        3 => SignedKind::Vote,
        4 => SignedKind::Proposal,
        5 => SignedKind::Root,
        _ => return None,
    })
}

impl SignedStore {
    /// Loads what earlier runs accepted.
    pub fn load(tree: Tree<ByteBuf>) -> Self {
        let mut map: HashMap<Subject, BTreeMap<Hash32, Vec<u8>>> = HashMap::new();
        for (k, v) in tree.iter().flatten() {
            if k.len() != 65 {
                continue;
            }
            let (Some(kind), Ok(about), Ok(id)) = (
                kind_of(k[0]),
                Hash32::from_slice(&k[1..33]),
                Hash32::from_slice(&k[33..]),
            ) else {
                continue;
            };
            map.entry((kind, about))
                .or_default()
                .insert(id, v.into_vec());
        }
        SignedStore {
            tree,
            map: Mutex::new(map),
        }
    }

    /// Everything stored, for the core to rebuild its views at start.
    pub fn all(&self) -> Vec<(SignedKind, Hash32, Vec<u8>)> {
        let Ok(m) = self.map.lock() else {
            return Vec::new();
        };
        m.iter()
            .flat_map(|((k, a), v)| v.values().map(move |b| (*k, *a, b.clone())))
            .collect()
    }

    /// Stores a validated envelope; returns whether it was new.
    pub fn insert(&self, kind: SignedKind, about: Hash32, bytes: &[u8]) -> bool {
        let id = Hash32::of(bytes);
        let Ok(mut m) = self.map.lock() else {
            return false;
        };
        let entry = m.entry((kind, about)).or_default();
        if entry.contains_key(&id) || entry.len() >= MAX_PER_SUBJECT {
            return false;
        }
        entry.insert(id, bytes.to_vec());
        drop(m);
        let mut key = Vec::with_capacity(65);
        key.push(kind_byte(kind));
        key.extend_from_slice(about.as_bytes());
        key.extend_from_slice(id.as_bytes());
        if let Err(e) = self.tree.put(key, &ByteBuf::from(bytes.to_vec())) {
            tracing::warn!("cannot persist a signed message: {e}");
        }
        true
    }

    /// Drops every envelope of one subject (garbage collection of a removed release's
    /// health reports); returns how many. `dry_run`: only counts.
    pub fn remove_subject(&self, kind: SignedKind, about: &Hash32, dry_run: bool) -> u64 {
        let Ok(mut m) = self.map.lock() else {
            return 0;
        };
        let n = m.get(&(kind, *about)).map_or(0, BTreeMap::len) as u64;
        if dry_run || n == 0 {
            return n;
        }
        let gone = m.remove(&(kind, *about)).unwrap_or_default();
        drop(m);
        for id in gone.keys() {
            let mut key = Vec::with_capacity(65);
            key.push(kind_byte(kind));
            key.extend_from_slice(about.as_bytes());
            key.extend_from_slice(id.as_bytes());
            if let Err(e) = self.tree.remove(key) {
                tracing::warn!("cannot remove a signed message: {e}");
            }
        }
        n
    }

    /// Envelopes for one subject, bounded to fit one fetch response.
    pub fn list(&self, kind: SignedKind, about: &Hash32) -> Vec<Vec<u8>> {
        let Ok(m) = self.map.lock() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut bytes = 0usize;
        if let Some(v) = m.get(&(kind, *about)) {
            for b in v.values() {
                if out.len() == MAX_SIGNED_PER_ANSWER
                    || bytes + b.len() + 16 > MAX_RESPONSE_BYTES / 2
                {
                    break;
                }
                bytes += b.len() + 16;
                out.push(b.clone());
            }
        }
        out
    }
}
