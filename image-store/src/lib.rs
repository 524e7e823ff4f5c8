//! cria's image pipeline: docker-style references, an OCI Distribution
//! registry client, a digest-verified content store, transactional image
//! metadata, and the pull that streams layers into a [`LayerUnpacker`].
//!
//! The crate knows nothing of gRPC or containers; the shim supplies the
//! unpacker (built on the overlay crate) and maps [`ImageError`] to gRPC codes.

#![warn(missing_docs)]

pub mod content;
pub mod digest;
pub mod error;
mod gc;
pub mod image;
pub mod metadata;
mod pull;
pub mod reference;
pub mod registry;
mod store;
mod unpack;

pub use error::{ImageError, UnpackError};
pub use image::{Compression, Image, LayerInfo};
pub use reference::Reference;
pub use registry::auth::{Credentials, DockerConfig};
pub use registry::hosts::RegistryConfig;
pub use registry::manifest::Platform;
pub use store::{
    FsUsage, ImageStore, ImageStoreConfig, Progress, ProgressFn, DEFAULT_MAX_CONCURRENT_DOWNLOADS,
};
pub use unpack::LayerUnpacker;
