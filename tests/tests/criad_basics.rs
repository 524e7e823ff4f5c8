//! criad as a daemon, seen from outside: socket mode, Version, Status, and
//! start-up refusing a config with an unknown key.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use cria_proto::v1::{StatusRequest, VersionRequest};
use cria_tests::criad::criad_binary;
use cria_tests::expect::ok;
use cria_tests::{Criad, CriadConfig};

#[tokio::test]
async fn socket_is_0600_and_version_and_status_answer() {
    let criad = Criad::start(CriadConfig::default()).await.expect("criad");
    let mode = std::fs::metadata(criad.socket())
        .expect("socket")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let mut rt = criad.runtime().await.expect("client");
    let v = ok(
        rt.version(VersionRequest {
            version: "v1".into(),
        })
        .await,
        &criad,
    )
    .into_inner();
    assert_eq!(v.runtime_name, "cria");
    assert_eq!(v.runtime_api_version, "v1");
    assert!(!v.runtime_version.is_empty());
    let st = ok(rt.status(StatusRequest { verbose: false }).await, &criad).into_inner();
    let conds = st.status.expect("status").conditions;
    let cond = |t: &str| {
        conds
            .iter()
            .find(|c| c.r#type == t)
            .cloned()
            .unwrap_or_else(|| panic!("no {t} in {conds:?}"))
    };
    assert!(cond("RuntimeReady").status);
    // No CNI config in the instance's (empty) conf dir: network honestly not ready.
    let net = cond("NetworkReady");
    assert!(!net.status, "{net:?}");
    assert!(!net.reason.is_empty() && !net.message.is_empty(), "{net:?}");
}

#[test]
fn unknown_config_key_fails_start_naming_key_and_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, "[registry]\nno_such_key = 1\n").expect("config");
    let out = Command::new(criad_binary().expect("criad built"))
        .arg("--config")
        .arg(&cfg)
        .arg("--root")
        .arg(dir.path().join("root"))
        .arg("--state")
        .arg(dir.path().join("state"))
        .arg("--socket")
        .arg(dir.path().join("cria.sock"))
        .output()
        .expect("criad runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no_such_key") && err.contains(&*cfg.to_string_lossy()),
        "stderr: {err}"
    );
    assert!(!dir.path().join("cria.sock").exists());
}
