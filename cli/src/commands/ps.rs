//! `cria ps`: containers with their image, age, status and pod.

use std::collections::HashMap;

use chrono::Utc;
use clap::Args;
use cria_proto::v1::{ContainerState, ContainerStatus, ListImagesRequest};
use serde::Serialize;

use crate::humanize;
use crate::output::{self, Format};
use crate::{lifecycle, resolve, views, Ctx};

pub const EXAMPLES: &str = "Examples:
  cria ps
  cria ps -a                     # also created and exited containers
  cria rm $(cria ps -aq)
  cria ps -o yaml";

/// Arguments of `cria ps`.
#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show all containers, not only running ones
    #[arg(short, long)]
    all: bool,
    /// Print only container ids
    #[arg(short, long)]
    quiet: bool,
    /// Output format
    #[arg(short, long, value_enum, default_value_t)]
    output: Format,
}

/// A container as `-o json|yaml` shows it.
#[derive(Debug, Serialize)]
struct ContainerRow {
    id: String,
    name: String,
    image: String,
    state: &'static str,
    created_at: serde_json::Value,
    started_at: serde_json::Value,
    finished_at: serde_json::Value,
    exit_code: i32,
    pod_id: String,
    pod: String,
}

/// docker's STATUS column: `Created`, `Up 3s`, `Exited (0) 5s ago`.
pub fn status_text(s: &ContainerStatus, now: chrono::DateTime<Utc>) -> String {
    let since = |ns: i64| {
        humanize::from_nanos(ns).map_or_else(String::new, |t| {
            humanize::duration(humanize::elapsed(t, now))
        })
    };
    match ContainerState::try_from(s.state) {
        Ok(ContainerState::ContainerCreated) => "Created".to_string(),
        Ok(ContainerState::ContainerRunning) => format!("Up {}", since(s.started_at)),
        Ok(ContainerState::ContainerExited) => {
            format!("Exited ({}) {} ago", s.exit_code, since(s.finished_at))
        }
        _ => "Unknown".to_string(),
    }
}

/// Runs `cria ps`.
pub async fn run(ctx: &Ctx, args: PsArgs) -> anyhow::Result<u8> {
    let cri = ctx.connect().await?;
    let mut containers = resolve::list_containers(&cri).await?;
    if !args.all {
        containers.retain(|c| c.state == ContainerState::ContainerRunning as i32);
    }
    containers.sort_by_key(|c| std::cmp::Reverse(c.created_at));
    if args.quiet {
        for c in &containers {
            output::print_line(&c.id)?;
        }
        return Ok(0);
    }
    let pods: HashMap<String, String> = resolve::list_pods(&cri)
        .await?
        .iter()
        .map(|p| (p.id.clone(), resolve::pod_name(p).to_string()))
        .collect();
    // Containers refer to images by id; show a tag where the runtime has one.
    let tags: HashMap<String, String> = cri
        .call(
            "list images",
            cri.image().list_images(ListImagesRequest { filter: None }),
        )
        .await?
        .images
        .into_iter()
        .filter_map(|i| i.repo_tags.first().cloned().map(|t| (i.id, t)))
        .collect();
    let mut rows = Vec::new();
    for c in &containers {
        // A container removed between list and status is simply skipped.
        let Ok(status) = lifecycle::container_status(&cri, &c.id).await else {
            continue;
        };
        let spec = c.image.as_ref();
        let image = spec
            .map(|s| s.user_specified_image.clone())
            .filter(|s| !s.is_empty())
            .or_else(|| tags.get(&c.image_ref).cloned())
            .or_else(|| spec.and_then(|s| tags.get(&s.image).cloned()))
            .or_else(|| spec.map(|s| s.image.clone()))
            .unwrap_or_default();
        rows.push((
            ContainerRow {
                id: c.id.clone(),
                name: resolve::container_name(c).to_string(),
                image,
                state: views::container_state(status.state),
                created_at: views::time(c.created_at),
                started_at: views::time(status.started_at),
                finished_at: views::time(status.finished_at),
                exit_code: status.exit_code,
                pod_id: c.pod_sandbox_id.clone(),
                pod: pods.get(&c.pod_sandbox_id).cloned().unwrap_or_default(),
            },
            status,
        ));
    }
    match args.output {
        Format::Table => {
            let now = Utc::now();
            let table = rows
                .iter()
                .map(|(r, s)| {
                    vec![
                        humanize::short_id(&r.id).to_string(),
                        r.image.clone(),
                        humanize::ago(s.created_at, now),
                        status_text(s, now),
                        r.name.clone(),
                        r.pod.clone(),
                    ]
                })
                .collect();
            output::print_table(
                &["CONTAINER ID", "IMAGE", "CREATED", "STATUS", "NAME", "POD"],
                table,
            )?;
        }
        f => {
            let rows: Vec<&ContainerRow> = rows.iter().map(|(r, _)| r).collect();
            output::print_structured(f, &rows)?;
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn status_column() {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 1, 0).unwrap();
        let ns = |secs_ago: i64| {
            (now - chrono::Duration::seconds(secs_ago))
                .timestamp_nanos_opt()
                .unwrap()
        };
        let mut s = ContainerStatus {
            state: ContainerState::ContainerRunning as i32,
            started_at: ns(3),
            ..ContainerStatus::default()
        };
        assert_eq!(status_text(&s, now), "Up 3s");
        s.state = ContainerState::ContainerExited as i32;
        s.exit_code = 3;
        s.finished_at = ns(125);
        assert_eq!(status_text(&s, now), "Exited (3) 2m ago");
        s.state = ContainerState::ContainerCreated as i32;
        assert_eq!(status_text(&s, now), "Created");
    }
}
