//! Backend faults while clients keep sending: a killed backend, a stalled one, one that resets
//! mid-response, one that sends garbage, and health checks taking a dead server out. Every
//! client loop is bounded in count and time; every request must end (a response or a close),
//! never hang, and the proxy must keep serving afterwards.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One request's fate.
#[derive(Debug, Clone)]
struct Shot {
    started: Instant,
    status: Option<u16>,
    backend: String,
    took: Duration,
}

/// `workers` concurrent keep-alive clients, each sending up to `per_worker` GETs of `path` (with
/// `extra` headers) until `until`. A client whose connection closes reconnects. A request that
/// gets no answer within 10 s counts as hung (`status: None` and `took >= 10 s`).
async fn load(
    addr: SocketAddr,
    workers: usize,
    per_worker: usize,
    path: &'static str,
    extra: &'static str,
    until: Instant,
) -> Vec<Shot> {
    let mut tasks = Vec::new();
    for _ in 0..workers {
        tasks.push(tokio::spawn(async move {
            let mut shots = Vec::new();
            let mut c: Option<Client> = None;
            for _ in 0..per_worker {
                if Instant::now() >= until {
                    break;
                }
                if c.is_none() {
                    c = Some(Client::connect(addr).await);
                }
                let cl = c.as_mut().unwrap();
                let started = Instant::now();
                cl.send(&get(path, extra)).await;
                let r = tokio::time::timeout(Duration::from_secs(10), cl.read(false))
                    .await
                    .ok()
                    .flatten();
                let took = started.elapsed();
                match r {
                    Some(r) => {
                        if r.header("connection") == Some("close") {
                            c = None;
                        }
                        shots.push(Shot {
                            started,
                            status: Some(r.status),
                            backend: r.backend(),
                            took,
                        });
                    }
                    None => {
                        c = None;
                        shots.push(Shot {
                            started,
                            status: None,
                            backend: String::new(),
                            took,
                        });
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            shots
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

fn hung(shots: &[Shot]) -> Vec<&Shot> {
    shots
        .iter()
        .filter(|s| s.took >= Duration::from_secs(10))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_backend_redispatches_no_cookie_requests_without_hangs() {
    let (a, b, c) = (
        Backend::start("app1").await,
        Backend::start("app2").await,
        Backend::start("app3").await,
    );
    let p = Proxy::start(&seed_config(
        &[&a, &b, &c],
        "timeout_connect = \"1s\"\ntimeout_server = \"3s\"\n",
        "",
    ))
    .await;
    let until = Instant::now() + Duration::from_secs(4);
    let loader = tokio::spawn(load(p.addr, 8, 200, "/", "", until));
    tokio::time::sleep(Duration::from_millis(400)).await;
    let killed_at = Instant::now();
    b.kill();
    let shots = loader.await.unwrap();
    assert!(shots.len() > 100, "only {} requests", shots.len());
    assert!(hung(&shots).is_empty(), "hung: {:?}", hung(&shots));
    let settle = killed_at + Duration::from_millis(100);
    let after: Vec<&Shot> = shots.iter().filter(|s| s.started > settle).collect();
    assert!(
        after.len() > 50,
        "only {} requests after the kill",
        after.len()
    );
    assert!(
        after.iter().all(|s| s.status == Some(200)),
        "after the kill: {:?}",
        after
            .iter()
            .filter(|s| s.status != Some(200))
            .collect::<Vec<_>>()
    );
    assert!(after.iter().all(|s| s.backend != "app2"));
    // Requests in flight at the kill instant end with a response or a close, nothing else.
    assert!(shots
        .iter()
        .all(|s| matches!(s.status, Some(200) | Some(502) | None)));
    assert_eq!(fetch(p.addr, "/", "").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_backend_gives_504_at_timeout_server_and_others_are_unaffected() {
    let good = Backend::start("app1").await;
    let stall = StallBackend::start().await;
    let p = Proxy::start(&seed_config_addrs(
        &[("app1", good.addr), ("app2", stall.addr)],
        "timeout_server = \"1s\"\n",
        "",
    ))
    .await;
    let until = Instant::now() + Duration::from_secs(3);
    // Pinned to the good server by cookie, concurrently with round-robin clients that hit the
    // stalled server every other request.
    let pinned = tokio::spawn(load(
        p.addr,
        4,
        200,
        "/",
        "Cookie: SERVERID=app1\r\n",
        until,
    ));
    let rr = tokio::spawn(load(p.addr, 4, 20, "/", "", until));
    let pinned = pinned.await.unwrap();
    let rr = rr.await.unwrap();
    assert!(hung(&pinned).is_empty() && hung(&rr).is_empty());
    assert!(pinned.len() > 50);
    assert!(pinned
        .iter()
        .all(|s| s.status == Some(200) && s.backend == "app1"));
    let worst = pinned.iter().map(|s| s.took).max().unwrap();
    assert!(worst < Duration::from_millis(500), "pinned worst {worst:?}");
    let timeouts: Vec<&Shot> = rr.iter().filter(|s| s.status == Some(504)).collect();
    assert!(!timeouts.is_empty(), "{rr:?}");
    for s in &timeouts {
        assert!(
            s.took >= Duration::from_millis(900) && s.took < Duration::from_millis(2500),
            "504 after {:?}",
            s.took
        );
    }
    assert!(rr.iter().all(|s| matches!(s.status, Some(200) | Some(504))));
    assert!(stall.accepted.load(Ordering::SeqCst) > 0);
    assert_eq!(
        fetch(p.addr, "/", "Cookie: SERVERID=app1\r\n").await.status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_reset_mid_response_truncates_and_closes_the_client() {
    let rst = ScriptedBackend::start(
        b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\nx-backend: rst\r\n\r\n0123456789",
        true,
    )
    .await;
    let p = Proxy::start(&seed_config_addrs(
        &[("rst", rst.addr)],
        "timeout_server = \"5s\"\ntimeout_client = \"5s\"\n",
        "",
    ))
    .await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let addr = p.addr;
        tasks.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(&get("/", "")).await.unwrap();
            let mut out = Vec::new();
            let t0 = Instant::now();
            let r = tokio::time::timeout(Duration::from_secs(4), s.read_to_end(&mut out)).await;
            (r.is_ok(), out, t0.elapsed())
        }));
    }
    for t in tasks {
        let (ended, out, took) = t.await.unwrap();
        assert!(ended, "client connection hung ({took:?})");
        let text = String::from_utf8_lossy(&out);
        // Either the head and part of the body then a close, or (if the RST beat the head) a
        // 502; never the full promised 1000 bytes, never a hang.
        if text.starts_with("HTTP/1.1 200") {
            let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
            assert!(body.len() < 1000, "{text}");
        } else {
            assert!(text.starts_with("HTTP/1.1 502"), "{text:?}");
        }
    }
    assert!(rst.accepted.load(Ordering::SeqCst) >= 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_backend_gives_502_under_load_and_good_requests_pass() {
    let a = Backend::start("app1").await;
    let p = Proxy::start(&seed_config(&[&a], "", "")).await;
    let until = Instant::now() + Duration::from_secs(3);
    let bad = tokio::spawn(load(p.addr, 4, 30, "/garbage", "", until));
    let good = tokio::spawn(load(p.addr, 4, 100, "/ok", "", until));
    let bad = bad.await.unwrap();
    let good = good.await.unwrap();
    assert!(hung(&bad).is_empty() && hung(&good).is_empty());
    assert!(bad.len() >= 40);
    assert!(bad.iter().all(|s| s.status == Some(502)), "{bad:?}");
    assert!(good.iter().all(|s| s.status == Some(200)), "{good:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_take_a_killed_server_out_of_rotation() {
    let (a, b, c) = (
        Backend::start("app1").await,
        Backend::start("app2").await,
        Backend::start("app3").await,
    );
    let cfg = seed_config(
        &[&a, &b, &c],
        "timeout_connect = \"1s\"\n[listen.health]\ninter = \"100ms\"\nrise = 2\nfall = 2\n",
        "",
    )
    .replace("check = false", "check = true");
    let p = Proxy::start(&cfg).await;
    // All UP and serving.
    let r: Vec<String> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(fetch(p.addr, "/", "").await.backend());
        }
        v
    };
    assert_eq!(r.len(), 3);
    let until = Instant::now() + Duration::from_secs(3);
    let loader = tokio::spawn(load(p.addr, 4, 300, "/", "", until));
    tokio::time::sleep(Duration::from_millis(300)).await;
    b.kill();
    let snap = p.app.rt.load();
    let listen = snap.listens[0].clone();
    let srv = listen.server_by_name("app2").unwrap().clone();
    let t0 = Instant::now();
    while srv.live.is_up() && t0.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!srv.live.is_up(), "app2 still UP 3 s after it died");
    let down_after = t0.elapsed();
    let lbtot = srv.live.counters.lbtot.load(Ordering::Relaxed);
    let redis = listen.shared.backend.wredis.load(Ordering::Relaxed);
    let shots = loader.await.unwrap();
    assert!(hung(&shots).is_empty());
    assert!(shots
        .iter()
        .all(|s| matches!(s.status, Some(200) | Some(502) | None)));
    // Once DOWN, round-robin never picks it again: no new picks, no new redispatches.
    for _ in 0..30 {
        let r = fetch(p.addr, "/", "").await;
        assert_eq!(r.status, 200);
        assert_ne!(r.backend(), "app2");
    }
    assert_eq!(srv.live.counters.lbtot.load(Ordering::Relaxed), lbtot);
    assert_eq!(listen.shared.backend.wredis.load(Ordering::Relaxed), redis);
    assert!(down_after < Duration::from_secs(2), "{down_after:?}");
    // A cookie naming the DOWN server is redispatched with a new cookie.
    let r = fetch(p.addr, "/", "Cookie: SERVERID=app2\r\n").await;
    assert_eq!(r.status, 200);
    assert_ne!(r.backend(), "app2");
    assert!(r.header("set-cookie").is_some());
}
