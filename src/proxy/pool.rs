//! Idle upstream connections of one server, lock-free (bounded MPMC queues), one queue per
//! proxy worker: a connection goes back to, and is taken from, the queue of the worker thread
//! whose reactor it is registered with, so a reused connection never wakes another thread.
//!
//! A connection is only reused while younger than the idle timeout (4 s by default, below
//! node.js's 5 s keep-alive) and only if the socket shows no EOF or stray bytes when taken, so a
//! request is never written onto a connection the backend is closing.

use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use tokio::net::TcpStream;

/// Idle connections kept per server.
const POOL_CAPACITY: usize = 256;

#[derive(Debug)]
struct Idle {
    stream: TcpStream,
    since: Instant,
}

#[derive(Debug)]
pub struct Pool {
    /// One queue per proxy worker (`workers::index()`).
    idle: Box<[ArrayQueue<Idle>]>,
    idle_timeout: Duration,
}

impl Pool {
    pub fn new(idle_timeout: Duration) -> Self {
        Self {
            idle: (0..super::workers::count())
                .map(|_| ArrayQueue::new(POOL_CAPACITY))
                .collect(),
            idle_timeout,
        }
    }

    /// This worker's queue.
    fn mine(&self) -> &ArrayQueue<Idle> {
        let i = super::workers::index();
        &self.idle[if i < self.idle.len() { i } else { 0 }]
    }

    /// A live idle connection, if any.
    pub fn take(&self) -> Option<TcpStream> {
        while let Some(c) = self.mine().pop() {
            if c.since.elapsed() >= self.idle_timeout {
                continue;
            }
            let mut probe = [0u8; 1];
            match c.stream.try_read(&mut probe) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Some(c.stream),
                _ => continue, // EOF, stray bytes or error: not reusable
            }
        }
        None
    }

    pub fn put(&self, stream: TcpStream) {
        if self.idle_timeout.is_zero() {
            return;
        }
        let _ = self.mine().push(Idle {
            stream,
            since: Instant::now(),
        });
    }

    /// Drops expired connections so their sockets are closed promptly.
    pub fn sweep(&self) {
        for q in self.idle.iter() {
            let n = q.len();
            for _ in 0..n {
                match q.pop() {
                    Some(c) if c.since.elapsed() < self.idle_timeout => {
                        let _ = q.push(c);
                    }
                    Some(_) => {}
                    None => break,
                }
            }
        }
    }

    pub fn idle_count(&self) -> usize {
        self.idle.iter().map(|q| q.len()).sum()
    }
}
