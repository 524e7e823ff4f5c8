//! Disk usage of a directory tree (for ImageFsInfo and container stats).

use std::collections::HashSet;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::{OverlayError, Result};

/// Space and inodes a tree uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FsUsage {
    /// Bytes allocated on disk (`st_blocks * 512`), each inode counted once.
    pub bytes: u64,
    /// Inodes, each counted once however many hardlinks name it.
    pub inodes: u64,
}

/// Bytes and inodes used by the tree at `root` (e.g. a container's `upper/`
/// when no [`crate::Rootfs`] is at hand). Walks without following symlinks;
/// entries that vanish during the walk (a concurrent removal) are skipped; a
/// missing `root` is empty.
pub fn disk_usage(root: &Path) -> Result<FsUsage> {
    let mut usage = FsUsage::default();
    // Only multiply-linked inodes can be met twice; remember just those.
    let mut seen_links: HashSet<(u64, u64)> = HashSet::new();
    let mut pending: Vec<PathBuf> = vec![root.to_owned()];
    while let Some(path) = pending.pop() {
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(OverlayError::io("stat", path, e)),
        };
        if meta.nlink() > 1 && !meta.is_dir() && !seen_links.insert((meta.dev(), meta.ino())) {
            continue;
        }
        usage.inodes += 1;
        usage.bytes += meta.blocks() * 512;
        if meta.is_dir() {
            let entries = match std::fs::read_dir(&path) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(OverlayError::io("listing", path, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| OverlayError::io("listing", &path, e))?;
                pending.push(entry.path());
            }
        }
    }
    Ok(usage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_hardlinks_once_and_missing_root_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("t");
        assert_eq!(disk_usage(&root).unwrap(), FsUsage::default());
        std::fs::create_dir(&root).unwrap();
        std::fs::write(root.join("a"), vec![1u8; 10_000]).unwrap();
        std::fs::hard_link(root.join("a"), root.join("b")).unwrap();
        std::os::unix::fs::symlink("a", root.join("c")).unwrap();
        let usage = disk_usage(&root).unwrap();
        assert_eq!(usage.inodes, 3, "dir, file (twice linked), symlink");
        let file_bytes = std::fs::metadata(root.join("a")).unwrap().blocks() * 512;
        assert!(usage.bytes >= file_bytes && usage.bytes < 2 * file_bytes + 16384);
    }
}
