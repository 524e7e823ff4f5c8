//! cria's layer snapshots and container rootfs mounts.
//!
//! [`SnapshotStore::apply_layer`] streams a (compressed) OCI layer tar into
//! `<snapshots>/<chain-id-hex>/fs`: decompress → diff ID hash → extract with
//! every path resolved inside the snapshot (openat2, no symlinks followed) →
//! verify → atomic rename. OCI whiteouts become overlayfs ones (`.wh.x` → a
//! 0/0 char device `x`, `.wh..wh..opq` → `trusted.overlay.opaque=y`).
//! [`Rootfs`] mounts an overlay of committed snapshots plus an upper dir,
//! for any number of layers (the new mount API has no page limit).

mod chain_id;
mod entry_meta;
mod entry_path;
mod error;
mod extract;
mod layer;
mod mount;
mod rootfs;
mod store;
mod usage;

pub use error::{OverlayError, Result};
pub use layer::{Compression, LayerStats};
pub use rootfs::{unmount, Rootfs};
pub use store::SnapshotStore;
pub use usage::{disk_usage, FsUsage};
