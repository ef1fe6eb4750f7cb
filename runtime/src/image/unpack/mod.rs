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
//!
//! The parts: [`Caps`] and the meter that holds a layer to them
//! (`caps`), an entry's checks and writing (`entry`), where an entry may
//! go (`path`), whiteouts (`whiteout`), owner, mode, xattrs and times
//! (`metadata`); here, the driver that runs them over a tar.

mod caps;
mod entry;
mod metadata;
mod path;
#[cfg(test)]
mod tests;
mod whiteout;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use super::content::{Digest, Verifier};
use super::manifest::Compression;

use caps::Meter;
pub use caps::{Caps, ImageBudget};
use metadata::set_times;

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
