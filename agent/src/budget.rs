//! A per-connection budget for request bytes the server has taken but not
//! yet finished with.
//!
//! tonic reads a request body as it comes, releasing HTTP/2 flow control
//! as it goes, and buffers an unfinished message up to the message size
//! limit: a client that opens many streams, each with the start of a
//! 16 MiB message, makes the daemon hold 16 MiB per stream, however small
//! the windows are. [`RequestBudgetLayer`] wraps each request body so that
//! the bytes every unfinished request of one connection has taken stay
//! within that connection's budget (the largest request plus a little):
//! past it, a body stops reading until another request of the connection
//! is done, and HTTP/2 flow control stops the client. One request of the
//! largest size always fits; other connections are not slowed.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use hyper::body::{Body, Bytes, Frame, SizeHint};
use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};

/// What a connection's requests may hold unfinished; its place in each
/// request's extensions says which connection a request came on.
#[derive(Debug, Clone)]
pub struct ConnectionBudget {
    free: Arc<Semaphore>,
    /// The whole budget, in bytes.
    total: u32,
}

impl ConnectionBudget {
    /// A budget of `bytes` (at most 4 GiB).
    pub fn new(bytes: usize) -> Self {
        let total = u32::try_from(bytes).unwrap_or(u32::MAX);
        ConnectionBudget {
            free: Arc::new(Semaphore::new(total as usize)),
            total,
        }
    }
}

/// Finds a request's connection budget in its extensions (where tonic
/// puts what the server's connection says of itself).
pub type BudgetOf = fn(&http::Extensions) -> Option<ConnectionBudget>;

/// Wraps every request body in the budget of its connection.
#[derive(Debug, Clone, Copy)]
pub struct RequestBudgetLayer {
    budget_of: BudgetOf,
}

impl RequestBudgetLayer {
    /// Budgets each request by what `budget_of` finds for it; a request
    /// it finds none for goes unbudgeted.
    pub fn new(budget_of: BudgetOf) -> Self {
        RequestBudgetLayer { budget_of }
    }
}

impl<S> tower::Layer<S> for RequestBudgetLayer {
    type Service = RequestBudget<S>;

    fn layer(&self, inner: S) -> RequestBudget<S> {
        RequestBudget {
            inner,
            budget_of: self.budget_of,
        }
    }
}

/// See [`RequestBudgetLayer`].
#[derive(Debug, Clone)]
pub struct RequestBudget<S> {
    inner: S,
    budget_of: BudgetOf,
}

impl<S, R> tower::Service<http::Request<tonic::body::Body>> for RequestBudget<S>
where
    S: tower::Service<http::Request<tonic::body::Body>, Response = R>,
{
    type Response = R;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let budget = (self.budget_of)(req.extensions());
        let req = match budget {
            Some(budget) => req.map(|body| tonic::body::Body::new(Budgeted::new(body, budget))),
            None => req,
        };
        self.inner.call(req)
    }
}

type Acquire = Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send>>;

/// A request body that holds budget for every byte it has yielded, until
/// it is dropped (tonic drops it once the request's message is decoded).
struct Budgeted<B> {
    inner: B,
    budget: ConnectionBudget,
    held: Option<OwnedSemaphorePermit>,
    /// A frame taken from the connection, waiting for its budget.
    waiting: Option<(Acquire, Frame<Bytes>)>,
}

impl<B> Budgeted<B> {
    fn new(inner: B, budget: ConnectionBudget) -> Self {
        Budgeted {
            inner,
            budget,
            held: None,
            waiting: None,
        }
    }

    fn hold(&mut self, permit: OwnedSemaphorePermit) {
        match &mut self.held {
            Some(held) => held.merge(permit),
            None => self.held = Some(permit),
        }
    }
}

impl<B> Body for Budgeted<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        if let Some((acquire, _)) = &mut this.waiting {
            let acquired = ready!(acquire.as_mut().poll(cx));
            let Some((_, frame)) = this.waiting.take() else {
                return Poll::Pending;
            };
            // The semaphore is never closed; if it were, the frame goes on
            // unaccounted rather than lost.
            if let Ok(permit) = acquired {
                this.hold(permit);
            }
            return Poll::Ready(Some(Ok(frame)));
        }
        let frame = match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => frame,
            other => return Poll::Ready(other),
        };
        let len = frame.data_ref().map_or(0, Bytes::len);
        if len == 0 {
            return Poll::Ready(Some(Ok(frame)));
        }
        // A frame is at most 16 KiB, below any budget; clamped all the
        // same, so that one frame can never wait forever.
        let want = u32::try_from(len)
            .unwrap_or(u32::MAX)
            .min(this.budget.total);
        match this.budget.free.clone().try_acquire_many_owned(want) {
            Ok(permit) => {
                this.hold(permit);
                Poll::Ready(Some(Ok(frame)))
            }
            Err(_) => {
                let mut acquire: Acquire =
                    Box::pin(this.budget.free.clone().acquire_many_owned(want));
                // Registers the waker; the frame waits for its budget.
                if let Poll::Ready(Ok(permit)) = acquire.as_mut().poll(cx) {
                    this.hold(permit);
                    return Poll::Ready(Some(Ok(frame)));
                }
                this.waiting = Some((acquire, frame));
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.waiting.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    type Chunks = StreamBody<
        futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, std::io::Error>>>,
    >;

    fn body(chunks: &[&'static [u8]]) -> Chunks {
        let frames: Vec<_> = chunks
            .iter()
            .map(|c| Ok(Frame::data(Bytes::from_static(c))))
            .collect();
        StreamBody::new(futures_util::stream::iter(frames))
    }

    #[tokio::test]
    async fn bodies_of_one_connection_share_its_budget() {
        let budget = ConnectionBudget::new(10);
        let mut first = Budgeted::new(body(&[b"1234567"]), budget.clone());
        let mut second = Budgeted::new(body(&[b"abc", b"defgh"]), budget.clone());
        assert_eq!(
            first.frame().await.unwrap().unwrap().into_data().unwrap(),
            "1234567"
        );
        // 3 bytes left: the second body's first frame fits, its next waits.
        assert_eq!(
            second.frame().await.unwrap().unwrap().into_data().unwrap(),
            "abc"
        );
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(100), second.frame());
        assert!(waiting.await.is_err(), "over the budget, a body waits");
        // The first request is done: its budget is free again.
        drop(first);
        assert_eq!(
            second.frame().await.unwrap().unwrap().into_data().unwrap(),
            "defgh"
        );
        assert!(second.frame().await.is_none());
        // Another connection has its own.
        let mut other = Budgeted::new(body(&[b"0123456789"]), ConnectionBudget::new(10));
        assert_eq!(
            other.frame().await.unwrap().unwrap().into_data().unwrap(),
            "0123456789"
        );
    }

    #[tokio::test]
    async fn a_frame_larger_than_the_budget_still_goes_through() {
        let budget = ConnectionBudget::new(4);
        let mut b = Budgeted::new(body(&[b"0123456789"]), budget);
        assert_eq!(
            b.frame().await.unwrap().unwrap().into_data().unwrap(),
            "0123456789"
        );
    }
}
