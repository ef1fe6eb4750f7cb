//! `crius-monitor <monitor.json>`: the per-container monitor process. All
//! of it lives in `crius_runtime::monitor`.
//!
//! `crius-monitor exec <pid file> <runtime exec argv…>`: the parent of a
//! streamed exec (`crius_runtime::monitor::exec_main`).
//!
//! `crius-monitor pod-infra <pod state dir>`: the infra process of a pod
//! that shares one PID namespace (`crius_runtime::monitor::pod_infra`).

use crius_runtime::monitor;

fn main() {
    if monitor::is_pod_infra() {
        monitor::infra_main()
    }
    if monitor::is_exec_helper() {
        monitor::exec_main()
    }
    monitor::main()
}
