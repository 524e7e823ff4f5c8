//! `cria inspect`: the full status of a container, pod or image, with the runtime's verbose info.

use clap::Args;
use cria_proto::v1::{
    ContainerStatusRequest, ImageSpec, ImageStatusRequest, PodSandboxStatusRequest,
};
use serde::Serialize;
use serde_json::Value;

use crate::error::CliError;
use crate::output::{self, Format};
use crate::{resolve, views, Ctx};

pub const EXAMPLES: &str = "Examples:
  cria inspect web               # a container or pod by name
  cria inspect 3f2a              # by unique id prefix
  cria inspect busybox -o yaml   # an image

Containers are tried first, then pods, then images.";

/// Arguments of `cria inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Container, pod or image: name, id or unique id prefix
    object: String,
    /// Output format (json or yaml; table means json here)
    #[arg(short, long, value_enum, default_value_t)]
    output: Format,
}

/// What `inspect` prints, in this field order.
#[derive(Debug, Serialize)]
struct Inspected {
    kind: &'static str,
    status: Value,
    info: Value,
}

/// Runs `cria inspect`.
pub async fn run(ctx: &Ctx, args: InspectArgs) -> anyhow::Result<u8> {
    let cri = ctx.connect().await?;
    let query = args.object.as_str();
    let value = match resolve::container(&cri, query).await {
        Ok(c) => {
            let resp = cri
                .call(
                    "container status",
                    cri.runtime().container_status(ContainerStatusRequest {
                        container_id: c.id.clone(),
                        verbose: true,
                    }),
                )
                .await?;
            let status = resp.status.unwrap_or_default();
            Inspected {
                kind: "container",
                status: views::container(&status),
                info: views::info(&resp.info),
            }
        }
        Err(CliError::NotFound { .. }) => match resolve::pod(&cri, query).await {
            Ok(p) => {
                let resp = cri
                    .call(
                        "pod status",
                        cri.runtime().pod_sandbox_status(PodSandboxStatusRequest {
                            pod_sandbox_id: p.id.clone(),
                            verbose: true,
                        }),
                    )
                    .await?;
                let status = resp.status.unwrap_or_default();
                Inspected {
                    kind: "pod",
                    status: views::pod(&status),
                    info: views::info(&resp.info),
                }
            }
            Err(CliError::NotFound { .. }) => {
                let resp = cri
                    .call(
                        "image status",
                        cri.image().image_status(ImageStatusRequest {
                            image: Some(ImageSpec {
                                image: query.to_string(),
                                ..ImageSpec::default()
                            }),
                            verbose: true,
                        }),
                    )
                    .await?;
                let Some(image) = resp.image else {
                    return Err(CliError::NotFound {
                        kind: "container, pod or image",
                        query: query.to_string(),
                    }
                    .into());
                };
                Inspected {
                    kind: "image",
                    status: views::image(&image),
                    info: views::info(&resp.info),
                }
            }
            Err(e) => return Err(e.into()),
        },
        Err(e) => return Err(e.into()),
    };
    output::print_structured(args.output, &value)?;
    Ok(0)
}
