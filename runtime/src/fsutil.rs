//! Small filesystem helpers shared by the runtime: atomic writes and
//! directory creation with context.

use std::fs;
use std::io::Write;
use std::path::Path;

use crate::error::{IoContext, Result};

/// Suffix of files being written; start-up recovery removes leftovers.
pub const TMP_SUFFIX: &str = ".tmp";

/// Writes `data` to `path` so that readers see either the old file or the
/// whole new one, even across a crash: write a temp file beside it, fsync,
/// rename over, fsync the directory.
pub fn atomic_write(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}{TMP_SUFFIX}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    };
    let result = write().context(|| format!("write {}", path.display()));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// `mkdir -p` with the path in the error.
pub fn create_dir_all(path: &Path) -> Result<()> {
    fs::create_dir_all(path).context(|| format!("create directory {}", path.display()))
}

/// Removes a directory tree; a missing one is not an error.
pub fn remove_dir_all(path: &Path) -> Result<()> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        r => r.context(|| format!("remove {}", path.display())),
    }
}

/// Removes a file; a missing one is not an error.
pub fn remove_file(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        r => r.context(|| format!("remove {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_whole_file_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("rec.json");
        atomic_write(&p, b"one").unwrap();
        atomic_write(&p, b"two two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two two");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }
}
