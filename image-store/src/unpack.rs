//! The seam between downloading and unpacking: the [`LayerUnpacker`] trait
//! (implemented by the shim with overlay's snapshot store) and the reader
//! that feeds it a layer while it downloads.

use std::io::{self, Read};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::content::Ingest;
use crate::error::{ImageError, UnpackError};
use crate::image::LayerInfo;

/// Unpacks layer blobs into snapshots keyed by chain ID.
pub trait LayerUnpacker: Send + Sync {
    /// Whether the snapshot for this chain ID is already committed.
    fn is_unpacked(&self, chain_id: &str) -> bool;

    /// Unpacks a compressed layer (`layer.compression`) into the snapshot
    /// `layer.chain_id`, verifying `layer.diff_id`.
    ///
    /// `compressed` yields the blob *while it downloads*. It returns an error
    /// at its end if the blob's digest or size is wrong, so the unpacker must
    /// read it to EOF before it commits anything.
    fn unpack(&self, layer: &LayerInfo, compressed: &mut dyn Read) -> Result<(), UnpackError>;
}

/// One piece of a downloading blob, or the error that ended the download.
pub(crate) type Chunk = Result<Bytes, ImageError>;

/// A blocking `Read` over the chunks of a download: every byte handed out
/// has first gone to the ingest file and its hasher. At the end of the
/// stream the ingest is verified and committed; a mismatch (or a download
/// error) turns the would-be EOF into an error.
pub(crate) struct TeeReader {
    rx: mpsc::Receiver<Chunk>,
    ingest: Option<Ingest>,
    current: Bytes,
    outcome: Option<Result<(), String>>,
    error: Option<ImageError>,
}

impl TeeReader {
    /// A reader of the chunks arriving on `rx`, stored through `ingest`.
    pub(crate) fn new(rx: mpsc::Receiver<Chunk>, ingest: Ingest) -> TeeReader {
        TeeReader {
            rx,
            ingest: Some(ingest),
            current: Bytes::new(),
            outcome: None,
            error: None,
        }
    }

    /// Reads whatever the unpacker left unread (so the blob is still stored)
    /// and returns how the blob ended: committed, or the error that stopped it.
    pub(crate) fn finish(mut self) -> Result<(), ImageError> {
        let mut sink = [0u8; 64 * 1024];
        while self.outcome.is_none() || !self.current.is_empty() {
            match self.read(&mut sink) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        match self.error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The error that ended the stream, if it ended in one (taken once).
    pub(crate) fn take_error(&mut self) -> Option<ImageError> {
        self.error.take()
    }

    fn end(&mut self, result: Result<(), ImageError>) {
        match result {
            Ok(()) => self.outcome = Some(Ok(())),
            Err(e) => {
                self.outcome = Some(Err(e.to_string()));
                self.error = Some(e);
                // Drop the ingest (removing its temp file) and the receiver,
                // which stops the download.
                self.ingest = None;
                self.rx.close();
            }
        }
    }
}

impl Read for TeeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if !self.current.is_empty() {
                let n = buf.len().min(self.current.len());
                buf[..n].copy_from_slice(&self.current.split_to(n));
                return Ok(n);
            }
            if let Some(outcome) = &self.outcome {
                return match outcome {
                    Ok(()) => Ok(0),
                    Err(msg) => Err(io::Error::new(io::ErrorKind::InvalidData, msg.clone())),
                };
            }
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => {
                    let written = match self.ingest.as_mut() {
                        Some(ingest) => ingest.write(&chunk),
                        None => Ok(()),
                    };
                    match written {
                        Ok(()) => self.current = chunk,
                        Err(e) => self.end(Err(e)),
                    }
                }
                Some(Err(e)) => self.end(Err(e)),
                None => {
                    let committed = match self.ingest.take() {
                        Some(ingest) => ingest.commit(),
                        None => Ok(()),
                    };
                    self.end(committed);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::ContentStore;
    use crate::digest::sha256_digest;

    fn feed(chunks: Vec<Chunk>) -> mpsc::Receiver<Chunk> {
        let (tx, rx) = mpsc::channel(chunks.len() + 1);
        for c in chunks {
            tx.try_send(c).unwrap();
        }
        rx
    }

    /// A content store in a fresh directory (kept alive by the returned
    /// guard) and a reader of `chunks` that tees them into an ingest of the
    /// 6-byte blob "abcdef" there.
    fn tee_abcdef(chunks: Vec<Chunk>) -> (tempfile::TempDir, ContentStore, String, TeeReader) {
        let dir = tempfile::tempdir().unwrap();
        let cs = ContentStore::open(dir.path()).unwrap();
        let digest = sha256_digest(b"abcdef");
        let ingest = cs.ingest(&digest, Some(6)).unwrap();
        let reader = TeeReader::new(feed(chunks), ingest);
        (dir, cs, digest, reader)
    }

    #[test]
    fn good_stream_reads_through_and_commits() {
        let (_dir, cs, digest, mut r) = tee_abcdef(vec![
            Ok(Bytes::from_static(b"abc")),
            Ok(Bytes::from_static(b"def")),
        ]);
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"abcdef");
        r.finish().unwrap();
        assert!(cs.contains(&digest));
    }

    #[test]
    fn corrupt_stream_errors_at_eof_and_keeps_nothing() {
        let (_dir, cs, digest, mut r) = tee_abcdef(vec![
            Ok(Bytes::from_static(b"abc")),
            Ok(Bytes::from_static(b"xyz")),
        ]);
        let mut out = Vec::new();
        let err = r.read_to_end(&mut out).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        // All bytes were handed out, but the end is an error, not EOF.
        assert_eq!(out, b"abcxyz");
        assert!(matches!(r.finish(), Err(ImageError::DigestMismatch { .. })));
        assert!(!cs.contains(&digest));
        assert_eq!(cs.ingest_count(), 0);
    }

    #[test]
    fn download_error_ends_the_stream_with_that_error() {
        let (_dir, cs, digest, mut r) = tee_abcdef(vec![
            Ok(Bytes::from_static(b"abc")),
            Err(ImageError::Registry {
                registry: "r".into(),
                detail: "connection reset".into(),
            }),
        ]);
        let mut out = Vec::new();
        let err = r.read_to_end(&mut out).unwrap_err();
        assert!(err.to_string().contains("connection reset"), "{err}");
        assert!(matches!(r.take_error(), Some(ImageError::Registry { .. })));
        assert!(!cs.contains(&digest));
        assert_eq!(cs.ingest_count(), 0);
    }

    #[test]
    fn finish_drains_what_the_unpacker_left() {
        let (_dir, cs, digest, mut r) = tee_abcdef(vec![
            Ok(Bytes::from_static(b"abc")),
            Ok(Bytes::from_static(b"def")),
        ]);
        let mut two = [0u8; 2];
        r.read_exact(&mut two).unwrap();
        r.finish().unwrap();
        assert!(cs.contains(&digest));
    }
}
