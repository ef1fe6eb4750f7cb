//! The caps on what layers unpack to, and the meter that counts one
//! layer against them as it unpacks.

use std::cell::{Cell, RefCell};
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::UnpackError;

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
pub(super) struct Meter<'a> {
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
    pub(super) fn new(caps: &'a Caps) -> Meter<'a> {
        Meter {
            caps,
            tar: Cell::new(0),
            written: Cell::new(0),
            charged: Cell::new(0),
            exceeded: RefCell::new(None),
        }
    }

    /// The layer's unpacked size so far.
    pub(super) fn size(&self) -> u64 {
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
    pub(super) fn add_tar(&self, n: u64) -> Result<(), String> {
        let r = self.add(&self.tar, n);
        if let Err(m) = &r {
            self.exceeded.replace(Some(m.clone()));
        }
        r
    }

    /// Counts `n` bytes of file contents written.
    pub(super) fn add_written(&self, n: u64) -> Result<(), UnpackError> {
        self.add(&self.written, n).map_err(UnpackError::TooLarge)
    }

    /// A read error as what it is: a cap reached, or the stream's own.
    pub(super) fn read_error(&self, e: io::Error) -> UnpackError {
        match self.exceeded.borrow_mut().take() {
            Some(m) => UnpackError::TooLarge(m),
            None => UnpackError::Read(e),
        }
    }
}
