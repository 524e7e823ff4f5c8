//! `cria`: a command-line client for people, talking CRI v1 over the runtime's
//! unix socket (criad's by default, any CRI runtime's with `--endpoint`).

mod client;
mod commands;
mod crilog;
mod error;
mod humanize;
mod lifecycle;
mod output;
mod progress;
mod progress_watch;
mod resolve;
mod run_options;
mod stream_client;
mod tty;
mod views;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser};

use crate::client::{parse_endpoint, Cri, DEFAULT_ENDPOINT};
use crate::error::CliError;

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "cria",
    version,
    about = "Run and inspect containers through a CRI runtime (criad by default)",
    after_help = "Examples:\n  cria pull busybox\n  cria run --rm busybox echo hello\n  cria ps -a\n  cria logs -f web\n\nExit status: the container's for run and exec, 1 for errors, 125 for usage errors."
)]
pub struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: commands::Command,
}

/// Options every command accepts.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Global options")]
pub struct Global {
    /// CRI socket: unix:///path or a plain path
    #[arg(
        long,
        global = true,
        env = "CONTAINER_RUNTIME_ENDPOINT",
        default_value = DEFAULT_ENDPOINT
    )]
    endpoint: String,
    /// Time allowed to connect and for each request (pulls and exec are not limited): 10s, 2m, 30
    #[arg(long, global = true, default_value = "10s", value_parser = parse_timeout)]
    timeout: Duration,
    /// Where `run` creates pod log directories (and `rm` removes them)
    #[arg(
        long,
        global = true,
        env = "CRIA_LOG_ROOT",
        default_value = "/var/log/cria/pods"
    )]
    log_root: std::path::PathBuf,
    /// Log gRPC and internal steps to stderr
    #[arg(long, global = true)]
    debug: bool,
    /// CA certificate (PEM) trusted, besides the system's, for an https
    /// streaming server (criad's `[streaming] tls_cert_file`)
    #[arg(long, global = true, env = "CRIA_STREAMING_CA", value_name = "FILE")]
    streaming_ca: Option<std::path::PathBuf>,
}

/// Parses `10s`, `2m`, `500ms` or a plain number of seconds.
fn parse_timeout(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, mult_ms) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000.0)
    } else {
        (s, 1000.0)
    };
    match num.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(Duration::from_millis((v * mult_ms) as u64)),
        _ => Err(format!("{s:?} is not a duration like 10s, 2m or 500ms")),
    }
}

/// What every command gets: the global options and a way to reach the runtime.
pub struct Ctx {
    global: Global,
}

impl Ctx {
    /// Connects to the runtime named by `--endpoint`.
    pub async fn connect(&self) -> Result<Cri, CliError> {
        let path = parse_endpoint(&self.global.endpoint)?;
        tracing::debug!(socket = %path.display(), "connecting");
        Ok(Cri::connect(&path, self.global.timeout)
            .await?
            .with_streaming_ca(self.global.streaming_ca.clone()))
    }

    /// The directory holding the pod log directories `cria run` makes.
    pub fn log_root(&self) -> &std::path::Path {
        &self.global.log_root
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are not errors; everything else clap rejects is a usage error.
            let code = if e.use_stderr() { 125 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    if cli.global.debug {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_env_filter("cria=debug,cria_cli=debug,tonic=debug,h2=info")
            .init();
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cria: error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let ctx = Ctx {
        global: cli.global.clone(),
    };
    let result = runtime.block_on(commands::dispatch(&ctx, cli.command));
    match result {
        Ok(code) => ExitCode::from(code),
        // The reader of our output went away (`| head`): nothing left to say.
        Err(err) if output::is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            let code = err
                .downcast_ref::<CliError>()
                .map_or(1, CliError::exit_code);
            if ctx.global.debug {
                eprintln!("cria: error: {err:?}");
            } else {
                eprintln!("cria: error: {err:#}");
            }
            ExitCode::from(code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn timeouts() {
        assert_eq!(parse_timeout("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_timeout("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_timeout("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_timeout("3").unwrap(), Duration::from_secs(3));
        assert!(parse_timeout("0").is_err());
        assert!(parse_timeout("soon").is_err());
    }
}
