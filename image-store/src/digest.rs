//! sha256 digests as OCI writes them (`sha256:<hex>`) and layer chain IDs.

use sha2::{Digest as _, Sha256};

/// `sha256:<hex>` of a byte slice.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// The hex part of a `sha256:<hex>` digest (the whole string if it has no prefix).
pub fn digest_hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

/// Chain IDs for a stack of layers, base first:
/// chainid(L0) = diffid(L0); chainid(Ln) = sha256(chainid(Ln-1) + " " + diffid(Ln)).
/// They name a layer *together with everything below it*, so a snapshot can
/// be shared by every image with the same base.
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = match out.last() {
            None => diff_id.clone(),
            Some(parent) => sha256_digest(format!("{parent} {diff_id}").as_bytes()),
        };
        out.push(next);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_empty_input() {
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn chain_ids_follow_the_oci_definition() {
        let a = sha256_digest(b"a");
        let b = sha256_digest(b"b");
        let c = sha256_digest(b"c");
        let ids = chain_ids(&[a.clone(), b.clone(), c.clone()]);
        assert_eq!(ids.len(), 3);
        assert_eq!(ids[0], a);
        let ab = sha256_digest(format!("{a} {b}").as_bytes());
        assert_eq!(ids[1], ab);
        assert_eq!(ids[2], sha256_digest(format!("{ab} {c}").as_bytes()));
        // Known value: the chain ID of two layers computed independently with sha256sum.
        // printf 'sha256:aa sha256:bb' | sha256sum
        let known = chain_ids(&["sha256:aa".into(), "sha256:bb".into()]);
        assert_eq!(
            known[1],
            "sha256:b68ad689d6d1ec110ea1c13617437ad6f3766d4b3b309f6a603a222e07a0164f"
        );
        assert!(chain_ids(&[]).is_empty());
    }
}
