//! StopPodSandbox: kill every container of the pod, detach its network,
//! mark it NOTREADY. Idempotent; an unknown id is success (kubelet retries
//! stops of pods that are already gone).

use super::network;
use crate::runtime_service::container;
use crate::runtime_service::store::sandbox::SandboxState;
use crate::runtime_service::store::StoreError;
use crate::runtime_service::RuntimeContext;
use std::sync::Arc;
use tonic::Status;

pub(crate) async fn stop(ctx: &Arc<RuntimeContext>, id: &str) -> Result<(), Status> {
    let entry = match ctx.sandboxes.get(id) {
        Ok(entry) => entry,
        Err(StoreError::NotFound { .. }) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let _op = entry.op.lock().await;
    let record = entry.get();
    for c in ctx.containers.list() {
        if c.sandbox_id == record.id {
            // Kubelet has normally stopped them gracefully already; what is
            // left is killed at once.
            container::stop::stop(ctx, &c.id, 0).await?;
        }
    }
    network::detach(ctx, &record).await?;
    entry.update(|r| {
        r.state = SandboxState::NotReady;
        r.network.attached = false;
    })?;
    tracing::info!(sandbox = %record.id, "pod sandbox stopped");
    Ok(())
}
