//! The same requests through HAProxy 2.6 (the seed config) and through edgelb, compared:
//! status, cookies, cache-control, the chosen server, and the exact head each backend received.
//! Needs `haproxy` on PATH (CI installs it); fails with a clear message otherwise unless
//! `EDGELB_SKIP_HAPROXY=1`.

mod common;

use std::time::Duration;

use common::*;

/// The seed's hapee-lb.cfg (global/defaults + `listen webapp`) over these backends.
fn seed_haproxy_cfg(port: u16, backends: &[&Backend]) -> String {
    weighted_haproxy_cfg(port, backends, &[])
}

fn weighted_haproxy_cfg(port: u16, backends: &[&Backend], weights: &[u32]) -> String {
    let mut servers = String::new();
    for (i, b) in backends.iter().enumerate() {
        let w = weights
            .get(i)
            .map(|w| format!(" weight {w}"))
            .unwrap_or_default();
        servers.push_str(&format!(
            "  server {n} {a} cookie {n} check{w}\n",
            n = b.name,
            a = b.addr
        ));
    }
    format!(
        "global\n  nbthread 1\ndefaults\n  mode http\n  option httplog\n  option dontlognull\n  option forwardfor except 10.0.0.0/8\n  option tcp-smart-accept\n  option tcp-smart-connect\n  option redispatch\n  retries 3\n  timeout connect 10s\n  timeout client 30s\n  timeout server 30s\nlisten webapp\n  bind 127.0.0.1:{port}\n  balance roundrobin\n  cookie SERVERID insert indirect nocache\n{servers}"
    )
}

async fn start_haproxy(dir: &std::path::Path, port: u16, backends: &[&Backend]) -> Haproxy {
    start_haproxy_cfg(dir, port, &seed_haproxy_cfg(port, backends)).await
}

/// What one request produced, in comparable form.
#[derive(Debug, PartialEq)]
struct Seen {
    status: u16,
    backend: String,
    set_cookie: Vec<String>,
    cache_control: Vec<String>,
    forwarded_head: String,
}

async fn run_case(
    addr: std::net::SocketAddr,
    backends: &[&Backend],
    req: &[u8],
    head_request: bool,
) -> Seen {
    let mut c = Client::connect(addr).await;
    c.send(req).await;
    let r = c.read(head_request).await.expect("response");
    let backend = r.backend();
    let forwarded_head = backends
        .iter()
        .find(|b| b.name == backend)
        .map(|b| b.last_request())
        .unwrap_or_default();
    // The Host header carries the proxy's port; normalise it.
    let forwarded_head = forwarded_head
        .replace(&format!("{}", addr.port()), "PORT")
        .split("\r\n\r\n")
        .next()
        .unwrap_or("")
        .to_string();
    Seen {
        status: r.status,
        backend,
        set_cookie: r
            .headers_named("set-cookie")
            .iter()
            .map(|s| s.to_string())
            .collect(),
        cache_control: r
            .headers_named("cache-control")
            .iter()
            .map(|s| s.to_string())
            .collect(),
        forwarded_head,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edgelb_and_haproxy_agree_on_the_seed_config() {
    if !haproxy_available() {
        return;
    }
    let names = [
        "ip-20-0-0-66.ec2.internal",
        "ip-20-0-0-67.ec2.internal",
        "ip-20-0-0-68.ec2.internal",
    ];
    let a = Backend::start(names[0]).await;
    let b = Backend::start(names[1]).await;
    let c = Backend::start(names[2]).await;
    let all = [&a, &b, &c];
    let dir = tempfile::tempdir().unwrap();
    let hport = free_port();
    let _hap = start_haproxy(dir.path(), hport, &all).await;
    let haddr: std::net::SocketAddr = format!("127.0.0.1:{hport}").parse().unwrap();
    let e = Proxy::start(&seed_config(&all, "", "")).await;
    // And edgelb run straight from the same HAProxy file (migration path).
    let eport = free_port();
    let cfg_path = write_file(dir.path(), "hapee-lb.cfg", &seed_haproxy_cfg(eport, &all));
    let from_haproxy = edgelb::app::App::start(edgelb::app::Options {
        source: edgelb::app::Source::File(cfg_path),
        node: Some("test".into()),
    })
    .await
    .expect("edgelb runs the HAProxy file");
    let faddr: std::net::SocketAddr = format!("127.0.0.1:{eport}").parse().unwrap();
    assert_eq!(from_haproxy.listen_addr("webapp"), Some(faddr));

    let cookie2 = format!("Cookie: a=1; SERVERID={}; b=2\r\n", names[1]);
    let cookie_blanks = format!("Cookie: a=1 ;  SERVERID={}  ; b=2\r\n", names[2]);
    let cases: Vec<(String, Vec<u8>, bool)> = vec![
        (
            "first visit, ETag".into(),
            get("/first?h=ETag:%20x", ""),
            false,
        ),
        ("second visit rr".into(), get("/second", ""), false),
        (
            "third visit rr".into(),
            get("/third?h=Cache-Control:%20max-age=60", ""),
            false,
        ),
        (
            "valid cookie".into(),
            get("/valid?h=ETag:%20x", &cookie2),
            false,
        ),
        (
            "cookie separators".into(),
            get("/sep", &cookie_blanks),
            false,
        ),
        (
            "unknown cookie".into(),
            get("/unknown", "Cookie: SERVERID=nosuch; x=y\r\n"),
            false,
        ),
        (
            "empty cookie".into(),
            get("/empty", "Cookie: SERVERID=\r\n"),
            false,
        ),
        (
            "lower-case name is not ours".into(),
            get("/lc", &format!("Cookie: serverid={}\r\n", names[0])),
            false,
        ),
        (
            "client xff".into(),
            get("/xff", "X-Forwarded-For: 203.0.113.7\r\n"),
            false,
        ),
        ("app sets SERVERID".into(), get("/setcookie", ""), false),
        (
            "app sets SERVERID, valid cookie".into(),
            get("/setcookie", &cookie2),
            false,
        ),
        (
            "post with body".into(),
            b"POST /post?h=ETag:%20x HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"
                .to_vec(),
            false,
        ),
        (
            "http/1.0".into(),
            b"GET /ten HTTP/1.0\r\n\r\n".to_vec(),
            false,
        ),
        (
            "head".into(),
            b"HEAD /head?h=ETag:%20x HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
            true,
        ),
        (
            "500 from app".into(),
            get("/status/500?h=ETag:%20x", ""),
            false,
        ),
        (
            "404 cacheable".into(),
            get(
                "/status/404?h=Last-Modified:%20Mon,%2001%20Jan%202024%2000:00:00%20GMT",
                "",
            ),
            false,
        ),
        (
            "no-store".into(),
            get("/ns?h=ETag:%20x&h=Cache-Control:%20no-store", ""),
            false,
        ),
    ];
    let mut diffs = Vec::new();
    for (name, req, head) in &cases {
        let h = run_case(haddr, &all, req, *head).await;
        let ed = run_case(e.addr, &all, req, *head).await;
        if h != ed {
            diffs.push(format!("case {name}:\n  haproxy: {h:?}\n  edgelb:  {ed:?}"));
        }
        let mut fh = run_case(faddr, &all, req, *head).await;
        fh.forwarded_head = fh.forwarded_head.replace(&eport.to_string(), "PORT");
        if h != fh {
            diffs.push(format!(
                "case {name} (edgelb run -c hapee-lb.cfg):\n  haproxy: {h:?}\n  edgelb:  {fh:?}"
            ));
        }
    }
    // Malformed input: both refuse with 400.
    for bad in [
        &b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: t\r\nBad Header: x\r\n\r\n",
        b"NOT-HTTP\r\n\r\n",
    ] {
        let h = raw_exchange(haddr, bad, Duration::from_secs(3)).await;
        let ed = raw_exchange(e.addr, bad, Duration::from_secs(3)).await;
        if h != ed {
            diffs.push(format!(
                "malformed {:?}:\n  haproxy: {:?}\n  edgelb:  {:?}",
                String::from_utf8_lossy(bad),
                String::from_utf8_lossy(&h),
                String::from_utf8_lossy(&ed)
            ));
        }
    }
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_round_robin_order_is_haproxys() {
    if !haproxy_available() {
        return;
    }
    let (a, b, c) = (
        Backend::start("app1").await,
        Backend::start("app2").await,
        Backend::start("app3").await,
    );
    let all = [&a, &b, &c];
    for weights in [[3u32, 2, 1], [1, 2, 3], [5, 3, 1]] {
        let dir = tempfile::tempdir().unwrap();
        let hport = free_port();
        let _hap = start_haproxy_cfg(
            dir.path(),
            hport,
            &weighted_haproxy_cfg(hport, &all, &weights),
        )
        .await;
        let haddr: std::net::SocketAddr = format!("127.0.0.1:{hport}").parse().unwrap();
        let mut cfg = seed_config(&all, "", "");
        for (i, w) in weights.iter().enumerate() {
            cfg = cfg.replacen(
                &format!("name = \"app{}\"\n", i + 1),
                &format!("name = \"app{}\"\nweight = {w}\n", i + 1),
                1,
            );
        }
        let e = Proxy::start(&cfg).await;
        let n: u32 = 2 * weights.iter().sum::<u32>();
        let (mut h, mut ed) = (Vec::new(), Vec::new());
        for _ in 0..n {
            h.push(fetch(haddr, "/", "").await.backend());
            ed.push(fetch(e.addr, "/", "").await.backend());
        }
        assert_eq!(h, ed, "weights {weights:?}");
    }
}
