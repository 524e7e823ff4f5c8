//! RunPodSandbox: the pod's namespaces, cgroup, files and shm, all or nothing.

use super::files::{render_hosts, render_resolv_conf, write_pod_files};
use super::network;
use crate::runtime_service::context::{blocking, new_id, now_ns, runtime_status};
use crate::runtime_service::rollback::Rollback;
use crate::runtime_service::store::create_private_dir;
use crate::runtime_service::store::names::sandbox_name;
use crate::runtime_service::store::sandbox::{SandboxRecord, SandboxState};
use crate::runtime_service::RuntimeContext;
use cria_proto::v1::{
    NamespaceMode, NamespaceOption, PodSandboxConfig, RunPodSandboxRequest, RunPodSandboxResponse,
};
use cria_runtime::SandboxCreate;
use std::sync::Arc;
use tonic::Status;

/// `/dev/shm` size when the pod sets no memory limit (as Docker/containerd).
pub(crate) const DEFAULT_SHM_BYTES: u64 = 64 * 1024 * 1024;

/// Runtime handlers cria answers to: the default one, by either name.
const HANDLERS: &[&str] = &["", "cria"];

pub(crate) async fn run(
    ctx: &Arc<RuntimeContext>,
    req: RunPodSandboxRequest,
) -> Result<RunPodSandboxResponse, Status> {
    let config = req
        .config
        .ok_or_else(|| Status::invalid_argument("config is required"))?;
    validate(&config)?;
    if !HANDLERS.contains(&req.runtime_handler.as_str()) {
        return Err(Status::invalid_argument(format!(
            "runtime_handler {:?} is unknown (cria has only the default handler)",
            req.runtime_handler
        )));
    }
    let ctx = ctx.clone();
    let pod_sandbox_id = blocking(move || create(&ctx, config, req.runtime_handler)).await??;
    Ok(RunPodSandboxResponse { pod_sandbox_id })
}

fn validate(config: &PodSandboxConfig) -> Result<(), Status> {
    let meta = config
        .metadata
        .as_ref()
        .ok_or_else(|| Status::invalid_argument("config.metadata is required"))?;
    for (field, value) in [
        ("config.metadata.name", &meta.name),
        ("config.metadata.namespace", &meta.namespace),
        ("config.metadata.uid", &meta.uid),
    ] {
        if value.is_empty() {
            return Err(Status::invalid_argument(format!("{field} is empty")));
        }
    }
    let parent = config
        .linux
        .as_ref()
        .map(|l| l.cgroup_parent.as_str())
        .unwrap_or_default();
    if std::path::Path::new(parent)
        .components()
        .any(|c| c == std::path::Component::ParentDir)
    {
        return Err(Status::invalid_argument(format!(
            "config.linux.cgroup_parent {parent:?} must not contain \"..\""
        )));
    }
    // The same check CreateContainer applies, made before anything exists so
    // a bad sysctl leaves no namespace, cgroup, directory or CNI attachment.
    let ns_options = namespace_options(config);
    if let Some(linux) = &config.linux {
        crate::runtime_service::spec::sysctls(
            &linux.sysctls,
            ns_options.network() == NamespaceMode::Node,
            ns_options.ipc() == NamespaceMode::Node,
        )?;
    }
    Ok(())
}

/// The pod's namespace options (all POD when unset).
fn namespace_options(config: &PodSandboxConfig) -> NamespaceOption {
    config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.clone())
        .unwrap_or_default()
}

fn host_hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default()
}

/// The pod's `/dev/shm` size: its memory limit when set, else 64 MiB.
pub(crate) fn shm_size(config: &PodSandboxConfig) -> u64 {
    config
        .linux
        .as_ref()
        .and_then(|l| l.resources.as_ref())
        .map(|r| r.memory_limit_in_bytes)
        .filter(|&m| m > 0)
        .map(|m| m as u64)
        .unwrap_or(DEFAULT_SHM_BYTES)
}

fn create(
    ctx: &Arc<RuntimeContext>,
    config: PodSandboxConfig,
    runtime_handler: String,
) -> Result<String, Status> {
    let id = new_id();
    let meta = config.metadata.clone().unwrap_or_default();
    let name = sandbox_name(&meta.name, &meta.namespace, &meta.uid, meta.attempt);
    ctx.sandbox_names.reserve(&name, &id)?;
    let mut rollback = Rollback::new(format!("pod sandbox {id}"));
    {
        let (ctx, id) = (ctx.clone(), id.clone());
        rollback.push("name", move || ctx.sandbox_names.release(&name, &id));
    }

    let ns_options = namespace_options(&config);
    let host_network = ns_options.network() == NamespaceMode::Node;
    let host_ipc = ns_options.ipc() == NamespaceMode::Node;
    let hostname = if config.hostname.is_empty() {
        host_hostname()
    } else {
        config.hostname.clone()
    };

    let dir = ctx.sandboxes.object_dir(&id);
    create_private_dir(&dir)?;
    {
        let dir = dir.clone();
        rollback.push("pod dir", move || {
            let _ = std::fs::remove_dir_all(dir);
        });
    }
    let io =
        |what: &str, e: std::io::Error| Status::internal(format!("pod sandbox {id}: {what}: {e}"));
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let hosts = if host_network {
        std::fs::read_to_string("/etc/hosts").map_err(|e| io("read /etc/hosts", e))?
    } else {
        render_hosts(&hostname, None)
    };
    let resolv = render_resolv_conf(config.dns_config.as_ref(), &host_resolv);
    write_pod_files(&dir, &hostname, &hosts, &resolv).map_err(|e| io("write pod files", e))?;

    let cgroup = config
        .linux
        .as_ref()
        .map(|l| l.cgroup_parent.clone())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| format!("/cria/{id}"));
    let namespaces = ctx
        .runtime
        .create_sandbox(&SandboxCreate {
            id: id.clone(),
            hostname: hostname.clone(),
            new_network: !host_network,
            new_ipc: !host_ipc,
            // Kubernetes gives a hostNetwork pod the node's hostname too.
            new_uts: !host_network,
            pod_pid: ns_options.pid() == NamespaceMode::Pod,
            shm_size: (!host_ipc).then(|| shm_size(&config)),
            cgroup_parent: Some(cgroup.clone()),
        })
        .map_err(runtime_status)?;
    {
        let (ctx, id) = (ctx.clone(), id.clone());
        rollback.push("namespaces", move || {
            if let Err(e) = ctx.runtime.remove_sandbox(&id) {
                tracing::warn!(sandbox = %id, error = %e, "rollback: removing namespaces failed");
            }
        });
    }

    let mut record = SandboxRecord {
        id: id.clone(),
        config,
        runtime_handler,
        state: SandboxState::Ready,
        created_at: now_ns(),
        cgroup,
        namespaces: namespaces.into(),
        network: Default::default(),
        dir,
    };
    if !host_network {
        record.network = network::attach(ctx, &record)?;
        let (rb_ctx, attached) = (ctx.clone(), record.clone());
        rollback.push("network", move || {
            // Rollback runs on this blocking thread: wait for CNI DEL here.
            let del = network::detach(&rb_ctx, &attached);
            if let Err(e) = tokio::runtime::Handle::current().block_on(del) {
                tracing::warn!(sandbox = %attached.id, error = %e, "rollback: network detach failed");
            }
        });
        if !record.network.ip.is_empty() {
            // Now that the pod has an address, its hostname resolves to it.
            let hosts = render_hosts(&hostname, Some(&record.network.ip));
            write_pod_files(&record.dir, &hostname, &hosts, &resolv)
                .map_err(|e| io("write pod files", e))?;
        }
    }
    ctx.sandboxes.add(record).map_err(Status::from)?;
    rollback.disarm();
    tracing::info!(sandbox = %id, pod = %meta.name, namespace = %meta.namespace, "pod sandbox ready");
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cria_proto::v1::{LinuxContainerResources, LinuxPodSandboxConfig, PodSandboxMetadata};

    #[test]
    fn metadata_fields_are_required_and_named() {
        let mut config = PodSandboxConfig::default();
        let err = validate(&config).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().contains("config.metadata"));
        config.metadata = Some(PodSandboxMetadata {
            name: "p".into(),
            uid: "u".into(),
            ..Default::default()
        });
        let err = validate(&config).unwrap_err();
        assert!(err.message().contains("config.metadata.namespace"), "{err}");
        if let Some(m) = config.metadata.as_mut() {
            m.namespace = "n".into();
        }
        validate(&config).unwrap();
        config.linux = Some(LinuxPodSandboxConfig {
            cgroup_parent: "/kubepods/../../x".into(),
            ..Default::default()
        });
        let err = validate(&config).unwrap_err();
        assert!(
            err.message().contains("config.linux.cgroup_parent"),
            "{err}"
        );
    }

    #[test]
    fn invalid_sysctls_are_refused_by_name() {
        let pod = |sysctl: &str, network: NamespaceMode| PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: "p".into(),
                uid: "u".into(),
                namespace: "n".into(),
                attempt: 0,
            }),
            linux: Some(LinuxPodSandboxConfig {
                sysctls: [(sysctl.to_string(), "1".to_string())].into(),
                security_context: Some(cria_proto::v1::LinuxSandboxSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        network: network as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        validate(&pod("net.ipv4.ip_forward", NamespaceMode::Pod)).unwrap();
        validate(&pod("kernel.shm_rmid_forced", NamespaceMode::Node)).unwrap();
        for (sysctl, network) in [
            ("kernel.panic", NamespaceMode::Pod),
            ("net.ipv4.ip_forward", NamespaceMode::Node),
        ] {
            let err = validate(&pod(sysctl, network)).unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
            assert!(err.message().contains(sysctl), "{err}");
        }
    }

    #[test]
    fn shm_follows_the_pod_memory_limit() {
        let mut config = PodSandboxConfig::default();
        assert_eq!(shm_size(&config), DEFAULT_SHM_BYTES);
        config.linux = Some(LinuxPodSandboxConfig {
            resources: Some(LinuxContainerResources {
                memory_limit_in_bytes: 32 << 20,
                ..Default::default()
            }),
            ..Default::default()
        });
        assert_eq!(shm_size(&config), 32 << 20);
    }
}
