//! The Kubernetes CRI v1 API (`runtime.v1`) as Rust types, with tonic
//! clients and servers for `RuntimeService` and `ImageService`.

/// Everything generated from `proto/runtime/v1/api.proto`.
pub mod v1 {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("runtime.v1");
}

pub use v1::image_service_client::ImageServiceClient;
pub use v1::image_service_server::{ImageService, ImageServiceServer};
pub use v1::runtime_service_client::RuntimeServiceClient;
pub use v1::runtime_service_server::{RuntimeService, RuntimeServiceServer};
