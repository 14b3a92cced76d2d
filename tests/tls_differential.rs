//! One HAProxy file with `bind ... ssl crt FILE` run by HAProxy 2.6 and by edgelb (imported at
//! load): the same requests over TLS give the same statuses, cookies, chosen servers and the
//! same head at each backend (X-Forwarded-For, X-Forwarded-Proto), as over plain HTTP.

mod common;
mod common_tls;

use std::net::SocketAddr;

use common::{free_port, haproxy_available, start_haproxy_cfg, write_file, Backend};
use common_tls::{client_config, connect, Ca};

fn haproxy_cfg(port: u16, pem: &std::path::Path, backends: &[&Backend]) -> String {
    let mut servers = String::new();
    for b in backends {
        servers.push_str(&format!(
            "  server {n} {a} cookie {n} check\n",
            n = b.name,
            a = b.addr
        ));
    }
    format!(
        "global\n  nbthread 1\ndefaults\n  mode http\n  option httplog\n  option dontlognull\n  \
         option forwardfor except 10.0.0.0/8\n  option redispatch\n  retries 3\n  \
         timeout connect 10s\n  timeout client 30s\n  timeout server 30s\n\
         listen webapp\n  bind 127.0.0.1:{port} ssl crt {}\n  balance roundrobin\n  \
         cookie SERVERID insert indirect nocache\n  \
         http-request set-header X-Forwarded-Proto https if {{ ssl_fc }}\n{servers}",
        pem.display()
    )
}

#[derive(Debug, Clone, PartialEq)]
struct Seen {
    status: String,
    backend: String,
    set_cookie: Option<String>,
    cache_control: Option<String>,
    head: String,
}

/// Requests on one TLS connection (keep-alive), each compared.
async fn run(addr: SocketAddr, ca: &Ca, backends: &[&Backend], reqs: &[&str]) -> Vec<Seen> {
    let mut s = connect(addr, "www.example.com", client_config(ca, &["http/1.1"]))
        .await
        .expect("handshake");
    let mut out = Vec::new();
    for extra in reqs {
        let (head, body) = common_tls::get(&mut s, "/p?q=1", extra)
            .await
            .expect("answer");
        let body = String::from_utf8_lossy(&body);
        let backend = body
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("server="))
            .unwrap_or("")
            .to_string();
        let forwarded = backends
            .iter()
            .find(|b| b.name == backend)
            .map(|b| b.last_request())
            .unwrap_or_default();
        out.push(Seen {
            status: head.lines().next().unwrap_or("").to_string(),
            backend,
            set_cookie: common_tls::header(&head, "set-cookie").map(str::to_string),
            cache_control: common_tls::header(&head, "cache-control").map(str::to_string),
            head: forwarded.split("\r\n\r\n").next().unwrap_or("").to_string(),
        });
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_haproxy_file_over_tls_gives_the_same_answers_from_haproxy_and_edgelb() {
    if !haproxy_available() {
        return;
    }
    let a = Backend::start("app1").await;
    let b = Backend::start("app2").await;
    let c = Backend::start("app3").await;
    let all = [&a, &b, &c];
    let ca = Ca::new();
    let leaf = ca.issue(&["www.example.com"], 5);
    let dir = tempfile::tempdir().unwrap();
    // HAProxy's combined PEM (certificate then key): a secret file for edgelb's preflight.
    let pem = dir.path().join("site.pem");
    common_tls::write_atomic(
        &pem,
        format!("{}{}", leaf.cert_pem, leaf.key_pem).as_bytes(),
        0o600,
    );
    let hport = free_port();
    let _h = start_haproxy_cfg(dir.path(), hport, &haproxy_cfg(hport, &pem, &all)).await;
    let eport = free_port();
    let path = write_file(dir.path(), "edge.cfg", &haproxy_cfg(eport, &pem, &all));
    let _e = edgelb::app::App::start(edgelb::app::Options {
        source: edgelb::app::Source::File(path),
        node: Some("t".into()),
    })
    .await
    .expect("edgelb runs the HAProxy file with its ssl bind");
    let h = SocketAddr::from(([127, 0, 0, 1], hport));
    let e = SocketAddr::from(([127, 0, 0, 1], eport));
    let reqs: &[&str] = &[
        "",
        "",
        "X-Forwarded-Proto: http\r\nX-Forwarded-For: 192.0.2.9\r\n",
        "Cookie: a=1; SERVERID=app2; b=2\r\n",
        "Cookie: SERVERID=nope\r\n",
        "",
    ];
    // Each proxy sees the same sequence: first on one connection, then one per request.
    let mut seen_h = run(h, &ca, &all, reqs).await;
    let mut seen_e = run(e, &ca, &all, reqs).await;
    for r in reqs {
        seen_h.extend(run(h, &ca, &all, &[r]).await);
        seen_e.extend(run(e, &ca, &all, &[r]).await);
    }
    for (i, (x, y)) in seen_h.iter().zip(&seen_e).enumerate() {
        let norm = |s: &Seen| {
            let mut s = s.clone();
            s.head = s
                .head
                .replace(&hport.to_string(), "PORT")
                .replace(&eport.to_string(), "PORT");
            s
        };
        assert_eq!(norm(x), norm(y), "request {i}");
    }
    assert_eq!(seen_h.len(), 12);
    assert!(
        seen_e[0].head.contains("x-forwarded-proto: https"),
        "{:?}",
        seen_e[0]
    );
    assert!(
        seen_e[2].head.contains("x-forwarded-for: 192.0.2.9"),
        "{:?}",
        seen_e[2]
    );
}
