//! Records the commit crius is built from (`CRIUS_COMMIT`, for
//! `crius --version` and the `crius_build_info` metric): `git rev-parse`
//! of the source tree, or "unknown" outside a git checkout.

use std::process::Command;

/// What `git ARGS` prints, trimmed, if it succeeds.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !s.is_empty()).then_some(s)
}

fn main() {
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=CRIUS_COMMIT={commit}");
    // A new commit (HEAD moves, or the branch it names does), in a clone
    // or a worktree. Only paths that exist: cargo reruns for a missing one
    // on every build.
    println!("cargo:rerun-if-changed=build.rs");
    let dirs = [
        git(&["rev-parse", "--absolute-git-dir"]),
        git(&["rev-parse", "--path-format=absolute", "--git-common-dir"]),
    ];
    for dir in dirs.into_iter().flatten() {
        for f in ["HEAD", "refs/heads", "packed-refs"] {
            let p = std::path::Path::new(&dir).join(f);
            if p.exists() {
                println!("cargo:rerun-if-changed={}", p.display());
            }
        }
    }
}
