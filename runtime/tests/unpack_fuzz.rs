//! The fuzz target `runtime/fuzz/fuzz_targets/unpack.rs` as an ordinary
//! test, so that every `cargo test` throws hostile layer tars at the
//! unpacker even where no nightly toolchain runs cargo-fuzz: thousands of
//! pseudo-random tars built from nasty names (`..`, absolute paths,
//! whiteouts of every kind, trailing slashes), symlinks and hard links
//! pointing anywhere, devices, FIFOs and xattrs, each also sent with bytes
//! mutated and truncated. None may panic, and nothing may be written
//! outside the layer.
//!
//! As in the fuzz target, the unpacking runs on a thread that has its own
//! filesystem context and mount namespace and is chrooted into a fresh
//! tmpfs holding `/sentinel/canary`: whatever the unpacker does stays
//! there, and goes with the thread. Needs root (mknod, chown, chroot), as
//! CI runs it; fails, never skips, without.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crius_runtime::image::unpack::apply_tar;

/// Tars built per run (each also mutated a few times).
const TARS: usize = 8000;
/// Byte-level mutations of each tar.
const MUTATIONS: usize = 2;

/// xorshift64*: a deterministic stream, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

/// Path components, the fuzz target's alphabet.
const PARTS: &[&str] = &[
    "a",
    "b",
    "c",
    ".",
    "..",
    "",
    "sentinel",
    ".wh.a",
    ".wh...",
    ".wh..wh..opq",
    ".wh..wh.plnk",
];

fn path(r: &mut Rng) -> Vec<u8> {
    let mut s = String::new();
    if r.chance(4) {
        s.push('/');
    }
    let parts: Vec<&str> = (0..r.below(5))
        .map(|_| PARTS[r.below(PARTS.len())])
        .collect();
    s.push_str(&parts.join("/"));
    if r.chance(5) {
        s.push('/');
    }
    s.into_bytes()
}

/// A tar of a few entries of every kind with hostile names and targets.
fn tar(r: &mut Rng) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for _ in 0..=r.below(12) {
        let kind = [
            tar::EntryType::Regular,
            tar::EntryType::Directory,
            tar::EntryType::Symlink,
            tar::EntryType::Link,
            tar::EntryType::Fifo,
            tar::EntryType::Char,
            tar::EntryType::Block,
        ][r.below(7)];
        let data: Vec<u8> = match kind {
            tar::EntryType::Regular => (0..r.below(600)).map(|i| i as u8).collect(),
            _ => Vec::new(),
        };
        if r.chance(6) {
            let key = match r.chance(2) {
                true => "SCHILY.xattr.trusted.overlay.opaque",
                false => "SCHILY.xattr.user.x",
            };
            let _ = b.append_pax_extensions([(key, &b"y"[..])]);
        }
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(r.next() as u32 & 0o7777);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_size(data.len() as u64);
        let (name, target) = (path(r), path(r));
        // Raw name fields: the tar crate's setters refuse "..".
        let gnu = h.as_gnu_mut().expect("a GNU header");
        let n = name.len().min(gnu.name.len());
        gnu.name[..n].copy_from_slice(&name[..n]);
        let n = target.len().min(gnu.linkname.len());
        gnu.linkname[..n].copy_from_slice(&target[..n]);
        h.set_cksum();
        let _ = b.append(&h, &data[..]);
    }
    b.into_inner().unwrap_or_default()
}

/// Flips, overwrites or cuts a few bytes.
fn mutate(r: &mut Rng, bytes: &mut Vec<u8>) {
    if bytes.is_empty() {
        return;
    }
    for _ in 0..=r.below(4) {
        let i = r.below(bytes.len());
        match r.below(3) {
            0 => bytes[i] ^= 1 << r.below(8),
            1 => bytes[i] = [0, b'/', b'.', 0xff, b'0'][r.below(5)],
            _ => bytes.truncate(i),
        }
        if bytes.is_empty() {
            return;
        }
    }
}

fn enter_sandbox() {
    use nix::mount::{MsFlags, mount};
    use nix::sched::{CloneFlags, unshare};
    assert!(
        nix::unistd::geteuid().is_root(),
        "the unpack fuzz test runs as root (mknod, chown, chroot)"
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
    // created on the host, nothing is left once the thread ends.
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

/// Unpacks `tar` into a fresh `/layer`; true if the unpacker took it.
fn unpack_and_check(tar: &[u8], what: &str) -> bool {
    let layer = Path::new("/layer");
    std::fs::create_dir(layer).expect("create /layer");
    // Errors are fine (many inputs are refused); panics and escapes are not.
    let took = apply_tar(tar, layer).is_ok();
    let mut top: Vec<String> = std::fs::read_dir("/")
        .expect("read /")
        .map(|e| {
            e.expect("read /")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    top.sort();
    assert_eq!(
        top,
        ["layer", "sentinel"],
        "{what}: written outside the layer"
    );
    assert_eq!(
        std::fs::read_dir("/sentinel")
            .expect("read /sentinel")
            .count(),
        1,
        "{what}: written into /sentinel"
    );
    assert_eq!(
        std::fs::read("/sentinel/canary").expect("read the canary"),
        b"canary",
        "{what}: the canary changed"
    );
    let canary = std::fs::symlink_metadata("/sentinel/canary").expect("stat the canary");
    assert_eq!(canary.nlink(), 1, "{what}: the canary was hard-linked");
    std::fs::remove_dir_all(layer).expect("remove /layer");
    took
}

#[test]
fn hostile_layer_tars_never_escape_or_panic() {
    let run = std::thread::spawn(|| {
        enter_sandbox();
        let mut r = Rng(0x7a5e_1a7e_d00d_f00d);
        let (mut inputs, mut taken) = (0, 0);
        for i in 0..TARS {
            let tar = tar(&mut r);
            taken += usize::from(unpack_and_check(&tar, &format!("tar {i}")));
            inputs += 1;
            for m in 0..MUTATIONS {
                let mut bytes = tar.clone();
                mutate(&mut r, &mut bytes);
                unpack_and_check(&bytes, &format!("tar {i} mutation {m}"));
                inputs += 1;
            }
        }
        (inputs, taken)
    });
    let (inputs, taken) = run.join().expect("the unpacking thread panicked");
    // Some tars must be taken whole, or the run proves little about the
    // paths that write.
    assert!(taken > 0, "no tar was unpacked");
    eprintln!("unpack fuzz: {inputs} inputs, {taken} tars unpacked");
}
