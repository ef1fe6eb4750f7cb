//! ListPodSandboxMetrics: every pod's and container's figures as the
//! cAdvisor-named metrics of [`list_metric_descriptors`](super::list_metric_descriptors).
//! The pod's own series carry name "POD" and its network counters.

use std::sync::Arc;

use crius_runtime::Runtime;
use crius_runtime::sandbox::SandboxFilter;
use crius_runtime::stats::{ContainerStats, PodStats, Usage};
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
    }
}

fn pod_metrics(p: &PodStats) -> PodSandboxMetrics {
    let mut pod = Series {
        base: [&p.sandbox.id, "POD", ""],
        at: p.usage.timestamp,
        out: Vec::new(),
    };
    pod.usage(&p.usage);
    for i in &p.interfaces {
        let name = [i.name.as_str()];
        pod.push(&d::NET_RX_BYTES, MetricType::Counter, &name, i.rx_bytes);
        pod.push(&d::NET_RX_ERRORS, MetricType::Counter, &name, i.rx_errors);
        pod.push(&d::NET_TX_BYTES, MetricType::Counter, &name, i.tx_bytes);
        pod.push(&d::NET_TX_ERRORS, MetricType::Counter, &name, i.tx_errors);
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
    if let Some(layer) = s.writable_layer {
        let mountpoint = s.layer_mountpoint.display().to_string();
        series.push(&d::FS_USAGE, MetricType::Gauge, &[&mountpoint], layer.bytes);
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
