//! One module per subcommand; each has its clap `Args` and a `run` returning the exit status.

mod attach;
mod completion;
mod exec;
mod images;
mod info;
mod inspect;
pub mod logs;
mod pods;
mod ps;
mod pull;
mod rm;
mod rmi;
mod run;
mod stats;
mod stop;
mod version;

use clap::Subcommand;

use crate::Ctx;

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Pull an image from a registry, with per-layer progress
    #[command(after_help = pull::EXAMPLES)]
    Pull(pull::PullArgs),
    /// List images
    #[command(after_help = images::EXAMPLES)]
    Images(images::ImagesArgs),
    /// Remove images
    #[command(after_help = rmi::EXAMPLES)]
    Rmi(rmi::RmiArgs),
    /// Show a container, pod or image as JSON (or YAML)
    #[command(after_help = inspect::EXAMPLES)]
    Inspect(inspect::InspectArgs),
    /// Run a command in a new container (pulls the image if missing)
    #[command(after_help = run::EXAMPLES)]
    Run(Box<run::RunArgs>),
    /// List containers
    #[command(after_help = ps::EXAMPLES)]
    Ps(ps::PsArgs),
    /// List pods
    #[command(after_help = pods::EXAMPLES)]
    Pods(pods::PodsArgs),
    /// Print a container's output
    #[command(after_help = logs::EXAMPLES)]
    Logs(logs::LogsArgs),
    /// Run a command in a running container
    #[command(after_help = exec::EXAMPLES)]
    Exec(exec::ExecArgs),
    /// Attach to a running container's input and output
    #[command(after_help = attach::EXAMPLES)]
    Attach(attach::AttachArgs),
    /// Stop running containers
    #[command(after_help = stop::EXAMPLES)]
    Stop(stop::StopArgs),
    /// Remove containers (and the pod `cria run` made for each)
    #[command(after_help = rm::EXAMPLES)]
    Rm(rm::RmArgs),
    /// Show CPU and memory use of containers
    #[command(after_help = stats::EXAMPLES)]
    Stats(stats::StatsArgs),
    /// Show the runtime's status and configuration
    #[command(after_help = info::EXAMPLES)]
    Info(info::InfoArgs),
    /// Show the client's and the runtime's versions
    #[command(after_help = version::EXAMPLES)]
    Version(version::VersionArgs),
    /// Print a shell completion script
    #[command(after_help = completion::EXAMPLES)]
    Completion(completion::CompletionArgs),
}

/// Runs a subcommand and returns the process exit status.
pub async fn dispatch(ctx: &Ctx, command: Command) -> anyhow::Result<u8> {
    match command {
        Command::Pull(a) => pull::run(ctx, a).await,
        Command::Images(a) => images::run(ctx, a).await,
        Command::Rmi(a) => rmi::run(ctx, a).await,
        Command::Inspect(a) => inspect::run(ctx, a).await,
        Command::Run(a) => run::run(ctx, *a).await,
        Command::Ps(a) => ps::run(ctx, a).await,
        Command::Pods(a) => pods::run(ctx, a).await,
        Command::Logs(a) => logs::run(ctx, a).await,
        Command::Exec(a) => exec::run(ctx, a).await,
        Command::Attach(a) => attach::run(ctx, a).await,
        Command::Stop(a) => stop::run(ctx, a).await,
        Command::Rm(a) => rm::run(ctx, a).await,
        Command::Stats(a) => stats::run(ctx, a).await,
        Command::Info(a) => info::run(ctx, a).await,
        Command::Version(a) => version::run(ctx, a).await,
        Command::Completion(a) => completion::run(a),
    }
}
