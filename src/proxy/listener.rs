//! Listening sockets and accept loops.
//!
//! `Listeners::sync` makes the set of bound sockets match a snapshot: sockets for addresses the
//! new snapshot still uses are kept as they are (never re-bound, so no connection is refused
//! during a reload), new ones are bound before old ones are dropped. Each accepted connection
//! finds its listen in the current snapshot by the address it came in on.
//!
//! The process-wide `maxconn` is a semaphore taken before `accept`: at the limit edgelb simply
//! stops accepting and new connections wait in the kernel backlog, as HAProxy does. Accept errors
//! (EMFILE, ENFILE, ENOBUFS) back off instead of spinning.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

use super::handshake;
use super::idle::Stop;
use super::session::{self, Conn, ConnSlot};
use crate::config::Proto;
use crate::runtime::{Runtime, Snapshot};

/// Accept backlog of every listening socket.
const BACKLOG: i32 = 4096;
/// Pause after an accept error such as EMFILE.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Binds a listening socket the way HAProxy does (SO_REUSEADDR; IPv6 sockets v6-only so `[::]`
/// and `0.0.0.0` can both be bound).
pub fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    bind_with(addr, false)
}

/// One socket per proxy worker on `addr`, all in one `SO_REUSEPORT` group (the kernel spreads
/// new connections over them); without workers, one plain socket. The first socket fixes the
/// port when `addr` asks for port 0.
pub fn bind_group(addr: SocketAddr) -> std::io::Result<Vec<std::net::TcpListener>> {
    let n = super::workers::handles().map(|h| h.len()).unwrap_or(0);
    if n <= 1 {
        return Ok(vec![bind(addr)?]);
    }
    let first = bind_with(addr, true)?;
    let actual = first.local_addr()?;
    let mut all = vec![first];
    for _ in 1..n {
        all.push(bind_with(actual, true)?);
    }
    Ok(all)
}

fn bind_with(addr: SocketAddr, reuse_port: bool) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    if reuse_port {
        s.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_nodelay(true)?;
    s.bind(&addr.into())?;
    s.listen(BACKLOG)?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

struct Bound {
    actual: SocketAddr,
    stop: watch::Sender<bool>,
    /// One accept loop per worker (one in all without workers).
    tasks: Vec<JoinHandle<()>>,
}

/// Sockets bound for a reload, not yet accepting: one per worker per address.
pub type Fresh = Vec<(SocketAddr, Vec<std::net::TcpListener>)>;

/// The set of listening sockets and the global connection limit.
pub struct Listeners {
    rt: Arc<Runtime>,
    bound: HashMap<SocketAddr, Bound>,
    maxconn: Arc<Semaphore>,
    maxconn_now: u32,
    /// Flips to true on graceful stop: idle keep-alive connections close at once.
    pub shutdown: Stop,
}

impl Listeners {
    pub fn new(rt: Arc<Runtime>) -> Self {
        let maxconn_now = rt.load().global.maxconn;
        Self {
            rt,
            bound: HashMap::new(),
            maxconn: Arc::new(Semaphore::new(maxconn_now as usize)),
            maxconn_now,
            shutdown: Stop::new(),
        }
    }

    /// (configured, actually bound) addresses; they differ when the config asked for port 0.
    pub fn addresses(&self) -> Vec<(SocketAddr, SocketAddr)> {
        self.bound.iter().map(|(k, b)| (*k, b.actual)).collect()
    }

    /// Binds what `snap` needs that is not bound yet, then drops what it no longer needs.
    /// On a bind error nothing is dropped and the error is returned (the caller keeps the old
    /// snapshot).
    pub fn bind_new(&mut self, snap: &Snapshot) -> std::io::Result<Fresh> {
        let mut fresh = Vec::new();
        for l in &snap.listens {
            for &addr in &l.binds {
                if self.bound.contains_key(&addr) || fresh.iter().any(|(a, _)| *a == addr) {
                    continue;
                }
                let group = bind_group(addr).map_err(|e| {
                    std::io::Error::new(
                        e.kind(),
                        format!("cannot bind {addr} for listen {:?}: {e}", l.name),
                    )
                })?;
                fresh.push((addr, group));
            }
        }
        Ok(fresh)
    }

    /// Starts accept loops for freshly bound sockets and stops the ones `snap` doesn't use.
    pub fn commit(&mut self, snap: &Snapshot, fresh: Fresh) {
        for (addr, group) in fresh {
            let actual = group
                .first()
                .and_then(|l| l.local_addr().ok())
                .unwrap_or(addr);
            let (stop, stop_rx) = watch::channel(false);
            let workers = super::workers::handles().unwrap_or(&[]);
            let mut tasks = Vec::with_capacity(group.len());
            for (i, listener) in group.into_iter().enumerate() {
                let run = accept_loop(
                    self.rt.clone(),
                    listener,
                    addr,
                    self.maxconn.clone(),
                    stop_rx.clone(),
                    self.shutdown.clone(),
                );
                // Each worker's socket is registered with, and accepted on, that worker's own
                // runtime; without workers, the caller's.
                tasks.push(match workers.get(i) {
                    Some(h) => h.spawn(run),
                    None => tokio::spawn(run),
                });
            }
            self.bound.insert(
                addr,
                Bound {
                    actual,
                    stop,
                    tasks,
                },
            );
        }
        let wanted: Vec<SocketAddr> = snap.listens.iter().flat_map(|l| l.binds.clone()).collect();
        let gone: Vec<SocketAddr> = self
            .bound
            .keys()
            .filter(|a| !wanted.contains(a))
            .copied()
            .collect();
        for addr in gone {
            if let Some(b) = self.bound.remove(&addr) {
                let _ = b.stop.send(true);
            }
        }
        let want = snap.global.maxconn;
        if want > self.maxconn_now {
            self.maxconn.add_permits((want - self.maxconn_now) as usize);
            self.maxconn_now = want;
        } else if want < self.maxconn_now {
            let shrink = self.maxconn.clone();
            let n = self.maxconn_now - want;
            self.maxconn_now = want;
            tokio::spawn(async move {
                if let Ok(p) = shrink.acquire_many(n).await {
                    p.forget();
                }
            });
        }
    }

    /// Binds and starts everything `snap` needs.
    pub fn sync(&mut self, snap: &Snapshot) -> std::io::Result<()> {
        let fresh = self.bind_new(snap)?;
        self.commit(snap, fresh);
        Ok(())
    }

    /// Stops accepting on every socket and tells idle keep-alive connections to close.
    pub fn stop_accepting(&mut self) {
        for (_, b) in self.bound.drain() {
            let _ = b.stop.send(true);
            for t in b.tasks {
                t.abort();
            }
        }
        self.shutdown.stop();
    }
}

/// Connections accepted in a row before the accept loop yields to the connections it serves
/// (an accept burst must not delay established connections' requests).
const ACCEPT_BATCH: u32 = 16;

async fn accept_loop(
    rt: Arc<Runtime>,
    listener: std::net::TcpListener,
    addr: SocketAddr,
    maxconn: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
    shutdown: Stop,
) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(listener = %addr, error = %e, "cannot register the listening socket");
            return;
        }
    };
    let bound = listener.local_addr().unwrap_or(addr);
    let mut in_a_row = 0u32;
    loop {
        in_a_row += 1;
        if in_a_row > ACCEPT_BATCH {
            in_a_row = 0;
            tokio::task::yield_now().await;
        }
        let permit = tokio::select! {
            p = maxconn.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = stop.wait_for(|s| *s) => return,
        };
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        let (stream, peer): (TcpStream, SocketAddr) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(listener = %addr, error = %e, "accept failed; backing off");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let snap = rt.load();
        let Some(listen) = snap
            .listens
            .iter()
            .find(|l| l.binds.contains(&addr))
            .cloned()
        else {
            continue;
        };
        // Per-listen maxconn: past the limit the connection waits for a slot instead of being
        // served (HAProxy queues it in the listener); it is rare, so a short poll is enough.
        let limit = listen.settings.maxconn as u64;
        let waiting_since = std::time::Instant::now();
        let mut gave_up = false;
        while listen.shared.frontend.scur.load(Ordering::Relaxed) >= limit {
            if *stop.borrow() || waiting_since.elapsed() > listen.settings.timeout_client {
                gave_up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if gave_up {
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let slot = ConnSlot::take(rt.clone(), listen.clone(), permit);
        // The exact local address only when a backend must be told (PROXY v2 towards it).
        let local = if listen.needs_local_addr {
            stream.local_addr().unwrap_or(bound)
        } else {
            bound
        };
        let conn = Conn {
            rt: rt.clone(),
            listen_name: listen.name.clone(),
            peer,
            local,
            secure: false,
            shutdown: shutdown.clone(),
        };
        if handshake::needed(&listen, &addr) {
            handshake::spawn(listen, addr, stream, conn, slot);
        } else {
            match listen.proto {
                Proto::H1 => session::spawn(conn, stream, slot),
                Proto::H2 => super::h2::spawn(conn, stream, slot),
            }
        }
    }
}
