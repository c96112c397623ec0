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

/// The tree recording the database's value format.
const META_TREE: &str = "__upswarm_meta";
const FORMAT_KEY: &[u8] = b"value_format";
/// 2: canonical CBOR (1, before it: whatever serde wrote).
const VALUE_FORMAT: u8 = 2;

/// Byte-string map keys become lowercase hex text (the canonical form has text keys only).
fn text_keys(v: &mut ciborium::Value) {
    match v {
        ciborium::Value::Array(items) => items.iter_mut().for_each(text_keys),
        ciborium::Value::Map(entries) => {
            for (k, val) in entries.iter_mut() {
                if let ciborium::Value::Bytes(b) = k {
                    *k = ciborium::Value::Text(hex::encode(b));
                }
                text_keys(val);
            }
        }
        ciborium::Value::Tag(_, inner) => text_keys(inner),
        _ => {}
    }
}

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
        let db = Db { db };
        db.migrate()?;
        Ok(db)
    }

    /// Brings a database written by an earlier build up to canonical CBOR values (the only
    /// form [`Tree`] reads back; `docs/wire-format.md` §1), once: every value that is not
    /// canonical but is readable CBOR is rewritten with its map keys in canonical order and
    /// byte-string map keys (32-byte ids) turned into lowercase hex text. Values that are
    /// not CBOR at all are left alone, to be reported by whoever reads them.
    fn migrate(&self) -> Result<(), StoreError> {
        let meta = self
            .db
            .open_tree(META_TREE)
            .map_err(|source| StoreError::Sled {
                op: "open",
                tree: META_TREE,
                source,
            })?;
        let done = meta
            .get(FORMAT_KEY)
            .ok()
            .flatten()
            .is_some_and(|v| v.as_ref() == [VALUE_FORMAT]);
        if done {
            return Ok(());
        }
        for name in self.db.tree_names() {
            if name.as_ref() == META_TREE.as_bytes() || name.as_ref() == b"__sled__default" {
                continue;
            }
            let tree = self
                .db
                .open_tree(&name)
                .map_err(|source| StoreError::Sled {
                    op: "open",
                    tree: "*",
                    source,
                })?;
            for (k, v) in tree.iter().flatten() {
                if upswarm_proto::codec::check_canonical("stored value", &v).is_ok() {
                    continue;
                }
                let Ok(mut value) = ciborium::from_reader::<ciborium::Value, _>(v.as_ref()) else {
                    continue;
                };
                text_keys(&mut value);
                let bytes = upswarm_proto::codec::encode(&value);
                tree.insert(k, bytes).map_err(|source| StoreError::Sled {
                    op: "put",
                    tree: "*",
                    source,
                })?;
            }
        }
        meta.insert(FORMAT_KEY, &[VALUE_FORMAT])
            .map_err(|source| StoreError::Sled {
                op: "put",
                tree: META_TREE,
                source,
            })?;
        self.flush()
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
    fn values_written_by_an_earlier_build_are_migrated_to_canonical_form() {
        use std::collections::BTreeMap;
        #[derive(Debug, PartialEq, Serialize, serde::Deserialize)]
        struct Record {
            zeta: u32,
            alpha: Option<String>,
            #[serde(with = "upswarm_proto::ids::hex_keys")]
            by_id: BTreeMap<upswarm_proto::Hash32, u32>,
        }
        let dir = tempfile::tempdir().unwrap();
        // As an earlier build wrote it: fields in declaration order, a byte-string key.
        let mut old = Vec::new();
        let value = ciborium::Value::Map(vec![
            (
                ciborium::Value::Text("zeta".into()),
                ciborium::Value::Integer(7.into()),
            ),
            (ciborium::Value::Text("alpha".into()), ciborium::Value::Null),
            (
                ciborium::Value::Text("by_id".into()),
                ciborium::Value::Map(vec![(
                    ciborium::Value::Bytes(vec![9; 32]),
                    ciborium::Value::Integer(1.into()),
                )]),
            ),
        ]);
        ciborium::into_writer(&value, &mut old).unwrap();
        assert!(upswarm_proto::codec::check_canonical("old", &old).is_err());
        {
            let db = sled::open(dir.path()).unwrap();
            db.open_tree("records").unwrap().insert(b"k", old).unwrap();
            db.flush().unwrap();
        }
        let db = Db::open(dir.path()).unwrap();
        let t: Tree<Record> = db.tree("records").unwrap();
        let got = t.get(b"k").unwrap().unwrap();
        assert_eq!(got.zeta, 7);
        assert_eq!(got.alpha, None);
        assert_eq!(got.by_id[&upswarm_proto::Hash32([9; 32])], 1);
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
