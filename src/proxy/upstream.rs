//! Getting a connection to a backend: pooled reuse, connect with `timeout_connect`, and HAProxy's
//! `retries` + `option redispatch` policy.
//!
//! Only connection failures are retried (nothing has been sent yet, so every retry is safe):
//! - a request that was not pinned by a cookie is redispatched to the next round-robin server on
//!   every retry, without waiting, when another server can take it;
//! - a cookie-pinned request retries its own server (after a 1 s turn-around when the failure
//!   was a refusal, none after a connect timeout) and is redispatched only on the last retry;
//! - with `redispatch = false`, every retry goes to the same server.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::OwnedSemaphorePermit;

use super::pool::{Got, OPENING_WAIT_MAX};

use crate::runtime::ListenRt;

/// HAProxy waits `min(timeout connect, 1s)` before retrying the same server after an error.
const TURNAROUND_MAX: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct Connected {
    pub stream: TcpStream,
    pub server: usize,
    pub reused: bool,
    pub retries: u32,
    pub redispatched: bool,
    /// Time spent waiting for a connection to the server (`pool::Pool::take_or_open`) and in
    /// retry turn-arounds (HAProxy counts both in Tw).
    pub wait: Duration,
    /// Connect time of the last attempt (zero for a reused connection).
    pub connect: Duration,
    /// The opening slot of a new connection, held until the server's first answer on it
    /// (`pool`'s module doc); the relay drops it then.
    pub opening: Option<OwnedSemaphorePermit>,
}

#[derive(Debug)]
pub struct Exhausted {
    pub server: usize,
    pub retries: u32,
    pub redispatched: bool,
    pub wait: Duration,
    /// The last failure was a connect timeout (log `sC`) rather than a refusal (`SC`).
    pub timed_out: bool,
}

async fn connect_once(addr: SocketAddr) -> io::Result<TcpStream> {
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    let stream = sock.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Connects to `addr` and, for a `send_proxy_v2` server, writes the PROXY header before
/// anything else (a failure there is a connect failure: no request byte was sent).
async fn connect_fresh(addr: SocketAddr, proxy_header: Option<&[u8]>) -> io::Result<TcpStream> {
    let mut stream = connect_once(addr).await?;
    if let Some(h) = proxy_header {
        tokio::io::AsyncWriteExt::write_all(&mut stream, h).await?;
    }
    Ok(stream)
}

/// Connects to `first` (or a pooled connection to it), retrying per the listen's policy.
/// `direct` is true when the server was chosen by a valid persistence cookie. `client` is
/// (client address, address it connected to), for servers with `send_proxy_v2`; their
/// connections are never taken from (nor returned to) the shared pool, so one client's
/// header never carries another client's requests (HAProxy marks them private likewise).
pub async fn connect(
    listen: &ListenRt,
    first: usize,
    mut direct: bool,
    allow_pooled: bool,
    client: (SocketAddr, SocketAddr),
) -> Result<Connected, Exhausted> {
    let settings = &listen.settings;
    let mut server = first;
    let mut retries = 0u32;
    let mut redispatched = false;
    let mut wait = Duration::ZERO;
    loop {
        let Some(srv) = listen.servers.get(server) else {
            return Err(Exhausted {
                server,
                retries,
                redispatched,
                wait,
                timed_out: false,
            });
        };
        // A PROXY v2 server's connections carry one client each and are never pooled, so
        // there is nothing to wait for: they open unpaced.
        let mut opening = None;
        if !srv.send_proxy_v2 {
            let max_wait = settings.timeout_connect.min(OPENING_WAIT_MAX);
            let (got, waited) = srv.pool.take_or_open(allow_pooled, max_wait).await;
            wait += waited;
            match got {
                Got::Pooled(stream) => {
                    return Ok(Connected {
                        stream,
                        server,
                        reused: true,
                        retries,
                        redispatched,
                        wait,
                        connect: Duration::ZERO,
                        opening: None,
                    });
                }
                Got::Open(slot) => opening = slot,
            }
        }
        let t0 = super::clock::Tick::now();
        let header = srv.send_proxy_v2.then(|| {
            let mut v = Vec::with_capacity(52);
            super::proxy_protocol::write_v2(&mut v, client.0, client.1);
            v
        });
        let result = tokio::time::timeout(
            settings.timeout_connect,
            connect_fresh(srv.addr, header.as_deref()),
        )
        .await;
        let timed_out = match result {
            Ok(Ok(stream)) => {
                if listen.health.observe_layer4 {
                    crate::health::observe_connect(listen, srv, true);
                }
                return Ok(Connected {
                    stream,
                    server,
                    reused: false,
                    retries,
                    redispatched,
                    wait,
                    connect: t0.elapsed(),
                    opening,
                });
            }
            Ok(Err(_)) => false,
            Err(_) => true,
        };
        if listen.health.observe_layer4 {
            crate::health::observe_connect(listen, srv, false);
        }
        if retries >= settings.retries {
            return Err(Exhausted {
                server,
                retries,
                redispatched,
                wait,
                timed_out,
            });
        }
        retries += 1;
        let last_retry = retries == settings.retries;
        let still_usable = if direct {
            srv.live.eligible_cookie()
        } else {
            srv.live.eligible_rr()
        };
        let may_redispatch = settings.redispatch && (!direct || last_retry || !still_usable);
        let other = if may_redispatch {
            listen
                .balancer
                .pick(&listen.shared, &listen.servers, Some(server))
        } else {
            None
        };
        match other {
            Some(next) => {
                srv.live.counters.wredis.fetch_add(1, Ordering::Relaxed);
                listen.shared.backend.wredis.fetch_add(1, Ordering::Relaxed);
                if let Some(n) = listen.servers.get(next) {
                    n.live.counters.lbtot.fetch_add(1, Ordering::Relaxed);
                }
                server = next;
                redispatched = true;
                direct = false;
            }
            None => {
                srv.live.counters.wretr.fetch_add(1, Ordering::Relaxed);
                listen.shared.backend.wretr.fetch_add(1, Ordering::Relaxed);
                if !timed_out {
                    let pause = settings.timeout_connect.min(TURNAROUND_MAX);
                    tokio::time::sleep(pause).await;
                    wait += pause;
                }
            }
        }
    }
}
