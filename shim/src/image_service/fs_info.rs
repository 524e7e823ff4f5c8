//! ImageFsInfo: the space and inodes images take on the node.

use cria_proto::v1;

use super::blocking;
use crate::daemon::Daemon;
use crate::error::ShimError;

/// Bytes and inodes of the content store, metadata and snapshots, measured
/// on disk now, reported under the root directory as the mountpoint (kubelet
/// looks its capacity up from there).
pub(super) async fn fs_info(daemon: &Daemon) -> Result<v1::ImageFsInfoResponse, ShimError> {
    let images = daemon.images.clone();
    let snapshots = daemon.snapshots.clone();
    let (bytes, inodes) = blocking("measuring image filesystem", move || {
        let content = images.usage()?;
        let layers = snapshots.usage()?;
        Ok((content.bytes + layers.bytes, content.inodes + layers.inodes))
    })
    .await?;
    let usage = v1::FilesystemUsage {
        timestamp: now_nanos(),
        fs_id: Some(v1::FilesystemIdentifier {
            mountpoint: daemon.config.root.to_string_lossy().into_owned(),
        }),
        used_bytes: Some(v1::UInt64Value { value: bytes }),
        inodes_used: Some(v1::UInt64Value { value: inodes }),
    };
    Ok(v1::ImageFsInfoResponse {
        image_filesystems: vec![usage],
        // Containers' writable layers live on the same filesystem (under the
        // same root); kubelet treats an empty list as "same as images".
        container_filesystems: Vec::new(),
    })
}

/// Nanoseconds since the epoch, as CRI timestamps are.
fn now_nanos() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}
