//! Last words: a node going down on a panic says "leaving" first, so its peers take its EIPs at
//! once instead of after deadtime (or after its witness turns stale, when nothing answers).
//!
//! After every heartbeat the drive task prepares a sealed `leaving` datagram (`prepare`): same
//! payload, `leaving = true`, a sequence number ahead of the heartbeats it may still send, so
//! peers accept it as new. A panic hook (`install`) sends it, synchronously, over a plain std
//! socket to every heartbeat address of every peer, when the panic is fatal to membership:
//!
//! * in the cluster drive task (polled inside `Fatal`): the brain is gone, so after the last
//!   words the process exits with status 70 (EX_SOFTWARE) and the service manager restarts it;
//!   its EIP comes home after `failback_hold`, like after any restart;
//! * on the main thread (the process is unwinding to its end).
//!
//! A panic in a connection task is caught and counted by the proxy and never gets here; one in
//! another side task (stats, health) leaves the process and its membership running, so it says
//! nothing. A kill -9, an abort or a kernel crash cannot say anything: port-unreachable, EC2's
//! instance state and the witness cover those.

use std::cell::Cell;
use std::future::Future;
use std::net::{SocketAddr, UdpSocket};
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

/// How far ahead of the next heartbeat the prepared datagram's sequence number is.
pub const SEQ_AHEAD: u64 = 1 << 20;
/// Copies of the last words sent to each address (UDP may drop one).
const BURST: usize = 3;
/// Exit status after a panic in the drive task (sysexits EX_SOFTWARE).
pub const EXIT_STATUS: i32 = 70;

struct Prepared {
    datagram: Vec<u8>,
    targets: Vec<SocketAddr>,
    socket: UdpSocket,
}

static LAST: Mutex<Option<Prepared>> = Mutex::new(None);

thread_local! {
    /// Set while the drive task is being polled on this thread.
    static IN_DRIVE: Cell<bool> = const { Cell::new(false) };
}

/// Replaces the prepared last words (called after every heartbeat). `local` is the heartbeat
/// socket's address (the words leave from its IP, any port).
pub fn prepare(datagram: Vec<u8>, targets: Vec<SocketAddr>, local: SocketAddr) {
    let Ok(mut last) = LAST.lock() else {
        return;
    };
    match last.as_mut() {
        Some(p) => {
            p.datagram = datagram;
            p.targets = targets;
        }
        None => match UdpSocket::bind(SocketAddr::new(local.ip(), 0)) {
            Ok(socket) => {
                *last = Some(Prepared {
                    datagram,
                    targets,
                    socket,
                })
            }
            Err(e) => tracing::warn!("cluster: no socket for last words: {e}"),
        },
    }
}

/// Forgets the prepared words (after a graceful leave: nothing more to say).
pub fn clear() {
    if let Ok(mut last) = LAST.lock() {
        *last = None;
    }
}

/// Sends the prepared last words, if any; returns how many datagrams went out. Never blocks on
/// a lock another thread holds (a panic may happen anywhere).
pub fn say() -> usize {
    let Ok(last) = LAST.try_lock() else {
        return 0;
    };
    let Some(p) = last.as_ref() else {
        return 0;
    };
    let mut sent = 0;
    for _ in 0..BURST {
        for t in &p.targets {
            if p.socket.send_to(&p.datagram, t).is_ok() {
                sent += 1;
            }
        }
    }
    sent
}

/// Installs the panic hook (once; it chains to the hook installed before it).
pub fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_drive = IN_DRIVE.with(Cell::get);
            let on_main = std::thread::current().name() == Some("main");
            if !(in_drive || on_main) {
                previous(info);
                return;
            }
            let sent = say();
            previous(info);
            if in_drive {
                eprintln!(
                    "edgelb: the cluster task panicked; said leaving ({sent} datagrams); \
                     exiting with status {EXIT_STATUS}"
                );
                std::process::exit(EXIT_STATUS);
            }
        }));
    });
}

/// Polls the drive task with `IN_DRIVE` set, so the hook knows a panic there is fatal.
pub struct Fatal<F>(pub Pin<Box<F>>);

impl<F: Future> Future for Fatal<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        IN_DRIVE.with(|c| c.set(true));
        let r = self.0.as_mut().poll(cx);
        IN_DRIVE.with(|c| c.set(false));
        r
    }
}
