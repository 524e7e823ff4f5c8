//! The result cache: what ADD used and produced, kept on disk so DEL and CHECK
//! use the same config and `prevResult` after the conf dir changed or criad
//! restarted (libcni keeps a cache for the same reason).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{CniError, Result};
use crate::runtime_conf::CapabilityArgs;

const KIND: &str = "cria-cni-cache-v1";

/// One attachment's cache record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CacheEntry {
    /// Format marker, so a foreign or future file is refused rather than misread.
    pub kind: String,
    /// The container (sandbox) id.
    pub container_id: String,
    /// The interface name.
    pub if_name: String,
    /// The network config list ADD ran, as JSON.
    pub config: Value,
    /// The CNI_ARGS pairs ADD passed.
    pub cni_args: Vec<(String, String)>,
    /// The capability arguments ADD passed.
    pub capability_args: CapabilityArgs,
    /// The final ADD result as the last plugin printed it; `None` until ADD succeeded.
    pub result: Option<Value>,
}

impl CacheEntry {
    /// A new record for an ADD about to run.
    pub fn new(
        container_id: &str,
        if_name: &str,
        config: Value,
        cni_args: Vec<(String, String)>,
        capability_args: CapabilityArgs,
    ) -> Self {
        Self {
            kind: KIND.to_string(),
            container_id: container_id.to_string(),
            if_name: if_name.to_string(),
            config,
            cni_args,
            capability_args,
            result: None,
        }
    }
}

/// The cache directory, one JSON file per (container id, interface).
#[derive(Debug, Clone)]
pub struct ResultCache {
    dir: PathBuf,
}

impl ResultCache {
    /// A cache in `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The file for an attachment. Callers validated both parts as file-name safe.
    pub fn path(&self, container_id: &str, if_name: &str) -> PathBuf {
        self.dir.join(format!("{container_id}-{if_name}.json"))
    }

    /// Reads an attachment's record, if there is one.
    pub fn load(&self, container_id: &str, if_name: &str) -> Result<Option<CacheEntry>> {
        let path = self.path(container_id, if_name);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(CniError::io("read cni cache", &path)(e)),
        };
        let entry: CacheEntry =
            serde_json::from_slice(&bytes).map_err(|e| CniError::InvalidCache {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        if entry.kind != KIND || entry.container_id != container_id || entry.if_name != if_name {
            return Err(CniError::InvalidCache {
                path,
                reason: format!("not a {KIND} record for {container_id}/{if_name}"),
            });
        }
        Ok(Some(entry))
    }

    /// Writes a record atomically (temp file, fsync, rename, fsync dir), so a
    /// crash leaves the old record or the new one, never a torn file.
    pub fn store(&self, entry: &CacheEntry) -> Result<()> {
        std::fs::create_dir_all(&self.dir)
            .map_err(CniError::io("create cni cache dir", &self.dir))?;
        let path = self.path(&entry.container_id, &entry.if_name);
        let tmp = self
            .dir
            .join(format!(".{}-{}.tmp", entry.container_id, entry.if_name));
        let bytes = serde_json::to_vec(entry).map_err(|e| CniError::InvalidCache {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(&self.dir)?.sync_all()
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            CniError::io("write cni cache", &path)(e)
        })
    }

    /// Removes an attachment's record; a missing record is fine.
    pub fn remove(&self, container_id: &str, if_name: &str) -> Result<()> {
        let path = self.path(container_id, if_name);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(CniError::io("remove cni cache", &path)(e)),
        }
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn store_load_remove() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = ResultCache::new(dir.path().join("cni-cache"));
        assert!(cache.load("abc", "eth0").expect("load").is_none());
        let mut entry = CacheEntry::new(
            "abc",
            "eth0",
            json!({"name": "n"}),
            vec![("A".into(), "1".into())],
            CapabilityArgs::default(),
        );
        entry.result = Some(json!({"cniVersion": "1.0.0"}));
        cache.store(&entry).expect("store");
        assert_eq!(cache.load("abc", "eth0").expect("load"), Some(entry));
        assert!(cache.load("abc", "eth1").expect("load").is_none());
        cache.remove("abc", "eth0").expect("remove");
        cache.remove("abc", "eth0").expect("remove twice");
        assert!(cache.load("abc", "eth0").expect("load").is_none());
        let leftovers: Vec<_> = std::fs::read_dir(cache.dir()).expect("ls").collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn foreign_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = ResultCache::new(dir.path());
        std::fs::write(cache.path("abc", "eth0"), r#"{"kind":"cniCacheV1"}"#).expect("write");
        assert!(matches!(
            cache.load("abc", "eth0"),
            Err(CniError::InvalidCache { .. })
        ));
    }
}
