//! Feeding a pull's per-layer progress to the display while PullImage runs.
//! criad offers it on its own `cria.v1alpha.PullProgress/Watch` stream; other
//! runtimes answer Unimplemented, and the display keeps its spinner with the
//! elapsed time.

use std::future::Future;
use std::time::Duration;

use cria_proto::cria::v1alpha::{LayerState, PullProgressEvent, WatchPullRequest};
use cria_proto::v1::PullImageResponse;
use cria_proto::PullProgressClient;
use futures::StreamExt;

use crate::client::Cri;
use crate::error::CliError;
use crate::progress::{LayerProgress, Phase, PullDisplay};

/// How long to keep reading progress after PullImage returned, so the last
/// "done" events reach the display.
const DRAIN: Duration = Duration::from_millis(500);

/// Converts a progress event's layer into what the display shows.
pub fn layer_of(event: &PullProgressEvent) -> Option<LayerProgress> {
    let l = event.layer.as_ref()?;
    let phase = match LayerState::try_from(l.state) {
        Ok(LayerState::Waiting) | Ok(LayerState::Unspecified) | Err(_) => Phase::Waiting,
        Ok(LayerState::Downloading) => Phase::Downloading,
        Ok(LayerState::Done) => Phase::Done,
        Ok(LayerState::Failed) => Phase::Failed(l.error.clone()),
    };
    Some(LayerProgress {
        digest: l.digest.clone(),
        done: l.downloaded_bytes,
        total: l.total_bytes,
        phase,
    })
}

/// Follows the Watch stream into `display` until the pull finishes or the stream ends.
async fn feed(cri: &Cri, reference: &str, display: &mut PullDisplay) {
    let mut client = PullProgressClient::new(cri.channel());
    let req = WatchPullRequest {
        image: reference.to_string(),
    };
    let mut stream = match client.watch(req).await {
        Ok(resp) => resp.into_inner(),
        Err(status) => {
            // Unimplemented means another CRI runtime: the spinner stays.
            tracing::debug!(code = ?status.code(), "no pull progress from the runtime");
            return;
        }
    };
    while let Some(Ok(event)) = stream.next().await {
        if let Some(layer) = layer_of(&event) {
            display.layer(&layer);
        }
        if event.finished.is_some() {
            return;
        }
    }
}

/// Awaits `pull` while showing whatever progress the runtime reports for `reference`.
pub async fn with_progress(
    cri: &Cri,
    reference: &str,
    display: &mut PullDisplay,
    pull: impl Future<Output = Result<PullImageResponse, CliError>>,
) -> Result<PullImageResponse, CliError> {
    let events = feed(cri, reference, display);
    tokio::pin!(pull);
    tokio::pin!(events);
    let mut events_done = false;
    let result = loop {
        tokio::select! {
            r = &mut pull => break r,
            () = &mut events, if !events_done => events_done = true,
        }
    };
    if result.is_ok() && !events_done {
        let _ = tokio::time::timeout(DRAIN, &mut events).await;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use cria_proto::cria::v1alpha::LayerProgress as WireLayer;

    #[test]
    fn events_become_layer_progress() {
        let ev = PullProgressEvent {
            image: "x".into(),
            layer: Some(WireLayer {
                digest: "sha256:ab".into(),
                total_bytes: 10,
                downloaded_bytes: 4,
                state: LayerState::Downloading as i32,
                error: String::new(),
            }),
            finished: None,
        };
        assert_eq!(
            layer_of(&ev),
            Some(LayerProgress {
                digest: "sha256:ab".into(),
                done: 4,
                total: 10,
                phase: Phase::Downloading
            })
        );
        let failed = PullProgressEvent {
            layer: Some(WireLayer {
                state: LayerState::Failed as i32,
                error: "digest mismatch".into(),
                ..WireLayer::default()
            }),
            ..PullProgressEvent::default()
        };
        assert_eq!(
            layer_of(&failed).unwrap().phase,
            Phase::Failed("digest mismatch".into())
        );
        assert_eq!(layer_of(&PullProgressEvent::default()), None);
    }
}
