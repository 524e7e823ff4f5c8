//! Chain IDs: the snapshot keys, validated so they can name a directory.

use crate::error::{OverlayError, Result};

const PREFIX: &str = "sha256:";

/// Returns the 64-hex-digit part of `sha256:<hex>` or of a bare `<hex>`.
///
/// Validation is strict because the hex becomes a directory name under the
/// snapshot root: nothing else (no `/`, no `..`) may get there.
pub(crate) fn chain_id_hex(id: &str) -> Result<&str> {
    let hex = id.strip_prefix(PREFIX).unwrap_or(id);
    if is_sha256_hex(hex) {
        Ok(hex)
    } else {
        Err(OverlayError::InvalidChainId { id: id.to_owned() })
    }
}

/// True for exactly 64 lower-case hex digits.
pub(crate) fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The canonical `sha256:<hex>` form of a validated hex part.
pub(crate) fn canonical(hex: &str) -> String {
    format!("{PREFIX}{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "5d41402abc4b2a76b9719d911017c592ae1e7c1e4a1ef4a8e5a2a1b7b3e6c0d9";

    #[test]
    fn accepts_prefixed_and_bare() {
        assert_eq!(chain_id_hex(&format!("sha256:{HEX}")).unwrap(), HEX);
        assert_eq!(chain_id_hex(HEX).unwrap(), HEX);
        assert_eq!(canonical(HEX), format!("sha256:{HEX}"));
    }

    #[test]
    fn rejects_paths_and_bad_hex() {
        for bad in [
            "",
            "..",
            "sha256:../../etc",
            "sha512:abc",
            &HEX.to_uppercase(),
            &HEX[1..],
        ] {
            assert!(
                matches!(chain_id_hex(bad), Err(OverlayError::InvalidChainId { .. })),
                "{bad:?} accepted"
            );
        }
    }
}
