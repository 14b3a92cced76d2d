//! Benchmark backend: a minimal keep-alive HTTP/1.1 server on one thread (tokio current-thread),
//! listening on every port given on the command line. Every request (any method, body read by
//! Content-Length) gets the same small response, with an `ETag` like Express sends so the proxy's
//! `nocache` path runs too.
//!
//!   cargo run --release --example bench_backend -- 127.0.0.1:18081 127.0.0.1:18082 ...
//!
//! It stops by itself after `BENCH_BACKEND_SECS` seconds (default 900), so a forgotten run ends.
//! With `BENCH_BACKEND_DELAY_MS` set, each answer waits that long first, without holding the
//! thread: a handler waiting on its database (benches/burst.sh).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BODY: &[u8] = b"hello from the bench backend\n";

fn response(name: &str) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nETag: W/\"1d-bench\"\r\nX-Backend: {name}\r\nContent-Length: {}\r\n\r\n",
        BODY.len()
    )
    .into_bytes();
    r.extend_from_slice(BODY);
    r
}

/// Length of a complete head at the start of `buf` and its Content-Length, if complete.
fn head(buf: &[u8]) -> Option<(usize, usize)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let mut cl = 0usize;
    for line in buf[..end].split(|&b| b == b'\n') {
        if line.len() > 15 && line[..15].eq_ignore_ascii_case(b"content-length:") {
            let v = std::str::from_utf8(&line[15..]).unwrap_or("").trim();
            cl = v.parse().unwrap_or(0);
        }
    }
    Some((end, cl))
}

async fn conn(mut s: TcpStream, resp: &'static [u8], delay: Duration) {
    let _ = s.set_nodelay(true);
    let mut buf = Vec::with_capacity(8192);
    let mut out = Vec::with_capacity(4096);
    let mut tmp = [0u8; 16384];
    loop {
        let n = match s.read(&mut tmp).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&tmp[..n]);
        // Answer every complete request in the buffer (pipelining) with one write.
        out.clear();
        while let Some((h, cl)) = head(&buf) {
            if buf.len() < h + cl {
                break;
            }
            buf.drain(..h + cl);
            out.extend_from_slice(resp);
        }
        if out.is_empty() {
            continue;
        }
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if s.write_all(&out).await.is_err() {
            return;
        }
    }
}

fn main() {
    let addrs: Vec<String> = std::env::args().skip(1).collect();
    if addrs.is_empty() {
        eprintln!("usage: bench_backend ADDR...");
        std::process::exit(2);
    }
    let secs: u64 = std::env::var("BENCH_BACKEND_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(900);
    let delay = Duration::from_millis(
        std::env::var("BENCH_BACKEND_DELAY_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        for (i, a) in addrs.iter().enumerate() {
            let l = TcpListener::bind(a.as_str()).await.expect("bind");
            let resp: &'static [u8] =
                Box::leak(response(&format!("app{}", i + 1)).into_boxed_slice());
            tokio::spawn(async move {
                loop {
                    if let Ok((s, _)) = l.accept().await {
                        tokio::spawn(conn(s, resp, delay));
                    }
                }
            });
        }
        eprintln!("bench_backend: listening on {addrs:?}");
        tokio::time::sleep(Duration::from_secs(secs)).await;
    });
}
