//! The pod network seam: CNI ADD after the pod's network namespace exists,
//! CNI DEL when the pod stops (and on rollback). Host-network pods skip CNI.
//! Without a usable CNI config the pod keeps loopback only (brought up by
//! the runtime) and Status reports NetworkReady false, which is what keeps
//! kubelet from scheduling networked pods here.

use super::bandwidth;
use crate::runtime_service::context::{blocking, runtime_status};
use crate::runtime_service::store::sandbox::{PodNetwork, SandboxRecord};
use crate::runtime_service::RuntimeContext;
use cria_cni::{CapabilityArgs, DnsCapability, PortMapping, RuntimeConf};
use std::path::Path;
use std::sync::Arc;
use tonic::Status;

/// What CNI is told about the pod: ids, port mappings, DNS, bandwidth, the
/// pod CIDR(s). Fails only on a malformed bandwidth annotation.
fn runtime_conf(
    ctx: &RuntimeContext,
    sandbox: &SandboxRecord,
    netns: &Path,
) -> Result<RuntimeConf, Status> {
    let meta = sandbox.metadata();
    let mut rt =
        RuntimeConf::new(&sandbox.id, netns).with_pod(&meta.namespace, &meta.name, &meta.uid);
    rt.capabilities.port_mappings = sandbox
        .config
        .port_mappings
        .iter()
        .filter_map(|p| {
            Some(PortMapping::new(
                u16::try_from(p.host_port).ok()?,
                u16::try_from(p.container_port).ok()?,
                p.protocol().as_str_name(),
                &p.host_ip,
            ))
        })
        .collect();
    if let Some(dns) = &sandbox.config.dns_config {
        rt.capabilities.dns = Some(DnsCapability {
            servers: dns.servers.clone(),
            searches: dns.searches.clone(),
            options: dns.options.clone(),
        });
    }
    rt.capabilities.bandwidth = bandwidth::from_annotations(&sandbox.config.annotations)
        .map_err(|e| Status::invalid_argument(format!("pod sandbox {}: {e}", sandbox.id)))?;
    // Kubelet sends a dual-stack pod CIDR as "v4cidr,v6cidr".
    let cidr = ctx.pod_cidr();
    let cidrs: Vec<&str> = cidr.split(',').collect();
    rt.capabilities.ip_ranges = CapabilityArgs::ip_ranges_from_pod_cidrs(&cidrs);
    Ok(rt)
}

/// Connects the pod's network namespace (CNI ADD); returns its addresses.
/// Runs on a blocking thread (RunPodSandbox's setup), so it waits for the
/// async CNI client with `block_on`. On failure CNI has already run DEL.
pub(crate) fn attach(ctx: &RuntimeContext, sandbox: &SandboxRecord) -> Result<PodNetwork, Status> {
    let Some(netns) = &sandbox.namespaces.network else {
        return Ok(PodNetwork::default());
    };
    let status = ctx.cni.status();
    if !status.ready {
        tracing::info!(sandbox = %sandbox.id, reason = %status.message, "no CNI network: loopback only");
        return Ok(PodNetwork::default());
    }
    let rt = runtime_conf(ctx, sandbox, netns)?;
    let attachment = tokio::runtime::Handle::current()
        .block_on(ctx.cni.add(&rt))
        .map_err(|e| Status::unknown(format!("pod sandbox {}: network setup: {e}", sandbox.id)))?;
    let mut ips = attachment.pod_ips.iter().map(|ip| ip.to_string());
    let network = PodNetwork {
        ip: ips.next().unwrap_or_default(),
        additional_ips: ips.collect(),
        attached: true,
    };
    tracing::info!(sandbox = %sandbox.id, network = %attachment.network, ip = %network.ip, "pod network attached");
    Ok(network)
}

/// Disconnects the pod (CNI DEL with the cached config, so it works after a
/// restart or a config change, and when the namespace is already gone).
/// Only for pods that were attached; idempotent.
pub(crate) async fn detach(ctx: &RuntimeContext, sandbox: &SandboxRecord) -> Result<(), Status> {
    if !sandbox.network.attached {
        return Ok(());
    }
    let Some(netns) = &sandbox.namespaces.network else {
        return Ok(());
    };
    ctx.cni
        .del(&runtime_conf(ctx, sandbox, netns)?)
        .await
        .map_err(|e| Status::unknown(format!("pod sandbox {}: network teardown: {e}", sandbox.id)))
}

/// The sandbox ids with a CNI cache entry (`<id>-<ifname>.json`, ids are
/// ours: 64 hex) and their interfaces.
pub(crate) fn cached_attachments(cache_dir: &Path) -> Vec<(String, String)> {
    let Ok(rd) = std::fs::read_dir(cache_dir) else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let (id, ifname) = name.strip_suffix(".json")?.split_once('-')?;
            let ours = id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit());
            ours.then(|| (id.to_string(), ifname.to_string()))
        })
        .collect()
}

/// At start-up: undoes what a RunPodSandbox cut short by a crash left
/// behind. CNI caches an attachment before ADD runs, while the pod record
/// is written only after ADD, so a cache entry without a record is a pod
/// that never existed for kubelet: DEL it (releasing its address), then
/// remove its namespaces, cgroup and pod dir.
pub(crate) async fn release_orphans(ctx: &Arc<RuntimeContext>) {
    for (id, ifname) in cached_attachments(&ctx.cni.options().cache_dir) {
        if ctx.sandboxes.get(&id).is_ok() {
            continue;
        }
        tracing::warn!(sandbox = %id, "network of a pod sandbox without a record: tearing down");
        let netns = ctx.config.state.join("netns").join(&id);
        let mut rt = RuntimeConf::new(&id, netns);
        rt.ifname = ifname;
        if let Err(e) = ctx.cni.del(&rt).await {
            tracing::warn!(sandbox = %id, error = %e, "orphan network teardown failed");
            continue;
        }
        let (rt_ctx, sandbox_id) = (ctx.clone(), id.clone());
        let removed = blocking(move || {
            rt_ctx.runtime.remove_sandbox(&sandbox_id)?;
            let dir = rt_ctx.sandboxes.object_dir(&sandbox_id);
            match std::fs::remove_dir_all(dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    tracing::warn!(sandbox = %sandbox_id, error = %e, "removing orphan pod dir");
                }
                _ => {}
            }
            Ok::<(), cria_runtime::RuntimeError>(())
        })
        .await;
        if let Err(e) = removed.and_then(|r| r.map_err(runtime_status)) {
            tracing::warn!(sandbox = %id, error = %e, "removing orphan pod sandbox failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_entries_name_our_sandboxes_and_interfaces() {
        let tmp = tempfile::tempdir().unwrap();
        let id = "ab".repeat(32);
        for name in [
            format!("{id}-eth0.json"),
            format!("{id}-net1.json"),
            "foreign-eth0.json".to_string(),
            format!("{id}-eth0.tmp"),
        ] {
            std::fs::write(tmp.path().join(name), "{}").unwrap();
        }
        let mut found = cached_attachments(tmp.path());
        found.sort();
        assert_eq!(
            found,
            vec![(id.clone(), "eth0".to_string()), (id, "net1".to_string())]
        );
        assert!(cached_attachments(&tmp.path().join("missing")).is_empty());
    }
}
