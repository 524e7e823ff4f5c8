//! The snapshot store: one committed directory per chain ID.

use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{renameat_with, RenameFlags, CWD};
use rustix::io::Errno;

use crate::chain_id::{canonical, chain_id_hex, is_sha256_hex};
use crate::error::{OverlayError, Result};
use crate::layer::{unpack_stream, Compression, LayerStats};
use crate::usage::{disk_usage, FsUsage};

/// Prefix of in-progress (and being-removed) snapshot directories.
const TMP_PREFIX: &str = ".tmp-";
/// The committed layer contents inside a snapshot directory.
const FS_DIR: &str = "fs";

/// Distinguishes temp dirs made by one process.
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Unpacked layers under `<root>/snapshots`: `<chain-id-hex>/fs` each.
#[derive(Debug, Clone)]
pub struct SnapshotStore {
    dir: PathBuf,
}

/// Removes a temp dir on drop unless it was committed.
struct TmpDir {
    path: Option<PathBuf>,
}

impl TmpDir {
    fn path(&self) -> &Path {
        // Invariant: `path` is only taken by `disarm`, which consumes self.
        self.path
            .as_deref()
            .expect("temp dir path present until disarmed")
    }

    fn disarm(mut self) {
        self.path = None;
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            if let Err(e) = std::fs::remove_dir_all(&path) {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(path = %path.display(), error = %e, "removing temp snapshot failed");
                }
            }
        }
    }
}

impl SnapshotStore {
    /// Opens (creating, mode 0700) the snapshot directory `dir`, e.g.
    /// `/var/lib/cria/snapshots`, and removes leftovers of interrupted unpacks.
    pub fn open(dir: impl Into<PathBuf>) -> Result<SnapshotStore> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| OverlayError::io("creating", &dir, e))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| OverlayError::io("chmod", &dir, e))?;
        let entries = std::fs::read_dir(&dir).map_err(|e| OverlayError::io("listing", &dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| OverlayError::io("listing", &dir, e))?;
            if entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                let path = entry.path();
                tracing::info!(path = %path.display(), "removing leftover of an interrupted unpack");
                std::fs::remove_dir_all(&path)
                    .map_err(|e| OverlayError::io("removing", &path, e))?;
            }
        }
        Ok(SnapshotStore { dir })
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The committed layer directory of `chain_id` (used as an overlay lowerdir).
    pub fn fs_path(&self, chain_id: &str) -> Result<PathBuf> {
        Ok(self.dir.join(chain_id_hex(chain_id)?).join(FS_DIR))
    }

    /// True when the snapshot of `chain_id` is committed (false for an invalid ID).
    pub fn is_committed(&self, chain_id: &str) -> bool {
        self.fs_path(chain_id).is_ok_and(|p| p.is_dir())
    }

    /// Unpacks one layer stream into the snapshot `chain_id`.
    ///
    /// Decompresses, hashes the uncompressed stream, extracts into a temp dir,
    /// reads the stream to its end, verifies `expected_diff_id`
    /// (`sha256:<hex>`) and renames the temp dir into place. On any error
    /// nothing is kept. If a concurrent unpack committed the same chain ID
    /// first, ours is dropped and this still succeeds.
    pub fn apply_layer(
        &self,
        chain_id: &str,
        compressed: &mut dyn Read,
        compression: Compression,
        expected_diff_id: &str,
    ) -> Result<LayerStats> {
        let hex = chain_id_hex(chain_id)?;
        let chain_id = canonical(hex);
        let tmp = self.make_tmp_dir(hex)?;
        let fs = tmp.path().join(FS_DIR);
        std::fs::create_dir(&fs).map_err(|e| OverlayError::io("creating", &fs, e))?;
        // The layer root's mode is the container's `/` unless the archive has a `./` entry.
        std::fs::set_permissions(&fs, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| OverlayError::io("chmod", &fs, e))?;

        let stats = unpack_stream(&fs, &chain_id, compressed, compression, expected_diff_id)?;

        let target = self.dir.join(hex);
        match renameat_with(CWD, tmp.path(), CWD, &target, RenameFlags::NOREPLACE) {
            Ok(()) => {
                tmp.disarm();
                tracing::debug!(%chain_id, bytes = stats.bytes, inodes = stats.inodes, "layer committed");
            }
            // A concurrent pull committed the same layer first; ours is dropped with `tmp`.
            Err(Errno::EXIST | Errno::NOTEMPTY) => {
                tracing::debug!(%chain_id, "layer already committed by a concurrent unpack");
            }
            Err(e) => return Err(OverlayError::io("committing", target, e)),
        }
        Ok(stats)
    }

    /// Chain IDs (`sha256:<hex>`) of all committed snapshots, sorted.
    pub fn list(&self) -> Result<Vec<String>> {
        let entries =
            std::fs::read_dir(&self.dir).map_err(|e| OverlayError::io("listing", &self.dir, e))?;
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| OverlayError::io("listing", &self.dir, e))?;
            let name = entry.file_name();
            if let Some(name) = name.to_str() {
                if is_sha256_hex(name) && entry.path().join(FS_DIR).is_dir() {
                    ids.push(canonical(name));
                }
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Removes the snapshot of `chain_id`; false if there was none. It is
    /// first renamed to a temp name, so a crash never leaves a half snapshot
    /// under its real name. The caller makes sure no rootfs uses it.
    pub fn remove(&self, chain_id: &str) -> Result<bool> {
        let hex = chain_id_hex(chain_id)?;
        let path = self.dir.join(hex);
        let doomed = self.tmp_name(hex);
        match std::fs::rename(&path, &doomed) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(OverlayError::io("removing", path, e)),
        }
        std::fs::remove_dir_all(&doomed).map_err(|e| OverlayError::io("removing", doomed, e))?;
        Ok(true)
    }

    /// Bytes and inodes used by all snapshots (in-progress ones included).
    pub fn usage(&self) -> Result<FsUsage> {
        disk_usage(&self.dir)
    }

    fn tmp_name(&self, hex: &str) -> PathBuf {
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        self.dir.join(format!(
            "{TMP_PREFIX}{}-{}-{n}",
            &hex[..12],
            std::process::id()
        ))
    }

    fn make_tmp_dir(&self, hex: &str) -> Result<TmpDir> {
        // Names are unique within this process; a clash can only be a
        // leftover of an earlier process with the same pid, so try the next.
        for _ in 0..16 {
            let path = self.tmp_name(hex);
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(TmpDir { path: Some(path) }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(OverlayError::io("creating", path, e)),
            }
        }
        Err(OverlayError::io(
            "creating temp dir in",
            &self.dir,
            io::Error::from(io::ErrorKind::AlreadyExists),
        ))
    }
}
