//! An OCI runtime (runc, crun) behind a shell script of a test's: the way
//! to make the runtime slow, or late, at one step, as a loaded or
//! emulated node's is, so that a race crius must handle happens every
//! time.

use std::path::{Path, PathBuf};

/// Writes `dir/<runtime>`, a `/bin/sh` script that runs `body` with
/// `$real` naming the real `runtime` (found on `$PATH`, linked as
/// `dir/<runtime>.real`) and the runtime's arguments in `"$@"`; a body that
/// does not `exec` must end in `exit`. Returns the script's path.
pub fn wrapped(dir: &Path, runtime: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let found = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(runtime))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{runtime} on PATH"));
    let real = dir.join(format!("{runtime}.real"));
    let _ = std::fs::remove_file(&real);
    std::os::unix::fs::symlink(&found, &real).unwrap();
    let script = dir.join(runtime);
    std::fs::write(
        &script,
        format!("#!/bin/sh\nreal='{}'\n{body}\n", real.display()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

/// A crius.toml whose only handler, and the default, is `runtime` run as
/// `script`.
pub fn only_handler(runtime: &str, script: &Path) -> String {
    format!(
        "[runtime]\ndefault_runtime = \"{runtime}\"\n\n\
         [runtime.handlers.{runtime}]\npath = \"{}\"\nroot = \"\"\n",
        script.display()
    )
}
