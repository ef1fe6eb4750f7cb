//! Finding an executable the way a shell would.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// `name` itself if it contains a `/`, else the first executable file of
/// that name in a `$PATH` directory.
pub(crate) fn find_executable(name: &Path) -> Option<PathBuf> {
    if name.as_os_str().is_empty() {
        return None;
    }
    if name.components().count() > 1 || name.is_absolute() {
        return is_executable(name).then(|| name.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

/// A regular file with an execute bit (following symlinks).
pub(crate) fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_taken_as_given_and_names_looked_up() {
        assert_eq!(
            find_executable(Path::new("/bin/sh")),
            Some(PathBuf::from("/bin/sh"))
        );
        assert_eq!(find_executable(Path::new("/nonexistent/runc")), None);
        let sh = find_executable(Path::new("sh")).unwrap();
        assert!(sh.is_absolute() && sh.ends_with("sh"));
        assert_eq!(find_executable(Path::new("no-such-binary-crius")), None);
        assert_eq!(find_executable(Path::new("")), None);
    }

    #[test]
    fn a_non_executable_file_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("runc");
        std::fs::write(&f, "").unwrap();
        assert_eq!(find_executable(&f), None);
    }
}
