//! ContainerStats and ListContainerStats: CPU, memory (from the cgroup) and
//! the writable layer (from the overlay upper dir).

use crate::runtime_service::context::{blocking, now_ns, runtime_status};
use crate::runtime_service::filter::{id_matches, labels_match};
use crate::runtime_service::store::container::{ContainerPhase, ContainerRecord};
use crate::runtime_service::RuntimeContext;
use cria_proto::v1 as cri;
use std::sync::Arc;
use tonic::Status;

fn value(v: u64) -> Option<cri::UInt64Value> {
    Some(cri::UInt64Value { value: v })
}

pub(crate) async fn stats(
    ctx: &Arc<RuntimeContext>,
    id: &str,
) -> Result<cri::ContainerStats, Status> {
    let record = ctx.containers.get(id)?.get();
    of_record(ctx, record).await
}

/// Stats of one container; the cgroup ones only while it has a cgroup.
pub(crate) async fn of_record(
    ctx: &Arc<RuntimeContext>,
    record: ContainerRecord,
) -> Result<cri::ContainerStats, Status> {
    let live = matches!(
        record.phase,
        ContainerPhase::Created | ContainerPhase::Running
    );
    let rt_ctx = ctx.clone();
    let bundle = record.bundle.clone();
    let id = record.id.clone();
    let (cgroup, layer) = blocking(move || {
        let cgroup = if live {
            Some(rt_ctx.runtime.stats(&id).map_err(runtime_status))
        } else {
            None
        };
        (cgroup.transpose(), rt_ctx.rootfs.usage(&bundle))
    })
    .await?;
    let cgroup = cgroup?;
    let layer = layer?;
    let ts = now_ns();
    let mut stats = cri::ContainerStats {
        attributes: Some(cri::ContainerAttributes {
            id: record.id.clone(),
            metadata: Some(record.metadata()),
            labels: record.config.labels.clone(),
            annotations: record.config.annotations.clone(),
        }),
        writable_layer: Some(cri::FilesystemUsage {
            timestamp: ts,
            fs_id: Some(cri::FilesystemIdentifier {
                mountpoint: ctx.config.root.join("containers").display().to_string(),
            }),
            used_bytes: value(layer.bytes),
            inodes_used: value(layer.inodes),
        }),
        ..Default::default()
    };
    if let Some(cg) = cgroup {
        stats.cpu = Some(cri::CpuUsage {
            timestamp: ts,
            usage_core_nano_seconds: value(cg.cpu_usage_ns),
            ..Default::default()
        });
        stats.memory = Some(cri::MemoryUsage {
            timestamp: ts,
            working_set_bytes: value(cg.memory_working_set_bytes),
            usage_bytes: value(cg.memory_usage_bytes),
            rss_bytes: value(cg.memory_rss_bytes),
            ..Default::default()
        });
    }
    Ok(stats)
}

/// Whether `record` passes `filter`.
fn matches(record: &ContainerRecord, filter: &cri::ContainerStatsFilter) -> bool {
    id_matches(&filter.id, &record.id)
        && id_matches(&filter.pod_sandbox_id, &record.sandbox_id)
        && labels_match(&filter.label_selector, &record.config.labels)
}

pub(crate) async fn list(
    ctx: &Arc<RuntimeContext>,
    filter: Option<&cri::ContainerStatsFilter>,
) -> Vec<cri::ContainerStats> {
    let mut out = Vec::new();
    for record in ctx.containers.list() {
        if !filter.is_none_or(|f| matches(&record, f)) {
            continue;
        }
        let id = record.id.clone();
        match of_record(ctx, record).await {
            Ok(s) => out.push(s),
            // Exited or removed in the meantime: not worth failing the list.
            Err(e) => tracing::debug!(container = %id, error = %e, "skipping stats"),
        }
    }
    out
}
