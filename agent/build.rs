//! Records the commit crius is built from (`CRIUS_COMMIT`, for
//! `crius --version` and the `crius_build_info` metric): `git rev-parse`
//! of the source tree, or "unknown" outside a git checkout.

use std::process::Command;

fn main() {
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=CRIUS_COMMIT={commit}");
    // A new commit (HEAD moves, or the branch it names does). Only paths
    // that exist: cargo reruns for a missing one on every build.
    println!("cargo:rerun-if-changed=build.rs");
    for f in ["../.git/HEAD", "../.git/refs/heads", "../.git/packed-refs"] {
        if std::path::Path::new(f).exists() {
            println!("cargo:rerun-if-changed={f}");
        }
    }
}
