//! What happens between `accept` and the HTTP session on listens that need it: the PROXY
//! protocol header (`accept_proxy`), the TLS handshake (`[listen.tls]` binds), then the one
//! dispatch point by negotiated ALPN (`dispatch`).
//!
//! Both steps run on the connection's own task under `timeout_client` (HAProxy 2.6 bounds its
//! handshakes by `timeout client`), holding the connection's `ConnSlot`, so a client that never
//! finishes its ClientHello holds one slot for at most that long and is then counted and closed.
//! Plain listens without `accept_proxy` skip this module entirely.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use super::forwarded::canonical;
use super::proxy_protocol::{self, Header, ReadError};
use super::session::{self, ClientIo, Conn, ConnSlot};
use crate::config::Proto;
use crate::runtime::ListenRt;

/// A TLS client connection carries the request path like a TCP one. `poll_readable` must not wait
/// on the socket while rustls already holds decrypted bytes (a pipelined request that arrived
/// in the same record as the previous one): `wants_read` is false exactly then (or after the
/// peer's close_notify, when a read returns at once too).
impl ClientIo for TlsStream<TcpStream> {
    // rustls' state is shared by both directions: split with a lock.
    type Reader<'a> = tokio::io::ReadHalf<&'a mut Self>;
    type Writer<'a> = tokio::io::WriteHalf<&'a mut Self>;

    fn split_io(&mut self) -> (Self::Reader<'_>, Self::Writer<'_>) {
        session::locked_split(self)
    }

    fn poll_readable(
        &self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let (tcp, tls) = self.get_ref();
        if tls.wants_read() {
            tcp.poll_read_ready(cx)
        } else {
            std::task::Poll::Ready(Ok(()))
        }
    }
}

/// Whether connections on `bind` (a configured bind address of `listen`) go through here.
pub fn needed(listen: &ListenRt, bind: &SocketAddr) -> bool {
    listen.accept_proxy.is_some() || listen.tls_on(bind).is_some()
}

/// Runs the PROXY header read and/or the TLS handshake on a task of its own, then starts the
/// session. Failures close the connection (nothing is sent on a bad PROXY header, as HAProxy)
/// and are counted.
pub fn spawn(
    listen: Arc<ListenRt>,
    bind: SocketAddr,
    mut stream: TcpStream,
    mut conn: Conn,
    slot: ConnSlot,
) {
    tokio::spawn(async move {
        let limit = listen.settings.timeout_client;
        if let Some(trusted) = &listen.accept_proxy {
            let from = canonical(conn.peer.ip());
            if !trusted.iter().any(|n| n.contains(&from)) {
                listen
                    .shared
                    .proxy_untrusted
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(listen = %listen.name, client = %conn.peer,
                    "PROXY header from a source outside accept_proxy_from: closed");
                return;
            }
            match proxy_protocol::read_header(&mut stream, limit).await {
                Ok(Header::Proxied { src, dst }) => {
                    conn.peer = src;
                    conn.local = dst;
                }
                Ok(Header::Local) => {}
                Err(e) => {
                    listen
                        .shared
                        .proxy_header_errors
                        .fetch_add(1, Ordering::Relaxed);
                    let why = match &e {
                        ReadError::Io(e) => e.to_string(),
                        ReadError::Invalid(w) => (*w).to_string(),
                        ReadError::Timeout => "timeout".into(),
                    };
                    tracing::debug!(listen = %listen.name, client = %conn.peer,
                        "bad PROXY header ({why}): closed");
                    return;
                }
            }
        }
        let Some(tls) = listen.tls_on(&bind).cloned() else {
            match listen.proto {
                Proto::H1 => session::spawn(conn, stream, slot),
                Proto::H2 => super::h2::spawn(conn, stream, slot),
            }
            return;
        };
        let counters = &tls.shared.counters;
        match tokio::time::timeout(limit, tls.acceptor.accept(stream)).await {
            Ok(Ok(s)) => {
                counters.handshakes.fetch_add(1, Ordering::Relaxed);
                if s.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
                    counters.resumed.fetch_add(1, Ordering::Relaxed);
                }
                conn.secure = true;
                dispatch(conn, s, slot);
            }
            Ok(Err(e)) => {
                counters.handshake_failures.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(listen = %listen.name, client = %conn.peer,
                    "TLS handshake failed: {e}");
            }
            Err(_) => {
                counters.handshake_failures.fetch_add(1, Ordering::Relaxed);
                counters.handshake_timeouts.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(listen = %listen.name, client = %conn.peer,
                    "TLS handshake timed out");
            }
        }
    });
}

/// The one place a TLS connection is handed to a protocol, by the ALPN the handshake chose.
pub fn dispatch(conn: Conn, stream: TlsStream<TcpStream>, slot: ConnSlot) {
    match stream.get_ref().1.alpn_protocol() {
        // HTTP/2: each stream goes through the same request path (`proxy::h2`).
        Some(b"h2") => super::h2::spawn(conn, stream, slot),
        // `http/1.1`, or no ALPN at all (curl --no-alpn, old clients).
        _ => session::spawn(conn, stream, slot),
    }
}
