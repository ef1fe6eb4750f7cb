//! A layer blob flowing from the network into the unpacker: the download
//! (async) sends chunks through a bounded channel to the unpacker (a
//! blocking thread) as they arrive, so unpacking overlaps the download
//! and at most a few chunks are held in memory.
//!
//! The download verifies digest and size as the chunks pass and sends
//! [`Chunk::End`] only once both match; without it the reader fails
//! instead of ending, so the unpacker never commits a layer whose blob
//! was not verified whole.

use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Buf, Bytes};
use tokio::sync::mpsc;

/// Chunks in flight between download and unpacker.
pub const CHANNEL_DEPTH: usize = 64;

/// What the download sends.
#[derive(Debug)]
pub enum Chunk {
    /// The next bytes of the blob.
    Data(Bytes),
    /// The blob is complete and verified.
    End,
}

/// The unpacker's end of the channel, as a blocking reader.
#[derive(Debug)]
pub struct BlobReader {
    rx: mpsc::Receiver<Chunk>,
    current: Bytes,
    ended: bool,
}

impl BlobReader {
    /// A reader over the chunks `rx` receives.
    pub fn new(rx: mpsc::Receiver<Chunk>) -> BlobReader {
        BlobReader {
            rx,
            current: Bytes::new(),
            ended: false,
        }
    }
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if !self.current.is_empty() {
                let n = buf.len().min(self.current.len());
                self.current.copy_to_slice(&mut buf[..n]);
                return Ok(n);
            }
            if self.ended || buf.is_empty() {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(Chunk::Data(b)) => self.current = b,
                Some(Chunk::End) => self.ended = true,
                // The download failed or was cancelled; it reports why.
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the download stopped before the blob was complete",
                    ));
                }
            }
        }
    }
}

/// Bytes done and to do of one pull's layers, for progress logs.
#[derive(Debug, Default)]
pub struct Progress {
    done: AtomicU64,
    total: AtomicU64,
}

impl Progress {
    /// Adds `n` bytes to do.
    pub fn add_total(&self, n: u64) {
        self.total.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts `n` bytes done (fetched, or found present).
    pub fn add_done(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }

    /// (done, total).
    pub fn get(&self) -> (u64, u64) {
        (
            self.done.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread")]
    async fn ends_only_on_end_and_fails_when_cut_off() {
        let (tx, rx) = mpsc::channel(2);
        let reader = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            BlobReader::new(rx).read_to_end(&mut out).map(|_| out)
        });
        tx.send(Chunk::Data(Bytes::from_static(b"hello ")))
            .await
            .unwrap();
        tx.send(Chunk::Data(Bytes::from_static(b"world")))
            .await
            .unwrap();
        tx.send(Chunk::End).await.unwrap();
        assert_eq!(reader.await.unwrap().unwrap(), b"hello world");

        let (tx, rx) = mpsc::channel(2);
        let reader = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            BlobReader::new(rx).read_to_end(&mut out)
        });
        tx.send(Chunk::Data(Bytes::from_static(b"half")))
            .await
            .unwrap();
        drop(tx);
        let e = reader.await.unwrap().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }
}
