//! The host facts spec generation needs, behind a seam for unit tests.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

/// What a host path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PathKind {
    /// Nothing there.
    Missing,
    /// A directory.
    Dir,
    /// A regular file (or anything else that is not a device).
    File,
    /// A character device.
    CharDevice {
        /// Major number.
        major: i64,
        /// Minor number.
        minor: i64,
    },
    /// A block device.
    BlockDevice {
        /// Major number.
        major: i64,
        /// Minor number.
        minor: i64,
    },
}

/// Host facts, read at CreateContainer time.
pub(crate) trait HostView: Send + Sync {
    /// What `path` is, following symlinks.
    fn kind(&self, path: &Path) -> PathKind;
    /// `path` with symlinks resolved (bind mounts are made from the target).
    fn resolve(&self, path: &Path) -> PathBuf;
    /// The text of `/proc/self/mountinfo`.
    fn mountinfo(&self) -> String;
    /// A file of the image (e.g. `etc/passwd`) read under `rootfs`, refusing
    /// to follow symlinks so an image cannot make us read host files.
    fn image_file(&self, rootfs: &Path, relative: &str) -> Option<String>;
    /// The lowest `oom_score_adj` a container can get: criad's own when it
    /// lacks CAP_SYS_RESOURCE (the kernel refuses to go lower), else `None`.
    fn min_oom_score_adj(&self) -> Option<i32>;
    /// criad's capability bounding set (bit n = capability n).
    fn bounding_capabilities(&self) -> u64;
    /// The host's device nodes (for privileged containers): path and kind.
    fn host_devices(&self) -> Vec<(PathBuf, PathKind)>;
}

/// A capability set of criad from /proc/self/status (`CapEff:`, `CapBnd:`).
fn own_capabilities(key: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

/// Device nodes under `dir`, skipping the per-container file systems (pts,
/// shm, mqueue) that the container gets its own of; two levels deep.
fn collect_devices(host: &RealHost, dir: &Path, depth: u32, out: &mut Vec<(PathBuf, PathKind)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(ft) = entry.file_type() else { continue };
        if ft.is_dir() {
            let skip = ["pts", "shm", "mqueue"]
                .iter()
                .any(|d| path == Path::new("/dev").join(d));
            if depth < 2 && !skip {
                collect_devices(host, &path, depth + 1, out);
            }
        } else if ft.is_char_device() || ft.is_block_device() {
            out.push((path.clone(), host.kind(&path)));
        }
    }
}

/// Capability number of CAP_SYS_RESOURCE (linux/capability.h).
const CAP_SYS_RESOURCE: u32 = 24;

/// The real host.
pub(crate) struct RealHost;

impl HostView for RealHost {
    fn kind(&self, path: &Path) -> PathKind {
        let Ok(meta) = std::fs::metadata(path) else {
            return PathKind::Missing;
        };
        let ft = meta.file_type();
        let rdev = meta.rdev();
        let (major, minor) = (
            i64::from(nix::sys::stat::major(rdev) as u32),
            i64::from(nix::sys::stat::minor(rdev) as u32),
        );
        if ft.is_dir() {
            PathKind::Dir
        } else if ft.is_char_device() {
            PathKind::CharDevice { major, minor }
        } else if ft.is_block_device() {
            PathKind::BlockDevice { major, minor }
        } else {
            PathKind::File
        }
    }

    fn resolve(&self, path: &Path) -> PathBuf {
        std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
    }

    fn mountinfo(&self) -> String {
        std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default()
    }

    fn image_file(&self, rootfs: &Path, relative: &str) -> Option<String> {
        let mut path = rootfs.to_path_buf();
        for part in Path::new(relative).components() {
            let Component::Normal(name) = part else {
                return None;
            };
            path.push(name);
            if std::fs::symlink_metadata(&path)
                .ok()?
                .file_type()
                .is_symlink()
            {
                return None;
            }
        }
        std::fs::read_to_string(path).ok()
    }

    fn min_oom_score_adj(&self) -> Option<i32> {
        let cap_eff = own_capabilities("CapEff:")?;
        if cap_eff & (1 << CAP_SYS_RESOURCE) != 0 {
            return None;
        }
        std::fs::read_to_string("/proc/self/oom_score_adj")
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    fn bounding_capabilities(&self) -> u64 {
        own_capabilities("CapBnd:").unwrap_or(0)
    }

    fn host_devices(&self) -> Vec<(PathBuf, PathKind)> {
        let mut out = Vec::new();
        collect_devices(self, Path::new("/dev"), 0, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_host_reads_devices_and_refuses_symlinked_image_files() {
        assert_eq!(
            RealHost.kind(Path::new("/dev/null")),
            PathKind::CharDevice { major: 1, minor: 3 }
        );
        assert_eq!(
            RealHost.kind(Path::new("/nonexistent-x")),
            PathKind::Missing
        );
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("etc")).unwrap();
        std::fs::write(tmp.path().join("etc/group"), "root:x:0:\n").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", tmp.path().join("etc/passwd")).unwrap();
        assert_eq!(
            RealHost.image_file(tmp.path(), "etc/group").as_deref(),
            Some("root:x:0:\n")
        );
        assert_eq!(RealHost.image_file(tmp.path(), "etc/passwd"), None);
        assert_eq!(RealHost.image_file(tmp.path(), "../etc/passwd"), None);
    }
}
