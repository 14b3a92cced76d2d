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

use std::time::Duration;

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::net::TcpStream;

use super::clock::Tick;

/// Idle connections kept per server.
const POOL_CAPACITY: usize = 256;

#[derive(Debug)]
struct Idle {
    stream: TcpStream,
    since: Tick,
}

#[derive(Debug)]
pub struct Pool {
    /// One stack per proxy worker (`workers::index()`): newest at the back.
    idle: Box<[Mutex<VecDeque<Idle>>]>,
    idle_timeout: Duration,
}

impl Pool {
    pub fn new(idle_timeout: Duration) -> Self {
        Self {
            idle: (0..super::workers::count())
                .map(|_| Mutex::new(VecDeque::new()))
                .collect(),
            idle_timeout,
        }
    }

    /// This worker's stack.
    fn mine(&self) -> std::sync::MutexGuard<'_, VecDeque<Idle>> {
        let i = super::workers::index();
        self.idle[if i < self.idle.len() { i } else { 0 }]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
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
        let stale = {
            let mut q = self.mine();
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
}
