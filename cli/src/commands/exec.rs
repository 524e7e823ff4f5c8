//! `cria exec`: ExecSync in a running container, printing its output and
//! exiting with its code; with `-i/-t`, Exec and a streaming session.

use std::io::Write;

use anyhow::Context;
use clap::Args;
use cria_proto::v1::{ExecRequest, ExecSyncRequest};

use crate::error::CliError;
use crate::stream_client::{self, Ended, SessionOptions};
use crate::{resolve, Ctx};

pub const EXAMPLES: &str = "Examples:
  cria exec web cat /etc/hostname
  cria exec web sh -c 'echo $HOME; exit 4'   # cria exits 4
  cria exec --exec-timeout 5 web sleep 60
  cria exec -it web sh                        # a shell on a terminal
  echo hi | cria exec -i web cat              # stdin piped in, closed at EOF

-i/-t use the runtime's streaming server (CRI Exec).";

/// Arguments of `cria exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Pass stdin to the command
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a terminal
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
    let cri = ctx.connect().await?;
    let c = resolve::container(&cri, &args.container).await?;
    if args.interactive || args.tty {
        let resp = cri
            .call(
                "exec",
                cri.runtime().exec(ExecRequest {
                    container_id: c.id,
                    cmd: args.command,
                    tty: args.tty,
                    stdin: args.interactive,
                    stdout: true,
                    // A terminal has one output stream (CRI forbids stderr with tty).
                    stderr: !args.tty,
                }),
            )
            .await
            .map_err(CliError::streaming_refused)?;
        let opts = SessionOptions {
            stdin: args.interactive,
            tty: args.tty,
        };
        return match stream_client::run_session(&resp.url, opts, cri.streaming_ca()).await? {
            Ended::NoStatus => {
                anyhow::bail!("the runtime ended the exec session without an exit status")
            }
            ended => Ok(ended.exit_status()),
        };
    }
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
