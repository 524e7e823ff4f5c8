//! `cria attach`: Attach to a running container's stdio through the
//! runtime's streaming server; exits with the container's code once it exits.

use clap::Args;
use cria_proto::v1::AttachRequest;

use crate::client::Cri;
use crate::error::CliError;
use crate::stream_client::{self, Ended, SessionOptions};
use crate::{lifecycle, resolve, Ctx};

pub const EXAMPLES: &str = "Examples:
  cria attach web          # watch its output until it exits
  cria attach -it shell    # type into a container made with `cria run -d -it`

Leave with Ctrl-C (without -t) or by ending the container's shell. cria exits
with the container's code when it has exited, 0 when it still runs.";

/// Arguments of `cria attach`.
#[derive(Debug, Args)]
pub struct AttachArgs {
    /// Pass stdin to the container (it must have been created with stdin open)
    #[arg(short, long)]
    interactive: bool,
    /// The container has a terminal: raw mode here, resize on window changes
    #[arg(short, long)]
    tty: bool,
    /// Container: name, id or unique id prefix
    container: String,
}

/// Attaches to container `id` until the session ends, then returns the
/// container's exit status: the one the server sent, else ContainerStatus's
/// if it has exited, else 0 (or 128+signal when a signal ended the session).
pub async fn attach_to_exit(cri: &Cri, id: &str, opts: SessionOptions) -> anyhow::Result<u8> {
    let ended = attach_session(cri, id, opts).await?;
    if let Ended::Signal(_) | Ended::Exit(_) = ended {
        return Ok(ended.exit_status());
    }
    let status = lifecycle::container_status(cri, id).await?;
    if !lifecycle::has_exited(&status) {
        return Ok(ended.exit_status());
    }
    // Exit statuses are 0-255; a signal death is reported by runtimes as 128+signal.
    Ok((status.exit_code & 0xff) as u8)
}

/// Attach RPC and the streaming session on its URL, until either side ends it.
pub async fn attach_session(cri: &Cri, id: &str, opts: SessionOptions) -> anyhow::Result<Ended> {
    let resp = cri
        .call(
            "attach",
            cri.runtime().attach(AttachRequest {
                container_id: id.to_string(),
                stdin: opts.stdin,
                tty: opts.tty,
                stdout: true,
                stderr: !opts.tty,
            }),
        )
        .await
        .map_err(CliError::streaming_refused)?;
    Ok(stream_client::run_session(&resp.url, opts).await?)
}

/// Runs `cria attach`.
pub async fn run(ctx: &Ctx, args: AttachArgs) -> anyhow::Result<u8> {
    let cri = ctx.connect().await?;
    let c = resolve::container(&cri, &args.container).await?;
    let opts = SessionOptions {
        stdin: args.interactive,
        tty: args.tty,
    };
    attach_to_exit(&cri, &c.id, opts).await
}
