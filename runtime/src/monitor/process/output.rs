//! Stdio and log: the container's stdout and stderr (or its terminal),
//! copied into the CRI log ([`super::super::cri_log`]) and to the
//! attachers.
//!
//! The pipes are drained whatever happens to the log: a container must
//! never block on a full pipe because its log cannot be written. A write
//! that fails is reported once, until the log is reopened.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::errno::Errno;

use super::super::attach::{Attach, STDERR_TAG, STDOUT_TAG};
use super::super::cri_log::{LineSplitter, Stream, timestamp_now};
use crate::error::{IoContext, Result};

/// Reads from one pipe before going back to `poll`, so that a chatty
/// container cannot keep the monitor from reaping.
const READS_PER_WAKE: usize = 16;
/// The most of the runtime's own output kept for an error report.
pub(super) const MAX_CAPTURED: usize = 64 * 1024;

/// One of the container's output streams.
pub(super) struct Output {
    stream: Stream,
    /// The read end, non-blocking; `None` once it reached end of file.
    pub(super) fd: Option<OwnedFd>,
    splitter: LineSplitter,
}

/// What one read of an output gave.
pub(super) enum Read {
    /// This many bytes, in the buffer.
    Data(usize),
    /// The stream has ended (or failed): it is closed.
    Eof,
    /// Nothing now.
    Empty,
}

impl Output {
    /// The stream `stream`, read from `fd`.
    pub(super) fn new(stream: Stream, fd: OwnedFd) -> Output {
        Output {
            stream,
            fd: Some(fd),
            splitter: LineSplitter::new(stream),
        }
    }

    /// Reads once into `buf`.
    pub(super) fn read(&mut self, buf: &mut [u8]) -> Read {
        let Some(fd) = &self.fd else {
            return Read::Eof;
        };
        loop {
            match nix::unistd::read(fd, buf) {
                Ok(0) => {
                    self.fd = None;
                    return Read::Eof;
                }
                Ok(n) => return Read::Data(n),
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return Read::Empty,
                // A terminal whose last process has gone.
                Err(Errno::EIO) => {
                    self.fd = None;
                    return Read::Eof;
                }
                Err(e) => {
                    eprintln!(
                        "crius-monitor: read container {}: {e}",
                        self.stream.as_str()
                    );
                    self.fd = None;
                    return Read::Eof;
                }
            }
        }
    }
}

/// The CRI log file, if the container has one.
pub(super) struct CriLog<W = File> {
    file: Option<W>,
    /// A write failed and was reported; cleared by a reopen.
    failed: bool,
    /// Scratch space for the records of one read.
    records: Vec<u8>,
}

impl<W: Write> CriLog<W> {
    /// Logs into `file`; `None` discards the output.
    pub(super) fn new(file: Option<W>) -> CriLog<W> {
        CriLog {
            file,
            failed: false,
            records: Vec::new(),
        }
    }

    /// Turns `data` of the stream `splitter` splits into records, stamped
    /// `timestamp`, and writes them.
    fn push(&mut self, splitter: &mut LineSplitter, data: &[u8], timestamp: &str) {
        if self.file.is_none() {
            return;
        }
        self.records.clear();
        splitter.push(data, timestamp, &mut self.records);
        self.write_records();
    }

    /// Writes out the unfinished line of a stream that has ended.
    fn finish(&mut self, splitter: &mut LineSplitter, timestamp: &str) {
        if self.file.is_none() {
            return;
        }
        self.records.clear();
        splitter.finish(timestamp, &mut self.records);
        self.write_records();
    }

    fn write_records(&mut self) {
        let (Some(file), false) = (self.file.as_mut(), self.records.is_empty()) else {
            return;
        };
        if let Err(e) = file.write_all(&self.records)
            && !self.failed
        {
            eprintln!("crius-monitor: write container log: {e}");
            self.failed = true;
        }
    }

    /// Logs into `file` from now on (the old one was rotated away).
    fn replace(&mut self, file: W) {
        self.file = Some(file);
        self.failed = false;
    }

    /// Gives back the scratch space.
    fn trim(&mut self) {
        self.records = Vec::new();
    }
}

/// The container's two output streams (stdout first) and where they go.
pub(super) struct Outputs<W = File> {
    /// Stdout (or the terminal), then stderr.
    pub(super) streams: [Output; 2],
    log: CriLog<W>,
}

impl<W: Write> Outputs<W> {
    /// Output read from `stdout` and `stderr`, logged into `log`.
    pub(super) fn new(stdout: OwnedFd, stderr: OwnedFd, log: Option<W>) -> Outputs<W> {
        Outputs {
            streams: [
                Output::new(Stream::Stdout, stdout),
                Output::new(Stream::Stderr, stderr),
            ],
            log: CriLog::new(log),
        }
    }

    /// Whether a stream is still open.
    pub(super) fn any_open(&self) -> bool {
        self.streams.iter().any(|o| o.fd.is_some())
    }

    /// Reads what is available on stream `i` (a bounded amount) and hands
    /// it to the attachers and the log.
    pub(super) fn copy(&mut self, i: usize, buf: &mut [u8], mut attach: Option<&mut Attach>) {
        for _ in 0..READS_PER_WAKE {
            match self.streams[i].read(buf) {
                Read::Data(n) => self.deliver(i, &buf[..n], attach.as_deref_mut()),
                Read::Eof => return self.end(i),
                Read::Empty => return,
            }
        }
    }

    /// Hands `data` read from stream `i` to the attachers and the log.
    fn deliver(&mut self, i: usize, data: &[u8], attach: Option<&mut Attach>) {
        let output = &mut self.streams[i];
        if let Some(attach) = attach {
            let tag = match output.stream {
                Stream::Stdout => STDOUT_TAG,
                Stream::Stderr => STDERR_TAG,
            };
            attach.broadcast(tag, data);
        }
        self.log.push(&mut output.splitter, data, &timestamp_now());
    }

    /// Closes stream `i` and writes out its unfinished line.
    pub(super) fn end(&mut self, i: usize) {
        let output = &mut self.streams[i];
        output.fd = None;
        self.log.finish(&mut output.splitter, &timestamp_now());
    }

    /// Stops reading every stream: what they still hold unread is lost
    /// (their unfinished lines are written by [`Outputs::end`]).
    pub(super) fn abandon(&mut self) {
        self.streams.iter_mut().for_each(|o| o.fd = None);
    }

    /// Reads what is available on stream `i` into `captured` (bounded to
    /// [`MAX_CAPTURED`]): the runtime's own words while its create runs.
    pub(super) fn capture(&mut self, i: usize, buf: &mut [u8], captured: &mut Vec<u8>) {
        while let Read::Data(n) = self.streams[i].read(buf) {
            let room = MAX_CAPTURED.saturating_sub(captured.len());
            captured.extend_from_slice(&buf[..n.min(room)]);
        }
    }

    /// Gives back the scratch space.
    pub(super) fn trim(&mut self) {
        self.log.trim();
    }
}

impl Outputs<File> {
    /// Closes the CRI log and opens (creates) it again at `path`, after
    /// kubelet has renamed the old file away.
    pub(super) fn reopen_log(&mut self, path: Option<&Path>) {
        let Some(path) = path else {
            return;
        };
        match open_log(path) {
            Ok(file) => self.log.replace(file),
            Err(e) => eprintln!("crius-monitor: reopen container log: {e}"),
        }
    }
}

/// Opens (creating it and its directories) the CRI log for appending.
pub(super) fn open_log(path: &Path) -> Result<File> {
    if let Some(dir) = path.parent() {
        crate::fsutil::create_dir_all(dir)?;
    }
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
        .context(|| format!("open container log {}", path.display()))
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;

    /// A log that keeps what it was given, or fails every write.
    #[derive(Clone, Default)]
    struct Sink {
        got: Rc<RefCell<Vec<u8>>>,
        broken: bool,
    }

    impl Write for Sink {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            if self.broken {
                return Err(std::io::Error::other("disk full"));
            }
            self.got.borrow_mut().extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Sink {
        /// The records written, without their timestamps.
        fn records(&self) -> Vec<String> {
            String::from_utf8(self.got.borrow().clone())
                .unwrap()
                .lines()
                .map(|l| l.split_once(' ').unwrap().1.to_string())
                .collect()
        }
    }

    fn outputs(log: Option<Sink>) -> Outputs<Sink> {
        let (a, _) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let (b, _) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        Outputs::new(a, b, log)
    }

    #[test]
    fn an_unfinished_line_is_logged_when_its_stream_ends() {
        let log = Sink::default();
        let mut out = outputs(Some(log.clone()));
        out.deliver(0, b"one\ntw", None);
        out.deliver(1, b"err", None);
        assert_eq!(log.records(), ["stdout F one"]);
        out.deliver(0, b"o", None);
        out.end(0);
        assert_eq!(log.records(), ["stdout F one", "stdout F two"]);
        assert!(out.streams[0].fd.is_none() && out.any_open());
        out.end(1);
        assert_eq!(log.records()[2], "stderr F err");
        assert!(!out.any_open());
        // An ended stream has nothing left to write.
        out.end(0);
        assert_eq!(log.records().len(), 3);
    }

    #[test]
    fn abandoned_streams_are_closed_and_keep_their_unfinished_lines() {
        let log = Sink::default();
        let mut out = outputs(Some(log.clone()));
        out.deliver(0, b"half", None);
        out.abandon();
        assert!(!out.any_open());
        assert!(log.records().is_empty());
        out.end(0);
        assert_eq!(log.records(), ["stdout F half"]);
    }

    #[test]
    fn a_failing_log_is_reported_once_and_a_reopen_starts_afresh() {
        let mut out = outputs(Some(Sink {
            broken: true,
            ..Sink::default()
        }));
        out.deliver(0, b"lost\n", None);
        assert!(out.log.failed);
        out.deliver(0, b"lost too\n", None);
        assert!(out.log.failed);
        let fresh = Sink::default();
        out.log.replace(fresh.clone());
        assert!(!out.log.failed);
        out.deliver(1, b"kept\n", None);
        assert_eq!(fresh.records(), ["stderr F kept"]);
    }

    #[test]
    fn without_a_log_output_is_read_and_dropped() {
        let mut out: Outputs<Sink> = outputs(None);
        out.deliver(0, b"no log\n", None);
        out.end(0);
        assert!(out.log.records.is_empty());
    }

    #[test]
    fn the_runtimes_words_are_captured_up_to_a_bound_and_the_pipe_drained() {
        let (r, w) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_CLOEXEC)
                .unwrap();
        let (other, _) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let mut out: Outputs<Sink> = Outputs::new(r, other, None);
        let mut captured = b"x".repeat(MAX_CAPTURED - 3);
        nix::unistd::write(&w, b"warning: odd\n").unwrap();
        let mut buf = [0u8; 4];
        out.capture(0, &mut buf, &mut captured);
        assert_eq!(captured.len(), MAX_CAPTURED);
        assert!(captured.ends_with(b"war"));
        // Drained: the next read finds nothing, and the stream is open.
        assert!(matches!(out.streams[0].read(&mut buf), Read::Empty));
        drop(w);
        assert!(matches!(out.streams[0].read(&mut buf), Read::Eof));
        assert!(out.streams[0].fd.is_none());
    }

    #[test]
    fn reopening_creates_the_log_at_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pods/c/0.log");
        let (a, _) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let (b, _) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let mut out = Outputs::new(a, b, Some(open_log(&path).unwrap()));
        std::fs::rename(&path, dir.path().join("rotated")).unwrap();
        out.reopen_log(Some(&path));
        out.deliver(0, b"after\n", None);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.ends_with(" stdout F after\n"), "{text:?}");
        assert!(
            std::fs::read_to_string(dir.path().join("rotated"))
                .unwrap()
                .is_empty()
        );
    }
}
