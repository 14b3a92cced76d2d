//! HTTP/2 to clients: one task per connection drives the `h2` crate's server connection and all
//! of its streams; each stream is served by the one HTTP/1 request path (`session::Conn::serve`
//! over a `stream_io::StreamIo`), so cookies, X-Forwarded-For, balancing, retries, timeouts,
//! error pages, the access log and the stats are the same as for HTTP/1.1. Backends stay
//! HTTP/1.1.
//!
//! Entry points: `spawn` for an accepted connection that speaks h2 (a plain listen with
//! `proto = "h2"`, prior knowledge; a TLS connection that negotiated ALPN `h2`).
//!
//! Defences, each pinned by a test in tests/h2_defences.rs: at most `MAX_CONCURRENT_STREAMS`
//! open streams; header lists bounded by `max_header_bytes` (CONTINUATION floods, HPACK bombs);
//! windows of `STREAM_WINDOW`/`CONN_WINDOW` bound the unread request body a connection holds and
//! sends are paced by the client's window (slow readers meet `timeout_client`); streams reset
//! before they are accepted are capped by h2's `max_pending_accept_reset_streams`, and
//! `meter` caps RST_STREAM and control frames per second (rapid reset, SETTINGS/PING floods),
//! closing with GOAWAY ENHANCE_YOUR_CALM. An idle connection is closed with GOAWAY after
//! `timeout_http_keep_alive` (`timeout_http_request` before its first stream).

pub mod convert;
pub mod meter;
pub mod stream_io;

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use h2::server::SendResponse;
use h2::{Reason, RecvStream};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{sleep_until, timeout, Instant};

use super::session::{catch_panic, Conn, ConnSlot};
use meter::{Limits, Meter};
use stream_io::StreamIo;

/// Streams open at once per connection (HAProxy's `tune.h2.max-concurrent-streams`, 100).
pub const MAX_CONCURRENT_STREAMS: u32 = 100;
/// Receive window per stream (HAProxy's `tune.h2.initial-window-size`, 65535 bytes).
pub const STREAM_WINDOW: u32 = 65_535;
/// Receive window of the whole connection: what all its streams may have unread at once.
pub const CONN_WINDOW: u32 = 256 * 1024;
/// Bytes of response data `h2` may hold per stream before they are written.
pub const SEND_BUFFER: usize = 64 * 1024;
/// Streams the client resets before we accept them (h2's own rapid-reset guard).
pub const PENDING_ACCEPT_RESETS: usize = 20;
/// RST_STREAM frames a client may send per second before GOAWAY ENHANCE_YOUR_CALM: twice the
/// stream limit, so a browser that cancels every open stream at once stays far below it.
pub const RESETS_PER_SEC: u32 = 2 * MAX_CONCURRENT_STREAMS;
/// SETTINGS, PING, PRIORITY and empty DATA frames a client may send per second.
pub const CONTROL_FRAMES_PER_SEC: u32 = 200;

/// Serves an h2 connection on its own task; like `session::spawn`, the slot is released when
/// the task ends and a panic costs this connection only.
pub fn spawn<T>(conn: Conn, io: T, slot: ConnSlot)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let slot = slot;
        let peer = conn.peer;
        if let Err(p) = catch_panic(serve(conn, io)).await {
            slot.rt()
                .process
                .conn_panics
                .fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                client = %peer,
                location = %p.location,
                "h2 connection task panicked ({}); that connection was closed",
                p.message
            );
        }
        drop(slot);
    });
}

/// Drives one HTTP/2 connection until it closes.
pub async fn serve<T>(conn: Conn, io: T)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let snap = conn.rt.load();
    let Some(listen) = snap.listen_by_name(&conn.listen_name).cloned() else {
        return;
    };
    let s = listen.settings;
    let max_head = snap.global.max_header_bytes;
    drop(snap);
    let tripped = Arc::new(AtomicBool::new(false));
    let io = Meter::new(
        io,
        Limits {
            resets: RESETS_PER_SEC,
            control: CONTROL_FRAMES_PER_SEC,
        },
        tripped.clone(),
    );
    let mut builder = h2::server::Builder::new();
    builder
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONN_WINDOW)
        .max_header_list_size(max_head.min(u32::MAX as usize) as u32)
        .max_send_buffer_size(SEND_BUFFER)
        .max_pending_accept_reset_streams(PENDING_ACCEPT_RESETS);
    let mut h = match timeout(s.timeout_http_request, builder.handshake::<_, Bytes>(io)).await {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => {
            tracing::debug!(client = %conn.peer, error = %e, "h2 handshake failed");
            return;
        }
        Err(_) => return,
    };
    let mut streams = FuturesUnordered::new();
    let mut idle_at = Some(Instant::now() + s.timeout_http_request);
    let mut close_at: Option<Instant> = None;
    let mut calm = false;
    let shutdown = conn.shutdown.clone();
    let tripped_now = || {
        let t = tripped.clone();
        poll_fn(move |_| {
            if t.load(Ordering::Relaxed) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    };
    loop {
        tokio::select! {
            // Streams first, and every ready one: their frames wait in h2's queues and go out
            // together in one write when the connection is polled next (one TLS record and one
            // syscall for many responses, not one each).
            biased;
            n = finish_ready(&mut streams), if !streams.is_empty() => {
                let _ = n;
                if streams.is_empty() && close_at.is_none() {
                    idle_at = Some(Instant::now() + s.timeout_http_keep_alive);
                }
            }
            r = h.accept() => match r {
                Some(Ok((req, respond))) => {
                    idle_at = None;
                    streams.push(serve_stream(stream_conn(&conn), req, respond, max_head));
                }
                Some(Err(e)) => {
                    tracing::debug!(client = %conn.peer, error = %e, "h2 connection error");
                    break;
                }
                None => break,
            },
            _ = tripped_now(), if !calm => {
                tracing::warn!(client = %conn.peer, "h2 client over its frame-rate limits; GOAWAY ENHANCE_YOUR_CALM");
                calm = true;
                h.abrupt_shutdown(Reason::ENHANCE_YOUR_CALM);
                // In-flight streams are dropped: the client is sent away.
                streams.clear();
                close_at = Some(Instant::now() + std::time::Duration::from_secs(1));
            }
            _ = sleep_until(idle_at.unwrap_or_else(Instant::now)), if idle_at.is_some() => {
                idle_at = None;
                h.graceful_shutdown();
                close_at = Some(Instant::now() + s.timeout_client);
            }
            _ = shutdown.wait(), if close_at.is_none() => {
                h.graceful_shutdown();
                close_at = Some(Instant::now() + s.timeout_client);
            }
            _ = sleep_until(close_at.unwrap_or_else(Instant::now)), if close_at.is_some() => break,
        }
    }
}

/// Polls the streams until none is ready; Ready with how many finished (at least one), Pending
/// when none did (the task is woken when one can go on).
fn finish_ready<F: std::future::Future<Output = ()>>(
    streams: &mut FuturesUnordered<F>,
) -> impl std::future::Future<Output = usize> + '_ {
    poll_fn(move |cx| {
        let mut done = 0;
        while let Poll::Ready(Some(())) = streams.poll_next_unpin(cx) {
            done += 1;
        }
        if done > 0 {
            Poll::Ready(done)
        } else {
            Poll::Pending
        }
    })
}

/// The per-stream view of the connection for the request path.
fn stream_conn(c: &Conn) -> Conn {
    Conn {
        rt: c.rt.clone(),
        listen_name: c.listen_name.clone(),
        peer: c.peer,
        local: c.local,
        secure: c.secure,
        shutdown: c.shutdown.clone(),
    }
}

/// Serves one stream through the request path.
async fn serve_stream(
    conn: Conn,
    req: http::Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    max_head: usize,
) {
    let (parts, body) = req.into_parts();
    let mut head = Vec::with_capacity(256);
    let framing = match convert::request_head(&parts, body.is_end_stream(), &mut head) {
        Ok(f) => f,
        Err(e) => {
            tracing::debug!(client = %conn.peer, reason = e.0, "malformed h2 request");
            respond.send_reset(Reason::PROTOCOL_ERROR);
            return;
        }
    };
    let is_head = parts.method == http::Method::HEAD;
    let io = StreamIo::new(head, framing, body, respond, is_head, max_head);
    conn.serve(io).await;
}
