//! `cria rm`: RemoveContainer, and the pod `cria run` made for it.

use clap::Args;

use crate::{lifecycle, output, resolve, Ctx};

pub const EXAMPLES: &str = "Examples:
  cria rm web
  cria rm -f web                 # stop it first
  cria rm $(cria ps -aq)

A pod that `cria run` created is removed with its last container.";

/// Arguments of `cria rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Stop running containers before removing them
    #[arg(short, long)]
    force: bool,
    /// Containers: names, ids or unique id prefixes
    #[arg(required = true)]
    containers: Vec<String>,
}

/// Runs `cria rm`; carries on past failures and exits 1 if any container was not removed.
pub async fn run(ctx: &Ctx, args: RmArgs) -> anyhow::Result<u8> {
    let cri = ctx.connect().await?;
    let mut failed = false;
    for q in &args.containers {
        let result = match resolve::container(&cri, q).await {
            Ok(c) => {
                lifecycle::remove_container(
                    &cri,
                    &c.id,
                    &c.pod_sandbox_id,
                    args.force,
                    ctx.log_root(),
                )
                .await
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => output::print_line(q)?,
            Err(e) => {
                eprintln!("cria: error: {e}");
                failed = true;
            }
        }
    }
    Ok(u8::from(failed))
}
