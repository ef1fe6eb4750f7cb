//! The runtime's Prometheus metrics. The daemon owns the registry and
//! serves it; the runtime registers its metrics there and updates them as
//! things happen.

use prometheus::{IntCounterVec, Opts, Registry};

/// The metrics the runtime keeps.
#[derive(Debug, Clone)]
pub struct RuntimeMetrics {
    /// Pod sandboxes and containers created, by kind ("pod_sandbox",
    /// "container").
    pub created: IntCounterVec,
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
        Ok(RuntimeMetrics { created })
    }
}
