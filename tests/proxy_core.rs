//! The request path against real backends: HTTP/1.1 semantics, round-robin, cookie
//! persistence, X-Forwarded-For, retries, timeouts and HAProxy's exact error responses.

mod common;

use std::time::{Duration, Instant};

use common::*;

async fn three() -> (Backend, Backend, Backend) {
    (
        Backend::start("app1").await,
        Backend::start("app2").await,
        Backend::start("app3").await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_goes_through_servers_in_config_order() {
    let (a, b, c) = three().await;
    let p = Proxy::start(&seed_config(&[&a, &b, &c], "", "")).await;
    let mut seen = Vec::new();
    for _ in 0..6 {
        seen.push(fetch(p.addr, "/", "").await.backend());
    }
    assert_eq!(seen, ["app1", "app2", "app3", "app1", "app2", "app3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_interleave_in_proportion() {
    let (a, b, c) = three().await;
    let mut cfg = seed_config(&[&a, &b, &c], "", "");
    cfg = cfg.replacen("name = \"app1\"\n", "name = \"app1\"\nweight = 3\n", 1);
    cfg = cfg.replacen("name = \"app2\"\n", "name = \"app2\"\nweight = 2\n", 1);
    let p = Proxy::start(&cfg).await;
    let mut seen = Vec::new();
    for _ in 0..12 {
        seen.push(fetch(p.addr, "/", "").await.backend());
    }
    let count = |n: &str| seen.iter().filter(|s| *s == n).count();
    assert_eq!(
        (count("app1"), count("app2"), count("app3")),
        (6, 4, 2),
        "{seen:?}"
    );
    assert!(
        !seen.windows(3).any(|w| w.iter().all(|s| s == "app1")),
        "not interleaved: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_visit_gets_serverid_cookie_and_private_cache_control_when_cacheable() {
    let (a, b, c) = three().await;
    let p = Proxy::start(&seed_config(&[&a, &b, &c], "", "")).await;
    let r = fetch(p.addr, "/x?h=ETag:%20x", "").await;
    assert_eq!(r.header("set-cookie"), Some("SERVERID=app1; path=/"));
    assert_eq!(r.header("cache-control"), Some("private"));
    // Without a validator or freshness the response is not cacheable: no cache-control.
    let r = fetch(p.addr, "/x", "").await;
    assert_eq!(r.header("set-cookie"), Some("SERVERID=app2; path=/"));
    assert_eq!(r.header("cache-control"), None);
    // POST never gets it.
    let mut cl = Client::connect(p.addr).await;
    cl.send(b"POST /p?h=ETag:%20x HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi")
        .await;
    let r = cl.read(false).await.unwrap();
    assert!(r.header("set-cookie").is_some());
    assert_eq!(r.header("cache-control"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_cookie_pins_the_server_and_is_stripped_from_the_request() {
    let (a, b, c) = three().await;
    let p = Proxy::start(&seed_config(&[&a, &b, &c], "", "")).await;
    for _ in 0..4 {
        let r = fetch(p.addr, "/v", "Cookie: a=1; SERVERID=app3; b=2\r\n").await;
        assert_eq!(r.backend(), "app3");
        assert_eq!(
            r.header("set-cookie"),
            None,
            "no cookie when a valid one was honoured"
        );
    }
    let req = c.last_request();
    assert!(req.contains("\r\ncookie: a=1; b=2\r\n"), "{req}");
    assert!(!req.contains("SERVERID"), "{req}");
    // SERVERID alone: the whole header goes.
    let _ = fetch(p.addr, "/v", "Cookie: SERVERID=app3\r\n").await;
    assert!(!c.last_request().to_ascii_lowercase().contains("cookie:"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_cookie_is_rebalanced_and_replaced() {
    let (a, b, c) = three().await;
    let p = Proxy::start(&seed_config(&[&a, &b, &c], "", "")).await;
    let r = fetch(p.addr, "/u", "Cookie: SERVERID=nosuch; x=y\r\n").await;
    assert_eq!(
        r.header("set-cookie"),
        Some(format!("SERVERID={}; path=/", r.backend()).as_str())
    );
    let last = [&a, &b, &c]
        .iter()
        .find(|s| s.name == r.backend())
        .unwrap()
        .last_request();
    assert!(last.contains("\r\ncookie: x=y\r\n"), "{last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn application_serverid_cookie_is_removed_other_cookies_pass() {
    let (a, b, c) = three().await;
    let p = Proxy::start(&seed_config(&[&a, &b, &c], "", "")).await;
    let r = fetch(p.addr, "/setcookie", "").await;
    assert_eq!(
        r.headers_named("set-cookie"),
        vec!["app=1", "SERVERID=app1; path=/"]
    );
    let r = fetch(p.addr, "/setcookie", "Cookie: SERVERID=app2\r\n").await;
    assert_eq!(r.headers_named("set-cookie"), vec!["app=1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_for_a_server_in_maintenance_is_rebalanced() {
    let (a, b, c) = three().await;
    let p = Proxy::start(&seed_config(&[&a, &b, &c], "", "")).await;
    let snap = p.app.rt.load();
    let srv = snap.listens[0].server_by_name("app2").unwrap();
    srv.live.set_admin(edgelb::runtime::AdminState::Maint);
    let r = fetch(p.addr, "/d", "Cookie: SERVERID=app2; other=1\r\n").await;
    assert_ne!(r.backend(), "app2");
    assert_eq!(
        r.header("set-cookie"),
        Some(format!("SERVERID={}; path=/", r.backend()).as_str())
    );
    // Drain keeps cookie holders.
    srv.live.set_admin(edgelb::runtime::AdminState::Drain);
    let r = fetch(p.addr, "/d", "Cookie: SERVERID=app2\r\n").await;
    assert_eq!(r.backend(), "app2");
    for _ in 0..4 {
        assert_ne!(
            fetch(p.addr, "/", "").await.backend(),
            "app2",
            "drained server got new traffic"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_forwarded_for_is_appended_unless_client_is_in_except_net() {
    let a = Backend::start("app1").await;
    let p = Proxy::start(&seed_config(&[&a], "", "")).await;
    let _ = fetch(p.addr, "/", "X-Forwarded-For: 203.0.113.7\r\n").await;
    let req = a.last_request();
    assert!(
        req.contains("\r\nx-forwarded-for: 203.0.113.7\r\nx-forwarded-for: 127.0.0.1\r\n"),
        "{req}"
    );
    let cfg = seed_config(&[&a], "", "").replace("10.0.0.0/8", "127.0.0.0/8");
    let p2 = Proxy::start(&cfg).await;
    let _ = fetch(p2.addr, "/", "X-Forwarded-For: 203.0.113.7\r\n").await;
    let req = a.last_request();
    assert!(
        req.contains("\r\nx-forwarded-for: 203.0.113.7\r\n"),
        "{req}"
    );
    assert!(!req.contains("127.0.0.1"), "{req}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_on_both_sides_reuses_one_backend_connection() {
    let a = Backend::start("app1").await;
    let p = Proxy::start(&seed_config(&[&a], "", "")).await;
    let mut cl = Client::connect(p.addr).await;
    for i in 0..5 {
        cl.send(&get(&format!("/k{i}"), "")).await;
        let r = cl.read(false).await.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("connection"), None);
    }
    assert_eq!(a.connections.load(std::sync::atomic::Ordering::SeqCst), 1);
    // Hop-by-hop headers are not forwarded.
    cl.send(b"GET /h HTTP/1.1\r\nHost: t\r\nConnection: keep-alive, X-Private\r\nX-Private: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n\r\n").await;
    let _ = cl.read(false).await.unwrap();
    let req = a.last_request().to_ascii_lowercase();
    assert!(
        !req.contains("x-private") && !req.contains("keep-alive") && !req.contains("\r\nte:"),
        "{req}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_close_and_http10_get_connection_close() {
    let a = Backend::start("app1").await;
    let p = Proxy::start(&seed_config(&[&a], "", "")).await;
    let mut cl = Client::connect(p.addr).await;
    cl.send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await;
    let r = cl.read(false).await.unwrap();
    assert_eq!(r.header("connection"), Some("close"));
    assert!(cl.closed_within(Duration::from_secs(2)).await);

    let mut cl = Client::connect(p.addr).await;
    cl.send(b"GET /ten HTTP/1.0\r\n\r\n").await;
    let r = cl.read(false).await.unwrap();
    assert_eq!(r.status, 200);
    assert!(r.raw.starts_with(b"HTTP/1.1 200"));
    assert_eq!(r.header("connection"), Some("close"));
    let req = a.last_request();
    assert!(req.starts_with("GET /ten HTTP/1.0\r\n"), "{req}");
    assert!(req.contains("\r\nconnection: keep-alive\r\n"), "{req}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let a = Backend::start("app1").await;
    let p = Proxy::start(&seed_config(&[&a], "", "")).await;
    let mut cl = Client::connect(p.addr).await;
    let mut batch = Vec::new();
    for i in 0..5 {
        batch.extend_from_slice(&get(&format!("/slow/{}?n={i}", 50 - i * 10), ""));
    }
    cl.send(&batch).await;
    for i in 0..5 {
        let r = cl.read(false).await.unwrap();
        assert!(r.text().contains(&format!("?n={i} ")), "{}", r.text());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_streamed_with_content_length_and_chunked() {
    let a = Backend::start("app1").await;
    let p = Proxy::start(&seed_config(&[&a], "", "")).await;
    let mut cl = Client::connect(p.addr).await;
    cl.send(b"POST /cl HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world")
        .await;
    assert_eq!(cl.read(false).await.unwrap().status, 200);
    assert!(a.last_request().ends_with("\r\n\r\nhello world"));
    cl.send(b"POST /ch HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n").await;
    assert_eq!(cl.read(false).await.unwrap().status, 200);
    let req = a.last_request();
    assert!(req.contains("\r\ntransfer-encoding: chunked\r\n"), "{req}");
    assert!(
        req.ends_with("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
        "{req}"
    );
    // Chunked response passes through chunked.
    cl.send(&get("/chunked", "")).await;
    let r = cl.read(false).await.unwrap();
    assert_eq!(r.text(), "hello world");
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    // A large response is streamed whole.
    cl.send(&get("/big/3000000", "")).await;
    let r = cl.read(false).await.unwrap();
    assert_eq!(r.body.len(), 3_000_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_is_relayed_before_the_body() {
    let a = Backend::start("app1").await;
    let p = Proxy::start(&seed_config(&[&a], "", "")).await;
    let mut cl = Client::connect(p.addr).await;
    cl.send(b"POST /e HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        .await;
    let mut buf = [0u8; 25];
    use tokio::io::AsyncReadExt;
    tokio::time::timeout(Duration::from_secs(5), cl.s.read_exact(&mut buf))
        .await
        .expect("100 Continue before the body")
        .unwrap();
    assert_eq!(&buf, b"HTTP/1.1 100 Continue\r\n\r\n");
    cl.send(b"body").await;
    let r = cl.read(false).await.unwrap();
    assert_eq!(r.status, 200);
    assert!(a.last_request().ends_with("body"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_204_and_304_have_no_body_and_keep_the_connection() {
    let a = Backend::start("app1").await;
    let p = Proxy::start(&seed_config(&[&a], "", "")).await;
    let mut cl = Client::connect(p.addr).await;
    cl.send(b"HEAD /h HTTP/1.1\r\nHost: t\r\n\r\n").await;
    let r = cl.read(true).await.unwrap();
    assert_eq!(r.status, 200);
    assert!(r.header("content-length").is_some());
    for code in [204, 304] {
        cl.send(&get(&format!("/status/{code}"), "")).await;
        let r = cl.read(false).await.unwrap();
        assert_eq!(r.status, code);
        assert!(r.body.is_empty());
    }
    cl.send(&get("/after", "")).await;
    assert_eq!(cl.read(false).await.unwrap().status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_servers_down_gives_haproxy_503_and_keeps_the_connection() {
    let a = Backend::start("app1").await;
    let p = Proxy::start(&seed_config(&[&a], "", "")).await;
    p.app.rt.load().listens[0].servers[0]
        .live
        .set_admin(edgelb::runtime::AdminState::Maint);
    let mut cl = Client::connect(p.addr).await;
    cl.send(&get("/alldown", "")).await;
    let r = cl.read(false).await.unwrap();
    assert_eq!(
        r.raw,
        b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 107\r\ncache-control: no-cache\r\ncontent-type: text/html\r\n\r\n<html><body><h1>503 Service Unavailable</h1>\nNo server is available to handle this request.\n</body></html>\n"
    );
    cl.send(&get("/again", "")).await;
    assert_eq!(
        cl.read(false).await.unwrap().status,
        503,
        "connection kept alive after 503"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_server_is_redispatched_at_once_without_cookie() {
    let (a, b, c) = three().await;
    let p = Proxy::start(&seed_config(&[&a, &b, &c], "", "")).await;
    a.stop();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let t = Instant::now();
    let r = fetch(p.addr, "/", "").await;
    assert_eq!(r.status, 200);
    assert_ne!(r.backend(), "app1");
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "no turn-around wait"
    );
    assert_eq!(
        r.header("set-cookie"),
        Some(format!("SERVERID={}; path=/", r.backend()).as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_pinned_request_retries_its_server_then_redispatches_on_the_last_retry() {
    let (a, b, c) = three().await;
    let p = Proxy::start(&seed_config(&[&a, &b, &c], "", "")).await;
    b.stop();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let t = Instant::now();
    let r = fetch(p.addr, "/", "Cookie: SERVERID=app2\r\n").await;
    let took = t.elapsed();
    assert_eq!(r.status, 200);
    assert_ne!(r.backend(), "app2");
    // Attempts 1-3 on app2 with a 1 s turn-around before 2 and 3; attempt 4 elsewhere.
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_millis(3500),
        "{took:?}"
    );
    assert_eq!(
        r.header("set-cookie"),
        Some(format!("SERVERID={}; path=/", r.backend()).as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_refusing_server_gives_503_after_retries() {
    let a = Backend::start("app1").await;
    let p = Proxy::start(&seed_config(&[&a], "retries = 2", "")).await;
    a.stop();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let t = Instant::now();
    let r = fetch(p.addr, "/", "").await;
    assert_eq!(r.status, 503);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_millis(3000),
        "{took:?}"
    );
    assert_eq!(r.header("set-cookie"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_timeout_gives_504_and_reset_gives_502() {
    let a = Backend::start("app1").await;
    let p = Proxy::start(&seed_config(&[&a], "timeout_server = \"300ms\"", "")).await;
    let mut cl = Client::connect(p.addr).await;
    cl.send(&get("/slow/1000", "")).await;
    let r = cl.read(false).await.unwrap();
    assert_eq!(r.status, 504);
    assert!(r
        .raw
        .starts_with(b"HTTP/1.1 504 Gateway Time-out\r\ncontent-length: 92\r\n"));
    assert_eq!(r.header("set-cookie"), None);
    cl.send(&get("/close", "")).await;
    let r = cl.read(false).await.unwrap();
    assert_eq!(r.status, 502);
    cl.send(&get("/garbage", "")).await;
    let r = cl.read(false).await.unwrap();
    assert_eq!(r.status, 502);
    // A truncated body aborts the client connection rather than inventing an ending.
    cl.send(&get("/truncated", "")).await;
    let r = cl.read(false).await.unwrap();
    assert!(r.body.len() < 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_timeouts_give_408_and_close() {
    let a = Backend::start("app1").await;
    let p = Proxy::start(&seed_config(&[&a], "timeout_client = \"300ms\"", "")).await;
    // Partial head.
    let out = raw_exchange(p.addr, b"GET / HTTP/1.1\r\nHost:", Duration::from_secs(3)).await;
    assert!(out.starts_with(b"HTTP/1.1 408 Request Time-out\r\nContent-length: 110\r\nCache-Control: no-cache\r\nConnection: close\r\n"), "{}", String::from_utf8_lossy(&out));
    // Nothing at all: still 408 (HAProxy 2.6 does), then close.
    let out = raw_exchange(p.addr, b"", Duration::from_secs(3)).await;
    assert!(out.starts_with(b"HTTP/1.1 408 "));
    // Idle keep-alive after a response: silent close.
    let mut cl = Client::connect(p.addr).await;
    cl.send(&get("/", "")).await;
    assert_eq!(cl.read(false).await.unwrap().status, 200);
    let t = Instant::now();
    assert!(cl.closed_within(Duration::from_secs(3)).await);
    assert!(t.elapsed() >= Duration::from_millis(250));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_400_and_nothing_reaches_the_backend() {
    let a = Backend::start("app1").await;
    let p = Proxy::start(&seed_config(&[&a], "", "")).await;
    let cases: &[&[u8]] = &[
        b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello",
        b"GET / HTTP/1.1\r\nHost: t\r\nBad Header: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nX: a\x01b\r\n\r\n",
        b"GARBAGE\r\n\r\n",
    ];
    for c in cases {
        let out = raw_exchange(p.addr, c, Duration::from_secs(3)).await;
        assert!(
            out.starts_with(b"HTTP/1.1 400 Bad request\r\nContent-length: 90\r\nCache-Control: no-cache\r\nConnection: close\r\n"),
            "{:?} -> {}",
            String::from_utf8_lossy(c),
            String::from_utf8_lossy(&out)
        );
    }
    let big = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX: {}\r\n\r\n",
        "a".repeat(20000)
    );
    let out = raw_exchange(p.addr, big.as_bytes(), Duration::from_secs(3)).await;
    assert!(out.starts_with(b"HTTP/1.1 400 "));
    assert!(a.requests().is_empty(), "nothing ambiguous was forwarded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_is_tunnelled_with_the_cookie_logic() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let a = Backend::start("app1").await;
    let p = Proxy::start(&seed_config(&[&a], "", "")).await;
    let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&got).to_string();
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(
        head.contains("set-cookie: SERVERID=app1; path=/\r\n"),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase().contains("upgrade: websocket"),
        "{head}"
    );
    s.write_all(b"ping-frame").await.unwrap();
    let mut echo = [0u8; 10];
    tokio::time::timeout(Duration::from_secs(3), s.read_exact(&mut echo))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echo, b"ping-frame");
    let req = a.last_request().to_ascii_lowercase();
    assert!(
        req.contains("\r\nupgrade: websocket\r\n") && req.contains("\r\nconnection: upgrade\r\n"),
        "{req}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_has_one_httplog_line_per_request() {
    let a = Backend::start("app1").await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let cfg = seed_config(&[&a], "", "").replace(
        "access = \"off\"",
        &format!("access = \"{}\"", log.display()),
    );
    let p = Proxy::start(&cfg).await;
    let _ = fetch(p.addr, "/first", "").await;
    let _ = fetch(p.addr, "/second", "Cookie: SERVERID=app1\r\n").await;
    let _ = raw_exchange(p.addr, b"BAD\r\n\r\n", Duration::from_secs(2)).await;
    // dontlognull: a connection that sends nothing is not logged.
    drop(tokio::net::TcpStream::connect(p.addr).await.unwrap());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    // One line per request, each written once its exchange ends: lines of different
    // connections may come in either order, so each is found by its request.
    let by = |tail: &str| {
        *lines
            .iter()
            .find(|l| l.ends_with(tail))
            .unwrap_or_else(|| panic!("no line for {tail}:\n{text}"))
    };
    let lines = [
        by("\"GET /first HTTP/1.1\""),
        by("\"GET /second HTTP/1.1\""),
        by("\"<BADREQ>\""),
    ];
    let re_ok = |l: &str, tail: &str| {
        assert!(l.starts_with("127.0.0.1:"), "{l}");
        assert!(l.contains("] webapp webapp/app1 "), "{l}");
        assert!(l.ends_with(tail), "{l}");
    };
    re_ok(lines[0], "\"GET /first HTTP/1.1\"");
    assert!(
        lines[0].contains(" 200 ") && lines[0].contains(" - - --NI "),
        "{}",
        lines[0]
    );
    assert!(lines[1].contains(" - - --VN "), "{}", lines[1]);
    assert!(
        lines[2].contains("webapp/<NOSRV> ")
            && lines[2].contains(" 400 ")
            && lines[2].ends_with("\"<BADREQ>\""),
        "{}",
        lines[2]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reused_connection_dying_before_response_is_replayed_only_when_safe() {
    let a = Backend::start("app1").await;
    let p = Proxy::start(&seed_config(&[&a], "", "")).await;
    let mut cl = Client::connect(p.addr).await;
    cl.send(&get("/oneshot/1", "")).await;
    assert_eq!(cl.read(false).await.unwrap().status, 200);
    // The pooled connection is reused and the server drops it without answering: a GET is
    // replayed once on a fresh connection.
    cl.send(&get("/oneshot/2", "")).await;
    let r = cl.read(false).await.unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.raw));
    assert_eq!(a.connections.load(std::sync::atomic::Ordering::SeqCst), 2);
    // A POST with a body is never replayed: its bytes may have reached the backend.
    cl.send(b"POST /oneshot/3 HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc")
        .await;
    let r = cl.read(false).await.unwrap();
    assert_eq!(r.status, 502);
    let posts = a
        .requests()
        .iter()
        .filter(|r| r.starts_with("POST /oneshot/3"))
        .count();
    assert_eq!(posts, 1, "the POST reached the backend exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_maxconn_makes_extra_connections_wait_for_a_slot() {
    let a = Backend::start("app1").await;
    let p = Proxy::start(&seed_config(&[&a], "maxconn = 2", "")).await;
    let mut slow1 = Client::connect(p.addr).await;
    slow1.send(&get("/slow/600", "Connection: close\r\n")).await;
    let mut slow2 = Client::connect(p.addr).await;
    slow2.send(&get("/slow/600", "Connection: close\r\n")).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t = Instant::now();
    let r = fetch(p.addr, "/third", "Connection: close\r\n").await;
    assert_eq!(r.status, 200);
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "third waited: {:?}",
        t.elapsed()
    );
    assert_eq!(slow1.read(false).await.unwrap().status, 200);
    assert_eq!(slow2.read(false).await.unwrap().status, 200);
}

/// Issue 16: an idle keep-alive connection waits in a small state (`proxy::idle`) that still
/// watches the graceful stop: on drain it is closed at once (not after its keep-alive timeout),
/// without a byte, and drain finishes in well under the 30 s keep-alive timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_closes_at_once_on_graceful_stop() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let a = Backend::start("s1").await;
    let mut p = Proxy::start(&seed_config(&[&a], "", "")).await;
    let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let (read, ()) = tokio::join!(
        tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)),
        p.app.drain(Some(Duration::from_secs(20)))
    );
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the idle connection was closed without a byte: {read:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        p.app
            .rt
            .process
            .actconn
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

/// The idle timeouts of an HTTP/1 client connection (kept by each worker's list of idle waits
/// and its reaper, not by tokio timers): a connection that never sends a byte is closed after
/// `timeout_http_request`, one that sent a request is closed after `timeout_http_keep_alive`,
/// neither before its timeout, and a request that comes in time is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_client_connections_close_at_their_timeouts() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let a = Backend::start("s1").await;
    let p = Proxy::start(&seed_config(
        &[&a],
        "timeout_http_request = \"400ms\"\ntimeout_http_keep_alive = \"700ms\"",
        "",
    ))
    .await;
    let mut buf = vec![0u8; 4096];
    // Never a byte: closed after timeout_http_request.
    let mut silent = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    let t = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf)).await;
    let took = t.elapsed();
    let n = match r {
        Ok(Ok(n)) => n,
        Ok(Err(_)) => 0,
        Err(_) => panic!("a silent connection was not closed within 5 s"),
    };
    assert!(
        took >= Duration::from_millis(380) && took < Duration::from_millis(1500),
        "silent connection closed after {took:?}"
    );
    // Whatever the proxy says on that timeout (a 408, or nothing), it is never a success.
    assert!(!buf[..n].starts_with(b"HTTP/1.1 200"));

    // A request, then idle: closed after timeout_http_keep_alive, not before.
    let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    // Within the keep-alive timeout a second request is served.
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.write_all(b"GET /y HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "served in time");
    let t = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
    let took = t.elapsed();
    assert!(
        matches!(r, Ok(Ok(0)) | Ok(Err(_))),
        "the idle connection was closed without a byte: {r:?}"
    );
    assert!(
        took >= Duration::from_millis(680) && took < Duration::from_millis(1800),
        "keep-alive connection closed after {took:?}"
    );
}
