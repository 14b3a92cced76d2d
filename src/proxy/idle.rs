//! The state an idle keep-alive connection sits in: waiting for the next request's first bytes
//! with nothing but the socket, one timer and a slot in the graceful stop's list of idle
//! waiters. Its size is what every idle connection costs (issue 16: <= 1 KiB per idle
//! connection, all included); the request's own state is built, boxed, only when bytes arrive
//! (`session::Conn::serve`).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Sleep;

use super::session::ClientIo;
use crate::runtime::ListenRt;

/// The graceful-stop signal every connection watches: idle keep-alive connections close at
/// once, busy ones after their current request. A flag, one `Notify` per proxy worker for the
/// busy waits (`wait`), and one list of idle connections' wakers per worker: an idle
/// connection holds only its index in that list (4 bytes; a `Notify` waiter is 64, a `watch`
/// receiver's `changed()` 120). Per worker, so the lists' locks, taken when a wait has to sleep
/// and when it ends, are never shared between threads.
#[derive(Clone)]
pub struct Stop(Arc<StopInner>);

struct StopInner {
    stopping: AtomicBool,
    notify: Box<[Notify]>,
    idle: Box<[Mutex<Wakers>]>,
}

/// Wakers of the idle waits that sleep on one worker: a slab (free slots are reused).
#[derive(Default)]
struct Wakers {
    slots: Vec<Option<Waker>>,
    free: Vec<u32>,
}

impl Wakers {
    fn insert(&mut self, w: Waker) -> u32 {
        match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(w);
                i
            }
            None => {
                self.slots.push(Some(w));
                u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX)
            }
        }
    }

    fn remove(&mut self, i: u32) {
        if let Some(slot) = self.slots.get_mut(i as usize) {
            if slot.take().is_some() {
                self.free.push(i);
            }
        }
    }
}

impl Default for Stop {
    fn default() -> Self {
        let n = super::workers::count();
        Stop(Arc::new(StopInner {
            stopping: AtomicBool::new(false),
            notify: (0..n).map(|_| Notify::new()).collect(),
            idle: (0..n).map(|_| Mutex::new(Wakers::default())).collect(),
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
        for list in self.0.idle.iter() {
            let woken: Vec<Waker> = {
                let mut l = list.lock().unwrap_or_else(|p| p.into_inner());
                l.slots.iter_mut().filter_map(Option::take).collect()
            };
            // The waits whose slots were emptied see the flag and end; their drop finds the
            // slot empty and leaves the free list alone.
            woken.into_iter().for_each(Waker::wake);
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

    /// This thread's list of idle waits: its index, for `idle`.
    fn idle_list(&self) -> u16 {
        u16::try_from(super::workers::index() % self.0.idle.len()).unwrap_or(0)
    }

    /// List `i` of idle waits.
    fn idle(&self, i: u16) -> std::sync::MutexGuard<'_, Wakers> {
        let l = &self.0.idle;
        l[usize::from(i) % l.len()]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
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

/// Waits for the next request's first bytes holding nothing but the socket, a timer and its
/// place in the graceful stop's list: this is the state an idle keep-alive connection sits in,
/// so its size is what an idle connection costs. `None` = close quietly (client gone, idle
/// timeout, graceful stop). The first request of a connection is not cut short by a graceful
/// stop.
pub(super) fn wait_request<'a, S: ClientIo>(
    stream: &'a mut S,
    stop: &'a Stop,
    at: tokio::time::Instant,
    first: bool,
) -> WaitRequest<'a, S> {
    WaitRequest {
        stream,
        stop,
        sleep: tokio::time::sleep_until(at),
        slot: NOT_LISTED,
        list: stop.idle_list(),
        first,
    }
}

/// `slot` of a wait that is not in the stop's list.
const NOT_LISTED: u32 = u32::MAX;

pin_project_lite::pin_project! {
    /// The future of [`wait_request`], written out by hand: an `async` block with `select!`
    /// kept its arguments twice and a 64-byte `Notify` waiter (240 bytes; this is 136).
    pub(super) struct WaitRequest<'a, S> {
        // `&mut`: the future is `Send` without asking the transport to be `Sync`.
        stream: &'a mut S,
        stop: &'a Stop,
        #[pin]
        sleep: Sleep,
        // Index in list `list` of the stop's idle waits (this worker's), or NOT_LISTED.
        slot: u32,
        list: u16,
        first: bool,
    }

    impl<'a, S> PinnedDrop for WaitRequest<'a, S> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if *this.slot != NOT_LISTED {
                this.stop.idle(*this.list).remove(*this.slot);
            }
        }
    }
}

impl<S: ClientIo> Future for WaitRequest<'_, S> {
    type Output = Option<Next>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Next>> {
        let this = self.project();
        // Biased: bytes that arrived win over the timer and the stop.
        match this.stream.poll_readable(cx) {
            Poll::Ready(Ok(())) => return Poll::Ready(Some(Next::Arrived(this.sleep.deadline()))),
            Poll::Ready(Err(_)) => return Poll::Ready(None),
            Poll::Pending => {}
        }
        if this.sleep.poll(cx).is_ready() {
            return Poll::Ready(this.first.then_some(Next::TimedOut));
        }
        if *this.first {
            return Poll::Pending;
        }
        // Listed before the flag is read: a `stop` after the read still finds this waker.
        {
            let mut list = this.stop.idle(*this.list);
            match list.slots.get_mut(*this.slot as usize) {
                Some(Some(w)) if *this.slot != NOT_LISTED => {
                    if !w.will_wake(cx.waker()) {
                        w.clone_from(cx.waker());
                    }
                }
                _ => *this.slot = list.insert(cx.waker().clone()),
            }
        }
        if this.stop.is_stopping() {
            return Poll::Ready(None);
        }
        Poll::Pending
    }
}

/// [`ClientIo::poll_readable`] as a future (it holds the `&mut`, so it is `Send`).
pub(super) fn readable<S: ClientIo>(
    stream: &mut S,
) -> impl std::future::Future<Output = std::io::Result<()>> + Send + '_ {
    std::future::poll_fn(move |cx| stream.poll_readable(cx))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::{TcpListener, TcpStream};

    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let c = TcpStream::connect(l.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (s, _) = l.accept().await.expect("accept");
        // A fresh registration may report readable once; a read that would block clears it.
        let e = s.try_read(&mut [0u8; 1]).expect_err("nothing was sent");
        assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
        (c, s)
    }

    fn listed(stop: &Stop) -> usize {
        stop.idle(0).slots.iter().filter(|w| w.is_some()).count()
    }

    /// An idle wait is in the stop's list only while it sleeps; a graceful stop wakes it and it
    /// ends at once; a first request's wait is never cut short by a stop.
    #[tokio::test]
    async fn idle_waits_leave_the_list_when_they_end_and_a_stop_ends_them() {
        let stop = Stop::new();
        let far = tokio::time::Instant::now() + Duration::from_secs(60);
        let (mut c1, mut s1) = pair().await;
        let (_c2, mut s2) = pair().await;
        let (_c3, mut s3) = pair().await;

        // Bytes arrive: the wait ends, and its slot is given back (reused by the next wait).
        let w1 = tokio::spawn({
            let stop = stop.clone();
            async move { wait_request(&mut s1, &stop, far, false).await.is_some() }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(listed(&stop), 1);
        tokio::io::AsyncWriteExt::write_all(&mut c1, b"G")
            .await
            .expect("write");
        assert!(w1.await.expect("join"), "arrived bytes end the wait");
        assert_eq!(listed(&stop), 0);

        let w2 = tokio::spawn({
            let stop = stop.clone();
            async move { wait_request(&mut s2, &stop, far, false).await.is_none() }
        });
        let w3 = tokio::spawn({
            let stop = stop.clone();
            async move { wait_request(&mut s3, &stop, far, true).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(listed(&stop), 1, "a first request's wait is not listed");
        assert_eq!(stop.idle(0).slots.len(), 1, "the freed slot was reused");
        stop.stop();
        let ended = tokio::time::timeout(Duration::from_secs(5), w2).await;
        assert!(ended.expect("the stop ends an idle wait").expect("join"));
        assert_eq!(listed(&stop), 0);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!w3.is_finished(), "the first request's wait goes on");
        w3.abort();
    }
}
