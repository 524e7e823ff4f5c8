//! `cria version`: this client's version and the runtime's Version RPC.

use clap::Args;
use cria_proto::v1::VersionRequest;
use serde_json::json;

use crate::output::{self, Format};
use crate::Ctx;

pub const EXAMPLES: &str = "Examples:
  cria version
  cria --endpoint unix:///run/containerd/containerd.sock version
  cria version -o json";

/// The CRI API version this client speaks.
const CRI_API_VERSION: &str = "v1";

/// Arguments of `cria version`.
#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Output format
    #[arg(short, long, value_enum, default_value_t)]
    output: Format,
}

/// Runs `cria version`.
pub async fn run(ctx: &Ctx, args: VersionArgs) -> anyhow::Result<u8> {
    let cri = ctx.connect().await?;
    let v = cri
        .call(
            "version",
            cri.runtime().version(VersionRequest {
                version: CRI_API_VERSION.to_string(),
            }),
        )
        .await?;
    match args.output {
        Format::Table => {
            output::print_text(&format!(
                "Client:\n  Version:     {}\n  CRI API:     {CRI_API_VERSION}\n\
                 Server:\n  Runtime:     {}\n  Version:     {}\n  CRI API:     {}\n",
                env!("CARGO_PKG_VERSION"),
                v.runtime_name,
                v.runtime_version,
                v.runtime_api_version
            ))?;
        }
        f => output::print_structured(
            f,
            &json!({
                "client": {"version": env!("CARGO_PKG_VERSION"), "cri_api_version": CRI_API_VERSION},
                "server": {
                    "version": v.version,
                    "runtime_name": v.runtime_name,
                    "runtime_version": v.runtime_version,
                    "runtime_api_version": v.runtime_api_version,
                },
            }),
        )?,
    }
    Ok(0)
}
