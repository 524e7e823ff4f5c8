//! ListContainers with filters: id (or prefix), state, pod sandbox id (or
//! prefix), label selector.

use super::cri_container;
use crate::runtime_service::filter::{id_matches, labels_match};
use crate::runtime_service::store::container::ContainerRecord;
use crate::runtime_service::RuntimeContext;
use cria_proto::v1::{Container, ContainerFilter};

/// Whether `record` passes `filter`.
pub(crate) fn matches(record: &ContainerRecord, filter: &ContainerFilter) -> bool {
    id_matches(&filter.id, &record.id)
        && id_matches(&filter.pod_sandbox_id, &record.sandbox_id)
        && filter
            .state
            .as_ref()
            .is_none_or(|s| s.state == record.phase.to_cri() as i32)
        && labels_match(&filter.label_selector, &record.config.labels)
}

/// The containers that pass `filter`, converted in place (no record copies).
pub(crate) fn list(ctx: &RuntimeContext, filter: Option<&ContainerFilter>) -> Vec<Container> {
    ctx.containers.filter_map(|r| {
        filter
            .is_none_or(|f| matches(r, f))
            .then(|| cri_container(r))
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::runtime_service::store::container::ContainerPhase;
    use cria_proto::v1::{ContainerConfig, ContainerState, ContainerStateValue};

    /// A minimal record for filter and conversion tests.
    pub(crate) fn record(id: &str, sandbox: &str, phase: ContainerPhase) -> ContainerRecord {
        ContainerRecord {
            id: id.into(),
            sandbox_id: sandbox.into(),
            config: ContainerConfig {
                labels: [("app".to_string(), "web".to_string())].into(),
                ..Default::default()
            },
            image_id: "sha256:abc".into(),
            chain_ids: vec![],
            phase,
            created_at: 1,
            started_at: 0,
            finished_at: 0,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            pid: 0,
            log_path: None,
            rootfs: Default::default(),
            bundle: Default::default(),
            cgroup: String::new(),
            stop_signal: 15,
            resources: Default::default(),
            user: Default::default(),
        }
    }

    #[test]
    fn filters_combine() {
        let running = record("c1aa", "p1", ContainerPhase::Running);
        let exited = record("c2bb", "p2", ContainerPhase::Exited);
        let all = ContainerFilter::default();
        assert!(matches(&running, &all) && matches(&exited, &all));
        let by_pod = ContainerFilter {
            pod_sandbox_id: "p1".into(),
            ..Default::default()
        };
        assert!(matches(&running, &by_pod) && !matches(&exited, &by_pod));
        let by_state = ContainerFilter {
            state: Some(ContainerStateValue {
                state: ContainerState::ContainerExited as i32,
            }),
            ..Default::default()
        };
        assert!(!matches(&running, &by_state) && matches(&exited, &by_state));
        let by_id = ContainerFilter {
            id: "c2".into(),
            ..Default::default()
        };
        assert!(!matches(&running, &by_id) && matches(&exited, &by_id));
        let by_label = ContainerFilter {
            label_selector: [("app".to_string(), "db".to_string())].into(),
            ..Default::default()
        };
        assert!(!matches(&running, &by_label));
    }
}
