//! StopContainer(timeout): the stop signal, then after the timeout SIGKILL
//! to every process in the container's cgroup. Stopping an exited container
//! is success.

use super::record_exit;
use crate::runtime_service::context::{blocking, runtime_status};
use crate::runtime_service::store::container::{ContainerPhase, ContainerRecord};
use crate::runtime_service::store::Entry;
use crate::runtime_service::RuntimeContext;
use cria_runtime::RuntimeError;
use std::sync::Arc;
use std::time::Duration;
use tonic::Status;

/// How long a SIGKILLed container may take to be reaped and recorded.
const KILL_GRACE: Duration = Duration::from_secs(30);

pub(crate) async fn stop(ctx: &Arc<RuntimeContext>, id: &str, timeout: i64) -> Result<(), Status> {
    let entry = ctx.containers.get(id)?;
    let _op = entry.op.lock().await;
    stop_locked(ctx, &entry, timeout).await
}

/// Stops the container of `entry`; the caller holds its op lock.
pub(crate) async fn stop_locked(
    ctx: &Arc<RuntimeContext>,
    entry: &Arc<Entry<ContainerRecord>>,
    timeout: i64,
) -> Result<(), Status> {
    let record = entry.get();
    if matches!(
        record.phase,
        ContainerPhase::Exited | ContainerPhase::Unknown
    ) {
        return Ok(());
    }
    let id = record.id.clone();
    if timeout > 0 && record.phase == ContainerPhase::Running {
        let grace = Duration::from_secs(timeout.unsigned_abs());
        let (rt_ctx, cid, sig) = (ctx.clone(), id.clone(), record.stop_signal);
        let waited = blocking(move || {
            rt_ctx.runtime.kill(&cid, sig, false)?;
            rt_ctx.runtime.wait(&cid, grace)
        })
        .await?;
        match waited {
            Ok(state) => return record_exit(ctx, entry, &state),
            Err(RuntimeError::Timeout { .. }) => {
                tracing::info!(container = %id, timeout, "stop timeout expired: killing");
            }
            Err(RuntimeError::NotFound(_)) => return mark_gone(ctx, entry),
            Err(e) => return Err(runtime_status(e)),
        }
    }
    let (rt_ctx, cid) = (ctx.clone(), id.clone());
    let killed = blocking(move || {
        rt_ctx.runtime.kill(&cid, libc::SIGKILL, true)?;
        rt_ctx.runtime.wait(&cid, KILL_GRACE)
    })
    .await?;
    match killed {
        Ok(state) => record_exit(ctx, entry, &state),
        Err(RuntimeError::NotFound(_)) => mark_gone(ctx, entry),
        Err(e) => Err(runtime_status(e)),
    }
}

/// The runtime no longer knows the container (its state dir is gone): it
/// cannot be running; record it as exited with an unknown code.
fn mark_gone(ctx: &RuntimeContext, entry: &Entry<ContainerRecord>) -> Result<(), Status> {
    let state = cria_runtime::ContainerState {
        id: entry.get().id,
        status: cria_runtime::Status::Unknown,
        pid: 0,
        monitor_pid: 0,
        created_at: std::time::SystemTime::now(),
        started_at: None,
        finished_at: None,
        exit_code: None,
        oom_killed: false,
        message: Some("the runtime has no state for this container".into()),
        bundle: Default::default(),
        log_path: None,
        cgroup_path: None,
    };
    record_exit(ctx, entry, &state)
}
