//! CreateContainer: rootfs overlay + OCI spec + a created (not started)
//! process under its monitor. Any failure undoes every completed step.

use crate::runtime_service::context::{blocking, new_id, now_ns, runtime_status};
use crate::runtime_service::rollback::Rollback;
use crate::runtime_service::spec::{self, SpecInput};
use crate::runtime_service::store::container::{ContainerPhase, ContainerRecord};
use crate::runtime_service::store::create_private_dir;
use crate::runtime_service::store::names::container_name;
use crate::runtime_service::store::sandbox::{SandboxRecord, SandboxState};
use crate::runtime_service::RuntimeContext;
use cria_proto::v1::{
    ContainerConfig, ContainerEventType, CreateContainerRequest, CreateContainerResponse,
    NamespaceMode, Signal,
};
use cria_runtime::ContainerCreate;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use tonic::Status;

pub(crate) async fn create(
    ctx: &Arc<RuntimeContext>,
    req: CreateContainerRequest,
) -> Result<CreateContainerResponse, Status> {
    let config = req
        .config
        .ok_or_else(|| Status::invalid_argument("config is required"))?;
    let meta = config
        .metadata
        .as_ref()
        .ok_or_else(|| Status::invalid_argument("config.metadata is required"))?;
    if meta.name.is_empty() {
        return Err(Status::invalid_argument("config.metadata.name is empty"));
    }
    let image_name = config
        .image
        .as_ref()
        .map(|i| i.image.clone())
        .filter(|i| !i.is_empty())
        .ok_or_else(|| Status::invalid_argument("config.image.image is empty"))?;
    let sandbox_entry = ctx.sandboxes.get(&req.pod_sandbox_id)?;
    // Held so StopPodSandbox cannot run between the READY check and the
    // container's record being stored (it would miss the new container).
    let _pod_op = sandbox_entry.op.lock().await;
    let sandbox = sandbox_entry.get();
    if sandbox.state != SandboxState::Ready {
        return Err(Status::failed_precondition(format!(
            "pod sandbox {} is not ready: cannot create container {:?}",
            sandbox.id, meta.name
        )));
    }
    let rt_ctx = ctx.clone();
    let record = blocking(move || create_blocking(&rt_ctx, sandbox, config, image_name)).await??;
    super::emit(ctx, &record, ContainerEventType::ContainerCreatedEvent);
    Ok(CreateContainerResponse {
        container_id: record.id,
    })
}

/// The signal StopContainer sends first: kubelet's choice, else the image's
/// STOPSIGNAL, else SIGTERM.
pub(crate) fn stop_signal(
    config: &ContainerConfig,
    image_stop_signal: Option<&str>,
) -> Result<i32, Status> {
    let cri = config.stop_signal();
    if cri != Signal::RuntimeDefault {
        let name = cri.as_str_name().trim_start_matches("SIGNAL_");
        return cria_runtime::signal_from_name(name)
            .map_err(|e| Status::invalid_argument(format!("config.stop_signal {name}: {e}")));
    }
    match image_stop_signal.filter(|s| !s.is_empty()) {
        Some(name) => cria_runtime::signal_from_name(name).map_err(|e| {
            Status::invalid_argument(format!("image config StopSignal {name:?}: {e}"))
        }),
        None => Ok(libc::SIGTERM),
    }
}

/// `log_directory` of the pod joined with the container's `log_path`.
pub(crate) fn log_path(sandbox: &SandboxRecord, config: &ContainerConfig) -> Option<PathBuf> {
    if sandbox.config.log_directory.is_empty() || config.log_path.is_empty() {
        return None;
    }
    Some(PathBuf::from(&sandbox.config.log_directory).join(&config.log_path))
}

/// The PID namespace a TARGET container joins, held open by criad until
/// the container exists: the monitor opens it through `path`
/// (`/proc/<criad>/fd/<n>`), so a target that exits and a pid the kernel
/// hands out again meanwhile cannot make it join another namespace.
struct PidTarget {
    _ns: std::fs::File,
    path: PathBuf,
}

/// `namespace_options.pid = TARGET`: the PID namespace of `target_id`, a
/// running container of the same pod (kubelet's ephemeral debug containers
/// join the container they debug). `None` for the other modes.
fn pid_target(
    ctx: &RuntimeContext,
    sandbox: &SandboxRecord,
    config: &ContainerConfig,
) -> Result<Option<PidTarget>, Status> {
    let Some(opts) = config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.as_ref())
        .filter(|o| o.pid() == NamespaceMode::Target)
    else {
        return Ok(None);
    };
    const FIELD: &str = "linux.security_context.namespace_options.target_id";
    if opts.target_id.is_empty() {
        return Err(Status::invalid_argument(format!(
            "{FIELD} is empty: pid TARGET needs the id of the container to join"
        )));
    }
    let target = ctx
        .containers
        .get(&opts.target_id)
        .map_err(|e| {
            let status = Status::from(e);
            Status::new(status.code(), format!("{FIELD}: {}", status.message()))
        })?
        .get();
    if target.sandbox_id != sandbox.id {
        return Err(Status::invalid_argument(format!(
            "{FIELD}: container {} is in pod sandbox {}, not in {}",
            target.id, target.sandbox_id, sandbox.id
        )));
    }
    let not_running = |status: cria_runtime::Status| {
        Status::failed_precondition(format!(
            "{FIELD}: container {} is not running ({status:?}): no PID namespace to join",
            target.id
        ))
    };
    let state = ctx.runtime.state(&target.id).map_err(runtime_status)?;
    if state.status != cria_runtime::Status::Running || state.pid <= 0 {
        return Err(not_running(state.status));
    }
    let ns = std::fs::File::open(format!("/proc/{}/ns/pid", state.pid))
        .map_err(|_| not_running(cria_runtime::Status::Stopped))?;
    // Still running with that pid after the open: the monitor had not reaped
    // it, so the pid was not reused and `ns` is the target's.
    let again = ctx.runtime.state(&target.id).map_err(runtime_status)?;
    if again.status != cria_runtime::Status::Running || again.pid != state.pid {
        return Err(not_running(again.status));
    }
    let path = PathBuf::from(format!(
        "/proc/{}/fd/{}",
        std::process::id(),
        std::os::fd::AsRawFd::as_raw_fd(&ns)
    ));
    Ok(Some(PidTarget { _ns: ns, path }))
}

/// Microseconds since `t`, for the step timings in the "container created" log.
fn us_since(t: Instant) -> u64 {
    u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX)
}

fn create_blocking(
    ctx: &Arc<RuntimeContext>,
    sandbox: SandboxRecord,
    config: ContainerConfig,
    image_name: String,
) -> Result<ContainerRecord, Status> {
    let started = Instant::now();
    let image = ctx
        .images
        .resolve(&image_name)?
        .ok_or_else(|| Status::not_found(format!("image {image_name:?} not found")))?;
    let pid_target = pid_target(ctx, &sandbox, &config)?;
    let id = new_id();
    let meta = config.metadata.clone().unwrap_or_default();
    let name = container_name(&sandbox.id, &meta.name, meta.attempt);
    ctx.container_names.reserve(&name, &id)?;
    let mut rollback = Rollback::new(format!("container {id}"));
    {
        let (ctx, id) = (ctx.clone(), id.clone());
        rollback.push("name", move || ctx.container_names.release(&name, &id));
    }

    let bundle = ctx.containers.object_dir(&id);
    create_private_dir(&bundle)?;
    {
        let bundle = bundle.clone();
        rollback.push("bundle dir", move || {
            let _ = std::fs::remove_dir_all(bundle);
        });
    }
    let rootfs = bundle.join("rootfs");
    create_private_dir(&rootfs)?;
    let step = Instant::now();
    ctx.rootfs.mount(&image.chain_ids, &bundle, &rootfs)?;
    let rootfs_us = us_since(step);
    {
        let (ctx, rootfs) = (ctx.clone(), rootfs.clone());
        rollback.push("rootfs mount", move || {
            if let Err(e) = ctx.rootfs.unmount(&rootfs) {
                tracing::warn!(rootfs = %rootfs.display(), error = %e, "rollback: unmount failed");
            }
        });
    }

    let step = Instant::now();
    let oci = spec::build(&SpecInput {
        id: &id,
        config: &config,
        image: &image.config,
        image_name: &image_name,
        sandbox: &sandbox,
        rootfs: &rootfs,
        host: ctx.host.as_ref(),
        pid_target: pid_target.as_ref().map(|t| t.path.as_path()),
    })?;
    // Compact: only programs read it, and RuntimeDefault's ~400 names
    // pretty-printed nearly double the bytes every reader scans.
    let json = serde_json::to_vec(&oci)
        .map_err(|e| Status::internal(format!("container {id}: serialise OCI spec: {e}")))?;
    // Not a checkpoint, so no fsync: only the monitor started below reads
    // it, and after a host crash there is no container left to read it for.
    std::fs::write(bundle.join("config.json"), &json)
        .map_err(|e| Status::internal(format!("container {id}: write config.json: {e}")))?;
    let spec_us = us_since(step);

    let log_path = log_path(&sandbox, &config);
    if let Some(parent) = log_path.as_ref().and_then(|p| p.parent()) {
        std::fs::create_dir_all(parent).map_err(|e| {
            Status::internal(format!(
                "container {id}: create log dir {}: {e}",
                parent.display()
            ))
        })?;
    }
    let image_stop_signal = image
        .config
        .config()
        .as_ref()
        .and_then(|c| c.stop_signal().clone());
    let stop_signal = stop_signal(&config, image_stop_signal.as_deref())?;

    let step = Instant::now();
    let created = ctx
        .runtime
        .create(&ContainerCreate {
            id: id.clone(),
            bundle: bundle.clone(),
            log_path: log_path.clone(),
            tty: config.tty,
            stdin: config.stdin,
            stdin_once: config.stdin_once,
        })
        .map_err(runtime_status)?;
    let runtime_us = us_since(step);
    {
        let (ctx, id) = (ctx.clone(), id.clone());
        rollback.push("runtime container", move || {
            if let Err(e) = ctx.runtime.delete(&id, true) {
                tracing::warn!(container = %id, error = %e, "rollback: delete failed");
            }
        });
    }

    let record = ContainerRecord {
        id: id.clone(),
        sandbox_id: sandbox.id.clone(),
        image_id: image.id.clone(),
        chain_ids: image.chain_ids.clone(),
        phase: ContainerPhase::Created,
        created_at: now_ns(),
        started_at: 0,
        finished_at: 0,
        exit_code: 0,
        reason: String::new(),
        message: String::new(),
        pid: created.pid,
        log_path,
        rootfs,
        bundle,
        cgroup: format!("{}/{}", sandbox.cgroup, id),
        stop_signal,
        resources: config
            .linux
            .as_ref()
            .and_then(|l| l.resources.clone())
            .unwrap_or_default(),
        user: super::process_user(&oci),
        config,
    };
    let step = Instant::now();
    ctx.containers.add(record.clone())?;
    rollback.disarm();
    // Where CreateContainer's time goes: the runtime step (monitor and the
    // container's init up to its exec-wait) is most of it (docs/benchmarks).
    tracing::info!(
        container = %id,
        sandbox = %sandbox.id,
        name = %meta.name,
        total_us = us_since(started),
        rootfs_us,
        spec_us,
        runtime_us,
        record_us = us_since(step),
        "container created"
    );
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_signal_prefers_kubelet_then_the_image() {
        let mut config = ContainerConfig::default();
        assert_eq!(stop_signal(&config, None).unwrap(), libc::SIGTERM);
        assert_eq!(
            stop_signal(&config, Some("SIGQUIT")).unwrap(),
            libc::SIGQUIT
        );
        assert_eq!(stop_signal(&config, Some("3")).unwrap(), 3);
        let err = stop_signal(&config, Some("SIGNOPE")).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        config.stop_signal = Signal::Sigusr1 as i32;
        assert_eq!(
            stop_signal(&config, Some("SIGQUIT")).unwrap(),
            libc::SIGUSR1
        );
    }
}
