//! The bearer-token challenge flow against a real registry configured with
//! `auth: token:` and a small token server started by the test.

mod common;

use std::fs;
use std::sync::Arc;

use common::{Layout, Registry, RegistryOpts, TarUnpacker, TokenServer};
use cria_image_store::{Credentials, ImageError, ImageStore, ImageStoreConfig};

#[tokio::test(flavor = "multi_thread")]
async fn bearer_tokens_from_basic_auth_and_identity_tokens() {
    let tokens = TokenServer::start("bob", "pa55", "refresh-abc");
    let reg = Registry::start_with(RegistryOpts {
        auth_block: Some(tokens.registry_auth()),
        ..Default::default()
    });
    let layout = Layout::one_file("token", "behind a token\n", "t");
    reg.push(
        layout.path(),
        "t",
        "team/app:1",
        &["--dest-creds", "bob:pa55"],
    );
    let reference = format!("{}/team/app:1", reg.host());

    let root = tempfile::tempdir().unwrap();
    let unpacker = Arc::new(TarUnpacker::new());
    let store = ImageStore::open(ImageStoreConfig::new(root.path()), unpacker.clone()).unwrap();

    // Anonymous: the token server hands out a token without access; the
    // registry refuses it.
    let err = store.pull(&reference, None, None).await.unwrap_err();
    assert!(matches!(err, ImageError::Unauthorized { .. }), "{err:?}");
    assert!(err.to_string().contains(&reg.host()), "{err}");
    assert!(!err.to_string().contains("token server"), "{err}");
    // Wrong password: the token server refuses.
    let wrong = Credentials {
        username: "bob".into(),
        password: "nope".into(),
        ..Default::default()
    };
    let err = store
        .pull(&reference, Some(&wrong), None)
        .await
        .unwrap_err();
    assert!(matches!(err, ImageError::Unauthorized { .. }), "{err:?}");
    assert!(err.to_string().contains("token server"), "{err}");

    // Right password: one token serves every request of the pull (cached per scope).
    let before = tokens.count();
    let creds = Credentials {
        username: "bob".into(),
        password: "pa55".into(),
        ..Default::default()
    };
    let img = store.pull(&reference, Some(&creds), None).await.unwrap();
    assert_eq!(tokens.count() - before, 1);
    let text = fs::read_to_string(unpacker.dir(&img.chain_ids[0]).join("etc/token")).unwrap();
    assert_eq!(text, "behind a token\n");
    drop(store);

    // An identity (refresh) token, in a fresh store: POSTed for an access token.
    let root2 = tempfile::tempdir().unwrap();
    let store = ImageStore::open(ImageStoreConfig::new(root2.path()), unpacker.clone()).unwrap();
    let identity = Credentials {
        identity_token: "refresh-abc".into(),
        ..Default::default()
    };
    store.pull(&reference, Some(&identity), None).await.unwrap();
    let bad_identity = Credentials {
        identity_token: "stale".into(),
        ..Default::default()
    };
    let root3 = tempfile::tempdir().unwrap();
    let store = ImageStore::open(ImageStoreConfig::new(root3.path()), unpacker.clone()).unwrap();
    let err = store
        .pull(&reference, Some(&bad_identity), None)
        .await
        .unwrap_err();
    assert!(matches!(err, ImageError::Unauthorized { .. }), "{err:?}");
    assert!(store.list().unwrap().is_empty());
}
