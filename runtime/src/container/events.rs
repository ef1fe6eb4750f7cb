//! Container lifecycle events (created, started, stopped, deleted) for
//! kubelet's evented PLEG, broadcast to every subscriber.
//!
//! Each subscriber has its own bounded backlog in a broadcast ring: the
//! runtime never waits for anyone, and a subscriber that falls more than
//! [`BACKLOG`] events behind is told so and dropped (kubelet then relists).
//!
//! Events go out in the order of their timestamps, and a container's
//! Stopped never before its Started: a start in flight is registered
//! ([`Events::starting`]), and its end cannot be announced until the
//! start's Started has been.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{broadcast, watch};

use super::PodLookup;
use crate::records::container::Container;
use crate::records::pod::Sandbox;
use crate::state::{Objects, now_nanos};

/// How many events a subscriber may fall behind before it is dropped.
pub const BACKLOG: usize = 1024;

/// What happened to a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerEventKind {
    /// CreateContainer made it.
    Created,
    /// StartContainer started it.
    Started,
    /// It exited (or could not start).
    Stopped,
    /// RemoveContainer removed it.
    Deleted,
}

/// One event, with the state of the container's pod at that moment.
#[derive(Debug, Clone)]
pub struct ContainerEvent {
    /// The container's id.
    pub container_id: String,
    /// What happened.
    pub kind: ContainerEventKind,
    /// When, Unix nanoseconds.
    pub at: i64,
    /// The container's pod (`None` if already gone).
    pub sandbox: Option<Sandbox>,
    /// The pod's containers, this one included (a deleted one as it was
    /// last recorded).
    pub containers: Vec<Container>,
}

/// A subscription to container events.
#[derive(Debug)]
pub struct Subscription {
    /// The events, from the moment of subscribing.
    pub events: broadcast::Receiver<Arc<ContainerEvent>>,
    /// Turns true when the daemon stops: subscribers must end their
    /// streams then, or a graceful stop would wait for them forever.
    pub closed: watch::Receiver<bool>,
}

/// The sending side of the events.
#[derive(Debug)]
pub(crate) struct Events {
    tx: broadcast::Sender<Arc<ContainerEvent>>,
    closed: watch::Sender<bool>,
    /// Held while an event is stamped and sent: the containers whose
    /// StartContainer has not yet announced Started (or failed).
    starting: Mutex<HashSet<String>>,
}

/// A StartContainer in flight; [`StartGuard::started`] announces it,
/// dropping it unannounced (a failed start) just ends it.
pub(crate) struct StartGuard<'a> {
    events: &'a Events,
    id: String,
}

impl StartGuard<'_> {
    /// Announces Started for `c`, then ends the start.
    pub(crate) fn started(
        self,
        pods: &dyn PodLookup,
        containers: &Objects<Container>,
        c: &Container,
    ) {
        let mut starting = self.events.lock();
        self.events
            .send(&starting, pods, containers, c, ContainerEventKind::Started);
        starting.remove(&self.id);
        // Dropping `self` then removes nothing more.
    }
}

impl Drop for StartGuard<'_> {
    fn drop(&mut self) {
        self.events.lock().remove(&self.id);
    }
}

impl Events {
    pub(crate) fn new() -> Events {
        Events {
            tx: broadcast::channel(BACKLOG).0,
            closed: watch::channel(false).0,
            starting: Mutex::new(HashSet::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashSet<String>> {
        self.starting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a StartContainer of container `id` about to run.
    pub(crate) fn starting(&self, id: &str) -> StartGuard<'_> {
        self.lock().insert(id.to_string());
        StartGuard {
            events: self,
            id: id.to_string(),
        }
    }

    /// Announces that `c` ended, unless a StartContainer of it has yet to
    /// announce Started: then nothing is sent and the caller must send
    /// once that start is over. Returns whether it was sent.
    pub(crate) fn stopped_unless_starting(
        &self,
        pods: &dyn PodLookup,
        containers: &Objects<Container>,
        c: &Container,
    ) -> bool {
        let starting = self.lock();
        if starting.contains(&c.id) {
            return false;
        }
        self.send(&starting, pods, containers, c, ContainerEventKind::Stopped);
        true
    }

    /// Subscribes to container events from now on.
    pub(crate) fn subscribe(&self) -> Subscription {
        Subscription {
            events: self.tx.subscribe(),
            closed: self.closed.subscribe(),
        }
    }

    /// Ends every event subscription (the daemon is stopping).
    pub(crate) fn close(&self) {
        self.closed.send_replace(true);
    }

    /// Sends an event about `c` to the subscribers, if there are any.
    pub(crate) fn emit(
        &self,
        pods: &dyn PodLookup,
        containers: &Objects<Container>,
        c: &Container,
        kind: ContainerEventKind,
    ) {
        let starting = self.lock();
        self.send(&starting, pods, containers, c, kind);
    }

    /// Stamps and sends an event; the caller holds the lock (`_held`), so
    /// events go out in the order of their stamps.
    fn send(
        &self,
        _held: &MutexGuard<'_, HashSet<String>>,
        pods: &dyn PodLookup,
        containers: &Objects<Container>,
        c: &Container,
        kind: ContainerEventKind,
    ) {
        if self.tx.receiver_count() == 0 {
            return;
        }
        let sandbox = pods.pod(&c.sandbox_id);
        let mut containers: Vec<Container> = containers
            .all()
            .iter()
            .map(|e| e.get())
            .filter(|x| x.sandbox_id == c.sandbox_id)
            .collect();
        match containers.iter_mut().find(|x| x.id == c.id) {
            Some(x) => *x = c.clone(),
            None => containers.push(c.clone()),
        }
        containers.sort_by_key(|x| x.created_at);
        // No subscriber left since the check: nothing to do.
        let _ = self.tx.send(Arc::new(ContainerEvent {
            container_id: c.id.clone(),
            kind,
            at: now_nanos(),
            sandbox,
            containers,
        }));
    }
}
