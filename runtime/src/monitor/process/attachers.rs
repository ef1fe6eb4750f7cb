//! Attach, monitor side: the attachers' stdin, on its way into the
//! container ([`super::super::attach`] has the protocol and the socket).
//!
//! Stdin the container has not taken yet is held, and while it is, no
//! attacher is read: the container sets the pace, and the monitor's
//! memory stays bounded by one packet. With `stdin_once`, the first
//! attacher that sent stdin closes the container's stdin when it ends its
//! own or goes.

use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;

use super::super::attach::{Attach, Attacher, FromAttacher, MAX_STDIN_PACKET, read_attacher};

/// Where stdin goes: something that takes what it can without blocking.
pub(super) trait Sink {
    /// Writes what it takes of `data` now: how much (0 when full), or
    /// `None` when the reader has gone.
    fn write_some(&self, data: &[u8]) -> Option<usize>;
}

impl Sink for OwnedFd {
    fn write_some(&self, data: &[u8]) -> Option<usize> {
        loop {
            match nix::unistd::write(self, data) {
                Ok(n) => return Some(n),
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => return Some(0),
                Err(_) => return None,
            }
        }
    }
}

/// The container's stdin, as the attachers feed it.
pub(super) struct Stdin<S = OwnedFd> {
    /// The write end of the container's stdin pipe, or the terminal's
    /// master (non-blocking); held open so that the container does not
    /// read end-of-file. `None`: no stdin, or it was closed.
    sink: Option<S>,
    /// Stdin not yet taken by the container.
    pending: Vec<u8>,
    /// CRI `stdin_once`.
    once: bool,
}

impl<S: Sink> Stdin<S> {
    /// Stdin into `sink` (`None`: the container has none).
    pub(super) fn new(sink: Option<S>, once: bool) -> Stdin<S> {
        Stdin {
            sink,
            pending: Vec::new(),
            once,
        }
    }

    /// Feeds stdin into `sink` from now on (the terminal, once received).
    pub(super) fn set_sink(&mut self, sink: S) {
        self.sink = Some(sink);
    }

    /// Whether attachers are read: nothing is held back.
    pub(super) fn takes_more(&self) -> bool {
        self.pending.is_empty()
    }

    /// The sink to wait on, while stdin is held back.
    pub(super) fn backed_up(&self) -> Option<&S> {
        self.sink.as_ref().filter(|_| !self.pending.is_empty())
    }

    /// `data` arrived from `attacher`: written as far as the container
    /// takes it, the rest held.
    pub(super) fn send(&mut self, attacher: &mut Attacher, data: &[u8]) {
        attacher.sent_stdin = true;
        if let Some(sink) = &self.sink {
            match sink.write_some(data) {
                Some(w) => self.pending.extend_from_slice(&data[w..]),
                None => self.sink = None,
            }
        }
    }

    /// `attacher` ended its stdin.
    pub(super) fn ended(&mut self, attacher: &mut Attacher) {
        attacher.read_closed = true;
        if attacher.sent_stdin && self.once {
            // kubelet's stdin_once: the first session's end is the
            // container's end of input.
            self.close();
        }
    }

    /// `attacher` has gone for good (what it sent and was not read while
    /// stdin was backed up is lost with it).
    pub(super) fn gone(&mut self, attacher: &Attacher) {
        if !attacher.read_closed && attacher.sent_stdin && self.once {
            self.close();
        }
    }

    /// Writes what is held, as far as the container takes it.
    pub(super) fn flush(&mut self) {
        let Some(sink) = &self.sink else {
            self.pending.clear();
            return;
        };
        match sink.write_some(&self.pending) {
            Some(w) => {
                self.pending.drain(..w);
            }
            None => self.close(),
        }
    }

    /// Closes the container's stdin: it reads end-of-file.
    fn close(&mut self) {
        self.sink = None;
        self.pending.clear();
    }

    /// Gives back the room of an empty hold.
    pub(super) fn trim(&mut self) {
        if self.pending.is_empty() {
            self.pending = Vec::new();
        }
    }
}

/// Reads the attachers `ready` names (by index, with whether they hung
/// up) into `stdin`, using `buf`, and drops those gone.
pub(super) fn serve(
    attach: &mut Attach,
    stdin: &mut Stdin,
    ready: &[(usize, bool)],
    buf: &mut [u8],
) {
    let mut gone = Vec::new();
    for &(i, hung_up) in ready {
        let Some(a) = attach.attachers.get_mut(i) else {
            continue;
        };
        // One packet at a time while the container keeps up.
        while !a.read_closed && stdin.takes_more() {
            match read_attacher(a.fd.as_fd(), &mut buf[..MAX_STDIN_PACKET]) {
                FromAttacher::Stdin(n) => stdin.send(a, &buf[..n]),
                FromAttacher::Ended => stdin.ended(a),
                FromAttacher::Nothing => break,
            }
        }
        if hung_up {
            stdin.gone(a);
            gone.push(i);
        }
    }
    for i in gone.into_iter().rev() {
        attach.attachers.remove(i);
    }
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};

    use super::*;

    /// A container's stdin that takes `room` bytes at most, or has gone.
    #[derive(Default)]
    struct Fake {
        room: Cell<usize>,
        got: RefCell<Vec<u8>>,
        closed: bool,
    }

    impl Sink for &Fake {
        fn write_some(&self, data: &[u8]) -> Option<usize> {
            if self.closed {
                return None;
            }
            let n = data.len().min(self.room.get());
            self.room.set(self.room.get() - n);
            self.got.borrow_mut().extend_from_slice(&data[..n]);
            Some(n)
        }
    }

    impl Fake {
        fn with_room(room: usize) -> Fake {
            Fake {
                room: Cell::new(room),
                ..Fake::default()
            }
        }
    }

    fn attacher() -> Attacher {
        Attacher {
            fd: std::fs::File::open("/dev/null").unwrap().into(),
            sent_stdin: false,
            read_closed: false,
        }
    }

    #[test]
    fn what_the_container_does_not_take_is_held_and_stops_reading() {
        let fake = Fake::with_room(3);
        let mut stdin = Stdin::new(Some(&fake), false);
        let mut a = attacher();
        stdin.send(&mut a, b"hello");
        assert!(a.sent_stdin);
        assert_eq!(*fake.got.borrow(), b"hel");
        assert!(!stdin.takes_more() && stdin.backed_up().is_some());
        // Still full: nothing moves.
        stdin.flush();
        assert!(!stdin.takes_more());
        fake.room.set(10);
        stdin.flush();
        assert_eq!(*fake.got.borrow(), b"hello");
        assert!(stdin.takes_more() && stdin.backed_up().is_none());
    }

    #[test]
    fn stdin_once_closes_when_the_first_sender_ends_or_goes() {
        let fake = Fake::with_room(100);
        // An attacher that never sent stdin ends nothing.
        let mut stdin = Stdin::new(Some(&fake), true);
        let mut quiet = attacher();
        stdin.ended(&mut quiet);
        assert!(quiet.read_closed && stdin.sink.is_some());
        let mut sender = attacher();
        stdin.send(&mut sender, b"x");
        stdin.ended(&mut sender);
        assert!(stdin.sink.is_none());

        // Going without ending counts too.
        let mut stdin = Stdin::new(Some(&fake), true);
        let mut sender = attacher();
        stdin.send(&mut sender, b"y");
        stdin.gone(&sender);
        assert!(stdin.sink.is_none());

        // Without stdin_once, stdin stays open for the next session.
        let mut stdin = Stdin::new(Some(&fake), false);
        let mut sender = attacher();
        stdin.send(&mut sender, b"z");
        stdin.ended(&mut sender);
        stdin.gone(&sender);
        assert!(stdin.sink.is_some());
        assert_eq!(*fake.got.borrow(), b"xyz");
    }

    #[test]
    fn closing_stdin_drops_what_was_held() {
        let fake = Fake::default();
        let mut stdin = Stdin::new(Some(&fake), true);
        let mut sender = attacher();
        stdin.send(&mut sender, b"held");
        assert!(!stdin.takes_more());
        stdin.ended(&mut sender);
        assert!(stdin.takes_more() && stdin.backed_up().is_none());
    }

    #[test]
    fn a_container_that_closed_its_stdin_takes_no_more() {
        let fake = Fake {
            closed: true,
            ..Fake::default()
        };
        let mut stdin = Stdin::new(Some(&fake), false);
        let mut a = attacher();
        stdin.send(&mut a, b"lost");
        assert!(stdin.sink.is_none() && stdin.takes_more());
        // Without a sink, attachers' stdin is read and dropped.
        stdin.send(&mut a, b"dropped");
        assert!(stdin.takes_more());
        assert!(fake.got.borrow().is_empty());
    }

    #[test]
    fn a_full_pipe_is_no_error_and_a_gone_reader_is() {
        let (r, w) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_CLOEXEC)
                .unwrap();
        let big = vec![0u8; 1 << 20];
        let first = w.write_some(&big).unwrap();
        assert!(first > 0 && first < big.len());
        assert_eq!(w.write_some(&big), Some(0));
        drop(r);
        assert_eq!(w.write_some(b"x"), None);
    }
}
