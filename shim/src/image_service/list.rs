//! ListImages and StreamImages: every image, or the one a filter names.

use cria_proto::v1;
use futures::Stream;
use tonic::Status;

use super::convert::cri_image;
use super::{blocking, spec_image};
use crate::daemon::Daemon;
use crate::error::ShimError;

/// Images per StreamImages message, keeping each well under gRPC's 4 MiB
/// default message limit.
const STREAM_BATCH: usize = 100;

/// The images matching `filter`: all of them without one (or with an empty
/// image), else the one image it names by ID, tag or digest, if present.
pub(super) async fn list(
    daemon: &Daemon,
    filter: Option<v1::ImageFilter>,
) -> Result<Vec<v1::Image>, ShimError> {
    let wanted = spec_image(filter.as_ref().and_then(|f| f.image.as_ref())).to_string();
    let images = daemon.images.clone();
    let found = blocking("listing images", move || {
        if wanted.is_empty() {
            return Ok(images.list()?);
        }
        Ok(images.resolve(&wanted)?.into_iter().collect())
    })
    .await?;
    let mut out: Vec<v1::Image> = found.iter().map(cri_image).collect();
    // A stable order (by first name, then ID) for people reading `images`.
    out.sort_by(|a, b| {
        let key = |i: &v1::Image| (i.repo_tags.first().cloned(), i.id.clone());
        key(a).cmp(&key(b))
    });
    Ok(out)
}

/// The images as a stream of StreamImages messages of bounded size.
pub(super) fn batches(
    images: Vec<v1::Image>,
) -> impl Stream<Item = Result<v1::StreamImagesResponse, Status>> + Send {
    let chunks: Vec<Result<v1::StreamImagesResponse, Status>> = images
        .chunks(STREAM_BATCH)
        .map(|c| Ok(v1::StreamImagesResponse { images: c.to_vec() }))
        .collect();
    futures::stream::iter(chunks)
}
