//! One layer stream: decompression, diff ID hashing and extraction.

use std::io::{self, Read};
use std::path::Path;
use std::sync::mpsc::{self, Receiver, SyncSender};

use sha2::{Digest, Sha256};

use crate::error::{OverlayError, Result};
use crate::extract::Extractor;

/// Size of the chunks passed from the decompressor to the tar parser.
const STREAM_BUFFER: usize = 256 * 1024;
/// Chunks in flight between the two stages (bounds memory per layer).
const PIPELINE_DEPTH: usize = 8;

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
///
/// Two stages run at once: this thread reads, decompresses and hashes (the
/// caller's reader need not be `Send`); a scoped thread parses the tar and
/// writes files. Decompression is the bottleneck of a pull, so the writes
/// hide behind it on a second core.
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
    let mut extractor = Extractor::new(root, chain_id)?;

    let (produced, extracted) = std::thread::scope(|scope| {
        let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(PIPELINE_DEPTH);
        let extraction = scope.spawn(move || -> Result<LayerStats> {
            let mut archive = tar::Archive::new(ChannelReader::new(rx));
            extractor.extract(&mut archive)?;
            let stats = extractor.finish()?;
            // Take the end-of-archive blocks and padding so the producer
            // can finish hashing them.
            let _ = io::copy(&mut archive.into_inner(), &mut io::sink());
            Ok(stats)
        });
        let produced = produce(compressed, compression, tx);
        // Invariant: the closure returns errors as values; a panic in it is a bug.
        let extracted = extraction.join().expect("extraction thread panicked");
        (produced, extracted)
    });
    // A broken stream explains a failed extraction better than the
    // extraction's "unexpected end of archive", so it wins.
    let actual_hex = produced.map_err(stream_error)?;
    let stats = extracted?;

    if actual_hex != expected_hex {
        return Err(OverlayError::DiffIdMismatch {
            chain_id: chain_id.to_owned(),
            expected: expected_diff_id.to_owned(),
            actual: format!("sha256:{actual_hex}"),
        });
    }
    Ok(stats)
}

/// Decompresses and hashes the whole stream into `tx`, then reads the
/// compressed reader to its end; returns the hex sha256 of the uncompressed
/// bytes. Stops early (returning what it hashed) if the extractor hung up:
/// it failed, and its error is the one to report.
fn produce(
    compressed: &mut dyn Read,
    compression: Compression,
    tx: SyncSender<Vec<u8>>,
) -> io::Result<String> {
    let mut decoder: Box<dyn Read + '_> = match compression {
        Compression::None => Box::new(&mut *compressed),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(&mut *compressed)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(&mut *compressed)?),
    };
    let mut hasher = Sha256::new();
    loop {
        let mut chunk = vec![0u8; STREAM_BUFFER];
        let n = read_full(&mut decoder, &mut chunk)?;
        if n == 0 {
            break;
        }
        chunk.truncate(n);
        hasher.update(&chunk);
        if tx.send(chunk).is_err() {
            return Ok(hex::encode(hasher.finalize()));
        }
    }
    drop(tx);
    drop(decoder);
    // Bytes after the compressed stream's end (and the caller's own
    // verification at EOF) must be seen too.
    io::copy(compressed, &mut io::sink())?;
    Ok(hex::encode(hasher.finalize()))
}

/// Reads until `buf` is full or EOF, so chunks stay large.
fn read_full(reader: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The extraction side of the pipeline: reads the chunks in order; EOF when
/// the producer is done (or gave up).
struct ChannelReader {
    rx: Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl ChannelReader {
    fn new(rx: Receiver<Vec<u8>>) -> Self {
        ChannelReader {
            rx,
            chunk: Vec::new(),
            pos: 0,
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.chunk.len() {
            match self.rx.recv() {
                Ok(chunk) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
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
    fn pipeline_passes_every_byte_in_order() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let (tx, rx) = mpsc::sync_channel(PIPELINE_DEPTH);
        let received = std::thread::scope(|scope| {
            let reader = scope.spawn(move || {
                let mut out = Vec::new();
                ChannelReader::new(rx).read_to_end(&mut out).unwrap();
                out
            });
            let hex = produce(&mut &data[..], Compression::None, tx).unwrap();
            assert_eq!(hex, hex::encode(Sha256::digest(&data)));
            reader.join().unwrap()
        });
        assert_eq!(received, data);
    }

    #[test]
    fn producer_stops_when_the_consumer_hangs_up() {
        let data = vec![0u8; 10 * STREAM_BUFFER];
        let (tx, rx) = mpsc::sync_channel(1);
        drop(rx);
        // Must return instead of blocking on a full channel.
        produce(&mut &data[..], Compression::None, tx).unwrap();
    }
}
