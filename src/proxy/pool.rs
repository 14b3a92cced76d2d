//! Idle upstream connections of one server, one stack per proxy worker: a connection goes back
//! to, and is taken from, the stack of the worker thread whose reactor it is registered with, so
//! a reused connection never wakes another thread (and that worker's lock is uncontended: only
//! `sweep`, on the control thread, takes it from elsewhere).
//!
//! Last in, first out: the most recently used connection is reused, so a load that needs N
//! connections at once keeps N busy and lets the rest age out, instead of cycling through every
//! connection ever opened (node.js backends pay per open socket; benches/README.md).
//!
//! A connection is only reused while younger than the idle timeout (4 s by default, below
//! node.js's 5 s keep-alive) and only if the socket shows no EOF or stray bytes when taken, so a
//! request is never written onto a connection the backend is closing.
//!
//! Opening is paced per server ([`Pool::take_or_open`]). The reason is node.js: the kernel
//! completes a connection at once, but node accepts one per turn of its event loop, so a busy
//! node process leaves new connections, and the requests written on them, in its accept queue
//! for as long as its turns take. Opened freely, the requests a busy server falls behind on each
//! open another connection, its turns grow with its backlog, and the two feed each other: with
//! 500 clients through three node.js servers one server ended up holding ~400 of the requests
//! and ~200 unaccepted connections, p99 1.3 s and ~300 requests over 2 s per 10 s run
//! (benches/README.md, issue 16, twelfth pass).
//!
//! At most [`OPENING_MAX`] new connections may wait for their first answer at once. A request
//! that finds the stack empty and no slot free may wait for whichever comes first, a connection
//! coming back to its worker's stack or a slot, but only while waiting looks quicker than
//! opening. An opening is taken to cost the server's running median time to the first answer
//! on a new connection (its handler's time plus however long new connections wait to be
//! accepted), and never less than [`OPENING_COST_MIN`] (50 ms): a shorter wait is worth more
//! than a connection that a busy server must also accept, once per turn.
//! - It opens at once when no connection has come back for longer than an opening costs (an
//!   idle spell), or when the requests already waiting, and it, would take longer than that to
//!   be served at the mean interval between returns. (Until eight are in, the mean is pulled
//!   towards one answer time, as if one connection were in service: two connections back at
//!   one tick are not a rate of infinity.) A server whose handler takes 300 ms (node.js
//!   waiting on its database) answers a new connection as fast as a reused one, and returns
//!   connections tens of milliseconds apart: a burst opens its connections at once, but for
//!   the first few waiting requests, as through HAProxy.
//! - Else it opens once it has waited as long as an opening costs (so at most twice what the
//!   better choice would have taken), once no connection has come back for twice the median
//!   answer time on a reused connection (on a new one until that is measured) plus 5 ms (a
//!   stalled server, or long polls holding every connection: a chat's polling transport), and
//!   at the latest after `min(timeout_connect, 1 s)`, so a server that holds its slots (a black
//!   hole) delays requests, never blocks them.
//!
//! Until a new connection has answered (a fresh start, a server just added) a request waits at
//! most [`OPENING_COST_MIN`]. A busy node.js server answers within milliseconds on the
//! connections it has and returns one every few hundred microseconds: a burst of hundreds
//! waits for them (queued in edgelb, where node's accept queue would serve them last), and a
//! server that new connections reach late raises its own first-answer time, and with it how
//! long requests wait instead of opening.
//!
//! The wait was a fixed second at first (twelfth pass), then "while connections keep coming
//! back" (thirteenth): both kept a burst to a slow handler queued behind eight connections,
//! 1.2 s at the median for 300 clients to three 300 ms servers where HAProxy took 0.34 s
//! (benches/README.md, issue 16, fifteenth pass).
//!
//! Tried and dropped (benches/README.md, issue 16, thirteenth pass): pacing only a server whose
//! new connections are answered later than reused ones. Paced, the accept queue is short and
//! the lag hides itself; unpaced, a step from 50 to 500 clients flooded node's accept queue
//! before any lag showed (Tr up to 1.5 s; p99 0.30-0.33 s in two probes of eight, where the
//! fixed wait stayed at 44-95 ms in all eight). Waiting only as long as the lag was worse
//! still (p99 0.1-0.6 s, a fifth less throughput): each new connection also costs a busy
//! server an accept and a socket on every turn. And in the fifteenth pass: taking an opening
//! to cost just the first-answer time, without the 50 ms floor (a busy node answers in a few
//! milliseconds, so a step from 50 to 500 clients opened ~150 connections per server at once:
//! p99 0.55 and 0.70 s in two probes of three, one server holding ~390 requests), and
//! counting the time since the last return once per request ahead (a stall of a few
//! milliseconds then opened the whole queue: p99 0.68 and 0.72 s, 62 and 14 wrk timeouts).
//! Little's law for the interval (the median answer time over the server's requests in
//! service) assumes answers spread out; a burst's come back together, and with forty
//! requests just sent it predicted a return every 7 ms where none came for 300: a sixth of a
//! burst waited 300 ms.

use std::time::Duration;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::TcpStream;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use super::clock::Tick;

/// Idle connections kept per server.
const POOL_CAPACITY: usize = 256;

/// New connections to one server that may wait for their first answer at once (module doc).
pub const OPENING_MAX: usize = 8;

/// Longest a request waits for an opening slot or a returned connection before it opens a
/// connection anyway, however often connections come back (bounded by `timeout_connect` too),
/// so that a server that holds its slots (a black hole) delays requests, never blocks them.
pub const OPENING_WAIT_MAX: Duration = Duration::from_secs(1);

/// The least an opening is taken to cost, however fast the server answers a new connection:
/// a wait shorter than this is worth more than a connection a busy server must also accept
/// (module doc). Until a new connection has answered, what an opening is taken to cost.
pub const OPENING_COST_MIN: Duration = Duration::from_millis(50);

/// What [`Pool::take_or_open`] found.
#[derive(Debug)]
pub enum Got {
    /// An idle connection to reuse.
    Pooled(TcpStream),
    /// Open a new connection, holding this opening slot until the server's first answer on it
    /// (none when the wait ran out).
    Open(Option<OwnedSemaphorePermit>),
}

#[derive(Debug)]
struct Idle {
    stream: TcpStream,
    since: Tick,
}

#[derive(Debug)]
pub struct Pool {
    /// One stack per proxy worker (`workers::index()`): newest at the back.
    idle: Box<[Mutex<VecDeque<Idle>>]>,
    /// Per worker: its requests waiting in `take_or_open`, and how `put` wakes one of them.
    waiters: Box<[Waiters]>,
    /// Opening slots (`OPENING_MAX`), shared by the workers.
    opening: Arc<Semaphore>,
    idle_timeout: Duration,
}

/// One worker's waiting requests, and what tells how long they may wait. Aligned to a cache
/// line so that a worker writing here does not invalidate its neighbour's.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Waiters {
    count: AtomicUsize,
    returned: Notify,
    /// When a connection last came back to this worker's stack ([`Tick::as_nanos`]).
    last_return: AtomicU64,
    /// Answer time on a reused connection.
    reused: Median,
    /// Time to the first answer on a new connection: what opening one costs.
    fresh: Median,
    /// Mean interval between connections coming back to this worker's stack.
    gap: Mean,
}

/// A wait goes on while a connection has come back within twice the median answer time plus
/// this (module doc).
const QUIET_SLACK: Duration = Duration::from_millis(5);

impl Waiters {
    /// Whether a request with `ahead` others already waiting should open at once: their
    /// connections and its own would take longer to come back, at the mean interval between
    /// returns, than opening costs; or none has come back for longer than that (an idle spell).
    fn open_at_once(&self, ahead: usize) -> bool {
        let last = self.last_return.load(Ordering::Relaxed);
        if last == 0 {
            return false;
        }
        let cost = self.opening_cost();
        if Tick::now().since(Tick::from_nanos(last)) > cost {
            return true;
        }
        let returns = u32::try_from(ahead.saturating_add(1)).unwrap_or(u32::MAX);
        self.interval().saturating_mul(returns) > cost
    }

    /// The interval between returns a waiting request can count on: the mean measured, pulled
    /// towards one answer time (as if one connection were in service) until eight intervals
    /// are in, so that two connections back at one tick do not make it zero.
    fn interval(&self) -> Duration {
        let (mean, n) = (self.gap.get(), self.gap.samples());
        if n >= 8 {
            return mean;
        }
        (self.answer_time() + mean * n) / (n + 1)
    }

    /// The answer time on a reused connection, or on a new one until that is measured.
    fn answer_time(&self) -> Duration {
        match self.reused.get() {
            m if m.is_zero() => self.fresh.get(),
            m => m,
        }
    }

    /// What opening a connection costs a request: the server's median time to a first answer
    /// on a new connection, and at least [`OPENING_COST_MIN`].
    fn opening_cost(&self) -> Duration {
        self.fresh.get().max(OPENING_COST_MIN)
    }

    /// When a wait that began at `t0` ends, as things stand: after as long as an opening costs
    /// (at least [`OPENING_COST_MIN`]), once no connection has come back for twice the
    /// median answer time plus [`QUIET_SLACK`], and by `deadline` at the latest.
    fn wait_end(&self, t0: Tick, deadline: Tick) -> Tick {
        let mut end = deadline.min(t0.after(self.opening_cost()));
        let m = self.answer_time();
        if !m.is_zero() {
            let quiet = Tick::from_nanos(self.last_return.load(Ordering::Relaxed))
                .max(t0)
                .after(m * 2 + QUIET_SLACK);
            end = end.min(quiet);
        }
        end
    }
}

/// A running mean of intervals in nanoseconds (0: no sample yet): the plain mean of the first
/// eight samples, then each sample, capped at a second, moves it an eighth of the way. A mean,
/// not a median: connections come back in batches (several in one poll, at one tick), and what
/// a waiting request needs is their rate. Written only by its own worker, so loads and stores
/// suffice.
#[derive(Debug, Default)]
struct Mean {
    mean: AtomicU64,
    samples: AtomicU32,
}

impl Mean {
    fn observe(&self, sample: Duration) {
        let x = u64::try_from(sample.as_nanos())
            .unwrap_or(u64::MAX)
            .min(1_000_000_000);
        let n = self.samples.load(Ordering::Relaxed);
        let m = self.mean.load(Ordering::Relaxed);
        // m + (x - m) / weight, in unsigned arithmetic, with weight n + 1 up to 8 (a shift
        // then: this runs for every connection put back); at least 1 once sampled.
        let step = |d: u64| {
            if n >= 7 {
                d >> 3
            } else {
                d / u64::from(n + 1)
            }
        };
        let next = if x >= m {
            m + step(x - m)
        } else {
            m - step(m - x)
        };
        self.mean.store(next.max(1), Ordering::Relaxed);
        if n < 8 {
            self.samples.store(n + 1, Ordering::Relaxed);
        }
    }

    fn get(&self) -> Duration {
        Duration::from_nanos(self.mean.load(Ordering::Relaxed))
    }

    /// Samples taken, up to eight.
    fn samples(&self) -> u32 {
        self.samples.load(Ordering::Relaxed)
    }
}

/// A running median of answer times in microseconds (0: no sample yet), by frugal streaming:
/// a sample above it moves it up an eighth, one below moves it down an eighth. A long poll or
/// a stalled request among quick ones moves it one step, not by its length. Written only by
/// its own worker, so a load and a store suffice.
#[derive(Debug, Default)]
struct Median(AtomicU32);

impl Median {
    fn observe(&self, sample: Duration) {
        let x = u32::try_from(sample.as_micros()).unwrap_or(u32::MAX).max(1);
        let m = self.0.load(Ordering::Relaxed);
        let next = if m == 0 {
            x
        } else if x > m {
            m.saturating_add((m / 8).max(1))
        } else if x < m {
            (m - (m / 8).max(1)).max(1)
        } else {
            m
        };
        if next != m {
            self.0.store(next, Ordering::Relaxed);
        }
    }

    fn get(&self) -> Duration {
        Duration::from_micros(u64::from(self.0.load(Ordering::Relaxed)))
    }
}

/// One request counted in `Waiters::count` while it waits, however the wait ends.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Waiting(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Pool {
    pub fn new(idle_timeout: Duration) -> Self {
        Self {
            idle: (0..super::workers::count())
                .map(|_| Mutex::new(VecDeque::new()))
                .collect(),
            waiters: (0..super::workers::count())
                .map(|_| Waiters::default())
                .collect(),
            opening: Arc::new(Semaphore::new(OPENING_MAX)),
            idle_timeout,
        }
    }

    /// This worker's index into `idle` and `waiters`.
    fn me(&self) -> usize {
        let i = super::workers::index();
        if i < self.idle.len() {
            i
        } else {
            0
        }
    }

    /// This worker's stack.
    fn mine(&self) -> std::sync::MutexGuard<'_, VecDeque<Idle>> {
        self.idle[self.me()]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Records how long the server took to answer a request on a reused connection (from the
    /// request sent to the response head).
    pub fn observe_reused(&self, took: Duration) {
        self.waiters[self.me()].reused.observe(took);
    }

    /// Records how long the server took to answer the first request on a new connection (from
    /// the request sent to the response head): what opening costs.
    pub fn observe_fresh(&self, took: Duration) {
        self.waiters[self.me()].fresh.observe(took);
    }

    /// A connection for a request: an idle one (when `pooled` allows), else leave to open one,
    /// paced as the module doc says. The wait is at most `max_wait`; the time waited is returned
    /// (it counts in the log's Tw, as HAProxy's queue time does).
    pub async fn take_or_open(&self, pooled: bool, max_wait: Duration) -> (Got, Duration) {
        if pooled {
            if let Some(c) = self.take() {
                return (Got::Pooled(c), Duration::ZERO);
            }
        }
        if self.idle_timeout.is_zero() {
            // Pooling is off: no connection ever comes back, so pacing would only cap how many
            // requests the server gets at once (as for PROXY v2 servers, `upstream::connect`).
            return (Got::Open(None), Duration::ZERO);
        }
        if let Ok(p) = self.opening.clone().try_acquire_owned() {
            return (Got::Open(Some(p)), Duration::ZERO);
        }
        let w = &self.waiters[self.me()];
        if w.open_at_once(w.count.load(Ordering::SeqCst)) {
            return (Got::Open(None), Duration::ZERO);
        }
        let t0 = Tick::now();
        let _waiting = Waiting::new(&w.count);
        let deadline = t0.after(max_wait);
        let give_up = tokio::time::sleep_until(w.wait_end(t0, deadline).instant());
        tokio::pin!(give_up);
        let got = loop {
            // Registered before the stack is looked at, so a `put` after the look wakes it.
            let returned = w.returned.notified();
            tokio::pin!(returned);
            returned.as_mut().enable();
            if pooled {
                if let Some(c) = self.take() {
                    break Got::Pooled(c);
                }
            }
            tokio::select! {
                p = self.opening.clone().acquire_owned() => break Got::Open(p.ok()),
                _ = &mut returned => continue,
                _ = &mut give_up => {
                    // Connections came back meanwhile (to other waiters): wait on.
                    let end = w.wait_end(t0, deadline);
                    if end > Tick::now() {
                        give_up.as_mut().reset(end.instant());
                        continue;
                    }
                    break Got::Open(None);
                }
            }
        };
        (got, t0.elapsed())
    }

    /// A live idle connection, if any: the most recently used one.
    pub fn take(&self) -> Option<TcpStream> {
        loop {
            let c = self.mine().pop_back()?;
            if c.since.elapsed() >= self.idle_timeout {
                continue;
            }
            let mut probe = [0u8; 1];
            match c.stream.try_read(&mut probe) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Some(c.stream),
                _ => continue, // EOF, stray bytes or error: not reusable
            }
        }
    }

    pub fn put(&self, stream: TcpStream) {
        if self.idle_timeout.is_zero() {
            return;
        }
        let since = Tick::now();
        let me = self.me();
        let stale = {
            let mut q = self.idle[me].lock().unwrap_or_else(|p| p.into_inner());
            // The oldest connection goes once it has expired (one per put: a stack that is
            // never emptied still closes what it no longer uses), or when the stack is full.
            let stale = match q.front() {
                Some(c) if since.since(c.since) >= self.idle_timeout => q.pop_front(),
                _ if q.len() >= POOL_CAPACITY => q.pop_front(),
                _ => None,
            };
            q.push_back(Idle { stream, since });
            stale
        };
        // Closed outside the lock.
        drop(stale);
        let w = &self.waiters[me];
        // Only this worker writes it (`Median`): a load and a store.
        let last = w.last_return.load(Ordering::Relaxed);
        w.last_return.store(since.as_nanos(), Ordering::Relaxed);
        if last != 0 {
            w.gap.observe(since.since(Tick::from_nanos(last)));
        }
        if w.count.load(Ordering::SeqCst) > 0 {
            w.returned.notify_one();
        }
    }

    /// Drops expired connections so their sockets are closed promptly.
    pub fn sweep(&self) {
        let now = Tick::now();
        for q in self.idle.iter() {
            let expired: Vec<Idle> = {
                let mut q = q.lock().unwrap_or_else(|p| p.into_inner());
                // Oldest first: the expired ones are a prefix.
                let n = q
                    .iter()
                    .take_while(|c| now.since(c.since) >= self.idle_timeout)
                    .count();
                q.drain(..n).collect()
            };
            drop(expired);
        }
    }

    pub fn idle_count(&self) -> usize {
        self.idle
            .iter()
            .map(|q| q.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    /// A connected pair: (pooled side, the backend's side).
    async fn pair(l: &TcpListener) -> (TcpStream, TcpStream) {
        let c = TcpStream::connect(l.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (s, _) = l.accept().await.expect("accept");
        (c, s)
    }

    /// The most recently used connection is reused first; the oldest is closed once it has
    /// expired, by the next `put` or by `sweep`.
    #[tokio::test]
    async fn newest_first_and_the_expired_oldest_is_closed() {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let pool = Pool::new(Duration::from_millis(300));
        let (a, mut a_srv) = pair(&l).await;
        let (b, _b_srv) = pair(&l).await;
        let (c, _c_srv) = pair(&l).await;
        let (a_port, c_port) = (a.local_addr().ok(), c.local_addr().ok());
        pool.put(a);
        pool.put(b);
        pool.put(c);
        let got = pool.take().expect("a live connection");
        assert_eq!(got.local_addr().ok(), c_port, "newest first");
        pool.put(got);
        assert_eq!(pool.idle_count(), 3);

        tokio::time::sleep(Duration::from_millis(350)).await;
        let (d, _d_srv) = pair(&l).await;
        pool.put(d);
        assert_eq!(pool.idle_count(), 3, "the expired oldest went");
        let mut buf = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(5), a_srv.read(&mut buf))
            .await
            .expect("closed promptly")
            .expect("read");
        assert_eq!(n, 0, "the backend sees the expired connection closed");
        assert_ne!(pool.take().and_then(|s| s.local_addr().ok()), a_port);
        pool.sweep();
        assert_eq!(pool.idle_count(), 0, "sweep closes the other expired ones");
    }

    /// With every opening slot taken, a request waits; a connection put back goes to it (not
    /// to a new connection), and the wait leaves no count behind.
    #[tokio::test]
    async fn a_waiting_request_takes_the_connection_put_back() {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let pool = std::sync::Arc::new(Pool::new(Duration::from_secs(30)));
        // A new connection takes 20 s to answer: waiting for one to come back is better.
        pool.observe_fresh(Duration::from_secs(20));
        let mut slots = Vec::new();
        for _ in 0..OPENING_MAX {
            match pool.take_or_open(true, Duration::from_secs(30)).await {
                (Got::Open(Some(p)), _) => slots.push(p),
                other => panic!("expected a free slot, got {other:?}"),
            }
        }
        let p2 = pool.clone();
        let waiter =
            tokio::spawn(async move { p2.take_or_open(true, Duration::from_secs(30)).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiter.is_finished(), "no slot and no connection: it waits");
        assert_eq!(pool.waiters[0].count.load(Ordering::SeqCst), 1);
        let (c, _c_srv) = pair(&l).await;
        let port = c.local_addr().ok();
        pool.put(c);
        let (got, waited) = tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("woken by the put")
            .expect("task");
        match got {
            Got::Pooled(s) => assert_eq!(s.local_addr().ok(), port),
            other => panic!("expected the pooled connection, got {other:?}"),
        }
        assert!(waited >= Duration::from_millis(100), "{waited:?}");
        assert!(waited < Duration::from_secs(10), "{waited:?}");
        assert_eq!(pool.waiters[0].count.load(Ordering::SeqCst), 0);
        // A freed slot goes to the next request that needs one.
        drop(slots.pop());
        assert!(matches!(
            pool.take_or_open(true, Duration::from_secs(30)).await,
            (Got::Open(Some(_)), _)
        ));
    }

    /// A wait lasts no longer than opening would: `OPENING_COST_MIN` until a new connection has
    /// answered, then as long as one takes to answer, and less once connections stop coming
    /// back; and none at all when the queue ahead would take longer than that.
    #[tokio::test]
    async fn a_wait_lasts_no_longer_than_opening_would() {
        let pool = std::sync::Arc::new(Pool::new(Duration::from_secs(30)));
        let _slots: Vec<_> = (0..OPENING_MAX)
            .map(|_| pool.opening.clone().try_acquire_owned().expect("slot"))
            .collect();
        // Nothing measured: `OPENING_COST_MIN`.
        let (got, waited) = pool.take_or_open(true, Duration::from_secs(1)).await;
        assert!(matches!(got, Got::Open(None)), "{got:?}");
        assert!(
            waited >= OPENING_COST_MIN - Duration::from_millis(5),
            "{waited:?}"
        );
        assert!(waited < Duration::from_millis(500), "{waited:?}");
        // New connections answer in 10 s, reused ones in 1 ms, and nothing comes back: the wait
        // ends after 2 ms + 5 ms of quiet.
        pool.observe_fresh(Duration::from_secs(10));
        pool.observe_reused(Duration::from_millis(1));
        let (got, waited) = pool.take_or_open(true, Duration::from_secs(1)).await;
        assert!(matches!(got, Got::Open(None)), "{got:?}");
        assert!(waited < Duration::from_millis(500), "{waited:?}");
        // Connections coming back every 2 ms (taken by others): it waits out the bound.
        let p2 = pool.clone();
        let returns = tokio::spawn(async move {
            loop {
                let w = &p2.waiters[0];
                w.last_return
                    .store(Tick::now().as_nanos(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
        let (got, waited) = pool.take_or_open(true, Duration::from_millis(300)).await;
        assert!(matches!(got, Got::Open(None)), "{got:?}");
        assert!(waited >= Duration::from_millis(290), "{waited:?}");
        // A new connection answers in 100 ms: having waited that long, it opens.
        let p3 = Pool::new(Duration::from_secs(30));
        let _slots3: Vec<_> = (0..OPENING_MAX)
            .map(|_| p3.opening.clone().try_acquire_owned().expect("slot"))
            .collect();
        p3.observe_fresh(Duration::from_millis(100));
        p3.observe_reused(Duration::from_millis(100));
        p3.waiters[0]
            .last_return
            .store(Tick::now().as_nanos(), Ordering::Relaxed);
        let (got, waited) = p3.take_or_open(true, Duration::from_secs(1)).await;
        returns.abort();
        assert!(matches!(got, Got::Open(None)), "{got:?}");
        assert!(waited >= Duration::from_millis(95), "{waited:?}");
        assert!(waited < Duration::from_millis(600), "{waited:?}");
        // Connections come back every 10 ms and a new one answers in 50 ms: with nobody ahead
        // a request waits; with five ahead (60 ms of returns) it opens at once.
        for _ in 0..100 {
            p3.observe_fresh(Duration::from_millis(50));
        }
        for _ in 0..8 {
            p3.waiters[0].gap.observe(Duration::from_millis(10));
        }
        p3.waiters[0]
            .last_return
            .store(Tick::now().as_nanos(), Ordering::Relaxed);
        assert!(!p3.waiters[0].open_at_once(0));
        p3.waiters[0].count.store(5, Ordering::SeqCst);
        let (got, waited) = p3.take_or_open(true, Duration::from_secs(1)).await;
        assert!(matches!(got, Got::Open(None)), "{got:?}");
        assert_eq!(waited, Duration::ZERO);
        // Nobody ahead, but nothing has come back for 200 ms (an idle spell): at once too. (The
        // clock's epoch is this process's start, more than 400 ms of waits ago.)
        p3.waiters[0].count.store(0, Ordering::SeqCst);
        let now = Tick::now().as_nanos();
        assert!(now > 300_000_000, "{now}");
        p3.waiters[0]
            .last_return
            .store(now - 200_000_000, Ordering::Relaxed);
        assert!(p3.waiters[0].open_at_once(0));

        // Two connections come back at one tick from a server that answers in 300 ms: an
        // interval of zero, pulled towards one answer time, makes 150 ms, not zero: the first
        // request waiting waits, the third would wait longer than an opening costs.
        let pool = Pool::new(Duration::from_secs(30));
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        pool.observe_fresh(Duration::from_millis(300));
        let (a, _a_srv) = pair(&l).await;
        let (b, _b_srv) = pair(&l).await;
        pool.put(a);
        pool.put(b);
        let w = &pool.waiters[0];
        let interval = w.interval();
        assert!(
            interval >= Duration::from_millis(140) && interval <= Duration::from_millis(160),
            "{interval:?}"
        );
        assert!(!w.open_at_once(0));
        assert!(w.open_at_once(2));
        // Answers on reused connections in 100 µs, four more returns 100 µs apart: the prior
        // is that answer time now, and a queue of ten waits.
        pool.observe_reused(Duration::from_micros(100));
        for _ in 0..4 {
            w.gap.observe(Duration::from_micros(100));
        }
        assert!(
            w.interval() < Duration::from_millis(1),
            "{:?}",
            w.interval()
        );
        assert!(!w.open_at_once(10));
    }

    /// The running mean of intervals follows their rate: batches at one tick count as zero.
    #[test]
    fn the_mean_interval_follows_the_rate() {
        let m = Mean::default();
        assert_eq!(m.get(), Duration::ZERO);
        m.observe(Duration::from_millis(8));
        assert_eq!(
            m.get(),
            Duration::from_millis(8),
            "the first sample sets it"
        );
        m.observe(Duration::ZERO);
        m.observe(Duration::from_millis(1));
        assert_eq!(
            m.get(),
            Duration::from_millis(3),
            "the plain mean of the first few"
        );
        // Batches of four, 4 ms apart: a mean interval of 1 ms.
        for _ in 0..200 {
            m.observe(Duration::from_millis(4));
            for _ in 0..3 {
                m.observe(Duration::ZERO);
            }
        }
        let got = m.get();
        assert!(
            got >= Duration::from_micros(500) && got <= Duration::from_millis(2),
            "{got:?}"
        );
        // An idle hour counts as a second, and the rate is back within a few dozen returns.
        m.observe(Duration::from_secs(3600));
        assert!(m.get() <= Duration::from_millis(130), "{:?}", m.get());
        for _ in 0..60 {
            m.observe(Duration::from_millis(1));
        }
        assert!(m.get() <= Duration::from_millis(2), "{:?}", m.get());
    }

    /// The running median follows the bulk of the samples, one step per outlier.
    #[test]
    fn the_median_moves_an_eighth_per_sample() {
        let m = Median::default();
        assert_eq!(m.get(), Duration::ZERO);
        m.observe(Duration::from_millis(1));
        assert_eq!(
            m.get(),
            Duration::from_millis(1),
            "the first sample sets it"
        );
        for _ in 0..100 {
            m.observe(Duration::from_millis(40));
        }
        let settled = m.get();
        assert!(
            settled >= Duration::from_millis(35) && settled <= Duration::from_millis(46),
            "{settled:?}"
        );
        // One 30 s long poll moves it by an eighth, not to 30 s.
        m.observe(Duration::from_secs(30));
        assert!(
            m.get() <= settled * 9 / 8 + Duration::from_micros(1),
            "{:?}",
            m.get()
        );
        // Never back to "no sample".
        for _ in 0..200 {
            m.observe(Duration::ZERO);
        }
        assert_eq!(m.get(), Duration::from_micros(1));
    }

    /// With pooling off nothing comes back to wait for: every request opens at once.
    #[tokio::test]
    async fn without_pooling_opening_is_not_paced() {
        let pool = Pool::new(Duration::ZERO);
        for _ in 0..OPENING_MAX * 3 {
            let (got, waited) = pool.take_or_open(true, Duration::from_secs(30)).await;
            assert!(matches!(got, Got::Open(None)), "{got:?}");
            assert_eq!(waited, Duration::ZERO);
        }
    }
}
