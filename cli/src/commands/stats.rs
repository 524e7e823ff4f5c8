//! `cria stats`: CPU and memory use from ListContainerStats.

use std::collections::HashMap;
use std::time::Duration;

use clap::Args;
use cria_proto::v1::{ContainerStats, ListContainerStatsRequest};
use serde::Serialize;

use crate::client::Cri;
use crate::error::CliError;
use crate::humanize;
use crate::output::{self, Format};
use crate::Ctx;

pub const EXAMPLES: &str = "Examples:
  cria stats
  cria stats -o json

CPU % is of one core (200% = two cores busy). When the runtime reports only
cumulative CPU time, cria samples twice, one second apart.";

/// Arguments of `cria stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Output format
    #[arg(short, long, value_enum, default_value_t)]
    output: Format,
}

/// One container's usage as shown.
#[derive(Debug, Serialize)]
struct StatsRow {
    id: String,
    name: String,
    cpu_percent: Option<f64>,
    memory_working_set_bytes: Option<u64>,
    writable_layer_bytes: Option<u64>,
}

async fn sample(cri: &Cri) -> Result<Vec<ContainerStats>, CliError> {
    Ok(cri
        .call(
            "container stats",
            cri.runtime()
                .list_container_stats(ListContainerStatsRequest { filter: None }),
        )
        .await?
        .stats)
}

/// CPU time in ns and its timestamp.
fn cpu_time(s: &ContainerStats) -> Option<(u64, i64)> {
    let cpu = s.cpu.as_ref()?;
    Some((cpu.usage_core_nano_seconds.as_ref()?.value, cpu.timestamp))
}

/// CPU % between two cumulative samples.
pub fn cpu_percent(before: (u64, i64), after: (u64, i64)) -> Option<f64> {
    let dt = after.1.checked_sub(before.1).filter(|d| *d > 0)?;
    let used = after.0.checked_sub(before.0)?;
    Some(used as f64 / dt as f64 * 100.0)
}

fn id_of(s: &ContainerStats) -> &str {
    s.attributes.as_ref().map_or("", |a| a.id.as_str())
}

/// Runs `cria stats`.
pub async fn run(ctx: &Ctx, args: StatsArgs) -> anyhow::Result<u8> {
    let cri = ctx.connect().await?;
    let first = sample(&cri).await?;
    let instant = |s: &ContainerStats| {
        s.cpu
            .as_ref()
            .and_then(|c| c.usage_nano_cores.as_ref())
            .map(|n| n.value as f64 / 1e7)
    };
    let mut cpu: HashMap<String, f64> = first
        .iter()
        .filter_map(|s| instant(s).map(|p| (id_of(s).to_string(), p)))
        .collect();
    let mut current = first;
    if current.iter().any(|s| instant(s).is_none()) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let second = sample(&cri).await?;
        for s in &second {
            let before = current.iter().find(|b| id_of(b) == id_of(s));
            if let (Some(a), Some(b)) = (before.and_then(cpu_time), cpu_time(s)) {
                if let Some(p) = cpu_percent(a, b) {
                    cpu.entry(id_of(s).to_string()).or_insert(p);
                }
            }
        }
        current = second;
    }
    let rows: Vec<StatsRow> = current
        .iter()
        .map(|s| StatsRow {
            id: id_of(s).to_string(),
            name: s
                .attributes
                .as_ref()
                .and_then(|a| a.metadata.as_ref())
                .map_or(String::new(), |m| m.name.clone()),
            cpu_percent: cpu.get(id_of(s)).copied(),
            memory_working_set_bytes: s
                .memory
                .as_ref()
                .and_then(|m| m.working_set_bytes.as_ref())
                .map(|v| v.value),
            writable_layer_bytes: s
                .writable_layer
                .as_ref()
                .and_then(|w| w.used_bytes.as_ref())
                .map(|v| v.value),
        })
        .collect();
    match args.output {
        Format::Table => {
            let dash = || "-".to_string();
            let table = rows
                .iter()
                .map(|r| {
                    vec![
                        humanize::short_id(&r.id).to_string(),
                        r.name.clone(),
                        r.cpu_percent.map_or_else(dash, |p| format!("{p:.2}%")),
                        r.memory_working_set_bytes.map_or_else(dash, humanize::size),
                        r.writable_layer_bytes.map_or_else(dash, humanize::size),
                    ]
                })
                .collect();
            output::print_table(
                &["CONTAINER ID", "NAME", "CPU %", "MEM", "WRITABLE LAYER"],
                table,
            )?;
        }
        f => output::print_structured(f, &rows)?,
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_percent_from_two_samples() {
        // Half a core busy over one second.
        assert_eq!(
            cpu_percent((1_000_000_000, 0), (1_500_000_000, 1_000_000_000)),
            Some(50.0)
        );
        assert_eq!(cpu_percent((5, 10), (6, 10)), None, "no time passed");
        assert_eq!(cpu_percent((5, 0), (4, 10)), None, "counter went back");
    }
}
