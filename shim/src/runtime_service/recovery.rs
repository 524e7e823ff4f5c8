//! Start-up recovery: records from the checkpoints, reconciled with what
//! the runtime (whose monitors outlive criad) says about each container.

use super::container::{exit_watch, record_exit};
use super::context::blocking;
use super::store::container::{ContainerPhase, ContainerRecord};
use super::store::sandbox::SandboxState;
use super::store::Entry;
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
