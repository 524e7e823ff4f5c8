//! `cria pull`: PullImage with per-layer progress, ending with the image id.

use clap::Args;
use cria_proto::v1::{AuthConfig, ImageSpec, ImageStatusRequest, PullImageRequest};
use tonic::Code;

use crate::client::Cri;
use crate::error::CliError;
use crate::progress::{PullDisplay, Target};
use crate::Ctx;

pub const EXAMPLES: &str = "Examples:
  cria pull busybox
  cria pull docker.io/library/nginx:1.27
  cria pull --creds me:secret registry.example.com/team/app:v2
  cria pull localhost:5000/busybox:latest > pull.log   # plain lines, no bars";

/// Arguments of `cria pull`.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// Image reference (docker-style: busybox, nginx:1.27, host:5000/repo@sha256:...)
    pub image: String,
    /// Registry credentials as user:password
    #[arg(long, value_name = "USER:PASS")]
    pub creds: Option<String>,
}

/// The registry host of a docker-style reference (`docker.io` when none is named).
pub fn registry_host(reference: &str) -> &str {
    match reference.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first
        }
        _ => "docker.io",
    }
}

/// Builds the CRI AuthConfig from `--creds user:pass`.
pub fn auth_from_creds(creds: &str, reference: &str) -> Result<AuthConfig, CliError> {
    let (user, pass) = creds
        .split_once(':')
        .ok_or_else(|| CliError::Usage("--creds must be user:password".to_string()))?;
    if user.is_empty() {
        return Err(CliError::Usage(
            "--creds has an empty user name".to_string(),
        ));
    }
    Ok(AuthConfig {
        username: user.to_string(),
        password: pass.to_string(),
        server_address: registry_host(reference).to_string(),
        ..AuthConfig::default()
    })
}

/// True when a failed pull means the image (or its repository) does not exist.
fn is_not_found(err: &CliError) -> bool {
    match err {
        CliError::Rpc { code, message, .. } => {
            let m = message.to_ascii_lowercase();
            *code == Code::NotFound
                || m.contains("not found")
                || m.contains("manifest unknown")
                || m.contains("name unknown")
        }
        _ => false,
    }
}

/// Rewrites a not-found failure as "image REF not found in registry HOST", keeping the daemon's words.
fn not_found_message(reference: &str, daemon: &str) -> String {
    let head = format!(
        "image {reference} not found in registry {}",
        registry_host(reference)
    );
    if daemon.is_empty() {
        head
    } else {
        format!("{head} ({daemon})")
    }
}

/// Pulls `reference`, showing progress on `target`, and returns the image id.
pub async fn pull_image(
    cri: &Cri,
    reference: &str,
    auth: Option<AuthConfig>,
    target: Target,
) -> Result<String, CliError> {
    let mut display = PullDisplay::new(target);
    display.begin(reference);
    let req = PullImageRequest {
        image: Some(ImageSpec {
            image: reference.to_string(),
            ..ImageSpec::default()
        }),
        auth,
        sandbox_config: None,
    };
    let mut images = cri.image();
    let pull = cri.call_long("pull image", images.pull_image(req));
    let result = crate::progress_watch::with_progress(cri, reference, &mut display, pull).await;
    let image_ref = match result {
        Ok(resp) => resp.image_ref,
        Err(e) => {
            display.abandon();
            if is_not_found(&e) {
                let daemon = match &e {
                    CliError::Rpc { message, .. } => message.as_str(),
                    _ => "",
                };
                return Err(CliError::ImageNotFound(not_found_message(
                    reference, daemon,
                )));
            }
            return Err(e);
        }
    };
    display.finish(reference);
    // PullImage returns an image reference; the id is what `images` shows, so ask for it.
    let status = cri
        .call(
            "image status",
            cri.image().image_status(ImageStatusRequest {
                image: Some(ImageSpec {
                    image: image_ref.clone(),
                    ..ImageSpec::default()
                }),
                verbose: false,
            }),
        )
        .await?;
    Ok(status.image.map_or(image_ref, |i| i.id))
}

/// Runs `cria pull`.
pub async fn run(ctx: &Ctx, args: PullArgs) -> anyhow::Result<u8> {
    let auth = args
        .creds
        .as_deref()
        .map(|c| auth_from_creds(c, &args.image))
        .transpose()?;
    let cri = ctx.connect().await?;
    let id = pull_image(&cri, &args.image, auth, Target::Stdout)
        .await
        .map_err(anyhow::Error::from)?;
    crate::output::print_line(&id)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_hosts() {
        assert_eq!(registry_host("busybox"), "docker.io");
        assert_eq!(registry_host("library/busybox:1"), "docker.io");
        assert_eq!(registry_host("localhost:5000/busybox"), "localhost:5000");
        assert_eq!(registry_host("localhost/busybox"), "localhost");
        assert_eq!(registry_host("quay.io/x/y"), "quay.io");
    }

    #[test]
    fn creds() {
        let a = auth_from_creds("me:p:w", "quay.io/x").unwrap();
        assert_eq!(
            (
                a.username.as_str(),
                a.password.as_str(),
                a.server_address.as_str()
            ),
            ("me", "p:w", "quay.io")
        );
        assert!(matches!(
            auth_from_creds("nopass", "x"),
            Err(CliError::Usage(_))
        ));
    }

    #[test]
    fn not_found_names_reference_and_registry() {
        let e = CliError::Rpc {
            op: "pull image",
            code: Code::NotFound,
            message: "manifest unknown".into(),
        };
        assert!(is_not_found(&e));
        assert_eq!(
            not_found_message("localhost:5000/nope:1", "manifest unknown"),
            "image localhost:5000/nope:1 not found in registry localhost:5000 (manifest unknown)"
        );
        let other = CliError::Rpc {
            op: "pull image",
            code: Code::Internal,
            message: "disk full".into(),
        };
        assert!(!is_not_found(&other));
    }
}
