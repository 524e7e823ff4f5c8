//! ExecSync: run a command in a running container, capture its output.

use crate::runtime_service::context::{blocking, runtime_status};
use crate::runtime_service::spec;
use crate::runtime_service::store::container::ContainerPhase;
use crate::runtime_service::RuntimeContext;
use cria_proto::v1::{ExecSyncRequest, ExecSyncResponse};
use std::sync::Arc;
use std::time::Duration;
use tonic::Status;

/// The limit when kubelet gives none (timeout 0): long, but not forever.
const NO_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

pub(crate) async fn exec_sync(
    ctx: &Arc<RuntimeContext>,
    req: ExecSyncRequest,
) -> Result<ExecSyncResponse, Status> {
    if req.cmd.is_empty() {
        return Err(Status::invalid_argument("cmd is empty"));
    }
    let record = ctx.containers.get(&req.container_id)?.get();
    if record.phase != ContainerPhase::Running {
        return Err(Status::failed_precondition(format!(
            "container {} is {:?}: exec needs a running container",
            record.id, record.phase
        )));
    }
    // The exec'd process gets the container's user, env, cwd, capabilities
    // and no_new_privs: its process from the spec, with other args.
    let mut process = spec::bundle_process(&record.id, &record.bundle).map_err(Status::internal)?;
    process.set_args(Some(req.cmd.clone()));
    process.set_terminal(Some(false));
    let timeout = if req.timeout > 0 {
        Duration::from_secs(req.timeout.unsigned_abs())
    } else {
        NO_TIMEOUT
    };
    let (rt_ctx, id) = (ctx.clone(), record.id.clone());
    let out = blocking(move || rt_ctx.runtime.exec_sync(&id, &process, timeout))
        .await?
        .map_err(runtime_status)?;
    if out.timed_out {
        // kubelet turns DeadlineExceeded into a probe timeout.
        return Err(Status::deadline_exceeded(format!(
            "timeout {}s exceeded: command {:?} in container {} was killed",
            timeout.as_secs(),
            req.cmd,
            record.id
        )));
    }
    Ok(ExecSyncResponse {
        stdout: out.stdout,
        stderr: out.stderr,
        exit_code: out.exit_code,
    })
}
