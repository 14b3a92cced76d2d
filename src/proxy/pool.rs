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
//! that finds the stack empty and no slot free waits for whichever comes first, a connection
//! coming back to its worker's stack or a slot, for as long as connections keep coming back to
//! that stack: it opens one anyway once none has come back for twice the server's running
//! median answer time on a reused connection plus 5 ms (scheduling jitter), and at the latest
//! after `min(timeout_connect, 1 s)`. Paced, requests to a busy server wait in turn for the
//! connections already answering, which come back every few hundred microseconds; requests
//! that would wait for nothing (every connection held by long polls, a chat's polling
//! transport held up to `timeout_server`) open at once, where a fixed one-second wait kept each
//! of them the full second. Until a reused connection has answered (a fresh start, a server
//! just added) the wait is the full bound: a fresh start under full load is when a flood of
//! opens is likeliest.
//!
//! Tried and dropped (benches/README.md, issue 16, thirteenth pass): pacing only a server whose
//! new connections are answered later than reused ones. Paced, the accept queue is short and
//! the lag hides itself; unpaced, a step from 50 to 500 clients flooded node's accept queue
//! before any lag showed (Tr up to 1.5 s; p99 0.30-0.33 s in two probes of eight, where the
//! fixed wait stayed at 44-95 ms in all eight). Waiting only as long as the lag was worse
//! still (p99 0.1-0.6 s, a fifth less throughput): each new connection also costs a busy
//! server an accept and a socket on every turn.

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
}

/// A wait goes on while a connection has come back within twice the median answer time plus
/// this (module doc).
const QUIET_SLACK: Duration = Duration::from_millis(5);

impl Waiters {
    /// When a wait that began at `t0` ends, as things stand: once no connection has come back
    /// for twice the median answer time plus [`QUIET_SLACK`], and by `deadline` at the latest
    /// (at `deadline` until a reused connection has answered).
    fn wait_end(&self, t0: Tick, deadline: Tick) -> Tick {
        let m = self.reused.get();
        if m.is_zero() {
            return deadline;
        }
        Tick::from_nanos(self.last_return.load(Ordering::Relaxed))
            .max(t0)
            .after(m * 2 + QUIET_SLACK)
            .min(deadline)
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
        let t0 = Tick::now();
        let w = &self.waiters[self.me()];
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
        w.last_return.store(since.as_nanos(), Ordering::Relaxed);
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
        // Nothing answered on a reused connection yet: the wait is the full bound.
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

    /// A wait goes on while connections keep coming back to the worker's stack (to other
    /// waiters), and ends soon after they stop.
    #[tokio::test]
    async fn a_wait_lasts_while_connections_keep_coming_back() {
        let pool = std::sync::Arc::new(Pool::new(Duration::from_secs(30)));
        let _slots: Vec<_> = (0..OPENING_MAX)
            .map(|_| pool.opening.clone().try_acquire_owned().expect("slot"))
            .collect();
        // Nothing measured: the full bound.
        let (got, waited) = pool.take_or_open(true, Duration::from_millis(100)).await;
        assert!(matches!(got, Got::Open(None)), "{got:?}");
        assert!(waited >= Duration::from_millis(90), "{waited:?}");
        // Answers in 1 ms and nothing coming back: the wait ends after 2 ms + 5 ms of quiet.
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
        returns.abort();
        assert!(matches!(got, Got::Open(None)), "{got:?}");
        assert!(waited >= Duration::from_millis(290), "{waited:?}");
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
