//! `cria stop`: StopContainer with a grace period.

use clap::Args;

use crate::{lifecycle, output, resolve, Ctx};

pub const EXAMPLES: &str = "Examples:
  cria stop web
  cria stop -t 0 web db          # kill at once";

/// Arguments of `cria stop`.
#[derive(Debug, Args)]
pub struct StopArgs {
    /// Seconds to wait after SIGTERM before killing
    #[arg(short, long, default_value_t = 10, value_name = "SECS")]
    time: i64,
    /// Containers: names, ids or unique id prefixes
    #[arg(required = true)]
    containers: Vec<String>,
}

/// Runs `cria stop`; carries on past failures and exits 1 if any container was not stopped.
pub async fn run(ctx: &Ctx, args: StopArgs) -> anyhow::Result<u8> {
    let cri = ctx.connect().await?;
    let mut failed = false;
    for q in &args.containers {
        let result = match resolve::container(&cri, q).await {
            Ok(c) => lifecycle::stop_container(&cri, &c.id, args.time).await,
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
