//! A container's root filesystem: an overlay of image snapshots plus a
//! fresh writable layer.

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{OverlayError, Result};
use crate::mount::{self, Method, OverlaySpec};
use crate::store::SnapshotStore;
use crate::usage::{disk_usage, FsUsage};

/// The writable layer inside a container dir.
const UPPER_DIR: &str = "upper";
/// Overlayfs' scratch dir inside a container dir.
const WORK_DIR: &str = "work";
/// The stand-in lower layer of an image without layers.
const EMPTY_LOWER_DIR: &str = "lower-empty";

/// The layers of one container's rootfs, ready to mount.
#[derive(Debug, Clone)]
pub struct Rootfs {
    /// Lower directories, top-most first.
    lowers: Vec<PathBuf>,
    /// `(upper, work)`, or `None` for a read-only rootfs.
    upper: Option<(PathBuf, PathBuf)>,
}

impl Rootfs {
    /// Prepares a writable rootfs: `chain_ids` (base first) must be committed
    /// in `store`; creates `upper/` and `work/` in `container_dir` (kept if
    /// they exist, so this also reopens a rootfs after a restart).
    pub fn prepare<S: AsRef<str>>(
        store: &SnapshotStore,
        chain_ids: &[S],
        container_dir: &Path,
    ) -> Result<Rootfs> {
        Self::build(store, chain_ids, container_dir, true)
    }

    /// Prepares a read-only rootfs of the image layers alone (no upper dir).
    pub fn prepare_read_only<S: AsRef<str>>(
        store: &SnapshotStore,
        chain_ids: &[S],
        container_dir: &Path,
    ) -> Result<Rootfs> {
        Self::build(store, chain_ids, container_dir, false)
    }

    fn build<S: AsRef<str>>(
        store: &SnapshotStore,
        chain_ids: &[S],
        container_dir: &Path,
        writable: bool,
    ) -> Result<Rootfs> {
        let mut lowers = Vec::with_capacity(chain_ids.len().max(1));
        for id in chain_ids.iter().rev() {
            let id = id.as_ref();
            if !store.is_committed(id) {
                return Err(OverlayError::NotCommitted {
                    chain_id: id.to_owned(),
                });
            }
            lowers.push(store.fs_path(id)?);
        }
        make_dir(container_dir, 0o700)?;
        if lowers.is_empty() {
            let empty = container_dir.join(EMPTY_LOWER_DIR);
            make_dir(&empty, 0o755)?;
            lowers.push(empty);
        }
        let upper = if writable {
            let upper = container_dir.join(UPPER_DIR);
            let work = container_dir.join(WORK_DIR);
            // The merged `/` takes its owner and mode from the upper dir, so
            // copy them from the image's top layer.
            if make_dir(&upper, 0o755)? {
                copy_owner_and_mode(&lowers[0], &upper)?;
            }
            make_dir(&work, 0o700)?;
            Some((upper, work))
        } else {
            None
        };
        Ok(Rootfs { lowers, upper })
    }

    /// Lower directories, top-most first.
    pub fn lower_dirs(&self) -> &[PathBuf] {
        &self.lowers
    }

    /// The writable layer, `None` for a read-only rootfs.
    pub fn upper_dir(&self) -> Option<&Path> {
        self.upper.as_ref().map(|(upper, _)| upper.as_path())
    }

    /// Mounts the rootfs on the existing directory `target`.
    pub fn mount(&self, target: &Path) -> Result<()> {
        self.mount_with(target, Method::NewApi)
    }

    pub(crate) fn mount_with(&self, target: &Path, method: Method) -> Result<()> {
        let result = match (&self.upper, self.lowers.as_slice()) {
            (None, [only]) => mount::bind_read_only(only, target),
            (upper, lowers) => {
                let spec = OverlaySpec {
                    lowers,
                    upper: upper.as_ref().map(|(u, w)| (u.as_path(), w.as_path())),
                };
                mount::mount_overlay(&spec, target, method)
            }
        };
        result.map_err(|source| OverlayError::Mount {
            op: "mounting rootfs on",
            target: target.to_owned(),
            source,
        })
    }

    /// Bytes and inodes in the writable layer (zero for a read-only rootfs).
    pub fn usage(&self) -> Result<FsUsage> {
        match self.upper_dir() {
            Some(upper) => disk_usage(upper),
            None => Ok(FsUsage::default()),
        }
    }
}

/// Unmounts a rootfs mounted on `target` (lazily if busy); idempotent.
pub fn unmount(target: &Path) -> Result<()> {
    mount::unmount(target).map_err(|source| OverlayError::Mount {
        op: "unmounting",
        target: target.to_owned(),
        source,
    })
}

/// Creates `path` with `mode` if missing; true when it was created.
fn make_dir(path: &Path, mode: u32) -> Result<bool> {
    match std::fs::DirBuilder::new()
        .mode(mode)
        .recursive(false)
        .create(path)
    {
        Ok(()) => {
            // The umask may have narrowed the mode.
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                .map_err(|e| OverlayError::io("chmod", path, e))?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::create_dir_all(path.parent().unwrap_or(path))
                .map_err(|e| OverlayError::io("creating", path, e))?;
            make_dir(path, mode)
        }
        Err(e) => Err(OverlayError::io("creating", path, e)),
    }
}

fn copy_owner_and_mode(from: &Path, to: &Path) -> Result<()> {
    let meta = std::fs::metadata(from).map_err(|e| OverlayError::io("stat", from, e))?;
    std::os::unix::fs::chown(to, Some(meta.uid()), Some(meta.gid()))
        .map_err(|e| OverlayError::io("chown", to, e))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(meta.mode() & 0o7777))
        .map_err(|e| OverlayError::io("chmod", to, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The mount(2) fallback, forced: 128 long lower paths still fit one
    /// page because each is passed as /proc/self/fd/N.
    #[test]
    fn classic_fallback_mounts_128_layers() {
        let dir = tempfile::tempdir().unwrap();
        let long = dir.path().join("l".repeat(60));
        let lowers: Vec<PathBuf> = (0..128)
            .map(|i| {
                let lower = long.join(format!("{i:03}-{}", "x".repeat(40)));
                std::fs::create_dir_all(&lower).unwrap();
                std::fs::write(lower.join(format!("f{i}")), b"").unwrap();
                lower
            })
            .collect();
        let (upper, work) = (dir.path().join("upper"), dir.path().join("work"));
        std::fs::create_dir(&upper).unwrap();
        std::fs::create_dir(&work).unwrap();
        let rootfs = Rootfs {
            lowers,
            upper: Some((upper, work)),
        };
        let target = dir.path().join("mnt");
        std::fs::create_dir(&target).unwrap();
        rootfs.mount_with(&target, Method::Classic).unwrap();
        let seen = std::fs::read_dir(&target).map(|d| d.count());
        let written = std::fs::write(target.join("new"), b"x");
        unmount(&target).unwrap();
        assert_eq!(seen.unwrap(), 128);
        written.unwrap();
        assert!(dir.path().join("upper/new").exists());
    }
}
