//! Assertions the end-to-end tests share: gRPC errors (code and message)
//! and an image store with nothing left behind.

use tonic::{Code, Status};

use crate::client::list_images;
use crate::criad::Criad;
use crate::store::{blob_digests, ingest_entries, snapshot_entries};

/// Asserts `err` has one of `codes` and a message containing every needle
/// (case-insensitive).
#[track_caller]
pub fn assert_status(err: &Status, codes: &[Code], needles: &[&str]) {
    assert!(
        codes.contains(&err.code()),
        "expected a status in {codes:?}, got {:?}: {}",
        err.code(),
        err.message()
    );
    let msg = err.message().to_lowercase();
    for n in needles {
        assert!(
            msg.contains(&n.to_lowercase()),
            "message {:?} does not mention {n:?}",
            err.message()
        );
    }
}

/// Unwraps a CRI call's result, printing the status (and criad's log tail) on error.
#[track_caller]
pub fn ok<T>(r: Result<T, Status>, criad: &Criad) -> T {
    match r {
        Ok(v) => v,
        Err(e) => {
            let log = criad.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            panic!(
                "CRI call failed: {:?}: {}\ncriad log tail:\n{}",
                e.code(),
                e.message(),
                tail.join("\n")
            )
        }
    }
}

/// Asserts a failed pull left nothing: no image listed, no ingest file, no
/// snapshot dir (committed or temporary), and none of `blobs` stored.
pub async fn assert_nothing_left(criad: &Criad, blobs: &[String]) {
    let mut c = criad.images().await.expect("image client");
    let images = list_images(&mut c, None).await.expect("ListImages");
    assert!(
        images.is_empty(),
        "images listed after a failed pull: {images:?}"
    );
    let root = criad.root();
    assert_eq!(
        ingest_entries(&root),
        Vec::<String>::new(),
        "ingest files left"
    );
    assert_eq!(
        snapshot_entries(&root),
        Vec::<String>::new(),
        "snapshot dirs left"
    );
    let stored = blob_digests(&root);
    for b in blobs {
        assert!(!stored.contains(b), "blob {b} kept after a failed pull");
    }
}
