//! `cria logs`: reads the container's CRI log file (its path comes from
//! ContainerStatus) and, with `-f`, follows it until the container exits.

use std::io::{self, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::client::Cri;
use crate::crilog::{write_entry, Entry, LogReader};
use crate::{lifecycle, resolve, Ctx};

pub const EXAMPLES: &str = "Examples:
  cria logs web
  cria logs -f --tail 20 web
  cria logs --timestamps 3f2a

The log file is read directly, so run cria on the node, as root.";

/// Arguments of `cria logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Keep printing new output until the container exits
    #[arg(short, long)]
    follow: bool,
    /// Print only the last N lines
    #[arg(long, value_name = "N")]
    tail: Option<usize>,
    /// Prefix each line with its RFC 3339 timestamp
    #[arg(short, long)]
    timestamps: bool,
    /// Container: name, id or unique id prefix
    container: String,
}

/// How to print a log.
#[derive(Debug, Clone, Copy, Default)]
pub struct StreamOpts {
    /// Follow until the container exits.
    pub follow: bool,
    /// Print only the last N lines already written.
    pub tail: Option<usize>,
    /// Prefix lines with their timestamps.
    pub timestamps: bool,
}

/// How often an idle follower checks for new output and for the container's exit.
const POLL: Duration = lifecycle::EXIT_POLL;

/// Writes entries; `Ok(false)` when the reader went away (closed pipe), which ends output quietly.
fn print(entries: &[Entry], timestamps: bool) -> anyhow::Result<bool> {
    let mut out = io::stdout().lock();
    let mut err = io::stderr().lock();
    for e in entries {
        match write_entry(e, timestamps, &mut out, &mut err) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(false),
            Err(e) => return Err(e).context("writing container output"),
        }
    }
    Ok(true)
}

/// Prints the log at `path` of container `id` as `opts` says.
pub async fn stream(cri: &Cri, id: &str, path: &Path, opts: StreamOpts) -> anyhow::Result<()> {
    // The runtime creates the file when the container starts; wait for it while it may still come.
    let mut reader = loop {
        match LogReader::open(path) {
            Ok(r) => break r,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if !opts.follow {
                    anyhow::bail!(
                        "container {} has no log file at {}",
                        crate::humanize::short_id(id),
                        path.display()
                    );
                }
                let status = lifecycle::container_status(cri, id).await?;
                if lifecycle::has_exited(&status) {
                    // It exited before writing anything: there is no output to show.
                    return Ok(());
                }
                tokio::time::sleep(POLL).await;
            }
            Err(e) => {
                return Err(e).with_context(|| format!("opening log file {}", path.display()))
            }
        }
    };
    let read = |r: &mut LogReader| {
        r.read_new()
            .with_context(|| format!("reading log file {}", path.display()))
    };
    let mut first = read(&mut reader)?;
    if let Some(n) = opts.tail {
        let skip = first.len().saturating_sub(n);
        first.drain(..skip);
    }
    if !print(&first, opts.timestamps)? {
        return Ok(());
    }
    if !opts.follow {
        print(&reader.finish(), opts.timestamps)?;
        return Ok(());
    }
    loop {
        let entries = read(&mut reader)?;
        if !entries.is_empty() {
            if !print(&entries, opts.timestamps)? {
                return Ok(());
            }
            continue;
        }
        if reader.rotated(path) {
            // Finish the old file first; its last lines were written before the rotation.
            let rest = read(&mut reader)?;
            if !print(&rest, opts.timestamps)? {
                return Ok(());
            }
            reader
                .reopen(path)
                .with_context(|| format!("reopening rotated log file {}", path.display()))?;
            continue;
        }
        let status = lifecycle::container_status(cri, id).await?;
        if lifecycle::has_exited(&status) {
            // The runtime finished writing before it reported the exit: drain what is left.
            let mut rest = read(&mut reader)?;
            rest.extend(reader.finish());
            print(&rest, opts.timestamps)?;
            io::stdout().flush().ok();
            return Ok(());
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Runs `cria logs`.
pub async fn run(ctx: &Ctx, args: LogsArgs) -> anyhow::Result<u8> {
    let cri = ctx.connect().await?;
    let c = resolve::container(&cri, &args.container).await?;
    let status = lifecycle::container_status(&cri, &c.id).await?;
    if status.log_path.is_empty() {
        anyhow::bail!(
            "container {} has no log file (the runtime reports no log path)",
            args.container
        );
    }
    let opts = StreamOpts {
        follow: args.follow,
        tail: args.tail,
        timestamps: args.timestamps,
    };
    stream(&cri, &c.id, Path::new(&status.log_path), opts).await?;
    Ok(0)
}
