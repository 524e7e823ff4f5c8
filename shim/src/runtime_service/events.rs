//! GetContainerEvents: a broadcast of container life-cycle events.

use std::sync::Arc;

use cria_proto::v1::{ContainerEventResponse, ContainerEventType};
use tokio::sync::broadcast;
use tonic::Status;

/// Buffered events per subscriber before a slow one starts losing them.
const CAPACITY: usize = 1024;

/// The event channel; every subscriber sees every event sent after it
/// subscribed. Events travel boxed in an `Arc`: the channel allocates and
/// fills all [`CAPACITY`] slots when it is created, so slots the size of an
/// event (~450 bytes) would keep ~470 KiB resident in an idle criad.
pub(crate) struct Events {
    tx: broadcast::Sender<Arc<ContainerEventResponse>>,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            tx: broadcast::channel(CAPACITY).0,
        }
    }
}

impl Events {
    /// Sends an event to current subscribers (none listening is fine).
    pub(crate) fn emit(&self, event: ContainerEventResponse) {
        let _ = self.tx.send(Arc::new(event));
    }

    /// Whether anybody listens (to skip building costly events).
    pub(crate) fn has_subscribers(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// A stream of the events from now on. A subscriber that falls more than
    /// [`CAPACITY`] events behind skips the ones it missed (kubelet relists
    /// periodically, so a gap heals).
    pub(crate) fn stream(&self) -> super::ResponseStream<ContainerEventResponse> {
        let rx = self.tx.subscribe();
        Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(event) => {
                        let event = Arc::unwrap_or_clone(event);
                        return Some((Ok::<_, Status>(event), rx));
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "container event subscriber lagged");
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        }))
    }
}

/// The name of an event type, for logs.
pub(crate) fn type_name(t: ContainerEventType) -> &'static str {
    t.as_str_name()
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test]
    async fn subscribers_see_events_sent_after_subscribing() {
        let events = Events::default();
        events.emit(ContainerEventResponse::default());
        let mut stream = events.stream();
        assert!(events.has_subscribers());
        events.emit(ContainerEventResponse {
            container_id: "c1".into(),
            container_event_type: ContainerEventType::ContainerStartedEvent as i32,
            ..Default::default()
        });
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(got.container_id, "c1");
        assert_eq!(
            type_name(got.container_event_type()),
            "CONTAINER_STARTED_EVENT"
        );
    }
}
