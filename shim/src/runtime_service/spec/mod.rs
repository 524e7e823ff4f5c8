//! CRI container config + image config → OCI runtime spec (oci-spec).
//!
//! Pure translation: everything it needs from the host (does a path exist,
//! device numbers, mount propagation, the image's /etc/passwd) comes through
//! the [`HostView`] seam, so the rules are unit-tested without a kernel.

mod host;
mod mounts;
mod process;
pub(crate) mod resources;
mod security;

pub(crate) use host::{HostView, RealHost};
pub(crate) use security::sysctls;

use crate::runtime_service::store::sandbox::SandboxRecord;
use cria_proto::v1::{ContainerConfig, NamespaceMode};
use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::{
    LinuxBuilder, LinuxNamespace, LinuxNamespaceBuilder, LinuxNamespaceType, RootBuilder, Spec,
    SpecBuilder,
};
use std::collections::HashMap;
use std::path::Path;

/// Why a container config cannot become a spec.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SpecError {
    /// The CRI config is invalid; names the field.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The offending field, e.g. `mounts[2].host_path`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A feature asked for that cria does not implement yet.
    #[error("{0} is not supported yet")]
    Unsupported(String),
    /// oci-spec refused to build a part of the spec.
    #[error("building the OCI spec: {0}")]
    Oci(#[from] oci_spec::OciSpecError),
}

impl SpecError {
    /// Shorthand for an `Invalid` error.
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        SpecError::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl From<SpecError> for tonic::Status {
    fn from(err: SpecError) -> Self {
        match err {
            SpecError::Invalid { .. } => tonic::Status::invalid_argument(err.to_string()),
            SpecError::Unsupported(_) => tonic::Status::unimplemented(err.to_string()),
            SpecError::Oci(_) => tonic::Status::internal(err.to_string()),
        }
    }
}

/// Everything the spec is made from.
pub(crate) struct SpecInput<'a> {
    /// Container id.
    pub(crate) id: &'a str,
    /// What kubelet asked for.
    pub(crate) config: &'a ContainerConfig,
    /// The image's config (Entrypoint, Cmd, Env, User, WorkingDir, ...).
    pub(crate) image: &'a ImageConfiguration,
    /// The image name as the user gave it (for annotations).
    pub(crate) image_name: &'a str,
    /// The pod the container joins.
    pub(crate) sandbox: &'a SandboxRecord,
    /// Where the container's rootfs is mounted.
    pub(crate) rootfs: &'a Path,
    /// Host facts (paths, devices, mounts, the image's passwd/group files).
    pub(crate) host: &'a dyn HostView,
    /// The PID namespace of the running container that
    /// `namespace_options.pid = TARGET` names (`/proc/<its pid>/ns/pid`),
    /// resolved by the caller; `None` when the mode is not TARGET.
    pub(crate) pid_target: Option<&'a Path>,
}

/// Builds the OCI runtime spec of a container.
pub(crate) fn build(input: &SpecInput<'_>) -> Result<Spec, SpecError> {
    let security = input
        .config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.clone())
        .unwrap_or_default();
    if security.privileged && !sandbox_privileged(input.sandbox) {
        return Err(SpecError::invalid(
            "linux.security_context.privileged",
            format!(
                "pod sandbox {} is not privileged: a privileged container needs a privileged pod",
                input.sandbox.id
            ),
        ));
    }
    security::check_lsm(&security)?;
    let process = process::build(input, &security)?;
    // Seccomp resolves against the bounding set, as moby's does.
    let bounding: Vec<String> = process
        .capabilities()
        .as_ref()
        .and_then(|c| c.bounding().as_ref())
        .map(|b| b.iter().map(|c| format!("CAP_{c}")).collect())
        .unwrap_or_default();
    let seccomp = security::seccomp(&security, &bounding)?;
    let pod_ns = input.sandbox.namespace_options();
    let sysctls = security::sysctls(
        &pod_sysctls(input.sandbox),
        pod_ns.network() == NamespaceMode::Node,
        pod_ns.ipc() == NamespaceMode::Node,
    )?;
    let planned = mounts::plan(input, &security)?;
    let resources = resources::to_oci(
        input
            .config
            .linux
            .as_ref()
            .and_then(|l| l.resources.as_ref()),
        Some(if security.privileged {
            resources::allow_all_devices()?
        } else {
            resources::device_rules(&planned.devices, &planned.device_access)?
        }),
    )?;

    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces(input.sandbox, &security, input.pid_target)?)
        .cgroups_path(format!("{}/{}", input.sandbox.cgroup, input.id))
        .resources(resources)
        .devices(planned.devices)
        .masked_paths(planned.masked_paths)
        .readonly_paths(planned.readonly_paths)
        .sysctl(sysctls)
        .build()?;
    linux.set_seccomp(seccomp);
    if let Some(propagation) = planned.rootfs_propagation {
        linux.set_rootfs_propagation(Some(propagation.to_string()));
    }

    let spec = SpecBuilder::default()
        .version("1.2.0")
        .root(
            RootBuilder::default()
                .path(input.rootfs)
                .readonly(security.readonly_rootfs)
                .build()?,
        )
        .process(process)
        .mounts(planned.mounts)
        .annotations(annotations(input))
        .linux(linux)
        .build()?;
    Ok(spec)
}

/// The pod's namespaces, joined by path; a new mount namespace; a PID
/// namespace per the container's `namespace_options.pid` (TARGET joins
/// `pid_target`, the target container's).
/// The process of the spec container `id` was created with
/// (`<bundle>/config.json`), for execs in it: the file read whole and only
/// `process` parsed; the rest (RuntimeDefault's ~400 syscall names
/// included) is skipped unparsed. `Spec::load` parsed it all through a
/// byte-at-a-time reader: ~0.3 ms per exec.
pub(crate) fn bundle_process(
    id: &str,
    bundle: &Path,
) -> Result<oci_spec::runtime::Process, String> {
    #[derive(serde::Deserialize)]
    struct ProcessOnly {
        process: Option<oci_spec::runtime::Process>,
    }
    let bytes = std::fs::read(bundle.join("config.json"))
        .map_err(|e| format!("container {id}: read config.json: {e}"))?;
    let spec: ProcessOnly = serde_json::from_slice(&bytes)
        .map_err(|e| format!("container {id}: parse config.json: {e}"))?;
    spec.process
        .ok_or_else(|| format!("container {id}: spec has no process"))
}

fn namespaces(
    sandbox: &SandboxRecord,
    security: &cria_proto::v1::LinuxContainerSecurityContext,
    pid_target: Option<&Path>,
) -> Result<Vec<LinuxNamespace>, SpecError> {
    let join =
        |typ, path: &Option<std::path::PathBuf>| -> Result<Option<LinuxNamespace>, SpecError> {
            Ok(match path {
                Some(p) => Some(LinuxNamespaceBuilder::default().typ(typ).path(p).build()?),
                // The pod uses the host's namespace: list nothing, inherit it.
                None => None,
            })
        };
    let ns = &sandbox.namespaces;
    let mut out = vec![LinuxNamespaceBuilder::default()
        .typ(LinuxNamespaceType::Mount)
        .build()?];
    out.extend(join(LinuxNamespaceType::Network, &ns.network)?);
    out.extend(join(LinuxNamespaceType::Ipc, &ns.ipc)?);
    out.extend(join(LinuxNamespaceType::Uts, &ns.uts)?);
    // CRI's enum default is POD (kubelet always sets the field; bare clients
    // such as crictl often omit it).
    let pid_mode = security
        .namespace_options
        .as_ref()
        .map(|o| o.pid())
        .unwrap_or(NamespaceMode::Pod);
    let new_pid = || -> Result<LinuxNamespace, SpecError> {
        Ok(LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::Pid)
            .build()?)
    };
    match pid_mode {
        NamespaceMode::Container => out.push(new_pid()?),
        NamespaceMode::Pod => match (&ns.pid, sandbox.namespace_options().pid()) {
            (Some(path), _) => out.extend(join(LinuxNamespaceType::Pid, &Some(path.clone()))?),
            // A hostPID pod: its containers share the host's.
            (None, NamespaceMode::Node) => {}
            // The pod has no shared PID namespace: the container gets its own.
            (None, _) => out.push(new_pid()?),
        },
        NamespaceMode::Node => {}
        NamespaceMode::Target => match pid_target {
            Some(path) => out.extend(join(LinuxNamespaceType::Pid, &Some(path.to_path_buf()))?),
            None => {
                return Err(SpecError::invalid(
                    "linux.security_context.namespace_options.target_id",
                    "pid TARGET needs a running target container",
                ))
            }
        },
    }
    Ok(out)
}

/// Whether the pod was created privileged (its containers may be too).
fn sandbox_privileged(sandbox: &SandboxRecord) -> bool {
    sandbox
        .config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .is_some_and(|s| s.privileged)
}

fn pod_sysctls(sandbox: &SandboxRecord) -> HashMap<String, String> {
    sandbox
        .config
        .linux
        .as_ref()
        .map(|l| l.sysctls.clone().into_iter().collect())
        .unwrap_or_default()
}

/// Kubelet's annotations plus the CRI ones other tools (and runtimes) look for.
fn annotations(input: &SpecInput<'_>) -> HashMap<String, String> {
    let mut out: HashMap<String, String> = input
        .config
        .annotations
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let meta = input.config.metadata.clone().unwrap_or_default();
    let pod = input.sandbox.metadata();
    for (k, v) in [
        ("io.kubernetes.cri.container-type", "container".to_string()),
        ("io.kubernetes.cri.container-name", meta.name),
        ("io.kubernetes.cri.sandbox-id", input.sandbox.id.clone()),
        ("io.kubernetes.cri.sandbox-name", pod.name),
        ("io.kubernetes.cri.sandbox-namespace", pod.namespace),
        ("io.kubernetes.cri.sandbox-uid", pod.uid),
        ("io.kubernetes.cri.image-name", input.image_name.to_string()),
    ] {
        out.insert(k.to_string(), v);
    }
    out
}

#[cfg(test)]
pub(crate) mod tests;
