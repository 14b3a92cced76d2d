//! ACME HTTP-01 answers: `GET /.well-known/acme-challenge/<token>` for a token this node holds
//! (its own order's, or one a peer shared over the heartbeat channel) is answered here, before
//! cookie, balancing or any backend, on every listener. Unknown tokens go to the backends as any
//! other request (an application may answer its own challenges).
//!
//! Cost on the request path when no order is in flight: one prefix compare of the target (and,
//! for a matching prefix only, one `ArcSwap` load). No lock, no allocation.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::time::timeout;

use super::exchange::Outcome;
use super::h1::{Framing, Method};
use super::session::{Bufs, ClientIo};
use crate::cluster::challenges::{TokenTable, PATH_PREFIX};

/// The key authorization to answer this request with, if it is an HTTP-01 validation of a token
/// we hold: GET or HEAD, no body, origin-form target with exactly the challenge path.
pub(super) fn lookup(b: &Bufs, table: &TokenTable) -> Option<Arc<str>> {
    if !matches!(b.req.method(), Method::Get | Method::Head) || b.req.framing() != Framing::None {
        return None;
    }
    let target = b.client.get(b.req.target_r.clone())?;
    if !target.starts_with(PATH_PREFIX) {
        return None;
    }
    table.answer(target)
}

/// Writes the 200 answer (RFC 8555 §8.3: the key authorization as the body,
/// `application/octet-stream`), consumes the request head, and returns the log outcome
/// (`LR`: processed locally, as HAProxy logs its own redirects and `http-request return`).
pub(super) async fn answer<S: ClientIo>(
    stream: &mut S,
    b: &mut Bufs,
    key_auth: &str,
    write_timeout: Duration,
) -> Outcome {
    use bytes::Buf;
    let keep = b.req.keep_alive;
    let head_only = b.req.method() == Method::Head;
    b.client.advance(b.req.head_len);
    let mut out = Vec::with_capacity(160 + key_auth.len());
    out.extend_from_slice(b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n");
    out.extend_from_slice(b"cache-control: no-store\r\ncontent-length: ");
    out.extend_from_slice(key_auth.len().to_string().as_bytes());
    if !keep {
        out.extend_from_slice(b"\r\nconnection: close");
    }
    out.extend_from_slice(b"\r\n\r\n");
    let head_len = out.len() as u64;
    if !head_only {
        out.extend_from_slice(key_auth.as_bytes());
    }
    let ok = matches!(
        timeout(write_timeout, stream.write_all(&out)).await,
        Ok(Ok(()))
    );
    Outcome {
        bytes_in: b.req.head_len as u64,
        ..Outcome::local(
            200,
            out.len() as u64,
            head_len + if head_only { 0 } else { key_auth.len() as u64 },
            if ok { *b"LR" } else { *b"CD" },
            keep && ok,
        )
    }
}
