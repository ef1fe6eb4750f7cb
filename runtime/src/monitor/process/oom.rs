//! OOM kills: the container's cgroup counts them (`oom_kill` in
//! `memory.events` on cgroup v2, in `memory.oom_control` on v1). A cgroup
//! systemd owns (the systemd driver: the container's scope) goes as soon
//! as its last process has, often before the monitor has reaped the
//! init, and its count with it. So on v2 the monitor watches the file
//! with inotify from the container's creation on and reads the count
//! whenever the kernel changes it, as containerd's shim and conmon do; at
//! the end it reads the file once more where it is still there (v1
//! cgroups stay until the runtime deletes them; v1 files give no inotify
//! events).

use std::os::fd::{AsFd, BorrowedFd};
use std::path::PathBuf;

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use super::super::exit_status::oom_kills;

/// The OOM kill count of one container's cgroup, watched.
pub(super) struct OomWatch {
    file: PathBuf,
    /// Events on the file (v2's `memory.events`), if it could be watched.
    inotify: Option<Inotify>,
    /// The most kills seen so far.
    kills: u64,
}

impl OomWatch {
    /// Starts watching `file`, the cgroup's OOM file, now that the
    /// container's cgroup exists; reads its count.
    pub(super) fn start(file: PathBuf) -> OomWatch {
        let inotify = (file.file_name() == Some("memory.events".as_ref()))
            .then(|| {
                let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).ok()?;
                inotify.add_watch(&file, AddWatchFlags::IN_MODIFY).ok()?;
                Some(inotify)
            })
            .flatten();
        let mut watch = OomWatch {
            file,
            inotify,
            kills: 0,
        };
        watch.read();
        watch
    }

    /// The fd that is readable when the file changed.
    pub(super) fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.inotify.as_ref().map(AsFd::as_fd)
    }

    /// The file changed (or may have): takes the events and reads it.
    pub(super) fn changed(&mut self) {
        if let Some(inotify) = &self.inotify {
            // Non-blocking: EAGAIN once every event is taken. A watch
            // whose cgroup is gone reports IN_IGNORED and nothing more.
            while inotify.read_events().is_ok_and(|events| !events.is_empty()) {}
        }
        self.read();
    }

    /// Whether the container was OOM-killed, as far as the count tells.
    pub(super) fn killed(mut self) -> bool {
        self.changed();
        self.kills > 0
    }

    fn read(&mut self) {
        if let Ok(text) = std::fs::read_to_string(&self.file) {
            self.kills = self.kills.max(oom_kills(&text));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_kills_seen_count_also_once_the_file_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("memory.events");
        std::fs::write(&file, "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n").unwrap();
        let mut watch = OomWatch::start(file.clone());
        assert!(watch.fd().is_some(), "memory.events is watched");
        std::fs::write(&file, "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n").unwrap();
        watch.changed();
        // The cgroup goes with its last process (systemd's scope).
        std::fs::remove_file(&file).unwrap();
        assert!(watch.killed());

        let v1 = dir.path().join("memory.oom_control");
        std::fs::write(&v1, "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n").unwrap();
        let watch = OomWatch::start(v1.clone());
        assert!(watch.fd().is_none(), "v1 files give no inotify events");
        std::fs::write(&v1, "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n").unwrap();
        assert!(watch.killed(), "read again at the end");

        let none = OomWatch::start(dir.path().join("gone/memory.events"));
        assert!(!none.killed());
    }
}
