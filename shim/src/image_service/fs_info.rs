//! ImageFsInfo: the space and inodes images take on the node.

use std::path::Path;

use cria_proto::v1;

use super::blocking;
use crate::daemon::Daemon;
use crate::error::ShimError;

/// Bytes and inodes of the content store, metadata and snapshots, measured
/// on disk now, reported under the root directory as the mountpoint (kubelet
/// looks its capacity up from there); and, separately, the containers'
/// writable layers under `<root>/containers`.
pub(super) async fn fs_info(daemon: &Daemon) -> Result<v1::ImageFsInfoResponse, ShimError> {
    let images = daemon.images.clone();
    let snapshots = daemon.snapshots.clone();
    let containers_dir = daemon.config.root.join(CONTAINERS_DIR);
    let walk_dir = containers_dir.clone();
    let (image_usage, container_usage) = blocking("measuring image filesystem", move || {
        let content = images.usage()?;
        let layers = snapshots.usage()?;
        let image = (content.bytes + layers.bytes, content.inodes + layers.inodes);
        Ok((image, writable_layers_usage(&walk_dir)?))
    })
    .await?;
    let timestamp = now_nanos();
    let usage = |mountpoint: &Path, (bytes, inodes): (u64, u64)| v1::FilesystemUsage {
        timestamp,
        fs_id: Some(v1::FilesystemIdentifier {
            mountpoint: mountpoint.to_string_lossy().into_owned(),
        }),
        used_bytes: Some(v1::UInt64Value { value: bytes }),
        inodes_used: Some(v1::UInt64Value { value: inodes }),
    };
    Ok(v1::ImageFsInfoResponse {
        image_filesystems: vec![usage(&daemon.config.root, image_usage)],
        container_filesystems: vec![usage(&containers_dir, container_usage)],
    })
}

/// Where the runtime service keeps container directories (see docs/architecture.md).
const CONTAINERS_DIR: &str = "containers";
/// The writable layer inside a container directory (overlay's `Rootfs`).
const UPPER_DIR: &str = "upper";

/// Sum of every container's `upper/`. Only the upper dirs are walked: a
/// container directory also holds its mounted rootfs, which would count the
/// image's layers again.
fn writable_layers_usage(containers: &Path) -> Result<(u64, u64), ShimError> {
    let entries = match std::fs::read_dir(containers) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, 0)),
        Err(e) => {
            return Err(ShimError::Internal(format!(
                "listing {}: {e}",
                containers.display()
            )))
        }
    };
    let (mut bytes, mut inodes) = (0, 0);
    for entry in entries.flatten() {
        let used = cria_overlay::disk_usage(&entry.path().join(UPPER_DIR))?;
        bytes += used.bytes;
        inodes += used.inodes;
    }
    Ok((bytes, inodes))
}

/// Nanoseconds since the epoch, as CRI timestamps are.
fn now_nanos() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_upper_dirs_count_as_container_usage() {
        let dir = tempfile::tempdir().unwrap();
        let containers = dir.path().join("containers");
        assert_eq!(writable_layers_usage(&containers).unwrap(), (0, 0));
        for id in ["a", "b"] {
            let upper = containers.join(id).join("upper");
            std::fs::create_dir_all(&upper).unwrap();
            std::fs::write(upper.join("f"), vec![1u8; 8192]).unwrap();
            // Stands in for the mounted rootfs: must not be counted.
            let rootfs = containers.join(id).join("rootfs");
            std::fs::create_dir_all(&rootfs).unwrap();
            std::fs::write(rootfs.join("big"), vec![1u8; 1 << 20]).unwrap();
        }
        let (bytes, inodes) = writable_layers_usage(&containers).unwrap();
        // Two upper dirs with one file each.
        assert_eq!(inodes, 4);
        assert!((2 * 8192..1 << 20).contains(&bytes), "{bytes}");
    }
}
