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
            } else {
                b.clear();
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

/// Spare buffer sets kept per thread for connections between requests.
const SPARE_MAX: usize = 64;

thread_local! {
    /// Buffer sets of connections that are between requests, reused by the next request on
    /// this thread (LIFO, so usually the same set). An idle keep-alive connection holds no
    /// buffer at all (HAProxy likewise), and a busy one does not pay malloc/free of ~10 KiB of
    /// buffers per request.
    // Boxed: a connection holds its set as one pointer, moved in and out without copying.
    #[allow(clippy::vec_box)]
    static SPARE: std::cell::RefCell<Vec<Box<Bufs>>> = const { std::cell::RefCell::new(Vec::new()) };
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
            b.reset();
            let _ = SPARE.try_with(|s| {
                let mut s = s.borrow_mut();
                if s.len() < SPARE_MAX {
                    s.push(b);
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
