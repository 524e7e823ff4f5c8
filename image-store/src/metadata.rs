//! Image records in `<root>/meta/images.redb`: image ID → record, and each
//! name (tag or digest reference) → image ID. Every change is one redb
//! transaction, so a crash leaves either the old state or the new one.

use std::fs;
use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::error::ImageError;
use crate::image::Image;

const IMAGES: TableDefinition<&str, &[u8]> = TableDefinition::new("images");
const NAMES: TableDefinition<&str, &str> = TableDefinition::new("names");

/// The image metadata database.
#[derive(Debug)]
pub struct Metadata {
    db: Database,
}

/// What removing a name did.
#[derive(Debug, Clone)]
pub struct Removed {
    /// The image as it was before the removal.
    pub image: Image,
    /// Whether the image record went with it (it had no names left).
    pub record_removed: bool,
}

fn decode(id: &str, bytes: &[u8]) -> Result<Image, ImageError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ImageError::Metadata(format!("decoding image record {id}: {e}")))
}

fn encode(image: &Image) -> Result<Vec<u8>, ImageError> {
    serde_json::to_vec(image)
        .map_err(|e| ImageError::Metadata(format!("encoding image record {}: {e}", image.id)))
}

impl Metadata {
    /// Opens (creating) the database under `dir`.
    pub fn open(dir: &Path) -> Result<Metadata, ImageError> {
        fs::create_dir_all(dir).map_err(|e| ImageError::io("creating", dir, e))?;
        let db = Database::create(dir.join("images.redb"))?;
        let txn = db.begin_write()?;
        txn.open_table(IMAGES)?;
        txn.open_table(NAMES)?;
        txn.commit()?;
        Ok(Metadata { db })
    }

    /// The image with this exact ID.
    pub fn get(&self, id: &str) -> Result<Option<Image>, ImageError> {
        let txn = self.db.begin_read()?;
        let images = txn.open_table(IMAGES)?;
        match images.get(id)? {
            Some(v) => Ok(Some(decode(id, v.value())?)),
            None => Ok(None),
        }
    }

    /// The image ID a name points to.
    pub fn id_for_name(&self, name: &str) -> Result<Option<String>, ImageError> {
        let txn = self.db.begin_read()?;
        let names = txn.open_table(NAMES)?;
        Ok(names.get(name)?.map(|v| v.value().to_string()))
    }

    /// IDs starting with `prefix` (for short-ID lookups).
    pub fn ids_with_prefix(&self, prefix: &str) -> Result<Vec<String>, ImageError> {
        let txn = self.db.begin_read()?;
        let images = txn.open_table(IMAGES)?;
        let mut out = Vec::new();
        for entry in images.range(prefix..)? {
            let (k, _) = entry?;
            let id = k.value();
            if !id.starts_with(prefix) {
                break;
            }
            out.push(id.to_string());
        }
        Ok(out)
    }

    /// Every image.
    pub fn list(&self) -> Result<Vec<Image>, ImageError> {
        let txn = self.db.begin_read()?;
        let images = txn.open_table(IMAGES)?;
        let mut out = Vec::new();
        for entry in images.iter()? {
            let (k, v) = entry?;
            out.push(decode(k.value(), v.value())?);
        }
        Ok(out)
    }

    /// Stores a pulled image in one transaction: the record (merged with an
    /// existing one of the same ID) and its names. A name that pointed at
    /// another image moves here; an image left without names is removed.
    /// Returns the stored record and the images removed that way.
    pub fn put_image(&self, image: &Image) -> Result<(Image, Vec<Image>), ImageError> {
        let txn = self.db.begin_write()?;
        let mut dropped = Vec::new();
        let stored = {
            let mut images = txn.open_table(IMAGES)?;
            let mut names = txn.open_table(NAMES)?;
            let mut merged = image.clone();
            if let Some(old) = images.get(image.id.as_str())? {
                let old = decode(&image.id, old.value())?;
                for t in old.repo_tags {
                    if !merged.repo_tags.contains(&t) {
                        merged.repo_tags.push(t);
                    }
                }
                for d in old.repo_digests {
                    if !merged.repo_digests.contains(&d) {
                        merged.repo_digests.push(d);
                    }
                }
            }
            let new_names: Vec<String> = image.names().cloned().collect();
            for name in &new_names {
                let previous = names.insert(name.as_str(), image.id.as_str())?;
                let Some(prev_id) = previous.map(|p| p.value().to_string()) else {
                    continue;
                };
                if prev_id == image.id {
                    continue;
                }
                // The name moves: take it off the image it pointed at.
                let prev = match images.get(prev_id.as_str())? {
                    Some(v) => decode(&prev_id, v.value())?,
                    None => continue,
                };
                let mut prev = prev;
                prev.repo_tags.retain(|t| t != name);
                prev.repo_digests.retain(|d| d != name);
                if prev.names().next().is_none() {
                    images.remove(prev_id.as_str())?;
                    dropped.push(prev);
                } else {
                    images.insert(prev_id.as_str(), encode(&prev)?.as_slice())?;
                }
            }
            merged.repo_tags.sort();
            merged.repo_digests.sort();
            images.insert(merged.id.as_str(), encode(&merged)?.as_slice())?;
            merged
        };
        txn.commit()?;
        Ok((stored, dropped))
    }

    /// Removes one name; the image record goes too when it was the last name.
    pub fn remove_name(&self, name: &str) -> Result<Option<Removed>, ImageError> {
        let txn = self.db.begin_write()?;
        let removed = {
            let mut images = txn.open_table(IMAGES)?;
            let mut names = txn.open_table(NAMES)?;
            let Some(id) = names.remove(name)?.map(|v| v.value().to_string()) else {
                return Ok(None);
            };
            let image = match images.get(id.as_str())? {
                Some(v) => decode(&id, v.value())?,
                None => return Ok(None),
            };
            let mut left = image.clone();
            left.repo_tags.retain(|t| t != name);
            left.repo_digests.retain(|d| d != name);
            let record_removed = left.names().next().is_none();
            if record_removed {
                images.remove(id.as_str())?;
            } else {
                images.insert(id.as_str(), encode(&left)?.as_slice())?;
            }
            Removed {
                image,
                record_removed,
            }
        };
        txn.commit()?;
        Ok(Some(removed))
    }

    /// Removes an image and all its names.
    pub fn remove_image(&self, id: &str) -> Result<Option<Image>, ImageError> {
        let txn = self.db.begin_write()?;
        let image = {
            let mut images = txn.open_table(IMAGES)?;
            let mut names = txn.open_table(NAMES)?;
            let Some(image) = images
                .remove(id)?
                .map(|v| decode(id, v.value()))
                .transpose()?
            else {
                return Ok(None);
            };
            for name in image.names() {
                // Only if the name still points here (it always should).
                let points_here = names.get(name.as_str())?.is_some_and(|v| v.value() == id);
                if points_here {
                    names.remove(name.as_str())?;
                }
            }
            image
        };
        txn.commit()?;
        Ok(Some(image))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::image::ImageConfiguration;

    fn image(id_n: u8, tags: &[&str], digests: &[&str]) -> Image {
        Image {
            id: format!("sha256:{:064x}", id_n),
            repo_tags: tags.iter().map(|s| s.to_string()).collect(),
            repo_digests: digests.iter().map(|s| s.to_string()).collect(),
            size: 10,
            manifest_digest: format!("sha256:{:064x}", 100 + id_n as u32),
            config: ImageConfiguration::default(),
            layers: vec![],
            chain_ids: vec![],
            pulled_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn put_get_list_and_names_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let a = image(1, &["r/a:1"], &["r/a@sha256:aa"]);
        {
            let m = Metadata::open(dir.path()).unwrap();
            m.put_image(&a).unwrap();
        }
        let m = Metadata::open(dir.path()).unwrap();
        assert_eq!(m.get(&a.id).unwrap().unwrap().repo_tags, vec!["r/a:1"]);
        assert_eq!(m.id_for_name("r/a:1").unwrap().unwrap(), a.id);
        assert_eq!(m.id_for_name("r/a@sha256:aa").unwrap().unwrap(), a.id);
        assert_eq!(m.list().unwrap().len(), 1);
        assert_eq!(m.ids_with_prefix(&a.id[..19]).unwrap(), vec![a.id.clone()]);
    }

    #[test]
    fn names_merge_move_and_remove() {
        let dir = tempfile::tempdir().unwrap();
        let m = Metadata::open(dir.path()).unwrap();
        let a = image(1, &["r/a:1"], &["r/a@sha256:aa"]);
        m.put_image(&a).unwrap();
        // Same image under a second tag: merged.
        let (stored, _) = m
            .put_image(&image(1, &["r/a:2"], &["r/a@sha256:aa"]))
            .unwrap();
        assert_eq!(stored.repo_tags, vec!["r/a:1", "r/a:2"]);
        // Tag 2 moves to image b; a keeps its other names.
        let (_, dropped) = m
            .put_image(&image(2, &["r/a:2"], &["r/a@sha256:bb"]))
            .unwrap();
        assert!(dropped.is_empty());
        assert_eq!(m.get(&a.id).unwrap().unwrap().repo_tags, vec!["r/a:1"]);
        // Removing names one by one; the record goes with the last.
        let r = m.remove_name("r/a:1").unwrap().unwrap();
        assert!(!r.record_removed);
        let r = m.remove_name("r/a@sha256:aa").unwrap().unwrap();
        assert!(r.record_removed);
        assert!(m.get(&a.id).unwrap().is_none());
        assert!(m.remove_name("r/a:1").unwrap().is_none());
        // An image whose only name moves away is dropped.
        let c = image(3, &["r/c:1"], &[]);
        m.put_image(&c).unwrap();
        let (_, dropped) = m.put_image(&image(4, &["r/c:1"], &[])).unwrap();
        assert_eq!(dropped.len(), 1);
        assert!(m.get(&c.id).unwrap().is_none());
        // Removing by ID removes every name.
        let removed = m.remove_image(&image(2, &[], &[]).id).unwrap().unwrap();
        assert_eq!(removed.repo_tags, vec!["r/a:2"]);
        assert!(m.id_for_name("r/a:2").unwrap().is_none());
        assert!(m.id_for_name("r/a@sha256:bb").unwrap().is_none());
    }

    #[test]
    fn uncommitted_transaction_leaves_no_record() {
        let dir = tempfile::tempdir().unwrap();
        let a = image(1, &["r/a:1"], &[]);
        {
            let m = Metadata::open(dir.path()).unwrap();
            // What a crash between the writes and the commit looks like: the
            // transaction is dropped without commit.
            let txn = m.db.begin_write().unwrap();
            {
                let mut images = txn.open_table(IMAGES).unwrap();
                images
                    .insert(a.id.as_str(), encode(&a).unwrap().as_slice())
                    .unwrap();
                let mut names = txn.open_table(NAMES).unwrap();
                names.insert("r/a:1", a.id.as_str()).unwrap();
            }
            drop(txn);
            assert!(m.get(&a.id).unwrap().is_none());
        }
        let m = Metadata::open(dir.path()).unwrap();
        assert!(m.get(&a.id).unwrap().is_none());
        assert!(m.id_for_name("r/a:1").unwrap().is_none());
        assert!(m.list().unwrap().is_empty());
    }
}
