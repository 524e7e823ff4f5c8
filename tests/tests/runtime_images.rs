//! Issues 2 and 3 together: removing the image of a live container never
//! breaks that container, and its snapshots go only when nothing uses them.

use cria_tests::client::{list_images, remove_image};
use cria_tests::expect::ok;
use cria_tests::pod::{remove_container, remove_pod, sh, PodEnv};
use cria_tests::store::{chain_ids, snapshot_fs};
use cria_tests::Fixture;

#[tokio::test]
async fn removing_an_image_in_use_never_breaks_its_container() {
    let env = PodEnv::start().await.expect("env");
    let mut rt = env.rt().await.expect("client");
    let mut images = env.criad.images().await.expect("client");
    let pod = env.pod_config("inuse").expect("pod config");
    let (pod_id, c) = ok(
        env.run_pod_and_start(
            &mut rt,
            &pod,
            &env.container_config("c", &["sleep", "3600"]),
        )
        .await,
        &env.criad,
    );
    let chains = chain_ids(
        &Fixture::get("busybox")
            .expect("fixture")
            .diff_ids("latest")
            .expect("diff ids"),
    );

    // Refused or deferred, either way the container keeps its rootfs.
    let _ = remove_image(&mut images, &env.image_id).await;
    assert_eq!(
        sh(&mut rt, &c, "echo alive; ls /bin/busybox")
            .await
            .expect("exec"),
        "alive\n/bin/busybox\n"
    );
    for ch in &chains {
        assert!(
            snapshot_fs(&env.criad.root(), ch).is_dir(),
            "snapshot {ch} kept while a container uses it"
        );
    }
    ok(remove_container(&mut rt, &c, 1).await, &env.criad);
    ok(remove_pod(&mut rt, &pod_id).await, &env.criad);

    // With no user left, removing the image (again) collects its snapshots.
    ok(remove_image(&mut images, &env.image_id).await, &env.criad);
    assert!(ok(list_images(&mut images, None).await, &env.criad).is_empty());
    for ch in &chains {
        assert!(
            !snapshot_fs(&env.criad.root(), ch).exists(),
            "snapshot {ch} collected"
        );
    }
}
