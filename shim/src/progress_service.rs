//! `cria.v1alpha.PullProgress`: live per-layer progress of the pulls that
//! PullImage runs, for clients that want progress bars.
//!
//! [`PullProgressHub`] keys pulls by normalised image reference. PullImage
//! registers each pull ([`PullProgressHub::begin`]) and feeds image-store's
//! progress callbacks into it; `Watch` subscribes to the same key and gets
//! the layers seen so far, then every update, then the final outcome. A
//! watch may come before the pull starts (a client opens both at once); it
//! then waits for it.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cria_image_store::{Progress, ProgressFn, Reference};
use cria_proto::cria::v1alpha::{
    LayerProgress, LayerState, PullFinished, PullProgressEvent, WatchPullRequest,
};
use futures::Stream;
use tokio::sync::broadcast;
use tonic::{Request, Response, Status};

/// Most events a slow watcher may fall behind by before it skips some
/// (progress is lossy by nature: only the latest bytes count matters).
const CHANNEL_CAPACITY: usize = 256;

/// Byte-count updates of one layer are sent at most this often; state
/// changes (started, done, failed) always go out.
const UPDATE_INTERVAL: Duration = Duration::from_millis(100);

/// The key pulls and watches meet on: the normalised reference, so
/// `busybox` and `docker.io/library/busybox:latest` are one pull. Input that
/// does not parse is used as is (its pull fails anyway).
pub fn pull_key(image: &str) -> String {
    Reference::parse(image).map_or_else(|_| image.to_string(), |r| r.to_string())
}

/// In-flight pulls and their watchers.
#[derive(Debug, Default)]
pub struct PullProgressHub {
    pulls: Mutex<HashMap<String, Entry>>,
}

/// One reference: its channel, and the latest state of each layer for
/// watchers that join late.
#[derive(Debug)]
struct Entry {
    tx: broadcast::Sender<PullProgressEvent>,
    /// Layers in the order first seen, with when each was last sent.
    layers: Vec<(LayerProgress, Instant)>,
    /// Pulls of this reference running now.
    active: usize,
}

impl Entry {
    fn new() -> Entry {
        Entry {
            tx: broadcast::channel(CHANNEL_CAPACITY).0,
            layers: Vec::new(),
            active: 0,
        }
    }

    fn idle(&self) -> bool {
        self.active == 0 && self.tx.receiver_count() == 0
    }
}

impl PullProgressHub {
    /// An empty hub.
    pub fn new() -> PullProgressHub {
        PullProgressHub::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        // A panic while holding this lock leaves only progress bookkeeping
        // half-updated; carrying on is better than failing every pull.
        self.pulls.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a pull of `image`; the returned handle feeds its progress
    /// and must be finished with its outcome.
    pub fn begin(self: &Arc<Self>, image: &str) -> PullTracker {
        let key = pull_key(image);
        let mut pulls = self.lock();
        pulls.retain(|_, e| !e.idle());
        pulls.entry(key.clone()).or_insert_with(Entry::new).active += 1;
        PullTracker {
            hub: self.clone(),
            key,
            finished: false,
        }
    }

    /// Subscribes to the pulls of `image`: the current layers first, then
    /// live updates up to and including the `finished` event.
    pub fn watch(&self, image: &str) -> impl Stream<Item = PullProgressEvent> + Send + 'static {
        let key = pull_key(image);
        let mut pulls = self.lock();
        pulls.retain(|_, e| !e.idle());
        let entry = pulls.entry(key.clone()).or_insert_with(Entry::new);
        let rx = entry.tx.subscribe();
        let backlog: Vec<PullProgressEvent> = entry
            .layers
            .iter()
            .map(|(layer, _)| layer_event(&key, layer.clone()))
            .collect();
        drop(pulls);
        let state = WatchState {
            backlog: backlog.into_iter(),
            rx,
            done: false,
        };
        futures::stream::unfold(state, |mut s| async move {
            if s.done {
                return None;
            }
            if let Some(ev) = s.backlog.next() {
                return Some((ev, s));
            }
            loop {
                match s.rx.recv().await {
                    Ok(ev) => {
                        s.done = ev.finished.is_some();
                        return Some((ev, s));
                    }
                    // Missed some updates: the next ones carry the totals.
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    // The hub dropped the entry; nothing more will come.
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
    }

    /// Records one progress callback and sends it unless it is a byte-count
    /// update too soon after the previous one.
    fn update(&self, key: &str, p: &Progress) {
        let state = if p.finished {
            LayerState::Done
        } else if p.done == 0 {
            LayerState::Waiting
        } else {
            LayerState::Downloading
        };
        let layer = LayerProgress {
            digest: p.digest.clone(),
            total_bytes: p.total,
            downloaded_bytes: p.done,
            state: state as i32,
            error: String::new(),
        };
        let mut pulls = self.lock();
        let Some(entry) = pulls.get_mut(key) else {
            return;
        };
        let now = Instant::now();
        let send = match entry.layers.iter_mut().find(|(l, _)| l.digest == p.digest) {
            Some((known, last_sent)) => {
                let changed_state = known.state != layer.state;
                let due = now.duration_since(*last_sent) >= UPDATE_INTERVAL;
                *known = layer.clone();
                if changed_state || due {
                    *last_sent = now;
                }
                changed_state || due
            }
            None => {
                entry.layers.push((layer.clone(), now));
                true
            }
        };
        if send {
            // No receivers is fine: nobody is watching.
            let _ = entry.tx.send(layer_event(key, layer));
        }
    }

    /// Ends one pull of `key`: on failure every unfinished layer is marked
    /// failed; then the outcome goes to the watchers. When the last pull of
    /// the reference ends, its layer state is forgotten.
    fn finish(&self, key: &str, outcome: Result<String, String>) {
        let mut pulls = self.lock();
        let Some(entry) = pulls.get_mut(key) else {
            return;
        };
        if let Err(error) = &outcome {
            for (layer, _) in &mut entry.layers {
                if layer.state != LayerState::Done as i32 {
                    layer.state = LayerState::Failed as i32;
                    layer.error = error.clone();
                    let _ = entry.tx.send(layer_event(key, layer.clone()));
                }
            }
        }
        let (image_id, error) = match outcome {
            Ok(id) => (id, String::new()),
            Err(e) => (String::new(), e),
        };
        let _ = entry.tx.send(PullProgressEvent {
            image: key.to_string(),
            layer: None,
            finished: Some(PullFinished { image_id, error }),
        });
        entry.active = entry.active.saturating_sub(1);
        if entry.active == 0 {
            entry.layers.clear();
        }
        if entry.idle() {
            pulls.remove(key);
        }
    }

    /// Ends every watch (criad is shutting down): dropping the channels
    /// closes the watchers' streams, so they do not hold up the graceful
    /// shutdown. Pulls still running carry on without an audience.
    pub fn close(&self) {
        self.lock().clear();
    }

    /// How many references have pulls or watchers (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().values().filter(|e| !e.idle()).count()
    }
}

fn layer_event(key: &str, layer: LayerProgress) -> PullProgressEvent {
    PullProgressEvent {
        image: key.to_string(),
        layer: Some(layer),
        finished: None,
    }
}

struct WatchState {
    backlog: std::vec::IntoIter<PullProgressEvent>,
    rx: broadcast::Receiver<PullProgressEvent>,
    done: bool,
}

/// One pull registered with the hub. Dropping it unfinished (the PullImage
/// call was cancelled) reports the pull as failed, so watchers always end.
#[derive(Debug)]
pub struct PullTracker {
    hub: Arc<PullProgressHub>,
    key: String,
    finished: bool,
}

impl PullTracker {
    /// The callback to hand to image-store's pull.
    pub fn progress_fn(&self) -> ProgressFn {
        let hub = self.hub.clone();
        let key = self.key.clone();
        Arc::new(move |p: &Progress| hub.update(&key, p))
    }

    /// Reports the pull's outcome: the image ID, or the error text.
    pub fn finish(mut self, outcome: Result<String, String>) {
        self.finished = true;
        self.hub.finish(&self.key, outcome);
    }
}

impl Drop for PullTracker {
    fn drop(&mut self) {
        if !self.finished {
            self.hub
                .finish(&self.key, Err("pull cancelled".to_string()));
        }
    }
}

/// The gRPC face of the hub.
#[derive(Debug, Clone)]
pub struct ProgressService {
    hub: Arc<PullProgressHub>,
}

impl ProgressService {
    /// Serves watches on `hub`.
    pub fn new(hub: Arc<PullProgressHub>) -> ProgressService {
        ProgressService { hub }
    }
}

#[tonic::async_trait]
impl cria_proto::PullProgress for ProgressService {
    type WatchStream = Pin<Box<dyn Stream<Item = Result<PullProgressEvent, Status>> + Send>>;

    async fn watch(
        &self,
        request: Request<WatchPullRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let image = request.into_inner().image;
        if image.is_empty() {
            return Err(Status::invalid_argument("watch: image must not be empty"));
        }
        let stream = futures::StreamExt::map(self.hub.watch(&image), Ok);
        Ok(Response::new(Box::pin(stream)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn progress(digest: &str, done: u64, total: u64, finished: bool) -> Progress {
        Progress {
            reference: "busybox".to_string(),
            digest: digest.to_string(),
            done,
            total,
            finished,
        }
    }

    async fn collect(stream: impl Stream<Item = PullProgressEvent>) -> Vec<PullProgressEvent> {
        tokio::time::timeout(Duration::from_secs(5), stream.collect::<Vec<_>>())
            .await
            .expect("the watch ends after the pull finishes")
    }

    #[tokio::test]
    async fn a_watch_before_the_pull_sees_everything_and_ends() {
        let hub = Arc::new(PullProgressHub::new());
        // Different spellings of the same image meet on one key.
        let watch = hub.watch("docker.io/library/busybox:latest");
        let tracker = hub.begin("busybox");
        let cb = tracker.progress_fn();
        cb(&progress("sha256:a", 0, 10, false));
        cb(&progress("sha256:a", 5, 10, false));
        cb(&progress("sha256:a", 10, 10, true));
        tracker.finish(Ok("sha256:id".to_string()));
        let events = collect(watch).await;
        let states: Vec<i32> = events
            .iter()
            .filter_map(|e| e.layer.as_ref().map(|l| l.state))
            .collect();
        assert_eq!(
            states,
            vec![
                LayerState::Waiting as i32,
                LayerState::Downloading as i32,
                LayerState::Done as i32
            ]
        );
        let last = events.last().unwrap();
        assert_eq!(last.image, "docker.io/library/busybox:latest");
        assert_eq!(last.finished.as_ref().unwrap().image_id, "sha256:id");
        assert_eq!(
            hub.len(),
            0,
            "nothing is kept once the pull and watch are over"
        );
    }

    #[tokio::test]
    async fn a_late_watch_gets_the_current_layers_first() {
        let hub = Arc::new(PullProgressHub::new());
        let tracker = hub.begin("busybox");
        let cb = tracker.progress_fn();
        cb(&progress("sha256:a", 10, 10, true));
        cb(&progress("sha256:b", 3, 10, false));
        let watch = hub.watch("busybox");
        tracker.finish(Err("registry went away".to_string()));
        let events = collect(watch).await;
        let a = events[0].layer.as_ref().unwrap();
        assert_eq!(
            (a.digest.as_str(), a.state),
            ("sha256:a", LayerState::Done as i32)
        );
        let b = events[1].layer.as_ref().unwrap();
        assert_eq!(b.downloaded_bytes, 3);
        // The failure marks the unfinished layer failed, then ends the pull.
        let failed = events[2].layer.as_ref().unwrap();
        assert_eq!(failed.digest, "sha256:b");
        assert_eq!(failed.state, LayerState::Failed as i32);
        assert_eq!(failed.error, "registry went away");
        assert_eq!(
            events[3].finished.as_ref().unwrap().error,
            "registry went away"
        );
        assert_eq!(events.len(), 4);
    }

    #[tokio::test]
    async fn byte_updates_are_throttled_but_state_changes_are_not() {
        let hub = Arc::new(PullProgressHub::new());
        let watch = hub.watch("busybox");
        let tracker = hub.begin("busybox");
        let cb = tracker.progress_fn();
        for done in 1..=1000 {
            cb(&progress("sha256:a", done, 1001, false));
        }
        cb(&progress("sha256:a", 1001, 1001, true));
        tracker.finish(Ok("sha256:id".to_string()));
        let events = collect(watch).await;
        // First sight, far fewer than 1000 byte updates, done, finished.
        assert!(events.len() < 100, "{} events", events.len());
        let done = events[events.len() - 2].layer.as_ref().unwrap();
        assert_eq!(done.state, LayerState::Done as i32);
        assert_eq!(done.downloaded_bytes, 1001);
    }

    #[tokio::test]
    async fn close_ends_every_watch() {
        let hub = Arc::new(PullProgressHub::new());
        let tracker = hub.begin("busybox");
        tracker.progress_fn()(&progress("sha256:a", 1, 10, false));
        let watch = hub.watch("busybox");
        hub.close();
        let events = collect(watch).await;
        // The backlog, then the end, with no `finished` event.
        assert_eq!(events.len(), 1);
        assert!(events[0].finished.is_none());
        // The pull may still report; nothing breaks.
        tracker.progress_fn()(&progress("sha256:a", 2, 10, false));
        tracker.finish(Ok("sha256:id".to_string()));
    }

    #[tokio::test]
    async fn a_dropped_tracker_ends_the_watch_as_cancelled() {
        let hub = Arc::new(PullProgressHub::new());
        let watch = hub.watch("busybox");
        drop(hub.begin("busybox"));
        let events = collect(watch).await;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].finished.as_ref().unwrap().error, "pull cancelled");
    }
}
