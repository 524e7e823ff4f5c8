//! Removing images and collecting what no image needs any more.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::error::ImageError;
use crate::image::Image;
use crate::store::{FsUsage, ImageStore, Inner, RemoveBy};

impl ImageStore {
    /// Removes an image name: a tag removes that tag; an ID or a digest
    /// reference removes the image. An image without names loses its record,
    /// and blobs no remaining image references are deleted. Returns the image
    /// as it was, or `None` if nothing matched.
    pub fn remove(&self, name_or_id: &str) -> Result<Option<Image>, ImageError> {
        let Some((id, by)) = self.resolve_target(name_or_id)? else {
            return Ok(None);
        };
        let removed = match by {
            RemoveBy::Image => self.inner.meta.remove_image(&id)?,
            RemoveBy::Tag(tag) => self.inner.meta.remove_name(&tag)?.map(|r| r.image),
        };
        if removed.is_some() {
            self.inner.collect_blobs()?;
        }
        Ok(removed)
    }

    /// Chain IDs of every image's layers: the snapshots the shim must keep.
    pub fn referenced_chain_ids(&self) -> Result<HashSet<String>, ImageError> {
        Ok(self
            .inner
            .meta
            .list()?
            .into_iter()
            .flat_map(|i| i.chain_ids)
            .collect())
    }

    /// Disk bytes and inodes used by content and metadata.
    pub fn usage(&self) -> Result<FsUsage, ImageError> {
        let mut total = FsUsage::default();
        for dir in ["content", "meta"] {
            add_usage(&self.inner.root.join(dir), &mut total)?;
        }
        Ok(total)
    }

    /// Deletes blobs that no image references and no pull is using.
    pub fn collect_blobs(&self) -> Result<Vec<String>, ImageError> {
        self.inner.collect_blobs()
    }
}

impl Inner {
    pub(crate) fn collect_blobs(&self) -> Result<Vec<String>, ImageError> {
        let referenced: HashSet<String> = self
            .meta
            .list()?
            .iter()
            .flat_map(Image::blob_digests)
            .collect();
        // Holding the pin lock while deleting: a pull pins a digest before it
        // checks whether the blob is present, so it never sees a blob that is
        // about to go.
        let pinned = self.pinned.lock().unwrap_or_else(|p| p.into_inner());
        let mut deleted = Vec::new();
        for digest in self.content.list()? {
            if referenced.contains(&digest) || pinned.contains_key(&digest) {
                continue;
            }
            self.content.delete(&digest)?;
            deleted.push(digest);
        }
        if !deleted.is_empty() {
            tracing::info!(count = deleted.len(), "removed unreferenced blobs");
        }
        Ok(deleted)
    }
}

/// Adds the allocated bytes and the inode count of a tree (not following symlinks).
fn add_usage(path: &Path, total: &mut FsUsage) -> Result<(), ImageError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(ImageError::io("inspecting", path, e)),
    };
    total.inodes += 1;
    total.bytes += meta.blocks() * 512;
    if meta.is_dir() {
        let entries = fs::read_dir(path).map_err(|e| ImageError::io("reading", path, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| ImageError::io("reading", path, e))?;
            add_usage(&entry.path(), total)?;
        }
    }
    Ok(())
}
