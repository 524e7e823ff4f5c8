//! List filters shared by ListPodSandbox, ListContainers and the stats RPCs.

use std::collections::HashMap;

/// True when every `key=value` of `selector` is among `labels`.
pub(crate) fn labels_match(
    selector: &HashMap<String, String>,
    labels: &HashMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// True when `filter` is empty or `id` starts with it (ids may be given
/// truncated, as crictl shows them).
pub(crate) fn id_matches(filter: &str, id: &str) -> bool {
    filter.is_empty() || id.starts_with(filter)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn selectors_need_every_pair() {
        let labels = map(&[("app", "web"), ("tier", "front")]);
        assert!(labels_match(&map(&[]), &labels));
        assert!(labels_match(&map(&[("app", "web")]), &labels));
        assert!(labels_match(&labels, &labels));
        assert!(!labels_match(&map(&[("app", "db")]), &labels));
        assert!(!labels_match(&map(&[("app", "web"), ("x", "y")]), &labels));
    }

    #[test]
    fn ids_match_by_prefix() {
        assert!(id_matches("", "abc"));
        assert!(id_matches("ab", "abc"));
        assert!(id_matches("abc", "abc"));
        assert!(!id_matches("abd", "abc"));
    }
}
