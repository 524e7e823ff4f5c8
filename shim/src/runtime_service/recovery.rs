//! Start-up recovery: records from the checkpoints, reconciled with what
//! the runtime (whose monitors outlive criad) says about each container and
//! pod sandbox.

use super::container::{exit_watch, record_exit};
use super::context::blocking;
use super::store::container::{ContainerPhase, ContainerRecord};
use super::store::sandbox::{SandboxRecord, SandboxState};
use super::store::{Entry, Record};
use super::RuntimeContext;
use cria_runtime::{RuntimeError, Status as RtStatus};
use std::sync::Arc;

/// Loads every checkpoint, reserves names, settles containers that exited
/// while criad was away and re-arms exit watchers for the running ones.
pub(crate) async fn recover(ctx: &Arc<RuntimeContext>) {
    let c = ctx.clone();
    if let Err(e) = blocking(move || recover_blocking(&c)).await {
        tracing::error!(error = %e, "recovery failed");
    }
    super::sandbox::network::release_orphans(ctx).await;
    let c = ctx.clone();
    if let Err(e) = blocking(move || release_orphan_sandboxes(&c)).await {
        tracing::error!(error = %e, "releasing orphan pod sandboxes failed");
    }
}

/// Sandboxes the runtime still holds that criad has no record of: a
/// RunPodSandbox cut short by a crash (the record is written last), which
/// kubelet never saw. Their pause is found through its cgroup even when its
/// pid was never recorded, and killed; the rest goes too, except the
/// namespaces of one whose CNI teardown failed (`release_orphans` left its
/// cache entry): its next start retries the DEL, which needs the netns. A
/// pod dir holding a checkpoint that could not be read is left alone.
fn release_orphan_sandboxes(ctx: &Arc<RuntimeContext>) {
    let ids = match ctx.runtime.sandboxes() {
        Ok(ids) => ids,
        Err(e) => {
            tracing::error!(error = %e, "listing the runtime's pod sandboxes");
            return;
        }
    };
    let cni_pending: Vec<String> =
        super::sandbox::network::cached_attachments(&ctx.cni.options().cache_dir)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
    for id in ids {
        let known = ctx.sandboxes.get(&id).is_ok_and(|e| e.get().id == id);
        let dir = ctx.sandboxes.object_dir(&id);
        if known || dir.join(SandboxRecord::FILE).exists() {
            continue;
        }
        let keep_netns = cni_pending.contains(&id);
        tracing::warn!(sandbox = %id, keep_netns, "pod sandbox without a record: killing its pause, removing what is left");
        let done = if keep_netns {
            ctx.runtime.stop_sandbox(&id)
        } else {
            ctx.runtime.remove_sandbox(&id)
        };
        if let Err(e) = done {
            tracing::warn!(sandbox = %id, error = %e, "releasing an orphan pod sandbox failed");
            continue;
        }
        if !keep_netns {
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(sandbox = %id, error = %e, "removing orphan pod dir");
                }
            }
        }
    }
}

fn recover_blocking(ctx: &Arc<RuntimeContext>) {
    for (dir, err) in ctx.sandboxes.load().unwrap_or_else(|e| {
        tracing::error!(error = %e, "loading pod sandboxes");
        Vec::new()
    }) {
        tracing::error!(dir = %dir.display(), error = %err, "skipping unreadable pod sandbox");
    }
    for entry in ctx.sandboxes.entries() {
        let record = entry.get();
        if let Err(e) = ctx
            .sandbox_names
            .reserve(&record.reserved_name(), &record.id)
        {
            tracing::error!(sandbox = %record.id, error = %e, "duplicate pod sandbox name");
        }
        // A stop cut short by a crash may have left the pause running.
        if record.state == SandboxState::NotReady {
            if let Err(e) = ctx.runtime.stop_sandbox(&record.id) {
                tracing::warn!(sandbox = %record.id, error = %e, "killing the pause of a stopped pod sandbox");
            }
        }
        // After a reboot /run is empty: the pod's namespaces are gone.
        if record.state == SandboxState::Ready {
            if let Err(RuntimeError::NotFound(_)) = ctx.runtime.sandbox(&record.id) {
                tracing::warn!(sandbox = %record.id, "namespaces gone: pod sandbox not ready");
                let _ = entry.update(|r| r.state = SandboxState::NotReady);
            }
        }
    }
    for (dir, err) in ctx.containers.load().unwrap_or_else(|e| {
        tracing::error!(error = %e, "loading containers");
        Vec::new()
    }) {
        tracing::error!(dir = %dir.display(), error = %err, "skipping unreadable container");
    }
    let mut running = 0;
    for entry in ctx.containers.entries() {
        let record = entry.get();
        if let Err(e) = ctx
            .container_names
            .reserve(&record.reserved_name(), &record.id)
        {
            tracing::error!(container = %record.id, error = %e, "duplicate container name");
        }
        if matches!(
            record.phase,
            ContainerPhase::Created | ContainerPhase::Running
        ) && reconcile(ctx, &entry, &record)
        {
            running += 1;
        }
    }
    tracing::info!(
        sandboxes = ctx.sandboxes.list().len(),
        containers = ctx.containers.list().len(),
        running,
        "recovered state"
    );
}

/// Brings one live-looking record in line with the runtime; true if the
/// container still runs (and is now watched again).
fn reconcile(
    ctx: &Arc<RuntimeContext>,
    entry: &Entry<ContainerRecord>,
    record: &ContainerRecord,
) -> bool {
    match ctx.runtime.state(&record.id) {
        Ok(state) => match state.status {
            RtStatus::Stopped | RtStatus::Unknown => {
                if let Err(e) = record_exit(ctx, entry, &state) {
                    tracing::warn!(container = %record.id, error = %e, "recording exit");
                }
                false
            }
            RtStatus::Running => {
                // criad may have died between the start and its checkpoint.
                if record.phase == ContainerPhase::Created {
                    let started = state
                        .started_at
                        .map(super::context::system_time_ns)
                        .unwrap_or_else(super::context::now_ns);
                    let _ = entry.update(|r| {
                        r.phase = ContainerPhase::Running;
                        r.started_at = started;
                    });
                }
                exit_watch::watch(ctx.clone(), record.id.clone());
                true
            }
            RtStatus::Created => false,
        },
        Err(e) => {
            tracing::warn!(container = %record.id, error = %e, "no runtime state: marking unknown");
            let _ = entry.update(|r| {
                r.phase = ContainerPhase::Unknown;
                r.reason = "Unknown".into();
                r.message = format!("runtime state lost: {e}");
            });
            false
        }
    }
}
