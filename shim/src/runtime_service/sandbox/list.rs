//! ListPodSandbox with filters: id (or unique prefix), state, label selector.

use crate::runtime_service::filter::{id_matches, labels_match};
use crate::runtime_service::store::sandbox::SandboxRecord;
use crate::runtime_service::RuntimeContext;
use cria_proto::v1::{PodSandbox, PodSandboxFilter};

/// Whether `record` passes `filter`.
pub(crate) fn matches(record: &SandboxRecord, filter: &PodSandboxFilter) -> bool {
    id_matches(&filter.id, &record.id)
        && filter
            .state
            .as_ref()
            .is_none_or(|s| s.state == record.state.to_cri() as i32)
        && labels_match(&filter.label_selector, &record.config.labels)
}

/// The sandboxes that pass `filter`, converted in place (no record copies).
pub(crate) fn list(ctx: &RuntimeContext, filter: Option<&PodSandboxFilter>) -> Vec<PodSandbox> {
    ctx.sandboxes.filter_map(|r| {
        filter.is_none_or(|f| matches(r, f)).then(|| PodSandbox {
            metadata: Some(r.metadata()),
            state: r.state.to_cri() as i32,
            created_at: r.created_at,
            labels: r.config.labels.clone(),
            annotations: r.config.annotations.clone(),
            runtime_handler: r.runtime_handler.clone(),
            id: r.id.clone(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime_service::store::sandbox::SandboxState;
    use cria_proto::v1::{PodSandboxConfig, PodSandboxState, PodSandboxStateValue};

    fn record(id: &str, state: SandboxState, app: &str) -> SandboxRecord {
        SandboxRecord {
            id: id.into(),
            config: PodSandboxConfig {
                labels: [("app".to_string(), app.to_string())].into(),
                ..Default::default()
            },
            runtime_handler: String::new(),
            state,
            created_at: 1,
            cgroup: String::new(),
            namespaces: Default::default(),
            network: Default::default(),
            dir: Default::default(),
        }
    }

    #[test]
    fn filters_combine() {
        let ready = record("aaa1", SandboxState::Ready, "web");
        let stopped = record("bbb2", SandboxState::NotReady, "web");
        let f = |id: &str, state: Option<PodSandboxState>, app: Option<&str>| PodSandboxFilter {
            id: id.into(),
            state: state.map(|s| PodSandboxStateValue { state: s as i32 }),
            label_selector: app
                .map(|a| [("app".to_string(), a.to_string())].into())
                .unwrap_or_default(),
        };
        assert!(matches(&ready, &f("", None, None)));
        assert!(matches(&ready, &f("aa", None, None)));
        assert!(!matches(&stopped, &f("aa", None, None)));
        assert!(matches(
            &ready,
            &f("", Some(PodSandboxState::SandboxReady), None)
        ));
        assert!(!matches(
            &stopped,
            &f("", Some(PodSandboxState::SandboxReady), None)
        ));
        assert!(matches(
            &stopped,
            &f("", Some(PodSandboxState::SandboxNotready), Some("web"))
        ));
        assert!(!matches(&ready, &f("", None, Some("db"))));
    }
}
