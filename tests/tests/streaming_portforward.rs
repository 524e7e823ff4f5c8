//! Issue 7: port-forward into a pod through criad's streaming server, over
//! SPDY (`portforward.k8s.io`, a client written here) and WebSocket
//! (tokio-tungstenite), to a busybox echo server on the pod's loopback.

mod streaming_common;

use std::time::Duration;

use cria_tests::pod::sh;
use futures::StreamExt;
use streaming_common::*;

const PORT: i32 = 5000;
const CONNS: usize = 20;
const SIZE: usize = 256 * 1024;
const LIMIT: Duration = Duration::from_secs(60);

/// A pod serving an HTTP echo on 127.0.0.1:5000: busybox httpd (a process
/// per connection) with a CGI that returns the POST body.
async fn echo_pod(name: &str) -> Pod {
    let script = concat!(
        "mkdir -p /www/cgi-bin && ",
        "printf '#!/bin/sh\\necho \"Content-Type: application/octet-stream\"\\n",
        "echo \"Content-Length: $CONTENT_LENGTH\"\\necho\\nexec cat\\n' > /www/cgi-bin/echo && ",
        "chmod +x /www/cgi-bin/echo && exec httpd -f -p 127.0.0.1:5000 -h /www"
    );
    let mut p = Pod::start(name, &["sh", "-c", script]).await.expect("pod");
    // Bounded wait for the listener.
    sh(
        &mut p.rt,
        &p.ctr,
        "for i in $(seq 100); do netstat -ltn 2>/dev/null | grep -q ':5000 ' && exit 0; sleep 0.05; done; exit 1",
    )
    .await
    .expect("echo server listening");
    p
}

/// The HTTP request that echoes `body`.
fn echo_request(body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST /cgi-bin/echo HTTP/1.0\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// The body of a complete HTTP response, once `buf` holds all of it.
fn echo_response(buf: &[u8]) -> Option<Vec<u8>> {
    // The CGI's own header lines end in a bare LF.
    let (end, sep) = match buf.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(e) => (e, 4),
        None => (buf.windows(2).position(|w| w == b"\n\n")?, 2),
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))?
        .trim()
        .parse()
        .ok()?;
    let body = &buf[end + sep..];
    (body.len() >= len).then(|| body[..len].to_vec())
}

#[tokio::test]
async fn spdy_port_forward_20_parallel_connections() {
    let mut p = echo_pod("pf-spdy").await;
    let url = p.port_forward_url(&[PORT]).await.expect("url");
    let mut c = Spdy::connect(&url, &["portforward.k8s.io"], true)
        .await
        .expect("spdy");
    assert_eq!(c.protocol, "portforward.k8s.io");
    let mut pairs = Vec::new();
    for i in 0..CONNS {
        let rid = i.to_string();
        let err = c
            .open(&[
                ("streamType", "error"),
                ("port", "5000"),
                ("requestID", &rid),
            ])
            .await
            .expect("error stream");
        let data = c
            .open(&[
                ("streamType", "data"),
                ("port", "5000"),
                ("requestID", &rid),
            ])
            .await
            .expect("data stream");
        pairs.push((err, data, noise(SIZE, i as u64 + 1)));
    }
    // Send everything (the reader task drains replies meanwhile); httpd
    // closes after its response, which ends the data stream; then we FIN.
    for (_, data, payload) in &pairs {
        c.send(*data, &echo_request(payload), false)
            .await
            .expect("send");
    }
    for (err, data, payload) in &pairs {
        let got = c.read_to_end(*data, LIMIT).await.expect("echo");
        c.send(*data, &[], true).await.expect("fin");
        let e = c.read_to_end(*err, LIMIT).await.expect("error stream");
        let body = echo_response(&got).unwrap_or_else(|| {
            panic!(
                "stream {data}: incomplete response of {} bytes; error stream: {}",
                got.len(),
                String::from_utf8_lossy(&e)
            )
        });
        assert_eq!(sha256(&body), sha256(payload), "stream {data}");
        assert!(e.is_empty(), "error: {}", String::from_utf8_lossy(&e));
    }
    // A refused connection reports on its error stream; the session lives on.
    let err = c
        .open(&[
            ("streamType", "error"),
            ("port", "5999"),
            ("requestID", "bad"),
        ])
        .await
        .expect("error");
    let data = c
        .open(&[
            ("streamType", "data"),
            ("port", "5999"),
            ("requestID", "bad"),
        ])
        .await
        .expect("data");
    let e = String::from_utf8(c.read_to_end(err, LIMIT).await.expect("error")).expect("utf8");
    assert!(e.contains("5999"), "{e}");
    let _ = c.read_to_end(data, LIMIT).await;
    let err = c
        .open(&[
            ("streamType", "error"),
            ("port", "5000"),
            ("requestID", "again"),
        ])
        .await
        .expect("error");
    let data = c
        .open(&[
            ("streamType", "data"),
            ("port", "5000"),
            ("requestID", "again"),
        ])
        .await
        .expect("data");
    c.send(data, &echo_request(b"still alive"), false)
        .await
        .expect("send");
    let got = c.read_to_end(data, LIMIT).await.expect("echo");
    assert_eq!(echo_response(&got).as_deref(), Some(&b"still alive"[..]));
    c.send(data, &[], true).await.expect("fin");
    assert!(c.read_to_end(err, LIMIT).await.expect("error").is_empty());
    drop(c);
    p.remove().await.expect("remove");
}

#[tokio::test]
async fn websocket_port_forward_20_parallel_sessions() {
    let mut p = echo_pod("pf-ws").await;
    let mut jobs = Vec::new();
    for i in 0..CONNS {
        let url = p.port_forward_url(&[PORT]).await.expect("url");
        jobs.push(tokio::spawn(async move {
            let (mut ws, chosen) = ws_connect(&url, "v4.channel.k8s.io").await?;
            anyhow::ensure!(chosen == "v4.channel.k8s.io", "protocol {chosen}");
            let payload = noise(SIZE, 100 + i as u64);
            let request = echo_request(&payload);
            let mut got = Vec::new();
            let mut prefixed = [false; 2];
            // Send in chunks while reading; bounded by LIMIT overall.
            let mut chunks = request.chunks(32 * 1024);
            tokio::time::timeout(LIMIT, async {
                loop {
                    if let Some(c) = chunks.next() {
                        ws_send(&mut ws, ws_msg(false, 0, c)).await?;
                    }
                    if echo_response(&got).is_some() {
                        break;
                    }
                    let next = tokio::time::timeout(Duration::from_millis(20), ws.next()).await;
                    let Ok(Some(msg)) = next else { continue };
                    let Some((ch, data)) = ws_decode(&msg?) else {
                        continue;
                    };
                    let ch = usize::from(ch);
                    anyhow::ensure!(ch < 2, "channel {ch}");
                    let mut data = data.as_slice();
                    if !prefixed[ch] {
                        // The first message of each channel is the port, LE.
                        anyhow::ensure!(data.len() >= 2, "short prefix");
                        anyhow::ensure!(u16::from_le_bytes([data[0], data[1]]) == PORT as u16);
                        prefixed[ch] = true;
                        data = &data[2..];
                    }
                    if ch == 0 {
                        got.extend_from_slice(data);
                    } else if !data.is_empty() {
                        anyhow::bail!("error channel: {}", String::from_utf8_lossy(data));
                    }
                }
                Ok::<_, anyhow::Error>(())
            })
            .await??;
            let body = echo_response(&got).unwrap_or_default();
            anyhow::ensure!(
                sha256(&body) == sha256(&payload),
                "connection {i} corrupted"
            );
            Ok(())
        }));
    }
    for j in jobs {
        j.await.expect("join").expect("forwarded connection");
    }
    p.remove().await.expect("remove");
}
