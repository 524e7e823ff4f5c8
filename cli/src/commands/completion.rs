//! `cria completion`: shell completion scripts from the clap definition.

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use crate::{output, Cli};

pub const EXAMPLES: &str = "Examples:
  cria completion bash > /etc/bash_completion.d/cria
  cria completion zsh > \"${fpath[1]}/_cria\"
  cria completion fish > ~/.config/fish/completions/cria.fish";

/// Arguments of `cria completion`.
#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// Shell to generate for
    #[arg(value_enum)]
    shell: Shell,
}

/// Runs `cria completion`.
pub fn run(args: CompletionArgs) -> anyhow::Result<u8> {
    let mut cmd = Cli::command();
    // Into memory first: clap_complete panics when its writer fails (`| head`).
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "cria", &mut script);
    output::print_text(&String::from_utf8_lossy(&script))?;
    Ok(0)
}
