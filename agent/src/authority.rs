//! Any `:authority` on the unix socket.
//!
//! gRPC clients built on grpc-core (Python's grpcio, C++, Ruby, PHP) and
//! grpc-java send the socket path as the `:authority` of a call over a unix
//! socket: `/run/crius/crius.sock`, or since grpc-core 1.57
//! `run%2Fcrius%2Fcrius.sock`. Neither is a valid URI authority, and h2
//! (under hyper and tonic) resets every such stream with PROTOCOL_ERROR
//! while it turns the request's pseudo-headers into a URI, before hyper or
//! tonic see the request. h2 has no setting to relax that check (its pull
//! request 487 proposes one). containerd, on grpc-go, accepts any
//! authority; on a unix socket the authority names nothing (the socket is
//! the peer), so crius does too.
//!
//! [`AnyAuthority`] is the narrowest place to do it without changing h2:
//! it sits on the read side of each accepted connection and, in the
//! client's HEADERS frames only, replaces an `:authority` value that h2
//! would refuse by a valid one *of the same length* (the socket path with
//! each character outside `[A-Za-z0-9.-]` made `-`). Everything else goes
//! through byte for byte, and a connection that carries valid authorities
//! (crictl, kubelet, grpc-go, tonic) is never changed.
//!
//! Same length matters because HPACK is stateful: a literal header with
//! incremental indexing enters both ends' dynamic tables, whose eviction
//! goes by entry size (name + value + 32). A value of equal length keeps
//! h2's table exactly in step with the client's, so later references to the
//! entry (grpc-core sends the authority once and indexes it after) resolve
//! to the replaced value, and every other index stays right. To know which
//! literal names `:authority` (a literal name, static index 1, or a dynamic
//! entry named so), the rewriter follows the client's dynamic table: the
//! size and whether the name is `:authority` of every entry.
//!
//! What it cannot follow (a header block over [`rewriter::MAX_HEADER_BLOCK`], an
//! HPACK or framing error, a client that does not start with the HTTP/2
//! preface) turns it into a plain pipe for the rest of the connection:
//! h2 then judges the bytes as they came, as without it.

mod hpack;
mod huffman;
mod rewriter;
#[cfg(test)]
mod tests;

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use rewriter::Rewriter;

/// An accepted connection whose client may name any `:authority`. See the
/// module docs.
#[derive(Debug)]
pub struct AnyAuthority<IO> {
    io: IO,
    rewriter: Rewriter,
    /// Bytes rewritten and not yet read by the server.
    out: Vec<u8>,
    /// Where `out` starts being unread.
    out_at: usize,
    eof: bool,
}

impl<IO> AnyAuthority<IO> {
    /// Wraps an accepted connection.
    pub fn new(io: IO) -> Self {
        AnyAuthority {
            io,
            rewriter: Rewriter::new(),
            out: Vec::new(),
            out_at: 0,
            eof: false,
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for AnyAuthority<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.out_at < this.out.len() {
                let n = buf.remaining().min(this.out.len() - this.out_at);
                buf.put_slice(&this.out[this.out_at..this.out_at + n]);
                this.out_at += n;
                if this.out_at == this.out.len() {
                    this.out.clear();
                    this.out_at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 16 * 1024];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.io).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                this.eof = true;
                this.rewriter.finish(&mut this.out);
            } else {
                this.rewriter.feed(read.filled(), &mut this.out);
            }
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for AnyAuthority<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
