//! Version, Status, RuntimeConfig and UpdateRuntimeConfig.

use super::RuntimeContext;
use cria_proto::v1 as cri;
use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The CRI API version cria speaks.
const RUNTIME_API_VERSION: &str = "v1";

pub(crate) fn version(_req: &cri::VersionRequest) -> cri::VersionResponse {
    cri::VersionResponse {
        // The version of the kubelet runtime API (always 0.1.0 in CRI v1).
        version: "0.1.0".into(),
        runtime_name: "cria".into(),
        runtime_version: env!("CARGO_PKG_VERSION").into(),
        runtime_api_version: RUNTIME_API_VERSION.into(),
    }
}

fn condition(kind: &str, ok: Result<(), (&str, String)>) -> cri::RuntimeCondition {
    match ok {
        Ok(()) => cri::RuntimeCondition {
            r#type: kind.into(),
            status: true,
            ..Default::default()
        },
        Err((reason, message)) => cri::RuntimeCondition {
            r#type: kind.into(),
            status: false,
            reason: reason.into(),
            message,
        },
    }
}

/// The runtime can run containers when its monitor binary is there and
/// executable.
fn runtime_ready(monitor: &Path) -> Result<(), (&'static str, String)> {
    match std::fs::metadata(monitor) {
        Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => Ok(()),
        Ok(_) => Err((
            "MonitorNotExecutable",
            format!("{} is not an executable file", monitor.display()),
        )),
        Err(e) => Err((
            "MonitorNotFound",
            format!("cria-monitor at {}: {e}", monitor.display()),
        )),
    }
}

/// The network is ready when the CNI conf dir holds a usable config whose
/// plugins are installed; re-read when the dir changes, so a config added
/// later is seen without a restart.
fn network_ready(cni: &cria_cni::Cni) -> Result<(), (&'static str, String)> {
    let status = cni.status();
    if status.ready {
        Ok(())
    } else {
        Err(("NetworkPluginNotReady", status.message))
    }
}

pub(crate) fn status(ctx: &RuntimeContext, req: &cri::StatusRequest) -> cri::StatusResponse {
    let conditions = vec![
        condition("RuntimeReady", runtime_ready(&ctx.config.monitor_path)),
        condition("NetworkReady", network_ready(&ctx.cni)),
    ];
    let mut info = HashMap::new();
    if req.verbose {
        let doc = serde_json::json!({
            "root": ctx.config.root,
            "state": ctx.config.state,
            "monitorPath": ctx.config.monitor_path,
            "cniConfDir": ctx.config.cni_conf_dir,
            "cgroupDriver": "cgroupfs",
            "podCIDR": ctx.pod_cidr(),
            "sandboxes": ctx.sandboxes.list().len(),
            "containers": ctx.containers.list().len(),
        });
        info.insert("config".to_string(), doc.to_string());
    }
    cri::StatusResponse {
        status: Some(cri::RuntimeStatus { conditions }),
        info,
        runtime_handlers: vec![cri::RuntimeHandler {
            name: String::new(),
            features: Some(cri::RuntimeHandlerFeatures {
                recursive_read_only_mounts: false,
                user_namespaces: false,
            }),
        }],
        features: Some(cri::RuntimeFeatures {
            supplemental_groups_policy: true,
            user_namespaces_host_network: false,
            mount_options: false,
        }),
    }
}

pub(crate) fn runtime_config() -> cri::RuntimeConfigResponse {
    cri::RuntimeConfigResponse {
        linux: Some(cri::LinuxRuntimeConfiguration {
            cgroup_driver: cri::CgroupDriver::Cgroupfs as i32,
        }),
    }
}

pub(crate) fn update_runtime_config(ctx: &RuntimeContext, req: &cri::UpdateRuntimeConfigRequest) {
    let cidr = req
        .runtime_config
        .as_ref()
        .and_then(|c| c.network_config.as_ref())
        .map(|n| n.pod_cidr.clone())
        .unwrap_or_default();
    if cidr.is_empty() {
        return;
    }
    tracing::info!(pod_cidr = %cidr, "pod CIDR updated");
    *ctx.pod_cidr.lock().unwrap_or_else(|e| e.into_inner()) = cidr;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_names_cria_and_v1() {
        let v = version(&Default::default());
        assert_eq!(v.runtime_name, "cria");
        assert_eq!(v.runtime_api_version, "v1");
        assert_eq!(v.runtime_version, env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn readiness_checks_report_why() {
        let tmp = tempfile::tempdir().unwrap();
        let mut opts = cria_cni::CniOptions::new(tmp.path().join("cache"));
        opts.conf_dir = tmp.path().join("net.d");
        std::fs::create_dir(&opts.conf_dir).unwrap();
        let err = network_ready(&cria_cni::Cni::new(opts.clone())).unwrap_err();
        assert_eq!(err.0, "NetworkPluginNotReady");
        assert!(!err.1.is_empty());
        std::fs::write(
            opts.conf_dir.join("10-lo.conflist"),
            r#"{"cniVersion":"1.0.0","name":"lo","plugins":[{"type":"loopback"}]}"#,
        )
        .unwrap();
        // Debian's containernetworking-plugins (/usr/lib/cni) has loopback.
        assert!(network_ready(&cria_cni::Cni::new(opts.clone())).is_ok());

        assert_eq!(
            runtime_ready(&tmp.path().join("nope")).unwrap_err().0,
            "MonitorNotFound"
        );
        let plain = opts.conf_dir.join("10-lo.conflist");
        assert_eq!(runtime_ready(&plain).unwrap_err().0, "MonitorNotExecutable");
        assert!(runtime_ready(Path::new("/bin/sh")).is_ok());
    }
}
