//! Unpacks one layer blob into a snapshot store and reports the time taken:
//! `apply_layer <store-dir> <blob> <none|gzip|zstd> <sha256:diff-id>`.
//! Used to compare cria's unpacking with `tar -xzf` on the same bytes.

use std::time::Instant;

use cria_overlay::{Compression, SnapshotStore};
use sha2::{Digest, Sha256};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, store, blob, compression, diff_id] = args.as_slice() else {
        return Err(
            "usage: apply_layer <store-dir> <blob> <none|gzip|zstd> <sha256:diff-id>".into(),
        );
    };
    let compression = match compression.as_str() {
        "none" => Compression::None,
        "gzip" => Compression::Gzip,
        "zstd" => Compression::Zstd,
        other => return Err(format!("unknown compression {other:?}").into()),
    };
    let store = SnapshotStore::open(store)?;
    // Any chain ID will do for a measurement; derive one from the blob path.
    let chain_id = format!("sha256:{}", hex::encode(Sha256::digest(blob.as_bytes())));
    let size = std::fs::metadata(blob)?.len();
    let mut file = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(blob)?);
    let started = Instant::now();
    let stats = store.apply_layer(&chain_id, &mut file, compression, diff_id)?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{chain_id}: {} files bytes, {} inodes, {size} compressed bytes in {secs:.3}s ({:.1} MB/s compressed, {:.1} MB/s uncompressed)",
        stats.bytes,
        stats.inodes,
        size as f64 / secs / 1e6,
        stats.bytes as f64 / secs / 1e6
    );
    Ok(())
}
