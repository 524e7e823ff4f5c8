//! One layer stream: decompression, diff ID hashing and extraction.

use std::io::{self, BufReader, Read};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{OverlayError, Result};
use crate::extract::Extractor;

/// Read-ahead between the decompressor and the tar parser, so the parser's
/// 512-byte header reads do not each reach the decompressor.
const STREAM_BUFFER: usize = 256 * 1024;

/// How a layer blob is compressed (from its media type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar (`...layer.v1.tar`).
    None,
    /// gzip, possibly several members (`+gzip`, eStargz).
    Gzip,
    /// zstd, possibly several frames (`+zstd`).
    Zstd,
}

/// What unpacking a layer created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LayerStats {
    /// Bytes of regular-file contents written.
    pub bytes: u64,
    /// Inodes created (files, directories, links, devices, whiteouts;
    /// hardlinks add none).
    pub inodes: u64,
}

/// Counts and hashes every byte read through it: the diff ID is the sha256
/// of the whole uncompressed stream, including what follows the tar's end.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Returns the hex of a `sha256:<hex>` diff ID.
pub(crate) fn diff_id_hex(diff_id: &str) -> Result<&str> {
    diff_id
        .strip_prefix("sha256:")
        .filter(|hex| crate::chain_id::is_sha256_hex(hex))
        .ok_or_else(|| OverlayError::UnsupportedDiffId {
            digest: diff_id.to_owned(),
        })
}

/// Decompresses `compressed`, extracts it into the empty directory `root`,
/// reads the stream to its very end (the caller's reader reports a blob
/// digest mismatch only there) and checks the diff ID.
pub(crate) fn unpack_stream(
    root: &Path,
    chain_id: &str,
    compressed: &mut dyn Read,
    compression: Compression,
    expected_diff_id: &str,
) -> Result<LayerStats> {
    let stream_error = |source: io::Error| OverlayError::Stream {
        chain_id: chain_id.to_owned(),
        source,
    };
    let expected_hex = diff_id_hex(expected_diff_id)?;
    let decoder: Box<dyn Read + '_> = match compression {
        Compression::None => Box::new(&mut *compressed),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(&mut *compressed)),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::new(&mut *compressed).map_err(stream_error)?)
        }
    };
    let hashing = HashingReader {
        inner: decoder,
        hasher: Sha256::new(),
    };
    let mut archive = tar::Archive::new(BufReader::with_capacity(STREAM_BUFFER, hashing));
    let mut extractor = Extractor::new(root, chain_id)?;
    extractor.extract(&mut archive)?;
    let stats = extractor.finish()?;

    // The end-of-archive blocks and any padding count towards the diff ID.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(stream_error)?;
    let actual_hex = hex::encode(rest.into_inner().hasher.finalize());
    // Bytes after the compressed stream's end (and the caller's own
    // verification at EOF) must be seen too.
    io::copy(compressed, &mut io::sink()).map_err(stream_error)?;

    if actual_hex != expected_hex {
        return Err(OverlayError::DiffIdMismatch {
            chain_id: chain_id.to_owned(),
            expected: expected_diff_id.to_owned(),
            actual: format!("sha256:{actual_hex}"),
        });
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_id_must_be_sha256() {
        let hex = "a".repeat(64);
        assert_eq!(diff_id_hex(&format!("sha256:{hex}")).unwrap(), hex);
        for bad in [
            hex.clone(),
            format!("sha512:{hex}"),
            "sha256:abc".to_owned(),
        ] {
            assert!(matches!(
                diff_id_hex(&bad),
                Err(OverlayError::UnsupportedDiffId { .. })
            ));
        }
    }

    #[test]
    fn hashing_reader_sees_every_byte() {
        let data = b"hello world".repeat(1000);
        let mut reader = HashingReader {
            inner: &data[..],
            hasher: Sha256::new(),
        };
        io::copy(&mut reader, &mut io::sink()).unwrap();
        assert_eq!(reader.hasher.finalize()[..], Sha256::digest(&data)[..]);
    }
}
