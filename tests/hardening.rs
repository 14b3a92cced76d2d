//! Hostile input and resource exhaustion against a real edgelb: a request-smuggling and
//! malformed-input corpus sent over raw sockets to a recording backend, slowloris and slow bodies,
//! `maxconn` queueing, and accept-error (EMFILE) backoff.
//!
//! Every corpus case pins the documented answer (README "Strictness") *and* what the backend saw:
//! a rejected request never reaches it, and a pipelined request sent after a smuggling attempt is
//! never forwarded.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What edgelb must do with one corpus case.
#[derive(Debug, Clone, Copy)]
enum Want {
    /// Answer with this status, then close; the backend never sees the request.
    Reject(u16),
    /// Body-level error: the head may have reached the backend, but the request never completes
    /// there; the client gets this status and a close.
    RejectBody(u16),
    /// Forwarded; the backend's copy of the head must contain all of these lines and none of the
    /// `absent` ones (lower-case compare).
    Forward(&'static [&'static str], &'static [&'static str]),
}

struct Case {
    name: &'static str,
    /// `{P}` is replaced by the case's unique path, `{S}` by its pipelined smuggle path.
    raw: String,
    want: Want,
}

fn case(name: &'static str, raw: &str, want: Want) -> Case {
    Case {
        name,
        raw: raw.to_string(),
        want,
    }
}

fn corpus() -> Vec<Case> {
    use Want::*;
    let long_line = format!(
        "GET {{P}}?{} HTTP/1.1\r\nHost: x\r\n\r\n",
        "a".repeat(17 * 1024)
    );
    let long_header = format!(
        "GET {{P}} HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "b".repeat(17 * 1024)
    );
    let many_headers = format!(
        "GET {{P}} HTTP/1.1\r\nHost: x\r\n{}\r\n",
        (0..130)
            .map(|i| format!("X-H{i}: v\r\n"))
            .collect::<String>()
    );
    let smuggle = "GET {S} HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut v = vec![
        // --- Content-Length / Transfer-Encoding conflicts ---
        case(
            "CL then TE",
            &format!("POST {{P}} HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggle}"),
            Reject(400),
        ),
        case(
            "TE then CL",
            &format!("POST {{P}} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n{smuggle}"),
            Reject(400),
        ),
        case(
            "conflicting Content-Length",
            &format!("POST {{P}} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 41\r\n\r\nhello{smuggle}"),
            Reject(400),
        ),
        case(
            "conflicting Content-Length list",
            "POST {P} HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 6\r\n\r\nhello",
            Reject(400),
        ),
        case(
            "Content-Length with plus sign",
            "POST {P} HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello",
            Reject(400),
        ),
        case(
            "negative Content-Length",
            "POST {P} HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\nhello",
            Reject(400),
        ),
        case(
            "overflowing Content-Length",
            "POST {P} HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551617\r\n\r\nhello",
            Reject(400),
        ),
        case(
            "hex Content-Length",
            "POST {P} HTTP/1.1\r\nHost: x\r\nContent-Length: 0x5\r\n\r\nhello",
            Reject(400),
        ),
        case(
            "space inside Content-Length",
            "POST {P} HTTP/1.1\r\nHost: x\r\nContent-Length: 1 5\r\n\r\nhello",
            Reject(400),
        ),
        case(
            "empty Content-Length",
            "POST {P} HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n\r\nhello",
            Reject(400),
        ),
        // Identical duplicates are one length; exactly one canonical header is forwarded.
        case(
            "duplicated identical Content-Length",
            "POST {P} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
            Forward(&["content-length: 5\r\n"], &["content-length: 5\r\ncontent-length"]),
        ),
        case(
            "Transfer-Encoding: chunked, identity",
            "POST {P} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
            Reject(501),
        ),
        case(
            "Transfer-Encoding: xchunked",
            "POST {P} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
            Reject(501),
        ),
        case(
            "Transfer-Encoding: identity",
            "POST {P} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\n",
            Reject(501),
        ),
        case(
            "two Transfer-Encoding headers",
            "POST {P} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            Reject(501),
        ),
        case(
            "Transfer-Encoding in HTTP/1.0",
            &format!("POST {{P}} HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggle}"),
            Reject(400),
        ),
        // Trailing OWS and casing are valid: forwarded with one canonical TE header.
        case(
            "Transfer-Encoding: chunked with trailing space",
            "POST {P} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked \r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            Forward(&["transfer-encoding: chunked\r\n"], &["content-length"]),
        ),
        case(
            "Transfer-Encoding: Chunked casing",
            "POST {P} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            Forward(&["transfer-encoding: chunked\r\n"], &["Chunked"]),
        ),
        // --- Header syntax ---
        case(
            "obs-fold",
            "GET {P} HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n",
            Reject(400),
        ),
        case(
            "obs-fold continuing Transfer-Encoding",
            "POST {P} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\nContent-Length: 3\r\n\r\nabc",
            Reject(400),
        ),
        case(
            "bare LF line ending",
            "GET {P} HTTP/1.1\nHost: x\n\n",
            Reject(400),
        ),
        case(
            "bare LF inside headers",
            "GET {P} HTTP/1.1\r\nHost: x\nX-A: 1\r\n\r\n",
            Reject(400),
        ),
        case(
            "bare CR inside a header value",
            "GET {P} HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n",
            Reject(400),
        ),
        case(
            "NUL in a header value",
            "GET {P} HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n",
            Reject(400),
        ),
        case(
            "control byte in a header value",
            "GET {P} HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n",
            Reject(400),
        ),
        case(
            "DEL in a header value",
            "GET {P} HTTP/1.1\r\nHost: x\r\nX-A: a\x7fb\r\n\r\n",
            Reject(400),
        ),
        case(
            "NUL in a header name",
            "GET {P} HTTP/1.1\r\nHost: x\r\nX-\0A: 1\r\n\r\n",
            Reject(400),
        ),
        case(
            "control byte in a header name",
            "GET {P} HTTP/1.1\r\nHost: x\r\nX-\x0bA: 1\r\n\r\n",
            Reject(400),
        ),
        case(
            "space before the colon",
            &format!("POST {{P}} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\nContent-Length: 3\r\n\r\nabc{smuggle}"),
            Reject(400),
        ),
        case(
            "space inside a header name",
            "GET {P} HTTP/1.1\r\nHost: x\r\nX A: 1\r\n\r\n",
            Reject(400),
        ),
        case(
            "empty header name",
            "GET {P} HTTP/1.1\r\nHost: x\r\n: 1\r\n\r\n",
            Reject(400),
        ),
        case("request line over 16 KiB", &long_line, Reject(400)),
        case("header over 16 KiB", &long_header, Reject(400)),
        case("more than 128 headers", &many_headers, Reject(400)),
        // --- Chunked body framing (the head is valid; the body is not) ---
        case(
            "non-hex chunk size",
            &format!("POST {{P}} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n{smuggle}"),
            RejectBody(400),
        ),
        case(
            "chunk size over 16 hex digits",
            &format!("POST {{P}} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000003\r\nabc\r\n0\r\n\r\n{smuggle}"),
            RejectBody(400),
        ),
        case(
            "negative chunk size",
            &format!("POST {{P}} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-3\r\nabc\r\n0\r\n\r\n{smuggle}"),
            RejectBody(400),
        ),
        case(
            "0x-prefixed chunk size",
            &format!("POST {{P}} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0x3\r\nabc\r\n0\r\n\r\n{smuggle}"),
            RejectBody(400),
        ),
        case(
            "garbage after chunk size",
            &format!("POST {{P}} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3z\r\nabc\r\n0\r\n\r\n{smuggle}"),
            RejectBody(400),
        ),
        case(
            "missing CRLF after chunk data",
            &format!("POST {{P}} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcdef\r\n0\r\n\r\n{smuggle}"),
            RejectBody(400),
        ),
        case(
            "bare LF after chunk size",
            &format!("POST {{P}} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n{smuggle}"),
            RejectBody(400),
        ),
        case(
            "request line hidden in the trailer section",
            &format!("POST {{P}} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nGET {{S}} HTTP/1.1\r\n\r\n{smuggle}"),
            RejectBody(400),
        ),
        case(
            "chunk size with BWS before the extension (valid)",
            "POST {P} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3 ;x\r\nabc\r\n0\r\n\r\n",
            Forward(&["transfer-encoding: chunked\r\n"], &[]),
        ),
        case(
            "trailer field (valid)",
            "POST {P} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\nX-Sum: 1\r\n\r\n",
            Forward(&["transfer-encoding: chunked\r\n"], &[]),
        ),
        case(
            "chunk extension (valid)",
            "POST {P} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3;name=val\r\nabc\r\n0\r\n\r\n",
            Forward(&["transfer-encoding: chunked\r\n"], &[]),
        ),
        // --- Request line and target ---
        case(
            "absolute-form target",
            "GET http://example.com:8080{P}?q=1 HTTP/1.1\r\nHost: client-host\r\nConnection: close\r\n\r\n",
            Forward(&["?q=1 HTTP/1.1\r\n", "\r\nhost: example.com:8080\r\n"], &["client-host", "http://"]),
        ),
        case(
            "absolute-form target with userinfo",
            "GET http://user@example.com{P} HTTP/1.1\r\nHost: x\r\n\r\n",
            Reject(400),
        ),
        case(
            "asterisk target outside OPTIONS",
            "GET * HTTP/1.1\r\nHost: x\r\n\r\n",
            Reject(400),
        ),
        case(
            "authority-form target outside CONNECT",
            "GET example.com:80 HTTP/1.1\r\nHost: x\r\n\r\n",
            Reject(400),
        ),
        case(
            "CONNECT",
            "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
            Reject(405),
        ),
        case(
            "invalid method token",
            "G(ET {P} HTTP/1.1\r\nHost: x\r\n\r\n",
            Reject(400),
        ),
        case(
            "two spaces in the request line",
            "GET  {P} HTTP/1.1\r\nHost: x\r\n\r\n",
            Reject(400),
        ),
        case(
            "HTTP/2 preface",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            Reject(400),
        ),
        case("HTTP/0.9 request line", "GET {P}\r\n\r\n", Reject(400)),
        case(
            "unknown HTTP version",
            "GET {P} HTTP/1.2\r\nHost: x\r\n\r\n",
            Reject(400),
        ),
        // --- Host ---
        case(
            "missing Host on HTTP/1.1",
            "GET {P} HTTP/1.1\r\nX-A: 1\r\n\r\n",
            Reject(400),
        ),
        case(
            "duplicate Host",
            "GET {P} HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            Reject(400),
        ),
        case(
            "Host with a space",
            "GET {P} HTTP/1.1\r\nHost: a b\r\n\r\n",
            Reject(400),
        ),
        case(
            "Host with a slash",
            "GET {P} HTTP/1.1\r\nHost: a/b\r\n\r\n",
            Reject(400),
        ),
        case(
            "HTTP/1.0 without Host (valid)",
            "GET {P} HTTP/1.0\r\n\r\n",
            Forward(&[" HTTP/1.0\r\n", "connection: keep-alive\r\n"], &["host:"]),
        ),
        case(
            "IPv6 literal Host (valid)",
            "GET {P} HTTP/1.1\r\nHost: [::1]:8080\r\nConnection: close\r\n\r\n",
            Forward(&["host: [::1]:8080\r\n"], &[]),
        ),
    ];
    // Pipelined request after a rejected head: the whole connection is dropped.
    v.push(case(
        "pipelined request after a CL+TE smuggle",
        &format!("POST {{P}} HTTP/1.1\r\nHost: x\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggle}{smuggle}"),
        Reject(400),
    ));
    v
}

fn config(backend: &Backend) -> String {
    seed_config(
        &[backend],
        "timeout_http_request = \"1s\"\ntimeout_client = \"2s\"\ntimeout_server = \"2s\"\n",
        "",
    )
}

fn status_of(resp: &[u8]) -> Option<u16> {
    let line = resp.split(|&b| b == b'\n').next()?;
    let s = std::str::from_utf8(line).ok()?;
    s.split(' ').nth(1)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_and_malformed_corpus_is_rejected_or_normalised() {
    let app = Backend::start("app1").await;
    let p = Proxy::start(&config(&app)).await;
    let cases = corpus();
    assert!(cases.len() >= 30, "corpus has {} cases", cases.len());
    let mut failures = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let path = format!("/case{i}");
        let smuggled = format!("/smuggled{i}");
        let raw = c.raw.replace("{P}", &path).replace("{S}", &smuggled);
        let t0 = Instant::now();
        let resp = raw_exchange(p.addr, raw.as_bytes(), Duration::from_secs(5)).await;
        let took = t0.elapsed();
        let seen: Vec<String> = app
            .requests()
            .into_iter()
            .filter(|r| r.contains(&format!("{path} ")) || r.contains(&format!("{path}?")))
            .collect();
        let smuggled_seen = app.requests().iter().any(|r| r.contains(&smuggled));
        let status = status_of(&resp);
        let text = String::from_utf8_lossy(&resp).into_owned();
        let mut problems = Vec::new();
        if smuggled_seen {
            problems.push("the pipelined request reached the backend".to_string());
        }
        if took >= Duration::from_secs(5) {
            problems.push("connection not closed".to_string());
        }
        match c.want {
            Want::Reject(code) | Want::RejectBody(code) => {
                if status != Some(code) {
                    problems.push(format!("status {status:?}, want {code}"));
                }
                if resp.len() > 400 || text.matches("HTTP/1.1").count() != 1 {
                    problems.push("more than one response".to_string());
                }
                if !seen.is_empty() {
                    problems.push(format!("backend saw it: {seen:?}"));
                }
            }
            Want::Forward(present, absent) => {
                if status != Some(200) {
                    problems.push(format!("status {status:?}, want 200"));
                }
                match seen.as_slice() {
                    [one] => {
                        let head = one.split("\r\n\r\n").next().unwrap_or("").to_string() + "\r\n";
                        let lower = head.to_ascii_lowercase();
                        for want in present {
                            if !lower.contains(&want.to_ascii_lowercase()) {
                                problems.push(format!("forwarded head lacks {want:?}: {head:?}"));
                            }
                        }
                        for bad in absent {
                            if head.contains(bad) {
                                problems.push(format!("forwarded head has {bad:?}: {head:?}"));
                            }
                        }
                    }
                    other => problems.push(format!("backend saw {} copies", other.len())),
                }
            }
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{} ({}): {}\n  response: {:?}",
                i,
                c.name,
                problems.join("; "),
                &text[..text.len().min(160)]
            ));
        }
    }
    // The proxy is still serving.
    assert_eq!(fetch(p.addr, "/after", "").await.status, 200);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Valid requests split at every byte boundary across writes are forwarded intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_trickled_byte_by_byte_are_forwarded_once() {
    let app = Backend::start("app1").await;
    let p = Proxy::start(&config(&app)).await;
    let req = b"POST /trickle HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    for b in req.iter() {
        s.write_all(&[*b]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    assert_eq!(
        status_of(&out),
        Some(200),
        "{}",
        String::from_utf8_lossy(&out)
    );
    let seen = app.requests();
    assert_eq!(seen.len(), 1);
    assert!(
        seen[0].ends_with("\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
        "{:?}",
        seen[0]
    );
}

/// Opens `n` connections that each send `prefix` then trickle one byte of `drip` every
/// `every`; returns (connections closed by the proxy within `limit`, how many got `status`).
async fn slow_attack(
    addr: std::net::SocketAddr,
    n: usize,
    prefix: &'static [u8],
    drip: &'static [u8],
    every: Duration,
    limit: Duration,
    status: u16,
) -> (usize, usize) {
    let mut tasks = Vec::new();
    for _ in 0..n {
        tasks.push(tokio::spawn(async move {
            let Ok(mut s) = TcpStream::connect(addr).await else {
                return (false, false);
            };
            if s.write_all(prefix).await.is_err() {
                return (true, false);
            }
            let t0 = Instant::now();
            let mut out = Vec::new();
            let mut i = 0;
            let mut tmp = [0u8; 1024];
            while t0.elapsed() < limit {
                tokio::select! {
                    r = s.read(&mut tmp) => match r {
                        Ok(0) | Err(_) => {
                            return (true, status_of(&out) == Some(status));
                        }
                        Ok(k) => out.extend_from_slice(&tmp[..k]),
                    },
                    _ = tokio::time::sleep(every) => {
                        if i < drip.len() && s.write_all(&drip[i..i + 1]).await.is_err() {
                            return (true, status_of(&out) == Some(status));
                        }
                        i += 1;
                    }
                }
            }
            (false, false)
        }));
    }
    let mut closed = 0;
    let mut with_status = 0;
    for t in tasks {
        let (c, s) = t.await.unwrap_or((false, false));
        closed += c as usize;
        with_status += s as usize;
    }
    (closed, with_status)
}

/// The normal client kept getting quick answers: median under 100 ms, none over 2 s (the
/// attackers, the proxy and the backend share this test process's two threads, and CI runs test
/// files in parallel, so single outliers are allowed some slack).
fn assert_low_latency(probes: &[(u16, Duration)]) {
    let mut d: Vec<Duration> = probes.iter().map(|(_, d)| *d).collect();
    d.sort();
    let median = d[d.len() / 2];
    let worst = d[d.len() - 1];
    eprintln!(
        "probe latency: median {median:?}, worst {worst:?}, n {}",
        d.len()
    );
    assert!(
        median < Duration::from_millis(100),
        "median probe {median:?}: {d:?}"
    );
    assert!(
        worst < Duration::from_secs(2),
        "worst probe {worst:?}: {d:?}"
    );
}

/// Latencies of sequential GETs on fresh connections while `until` is in the future.
async fn probe(addr: std::net::SocketAddr, until: Instant) -> Vec<(u16, Duration)> {
    let mut out = Vec::new();
    while Instant::now() < until && out.len() < 200 {
        let t0 = Instant::now();
        let r = tokio::time::timeout(Duration::from_secs(5), fetch(addr, "/probe", "")).await;
        out.push((r.map(|r| r.status).unwrap_or(0), t0.elapsed()));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_headers_are_cut_at_timeout_http_request_while_others_are_served() {
    let app = Backend::start("app1").await;
    let p = Proxy::start(&config(&app)).await;
    let addr = p.addr;
    let prober = tokio::spawn(probe(addr, Instant::now() + Duration::from_secs(3)));
    // 300 connections trickle a header byte every 200 ms: never a complete head.
    let (closed, got_408) = slow_attack(
        addr,
        300,
        b"GET /slowloris HTTP/1.1\r\nHost: x\r\n",
        b"X-Slow-Header-Name-Going-On-And-On: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        Duration::from_millis(200),
        Duration::from_secs(6),
        408,
    )
    .await;
    let probes = prober.await.unwrap();
    assert_eq!(closed, 300, "every slowloris connection is closed");
    assert_eq!(got_408, 300, "each got the 408 page");
    assert!(probes.len() >= 10, "{probes:?}");
    assert!(probes.iter().all(|(s, _)| *s == 200), "{probes:?}");
    assert_low_latency(&probes);
    assert!(
        !app.requests().iter().any(|r| r.contains("/slowloris")),
        "no partial head was forwarded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_are_cut_at_timeout_client_while_others_are_served() {
    let app = Backend::start("app1").await;
    let p = Proxy::start(&config(&app)).await;
    let addr = p.addr;
    let prober = tokio::spawn(probe(addr, Instant::now() + Duration::from_secs(4)));
    // 300 uploads send half their body, then one byte every 2.5 s (timeout_client is 2 s:
    // an inactivity timeout, like HAProxy's).
    let (closed, got_504) = slow_attack(
        addr,
        300,
        b"POST /slowbody HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789",
        b"abcdefghijklmnopqrstuvwxyz",
        Duration::from_millis(2500),
        Duration::from_secs(8),
        504,
    )
    .await;
    let probes = prober.await.unwrap();
    assert_eq!(closed, 300, "every slow upload is closed");
    assert_eq!(
        got_504, 300,
        "each got a 504 (HAProxy: client stalled mid-body)"
    );
    assert!(probes.iter().all(|(s, _)| *s == 200), "{probes:?}");
    assert_low_latency(&probes);
    assert!(
        !app.requests().iter().any(|r| r.contains("/slowbody")),
        "no incomplete body completed at the backend"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_maxconn_new_connections_wait_and_are_served_when_slots_free() {
    let app = Backend::start("app1").await;
    let p = Proxy::start(&seed_config(
        &[&app],
        "timeout_http_request = \"20s\"\ntimeout_client = \"20s\"\n",
        "[global]\nmaxconn = 50\n",
    ))
    .await;
    // 50 connections take every slot (each sent one request and stays open).
    let mut holders = Vec::new();
    for _ in 0..50 {
        let mut c = Client::connect(p.addr).await;
        c.send(&get("/hold", "")).await;
        assert_eq!(c.read(false).await.unwrap().status, 200);
        holders.push(c);
    }
    // The 51st connects (kernel backlog: not refused) but is not served...
    let mut waiting = TcpStream::connect(p.addr).await.expect("not refused");
    waiting.write_all(&get("/waiting", "")).await.unwrap();
    let mut tmp = [0u8; 4096];
    let early = tokio::time::timeout(Duration::from_millis(700), waiting.read(&mut tmp)).await;
    assert!(early.is_err(), "served beyond maxconn: {early:?}");
    assert!(!app.requests().iter().any(|r| r.contains("/waiting")));
    // ...until a slot frees.
    holders.truncate(40);
    let t0 = Instant::now();
    let n = tokio::time::timeout(Duration::from_secs(5), waiting.read(&mut tmp))
        .await
        .expect("served once a slot freed")
        .unwrap();
    assert_eq!(status_of(&tmp[..n]), Some(200));
    assert!(t0.elapsed() < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_errors_back_off_instead_of_spinning_and_recover() {
    let app = Backend::start("app1").await;
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = seed_config(&[&app], "timeout_http_request = \"30s\"\n", "")
        .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"));
    let path = write_file(dir.path(), "edgelb.toml", &cfg);
    let bin = env!("CARGO_BIN_EXE_edgelb");
    let mut child = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "ulimit -n 64; exec {bin} run -c {} --node test",
            path.display()
        ))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let up = async {
        loop {
            if TcpStream::connect(addr).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), up)
        .await
        .expect("edgelb started");
    // More connections than the proxy has descriptors: accept() fails with EMFILE.
    let mut hogs = Vec::new();
    for _ in 0..150 {
        if let Ok(s) = TcpStream::connect(addr).await {
            hogs.push(s);
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cpu0 = cpu_seconds(pid);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let burned = cpu_seconds(pid) - cpu0;
    assert!(
        burned < 0.5,
        "the accept loop spun: {burned:.2} s of CPU in 2 s at EMFILE"
    );
    // Free the descriptors: the proxy recovers and serves again.
    drop(hogs);
    let r = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match tokio::time::timeout(Duration::from_secs(2), fetch(addr, "/recovered", "")).await
            {
                Ok(r) if r.status == 200 => return r,
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    })
    .await
    .expect("edgelb serves again after EMFILE");
    assert_eq!(r.status, 200);
    assert!(child.try_wait().unwrap().is_none(), "edgelb exited");
    let _ = child.kill().await;
}
