//! ReopenContainerLog: the monitor reopens the log file after kubelet
//! rotated it.

use crate::runtime_service::context::{blocking, runtime_status};
use crate::runtime_service::store::container::ContainerPhase;
use crate::runtime_service::RuntimeContext;
use std::sync::Arc;
use tonic::Status;

pub(crate) async fn reopen_log(ctx: &Arc<RuntimeContext>, id: &str) -> Result<(), Status> {
    let record = ctx.containers.get(id)?.get();
    if record.phase != ContainerPhase::Running {
        return Err(Status::failed_precondition(format!(
            "container {} is not running: no log to reopen",
            record.id
        )));
    }
    let (rt_ctx, cid) = (ctx.clone(), record.id.clone());
    blocking(move || rt_ctx.runtime.reopen_log(&cid))
        .await?
        .map_err(runtime_status)
}
