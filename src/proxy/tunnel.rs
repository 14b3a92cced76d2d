//! The tunnel after `101 Switching Protocols` (WebSocket): bytes both ways until one side closes.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::session::{Bufs, READ_CHUNK};

/// After `101 Switching Protocols`: bytes flow both ways until either side closes or the link
/// is idle for `idle` in both directions.
pub(super) async fn tunnel(
    client: &mut TcpStream,
    up: &mut TcpStream,
    b: &mut Bufs,
    idle: Duration,
) {
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
