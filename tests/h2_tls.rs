//! HTTP/2 over the TLS port, chosen by ALPN: the `h2` crate over rustls, curl `--http2`, and a
//! real headless Chromium that loads a page from the backends, gets its SERVERID cookie, sticks
//! to that server and reports that the page came over h2. HTTP/1.1 clients keep HTTP/1.1 on the
//! same port.

mod common;
mod common_tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use common::{free_port, seed_config, Backend, Proxy};
use common_tls::{client_config, connect, get, write_leaf, Ca};
use sha2::Digest as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Site {
    ca: Ca,
    dir: tempfile::TempDir,
    leaf: common_tls::Leaf,
}

fn site() -> Site {
    let ca = Ca::new();
    let dir = tempfile::tempdir().unwrap();
    let leaf = ca.issue(&["www.example.com"], 21);
    write_leaf(dir.path(), "www", &leaf);
    ca.write(dir.path());
    Site { ca, dir, leaf }
}

/// A TLS listen offering `h2, http/1.1` over `backends`.
async fn start(site: &Site, backends: &[&Backend], top: &str) -> (Proxy, SocketAddr) {
    let port = free_port();
    let d = site.dir.path().display();
    let tls = format!(
        "[listen.tls]\nbind = [\"127.0.0.1:{port}\"]\nalpn = [\"h2\", \"http/1.1\"]\n\
         certs = [{{ cert = \"{d}/www.pem\", key = \"{d}/www.key\" }}]\n"
    );
    let mut cfg = seed_config(backends, &tls, "");
    if !top.is_empty() {
        cfg = cfg.replace("access = \"off\"", top);
    }
    let p = Proxy::start(&cfg).await;
    (p, SocketAddr::from(([127, 0, 0, 1], port)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_h2_streams_take_the_request_path_and_http11_stays_http11() {
    let (a, b) = (Backend::start("s1").await, Backend::start("s2").await);
    let site = site();
    let logdir = tempfile::tempdir().unwrap();
    let log = logdir.path().join("access.log");
    let (p, addr) = start(&site, &[&a, &b], &format!("access = \"{}\"", log.display())).await;

    let tls = connect(
        addr,
        "www.example.com",
        client_config(&site.ca, &["h2", "http/1.1"]),
    )
    .await
    .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (send, conn) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut send = send.ready().await.unwrap();
    let mut backends = Vec::new();
    for path in ["/one", "/two"] {
        let req = http::Request::builder()
            .uri(format!("https://www.example.com{path}"))
            .body(())
            .unwrap();
        let (resp, _) = send.send_request(req, true).unwrap();
        let resp = resp.await.unwrap();
        assert_eq!(resp.status(), 200);
        let sc = resp.headers()["set-cookie"].to_str().unwrap().to_string();
        let mut body = resp.into_body();
        let mut text = Vec::new();
        while let Some(d) = body.data().await {
            let d = d.unwrap();
            let _ = body.flow_control().release_capacity(d.len());
            text.extend_from_slice(&d);
        }
        let text = String::from_utf8_lossy(&text).into_owned();
        assert!(sc.starts_with("SERVERID="), "{sc}");
        backends.push(text.lines().next().unwrap_or("").to_string());
        send = send.ready().await.unwrap();
    }
    assert_eq!(backends, ["server=s1", "server=s2"]);
    let req = a.last_request();
    assert!(
        req.starts_with("GET /one HTTP/1.1\r\nhost: www.example.com\r\n"),
        "{req}"
    );
    assert!(req.contains("\r\nx-forwarded-for: 127.0.0.1"), "{req}");

    // An HTTP/1.1-only client on the same port keeps HTTP/1.1.
    let mut s = connect(
        addr,
        "www.example.com",
        client_config(&site.ca, &["http/1.1"]),
    )
    .await
    .unwrap();
    let (head, _) = get(&mut s, "/three", "").await.unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    drop(s);
    drop(send);
    drop(p);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.lines()
            .any(|l| l.ends_with("\"GET https://www.example.com/one HTTP/2.0\"")),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.ends_with("\"GET /three HTTP/1.1\"")),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_http2_over_tls_gets_h2() {
    let a = Backend::start("s1").await;
    let site = site();
    let (_p, addr) = start(&site, &[&a], "").await;
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--http2", "-i", "--cacert"])
        .arg(site.dir.path().join("ca.pem"))
        .arg("--resolve")
        .arg(format!("www.example.com:{}:127.0.0.1", addr.port()))
        .args([
            "-w",
            "\n%{http_version}",
            &format!("https://www.example.com:{}/hello", addr.port()),
        ])
        .output()
        .await
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.starts_with("HTTP/2 200"), "{text}");
    assert!(text.contains("set-cookie: SERVERID=s1"), "{text}");
    assert!(text.ends_with("\n2"), "{text}");
}

/// A backend that serves an HTML page whose script reports the protocol the page came over,
/// its cookies, and which server two later fetches reached.
async fn html_backend(name: &'static str) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let mut tmp = [0u8; 4096];
                    let n = match s.read(&mut tmp).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    buf.extend_from_slice(&tmp[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                        buf.drain(..end + 4);
                        let (ctype, body) = if head.starts_with("GET /api") {
                            ("text/plain", name.to_string())
                        } else if head.starts_with("GET / ") {
                            ("text/html", PAGE.to_string())
                        } else {
                            ("text/plain", "not here".to_string())
                        };
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if s.write_all(resp.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, task)
}

const PAGE: &str = r#"<!doctype html><html><body><div id="r">pending</div><script>
(async () => {
  const nav = performance.getEntriesByType("navigation")[0];
  const a = await (await fetch("/api/1")).text();
  const b = await (await fetch("/api/2")).text();
  document.getElementById("r").textContent =
    "RESULT proto=" + nav.nextHopProtocol + " cookie=" + document.cookie + " api=" + a + "," + b + " END";
})();
</script></body></html>"#;

fn chromium() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("EDGELB_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_loads_a_page_over_h2_gets_its_cookie_and_sticks_to_its_server() {
    let Some(bin) = chromium() else {
        if std::env::var("EDGELB_SKIP_BROWSER").as_deref() == Ok("1") {
            return;
        }
        panic!("chromium not found (install it, EDGELB_CHROMIUM, or EDGELB_SKIP_BROWSER=1)");
    };
    let (a, _ta) = html_backend("s1").await;
    let (b, _tb) = html_backend("s2").await;
    let site = site();
    let port = free_port();
    let d = site.dir.path().display();
    let cfg = format!(
        "[log]\naccess = \"off\"\n[[listen]]\nname = \"webapp\"\nbind = [\"127.0.0.1:0\"]\n\
         forwardfor = {{ except = [\"10.0.0.0/8\"] }}\n\
         cookie = {{ name = \"SERVERID\", insert = true, indirect = true, nocache = true }}\n\
         [listen.tls]\nbind = [\"127.0.0.1:{port}\"]\nalpn = [\"h2\", \"http/1.1\"]\n\
         certs = [{{ cert = \"{d}/www.pem\", key = \"{d}/www.key\" }}]\n\
         [[listen.server]]\nname = \"s1\"\naddress = \"{a}\"\ncheck = false\n\
         [[listen.server]]\nname = \"s2\"\naddress = \"{b}\"\ncheck = false\n"
    );
    let _p = Proxy::start(&cfg).await;
    // Trust exactly the test certificate's key, as a pinned SPKI.
    let key = rcgen::KeyPair::from_pem(&site.leaf.key_pem).unwrap();
    let spki = base64::engine::general_purpose::STANDARD
        .encode(sha2::Sha256::digest(key.public_key_der()));
    let profile = tempfile::tempdir().unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(bin)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--virtual-time-budget=5000",
                "--dump-dom",
            ])
            .arg(format!("--ignore-certificate-errors-spki-list={spki}"))
            .arg("--host-resolver-rules=MAP www.example.com 127.0.0.1")
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(format!("https://www.example.com:{port}/"))
            .kill_on_drop(true)
            .stdin(std::process::Stdio::null())
            .output(),
    )
    .await
    .expect("chromium finished within 60 s")
    .expect("chromium started");
    let dom = String::from_utf8_lossy(&out.stdout);
    let start = dom.find("RESULT ").unwrap_or_else(|| {
        panic!(
            "no result in the page:\n{dom}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let result = &dom[start
        ..dom[start..]
            .find(" END")
            .map(|e| start + e)
            .unwrap_or(dom.len())];
    // The page came over h2, carries the inserted cookie, and both fetches stuck to its server.
    assert!(result.contains("proto=h2 "), "{result}");
    assert!(result.contains("cookie=SERVERID=s1"), "{result}");
    assert!(result.contains("api=s1,s1"), "{result}");
}
