//! The runtime's Prometheus metrics. The daemon owns the registry and
//! serves it; the runtime registers its metrics there and updates them as
//! things happen.

use std::sync::Weak;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

use crate::records::container::ContainerState;
use crate::records::pod::SandboxState;

/// Buckets of operations that take milliseconds to minutes.
const LATENCY_BUCKETS: [f64; 15] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// The metrics the runtime keeps.
#[derive(Debug, Clone)]
pub struct RuntimeMetrics {
    /// Pod sandboxes and containers created, by kind ("pod_sandbox",
    /// "container").
    pub created: IntCounterVec,
    /// Image pulls.
    pub pulls: PullMetrics,
    /// Containers started.
    pub container_starts: IntCounter,
    /// Container exits, by reason ("Completed", "Error", "OOMKilled",
    /// "ContainerCannotRun", "Unknown").
    pub container_exits: IntCounterVec,
    /// Containers killed by the kernel's OOM killer.
    pub oom_kills: IntCounter,
    /// Durations of the phases of starting a pod, by phase
    /// ("pod_sandbox", "network_setup", "image_pull", "container_create",
    /// "container_start").
    pub start_phases: HistogramVec,
    /// CNI plugin calls, by plugin, command and result.
    pub cni_calls: IntCounterVec,
    /// CNI plugin call durations, by plugin and command.
    pub cni_duration: HistogramVec,
}

impl RuntimeMetrics {
    /// Registers the runtime's metrics in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<RuntimeMetrics> {
        let created = IntCounterVec::new(
            Opts::new(
                "crius_created_total",
                "Pod sandboxes and containers created, by kind.",
            ),
            &["kind"],
        )?;
        registry.register(Box::new(created.clone()))?;
        let container_starts = IntCounter::new(
            "crius_container_starts_total",
            "Containers started (StartContainer succeeded).",
        )?;
        let container_exits = IntCounterVec::new(
            Opts::new(
                "crius_container_exits_total",
                "Container exits, by reason (Completed, Error, OOMKilled, ContainerCannotRun, Unknown).",
            ),
            &["reason"],
        )?;
        let oom_kills = IntCounter::new(
            "crius_container_oom_kills_total",
            "Containers killed by the kernel's OOM killer.",
        )?;
        let start_phases = HistogramVec::new(
            HistogramOpts::new(
                "crius_pod_start_phase_duration_seconds",
                "Duration of the phases of starting a pod: pod_sandbox (all of RunPodSandbox), \
                 network_setup (CNI ADD), image_pull (successful pulls), container_create, \
                 container_start.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["phase"],
        )?;
        let cni_calls = IntCounterVec::new(
            Opts::new(
                "crius_cni_plugin_calls_total",
                "CNI plugin calls, by plugin type, command and result (success, error, timeout).",
            ),
            &["plugin", "command", "result"],
        )?;
        let cni_duration = HistogramVec::new(
            HistogramOpts::new(
                "crius_cni_plugin_duration_seconds",
                "Duration of CNI plugin calls, by plugin type and command.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["plugin", "command"],
        )?;
        for c in [&container_exits, &cni_calls] {
            registry.register(Box::new(c.clone()))?;
        }
        registry.register(Box::new(container_starts.clone()))?;
        registry.register(Box::new(oom_kills.clone()))?;
        registry.register(Box::new(start_phases.clone()))?;
        registry.register(Box::new(cni_duration.clone()))?;
        let mut pulls = PullMetrics::register(registry)?;
        pulls.phase = Some(start_phases.with_label_values(&["image_pull"]));
        Ok(RuntimeMetrics {
            created,
            pulls,
            container_starts,
            container_exits,
            oom_kills,
            start_phases,
            cni_calls,
            cni_duration,
        })
    }

    /// What records CNI plugin calls.
    pub(crate) fn cni_observer(&self) -> crius_cni::CallObserver {
        let (calls, duration) = (self.cni_calls.clone(), self.cni_duration.clone());
        crius_cni::CallObserver(std::sync::Arc::new(move |c: &crius_cni::PluginCall<'_>| {
            calls
                .with_label_values(&[c.plugin, c.command, c.result])
                .inc();
            duration
                .with_label_values(&[c.plugin, c.command])
                .observe(c.duration.as_secs_f64());
        }))
    }

    /// Records a phase of starting a pod.
    pub(crate) fn phase(&self, phase: &str, began: std::time::Instant) {
        self.start_phases
            .with_label_values(&[phase])
            .observe(began.elapsed().as_secs_f64());
    }
}

/// What the state gauges read when scraped.
pub(crate) trait StateSource: Send + Sync {
    /// The state of every pod.
    fn pod_states(&self) -> Vec<SandboxState>;
    /// The state and monitor PID of every container.
    fn container_states(&self) -> Vec<(ContainerState, i32)>;
}

/// Gauges read when scraped: pods and containers by state, and the
/// monitor processes' count and memory.
pub(crate) struct StateCollector {
    runtime: Weak<dyn StateSource>,
    pods: IntGaugeVec,
    containers: IntGaugeVec,
    monitors: IntGauge,
    monitor_rss: IntGauge,
    descs: Vec<Desc>,
}

impl StateCollector {
    /// Registers the collector over `runtime` in `registry`.
    pub(crate) fn register(
        registry: &Registry,
        runtime: Weak<dyn StateSource>,
    ) -> prometheus::Result<()> {
        let pods = IntGaugeVec::new(
            Opts::new(
                "crius_pod_sandboxes",
                "Pod sandboxes, by state (ready, notready).",
            ),
            &["state"],
        )?;
        let containers = IntGaugeVec::new(
            Opts::new(
                "crius_containers",
                "Containers, by state (created, running, exited, unknown).",
            ),
            &["state"],
        )?;
        let monitors = IntGauge::new(
            "crius_monitor_processes",
            "Per-container monitor processes alive.",
        )?;
        let monitor_rss = IntGauge::new(
            "crius_monitor_resident_memory_bytes",
            "Resident memory of all per-container monitor processes together.",
        )?;
        let descs = [
            pods.desc(),
            containers.desc(),
            monitors.desc(),
            monitor_rss.desc(),
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
        registry.register(Box::new(StateCollector {
            runtime,
            pods,
            containers,
            monitors,
            monitor_rss,
            descs,
        }))
    }
}

impl Collector for StateCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let Some(rt) = self.runtime.upgrade() else {
            return Vec::new();
        };
        for state in ["ready", "notready"] {
            self.pods.with_label_values(&[state]).set(0);
        }
        for state in rt.pod_states() {
            let state = match state {
                SandboxState::Ready => "ready",
                SandboxState::NotReady => "notready",
            };
            self.pods.with_label_values(&[state]).inc();
        }
        for state in ["created", "running", "exited", "unknown"] {
            self.containers.with_label_values(&[state]).set(0);
        }
        let (mut monitors, mut rss) = (0, 0);
        let page = page_size();
        for (state, monitor) in rt.container_states() {
            let label = match state {
                ContainerState::Created => "created",
                ContainerState::Running => "running",
                ContainerState::Exited => "exited",
                ContainerState::Unknown => "unknown",
            };
            self.containers.with_label_values(&[label]).inc();
            // Resident pages: the second field of statm. A monitor that
            // has exited (or a reused pid that is no monitor) is skipped.
            if monitor > 0
                && let Ok(statm) = std::fs::read_to_string(format!("/proc/{monitor}/statm"))
                && let Some(pages) = statm.split(' ').nth(1).and_then(|p| p.parse::<i64>().ok())
                && is_monitor(monitor)
            {
                monitors += 1;
                rss += pages * page;
            }
        }
        self.monitors.set(monitors);
        self.monitor_rss.set(rss);
        let mut out = self.pods.collect();
        out.extend(self.containers.collect());
        out.extend(self.monitors.collect());
        out.extend(self.monitor_rss.collect());
        out
    }
}

/// Whether process `pid` runs the monitor binary.
fn is_monitor(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .is_ok_and(|c| c.trim_end().starts_with("crius-monitor"))
}

fn page_size() -> i64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .unwrap_or(4096)
}

/// Image pull metrics. Labels carry outcomes only, never references or
/// credentials.
#[derive(Debug, Clone)]
pub struct PullMetrics {
    /// Pulls by result: "success", "invalid_reference", "not_found",
    /// "auth_failed", "unavailable", "bad_content", "error".
    pub pulls: IntCounterVec,
    /// Bytes received from registries (manifests, configs, layers).
    pub bytes: IntCounter,
    /// Duration of pulls, successful or not.
    pub duration: Histogram,
    /// The "image_pull" phase of pod start, for successful pulls.
    pub phase: Option<Histogram>,
}

impl PullMetrics {
    /// Registers the pull metrics in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<PullMetrics> {
        let pulls = IntCounterVec::new(
            Opts::new("crius_image_pulls_total", "Image pulls, by result."),
            &["result"],
        )?;
        let bytes = IntCounter::new(
            "crius_image_pull_bytes_total",
            "Bytes fetched from registries by image pulls.",
        )?;
        let duration = Histogram::with_opts(
            HistogramOpts::new(
                "crius_image_pull_duration_seconds",
                "Duration of image pulls, successful or not.",
            )
            .buckets(vec![
                0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
            ]),
        )?;
        registry.register(Box::new(pulls.clone()))?;
        registry.register(Box::new(bytes.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        Ok(PullMetrics {
            pulls,
            bytes,
            duration,
            phase: None,
        })
    }
}
