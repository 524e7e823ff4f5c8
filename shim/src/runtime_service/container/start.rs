//! StartContainer: Created → Running, then watch for its exit.

use super::{emit, exit_watch, record_exit};
use crate::runtime_service::context::{blocking, now_ns, runtime_status, system_time_ns};
use crate::runtime_service::store::container::ContainerPhase;
use crate::runtime_service::RuntimeContext;
use cria_proto::v1::ContainerEventType;
use std::sync::Arc;
use tonic::Status;

pub(crate) async fn start(ctx: &Arc<RuntimeContext>, id: &str) -> Result<(), Status> {
    let entry = ctx.containers.get(id)?;
    let _op = entry.op.lock().await;
    let record = entry.get();
    if record.phase != ContainerPhase::Created {
        return Err(Status::failed_precondition(format!(
            "container {} is {:?}: only a created container can be started",
            record.id, record.phase
        )));
    }
    let rt_ctx = ctx.clone();
    let cid = record.id.clone();
    let started = blocking(move || {
        let result = rt_ctx.runtime.start(&cid);
        // On a failed exec the runtime has already stopped the container;
        // its state says why (e.g. exit 127 and the missing path).
        (result, rt_ctx.runtime.state(&cid))
    })
    .await?;
    let state = match started {
        (Ok(()), state) => state.ok(),
        (Err(e), state) => {
            if let Ok(state) = state {
                record_exit(ctx, &entry, &state)?;
            }
            return Err(runtime_status(e));
        }
    };
    // The runtime's own start time: a short-lived container may already have
    // exited, and its finish time must not precede its start.
    let started_at = state
        .as_ref()
        .and_then(|s| s.started_at)
        .map(system_time_ns)
        .unwrap_or_else(now_ns);
    let record = entry.update(|r| {
        r.phase = ContainerPhase::Running;
        r.started_at = started_at;
    })?;
    emit(ctx, &record, ContainerEventType::ContainerStartedEvent);
    exit_watch::watch(ctx.clone(), record.id.clone());
    tracing::info!(container = %record.id, "container started");
    Ok(())
}
