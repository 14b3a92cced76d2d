//! One client connection: the loop that reads request heads, hands each to the exchange, writes
//! the access-log line and decides keep-alive.
//!
//! Invariants (pinned by tests): every request whose head was read ends in exactly one response
//! (the server's, or one of `error_pages`) and one access-log line; every counter or slot a
//! connection takes (process `maxconn` permit, `actconn`, frontend session, and in `exchange` the
//! backend and server sessions) is held by a guard and released when it drops, whatever ends the
//! connection: a return, an error, a timeout or a panic. A panic in a connection task is caught,
//! logged once with its location, counted (`conn_panics`), and costs that one connection only.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{watch, OwnedSemaphorePermit};
use tokio::time::timeout;

use super::access_log::{self, Record};
use super::error_pages::ProxyError;
use super::exchange::Outcome;
use super::forwarded;
use super::h1::{self, Parsed, Reject, RequestHead, ResponseHead};
use crate::runtime::{ListenRt, Runtime, Snapshot};

/// What a client connection is carried on: a TCP stream today; a TLS stream or an HTTP/2 stream
/// adapter are other implementations. The whole request path (`session`, `exchange`,
/// `request`, `response`, `tunnel`) is generic over it, so every transport shares it.
pub trait ClientIo: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// The read half of [`ClientIo::split_io`].
    type Reader<'a>: AsyncRead + Unpin + Send
    where
        Self: 'a;
    /// The write half of [`ClientIo::split_io`].
    type Writer<'a>: AsyncWrite + Unpin + Send
    where
        Self: 'a;
    /// The request came over HTTP/2 (one stream, seen through `h2::StreamIo`): the access log
    /// says `HTTP/2.0` in its request line.
    const HTTP2: bool = false;

    /// Waits until a read would make progress, holding no buffer (an idle keep-alive
    /// connection owns none). Implementations that cannot tell return at once.
    fn readable(&self) -> impl std::future::Future<Output = std::io::Result<()>> + Send;

    /// Borrows a read half and a write half usable concurrently (request body up while the
    /// response head comes back, a tunnel). A TCP stream splits without a lock
    /// (`TcpStream::split`); a transport that cannot may return [`locked_split`]'s halves.
    fn split_io(&mut self) -> (Self::Reader<'_>, Self::Writer<'_>);
}

impl ClientIo for TcpStream {
    type Reader<'a> = tokio::net::tcp::ReadHalf<'a>;
    type Writer<'a> = tokio::net::tcp::WriteHalf<'a>;

    fn readable(&self) -> impl std::future::Future<Output = std::io::Result<()>> + Send {
        TcpStream::readable(self)
    }

    fn split_io(&mut self) -> (Self::Reader<'_>, Self::Writer<'_>) {
        TcpStream::split(self)
    }
}

/// Halves for a transport that has no lock-free split of its own (`tokio::io::split`: one
/// uncontended lock per poll).
pub fn locked_split<S: AsyncRead + AsyncWrite + Unpin + Send>(
    io: &mut S,
) -> (tokio::io::ReadHalf<&mut S>, tokio::io::WriteHalf<&mut S>) {
    tokio::io::split(io)
}

/// Buffered pipelined requests a connection serves in a row before it yields to the others.
const PIPELINE_BURST: u32 = 8;

/// Read buffer growth step for both sides.
pub(super) const READ_CHUNK: usize = 16 * 1024;
/// First allocation of a read buffer.
pub(super) const FIRST_CHUNK: usize = 4 * 1024;

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
    /// `x-forwarded-for: <peer>\r\n`, formatted once per connection.
    pub(super) xff: Vec<u8>,
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
        })
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
pub(super) struct ConnBufs {
    bufs: Option<Box<Bufs>>,
    /// `x-forwarded-for: <peer>\r\n`, formatted once per connection; lent to `Bufs::xff`.
    xff: Vec<u8>,
}

impl ConnBufs {
    pub(super) fn new(xff: Vec<u8>) -> Self {
        ConnBufs { bufs: None, xff }
    }

    /// The buffers, taken from the thread's spare sets (or allocated) if the connection had none.
    pub(super) fn get(&mut self) -> &mut Bufs {
        let xff = &mut self.xff;
        self.bufs.get_or_insert_with(|| {
            let mut b = SPARE
                .try_with(|s| s.borrow_mut().pop())
                .ok()
                .flatten()
                .unwrap_or_else(Bufs::empty);
            b.xff = std::mem::take(xff);
            b
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
            self.xff = std::mem::take(&mut b.xff);
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

/// Everything one client connection holds from accept to close. Dropping it gives all of it
/// back; it lives in the connection's task, so a panic that unwinds the task drops it too.
pub struct ConnSlot {
    rt: Arc<Runtime>,
    listen: Arc<ListenRt>,
    _permit: OwnedSemaphorePermit,
}

impl ConnSlot {
    /// Counts the connection in (`actconn`, cumulative connections, frontend session).
    pub fn take(rt: Arc<Runtime>, listen: Arc<ListenRt>, permit: OwnedSemaphorePermit) -> Self {
        rt.process.actconn.fetch_add(1, Ordering::Relaxed);
        rt.process.cum_conns.fetch_add(1, Ordering::Relaxed);
        listen.shared.frontend.session_start();
        ConnSlot {
            rt,
            listen,
            _permit: permit,
        }
    }
}

impl ConnSlot {
    pub fn rt(&self) -> &Arc<Runtime> {
        &self.rt
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.listen.shared.frontend.session_end();
        self.rt.process.actconn.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves `stream` on its own task. The slot is released when the task ends, and a panic in it
/// is contained: logged once with its location, counted, and only this connection is closed.
pub fn spawn<S: ClientIo>(conn: Conn, stream: S, slot: ConnSlot) {
    let task = async move {
        let slot = slot;
        let peer = conn.peer;
        if let Err(p) = catch_panic(conn.serve(stream)).await {
            slot.rt.process.conn_panics.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                listen = %slot.listen.name,
                client = %peer,
                location = %p.location,
                "connection task panicked ({}); that connection was closed",
                p.message
            );
        }
        drop(slot);
    };
    // What an idle keep-alive connection costs in task state (benches/README.md, idle memory).
    static LOGGED: std::sync::Once = std::sync::Once::new();
    LOGGED.call_once(|| {
        tracing::debug!(
            bytes = std::mem::size_of_val(&task),
            "connection task future size"
        )
    });
    tokio::spawn(task);
}

/// A panic caught in a connection task.
#[derive(Debug)]
pub struct Caught {
    pub message: String,
    /// `file:line:column` of the panic.
    pub location: String,
}

thread_local! {
    /// Set while a connection future is being polled: the panic hook records the location for
    /// `catch_panic` instead of printing it, so each panic is reported once.
    static IN_CONN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static LOCATION: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_CONN.with(|c| c.get()) {
                let loc = info.location().map(|l| l.to_string());
                LOCATION.with(|l| *l.borrow_mut() = loc);
            } else {
                previous(info);
            }
        }));
    });
}

/// Runs `fut`, turning a panic in any of its polls into `Err` (the future is dropped at once, so
/// everything it owns is released). A struct rather than an `async fn`: an `async fn` that pins
/// its argument stores the future twice (the argument and the pinned local), which doubled every
/// connection task.
pub fn catch_panic<F: std::future::Future<Output = ()>>(fut: F) -> CatchPanic<F> {
    install_panic_hook();
    CatchPanic { fut: Some(fut) }
}

pin_project_lite::pin_project! {
    /// The future of [`catch_panic`].
    pub struct CatchPanic<F> {
        #[pin]
        fut: Option<F>,
    }
}

impl<F: std::future::Future<Output = ()>> std::future::Future for CatchPanic<F> {
    type Output = Result<(), Caught>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let mut fut = self.project().fut;
        let Some(inner) = fut.as_mut().as_pin_mut() else {
            return std::task::Poll::Ready(Ok(()));
        };
        IN_CONN.with(|c| c.set(true));
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.poll(cx)));
        IN_CONN.with(|c| c.set(false));
        match r {
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Ok(std::task::Poll::Ready(())) => {
                fut.set(None);
                std::task::Poll::Ready(Ok(()))
            }
            Err(payload) => {
                // Dropped here, so what it held is released before the panic is reported.
                fut.set(None);
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "non-string panic payload".into());
                let location = LOCATION
                    .with(|l| l.borrow_mut().take())
                    .unwrap_or_else(|| "unknown".into());
                std::task::Poll::Ready(Err(Caught { message, location }))
            }
        }
    }
}

pub struct Conn {
    pub rt: Arc<Runtime>,
    pub listen_name: Arc<str>,
    /// The client: the TCP peer, or the source of its PROXY header.
    pub peer: SocketAddr,
    /// The address the client connected to (`X-Forwarded-Port`, `send_proxy_v2`): the
    /// listening socket's (`0.0.0.0:port` for a wildcard bind unless asked for), or the
    /// destination of the PROXY header.
    pub local: SocketAddr,
    /// The connection is TLS (`X-Forwarded-Proto: https`, HSTS, no https redirect).
    pub secure: bool,
    pub shutdown: watch::Receiver<bool>,
}

pub(super) enum HeadRead {
    Ok,
    /// Client closed or idled out between requests: close without a word.
    Quiet,
    /// Answer with this error; `bool` = the client never sent a byte (dontlognull).
    Fail(ProxyError, [u8; 2], bool),
}

pub(super) async fn read_more<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
) -> std::io::Result<usize> {
    if buf.capacity() - buf.len() < 1024 {
        // A fresh buffer starts at 4 KiB (most heads and small bodies fit); it grows by
        // READ_CHUNK once something larger streams through.
        buf.reserve(if buf.capacity() == 0 {
            FIRST_CHUNK
        } else {
            READ_CHUNK
        });
    }
    rd.read_buf(buf).await
}

impl Conn {
    pub async fn serve<S: ClientIo>(mut self, mut stream: S) {
        // Buffers are taken when the first bytes arrive (see `ConnBufs`).
        let mut xff = Vec::new();
        forwarded::write_header(&mut xff, self.peer.ip());
        let mut b = ConnBufs::new(xff);
        let mut first = true;
        let mut pipelined = 0u32;
        loop {
            let snap = self.rt.load();
            let Some(listen) = snap.listen_by_name(&self.listen_name).cloned() else {
                return;
            };
            let keep = self
                .one_request(&mut stream, &snap, &listen, &mut b, first)
                .await;
            first = false;
            if !keep {
                let _ = stream.shutdown().await;
                return;
            }
            // Pipelined requests already buffered are served without waiting for the socket:
            // after a few in a row, let the worker's other connections run first.
            if b.has_pending() {
                pipelined += 1;
                if pipelined >= PIPELINE_BURST {
                    pipelined = 0;
                    tokio::task::yield_now().await;
                }
            } else {
                pipelined = 0;
            }
        }
    }

    /// Waits for and parses one request head into `b.req`.
    pub(super) async fn read_head<S: ClientIo>(
        &mut self,
        stream: &mut S,
        cb: &mut ConnBufs,
        listen: &ListenRt,
        max: usize,
        max_lines: h1::MaxLines,
        first: bool,
    ) -> (HeadRead, Instant, SystemTime) {
        let s = &listen.settings;
        if !cb.has_pending() {
            let idle = if first {
                s.timeout_http_request
            } else {
                s.timeout_http_keep_alive
            };
            let mut shutdown = self.shutdown.clone();
            if *shutdown.borrow() && !first {
                return (HeadRead::Quiet, Instant::now(), SystemTime::now());
            }
            cb.release();
            // Wait for the next request without holding a buffer, then read it.
            let next = async {
                ClientIo::readable(&*stream).await?;
                read_more(stream, &mut cb.get().client).await
            };
            tokio::select! {
                r = timeout(idle, next) => match r {
                    Ok(Ok(0)) | Ok(Err(_)) => {
                        return (HeadRead::Quiet, Instant::now(), SystemTime::now())
                    }
                    Ok(Ok(_)) => {}
                    Err(_) => {
                        let r = if first {
                            HeadRead::Fail(ProxyError::RequestTimeout, *b"cR", true)
                        } else {
                            HeadRead::Quiet
                        };
                        return (r, Instant::now(), SystemTime::now());
                    }
                },
                _ = shutdown.wait_for(|s| *s), if !first => {
                    return (HeadRead::Quiet, Instant::now(), SystemTime::now());
                }
            }
        }
        let start = Instant::now();
        let date = SystemTime::now();
        let b = cb.get();
        b.req.max_lines = max_lines;
        b.res.max_lines = max_lines;
        // HAProxy 2.6: with `timeout http-request` set, the whole head must arrive within it;
        // without, `timeout client` applies between reads (a slow but steady head is served).
        let deadline = s
            .http_request_deadline
            .map(|d| tokio::time::Instant::now() + d);
        loop {
            let fail = match h1::parse_request(&b.client, &mut b.req) {
                // A head that arrived whole in one read can exceed the limit too.
                Ok(Parsed::Complete) if b.req.head_len > max => Some(ProxyError::BadRequest),
                Ok(Parsed::Complete) => return (HeadRead::Ok, start, date),
                Ok(Parsed::Partial) if b.client.len() >= max => Some(ProxyError::BadRequest),
                Ok(Parsed::Partial) => None,
                Err(Reject::Bad(_)) => Some(ProxyError::BadRequest),
                Err(Reject::Method) => Some(ProxyError::MethodNotAllowed),
                Err(Reject::NotImplemented(_)) => Some(ProxyError::NotImplemented),
            };
            if let Some(e) = fail {
                return (HeadRead::Fail(e, *b"PR", false), start, date);
            }
            let read = read_more(stream, &mut b.client);
            let r = match deadline {
                Some(at) => tokio::time::timeout_at(at, read).await,
                None => timeout(s.timeout_client, read).await,
            };
            match r {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    return (
                        HeadRead::Fail(ProxyError::BadRequest, *b"CR", false),
                        start,
                        date,
                    );
                }
                Ok(Ok(_)) => {}
                Err(_) => {
                    return (
                        HeadRead::Fail(ProxyError::RequestTimeout, *b"cR", false),
                        start,
                        date,
                    )
                }
            }
        }
    }

    /// Serves one request; returns whether the client connection stays open.
    pub(super) async fn one_request<S: ClientIo>(
        &mut self,
        stream: &mut S,
        snap: &Snapshot,
        listen: &Arc<ListenRt>,
        cb: &mut ConnBufs,
        first: bool,
    ) -> bool {
        let fe = &listen.shared.frontend;
        let (head_result, start, date) = self
            .read_head(
                stream,
                cb,
                listen,
                snap.global.max_header_bytes,
                snap.global.max_header_lines,
                first,
            )
            .await;
        let b = cb.get();
        match head_result {
            HeadRead::Ok => {}
            HeadRead::Quiet => return false,
            HeadRead::Fail(err, term, nothing_sent) => {
                let client_gone = term == *b"CR";
                if !client_gone {
                    let _ = timeout(
                        listen.settings.timeout_client,
                        stream.write_all(err.bytes()),
                    )
                    .await;
                    fe.count_status(err.status());
                }
                fe.ereq.fetch_add(1, Ordering::Relaxed);
                // dontlognull: a connection that never sent a byte is not logged.
                if !(nothing_sent && snap.global.dontlognull) {
                    // HAProxy's H1 mux answers a bad, timed-out or aborted head itself: its log
                    // line counts 0 bytes and has no cookie flags (`PR--`, `cR--`, `CR--`).
                    let mut o = Outcome::generated(err, term, false);
                    o.bytes_out = 0;
                    o.log_bytes = 0;
                    let tr = if term[1] == b'R' {
                        None
                    } else {
                        Some(start.elapsed())
                    };
                    self.log(snap, listen, date, start.elapsed(), tr, &o, *b"--", None, b);
                }
                return false;
            }
        }
        self.rt.process.cum_req.fetch_add(1, Ordering::Relaxed);
        fe.req_tot.fetch_add(1, Ordering::Relaxed);
        let head_time = start.elapsed();
        b.reqline.clear();
        b.reqline
            .extend_from_slice(&b.client[b.req.method_r.clone()]);
        b.method_len = b.reqline.len();
        b.reqline
            .extend_from_slice(&b.client[b.req.target_r.clone()]);

        // Boxed: the exchange's state machine (relay, upload, response) is most of a
        // connection's future; boxing it per request keeps an idle keep-alive connection's task
        // small (measured: 2448 -> see benches/README.md).
        let (mut o, ck) =
            Box::pin(self.exchange(stream, listen, b, snap.global.max_header_bytes)).await;
        // With a cookie configured HAProxy logs its server-cookie flag `N` on its own errors
        // too (`SCNN` when no server is available).
        if o.server_cookie == b'-' && listen.cookie.is_some() {
            o.server_cookie = b'N';
        }
        if o.status > 0 {
            fe.count_status(o.status as u16);
        }
        fe.bin.fetch_add(o.bytes_in, Ordering::Relaxed);
        fe.bout.fetch_add(o.bytes_out, Ordering::Relaxed);
        if *self.shutdown.borrow() {
            o.keep_client = false;
        }
        let total = start.elapsed();
        if let Some(srv) = o.server.and_then(|i| listen.servers.get(i)) {
            let c = &srv.live.counters;
            c.latency.observe(total);
            c.ttime_sum_ms
                .fetch_add(total.as_millis() as u64, Ordering::Relaxed);
            c.ctime_sum_ms.fetch_add(
                o.tc.map(|d| d.as_millis() as u64).unwrap_or(0),
                Ordering::Relaxed,
            );
            c.rtime_sum_ms.fetch_add(
                o.tr.map(|d| d.as_millis() as u64).unwrap_or(0),
                Ordering::Relaxed,
            );
            c.time_samples.fetch_add(1, Ordering::Relaxed);
        }
        let minor = if S::HTTP2 {
            access_log::HTTP2
        } else {
            b.req.minor
        };
        self.log(
            snap,
            listen,
            date,
            total,
            Some(head_time),
            &o,
            [ck, o.server_cookie],
            Some(minor),
            b,
        );
        o.keep_client
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn log(
        &self,
        snap: &Snapshot,
        listen: &ListenRt,
        date: SystemTime,
        total: Duration,
        tr: Option<Duration>,
        o: &Outcome,
        cookie_flags: [u8; 2],
        minor: Option<u8>,
        b: &Bufs,
    ) {
        if !snap.access_log.enabled() {
            return;
        }
        let server = o.server.and_then(|i| listen.servers.get(i));
        let mut line = Vec::with_capacity(192 + b.reqline.len());
        let rec = Record {
            client: self.peer,
            date,
            frontend: &listen.name,
            backend: &listen.name,
            server: server.map(|s| &*s.name),
            tr: access_log::ms(tr),
            tw: access_log::ms(o.tw),
            tc: access_log::ms(o.tc),
            tres: access_log::ms(o.tr),
            ta: total.as_millis() as i64,
            status: o.status,
            bytes: o.log_bytes,
            term: [o.term[0], o.term[1], cookie_flags[0], cookie_flags[1]],
            actconn: self.rt.process.actconn.load(Ordering::Relaxed),
            feconn: listen.shared.frontend.scur.load(Ordering::Relaxed),
            beconn: listen.shared.backend.scur.load(Ordering::Relaxed),
            srv_conn: server
                .map(|s| s.live.counters.scur.load(Ordering::Relaxed))
                .unwrap_or(0),
            retries: o.retries,
            redispatched: o.redispatched,
            request_line: minor
                .map(|m| (&b.reqline[..b.method_len], &b.reqline[b.method_len..], m)),
        };
        access_log::format(&rec, &mut line);
        snap.access_log.send(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Flag(Arc<std::sync::atomic::AtomicBool>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn a_panic_is_caught_with_its_location_and_what_the_future_held_is_released() {
        let released = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let held = Flag(released.clone());
        let r = catch_panic(async move {
            let _held = held;
            tokio::task::yield_now().await;
            let v: Vec<u8> = Vec::new();
            let _ = v[std::hint::black_box(3)];
        })
        .await;
        let caught = r.expect_err("the panic is caught");
        assert!(caught.location.contains("session.rs"), "{caught:?}");
        assert!(caught.message.contains("index out of bounds"), "{caught:?}");
        assert!(released.load(Ordering::SeqCst));
        assert!(catch_panic(async {}).await.is_ok());
    }
}
