//! RemovePodSandbox: remove the pod's containers, namespaces, shm, cgroup,
//! files and record. Idempotent; an unknown id is success.

use super::network;
use crate::runtime_service::container;
use crate::runtime_service::context::{blocking, runtime_status};
use crate::runtime_service::store::StoreError;
use crate::runtime_service::RuntimeContext;
use std::sync::Arc;
use tonic::Status;

pub(crate) async fn remove(ctx: &Arc<RuntimeContext>, id: &str) -> Result<(), Status> {
    let entry = match ctx.sandboxes.get(id) {
        Ok(entry) => entry,
        Err(StoreError::NotFound { .. }) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let _op = entry.op.lock().await;
    let record = entry.get();
    for c in ctx.containers.list() {
        if c.sandbox_id == record.id {
            container::remove::remove(ctx, &c.id).await?;
        }
    }
    network::detach(ctx, &record).await?;
    let rt_ctx = ctx.clone();
    let sandbox_id = record.id.clone();
    blocking(move || rt_ctx.runtime.remove_sandbox(&sandbox_id))
        .await?
        .map_err(runtime_status)?;
    ctx.sandboxes.remove(&record.id)?;
    ctx.sandbox_names
        .release(&record.reserved_name(), &record.id);
    tracing::info!(sandbox = %record.id, "pod sandbox removed");
    Ok(())
}
