//! Issue 7: attach — two clients at once on a container's stdio through
//! the monitor's attach socket, while the CRI log keeps being written; and
//! critest's attach sequence over SPDY with `stdin_once`.

mod streaming_common;

use std::time::Duration;

use cria_proto::v1;
use cria_tests::pod::{log_path, remove_pod, status, wait_state, PodEnv, EXITED, RUNNING};
use futures::StreamExt;
use streaming_common::*;

const LIMIT: Duration = Duration::from_secs(30);

/// Reads stdout messages until `needle` shows up (bounded).
async fn wait_stdout(ws: &mut Ws, needle: &str) -> String {
    let mut seen = String::new();
    tokio::time::timeout(LIMIT, async {
        while !seen.contains(needle) {
            let msg = ws.next().await.expect("open").expect("message");
            if let Some((1, d)) = ws_decode(&msg) {
                seen.push_str(&String::from_utf8_lossy(&d));
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{needle:?} not seen; got {seen:?}"));
    seen
}

#[tokio::test]
async fn two_attach_clients_share_the_container_stdio() {
    let env = PodEnv::start().await.expect("env");
    let mut rt = env.rt().await.expect("client");
    let pod = env.pod_config("attach").expect("pod config");
    let pod_id = env.run_pod(&mut rt, &pod).await.expect("pod");
    let mut cfg = env.container_config(
        "main",
        &[
            "sh",
            "-c",
            "while read l; do [ \"$l\" = quit ] && exit 4; echo \"got:$l\"; done",
        ],
    );
    cfg.stdin = true;
    let ctr = env
        .create_start(&mut rt, &pod_id, &pod, &cfg)
        .await
        .expect("container");
    let mut clients = Vec::new();
    for _ in 0..2 {
        let url = rt
            .attach(v1::AttachRequest {
                container_id: ctr.clone(),
                stdin: true,
                tty: false,
                stdout: true,
                stderr: true,
            })
            .await
            .expect("Attach")
            .into_inner()
            .url;
        let (ws, _) = ws_connect(&url, "v5.channel.k8s.io")
            .await
            .expect("connect");
        clients.push(ws);
    }
    // Both attached: input from either reaches the container, output both.
    // (The monitor registers a client when it polls; retry the first line.)
    let (a, b) = clients.split_at_mut(1);
    let (a, b) = (&mut a[0], &mut b[0]);
    let mut seen_a = String::new();
    for i in 0..50 {
        ws_send(a, ws_msg(false, 0, format!("hello{i}\n").as_bytes()))
            .await
            .expect("stdin");
        if let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_millis(200), a.next()).await {
            if let Some((1, d)) = ws_decode(&m) {
                seen_a.push_str(&String::from_utf8_lossy(&d));
                break;
            }
        }
    }
    assert!(seen_a.contains("got:hello"), "client a: {seen_a:?}");
    ws_send(b, ws_msg(false, 0, b"from-b\n"))
        .await
        .expect("stdin b");
    wait_stdout(a, "got:from-b").await;
    wait_stdout(b, "got:from-b").await;
    // The container exits: both sessions end with its exit code.
    ws_send(a, ws_msg(false, 0, b"quit\n")).await.expect("quit");
    for ws in clients.iter_mut() {
        let o = ws_collect(ws, false, LIMIT).await.expect("end");
        assert_eq!(o.exit_code().expect("status"), 4, "{o:?}");
    }
    // The log was written all along.
    let log = std::fs::read_to_string(log_path(&pod, &cfg)).expect("log");
    assert!(log.contains("got:from-b"), "{log}");
    remove_pod(&mut rt, &pod_id).await.expect("remove");
}

/// Attaches over SPDY as client-go's remotecommand does for critest (v4
/// offered first, streams error, stdin, stdout, and stderr, or resize with
/// a tty).
async fn spdy_attach(
    rt: &mut cria_tests::client::RuntimeClient,
    ctr: &str,
    tty: bool,
) -> (Spdy, [u32; 4]) {
    let url = rt
        .attach(v1::AttachRequest {
            container_id: ctr.to_owned(),
            stdin: true,
            tty,
            stdout: true,
            stderr: !tty,
        })
        .await
        .expect("Attach")
        .into_inner()
        .url;
    let protocols = [
        "v4.channel.k8s.io",
        "v3.channel.k8s.io",
        "v2.channel.k8s.io",
        "channel.k8s.io",
    ];
    let mut c = Spdy::connect(&url, &protocols, true).await.expect("spdy");
    assert_eq!(c.protocol, "v4.channel.k8s.io");
    let mut ids = [0u32; 4];
    let last = if tty { "resize" } else { "stderr" };
    for (id, kind) in ids.iter_mut().zip(["error", "stdin", "stdout", last]) {
        *id = c.open(&[("streamType", kind)]).await.expect(kind);
    }
    (c, ids)
}

/// critest "runtime should support attach": a `/bin/sh` created with stdin
/// and `stdin_once` gets `echo hello`, answers `hello`, and when the client
/// closes stdin the shell reads EOF and exits, which ends the session with
/// success. Before stdin_once reached the monitor the shell never exited
/// and critest hung. Without `stdin_once` the container's stdin outlives
/// the client's close: a later attach can still type into it.
#[tokio::test]
async fn attach_with_stdin_once_ends_when_the_client_closes_stdin() {
    let env = PodEnv::start().await.expect("env");
    let mut rt = env.rt().await.expect("client");
    let pod = env.pod_config("attach-once").expect("pod config");
    let pod_id = env.run_pod(&mut rt, &pod).await.expect("pod");

    let mut cfg = env.container_config("once", &["/bin/sh"]);
    cfg.stdin = true;
    cfg.stdin_once = true;
    let ctr = env
        .create_start(&mut rt, &pod_id, &pod, &cfg)
        .await
        .expect("container");
    let (c, [err, inp, out, errs]) = spdy_attach(&mut rt, &ctr, false).await;
    c.send(inp, b"echo hello\n", false).await.expect("stdin");
    c.wait_contains(out, b"hello\n", LIMIT).await.expect("echo");
    // critest closes its stdin pipe: client-go sends FIN on the stream.
    c.send(inp, &[], true).await.expect("stdin FIN");
    assert_eq!(c.read_to_end(out, LIMIT).await.expect("stdout"), b"hello\n");
    assert!(c.read_to_end(errs, LIMIT).await.expect("stderr").is_empty());
    let o = Outcome {
        error: String::from_utf8(c.read_to_end(err, LIMIT).await.expect("error")).expect("utf8"),
        ..Default::default()
    };
    assert_eq!(o.exit_code().expect("status"), 0, "{o:?}");
    c.wait_closed(LIMIT).await.expect("closed");
    let st = wait_state(&mut rt, &ctr, EXITED, LIMIT)
        .await
        .expect("exited");
    assert_eq!(st.exit_code, 0);

    let mut cfg = env.container_config("kept", &["/bin/sh"]);
    cfg.stdin = true;
    let ctr = env
        .create_start(&mut rt, &pod_id, &pod, &cfg)
        .await
        .expect("container");
    let (c, [_, inp, out, _]) = spdy_attach(&mut rt, &ctr, false).await;
    c.send(inp, b"echo first\n", false).await.expect("stdin");
    c.wait_contains(out, b"first\n", LIMIT).await.expect("echo");
    c.send(inp, &[], true).await.expect("stdin FIN");
    drop(c);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(status(&mut rt, &ctr).await.expect("status").state, RUNNING);
    let (c, [err, inp, _, _]) = spdy_attach(&mut rt, &ctr, false).await;
    c.send(inp, b"exit 7\n", false).await.expect("stdin");
    let o = Outcome {
        error: String::from_utf8(c.read_to_end(err, LIMIT).await.expect("error")).expect("utf8"),
        ..Default::default()
    };
    assert_eq!(o.exit_code().expect("status"), 7, "{o:?}");
    remove_pod(&mut rt, &pod_id).await.expect("remove");
}

/// `stdin_once` with a tty: there is no closing a pty's input, so when the
/// client's stdin ends the monitor types the terminal's EOF (^D, twice after
/// a partial line): `cat` on the tty reads the partial line, then end of
/// file, and exits 0 (as with `crictl attach -it` and ^D).
#[tokio::test]
async fn tty_attach_with_stdin_once_ends_cat_when_the_client_closes_stdin() {
    let env = PodEnv::start().await.expect("env");
    let mut rt = env.rt().await.expect("client");
    let pod = env.pod_config("attach-tty").expect("pod config");
    let pod_id = env.run_pod(&mut rt, &pod).await.expect("pod");
    let mut cfg = env.container_config("cat", &["cat"]);
    cfg.stdin = true;
    cfg.stdin_once = true;
    cfg.tty = true;
    let ctr = env
        .create_start(&mut rt, &pod_id, &pod, &cfg)
        .await
        .expect("container");
    let (c, [err, inp, out, _resize]) = spdy_attach(&mut rt, &ctr, true).await;
    c.send(inp, b"no newline", false).await.expect("stdin");
    // The tty echoes what is typed.
    c.wait_contains(out, b"no newline", LIMIT)
        .await
        .expect("echo");
    c.send(inp, &[], true).await.expect("stdin FIN");
    let o = Outcome {
        error: String::from_utf8(c.read_to_end(err, LIMIT).await.expect("error")).expect("utf8"),
        ..Default::default()
    };
    assert_eq!(o.exit_code().expect("status"), 0, "{o:?}");
    let st = wait_state(&mut rt, &ctr, EXITED, LIMIT)
        .await
        .expect("exited");
    assert_eq!(st.exit_code, 0);
    remove_pod(&mut rt, &pod_id).await.expect("remove");
}
