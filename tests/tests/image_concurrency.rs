//! Issue 2: concurrent pulls store and download each blob once; image
//! metadata survives a restart and a SIGKILL mid-pull never lists a half image.

use std::fs;
use std::time::Duration;

use cria_tests::client::{list_images, pull};
use cria_tests::expect::ok;
use cria_tests::host::wait_until;
use cria_tests::store::{blob_digests, chain_ids, ingest_entries, snapshot_entries};
use cria_tests::{Criad, CriadConfig, Fixture, Registry, ThrottledProxy};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_pulls_of_one_image_both_succeed_and_download_once() {
    let (reg, criad) = Criad::with_registry().await.expect("registry and criad");
    let f = Fixture::get("busybox").expect("fixture");
    f.push(&reg, "latest", "library/busybox:latest", &[])
        .expect("push");
    let name = format!("{}/library/busybox:latest", reg.host());
    let (mut c1, mut c2) = (
        criad.images().await.expect("client"),
        criad.images().await.expect("client"),
    );
    let (r1, r2) = tokio::join!(pull(&mut c1, &name, None), pull(&mut c2, &name, None));
    let (id1, id2) = (ok(r1, &criad), ok(r2, &criad));
    assert_eq!(id1, id2);
    for layer in f.layer_digests("latest").expect("layers") {
        assert_eq!(reg.blob_gets(&layer), 1, "layer {layer} fetched once");
        assert!(blob_digests(&criad.root()).contains(&layer));
    }
    assert!(ingest_entries(&criad.root()).is_empty());
    assert_eq!(ok(list_images(&mut c1, None).await, &criad).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_pulls_of_images_sharing_a_layer_store_it_once() {
    let (reg, criad) = Criad::with_registry().await.expect("registry and criad");
    let f = Fixture::get("shared").expect("fixture");
    for n in ["one", "two"] {
        f.push(
            &reg,
            n,
            &format!("shared/{n}:latest"),
            &["--preserve-digests"],
        )
        .expect("push");
    }
    let (a, b) = (
        format!("{}/shared/one:latest", reg.host()),
        format!("{}/shared/two:latest", reg.host()),
    );
    let (mut c1, mut c2) = (
        criad.images().await.expect("client"),
        criad.images().await.expect("client"),
    );
    let (r1, r2) = tokio::join!(pull(&mut c1, &a, None), pull(&mut c2, &b, None));
    assert_eq!(ok(r1, &criad), f.image_id("one").expect("id"));
    assert_eq!(ok(r2, &criad), f.image_id("two").expect("id"));
    let base = f.layer_digests("one").expect("layers").remove(0);
    assert_eq!(
        base,
        f.layer_digests("two").expect("layers")[0],
        "fixture shares its base"
    );
    assert_eq!(reg.blob_gets(&base), 1, "shared base layer downloaded once");
    // Snapshots: one shared base + one per image.
    let mut want: Vec<String> = ["one", "two"]
        .iter()
        .flat_map(|n| chain_ids(&f.diff_ids(n).expect("diff ids")))
        .map(|c| c.trim_start_matches("sha256:").to_owned())
        .collect();
    want.sort();
    want.dedup();
    assert_eq!(want.len(), 3);
    assert_eq!(snapshot_entries(&criad.root()), want);
    assert!(ingest_entries(&criad.root()).is_empty());
}

#[tokio::test]
async fn images_survive_graceful_restart_and_sigkill() {
    let (reg, mut criad) = Criad::with_registry().await.expect("registry and criad");
    let f = Fixture::get("busybox").expect("fixture");
    f.push(&reg, "latest", "library/busybox:latest", &[])
        .expect("push");
    let name = format!("{}/library/busybox:latest", reg.host());
    let mut c = criad.images().await.expect("client");
    let id = ok(pull(&mut c, &name, None).await, &criad);

    drop(c); // close our connection; the shutdown must not depend on it, but be tidy
    assert!(
        criad.stop().await.expect("stop"),
        "criad exits on SIGTERM in time"
    );
    assert!(
        !criad.socket().exists(),
        "a graceful shutdown removes the socket"
    );
    criad.restart().await.expect("restart");
    let mut c = criad.images().await.expect("client");
    let images = ok(list_images(&mut c, None).await, &criad);
    assert_eq!(
        images
            .iter()
            .map(|i| (i.id.clone(), i.repo_tags.clone()))
            .collect::<Vec<_>>(),
        vec![(id.clone(), vec![name.clone()])]
    );

    criad.kill().expect("kill");
    criad
        .restart()
        .await
        .expect("restart after SIGKILL (stale socket replaced)");
    let mut c = criad.images().await.expect("client");
    assert_eq!(ok(list_images(&mut c, None).await, &criad).len(), 1);
    // Still usable without a download.
    let layer = f.layer_digests("latest").expect("layers").remove(0);
    assert_eq!(ok(pull(&mut c, &name, None).await, &criad), id);
    assert_eq!(reg.blob_gets(&layer), 1);
}

#[tokio::test]
async fn sigkill_mid_pull_lists_nothing_and_the_next_pull_completes() {
    let reg = Registry::start().expect("registry");
    let f = Fixture::get("big").expect("fixture");
    f.push(&reg, "big", "big/random:latest", &["--preserve-digests"])
        .expect("push");
    // 4 MB/s: the ~50 MB layer takes ~12 s to stream, so a SIGKILL lands mid-layer.
    let proxy = ThrottledProxy::start(reg.port(), 4_000_000).expect("proxy");
    let mut criad = Criad::start(CriadConfig {
        insecure: vec![reg.host(), proxy.host()],
        ..Default::default()
    })
    .await
    .expect("criad");
    let name = format!("{}/big/random:latest", proxy.host());
    let big_layer = f.layer_digests("big").expect("layers").remove(1);

    let mut c = criad.images().await.expect("client");
    let pulling = {
        let name = name.clone();
        tokio::spawn(async move { pull(&mut c, &name, None).await })
    };
    // Wait (bounded) until a few MB of the big layer are in the ingest dir.
    let ingest = criad.root().join("content/ingest");
    let streaming = wait_until(Duration::from_secs(60), Duration::from_millis(20), || {
        let total: u64 = fs::read_dir(&ingest)
            .ok()?
            .filter_map(|e| e.ok()?.metadata().ok())
            .map(|m| m.len())
            .sum();
        (total > 4_000_000).then_some(())
    })
    .await;
    if streaming.is_none() {
        let done = pulling.is_finished();
        let r = if done { Some(pulling.await) } else { None };
        panic!(
            "the big layer never streamed into {} (pull finished: {done}, result {r:?}); registry log:\n{}\ncriad log:\n{}",
            ingest.display(),
            reg.log(),
            criad.log()
        );
    }
    criad.kill().expect("SIGKILL criad mid-pull");
    let r = pulling.await.expect("pull task");
    assert!(r.is_err(), "the interrupted pull cannot have succeeded");

    criad.restart().await.expect("restart");
    let mut c = criad.images().await.expect("client");
    assert!(
        ok(list_images(&mut c, None).await, &criad).is_empty(),
        "no half image listed"
    );
    assert!(
        !blob_digests(&criad.root()).contains(&big_layer),
        "the partial layer is not a blob"
    );
    assert!(
        !snapshot_entries(&criad.root())
            .iter()
            .any(|s| s.starts_with(".tmp")),
        "no temp snapshot after start-up"
    );

    proxy.set_rate(0);
    let id = ok(pull(&mut c, &name, None).await, &criad);
    assert_eq!(id, f.image_id("big").expect("id"));
    assert!(blob_digests(&criad.root()).contains(&big_layer));
    assert!(
        ingest_entries(&criad.root()).is_empty(),
        "stale ingest files cleaned up"
    );
    assert_eq!(ok(list_images(&mut c, None).await, &criad).len(), 1);
}
