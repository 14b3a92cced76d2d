//! TLS termination end to end: certificates chosen by SNI (exact, wildcard, default), real
//! clients (rustls, curl, openssl), versions refused, the request path unchanged over TLS
//! (cookie, X-Forwarded-For, keep-alive, pipelining, WebSocket), and bad certificates refused
//! with file and reason.

mod common;
mod common_tls;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{free_port, seed_config, Backend, Proxy};
use common_tls::{any_cert_config, client_config, connect, get, header, served, write_leaf, Ca};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Site {
    ca: Ca,
    dir: tempfile::TempDir,
    www: common_tls::Leaf,
    wild: common_tls::Leaf,
    fallback: common_tls::Leaf,
}

/// Three certificates: `www.example.com` (exact), `*.example.org` (wildcard), and
/// `default.test` (the default, listed first).
fn site() -> Site {
    let ca = Ca::new();
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    let www = ca.issue(&["www.example.com", "example.com"], 11);
    let wild = ca.issue(&["*.example.org"], 12);
    let fallback = ca.issue(&["default.test"], 13);
    write_leaf(&certs, "default", &fallback);
    write_leaf(&certs, "www", &www);
    write_leaf(&certs, "wild", &wild);
    ca.write(dir.path());
    Site {
        ca,
        dir,
        www,
        wild,
        fallback,
    }
}

fn tls_table(site: &Site, port: u16, extra: &str) -> String {
    let d = site.dir.path().join("certs");
    let d = d.display();
    format!(
        "[listen.tls]\nbind = [\"127.0.0.1:{port}\"]\n\
         certs = [{{ cert = \"{d}/default.pem\", key = \"{d}/default.key\" }}, \
                  {{ cert = \"{d}/www.pem\", key = \"{d}/www.key\" }}, \
                  {{ cert = \"{d}/wild.pem\", key = \"{d}/wild.key\" }}]\n{extra}\n"
    )
}

async fn start(site: &Site, backends: &[&Backend], extra_tls: &str) -> (Proxy, SocketAddr) {
    let port = free_port();
    let cfg = seed_config(backends, &tls_table(site, port, extra_tls), "");
    let p = Proxy::start(&cfg).await;
    (p, SocketAddr::from(([127, 0, 0, 1], port)))
}

#[tokio::test]
async fn sni_picks_exact_then_wildcard_then_the_default_certificate() {
    let a = Backend::start("a").await;
    let site = site();
    let (_p, addr) = start(&site, &[&a], "").await;
    let trust = client_config(&site.ca, &["http/1.1"]);

    let mut s = connect(addr, "www.example.com", trust.clone())
        .await
        .unwrap();
    assert_eq!(served(&s), site.www.der, "exact name");
    let (head, body) = get(&mut s, "/", "").await.expect("a response over TLS");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(String::from_utf8_lossy(&body).contains("server=a"));

    let s = connect(addr, "EXAMPLE.com", trust.clone()).await.unwrap();
    assert_eq!(served(&s), site.www.der, "names match case-insensitively");

    let s = connect(addr, "api.example.org", trust.clone())
        .await
        .unwrap();
    assert_eq!(served(&s), site.wild.der, "wildcard");

    // A wildcard covers one label only; an unknown name and no SNI at all get the default.
    let any = any_cert_config(&["http/1.1"]);
    for sni in [
        "a.b.example.org",
        "example.org",
        "unknown.test",
        "127.0.0.1",
    ] {
        let s = connect(addr, sni, any.clone()).await.unwrap();
        assert_eq!(served(&s), site.fallback.der, "{sni} gets the default");
    }
}

#[tokio::test]
async fn strict_sni_refuses_unknown_names_and_counts_the_failure() {
    let a = Backend::start("a").await;
    let site = site();
    let (p, addr) = start(&site, &[&a], "strict_sni = true").await;
    let any = any_cert_config(&["http/1.1"]);
    assert!(connect(addr, "unknown.test", any.clone()).await.is_err());
    assert!(connect(addr, "www.example.com", any).await.is_ok());
    let snap = p.app.rt.load();
    let tls = snap.listens[0].tls.as_ref().unwrap();
    // The failure is counted once the server side has seen the alert go out.
    for _ in 0..50 {
        if tls
            .shared
            .counters
            .handshake_failures
            .load(Ordering::Relaxed)
            == 1
            && tls.shared.counters.handshakes.load(Ordering::Relaxed) == 1
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        tls.shared
            .counters
            .handshake_failures
            .load(Ordering::Relaxed),
        1
    );
    assert_eq!(tls.shared.counters.handshakes.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn curl_over_tls_with_the_test_ca_negotiates_http11_by_alpn() {
    let a = Backend::start("a").await;
    let site = site();
    let (_p, addr) = start(&site, &[&a], "").await;
    let ca = site.dir.path().join("ca.pem");
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(&ca)
        .arg("--resolve")
        .arg(format!("www.example.com:{}:127.0.0.1", addr.port()))
        .args([
            "-w",
            "\n%{http_version} %{ssl_verify_result}",
            &format!("https://www.example.com:{}/hello", addr.port()),
        ])
        .output()
        .await
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("server=a"), "{text}");
    assert!(text.ends_with("\n1.1 0"), "{text}");
    // The backend saw plain HTTP/1.1 with our X-Forwarded-For.
    let req = a.last_request();
    assert!(req.starts_with("GET /hello HTTP/1.1"), "{req}");
    assert!(req.contains("x-forwarded-for: 127.0.0.1"), "{req}");
}

/// A TLS 1.1 ClientHello (no supported_versions extension) with SNI.
fn tls11_client_hello() -> Vec<u8> {
    let mut body = vec![0x03, 0x02];
    body.extend_from_slice(&[7u8; 32]);
    body.push(0); // session id
    body.extend_from_slice(&[0x00, 0x04, 0xc0, 0x13, 0xc0, 0x14]); // ECDHE-RSA-AES-CBC-SHA
    body.extend_from_slice(&[0x01, 0x00]); // no compression
    let host = b"www.example.com";
    let mut sni = vec![0x00, 0x00];
    let list_len = host.len() + 3;
    sni.extend_from_slice(&((list_len + 2) as u16).to_be_bytes());
    sni.extend_from_slice(&(list_len as u16).to_be_bytes());
    sni.push(0);
    sni.extend_from_slice(&(host.len() as u16).to_be_bytes());
    sni.extend_from_slice(host);
    body.extend_from_slice(&(sni.len() as u16).to_be_bytes());
    body.extend_from_slice(&sni);
    let mut hs = vec![0x01, 0x00];
    hs.extend_from_slice(&(body.len() as u16).to_be_bytes());
    hs.extend_from_slice(&body);
    let mut rec = vec![0x16, 0x03, 0x01];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}

#[tokio::test]
async fn tls_1_1_is_refused_with_a_fatal_alert() {
    let a = Backend::start("a").await;
    let site = site();
    let (p, addr) = start(&site, &[&a], "").await;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(&tls11_client_hello()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    // An alert record: fatal (2), handshake_failure (40; rustls's answer to a hello without a
    // version it speaks) or protocol_version (70). Nothing else comes.
    assert!(out.len() == 7 && out[0] == 0x15, "{out:?}");
    assert!(out[5..7] == [2, 40] || out[5..7] == [2, 70], "{out:?}");
    // And a real client limited to TLS 1.1 fails (whatever its own library allows).
    let o = tokio::process::Command::new("openssl")
        .args(["s_client", "-tls1_1", "-connect"])
        .arg(addr.to_string())
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("openssl runs");
    assert!(!o.status.success());
    let snap = p.app.rt.load();
    let c = &snap.listens[0].tls.as_ref().unwrap().shared.counters;
    assert_eq!(c.handshakes.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn garbage_and_a_silent_client_are_handshake_failures_and_release_their_slot() {
    let a = Backend::start("a").await;
    let site = site();
    let (p, addr) = start(&site, &[&a], "").await;
    let out = common::raw_exchange(
        addr,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(
        !String::from_utf8_lossy(&out).contains("server="),
        "{out:?}"
    );
    let snap = p.app.rt.load();
    let l = &snap.listens[0];
    let c = &l.tls.as_ref().unwrap().shared.counters;
    for _ in 0..100 {
        if c.handshake_failures.load(Ordering::Relaxed) == 1
            && l.shared.frontend.scur.load(Ordering::Relaxed) == 0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(c.handshake_failures.load(Ordering::Relaxed), 1);
    assert_eq!(l.shared.frontend.scur.load(Ordering::Relaxed), 0);
    assert_eq!(a.connections.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn handshake_times_out_at_timeout_client() {
    let a = Backend::start("a").await;
    let site = site();
    let port = free_port();
    let cfg = seed_config(
        &[&a],
        &format!("timeout_client = \"300ms\"\n{}", tls_table(&site, port, "")),
        "",
    );
    let p = Proxy::start(&cfg).await;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(&tls11_client_hello()[..20]).await.unwrap();
    let mut buf = [0u8; 16];
    let r = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
    assert!(
        matches!(r, Ok(Ok(0)) | Ok(Err(_))),
        "closed after the timeout: {r:?}"
    );
    let snap = p.app.rt.load();
    let c = &snap.listens[0].tls.as_ref().unwrap().shared.counters;
    assert_eq!(c.handshake_timeouts.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn cookie_persistence_keep_alive_and_pipelining_work_over_tls() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let site = site();
    let (_p, addr) = start(&site, &[&a, &b], "").await;
    let trust = client_config(&site.ca, &["http/1.1"]);
    let mut s = connect(addr, "www.example.com", trust.clone())
        .await
        .unwrap();
    let (h1, b1) = get(&mut s, "/", "").await.unwrap();
    let first = if String::from_utf8_lossy(&b1).contains("server=a") {
        "a"
    } else {
        "b"
    };
    assert_eq!(
        header(&h1, "set-cookie"),
        Some(format!("SERVERID={first}; path=/").as_str())
    );
    // Round robin on the same keep-alive connection.
    let (_, b2) = get(&mut s, "/", "").await.unwrap();
    assert!(!String::from_utf8_lossy(&b2).contains(&format!("server={first}")));
    // The cookie pins, three requests pipelined in one write (one TLS record): every one is
    // answered, in order, although rustls decrypted them all at once.
    let req = format!("GET /1 HTTP/1.1\r\nHost: x\r\nCookie: SERVERID={first}\r\n\r\n");
    s.write_all(format!("{req}{req}{req}").as_bytes())
        .await
        .unwrap();
    for _ in 0..3 {
        let (h, body) = common_tls::read_response(&mut s)
            .await
            .expect("pipelined answer");
        assert!(h.starts_with("HTTP/1.1 200"), "{h}");
        assert!(String::from_utf8_lossy(&body).contains(&format!("server={first}")));
    }
    // A first request that fills the session's first read buffer (4 KiB) exactly: the next one
    // is left decrypted inside rustls, with nothing more on the socket. The session must not
    // wait for the socket to become readable before reading it.
    let head = "GET /big HTTP/1.1\r\nHost: x\r\nX-Pad: \r\n\r\n";
    let pad = "p".repeat(4096 - head.len());
    let big = head.replace("X-Pad: ", &format!("X-Pad: {pad}"));
    assert_eq!(big.len(), 4096);
    s.write_all(format!("{big}GET /after HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    for path in ["/big", "/after"] {
        let (h, _) = common_tls::read_response(&mut s)
            .await
            .unwrap_or_else(|| panic!("{path} answered"));
        assert!(h.starts_with("HTTP/1.1 200"), "{h}");
    }
}

#[tokio::test]
async fn websocket_upgrade_over_tls_echoes() {
    let a = Backend::start("a").await;
    let site = site();
    let (_p, addr) = start(&site, &[&a], "").await;
    let trust = client_config(&site.ca, &["http/1.1"]);
    let mut s = connect(addr, "www.example.com", trust).await.unwrap();
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0);
        buf.extend_from_slice(&chunk[..n]);
    }
    assert!(
        buf.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&buf)
    );
    s.write_all(b"ping over tls").await.unwrap();
    let mut got = Vec::new();
    while !got.ends_with(b"ping over tls") {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        got.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test]
async fn session_resumption_by_ticket_is_counted() {
    let a = Backend::start("a").await;
    let site = site();
    let (p, addr) = start(&site, &[&a], "").await;
    let trust = client_config(&site.ca, &["http/1.1"]);
    for _ in 0..2 {
        let mut s = connect(addr, "www.example.com", trust.clone())
            .await
            .unwrap();
        // A round trip so the TLS 1.3 ticket arrives before the close.
        let _ = get(&mut s, "/", "").await.unwrap();
        let _ = s.shutdown().await;
    }
    let snap = p.app.rt.load();
    let c = &snap.listens[0].tls.as_ref().unwrap().shared.counters;
    assert_eq!(c.handshakes.load(Ordering::Relaxed), 2);
    assert_eq!(c.resumed.load(Ordering::Relaxed), 1);
}

fn start_err(cfg: String) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        match edgelb::app::App::start(edgelb::app::Options {
            source: edgelb::app::Source::Text(cfg),
            node: Some("t".into()),
        })
        .await
        {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    })
}

#[test]
fn bad_certificates_refuse_the_start_with_file_and_reason() {
    let site = site();
    let d = &site.dir.path().join("certs");
    let port = free_port();
    let cfg = |cert: &str, key: &str| {
        format!(
            "[log]\naccess = \"off\"\n[[listen]]\nname = \"w\"\n\
             [listen.tls]\nbind = [\"127.0.0.1:{port}\"]\n\
             certs = [{{ cert = \"{}\", key = \"{}\" }}]\n",
            d.join(cert).display(),
            d.join(key).display()
        )
    };
    // Key of another certificate.
    let e = start_err(cfg("www.pem", "wild.key"));
    assert!(
        e.contains("wild.key") && e.contains("does not belong"),
        "{e}"
    );
    assert!(
        e.contains(":6:") || e.contains(":5:"),
        "line of [listen.tls]: {e}"
    );
    // Unparsable certificate.
    std::fs::write(
        d.join("junk.pem"),
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let e = start_err(cfg("junk.pem", "www.key"));
    assert!(e.contains("junk.pem") && e.contains("PEM"), "{e}");
    // A key file others can read.
    std::fs::set_permissions(d.join("www.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = start_err(cfg("www.pem", "www.key"));
    assert!(e.contains("www.key") && e.contains("mode 0644"), "{e}");
    // Missing file.
    let e = start_err(cfg("nope.pem", "wild.key"));
    assert!(e.contains("nope.pem") && e.contains("cannot read"), "{e}");
}

#[test]
fn check_reports_a_bad_certificate_like_a_bad_config() {
    let site = site();
    let d = &site.dir.path().join("certs");
    let cfg = format!(
        "[log]\naccess = \"off\"\n[[listen]]\nname = \"w\"\n\
         [listen.tls]\nbind = [\"127.0.0.1:{}\"]\ncert_dir = \"{}\"\n",
        free_port(),
        d.display()
    );
    let path = site.dir.path().join("edgelb.toml");
    std::fs::write(&path, &cfg).unwrap();
    let ok = std::process::Command::new(env!("CARGO_BIN_EXE_edgelb"))
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    // A certificate whose key is someone else's.
    std::fs::copy(d.join("wild.key"), d.join("www.key")).unwrap();
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_edgelb"))
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("www.key") && err.contains("does not belong"),
        "{err}"
    );
}

#[tokio::test]
async fn metrics_count_handshakes_and_failures_and_show_certificate_expiry() {
    let a = Backend::start("a").await;
    let site = site();
    let port = free_port();
    let api = free_port();
    let cfg = seed_config(
        &[&a],
        &tls_table(&site, port, ""),
        &format!("[stats]\ndashboard_bind = \"127.0.0.1:{api}\"\napi_bind = \"127.0.0.1:{api}\"\n"),
    );
    let _p = Proxy::start(&cfg).await;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let trust = client_config(&site.ca, &["http/1.1"]);
    let mut s = connect(addr, "www.example.com", trust).await.unwrap();
    let _ = get(&mut s, "/", "").await.unwrap();
    let _ = common::raw_exchange(addr, b"garbage\r\n\r\n", Duration::from_secs(2)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let out = tokio::process::Command::new("curl")
        .args(["-sS", &format!("http://127.0.0.1:{api}/metrics")])
        .output()
        .await
        .unwrap();
    let m = String::from_utf8_lossy(&out.stdout);
    let has = |line: &str| m.lines().any(|l| l == line);
    assert!(
        has("edgelb_tls_handshakes_total{listen=\"webapp\",kind=\"full\"} 1"),
        "{m}"
    );
    assert!(
        has("edgelb_tls_handshake_failures_total{listen=\"webapp\",reason=\"error\"} 1"),
        "{m}"
    );
    let www = site.dir.path().join("certs/www.pem");
    let info = edgelb::tls::x509::parse(&site.www.der).unwrap();
    assert!(
        has(&format!(
            "edgelb_tls_certificate_not_after_seconds{{listen=\"webapp\",file=\"{}\",serial=\"0B\"}} {}",
            www.display(),
            info.not_after
        )),
        "{m}"
    );
}

#[tokio::test]
async fn the_ocsp_response_file_is_stapled_for_its_certificate_only() {
    let a = Backend::start("a").await;
    let site = site();
    // A DER SEQUENCE standing in for a CA's OCSP response: rustls staples the bytes as given.
    let ocsp: Vec<u8> = [&[0x30u8, 0x0a][..], &[0xab; 10]].concat();
    let d = site.dir.path().join("certs");
    std::fs::write(d.join("www.ocsp"), &ocsp).unwrap();
    let port = free_port();
    let cfg = seed_config(
        &[&a],
        &format!(
            "[listen.tls]\nbind = [\"127.0.0.1:{port}\"]\n\
             certs = [{{ cert = \"{0}/default.pem\", key = \"{0}/default.key\" }}, \
                      {{ cert = \"{0}/www.pem\", key = \"{0}/www.key\", ocsp = \"{0}/www.ocsp\" }}]\n",
            d.display()
        ),
        "",
    );
    let _p = Proxy::start(&cfg).await;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let (cfg, seen) = common_tls::any_cert_config_recording(&["http/1.1"]);
    let _s = connect(addr, "www.example.com", cfg.clone()).await.unwrap();
    assert_eq!(*seen.lock().unwrap(), ocsp);
    let _s = connect(addr, "default.test", cfg).await.unwrap();
    assert!(
        seen.lock().unwrap().is_empty(),
        "no response for the other chain"
    );
    // Not a DER response: refused at start with file and reason.
    std::fs::write(d.join("www.ocsp"), b"not der").unwrap();
    let e = std::thread::spawn({
        let cfg = seed_config(
            &[],
            &format!(
                "[listen.tls]\nbind = [\"127.0.0.1:{port}\"]\ncerts = [{{ cert = \"{d}/www.pem\", key = \"{d}/www.key\", ocsp = \"{d}/www.ocsp\" }}]\n",
                d = d.display(),
                port = free_port()
            ),
            "",
        );
        move || start_err(cfg)
    })
    .join()
    .unwrap();
    assert!(
        e.contains("www.ocsp") && e.contains("not a DER OCSP response"),
        "{e}"
    );
}
