//! GetContainerEvents: a stream of container lifecycle events with the
//! pod's status, for kubelet's evented PLEG. A subscriber that falls too
//! far behind gets RESOURCE_EXHAUSTED and its stream ends; the runtime
//! never waits for it.

use std::pin::Pin;
use std::sync::Arc;

use crius_runtime::Runtime;
use crius_runtime::events::{ContainerEvent, ContainerEventKind, Subscription};
use k8s_cri::v1::{self as cri, ContainerEventResponse, GetEventsRequest};
use tokio::sync::broadcast::error::RecvError;
use tokio_stream::Stream;
use tonic::Status;

use crate::convert;

/// The stream of events a subscriber gets.
pub type EventStream =
    Pin<Box<dyn Stream<Item = Result<ContainerEventResponse, Status>> + Send + 'static>>;

/// Handles GetContainerEvents.
pub fn handle(rt: &Runtime, _req: GetEventsRequest) -> Result<EventStream, Status> {
    Ok(stream(rt.subscribe_events()))
}

/// The responses of one subscription: its events until it falls behind
/// (then one RESOURCE_EXHAUSTED) or the daemon stops.
fn stream(sub: Subscription) -> EventStream {
    let stream = futures_util::stream::unfold(Some(sub), |sub| async move {
        let mut sub = sub?;
        let received = tokio::select! {
            r = sub.events.recv() => r,
            _ = sub.closed.wait_for(|closed| *closed) => return None,
        };
        match received {
            Ok(ev) => Some((Ok(event(&ev)), Some(sub))),
            Err(RecvError::Lagged(n)) => Some((
                Err(Status::resource_exhausted(format!(
                    "container events subscriber fell {n} events behind; subscribe again"
                ))),
                None,
            )),
            Err(RecvError::Closed) => None,
        }
    });
    Box::pin(stream)
}

fn event(ev: &Arc<ContainerEvent>) -> ContainerEventResponse {
    let kind = match ev.kind {
        ContainerEventKind::Created => cri::ContainerEventType::ContainerCreatedEvent,
        ContainerEventKind::Started => cri::ContainerEventType::ContainerStartedEvent,
        ContainerEventKind::Stopped => cri::ContainerEventType::ContainerStoppedEvent,
        ContainerEventKind::Deleted => cri::ContainerEventType::ContainerDeletedEvent,
    };
    ContainerEventResponse {
        container_id: ev.container_id.clone(),
        container_event_type: kind as i32,
        created_at: ev.at,
        pod_sandbox_status: ev.sandbox.as_ref().map(convert::sandbox_status),
        containers_statuses: ev
            .containers
            .iter()
            .map(convert::container_status)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use tokio::sync::{broadcast, watch};

    fn subscription(
        events: broadcast::Receiver<Arc<ContainerEvent>>,
        closed: &watch::Sender<bool>,
    ) -> Subscription {
        Subscription {
            events,
            closed: closed.subscribe(),
        }
    }

    fn ev(n: usize) -> Arc<ContainerEvent> {
        Arc::new(ContainerEvent {
            container_id: format!("c{n}"),
            kind: ContainerEventKind::Created,
            at: n as i64,
            sandbox: None,
            containers: Vec::new(),
        })
    }

    #[tokio::test]
    async fn a_laggard_is_dropped_while_others_get_everything() {
        let (tx, fast) = broadcast::channel(4);
        let (closed, _) = watch::channel(false);
        let slow = subscription(tx.subscribe(), &closed);
        let mut fast = stream(subscription(fast, &closed));
        let mut got = Vec::new();
        for n in 0..10 {
            // Sending never waits for anyone.
            tx.send(ev(n)).unwrap();
            got.push(fast.next().await.unwrap().unwrap().container_id);
        }
        assert_eq!(got.len(), 10);
        assert_eq!(got[9], "c9");
        let mut slow = stream(slow);
        let err = slow.next().await.unwrap().unwrap_err();
        assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
        assert!(slow.next().await.is_none(), "the laggard's stream ends");
        // A stopping daemon ends every stream.
        closed.send_replace(true);
        assert!(fast.next().await.is_none());
        drop(tx);
    }
}
