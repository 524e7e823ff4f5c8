//! Issue 2: pulls that must fail — corrupted blob, missing tag, bad
//! reference, hostile layers — each with the right gRPC code and message,
//! and nothing left in the store.

use std::fs;
use std::path::Path;

use cria_tests::client::pull;
use cria_tests::expect::{assert_nothing_left, assert_status, ok};
use cria_tests::store::{sha256_digest, snapshot_entries};
use cria_tests::{Criad, Fixture};
use tonic::Code;

#[tokio::test]
async fn corrupted_blob_fails_naming_both_digests_and_keeps_nothing() {
    let (reg, criad) = Criad::with_registry().await.expect("registry and criad");
    // An uncompressed layer: flipping a byte inside busybox's content keeps the
    // tar readable, so only the digest check can catch it.
    let f = Fixture::get("compression").expect("fixture");
    f.push(&reg, "none", "bad/busybox:latest", &["--preserve-digests"])
        .expect("push");
    let layer = f.layer_digests("none").expect("layers").remove(0);
    let data = reg.blob_data_path(&layer);
    let original = fs::read(&data).expect("registry blob");
    let mut bad = original.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    fs::write(&data, &bad).expect("corrupt the registry's copy");
    let actual = sha256_digest(&bad);

    let mut c = criad.images().await.expect("client");
    let name = format!("{}/bad/busybox:latest", reg.host());
    let err = pull(&mut c, &name, None)
        .await
        .expect_err("a corrupted blob must fail the pull");
    assert_status(&err, &[Code::DataLoss, Code::Internal], &[&layer, &actual]);
    assert_nothing_left(&criad, std::slice::from_ref(&layer)).await;

    // Repaired, the same pull succeeds: nothing poisoned was kept.
    fs::write(&data, &original).expect("repair");
    assert_eq!(
        ok(pull(&mut c, &name, None).await, &criad),
        f.image_id("none").expect("id")
    );
}

#[tokio::test]
async fn missing_tag_and_repository_are_not_found_naming_the_reference() {
    let (reg, criad) = Criad::with_registry().await.expect("registry and criad");
    Fixture::get("busybox")
        .expect("fixture")
        .push(&reg, "latest", "library/busybox:latest", &[])
        .expect("push");
    let mut c = criad.images().await.expect("client");
    for name in [
        format!("{}/library/busybox:nope", reg.host()),
        format!("{}/no/such:latest", reg.host()),
    ] {
        let err = pull(&mut c, &name, None).await.expect_err("missing image");
        assert_status(&err, &[Code::NotFound], &[&name]);
    }
    assert_nothing_left(&criad, &[]).await;
}

#[tokio::test]
async fn invalid_reference_is_invalid_argument() {
    let (_reg, criad) = Criad::with_registry().await.expect("registry and criad");
    let mut c = criad.images().await.expect("client");
    for name in ["UPPER/case:latest", "busybox:bad tag", ""] {
        let err = pull(&mut c, name, None)
            .await
            .expect_err("invalid reference");
        assert_status(&err, &[Code::InvalidArgument], &[]);
        assert!(
            name.is_empty() || err.message().contains(name),
            "message {:?} names {name:?}",
            err.message()
        );
    }
    assert_nothing_left(&criad, &[]).await;
}

#[tokio::test]
async fn unreachable_registry_is_unavailable_naming_the_host() {
    let (_reg, criad) = Criad::with_registry().await.expect("registry and criad");
    let port = cria_tests::host::free_port().expect("port");
    let mut c = criad.images().await.expect("client");
    let name = format!("127.0.0.1:{port}/x/y:latest");
    let err = pull(&mut c, &name, None)
        .await
        .expect_err("nothing listens there");
    assert_status(&err, &[Code::Unavailable], &[&format!("127.0.0.1:{port}")]);
    assert_nothing_left(&criad, &[]).await;
}

/// Files a hostile layer tries to create outside its snapshot.
const CANARIES: &[&str] = &[
    "/tmp/cria-hostile-absolute-canary",
    "/tmp/cria-hostile-symlink-canary",
    "/tmp/cria-hostile-parent-canary",
];

#[tokio::test]
async fn hostile_layers_fail_and_write_nothing_outside() {
    let (reg, criad) = Criad::with_registry().await.expect("registry and criad");
    for c in CANARIES {
        let _ = fs::remove_file(c);
    }
    let f = Fixture::get("hostile").expect("fixture");
    let cases = [
        ("dotdot", "cria-hostile-dotdot-canary"),
        ("absolute", "cria-hostile-absolute-canary"),
        ("symlink-escape", "cria-hostile-symlink-canary"),
        ("symlink-parent", "cria-hostile-parent-canary"),
        ("hardlink-escape", "passwd"),
    ];
    let mut c = criad.images().await.expect("client");
    for (reference, needle) in cases {
        f.push(
            &reg,
            reference,
            &format!("hostile/{reference}:latest"),
            &["--preserve-digests"],
        )
        .expect("push");
        let name = format!("{}/hostile/{reference}:latest", reg.host());
        let err = pull(&mut c, &name, None)
            .await
            .expect_err("hostile layer must fail");
        // The message names the offending entry; the code is not Ok/Unknown.
        assert_ne!(err.code(), Code::Unknown, "{reference}: {}", err.message());
        assert_ne!(
            err.code(),
            Code::Unimplemented,
            "{reference}: {}",
            err.message()
        );
        assert!(
            err.message().contains(needle),
            "{reference}: message {:?} does not name {needle:?}",
            err.message()
        );
        let layer = f.layer_digests(reference).expect("layers").remove(0);
        assert_nothing_left(&criad, &[layer]).await;
    }
    for c in CANARIES {
        assert!(
            !Path::new(c).exists(),
            "{c} was written outside the snapshot"
        );
    }
    let outside = criad.root().join("cria-hostile-dotdot-canary");
    assert!(
        !outside.exists(),
        "dotdot entry escaped to {}",
        outside.display()
    );
    assert!(snapshot_entries(&criad.root()).is_empty());
}
