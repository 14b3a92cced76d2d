//! One client connection: the loop that reads request heads, hands each to the exchange, writes
//! the access-log line and decides keep-alive.
//!
//! Invariants (pinned by tests): every request whose head was read ends in exactly one response
//! (the server's, or one of `error_pages`) and one access-log line; every counter or slot a
//! connection takes (process `maxconn` permit, `actconn`, frontend session, and in `exchange` the
//! backend and server sessions) is held by a guard and released when it drops, whatever ends the
//! connection: a return, an error, a timeout or a panic (the task and its slot:
//! `conn_task`). Between requests a connection waits in `idle` holding no buffer (`bufs`), and
//! a request without a body waits for its server's answer holding none either (`exchange`).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::access_log::{self, Record};
pub(super) use super::bufs::{Bufs, ConnBufs};
use super::clock::{self, Tick};
pub use super::conn_task::{catch_panic, spawn, CatchPanic, Caught, ConnSlot};
use super::error_pages::ProxyError;
use super::exchange::Outcome;
use super::h1::{self, Parsed, Reject};
use super::idle::{deadline, wait_request, IdleLimits, Next, Stop};
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

    /// Ready when a read would make progress, holding no buffer (an idle keep-alive
    /// connection owns none) and no future state (the wait is part of every idle connection's
    /// task). Implementations that cannot tell are ready at once.
    fn poll_readable(
        &self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>>;

    /// Borrows a read half and a write half usable concurrently (request body up while the
    /// response head comes back, a tunnel). A TCP stream splits without a lock
    /// (`TcpStream::split`); a transport that cannot may return [`locked_split`]'s halves.
    fn split_io(&mut self) -> (Self::Reader<'_>, Self::Writer<'_>);
}

impl ClientIo for TcpStream {
    type Reader<'a> = tokio::net::tcp::ReadHalf<'a>;
    type Writer<'a> = tokio::net::tcp::WriteHalf<'a>;

    fn poll_readable(
        &self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        TcpStream::poll_read_ready(self, cx)
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
    /// The graceful stop: idle keep-alive connections close at once.
    pub shutdown: Stop,
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

/// `tokio::time::timeout(t, fut)`, except that a future ready at its first poll (most writes:
/// the socket has room) reads no clock and builds no timer; one that is not is polled under
/// the timeout from then on (its waker is already registered, so the second poll makes no
/// syscall).
pub(super) async fn within<F: std::future::Future>(
    t: Duration,
    fut: F,
) -> Result<F::Output, tokio::time::error::Elapsed> {
    let mut fut = std::pin::pin!(fut);
    match std::future::poll_fn(|cx| std::task::Poll::Ready(fut.as_mut().poll(cx))).await {
        std::task::Poll::Ready(v) => Ok(v),
        std::task::Poll::Pending => timeout(t, fut).await,
    }
}

/// What one request step decided.
enum Step {
    Keep(IdleLimits),
    Close,
    /// The listen is gone from the configuration: drop the connection.
    Gone,
}

impl Conn {
    /// Serves the connection until it closes. Not an `async fn`: the block uses `self` and
    /// `stream` where they were captured (an `async fn` moves its arguments into locals and
    /// keeps room for both copies in every connection's task).
    // Written out on purpose: the `async fn` form is larger (conn_task's size test).
    #[allow(clippy::manual_async_fn)]
    pub fn serve<S: ClientIo>(
        mut self,
        mut stream: S,
    ) -> impl std::future::Future<Output = ()> + Send {
        async move {
            let stream = &mut stream;
            // Buffers are taken when the first bytes arrive (see `ConnBufs`).
            let mut b = ConnBufs::default();
            let mut limits = {
                let snap = self.rt.load();
                match snap.listen_by_name(&self.listen_name) {
                    Some(l) => IdleLimits::of(l),
                    None => return,
                }
            };
            let mut first = true;
            let mut pipelined = 0u32;
            loop {
                let next = if b.has_pending() {
                    Next::Buffered
                } else {
                    b.release();
                    let at = Tick::now().after(limits.idle(first));
                    match wait_request(stream, &self.shutdown, at, first).await {
                        Some(n) => n,
                        None => {
                            let _ = stream.shutdown().await;
                            return;
                        }
                    }
                };
                // Boxed: the request's state machine (head read, exchange, relay, log) is most of
                // a connection's future; outside it, an idle connection's task holds only the
                // wait above (benches/README.md, idle memory; pinned by a test below).
                // Allocated first, then the future written into it: LLVM then builds it in
                // place, setting only its arguments (a few words). `Box::pin(f)` built it on the
                // stack and copied all 1.4 KiB into the fresh block (callgrind: ~180
                // instructions per request, benches/README.md, seventh pass).
                let slot = Box::new_uninit();
                let step = Box::into_pin(Box::write(slot, self.step(stream, &mut b, next, first)));
                match step.await {
                    Step::Keep(l) => limits = l,
                    Step::Close => {
                        let _ = stream.shutdown().await;
                        return;
                    }
                    Step::Gone => return,
                }
                first = false;
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
    }

    /// One request on the current snapshot.
    async fn step<S: ClientIo>(
        &mut self,
        stream: &mut S,
        b: &mut ConnBufs,
        next: Next,
        first: bool,
    ) -> Step {
        let snap = self.rt.load();
        let Some(listen) = snap.listen_by_name(&self.listen_name).cloned() else {
            return Step::Gone;
        };
        if self
            .one_request(stream, &snap, &listen, b, next, first)
            .await
        {
            Step::Keep(IdleLimits::of(&listen))
        } else {
            Step::Close
        }
    }

    /// Reads and parses one request head into `b.req`, after `next` told how its first bytes
    /// came.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn read_head<S: ClientIo>(
        &mut self,
        stream: &mut S,
        cb: &mut ConnBufs,
        listen: &ListenRt,
        max: usize,
        max_lines: h1::MaxLines,
        next: Next,
        first: bool,
    ) -> (HeadRead, Tick, SystemTime) {
        let s = &listen.settings;
        // A head that ends before it is read, stamped with the time it ended.
        let ended = |r: HeadRead| (r, Tick::now(), clock::wall());
        match next {
            Next::Buffered => {}
            Next::TimedOut => {
                return ended(HeadRead::Fail(ProxyError::RequestTimeout, *b"cR", true));
            }
            Next::Arrived(at) => {
                if self.shutdown.is_stopping() && !first {
                    return ended(HeadRead::Quiet);
                }
                // The wait saw the socket readable (or the transport cannot tell: then this read
                // is the wait). No second readiness check first: the read makes the same one,
                // and a readiness that turns out spurious parks it with the buffers taken
                // either way.
                let shutdown = &self.shutdown;
                let next = read_more(stream, &mut cb.get().client);
                tokio::select! {
                    biased;
                    // Usually ready at once (the wait saw the socket readable): then no timer.
                    r = deadline(shutdown, at, next) => match r {
                        Ok(Ok(0)) | Ok(Err(_)) => return ended(HeadRead::Quiet),
                        Ok(Ok(_)) => {}
                        Err(_) => {
                            let r = if first {
                                HeadRead::Fail(ProxyError::RequestTimeout, *b"cR", true)
                            } else {
                                HeadRead::Quiet
                            };
                            return ended(r);
                        }
                    },
                    _ = shutdown.wait(), if !first => return ended(HeadRead::Quiet),
                }
            }
        }
        let start = Tick::now();
        let date = clock::wall();
        let b = cb.get();
        b.req.max_lines = max_lines;
        b.res.max_lines = max_lines;
        // HAProxy 2.6: with `timeout http-request` set, the whole head must arrive within it;
        // without, `timeout client` applies between reads (a slow but steady head is served).
        let deadline = s
            .http_request_deadline
            .map(|d| Tick::now().after(d).instant());
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
        next: Next,
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
                next,
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
                    let _ = within(
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

        // The set may be another after the exchange (`ConnBufs::park`): what the log needs of
        // the request is read now, or kept with it (the request line).
        let minor = if S::HTTP2 {
            access_log::HTTP2
        } else {
            b.req.minor
        };
        let (mut o, ck) = self
            .exchange(stream, listen, cb, snap.global.max_header_bytes)
            .await;
        let b = cb.get();
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
        if self.shutdown.is_stopping() {
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
        access_log::log(&snap.access_log, &rec);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `within` answers as `timeout` does: a ready future's output, a late one's output when it
    /// comes in time, and `Elapsed` when it does not.
    #[tokio::test]
    async fn within_is_a_timeout_that_skips_the_timer_for_ready_futures() {
        let t = Duration::from_millis(300);
        assert_eq!(within(t, async { 7 }).await.ok(), Some(7));
        let late = async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            8
        };
        assert_eq!(within(t, late).await.ok(), Some(8));
        let never = std::future::pending::<u8>();
        let start = tokio::time::Instant::now();
        assert!(within(t, never).await.is_err());
        assert!(start.elapsed() >= t);
    }
}
