//! `cria pods`: pod sandboxes with their state and age.

use chrono::Utc;
use clap::Args;
use serde_json::json;

use crate::humanize;
use crate::output::{self, Format};
use crate::{resolve, views, Ctx};

pub const EXAMPLES: &str = "Examples:
  cria pods
  cria pods -q
  cria pods -o json";

/// Arguments of `cria pods`.
#[derive(Debug, Args)]
pub struct PodsArgs {
    /// Print only pod ids
    #[arg(short, long)]
    quiet: bool,
    /// Output format
    #[arg(short, long, value_enum, default_value_t)]
    output: Format,
}

/// Runs `cria pods`.
pub async fn run(ctx: &Ctx, args: PodsArgs) -> anyhow::Result<u8> {
    let cri = ctx.connect().await?;
    let mut pods = resolve::list_pods(&cri).await?;
    pods.sort_by_key(|p| std::cmp::Reverse(p.created_at));
    if args.quiet {
        for p in &pods {
            output::print_line(&p.id)?;
        }
        return Ok(0);
    }
    match args.output {
        Format::Table => {
            let now = Utc::now();
            let rows = pods
                .iter()
                .map(|p| {
                    let meta = p.metadata.clone().unwrap_or_default();
                    vec![
                        humanize::short_id(&p.id).to_string(),
                        humanize::ago(p.created_at, now),
                        if views::pod_state(p.state) == "SANDBOX_READY" {
                            "Ready".to_string()
                        } else {
                            "NotReady".to_string()
                        },
                        meta.name,
                        meta.namespace,
                        meta.attempt.to_string(),
                    ]
                })
                .collect();
            output::print_table(
                &["POD ID", "CREATED", "STATE", "NAME", "NAMESPACE", "ATTEMPT"],
                rows,
            )?;
        }
        f => {
            let views: Vec<serde_json::Value> = pods
                .iter()
                .map(|p| {
                    let meta = p.metadata.clone().unwrap_or_default();
                    json!({
                        "id": p.id,
                        "name": meta.name,
                        "namespace": meta.namespace,
                        "uid": meta.uid,
                        "attempt": meta.attempt,
                        "state": views::pod_state(p.state),
                        "created_at": views::time(p.created_at),
                        "labels": p.labels,
                        "runtime_handler": p.runtime_handler,
                    })
                })
                .collect();
            output::print_structured(f, &views)?;
        }
    }
    Ok(0)
}
