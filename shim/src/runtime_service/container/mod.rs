//! Container RPCs, one file each, and what they share: record → CRI
//! conversions, exit recording and events.

pub(crate) mod create;
pub(crate) mod exec_sync;
pub(crate) mod exit_watch;
pub(crate) mod list;
pub(crate) mod remove;
pub(crate) mod reopen_log;
pub(crate) mod start;
pub(crate) mod stats;
pub(crate) mod status;
pub(crate) mod stop;
pub(crate) mod update;

use super::context::{now_ns, system_time_ns};
use super::store::container::{ContainerPhase, ContainerRecord};
use super::store::Entry;
use super::RuntimeContext;
use cria_proto::v1 as cri;
use cria_runtime::{ContainerState, Status as RtStatus};
use tonic::Status;

/// The image spec shown for a container: what kubelet asked for.
fn image_spec(record: &ContainerRecord) -> cri::ImageSpec {
    record.config.image.clone().unwrap_or_default()
}

/// The CRI list item of a container record.
pub(crate) fn cri_container(record: &ContainerRecord) -> cri::Container {
    cri::Container {
        id: record.id.clone(),
        pod_sandbox_id: record.sandbox_id.clone(),
        metadata: Some(record.metadata()),
        image: Some(image_spec(record)),
        image_ref: record.image_id.clone(),
        state: record.phase.to_cri() as i32,
        created_at: record.created_at,
        labels: record.config.labels.clone(),
        annotations: record.config.annotations.clone(),
        image_id: record.image_id.clone(),
    }
}

/// The CRI status of a container record.
/// `process.user` of the applied OCI spec as CRI's ContainerUser. The
/// supplemental groups are the process's group list as `id -G` shows it:
/// the gid first, then the additional gids (each once).
pub(crate) fn process_user(spec: &oci_spec::runtime::Spec) -> cri::ContainerUser {
    let Some(process) = spec.process() else {
        return cri::ContainerUser::default();
    };
    let user = process.user();
    let gid = i64::from(user.gid());
    let mut groups = vec![gid];
    for g in user
        .additional_gids()
        .iter()
        .flatten()
        .map(|g| i64::from(*g))
    {
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    cri::ContainerUser {
        linux: Some(cri::LinuxContainerUser {
            uid: i64::from(user.uid()),
            gid,
            supplemental_groups: groups,
        }),
    }
}

pub(crate) fn cri_status(record: &ContainerRecord) -> cri::ContainerStatus {
    cri::ContainerStatus {
        id: record.id.clone(),
        metadata: Some(record.metadata()),
        state: record.phase.to_cri() as i32,
        created_at: record.created_at,
        started_at: record.started_at,
        finished_at: record.finished_at,
        exit_code: record.exit_code,
        image: Some(image_spec(record)),
        image_ref: record.image_id.clone(),
        reason: record.reason.clone(),
        message: record.message.clone(),
        labels: record.config.labels.clone(),
        annotations: record.config.annotations.clone(),
        mounts: record.config.mounts.clone(),
        log_path: record
            .log_path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        resources: Some(cri::ContainerResources {
            linux: Some(record.resources.clone()),
            windows: None,
        }),
        image_id: record.image_id.clone(),
        user: record.user.linux.is_some().then(|| record.user.clone()),
        stop_signal: record.config.stop_signal,
    }
}

/// Sends a container event carrying the pod's status and the statuses of
/// all its containers (what kubelet's evented PLEG expects).
pub(crate) fn emit(ctx: &RuntimeContext, record: &ContainerRecord, kind: cri::ContainerEventType) {
    if !ctx.events.has_subscribers() {
        return;
    }
    let pod = ctx
        .sandboxes
        .get(&record.sandbox_id)
        .ok()
        .map(|e| super::sandbox::cri_status(&e.get()));
    let mut statuses: Vec<cri::ContainerStatus> = ctx
        .containers
        .list()
        .iter()
        .filter(|c| c.sandbox_id == record.sandbox_id && c.id != record.id)
        .map(cri_status)
        .collect();
    if kind != cri::ContainerEventType::ContainerDeletedEvent {
        statuses.push(cri_status(record));
    }
    tracing::debug!(container = %record.id, event = super::events::type_name(kind), "event");
    ctx.events.emit(cri::ContainerEventResponse {
        container_id: record.id.clone(),
        container_event_type: kind as i32,
        created_at: now_ns(),
        pod_sandbox_status: pod,
        containers_statuses: statuses,
    });
}

/// The CRI reason of an exit.
pub(crate) fn exit_reason(exit_code: i32, oom_killed: bool) -> &'static str {
    if oom_killed {
        "OOMKilled"
    } else if exit_code == 0 {
        "Completed"
    } else {
        "Error"
    }
}

/// Applies a final runtime state to a record; false if it is not final.
pub(crate) fn apply_final_state(record: &mut ContainerRecord, state: &ContainerState) -> bool {
    match state.status {
        RtStatus::Stopped => {
            let code = state.exit_code.unwrap_or(255);
            record.phase = ContainerPhase::Exited;
            record.exit_code = code;
            record.finished_at = state.finished_at.map(system_time_ns).unwrap_or_else(now_ns);
            if record.started_at == 0 {
                if let Some(t) = state.started_at {
                    record.started_at = system_time_ns(t);
                }
            }
            // Our own clock read for the start may come after the runtime's
            // finish time of a container that exited at once.
            if record.started_at > record.finished_at {
                record.started_at = record.finished_at;
            }
            record.reason = exit_reason(code, state.oom_killed).to_string();
            record.message = state.message.clone().unwrap_or_default();
            true
        }
        RtStatus::Unknown => {
            record.phase = ContainerPhase::Unknown;
            record.reason = "Unknown".into();
            record.message = state.message.clone().unwrap_or_else(|| {
                "the container's monitor exited without recording an exit".into()
            });
            true
        }
        RtStatus::Created | RtStatus::Running => false,
    }
}

/// Records a final runtime state once; emits CONTAINER_STOPPED the first time.
pub(crate) fn record_exit(
    ctx: &RuntimeContext,
    entry: &Entry<ContainerRecord>,
    state: &ContainerState,
) -> Result<(), Status> {
    let current = entry.get();
    if matches!(current.phase, ContainerPhase::Exited) {
        return Ok(());
    }
    let mut changed = false;
    let record = entry.update(|r| changed = apply_final_state(r, state))?;
    if changed {
        tracing::info!(container = %record.id, exit_code = record.exit_code, reason = %record.reason, "container exited");
        emit(ctx, &record, cri::ContainerEventType::ContainerStoppedEvent);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_follow_kubelet() {
        assert_eq!(exit_reason(0, false), "Completed");
        assert_eq!(exit_reason(3, false), "Error");
        assert_eq!(exit_reason(137, true), "OOMKilled");
    }
}

#[cfg(test)]
mod user_tests {
    use super::process_user;
    use oci_spec::runtime::{ProcessBuilder, Spec, UserBuilder};

    fn spec_with(uid: u32, gid: u32, additional: Vec<u32>) -> Spec {
        let user = UserBuilder::default()
            .uid(uid)
            .gid(gid)
            .additional_gids(additional)
            .build()
            .unwrap();
        let mut spec = Spec::default();
        spec.set_process(Some(ProcessBuilder::default().user(user).build().unwrap()));
        spec
    }

    #[test]
    fn user_comes_from_the_applied_spec() {
        let linux = process_user(&spec_with(1000, 3000, vec![50000, 3000, 60000]))
            .linux
            .expect("user");
        assert_eq!((linux.uid, linux.gid), (1000, 3000));
        assert_eq!(linux.supplemental_groups, vec![3000, 50000, 60000]);
        let linux = process_user(&spec_with(0, 0, vec![])).linux.expect("user");
        assert_eq!(linux.supplemental_groups, vec![0]);
        let mut none = Spec::default();
        none.set_process(None);
        assert!(process_user(&none).linux.is_none());
    }
}
