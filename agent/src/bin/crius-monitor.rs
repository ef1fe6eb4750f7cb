//! `crius-monitor <monitor.json>`: the per-container monitor process. All
//! of it lives in `crius_runtime::monitor`.
//!
//! `crius-monitor exec <pid file> <runtime exec argv…>`: the parent of a
//! streamed exec (`crius_runtime::monitor::exec_main`).
//!
//! `crius-monitor pod-infra <pod state dir>`: the infra process of a pod
//! that shares one PID namespace (`crius_runtime::sandbox::infra`).

use crius_runtime::sandbox::infra;

fn main() {
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == infra::INFRA_ARG)
    {
        infra::main()
    }
    if crius_runtime::monitor::is_exec_helper() {
        crius_runtime::monitor::exec_main()
    }
    crius_runtime::monitor::main()
}
