//! RemoveImage: drop a name or a whole image, then what nothing uses.

use cria_proto::v1;

use super::{blocking, spec_image};
use crate::daemon::Daemon;
use crate::error::ShimError;

/// Removes by ID, tag or digest reference (a tag removes only that tag; the
/// image goes with its last tag). An unknown image is success, as kubelet
/// expects. Blobs no image needs are deleted by the store; snapshots no
/// image and no container needs are then collected, so a container keeps
/// its rootfs even when its image is removed.
pub(super) async fn remove(
    daemon: &std::sync::Arc<Daemon>,
    request: v1::RemoveImageRequest,
) -> Result<(), ShimError> {
    let wanted = spec_image(request.image.as_ref()).to_string();
    if wanted.is_empty() {
        return Err(ShimError::InvalidArgument(
            "remove image: image must not be empty".to_string(),
        ));
    }
    let images = daemon.images.clone();
    let name = wanted.clone();
    let removed = blocking("removing image", move || {
        let Some(image) = images.remove(&name)? else {
            return Ok(None);
        };
        // Removing an image's last tag removes the image, as `docker rmi`
        // and containerd do: left with only its digest reference it would
        // linger as an untagged `<none>` image nobody asked to keep.
        if let Some(left) = images.resolve(&image.id)? {
            if left.repo_tags.is_empty() {
                images.remove(&left.id)?;
            }
        }
        Ok(Some(image))
    })
    .await?;
    match removed {
        Some(image) => {
            tracing::info!(image = %wanted, id = %image.id, "removed image name");
            let gone = daemon.collect_snapshots().await?;
            if !gone.is_empty() {
                tracing::debug!(count = gone.len(), "snapshots collected");
            }
        }
        None => tracing::debug!(image = %wanted, "remove: no such image"),
    }
    Ok(())
}
