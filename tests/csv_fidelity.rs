//! HAProxy CSV fidelity against a real HAProxy 2.6 run: the same listen (two servers, cookie
//! insert), the same requests (new clients, then cookie holders), then the CSV columns tools
//! read must agree: `stot`, `lbtot` (server and BACKEND), `slim` (FRONTEND and BACKEND's
//! fullconn), `req_tot`, `hrsp_2xx`. Then prometheus-haproxy-exporter scrapes both CSVs and must
//! export the same metric families with the same values for the key series.
//!
//! Needs `haproxy` (`EDGELB_HAPROXY`) and `prometheus-haproxy-exporter`
//! (`EDGELB_HAPROXY_EXPORTER`); `EDGELB_SKIP_HAPROXY=1` skips when they are missing.

mod common_stats;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use common_stats::*;

#[path = "support/ports.rs"]
mod ports;
use ports::free_port;

fn tools() -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    let h = tool("EDGELB_HAPROXY", "/usr/sbin/haproxy");
    let e = tool(
        "EDGELB_HAPROXY_EXPORTER",
        "/usr/bin/prometheus-haproxy-exporter",
    );
    match (h, e) {
        (Some(h), Some(e)) => Some((h, e)),
        _ if std::env::var("EDGELB_SKIP_HAPROXY").as_deref() == Ok("1") => None,
        _ => panic!(
            "haproxy and prometheus-haproxy-exporter are needed (apt-get install haproxy \
             prometheus-haproxy-exporter), or EDGELB_SKIP_HAPROXY=1"
        ),
    }
}

/// A child process killed on drop.
struct Child(tokio::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

async fn wait_port(addr: SocketAddr) {
    wait_for(Duration::from_secs(10), "port open", || async move {
        tokio::net::TcpStream::connect(addr).await.is_ok()
    })
    .await;
}

/// The same traffic to one proxy: 6 new clients (round-robin), 3 pinned to s1 by cookie.
async fn traffic(proxy: SocketAddr) {
    for _ in 0..6 {
        let r = http(proxy, "GET", "/", &[], "").await;
        assert_eq!(r.status, 200);
    }
    for _ in 0..3 {
        let r = http(proxy, "GET", "/", &[("Cookie", "SERVERID=s1")], "").await;
        assert_eq!(r.status, 200);
    }
}

/// `name{labels} value` lines of an exposition, keyed by the whole series.
fn series(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| l.starts_with("haproxy_") && !l.starts_with("haproxy_exporter"))
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn families(text: &str) -> BTreeSet<String> {
    series(text)
        .keys()
        .map(|k| k.split('{').next().unwrap_or(k).to_string())
        .collect()
}

async fn exporter(bin: &std::path::Path, csv_url: &str) -> (Child, SocketAddr) {
    let port = free_port();
    let child = tokio::process::Command::new(bin)
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg(format!("--haproxy.scrape-uri={csv_url}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start prometheus-haproxy-exporter");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_port(addr).await;
    (Child(child), addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_and_exporter_agree_with_haproxy_2_6() {
    let Some((haproxy, exporter_bin)) = tools() else {
        eprintln!("skipped: EDGELB_SKIP_HAPROXY=1");
        return;
    };
    let backends = [Backend::start().await, Backend::start().await];
    let dir = tempfile::tempdir().unwrap();
    let (hp, hs) = (free_port(), free_port());
    let cfg = format!(
        "global\n  maxconn 100\ndefaults\n  mode http\n  timeout connect 5s\n  timeout client 5s\n  \
         timeout server 5s\nlisten webapp\n  bind 127.0.0.1:{hp}\n  balance roundrobin\n  \
         cookie SERVERID insert indirect nocache\n  server s1 {} cookie s1\n  server s2 {} cookie s2\n\
         listen stats\n  bind 127.0.0.1:{hs}\n  stats enable\n  stats uri /\n",
        backends[0].addr, backends[1].addr
    );
    std::fs::write(dir.path().join("h.cfg"), &cfg).unwrap();
    let _haproxy = Child(
        tokio::process::Command::new(&haproxy)
            .arg("-f")
            .arg(dir.path().join("h.cfg"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start haproxy"),
    );
    let hap_proxy: SocketAddr = format!("127.0.0.1:{hp}").parse().unwrap();
    let hap_stats: SocketAddr = format!("127.0.0.1:{hs}").parse().unwrap();
    // Only the stats port is probed: a probe connection would count as a FRONTEND session.
    wait_port(hap_stats).await;

    let toml = format!(
        "[global]\nmaxconn = 100\n[log]\naccess = \"off\"\n[stats]\ndashboard_bind = \"127.0.0.2:0\"\n\
         api_bind = \"127.0.0.2:0\"\n[[listen]]\nname = \"webapp\"\nbind = [\"127.0.0.1:0\"]\n\
         cookie = {{ name = \"SERVERID\" }}\n[[listen.server]]\nname = \"s1\"\naddress = \"{}\"\n\
         check = false\n[[listen.server]]\nname = \"s2\"\naddress = \"{}\"\ncheck = false\n",
        backends[0].addr, backends[1].addr
    );
    let app = edgelb::app::App::start(edgelb::app::Options {
        source: edgelb::app::Source::Text(toml),
        node: Some("lb1".into()),
    })
    .await
    .expect("edgelb starts");
    let our_proxy = app.listen_addr("webapp").unwrap();
    let our_stats = app.stats_addresses()[0];

    traffic(hap_proxy).await;
    traffic(our_proxy).await;

    let theirs = dechunk(&http(hap_stats, "GET", "/;csv", &[], "").await);
    let ours = http(our_stats, "GET", "/;csv", &[], "").await.body;
    let mut bytes = Vec::new();
    for sv in ["FRONTEND", "s1", "s2", "BACKEND"] {
        for col in [
            "stot", "lbtot", "slim", "req_tot", "hrsp_2xx", "status", "weight", "act",
        ] {
            if sv == "FRONTEND" && ["lbtot", "weight", "act"].contains(&col) {
                continue;
            }
            assert_eq!(
                csv_field(&ours, "webapp", sv, col),
                csv_field(&theirs, "webapp", sv, col),
                "{sv} {col}\nedgelb:\n{ours}\nhaproxy:\n{theirs}"
            );
        }
        for col in ["bin", "bout"] {
            bytes.push(format!(
                "{sv} {col}: edgelb {} haproxy {}",
                csv_field(&ours, "webapp", sv, col),
                csv_field(&theirs, "webapp", sv, col)
            ));
        }
    }
    eprintln!("byte counters (same 9 requests):\n  {}", bytes.join("\n  "));
    // Byte counters: HAProxy counts every exchange once on FRONTEND, BACKEND and the server, so
    // FRONTEND = BACKEND = the sum over the servers. (The absolute numbers differ: HAProxy counts
    // its internal HTX sizes; see the CHANGELOG.)
    for csv in [&ours, &theirs] {
        for col in ["bin", "bout"] {
            let n = |sv| csv_field(csv, "webapp", sv, col).parse::<u64>().unwrap();
            assert_eq!(n("FRONTEND"), n("BACKEND"), "{col}");
            assert_eq!(n("s1") + n("s2"), n("BACKEND"), "{col}");
        }
    }
    assert_eq!(csv_field(&ours, "webapp", "BACKEND", "lbtot"), "6");
    assert_eq!(csv_field(&ours, "webapp", "BACKEND", "slim"), "10");

    // prometheus-haproxy-exporter on both CSVs.
    let (_e1, hap_exp) = exporter(&exporter_bin, &format!("http://{hap_stats}/;csv")).await;
    let (_e2, our_exp) = exporter(&exporter_bin, &format!("http://{our_stats}/;csv")).await;
    let scrape = |a: SocketAddr| async move { dechunk(&http(a, "GET", "/metrics", &[], "").await) };
    let (theirs_m, ours_m) = (scrape(hap_exp).await, scrape(our_exp).await);
    let (tf, of) = (families(&theirs_m), families(&ours_m));
    let missing: Vec<_> = tf.difference(&of).collect();
    let extra: Vec<_> = of.difference(&tf).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "families only from HAProxy: {missing:?}; only from edgelb: {extra:?}"
    );
    let (ts, os) = (series(&theirs_m), series(&ours_m));
    let key = [
        "haproxy_up",
        "haproxy_backend_up",
        "haproxy_server_up",
        "haproxy_backend_server_selected_total",
        "haproxy_server_selected_total",
        "haproxy_backend_sessions_total",
        "haproxy_server_sessions_total",
        "haproxy_frontend_sessions_total",
        "haproxy_frontend_http_requests_total",
        "haproxy_backend_http_responses_total",
        "haproxy_server_http_responses_total",
        "haproxy_frontend_limit_sessions",
        "haproxy_backend_weight",
        "haproxy_server_weight",
        "haproxy_backend_active_servers",
    ];
    let mut compared = 0;
    for (k, v) in &ts {
        let fam = k.split('{').next().unwrap_or(k);
        if !key.contains(&fam)
            || k.contains("proxy=\"stats\"")
            || k.contains("backend=\"stats\"")
            || k.contains("frontend=\"stats\"")
        {
            continue;
        }
        assert_eq!(os.get(k), Some(v), "{k}\nedgelb exporter:\n{ours_m}");
        compared += 1;
    }
    assert!(compared >= 10, "compared {compared} series");
    drop(app);
}

/// The body of an answer, de-chunked when HAProxy sent it chunked.
fn dechunk(r: &Resp) -> String {
    if !r
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        return r.body.clone();
    }
    let mut out = String::new();
    let mut rest = r.body.as_str();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}

/// `bin`/`bout` mean what HAProxy's mean: bytes received from the client and bytes sent to it,
/// not the rewritten request edgelb sent upstream (here longer by `x-forwarded-for`, shorter by
/// the stripped `SERVERID` pair). Needs no HAProxy: the client's own byte counts are the truth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bin_and_bout_count_the_bytes_the_client_sent_and_received() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let backend = Backend::start().await;
    let toml = format!(
        "[log]\naccess = \"off\"\n[stats]\ndashboard_bind = \"127.0.0.2:0\"\n\
         api_bind = \"127.0.0.2:0\"\n[[listen]]\nname = \"webapp\"\nbind = [\"127.0.0.1:0\"]\n\
         forwardfor = true\ncookie = {{ name = \"SERVERID\" }}\n[[listen.server]]\nname = \"s1\"\n\
         address = \"{}\"\ncheck = false\n",
        backend.addr
    );
    let app = edgelb::app::App::start(edgelb::app::Options {
        source: edgelb::app::Source::Text(toml),
        node: Some("lb1".into()),
    })
    .await
    .expect("edgelb starts");
    let proxy = app.listen_addr("webapp").unwrap();
    let stats = app.stats_addresses()[0];
    let (mut sent, mut received) = (0u64, 0u64);
    for req in [
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_string(),
        "GET /a HTTP/1.1\r\nHost: x\r\nCookie: a=1; SERVERID=s1; b=2\r\nConnection: close\r\n\r\n"
            .to_string(),
        "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
            .to_string(),
    ] {
        let mut s = tokio::net::TcpStream::connect(proxy).await.unwrap();
        s.write_all(req.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).await.unwrap();
        assert!(
            answer.starts_with(b"HTTP/1.1 200"),
            "{:?}",
            String::from_utf8_lossy(&answer)
        );
        sent += req.len() as u64;
        received += answer.len() as u64;
    }
    let csv = http(stats, "GET", "/;csv", &[], "").await.body;
    for sv in ["FRONTEND", "s1", "BACKEND"] {
        let n = |col| csv_field(&csv, "webapp", sv, col).parse::<u64>().unwrap();
        assert_eq!(n("bin"), sent, "{sv} bin\n{csv}");
        assert_eq!(n("bout"), received, "{sv} bout\n{csv}");
    }
    drop(app);
}
