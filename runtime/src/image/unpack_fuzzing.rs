//! What the unpacker's fuzz target (`runtime/fuzz`) and its twin in
//! `cargo test` (`runtime/tests/unpack_fuzz.rs`) share: writing hostile
//! tar entries, the sandbox the unpacking runs in, and the check that
//! nothing escaped the layer. Not part of the API: compiled only with
//! the `fuzzing` feature.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::unpack::apply_tar;

/// Appends an entry whose name and link name are written raw (the tar
/// crate's setters refuse `..`, which is the point here), with the pax
/// xattr `xattr` before it if given.
pub fn append_raw(
    b: &mut tar::Builder<Vec<u8>>,
    kind: tar::EntryType,
    mode: u32,
    name: &[u8],
    target: &[u8],
    data: &[u8],
    xattr: Option<(&str, &[u8])>,
) {
    if let Some(pair) = xattr {
        let _ = b.append_pax_extensions([pair]);
    }
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode & 0o7777);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_size(data.len() as u64);
    if let Some(gnu) = h.as_gnu_mut() {
        let n = name.len().min(gnu.name.len());
        gnu.name[..n].copy_from_slice(&name[..n]);
        let n = target.len().min(gnu.linkname.len());
        gnu.linkname[..n].copy_from_slice(&target[..n]);
    }
    h.set_cksum();
    let _ = b.append(&h, data);
}

/// Moves the calling thread into a sandbox: its own filesystem context
/// (CLONE_FS) and mount namespace, chrooted into a fresh tmpfs (mounted
/// over the temp dir, in that namespace only) holding `/sentinel/canary`.
/// Whatever the unpacker does there stays there and goes with the thread;
/// the rest of the process keeps the host's root. Needs root; panics on
/// any failure.
pub fn enter_sandbox() {
    use nix::mount::{MsFlags, mount};
    use nix::sched::{CloneFlags, unshare};
    assert!(
        nix::unistd::geteuid().is_root(),
        "unpack fuzzing runs as root (mknod, chown, chroot)"
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

/// In the sandbox: unpacks `tar` into a fresh `/layer`, panics (naming
/// `what`) if anything was written outside it, removes it. True if the
/// unpacker took the tar; refusing it is fine.
pub fn unpack_and_check(tar: &[u8], what: &str) -> bool {
    let layer = Path::new("/layer");
    std::fs::create_dir(layer).expect("create /layer");
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
