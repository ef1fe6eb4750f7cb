//! ListPodSandboxMetrics: every pod's and container's figures as the
//! cAdvisor-named metrics of [`list_metric_descriptors`](super::list_metric_descriptors).
//! The pod's own series carry name "POD" and its network counters.

use std::sync::Arc;

use crius_runtime::Runtime;
use crius_runtime::sandbox::SandboxFilter;
use crius_runtime::stats::{ContainerStats, Detail, PodStats, Usage};
use k8s_cri::v1::{
    ContainerMetrics, ListPodSandboxMetricsRequest, ListPodSandboxMetricsResponse, Metric,
    MetricType, PodSandboxMetrics, UInt64Value,
};
use tonic::Status;

use super::list_metric_descriptors::{self as d, Descriptor};
use crate::error::to_status;

/// Handles ListPodSandboxMetrics.
pub async fn handle(
    rt: &Arc<Runtime>,
    _req: ListPodSandboxMetricsRequest,
) -> Result<ListPodSandboxMetricsResponse, Status> {
    let pods = rt
        .list_pod_stats(SandboxFilter::default())
        .await
        .map_err(to_status)?;
    Ok(ListPodSandboxMetricsResponse {
        pod_metrics: pods.iter().map(pod_metrics).collect(),
    })
}

/// Builds the metrics of one object, all with the same base labels.
struct Series<'a> {
    base: [&'a str; 3],
    at: i64,
    out: Vec<Metric>,
}

impl Series<'_> {
    fn push(&mut self, desc: &Descriptor, kind: MetricType, extra: &[&str], value: u64) {
        self.out.push(Metric {
            name: desc.name.to_string(),
            timestamp: self.at,
            metric_type: kind as i32,
            label_values: self
                .base
                .iter()
                .chain(extra)
                .map(|s| s.to_string())
                .collect(),
            value: Some(UInt64Value { value }),
        });
    }

    fn usage(&mut self, u: &Usage) {
        if let Some(ns) = u.cpu_usage_ns {
            // Whole seconds: the CRI carries integers (CRI-O does the same).
            self.push(
                &d::CPU_USAGE,
                MetricType::Counter,
                &["total"],
                ns / 1_000_000_000,
            );
        }
        if let Some(m) = &u.memory {
            self.push(&d::MEMORY_USAGE, MetricType::Gauge, &[], m.usage_bytes);
            self.push(
                &d::MEMORY_WORKING_SET,
                MetricType::Gauge,
                &[],
                m.working_set_bytes,
            );
            self.push(&d::MEMORY_RSS, MetricType::Gauge, &[], m.rss_bytes);
        }
        if let Some(n) = u.processes {
            self.push(&d::PROCESSES, MetricType::Gauge, &[], n);
        }
        self.detail(&u.detail);
        self.push(&d::LAST_SEEN, MetricType::Gauge, &[], seconds(self.at));
    }

    /// Pushes `value` when known.
    fn opt(&mut self, desc: &Descriptor, kind: MetricType, extra: &[&str], value: Option<u64>) {
        if let Some(v) = value {
            self.push(desc, kind, extra, v);
        }
    }

    fn detail(&mut self, x: &Detail) {
        use MetricType::{Counter, Gauge};
        let secs = |ns: Option<u64>| ns.map(|n| n / 1_000_000_000);
        self.opt(&d::CFS_PERIODS, Counter, &[], x.cfs_periods);
        self.opt(
            &d::CFS_THROTTLED_PERIODS,
            Counter,
            &[],
            x.cfs_throttled_periods,
        );
        self.opt(
            &d::CFS_THROTTLED_SECONDS,
            Counter,
            &[],
            secs(x.cfs_throttled_ns),
        );
        self.opt(&d::CPU_USER, Counter, &[], secs(x.cpu_user_ns));
        self.opt(&d::CPU_SYSTEM, Counter, &[], secs(x.cpu_system_ns));
        self.opt(&d::MEMORY_CACHE, Gauge, &[], x.memory_cache);
        self.opt(&d::MEMORY_MAPPED_FILE, Gauge, &[], x.memory_mapped_file);
        self.opt(&d::MEMORY_SWAP, Gauge, &[], x.memory_swap);
        self.opt(&d::MEMORY_KERNEL, Gauge, &[], x.memory_kernel);
        self.opt(&d::MEMORY_FAILCNT, Counter, &[], x.memory_failcnt);
        self.opt(&d::MEMORY_MAX_USAGE, Gauge, &[], x.memory_max_usage);
        for (kind, scope, v) in [
            ("pgfault", "container", x.pgfault),
            ("pgmajfault", "container", x.pgmajfault),
            ("pgfault", "hierarchy", x.pgfault_hierarchy),
            ("pgmajfault", "hierarchy", x.pgmajfault_hierarchy),
        ] {
            self.opt(&d::MEMORY_FAILURES, Counter, &[kind, scope], v);
        }
        self.opt(&d::THREADS, Gauge, &[], x.threads);
        self.opt(&d::THREADS_MAX, Gauge, &[], x.threads_max);
        self.opt(&d::FILE_DESCRIPTORS, Gauge, &[], x.file_descriptors);
        self.opt(&d::SOCKETS, Gauge, &[], x.sockets);
        self.opt(&d::SPEC_CPU_PERIOD, Gauge, &[], x.spec_cpu_period);
        self.opt(&d::SPEC_CPU_SHARES, Gauge, &[], x.spec_cpu_shares);
        self.opt(&d::SPEC_MEMORY_LIMIT, Gauge, &[], x.spec_memory_limit);
        self.opt(
            &d::SPEC_MEMORY_SWAP_LIMIT,
            Gauge,
            &[],
            x.spec_memory_swap_limit,
        );
        // PSI totals are microseconds; whole seconds, as for CPU time.
        for (waiting, stalled, p) in [
            (
                &d::PRESSURE_CPU_WAITING,
                &d::PRESSURE_CPU_STALLED,
                x.cpu_pressure,
            ),
            (
                &d::PRESSURE_MEMORY_WAITING,
                &d::PRESSURE_MEMORY_STALLED,
                x.memory_pressure,
            ),
            (
                &d::PRESSURE_IO_WAITING,
                &d::PRESSURE_IO_STALLED,
                x.io_pressure,
            ),
        ] {
            let Some(p) = p else { continue };
            self.push(waiting, Counter, &[], p.some_us / 1_000_000);
            self.opt(stalled, Counter, &[], p.full_us.map(|us| us / 1_000_000));
        }
        for b in &x.blkio {
            let dev = b.name();
            let (major, minor) = (b.major.to_string(), b.minor.to_string());
            for (op, v) in [("Read", b.read_bytes), ("Write", b.write_bytes)] {
                self.push(
                    &d::BLKIO_DEVICE_USAGE,
                    Counter,
                    &[&dev, &major, &minor, op],
                    v,
                );
            }
            self.push(&d::FS_READS_BYTES, Counter, &[&dev], b.read_bytes);
            self.push(&d::FS_READS, Counter, &[&dev], b.reads);
            self.push(&d::FS_WRITES_BYTES, Counter, &[&dev], b.write_bytes);
            self.push(&d::FS_WRITES, Counter, &[&dev], b.writes);
        }
    }
}

/// Unix nanoseconds as whole seconds (0 before the epoch).
fn seconds(nanos: i64) -> u64 {
    u64::try_from(nanos / 1_000_000_000).unwrap_or(0)
}

fn pod_metrics(p: &PodStats) -> PodSandboxMetrics {
    let mut pod = Series {
        base: [&p.sandbox.id, "POD", ""],
        at: p.usage.timestamp,
        out: Vec::new(),
    };
    pod.usage(&p.usage);
    pod.push(
        &d::START_TIME,
        MetricType::Gauge,
        &[],
        seconds(p.sandbox.created_at),
    );
    for i in &p.interfaces {
        let name = [i.name.as_str()];
        pod.push(&d::NET_RX_BYTES, MetricType::Counter, &name, i.rx_bytes);
        pod.push(&d::NET_RX_PACKETS, MetricType::Counter, &name, i.rx_packets);
        pod.push(&d::NET_RX_ERRORS, MetricType::Counter, &name, i.rx_errors);
        pod.push(&d::NET_RX_DROPPED, MetricType::Counter, &name, i.rx_dropped);
        pod.push(&d::NET_TX_BYTES, MetricType::Counter, &name, i.tx_bytes);
        pod.push(&d::NET_TX_PACKETS, MetricType::Counter, &name, i.tx_packets);
        pod.push(&d::NET_TX_ERRORS, MetricType::Counter, &name, i.tx_errors);
        pod.push(&d::NET_TX_DROPPED, MetricType::Counter, &name, i.tx_dropped);
    }
    PodSandboxMetrics {
        pod_sandbox_id: p.sandbox.id.clone(),
        metrics: pod.out,
        container_metrics: p.containers.iter().map(container_metrics).collect(),
    }
}

fn container_metrics(s: &ContainerStats) -> ContainerMetrics {
    let c = &s.container;
    let mut series = Series {
        base: [&c.id, &c.config.name, &c.config.image],
        at: s.usage.timestamp,
        out: Vec::new(),
    };
    series.usage(&s.usage);
    let mountpoint = s.layer_mountpoint.display().to_string();
    if let Some(layer) = s.writable_layer {
        series.push(&d::FS_USAGE, MetricType::Gauge, &[&mountpoint], layer.bytes);
    }
    if let Some(fs) = s.layer_fs {
        let dev = [mountpoint.as_str()];
        series.push(&d::FS_LIMIT, MetricType::Gauge, &dev, fs.limit_bytes);
        series.push(
            &d::FS_INODES_TOTAL,
            MetricType::Gauge,
            &dev,
            fs.inodes_total,
        );
        series.push(&d::FS_INODES_FREE, MetricType::Gauge, &dev, fs.inodes_free);
    }
    if c.started_at > 0 {
        series.push(
            &d::START_TIME,
            MetricType::Gauge,
            &[],
            seconds(c.started_at),
        );
    }
    series.push(
        &d::OOM_EVENTS,
        MetricType::Counter,
        &[],
        u64::from(c.oom_killed),
    );
    ContainerMetrics {
        container_id: c.id.clone(),
        metrics: series.out,
    }
}
