//! Where an entry may go: a tar name made relative to the layer root,
//! parents checked to be real directories (never a symlink an earlier
//! entry planted), hardlink targets checked to stay in the layer.

use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Component, Path, PathBuf};

use super::Unpacker;

/// Turns a tar name into a path relative to the layer root: leading `/`
/// and `.` components dropped, `..` refused. `None` is the root itself.
pub(super) fn relative_path(name: &Path) -> Result<Option<PathBuf>, String> {
    let mut rel = PathBuf::new();
    for c in name.components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => return Err("path contains \"..\"".into()),
            Component::Normal(p) => rel.push(p),
        }
    }
    Ok((!rel.as_os_str().is_empty()).then_some(rel))
}

pub(super) enum DirError {
    NotDir(PathBuf),
    Io(io::Error),
}

impl Unpacker<'_> {
    /// Makes sure `rel` (relative) is a real directory, creating missing
    /// ones (0755, as tar does for implied parents).
    pub(super) fn ensure_dir(&mut self, rel: &Path) -> Result<(), DirError> {
        let mut prefix = PathBuf::new();
        for c in rel.components() {
            prefix.push(c);
            if self.real_dirs.contains(&prefix) {
                continue;
            }
            let full = self.root.join(&prefix);
            match fs::symlink_metadata(&full) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Err(DirError::NotDir(prefix)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::DirBuilder::new()
                        .mode(0o755)
                        .create(&full)
                        .map_err(DirError::Io)?;
                }
                Err(e) => return Err(DirError::Io(e)),
            }
            self.real_dirs.insert(prefix.clone());
        }
        Ok(())
    }

    /// A hardlink target must be a non-directory reached through real
    /// directories only.
    pub(super) fn check_link_target(&self, rel: &Path) -> Result<(), String> {
        let mut prefix = PathBuf::new();
        if let Some(parent) = rel.parent() {
            for c in parent.components() {
                prefix.push(c);
                let is_dir = self.real_dirs.contains(&prefix)
                    || fs::symlink_metadata(self.root.join(&prefix)).is_ok_and(|m| m.is_dir());
                if !is_dir {
                    return Err(format!("{} is not a directory", prefix.display()));
                }
            }
        }
        match fs::symlink_metadata(self.root.join(rel)) {
            Ok(m) if m.is_dir() => Err("is a directory".into()),
            Ok(_) => Ok(()),
            Err(_) => Err("not in this layer".into()),
        }
    }
}
