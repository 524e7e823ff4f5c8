//! `cria exec`: ExecSync in a running container, printing its output and
//! exiting with its code. Interactive exec (`-i/-t`) needs streaming.

use std::io::Write;

use anyhow::Context;
use clap::Args;
use cria_proto::v1::ExecSyncRequest;

use crate::error::CliError;
use crate::{resolve, Ctx};

pub const EXAMPLES: &str = "Examples:
  cria exec web cat /etc/hostname
  cria exec web sh -c 'echo $HOME; exit 4'   # cria exits 4
  cria exec --exec-timeout 5 web sleep 60

Interactive exec (-i/-t) needs streaming support (not available yet).";

/// Arguments of `cria exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Keep stdin open (needs streaming)
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a terminal (needs streaming)
    #[arg(short, long)]
    tty: bool,
    /// Seconds after which the runtime ends the command (0: no limit)
    #[arg(long, default_value_t = 0, value_name = "SECS")]
    exec_timeout: i64,
    /// Container: name, id or unique id prefix
    container: String,
    /// Command and arguments
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// Runs `cria exec`.
pub async fn run(ctx: &Ctx, args: ExecArgs) -> anyhow::Result<u8> {
    if args.interactive || args.tty {
        return Err(CliError::NeedsStreaming(format!(
            "drop -i/-t to run a command and see its output, e.g. `cria exec {} {}`",
            args.container,
            args.command.join(" ")
        ))
        .into());
    }
    let cri = ctx.connect().await?;
    let c = resolve::container(&cri, &args.container).await?;
    let resp = cri
        .call_long(
            "exec",
            cri.runtime().exec_sync(ExecSyncRequest {
                container_id: c.id,
                cmd: args.command,
                timeout: args.exec_timeout,
            }),
        )
        .await?;
    std::io::stdout()
        .write_all(&resp.stdout)
        .and_then(|()| std::io::stdout().flush())
        .context("writing stdout")?;
    std::io::stderr()
        .write_all(&resp.stderr)
        .context("writing stderr")?;
    Ok((resp.exit_code & 0xff) as u8)
}
