//! Finding containers and pods by what people type: a full id, a name, or a
//! unique id prefix.

use cria_proto::v1::{
    Container, ContainerFilter, ListContainersRequest, ListPodSandboxRequest, PodSandbox,
};

use crate::client::Cri;
use crate::error::CliError;

/// Picks the one item matching `query`: exact id, then exact name, then unique id prefix.
pub fn pick<'a, T>(
    kind: &'static str,
    items: &'a [T],
    query: &str,
    id: impl Fn(&T) -> &str,
    name: impl Fn(&T) -> &str,
) -> Result<&'a T, CliError> {
    if query.is_empty() {
        return Err(CliError::Usage(format!("empty {kind} name or id")));
    }
    if let Some(x) = items.iter().find(|x| id(x) == query) {
        return Ok(x);
    }
    let by_name: Vec<&T> = items.iter().filter(|x| name(x) == query).collect();
    let by_prefix: Vec<&T> = items.iter().filter(|x| id(x).starts_with(query)).collect();
    let candidates = if by_name.is_empty() {
        by_prefix
    } else {
        by_name
    };
    match candidates.as_slice() {
        [one] => Ok(one),
        [] => Err(CliError::NotFound {
            kind,
            query: query.to_string(),
        }),
        many => Err(CliError::Ambiguous {
            kind,
            query: query.to_string(),
            candidates: many
                .iter()
                .map(|x| format!("{} ({})", &id(x)[..id(x).len().min(13)], name(x)))
                .collect(),
        }),
    }
}

/// Every container the runtime knows, in any state.
pub async fn list_containers(cri: &Cri) -> Result<Vec<Container>, CliError> {
    let req = ListContainersRequest {
        filter: Some(ContainerFilter::default()),
    };
    Ok(cri
        .call("list containers", cri.runtime().list_containers(req))
        .await?
        .containers)
}

/// Every pod sandbox the runtime knows.
pub async fn list_pods(cri: &Cri) -> Result<Vec<PodSandbox>, CliError> {
    let req = ListPodSandboxRequest { filter: None };
    Ok(cri
        .call("list pods", cri.runtime().list_pod_sandbox(req))
        .await?
        .items)
}

/// The container's name from its metadata.
pub fn container_name(c: &Container) -> &str {
    c.metadata.as_ref().map_or("", |m| m.name.as_str())
}

/// The pod's name from its metadata.
pub fn pod_name(p: &PodSandbox) -> &str {
    p.metadata.as_ref().map_or("", |m| m.name.as_str())
}

/// Resolves a container by id, name or unique id prefix.
pub async fn container(cri: &Cri, query: &str) -> Result<Container, CliError> {
    let all = list_containers(cri).await?;
    pick("container", &all, query, |c| &c.id, container_name).cloned()
}

/// Resolves a pod by id, name or unique id prefix.
pub async fn pod(cri: &Cri, query: &str) -> Result<PodSandbox, CliError> {
    let all = list_pods(cri).await?;
    pick("pod", &all, query, |p| &p.id, pod_name).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items() -> Vec<(&'static str, &'static str)> {
        vec![
            ("abc123", "web"),
            ("abd456", "db"),
            ("ff0000", "abc"),
            ("ee0000", "twin"),
            ("ee1111", "twin"),
        ]
    }

    fn find(q: &str) -> Result<&'static str, CliError> {
        let all = items();
        pick("container", &all, q, |x| x.0, |x| x.1).map(|x| x.0)
    }

    #[test]
    fn exact_id_then_name_then_prefix() {
        assert_eq!(find("abc123").unwrap(), "abc123");
        assert_eq!(find("web").unwrap(), "abc123");
        // A name wins over an id prefix.
        assert_eq!(find("abc").unwrap(), "ff0000");
        assert_eq!(find("abd").unwrap(), "abd456");
    }

    #[test]
    fn ambiguous_lists_candidates() {
        let err = find("ab").unwrap_err().to_string();
        assert!(err.contains("ambiguous"), "{err}");
        assert!(
            err.contains("abc123 (web)") && err.contains("abd456 (db)"),
            "{err}"
        );
        assert!(find("twin").unwrap_err().to_string().contains("ee1111"));
    }

    #[test]
    fn missing_is_not_found() {
        assert_eq!(
            find("zzz").unwrap_err().to_string(),
            "no such container: zzz"
        );
        assert!(matches!(find(""), Err(CliError::Usage(_))));
    }
}
