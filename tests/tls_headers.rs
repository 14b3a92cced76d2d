//! What TLS changes in requests and responses: `X-Forwarded-Proto`/`X-Forwarded-Port`
//! replacing the client's values, the https redirect of plain addresses (byte for byte against
//! HAProxy 2.6's `redirect scheme https`), and HSTS on TLS responses only.

mod common;
mod common_tls;

use std::net::SocketAddr;
use std::time::Duration;

use common::{free_port, haproxy_available, seed_config, start_haproxy_cfg, Backend, Proxy};
use common_tls::{client_config, connect, get, header, write_leaf, Ca};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One listen with a plain and a TLS address; `extra` goes into `[[listen]]`.
async fn mixed(
    backends: &[&Backend],
    extra: &str,
    tls_extra: &str,
) -> (Proxy, SocketAddr, SocketAddr, Ca, tempfile::TempDir) {
    let ca = Ca::new();
    let dir = tempfile::tempdir().unwrap();
    let leaf = ca.issue(&["www.example.com"], 7);
    let (cert, key) = write_leaf(dir.path(), "www", &leaf);
    let (plain, secure) = (free_port(), free_port());
    let mut cfg = seed_config(
        backends,
        &format!(
            "{extra}\n[listen.tls]\nbind = [\"127.0.0.1:{secure}\"]\n\
             certs = [{{ cert = \"{}\", key = \"{}\" }}]\n{tls_extra}\n",
            cert.display(),
            key.display()
        ),
        "",
    );
    cfg = cfg.replace(
        "bind = [\"127.0.0.1:0\"]",
        &format!("bind = [\"127.0.0.1:{plain}\"]"),
    );
    let p = Proxy::start(&cfg).await;
    (
        p,
        SocketAddr::from(([127, 0, 0, 1], plain)),
        SocketAddr::from(([127, 0, 0, 1], secure)),
        ca,
        dir,
    )
}

#[tokio::test]
async fn forwarded_proto_and_port_replace_what_the_client_sent() {
    let a = Backend::start("a").await;
    let (_p, plain, secure, ca, _d) =
        mixed(&[&a], "forwarded_proto = true\nforwarded_port = true", "").await;
    let spoof = "X-Forwarded-Proto: https\r\nX-Forwarded-Port: 1\r\nx-forwarded-proto: ftp\r\n";
    let r = common::fetch(plain, "/", spoof).await;
    assert_eq!(r.status, 200);
    let seen = a.last_request();
    assert_eq!(seen.matches("x-forwarded-proto").count(), 1, "{seen}");
    assert!(seen.contains("x-forwarded-proto: http\r\n"), "{seen}");
    assert!(
        seen.contains(&format!("x-forwarded-port: {}\r\n", plain.port())),
        "{seen}"
    );
    assert!(!seen.contains("X-Forwarded-Port: 1"), "{seen}");

    let mut s = connect(secure, "www.example.com", client_config(&ca, &["http/1.1"]))
        .await
        .unwrap();
    let (head, _) = get(&mut s, "/", spoof).await.unwrap();
    assert!(head.starts_with("HTTP/1.1 200"));
    let seen = a.last_request();
    assert_eq!(seen.matches("x-forwarded-proto").count(), 1, "{seen}");
    assert!(seen.contains("x-forwarded-proto: https\r\n"), "{seen}");
    assert!(
        seen.contains(&format!("x-forwarded-port: {}\r\n", secure.port())),
        "{seen}"
    );
}

#[tokio::test]
async fn without_the_options_client_values_pass_untouched() {
    let a = Backend::start("a").await;
    let (_p, plain, _secure, _ca, _d) = mixed(&[&a], "", "").await;
    let r = common::fetch(plain, "/", "X-Forwarded-Proto: https\r\n").await;
    assert_eq!(r.status, 200);
    let seen = a.last_request();
    assert!(seen.contains("x-forwarded-proto: https\r\n"), "{seen}");
    assert!(!seen.contains("x-forwarded-port"), "{seen}");
}

#[tokio::test]
async fn hsts_is_set_on_tls_responses_only_and_replaces_the_servers() {
    let a = Backend::start("a").await;
    let (_p, plain, secure, ca, _d) = mixed(
        &[&a],
        "",
        "hsts = { max_age = \"365d\", include_subdomains = true }",
    )
    .await;
    let mut s = connect(secure, "www.example.com", client_config(&ca, &["http/1.1"]))
        .await
        .unwrap();
    let (head, _) = get(&mut s, "/?h=Strict-Transport-Security:max-age=1", "")
        .await
        .unwrap();
    assert_eq!(
        head.matches("strict-transport-security").count()
            + head.matches("Strict-Transport-Security").count(),
        1,
        "{head}"
    );
    assert_eq!(
        header(&head, "strict-transport-security"),
        Some("max-age=31536000; includeSubDomains")
    );
    let r = common::fetch(plain, "/", "").await;
    assert_eq!(r.header("strict-transport-security"), None);
}

/// The raw bytes a server sends for `req` within `wait` (the connection may stay open).
async fn raw(addr: SocketAddr, req: &[u8], wait: Duration) -> (Vec<u8>, bool) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(req).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match tokio::time::timeout(wait, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    (out, closed)
}

const REDIRECT_CASES: &[&[u8]] = &[
    b"GET /a/b?x=1 HTTP/1.1\r\nHost: www.example.com:8080\r\n\r\n",
    b"GET /a HTTP/1.0\r\n\r\n",
    b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\nHost: y\r\n\r\n",
    b"GET http://abs.example/p?q HTTP/1.1\r\nHost: abs.example\r\n\r\n",
    b"GET /k HTTP/1.1\r\nHost: x\r\n\r\nGET /k2 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
    b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
];

/// `redirect_https = true` answers like HAProxy 2.6's `redirect scheme https if !{ ssl_fc }`:
/// the same bytes, and the connection closed or kept alike, for each request form.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_https_matches_haproxy_byte_for_byte() {
    if !haproxy_available() {
        return;
    }
    let a = Backend::start("a").await;
    let (_p, plain, secure, ca, _d) = mixed(&[&a], "redirect_https = true", "").await;
    let dir = tempfile::tempdir().unwrap();
    let hport = free_port();
    let cfg = format!(
        "defaults\n  mode http\n  timeout connect 5s\n  timeout client 5s\n  timeout server 5s\n\
         frontend f\n  bind 127.0.0.1:{hport}\n  redirect scheme https if !{{ ssl_fc }}\n  \
         default_backend b\nbackend b\n  server s {}\n",
        a.addr
    );
    let _h = start_haproxy_cfg(dir.path(), hport, &cfg).await;
    let haddr = SocketAddr::from(([127, 0, 0, 1], hport));
    for req in REDIRECT_CASES {
        let wait = Duration::from_millis(300);
        let (h, (e, e_closed)) = (raw(haddr, req, wait).await, raw(plain, req, wait).await);
        assert_eq!(
            String::from_utf8_lossy(&e),
            String::from_utf8_lossy(&h.0),
            "{}",
            String::from_utf8_lossy(req)
        );
        assert_eq!(e_closed, h.1, "closed? {}", String::from_utf8_lossy(req));
    }
    assert_eq!(a.connections.load(std::sync::atomic::Ordering::SeqCst), 0);
    // The TLS address of the same listen serves normally.
    let mut s = connect(secure, "www.example.com", client_config(&ca, &["http/1.1"]))
        .await
        .unwrap();
    let (head, _) = get(&mut s, "/", "").await.unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
}
