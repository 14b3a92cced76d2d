//! The tunnel after `101 Switching Protocols` (WebSocket): bytes both ways until one side closes.
//!
//! Every read and every write is bounded by `timeout_tunnel` (HAProxy `timeout tunnel`): the
//! tunnel ends when neither side has sent anything for that long, and also when a peer stops
//! reading and a write cannot complete within it, so a stalled peer never holds the connection
//! (and its slot) forever.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::session::{within, Bufs, ClientIo, READ_CHUNK};

/// `write_all` bounded by `idle`; false when it failed or timed out.
async fn send<W: AsyncWrite + Unpin>(w: &mut W, data: &[u8], idle: Duration) -> bool {
    matches!(within(idle, w.write_all(data)).await, Ok(Ok(())))
}

/// After `101 Switching Protocols`: bytes flow both ways until either side closes, the link is
/// idle for `idle` in both directions, or a write stays blocked for `idle`.
pub(super) async fn tunnel<S: ClientIo>(
    client: &mut S,
    up: &mut TcpStream,
    b: &mut Bufs,
    idle: Duration,
) {
    if !b.client.is_empty() {
        if !send(up, &b.client, idle).await {
            return;
        }
        b.client.clear();
    }
    if !b.upstream.is_empty() {
        if !send(client, &b.upstream, idle).await {
            return;
        }
        b.upstream.clear();
    }
    let (mut crd, mut cwr) = client.split_io();
    let (mut urd, mut uwr) = up.split();
    let mut cb = vec![0u8; READ_CHUNK];
    let mut ub = vec![0u8; READ_CHUNK];
    let mut client_open = true;
    let mut server_open = true;
    while client_open || server_open {
        tokio::select! {
            r = crd.read(&mut cb), if client_open => {
                if !forward(r, &cb, &mut uwr, &mut client_open, idle).await {
                    return;
                }
            }
            r = urd.read(&mut ub), if server_open => {
                if !forward(r, &ub, &mut cwr, &mut server_open, idle).await {
                    return;
                }
            }
            _ = tokio::time::sleep(idle) => return,
        }
    }
}

/// Passes one read's bytes on; at EOF marks the side closed and half-closes the other way.
/// Returns false when the tunnel must end (a write failed or stayed blocked for `idle`).
async fn forward<W: AsyncWrite + Unpin>(
    read: std::io::Result<usize>,
    buf: &[u8],
    to: &mut W,
    open: &mut bool,
    idle: Duration,
) -> bool {
    match read {
        Ok(0) | Err(_) => {
            *open = false;
            let _ = timeout(idle, to.shutdown()).await;
            true
        }
        Ok(n) => send(to, &buf[..n], idle).await,
    }
}
