//! A connection's buffers: the set (`Bufs`) a request works in, lent from a per-thread pool of
//! spare sets while a request is in progress and given back while the connection is idle, so an
//! idle keep-alive connection holds no buffer (HAProxy likewise) and a busy one does not pay
//! malloc/free of its buffers per request.

use std::net::IpAddr;

use bytes::BytesMut;

use super::forwarded;
use super::h1::{RequestHead, ResponseHead};
use super::session::FIRST_CHUNK;

/// Per-connection buffers, reused for every request on the connection.
pub(super) struct Bufs {
    pub(super) client: BytesMut,
    pub(super) upstream: BytesMut,
    pub(super) head_out: Vec<u8>,
    pub(super) scratch: Vec<u8>,
    pub(super) scratch2: Vec<u8>,
    /// Method and target of the current request, kept for the log line.
    pub(super) reqline: Vec<u8>,
    pub(super) method_len: usize,
    pub(super) req: RequestHead,
    pub(super) res: ResponseHead,
    /// `x-forwarded-for: <ip>\r\n` for `xff_ip`, formatted again only when the set serves
    /// another client address (`set_xff`).
    pub(super) xff: Vec<u8>,
    xff_ip: Option<IpAddr>,
}

impl Bufs {
    fn empty() -> Box<Bufs> {
        Box::new(Bufs {
            client: BytesMut::new(),
            upstream: BytesMut::new(),
            head_out: Vec::new(),
            scratch: Vec::new(),
            scratch2: Vec::new(),
            reqline: Vec::new(),
            method_len: 0,
            req: RequestHead::default(),
            res: ResponseHead::default(),
            xff: Vec::new(),
            xff_ip: None,
        })
    }

    /// Makes `xff` the X-Forwarded-For line of `ip` (kept in the set, so a connection holds no
    /// copy while idle and a set reused by the same client address formats nothing).
    pub(super) fn set_xff(&mut self, ip: IpAddr) {
        if self.xff_ip != Some(ip) {
            self.xff.clear();
            forwarded::write_header(&mut self.xff, ip);
            self.xff_ip = Some(ip);
        }
    }

    /// Empties every buffer (nothing of one connection is visible to the next) and frees the
    /// ones that grew past their usual size, so a spare set stays ~10 KiB.
    fn reset(&mut self) {
        fn trim_bytes(b: &mut BytesMut, keep: usize) {
            if b.capacity() > keep {
                *b = BytesMut::new();
            } else if b.capacity() > 0 {
                // A `BytesMut` keeps the front its reads consumed, and `clear` does not give it
                // back: its capacity shrinks request by request until `read_more` grows it (a
                // reallocation into cold memory every dozen requests, freed again here). Empty,
                // asking for its first size reclaims the front in place, without copying.
                b.clear();
                b.reserve(FIRST_CHUNK);
            }
        }
        fn trim_vec<T>(v: &mut Vec<T>, keep: usize) {
            if v.capacity() > keep {
                *v = Vec::new();
            } else {
                v.clear();
            }
        }
        trim_bytes(&mut self.client, 2 * FIRST_CHUNK);
        trim_bytes(&mut self.upstream, 2 * FIRST_CHUNK);
        for v in [
            &mut self.head_out,
            &mut self.scratch,
            &mut self.scratch2,
            &mut self.reqline,
        ] {
            trim_vec(v, 2 * FIRST_CHUNK);
        }
        self.method_len = 0;
        trim_vec(&mut self.req.headers, 64);
        trim_vec(&mut self.req.conn_listed, 16);
        trim_vec(&mut self.res.headers, 64);
        trim_vec(&mut self.res.conn_listed, 16);
    }
}

/// Spare buffer sets a thread keeps beyond the number its connections hold: with no request in
/// progress the pool shrinks back to this many (~640 KiB), and under load it holds as many as
/// were in use at once, so a burst of N concurrent requests does not free and re-allocate
/// (and, with the allocator's purge, fault in again) N - 64 sets on every request
/// (benches/README.md: 19 % of the CPU at 500 connections went to page faults and madvise).
const SPARE_MAX: usize = 64;

thread_local! {
    /// Buffer sets of connections that are between requests, reused by the next request on
    /// this thread (LIFO, so usually the same set). An idle keep-alive connection holds no
    /// buffer at all (HAProxy likewise), and a busy one does not pay malloc/free of ~10 KiB of
    /// buffers per request.
    // Boxed: a connection holds its set as one pointer, moved in and out without copying.
    #[allow(clippy::vec_box)]
    static SPARE: std::cell::RefCell<Vec<Box<Bufs>>> = const { std::cell::RefCell::new(Vec::new()) };
    /// Sets this thread's connections hold now (taken from `SPARE` or allocated).
    static IN_USE: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// How many spare sets the thread may keep while `in_use` sets are held.
fn spare_cap(in_use: usize) -> usize {
    SPARE_MAX + in_use
}

/// A connection's buffers: `Some` while a request is in progress, `None` (a spare set went back
/// to the thread's pool) while the connection waits for the next request. Dropping it gives the
/// set back too, whatever ends the connection.
#[derive(Default)]
pub(super) struct ConnBufs {
    bufs: Option<Box<Bufs>>,
}

impl ConnBufs {
    /// The buffers, taken from the thread's spare sets (or allocated) if the connection had none.
    pub(super) fn get(&mut self) -> &mut Bufs {
        self.bufs.get_or_insert_with(|| {
            let _ = IN_USE.try_with(|n| n.set(n.get() + 1));
            SPARE
                .try_with(|s| s.borrow_mut().pop())
                .ok()
                .flatten()
                .unwrap_or_else(Bufs::empty)
        })
    }

    /// Bytes of the next request already buffered (pipelined)?
    pub(super) fn has_pending(&self) -> bool {
        self.bufs.as_ref().is_some_and(|b| !b.client.is_empty())
    }

    /// Gives the buffers back while the client is idle between requests. Only called with no
    /// pending input.
    pub(super) fn release(&mut self) {
        if let Some(mut b) = self.bufs.take() {
            let in_use = IN_USE
                .try_with(|n| {
                    n.set(n.get().saturating_sub(1));
                    n.get()
                })
                .unwrap_or(0);
            let cap = spare_cap(in_use);
            b.reset();
            let _ = SPARE.try_with(|s| {
                let mut s = s.borrow_mut();
                if s.len() < cap {
                    s.push(b);
                }
                // The cap falls by one per release: the pool follows the load back down.
                while s.len() > cap {
                    s.pop();
                }
            });
        }
    }
}

impl Drop for ConnBufs {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Buf;

    fn spare() -> usize {
        SPARE.with(|s| s.borrow().len())
    }

    /// A read buffer's consumed front comes back at each reset, in place: its capacity does
    /// not shrink request by request until a read has to reallocate it.
    #[test]
    fn a_reset_gives_a_read_buffer_its_consumed_front_back_in_place() {
        let mut b = Bufs::empty();
        b.client.reserve(FIRST_CHUNK);
        let (full, at) = (b.client.capacity(), b.client.as_ptr());
        for _ in 0..40 {
            b.client.extend_from_slice(&[b'x'; 300]);
            b.client.advance(300);
            b.reset();
            assert_eq!(b.client.capacity(), full);
            assert_eq!(b.client.as_ptr(), at, "reclaimed, not reallocated");
        }
    }

    /// Under load the pool keeps as many sets as were in use at once (no free and re-allocate
    /// per request); when the load ends it shrinks back to SPARE_MAX.
    #[test]
    fn the_spare_pool_follows_the_load_and_shrinks_back() {
        let n = 3 * SPARE_MAX;
        let mut conns: Vec<ConnBufs> = (0..n).map(|_| ConnBufs::default()).collect();
        conns.iter_mut().for_each(|c| {
            c.get();
        });
        assert_eq!(IN_USE.with(|u| u.get()), n);
        // Half of them go idle and come back, as under a closed-loop load: every set is kept.
        for c in conns.iter_mut().take(n / 2) {
            c.release();
        }
        assert_eq!(spare(), n / 2, "sets released under load are all kept");
        for c in conns.iter_mut().take(n / 2) {
            c.get();
        }
        assert_eq!(spare(), 0, "and reused");
        // The load ends: every connection goes idle.
        for c in conns.iter_mut() {
            c.release();
        }
        assert_eq!(IN_USE.with(|u| u.get()), 0);
        assert!(spare() <= SPARE_MAX, "{} spare sets kept at rest", spare());
        drop(conns);
        assert!(spare() <= SPARE_MAX);
    }
}
