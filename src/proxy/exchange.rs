//! One request/response exchange: the persistence cookie, the server choice, the connect and
//! retry loop, and the relay of request and response over the chosen connection.
//!
//! Invariant: a request is only sent to a second server when the connection to the first failed
//! before anything was written, or when a reused pooled connection died before any response byte
//! and the request is idempotent and has no body.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Buf;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::bufs::Kept;
use super::clock::Tick;
use super::cookie;
use super::error_pages::ProxyError;
use super::h1::{ChunkedDecoder, Framing, Known, Method};
use super::idle::deadline;
use super::request::{upload_body, UploadErr};
use super::response::{read_final_head, relay_body, write_client_head, ClientHead, HeadErr};
use super::session::{within, Bufs, ClientIo, Conn, ConnBufs};
use super::tunnel::tunnel;
use super::upstream;
use crate::runtime::{unix_ms, ListenRt, ServerRt};

/// Client-cookie log character (3rd of the termination state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ClientCookie {
    NotConfigured,
    None,
    Invalid,
    Down,
    Valid,
}

impl ClientCookie {
    pub(super) fn flag(self) -> u8 {
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
pub(super) struct Outcome {
    pub(super) status: i32,
    /// Bytes sent to the client (stats `bout`).
    pub(super) bytes_out: u64,
    /// The access log's bytes field: HAProxy 2.6's HTX size of the response (heads from
    /// `ResponseHead::htx_len`, 1xx included, plus the body payload), not the wire size.
    pub(super) log_bytes: u64,
    pub(super) bytes_in: u64,
    pub(super) term: [u8; 2],
    pub(super) server: Option<usize>,
    pub(super) server_cookie: u8,
    pub(super) tc: Option<Duration>,
    pub(super) tr: Option<Duration>,
    pub(super) tw: Option<Duration>,
    pub(super) retries: u32,
    pub(super) redispatched: bool,
    pub(super) keep_client: bool,
}

impl Outcome {
    /// Records that this exchange ended with the generated page `e` (already sent).
    fn answered(&mut self, e: ProxyError, term: [u8; 2]) {
        self.status = e.status() as i32;
        self.bytes_out = e.bytes().len() as u64;
        self.log_bytes = e.log_bytes();
        self.term = term;
    }

    pub(super) fn generated(e: ProxyError, term: [u8; 2], keep: bool) -> Self {
        Self::local(
            e.status() as i32,
            e.bytes().len() as u64,
            e.log_bytes(),
            term,
            keep && !e.closes(),
        )
    }

    /// A response edgelb answered itself (no server was involved).
    pub(super) fn local(
        status: i32,
        bytes_out: u64,
        log_bytes: u64,
        term: [u8; 2],
        keep_client: bool,
    ) -> Self {
        Outcome {
            status,
            bytes_out,
            log_bytes,
            bytes_in: 0,
            term,
            server: None,
            server_cookie: b'-',
            tc: None,
            tr: None,
            tw: None,
            retries: 0,
            redispatched: false,
            keep_client,
        }
    }
}

/// What the request head said, copied out so the buffer can move on.
#[derive(Debug, Clone, Copy)]
pub(super) struct ReqInfo {
    pub(super) method: Method,
    pub(super) minor: u8,
    pub(super) framing: Framing,
    /// Largest response head accepted (`max_header_bytes`).
    pub(super) max_head: usize,
    pub(super) keep_alive: bool,
    pub(super) upgrade: bool,
    /// The whole Content-Length body was already read and rides in `head_out` with the head.
    pub(super) body_inline: bool,
    /// Bytes received from the client for this request so far: its head as it came (not the
    /// rewritten upstream head) plus any body that came with it. `bin` counts what the client
    /// sent, as HAProxy's does.
    pub(super) client_bytes: u64,
}

pub(super) enum RelayErr {
    /// A reused connection died before any response byte: replay on a fresh one.
    RetryFresh,
    Done(Outcome),
}

impl Conn {
    /// Picks the server by cookie, writes the upstream head, connects and relays.
    pub(super) async fn exchange<S: ClientIo>(
        &mut self,
        stream: &mut S,
        listen: &Arc<ListenRt>,
        cb: &mut ConnBufs,
        max_head: usize,
    ) -> (Outcome, u8) {
        let b = cb.get();
        // ACME HTTP-01 validation of a token this cluster holds: answered before anything else.
        if let Some(key_auth) = super::acme_http01::lookup(b, &self.rt.challenges) {
            let t = listen.settings.timeout_client;
            let o = super::acme_http01::answer(stream, b, &key_auth, t).await;
            return (o, ClientCookie::NotConfigured.flag());
        }
        let info = ReqInfo {
            method: b.req.method(),
            minor: b.req.minor,
            framing: b.req.framing(),
            max_head,
            keep_alive: b.req.keep_alive,
            upgrade: b.req.upgrade,
            body_inline: false,
            client_bytes: b.req.head_len as u64,
        };

        if listen.redirect_https && !self.secure {
            return (self.redirect_https(stream, listen, b, &info).await, b'-');
        }

        // Persistence cookie: the first one in any Cookie header wins.
        let mut ck = ClientCookie::NotConfigured;
        let mut direct: Option<usize> = None;
        let mut strip_cookie = false;
        if let Some(c) = &listen.cookie {
            ck = ClientCookie::None;
            let mut value: Option<&[u8]> = None;
            for f in &b.req.headers {
                if f.known == Known::Cookie {
                    let scan = cookie::scan(&b.client[f.value()], c.name.as_bytes());
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
        // A chunked body whose first bytes came with the head is checked before any server is
        // chosen: a bad chunk-size line gets 400 and no server ever sees the request (as HAProxy).
        if info.framing == Framing::Chunked && !b.client.is_empty() {
            b.scratch.clear();
            if ChunkedDecoder::default()
                .feed(&b.client, &mut b.scratch, false)
                .is_err()
            {
                let e = ProxyError::BadRequest;
                send_error(stream, listen.settings.timeout_client, e, false).await;
                listen.shared.frontend.ereq.fetch_add(1, Ordering::Relaxed);
                return (Outcome::generated(e, *b"PR", false), ck.flag());
            }
        }
        // A small body that came with the head goes out in the same write.
        let mut info = info;
        if let Framing::Length(n) = info.framing {
            if (b.client.len() as u64) >= n {
                let n = n as usize;
                b.head_out.extend_from_slice(&b.client[..n]);
                b.client.advance(n);
                info.body_inline = true;
                info.client_bytes += n as u64;
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
                    send_error(stream, listen.settings.timeout_client, e, keep).await;
                    listen.shared.backend.count_status(503);
                    return (Outcome::generated(e, *b"SC", keep), ck.flag());
                }
            },
        };

        let mut allow_pooled = true;
        loop {
            let conn = match upstream::connect(
                listen,
                first,
                by_cookie,
                allow_pooled,
                (self.peer, self.local),
            )
            .await
            {
                Ok(c) => c,
                Err(ex) => {
                    if let Some(s) = listen.servers.get(ex.server) {
                        s.live.counters.econ.fetch_add(1, Ordering::Relaxed);
                    }
                    listen.shared.backend.econ.fetch_add(1, Ordering::Relaxed);
                    listen.shared.backend.count_status(503);
                    let e = ProxyError::ServiceUnavailable;
                    let keep = info.keep_alive && !body_unread;
                    send_error(stream, listen.settings.timeout_client, e, keep).await;
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
            // Released when dropped, so no return, error or panic below can leak a session.
            let srv_session = c.session();
            let be_session = listen.shared.backend.session();
            c.req_tot.fetch_add(1, Ordering::Relaxed);
            c.last_sess_ms.store(unix_ms(), Ordering::Relaxed);
            listen
                .shared
                .backend
                .req_tot
                .fetch_add(1, Ordering::Relaxed);
            let reused = conn.reused;
            let result = self
                .relay(stream, listen, &srv, conn, cb, info, ck_now)
                .await;
            drop(srv_session);
            drop(be_session);
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

    /// Sends the request on `conn`, streams the body both ways and relays the response.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn relay<S: ClientIo>(
        &mut self,
        client: &mut S,
        listen: &ListenRt,
        srv: &Arc<ServerRt>,
        conn: upstream::Connected,
        cb: &mut ConnBufs,
        info: ReqInfo,
        ck: ClientCookie,
    ) -> Result<Outcome, RelayErr> {
        let s = &listen.settings;
        let mut up = conn.stream;
        // Released once the server has answered (or failed) on this connection, so the next
        // new connection to it may open (`pool`'s module doc).
        let opening = conn.opening;
        let mut o = Outcome {
            status: -1,
            bytes_out: 0,
            log_bytes: 0,
            bytes_in: info.client_bytes,
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
        let sent_at = Tick::now();
        let b = cb.get();
        b.upstream.clear();

        // Phase 1: head out, body up, response head back (concurrently, for 100-continue and
        // servers that answer before reading the whole body).
        if within(s.timeout_server, up.write_all(&b.head_out))
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
            send_error(client, s.timeout_client, e, false).await;
            o.answered(e, *b"SH");
            o.keep_client = false;
            return Err(RelayErr::Done(o));
        }
        // Nothing to upload and nothing pipelined behind the request: the set goes back to the
        // thread's pool for the round trip (other requests reuse it while it is in the cache)
        // and the pool's top set takes the answer (`bufs`: only the upstream head, for a
        // replay, and the request line, for the log, stay with the request in `kept`).
        let mut kept = Kept::default();
        let mut timed_out = false;
        if upload_framing == Framing::None && b.client.is_empty() {
            cb.park(&mut kept);
            let at = Tick::now().after(s.timeout_server);
            let ready = std::future::poll_fn(|cx| up.poll_read_ready(cx));
            // Readiness or an error: the read below takes it (an error or EOF it reports).
            timed_out = deadline(&self.shutdown, at, ready).await.is_err();
        }
        let b = cb.unpark(&mut kept);
        let phase1 = if timed_out {
            (Err(HeadErr::Timeout), Some(Ok(0)))
        } else {
            let Bufs {
                client: cbuf,
                upstream: ubuf,
                scratch,
                res,
                ..
            } = b;
            let (mut crd, mut cwr) = client.split_io();
            let (mut urd, mut uwr) = up.split();
            // A body that stalls leaves the server waiting: like HAProxy, the exchange ends with
            // a 504 when the server side has been idle for `timeout server`. Boxed, and only
            // for a body: a request without one (the usual GET) keeps this request's state
            // smaller by the upload's size, and each request's state is allocated and written
            // whole (benches/README.md, fifth pass).
            let mut upload = (upload_framing != Framing::None).then(|| {
                Box::pin(upload_body(
                    &mut crd,
                    cbuf,
                    &mut uwr,
                    upload_framing,
                    s.timeout_server,
                    s.timeout_server,
                    scratch,
                ))
            });
            let heads = read_final_head(
                &mut urd,
                ubuf,
                res,
                info,
                &mut cwr,
                &self.shutdown,
                s.timeout_server,
            );
            tokio::pin!(heads);
            // No body: nothing to upload.
            let mut uploaded: Option<Result<u64, UploadErr>> = upload.is_none().then_some(Ok(0));
            loop {
                let next_upload = async {
                    match upload.as_mut() {
                        Some(u) => u.as_mut().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    biased;
                    h = &mut heads => break (h, uploaded),
                    u = next_upload, if uploaded.is_none() => {
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
        drop(opening);
        if head.is_ok() {
            // How long a request should wait for a connection to come back (`pool`).
            if conn.reused {
                srv.pool.observe_reused(sent_at.elapsed());
            } else {
                srv.pool.observe_fresh(sent_at.elapsed());
            }
        }
        let upload_complete = matches!(uploaded, Some(Ok(_))) || upload_framing == Framing::None;
        if let Some(Ok(n)) = &uploaded {
            o.bytes_in += n;
        }
        match head {
            Ok(interim) => o.log_bytes = interim,
            Err(HeadErr::Client) => {
                // The client aborted (or sent a broken chunked body) while uploading.
                let bad_chunk = matches!(uploaded, Some(Err(UploadErr::BadChunk)));
                if bad_chunk {
                    let e = ProxyError::BadRequest;
                    send_error(client, s.timeout_client, e, false).await;
                    o.answered(e, *b"PD");
                } else {
                    let timed_out = matches!(uploaded, Some(Err(UploadErr::ClientTimeout)));
                    if timed_out {
                        // HAProxy: a client that stops mid-body gets 504 at timeout server.
                        let e = ProxyError::GatewayTimeout;
                        send_error(client, s.timeout_client, e, false).await;
                        o.answered(e, *b"sH");
                    } else {
                        o.term = *b"CD";
                    }
                    srv.live.counters.cli_abrt.fetch_add(1, Ordering::Relaxed);
                }
                o.keep_client = false;
                return Err(RelayErr::Done(o));
            }
            Err(HeadErr::Empty) if replayable => {
                kept.replay(b);
                return Err(RelayErr::RetryFresh);
            }
            Err(e) => {
                srv.live.counters.eresp.fetch_add(1, Ordering::Relaxed);
                listen.shared.backend.eresp.fetch_add(1, Ordering::Relaxed);
                let err = match e {
                    HeadErr::Timeout => ProxyError::GatewayTimeout,
                    _ => ProxyError::BadGateway,
                };
                let keep = info.keep_alive && upload_complete;
                send_error(client, s.timeout_client, err, keep).await;
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
            && !self.shutdown.is_stopping();

        // Response head for the client.
        let head = ClientHead {
            listen,
            srv,
            method: info.method,
            client_minor: info.minor,
            insert_cookie: listen.cookie.is_some() && ck != ClientCookie::Valid,
            switching,
            keep_client,
            chunked_to_client: res_framing == Framing::Chunked && client_chunked_ok,
            hsts: if self.secure {
                listen.tls.as_ref().and_then(|t| t.hsts.as_deref())
            } else {
                None
            },
        };
        if let Some(flag) = write_client_head(&mut b.head_out, &b.upstream, &b.res, &head) {
            o.server_cookie = flag;
        }
        // Counted before the client write: HAProxy logs the head once received.
        o.log_bytes += b.res.htx_len;
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
        if within(s.timeout_client, client.write_all(&b.head_out))
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
            // Boxed: rare, and its state would otherwise enlarge every request's.
            Box::pin(tunnel(client, &mut up, b, s.timeout_tunnel)).await;
            return Ok(o);
        }

        // Response body.
        let mut body_htx = 0u64;
        let body = if let Some(n) = body_sent_inline {
            o.bytes_out -= n;
            body_htx = n;
            Ok(n)
        } else {
            let mut cwr = &mut *client;
            let (mut urd, _) = up.split();
            // Boxed: only a body not already read with the head needs it, and unboxed its
            // state would enlarge every request's (see `upload` above).
            Box::pin(relay_body(
                &mut urd,
                &mut b.upstream,
                &mut cwr,
                res_framing,
                client_chunked_ok,
                s.timeout_server,
                s.timeout_client,
                &mut b.scratch2,
                &mut body_htx,
            ))
            .await
        };
        o.log_bytes += body_htx;
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
        // A PROXY-header connection speaks for this client only: never pooled.
        if reusable && !srv.send_proxy_v2 {
            srv.pool.put(up);
        }
        Ok(o)
    }
}

/// Sends a generated response, bounded by `timeout_client` (a client that does not read cannot
/// hold the exchange).
impl Conn {
    /// `redirect_https`: every request on a plain address gets HAProxy's 302 to https, and no
    /// server is contacted.
    async fn redirect_https<S: ClientIo>(
        &mut self,
        stream: &mut S,
        listen: &ListenRt,
        b: &mut Bufs,
        info: &ReqInfo,
    ) -> Outcome {
        let src = &b.client[..];
        let host = match &b.req.abs_authority_r {
            Some(a) => &src[a.clone()],
            None => b
                .req
                .headers
                .iter()
                .find(|f| f.known == Known::Host)
                .map(|f| &src[f.value()])
                .unwrap_or(b""),
        };
        let path = match &b.req.abs_path_r {
            Some(p) if src[p.clone()].starts_with(b"/") => &src[p.clone()],
            Some(_) => b"/".as_slice(),
            None => &src[b.req.target_r.clone()],
        };
        // A body is not read: the connection closes after the answer (as HAProxy 2.6 does).
        let no_body = matches!(info.framing, Framing::None | Framing::Length(0));
        let keep = info.keep_alive && no_body;
        let connection: Option<&[u8]> = match (keep, info.minor) {
            (false, _) => Some(b"close"),
            (true, 0) => Some(b"keep-alive"),
            (true, _) => None,
        };
        let mut out = std::mem::take(&mut b.head_out);
        let log_bytes = super::error_pages::redirect_https(&mut out, host, path, connection);
        let head_len = b.req.head_len;
        b.client.advance(head_len);
        let wrote = within(listen.settings.timeout_client, stream.write_all(&out)).await;
        let sent = out.len() as u64;
        b.head_out = out;
        Outcome {
            status: 302,
            bytes_out: sent,
            log_bytes,
            bytes_in: info.client_bytes,
            term: *b"LR",
            server: None,
            server_cookie: b'-',
            tc: None,
            tr: None,
            tw: None,
            retries: 0,
            redispatched: false,
            keep_client: keep && matches!(wrote, Ok(Ok(()))),
        }
    }
}

async fn send_error<W: AsyncWrite + Unpin>(w: &mut W, t: Duration, e: ProxyError, keep: bool) {
    let _ = within(t, w.write_all(&error_bytes(e, keep))).await;
}

/// 502/503/504 keep the connection open; when we must close, say so.
pub(super) fn error_bytes(e: ProxyError, keep: bool) -> std::borrow::Cow<'static, [u8]> {
    if keep {
        std::borrow::Cow::Borrowed(e.bytes())
    } else {
        e.bytes_closing()
    }
}
