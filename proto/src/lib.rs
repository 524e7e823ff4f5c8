//! The Kubernetes CRI v1 API (`runtime.v1`) as Rust types, with tonic
//! clients and servers for `RuntimeService` and `ImageService`, plus cria's
//! own `cria.v1alpha.PullProgress` side service.

/// Everything generated from `proto/runtime/v1/api.proto`.
pub mod v1 {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("runtime.v1");
}

/// cria's own additions to CRI, generated from `proto/cria/v1alpha/`.
pub mod cria {
    /// Pull progress (`cria.v1alpha.PullProgress`), generated from
    /// `proto/cria/v1alpha/progress.proto`.
    pub mod v1alpha {
        #![allow(clippy::all, clippy::pedantic, missing_docs)]
        tonic::include_proto!("cria.v1alpha");
    }
}

pub use cria::v1alpha::pull_progress_client::PullProgressClient;
pub use cria::v1alpha::pull_progress_server::{PullProgress, PullProgressServer};
pub use v1::image_service_client::ImageServiceClient;
pub use v1::image_service_server::{ImageService, ImageServiceServer};
pub use v1::runtime_service_client::RuntimeServiceClient;
pub use v1::runtime_service_server::{RuntimeService, RuntimeServiceServer};
