//! Places under the CRI socket's connection cap, and which connection
//! gives way when they are all taken.
//!
//! gRPC clients keep their connections open, and many never close them:
//! critest dials two per spec and keeps every one, a `crictl` loop in a
//! script leaves some behind until they time out, a restarted kubelet's
//! old connection lingers. Closing a newcomer at the cap would leave the
//! node unusable to a client that behaves well while idle ones hold every
//! place. So a newcomer at the cap takes the place of the connection that
//! has been idle (no call under way, streams included) the longest, if it
//! has been idle at least the `[grpc] yield_after_idle_secs`; only when
//! every connection is busy, or idle for less, is the newcomer closed.
//! A gRPC client whose idle connection was closed dials again when it
//! next makes a call. A client cannot keep a place by holding calls
//! open without the daemon bounding what those cost: their streams,
//! windows and bytes are capped per connection ([`crate::budget`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::task::AtomicWaker;
use hyper::body::{Body, Bytes, Frame, SizeHint};

/// The places of one socket.
#[derive(Debug)]
pub struct Places {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    cap: usize,
    yield_after: Duration,
    held: Mutex<Vec<Arc<Activity>>>,
    next_id: AtomicU64,
}

impl Shared {
    fn held(&self) -> MutexGuard<'_, Vec<Arc<Activity>>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What a connection is doing: its calls under way, since when it has
/// had none, and whether it was told to give way.
#[derive(Debug)]
pub struct Activity {
    id: u64,
    calls: AtomicUsize,
    quiet_since: Mutex<Instant>,
    closing: AtomicBool,
    waker: AtomicWaker,
}

impl Activity {
    fn new(id: u64, now: Instant) -> Self {
        Activity {
            id,
            calls: AtomicUsize::new(0),
            quiet_since: Mutex::new(now),
            closing: AtomicBool::new(false),
            waker: AtomicWaker::new(),
        }
    }

    fn quiet_since(&self) -> Instant {
        *self.quiet_since.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a call as under way until the guard drops.
    pub fn start_call(self: &Arc<Self>) -> CallGuard {
        self.calls.fetch_add(1, Ordering::SeqCst);
        CallGuard {
            activity: Arc::clone(self),
        }
    }

    /// Whether the connection must close (it gave its place away);
    /// wakes the task of `cx` when it must.
    pub fn poll_closing(&self, cx: &mut Context<'_>) -> bool {
        self.waker.register(cx.waker());
        self.closing.load(Ordering::SeqCst)
    }

    /// Whether this connection may give way at `now`.
    fn idle_for(&self, now: Instant) -> Option<Duration> {
        if self.calls.load(Ordering::SeqCst) > 0 || self.closing.load(Ordering::SeqCst) {
            return None;
        }
        Some(now.saturating_duration_since(self.quiet_since()))
    }
}

/// One call under way on a connection.
#[derive(Debug)]
pub struct CallGuard {
    activity: Arc<Activity>,
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        let mut quiet = self
            .activity
            .quiet_since
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if self.activity.calls.fetch_sub(1, Ordering::SeqCst) == 1 {
            *quiet = Instant::now();
        }
    }
}

/// A connection's place; freed when it drops.
#[derive(Debug)]
pub struct Place {
    activity: Arc<Activity>,
    shared: Arc<Shared>,
}

impl Place {
    /// What the connection holding this place is doing.
    pub fn activity(&self) -> &Arc<Activity> {
        &self.activity
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let id = self.activity.id;
        self.shared.held().retain(|a| a.id != id);
    }
}

/// How a newcomer got its place, or that it got none.
#[derive(Debug)]
pub enum Taken {
    /// A place was free.
    Free(Place),
    /// The connection idle the longest gave way; it closes.
    GaveWay(Place),
    /// Every place is held by a connection that is busy or was idle for
    /// less than the yield time.
    Refused,
}

impl Places {
    /// `cap` places; a connection idle at least `yield_after` gives way to
    /// a newcomer when they are all taken.
    pub fn new(cap: usize, yield_after: Duration) -> Self {
        Places {
            shared: Arc::new(Shared {
                cap,
                yield_after,
                held: Mutex::new(Vec::new()),
                next_id: AtomicU64::new(0),
            }),
        }
    }

    /// A place for a connection accepted at `now`.
    pub fn take(&self, now: Instant) -> Taken {
        let mut held = self.shared.held();
        let mut gave_way = false;
        if held.len() >= self.shared.cap {
            let victim = held
                .iter()
                .enumerate()
                .filter_map(|(i, a)| a.idle_for(now).map(|idle| (i, idle)))
                .filter(|(_, idle)| *idle >= self.shared.yield_after)
                .max_by_key(|(_, idle)| *idle)
                .map(|(i, _)| i);
            let Some(i) = victim else {
                return Taken::Refused;
            };
            let victim = held.swap_remove(i);
            victim.closing.store(true, Ordering::SeqCst);
            victim.waker.wake();
            gave_way = true;
        }
        let activity = Arc::new(Activity::new(
            self.shared.next_id.fetch_add(1, Ordering::Relaxed),
            now,
        ));
        held.push(Arc::clone(&activity));
        let place = Place {
            activity,
            shared: Arc::clone(&self.shared),
        };
        if gave_way {
            Taken::GaveWay(place)
        } else {
            Taken::Free(place)
        }
    }

    /// Closes every connection that has had no call under way for at
    /// least `quiet` (their reads end, so the server drops them); the
    /// number closed. For a stop: a client that never answers the
    /// server's goodbye must not hold the daemon up, while one with a
    /// call under way keeps it until the call is done.
    pub fn close_idle(&self, now: Instant, quiet: Duration) -> usize {
        let held = self.shared.held();
        let mut closed = 0;
        for activity in held.iter() {
            if activity.idle_for(now).is_some_and(|idle| idle >= quiet) {
                activity.closing.store(true, Ordering::SeqCst);
                activity.waker.wake();
                closed += 1;
            }
        }
        closed
    }
}

/// Finds the activity of a request's connection in its extensions (where
/// tonic puts what the server's connection says of itself).
pub type ActivityOf = fn(&http::Extensions) -> Option<Arc<Activity>>;

/// Counts every call of a connection as under way from its request until
/// its response body is done with (a stream's last message sent, or the
/// client gone).
#[derive(Debug, Clone, Copy)]
pub struct CallsLayer {
    activity_of: ActivityOf,
}

impl CallsLayer {
    /// Counts each call on the activity `activity_of` finds for it; a
    /// call it finds none for goes uncounted.
    pub fn new(activity_of: ActivityOf) -> Self {
        CallsLayer { activity_of }
    }
}

impl<S> tower::Layer<S> for CallsLayer {
    type Service = Calls<S>;

    fn layer(&self, inner: S) -> Calls<S> {
        Calls {
            inner,
            activity_of: self.activity_of,
        }
    }
}

/// See [`CallsLayer`].
#[derive(Debug, Clone)]
pub struct Calls<S> {
    inner: S,
    activity_of: ActivityOf,
}

impl<S, ReqB> tower::Service<http::Request<ReqB>> for Calls<S>
where
    S: tower::Service<http::Request<ReqB>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqB>) -> Self::Future {
        let guard = (self.activity_of)(req.extensions()).map(|a| a.start_call());
        let call = self.inner.call(req);
        Box::pin(async move {
            let res = call.await?;
            Ok(match guard {
                Some(guard) => res.map(|inner| {
                    tonic::body::Body::new(Counted {
                        inner,
                        _call: guard,
                    })
                }),
                None => res,
            })
        })
    }
}

/// A response body that keeps its call counted until it drops.
struct Counted {
    inner: tonic::body::Body,
    _call: CallGuard,
}

impl Body for Counted {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const YIELD: Duration = Duration::from_secs(5);

    fn place(taken: Taken) -> Place {
        match taken {
            Taken::Free(p) | Taken::GaveWay(p) => p,
            Taken::Refused => panic!("refused"),
        }
    }

    fn closing(p: &Place) -> bool {
        p.activity.closing.load(Ordering::SeqCst)
    }

    #[test]
    fn places_under_the_cap_are_free_and_freed_on_drop() {
        let places = Places::new(2, YIELD);
        let t0 = Instant::now();
        let a = place(places.take(t0));
        let b = place(places.take(t0));
        // Full, and both too fresh to give way.
        assert!(matches!(places.take(t0 + YIELD / 2), Taken::Refused));
        drop(a);
        assert!(matches!(places.take(t0), Taken::Free(_)));
        assert!(!closing(&b));
    }

    #[test]
    fn a_stop_closes_only_connections_quiet_long_enough() {
        let places = Places::new(4, YIELD);
        let t0 = Instant::now();
        let quiet = place(places.take(t0));
        let fresh = place(places.take(t0 + Duration::from_secs(9)));
        let busy = place(places.take(t0));
        let _call = busy.activity().start_call();
        let now = t0 + Duration::from_secs(10);
        assert_eq!(places.close_idle(now, Duration::from_secs(2)), 1);
        assert!(closing(&quiet) && !closing(&fresh) && !closing(&busy));
        // Closed once only; the fresh one's turn comes when it is quiet.
        assert_eq!(
            places.close_idle(now + Duration::from_secs(1), Duration::from_secs(2)),
            1
        );
        assert!(closing(&fresh) && !closing(&busy));
    }

    #[test]
    fn the_connection_idle_longest_gives_way() {
        let places = Places::new(2, YIELD);
        let t0 = Instant::now();
        let old = place(places.take(t0));
        let newer = place(places.take(t0 + Duration::from_secs(2)));
        let now = t0 + Duration::from_secs(10);
        let Taken::GaveWay(third) = places.take(now) else {
            panic!("nobody gave way");
        };
        assert!(closing(&old) && !closing(&newer) && !closing(&third));
        // The one that gave way no longer counts; dropping it later frees
        // nothing twice.
        drop(old);
        let Taken::GaveWay(_fourth) = places.take(now) else {
            panic!("nobody gave way");
        };
        assert!(closing(&newer) && !closing(&third));
    }

    #[test]
    fn a_connection_with_a_call_under_way_keeps_its_place() {
        let places = Places::new(1, YIELD);
        let t0 = Instant::now();
        let busy = place(places.take(t0));
        let call = busy.activity().start_call();
        let later = t0 + Duration::from_secs(3600);
        assert!(matches!(places.take(later), Taken::Refused));
        // Done: idle from now on, not from when it connected.
        drop(call);
        assert!(matches!(
            places.take(Instant::now() + YIELD / 2),
            Taken::Refused
        ));
        assert!(matches!(
            places.take(Instant::now() + YIELD * 2),
            Taken::GaveWay(_)
        ));
        assert!(closing(&busy));
    }

    #[test]
    fn a_zero_yield_time_lets_any_idle_connection_give_way() {
        let places = Places::new(1, Duration::ZERO);
        let t0 = Instant::now();
        let first = place(places.take(t0));
        assert!(matches!(places.take(t0), Taken::GaveWay(_)));
        assert!(closing(&first));
    }

    #[test]
    fn a_connection_told_to_close_wakes_its_task() {
        let places = Places::new(1, Duration::ZERO);
        let first = place(places.take(Instant::now()));
        let woken = Arc::new(AtomicBool::new(false));
        let waker = futures_util::task::waker(Arc::new(Flag(Arc::clone(&woken))));
        let mut cx = Context::from_waker(&waker);
        assert!(!first.activity().poll_closing(&mut cx));
        let _second = place(places.take(Instant::now()));
        assert!(woken.load(Ordering::SeqCst));
        assert!(first.activity().poll_closing(&mut cx));
    }

    struct Flag(Arc<AtomicBool>);

    impl futures_util::task::ArcWake for Flag {
        fn wake_by_ref(arc_self: &Arc<Self>) {
            arc_self.0.store(true, Ordering::SeqCst);
        }
    }
}
