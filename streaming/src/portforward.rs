//! Port-forward over SPDY (`portforward.k8s.io`): the client opens an error
//! stream and a data stream per connection, paired by the `requestid`
//! header and naming the `port`; each pair is one TCP connection to that
//! port in the pod. A failed or reset connection ends only its pair.

use crate::spdy::frame::header;
use crate::spdy::session::{Session, SpdyStream};
use crate::StreamingBackend;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// The SPDY subprotocol of port-forward.
pub(crate) const SPDY_PROTOCOL: &str = "portforward.k8s.io";

/// How long the second stream of a pair may take to arrive.
const PAIR_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Pair {
    data: Option<SpdyStream>,
    error: Option<SpdyStream>,
    since: Option<tokio::time::Instant>,
}

/// The request id of a stream: its `requestid` header, or for old clients
/// derived from the stream id (the error stream comes first, its data
/// stream two ids later).
fn request_id(s: &SpdyStream, is_data: bool) -> String {
    match header(&s.headers, "requestid") {
        Some(id) => id.to_string(),
        None if is_data => s.id.saturating_sub(2).to_string(),
        None => s.id.to_string(),
    }
}

/// Serves one port-forward session until the client leaves.
pub(crate) async fn serve_spdy(
    mut session: Session,
    pod: String,
    backend: Arc<dyn StreamingBackend>,
) {
    let mut pending: HashMap<String, Pair> = HashMap::new();
    let mut tasks = tokio::task::JoinSet::new();
    while let Some(s) = session.accept().await {
        let is_data = match header(&s.headers, "streamtype") {
            Some("data") => true,
            Some("error") => false,
            _ => {
                s.send.reset();
                continue;
            }
        };
        // Drop half pairs whose partner never came.
        pending.retain(|_, p| p.since.is_some_and(|t| t.elapsed() < PAIR_TIMEOUT));
        let id = request_id(&s, is_data);
        let pair = pending.entry(id.clone()).or_default();
        pair.since.get_or_insert_with(tokio::time::Instant::now);
        if is_data {
            pair.data = Some(s);
        } else {
            pair.error = Some(s);
        }
        if pair.data.is_some() && pair.error.is_some() {
            if let Some(Pair {
                data: Some(data),
                error: Some(error),
                ..
            }) = pending.remove(&id)
            {
                tasks.spawn(forward(data, error, pod.clone(), backend.clone()));
            }
        }
        // Reap finished pairs so the set does not grow with the session.
        while tasks.try_join_next().is_some() {}
    }
    // The client left: its connections go with it.
    tasks.abort_all();
    session.close().await;
}

/// One forwarded connection.
async fn forward(
    data: SpdyStream,
    error: SpdyStream,
    pod: String,
    backend: Arc<dyn StreamingBackend>,
) {
    let port = header(&data.headers, "port").and_then(|p| p.parse::<u16>().ok());
    let Some(port) = port.filter(|p| *p != 0) else {
        let msg = format!(
            "invalid port {:?} in port-forward request",
            header(&data.headers, "port")
        );
        let _ = error.send.write(msg.as_bytes()).await;
        error.send.finish().await;
        data.send.reset();
        return;
    };
    let conn = match backend.port_forward(pod.clone(), port).await {
        Ok(c) => c,
        Err(e) => {
            let msg = format!("error forwarding port {port} to pod {pod}: {e}");
            let _ = error.send.write(msg.as_bytes()).await;
            error.send.finish().await;
            data.send.finish().await;
            return;
        }
    };
    let (conn_r, mut conn_w) = tokio::io::split(conn);
    let mut from_client = data.recv;
    let send = data.send.clone();
    let upstream = async {
        let r = tokio::io::copy(&mut from_client, &mut conn_w).await;
        // The client finished sending: so do we, towards the port.
        let _ = conn_w.shutdown().await;
        r
    };
    let downstream = send.copy_from(conn_r);
    let (up, down) = tokio::join!(upstream, downstream);
    if let Err(e) = up.and(down.map(|_| 0)) {
        // A reset or broken connection ends only this stream: Go clients
        // tear the whole session down on any text on the error stream, and
        // a peer closing abruptly (RST after its reply) is ordinary.
        tracing::debug!(%pod, port, error = %e, "port-forward connection ended with an error");
        data.send.finish().await;
    }
    error.send.finish().await;
}
