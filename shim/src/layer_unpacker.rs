//! The adapter between the image pipeline and the snapshots: image-store's
//! [`LayerUnpacker`] implemented with overlay's [`SnapshotStore`].
//!
//! image-store and overlay know nothing of each other (see
//! docs/architecture.md); this is the only place they meet.

use std::io::Read;

use cria_image_store::{Compression, LayerInfo, LayerUnpacker, UnpackError};
use cria_overlay::SnapshotStore;

/// Unpacks layers into `<root>/snapshots/<chain-id>/fs`.
#[derive(Debug, Clone)]
pub struct SnapshotUnpacker {
    snapshots: SnapshotStore,
}

impl SnapshotUnpacker {
    /// An unpacker writing into `snapshots`.
    pub fn new(snapshots: SnapshotStore) -> SnapshotUnpacker {
        SnapshotUnpacker { snapshots }
    }
}

/// The same three compressions, named by each crate for itself.
fn compression(c: Compression) -> cria_overlay::Compression {
    match c {
        Compression::None => cria_overlay::Compression::None,
        Compression::Gzip => cria_overlay::Compression::Gzip,
        Compression::Zstd => cria_overlay::Compression::Zstd,
    }
}

impl LayerUnpacker for SnapshotUnpacker {
    fn is_unpacked(&self, chain_id: &str) -> bool {
        self.snapshots.is_committed(chain_id)
    }

    fn unpack(&self, layer: &LayerInfo, compressed: &mut dyn Read) -> Result<(), UnpackError> {
        // The overlay error is boxed as is (not stringified) so error.rs can
        // still tell a hostile layer from a corrupt one or a full disk.
        self.snapshots
            .apply_layer(
                &layer.chain_id,
                compressed,
                compression(layer.compression),
                &layer.diff_id,
            )
            .map(|stats| {
                tracing::debug!(
                    digest = %layer.digest,
                    chain_id = %layer.chain_id,
                    bytes = stats.bytes,
                    inodes = stats.inodes,
                    "layer unpacked"
                );
            })
            .map_err(UnpackError::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cria_overlay::OverlayError;
    use sha2::{Digest, Sha256};

    /// A one-file tar built with GNU tar, as a registry would serve it.
    fn tar_of_one_file(dir: &std::path::Path) -> Vec<u8> {
        let src = dir.join("src");
        std::fs::create_dir(&src).unwrap();
        std::fs::write(src.join("hello.txt"), b"hello\n").unwrap();
        let out = std::process::Command::new("tar")
            .args(["--numeric-owner", "-C"])
            .arg(&src)
            .args(["-cf", "-", "hello.txt"])
            .output()
            .unwrap();
        assert!(out.status.success());
        out.stdout
    }

    fn layer_for(tar: &[u8]) -> LayerInfo {
        let diff_id = format!("sha256:{}", hex::encode(Sha256::digest(tar)));
        LayerInfo {
            digest: diff_id.clone(),
            size: tar.len() as u64,
            media_type: "application/vnd.oci.image.layer.v1.tar".to_string(),
            compression: Compression::None,
            diff_id: diff_id.clone(),
            // For a base layer the chain ID is its diff ID.
            chain_id: diff_id,
        }
    }

    #[test]
    fn unpacks_into_a_committed_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let tar = tar_of_one_file(dir.path());
        let store = SnapshotStore::open(dir.path().join("snapshots")).unwrap();
        let unpacker = SnapshotUnpacker::new(store.clone());
        let layer = layer_for(&tar);
        assert!(!unpacker.is_unpacked(&layer.chain_id));
        unpacker.unpack(&layer, &mut tar.as_slice()).unwrap();
        assert!(unpacker.is_unpacked(&layer.chain_id));
        let fs = store.fs_path(&layer.chain_id).unwrap();
        assert_eq!(std::fs::read(fs.join("hello.txt")).unwrap(), b"hello\n");
    }

    #[test]
    fn a_wrong_diff_id_keeps_nothing_and_stays_an_overlay_error() {
        let dir = tempfile::tempdir().unwrap();
        let tar = tar_of_one_file(dir.path());
        let store = SnapshotStore::open(dir.path().join("snapshots")).unwrap();
        let unpacker = SnapshotUnpacker::new(store.clone());
        let mut layer = layer_for(&tar);
        layer.diff_id = format!("sha256:{}", "0".repeat(64));
        let err = unpacker.unpack(&layer, &mut tar.as_slice()).unwrap_err();
        assert!(matches!(
            err.0.downcast_ref::<OverlayError>(),
            Some(OverlayError::DiffIdMismatch { .. })
        ));
        assert!(!unpacker.is_unpacked(&layer.chain_id));
        assert!(store.list().unwrap().is_empty());
    }
}
