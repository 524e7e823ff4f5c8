//! Issue 7: exec over the streaming server, end to end through criad with a
//! real busybox container: WebSocket (tokio-tungstenite as the client) and
//! SPDY/3.1 (a client written in the test).

mod streaming_common;

use std::time::{Duration, Instant};

use cria_tests::pod::sh;
use streaming_common::*;
use tokio_tungstenite::tungstenite::Message;

const TEN_MB: usize = 10 * 1024 * 1024;
const LIMIT: Duration = Duration::from_secs(60);

/// Writes 10 MiB of random data into the container; returns its sha256.
async fn big_file(p: &mut Pod) -> String {
    let out = sh(
        &mut p.rt,
        &p.ctr,
        &format!("head -c {TEN_MB} /dev/urandom > /tmp/big && sha256sum /tmp/big"),
    )
    .await
    .expect("make /tmp/big");
    out.split_whitespace().next().expect("hash").to_string()
}

#[tokio::test]
async fn websocket_exec_exit_codes_stdin_and_10mb_stdout() {
    let mut p = Pod::start("ws-exec", &["sleep", "3600"])
        .await
        .expect("pod");

    // Exit codes through the error channel (v5 and v4), stderr apart.
    for (proto, script, code) in [
        ("v5.channel.k8s.io", "exit 3", 3),
        ("v4.channel.k8s.io", "echo out; echo err >&2; exit 0", 0),
    ] {
        let url = p
            .exec_url(&["sh", "-c", script], false, false)
            .await
            .expect("url");
        let (mut ws, chosen) = ws_connect(&url, proto).await.expect("connect");
        assert_eq!(chosen, proto);
        let o = ws_collect(&mut ws, false, LIMIT).await.expect("collect");
        assert_eq!(
            o.exit_code().expect("status"),
            code,
            "{proto} {script}: {o:?}"
        );
        if code == 0 {
            assert_eq!(o.stdout, b"out\n");
            assert_eq!(o.stderr, b"err\n");
        }
    }

    // stdin round trip; v5's close signal ends cat's input.
    let url = p.exec_url(&["cat"], false, true).await.expect("url");
    let (mut ws, _) = ws_connect(&url, "v5.channel.k8s.io")
        .await
        .expect("connect");
    let payload = noise(300 * 1024, 7);
    for chunk in payload.chunks(50 * 1024) {
        ws_send(&mut ws, ws_msg(false, 0, chunk))
            .await
            .expect("stdin");
    }
    ws_send(&mut ws, Message::binary(vec![255u8, 0]))
        .await
        .expect("close stdin");
    let o = ws_collect(&mut ws, false, LIMIT).await.expect("collect");
    assert_eq!(o.exit_code().expect("status"), 0);
    assert_eq!(sha256(&o.stdout), sha256(&payload), "stdin echoed intact");

    // base64 framing.
    let url = p
        .exec_url(&["echo", "hi"], false, false)
        .await
        .expect("url");
    let (mut ws, chosen) = ws_connect(&url, "v4.base64.channel.k8s.io")
        .await
        .expect("connect");
    assert_eq!(chosen, "v4.base64.channel.k8s.io");
    let o = ws_collect(&mut ws, true, LIMIT).await.expect("collect");
    assert_eq!(
        (o.stdout.as_slice(), o.exit_code().expect("status")),
        (&b"hi\n"[..], 0)
    );

    // 10 MiB of stdout arrive intact.
    let want = big_file(&mut p).await;
    let url = p
        .exec_url(&["cat", "/tmp/big"], false, false)
        .await
        .expect("url");
    let (mut ws, _) = ws_connect(&url, "v4.channel.k8s.io")
        .await
        .expect("connect");
    let o = ws_collect(&mut ws, false, LIMIT).await.expect("collect");
    assert_eq!(o.stdout.len(), TEN_MB);
    assert_eq!(sha256(&o.stdout), want);
    assert_eq!(o.exit_code().expect("status"), 0);

    p.remove().await.expect("remove");
}

/// A shell line for a tty exec (after a pause, so a resize sent before it
/// has landed): prints `tty`, what fd 0 links to, whether `tty`'s path is a
/// device of the container and the very file on fd 0, `stty size`, then
/// exits with `code`. Markers are printed computed (`y$((1+1))`), so the
/// terminal's echo of this line cannot match them.
fn own_tty_check(code: i32) -> Vec<u8> {
    format!(
        "sleep 0.5; echo TTY=$(tty); echo FD0=$(readlink /proc/self/fd/0); \
         [ -c \"$(tty)\" ] && [ /proc/self/fd/0 -ef \"$(tty)\" ] && echo SAME=y$((1+1)); \
         stty size; exit {code}\n"
    )
    .into_bytes()
}

/// Issue 7: the exec's tty is a pty of the container's own devpts, so
/// `tty` names a `/dev/pts/N` that exists in the container and is fd 0.
fn assert_own_tty(text: &str) {
    let value = |key: &str| {
        text.split('\n')
            .map(|l| l.trim_end_matches('\r'))
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} line in {text:?}"))
            .to_string()
    };
    let tty = value("TTY=");
    assert!(
        tty.starts_with("/dev/pts/"),
        "tty printed {tty:?}: {text:?}"
    );
    assert_eq!(value("FD0="), tty, "fd 0 is not tty's answer: {text:?}");
    assert!(
        text.contains("SAME=y2"),
        "{tty} is not fd 0's device in the container: {text:?}"
    );
}

#[tokio::test]
async fn websocket_exec_tty_sees_resize() {
    let mut p = Pod::start("ws-tty", &["sleep", "3600"]).await.expect("pod");
    let url = p.exec_url(&["sh"], true, true).await.expect("url");
    let (mut ws, _) = ws_connect(&url, "v5.channel.k8s.io")
        .await
        .expect("connect");
    ws_send(&mut ws, ws_msg(false, 4, br#"{"Width":123,"Height":45}"#))
        .await
        .expect("resize");
    // The shell reads the line at once; stty runs after the resize landed.
    ws_send(&mut ws, ws_msg(false, 0, &own_tty_check(7)))
        .await
        .expect("stdin");
    let o = ws_collect(&mut ws, false, LIMIT).await.expect("collect");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("45 123"), "stty size output: {text:?}");
    assert_own_tty(&text);
    assert_eq!(o.exit_code().expect("status"), 7);
    p.remove().await.expect("remove");
}

#[tokio::test]
async fn spdy_exec_exit_codes_stdin_resize_and_10mb_with_flow_control() {
    let mut p = Pod::start("spdy-exec", &["sleep", "3600"])
        .await
        .expect("pod");

    // Exit code on the v4 error stream; stderr apart.
    let url = p
        .exec_url(
            &["sh", "-c", "echo out; echo err >&2; exit 3"],
            false,
            false,
        )
        .await
        .expect("url");
    let mut c = Spdy::connect(&url, &["v4.channel.k8s.io", "v3.channel.k8s.io"], true)
        .await
        .expect("spdy");
    assert_eq!(c.protocol, "v4.channel.k8s.io");
    let err = c
        .open(&[("streamType", "error")])
        .await
        .expect("error stream");
    let out = c.open(&[("streamType", "stdout")]).await.expect("stdout");
    let errs = c.open(&[("streamType", "stderr")]).await.expect("stderr");
    assert_eq!(c.read_to_end(out, LIMIT).await.expect("stdout"), b"out\n");
    assert_eq!(c.read_to_end(errs, LIMIT).await.expect("stderr"), b"err\n");
    let status = Outcome {
        error: String::from_utf8(c.read_to_end(err, LIMIT).await.expect("error")).expect("utf8"),
        ..Default::default()
    };
    assert_eq!(status.exit_code().expect("status"), 3);
    c.wait_closed(LIMIT).await.expect("closed");

    // v2: plain-text errors, nothing on success; stdin echo with FIN.
    let url = p.exec_url(&["cat"], false, true).await.expect("url");
    let mut c = Spdy::connect(&url, &["v2.channel.k8s.io"], false)
        .await
        .expect("spdy");
    assert_eq!(c.protocol, "v2.channel.k8s.io");
    let err = c.open(&[("streamType", "error")]).await.expect("error");
    let inp = c.open(&[("streamType", "stdin")]).await.expect("stdin");
    let out = c.open(&[("streamType", "stdout")]).await.expect("stdout");
    let _errs = c.open(&[("streamType", "stderr")]).await.expect("stderr");
    let payload = noise(200 * 1024, 3);
    c.send(inp, &payload, true).await.expect("send stdin");
    let echoed = c.read_to_end(out, LIMIT).await.expect("echo");
    if let Some(d) = byte_diff(&echoed, &payload) {
        let e = c.read_to_end(err, LIMIT).await.unwrap_or_default();
        panic!(
            "stdin echo differs: {d}\n{}\nerror stream: {}\ncriad log:\n{}",
            c.describe(out),
            String::from_utf8_lossy(&e),
            p.env.criad.log()
        );
    }
    assert!(c.read_to_end(err, LIMIT).await.expect("error").is_empty());

    // 10 MiB through 64 KiB windows.
    let want = big_file(&mut p).await;
    let url = p
        .exec_url(&["cat", "/tmp/big"], false, false)
        .await
        .expect("url");
    let mut c = Spdy::connect(&url, &["v4.channel.k8s.io"], true)
        .await
        .expect("spdy");
    let err = c.open(&[("streamType", "error")]).await.expect("error");
    let out = c.open(&[("streamType", "stdout")]).await.expect("stdout");
    let _ = c.open(&[("streamType", "stderr")]).await.expect("stderr");
    let got = c.read_to_end(out, LIMIT).await.expect("stdout");
    assert_eq!(got.len(), TEN_MB);
    assert_eq!(sha256(&got), want);
    let status = String::from_utf8(c.read_to_end(err, LIMIT).await.expect("error")).expect("utf8");
    assert!(status.contains("Success"), "{status}");

    // tty + resize stream.
    let url = p.exec_url(&["sh"], true, true).await.expect("url");
    let mut c = Spdy::connect(&url, &["v4.channel.k8s.io"], true)
        .await
        .expect("spdy");
    let err = c.open(&[("streamType", "error")]).await.expect("error");
    let inp = c.open(&[("streamType", "stdin")]).await.expect("stdin");
    let out = c.open(&[("streamType", "stdout")]).await.expect("stdout");
    let rsz = c.open(&[("streamType", "resize")]).await.expect("resize");
    c.send(rsz, br#"{"Width":99,"Height":33}"#, false)
        .await
        .expect("resize");
    c.send(inp, &own_tty_check(5), false).await.expect("stdin");
    let text = c.read_to_end(out, LIMIT).await.expect("stdout");
    let text = String::from_utf8_lossy(&text);
    assert!(text.contains("33 99"), "stty size output: {text:?}");
    assert_own_tty(&text);
    let status = Outcome {
        error: String::from_utf8(c.read_to_end(err, LIMIT).await.expect("error")).expect("utf8"),
        ..Default::default()
    };
    assert_eq!(status.exit_code().expect("status"), 5);

    p.remove().await.expect("remove");
}

/// An exec of `cat` on a tty ends when the client's stdin does: the server
/// types the terminal's EOF (^D) on the pty, as there is no closing its
/// input (client-go sends FIN on the stdin stream).
#[tokio::test]
async fn spdy_tty_exec_sees_eof_when_the_client_closes_stdin() {
    let mut p = Pod::start("tty-eof", &["sleep", "3600"])
        .await
        .expect("pod");
    let url = p.exec_url(&["cat"], true, true).await.expect("url");
    let mut c = Spdy::connect(&url, &["v4.channel.k8s.io"], true)
        .await
        .expect("spdy");
    let err = c.open(&[("streamType", "error")]).await.expect("error");
    let inp = c.open(&[("streamType", "stdin")]).await.expect("stdin");
    let out = c.open(&[("streamType", "stdout")]).await.expect("stdout");
    let _rsz = c.open(&[("streamType", "resize")]).await.expect("resize");
    c.send(inp, b"line\npartial", true).await.expect("stdin");
    let text = c.read_to_end(out, LIMIT).await.expect("stdout");
    let text = String::from_utf8_lossy(&text);
    assert!(text.contains("partial"), "tty output: {text:?}");
    let status = Outcome {
        error: String::from_utf8(c.read_to_end(err, LIMIT).await.expect("error")).expect("utf8"),
        ..Default::default()
    };
    assert_eq!(status.exit_code().expect("status"), 0, "{status:?}");
    p.remove().await.expect("remove");
}

#[tokio::test]
async fn a_token_works_once_and_unknown_ones_are_refused() {
    let mut p = Pod::start("tokens", &["sleep", "3600"]).await.expect("pod");
    let url = p.exec_url(&["true"], false, false).await.expect("url");
    let (mut ws, _) = ws_connect(&url, "v5.channel.k8s.io")
        .await
        .expect("first use");
    let o = ws_collect(&mut ws, false, LIMIT).await.expect("collect");
    assert_eq!(o.exit_code().expect("status"), 0);
    for bad in [
        url.clone(),
        format!("{}0", url.trim_end_matches(|c: char| c != '/')),
    ] {
        let Err(err) = ws_connect(&bad, "v5.channel.k8s.io").await else {
            panic!("{bad}: accepted over websocket");
        };
        assert!(err.to_string().contains("404"), "{bad}: {err}");
        let Err(err) = Spdy::connect(&bad, &["v4.channel.k8s.io"], false).await else {
            panic!("{bad}: accepted over spdy");
        };
        assert!(err.to_string().contains("404"), "{bad}: {err}");
        assert!(err.to_string().contains("token"), "{bad}: {err}");
    }
    p.remove().await.expect("remove");
}

/// Polls (bounded) until `cond` holds.
async fn eventually(what: &str, limit: Duration, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_client_vanishing_mid_stream_leaves_no_process_or_fd() {
    let mut p = Pod::start("vanish", &["sleep", "3600"]).await.expect("pod");
    let criad_pid = p.env.criad.pid().expect("criad pid");
    // Warm up (first exec allocates lazily), then take the baseline.
    let url = p.exec_url(&["true"], false, false).await.expect("url");
    let (mut ws, _) = ws_connect(&url, "v4.channel.k8s.io")
        .await
        .expect("connect");
    ws_collect(&mut ws, false, LIMIT).await.expect("collect");
    drop(ws);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let baseline = fd_count(criad_pid);

    // WebSocket: yes streaming output; SPDY: a silent sleep. Both dropped.
    let url = p
        .exec_url(&["sh", "-c", "exec yes vanish-ws"], false, true)
        .await
        .expect("url");
    let (mut ws, _) = ws_connect(&url, "v5.channel.k8s.io")
        .await
        .expect("connect");
    let first = tokio::time::timeout(LIMIT, futures::StreamExt::next(&mut ws))
        .await
        .expect("output in time");
    assert!(first.is_some());
    drop(ws);
    let url = p
        .exec_url(&["sh", "-c", "echo started; exec sleep 1001"], false, true)
        .await
        .expect("url");
    let mut c = Spdy::connect(&url, &["v4.channel.k8s.io"], false)
        .await
        .expect("spdy");
    let _err = c.open(&[("streamType", "error")]).await.expect("error");
    let _in = c.open(&[("streamType", "stdin")]).await.expect("stdin");
    let out = c.open(&[("streamType", "stdout")]).await.expect("stdout");
    let _e = c.open(&[("streamType", "stderr")]).await.expect("stderr");
    c.wait_contains(out, b"started", LIMIT)
        .await
        .expect("started");
    drop(c);

    let (rt, ctr) = (&mut p.rt, p.ctr.clone());
    eventually(
        "exec'd processes gone",
        Duration::from_secs(15),
        async || {
            let ps = sh(rt, &ctr, "ps -o args").await.unwrap_or_default();
            !ps.contains("vanish-ws") && !ps.contains("sleep 1001")
        },
    )
    .await;
    eventually(
        "criad's fds back to baseline",
        Duration::from_secs(15),
        async || fd_count(criad_pid) <= baseline,
    )
    .await;
    p.remove().await.expect("remove");
}
