//! Pod traffic shaping from kubelet's annotations
//! `kubernetes.io/ingress-bandwidth` / `kubernetes.io/egress-bandwidth`
//! (Kubernetes quantities in bits per second), handed to the CNI
//! `bandwidth` capability.

use cria_cni::Bandwidth;
use std::collections::HashMap;

/// Annotation limiting traffic into the pod.
pub(crate) const INGRESS_ANNOTATION: &str = "kubernetes.io/ingress-bandwidth";
/// Annotation limiting traffic out of the pod.
pub(crate) const EGRESS_ANNOTATION: &str = "kubernetes.io/egress-bandwidth";

/// Burst when only a rate is given: effectively unlimited, as containerd
/// and the old dockershim send it (the bandwidth plugin needs one).
const UNLIMITED_BURST: u64 = u32::MAX as u64;

/// Why an annotation could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("annotation {annotation}={value:?} is not a bandwidth quantity (e.g. 10M, 1Gi)")]
pub(crate) struct BandwidthError {
    annotation: &'static str,
    value: String,
}

/// The pod's shaping, or `None` when neither annotation is set.
pub(crate) fn from_annotations(
    annotations: &HashMap<String, String>,
) -> Result<Option<Bandwidth>, BandwidthError> {
    let rate = |annotation: &'static str| -> Result<Option<u64>, BandwidthError> {
        annotations
            .get(annotation)
            .map(|value| {
                parse_quantity(value).ok_or_else(|| BandwidthError {
                    annotation,
                    value: value.clone(),
                })
            })
            .transpose()
    };
    let (ingress, egress) = (rate(INGRESS_ANNOTATION)?, rate(EGRESS_ANNOTATION)?);
    if ingress.is_none() && egress.is_none() {
        return Ok(None);
    }
    let mut bw = Bandwidth::default();
    if let Some(r) = ingress {
        bw.ingress_rate = r;
        bw.ingress_burst = UNLIMITED_BURST;
    }
    if let Some(r) = egress {
        bw.egress_rate = r;
        bw.egress_burst = UNLIMITED_BURST;
    }
    Ok(Some(bw))
}

/// A Kubernetes quantity (`10M`, `1.5Gi`, `500k`, `1000`) as a whole
/// number, rounded up like `Quantity.Value()`; `None` if malformed,
/// negative or zero.
fn parse_quantity(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let multiplier: u128 = match suffix {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "P" => 1_000_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        _ => return None,
    };
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && frac.is_empty() || frac.len() > 18 {
        return None;
    }
    let digits = |d: &str| -> Option<u128> {
        if d.is_empty() {
            Some(0)
        } else {
            d.parse::<u128>().ok()
        }
    };
    let scale = 10u128.pow(frac.len() as u32);
    let exact = digits(whole)?
        .checked_mul(scale)?
        .checked_add(digits(frac)?)?
        .checked_mul(multiplier)?;
    let value = exact.div_ceil(scale);
    u64::try_from(value).ok().filter(|&v| v > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_in_bits_per_second() {
        for (s, v) in [
            ("1000", 1000),
            ("10M", 10_000_000),
            ("1Gi", 1 << 30),
            ("1.5k", 1500),
            ("0.5Mi", 1 << 19),
            ("1.0001", 2),
            ("100k", 100_000),
        ] {
            assert_eq!(parse_quantity(s), Some(v), "{s}");
        }
        for s in ["", "M", "-1M", "10X", "1e3", "0", "1..2", "abc"] {
            assert_eq!(parse_quantity(s), None, "{s}");
        }
    }

    #[test]
    fn annotations_become_rates_with_unlimited_bursts() {
        let mut a = HashMap::new();
        assert_eq!(from_annotations(&a), Ok(None));
        a.insert(INGRESS_ANNOTATION.to_string(), "10M".to_string());
        let bw = from_annotations(&a).unwrap().unwrap();
        assert_eq!(
            (bw.ingress_rate, bw.ingress_burst),
            (10_000_000, UNLIMITED_BURST)
        );
        assert_eq!((bw.egress_rate, bw.egress_burst), (0, 0));
        a.insert(EGRESS_ANNOTATION.to_string(), "fast".to_string());
        let err = from_annotations(&a).unwrap_err();
        assert!(err.to_string().contains(EGRESS_ANNOTATION), "{err}");
    }
}
