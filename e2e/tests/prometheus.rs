//! A real Prometheus (Debian's package) scrapes crius with the shipped
//! scrape config; after pods and containers have run, its HTTP API shows
//! crius's series with sane values: gRPC requests, pods and containers by
//! state, starts and exits, start-phase histograms, pulls, CNI calls, the
//! daemon's process figures and the monitors'.
//!
//! Needs the `crius` binary and `prometheus` on PATH; fails, never skips,
//! without them.

mod common;

use std::time::{Duration, Instant};

use common::World;
use crius_e2e::prometheus::Prometheus;
use crius_e2e::{CriusOptions, cri};
use k8s_cri::v1::ContainerState;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_crius() {
    let mut w = World::start(CriusOptions::default()).await;
    let prom = Prometheus::start(w.crius.metrics_addr().unwrap()).unwrap();

    let pod = w.pod("scraped");
    let pod_id = w.run_pod(&pod).await;
    w.start_sh(&pod_id, &pod, "sleeper", "sleep 3600").await;
    let failed = w.start_sh(&pod_id, &pod, "failer", "exit 1").await;
    cri::wait_container_state(&mut w.rt, &failed, ContainerState::ContainerExited)
        .await
        .unwrap();

    // (query, what its single value must satisfy)
    type Check = (&'static str, fn(f64) -> bool);
    let checks: &[Check] = &[
        (r#"up{job="crius"}"#, |v| v == 1.0),
        (
            r#"crius_grpc_requests_total{method="RunPodSandbox",code="OK"}"#,
            |v| v >= 1.0,
        ),
        (
            r#"crius_grpc_request_duration_seconds_count{method="CreateContainer"}"#,
            |v| v >= 2.0,
        ),
        (r#"crius_pod_sandboxes{state="ready"}"#, |v| v == 1.0),
        (r#"crius_containers{state="running"}"#, |v| v == 1.0),
        (r#"crius_containers{state="exited"}"#, |v| v == 1.0),
        ("crius_container_starts_total", |v| v == 2.0),
        (r#"crius_container_exits_total{reason="Error"}"#, |v| {
            v == 1.0
        }),
        ("crius_container_oom_kills_total", |v| v == 0.0),
        (
            r#"crius_pod_start_phase_duration_seconds_count{phase="pod_sandbox"}"#,
            |v| v == 1.0,
        ),
        (
            r#"crius_pod_start_phase_duration_seconds_count{phase="network_setup"}"#,
            |v| v == 1.0,
        ),
        (
            r#"crius_pod_start_phase_duration_seconds_count{phase="image_pull"}"#,
            |v| v == 1.0,
        ),
        (
            r#"crius_pod_start_phase_duration_seconds_count{phase="container_create"}"#,
            |v| v == 2.0,
        ),
        (
            r#"crius_pod_start_phase_duration_seconds_count{phase="container_start"}"#,
            |v| v == 2.0,
        ),
        (
            r#"crius_pod_start_phase_duration_seconds_sum{phase="network_setup"}"#,
            |v| v > 0.0,
        ),
        (r#"crius_image_pulls_total{result="success"}"#, |v| v == 1.0),
        ("crius_image_pull_bytes_total", |v| v > 1000.0),
        (
            r#"crius_cni_plugin_calls_total{plugin="bridge",command="ADD",result="success"}"#,
            |v| v == 1.0,
        ),
        (
            r#"crius_cni_plugin_duration_seconds_count{plugin="bridge",command="ADD"}"#,
            |v| v == 1.0,
        ),
        ("crius_process_resident_memory_bytes", |v| {
            v > 1e6 && v < 1e9
        }),
        ("crius_process_open_fds", |v| v > 3.0),
        // Whole seconds (the prometheus crate's process collector): a
        // young daemon may not have used one yet.
        ("crius_process_cpu_seconds_total", |v| v >= 0.0),
        ("crius_monitor_processes", |v| v == 1.0),
        ("crius_monitor_resident_memory_bytes", |v| {
            v > 1e5 && v < 1e8
        }),
    ];
    // Scrapes come every second; wait until every check holds.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut failing = Vec::new();
        for (q, ok) in checks {
            match prom.query(q) {
                Ok(r) if r.len() == 1 && ok(r[0].1) => {}
                Ok(r) => failing.push(format!("{q} -> {r:?}")),
                Err(e) => failing.push(format!("{q}: {e}")),
            }
        }
        if failing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus does not show:\n  {}\n{}",
            failing.join("\n  "),
            prom.log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Every query of the shipped Grafana dashboard is valid PromQL over
    // these series (with its $instance variable set to all).
    let dashboard =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana-dashboard.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dashboard).unwrap()).unwrap();
    let mut queries = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap().replace("$instance", ".*");
            let series = prom
                .query(&expr)
                .unwrap_or_else(|e| panic!("panel {}: {e}", panel["title"]));
            // Gauges and counters have data already; rates may need more
            // scrapes than the test waited for.
            if !expr.contains("rate(") {
                assert!(
                    !series.is_empty(),
                    "panel {}: {expr} has no data",
                    panel["title"]
                );
            }
            queries += 1;
        }
    }
    assert!(queries >= 10, "{queries} dashboard queries");

    drop(prom);
    w.remove_pod(&pod_id).await;
    w.finish().await;
}
