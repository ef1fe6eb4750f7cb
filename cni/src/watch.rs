//! The config directory, watched: the default network is read once and
//! read again only after inotify reports a change in the directory, so
//! Status and the pod set-up path do not parse configs on every call, and
//! a config dropped in (or removed) takes effect without a restart.
//!
//! No thread or task: the inotify fd is non-blocking and its queue is
//! drained on each access. Whenever the directory cannot be watched (it
//! does not exist yet, or inotify is unavailable) every access reads it
//! afresh and tries to set the watch up again.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};

use crate::config::{DirScan, NetworkConfigList, scan_dir};
use crate::error::Error;

/// What was last read from the directory.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    /// The default network.
    pub network: Option<Arc<NetworkConfigList>>,
    /// Invalid files skipped (path, reason).
    pub skipped: Vec<(PathBuf, String)>,
    /// Why the directory could not be read at all.
    pub error: Option<String>,
}

/// The watched config directory.
#[derive(Debug)]
pub(crate) struct ConfigWatch {
    dir: PathBuf,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    inotify: Option<Inotify>,
    /// Set while the directory itself is watched.
    watch: Option<WatchDescriptor>,
    /// The device and inode of the directory the watch was set on.
    watched: Option<(u64, u64)>,
    /// The last read, valid while `watch` is set and no event came since.
    current: Option<Snapshot>,
}

/// Everything that can change which config is the default one.
fn watch_flags() -> AddWatchFlags {
    AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_DELETE
        | AddWatchFlags::IN_MODIFY
        | AddWatchFlags::IN_CLOSE_WRITE
        | AddWatchFlags::IN_MOVED_FROM
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_ATTRIB
        | AddWatchFlags::IN_DELETE_SELF
        | AddWatchFlags::IN_MOVE_SELF
        | AddWatchFlags::IN_ONLYDIR
}

impl ConfigWatch {
    /// A watch over `dir`; nothing is read until [`ConfigWatch::snapshot`].
    pub fn new(dir: PathBuf) -> Self {
        let inotify = match Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC) {
            Ok(i) => Some(i),
            Err(e) => {
                tracing::warn!(error = %e, "inotify unavailable; the CNI config directory is read on every use");
                None
            }
        };
        ConfigWatch {
            dir,
            state: Mutex::new(State {
                inotify,
                watch: None,
                watched: None,
                current: None,
            }),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is only ever replaced whole; a panic cannot leave it
        // half-updated.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The directory's current content: the cached read when nothing
    /// changed since, else a fresh one. Blocking (it may read files).
    pub fn snapshot(&self) -> Snapshot {
        let mut guard = self.lock();
        let st = &mut *guard;
        let changed = self.drain_events(st);
        // A directory deleted while some process still held it open (a
        // child between fork and exec, say) reports its deletion only when
        // let go: until then the watch is on a directory no longer at the
        // path, and a new one there would go unseen.
        let at_path = dir_identity(&self.dir);
        if st.watch.is_some() && st.watched != at_path {
            if let (Some(inotify), Some(wd)) = (&st.inotify, st.watch.take()) {
                let _ = inotify.rm_watch(wd);
            }
            st.current = None;
        }
        if st.watch.is_none()
            && let Some(inotify) = &st.inotify
        {
            match inotify.add_watch(&self.dir, watch_flags()) {
                Ok(wd) => {
                    st.watch = Some(wd);
                    st.watched = dir_identity(&self.dir);
                }
                // Not there yet: read it each time until it is.
                Err(Errno::ENOENT) | Err(Errno::ENOTDIR) => {}
                Err(e) => {
                    tracing::debug!(dir = %self.dir.display(), error = %e, "cannot watch CNI config directory")
                }
            }
            // Whatever happened before the watch was set is unknown.
            st.current = None;
        }
        if changed || st.watch.is_none() {
            st.current = None;
        }
        if let Some(current) = &st.current {
            return current.clone();
        }
        let snapshot = match scan_dir(&self.dir) {
            Ok(DirScan { network, skipped }) => Snapshot {
                network: network.map(Arc::new),
                skipped,
                error: None,
            },
            Err(e) => Snapshot {
                network: None,
                skipped: Vec::new(),
                error: Some(e.to_string()),
            },
        };
        if let Some(network) = &snapshot.network {
            tracing::debug!(network = %network.name, source = ?network.source, "CNI config loaded");
        }
        // A directory that could not be read is read again next time.
        if st.watch.is_some() && snapshot.error.is_none() {
            st.current = Some(snapshot.clone());
        }
        snapshot
    }

    /// The default network, or the error reading the directory.
    pub fn network(&self) -> Result<Option<Arc<NetworkConfigList>>, Error> {
        let snapshot = self.snapshot();
        match snapshot.error {
            Some(e) => Err(Error::ConfigDir {
                dir: self.dir.clone(),
                source: std::io::Error::other(e),
            }),
            None => Ok(snapshot.network),
        }
    }

    /// Reads every queued event; true if any may have changed the
    /// directory. Drops the watch when the directory went away.
    fn drain_events(&self, st: &mut State) -> bool {
        let Some(inotify) = &st.inotify else {
            return true;
        };
        let mut changed = false;
        loop {
            match inotify.read_events() {
                Ok(events) if events.is_empty() => break,
                Ok(events) => {
                    changed = true;
                    for ev in events {
                        // The watch is gone (IN_IGNORED), or soon will be
                        // or no longer names the path (directory deleted or
                        // moved away). IN_IGNORED for a deleted directory can
                        // come later than IN_DELETE_SELF, when the inode is
                        // finally released: drop the watch at once, so that a
                        // directory recreated meanwhile is watched afresh.
                        if ev.mask.contains(AddWatchFlags::IN_IGNORED) {
                            st.watch = None;
                        } else if ev
                            .mask
                            .intersects(AddWatchFlags::IN_MOVE_SELF | AddWatchFlags::IN_DELETE_SELF)
                            && let Some(wd) = st.watch.take()
                        {
                            let _ = inotify.rm_watch(wd);
                        }
                    }
                }
                Err(Errno::EAGAIN) => break,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "reading CNI config directory events");
                    changed = true;
                    break;
                }
            }
        }
        changed
    }
}

/// The device and inode of `dir`, if it is there.
fn dir_identity(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(dir).ok().map(|m| (m.dev(), m.ino()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(name: &str) -> String {
        format!(r#"{{"cniVersion":"1.0.0","name":"{name}","plugins":[{{"type":"bridge"}}]}}"#)
    }

    fn name(w: &ConfigWatch) -> Option<String> {
        w.network().unwrap().map(|n| n.name.clone())
    }

    #[test]
    fn follows_files_appearing_changing_and_going() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("net.d");
        let w = ConfigWatch::new(dir.clone());
        // No directory yet.
        assert_eq!(name(&w), None);
        std::fs::create_dir(&dir).unwrap();
        assert_eq!(name(&w), None);
        std::fs::write(dir.join("20-b.conflist"), conf("b")).unwrap();
        assert_eq!(name(&w), Some("b".into()));
        // Cached: the same Arc until something changes.
        let a = w.network().unwrap().unwrap();
        let b = w.network().unwrap().unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        // A lexically earlier file wins.
        std::fs::write(dir.join("10-a.conflist"), conf("a")).unwrap();
        assert_eq!(name(&w), Some("a".into()));
        // Rewritten in place.
        std::fs::write(dir.join("10-a.conflist"), conf("a2")).unwrap();
        assert_eq!(name(&w), Some("a2".into()));
        // Broken: skipped and reported.
        std::fs::write(dir.join("10-a.conflist"), "{").unwrap();
        let s = w.snapshot();
        assert_eq!(s.network.unwrap().name, "b");
        assert_eq!(s.skipped.len(), 1);
        // Renamed in from elsewhere.
        std::fs::write(tmp.path().join("05-c.conflist"), conf("c")).unwrap();
        std::fs::rename(tmp.path().join("05-c.conflist"), dir.join("05-c.conflist")).unwrap();
        assert_eq!(name(&w), Some("c".into()));
        // The directory removed, then made again.
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(name(&w), None);
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("30-d.json"), conf("d")).unwrap();
        assert_eq!(name(&w), Some("d".into()));
        // The directory moved away: the old path is what counts.
        std::fs::rename(&dir, tmp.path().join("moved")).unwrap();
        assert_eq!(name(&w), None);
    }

    #[test]
    fn a_directory_replaced_while_the_old_one_is_held_open() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("net.d");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("20-a.conflist"), conf("a")).unwrap();
        let w = ConfigWatch::new(dir.clone());
        assert_eq!(name(&w), Some("a".into()));
        // Held open (as a forked child holds its parent's fds until it
        // execs), the deleted directory reports no deletion of itself.
        let held = std::fs::File::open(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(name(&w), None);
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("30-b.conflist"), conf("b")).unwrap();
        assert_eq!(name(&w), Some("b".into()));
        // And the new directory is the one watched.
        std::fs::write(dir.join("10-c.conflist"), conf("c")).unwrap();
        assert_eq!(name(&w), Some("c".into()));
        drop(held);
        assert_eq!(name(&w), Some("c".into()));
    }
}
