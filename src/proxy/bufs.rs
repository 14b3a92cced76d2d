//! A connection's buffers: the set (`Bufs`) a request works in, lent from a per-thread pool of
//! spare sets while a request is in progress and given back while the connection is idle, so an
//! idle keep-alive connection holds no buffer (HAProxy likewise) and a busy one does not pay
//! malloc/free of its buffers per request.
//!
//! A request also gives its set back while it waits for its server's answer (`park`), keeping
//! only its upstream head and request line (`Kept`), and takes the pool's top set when the
//! answer arrives (`unpark`). With many requests in flight each set is thus reused within
//! microseconds and stays in the cache, instead of one set per request going cold over a
//! round trip (benches/README.md, ninth pass).

use std::net::IpAddr;

use bytes::BytesMut;

use super::forwarded;
use super::h1::{MaxLines, RequestHead, ResponseHead};
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

/// A thread's spare buffers (one thread-local, so each take or give-back reaches it once).
struct Pool {
    /// Buffer sets no request holds, reused by the next request on this thread (LIFO, so the
    /// one most recently given back, still in the cache). An idle keep-alive connection holds
    /// no buffer at all (HAProxy likewise), and a busy one does not pay malloc/free of ~10 KiB
    /// of buffers per request.
    // Boxed: a connection holds its set as one pointer, moved in and out without copying.
    #[allow(clippy::vec_box)]
    sets: Vec<Box<Bufs>>,
    /// Head buffers parked requests gave back (`head_out` when the request ended, `reqline`
    /// given up by the set it resumed in): a set parked away from its own takes one of each
    /// here, so every set stays whole and no request allocates its head buffers.
    outs: Vec<Vec<u8>>,
    lines: Vec<Vec<u8>>,
    /// Sets this thread's requests hold now (taken from `sets` or allocated).
    in_use: usize,
}

impl Pool {
    /// How many spare sets (and head buffers) the thread may keep while `in_use` sets are held.
    fn cap(&self) -> usize {
        SPARE_MAX + self.in_use
    }

    /// A spare set (or a new one), counted in use.
    fn take(&mut self) -> Box<Bufs> {
        self.in_use += 1;
        self.sets.pop().unwrap_or_else(Bufs::empty)
    }

    /// Takes back a set already reset.
    fn give(&mut self, b: Box<Bufs>) {
        self.in_use = self.in_use.saturating_sub(1);
        let cap = self.cap();
        if self.sets.len() < cap {
            self.sets.push(b);
        }
        // The cap falls by one per give-back: the pool follows the load back down.
        self.sets.truncate(cap);
        self.outs.truncate(cap);
        self.lines.truncate(cap);
    }
}

thread_local! {
    static POOL: std::cell::RefCell<Pool> = const {
        std::cell::RefCell::new(Pool {
            sets: Vec::new(),
            outs: Vec::new(),
            lines: Vec::new(),
            in_use: 0,
        })
    };
}

/// Runs `f` on this thread's pool; `None` once the thread is being torn down.
fn with_pool<R>(f: impl FnOnce(&mut Pool) -> R) -> Option<R> {
    POOL.try_with(|p| f(&mut p.borrow_mut())).ok()
}

/// What a request keeps of its set while the set is parked ([`ConnBufs::park`]): its upstream
/// head (written again if a reused server connection dies before answering: [`Kept::replay`]),
/// its request line (for the log line, back in the set at [`ConnBufs::unpark`]) and its
/// header-line limit (the set that takes the answer may come from another thread's pool, or be
/// new, and the response head is held to the limit the request was read under). The head goes
/// back to the thread's spare head buffers when the request is done with it (dropped).
#[derive(Default)]
pub(super) struct Kept {
    head_out: Vec<u8>,
    reqline: Vec<u8>,
    method_len: usize,
    max_lines: MaxLines,
    parked: bool,
}

impl Kept {
    /// Puts the request's upstream head back into `b` to be written again (the set's own
    /// head buffer takes its place here).
    pub(super) fn replay(&mut self, b: &mut Bufs) {
        if self.head_out.capacity() > 0 {
            std::mem::swap(&mut self.head_out, &mut b.head_out);
            self.head_out.clear();
        }
    }
}

impl Drop for Kept {
    fn drop(&mut self) {
        if self.head_out.capacity() > 0 {
            let mut out = std::mem::take(&mut self.head_out);
            out.clear();
            with_pool(|p| {
                if p.outs.len() < p.cap() {
                    p.outs.push(out);
                }
            });
        }
    }
}

/// A connection's buffers: `Some` while a request is in progress, `None` (a spare set went back
/// to the thread's pool) while the connection waits for the next request or its server's
/// answer. Dropping it gives the set back too, whatever ends the connection.
#[derive(Default)]
pub(super) struct ConnBufs {
    bufs: Option<Box<Bufs>>,
}

impl ConnBufs {
    /// The buffers, taken from the thread's spare sets (or allocated) if the connection had none.
    pub(super) fn get(&mut self) -> &mut Bufs {
        self.bufs
            .get_or_insert_with(|| with_pool(Pool::take).unwrap_or_else(Bufs::empty))
    }

    /// Bytes of the next request already buffered (pipelined)?
    pub(super) fn has_pending(&self) -> bool {
        self.bufs.as_ref().is_some_and(|b| !b.client.is_empty())
    }

    /// Gives the buffers back while the client is idle between requests. Only called with no
    /// pending input.
    pub(super) fn release(&mut self) {
        if let Some(mut b) = self.bufs.take() {
            b.reset();
            with_pool(|p| p.give(b));
        }
    }

    /// Gives the set back while the request waits for its server, keeping the request's
    /// upstream head and request line in `kept` (the set gets spare head buffers in their
    /// place). Only called with no pending input and no body to upload: nothing else of the
    /// set outlives the wait.
    pub(super) fn park(&mut self, kept: &mut Kept) {
        let Some(mut b) = self.bufs.take() else {
            return;
        };
        let (out, line) = with_pool(|p| (p.outs.pop(), p.lines.pop())).unwrap_or_default();
        kept.head_out = std::mem::replace(&mut b.head_out, out.unwrap_or_default());
        kept.reqline = std::mem::replace(&mut b.reqline, line.unwrap_or_default());
        kept.method_len = b.method_len;
        kept.max_lines = b.res.max_lines;
        kept.parked = true;
        b.reset();
        with_pool(|p| p.give(b));
    }

    /// The buffers again after [`ConnBufs::park`] (the thread's most recently freed set, still
    /// in the cache), with the request line and the header-line limit back in place (the set's
    /// own line goes to the spare head buffers). The upstream head stays in `kept`
    /// ([`Kept::replay`]): the set's own head buffer, in the cache, takes the response head.
    /// Without a park, [`ConnBufs::get`].
    pub(super) fn unpark(&mut self, kept: &mut Kept) -> &mut Bufs {
        if !std::mem::take(&mut kept.parked) {
            return self.get();
        }
        let b = with_pool(|p| {
            let mut b = p.take();
            let line = std::mem::replace(&mut b.reqline, std::mem::take(&mut kept.reqline));
            if p.lines.len() < p.cap() {
                p.lines.push(line);
            }
            b
        });
        let b = self.bufs.insert(b.unwrap_or_else(|| {
            let mut b = Bufs::empty();
            b.reqline = std::mem::take(&mut kept.reqline);
            b
        }));
        b.method_len = kept.method_len;
        b.req.max_lines = kept.max_lines;
        b.res.max_lines = kept.max_lines;
        b
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
        POOL.with(|p| p.borrow().sets.len())
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

    /// A parked request holds no set: its set is back in the pool, counted free, with spare
    /// head buffers in place of the request's. Unparked, the request gets the pool's top set
    /// with its request line back; its upstream head comes back only for a replay. Every head
    /// buffer returns to the pool's spares, so none is allocated per request.
    #[test]
    fn a_parked_request_holds_no_set_and_resumes_in_the_pool_top() {
        let in_use = || POOL.with(|p| p.borrow().in_use);
        let spares = || POOL.with(|p| (p.borrow().outs.len(), p.borrow().lines.len()));
        let (mut one, mut other) = (ConnBufs::default(), ConnBufs::default());
        let b = one.get();
        b.head_out.extend_from_slice(b"GET /a HTTP/1.1\r\n\r\n");
        b.reqline.extend_from_slice(b"GET/a");
        b.method_len = 3;
        let set = &*b as *const Bufs;
        let mut kept = Kept::default();
        one.park(&mut kept);
        assert!(one.bufs.is_none());
        assert_eq!(in_use(), 0);
        // Another request takes the parked request's set, clean, and gives it back.
        let b = other.get();
        assert_eq!(&*b as *const Bufs, set);
        assert!(b.head_out.is_empty() && b.reqline.is_empty() && b.client.is_empty());
        b.head_out.extend_from_slice(b"HTTP/1.1 200 OK\r\n\r\n");
        b.reqline.extend_from_slice(b"GET/b");
        let own_out = b.head_out.as_ptr();
        other.release();
        let b = one.unpark(&mut kept);
        assert_eq!(&*b as *const Bufs, set, "the pool's top set");
        assert_eq!(&b.reqline[..b.method_len], b"GET");
        assert_eq!(&b.reqline[b.method_len..], b"/a");
        assert_eq!(b.head_out.as_ptr(), own_out, "the set's own head buffer");
        assert!(b.head_out.is_empty());
        assert_eq!(in_use(), 1);
        assert_eq!(spares(), (0, 1), "the set's own request line is a spare");
        // A replay puts the request's upstream head back.
        kept.replay(b);
        assert_eq!(b.head_out, b"GET /a HTTP/1.1\r\n\r\n");
        drop(kept);
        assert_eq!(
            spares(),
            (1, 1),
            "the head buffer a request is done with is a spare"
        );
        // The next park puts those spares into the set it gives back: no allocation.
        let mut kept2 = Kept::default();
        other.get();
        other.park(&mut kept2);
        assert_eq!(spares(), (0, 0));
        // A request that never parked: unpark is get.
        let mut none = Kept::default();
        let p = &*one.unpark(&mut none) as *const Bufs;
        assert_eq!(p, &*one.get() as *const Bufs);
        drop((one, other));
        assert_eq!(in_use(), 0);
    }

    /// The set that takes the answer holds the response head to the limit the request was read
    /// under, whichever set it is (CI caught a response with too many lines passing when the
    /// answer resumed on the other worker thread, in a new set with the default limit).
    #[test]
    fn an_unparked_set_keeps_the_request_header_line_limit() {
        let (mut one, mut other) = (ConnBufs::default(), ConnBufs::default());
        let b = one.get();
        b.req.max_lines = MaxLines(5);
        b.res.max_lines = MaxLines(5);
        let mut kept = Kept::default();
        one.park(&mut kept);
        // Another request holds the parked set, with another limit: the unpark gets another set.
        let held = other.get();
        held.res.max_lines = MaxLines(7);
        let held = &*held as *const Bufs;
        let b = one.unpark(&mut kept);
        assert_ne!(&*b as *const Bufs, held);
        assert_eq!(
            (b.req.max_lines, b.res.max_lines),
            (MaxLines(5), MaxLines(5))
        );
        drop((one, other));
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
        assert_eq!(POOL.with(|p| p.borrow().in_use), n);
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
        assert_eq!(POOL.with(|p| p.borrow().in_use), 0);
        assert!(spare() <= SPARE_MAX, "{} spare sets kept at rest", spare());
        drop(conns);
        assert!(spare() <= SPARE_MAX);
    }
}
