//! ListMetricDescriptors: the cAdvisor-named metrics that
//! ListPodSandboxMetrics reports, for kubelet's CRI-only stats path
//! (`PodAndContainerStatsFromCRI`), which turns them into Prometheus
//! series on its /metrics/cadvisor endpoint. Names, help and label keys
//! follow cAdvisor (and CRI-O, which serves the same).

use k8s_cri::v1::{ListMetricDescriptorsRequest, ListMetricDescriptorsResponse, MetricDescriptor};
use tonic::Status;

/// The labels every metric carries: container id, container name ("POD"
/// for the pod's own), image.
pub(crate) const BASE_LABELS: [&str; 3] = ["id", "name", "image"];

/// A metric crius reports: name, help, the labels after [`BASE_LABELS`].
pub(crate) struct Descriptor {
    pub name: &'static str,
    pub help: &'static str,
    pub extra_labels: &'static [&'static str],
}

/// CPU time in seconds (label `cpu` = "total").
pub(crate) const CPU_USAGE: Descriptor = Descriptor {
    name: "container_cpu_usage_seconds_total",
    help: "Cumulative cpu time consumed in seconds.",
    extra_labels: &["cpu"],
};
/// Memory usage.
pub(crate) const MEMORY_USAGE: Descriptor = Descriptor {
    name: "container_memory_usage_bytes",
    help: "Current memory usage in bytes, including all memory regardless of when it was accessed",
    extra_labels: &[],
};
/// Working set.
pub(crate) const MEMORY_WORKING_SET: Descriptor = Descriptor {
    name: "container_memory_working_set_bytes",
    help: "Current working set in bytes.",
    extra_labels: &[],
};
/// RSS.
pub(crate) const MEMORY_RSS: Descriptor = Descriptor {
    name: "container_memory_rss",
    help: "Size of RSS in bytes.",
    extra_labels: &[],
};
/// Processes.
pub(crate) const PROCESSES: Descriptor = Descriptor {
    name: "container_processes",
    help: "Number of processes running inside the container.",
    extra_labels: &[],
};
/// Writable layer bytes.
pub(crate) const FS_USAGE: Descriptor = Descriptor {
    name: "container_fs_usage_bytes",
    help: "Number of bytes that are consumed by the container on this filesystem.",
    extra_labels: &["device"],
};
/// OOM kills.
pub(crate) const OOM_EVENTS: Descriptor = Descriptor {
    name: "container_oom_events_total",
    help: "Count of out of memory events observed for the container",
    extra_labels: &[],
};
/// Bytes received, by interface.
pub(crate) const NET_RX_BYTES: Descriptor = Descriptor {
    name: "container_network_receive_bytes_total",
    help: "Cumulative count of bytes received",
    extra_labels: &["interface"],
};
/// Receive errors, by interface.
pub(crate) const NET_RX_ERRORS: Descriptor = Descriptor {
    name: "container_network_receive_errors_total",
    help: "Cumulative count of errors encountered while receiving",
    extra_labels: &["interface"],
};
/// Bytes sent, by interface.
pub(crate) const NET_TX_BYTES: Descriptor = Descriptor {
    name: "container_network_transmit_bytes_total",
    help: "Cumulative count of bytes transmitted",
    extra_labels: &["interface"],
};
/// Transmit errors, by interface.
pub(crate) const NET_TX_ERRORS: Descriptor = Descriptor {
    name: "container_network_transmit_errors_total",
    help: "Cumulative count of errors encountered while transmitting",
    extra_labels: &["interface"],
};

/// Every metric ListPodSandboxMetrics may report.
pub(crate) const ALL: [&Descriptor; 11] = [
    &CPU_USAGE,
    &MEMORY_USAGE,
    &MEMORY_WORKING_SET,
    &MEMORY_RSS,
    &PROCESSES,
    &FS_USAGE,
    &OOM_EVENTS,
    &NET_RX_BYTES,
    &NET_RX_ERRORS,
    &NET_TX_BYTES,
    &NET_TX_ERRORS,
];

/// Handles ListMetricDescriptors.
pub fn handle(_req: ListMetricDescriptorsRequest) -> Result<ListMetricDescriptorsResponse, Status> {
    Ok(ListMetricDescriptorsResponse {
        descriptors: ALL
            .iter()
            .map(|d| MetricDescriptor {
                name: d.name.to_string(),
                help: d.help.to_string(),
                label_keys: BASE_LABELS
                    .iter()
                    .chain(d.extra_labels)
                    .map(|s| s.to_string())
                    .collect(),
            })
            .collect(),
    })
}
