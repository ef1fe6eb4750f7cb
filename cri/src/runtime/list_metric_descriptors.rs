//! ListMetricDescriptors: the cAdvisor-named metrics that
//! ListPodSandboxMetrics reports, for kubelet's CRI-only stats path
//! (`PodAndContainerStatsFromCRI`), which turns them into Prometheus
//! series on its /metrics/cadvisor endpoint. Names, help and label keys
//! follow cAdvisor (and CRI-O, which serves the same).

use k8s_cri::v1::{ListMetricDescriptorsRequest, ListMetricDescriptorsResponse, MetricDescriptor};
use tonic::Status;

/// `container_pressure_cpu_waiting_seconds_total`: PSI "some" of cpu.pressure.
pub(crate) const PRESSURE_CPU_WAITING: Descriptor = Descriptor {
    name: "container_pressure_cpu_waiting_seconds_total",
    help: "Total time duration tasks in the container have waited due to CPU congestion.",
    extra_labels: &[],
};
/// `container_pressure_cpu_stalled_seconds_total`: PSI "full" of cpu.pressure.
pub(crate) const PRESSURE_CPU_STALLED: Descriptor = Descriptor {
    name: "container_pressure_cpu_stalled_seconds_total",
    help: "Total time duration no tasks in the container could make progress due to CPU congestion.",
    extra_labels: &[],
};
/// `container_pressure_memory_waiting_seconds_total`: PSI "some" of memory.pressure.
pub(crate) const PRESSURE_MEMORY_WAITING: Descriptor = Descriptor {
    name: "container_pressure_memory_waiting_seconds_total",
    help: "Total time duration tasks in the container have waited due to memory congestion.",
    extra_labels: &[],
};
/// `container_pressure_memory_stalled_seconds_total`: PSI "full" of memory.pressure.
pub(crate) const PRESSURE_MEMORY_STALLED: Descriptor = Descriptor {
    name: "container_pressure_memory_stalled_seconds_total",
    help: "Total time duration no tasks in the container could make progress due to memory congestion.",
    extra_labels: &[],
};
/// `container_pressure_io_waiting_seconds_total`: PSI "some" of io.pressure.
pub(crate) const PRESSURE_IO_WAITING: Descriptor = Descriptor {
    name: "container_pressure_io_waiting_seconds_total",
    help: "Total time duration tasks in the container have waited due to I/O congestion.",
    extra_labels: &[],
};
/// `container_pressure_io_stalled_seconds_total`: PSI "full" of io.pressure.
pub(crate) const PRESSURE_IO_STALLED: Descriptor = Descriptor {
    name: "container_pressure_io_stalled_seconds_total",
    help: "Total time duration no tasks in the container could make progress due to I/O congestion.",
    extra_labels: &[],
};

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

/// `container_cpu_cfs_periods_total`: Number of elapsed enforcement period intervals.
pub(crate) const CFS_PERIODS: Descriptor = Descriptor {
    name: "container_cpu_cfs_periods_total",
    help: "Number of elapsed enforcement period intervals.",
    extra_labels: &[],
};
/// `container_cpu_cfs_throttled_periods_total`: Number of throttled period intervals.
pub(crate) const CFS_THROTTLED_PERIODS: Descriptor = Descriptor {
    name: "container_cpu_cfs_throttled_periods_total",
    help: "Number of throttled period intervals.",
    extra_labels: &[],
};
/// `container_cpu_cfs_throttled_seconds_total`: Total time duration the container has been throttled.
pub(crate) const CFS_THROTTLED_SECONDS: Descriptor = Descriptor {
    name: "container_cpu_cfs_throttled_seconds_total",
    help: "Total time duration the container has been throttled.",
    extra_labels: &[],
};
/// `container_cpu_system_seconds_total`: Cumulative system cpu time consumed in seconds.
pub(crate) const CPU_SYSTEM: Descriptor = Descriptor {
    name: "container_cpu_system_seconds_total",
    help: "Cumulative system cpu time consumed in seconds.",
    extra_labels: &[],
};
/// `container_cpu_user_seconds_total`: Cumulative user cpu time consumed in seconds.
pub(crate) const CPU_USER: Descriptor = Descriptor {
    name: "container_cpu_user_seconds_total",
    help: "Cumulative user cpu time consumed in seconds.",
    extra_labels: &[],
};
/// `container_file_descriptors`: Number of open file descriptors for the container.
pub(crate) const FILE_DESCRIPTORS: Descriptor = Descriptor {
    name: "container_file_descriptors",
    help: "Number of open file descriptors for the container.",
    extra_labels: &[],
};
/// `container_sockets`: Number of open sockets for the container.
pub(crate) const SOCKETS: Descriptor = Descriptor {
    name: "container_sockets",
    help: "Number of open sockets for the container.",
    extra_labels: &[],
};
/// `container_fs_inodes_free`: Number of available Inodes
pub(crate) const FS_INODES_FREE: Descriptor = Descriptor {
    name: "container_fs_inodes_free",
    help: "Number of available Inodes",
    extra_labels: &["device"],
};
/// `container_fs_inodes_total`: Number of Inodes
pub(crate) const FS_INODES_TOTAL: Descriptor = Descriptor {
    name: "container_fs_inodes_total",
    help: "Number of Inodes",
    extra_labels: &["device"],
};
/// `container_fs_limit_bytes`: Number of bytes that can be consumed by the container on this filesystem.
pub(crate) const FS_LIMIT: Descriptor = Descriptor {
    name: "container_fs_limit_bytes",
    help: "Number of bytes that can be consumed by the container on this filesystem.",
    extra_labels: &["device"],
};
/// `container_fs_reads_bytes_total`: Cumulative count of bytes read
pub(crate) const FS_READS_BYTES: Descriptor = Descriptor {
    name: "container_fs_reads_bytes_total",
    help: "Cumulative count of bytes read",
    extra_labels: &["device"],
};
/// `container_fs_reads_total`: Cumulative count of reads completed
pub(crate) const FS_READS: Descriptor = Descriptor {
    name: "container_fs_reads_total",
    help: "Cumulative count of reads completed",
    extra_labels: &["device"],
};
/// `container_fs_writes_bytes_total`: Cumulative count of bytes written
pub(crate) const FS_WRITES_BYTES: Descriptor = Descriptor {
    name: "container_fs_writes_bytes_total",
    help: "Cumulative count of bytes written",
    extra_labels: &["device"],
};
/// `container_fs_writes_total`: Cumulative count of writes completed
pub(crate) const FS_WRITES: Descriptor = Descriptor {
    name: "container_fs_writes_total",
    help: "Cumulative count of writes completed",
    extra_labels: &["device"],
};
/// `container_blkio_device_usage_total`: Blkio Device bytes usage
pub(crate) const BLKIO_DEVICE_USAGE: Descriptor = Descriptor {
    name: "container_blkio_device_usage_total",
    help: "Blkio Device bytes usage",
    extra_labels: &["device", "major", "minor", "operation"],
};
/// `container_last_seen`: Last time a container was seen by the exporter
pub(crate) const LAST_SEEN: Descriptor = Descriptor {
    name: "container_last_seen",
    help: "Last time a container was seen by the exporter",
    extra_labels: &[],
};
/// `container_memory_cache`: Number of bytes of page cache memory.
pub(crate) const MEMORY_CACHE: Descriptor = Descriptor {
    name: "container_memory_cache",
    help: "Number of bytes of page cache memory.",
    extra_labels: &[],
};
/// `container_memory_failcnt`: Number of memory usage hits limits
pub(crate) const MEMORY_FAILCNT: Descriptor = Descriptor {
    name: "container_memory_failcnt",
    help: "Number of memory usage hits limits",
    extra_labels: &[],
};
/// `container_memory_failures_total`: Cumulative count of memory allocation failures.
pub(crate) const MEMORY_FAILURES: Descriptor = Descriptor {
    name: "container_memory_failures_total",
    help: "Cumulative count of memory allocation failures.",
    extra_labels: &["failure_type", "scope"],
};
/// `container_memory_kernel_usage`: Size of kernel memory allocated in bytes.
pub(crate) const MEMORY_KERNEL: Descriptor = Descriptor {
    name: "container_memory_kernel_usage",
    help: "Size of kernel memory allocated in bytes.",
    extra_labels: &[],
};
/// `container_memory_mapped_file`: Size of memory mapped files in bytes.
pub(crate) const MEMORY_MAPPED_FILE: Descriptor = Descriptor {
    name: "container_memory_mapped_file",
    help: "Size of memory mapped files in bytes.",
    extra_labels: &[],
};
/// `container_memory_max_usage_bytes`: Maximum memory usage recorded in bytes
pub(crate) const MEMORY_MAX_USAGE: Descriptor = Descriptor {
    name: "container_memory_max_usage_bytes",
    help: "Maximum memory usage recorded in bytes",
    extra_labels: &[],
};
/// `container_memory_swap`: Container swap usage in bytes.
pub(crate) const MEMORY_SWAP: Descriptor = Descriptor {
    name: "container_memory_swap",
    help: "Container swap usage in bytes.",
    extra_labels: &[],
};
/// `container_network_receive_packets_total`: Cumulative count of packets received
pub(crate) const NET_RX_PACKETS: Descriptor = Descriptor {
    name: "container_network_receive_packets_total",
    help: "Cumulative count of packets received",
    extra_labels: &["interface"],
};
/// `container_network_receive_packets_dropped_total`: Cumulative count of packets dropped while receiving
pub(crate) const NET_RX_DROPPED: Descriptor = Descriptor {
    name: "container_network_receive_packets_dropped_total",
    help: "Cumulative count of packets dropped while receiving",
    extra_labels: &["interface"],
};
/// `container_network_transmit_packets_total`: Cumulative count of packets transmitted
pub(crate) const NET_TX_PACKETS: Descriptor = Descriptor {
    name: "container_network_transmit_packets_total",
    help: "Cumulative count of packets transmitted",
    extra_labels: &["interface"],
};
/// `container_network_transmit_packets_dropped_total`: Cumulative count of packets dropped while transmitting
pub(crate) const NET_TX_DROPPED: Descriptor = Descriptor {
    name: "container_network_transmit_packets_dropped_total",
    help: "Cumulative count of packets dropped while transmitting",
    extra_labels: &["interface"],
};
/// `container_spec_cpu_period`: CPU period of the container.
pub(crate) const SPEC_CPU_PERIOD: Descriptor = Descriptor {
    name: "container_spec_cpu_period",
    help: "CPU period of the container.",
    extra_labels: &[],
};
/// `container_spec_cpu_shares`: CPU share of the container.
pub(crate) const SPEC_CPU_SHARES: Descriptor = Descriptor {
    name: "container_spec_cpu_shares",
    help: "CPU share of the container.",
    extra_labels: &[],
};
/// `container_spec_memory_limit_bytes`: Memory limit for the container.
pub(crate) const SPEC_MEMORY_LIMIT: Descriptor = Descriptor {
    name: "container_spec_memory_limit_bytes",
    help: "Memory limit for the container.",
    extra_labels: &[],
};
/// `container_spec_memory_swap_limit_bytes`: Memory swap limit for the container.
pub(crate) const SPEC_MEMORY_SWAP_LIMIT: Descriptor = Descriptor {
    name: "container_spec_memory_swap_limit_bytes",
    help: "Memory swap limit for the container.",
    extra_labels: &[],
};
/// `container_start_time_seconds`: Start time of the container since unix epoch in seconds.
pub(crate) const START_TIME: Descriptor = Descriptor {
    name: "container_start_time_seconds",
    help: "Start time of the container since unix epoch in seconds.",
    extra_labels: &[],
};
/// `container_threads`: Number of threads running inside the container
pub(crate) const THREADS: Descriptor = Descriptor {
    name: "container_threads",
    help: "Number of threads running inside the container",
    extra_labels: &[],
};
/// `container_threads_max`: Maximum number of threads allowed inside the container, infinity if value is zero
pub(crate) const THREADS_MAX: Descriptor = Descriptor {
    name: "container_threads_max",
    help: "Maximum number of threads allowed inside the container, infinity if value is zero",
    extra_labels: &[],
};

/// Every metric ListPodSandboxMetrics may report.
pub(crate) const ALL: &[&Descriptor] = &[
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
    &CFS_PERIODS,
    &CFS_THROTTLED_PERIODS,
    &CFS_THROTTLED_SECONDS,
    &CPU_SYSTEM,
    &CPU_USER,
    &FILE_DESCRIPTORS,
    &SOCKETS,
    &FS_INODES_FREE,
    &FS_INODES_TOTAL,
    &FS_LIMIT,
    &FS_READS_BYTES,
    &FS_READS,
    &FS_WRITES_BYTES,
    &FS_WRITES,
    &BLKIO_DEVICE_USAGE,
    &LAST_SEEN,
    &MEMORY_CACHE,
    &MEMORY_FAILCNT,
    &MEMORY_FAILURES,
    &MEMORY_KERNEL,
    &MEMORY_MAPPED_FILE,
    &MEMORY_MAX_USAGE,
    &MEMORY_SWAP,
    &NET_RX_PACKETS,
    &NET_RX_DROPPED,
    &NET_TX_PACKETS,
    &NET_TX_DROPPED,
    &SPEC_CPU_PERIOD,
    &SPEC_CPU_SHARES,
    &SPEC_MEMORY_LIMIT,
    &SPEC_MEMORY_SWAP_LIMIT,
    &START_TIME,
    &THREADS,
    &THREADS_MAX,
    &PRESSURE_CPU_WAITING,
    &PRESSURE_CPU_STALLED,
    &PRESSURE_MEMORY_WAITING,
    &PRESSURE_MEMORY_STALLED,
    &PRESSURE_IO_WAITING,
    &PRESSURE_IO_STALLED,
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
