//! Looking at criad's on-disk store from outside (docs/architecture.md layout):
//! what blobs, ingest files and snapshots exist, and the chain IDs to expect.

use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Names of the entries of `dir`, sorted (empty when it does not exist).
pub fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Files in `<root>/content/ingest` (downloads in progress or left behind).
pub fn ingest_entries(root: &Path) -> Vec<String> {
    entries(&root.join("content/ingest"))
}

/// Digests (`sha256:<hex>`) of the verified blobs in `<root>/content/blobs`.
pub fn blob_digests(root: &Path) -> Vec<String> {
    entries(&root.join("content/blobs/sha256"))
        .into_iter()
        .map(|h| format!("sha256:{h}"))
        .collect()
}

/// Path of a blob in the content store.
pub fn blob_path(root: &Path, digest: &str) -> PathBuf {
    root.join("content/blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

/// Entries of `<root>/snapshots` (committed chain IDs and any `.tmp-*`).
pub fn snapshot_entries(root: &Path) -> Vec<String> {
    entries(&root.join("snapshots"))
}

/// The committed layer dir of a chain ID.
pub fn snapshot_fs(root: &Path, chain_id: &str) -> PathBuf {
    root.join("snapshots")
        .join(chain_id.trim_start_matches("sha256:"))
        .join("fs")
}

/// OCI chain IDs of a list of diff_ids (base first), as `sha256:<hex>`.
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => format!(
                "sha256:{}",
                hex::encode(Sha256::digest(format!("{prev} {d}").as_bytes()))
            ),
        };
        out.push(next);
    }
    out
}

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_id_of_one_layer_is_its_diff_id_and_then_chains() {
        let a = "sha256:aaaa".to_owned();
        let b = "sha256:bbbb".to_owned();
        let ids = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(ids[0], a);
        assert_eq!(ids[1], sha256_digest(b"sha256:aaaa sha256:bbbb"));
    }
}
