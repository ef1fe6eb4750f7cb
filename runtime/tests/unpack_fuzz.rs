//! The fuzz target `runtime/fuzz/fuzz_targets/unpack.rs` as an ordinary
//! test, so that every `cargo test` throws hostile layer tars at the
//! unpacker even where no nightly toolchain runs cargo-fuzz: thousands of
//! pseudo-random tars built from nasty names (`..`, absolute paths,
//! whiteouts of every kind, trailing slashes), symlinks and hard links
//! pointing anywhere, devices, FIFOs and xattrs, each also sent with bytes
//! mutated and truncated. None may panic, and nothing may be written
//! outside the layer.
//!
//! As in the fuzz target (and with its code), the unpacking runs on a
//! thread that has its own filesystem context and mount namespace and is
//! chrooted into a fresh tmpfs holding `/sentinel/canary`: whatever the
//! unpacker does stays there, and goes with the thread. Needs root (mknod,
//! chown, chroot), as CI runs it; fails, never skips, without.

use crius_runtime::image::unpack_fuzzing::{append_raw, enter_sandbox, unpack_and_check};

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
        let xattr = r.chance(6).then(|| match r.chance(2) {
            true => "SCHILY.xattr.trusted.overlay.opaque",
            false => "SCHILY.xattr.user.x",
        });
        let (mode, name, target) = (r.next() as u32, path(r), path(r));
        append_raw(
            &mut b,
            kind,
            mode,
            &name,
            &target,
            &data,
            xattr.map(|k| (k, &b"y"[..])),
        );
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
