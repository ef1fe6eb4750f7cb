//! Fuzzes the layer unpacker: no input may write outside the layer
//! directory or make it panic. See ../README.md.

#![no_main]

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Mutex, OnceLock};

use arbitrary::Arbitrary;
use crius_runtime::image::unpack_fuzzing::{append_raw, enter_sandbox, unpack_and_check};
use libfuzzer_sys::fuzz_target;

/// A path component.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Part {
    A,
    B,
    C,
    Dot,
    DotDot,
    Empty,
    Sentinel,
    Whiteout,
    WhiteoutDotDot,
    Opaque,
    Meta,
}

impl Part {
    fn as_str(self) -> &'static str {
        match self {
            Part::A => "a",
            Part::B => "b",
            Part::C => "c",
            Part::Dot => ".",
            Part::DotDot => "..",
            Part::Empty => "",
            Part::Sentinel => "sentinel",
            Part::Whiteout => ".wh.a",
            Part::WhiteoutDotDot => ".wh...",
            Part::Opaque => ".wh..wh..opq",
            Part::Meta => ".wh..wh.plnk",
        }
    }
}

/// A path: optionally absolute, a few components, optionally a trailing
/// slash.
#[derive(Arbitrary, Debug)]
struct PathSpec {
    absolute: bool,
    parts: Vec<Part>,
    trailing_slash: bool,
}

impl PathSpec {
    fn render(&self) -> Vec<u8> {
        let mut s = String::new();
        if self.absolute {
            s.push('/');
        }
        let parts: Vec<&str> = self.parts.iter().take(8).map(|p| p.as_str()).collect();
        s.push_str(&parts.join("/"));
        if self.trailing_slash {
            s.push('/');
        }
        s.into_bytes()
    }
}

#[derive(Arbitrary, Debug)]
enum Kind {
    File,
    Dir,
    Symlink,
    Hardlink,
    Fifo,
    Char,
    Block,
}

#[derive(Arbitrary, Debug)]
struct Entry {
    kind: Kind,
    path: PathSpec,
    target: PathSpec,
    mode: u16,
    data: Vec<u8>,
    xattr: Option<(bool, Vec<u8>)>,
}

#[derive(Arbitrary, Debug)]
enum Input {
    Entries(Vec<Entry>),
    Raw(Vec<u8>),
}

fn tar_of(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries.iter().take(32) {
        let (kind, data): (tar::EntryType, &[u8]) = match e.kind {
            Kind::File => (tar::EntryType::Regular, &e.data[..e.data.len().min(4096)]),
            Kind::Dir => (tar::EntryType::Directory, &[]),
            Kind::Symlink => (tar::EntryType::Symlink, &[]),
            Kind::Hardlink => (tar::EntryType::Link, &[]),
            Kind::Fifo => (tar::EntryType::Fifo, &[]),
            Kind::Char => (tar::EntryType::Char, &[]),
            Kind::Block => (tar::EntryType::Block, &[]),
        };
        let xattr = e.xattr.as_ref().map(|(trusted, value)| {
            let key = if *trusted {
                "SCHILY.xattr.trusted.overlay.opaque"
            } else {
                "SCHILY.xattr.user.x"
            };
            (key, &value[..value.len().min(64)])
        });
        append_raw(
            &mut b,
            kind,
            u32::from(e.mode),
            &e.path.render(),
            &e.target.render(),
            data,
            xattr,
        );
    }
    b.into_inner().unwrap_or_default()
}

/// The thread that unpacks, sandboxed: inputs in, "checked" out.
struct Worker {
    inputs: SyncSender<Vec<u8>>,
    done: Mutex<Receiver<()>>,
}

static WORKER: OnceLock<Worker> = OnceLock::new();

/// Starts the unpacking thread. It leaves the process's filesystem
/// context (CLONE_FS) and mount namespace and chroots into a fresh tmpfs
/// holding `/sentinel/canary`, so that whatever the unpacker does stays
/// there, while the rest of the process (libFuzzer writing its corpus,
/// the sanitizers reading /proc) keeps the host's root.
fn start_worker() -> Worker {
    let (inputs, rx) = sync_channel::<Vec<u8>>(0);
    let (done_tx, done) = sync_channel::<()>(0);
    std::thread::spawn(move || {
        enter_sandbox();
        for tar in rx {
            unpack_and_check(&tar, "fuzz input");
            if done_tx.send(()).is_err() {
                return;
            }
        }
    });
    Worker {
        inputs,
        done: Mutex::new(done),
    }
}

fuzz_target!(|input: Input| {
    let worker = WORKER.get_or_init(start_worker);
    let tar = match input {
        Input::Entries(entries) => tar_of(&entries),
        Input::Raw(bytes) => bytes,
    };
    // A panic on the worker aborts the process (libFuzzer's hook): a crash.
    worker.inputs.send(tar).expect("the unpack worker is gone");
    worker
        .done
        .lock()
        .expect("the done channel")
        .recv()
        .expect("the unpack worker is gone");
});
