//! The content store: blobs addressed by digest under `<root>/content`.
//!
//! Layout: `blobs/sha256/<hex>` holds verified blobs only; `ingest/` holds
//! temp files while they are written. A blob reaches `blobs/` only by an
//! atomic rename after its digest and size were checked, so a reader never
//! sees a partial or wrong blob, and a crash leaves at most an ingest file,
//! which the next start removes.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest as _, Sha256};

use crate::digest::digest_hex;
use crate::error::ImageError;
use crate::reference::parse_digest;

/// Digest-addressed blob storage with verified, atomic writes.
#[derive(Debug)]
pub struct ContentStore {
    blobs: PathBuf,
    ingest: PathBuf,
}

static INGEST_COUNTER: AtomicU64 = AtomicU64::new(0);

impl ContentStore {
    /// Opens (creating) the store at `dir` and removes stale ingest files.
    pub fn open(dir: &Path) -> Result<ContentStore, ImageError> {
        let blobs = dir.join("blobs").join("sha256");
        let ingest = dir.join("ingest");
        for d in [&blobs, &ingest] {
            fs::create_dir_all(d).map_err(|e| ImageError::io("creating", d, e))?;
        }
        // Anything in ingest/ belongs to a writer of an earlier process: no
        // writer of this process exists yet.
        let entries = fs::read_dir(&ingest).map_err(|e| ImageError::io("reading", &ingest, e))?;
        for entry in entries.flatten() {
            let p = entry.path();
            if let Err(e) = fs::remove_file(&p) {
                tracing::warn!(path = %p.display(), error = %e, "cannot remove stale ingest file");
            }
        }
        Ok(ContentStore { blobs, ingest })
    }

    /// Where the blob with this digest lives (whether or not it exists).
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        self.blobs.join(digest_hex(digest))
    }

    /// Whether a verified blob with this digest is present.
    pub fn contains(&self, digest: &str) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Opens a stored blob for reading.
    pub fn open_blob(&self, digest: &str) -> Result<File, ImageError> {
        let p = self.blob_path(digest);
        File::open(&p).map_err(|e| ImageError::io("opening blob", p, e))
    }

    /// Reads a whole stored blob (for small ones: manifests and configs).
    pub fn read(&self, digest: &str) -> Result<Vec<u8>, ImageError> {
        let p = self.blob_path(digest);
        fs::read(&p).map_err(|e| ImageError::io("reading blob", p, e))
    }

    /// Starts writing a blob that must hash to `digest` (and be `size` bytes, if given).
    pub fn ingest(&self, digest: &str, size: Option<u64>) -> Result<Ingest, ImageError> {
        parse_digest(digest).map_err(|reason| ImageError::InvalidReference {
            input: digest.to_string(),
            reason,
        })?;
        let n = INGEST_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = self
            .ingest
            .join(format!("{}.{}.{n}", digest_hex(digest), std::process::id()));
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| ImageError::io("creating ingest file", &tmp, e))?;
        Ok(Ingest {
            tmp,
            file: Some(file),
            hasher: Sha256::new(),
            written: 0,
            digest: digest.to_string(),
            size,
            dest: self.blob_path(digest),
        })
    }

    /// Writes a small blob held in memory, verified like any other.
    pub fn write_blob(&self, digest: &str, data: &[u8]) -> Result<(), ImageError> {
        let mut ingest = self.ingest(digest, Some(data.len() as u64))?;
        ingest.write(data)?;
        ingest.commit()
    }

    /// Deletes a blob; a missing blob is not an error.
    pub fn delete(&self, digest: &str) -> Result<(), ImageError> {
        let p = self.blob_path(digest);
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ImageError::io("removing blob", p, e)),
        }
    }

    /// Digests of every stored blob.
    pub fn list(&self) -> Result<Vec<String>, ImageError> {
        let entries =
            fs::read_dir(&self.blobs).map_err(|e| ImageError::io("reading", &self.blobs, e))?;
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| ImageError::io("reading", &self.blobs, e))?;
            if let Some(name) = entry.file_name().to_str() {
                out.push(format!("sha256:{name}"));
            }
        }
        Ok(out)
    }

    /// Number of files in ingest/ (for tests and diagnostics).
    pub fn ingest_count(&self) -> usize {
        fs::read_dir(&self.ingest).map_or(0, |d| d.count())
    }
}

/// A blob being written: bytes go to a temp file and a hasher together.
/// Dropping it without [`Ingest::commit`] removes the temp file.
#[derive(Debug)]
pub struct Ingest {
    tmp: PathBuf,
    file: Option<File>,
    hasher: Sha256,
    written: u64,
    digest: String,
    size: Option<u64>,
    dest: PathBuf,
}

impl Ingest {
    /// Appends bytes; fails early when more bytes arrive than the expected size.
    pub fn write(&mut self, buf: &[u8]) -> Result<(), ImageError> {
        self.written += buf.len() as u64;
        if let Some(size) = self.size {
            if self.written > size {
                return Err(self.size_mismatch());
            }
        }
        self.hasher.update(buf);
        let Some(file) = self.file.as_mut() else {
            return Err(ImageError::io(
                "writing",
                &self.tmp,
                std::io::Error::other("ingest already finished"),
            ));
        };
        file.write_all(buf)
            .map_err(|e| ImageError::io("writing ingest file", &self.tmp, e))
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Verifies digest and size, syncs, and renames the blob into place.
    /// On a mismatch the temp file is removed (by drop) and nothing is kept.
    pub fn commit(mut self) -> Result<(), ImageError> {
        if let Some(size) = self.size {
            if self.written != size {
                return Err(self.size_mismatch());
            }
        }
        let actual = format!("sha256:{}", hex::encode(self.hasher.clone().finalize()));
        if actual != self.digest {
            return Err(ImageError::DigestMismatch {
                what: format!("blob {}", self.digest),
                expected: self.digest.clone(),
                actual,
            });
        }
        if let Some(file) = self.file.take() {
            file.sync_all()
                .map_err(|e| ImageError::io("syncing ingest file", &self.tmp, e))?;
        }
        fs::rename(&self.tmp, &self.dest)
            .map_err(|e| ImageError::io("renaming blob into place", &self.dest, e))?;
        if let Some(dir) = self.dest.parent() {
            // The rename is durable only once the directory is synced.
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        self.tmp = PathBuf::new();
        Ok(())
    }

    fn size_mismatch(&self) -> ImageError {
        let expected = self.size.unwrap_or(0);
        let actual = if self.written > expected {
            format!("more than {expected} bytes")
        } else {
            format!("{} bytes", self.written)
        };
        ImageError::DigestMismatch {
            what: format!("size of blob {}", self.digest),
            expected: format!("{expected} bytes"),
            actual,
        }
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            drop(self.file.take());
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Copies a reader into an ingest (used for blobs already held as a stream).
pub fn copy_into(ingest: &mut Ingest, mut r: impl Read) -> Result<(), ImageError> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = r
            .read(&mut buf)
            .map_err(|e| ImageError::io("reading", "stream", e))?;
        if n == 0 {
            return Ok(());
        }
        ingest.write(&buf[..n])?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::sha256_digest;

    fn store() -> (tempfile::TempDir, ContentStore) {
        let dir = tempfile::tempdir().unwrap();
        let cs = ContentStore::open(&dir.path().join("content")).unwrap();
        (dir, cs)
    }

    #[test]
    fn verified_blob_is_renamed_into_place() {
        let (_d, cs) = store();
        let data = b"hello blob";
        let digest = sha256_digest(data);
        let mut ing = cs.ingest(&digest, Some(data.len() as u64)).unwrap();
        ing.write(&data[..5]).unwrap();
        assert!(!cs.contains(&digest));
        assert_eq!(cs.ingest_count(), 1);
        ing.write(&data[5..]).unwrap();
        ing.commit().unwrap();
        assert!(cs.contains(&digest));
        assert_eq!(cs.read(&digest).unwrap(), data);
        assert_eq!(cs.ingest_count(), 0);
        assert_eq!(cs.list().unwrap(), vec![digest]);
    }

    #[test]
    fn digest_mismatch_keeps_nothing_and_names_both_digests() {
        let (_d, cs) = store();
        let expected = sha256_digest(b"what the manifest said");
        let mut ing = cs.ingest(&expected, None).unwrap();
        ing.write(b"something else").unwrap();
        let err = ing.commit().unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ImageError::DigestMismatch { .. }));
        assert!(msg.contains(&expected), "{msg}");
        assert!(msg.contains(&sha256_digest(b"something else")), "{msg}");
        assert!(!cs.contains(&expected));
        assert_eq!(cs.ingest_count(), 0);
        assert!(cs.list().unwrap().is_empty());
    }

    #[test]
    fn size_mismatch_keeps_nothing() {
        let (_d, cs) = store();
        let data = b"0123456789";
        let digest = sha256_digest(data);
        // Too short.
        let mut ing = cs.ingest(&digest, Some(11)).unwrap();
        ing.write(data).unwrap();
        assert!(matches!(
            ing.commit(),
            Err(ImageError::DigestMismatch { .. })
        ));
        // Too long: fails at the write that overflows.
        let mut ing = cs.ingest(&digest, Some(4)).unwrap();
        assert!(ing.write(data).is_err());
        drop(ing);
        assert!(!cs.contains(&digest));
        assert_eq!(cs.ingest_count(), 0);
    }

    #[test]
    fn abandoned_ingest_is_removed_and_stale_files_cleaned_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("content");
        let cs = ContentStore::open(&root).unwrap();
        let digest = sha256_digest(b"x");
        let mut ing = cs.ingest(&digest, None).unwrap();
        ing.write(b"x").unwrap();
        drop(ing);
        assert_eq!(cs.ingest_count(), 0);
        // A crash leaves a file behind; the next open removes it.
        fs::write(root.join("ingest").join("leftover.1.0"), b"partial").unwrap();
        let cs = ContentStore::open(&root).unwrap();
        assert_eq!(cs.ingest_count(), 0);
    }

    #[test]
    fn rejects_malformed_digest() {
        let (_d, cs) = store();
        assert!(cs.ingest("sha256:../../etc", None).is_err());
        assert!(cs.ingest("md5:abcd", None).is_err());
    }
}
