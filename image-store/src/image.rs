//! The image record the store keeps and hands out, and the layer description
//! given to the unpacker.

use chrono::{DateTime, Utc};
use oci_spec::image::ImageConfiguration;
use serde::{Deserialize, Serialize};

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Compression {
    /// A plain tar stream.
    None,
    /// gzip (possibly several members).
    Gzip,
    /// zstd.
    Zstd,
}

/// One layer of an image, as the unpacker and the metadata see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerInfo {
    /// Digest of the compressed blob (what the registry serves).
    pub digest: String,
    /// Size of the compressed blob in bytes.
    pub size: u64,
    /// The layer's media type as the manifest gave it.
    pub media_type: String,
    /// Compression derived from the media type.
    pub compression: Compression,
    /// Digest of the uncompressed tar (from the image config's rootfs.diff_ids).
    pub diff_id: String,
    /// Chain ID of this layer on top of the ones below it (the snapshot key).
    pub chain_id: String,
}

/// A pulled image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Image {
    /// Image ID: the digest of its config blob.
    pub id: String,
    /// Tag references, e.g. `docker.io/library/busybox:latest`.
    pub repo_tags: Vec<String>,
    /// Digest references, e.g. `docker.io/library/busybox@sha256:…` (the
    /// digest the registry served for the reference: an index or a manifest).
    pub repo_digests: Vec<String>,
    /// Sum of the compressed layer sizes and the config size.
    pub size: u64,
    /// Digest of the platform manifest.
    pub manifest_digest: String,
    /// The image configuration.
    pub config: ImageConfiguration,
    /// Layers, base first.
    pub layers: Vec<LayerInfo>,
    /// Chain IDs, base first (the snapshots the image needs).
    pub chain_ids: Vec<String>,
    /// When the image was (last) pulled.
    pub pulled_at: DateTime<Utc>,
}

impl Image {
    /// Every blob this image needs kept: top-level digests, manifest, config, layers.
    pub fn blob_digests(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .repo_digests
            .iter()
            .filter_map(|r| r.rsplit_once('@').map(|(_, d)| d.to_string()))
            .collect();
        out.push(self.manifest_digest.clone());
        out.push(self.id.clone());
        out.extend(self.layers.iter().map(|l| l.digest.clone()));
        out
    }

    /// Every name (tags and digest references) of this image.
    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.repo_tags.iter().chain(self.repo_digests.iter())
    }
}
