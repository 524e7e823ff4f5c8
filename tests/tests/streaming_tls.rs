//! Issue 7: the streaming server's configuration through criad — TLS with a
//! certificate made by openssl at test time (tokio-tungstenite over a
//! rustls client stream that trusts only that certificate), and
//! `token_ttl_seconds`.

mod streaming_common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use cria_tests::CriadConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use streaming_common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::WebSocketStream;

const LIMIT: Duration = Duration::from_secs(60);

/// A self-signed certificate for 127.0.0.1 and its key, written to `dir`.
fn self_signed(dir: &Path) -> Result<()> {
    let out = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec"])
        .args([
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
        ])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            // A leaf, not a CA: webpki refuses a CA certificate as the server's.
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-addext",
            "extendedKeyUsage=serverAuth",
        ])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .output()
        .context("run openssl")?;
    if !out.status.success() {
        bail!("openssl req: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// A self-signed certificate in a temp dir (kept alive by the returned
/// dir), its PEM path, and a criad config serving streaming over TLS with it.
fn tls_criad() -> (tempfile::TempDir, PathBuf, CriadConfig) {
    let certs = tempfile::tempdir().expect("temp dir");
    self_signed(certs.path()).expect("certificate");
    let cert = certs.path().join("cert.pem");
    let config = CriadConfig {
        extra_toml: format!(
            "[streaming]\ntls_cert_file = {:?}\ntls_key_file = {:?}\n",
            cert.to_string_lossy(),
            certs.path().join("key.pem").to_string_lossy()
        ),
        ..CriadConfig::default()
    };
    (certs, cert, config)
}

/// A rustls client that trusts only the certificate in `cert`.
fn connector(cert: &Path) -> Result<tokio_rustls::TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(cert)? {
        roots.add(c?)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// `host:port` of an `https://` URL.
fn https_host(url: &str) -> Result<String> {
    let rest = url
        .strip_prefix("https://")
        .with_context(|| format!("not an https URL: {url}"))?;
    Ok(rest[..rest.find('/').unwrap_or(rest.len())].to_string())
}

/// Opens `url` (https → wss) over TLS offering `protocol`.
async fn wss_connect(
    url: &str,
    cert: &Path,
    protocol: &str,
) -> Result<WebSocketStream<TlsStream<TcpStream>>> {
    let host = https_host(url)?;
    let tcp = TcpStream::connect(&host).await?;
    let name = ServerName::try_from("127.0.0.1")?;
    let tls = connector(cert)?.connect(name, tcp).await?;
    let mut req = url
        .replacen("https://", "wss://", 1)
        .into_client_request()?;
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", protocol.parse()?);
    let (ws, _) = tokio_tungstenite::client_async(req, tls).await?;
    Ok(ws)
}

#[tokio::test]
async fn tls_exec_over_wss_with_a_trusted_self_signed_certificate() {
    let (_certs, cert, config) = tls_criad();
    let mut p = Pod::start_with("tls-exec", &["sleep", "3600"], config)
        .await
        .expect("pod");

    let url = p
        .exec_url(&["sh", "-c", "echo over-tls; exit 5"], false, false)
        .await
        .expect("url");
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let mut ws = wss_connect(&url, &cert, "v5.channel.k8s.io")
        .await
        .expect("wss connect");
    let o = ws_collect(&mut ws, false, LIMIT).await.expect("collect");
    assert_eq!(o.stdout, b"over-tls\n");
    assert_eq!(o.exit_code().expect("status"), 5, "{o:?}");

    // Plain HTTP to the TLS port gets no HTTP answer (the token stays unused).
    let url = p.exec_url(&["true"], false, false).await.expect("url");
    let host = https_host(&url).expect("host");
    let path = &url[url.find(&host).expect("host in url") + host.len()..];
    let mut tcp = TcpStream::connect(&host).await.expect("tcp");
    tcp.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .expect("write request");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(15), tcp.read_to_end(&mut answer))
        .await
        .expect("the server ends a plain connection in time");
    assert!(
        read.is_err() || !answer.starts_with(b"HTTP/"),
        "plain HTTP was answered: {:?}",
        String::from_utf8_lossy(&answer)
    );
    // ... and the same URL still works over TLS afterwards.
    let mut ws = wss_connect(&url, &cert, "v4.channel.k8s.io")
        .await
        .expect("wss connect after the plain attempt");
    let o = ws_collect(&mut ws, false, LIMIT).await.expect("collect");
    assert_eq!(o.exit_code().expect("status"), 0, "{o:?}");

    p.remove().await.expect("remove");
}

#[tokio::test]
async fn a_url_used_after_its_token_ttl_is_refused() {
    let config = CriadConfig {
        extra_toml: "[streaming]\ntoken_ttl_seconds = 1\n".to_string(),
        ..CriadConfig::default()
    };
    let mut p = Pod::start_with("ttl", &["sleep", "3600"], config)
        .await
        .expect("pod");
    let early = p
        .exec_url(&["sh", "-c", "exit 4"], false, false)
        .await
        .expect("url");
    let late = p
        .exec_url(&["sh", "-c", "exit 4"], false, false)
        .await
        .expect("url");

    let (mut ws, _) = ws_connect(&early, "v5.channel.k8s.io")
        .await
        .expect("a fresh URL works");
    let o = ws_collect(&mut ws, false, LIMIT).await.expect("collect");
    assert_eq!(o.exit_code().expect("status"), 4, "{o:?}");

    tokio::time::sleep(Duration::from_secs(2)).await;
    let err = ws_connect(&late, "v5.channel.k8s.io")
        .await
        .expect_err("an expired URL is refused");
    match err.downcast_ref::<tokio_tungstenite::tungstenite::Error>() {
        Some(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 404, "{resp:?}")
        }
        other => panic!("expected an HTTP 404, got {other:?} ({err})"),
    }

    p.remove().await.expect("remove");
}

/// Runs the built `cria` CLI against `p`'s criad with `stdin`; returns its
/// exit status, stdout and stderr.
async fn cria_cli(p: &Pod, args: &[&str], stdin: &[u8]) -> Result<(i32, String, String)> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let bin = cria_tests::host::profile_dir()?.join("cria");
    if !bin.exists() {
        bail!(
            "{} not found: build it first (cargo build -p cria-cli)",
            bin.display()
        );
    }
    let mut cmd = Command::new(bin);
    cmd.arg("--endpoint")
        .arg(format!("unix://{}", p.env.criad.socket().display()))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let stdin = stdin.to_vec();
    let run = tokio::task::spawn_blocking(move || {
        let mut child = cmd.spawn()?;
        child.stdin.take().context("stdin")?.write_all(&stdin)?;
        let out = child.wait_with_output()?;
        Ok::<_, anyhow::Error>((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    });
    tokio::time::timeout(LIMIT, run)
        .await
        .context("cria did not finish in time")??
}

/// `cria exec -i` reaches a TLS streaming server: trusting the certificate
/// given with `--streaming-ca`, and refusing it (self-signed, not among the
/// system's roots) without.
#[tokio::test]
async fn the_cria_cli_execs_over_tls_trusting_its_streaming_ca() {
    let (_certs, cert, config) = tls_criad();
    let p = Pod::start_with("tls-cli", &["sleep", "3600"], config)
        .await
        .expect("pod");
    let ca = cert.to_string_lossy().into_owned();
    let ctr = p.ctr.clone();
    let (code, out, err) = cria_cli(
        &p,
        &[
            "--streaming-ca",
            &ca,
            "exec",
            "-i",
            &ctr,
            "sh",
            "-c",
            "cat; exit 3",
        ],
        b"typed over tls\n",
    )
    .await
    .expect("cria");
    assert_eq!(
        (code, out.as_str()),
        (3, "typed over tls\n"),
        "stderr: {err}"
    );

    let (code, _, err) = cria_cli(&p, &["exec", "-i", &ctr, "true"], b"")
        .await
        .expect("cria");
    assert_ne!(code, 0);
    assert!(err.contains("tls") && err.contains("certificate"), "{err}");
    p.remove().await.expect("remove");
}
