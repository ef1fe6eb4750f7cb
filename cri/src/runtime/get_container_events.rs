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
    let sub: Subscription = rt.subscribe_events();
    let stream = futures_util::stream::unfold(Some(sub), |sub| async move {
        let mut sub = sub?;
        match sub.recv().await {
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
    Ok(Box::pin(stream))
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
