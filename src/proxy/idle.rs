//! The state an idle keep-alive connection sits in: waiting for the next request's first bytes
//! with nothing but the socket, one timer and one graceful-stop waiter. Its size is what every
//! idle connection costs (issue 16: <= 1 KiB per idle connection, all included); the request's
//! own state is built, boxed, only when bytes arrive (`session::Conn::serve`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::session::ClientIo;
use crate::runtime::ListenRt;

/// The graceful-stop signal every connection watches: idle keep-alive connections close at
/// once, busy ones after their current request. A flag and one `Notify` per proxy worker (a
/// waiter is 64 bytes, a `watch` receiver's `changed()` 120; per worker, so the waiter list's
/// lock, taken by every wait that has to sleep, is never shared between threads).
#[derive(Clone)]
pub struct Stop(Arc<StopInner>);

struct StopInner {
    stopping: AtomicBool,
    notify: Box<[Notify]>,
}

impl Default for Stop {
    fn default() -> Self {
        Stop(Arc::new(StopInner {
            stopping: AtomicBool::new(false),
            notify: (0..super::workers::count())
                .map(|_| Notify::new())
                .collect(),
        }))
    }
}

impl Stop {
    pub fn new() -> Self {
        Self::default()
    }

    /// Begins the graceful stop (idempotent).
    pub fn stop(&self) {
        self.0.stopping.store(true, Ordering::SeqCst);
        for n in self.0.notify.iter() {
            n.notify_waiters();
        }
    }

    pub fn is_stopping(&self) -> bool {
        self.0.stopping.load(Ordering::SeqCst)
    }

    /// This thread's waiter list.
    fn notify(&self) -> &Notify {
        let n = &self.0.notify;
        &n[super::workers::index() % n.len()]
    }

    /// Resolves once the stop has begun.
    pub async fn wait(&self) {
        loop {
            // Created before the flag is read: a `stop` in between still wakes it.
            let n = self.notify().notified();
            if self.is_stopping() {
                return;
            }
            n.await;
        }
    }
}

/// How the wait for a request's first bytes ended.
#[derive(Debug, Clone, Copy)]
pub(super) enum Next {
    /// Bytes of the next request are already buffered (pipelined).
    Buffered,
    /// The socket is readable; the head must be complete by this deadline.
    Arrived(tokio::time::Instant),
    /// The first request did not come within `timeout http-request`: 408.
    TimedOut,
}

/// The idle timeouts of the listen that served the last request, used for the next wait, in
/// milliseconds (kept in every idle connection: small).
#[derive(Clone, Copy)]
pub(super) struct IdleLimits {
    request_ms: u32,
    keep_alive_ms: u32,
}

impl IdleLimits {
    pub(super) fn of(listen: &ListenRt) -> Self {
        let ms = |d: Duration| u32::try_from(d.as_millis()).unwrap_or(u32::MAX);
        IdleLimits {
            request_ms: ms(listen.settings.timeout_http_request),
            keep_alive_ms: ms(listen.settings.timeout_http_keep_alive),
        }
    }

    pub(super) fn idle(self, first: bool) -> Duration {
        Duration::from_millis(u64::from(if first {
            self.request_ms
        } else {
            self.keep_alive_ms
        }))
    }
}

/// Waits for the next request's first bytes holding nothing but the socket, a timer and the
/// stop signal: this is the state an idle keep-alive connection sits in, so its size is what an
/// idle connection costs. `None` = close quietly (client gone, idle timeout, graceful stop).
/// The first request of a connection is not cut short by a graceful stop.
// Written out on purpose: the `async fn` form is larger (conn_task's size test).
#[allow(clippy::manual_async_fn)]
pub(super) fn wait_request<'a, S: ClientIo>(
    stream: &'a mut S,
    stop: &'a Stop,
    at: tokio::time::Instant,
    first: bool,
) -> impl std::future::Future<Output = Option<Next>> + Send + 'a {
    // Not an `async fn` (that would keep a second copy of its arguments), and no nested
    // `async fn`: the timer, the readiness poll and one stop waiter are all it holds.
    async move {
        let stopped = stop.notify().notified();
        if !first && stop.is_stopping() {
            return None;
        }
        tokio::select! {
            biased;
            r = readable(stream) => r.ok().map(|()| Next::Arrived(at)),
            _ = tokio::time::sleep_until(at) => first.then_some(Next::TimedOut),
            _ = stopped, if !first => None,
        }
    }
}

/// [`ClientIo::poll_readable`] as a future (it holds the `&mut`, so it is `Send`).
pub(super) fn readable<S: ClientIo>(
    stream: &mut S,
) -> impl std::future::Future<Output = std::io::Result<()>> + Send + '_ {
    std::future::poll_fn(move |cx| stream.poll_readable(cx))
}
