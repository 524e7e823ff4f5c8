//! RemoveContainer: stop it if needed, delete it in the runtime, unmount
//! its rootfs, remove its dirs and free its name. Idempotent.

use super::emit;
use super::stop::stop_locked;
use crate::runtime_service::context::{blocking, runtime_status};
use crate::runtime_service::store::StoreError;
use crate::runtime_service::RuntimeContext;
use cria_proto::v1::ContainerEventType;
use cria_runtime::RuntimeError;
use std::sync::Arc;
use tonic::Status;

pub(crate) async fn remove(ctx: &Arc<RuntimeContext>, id: &str) -> Result<(), Status> {
    let entry = match ctx.containers.get(id) {
        Ok(entry) => entry,
        Err(StoreError::NotFound { .. }) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let _op = entry.op.lock().await;
    stop_locked(ctx, &entry, 0).await?;
    let record = entry.get();
    let (rt_ctx, rec) = (ctx.clone(), record.clone());
    blocking(move || {
        match rt_ctx.runtime.delete(&rec.id, true) {
            Ok(()) | Err(RuntimeError::NotFound(_)) => {}
            Err(e) => return Err(runtime_status(e)),
        }
        rt_ctx.rootfs.unmount(&rec.rootfs)
    })
    .await??;
    ctx.containers.remove(&record.id)?;
    ctx.container_names
        .release(&record.reserved_name(), &record.id);
    emit(ctx, &record, ContainerEventType::ContainerDeletedEvent);
    if let Some(hook) = ctx.container_removed.get() {
        hook();
    }
    tracing::info!(container = %record.id, "container removed");
    Ok(())
}
