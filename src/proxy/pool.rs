//! Idle upstream connections of one server, lock-free (a bounded MPMC queue).
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
    idle: ArrayQueue<Idle>,
    idle_timeout: Duration,
}

impl Pool {
    pub fn new(idle_timeout: Duration) -> Self {
        Self {
            idle: ArrayQueue::new(POOL_CAPACITY),
            idle_timeout,
        }
    }

    /// A live idle connection, if any.
    pub fn take(&self) -> Option<TcpStream> {
        while let Some(c) = self.idle.pop() {
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
        let _ = self.idle.push(Idle {
            stream,
            since: Instant::now(),
        });
    }

    /// Drops expired connections so their sockets are closed promptly.
    pub fn sweep(&self) {
        let n = self.idle.len();
        for _ in 0..n {
            match self.idle.pop() {
                Some(c) if c.since.elapsed() < self.idle_timeout => {
                    let _ = self.idle.push(c);
                }
                Some(_) => {}
                None => break,
            }
        }
    }

    pub fn idle_count(&self) -> usize {
        self.idle.len()
    }
}
