//! `crius-bench`: figures for BENCHMARKS.md — memory of an idle runtime
//! and pod start/stop latency — against crius (started here, in its own
//! temp directories) or any other CRI runtime's socket, side by side.
//!
//! ```text
//! crius-bench idle [--seconds S] [--endpoint SOCKET --pid PID]
//! crius-bench pods [--count N] [--handler H] [--endpoint SOCKET --pid PID]
//! crius-bench portforward [--count N]      # PortForward latency and throughput
//! crius-bench push --registry HOST:PORT   # the test images, for trying things by hand
//! ```
//!
//! Build it and crius in release mode first (`cargo build --release
//! --bins`), as root. With `--endpoint`, the runtime there must reach the
//! loopback registry this starts (containerd does: loopback is plain HTTP).

mod args;
mod idle;
mod pods;
mod portforward;
mod push;
mod target;
mod util;

use crius_e2e::err;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let result = match args::parse() {
        Ok(args) if args.command == "idle" => idle::run(&args).await,
        Ok(args) if args.command == "pods" => pods::run(&args).await,
        Ok(args) if args.command == "push" => push::run(&args).await,
        Ok(args) if args.command == "portforward" => portforward::run(&args).await,
        Ok(_) => Err(err(
            "usage: crius-bench idle|pods|portforward|push [--seconds S] [--count N] [--handler H] \
             [--endpoint SOCKET --pid PID] [--registry HOST:PORT]",
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
