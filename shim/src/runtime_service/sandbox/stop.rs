//! StopPodSandbox: kill every container of the pod, detach its network,
//! kill its pause (a pod PID namespace's PID 1), mark it NOTREADY. Idempotent; an unknown id is success (kubelet retries
//! stops of pods that are already gone).

use super::network;
use crate::runtime_service::container;
use crate::runtime_service::context::{blocking, runtime_status};
use crate::runtime_service::store::sandbox::{SandboxRecord, SandboxState};
use crate::runtime_service::store::{Entry, StoreError};
use crate::runtime_service::RuntimeContext;
use std::sync::Arc;
use tonic::Status;

/// The sandbox `id`, or `None` when it is unknown: StopPodSandbox and
/// RemovePodSandbox both treat a pod that is already gone as success.
pub(super) fn existing(
    ctx: &RuntimeContext,
    id: &str,
) -> Result<Option<Arc<Entry<SandboxRecord>>>, Status> {
    match ctx.sandboxes.get(id) {
        Ok(entry) => Ok(Some(entry)),
        Err(StoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Ids of the containers that belong to sandbox `sandbox_id`.
pub(super) fn container_ids(ctx: &RuntimeContext, sandbox_id: &str) -> Vec<String> {
    ctx.containers
        .list()
        .into_iter()
        .filter(|c| c.sandbox_id == sandbox_id)
        .map(|c| c.id)
        .collect()
}

pub(crate) async fn stop(ctx: &Arc<RuntimeContext>, id: &str) -> Result<(), Status> {
    let Some(entry) = existing(ctx, id)? else {
        return Ok(());
    };
    let _op = entry.op.lock().await;
    let record = entry.get();
    for container_id in container_ids(ctx, &record.id) {
        // Kubelet has normally stopped them gracefully already; what is
        // left is killed at once.
        container::stop::stop(ctx, &container_id, 0).await?;
    }
    network::detach(ctx, &record).await?;
    // Last: the containers that shared its PID namespace are gone already.
    let (rt_ctx, sandbox_id) = (ctx.clone(), record.id.clone());
    blocking(move || rt_ctx.runtime.stop_sandbox(&sandbox_id))
        .await?
        .map_err(runtime_status)?;
    entry.update(|r| {
        r.state = SandboxState::NotReady;
        r.network.attached = false;
    })?;
    tracing::info!(sandbox = %record.id, "pod sandbox stopped");
    Ok(())
}
