//! The state an idle keep-alive connection sits in: waiting for the next request's first bytes
//! with nothing but the socket, its deadline and a slot in its worker's list of idle waits.
//! Its size is what every idle connection costs (issue 16: <= 1 KiB per idle connection, all
//! included); the request's own state is built, boxed, only when bytes arrive
//! (`session::Conn::serve`).
//!
//! The idle timeouts are not tokio timers: each worker's list holds the waits' wakers and
//! deadlines, and one reaper task per list wakes the waits whose deadline has passed (at most
//! `REAP_GRAIN` late). An idle connection thus carries no 112-byte `Sleep`, and a request pays
//! no timer insert and removal in tokio's wheel (whose linked slots touch other connections'
//! timers), only the list slot it took anyway for the graceful stop. The same list bounds the
//! other wait every request has, for the response head (`deadline`, which a graceful stop
//! does not end).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::sync::Notify;

use super::clock::Tick;
use super::session::ClientIo;
use crate::runtime::ListenRt;

/// The graceful-stop signal every connection watches: idle keep-alive connections close at
/// once, busy ones after their current request. A flag, one `Notify` per proxy worker for the
/// busy waits (`wait`), and one list of idle waits per worker: an idle connection holds only
/// its index in that list (4 bytes; a `Notify` waiter is 64, a `watch` receiver's `changed()`
/// 120), and the list holds its waker and deadline for the stop and for the list's reaper.
/// Per worker, so the lists' locks, taken when a wait has to sleep and when it ends, are never
/// shared between threads.
#[derive(Clone)]
pub struct Stop(Arc<StopInner>);

struct StopInner {
    stopping: AtomicBool,
    notify: Box<[Notify]>,
    idle: Box<[IdleList]>,
}

/// One worker's idle waits, and the `Notify` its reaper sleeps on between sweeps.
#[derive(Default)]
struct IdleList {
    waits: Mutex<Wakers>,
    reaper: Notify,
}

/// How late at most a reaper wakes an expired wait, and how often at most it sweeps its list
/// (a sweep reads every slot: 10 000 idle connections take ~20 µs).
const REAP_GRAIN: Duration = Duration::from_millis(10);

/// One sleeping idle wait.
struct Idle {
    waker: Waker,
    deadline: Tick,
    /// The reaper found the deadline passed and woke the wait.
    expired: bool,
    /// A keep-alive wait (not a first request's): the graceful stop ends it.
    stoppable: bool,
}

/// The idle waits that sleep on one worker: a slab (free slots are reused).
#[derive(Default)]
struct Wakers {
    slots: Vec<Option<Idle>>,
    free: Vec<u32>,
    /// When the reaper will sweep next; `None` while it is not running or parked (nothing
    /// listed). An insert with an earlier deadline, or into a parked list, wakes it.
    next_sweep: Option<Tick>,
    /// A reaper task exists for this list (it clears this when it ends).
    reaping: bool,
}

impl Wakers {
    fn insert(&mut self, w: Idle) -> u32 {
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

    /// Wakes the waits whose deadline has passed; returns the earliest deadline still ahead.
    fn sweep(&mut self, now: Tick) -> Option<Tick> {
        let mut next: Option<Tick> = None;
        for w in self.slots.iter_mut().flatten() {
            if w.expired {
                continue;
            }
            if w.deadline <= now {
                w.expired = true;
                w.waker.wake_by_ref();
            } else if next.is_none_or(|n| w.deadline < n) {
                next = Some(w.deadline);
            }
        }
        next
    }
}

/// The reaper of list `i`: sweeps it when its earliest deadline is due (at most every
/// `REAP_GRAIN`) and parks while nothing is listed. It lives as long as its runtime.
async fn reap(stop: Arc<StopInner>, i: usize) {
    /// Clears `reaping` however the task ends (its runtime shut down), so the next wait on
    /// this list starts a new reaper.
    struct Reaping<'a>(&'a IdleList);
    impl Drop for Reaping<'_> {
        fn drop(&mut self) {
            let mut l = self.0.waits.lock().unwrap_or_else(|p| p.into_inner());
            l.reaping = false;
            l.next_sweep = None;
        }
    }
    let list = &stop.idle[i];
    let _reaping = Reaping(list);
    loop {
        // Created before the sweep: an insert after it still wakes this one.
        let poked = list.reaper.notified();
        let now = Tick::now();
        let next = {
            let mut l = list.waits.lock().unwrap_or_else(|p| p.into_inner());
            let next = l.sweep(now).map(|d| d.max(now.after(REAP_GRAIN)));
            l.next_sweep = next;
            next
        };
        match next {
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at.instant()) => {}
                    _ = poked => {}
                }
            }
            None => poked.await,
        }
    }
}

impl Default for Stop {
    fn default() -> Self {
        let n = super::workers::count();
        Stop(Arc::new(StopInner {
            stopping: AtomicBool::new(false),
            notify: (0..n).map(|_| Notify::new()).collect(),
            idle: (0..n).map(|_| IdleList::default()).collect(),
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
                let mut l = list.waits.lock().unwrap_or_else(|p| p.into_inner());
                l.slots
                    .iter_mut()
                    .filter(|slot| slot.as_ref().is_some_and(|w| w.stoppable))
                    .filter_map(|slot| slot.take().map(|w| w.waker))
                    .collect()
            };
            // The waits whose slots were emptied see the flag and end; their drop finds the
            // slot empty and leaves the free list alone (so no other wait can take a slot
            // while the wait it was emptied for still holds its index). First requests' waits
            // stay listed: a stop does not cut them short.
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
            .waits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes list `i`'s reaper (a deadline earlier than its next sweep, or a first wait in a
    /// parked list), or starts one if the list has none.
    fn poke_reaper(&self, i: u16, start: bool) {
        let i = usize::from(i) % self.0.idle.len();
        if start {
            tokio::spawn(reap(self.0.clone(), i));
        } else {
            self.0.idle[i].reaper.notify_one();
        }
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
    Arrived(Tick),
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

/// Waits for the next request's first bytes holding nothing but the socket, its deadline and
/// its place in the worker's list of idle waits: this is the state an idle keep-alive
/// connection sits in, so its size is what an idle connection costs. `None` = close quietly
/// (client gone, idle timeout, graceful stop). The first request of a connection is not cut
/// short by a graceful stop.
pub(super) fn wait_request<'a, S: ClientIo>(
    stream: &'a mut S,
    stop: &'a Stop,
    at: Tick,
    first: bool,
) -> WaitRequest<'a, S> {
    WaitRequest {
        stream,
        wait: Listing::new(stop, at, !first),
    }
}

/// `slot` of a wait that is not in the stop's list.
const NOT_LISTED: u32 = u32::MAX;

/// A wait's place in its worker's list: the stop, the deadline, the slot it holds while it
/// sleeps. Dropping it frees the slot, however the wait ends. Shared by the idle wait
/// (`WaitRequest`) and any future under a [`deadline`].
struct Listing<'a> {
    stop: &'a Stop,
    // The deadline: a `Tick` (8 bytes) rather than a 16-byte `Instant`, which keeps an idle
    // connection's task future at 280 bytes, a 384-byte tokio cell instead of 512
    // (`conn_task::tests::an_idle_connection_task_stays_small`).
    deadline: Tick,
    // Index in list `list` of the stop's waits (this worker's), or NOT_LISTED.
    slot: u32,
    list: u16,
    // A keep-alive wait: the graceful stop ends it.
    stoppable: bool,
}

impl<'a> Listing<'a> {
    fn new(stop: &'a Stop, at: Tick, stoppable: bool) -> Self {
        Listing {
            stop,
            deadline: at,
            slot: NOT_LISTED,
            list: stop.idle_list(),
            stoppable,
        }
    }

    fn deadline(&self) -> Tick {
        self.deadline
    }

    /// Lists the sleeping wait with `waker` (or refreshes the waker of the slot it holds),
    /// starting or waking the list's reaper if it must wake sooner; true once the reaper has
    /// found the deadline passed. A slot a stop emptied is listed again. Only `unlist` (or the
    /// drop) frees the slot.
    fn keep(&mut self, waker: &Waker) -> bool {
        let deadline = self.deadline;
        let poke = {
            let mut l = self.stop.idle(self.list);
            match l.slots.get_mut(self.slot as usize) {
                Some(Some(w)) if self.slot != NOT_LISTED => {
                    if w.expired {
                        return true;
                    }
                    if !w.waker.will_wake(waker) {
                        w.waker.clone_from(waker);
                    }
                    None
                }
                _ => {
                    self.slot = l.insert(Idle {
                        waker: waker.clone(),
                        deadline,
                        expired: false,
                        stoppable: self.stoppable,
                    });
                    // The reaper must wake by this deadline: start it, or wake it if it is
                    // parked or sleeps past the deadline.
                    if !l.reaping {
                        l.reaping = true;
                        Some(true)
                    } else if l.next_sweep.is_none_or(|n| deadline < n) {
                        // Until it has swept again: one wake-up is enough.
                        l.next_sweep = Some(deadline);
                        Some(false)
                    } else {
                        None
                    }
                }
            }
        };
        if let Some(start) = poke {
            self.stop.poke_reaper(self.list, start);
        }
        false
    }

    /// Frees the slot, if the wait holds one.
    fn unlist(&mut self) {
        if self.slot != NOT_LISTED {
            self.stop.idle(self.list).remove(self.slot);
            self.slot = NOT_LISTED;
        }
    }
}

impl Drop for Listing<'_> {
    fn drop(&mut self) {
        self.unlist();
    }
}

pin_project_lite::pin_project! {
    /// The future of [`wait_request`], written out by hand: an `async` block with `select!`
    /// kept its arguments twice, a 64-byte `Notify` waiter and a 112-byte `Sleep` (240 bytes;
    /// this is 32).
    pub(super) struct WaitRequest<'a, S> {
        // `&mut`: the future is `Send` without asking the transport to be `Sync`.
        stream: &'a mut S,
        // Not stoppable for a connection's first request.
        wait: Listing<'a>,
    }
}

impl<S: ClientIo> Future for WaitRequest<'_, S> {
    type Output = Option<Next>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Next>> {
        let this = self.project();
        // Biased: bytes that arrived win over the deadline and the stop.
        match this.stream.poll_readable(cx) {
            Poll::Ready(Ok(())) => return Poll::Ready(Some(Next::Arrived(this.wait.deadline()))),
            Poll::Ready(Err(_)) => return Poll::Ready(None),
            Poll::Pending => {}
        }
        let first = !this.wait.stoppable;
        // Listed before the flag is read: a `stop` after the read still finds this waker.
        if this.wait.keep(cx.waker()) {
            return Poll::Ready(first.then_some(Next::TimedOut));
        }
        if !first && this.wait.stop.is_stopping() {
            return Poll::Ready(None);
        }
        Poll::Pending
    }
}

/// `fut`, bounded by `at`: `Err(TimedOut)` if it is still pending then. Like
/// `tokio::time::timeout_at`, but the deadline is kept in the worker's list of waits (the
/// idle waits' list, never ended by a graceful stop) and fired by its reaper, at most
/// `REAP_GRAIN` late: a future that is ready at its first poll lists nothing, and one that
/// sleeps takes a slot in a per-worker slab instead of a timer in tokio's wheel (no runtime
/// handle cloned, no wheel slot whose list links other connections' timers). For the waits
/// every request has, such as the one for the response head.
pub(super) fn deadline<F: Future>(stop: &Stop, at: Tick, fut: F) -> Deadline<'_, F> {
    Deadline {
        fut,
        wait: Listing::new(stop, at, false),
    }
}

/// A [`deadline`] passed before its future was ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TimedOut;

pin_project_lite::pin_project! {
    /// The future of [`deadline`].
    pub(super) struct Deadline<'a, F> {
        #[pin]
        fut: F,
        wait: Listing<'a>,
    }
}

impl<F: Future> Future for Deadline<'_, F> {
    type Output = Result<F::Output, TimedOut>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(v) = this.fut.poll(cx) {
            this.wait.unlist();
            return Poll::Ready(Ok(v));
        }
        if this.wait.keep(cx.waker()) {
            this.wait.unlist();
            return Poll::Ready(Err(TimedOut));
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::{TcpListener, TcpStream};
    use tokio::time::Instant;

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
        let far = Tick::now().after(Duration::from_secs(60));
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
        assert_eq!(
            listed(&stop),
            2,
            "a first request's wait is listed too (its deadline)"
        );
        assert_eq!(stop.idle(0).slots.len(), 2, "the freed slot was reused");
        stop.stop();
        let ended = tokio::time::timeout(Duration::from_secs(5), w2).await;
        assert!(ended.expect("the stop ends an idle wait").expect("join"));
        assert_eq!(listed(&stop), 1, "the first request's wait stays listed");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!w3.is_finished(), "the first request's wait goes on");
        w3.abort();
        let _ = w3.await;
        assert_eq!(listed(&stop), 0);
    }

    /// The reaper ends waits at their deadlines, no earlier, each within the grain; a first
    /// request's wait says `TimedOut`, a keep-alive one `None`; a later, shorter deadline wakes
    /// a reaper that sleeps for a longer one; the list empties and the reaper parks.
    #[tokio::test]
    async fn waits_end_at_their_deadlines() {
        let stop = Stop::new();
        // The waits run in their own tasks: each gets a socket of its own, kept to the end.
        let mut clients = Vec::new();
        let server = || async {
            let (c, s) = pair().await;
            (c, &mut *Box::leak(Box::new(s)))
        };
        let (c1, s1) = server().await;
        let (c2, s2) = server().await;
        let (c3, s3) = server().await;
        clients.extend([c1, c2, c3]);
        let start = Instant::now();
        let start_tick = Tick::now();
        let wait = |s: &'static mut TcpStream, ms: u64, first: bool| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let at = start_tick.after(Duration::from_millis(ms));
                let r = wait_request(s, &stop, at, first).await;
                (r.map(|n| matches!(n, Next::TimedOut)), start.elapsed())
            })
        };
        let long = wait(s1, 600, false);
        tokio::time::sleep(Duration::from_millis(30)).await;
        // Listed after the reaper planned to sleep ~570 ms: it must wake for this one.
        let short = wait(s2, 200, true);
        let mid = wait(s3, 400, false);
        let (r, t) = short.await.expect("join");
        assert_eq!(
            r,
            Some(true),
            "a first request's wait times out with TimedOut"
        );
        assert!(
            t >= Duration::from_millis(200) && t < Duration::from_millis(600),
            "{t:?}"
        );
        let (r, t) = mid.await.expect("join");
        assert_eq!(r, None, "a keep-alive wait ends quietly");
        assert!(
            t >= Duration::from_millis(400) && t < Duration::from_millis(800),
            "{t:?}"
        );
        let (r, t) = long.await.expect("join");
        assert_eq!(r, None);
        assert!(
            t >= Duration::from_millis(600) && t < Duration::from_millis(1000),
            "{t:?}"
        );
        assert_eq!(listed(&stop), 0);
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(
            stop.idle(0).next_sweep,
            None,
            "nothing listed: the reaper is parked"
        );
    }

    /// `deadline` answers as `timeout_at` does: a ready future's output without listing
    /// anything, a late one's output when it comes in time (its slot given back), `TimedOut`
    /// at the deadline and not before; a graceful stop does not end it, and a dropped one
    /// leaves nothing listed.
    #[tokio::test]
    async fn deadlines_on_any_future_end_it_at_their_time_and_not_at_a_stop() {
        let stop = Stop::new();
        let soon = |ms: u64| Tick::now().after(Duration::from_millis(ms));
        assert_eq!(deadline(&stop, soon(1000), async { 7 }).await, Ok(7));
        assert_eq!(listed(&stop), 0, "a ready future lists nothing");

        let (mut c, mut s) = pair().await;
        let mut buf = [0u8; 4];
        let late = deadline(
            &stop,
            soon(2000),
            tokio::io::AsyncReadExt::read(&mut s, &mut buf),
        );
        let write = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert_eq!(listed(&stop), 1, "a sleeping future is listed");
            tokio::io::AsyncWriteExt::write_all(&mut c, b"ok").await
        };
        let (r, w) = tokio::join!(late, write);
        w.expect("write");
        assert_eq!(r.map(|n| n.ok()), Ok(Some(2)));
        assert_eq!(listed(&stop), 0, "its slot is given back when it ends");

        stop.stop();
        let start = Instant::now();
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            deadline(&stop, soon(300), std::future::pending::<()>()),
        )
        .await
        .expect("the deadline ends the wait");
        let t = start.elapsed();
        assert_eq!(r, Err(TimedOut));
        assert!(
            t >= Duration::from_millis(300) && t < Duration::from_millis(700),
            "ended after {t:?}, not at its deadline (a stop does not end it)"
        );
        assert_eq!(listed(&stop), 0);

        let dropped = tokio::time::timeout(
            Duration::from_millis(50),
            deadline(&stop, soon(60_000), std::future::pending::<()>()),
        )
        .await;
        assert!(dropped.is_err());
        assert_eq!(listed(&stop), 0, "a dropped wait leaves nothing listed");
    }
}
