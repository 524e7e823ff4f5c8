//! Issue 2: a registry behind TLS (a CA made by the test, trusted through
//! certs.d) and htpasswd basic auth; credentials from CRI AuthConfig and from
//! a docker-style config.json.

use std::fs;

use base64::Engine as _;
use cria_proto::v1::AuthConfig;
use cria_tests::client::pull;
use cria_tests::expect::{assert_nothing_left, assert_status, ok};
use cria_tests::{Criad, CriadConfig, Fixture, Registry};
use tonic::Code;

const USER: &str = "alice";
const PASS: &str = "s3cret-pw";

/// A TLS + auth registry holding busybox, and its image name.
fn registry() -> (Registry, String) {
    let reg = Registry::start_tls_auth(USER, PASS).expect("registry");
    Fixture::get("busybox")
        .expect("fixture")
        .push(&reg, "latest", "private/busybox:latest", &[])
        .expect("push");
    let name = format!("{}/private/busybox:latest", reg.host());
    (reg, name)
}

/// Trusts the registry's CA for its host through `certs.d/<host>/ca.crt`.
fn trust(criad: &Criad, reg: &Registry) {
    let dir = criad.certs_dir().join(reg.host());
    fs::create_dir_all(&dir).expect("certs.d/<host>");
    fs::copy(reg.ca_cert().expect("ca"), dir.join("ca.crt")).expect("ca.crt");
}

fn user_pass(user: &str, pass: &str) -> AuthConfig {
    AuthConfig {
        username: user.into(),
        password: pass.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn auth_config_username_password_and_auth_field_pull() {
    let (reg, name) = registry();
    let criad = Criad::start(CriadConfig::default()).await.expect("criad");
    trust(&criad, &reg);
    let mut c = criad.images().await.expect("client");
    let id = ok(
        pull(&mut c, &name, Some(user_pass(USER, PASS))).await,
        &criad,
    );
    assert_eq!(
        id,
        Fixture::get("busybox")
            .expect("fixture")
            .image_id("latest")
            .expect("id")
    );

    // The same credentials as the base64 `auth` field, on a fresh store.
    let criad2 = Criad::start(CriadConfig::default()).await.expect("criad");
    trust(&criad2, &reg);
    let mut c2 = criad2.images().await.expect("client");
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASS}"));
    let cfg = AuthConfig {
        auth,
        ..Default::default()
    };
    assert_eq!(ok(pull(&mut c2, &name, Some(cfg)).await, &criad2), id);
}

#[tokio::test]
async fn wrong_or_missing_credentials_are_refused_naming_the_registry() {
    let (reg, name) = registry();
    let criad = Criad::start(CriadConfig::default()).await.expect("criad");
    trust(&criad, &reg);
    let mut c = criad.images().await.expect("client");
    let err = pull(&mut c, &name, Some(user_pass(USER, "wrong")))
        .await
        .expect_err("wrong password");
    assert_status(
        &err,
        &[Code::Unauthenticated, Code::PermissionDenied],
        &[&reg.host()],
    );
    let err = pull(&mut c, &name, None).await.expect_err("no credentials");
    assert_status(
        &err,
        &[Code::Unauthenticated, Code::PermissionDenied],
        &[&reg.host()],
    );
    assert_nothing_left(&criad, &[]).await;
}

#[tokio::test]
async fn docker_config_json_credentials_are_used() {
    let (reg, name) = registry();
    let dir = tempfile::tempdir().expect("tempdir");
    let auth_file = dir.path().join("config.json");
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASS}"));
    let json = serde_json::json!({ "auths": { reg.host(): { "auth": auth } } });
    fs::write(&auth_file, json.to_string()).expect("config.json");
    let criad = Criad::start(CriadConfig {
        auth_file: Some(auth_file),
        ..Default::default()
    })
    .await
    .expect("criad");
    trust(&criad, &reg);
    let mut c = criad.images().await.expect("client");
    ok(pull(&mut c, &name, None).await, &criad);
}

#[tokio::test]
async fn ca_from_certs_d_is_required_and_sufficient() {
    let (reg, name) = registry();
    let mut criad = Criad::start(CriadConfig::default()).await.expect("criad");
    let mut c = criad.images().await.expect("client");
    // Unknown CA: the TLS handshake fails, and the error names the registry.
    let err = pull(&mut c, &name, Some(user_pass(USER, PASS)))
        .await
        .expect_err("untrusted CA");
    assert_ne!(err.code(), Code::Ok);
    assert!(
        err.message().contains(&reg.host()),
        "message {:?} names the registry",
        err.message()
    );
    assert_nothing_left(&criad, &[]).await;
    // With the CA in certs.d/<host>/ (read at start-up: criad caches a client per host).
    trust(&criad, &reg);
    criad.restart().await.expect("restart");
    let mut c = criad.images().await.expect("client");
    ok(
        pull(&mut c, &name, Some(user_pass(USER, PASS))).await,
        &criad,
    );
}
