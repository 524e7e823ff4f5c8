//! Sandbox and container stores: an in-memory index of records, each record
//! checkpointed to its own JSON file so every object recovers (or fails to)
//! on its own after a crash.

mod checkpoint;
pub(crate) mod container;
pub(crate) mod names;
pub(crate) mod proto_field;
pub(crate) mod sandbox;

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

pub(crate) use checkpoint::write_atomic;

/// A record kept in a [`Store`]: serialisable, with a stable id.
pub(crate) trait Record:
    Serialize + DeserializeOwned + Clone + Send + Sync + 'static
{
    /// What the record is, for messages (`pod sandbox`, `container`).
    const KIND: &'static str;
    /// The checkpoint file's name inside the object's directory.
    const FILE: &'static str;
    /// The record's full id.
    fn id(&self) -> &str;
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    /// No object has this id or id prefix.
    #[error("{kind} {id} not found")]
    NotFound {
        /// `pod sandbox` or `container`.
        kind: &'static str,
        /// The id or prefix asked for.
        id: String,
    },
    /// The prefix matches more than one object.
    #[error("{kind} id prefix {prefix} is ambiguous: it matches {first} and {second}")]
    Ambiguous {
        /// `pod sandbox` or `container`.
        kind: &'static str,
        /// The prefix asked for.
        prefix: String,
        /// One match.
        first: String,
        /// Another match.
        second: String,
    },
    /// Reading or writing a checkpoint failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was attempted.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A checkpoint could not be (de)serialised.
    #[error("checkpoint {path}: {source}")]
    Json {
        /// The checkpoint file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

impl From<StoreError> for tonic::Status {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound { .. } => tonic::Status::not_found(err.to_string()),
            StoreError::Ambiguous { .. } => tonic::Status::invalid_argument(err.to_string()),
            StoreError::Io { .. } | StoreError::Json { .. } => {
                tonic::Status::internal(err.to_string())
            }
        }
    }
}

/// One object in a store: its record, and a lock serialising the long
/// operations on it (start, stop, remove) without blocking readers.
pub(crate) struct Entry<T: Record> {
    record: Mutex<T>,
    checkpoint: PathBuf,
    /// Held across the steps of one state-changing operation on this object.
    pub(crate) op: tokio::sync::Mutex<()>,
}

impl<T: Record> Entry<T> {
    fn lock(&self) -> MutexGuard<'_, T> {
        // A panic while holding this lock cannot leave a half-written record:
        // updates are applied to a copy and swapped in whole.
        self.record.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of the current record.
    pub(crate) fn get(&self) -> T {
        self.lock().clone()
    }

    /// Applies `change` to a copy, checkpoints it, then makes it current; on
    /// a checkpoint failure the record is left as it was.
    pub(crate) fn update(&self, change: impl FnOnce(&mut T)) -> Result<T, StoreError> {
        let mut current = self.lock();
        let mut next = current.clone();
        change(&mut next);
        save(&self.checkpoint, &next)?;
        *current = next.clone();
        Ok(next)
    }
}

fn save<T: Record>(path: &Path, record: &T) -> Result<(), StoreError> {
    let json = serde_json::to_vec_pretty(record).map_err(|source| StoreError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    write_atomic(path, &json).map_err(|source| StoreError::Io {
        op: "write",
        path: path.to_path_buf(),
        source,
    })
}

/// An index of records of one kind, checkpointed under `dir/<id>/<FILE>`.
pub(crate) struct Store<T: Record> {
    dir: PathBuf,
    items: RwLock<BTreeMap<String, Arc<Entry<T>>>>,
}

impl<T: Record> Store<T> {
    /// An empty store over `dir` (created 0700 if missing).
    pub(crate) fn open(dir: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let dir = dir.into();
        create_private_dir(&dir)?;
        Ok(Store {
            dir,
            items: RwLock::new(BTreeMap::new()),
        })
    }

    /// The directory that holds the object `id` (its checkpoint and files).
    pub(crate) fn object_dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// Reads every checkpoint under the store's dir into the index. Returns
    /// the directories whose checkpoint could not be read, with the error, so
    /// one broken object does not stop the others from recovering.
    pub(crate) fn load(&self) -> Result<Vec<(PathBuf, StoreError)>, StoreError> {
        let mut broken = Vec::new();
        let entries = std::fs::read_dir(&self.dir).map_err(|source| StoreError::Io {
            op: "read dir",
            path: self.dir.clone(),
            source,
        })?;
        for entry in entries.flatten() {
            let path = entry.path().join(T::FILE);
            match read_record::<T>(&path) {
                Ok(record) => {
                    self.insert(record, path);
                }
                Err(err) => broken.push((entry.path(), err)),
            }
        }
        Ok(broken)
    }

    fn insert(&self, record: T, checkpoint: PathBuf) -> Arc<Entry<T>> {
        let id = record.id().to_string();
        let entry = Arc::new(Entry {
            record: Mutex::new(record),
            checkpoint,
            op: tokio::sync::Mutex::new(()),
        });
        self.write_items().insert(id, entry.clone());
        entry
    }

    /// Creates the object's dir, checkpoints `record` and indexes it.
    pub(crate) fn add(&self, record: T) -> Result<Arc<Entry<T>>, StoreError> {
        let dir = self.object_dir(record.id());
        create_private_dir(&dir)?;
        let checkpoint = dir.join(T::FILE);
        save(&checkpoint, &record)?;
        Ok(self.insert(record, checkpoint))
    }

    /// The object with this full id, or the only one whose id starts with
    /// this prefix.
    pub(crate) fn get(&self, id_or_prefix: &str) -> Result<Arc<Entry<T>>, StoreError> {
        let items = self.read_items();
        let not_found = || StoreError::NotFound {
            kind: T::KIND,
            id: id_or_prefix.to_string(),
        };
        if id_or_prefix.is_empty() {
            return Err(not_found());
        }
        if let Some(entry) = items.get(id_or_prefix) {
            return Ok(entry.clone());
        }
        let mut matches = items
            .range(id_or_prefix.to_string()..)
            .take_while(|(id, _)| id.starts_with(id_or_prefix));
        let (first_id, first) = matches.next().ok_or_else(not_found)?;
        if let Some((second_id, _)) = matches.next() {
            return Err(StoreError::Ambiguous {
                kind: T::KIND,
                prefix: id_or_prefix.to_string(),
                first: first_id.clone(),
                second: second_id.clone(),
            });
        }
        Ok(first.clone())
    }

    /// Copies of every record, ordered by id.
    pub(crate) fn list(&self) -> Vec<T> {
        self.read_items().values().map(|e| e.get()).collect()
    }

    /// What `f` makes of each record it accepts, ordered by id. `f` reads
    /// each record in place, under its lock, so a list RPC builds its answer
    /// without first copying every record whole (a container record holds
    /// kubelet's full config; copying 500 of them was most of ListContainers).
    pub(crate) fn filter_map<R>(&self, mut f: impl FnMut(&T) -> Option<R>) -> Vec<R> {
        let items = self.read_items();
        let mut out = Vec::with_capacity(items.len());
        for entry in items.values() {
            if let Some(r) = f(&entry.lock()) {
                out.push(r);
            }
        }
        out
    }

    /// Every entry, ordered by id.
    pub(crate) fn entries(&self) -> Vec<Arc<Entry<T>>> {
        self.read_items().values().cloned().collect()
    }

    /// Drops the object from the index and deletes its directory (checkpoint
    /// first, so a crash half-way never resurrects a removed object).
    pub(crate) fn remove(&self, id: &str) -> Result<(), StoreError> {
        let dir = self.object_dir(id);
        let checkpoint = dir.join(T::FILE);
        match std::fs::remove_file(&checkpoint) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(StoreError::Io {
                    op: "remove",
                    path: checkpoint,
                    source,
                })
            }
        }
        self.write_items().remove(id);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StoreError::Io {
                op: "remove dir",
                path: dir,
                source,
            }),
        }
    }

    fn read_items(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Entry<T>>>> {
        // Index updates are single map operations; a poisoned lock holds a
        // consistent map.
        self.items.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_items(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<Entry<T>>>> {
        self.items.write().unwrap_or_else(|e| e.into_inner())
    }
}

fn read_record<T: Record>(path: &Path) -> Result<T, StoreError> {
    let data = std::fs::read(path).map_err(|source| StoreError::Io {
        op: "read",
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&data).map_err(|source| StoreError::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// `mkdir -p` with mode 0700 for the directories we create.
pub(crate) fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| StoreError::Io {
            op: "create dir",
            path: dir.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    struct Thing {
        id: String,
        value: u32,
    }

    impl Record for Thing {
        const KIND: &'static str = "thing";
        const FILE: &'static str = "thing.json";
        fn id(&self) -> &str {
            &self.id
        }
    }

    fn thing(id: &str, value: u32) -> Thing {
        Thing {
            id: id.into(),
            value,
        }
    }

    #[test]
    fn prefixes_resolve_when_unambiguous() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::<Thing>::open(tmp.path()).unwrap();
        store.add(thing("abc123", 1)).unwrap();
        store.add(thing("abd456", 2)).unwrap();
        store.add(thing("ab", 3)).unwrap();
        assert_eq!(store.get("abc").unwrap().get().value, 1);
        assert_eq!(store.get("abd4").unwrap().get().value, 2);
        // An exact id wins over longer ids it prefixes.
        assert_eq!(store.get("ab").unwrap().get().value, 3);
        let err = store.get("a").err().unwrap();
        assert!(matches!(err, StoreError::Ambiguous { .. }), "{err}");
        assert!(matches!(
            store.get("x").err().unwrap(),
            StoreError::NotFound { .. }
        ));
        assert!(matches!(
            store.get("").err().unwrap(),
            StoreError::NotFound { .. }
        ));
    }

    #[test]
    fn checkpoints_survive_a_reload_and_removal_is_durable() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let store = Store::<Thing>::open(tmp.path()).unwrap();
            let e = store.add(thing("one", 1)).unwrap();
            e.update(|t| t.value = 10).unwrap();
            store.add(thing("two", 2)).unwrap();
            store.remove("two").unwrap();
            assert!(!tmp.path().join("two").exists());
        }
        std::fs::create_dir(tmp.path().join("broken")).unwrap();
        std::fs::write(tmp.path().join("broken/thing.json"), b"{not json").unwrap();
        let store = Store::<Thing>::open(tmp.path()).unwrap();
        let broken = store.load().unwrap();
        assert_eq!(broken.len(), 1);
        assert!(broken[0].0.ends_with("broken"));
        assert_eq!(store.list(), vec![thing("one", 10)]);
    }

    #[test]
    fn filter_map_sees_current_records_in_id_order() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::<Thing>::open(tmp.path()).unwrap();
        store.add(thing("b", 2)).unwrap();
        store.add(thing("a", 1)).unwrap();
        store
            .add(thing("c", 3))
            .unwrap()
            .update(|t| t.value = 30)
            .unwrap();
        let odd_or_big =
            store.filter_map(|t| (t.value % 2 == 1 || t.value > 10).then(|| t.id.clone()));
        assert_eq!(odd_or_big, vec!["a", "c"]);
        assert_eq!(store.filter_map(|t| Some(t.value)), vec![1, 2, 30]);
    }

    #[test]
    fn a_failed_checkpoint_leaves_the_record_unchanged() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::<Thing>::open(tmp.path()).unwrap();
        let e = store.add(thing("one", 1)).unwrap();
        std::fs::remove_dir_all(tmp.path().join("one")).unwrap();
        assert!(e.update(|t| t.value = 2).is_err());
        assert_eq!(e.get().value, 1);
    }
}
