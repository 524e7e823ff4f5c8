//! `cria info`: the runtime's conditions and verbose status.

use clap::Args;
use cria_proto::v1::StatusRequest;
use serde_json::json;

use crate::output::{self, Format};
use crate::{views, Ctx};

pub const EXAMPLES: &str = "Examples:
  cria info
  cria info -o yaml";

/// Arguments of `cria info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Output format (table prints the conditions, then the details as JSON)
    #[arg(short, long, value_enum, default_value_t)]
    output: Format,
}

/// Runs `cria info`.
pub async fn run(ctx: &Ctx, args: InfoArgs) -> anyhow::Result<u8> {
    let cri = ctx.connect().await?;
    let resp = cri
        .call(
            "status",
            cri.runtime().status(StatusRequest { verbose: true }),
        )
        .await?;
    let conditions: Vec<serde_json::Value> = resp
        .status
        .iter()
        .flat_map(|s| s.conditions.iter())
        .map(|c| json!({"type": c.r#type, "status": c.status, "reason": c.reason, "message": c.message}))
        .collect();
    let handlers: Vec<&str> = resp
        .runtime_handlers
        .iter()
        .map(|h| h.name.as_str())
        .collect();
    match args.output {
        Format::Table => {
            let rows = resp
                .status
                .iter()
                .flat_map(|s| s.conditions.iter())
                .map(|c| {
                    vec![
                        c.r#type.clone(),
                        c.status.to_string(),
                        c.reason.clone(),
                        c.message.clone(),
                    ]
                })
                .collect();
            output::print_table(&["CONDITION", "STATUS", "REASON", "MESSAGE"], rows)?;
            output::print_line("")?;
            output::print_structured(Format::Json, &views::info(&resp.info))?;
        }
        f => output::print_structured(
            f,
            &json!({"conditions": conditions, "runtime_handlers": handlers, "info": views::info(&resp.info)}),
        )?,
    }
    Ok(0)
}
