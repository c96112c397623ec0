//! # upswarm-store — the daemon's small durable metadata
//!
//! A thin typed layer over sled: named trees whose values are CBOR-encoded serde types.
//! It holds small things only — known releases, download progress, peer faults, the apply
//! journal, health reports and votes. Artifact and chunk bytes live as files
//! (`upswarm-content`), never here.
//!
//! Goals: a corrupt or unreadable value is an error naming the tree and key, never a panic;
//! writes that must survive a crash are followed by [`Db::flush`].
//!
//! Non-goals: queries, secondary indexes, transactions across trees beyond what sled gives.

use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Largest value we agree to decode from our own database.
const MAX_VALUE_BYTES: usize = 16 * 1024 * 1024;

/// Errors of the metadata store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("state database at {path}: {source}")]
    Open { path: PathBuf, source: sled::Error },

    #[error("state database: {op} in tree `{tree}`: {source}")]
    Sled {
        op: &'static str,
        tree: &'static str,
        source: sled::Error,
    },

    #[error("state database: value for key {key} in tree `{tree}` is unreadable: {detail}")]
    Corrupt {
        tree: &'static str,
        key: String,
        detail: String,
    },
}

/// The state database of one daemon.
#[derive(Debug, Clone)]
pub struct Db {
    db: sled::Db,
}

impl Db {
    /// Opens (creating if needed) the database in directory `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(8 * 1024 * 1024)
            .flush_every_ms(Some(500))
            .open()
            .map_err(|source| StoreError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Db { db })
    }

    /// A typed view of the tree `name`.
    pub fn tree<V: Serialize + DeserializeOwned>(
        &self,
        name: &'static str,
    ) -> Result<Tree<V>, StoreError> {
        let tree = self.db.open_tree(name).map_err(|source| StoreError::Sled {
            op: "open",
            tree: name,
            source,
        })?;
        Ok(Tree {
            tree,
            name,
            _v: PhantomData,
        })
    }

    /// Makes every write so far durable.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map_err(|source| StoreError::Sled {
            op: "flush",
            tree: "*",
            source,
        })?;
        Ok(())
    }
}

/// A sled tree whose values are `V`, CBOR-encoded. Keys are raw bytes; big-endian integers
/// sort numerically.
#[derive(Debug, Clone)]
pub struct Tree<V> {
    tree: sled::Tree,
    name: &'static str,
    _v: PhantomData<fn() -> V>,
}

impl<V: Serialize + DeserializeOwned> Tree<V> {
    fn decode(&self, key: &[u8], bytes: &[u8]) -> Result<V, StoreError> {
        upswarm_proto::codec::decode("stored value", bytes, MAX_VALUE_BYTES).map_err(|e| {
            StoreError::Corrupt {
                tree: self.name,
                key: hex::encode(key),
                detail: e.to_string(),
            }
        })
    }

    /// The value at `key`.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<V>, StoreError> {
        let key = key.as_ref();
        match self.tree.get(key).map_err(|source| StoreError::Sled {
            op: "get",
            tree: self.name,
            source,
        })? {
            None => Ok(None),
            Some(bytes) => self.decode(key, &bytes).map(Some),
        }
    }

    /// Sets `key` to `value`.
    pub fn put(&self, key: impl AsRef<[u8]>, value: &V) -> Result<(), StoreError> {
        let bytes = upswarm_proto::codec::encode(value);
        self.tree
            .insert(key.as_ref(), bytes)
            .map_err(|source| StoreError::Sled {
                op: "put",
                tree: self.name,
                source,
            })?;
        Ok(())
    }

    /// Removes `key`; returns whether it was there.
    pub fn remove(&self, key: impl AsRef<[u8]>) -> Result<bool, StoreError> {
        let old = self
            .tree
            .remove(key.as_ref())
            .map_err(|source| StoreError::Sled {
                op: "remove",
                tree: self.name,
                source,
            })?;
        Ok(old.is_some())
    }

    /// Whether `key` is present.
    pub fn contains(&self, key: impl AsRef<[u8]>) -> Result<bool, StoreError> {
        self.tree
            .contains_key(key.as_ref())
            .map_err(|source| StoreError::Sled {
                op: "get",
                tree: self.name,
                source,
            })
    }

    /// Every entry in key order.
    pub fn iter(&self) -> impl Iterator<Item = Result<(Vec<u8>, V), StoreError>> + '_ {
        self.tree.iter().map(move |item| {
            let (k, v) = item.map_err(|source| StoreError::Sled {
                op: "iterate",
                tree: self.name,
                source,
            })?;
            let value = self.decode(&k, &v)?;
            Ok((k.to_vec(), value))
        })
    }

    /// Entries whose key starts with `prefix`, in key order.
    pub fn scan_prefix(
        &self,
        prefix: impl AsRef<[u8]>,
    ) -> impl Iterator<Item = Result<(Vec<u8>, V), StoreError>> + '_ {
        self.tree.scan_prefix(prefix.as_ref()).map(move |item| {
            let (k, v) = item.map_err(|source| StoreError::Sled {
                op: "iterate",
                tree: self.name,
                source,
            })?;
            let value = self.decode(&k, &v)?;
            Ok((k.to_vec(), value))
        })
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.tree.len()
    }

    /// Whether the tree is empty.
    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }

    /// Removes every entry.
    pub fn clear(&self) -> Result<(), StoreError> {
        self.tree.clear().map_err(|source| StoreError::Sled {
            op: "clear",
            tree: self.name,
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, serde::Deserialize)]
    struct Progress {
        done: Vec<u32>,
    }

    #[test]
    fn typed_roundtrip_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = Db::open(dir.path()).unwrap();
            let t: Tree<Progress> = db.tree("progress").unwrap();
            t.put(b"rel", &Progress { done: vec![1, 2] }).unwrap();
            db.flush().unwrap();
        }
        let db = Db::open(dir.path()).unwrap();
        let t: Tree<Progress> = db.tree("progress").unwrap();
        assert_eq!(t.get(b"rel").unwrap(), Some(Progress { done: vec![1, 2] }));
        assert_eq!(t.iter().count(), 1);
    }

    #[test]
    fn corrupt_value_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let raw: Tree<Vec<u8>> = db.tree("t").unwrap();
        raw.tree.insert(b"k", &[0xff, 0x00][..]).unwrap();
        let typed: Tree<Progress> = db.tree("t").unwrap();
        let err = typed.get(b"k").unwrap_err();
        assert!(
            matches!(err, StoreError::Corrupt { tree: "t", .. }),
            "{err}"
        );
    }
}
