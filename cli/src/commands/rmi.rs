//! `cria rmi`: RemoveImage for each named image.

use clap::Args;
use cria_proto::v1::{ImageSpec, ImageStatusRequest, RemoveImageRequest};

use crate::error::CliError;
use crate::{output, Ctx};

pub const EXAMPLES: &str = "Examples:
  cria rmi busybox
  cria rmi localhost:5000/app:v1 sha256:0123456789ab
  cria rmi $(cria images -q)";

/// Arguments of `cria rmi`.
#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Image references or ids
    #[arg(required = true)]
    images: Vec<String>,
}

/// Runs `cria rmi`; carries on past failures and exits 1 if any image was not removed.
pub async fn run(ctx: &Ctx, args: RmiArgs) -> anyhow::Result<u8> {
    let cri = ctx.connect().await?;
    let mut failed = false;
    for name in &args.images {
        let spec = ImageSpec {
            image: name.clone(),
            ..ImageSpec::default()
        };
        // CRI's RemoveImage succeeds for unknown images; check first so typos are reported.
        let status = cri
            .call(
                "image status",
                cri.image().image_status(ImageStatusRequest {
                    image: Some(spec.clone()),
                    verbose: false,
                }),
            )
            .await;
        let result = match status {
            Ok(s) if s.image.is_none() => Err(CliError::NotFound {
                kind: "image",
                query: name.clone(),
            }),
            Ok(_) => cri
                .call(
                    "remove image",
                    cri.image()
                        .remove_image(RemoveImageRequest { image: Some(spec) }),
                )
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => output::print_line(format!("Deleted: {name}"))?,
            Err(e @ (CliError::DaemonUnreachable { .. } | CliError::PermissionDenied { .. })) => {
                return Err(e.into())
            }
            Err(e) => {
                eprintln!("cria: error: {e}");
                failed = true;
            }
        }
    }
    Ok(u8::from(failed))
}
