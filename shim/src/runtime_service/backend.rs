//! The seams between the RuntimeService and the rest of criad: the image
//! store (what an image is) and the snapshot store (a container's rootfs).
//! The daemon passes the real implementations; unit tests can pass others.

use oci_spec::image::ImageConfiguration;
use std::path::Path;
use tonic::Status;

/// What CreateContainer needs to know about an image.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// `sha256:<hex>` of the image config (the CRI image id / image_ref).
    pub id: String,
    /// Entrypoint, Cmd, Env, User, WorkingDir, StopSignal, ...
    pub config: ImageConfiguration,
    /// Snapshot chain ids, base layer first.
    pub chain_ids: Vec<String>,
}

/// Looks up pulled images.
pub trait ImageLookup: Send + Sync {
    /// The image named `name_or_id` (tag, digest reference, id or id
    /// prefix), or `None` when there is no such image.
    fn resolve(&self, name_or_id: &str) -> Result<Option<ResolvedImage>, Status>;
}

/// Writable layer usage of a container.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LayerUsage {
    /// Bytes used by the upper dir.
    pub bytes: u64,
    /// Inodes used by the upper dir.
    pub inodes: u64,
}

/// Builds and tears down container root file systems.
pub trait RootfsProvider: Send + Sync {
    /// Prepares `upper/` and `work/` in `container_dir` over the snapshots
    /// `chain_ids` (base first) and mounts the overlay at `target`.
    fn mount(
        &self,
        chain_ids: &[String],
        container_dir: &Path,
        target: &Path,
    ) -> Result<(), Status>;
    /// Unmounts `target`; not mounted is success.
    fn unmount(&self, target: &Path) -> Result<(), Status>;
    /// Bytes and inodes of the writable layer in `container_dir`.
    fn usage(&self, container_dir: &Path) -> Result<LayerUsage, Status>;
}
