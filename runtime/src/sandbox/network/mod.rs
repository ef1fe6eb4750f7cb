//! A pod's network, behind [`NetworkBackend`]: attaching the pod's pinned
//! network namespace, detaching it, telling whether a detach is still
//! owed, the network's readiness, and collecting the attachments no pod
//! has any more. The CNI backend ([`CniBackend`]) is the one there is
//! today; a built-in network comes in as a second implementation. The
//! namespace itself is made and removed by `sandbox::namespaces`.

mod cni;

use std::path::Path;

use futures_util::future::BoxFuture;

pub use cni::{CniBackend, bandwidth, ips};

use super::PodConfig;
use crate::error::Result;

/// The interface a pod's network appears as inside the pod.
pub const POD_IFNAME: &str = "eth0";

/// What a backend is told of a pod to attach or detach.
#[derive(Debug, Clone, Copy)]
pub struct PodNetwork<'a> {
    /// The pod's id.
    pub id: &'a str,
    /// The pod's config (names, port mappings, DNS, annotations).
    pub config: &'a PodConfig,
    /// Where the pod's network namespace is pinned.
    pub netns: &'a Path,
}

/// What attaching a pod gave it.
#[derive(Debug, Clone, PartialEq)]
pub struct Attached {
    /// Its IPs, IPv4 first (kubelet takes the first as the pod's primary).
    pub ips: Vec<String>,
    /// The backend's own account of what it did (for CNI, the chain's
    /// final result), shown by PodSandboxStatus verbose as `cniResult`.
    pub result: serde_json::Value,
}

/// Whether the network can take pods, as CRI's Status reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkStatus {
    /// Pods can be attached.
    pub ready: bool,
    /// Machine-readable reason when not ready (`NetworkPluginNotReady`).
    pub reason: String,
    /// Human-readable message when not ready.
    pub message: String,
}

/// What [`NetworkBackend::collect`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Collected {
    /// The attachments detached, as (pod id, network, interface).
    pub detached: Vec<(String, String, String)>,
    /// What failed (collection goes on past failures).
    pub errors: Vec<String>,
}

/// How pods are attached to the node's network.
pub trait NetworkBackend: Send + Sync + std::fmt::Debug {
    /// Attaches the pod; returns its IPs, IPv4 first, and the result. A
    /// failed attach has been undone when this returns.
    fn attach<'a>(&'a self, pod: PodNetwork<'a>) -> BoxFuture<'a, Result<Attached>>;

    /// Detaches the pod. Safe to call again after it succeeded.
    fn detach<'a>(&'a self, pod: PodNetwork<'a>) -> BoxFuture<'a, Result<()>>;

    /// Whether a detach is still owed for pod `id`: until then its network
    /// namespace must stay, since what to undo is found through it.
    fn is_attached<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool>>;

    /// Whether the network is ready for pods.
    fn status(&self) -> BoxFuture<'_, NetworkStatus>;

    /// Detaches every attachment that belongs to none of the pods in
    /// `attached` (ids of pods whose network is still theirs).
    fn collect<'a>(&'a self, attached: &'a [String]) -> BoxFuture<'a, Result<Collected>>;
}
