//! CNI spec versions and what each allows.

use std::fmt;
use std::str::FromStr;

/// Config versions this runtime accepts (plugins may support fewer; they say so).
pub const SUPPORTED_VERSIONS: [&str; 7] = [
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];

/// A CNI spec version (`major.minor.patch`), ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CniVersion {
    /// Major.
    pub major: u16,
    /// Minor.
    pub minor: u16,
    /// Patch.
    pub patch: u16,
}

impl CniVersion {
    /// A version from its parts.
    pub const fn new(major: u16, minor: u16, patch: u16) -> Self {
        Self {
            major,
            minor,
            patch,
        }
    }

    /// Results carry `interfaces` and plugins chain with `prevResult` (0.3.0 and later).
    pub fn has_chaining(self) -> bool {
        self >= Self::new(0, 3, 0)
    }

    /// CHECK exists and DEL gets the cached `prevResult` (0.4.0 and later).
    pub fn has_check(self) -> bool {
        self >= Self::new(0, 4, 0)
    }
}

impl FromStr for CniVersion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if !SUPPORTED_VERSIONS.contains(&s) {
            return Err(format!(
                "unsupported cniVersion {s:?} (supported: {})",
                SUPPORTED_VERSIONS.join(", ")
            ));
        }
        let mut parts = s.split('.').map(str::parse::<u16>);
        match (parts.next(), parts.next(), parts.next()) {
            (Some(Ok(major)), Some(Ok(minor)), Some(Ok(patch))) => {
                Ok(Self::new(major, minor, patch))
            }
            _ => Err(format!("malformed cniVersion {s:?}")),
        }
    }
}

impl fmt::Display for CniVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_supported_and_orders() {
        let v031: CniVersion = "0.3.1".parse().expect("0.3.1");
        let v100: CniVersion = "1.0.0".parse().expect("1.0.0");
        assert!(v031 < v100);
        assert!(v031.has_chaining() && !v031.has_check());
        assert!(v100.has_check());
        assert!(!"0.2.0".parse::<CniVersion>().expect("0.2.0").has_chaining());
        assert_eq!(v100.to_string(), "1.0.0");
    }

    #[test]
    fn rejects_unknown() {
        for bad in ["", "1.0", "2.0.0", "0.3.1-rc1", "v1.0.0"] {
            assert!(bad.parse::<CniVersion>().is_err(), "{bad}");
        }
    }
}
