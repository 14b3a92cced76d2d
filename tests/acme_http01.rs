//! The request path's HTTP-01 answer (`proxy::acme_http01`), in process against a real backend:
//! a token this node holds is answered before cookie, balancing or any backend; anything else
//! (unknown or withdrawn token, a body, another method) goes to the backends unchanged.

mod common;

use std::time::{Duration, Instant};

use common::{fetch, seed_config, Backend, Client, Proxy};

const TOK: &str = "tok_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
const THUMB: &str = "thumb-BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";

#[tokio::test]
async fn a_held_token_is_answered_before_any_backend_and_nothing_else_is() {
    let b = Backend::start("app1").await;
    let p = Proxy::start(&seed_config(&[&b], "", "")).await;
    let path = format!("/.well-known/acme-challenge/{TOK}");
    let key_auth = format!("{TOK}.{THUMB}");

    // Not held yet: the backends answer (an application may serve its own challenges).
    let r = fetch(p.addr, &path, "").await;
    assert_eq!(r.backend(), "app1", "{}", r.text());
    assert_eq!(b.requests().len(), 1);

    p.app
        .rt
        .challenges
        .add_own(TOK, &key_auth, Duration::from_secs(60), Instant::now())
        .expect("adds");
    let mut c = Client::connect(p.addr).await;
    c.send(format!("GET {path} HTTP/1.1\r\nHost: www.example.com\r\n\r\n").as_bytes())
        .await;
    let r = c.read(false).await.expect("answer");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), key_auth);
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    assert_eq!(r.header("set-cookie"), None, "no persistence cookie");
    // Keep-alive: the same connection serves a normal request next.
    c.send(b"GET /next HTTP/1.1\r\nHost: www.example.com\r\n\r\n")
        .await;
    let r = c.read(false).await.expect("next");
    assert_eq!(r.backend(), "app1");
    assert_eq!(
        b.requests().len(),
        2,
        "the challenge never reached a backend"
    );

    // HEAD: same head, no body.
    let mut c = Client::connect(p.addr).await;
    c.send(format!("HEAD {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await;
    let r = c.read(true).await.expect("head answer");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-length"),
        Some(key_auth.len().to_string().as_str())
    );
    assert_eq!(b.requests().len(), 2);

    // Another token, a query string, a POST with a body: the backends.
    for req in [
        "GET /.well-known/acme-challenge/other HTTP/1.1\r\nHost: x\r\n\r\n".to_string(),
        format!("GET {path}?x=1 HTTP/1.1\r\nHost: x\r\n\r\n"),
        format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"),
    ] {
        let mut c = Client::connect(p.addr).await;
        c.send(req.as_bytes()).await;
        let r = c.read(false).await.expect("response");
        assert_eq!(r.backend(), "app1", "{req}");
    }
    assert_eq!(b.requests().len(), 5);

    // Withdrawn (the order ended): the backends again.
    p.app.rt.challenges.withdraw_own(TOK, Instant::now());
    let r = fetch(p.addr, &path, "").await;
    assert_eq!(r.backend(), "app1");
    assert_eq!(
        p.app
            .rt
            .challenges
            .counters
            .answered
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
}

/// `redirect_https` sends plain-HTTP clients to https, but the CA's validation of a held token
/// is answered on port 80 first (HTTP-01 starts there, and a node's first certificate cannot be
/// fetched over a TLS port that has none yet).
#[tokio::test]
async fn a_held_token_is_answered_before_the_https_redirect() {
    let b = Backend::start("app1").await;
    let p = Proxy::start(&seed_config(&[&b], "redirect_https = true", "")).await;
    let key_auth = format!("{TOK}.{THUMB}");
    p.app
        .rt
        .challenges
        .add_own(TOK, &key_auth, Duration::from_secs(60), Instant::now())
        .expect("adds");
    let r = fetch(p.addr, &format!("/.well-known/acme-challenge/{TOK}"), "").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), key_auth);
    let r = fetch(p.addr, "/page", "").await;
    assert_eq!(r.status, 302, "everything else is redirected");
    assert!(b.requests().is_empty());
}
