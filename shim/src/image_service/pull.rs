//! PullImage: fetch an image into the content store and snapshots.

use cria_image_store::Credentials;
use cria_proto::v1;

use super::spec_image;
use crate::daemon::Daemon;
use crate::error::ShimError;

/// Pulls the image (credentials from the request's `AuthConfig`, else the
/// configured `auth_file`) and answers its ID, the config digest.
pub(super) async fn pull(
    daemon: &Daemon,
    request: v1::PullImageRequest,
) -> Result<v1::PullImageResponse, ShimError> {
    let image = spec_image(request.image.as_ref()).to_string();
    if image.is_empty() {
        return Err(ShimError::InvalidArgument(
            "pull image: image must not be empty".to_string(),
        ));
    }
    let creds = request.auth.map(credentials).filter(|c| !c.is_empty());
    tracing::info!(%image, with_credentials = creds.is_some(), "pulling image");

    let tracker = daemon.pulls.begin(&image);
    // Held for the whole pull: its snapshots exist before its image record
    // does, and snapshot GC must not take them in between.
    let gate = daemon.snapshot_gate.read().await;
    let started = std::time::Instant::now();
    let result = daemon
        .images
        .pull(&image, creds.as_ref(), Some(tracker.progress_fn()))
        .await;
    drop(gate);
    match result {
        Ok(pulled) => {
            tracing::info!(
                %image,
                id = %pulled.id,
                size = pulled.size,
                seconds = started.elapsed().as_secs_f64(),
                "pulled image"
            );
            tracker.finish(Ok(pulled.id.clone()));
            Ok(v1::PullImageResponse {
                image_ref: pulled.id,
            })
        }
        Err(e) => {
            tracker.finish(Err(e.to_string()));
            Err(e.into())
        }
    }
}

/// CRI's `AuthConfig` as the image store's credentials (secrets included;
/// `Credentials`' Debug hides them).
fn credentials(auth: v1::AuthConfig) -> Credentials {
    Credentials {
        username: auth.username,
        password: auth.password,
        auth: auth.auth,
        identity_token: auth.identity_token,
        registry_token: auth.registry_token,
        server_address: auth.server_address,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_auth_field_reaches_the_credentials() {
        let c = credentials(v1::AuthConfig {
            username: "u".into(),
            password: "p".into(),
            auth: "dTpw".into(),
            server_address: "r.example".into(),
            identity_token: "id".into(),
            registry_token: "rt".into(),
        });
        assert_eq!(c.user_password(), Some(("u".into(), "p".into())));
        assert_eq!(c.auth, "dTpw");
        assert_eq!(c.identity_token, "id");
        assert_eq!(c.registry_token, "rt");
        assert_eq!(c.server_address, "r.example");
        // An empty AuthConfig means "no credentials", so the auth file applies.
        assert!(credentials(v1::AuthConfig::default()).is_empty());
    }
}
