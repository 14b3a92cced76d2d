//! Opening new connections to a server is paced (`proxy::pool`'s module doc): at most
//! `OPENING_MAX` (8) new connections may wait for the server's first answer at once; the other
//! requests wait for a connection to come back or a slot to free, and open one anyway after
//! `min(timeout_connect, 1 s)`. On the real binary against a real TCP backend that, like a busy
//! node.js process, answers none of the connections it is given until it has them all.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::*;

/// Requests sent at once, each on its own client connection.
const CLIENTS: usize = 20;
/// `proxy::pool::OPENING_MAX`.
const OPENING_MAX: usize = 8;

/// What the backend saw: when each connection arrived (after the first), and whether all
/// `CLIENTS` arrived before it gave up waiting and answered what it had.
struct Seen {
    arrivals: Vec<Duration>,
    all_arrived: bool,
    /// The answered connections, open (keep-alive) until the test ends.
    _conns: Vec<std::net::TcpStream>,
}

/// Accepts connections without answering until it holds `CLIENTS` of them (or 6 s pass), then
/// answers one request on each with `200 ok`.
fn backend(l: TcpListener) -> Seen {
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
    Seen {
        arrivals,
        all_arrived,
        _conns: conns,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn new_connections_to_a_server_that_has_not_answered_are_paced_never_blocked() {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind backend");
    let backend_addr = l.local_addr().expect("addr");
    let seen = std::thread::spawn(move || backend(l));

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = format!(
        "[global]\nworkers = 1\n[log]\naccess = \"off\"\n[defaults]\ntimeout_connect = \"10s\"\ntimeout_server = \"30s\"\n[[listen]]\nname = \"webapp\"\nbind = [\"127.0.0.1:{port}\"]\n[[listen.server]]\nname = \"app1\"\naddress = \"{backend_addr}\"\ncheck = false\n"
    );
    let path = write_file(dir.path(), "e.toml", &cfg);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let _d = spawn_daemon(&path, addr).await;

    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        clients.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.expect("connect");
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
    // Paced: eight at once, then nothing until the waits ran out (1 s after the requests came).
    let a = &seen.arrivals;
    assert!(
        a[OPENING_MAX] - a[OPENING_MAX - 1] >= Duration::from_millis(500),
        "connection {} came {:?} after connection {}: {a:?}",
        OPENING_MAX + 1,
        a[OPENING_MAX] - a[OPENING_MAX - 1],
        OPENING_MAX
    );
}
