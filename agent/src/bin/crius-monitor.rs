//! `crius-monitor <monitor.json>`: the per-container monitor process. All
//! of it lives in `crius_runtime::monitor`.

fn main() {
    crius_runtime::monitor::main()
}
