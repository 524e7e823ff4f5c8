//! Issue 2: ListImages filters, ImageStatus (incl. verbose), RemoveImage by
//! tag, id and digest (with blob and snapshot collection) and ImageFsInfo.

use cria_proto::v1::ImageFsInfoRequest;
use cria_tests::client::{image_status, list_images, pull, remove_image};
use cria_tests::expect::ok;
use cria_tests::store::{blob_digests, chain_ids, snapshot_entries};
use cria_tests::{Criad, Fixture};

#[tokio::test]
async fn list_images_filter_selects_by_name_and_id() {
    let (reg, criad) = Criad::with_registry().await.expect("registry and criad");
    let f = Fixture::get("shared").expect("fixture");
    let mut c = criad.images().await.expect("client");
    let mut ids = Vec::new();
    for n in ["one", "two"] {
        f.push(
            &reg,
            n,
            &format!("shared/{n}:latest"),
            &["--preserve-digests"],
        )
        .expect("push");
        ids.push(ok(
            pull(&mut c, &format!("{}/shared/{n}:latest", reg.host()), None).await,
            &criad,
        ));
    }
    assert_eq!(ok(list_images(&mut c, None).await, &criad).len(), 2);
    let one = ok(
        list_images(&mut c, Some(&format!("{}/shared/one:latest", reg.host()))).await,
        &criad,
    );
    assert_eq!(
        one.iter().map(|i| i.id.clone()).collect::<Vec<_>>(),
        vec![ids[0].clone()]
    );
    let by_id = ok(list_images(&mut c, Some(&ids[1])).await, &criad);
    assert_eq!(
        by_id.iter().map(|i| i.id.clone()).collect::<Vec<_>>(),
        vec![ids[1].clone()]
    );
    let none = ok(
        list_images(&mut c, Some(&format!("{}/shared/three:latest", reg.host()))).await,
        &criad,
    );
    assert!(none.is_empty(), "{none:?}");
}

#[tokio::test]
async fn image_status_reports_size_tags_and_verbose_config() {
    let (reg, criad) = Criad::with_registry().await.expect("registry and criad");
    let f = Fixture::get("busybox").expect("fixture");
    f.push(&reg, "latest", "library/busybox:latest", &[])
        .expect("push");
    let name = format!("{}/library/busybox:latest", reg.host());
    let mut c = criad.images().await.expect("client");

    let unknown = ok(image_status(&mut c, &name, false).await, &criad);
    assert!(
        unknown.image.is_none(),
        "an unknown image is an empty answer, not an error"
    );

    let id = ok(pull(&mut c, &name, None).await, &criad);
    let st = ok(image_status(&mut c, &name, true).await, &criad);
    let img = st.image.expect("known");
    assert_eq!(img.id, id);
    assert_eq!(img.repo_tags, vec![name.clone()]);
    assert!(img.size > 500_000, "size {} counts busybox", img.size);
    // The umoci config says User 0:0 → uid 0.
    assert_eq!(img.uid.map(|u| u.value), Some(0));
    // verbose: the image config as JSON, with the label umoci put in.
    let info = st
        .info
        .values()
        .find(|v| v.contains("org.cria.test"))
        .expect("verbose info holds the config");
    let json: serde_json::Value = serde_json::from_str(info).expect("verbose info is JSON");
    assert!(json.to_string().contains("busybox"), "{json}");
    // By id and by id prefix too.
    assert_eq!(
        ok(image_status(&mut c, &id, false).await, &criad)
            .image
            .map(|i| i.id),
        Some(id.clone())
    );
    let short = &id["sha256:".len().."sha256:".len() + 12];
    assert_eq!(
        ok(image_status(&mut c, short, false).await, &criad)
            .image
            .map(|i| i.id),
        Some(id.clone())
    );
}

#[tokio::test]
async fn remove_image_by_tag_then_digest_then_id_collects_blobs_and_snapshots() {
    let (reg, criad) = Criad::with_registry().await.expect("registry and criad");
    let f = Fixture::get("busybox").expect("fixture");
    f.push(&reg, "latest", "rm/busybox:a", &[]).expect("push");
    f.push(&reg, "latest", "rm/busybox:b", &[]).expect("push");
    let a = format!("{}/rm/busybox:a", reg.host());
    let b = format!("{}/rm/busybox:b", reg.host());
    let mut c = criad.images().await.expect("client");
    let id = ok(pull(&mut c, &a, None).await, &criad);
    assert_eq!(
        ok(pull(&mut c, &b, None).await, &criad),
        id,
        "two tags, one image"
    );
    let img = ok(image_status(&mut c, &id, false).await, &criad)
        .image
        .expect("image");
    assert_eq!(img.repo_tags.len(), 2, "{:?}", img.repo_tags);

    // A tag removes only that name.
    ok(remove_image(&mut c, &a).await, &criad);
    let img = ok(image_status(&mut c, &id, false).await, &criad)
        .image
        .expect("still there under b");
    assert_eq!(img.repo_tags, vec![b.clone()]);
    assert!(ok(image_status(&mut c, &a, false).await, &criad)
        .image
        .is_none());

    // A digest reference removes the image.
    let digest_ref = img.repo_digests.first().expect("a repo digest").clone();
    ok(remove_image(&mut c, &digest_ref).await, &criad);
    assert!(ok(list_images(&mut c, None).await, &criad).is_empty());
    assert!(
        blob_digests(&criad.root()).is_empty(),
        "blobs left: {:?}",
        blob_digests(&criad.root())
    );
    assert!(
        snapshot_entries(&criad.root()).is_empty(),
        "snapshots left: {:?}",
        snapshot_entries(&criad.root())
    );

    // By id, after pulling again; removing an unknown image is success (kubelet expects it).
    assert_eq!(ok(pull(&mut c, &a, None).await, &criad), id);
    let chain = chain_ids(&f.diff_ids("latest").expect("diff ids"));
    assert!(snapshot_entries(&criad.root())
        .contains(&chain[0].trim_start_matches("sha256:").to_owned()));
    ok(remove_image(&mut c, &id).await, &criad);
    assert!(ok(list_images(&mut c, None).await, &criad).is_empty());
    assert!(snapshot_entries(&criad.root()).is_empty());
    ok(remove_image(&mut c, &id).await, &criad);
    ok(
        remove_image(&mut c, &format!("{}/rm/never:pulled", reg.host())).await,
        &criad,
    );
}

#[tokio::test]
async fn image_fs_info_is_real_and_grows_after_a_pull() {
    let (reg, criad) = Criad::with_registry().await.expect("registry and criad");
    let f = Fixture::get("busybox").expect("fixture");
    f.push(&reg, "latest", "library/busybox:latest", &[])
        .expect("push");
    let mut c = criad.images().await.expect("client");
    let usage = |r: cria_proto::v1::ImageFsInfoResponse| {
        let fs = r
            .image_filesystems
            .first()
            .cloned()
            .expect("an image filesystem");
        assert!(
            !fs.fs_id
                .as_ref()
                .map(|i| i.mountpoint.clone())
                .unwrap_or_default()
                .is_empty(),
            "mountpoint set"
        );
        assert!(fs.timestamp > 0);
        (
            fs.used_bytes.map(|v| v.value).unwrap_or(0),
            fs.inodes_used.map(|v| v.value).unwrap_or(0),
        )
    };
    let (b0, i0) = usage(ok(c.image_fs_info(ImageFsInfoRequest {}).await, &criad).into_inner());
    ok(
        pull(
            &mut c,
            &format!("{}/library/busybox:latest", reg.host()),
            None,
        )
        .await,
        &criad,
    );
    let (b1, i1) = usage(ok(c.image_fs_info(ImageFsInfoRequest {}).await, &criad).into_inner());
    assert!(b1 > 0 && i1 > 0, "non-zero usage: {b1} bytes {i1} inodes");
    // busybox is ~2 MB compressed + ~2 MB unpacked, and ~270 applet symlinks.
    assert!(b1 >= b0 + 2_000_000, "bytes grew from {b0} to {b1}");
    assert!(i1 >= i0 + 200, "inodes grew from {i0} to {i1}");
}
