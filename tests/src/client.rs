//! gRPC clients over criad's unix socket.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cria_proto::{ImageServiceClient, RuntimeServiceClient};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};
use tower::service_fn;

/// The CRI ImageService client type the tests use.
pub type ImageClient = ImageServiceClient<Channel>;
/// The CRI RuntimeService client type the tests use.
pub type RuntimeClient = RuntimeServiceClient<Channel>;

/// Opens a tonic channel to a CRI server listening on the unix socket `path`.
pub async fn connect(path: &Path) -> Result<Channel> {
    let socket: PathBuf = path.to_owned();
    // The URI is required by tonic but ignored: every connection goes to the socket.
    Endpoint::try_from("http://[::1]:50051")?
        .connect_with_connector(service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(socket).await?)) }
        }))
        .await
        .with_context(|| format!("connecting to CRI socket {}", path.display()))
}

use cria_proto::v1;

/// An `ImageSpec` naming `image`.
pub fn image_spec(image: &str) -> v1::ImageSpec {
    v1::ImageSpec {
        image: image.to_owned(),
        ..Default::default()
    }
}

/// `PullImage`; returns the image reference criad answers (the image id).
pub async fn pull(
    c: &mut ImageClient,
    image: &str,
    auth: Option<v1::AuthConfig>,
) -> Result<String, tonic::Status> {
    let req = v1::PullImageRequest {
        image: Some(image_spec(image)),
        auth,
        sandbox_config: None,
    };
    Ok(c.pull_image(req).await?.into_inner().image_ref)
}

/// `ListImages` with an optional image filter.
pub async fn list_images(
    c: &mut ImageClient,
    filter: Option<&str>,
) -> Result<Vec<v1::Image>, tonic::Status> {
    let req = v1::ListImagesRequest {
        filter: filter.map(|f| v1::ImageFilter {
            image: Some(image_spec(f)),
        }),
    };
    Ok(c.list_images(req).await?.into_inner().images)
}

/// `ImageStatus`; `None` when criad does not know the image.
pub async fn image_status(
    c: &mut ImageClient,
    image: &str,
    verbose: bool,
) -> Result<v1::ImageStatusResponse, tonic::Status> {
    let req = v1::ImageStatusRequest {
        image: Some(image_spec(image)),
        verbose,
    };
    Ok(c.image_status(req).await?.into_inner())
}

/// `RemoveImage`.
pub async fn remove_image(c: &mut ImageClient, image: &str) -> Result<(), tonic::Status> {
    c.remove_image(v1::RemoveImageRequest {
        image: Some(image_spec(image)),
    })
    .await?;
    Ok(())
}
