//! PodSandboxStats and ListPodSandboxStats. The pod's usage is the sum of
//! its containers' (their cgroups are the pod cgroup's only children).

use crate::runtime_service::container;
use crate::runtime_service::context::now_ns;
use crate::runtime_service::filter::{id_matches, labels_match};
use crate::runtime_service::store::container::ContainerPhase;
use crate::runtime_service::store::sandbox::SandboxRecord;
use crate::runtime_service::RuntimeContext;
use cria_proto::v1 as cri;
use std::sync::Arc;
use tonic::Status;

pub(crate) async fn stats(
    ctx: &Arc<RuntimeContext>,
    id: &str,
) -> Result<cri::PodSandboxStats, Status> {
    let record = ctx.sandboxes.get(id)?.get();
    Ok(of_record(ctx, &record).await)
}

fn add(total: &mut Option<cri::UInt64Value>, v: &Option<cri::UInt64Value>) {
    if let Some(v) = v {
        total.get_or_insert_with(Default::default).value += v.value;
    }
}

async fn of_record(ctx: &Arc<RuntimeContext>, record: &SandboxRecord) -> cri::PodSandboxStats {
    let ts = now_ns();
    let mut cpu = cri::CpuUsage {
        timestamp: ts,
        ..Default::default()
    };
    let mut memory = cri::MemoryUsage {
        timestamp: ts,
        ..Default::default()
    };
    let mut containers = Vec::new();
    for c in ctx.containers.list() {
        if c.sandbox_id != record.id
            || !matches!(c.phase, ContainerPhase::Created | ContainerPhase::Running)
        {
            continue;
        }
        let id = c.id.clone();
        match container::stats::of_record(ctx, c).await {
            Ok(s) => {
                if let Some(c) = &s.cpu {
                    add(&mut cpu.usage_core_nano_seconds, &c.usage_core_nano_seconds);
                }
                if let Some(m) = &s.memory {
                    add(&mut memory.working_set_bytes, &m.working_set_bytes);
                    add(&mut memory.usage_bytes, &m.usage_bytes);
                    add(&mut memory.rss_bytes, &m.rss_bytes);
                }
                containers.push(s);
            }
            Err(e) => tracing::debug!(container = %id, error = %e, "skipping stats"),
        }
    }
    cri::PodSandboxStats {
        attributes: Some(cri::PodSandboxAttributes {
            id: record.id.clone(),
            metadata: Some(record.metadata()),
            labels: record.config.labels.clone(),
            annotations: record.config.annotations.clone(),
        }),
        linux: Some(cri::LinuxPodSandboxStats {
            cpu: Some(cpu),
            memory: Some(memory),
            process: None,
            network: None,
            containers,
            io: None,
        }),
        windows: None,
    }
}

pub(crate) async fn list(
    ctx: &Arc<RuntimeContext>,
    filter: Option<&cri::PodSandboxStatsFilter>,
) -> Vec<cri::PodSandboxStats> {
    let mut out = Vec::new();
    for record in ctx.sandboxes.list() {
        let wanted = filter.is_none_or(|f| {
            id_matches(&f.id, &record.id) && labels_match(&f.label_selector, &record.config.labels)
        });
        if wanted {
            out.push(of_record(ctx, &record).await);
        }
    }
    out
}
