//! Issue 2: where images come from — per-host mirrors with fallback to the
//! origin, and media types criad must refuse by name.

use cria_tests::client::pull;
use cria_tests::expect::{assert_nothing_left, assert_status, ok};
use cria_tests::host::free_port;
use cria_tests::{Criad, CriadConfig, Fixture, Registry};
use tonic::Code;

fn manifest_gets(reg: &Registry, repo: &str) -> usize {
    let needle = format!("\"GET /v2/{repo}/manifests/");
    reg.log().lines().filter(|l| l.contains(&needle)).count()
}

#[tokio::test]
async fn mirror_serves_an_unreachable_origin() {
    let mirror = Registry::start().expect("mirror");
    Fixture::get("busybox")
        .expect("fixture")
        .push(&mirror, "latest", "library/busybox:latest", &[])
        .expect("push");
    // The origin host does not exist (a closed port); only the mirror has it.
    let origin = format!("127.0.0.1:{}", free_port().expect("port"));
    let criad = Criad::start(CriadConfig {
        insecure: vec![origin.clone(), mirror.host()],
        mirrors: vec![(origin.clone(), vec![mirror.url()])],
        ..Default::default()
    })
    .await
    .expect("criad");
    let mut c = criad.images().await.expect("client");
    let name = format!("{origin}/library/busybox:latest");
    let id = ok(pull(&mut c, &name, None).await, &criad);
    assert_eq!(
        id,
        Fixture::get("busybox")
            .expect("fixture")
            .image_id("latest")
            .expect("id")
    );
    assert!(
        manifest_gets(&mirror, "library/busybox") >= 1,
        "fetched from the mirror"
    );
    // Listed under the name asked for, not the mirror's.
    let img = ok(
        cria_tests::client::image_status(&mut c, &name, false).await,
        &criad,
    )
    .image
    .expect("image");
    assert_eq!(img.repo_tags, vec![name]);
}

#[tokio::test]
async fn failing_mirrors_fall_back_to_the_origin() {
    let origin = Registry::start().expect("origin");
    let empty_mirror = Registry::start().expect("mirror without the image");
    Fixture::get("busybox")
        .expect("fixture")
        .push(&origin, "latest", "library/busybox:latest", &[])
        .expect("push");
    let dead = format!("http://127.0.0.1:{}", free_port().expect("port"));
    let criad = Criad::start(CriadConfig {
        insecure: vec![origin.host(), empty_mirror.host()],
        mirrors: vec![(origin.host(), vec![dead, empty_mirror.url()])],
        ..Default::default()
    })
    .await
    .expect("criad");
    let mut c = criad.images().await.expect("client");
    ok(
        pull(
            &mut c,
            &format!("{}/library/busybox:latest", origin.host()),
            None,
        )
        .await,
        &criad,
    );
    assert!(
        manifest_gets(&empty_mirror, "library/busybox") >= 1,
        "the mirror was tried first"
    );
    assert!(
        manifest_gets(&origin, "library/busybox") >= 1,
        "then the origin"
    );
}

#[tokio::test]
async fn unknown_layer_media_type_is_refused_by_name() {
    let reg = Registry::start().expect("registry");
    let layer = reg
        .put_blob("odd/image", b"not a layer at all")
        .expect("layer blob");
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": { "type": "layers", "diff_ids": [layer] },
        "config": {}
    })
    .to_string();
    let config_digest = reg
        .put_blob("odd/image", config.as_bytes())
        .expect("config blob");
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len() },
        "layers": [{ "mediaType": "application/vnd.cria.test.mystery", "digest": layer, "size": 18 }]
    })
    .to_string();
    reg.put_manifest(
        "odd/image",
        "latest",
        "application/vnd.oci.image.manifest.v1+json",
        manifest.as_bytes(),
    )
    .expect("manifest");
    let criad = Criad::start(CriadConfig {
        insecure: vec![reg.host()],
        ..Default::default()
    })
    .await
    .expect("criad");
    let mut c = criad.images().await.expect("client");
    let err = pull(&mut c, &format!("{}/odd/image:latest", reg.host()), None)
        .await
        .expect_err("unknown media type");
    assert_status(
        &err,
        &[Code::InvalidArgument],
        &["application/vnd.cria.test.mystery"],
    );
    assert_nothing_left(&criad, &[layer]).await;
}
