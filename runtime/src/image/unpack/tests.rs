//! The unpacker's unit tests: tars built in memory, unpacked into
//! temporary directories.

use std::ffi::CString;
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::sync::Arc;

use nix::sys::stat::{UtimensatFlags, utimensat};
use nix::sys::time::TimeSpec;
use tar::EntryType;

use super::entry::PAX_XATTR_PREFIX;
use super::whiteout::OPAQUE_XATTR;
use super::*;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A tar built in memory; entries owned by the caller (so the tests
/// also run unprivileged).
struct TarBuilder {
    b: tar::Builder<Vec<u8>>,
    uid: u64,
    gid: u64,
}

impl TarBuilder {
    fn new() -> Self {
        TarBuilder {
            b: tar::Builder::new(Vec::new()),
            uid: nix::unistd::geteuid().as_raw().into(),
            gid: nix::unistd::getegid().as_raw().into(),
        }
    }

    fn header(&self, kind: EntryType, mode: u32) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(self.uid);
        h.set_gid(self.gid);
        h.set_mtime(1_600_000_000);
        h.set_size(0);
        h
    }

    fn dir(mut self, path: &str) -> Self {
        let mut h = self.header(EntryType::Directory, 0o750);
        self.b.append_data(&mut h, path, io::empty()).unwrap();
        self
    }

    fn file(mut self, path: &str, data: &[u8]) -> Self {
        let mut h = self.header(EntryType::Regular, 0o640);
        h.set_size(data.len() as u64);
        self.b.append_data(&mut h, path, data).unwrap();
        self
    }

    fn raw_name_file(mut self, name: &str, data: &[u8]) -> Self {
        // append_data refuses ".." and absolute names: write the name
        // into the header.
        let mut h = self.header(EntryType::Regular, 0o644);
        h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_size(data.len() as u64);
        h.set_cksum();
        self.b.append(&h, data).unwrap();
        self
    }

    fn link(mut self, kind: EntryType, path: &str, target: &str) -> Self {
        let mut h = self.header(kind, 0o777);
        self.b.append_link(&mut h, path, target).unwrap();
        self
    }

    fn fifo(mut self, path: &str) -> Self {
        let mut h = self.header(EntryType::Fifo, 0o600);
        self.b.append_data(&mut h, path, io::empty()).unwrap();
        self
    }

    fn xattr_file(mut self, path: &str, key: &str, value: &[u8]) -> Self {
        let k = format!("{PAX_XATTR_PREFIX}{key}");
        self.b.append_pax_extensions([(k.as_str(), value)]).unwrap();
        self.file(path, b"x")
    }

    fn bytes(self) -> Vec<u8> {
        self.b.into_inner().unwrap()
    }
}

/// The value of the xattr `key` of `path` itself (`lgetxattr(2)`); at
/// most 64 bytes.
fn get_xattr(path: &Path, key: &str) -> Vec<u8> {
    let c_path = CString::new(path.as_os_str().as_bytes()).unwrap();
    let c_key = CString::new(key).unwrap();
    let mut v = [0u8; 64];
    // SAFETY: valid NUL-terminated strings and a live buffer of the
    // length passed.
    let n = unsafe {
        libc::lgetxattr(
            c_path.as_ptr(),
            c_key.as_ptr(),
            v.as_mut_ptr().cast(),
            v.len(),
        )
    };
    assert!(n >= 0, "lgetxattr {key}: {}", io::Error::last_os_error());
    v[..n as usize].to_vec()
}

fn apply(tar: &[u8]) -> (tempfile::TempDir, Result<(), UnpackError>) {
    let dir = tempfile::tempdir().unwrap();
    let r = apply_tar(tar, dir.path());
    (dir, r)
}

#[test]
fn unpacks_files_dirs_links_with_metadata() {
    let tar = TarBuilder::new()
        .dir("etc/")
        .file("etc/hello", b"hi\n")
        .raw_name_file("/abs/file", b"absolute")
        .file("./implied/parent/f", b"p")
        .link(EntryType::Symlink, "etc/link", "hello")
        .link(EntryType::Link, "etc/hard", "etc/hello")
        .fifo("run/fifo")
        .bytes();
    let (dir, r) = apply(&tar);
    r.unwrap();
    let root = dir.path();
    assert_eq!(fs::read(root.join("etc/hello")).unwrap(), b"hi\n");
    assert_eq!(fs::read(root.join("abs/file")).unwrap(), b"absolute");
    let m = fs::metadata(root.join("etc/hello")).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o640);
    assert_eq!(m.mtime(), 1_600_000_000);
    assert_eq!(m.nlink(), 2);
    let d = fs::metadata(root.join("etc")).unwrap();
    assert_eq!(d.mode() & 0o7777, 0o750);
    assert_eq!(
        d.mtime(),
        1_600_000_000,
        "dir mtime restored after its children"
    );
    assert_eq!(
        fs::metadata(root.join("implied/parent")).unwrap().mode() & 0o777,
        0o755
    );
    assert_eq!(
        fs::read_link(root.join("etc/link")).unwrap(),
        Path::new("hello")
    );
    let l = fs::symlink_metadata(root.join("etc/link")).unwrap();
    assert_eq!(l.mtime(), 1_600_000_000);
    assert!(
        fs::symlink_metadata(root.join("run/fifo"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
}

#[test]
fn later_entries_replace_earlier_ones() {
    let tar = TarBuilder::new()
        .file("a", b"file")
        .dir("a/")
        .file("a/x", b"in dir")
        .dir("b/")
        .file("b/keep", b"k")
        .dir("b/")
        .bytes();
    let (dir, r) = apply(&tar);
    r.unwrap();
    assert_eq!(fs::read(dir.path().join("a/x")).unwrap(), b"in dir");
    assert_eq!(fs::read(dir.path().join("b/keep")).unwrap(), b"k");
}

#[test]
fn rejects_path_escapes() {
    let outside = tempfile::tempdir().unwrap();
    let out = outside.path().to_str().unwrap();

    let (_d, r) = apply(&TarBuilder::new().raw_name_file("../evil", b"").bytes());
    assert!(matches!(r, Err(UnpackError::Invalid { .. })), "{r:?}");

    // A symlink to outside, then a file through it.
    let tar = TarBuilder::new()
        .link(EntryType::Symlink, "esc", out)
        .file("esc/pwned", b"x")
        .bytes();
    let (_d, r) = apply(&tar);
    let e = r.unwrap_err().to_string();
    assert!(e.contains("not a directory"), "{e}");

    // A relative symlink climbing out, then a file through it.
    let tar = TarBuilder::new()
        .dir("d/")
        .link(EntryType::Symlink, "d/up", "../../../../../../..")
        .file("d/up/tmp/pwned", b"x")
        .bytes();
    let (_d, r) = apply(&tar);
    assert!(r.is_err());

    // Hardlinks to outside or through symlinks.
    let tar = TarBuilder::new()
        .link(EntryType::Link, "h", "../../etc/passwd")
        .bytes();
    assert!(apply(&tar).1.is_err());
    let tar = TarBuilder::new()
        .link(EntryType::Symlink, "esc", out)
        .link(EntryType::Link, "h", "esc/x")
        .bytes();
    fs::write(outside.path().join("x"), b"secret").unwrap();
    let (d, r) = apply(&tar);
    assert!(r.is_err());
    assert!(!d.path().join("h").exists());

    // A directory replaced by a symlink: its recorded mtime is not
    // applied through the symlink.
    fs::create_dir(outside.path().join("b")).unwrap();
    let old = TimeSpec::new(1000, 0);
    let b_out = outside.path().join("b");
    utimensat(
        nix::fcntl::AT_FDCWD,
        &b_out,
        &old,
        &old,
        UtimensatFlags::NoFollowSymlink,
    )
    .unwrap();
    let tar = TarBuilder::new()
        .dir("a/")
        .dir("a/b/")
        .link(EntryType::Symlink, "a", out)
        .bytes();
    apply(&tar).1.unwrap();
    assert_eq!(fs::metadata(&b_out).unwrap().mtime(), 1000);
    fs::remove_dir(&b_out).unwrap();

    // A symlink planted where a file then goes: the symlink is
    // replaced, the outside untouched.
    let tar = TarBuilder::new()
        .link(EntryType::Symlink, "f", &format!("{out}/target"))
        .file("f", b"inside")
        .bytes();
    let (d, r) = apply(&tar);
    r.unwrap();
    assert_eq!(fs::read(d.path().join("f")).unwrap(), b"inside");
    assert!(!outside.path().join("target").exists());
    assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 1);
}

#[test]
fn whiteouts_become_overlay_whiteouts() {
    let tar = TarBuilder::new()
        .dir("etc/")
        .file("etc/.wh.hello", b"")
        .dir("cache/")
        .file("cache/.wh..wh..opq", b"")
        .file("cache/new", b"n")
        .file("keep", b"k")
        .file(".wh.keep", b"")
        .file(".wh..wh.plnk", b"")
        .bytes();
    let (dir, r) = apply(&tar);
    if !is_root() {
        // mknod of a character device needs CAP_MKNOD.
        assert!(r.is_err());
        return;
    }
    r.unwrap();
    let root = dir.path();
    let wh = fs::symlink_metadata(root.join("etc/hello")).unwrap();
    assert!(wh.file_type().is_char_device());
    assert_eq!(wh.rdev(), 0);
    assert!(!root.join("etc/.wh.hello").exists());
    assert_eq!(get_xattr(&root.join("cache"), OPAQUE_XATTR), b"y");
    assert!(!root.join("cache/.wh..wh..opq").exists());
    assert_eq!(fs::read(root.join("cache/new")).unwrap(), b"n");
    // A whiteout does not hide what its own layer has.
    assert_eq!(fs::read(root.join("keep")).unwrap(), b"k");
    assert!(fs::symlink_metadata(root.join(".wh..wh.plnk")).is_err());
}

#[test]
fn xattrs_are_applied() {
    let key = if is_root() {
        "trusted.crius"
    } else {
        "user.crius"
    };
    let tar = TarBuilder::new().xattr_file("f", key, b"v1").bytes();
    let (dir, r) = apply(&tar);
    if let Err(UnpackError::Io { source, .. }) = &r
        && source.raw_os_error() == Some(libc::ENOTSUP)
    {
        return; // filesystem without xattrs
    }
    r.unwrap();
    assert_eq!(get_xattr(&dir.path().join("f"), key), b"v1");
}

#[test]
fn gzip_zstd_and_plain_layers_and_diff_id() {
    let tar = TarBuilder::new().file("a", b"hello").bytes();
    let diff_id = Digest::of(&tar);
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(&tar).unwrap();
    let gz = enc.finish().unwrap();
    let zst = zstd::encode_all(&tar[..], 3).unwrap();
    // Two zstd frames back to back are one stream.
    let (head, tail) = tar.split_at(700);
    let mut zst2 = zstd::encode_all(head, 1).unwrap();
    zst2.extend(zstd::encode_all(tail, 1).unwrap());
    for (blob, media_type) in [
        (&tar, "application/vnd.oci.image.layer.v1.tar"),
        (&gz, "application/vnd.oci.image.layer.v1.tar+gzip"),
        (&gz, "application/octet-stream"),
        (&tar, ""),
        (&zst, "application/vnd.oci.image.layer.v1.tar+zstd"),
        (&zst2, "application/vnd.oci.image.layer.v1.tar+zstd"),
        (&zst, ""),
    ] {
        let out = tempfile::tempdir().unwrap();
        let mut reader = &blob[..];
        let got = unpack_layer(&mut reader, media_type, out.path(), &Caps::none()).unwrap();
        assert_eq!(got.diff_id, diff_id, "{media_type}");
        assert_eq!(got.size, tar.len() as u64);
        assert!(reader.is_empty(), "the blob is read to its end");
        assert_eq!(fs::read(out.path().join("a")).unwrap(), b"hello");
    }
    // Declared gzip or zstd, but plain: a read error, not a panic.
    for media_type in [
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.oci.image.layer.v1.tar+zstd",
    ] {
        let out = tempfile::tempdir().unwrap();
        let e = unpack_layer(&tar[..], media_type, out.path(), &Caps::none());
        assert!(matches!(e, Err(UnpackError::Read(_))), "{e:?}");
    }
    let out = tempfile::tempdir().unwrap();
    let e = unpack_layer(
        &tar[..],
        "application/vnd.oci.image.layer.v1.tar+lz4",
        out.path(),
        &Caps::none(),
    );
    assert!(matches!(e, Err(UnpackError::Unsupported(_))), "{e:?}");
}

#[test]
fn blank_numbers_are_zero_and_pax_overrides_the_header() {
    let mut b = tar::Builder::new(Vec::new());
    // A header as some writers leave it: uid, gid, mtime fields blank.
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(1);
    h.set_path("blank").unwrap();
    {
        let old = h.as_old_mut();
        old.uid = [0; 8];
        old.gid = [b' '; 8];
        old.mtime = [0; 12];
    }
    h.set_cksum();
    b.append(&h, &b"x"[..]).unwrap();
    // Owner and mtime in PAX records only.
    let uid = nix::unistd::geteuid().as_raw().to_string();
    let gid = nix::unistd::getegid().as_raw().to_string();
    b.append_pax_extensions([
        ("uid", uid.as_bytes()),
        ("gid", gid.as_bytes()),
        ("mtime", &b"1650000000.25"[..]),
    ])
    .unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(EntryType::Regular);
    h.set_mode(0o600);
    h.set_uid(4242);
    h.set_size(1);
    b.append_data(&mut h, "pax", &b"y"[..]).unwrap();
    let tar = b.into_inner().unwrap();
    let (dir, r) = apply(&tar);
    if !is_root() {
        // Owner 0 cannot be given away unprivileged.
        assert!(r.is_err());
        return;
    }
    r.unwrap();
    let blank = fs::metadata(dir.path().join("blank")).unwrap();
    assert_eq!((blank.uid(), blank.gid(), blank.mtime()), (0, 0, 0));
    let pax = fs::metadata(dir.path().join("pax")).unwrap();
    assert_eq!(pax.uid().to_string(), uid);
    assert_eq!(pax.mtime(), 1_650_000_000);
}

#[test]
fn truncated_tar_is_a_read_error() {
    let tar = TarBuilder::new().file("a", &[7u8; 4000]).bytes();
    let (_d, r) = apply(&tar[..1500]);
    assert!(matches!(r, Err(UnpackError::Read(_))), "{r:?}");
}

/// A gzip blob of a tar holding one file of `size` zero bytes,
/// made without holding it: gzip members of 1 MiB of zeros, repeated.
fn zeros_gzip(size: u64) -> Vec<u8> {
    let gz = |data: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    };
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(size);
    h.set_path("zeros").unwrap();
    h.set_cksum();
    let mut out = gz(h.as_bytes());
    let mib = gz(&vec![0u8; 1 << 20]);
    for _ in 0..size.div_ceil(1 << 20) {
        out.extend_from_slice(&mib);
    }
    out
}

fn caps(layer_mib: Option<u64>, image_mib: Option<u64>) -> Caps {
    Caps {
        layer: layer_mib.map(|m| m << 20),
        image: Arc::new(ImageBudget::new(image_mib.map(|m| m << 20))),
    }
}

#[test]
fn a_decompression_bomb_stops_at_the_layer_cap() {
    // 1 GiB of zeros in about 1 MiB of gzip.
    let bomb = zeros_gzip(1 << 30);
    assert!(bomb.len() < 2 << 20, "{}", bomb.len());
    let out = tempfile::tempdir().unwrap();
    let e = unpack_layer(&bomb[..], "", out.path(), &caps(Some(8), None)).unwrap_err();
    match &e {
        UnpackError::TooLarge(m) => {
            assert!(
                m.contains("8 MiB") && m.contains("max_layer_unpacked_mib"),
                "{m}"
            )
        }
        other => panic!("{other:?}"),
    }
    // It stopped at the cap: at most 8 MiB were written.
    let written = fs::metadata(out.path().join("zeros")).map_or(0, |m| m.len());
    assert!(written <= 8 << 20, "{written}");
    // Under the cap, the same kind of layer unpacks.
    let small = zeros_gzip(1 << 20);
    let out = tempfile::tempdir().unwrap();
    let got = unpack_layer(&small[..], "", out.path(), &caps(Some(8), None)).unwrap();
    assert!(got.size > 1 << 20 && got.size < 2 << 20, "{}", got.size);
}

#[test]
fn a_sparse_entry_counts_what_it_expands_to() {
    // A tar of a few KiB holding a GNU sparse file of 1 GiB: one byte
    // of data at its very end, a hole before.
    let octal = |field: &mut [u8], v: u64| {
        let s = format!("{v:0width$o}\0", width = field.len() - 1);
        field.copy_from_slice(s.as_bytes());
    };
    let size = 1u64 << 30;
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(EntryType::GNUSparse);
    h.set_mode(0o644);
    h.set_path("sparse").unwrap();
    h.set_size(1);
    let gnu = h.as_gnu_mut().unwrap();
    octal(&mut gnu.sparse[0].offset, size - 1);
    octal(&mut gnu.sparse[0].numbytes, 1);
    octal(&mut gnu.realsize, size);
    h.set_cksum();
    let mut b = tar::Builder::new(Vec::new());
    b.append(&h, &b"x"[..]).unwrap();
    let tar = b.into_inner().unwrap();
    assert!(tar.len() < 4096);
    let out = tempfile::tempdir().unwrap();
    let e = unpack_layer(&tar[..], "", out.path(), &caps(Some(4), None)).unwrap_err();
    assert!(matches!(e, UnpackError::TooLarge(_)), "{e:?}");
    let written = fs::metadata(out.path().join("sparse")).map_or(0, |m| m.len());
    assert!(written <= 4 << 20, "{written}");
}

#[test]
fn the_layers_of_an_image_share_its_cap() {
    let layer = zeros_gzip(3 << 20);
    let c = caps(Some(4), Some(8));
    for _ in 0..2 {
        let out = tempfile::tempdir().unwrap();
        unpack_layer(&layer[..], "", out.path(), &c).unwrap();
    }
    // Each layer fits its own cap; the third passes the image's.
    let out = tempfile::tempdir().unwrap();
    match unpack_layer(&layer[..], "", out.path(), &c) {
        Err(UnpackError::TooLarge(m)) => {
            assert!(
                m.contains("max_image_unpacked_mib") && m.contains("8 MiB"),
                "{m}"
            )
        }
        other => panic!("{other:?}"),
    }
}
