//! HTTP/2 to clients through the one request path: the backends see the same HTTP/1.1 heads as
//! for an HTTP/1.1 client (cookie, X-Forwarded-For, balancing order), bodies pass both ways under
//! flow control, the access log says `HTTP/2.0`, and real clients (curl, nghttp) work.

mod common;
#[path = "common/h2c.rs"]
mod h2c;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;

/// The seed config over `backends`, serving h2c on its bind.
fn h2_config(backends: &[&Backend], extra: &str) -> String {
    seed_config(backends, &format!("proto = \"h2\"\n{extra}"), "")
}

/// Waits until every counter a connection or request takes is back at zero.
pub async fn assert_settled(p: &Proxy) {
    let mut last = String::new();
    for _ in 0..100 {
        let snap = p.app.rt.load();
        let l = &snap.listens[0];
        let fe = l.shared.frontend.scur.load(Ordering::Relaxed);
        let be = l.shared.backend.scur.load(Ordering::Relaxed);
        let srv: u64 = l
            .servers
            .iter()
            .map(|s| s.live.counters.scur.load(Ordering::Relaxed))
            .sum();
        let act = p.app.rt.process.actconn.load(Ordering::Relaxed);
        if fe == 0 && be == 0 && srv == 0 && act == 0 {
            return;
        }
        last = format!("frontend {fe}, backend {be}, servers {srv}, actconn {act}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("counters did not settle: {last}");
}

/// The head a backend received, without its request line's version.
fn head_of(raw: &str) -> String {
    raw.split("\r\n\r\n").next().unwrap_or("").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_requests_get_the_same_backend_heads_cookies_and_order_as_http1() {
    // Two proxies over two pairs of backends: one speaks HTTP/1.1, one h2c.
    let (a1, b1) = (Backend::start("s1").await, Backend::start("s2").await);
    let (a2, b2) = (Backend::start("s1").await, Backend::start("s2").await);
    let p1 = Proxy::start(&seed_config(&[&a1, &b1], "", "")).await;
    let p2 = Proxy::start(&h2_config(&[&a2, &b2], "")).await;

    // HTTP/1.1: four requests (round robin), one with the other server's cookie and crumbs.
    let mut h1_seen = Vec::new();
    for (path, cookie) in [
        ("/a?x=1", ""),
        ("/b", ""),
        ("/c", "Cookie: pref=1; SERVERID=s1; lang=en\r\n"),
        ("/d", ""),
    ] {
        let mut c = Client::connect(p1.addr).await;
        c.send(
            format!("GET {path} HTTP/1.1\r\nHost: example.test\r\naccept: */*\r\n{cookie}\r\n")
                .as_bytes(),
        )
        .await;
        let r = c.read(false).await.unwrap();
        h1_seen.push((
            r.status,
            r.backend(),
            r.headers_named("set-cookie").join("|"),
        ));
    }
    // HTTP/2: the same four on one connection, the cookie as three crumbs.
    let mut s = h2c::connect(p2.addr).await;
    let mut h2_seen = Vec::new();
    for (path, crumbs) in [
        ("/a?x=1", &[][..]),
        ("/b", &[][..]),
        ("/c", &["pref=1", "SERVERID=s1", "lang=en"][..]),
        ("/d", &[][..]),
    ] {
        let mut hs: Vec<(&str, &str)> = vec![("accept", "*/*")];
        hs.extend(crumbs.iter().map(|c| ("cookie", *c)));
        let r = h2c::send(&mut s, h2c::get("example.test", path, &hs), None)
            .await
            .unwrap();
        let sc: Vec<&str> = r
            .headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        h2_seen.push((
            r.status,
            r.header("x-backend").unwrap_or("").to_string(),
            sc.join("|"),
        ));
    }
    assert_eq!(h1_seen, h2_seen);
    assert_eq!(
        h2_seen.iter().map(|s| s.1.as_str()).collect::<Vec<_>>()[..3],
        ["s1", "s2", "s1"]
    );
    // Byte-identical heads at the backends (the h2 client adds no user-agent).
    for (x, y) in [(&a1, &a2), (&b1, &b2)] {
        let hx: Vec<String> = x.requests().iter().map(|r| head_of(r)).collect();
        let hy: Vec<String> = y.requests().iter().map(|r| head_of(r)).collect();
        assert_eq!(hx, hy);
    }
    let c = head_of(&a2.requests()[1]);
    assert!(
        c.starts_with("GET /c HTTP/1.1\r\nhost: example.test\r\n"),
        "{c}"
    );
    assert!(c.contains("\r\ncookie: pref=1; lang=en\r\n"), "{c}");
    assert!(c.contains("\r\nx-forwarded-for: 127.0.0.1"), "{c}");
    drop(s);
    assert_settled(&p2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_bodies_pass_both_ways_with_and_without_length_and_large_ones_under_flow_control() {
    let a = Backend::start("s1").await;
    let p = Proxy::start(&h2_config(&[&a], "")).await;
    let mut s = h2c::connect(p.addr).await;

    // A request body with content-length passes as it is.
    let req = http::Request::builder()
        .method("POST")
        .uri("http://t/up")
        .header("content-length", "5")
        .body(())
        .unwrap();
    let r = h2c::send(&mut s, req, Some(b"hello")).await.unwrap();
    assert_eq!(r.status, 200);
    let got = a.last_request();
    assert!(
        got.contains("\r\ncontent-length: 5\r\n") && got.ends_with("\r\n\r\nhello"),
        "{got}"
    );

    // Without a length: chunked to the server.
    let req = http::Request::builder()
        .method("POST")
        .uri("http://t/up2")
        .body(())
        .unwrap();
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let r = h2c::send(&mut s, req, Some(&big)).await.unwrap();
    assert_eq!(r.status, 200);
    let got = a.received.lock().unwrap().last().unwrap().clone();
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.contains("\r\ntransfer-encoding: chunked\r\n"),
        "{text}"
    );
    // The backend records the chunked bytes as they came: decode them.
    let at = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let mut payload = Vec::new();
    let mut dec = edgelb::proxy::h1::ChunkedDecoder::default();
    dec.feed(&got[at..], &mut payload, false).unwrap();
    assert!(dec.is_done());
    assert!(payload == big, "body mangled");

    // A chunked response is de-chunked into DATA; a 1 MB one crosses many windows.
    let r = h2c::send(&mut s, h2c::get("t", "/chunked", &[]), None)
        .await
        .unwrap();
    assert_eq!(r.text(), "hello world");
    assert!(r.header("transfer-encoding").is_none());
    let r = h2c::send(&mut s, h2c::get("t", "/big/1000000", &[]), None)
        .await
        .unwrap();
    assert_eq!(r.body.len(), 1_000_000);
    // HEAD, 204 and 304 carry no body; a close-delimited body ends with the stream.
    let req = http::Request::builder()
        .method("HEAD")
        .uri("http://t/big/10")
        .body(())
        .unwrap();
    let r = h2c::send(&mut s, req, None).await.unwrap();
    assert_eq!((r.status, r.body.len()), (200, 0));
    assert_eq!(r.header("content-length"), Some("10"));
    let r = h2c::send(&mut s, h2c::get("t", "/status/204", &[]), None)
        .await
        .unwrap();
    assert_eq!((r.status, r.body.len()), (204, 0));
    let r = h2c::send(&mut s, h2c::get("t", "/nolen", &[]), None)
        .await
        .unwrap();
    assert_eq!(r.text(), "until-close");
    drop(s);
    assert_settled(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_errors_are_the_http1_error_pages_and_streams_are_logged_as_http2() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let a = Backend::start("s1").await;
    let cfg = h2_config(&[&a], "timeout_server = \"500ms\"").replace(
        "access = \"off\"",
        &format!("access = \"{}\"", log.display()),
    );
    let p = Proxy::start(&cfg).await;
    let mut s = h2c::connect(p.addr).await;
    let r = h2c::send(&mut s, h2c::get("t", "/ok", &[]), None)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    // 502 (garbage from the server) and 504 (timeout server) are the HTTP/1 error pages.
    let r = h2c::send(&mut s, h2c::get("t", "/garbage", &[]), None)
        .await
        .unwrap();
    assert_eq!(r.status, 502);
    assert!(r.text().contains("502 Bad Gateway"), "{}", r.text());
    let r = h2c::send(&mut s, h2c::get("t", "/slow/3000", &[]), None)
        .await
        .unwrap();
    assert_eq!(r.status, 504);
    // A truncated body resets the stream instead of ending it cleanly.
    let e = h2c::send(&mut s, h2c::get("t", "/truncated", &[]), None).await;
    assert!(e.is_err(), "a truncated body must not look complete");
    // CONNECT gets the path's 405.
    let req = http::Request::builder()
        .method("CONNECT")
        .uri("t:443")
        .body(())
        .unwrap();
    let r = h2c::send(&mut s, req, None).await.unwrap();
    assert_eq!(r.status, 405);
    // Stats count h2 requests like HTTP/1 ones (CONNECT is refused with the head, as `ereq`).
    let snap = p.app.rt.load();
    let fe = &snap.listens[0].shared.frontend;
    assert_eq!(fe.req_tot.load(Ordering::Relaxed), 4);
    assert_eq!(fe.ereq.load(Ordering::Relaxed), 1);
    drop(snap);
    drop(s);
    assert_settled(&p).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let text = std::fs::read_to_string(&log).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("/ok "))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.ends_with("\"GET http://t/ok HTTP/2.0\""), "{line}");
    assert!(
        line.contains(" 200 ") && line.contains("webapp/s1"),
        "{line}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains(" 504 ") && l.ends_with("\"GET http://t/slow/3000 HTTP/2.0\"")),
        "{text}"
    );
}

fn have(cmd: &str) -> bool {
    std::process::Command::new(cmd)
        .arg("--version")
        .output()
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_and_nghttp_talk_h2c_through_to_the_backends() {
    assert!(
        have("curl") && have("nghttp"),
        "curl and nghttp (nghttp2-client) are installed by .ci/install"
    );
    let a = Backend::start("s1").await;
    let p = Proxy::start(&h2_config(&[&a], "")).await;
    let url = format!("http://{}/hello", p.addr);
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "-i", "--http2-prior-knowledge", &url])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/2 200"), "{text}");
    assert!(text.contains("set-cookie: SERVERID=s1"), "{text}");
    assert!(text.contains("server=s1"), "{text}");
    // nghttp: two streams on one connection, and a POST with a body from stdin-less data file.
    let dir = tempfile::tempdir().unwrap();
    let data = write_file(dir.path(), "body", "posted-by-nghttp");
    let out = tokio::process::Command::new("nghttp")
        .args(["-nv", &url, &format!("http://{}/second", p.addr)])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert_eq!(text.matches(":status: 200").count(), 2, "{text}");
    let out = tokio::process::Command::new("nghttp")
        .args(["-d", data.to_str().unwrap(), &url])
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    assert!(
        a.last_request().ends_with("posted-by-nghttp"),
        "{}",
        a.last_request()
    );
    assert_settled(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_stop_sends_goaway_and_finishes_the_stream_in_flight() {
    use h2c::*;
    let a = Backend::start("s1").await;
    let mut p = Proxy::start(&h2_config(&[&a], "")).await;
    let mut c = Raw::connect(p.addr).await;
    c.send(&frame(
        HEADERS,
        END_STREAM | END_HEADERS,
        1,
        &get_block("/slow/700"),
    ))
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let client = async move {
        let (mut goaway, mut done) = (None, false);
        while let Some(f) = c.next(Duration::from_secs(5)).await {
            match f.kind {
                GOAWAY => goaway = Some(f.error_code()),
                PING if f.flags & ACK == 0 => {
                    let _ = c.send(&frame(PING, ACK, 0, &f.payload)).await;
                }
                DATA if f.stream == 1 && f.flags & END_STREAM != 0 => done = true,
                _ => {}
            }
        }
        (goaway, done)
    };
    let started = std::time::Instant::now();
    let ((goaway, done), ()) = tokio::join!(client, p.app.drain(Some(Duration::from_secs(10))));
    assert_eq!(goaway, Some(0), "GOAWAY NO_ERROR");
    assert!(done, "the stream in flight was answered in full");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(p.app.rt.process.actconn.load(Ordering::Relaxed), 0);
}
