//! `crius-bench`: figures for BENCHMARKS.md — memory of an idle runtime
//! and pod start/stop latency — against crius (started here, in its own
//! temp directories) or any other CRI runtime's socket, side by side.
//!
//! ```text
//! crius-bench idle [--seconds S] [--endpoint SOCKET --pid PID]
//! crius-bench pods [--count N] [--handler H] [--endpoint SOCKET --pid PID]
//! crius-bench containers [--count N] [--handler H] [--endpoint SOCKET --pid PID]
//! crius-bench portforward [--count N]      # PortForward latency and throughput
//! crius-bench exec [--count N] [--handler H] # ExecSync, Exec and Attach latency
//! crius-bench stats [--count N] [--runs R] # List*Stats latency with N containers
//! crius-bench push --registry HOST:PORT   # the test images, for trying things by hand
//! crius-bench sandboxes [--count N] [--conflist FILE] [--pid-namespace pod|container]
//!                       [--endpoint SOCKET --pid PID]
//! crius-bench soak [--minutes M] [--count N] [--seconds S]  # RSS and fds while pods churn
//! crius-bench scale [--count N] [--runs R] [--endpoint SOCKET --pid PID]  # 250 pods: RSS, List* latency
//! crius-bench pull [--runs N] [--single-mib M] [--five-mib M] [--endpoint SOCKET --pid PID]
//! ```
//!
//! `--cgroup-driver cgroupfs|systemd|auto` picks the cgroup driver of the
//! crius started here (default cgroupfs; systemd needs systemd as PID 1 on
//! cgroup v2, and gives the pods a slice as their parent).
//!
//! Build it and crius in release mode first (`cargo build --release
//! --bins`), as root. With `--endpoint`, the runtime there must reach the
//! loopback registry this starts (containerd does: loopback is plain HTTP).

mod args;
mod containers;
mod exec;
mod idle;
mod pods;
mod portforward;
mod pull;
mod push;
mod sandboxes;
mod scale;
mod soak;
mod stats;
mod target;
mod util;

use crius_e2e::err;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let result = match args::parse() {
        Ok(args) if args.command == "idle" => idle::run(&args).await,
        Ok(args) if args.command == "pods" => pods::run(&args).await,
        Ok(args) if args.command == "containers" => containers::run(&args).await,
        Ok(args) if args.command == "push" => push::run(&args).await,
        Ok(args) if args.command == "sandboxes" => sandboxes::run(&args).await,
        Ok(args) if args.command == "pull" => pull::run(&args).await,
        Ok(args) if args.command == "portforward" => portforward::run(&args).await,
        Ok(args) if args.command == "soak" => soak::run(&args).await,
        Ok(args) if args.command == "exec" => exec::run(&args).await,
        Ok(args) if args.command == "stats" => stats::run(&args).await,
        Ok(args) if args.command == "scale" => scale::run(&args).await,
        Ok(_) => Err(err(
            "usage: crius-bench idle|pods|containers|push|sandboxes|pull|portforward|soak|exec|stats|scale [--seconds S] [--count N] \
             [--handler H] [--endpoint SOCKET --pid PID] [--registry HOST:PORT] \
             [--conflist FILE] [--pid-namespace pod|container] [--runs N] [--single-mib M] \
             [--five-mib M] [--minutes M] [--cgroup-driver cgroupfs|systemd|auto]",
        )),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crius-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
