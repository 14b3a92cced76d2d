//! Opening new connections to a server is paced (`proxy::pool`'s module doc): at most
//! `OPENING_MAX` (8) new connections wait for their first answer at once, and the other
//! requests wait for a connection to come back, for as long as connections keep coming back,
//! and at most `min(timeout_connect, 1 s)`. On the real binary against real TCP backends:
//! - one that, like a busy node.js process, takes new connections late but answers on the ones
//!   it has at once: a burst is served on the connections already answering;
//! - one whose long polls hold every connection: quick requests have nothing to wait for and
//!   open at once;
//! - one not measured yet, that answers none of its connections until it has them all: eight
//!   at once, the rest after `OPENING_COST_MIN` (50 ms), and every request answered;
//! - one whose handler takes 400 ms on any connection, new or reused, as a node.js app waiting
//!   on its database does: a burst, cold or after a warm-up, opens its connections at once
//!   (within `OPENING_COST_MIN`), as through HAProxy, instead of queueing behind eight.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::*;

/// `proxy::pool::OPENING_MAX`.
const OPENING_MAX: usize = 8;
/// Requests sent at once to the holding backend, each on its own client connection.
const CLIENTS: usize = 20;

/// When each connection reached a test backend.
type Arrivals = Arc<std::sync::Mutex<Vec<Instant>>>;

/// A keep-alive backend on its own threads: the first request on each connection is answered
/// `first_delay` late (the connection's wait in a busy server's accept queue), every request
/// `each_delay` late (a handler waiting on its database), one for `/poll` 3 s late (a long
/// poll). Returns its address and when each connection arrived.
fn backend_with(first_delay: Duration, each_delay: Duration) -> (SocketAddr, Arrivals) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind backend");
    let addr = l.local_addr().expect("addr");
    let arrivals = Arrivals::default();
    let seen = arrivals.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            seen.lock().expect("arrivals").push(Instant::now());
            std::thread::spawn(move || {
                let mut first = true;
                let mut buf = Vec::new();
                let mut b = [0u8; 4096];
                loop {
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut b) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&b[..n]),
                        }
                    }
                    let poll = buf.starts_with(b"GET /poll");
                    buf.clear();
                    if first {
                        std::thread::sleep(first_delay);
                        first = false;
                    }
                    std::thread::sleep(each_delay);
                    if poll {
                        std::thread::sleep(Duration::from_secs(3));
                    }
                    if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (addr, arrivals)
}

/// `backend_with` answering at once but for each connection's first request.
fn backend(first_delay: Duration) -> (SocketAddr, Arrivals) {
    backend_with(first_delay, Duration::ZERO)
}

/// The real binary, one worker, in front of `backend`.
async fn edgelb(dir: &std::path::Path, backend: SocketAddr) -> (Daemon, SocketAddr) {
    let port = free_port();
    let cfg = format!(
        "[global]\nworkers = 1\n[log]\naccess = \"off\"\n[defaults]\ntimeout_connect = \"10s\"\ntimeout_server = \"30s\"\n[[listen]]\nname = \"webapp\"\nbind = [\"127.0.0.1:{port}\"]\n[[listen.server]]\nname = \"app1\"\naddress = \"{backend}\"\ncheck = false\n"
    );
    let path = write_file(dir, "e.toml", &cfg);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    (spawn_daemon(&path, addr).await, addr)
}

/// `clients` client connections at once, each sending `each` requests for `path` one after
/// the other; every answer must be a 200. Returns the longest a client took.
async fn burst_to(addr: SocketAddr, path: &'static str, clients: usize, each: usize) -> Duration {
    let mut tasks = Vec::new();
    for c in 0..clients {
        tasks.push(tokio::spawn(async move {
            let t0 = Instant::now();
            let mut cl = Client::connect(addr).await;
            for i in 0..each {
                cl.send(format!("GET {path}/{c}/{i} HTTP/1.1\r\nHost: example\r\n\r\n").as_bytes())
                    .await;
                let r = cl.read(false).await.expect("a response");
                assert_eq!(r.status, 200, "client {c} request {i}: {:?}", r.text());
            }
            t0.elapsed()
        }));
    }
    let mut longest = Duration::ZERO;
    for t in tasks {
        longest = longest.max(t.await.expect("client task"));
    }
    longest
}

async fn burst(addr: SocketAddr, clients: usize, each: usize) -> Duration {
    burst_to(addr, "", clients, each).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_slow_to_take_new_connections_gets_the_burst_on_those_it_answers() {
    // New connections answered 300 ms late, reused ones at once.
    let (backend, arrivals) = backend(Duration::from_millis(300));
    let dir = tempfile::tempdir().expect("tempdir");
    let (_d, addr) = edgelb(dir.path(), backend).await;
    // One connection, answered late once and then at once: edgelb has measured the answers.
    burst(addr, 1, 5).await;
    assert_eq!(arrivals.lock().expect("arrivals").len(), 1);

    // 20 clients at once, 5 requests each. Opened freely, every client's first request would
    // open a connection (20) and wait 300 ms on it; paced, the one connection already
    // answering serves the requests that find no slot (it comes back every few hundred
    // microseconds), and only the slots open.
    burst(addr, 20, 5).await;
    let opened = arrivals.lock().expect("arrivals").len();
    assert!(
        opened <= 1 + OPENING_MAX + 4,
        "{opened} connections for 20 clients: opening was not paced"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn long_polls_holding_new_connections_do_not_hold_back_other_requests() {
    // Quick answers on any connection; `/poll` held 3 s.
    let (backend, _arrivals) = backend(Duration::ZERO);
    let dir = tempfile::tempdir().expect("tempdir");
    let (_d, addr) = edgelb(dir.path(), backend).await;
    burst(addr, 1, 5).await;

    // Ten long polls, each holding a connection (eight of them the opening slots: their first
    // answer is 3 s away), and no idle connection left.
    let polls = tokio::spawn(burst_to(addr, "/poll", 10, 1));
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Five quick requests: no connection comes back, so they open at once. A fixed wait kept
    // each of them the full second (`timeout_connect` 10 s).
    let quick = burst(addr, 5, 1).await;
    assert!(
        quick < Duration::from_millis(700),
        "quick requests took {quick:?} behind the long polls"
    );
    assert!(polls.await.expect("polls") >= Duration::from_secs(3));
}

/// What the backend saw: when each connection arrived (after the first), and whether all
/// `CLIENTS` arrived before it gave up waiting and answered what it had.
struct Held {
    arrivals: Vec<Duration>,
    all_arrived: bool,
    /// The answered connections, open (keep-alive) until the test ends.
    _conns: Vec<std::net::TcpStream>,
}

/// Accepts connections without answering until it holds `CLIENTS` of them (or 6 s pass), then
/// answers one request on each with `200 ok`: a busy node.js process, as edgelb first meets it.
fn holding_backend(l: TcpListener) -> Held {
    l.set_nonblocking(true).expect("nonblocking");
    let mut conns = Vec::new();
    let mut arrivals = Vec::new();
    let mut first: Option<Instant> = None;
    let give_up = Instant::now() + Duration::from_secs(20);
    let mut hold_until: Option<Instant> = None;
    while conns.len() < CLIENTS {
        match l.accept() {
            Ok((s, _)) => {
                let t0 = *first.get_or_insert_with(Instant::now);
                hold_until.get_or_insert(t0 + Duration::from_secs(6));
                arrivals.push(t0.elapsed());
                conns.push(s);
            }
            Err(_) => {
                let now = Instant::now();
                if now > give_up || hold_until.is_some_and(|h| now > h) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
    let all_arrived = conns.len() == CLIENTS;
    for s in &mut conns {
        s.set_nonblocking(false).expect("blocking");
        s.set_read_timeout(Some(Duration::from_secs(5))).ok();
        let mut head = Vec::new();
        let mut b = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut b) {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&b[..n]),
            }
        }
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    }
    Held {
        arrivals,
        all_arrived,
        _conns: conns,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_not_measured_yet_is_paced_never_blocked() {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind backend");
    let backend_addr = l.local_addr().expect("addr");
    let seen = std::thread::spawn(move || holding_backend(l));

    let dir = tempfile::tempdir().expect("tempdir");
    let (_d, addr) = edgelb(dir.path(), backend_addr).await;

    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        clients.push(tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let req = format!("GET /{i} HTTP/1.1\r\nHost: example\r\n\r\n");
            s.write_all(req.as_bytes()).await.expect("write");
            let mut got = Vec::new();
            let mut b = [0u8; 1024];
            let read = async {
                while !got.ends_with(b"\r\n\r\nok") {
                    match s.read(&mut b).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got.extend_from_slice(&b[..n]),
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(25), read).await;
            String::from_utf8_lossy(&got).into_owned()
        }));
    }
    let mut answers = Vec::new();
    for c in clients {
        answers.push(c.await.expect("client task"));
    }
    let seen = tokio::task::spawn_blocking(move || seen.join().expect("backend thread"))
        .await
        .expect("join");

    for (i, a) in answers.iter().enumerate() {
        assert!(
            a.starts_with("HTTP/1.1 200") && a.ends_with("ok"),
            "request {i}: {a:?}"
        );
    }
    // Never blocked: the requests beyond the first eight opened their connections after their
    // wait, while the backend still held the first eight unanswered.
    assert!(
        seen.all_arrived,
        "the backend got only {} connections before answering: {:?}",
        seen.arrivals.len(),
        seen.arrivals
    );
    // Paced: eight at once, then nothing until the waits ran out (`OPENING_COST_MIN`, 50 ms, after
    // the requests came), and then the rest at once, not after the 1 s bound.
    let a = &seen.arrivals;
    assert!(
        a[OPENING_MAX] - a[OPENING_MAX - 1] >= Duration::from_millis(35),
        "connection {} came {:?} after connection {}: {a:?}",
        OPENING_MAX + 1,
        a[OPENING_MAX] - a[OPENING_MAX - 1],
        OPENING_MAX
    );
    assert!(
        a[CLIENTS - 1] < Duration::from_millis(600),
        "the last connection came {:?} after the first: {a:?}",
        a[CLIENTS - 1]
    );
}

/// How many connections arrived within `within` after `t0`.
fn arrived(arrivals: &Arrivals, t0: Instant, within: Duration) -> usize {
    arrivals
        .lock()
        .expect("arrivals")
        .iter()
        .filter(|&&a| a >= t0 && a - t0 <= within)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_handler_gets_its_burst_on_new_connections_at_once() {
    let (backend, arrivals) = backend_with(Duration::ZERO, Duration::from_millis(400));
    let dir = tempfile::tempdir().expect("tempdir");
    let (_d, addr) = edgelb(dir.path(), backend).await;

    // Cold: nothing measured. Eight open at once, the rest after `OPENING_COST_MIN`, not
    // after the 1 s bound, nor as the first eight come back 400 ms later.
    let t0 = Instant::now();
    let cold = tokio::spawn(burst(addr, 30, 1));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let early = arrived(&arrivals, t0, Duration::from_millis(300));
    assert_eq!(
        early, 30,
        "{early} of 30 connections opened in the first 300 ms"
    );
    cold.await.expect("cold burst");

    // Warm, on a fresh edgelb: two clients, two requests each, measure the server (400 ms on
    // a new connection and on a reused one, a connection back every ~130-200 ms) and leave two
    // connections idle. Then a burst of 30: the queue ahead of most of them would take longer
    // to come back than an opening, so they open at once.
    drop(_d);
    let dir = tempfile::tempdir().expect("tempdir");
    let (_d, addr) = edgelb(dir.path(), backend).await;
    burst(addr, 2, 2).await;
    let t1 = Instant::now();
    let warm = tokio::spawn(burst(addr, 30, 1));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let early = arrived(&arrivals, t1, Duration::from_millis(300));
    // Two take the idle connections, eight the opening slots; paced as before this fix, none
    // of the other twenty opened before the 1 s bound.
    assert!(
        early >= 20,
        "{early} new connections in the first 300 ms for a burst of 30 on 2 idle ones"
    );
    warm.await.expect("warm burst");
}
