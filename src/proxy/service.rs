//! One client connection: read requests, pick a server, forward, relay the response, log.
//!
//! Invariants (pinned by tests): every request whose head was read ends in exactly one response
//! (the server's, or one of `error_pages`) and one access-log line; a request is only sent to a
//! second server when the connection to the first failed before anything was written, or when a
//! reused pooled connection died before any response byte and the request is idempotent and has
//! no body.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::timeout;

use super::access_log::{self, Record};
use super::cookie;
use super::error_pages::ProxyError;
use super::forwarded;
use super::h1::{self, ChunkedDecoder, Framing, Method, Parsed, Reject, RequestHead, ResponseHead};
use super::upstream;
use crate::runtime::{unix_ms, ListenRt, Runtime, ServerRt, Snapshot};

/// Read buffer growth step for both sides.
const READ_CHUNK: usize = 16 * 1024;
/// First allocation of a read buffer.
const FIRST_CHUNK: usize = 4 * 1024;

/// Client-cookie log character (3rd of the termination state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientCookie {
    NotConfigured,
    None,
    Invalid,
    Down,
    Valid,
}

impl ClientCookie {
    fn flag(self) -> u8 {
        match self {
            ClientCookie::NotConfigured => b'-',
            ClientCookie::None => b'N',
            ClientCookie::Invalid => b'I',
            ClientCookie::Down => b'D',
            ClientCookie::Valid => b'V',
        }
    }
}

/// How an exchange ended, for the log, the counters and the keep-alive decision.
#[derive(Debug)]
struct Outcome {
    status: i32,
    bytes_out: u64,
    bytes_in: u64,
    term: [u8; 2],
    server: Option<usize>,
    server_cookie: u8,
    tc: Option<Duration>,
    tr: Option<Duration>,
    tw: Option<Duration>,
    retries: u32,
    redispatched: bool,
    keep_client: bool,
}

impl Outcome {
    fn generated(e: ProxyError, term: [u8; 2], keep: bool) -> Self {
        Outcome {
            status: e.status() as i32,
            bytes_out: e.bytes().len() as u64,
            bytes_in: 0,
            term,
            server: None,
            server_cookie: b'-',
            tc: None,
            tr: None,
            tw: None,
            retries: 0,
            redispatched: false,
            keep_client: keep && !e.closes(),
        }
    }
}

/// Per-connection buffers, reused for every request on the connection.
struct Bufs {
    client: BytesMut,
    upstream: BytesMut,
    head_out: Vec<u8>,
    scratch: Vec<u8>,
    scratch2: Vec<u8>,
    /// Method and target of the current request, kept for the log line.
    reqline: Vec<u8>,
    method_len: usize,
    req: RequestHead,
    res: ResponseHead,
    /// `x-forwarded-for: <peer>\r\n`, formatted once per connection.
    xff: Vec<u8>,
}

impl Bufs {
    /// Gives the big per-connection buffers back while the client is idle between requests
    /// (HAProxy likewise holds no buffer for an idle connection): thousands of idle keep-alive
    /// clients cost a few hundred bytes each instead of 32 KiB. They are allocated again, at
    /// `READ_CHUNK`, when the next request arrives.
    fn release_idle(&mut self) {
        if self.client.is_empty() && self.client.capacity() > 0 {
            self.client = BytesMut::new();
        }
        if self.upstream.capacity() > 0 {
            self.upstream = BytesMut::new();
        }
        for v in [
            &mut self.head_out,
            &mut self.scratch,
            &mut self.scratch2,
            &mut self.reqline,
        ] {
            if v.capacity() > 0 {
                *v = Vec::new();
            }
        }
        self.req.release();
        self.res.release();
    }
}

/// What the request head said, copied out so the buffer can move on.
#[derive(Debug, Clone, Copy)]
struct ReqInfo {
    method: Method,
    minor: u8,
    framing: Framing,
    keep_alive: bool,
    upgrade: bool,
    /// The whole Content-Length body was already read and rides in `head_out` with the head.
    body_inline: bool,
}

pub struct Conn {
    pub rt: Arc<Runtime>,
    pub listen_name: Arc<str>,
    pub peer: SocketAddr,
    pub shutdown: watch::Receiver<bool>,
}

enum HeadRead {
    Ok,
    /// Client closed or idled out between requests: close without a word.
    Quiet,
    /// Answer with this error; `bool` = the client never sent a byte (dontlognull).
    Fail(ProxyError, [u8; 2], bool),
}

async fn read_more<R: AsyncRead + Unpin>(rd: &mut R, buf: &mut BytesMut) -> std::io::Result<usize> {
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

enum RelayErr {
    /// A reused connection died before any response byte: replay on a fresh one.
    RetryFresh,
    Done(Outcome),
}

enum HeadErr {
    /// Closed before sending a single byte.
    Empty,
    Timeout,
    Invalid,
    Client,
}

impl Conn {
    pub async fn serve(mut self, mut stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        // Buffers are allocated when the first bytes arrive (see `Bufs::release_idle`).
        let mut xff = Vec::new();
        forwarded::write_header(&mut xff, self.peer.ip());
        let mut b = Bufs {
            client: BytesMut::new(),
            upstream: BytesMut::new(),
            head_out: Vec::new(),
            scratch: Vec::new(),
            scratch2: Vec::new(),
            reqline: Vec::new(),
            method_len: 0,
            req: RequestHead::default(),
            res: ResponseHead::default(),
            xff,
        };
        let mut first = true;
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
        }
    }

    /// Waits for and parses one request head into `b.req`.
    async fn read_head(
        &mut self,
        stream: &mut TcpStream,
        b: &mut Bufs,
        listen: &ListenRt,
        max: usize,
        first: bool,
    ) -> (HeadRead, Instant, SystemTime) {
        let s = &listen.settings;
        if b.client.is_empty() {
            let idle = if first {
                s.timeout_http_request
            } else {
                s.timeout_http_keep_alive
            };
            let mut shutdown = self.shutdown.clone();
            if *shutdown.borrow() && !first {
                return (HeadRead::Quiet, Instant::now(), SystemTime::now());
            }
            b.release_idle();
            // Wait for the next request without holding a buffer, then read it.
            let next = async {
                stream.readable().await?;
                read_more(stream, &mut b.client).await
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
        let deadline = tokio::time::Instant::now() + s.timeout_http_request;
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
            match tokio::time::timeout_at(deadline, read_more(stream, &mut b.client)).await {
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
    async fn one_request(
        &mut self,
        stream: &mut TcpStream,
        snap: &Snapshot,
        listen: &Arc<ListenRt>,
        b: &mut Bufs,
        first: bool,
    ) -> bool {
        let fe = &listen.shared.frontend;
        b.req.max_lines = snap.global.max_header_lines;
        b.res.max_lines = snap.global.max_header_lines;
        let (head_result, start, date) = self
            .read_head(stream, b, listen, snap.global.max_header_bytes, first)
            .await;
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
        let (mut o, ck) = Box::pin(self.exchange(stream, listen, b)).await;
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
        let minor = b.req.minor;
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
    fn log(
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
            bytes: o.bytes_out,
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

    /// Picks the server by cookie, writes the upstream head, connects and relays.
    async fn exchange(
        &mut self,
        stream: &mut TcpStream,
        listen: &Arc<ListenRt>,
        b: &mut Bufs,
    ) -> (Outcome, u8) {
        let info = ReqInfo {
            method: b.req.method(),
            minor: b.req.minor,
            framing: b.req.framing(),
            keep_alive: b.req.keep_alive,
            upgrade: b.req.upgrade,
            body_inline: false,
        };

        // Persistence cookie: the first one in any Cookie header wins.
        let mut ck = ClientCookie::NotConfigured;
        let mut direct: Option<usize> = None;
        let mut strip_cookie = false;
        if let Some(c) = &listen.cookie {
            ck = ClientCookie::None;
            let mut value: Option<&[u8]> = None;
            for (n, v) in &b.req.headers {
                if b.client[n.clone()].eq_ignore_ascii_case(b"cookie") {
                    let scan = cookie::scan(&b.client[v.clone()], c.name.as_bytes());
                    if scan.found {
                        strip_cookie = c.indirect;
                        if value.is_none() {
                            value = scan.value;
                        }
                    }
                }
            }
            if let Some(raw) = value {
                let m = cookie::match_value(raw);
                ck = match listen.servers.iter().position(|s| s.cookie.as_bytes() == m) {
                    Some(i) if !m.is_empty() => {
                        if listen.servers[i].live.eligible_cookie() {
                            direct = Some(i);
                            ClientCookie::Valid
                        } else {
                            ClientCookie::Down
                        }
                    }
                    _ => ClientCookie::Invalid,
                };
            }
        }

        self.build_upstream_head(listen, b, strip_cookie);
        let head_len = b.req.head_len;
        b.client.advance(head_len);
        let body_unread = info.framing != Framing::None;
        // A small body that came with the head goes out in the same write.
        let mut info = info;
        if let Framing::Length(n) = info.framing {
            if (b.client.len() as u64) >= n {
                let n = n as usize;
                b.head_out.extend_from_slice(&b.client[..n]);
                b.client.advance(n);
                info.body_inline = true;
            }
        }

        let (first, by_cookie) = match direct {
            Some(i) => (i, true),
            None => match listen.balancer.pick(&listen.shared, &listen.servers, None) {
                Some(i) => {
                    if let Some(s) = listen.servers.get(i) {
                        s.live.counters.lbtot.fetch_add(1, Ordering::Relaxed);
                    }
                    (i, false)
                }
                None => {
                    let e = ProxyError::ServiceUnavailable;
                    let keep = info.keep_alive && !body_unread;
                    let _ = timeout(
                        listen.settings.timeout_client,
                        stream.write_all(&error_bytes(e, keep)),
                    )
                    .await;
                    listen.shared.backend.count_status(503);
                    return (Outcome::generated(e, *b"SC", keep), ck.flag());
                }
            },
        };

        let mut allow_pooled = true;
        loop {
            let conn = match upstream::connect(listen, first, by_cookie, allow_pooled).await {
                Ok(c) => c,
                Err(ex) => {
                    if let Some(s) = listen.servers.get(ex.server) {
                        s.live.counters.econ.fetch_add(1, Ordering::Relaxed);
                    }
                    listen.shared.backend.econ.fetch_add(1, Ordering::Relaxed);
                    listen.shared.backend.count_status(503);
                    let e = ProxyError::ServiceUnavailable;
                    let keep = info.keep_alive && !body_unread;
                    let _ = timeout(
                        listen.settings.timeout_client,
                        stream.write_all(&error_bytes(e, keep)),
                    )
                    .await;
                    let mut o =
                        Outcome::generated(e, if ex.timed_out { *b"sC" } else { *b"SC" }, keep);
                    o.server = Some(ex.server);
                    o.retries = ex.retries;
                    o.redispatched = ex.redispatched;
                    o.tw = Some(ex.wait);
                    let flag = if ex.redispatched && ck == ClientCookie::Valid {
                        ClientCookie::Down.flag()
                    } else {
                        ck.flag()
                    };
                    return (o, flag);
                }
            };
            let Some(srv) = listen.servers.get(conn.server).cloned() else {
                return (
                    Outcome::generated(ProxyError::ServiceUnavailable, *b"SC", false),
                    ck.flag(),
                );
            };
            // A request redispatched away from its cookie's server gets a new cookie.
            let ck_now = if conn.redispatched && ck == ClientCookie::Valid {
                ClientCookie::Down
            } else {
                ck
            };
            let c = &srv.live.counters;
            c.session_start();
            c.req_tot.fetch_add(1, Ordering::Relaxed);
            c.last_sess_ms.store(unix_ms(), Ordering::Relaxed);
            listen.shared.backend.session_start();
            listen
                .shared
                .backend
                .req_tot
                .fetch_add(1, Ordering::Relaxed);
            let reused = conn.reused;
            let result = self
                .relay(stream, listen, &srv, conn, b, info, ck_now)
                .await;
            c.session_end();
            listen.shared.backend.session_end();
            match result {
                Err(RelayErr::RetryFresh) if reused => {
                    allow_pooled = false;
                    continue;
                }
                Err(RelayErr::RetryFresh) => {
                    // Unreachable by construction (only reused connections ask for it).
                    return (
                        Outcome::generated(ProxyError::BadGateway, *b"SH", false),
                        ck_now.flag(),
                    );
                }
                Err(RelayErr::Done(o)) | Ok(o) => {
                    c.bin.fetch_add(o.bytes_in, Ordering::Relaxed);
                    c.bout.fetch_add(o.bytes_out, Ordering::Relaxed);
                    listen
                        .shared
                        .backend
                        .bin
                        .fetch_add(o.bytes_in, Ordering::Relaxed);
                    listen
                        .shared
                        .backend
                        .bout
                        .fetch_add(o.bytes_out, Ordering::Relaxed);
                    if o.status > 0 {
                        c.count_status(o.status as u16);
                        listen.shared.backend.count_status(o.status as u16);
                    }
                    return (o, ck_now.flag());
                }
            }
        }
    }

    /// Writes the request head to send upstream into `b.head_out`.
    fn build_upstream_head(&self, listen: &ListenRt, b: &mut Bufs, strip_cookie: bool) {
        let req = &b.req;
        let src = &b.client[..];
        let out = &mut b.head_out;
        out.clear();
        out.reserve(1024);
        out.extend_from_slice(&src[req.method_r.clone()]);
        out.push(b' ');
        match &req.abs_path_r {
            Some(p) => {
                let path = &src[p.clone()];
                if !path.starts_with(b"/") {
                    out.push(b'/');
                }
                out.extend_from_slice(path);
            }
            None => out.extend_from_slice(&src[req.target_r.clone()]),
        }
        out.extend_from_slice(if req.minor == 0 {
            b" HTTP/1.0\r\n"
        } else {
            b" HTTP/1.1\r\n"
        });
        if let Some(a) = &req.abs_authority_r {
            out.extend_from_slice(b"host: ");
            out.extend_from_slice(&src[a.clone()]);
            out.extend_from_slice(b"\r\n");
        }
        let cookie_name = listen.cookie.as_ref().map(|c| c.name.as_bytes());
        let mut te_written = false;
        let mut cl_written = false;
        for (n, v) in &req.headers {
            let name = &src[n.clone()];
            let value = &src[v.clone()];
            // Content-Length is re-emitted once, as the single validated decimal value (identical
            // duplicates and `5, 5` lists become one header, as HAProxy does).
            if name.eq_ignore_ascii_case(b"content-length") {
                if !cl_written && req.framing() != Framing::Chunked {
                    let n = match req.framing() {
                        Framing::Length(n) => n,
                        _ => 0,
                    };
                    out.extend_from_slice(b"content-length: ");
                    let _ = std::io::Write::write_fmt(out, format_args!("{n}"));
                    out.extend_from_slice(b"\r\n");
                    cl_written = true;
                }
                continue;
            }
            // The one transfer coding we accept is re-emitted where the client put it.
            if name.eq_ignore_ascii_case(b"transfer-encoding") {
                if !te_written {
                    out.extend_from_slice(b"transfer-encoding: chunked\r\n");
                    te_written = true;
                }
                continue;
            }
            if h1::is_hop_by_hop(name) && !(req.upgrade && name.eq_ignore_ascii_case(b"upgrade")) {
                continue;
            }
            if !name.eq_ignore_ascii_case(b"host")
                && !name.eq_ignore_ascii_case(b"content-length")
                && req
                    .conn_listed
                    .iter()
                    .any(|r| src[r.clone()].eq_ignore_ascii_case(name))
            {
                continue;
            }
            if req.abs_authority_r.is_some() && name.eq_ignore_ascii_case(b"host") {
                continue;
            }
            if name.eq_ignore_ascii_case(b"cookie") {
                if let Some(cn) = cookie_name {
                    b.scratch.clear();
                    if cookie::strip(value, cn, strip_cookie, &mut b.scratch) {
                        out.extend_from_slice(b"cookie: ");
                        out.extend_from_slice(&b.scratch);
                        out.extend_from_slice(b"\r\n");
                    }
                    continue;
                }
            }
            h1::push_lower(out, name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        if let Some(except) = &listen.forwardfor_except {
            if forwarded::should_add(except, self.peer.ip()) {
                out.extend_from_slice(&b.xff);
            }
        }
        if req.upgrade {
            out.extend_from_slice(b"connection: upgrade\r\n");
        } else if req.minor == 0 {
            out.extend_from_slice(b"connection: keep-alive\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }

    /// Sends the request on `conn`, streams the body both ways and relays the response.
    #[allow(clippy::too_many_arguments)]
    async fn relay(
        &mut self,
        client: &mut TcpStream,
        listen: &ListenRt,
        srv: &Arc<ServerRt>,
        conn: upstream::Connected,
        b: &mut Bufs,
        info: ReqInfo,
        ck: ClientCookie,
    ) -> Result<Outcome, RelayErr> {
        let s = listen.settings;
        let mut up = conn.stream;
        let mut o = Outcome {
            status: -1,
            bytes_out: 0,
            bytes_in: b.head_out.len() as u64,
            term: *b"--",
            server: Some(conn.server),
            server_cookie: if listen.cookie.is_some() { b'N' } else { b'-' },
            tc: Some(conn.connect),
            tr: None,
            tw: Some(conn.wait),
            retries: conn.retries,
            redispatched: conn.redispatched,
            keep_client: false,
        };
        let replayable = conn.reused && info.method.idempotent() && info.framing == Framing::None;
        let upload_framing = if info.body_inline {
            Framing::None
        } else {
            info.framing
        };
        let sent_at = Instant::now();
        b.upstream.clear();

        // Phase 1: head out, body up, response head back (concurrently, for 100-continue and
        // servers that answer before reading the whole body).
        let phase1 = {
            let Bufs {
                client: cbuf,
                upstream: ubuf,
                head_out,
                scratch,
                res,
                ..
            } = b;
            let (mut crd, mut cwr) = client.split();
            let (mut urd, mut uwr) = up.split();
            if timeout(s.timeout_server, uwr.write_all(head_out))
                .await
                .map(|r| r.is_err())
                .unwrap_or(true)
            {
                if replayable {
                    return Err(RelayErr::RetryFresh);
                }
                // The server reset the connection while we were sending the request.
                srv.live.counters.eresp.fetch_add(1, Ordering::Relaxed);
                listen.shared.backend.eresp.fetch_add(1, Ordering::Relaxed);
                let e = ProxyError::BadGateway;
                let _ = timeout(s.timeout_client, cwr.write_all(&error_bytes(e, false))).await;
                o.status = 502;
                o.term = *b"SH";
                o.bytes_out = e.bytes().len() as u64;
                o.keep_client = false;
                return Err(RelayErr::Done(o));
            }
            // A body that stalls leaves the server waiting: like HAProxy, the exchange ends with
            // a 504 when the server side has been idle for `timeout server`.
            let upload = upload_body(
                &mut crd,
                cbuf,
                &mut uwr,
                upload_framing,
                s.timeout_server,
                s.timeout_server,
                scratch,
            );
            let heads = read_final_head(
                &mut urd,
                ubuf,
                res,
                info,
                &mut cwr,
                s.timeout_server,
                64 * 1024,
            );
            tokio::pin!(upload);
            tokio::pin!(heads);
            let mut uploaded: Option<Result<u64, UploadErr>> = None;
            loop {
                tokio::select! {
                    biased;
                    h = &mut heads => break (h, uploaded),
                    u = &mut upload, if uploaded.is_none() => {
                        if let Err(e) = &u {
                            match e {
                                UploadErr::ClientClosed | UploadErr::ClientTimeout => {
                                    break (Err(HeadErr::Client), Some(u));
                                }
                                UploadErr::BadChunk => break (Err(HeadErr::Client), Some(u)),
                                UploadErr::Server => {}
                            }
                        }
                        uploaded = Some(u);
                    }
                }
            }
        };
        let (head, uploaded) = phase1;
        let upload_complete = matches!(uploaded, Some(Ok(_))) || upload_framing == Framing::None;
        if let Some(Ok(n)) = &uploaded {
            o.bytes_in += n;
        }
        match head {
            Ok(()) => {}
            Err(HeadErr::Client) => {
                // The client aborted (or sent a broken chunked body) while uploading.
                let bad_chunk = matches!(uploaded, Some(Err(UploadErr::BadChunk)));
                if bad_chunk {
                    let e = ProxyError::BadRequest;
                    let _ = timeout(s.timeout_client, client.write_all(e.bytes())).await;
                    o.status = 400;
                    o.bytes_out = e.bytes().len() as u64;
                    o.term = *b"PD";
                } else {
                    let timed_out = matches!(uploaded, Some(Err(UploadErr::ClientTimeout)));
                    if timed_out {
                        // HAProxy: a client that stops mid-body gets 504 at timeout server.
                        let e = ProxyError::GatewayTimeout;
                        let _ = timeout(s.timeout_client, client.write_all(&error_bytes(e, false)))
                            .await;
                        o.status = 504;
                        o.bytes_out = e.bytes().len() as u64;
                        o.term = *b"sH";
                    } else {
                        o.term = *b"CD";
                    }
                    srv.live.counters.cli_abrt.fetch_add(1, Ordering::Relaxed);
                }
                o.keep_client = false;
                return Err(RelayErr::Done(o));
            }
            Err(HeadErr::Empty) if replayable => return Err(RelayErr::RetryFresh),
            Err(e) => {
                srv.live.counters.eresp.fetch_add(1, Ordering::Relaxed);
                listen.shared.backend.eresp.fetch_add(1, Ordering::Relaxed);
                let err = match e {
                    HeadErr::Timeout => ProxyError::GatewayTimeout,
                    _ => ProxyError::BadGateway,
                };
                let keep = info.keep_alive && upload_complete;
                let _ = timeout(s.timeout_client, client.write_all(&error_bytes(err, keep))).await;
                let mut out = Outcome::generated(
                    err,
                    if err == ProxyError::GatewayTimeout {
                        *b"sH"
                    } else {
                        *b"SH"
                    },
                    keep,
                );
                out.server = o.server;
                out.tc = o.tc;
                out.tw = o.tw;
                out.retries = o.retries;
                out.redispatched = o.redispatched;
                out.server_cookie = o.server_cookie;
                out.bytes_in = o.bytes_in;
                return Err(RelayErr::Done(out));
            }
        }
        o.tr = Some(sent_at.elapsed());
        let status = b.res.status;
        o.status = status as i32;
        let res_framing = b.res.framing();
        let switching = status == 101 && info.upgrade;
        let client_chunked_ok = info.minor == 1;
        let mut keep_client = info.keep_alive
            && upload_complete
            && !switching
            && res_framing != Framing::UntilClose
            && (res_framing != Framing::Chunked || client_chunked_ok)
            && !*self.shutdown.borrow();

        // Response head for the client.
        let insert = listen.cookie.is_some() && ck != ClientCookie::Valid;
        let mut deleted_app_cookie = false;
        let mut cacheable = cookie::Cacheability::default();
        {
            let src = &b.upstream[..];
            let res = &b.res;
            let out = &mut b.head_out;
            out.clear();
            out.extend_from_slice(b"HTTP/1.1 ");
            let _ = std::io::Write::write_fmt(out, format_args!("{status}"));
            out.push(b' ');
            out.extend_from_slice(&src[res.reason_r.clone()]);
            out.extend_from_slice(b"\r\n");
            let cookie_name = listen.cookie.as_ref().map(|c| c.name.as_bytes());
            for (n, v) in &res.headers {
                let name = &src[n.clone()];
                let value = &src[v.clone()];
                if h1::is_hop_by_hop(name) && !(switching && name.eq_ignore_ascii_case(b"upgrade"))
                {
                    continue;
                }
                if res
                    .conn_listed
                    .iter()
                    .any(|r| src[r.clone()].eq_ignore_ascii_case(name))
                {
                    continue;
                }
                if let Some(cn) = cookie_name {
                    if name.eq_ignore_ascii_case(b"set-cookie") && cookie::set_cookie_is(value, cn)
                    {
                        deleted_app_cookie = true;
                        continue;
                    }
                }
                let at = out.len();
                h1::push_lower(out, name);
                if insert {
                    let end = out.len();
                    cacheable.header(&out[at..end], value);
                }
                out.extend_from_slice(b": ");
                out.extend_from_slice(value);
                out.extend_from_slice(b"\r\n");
            }
            if insert {
                if let Some(sc) = &srv.set_cookie {
                    out.extend_from_slice(b"set-cookie: ");
                    out.extend_from_slice(sc);
                    out.extend_from_slice(b"\r\n");
                    o.server_cookie = b'I';
                    let nocache = listen.cookie.as_ref().map(|c| c.nocache).unwrap_or(false);
                    if nocache && cacheable.needs_private(info.method.cacheable(), status) {
                        out.extend_from_slice(b"cache-control: private\r\n");
                    }
                }
            } else if deleted_app_cookie {
                o.server_cookie = b'D';
            }
            if res_framing == Framing::Chunked && client_chunked_ok {
                out.extend_from_slice(b"transfer-encoding: chunked\r\n");
            }
            if switching {
                out.extend_from_slice(b"connection: upgrade\r\n");
            } else if !keep_client {
                out.extend_from_slice(b"connection: close\r\n");
            } else if info.minor == 0 {
                out.extend_from_slice(b"connection: keep-alive\r\n");
            }
            out.extend_from_slice(b"\r\n");
        }
        let res_head_len = b.res.head_len;
        b.upstream.advance(res_head_len);
        // When the whole body is already buffered (the usual small response), head and body
        // leave in one write: one syscall and one segment instead of two.
        let mut body_sent_inline: Option<u64> = None;
        if !switching {
            match res_framing {
                Framing::None => body_sent_inline = Some(0),
                Framing::Length(n) if (b.upstream.len() as u64) >= n => {
                    let n = n as usize;
                    b.head_out.extend_from_slice(&b.upstream[..n]);
                    b.upstream.advance(n);
                    body_sent_inline = Some(n as u64);
                }
                _ => {}
            }
        }
        if timeout(s.timeout_client, client.write_all(&b.head_out))
            .await
            .map(|r| r.is_err())
            .unwrap_or(true)
        {
            o.term = *b"CD";
            srv.live.counters.cli_abrt.fetch_add(1, Ordering::Relaxed);
            o.keep_client = false;
            return Ok(o);
        }
        o.bytes_out = b.head_out.len() as u64;

        if switching {
            o.keep_client = false;
            tunnel(client, &mut up, b, s.timeout_client.max(s.timeout_server)).await;
            return Ok(o);
        }

        // Response body.
        let body = if let Some(n) = body_sent_inline {
            o.bytes_out -= n;
            Ok(n)
        } else {
            let (_, mut cwr) = client.split();
            let (mut urd, _) = up.split();
            relay_body(
                &mut urd,
                &mut b.upstream,
                &mut cwr,
                res_framing,
                client_chunked_ok,
                s.timeout_server,
                s.timeout_client,
                &mut b.scratch2,
            )
            .await
        };
        match body {
            Ok(n) => o.bytes_out += n,
            Err((n, who)) => {
                o.bytes_out += n;
                o.term = who;
                if who[0] == b'S' || who[0] == b's' {
                    srv.live.counters.srv_abrt.fetch_add(1, Ordering::Relaxed);
                } else {
                    srv.live.counters.cli_abrt.fetch_add(1, Ordering::Relaxed);
                }
                o.keep_client = false;
                return Ok(o);
            }
        }
        if res_framing == Framing::UntilClose {
            keep_client = false;
        }
        o.keep_client = keep_client;
        let reusable = b.res.keep_alive
            && upload_complete
            && b.upstream.is_empty()
            && res_framing != Framing::UntilClose;
        if reusable {
            srv.pool.put(up);
        }
        Ok(o)
    }
}

/// 502/503/504 keep the connection open; when we must close, say so.
fn error_bytes(e: ProxyError, keep: bool) -> std::borrow::Cow<'static, [u8]> {
    if keep {
        std::borrow::Cow::Borrowed(e.bytes())
    } else {
        e.bytes_closing()
    }
}

enum UploadErr {
    ClientClosed,
    ClientTimeout,
    BadChunk,
    Server,
}

/// Streams the request body (already partly in `cbuf`) to the server; leaves any pipelined
/// bytes after the body in `cbuf`.
async fn upload_body<R, W>(
    crd: &mut R,
    cbuf: &mut BytesMut,
    uwr: &mut W,
    framing: Framing,
    tclient: Duration,
    tserver: Duration,
    scratch: &mut Vec<u8>,
) -> Result<u64, UploadErr>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut sent = 0u64;
    match framing {
        Framing::None | Framing::UntilClose => Ok(0),
        Framing::Length(mut remaining) => loop {
            if !cbuf.is_empty() {
                let k = (cbuf.len() as u64).min(remaining) as usize;
                write_to(uwr, &cbuf[..k], tserver)
                    .await
                    .map_err(|_| UploadErr::Server)?;
                cbuf.advance(k);
                remaining -= k as u64;
                sent += k as u64;
            }
            if remaining == 0 {
                return Ok(sent);
            }
            read_into(crd, cbuf, tclient).await?;
        },
        Framing::Chunked => {
            let mut dec = ChunkedDecoder::default();
            loop {
                if !cbuf.is_empty() {
                    scratch.clear();
                    let n = dec
                        .feed(cbuf, scratch, true)
                        .map_err(|_| UploadErr::BadChunk)?;
                    write_to(uwr, scratch, tserver)
                        .await
                        .map_err(|_| UploadErr::Server)?;
                    cbuf.advance(n);
                    sent += scratch.len() as u64;
                }
                if dec.is_done() {
                    return Ok(sent);
                }
                read_into(crd, cbuf, tclient).await?;
            }
        }
    }
}

async fn read_into<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
    t: Duration,
) -> Result<(), UploadErr> {
    match timeout(t, read_more(rd, buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => Err(UploadErr::ClientClosed),
        Ok(Ok(_)) => Ok(()),
        Err(_) => Err(UploadErr::ClientTimeout),
    }
}

async fn write_to<W: AsyncWrite + Unpin>(w: &mut W, data: &[u8], t: Duration) -> Result<(), ()> {
    match timeout(t, w.write_all(data)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

/// Reads response heads until a final one (>= 200, or 101), relaying interim 1xx responses to
/// HTTP/1.1 clients (`100 Continue` for `Expect`).
async fn read_final_head<R, W>(
    urd: &mut R,
    ubuf: &mut BytesMut,
    res: &mut ResponseHead,
    info: ReqInfo,
    cwr: &mut W,
    tserver: Duration,
    max: usize,
) -> Result<(), HeadErr>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut received_any = false;
    loop {
        if !ubuf.is_empty() {
            received_any = true;
            match h1::parse_response(ubuf, info.method, res) {
                Ok(Parsed::Complete) => {
                    let st = res.status;
                    if (100..200).contains(&st) && !(st == 101 && info.upgrade) {
                        if st == 101 {
                            return Err(HeadErr::Invalid);
                        }
                        if info.minor == 1 {
                            let mut interim = Vec::with_capacity(res.head_len);
                            interim.extend_from_slice(b"HTTP/1.1 ");
                            interim.extend_from_slice(st.to_string().as_bytes());
                            interim.push(b' ');
                            interim.extend_from_slice(&ubuf[res.reason_r.clone()]);
                            interim.extend_from_slice(b"\r\n");
                            for (n, v) in &res.headers {
                                h1::push_lower(&mut interim, &ubuf[n.clone()]);
                                interim.extend_from_slice(b": ");
                                interim.extend_from_slice(&ubuf[v.clone()]);
                                interim.extend_from_slice(b"\r\n");
                            }
                            interim.extend_from_slice(b"\r\n");
                            if cwr.write_all(&interim).await.is_err() {
                                return Err(HeadErr::Client);
                            }
                        }
                        let n = res.head_len;
                        ubuf.advance(n);
                        continue;
                    }
                    return Ok(());
                }
                Ok(Parsed::Partial) if ubuf.len() >= max => return Err(HeadErr::Invalid),
                Ok(Parsed::Partial) => {}
                Err(_) => return Err(HeadErr::Invalid),
            }
        }
        match timeout(tserver, read_more(urd, ubuf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                return Err(if received_any {
                    HeadErr::Invalid
                } else {
                    HeadErr::Empty
                })
            }
            Ok(Ok(_)) => {}
            Err(_) => return Err(HeadErr::Timeout),
        }
    }
}

/// Relays the response body; `Err((bytes, term))` when one side failed midway.
#[allow(clippy::too_many_arguments)]
async fn relay_body<R, W>(
    urd: &mut R,
    ubuf: &mut BytesMut,
    cwr: &mut W,
    framing: Framing,
    client_chunked: bool,
    tserver: Duration,
    tclient: Duration,
    scratch: &mut Vec<u8>,
) -> Result<u64, (u64, [u8; 2])>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut sent = 0u64;
    match framing {
        Framing::None => Ok(0),
        Framing::Length(mut remaining) => loop {
            if !ubuf.is_empty() {
                let k = (ubuf.len() as u64).min(remaining) as usize;
                write_to(cwr, &ubuf[..k], tclient)
                    .await
                    .map_err(|_| (sent, *b"CD"))?;
                ubuf.advance(k);
                remaining -= k as u64;
                sent += k as u64;
            }
            if remaining == 0 {
                return Ok(sent);
            }
            let n = read_server(urd, ubuf, tserver, sent).await?;
            if n == 0 {
                return Err((sent, *b"SD"));
            }
        },
        Framing::Chunked => {
            let mut dec = ChunkedDecoder::default();
            loop {
                if !ubuf.is_empty() {
                    scratch.clear();
                    let n = dec
                        .feed(ubuf, scratch, client_chunked)
                        .map_err(|_| (sent, *b"SD"))?;
                    write_to(cwr, scratch, tclient)
                        .await
                        .map_err(|_| (sent, *b"CD"))?;
                    ubuf.advance(n);
                    sent += scratch.len() as u64;
                }
                if dec.is_done() {
                    return Ok(sent);
                }
                let n = read_server(urd, ubuf, tserver, sent).await?;
                if n == 0 {
                    return Err((sent, *b"SD"));
                }
            }
        }
        Framing::UntilClose => loop {
            if !ubuf.is_empty() {
                write_to(cwr, ubuf, tclient)
                    .await
                    .map_err(|_| (sent, *b"CD"))?;
                sent += ubuf.len() as u64;
                ubuf.clear();
            }
            let n = read_server(urd, ubuf, tserver, sent).await?;
            if n == 0 {
                return Ok(sent);
            }
        },
    }
}

/// One read from the server while relaying a body: `Ok(0)` at EOF, `SD` on an error, `sD` on
/// `timeout server`.
async fn read_server<R: AsyncRead + Unpin>(
    urd: &mut R,
    ubuf: &mut BytesMut,
    t: Duration,
    sent: u64,
) -> Result<usize, (u64, [u8; 2])> {
    match timeout(t, read_more(urd, ubuf)).await {
        Ok(Ok(n)) => Ok(n),
        Ok(Err(_)) => Err((sent, *b"SD")),
        Err(_) => Err((sent, *b"sD")),
    }
}

/// After `101 Switching Protocols`: bytes flow both ways until either side closes or the link
/// is idle for `idle` in both directions.
async fn tunnel(client: &mut TcpStream, up: &mut TcpStream, b: &mut Bufs, idle: Duration) {
    if !b.client.is_empty() {
        if up.write_all(&b.client).await.is_err() {
            return;
        }
        b.client.clear();
    }
    if !b.upstream.is_empty() {
        if client.write_all(&b.upstream).await.is_err() {
            return;
        }
        b.upstream.clear();
    }
    let (mut crd, mut cwr) = client.split();
    let (mut urd, mut uwr) = up.split();
    let mut cb = vec![0u8; READ_CHUNK];
    let mut ub = vec![0u8; READ_CHUNK];
    let mut client_open = true;
    let mut server_open = true;
    while client_open || server_open {
        tokio::select! {
            r = crd.read(&mut cb), if client_open => match r {
                Ok(0) | Err(_) => { client_open = false; let _ = uwr.shutdown().await; }
                Ok(n) => if uwr.write_all(&cb[..n]).await.is_err() { return; },
            },
            r = urd.read(&mut ub), if server_open => match r {
                Ok(0) | Err(_) => { server_open = false; let _ = cwr.shutdown().await; }
                Ok(n) => if cwr.write_all(&ub[..n]).await.is_err() { return; },
            },
            _ = tokio::time::sleep(idle) => return,
        }
    }
}
