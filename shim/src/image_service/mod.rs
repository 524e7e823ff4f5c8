//! criad's CRI ImageService: one file per RPC, on top of the image store.

mod convert;
mod fs_info;
mod list;
mod pull;
mod remove;
mod status;

use std::pin::Pin;
use std::sync::Arc;

use cria_proto::v1;
use futures::Stream;
use tonic::{Request, Response, Status};

use crate::daemon::Daemon;
use crate::error::ShimError;

/// The ImageService over the daemon's stores.
#[derive(Debug, Clone)]
pub struct ImageServiceImpl {
    daemon: Arc<Daemon>,
}

impl ImageServiceImpl {
    /// Serves images from `daemon`.
    pub fn new(daemon: Arc<Daemon>) -> ImageServiceImpl {
        ImageServiceImpl { daemon }
    }
}

/// Runs a blocking store operation (redb transactions, directory walks,
/// file deletions) off the async threads.
async fn blocking<T, F>(op: &'static str, f: F) -> Result<T, ShimError>
where
    F: FnOnce() -> Result<T, ShimError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ShimError::task(op, e))?
}

/// The image named in an optional `ImageSpec` (empty when absent).
fn spec_image(spec: Option<&v1::ImageSpec>) -> &str {
    spec.map_or("", |s| s.image.as_str())
}

#[tonic::async_trait]
impl cria_proto::ImageService for ImageServiceImpl {
    async fn list_images(
        &self,
        request: Request<v1::ListImagesRequest>,
    ) -> Result<Response<v1::ListImagesResponse>, Status> {
        let images = list::list(&self.daemon, request.into_inner().filter).await?;
        Ok(Response::new(v1::ListImagesResponse { images }))
    }

    type StreamImagesStream =
        Pin<Box<dyn Stream<Item = Result<v1::StreamImagesResponse, Status>> + Send>>;

    async fn stream_images(
        &self,
        request: Request<v1::StreamImagesRequest>,
    ) -> Result<Response<Self::StreamImagesStream>, Status> {
        let images = list::list(&self.daemon, request.into_inner().filter).await?;
        Ok(Response::new(Box::pin(list::batches(images))))
    }

    async fn image_status(
        &self,
        request: Request<v1::ImageStatusRequest>,
    ) -> Result<Response<v1::ImageStatusResponse>, Status> {
        Ok(Response::new(
            status::status(&self.daemon, request.into_inner()).await?,
        ))
    }

    async fn pull_image(
        &self,
        request: Request<v1::PullImageRequest>,
    ) -> Result<Response<v1::PullImageResponse>, Status> {
        Ok(Response::new(
            pull::pull(&self.daemon, request.into_inner()).await?,
        ))
    }

    async fn remove_image(
        &self,
        request: Request<v1::RemoveImageRequest>,
    ) -> Result<Response<v1::RemoveImageResponse>, Status> {
        remove::remove(&self.daemon, request.into_inner()).await?;
        Ok(Response::new(v1::RemoveImageResponse {}))
    }

    async fn image_fs_info(
        &self,
        _request: Request<v1::ImageFsInfoRequest>,
    ) -> Result<Response<v1::ImageFsInfoResponse>, Status> {
        Ok(Response::new(fs_info::fs_info(&self.daemon).await?))
    }
}
