//! Unpacking a layer blob (a tar: plain, gzip or zstd) into an empty
//! directory in the form overlayfs reads as a lower layer.
//!
//! Entries keep their mode, numeric owner, mtime, xattrs, symlinks,
//! hardlinks (within the layer), device nodes and fifos. OCI whiteouts
//! become overlayfs ones: `.wh.<name>` a 0/0 character device `<name>`,
//! `.wh..wh..opq` the xattr `trusted.overlay.opaque=y` on its directory.
//!
//! Nothing is written outside the directory: `..` in a name or a hardlink
//! target is rejected, absolute names are taken relative to it, and every
//! parent of an entry is checked (lstat) to be a real directory, so a
//! symlink planted by an earlier entry is never followed. The tar crate's
//! own `unpack_in` is not used because it writes device nodes as regular
//! files, drops directory xattrs and mtimes, and skips `..` silently.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::ffi::{CString, OsStr};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use nix::sys::stat::{Mode, SFlag, UtimensatFlags, mknod, utimensat};
use nix::sys::time::TimeSpec;
use tar::EntryType;

use super::content::{Digest, Verifier};
use super::manifest::Compression;

const WHITEOUT_PREFIX: &str = ".wh.";
const WHITEOUT_META_PREFIX: &str = ".wh..wh.";
const WHITEOUT_OPAQUE: &str = ".wh..wh..opq";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
const PAX_XATTR_PREFIX: &str = "SCHILY.xattr.";
/// Files at least this large get their writeback started as soon as they
/// are written (see [`start_writeback`]).
const EARLY_WRITEBACK_MIN: u64 = 256 * 1024;

/// Why a layer could not be unpacked. The caller adds which layer of
/// which image.
#[derive(Debug)]
pub enum UnpackError {
    /// The layer stream could not be read: corrupt compression, a
    /// malformed or truncated tar.
    Read(io::Error),
    /// An entry is not acceptable (escapes the layer, unsupported type).
    Invalid {
        /// The entry's name in the tar.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Writing an entry to disk failed.
    Io {
        /// The entry's name in the tar.
        entry: String,
        /// What was being done.
        op: &'static str,
        /// The error.
        source: io::Error,
    },
    /// The layer format is not supported.
    Unsupported(String),
    /// The layer unpacks to more than a cap allows.
    TooLarge(String),
}

impl fmt::Display for UnpackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnpackError::Read(e) => write!(f, "malformed layer: {e}"),
            UnpackError::Invalid { entry, reason } => write!(f, "entry {entry:?}: {reason}"),
            UnpackError::Io { entry, op, source } => write!(f, "entry {entry:?}: {op}: {source}"),
            UnpackError::Unsupported(m) | UnpackError::TooLarge(m) => f.write_str(m),
        }
    }
}

/// What layers may unpack to: a cap on each, and one on the layers of an
/// image together. A layer's unpacked size is the length of its
/// uncompressed tar, or what its files are written with when that is
/// more (a sparse entry expands to its full size): what it costs the
/// disk, whatever the compression ratio.
#[derive(Debug, Clone)]
pub struct Caps {
    /// The most one layer may unpack to, bytes; `None`: no cap.
    pub layer: Option<u64>,
    /// What the image's layers may still unpack to, shared by those
    /// unpacking at the same time.
    pub image: Arc<ImageBudget>,
}

impl Caps {
    /// No caps.
    pub fn none() -> Caps {
        Caps {
            layer: None,
            image: Arc::new(ImageBudget::new(None)),
        }
    }
}

/// The bytes the layers of one image unpack to, counted against the
/// image's cap as they are written.
#[derive(Debug)]
pub struct ImageBudget {
    cap: Option<u64>,
    used: AtomicU64,
}

impl ImageBudget {
    /// A budget of `cap` bytes (`None`: no cap).
    pub fn new(cap: Option<u64>) -> ImageBudget {
        ImageBudget {
            cap,
            used: AtomicU64::new(0),
        }
    }

    /// Counts `n` more bytes; an error (saying so) once past the cap.
    pub fn charge(&self, n: u64) -> Result<(), String> {
        let used = self.used.fetch_add(n, Ordering::Relaxed).saturating_add(n);
        match self.cap {
            Some(cap) if used > cap => Err(format!(
                "the image unpacks to more than its cap of {} MiB (max_image_unpacked_mib)",
                cap >> 20
            )),
            _ => Ok(()),
        }
    }
}

/// Measures one layer as it unpacks, against the caps.
struct Meter<'a> {
    caps: &'a Caps,
    /// Bytes of uncompressed tar read.
    tar: Cell<u64>,
    /// Bytes of file contents written.
    written: Cell<u64>,
    /// What the image budget has been charged for this layer.
    charged: Cell<u64>,
    /// Why the tar reader failed, if a cap stopped it (its error passes
    /// through the tar crate, which may rewrap it).
    exceeded: RefCell<Option<String>>,
}

impl<'a> Meter<'a> {
    fn new(caps: &'a Caps) -> Meter<'a> {
        Meter {
            caps,
            tar: Cell::new(0),
            written: Cell::new(0),
            charged: Cell::new(0),
            exceeded: RefCell::new(None),
        }
    }

    /// The layer's unpacked size so far.
    fn size(&self) -> u64 {
        self.tar.get().max(self.written.get())
    }

    fn add(&self, counter: &Cell<u64>, n: u64) -> Result<(), String> {
        counter.set(counter.get().saturating_add(n));
        let size = self.size();
        if let Some(cap) = self.caps.layer
            && size > cap
        {
            return Err(format!(
                "the layer unpacks to more than its cap of {} MiB (max_layer_unpacked_mib)",
                cap >> 20
            ));
        }
        let delta = size - self.charged.get();
        if delta > 0 {
            self.charged.set(size);
            self.caps.image.charge(delta)?;
        }
        Ok(())
    }

    /// Counts `n` bytes of tar read.
    fn add_tar(&self, n: u64) -> Result<(), String> {
        let r = self.add(&self.tar, n);
        if let Err(m) = &r {
            self.exceeded.replace(Some(m.clone()));
        }
        r
    }

    /// Counts `n` bytes of file contents written.
    fn add_written(&self, n: u64) -> Result<(), UnpackError> {
        self.add(&self.written, n).map_err(UnpackError::TooLarge)
    }

    /// A read error as what it is: a cap reached, or the stream's own.
    fn read_error(&self, e: io::Error) -> UnpackError {
        match self.exceeded.borrow_mut().take() {
            Some(m) => UnpackError::TooLarge(m),
            None => UnpackError::Read(e),
        }
    }
}

/// What a layer unpacked to.
#[derive(Debug, PartialEq, Eq)]
pub struct Unpacked {
    /// The digest of the uncompressed tar: the layer's diff id.
    pub diff_id: Digest,
    /// The layer's unpacked size (see [`Caps`]), bytes.
    pub size: u64,
}

/// Unpacks a layer blob read from `blob` into `dest` (an empty
/// directory) within `caps`, and returns the digest of the uncompressed
/// tar (its diff id) and its unpacked size. The compression comes from
/// `media_type`, or from the blob's first bytes when the type does not
/// say.
///
/// `blob` is always read to its end, even past the end of the compressed
/// stream (padding some writers leave), so that a source which verifies
/// the blob as it is read has verified all of it when this returns.
pub fn unpack_layer<R: Read>(
    mut blob: R,
    media_type: &str,
    dest: &Path,
    caps: &Caps,
) -> Result<Unpacked, UnpackError> {
    let meter = Meter::new(caps);
    let diff_id = {
        let mut input = BufReader::with_capacity(256 * 1024, &mut blob);
        let compression = match Compression::from_media_type(media_type) {
            Ok(Some(c)) => c,
            Ok(None) => Compression::sniff(input.fill_buf().map_err(UnpackError::Read)?),
            Err(m) => return Err(UnpackError::Unsupported(m)),
        };
        let decoded: Box<dyn Read + '_> = match compression {
            Compression::None => Box::new(input),
            Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(input)),
            Compression::Zstd => Box::new(
                zstd::stream::read::Decoder::with_buffer(input).map_err(UnpackError::Read)?,
            ),
        };
        let mut hashing = HashingReader {
            inner: decoded,
            verifier: Verifier::default(),
            meter: &meter,
        };
        apply_tar_metered(&mut hashing, dest, &meter)?;
        // The diff id covers the whole stream, end-of-archive padding too
        // (counted too: a bomb may hide there).
        io::copy(&mut hashing, &mut io::sink()).map_err(|e| meter.read_error(e))?;
        hashing.verifier.finish()
    };
    io::copy(&mut blob, &mut io::sink()).map_err(UnpackError::Read)?;
    Ok(Unpacked {
        diff_id,
        size: meter.size(),
    })
}

struct HashingReader<'m, R> {
    inner: R,
    verifier: Verifier,
    meter: &'m Meter<'m>,
}

impl<R: Read> Read for HashingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.meter.add_tar(n as u64).map_err(io::Error::other)?;
        self.verifier.update(&buf[..n]);
        Ok(n)
    }
}

/// Applies an uncompressed layer tar to `root`, without caps.
pub fn apply_tar<R: Read>(reader: R, root: &Path) -> Result<(), UnpackError> {
    let caps = Caps::none();
    apply_tar_metered(reader, root, &Meter::new(&caps))
}

/// Applies an uncompressed layer tar to `root`, counting what its files
/// are written with on `meter`.
fn apply_tar_metered<R: Read>(
    reader: R,
    root: &Path,
    meter: &Meter<'_>,
) -> Result<(), UnpackError> {
    let mut archive = tar::Archive::new(reader);
    let mut unpacker = Unpacker {
        root,
        real_dirs: HashSet::new(),
        dir_times: HashMap::new(),
        buf: vec![0; 128 * 1024],
        meter,
    };
    for entry in archive.entries().map_err(|e| meter.read_error(e))? {
        let mut entry = entry.map_err(|e| meter.read_error(e))?;
        unpacker.entry(&mut entry)?;
    }
    // Directory mtimes last: creating entries inside changed them. Only
    // for directories still there: a later entry may have replaced one
    // (even by a symlink, which must not be followed).
    for (rel, mtime) in &unpacker.dir_times {
        if !unpacker.real_dirs.contains(rel) {
            continue;
        }
        set_times(&root.join(rel), *mtime).map_err(|source| UnpackError::Io {
            entry: rel.display().to_string(),
            op: "set mtime",
            source,
        })?;
    }
    Ok(())
}

/// Turns a tar name into a path relative to the layer root: leading `/`
/// and `.` components dropped, `..` refused. `None` is the root itself.
fn relative_path(name: &Path) -> Result<Option<PathBuf>, String> {
    let mut rel = PathBuf::new();
    for c in name.components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => return Err("path contains \"..\"".into()),
            Component::Normal(p) => rel.push(p),
        }
    }
    Ok((!rel.as_os_str().is_empty()).then_some(rel))
}

struct Unpacker<'a> {
    root: &'a Path,
    /// Paths (relative) known to be real directories, not symlinks.
    real_dirs: HashSet<PathBuf>,
    /// Directory entries and their mtimes (the last entry for a path wins).
    dir_times: HashMap<PathBuf, i64>,
    /// Copy buffer for file contents.
    buf: Vec<u8>,
    /// Counts what files are written with, against the caps.
    meter: &'a Meter<'a>,
}

struct Meta {
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: i64,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Unpacker<'_> {
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), UnpackError> {
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let invalid = |reason: String| UnpackError::Invalid {
            entry: name.clone(),
            reason,
        };
        let mut kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            return Ok(());
        }
        // Old (pre-POSIX) tars mark directories by a trailing slash only.
        if kind == EntryType::Regular
            && entry.header().as_ustar().is_none()
            && entry.header().as_gnu().is_none()
            && name.ends_with('/')
        {
            kind = EntryType::Directory;
        }
        let rel = relative_path(&entry.path().map_err(UnpackError::Read)?).map_err(invalid)?;
        let Some(rel) = rel else {
            // The layer root itself: its metadata is the snapshot's.
            return Ok(());
        };
        let meta = self.meta(entry).map_err(invalid)?;
        let (parent, base) = match (rel.parent(), rel.file_name()) {
            (Some(p), Some(b)) => (p.to_path_buf(), b.to_os_string()),
            _ => return Err(invalid("no file name".into())),
        };
        self.ensure_dir(&parent).map_err(|e| match e {
            DirError::NotDir(p) => invalid(format!(
                "parent {} is not a directory (a symlink or file earlier in the layer)",
                p.display()
            )),
            DirError::Io(source) => UnpackError::Io {
                entry: name.clone(),
                op: "create parent directory",
                source,
            },
        })?;
        let io_err = |op: &'static str| {
            let entry = name.clone();
            move |source: io::Error| UnpackError::Io { entry, op, source }
        };

        let base_bytes = base.as_bytes();
        if base_bytes.starts_with(WHITEOUT_PREFIX.as_bytes()) {
            return self.whiteout(&parent, base_bytes, &meta, &name);
        }

        let full = self.root.join(&rel);
        if let Ok(existing) = fs::symlink_metadata(&full) {
            // Replace what is there, except that a directory over a
            // directory merges (only its metadata is applied).
            if !(existing.is_dir() && kind == EntryType::Directory) {
                if existing.is_dir() {
                    fs::remove_dir_all(&full).map_err(io_err("replace"))?;
                    self.real_dirs.retain(|d| !d.starts_with(&rel));
                } else {
                    fs::remove_file(&full).map_err(io_err("replace"))?;
                }
            }
        }

        match kind {
            EntryType::Directory => {
                if fs::symlink_metadata(&full).is_err() {
                    fs::DirBuilder::new()
                        .mode(0o700)
                        .create(&full)
                        .map_err(io_err("mkdir"))?;
                }
                self.real_dirs.insert(rel.clone());
                self.dir_times.insert(rel, meta.mtime);
                apply_meta(&full, &meta, Target::Dir).map_err(io_err("set metadata"))?;
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                    .open(&full)
                    .map_err(io_err("create"))?;
                let mut written = 0u64;
                loop {
                    let n = entry
                        .read(&mut self.buf)
                        .map_err(|e| self.meter.read_error(e))?;
                    if n == 0 {
                        break;
                    }
                    // Before writing: a sparse entry's holes cost nothing
                    // to read and all to write.
                    self.meter.add_written(n as u64)?;
                    file.write_all(&self.buf[..n]).map_err(io_err("write"))?;
                    written += n as u64;
                }
                // The tar crate ends an entry's data quietly at EOF; a
                // short one means a truncated stream. (A sparse entry
                // expands beyond its stored size.)
                if kind != EntryType::GNUSparse && written != entry.size() {
                    return Err(UnpackError::Read(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("{name:?}: got {written} of {} bytes", entry.size()),
                    )));
                }
                if written >= EARLY_WRITEBACK_MIN {
                    start_writeback(&file);
                }
                apply_meta(&full, &meta, Target::File(&file)).map_err(io_err("set metadata"))?;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(UnpackError::Read)?
                    .ok_or_else(|| invalid("symlink without a target".into()))?;
                std::os::unix::fs::symlink(&target, &full).map_err(io_err("symlink"))?;
                apply_meta(&full, &meta, Target::Symlink).map_err(io_err("set metadata"))?;
            }
            EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(UnpackError::Read)?
                    .ok_or_else(|| invalid("hardlink without a target".into()))?;
                let target_rel = relative_path(&target)
                    .map_err(|r| invalid(format!("hardlink target: {r}")))?
                    .ok_or_else(|| invalid("hardlink to the layer root".into()))?;
                self.check_link_target(&target_rel).map_err(|r| {
                    invalid(format!("hardlink target {}: {r}", target_rel.display()))
                })?;
                // linkat without AT_SYMLINK_FOLLOW: a symlink target is
                // linked itself, never followed. The inode's metadata is
                // the target's.
                fs::hard_link(self.root.join(&target_rel), &full).map_err(io_err("hardlink"))?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let sflag = match kind {
                    EntryType::Char => SFlag::S_IFCHR,
                    EntryType::Block => SFlag::S_IFBLK,
                    _ => SFlag::S_IFIFO,
                };
                // A fifo has no device number (writers often leave the
                // fields empty, which does not parse).
                let (major, minor) = if kind == EntryType::Fifo {
                    (0, 0)
                } else {
                    let header = entry.header();
                    let bad = |e: io::Error| invalid(format!("bad device number: {e}"));
                    (
                        header.device_major().map_err(bad)?.unwrap_or(0),
                        header.device_minor().map_err(bad)?.unwrap_or(0),
                    )
                };
                mknod(
                    &full,
                    sflag,
                    Mode::from_bits_truncate(meta.mode & 0o777),
                    libc::makedev(major, minor),
                )
                .map_err(|e| io_err("mknod")(io::Error::from(e)))?;
                apply_meta(&full, &meta, Target::Node).map_err(io_err("set metadata"))?;
            }
            other => return Err(invalid(format!("unsupported entry type {other:?}"))),
        }
        Ok(())
    }

    /// Reads the entry's owner, mode, mtime and xattrs (before its data).
    fn meta<R: Read>(&self, entry: &mut tar::Entry<'_, R>) -> Result<Meta, String> {
        let h = entry.header();
        let raw = h.as_old();
        let id = |v: io::Result<u64>, field: &[u8], what: &str| -> Result<u32, String> {
            let v = numeric(v, field, what)?;
            u32::try_from(v).map_err(|_| format!("{what} {v} out of range"))
        };
        let mut uid = id(h.uid(), &raw.uid, "uid")?;
        let mut gid = id(h.gid(), &raw.gid, "gid")?;
        let mode = numeric(h.mode().map(u64::from), &raw.mode, "mode")? as u32 & 0o7777;
        let mtime = numeric(h.mtime(), &raw.mtime, "mtime")?;
        let mut mtime = i64::try_from(mtime).map_err(|_| format!("mtime {mtime} out of range"))?;
        let mut xattrs = Vec::new();
        if let Some(exts) = entry
            .pax_extensions()
            .map_err(|e| format!("bad pax header: {e}"))?
        {
            for ext in exts {
                let ext = ext.map_err(|e| format!("bad pax header: {e}"))?;
                let key = ext.key_bytes();
                if let Some(key) = key.strip_prefix(PAX_XATTR_PREFIX.as_bytes()) {
                    xattrs.push((key.to_vec(), ext.value_bytes().to_vec()));
                    continue;
                }
                // Values too large for the header (Go's writer, for one,
                // puts them here).
                let value = String::from_utf8_lossy(ext.value_bytes());
                let bad = |what: &str| format!("bad pax {what} {value:?}");
                match key {
                    b"uid" => uid = value.trim().parse().map_err(|_| bad("uid"))?,
                    b"gid" => gid = value.trim().parse().map_err(|_| bad("gid"))?,
                    b"mtime" => {
                        let whole = value.trim().split('.').next().unwrap_or_default();
                        mtime = whole.parse().map_err(|_| bad("mtime"))?;
                    }
                    _ => {}
                }
            }
        }
        Ok(Meta {
            uid,
            gid,
            mode,
            mtime,
            xattrs,
        })
    }

    fn whiteout(
        &mut self,
        parent: &Path,
        base: &[u8],
        meta: &Meta,
        name: &str,
    ) -> Result<(), UnpackError> {
        let dir = self.root.join(parent);
        if base == WHITEOUT_OPAQUE.as_bytes() {
            return set_xattr(&dir, OPAQUE_XATTR.as_bytes(), b"y").map_err(|source| {
                UnpackError::Io {
                    entry: name.to_string(),
                    op: "mark directory opaque",
                    source,
                }
            });
        }
        if base.starts_with(WHITEOUT_META_PREFIX.as_bytes()) {
            // Other AUFS metadata (.wh..wh.plnk …): not part of the tree.
            return Ok(());
        }
        let hidden = &base[WHITEOUT_PREFIX.len()..];
        if hidden.is_empty() || hidden == b"." || hidden == b".." {
            return Err(UnpackError::Invalid {
                entry: name.to_string(),
                reason: "whiteout of an invalid name".into(),
            });
        }
        let target = dir.join(OsStr::from_bytes(hidden));
        if fs::symlink_metadata(&target).is_ok() {
            // Present in this very layer: a whiteout only hides what lower
            // layers have (OCI image spec, "Whiteouts").
            return Ok(());
        }
        let io_err = |op: &'static str| {
            move |source: io::Error| UnpackError::Io {
                entry: name.to_string(),
                op,
                source,
            }
        };
        mknod(&target, SFlag::S_IFCHR, Mode::empty(), libc::makedev(0, 0))
            .map_err(|e| io_err("create whiteout device")(e.into()))?;
        std::os::unix::fs::lchown(&target, Some(meta.uid), Some(meta.gid))
            .map_err(io_err("chown whiteout"))
    }

    /// Makes sure `rel` (relative) is a real directory, creating missing
    /// ones (0755, as tar does for implied parents).
    fn ensure_dir(&mut self, rel: &Path) -> Result<(), DirError> {
        let mut prefix = PathBuf::new();
        for c in rel.components() {
            prefix.push(c);
            if self.real_dirs.contains(&prefix) {
                continue;
            }
            let full = self.root.join(&prefix);
            match fs::symlink_metadata(&full) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Err(DirError::NotDir(prefix)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::DirBuilder::new()
                        .mode(0o755)
                        .create(&full)
                        .map_err(DirError::Io)?;
                }
                Err(e) => return Err(DirError::Io(e)),
            }
            self.real_dirs.insert(prefix.clone());
        }
        Ok(())
    }

    /// A hardlink target must be a non-directory reached through real
    /// directories only.
    fn check_link_target(&self, rel: &Path) -> Result<(), String> {
        let mut prefix = PathBuf::new();
        if let Some(parent) = rel.parent() {
            for c in parent.components() {
                prefix.push(c);
                let is_dir = self.real_dirs.contains(&prefix)
                    || fs::symlink_metadata(self.root.join(&prefix)).is_ok_and(|m| m.is_dir());
                if !is_dir {
                    return Err(format!("{} is not a directory", prefix.display()));
                }
            }
        }
        match fs::symlink_metadata(self.root.join(rel)) {
            Ok(m) if m.is_dir() => Err("is a directory".into()),
            Ok(_) => Ok(()),
            Err(_) => Err("not in this layer".into()),
        }
    }
}

/// Asks the kernel to start writing a file's data to disk now, without
/// waiting, so that the layer's final syncfs finds most of it written
/// (disk writes then overlap the rest of the download). Best effort.
fn start_writeback(file: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain syscall on a file descriptor the caller keeps open;
    // no memory is passed.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
}

/// A numeric header field; a blank one (all NUL or spaces, as some
/// writers leave uid and gid) is 0, as GNU tar and Go read it.
fn numeric(parsed: io::Result<u64>, field: &[u8], what: &str) -> Result<u64, String> {
    match parsed {
        Ok(v) => Ok(v),
        Err(_) if field.iter().all(|b| *b == 0 || *b == b' ') => Ok(0),
        Err(e) => Err(format!("bad {what}: {e}")),
    }
}

enum DirError {
    NotDir(PathBuf),
    Io(io::Error),
}

/// What metadata is applied to.
enum Target<'f> {
    /// A regular file, still open.
    File(&'f File),
    /// A directory: its mtime is set at the end (see [`apply_tar`]).
    Dir,
    /// A symlink: no mode.
    Symlink,
    /// A device node or fifo.
    Node,
}

/// Owner, then xattrs, then mode (chown clears set-id bits), then mtime.
fn apply_meta(path: &Path, meta: &Meta, target: Target<'_>) -> io::Result<()> {
    match target {
        Target::File(f) => std::os::unix::fs::fchown(f, Some(meta.uid), Some(meta.gid))?,
        _ => std::os::unix::fs::lchown(path, Some(meta.uid), Some(meta.gid))?,
    }
    for (key, value) in &meta.xattrs {
        if let Err(e) = set_xattr(path, key, value) {
            let ignorable = e.raw_os_error() == Some(libc::ENOTSUP)
                // user.* xattrs are not allowed on symlinks and devices.
                || (e.raw_os_error() == Some(libc::EPERM) && key.starts_with(b"user."));
            if !ignorable {
                return Err(io::Error::new(
                    e.kind(),
                    format!("set xattr {}: {e}", String::from_utf8_lossy(key)),
                ));
            }
            tracing::warn!(path = %path.display(), key = %String::from_utf8_lossy(key), error = %e, "ignored xattr from layer");
        }
    }
    let perms = fs::Permissions::from_mode(meta.mode);
    match target {
        Target::File(f) => f.set_permissions(perms)?,
        // Never a symlink here, so following is moot.
        Target::Dir | Target::Node => fs::set_permissions(path, perms)?,
        Target::Symlink => {}
    }
    match target {
        Target::Dir => Ok(()),
        _ => set_times(path, meta.mtime),
    }
}

fn set_times(path: &Path, mtime: i64) -> io::Result<()> {
    let t = TimeSpec::new(mtime, 0);
    utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &t,
        &t,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(io::Error::from)
}

/// `lsetxattr(2)`: on the path itself, never through a final symlink.
fn set_xattr(path: &Path, key: &[u8], value: &[u8]) -> io::Result<()> {
    let invalid = |_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "NUL byte in path or xattr name",
        )
    };
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(invalid)?;
    let c_key = CString::new(key).map_err(invalid)?;
    // SAFETY: both strings are NUL-terminated and outlive the call; the
    // value pointer and length describe a live slice.
    let rc = unsafe {
        libc::lsetxattr(
            c_path.as_ptr(),
            c_key.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

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
        let mut v = [0u8; 4];
        let c_path = CString::new(root.join("cache").as_os_str().as_bytes()).unwrap();
        let c_key = CString::new(OPAQUE_XATTR).unwrap();
        // SAFETY: valid NUL-terminated strings and a live buffer.
        let n = unsafe {
            libc::lgetxattr(
                c_path.as_ptr(),
                c_key.as_ptr(),
                v.as_mut_ptr().cast(),
                v.len(),
            )
        };
        assert_eq!(n, 1);
        assert_eq!(v[0], b'y');
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
        let c_path = CString::new(dir.path().join("f").as_os_str().as_bytes()).unwrap();
        let c_key = CString::new(key).unwrap();
        let mut v = [0u8; 8];
        // SAFETY: valid NUL-terminated strings and a live buffer.
        let n = unsafe {
            libc::lgetxattr(
                c_path.as_ptr(),
                c_key.as_ptr(),
                v.as_mut_ptr().cast(),
                v.len(),
            )
        };
        assert_eq!(&v[..n as usize], b"v1");
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
}
