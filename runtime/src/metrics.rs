//! The runtime's Prometheus metrics. The daemon owns the registry and
//! serves it; the runtime registers its metrics there and updates them as
//! things happen.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry};

/// The metrics the runtime keeps.
#[derive(Debug, Clone)]
pub struct RuntimeMetrics {
    /// Pod sandboxes and containers created, by kind ("pod_sandbox",
    /// "container").
    pub created: IntCounterVec,
    /// Image pulls.
    pub pulls: PullMetrics,
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
        Ok(RuntimeMetrics {
            created,
            pulls: PullMetrics::register(registry)?,
        })
    }
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
        })
    }
}
