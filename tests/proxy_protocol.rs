//! PROXY protocol on real sockets: `accept_proxy` (v1, v2, LOCAL, TLVs, over TLS; garbage,
//! untrusted sources and silence closed and counted; the real client drives X-Forwarded-For,
//! `except` and the log), `send_proxy_v2` towards a backend (a header per client connection,
//! never pooled across clients; checks send LOCAL), and both directions against HAProxy 2.6.

mod common;
mod common_tls;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{free_port, haproxy_available, seed_config, Backend, Proxy};
use edgelb::proxy::proxy_protocol::{write_v2, V2_LOCAL};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

struct Setup {
    p: Proxy,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

async fn start(backends: &[&Backend], from: &str, extra: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let cfg = seed_config(
        backends,
        &format!("accept_proxy = true\naccept_proxy_from = {from}\n{extra}"),
        "",
    )
    .replace(
        "access = \"off\"",
        &format!("access = \"{}\"", log.display()),
    );
    Setup {
        p: Proxy::start(&cfg).await,
        log,
        _dir: dir,
    }
}

async fn send(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    common::raw_exchange(addr, bytes, Duration::from_secs(3)).await
}

const REQ: &[u8] = b"GET /pp HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

async fn log_lines(path: &std::path::Path, n: usize) -> Vec<String> {
    for _ in 0..100 {
        let t = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = t.lines().map(String::from).collect();
        if lines.len() >= n {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    panic!("fewer than {n} log lines");
}

#[tokio::test]
async fn v1_and_v2_headers_give_the_real_client_to_xff_and_the_log() {
    let a = Backend::start("a").await;
    let s = start(&[&a], "[\"127.0.0.0/8\"]", "").await;
    let v1 = [
        b"PROXY TCP4 203.0.113.7 198.51.100.1 5555 80\r\n".as_slice(),
        REQ,
    ]
    .concat();
    let out = send(s.p.addr, &v1).await;
    assert!(
        out.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    assert!(a
        .last_request()
        .contains("x-forwarded-for: 203.0.113.7\r\n"));

    let mut v2 = Vec::new();
    write_v2(&mut v2, sa("[2001:db8::9]:4444"), sa("[2001:db8::1]:443"));
    // A TLV (AWS's VPC endpoint id type 0xEA) after the addresses is skipped.
    v2[15] += 7;
    v2.extend_from_slice(&[0xea, 0, 4, b'v', b'p', b'c', b'e']);
    v2.extend_from_slice(REQ);
    let out = send(s.p.addr, &v2).await;
    assert!(out.starts_with(b"HTTP/1.1 200"));
    assert!(a
        .last_request()
        .contains("x-forwarded-for: 2001:db8::9\r\n"));

    // LOCAL (the load balancer's own health check): the TCP peer stands.
    let out = send(s.p.addr, &[V2_LOCAL.as_slice(), REQ].concat()).await;
    assert!(out.starts_with(b"HTTP/1.1 200"));
    assert!(a.last_request().contains("x-forwarded-for: 127.0.0.1\r\n"));
    let lines = log_lines(&s.log, 3).await;
    assert!(
        lines.iter().any(|l| l.starts_with("203.0.113.7:5555 ")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("2001:db8::9:4444 ")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("127.0.0.1:")),
        "{lines:?}"
    );
}

#[tokio::test]
async fn the_real_client_decides_forwardfor_except() {
    let a = Backend::start("a").await;
    // seed_config has `forwardfor except 10.0.0.0/8`.
    let s = start(&[&a], "[\"127.0.0.1/32\"]", "").await;
    let v1 = [b"PROXY TCP4 10.1.2.3 10.0.0.1 1000 80\r\n".as_slice(), REQ].concat();
    let out = send(s.p.addr, &v1).await;
    assert!(out.starts_with(b"HTTP/1.1 200"));
    assert!(
        !a.last_request().contains("x-forwarded-for"),
        "{}",
        a.last_request()
    );
}

#[tokio::test]
async fn garbage_missing_or_untrusted_headers_close_the_connection_and_are_counted() {
    let a = Backend::start("a").await;
    let s = start(&[&a], "[\"127.0.0.1/32\"]", "timeout_client = \"400ms\"").await;
    for bad in [
        REQ.to_vec(),
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\nGET / HTTP/1.1\r\n\r\n".to_vec(),
        [b"PROXY TCP4 ".as_slice(), &[b'9'; 200]].concat(),
        {
            let mut v = V2_LOCAL.to_vec();
            v[14] = 0x7f; // 32 KiB announced
            v
        },
    ] {
        let out = send(s.p.addr, &bad).await;
        assert!(
            out.is_empty(),
            "nothing is answered: {}",
            String::from_utf8_lossy(&out)
        );
    }
    // Silence: closed at timeout_client.
    let mut c = TcpStream::connect(s.p.addr).await.unwrap();
    c.write_all(b"PROXY TCP4 1.2.3.4").await.unwrap();
    let mut buf = [0u8; 8];
    let r = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf)).await;
    assert!(matches!(r, Ok(Ok(0)) | Ok(Err(_))), "{r:?}");
    let snap = s.p.app.rt.load();
    let sh = &snap.listens[0].shared;
    assert_eq!(sh.proxy_header_errors.load(Ordering::Relaxed), 5);
    assert_eq!(a.connections.load(Ordering::SeqCst), 0);
    assert_eq!(sh.frontend.scur.load(Ordering::Relaxed), 0);

    // From 127.0.0.2, outside accept_proxy_from: closed before reading anything.
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(sa("127.0.0.2:0")).unwrap();
    let mut c = sock.connect(s.p.addr).await.unwrap();
    let _ = c
        .write_all(&[b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n".as_slice(), REQ].concat())
        .await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), c.read_to_end(&mut out)).await;
    assert!(out.is_empty());
    assert_eq!(sh.proxy_untrusted.load(Ordering::Relaxed), 1);
    assert_eq!(a.connections.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn proxy_header_then_tls_handshake() {
    let a = Backend::start("a").await;
    let ca = common_tls::Ca::new();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = common_tls::write_leaf(dir.path(), "www", &ca.issue(&["www.example.com"], 3));
    let port = free_port();
    let s = start(
        &[&a],
        "[\"127.0.0.0/8\"]",
        &format!(
            "[listen.tls]\nbind = [\"127.0.0.1:{port}\"]\ncerts = [{{ cert = \"{}\", key = \"{}\" }}]\n",
            cert.display(),
            key.display()
        ),
    )
    .await;
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut v2 = Vec::new();
    write_v2(&mut v2, sa("198.51.100.77:1234"), sa("192.0.2.1:443"));
    tcp.write_all(&v2).await.unwrap();
    let cfg = common_tls::client_config(&ca, &["http/1.1"]);
    let name = rustls::pki_types::ServerName::try_from("www.example.com").unwrap();
    let mut t = tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
        .unwrap();
    let (head, _) = common_tls::get(&mut t, "/", "").await.unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(a
        .last_request()
        .contains("x-forwarded-for: 198.51.100.77\r\n"));
    drop(s);
}

/// Bytes received on each backend connection, in accept order.
type Recorded = Arc<Mutex<Vec<Arc<Mutex<Vec<u8>>>>>>;

/// A backend that records every connection's bytes and answers each request (by its blank
/// line) with a tiny keep-alive 200, after an optional PROXY header.
struct RawBackend {
    addr: SocketAddr,
    conns: Recorded,
}

async fn raw_backend() -> RawBackend {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let conns: Recorded = Arc::default();
    let c2 = conns.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let rec = Arc::new(Mutex::new(Vec::new()));
            c2.lock().unwrap().push(rec.clone());
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let mut answered = 0;
                loop {
                    let n = match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    let total = {
                        let mut r = rec.lock().unwrap();
                        r.extend_from_slice(&buf[..n]);
                        r.windows(4).filter(|w| w == b"\r\n\r\n").count()
                    };
                    while answered < total {
                        answered += 1;
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                            .await;
                    }
                }
            });
        }
    });
    RawBackend { addr, conns }
}

#[tokio::test]
async fn send_proxy_v2_opens_each_clients_connection_with_its_header_and_never_pools_it() {
    let b = raw_backend().await;
    let cfg = common::seed_config_addrs(&[("s", b.addr)], "", "")
        .replace("check = false\n", "check = false\nsend_proxy_v2 = true\n");
    let p = Proxy::start(&cfg).await;
    let bind = |ip: &str| {
        let s = TcpSocket::new_v4().unwrap();
        s.bind(sa(&format!("{ip}:0"))).unwrap();
        s
    };
    // Two requests from client 127.0.0.2 (keep-alive), then one from 127.0.0.3.
    let mut c1 = bind("127.0.0.2").connect(p.addr).await.unwrap();
    let c1_addr = c1.local_addr().unwrap();
    for _ in 0..2 {
        c1.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 512];
        let n = c1.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    }
    let mut c2 = bind("127.0.0.3").connect(p.addr).await.unwrap();
    let c2_addr = c2.local_addr().unwrap();
    c2.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let n = c2.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));

    let conns: Vec<Vec<u8>> = b
        .conns
        .lock()
        .unwrap()
        .iter()
        .map(|c| c.lock().unwrap().clone())
        .collect();
    assert_eq!(
        conns.len(),
        3,
        "one backend connection per request, none shared"
    );
    let header_for = |client: SocketAddr| {
        let mut h = Vec::new();
        write_v2(&mut h, client, p.addr);
        h
    };
    let h1 = header_for(c1_addr);
    let h2 = header_for(c2_addr);
    assert_eq!(conns.iter().filter(|c| c.starts_with(&h1)).count(), 2);
    assert_eq!(conns.iter().filter(|c| c.starts_with(&h2)).count(), 1);
    for c in &conns {
        let rest = &c[h1.len()..];
        assert!(rest.starts_with(b"GET / HTTP/1.1\r\n"), "{rest:?}");
    }
}

#[tokio::test]
async fn health_checks_of_a_send_proxy_server_start_with_a_local_header() {
    let b = raw_backend().await;
    let cfg = common::seed_config_addrs(
        &[("s", b.addr)],
        "health = { inter = \"100ms\", http = { path = \"/health\" } }",
        "",
    )
    .replace("check = false\n", "send_proxy_v2 = true\n");
    let _p = Proxy::start(&cfg).await;
    for _ in 0..100 {
        if !b.conns.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let first = b.conns.lock().unwrap()[0].lock().unwrap().clone();
    assert!(first.starts_with(&V2_LOCAL), "{first:?}");
    assert!(
        first[16..].starts_with(b"GET /health HTTP/1.1\r\n"),
        "{first:?}"
    );
}

fn spawn_haproxy_logging(
    dir: &std::path::Path,
    cfg: &str,
) -> (common::Haproxy, std::path::PathBuf) {
    let path = common::write_file(dir, "haproxy.cfg", cfg);
    let out = dir.join("haproxy.out");
    let child = std::process::Command::new("haproxy")
        .arg("-f")
        .arg(&path)
        .arg("-db")
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start haproxy");
    (common::Haproxy(child), out)
}

async fn wait_port(port: u16) {
    for _ in 0..100 {
        if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// HAProxy `server ... send-proxy-v2` in front of edgelb's `accept_proxy`, and edgelb's
/// `send_proxy_v2` in front of a HAProxy `bind ... accept-proxy`: each side logs the client
/// that connected to the first proxy (127.0.0.2), not the proxy in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_v2_both_ways_with_haproxy_logs_the_original_client() {
    if !haproxy_available() {
        return;
    }
    let a = Backend::start("a").await;
    let dir = tempfile::tempdir().unwrap();

    // HAProxy -> edgelb
    let s = start(&[&a], "[\"127.0.0.1/32\"]", "").await;
    let hport = free_port();
    let cfg = format!(
        "global\n  log stdout format raw local0\ndefaults\n  mode http\n  log global\n  option httplog\n  \
         timeout connect 5s\n  timeout client 5s\n  timeout server 5s\n\
         frontend f\n  bind 127.0.0.1:{hport}\n  default_backend b\n\
         backend b\n  server e {} send-proxy-v2\n",
        s.p.addr
    );
    let (_h, _) = spawn_haproxy_logging(dir.path(), &cfg);
    wait_port(hport).await;
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(sa("127.0.0.2:0")).unwrap();
    let mut c = sock
        .connect(sa(&format!("127.0.0.1:{hport}")))
        .await
        .unwrap();
    let client = c.local_addr().unwrap();
    c.write_all(REQ).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), c.read_to_end(&mut out)).await;
    assert!(
        out.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    assert!(a.last_request().contains("x-forwarded-for: 127.0.0.2\r\n"));
    let lines = log_lines(&s.log, 1).await;
    assert!(lines[0].starts_with(&format!("{client} ")), "{lines:?}");

    // edgelb -> HAProxy
    let dir2 = tempfile::tempdir().unwrap();
    let hport2 = free_port();
    let cfg2 = format!(
        "global\n  log stdout format raw local0\ndefaults\n  mode http\n  log global\n  option httplog\n  \
         timeout connect 5s\n  timeout client 5s\n  timeout server 5s\n\
         frontend f\n  bind 127.0.0.1:{hport2} accept-proxy\n  default_backend b\n\
         backend b\n  server a {}\n",
        a.addr
    );
    let (_h2, hlog) = spawn_haproxy_logging(dir2.path(), &cfg2);
    wait_port(hport2).await;
    let ecfg = common::seed_config_addrs(&[("h", sa(&format!("127.0.0.1:{hport2}")))], "", "")
        .replace("check = false\n", "check = false\nsend_proxy_v2 = true\n");
    let e = Proxy::start(&ecfg).await;
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(sa("127.0.0.2:0")).unwrap();
    let mut c = sock.connect(e.addr).await.unwrap();
    let client = c.local_addr().unwrap();
    c.write_all(REQ).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), c.read_to_end(&mut out)).await;
    assert!(
        out.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    let mut text = String::new();
    for _ in 0..100 {
        text = std::fs::read_to_string(&hlog).unwrap_or_default();
        if text.contains("GET /pp") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let line = text.lines().find(|l| l.contains("GET /pp")).unwrap_or("");
    assert!(
        line.starts_with(&format!("{client} ")),
        "HAProxy logged: {text}"
    );
}
