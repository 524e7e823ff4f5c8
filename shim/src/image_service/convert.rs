//! An image record of the store as CRI's `Image` message.

use cria_image_store::Image;
use cria_proto::v1;

/// The CRI view of `image`: ID, names, size, and the user it runs as.
pub(super) fn cri_image(image: &Image) -> v1::Image {
    let user = image
        .config
        .config()
        .as_ref()
        .and_then(|c| c.user().clone())
        .unwrap_or_default();
    let (uid, username) = image_user(&user);
    v1::Image {
        id: image.id.clone(),
        repo_tags: image.repo_tags.clone(),
        repo_digests: image.repo_digests.clone(),
        size: image.size,
        uid: uid.map(|value| v1::Int64Value { value }),
        username,
        spec: Some(v1::ImageSpec {
            image: image.id.clone(),
            ..v1::ImageSpec::default()
        }),
        pinned: false,
    }
}

/// The image config's `User` (`user`, `uid`, `user:group`, `uid:gid`, …)
/// as CRI wants it: a numeric user becomes `uid`, a named one `username`;
/// the group part is not reported. kubelet reads these to enforce
/// `runAsNonRoot` before it creates a container.
fn image_user(user: &str) -> (Option<i64>, String) {
    let name = user.split_once(':').map_or(user, |(u, _)| u);
    if name.is_empty() {
        return (None, String::new());
    }
    match name.parse::<i64>() {
        Ok(uid) => (Some(uid), String::new()),
        Err(_) => (None, name.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::image_user;

    #[test]
    fn user_field_becomes_uid_or_username() {
        assert_eq!(image_user(""), (None, String::new()));
        assert_eq!(image_user("0"), (Some(0), String::new()));
        assert_eq!(image_user("1000:1000"), (Some(1000), String::new()));
        assert_eq!(image_user("nginx"), (None, "nginx".to_string()));
        assert_eq!(image_user("nobody:nogroup"), (None, "nobody".to_string()));
        assert_eq!(image_user(":100"), (None, String::new()));
    }
}
