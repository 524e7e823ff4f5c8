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

/// How long after the session ends to wait for the runtime to report the container's exit.
const EXIT_SETTLE: std::time::Duration = std::time::Duration::from_secs(3);

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
/// container's exit status from ContainerStatus once it has exited; if it
/// still runs, the code the server sent, else 0 (128+signal when a signal
/// ended the session).
pub async fn attach_to_exit(cri: &Cri, id: &str, opts: SessionOptions) -> anyhow::Result<u8> {
    let ended = attach_session(cri, id, opts).await?;
    if let Ended::Signal(_) = ended {
        return Ok(ended.exit_status());
    }
    // The session ends when the container exits; give the runtime a moment to
    // record it, so the status (and a `cria rm` right after) agrees.
    let waited = tokio::time::timeout(EXIT_SETTLE, lifecycle::wait_exit(cri, id)).await;
    match waited {
        // Exit statuses are 0-255; a signal death is reported by runtimes as 128+signal.
        Ok(status) => Ok((status?.exit_code & 0xff) as u8),
        // Still running: the session ended without the container (a detach).
        Err(_) => Ok(ended.exit_status()),
    }
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
    Ok(stream_client::run_session(&resp.url, opts, cri.streaming_ca()).await?)
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
