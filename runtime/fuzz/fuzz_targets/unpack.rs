//! Fuzzes the layer unpacker: no input may write outside the layer
//! directory or make it panic. See ../README.md.

#![no_main]

use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Mutex, OnceLock};

use arbitrary::Arbitrary;
use crius_runtime::image::unpack::apply_tar;
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
        if let Some((trusted, value)) = &e.xattr {
            let key = if *trusted {
                "SCHILY.xattr.trusted.overlay.opaque"
            } else {
                "SCHILY.xattr.user.x"
            };
            let _ = b.append_pax_extensions([(key, &value[..value.len().min(64)])]);
        }
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(u32::from(e.mode) & 0o7777);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_size(data.len() as u64);
        let name = e.path.render();
        let target = e.target.render();
        // Raw name fields: the tar crate's setters refuse "..".
        let gnu = h.as_gnu_mut().expect("a GNU header");
        let n = name.len().min(gnu.name.len());
        gnu.name[..n].copy_from_slice(&name[..n]);
        let n = target.len().min(gnu.linkname.len());
        gnu.linkname[..n].copy_from_slice(&target[..n]);
        h.set_cksum();
        let _ = b.append(&h, data);
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
            unpack_and_check(&tar);
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

fn enter_sandbox() {
    use nix::mount::{MsFlags, mount};
    use nix::sched::{CloneFlags, unshare};
    assert!(
        nix::unistd::geteuid().is_root(),
        "the unpack fuzz target runs as root (mknod, chown, chroot)"
    );
    unshare(CloneFlags::CLONE_FS | CloneFlags::CLONE_NEWNS)
        .expect("unshare the filesystem context and mount namespace");
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .expect("make / private");
    // Over the temp dir, in this thread's namespace only: nothing is
    // created on the host, nothing is left after exit.
    let dir = std::env::temp_dir();
    mount(
        Some("tmpfs"),
        &dir,
        Some("tmpfs"),
        MsFlags::empty(),
        Some("size=256m"),
    )
    .expect("mount the sandbox tmpfs");
    nix::unistd::chroot(&dir).expect("chroot into the sandbox");
    std::env::set_current_dir("/").expect("cd /");
    std::fs::create_dir("/sentinel").expect("create /sentinel");
    std::fs::write("/sentinel/canary", b"canary").expect("write the canary");
}

fn unpack_and_check(tar: &[u8]) {
    let layer = Path::new("/layer");
    std::fs::create_dir(layer).expect("create /layer");
    // Errors are fine (most inputs are refused); panics and escapes are not.
    let _ = apply_tar(tar, layer);
    check_nothing_escaped();
    std::fs::remove_dir_all(layer).expect("remove /layer");
}

fn check_nothing_escaped() {
    let mut top: Vec<String> = std::fs::read_dir("/")
        .expect("read /")
        .map(|e| e.expect("read /").file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    assert_eq!(top, ["layer", "sentinel"], "something was written outside the layer");
    let sentinel: Vec<_> = std::fs::read_dir("/sentinel")
        .expect("read /sentinel")
        .map(|e| e.expect("read /sentinel").file_name())
        .collect();
    assert_eq!(sentinel.len(), 1, "something was written into /sentinel");
    assert_eq!(
        std::fs::read("/sentinel/canary").expect("read the canary"),
        b"canary"
    );
    use std::os::unix::fs::MetadataExt;
    let canary = std::fs::symlink_metadata("/sentinel/canary").expect("stat the canary");
    assert_eq!(canary.nlink(), 1, "the canary was hard-linked");
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
