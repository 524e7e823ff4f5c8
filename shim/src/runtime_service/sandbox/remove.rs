//! RemovePodSandbox: remove the pod's containers, namespaces, shm, cgroup,
//! files and record. Idempotent; an unknown id is success.

use super::network;
use super::stop::{container_ids, existing};
use crate::runtime_service::container;
use crate::runtime_service::context::{blocking, runtime_status};
use crate::runtime_service::RuntimeContext;
use std::sync::Arc;
use tonic::Status;

pub(crate) async fn remove(ctx: &Arc<RuntimeContext>, id: &str) -> Result<(), Status> {
    let Some(entry) = existing(ctx, id)? else {
        return Ok(());
    };
    let _op = entry.op.lock().await;
    let record = entry.get();
    for container_id in container_ids(ctx, &record.id) {
        container::remove::remove(ctx, &container_id).await?;
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
