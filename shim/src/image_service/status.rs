//! ImageStatus: one image's CRI record, or an empty answer when unknown.

use std::collections::HashMap;

use cria_image_store::Image;
use cria_proto::v1;

use super::convert::cri_image;
use super::{blocking, spec_image};
use crate::daemon::Daemon;
use crate::error::ShimError;

/// Looks the image up by ID, tag or digest. An unknown image is not an
/// error: kubelet asks before every pull and expects `image: None`.
pub(super) async fn status(
    daemon: &Daemon,
    request: v1::ImageStatusRequest,
) -> Result<v1::ImageStatusResponse, ShimError> {
    let wanted = spec_image(request.image.as_ref()).to_string();
    if wanted.is_empty() {
        return Err(ShimError::InvalidArgument(
            "image status: image must not be empty".to_string(),
        ));
    }
    let images = daemon.images.clone();
    let found = blocking("image status", move || Ok(images.resolve(&wanted)?)).await?;
    let Some(image) = found else {
        return Ok(v1::ImageStatusResponse::default());
    };
    let info = if request.verbose {
        verbose_info(&image)?
    } else {
        HashMap::new()
    };
    Ok(v1::ImageStatusResponse {
        image: Some(cri_image(&image)),
        info,
    })
}

/// The verbose `info` map: key `info` holds a JSON document with the image
/// config (`imageSpec`, as containerd names it, so tools that read one
/// read the other) and what cria knows beyond CRI's fields.
fn verbose_info(image: &Image) -> Result<HashMap<String, String>, ShimError> {
    let doc = serde_json::json!({
        "id": image.id,
        "manifestDigest": image.manifest_digest,
        "chainIDs": image.chain_ids,
        "layers": image.layers.iter().map(|l| serde_json::json!({
            "digest": l.digest,
            "size": l.size,
            "mediaType": l.media_type,
            "diffID": l.diff_id,
        })).collect::<Vec<_>>(),
        "pulledAt": image.pulled_at.to_rfc3339(),
        "imageSpec": image.config,
    });
    let text = serde_json::to_string(&doc).map_err(|e| {
        ShimError::Internal(format!("image {}: config not serialisable: {e}", image.id))
    })?;
    Ok(HashMap::from([("info".to_string(), text)]))
}
