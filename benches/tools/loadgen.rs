//! Benchmark load tool (loopback only), two modes:
//!
//! `loadgen rate ADDR RATE CONNS SECS` — open-loop load at a fixed total request rate over CONNS
//! keep-alive connections for SECS seconds (each connection sends on its own schedule, one
//! request in flight). Latency is counted from the *intended* send time when a request goes out
//! late because the previous answer was late (the coordinated-omission correction of wrk2); a send
//! that is at most 2 ms late (timer granularity) is timed from when it was actually sent.
//! Prints one line: `rate=… sent=… ok=… errors=… p50_us=… p90_us=… p99_us=… p999_us=… max_us=…`.
//!
//! `loadgen idle ADDR N SECS` — opens N connections, sends one GET on each and reads the answer,
//! then holds them all idle for SECS seconds (so the proxy's RSS can be read meanwhile).
//! Prints `idle_open=K`.
//!
//! `loadgen count ADDR N CONNS` — closed loop: exactly N requests in total over CONNS keep-alive
//! connections (one in flight each), with the browser-like headers of benches/run.sh's wrk. For
//! load-independent per-request counts (`strace -c`, callgrind) over a known number of requests.
//! Prints `done=… errors=… secs=…`.
//!
//! `loadgen burst ADDR CLIENTS EACH [WARM [IDLE_SECS]]` — optionally WARM clients at once, one
//! request each, then IDLE_SECS of quiet; then CLIENTS new connections at once, each sending EACH
//! requests one after the other: a burst as a proxy meets it after a start, a step of load or an
//! idle spell (benches/burst.sh). Latency per request, from its send.
//! Prints `clients=… each=… ok=… errors=… p50_ms=… p90_ms=… max_ms=… secs=…`.
//!
//! Everything is bounded: SECS is capped at 120, connections at 20 000.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

const REQ: &[u8] =
    b"GET /bench HTTP/1.1\r\nHost: bench\r\nUser-Agent: loadgen\r\nAccept: */*\r\n\r\n";

/// Reads one response (Content-Length framed) into `buf`; false on error or close.
async fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut tmp = [0u8; 8192];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = &buf[..end + 4];
            let mut cl = 0usize;
            for line in head.split(|&b| b == b'\n') {
                if line.len() > 15 && line[..15].eq_ignore_ascii_case(b"content-length:") {
                    cl = std::str::from_utf8(&line[15..])
                        .unwrap_or("")
                        .trim()
                        .parse()
                        .unwrap_or(0);
                }
            }
            let ok = head.starts_with(b"HTTP/1.1 200") || head.starts_with(b"HTTP/1.0 200");
            if buf.len() >= end + 4 + cl {
                buf.drain(..end + 4 + cl);
                return ok;
            }
        }
        match s.read(&mut tmp).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
}

struct ConnStats {
    lat_us: Vec<u32>,
    sent: u64,
    errors: u64,
}

async fn rate_conn(
    addr: SocketAddr,
    interval: Duration,
    start: Instant,
    end: Instant,
) -> ConnStats {
    let mut st = ConnStats {
        lat_us: Vec::new(),
        sent: 0,
        errors: 0,
    };
    let Ok(mut s) = TcpStream::connect(addr).await else {
        st.errors += 1;
        return st;
    };
    let _ = s.set_nodelay(true);
    let mut buf = Vec::with_capacity(4096);
    let mut intended = start;
    while intended < end {
        tokio::time::sleep_until(intended).await;
        let sent_at = Instant::now();
        let origin = if sent_at.duration_since(intended) <= Duration::from_millis(2) {
            sent_at
        } else {
            intended
        };
        st.sent += 1;
        if s.write_all(REQ).await.is_err() {
            st.errors += 1;
            return st;
        }
        let ok = tokio::time::timeout(Duration::from_secs(10), read_response(&mut s, &mut buf))
            .await
            .unwrap_or(false);
        if !ok {
            st.errors += 1;
            return st;
        }
        st.lat_us
            .push(origin.elapsed().as_micros().min(u32::MAX as u128) as u32);
        intended += interval;
    }
    st
}

fn pct(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn rate(addr: SocketAddr, rate: f64, conns: usize, secs: u64) {
    let conns = conns.clamp(1, 20_000);
    let secs = secs.min(120);
    let interval = Duration::from_secs_f64(conns as f64 / rate);
    let start = Instant::now() + Duration::from_millis(200);
    let end = start + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for i in 0..conns {
        // Spread the connections' schedules evenly over one interval.
        let offset = interval.mul_f64(i as f64 / conns as f64);
        tasks.push(tokio::spawn(rate_conn(addr, interval, start + offset, end)));
    }
    let mut lat = Vec::new();
    let (mut sent, mut errors) = (0u64, 0u64);
    for t in tasks {
        if let Ok(st) = t.await {
            lat.extend(st.lat_us);
            sent += st.sent;
            errors += st.errors;
        }
    }
    lat.sort_unstable();
    println!(
        "rate={:.0} sent={} ok={} errors={} p50_us={} p90_us={} p99_us={} p999_us={} max_us={}",
        lat.len() as f64 / secs as f64,
        sent,
        lat.len(),
        errors,
        pct(&lat, 0.50),
        pct(&lat, 0.90),
        pct(&lat, 0.99),
        pct(&lat, 0.999),
        lat.last().copied().unwrap_or(0)
    );
}

/// wrk's request in benches/run.sh (browser-like headers, a cookie without SERVERID).
const BROWSER_REQ: &[u8] = b"GET /bench HTTP/1.1\r\nHost: 127.0.0.1\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) bench\r\nAccept: text/html,*/*;q=0.8\r\n\
Accept-Language: en-US,en;q=0.5\r\nCookie: session=abcdef0123456789; theme=dark\r\n\r\n";

async fn count(addr: SocketAddr, n: u64, conns: usize) {
    let conns = conns.clamp(1, 20_000);
    let left = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(n));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let left = left.clone();
        tasks.push(tokio::spawn(async move {
            let (mut done, mut errors) = (0u64, 0u64);
            let Ok(mut s) = TcpStream::connect(addr).await else {
                return (0, 1);
            };
            let _ = s.set_nodelay(true);
            let mut buf = Vec::with_capacity(4096);
            while left
                .fetch_update(
                    std::sync::atomic::Ordering::Relaxed,
                    std::sync::atomic::Ordering::Relaxed,
                    |v| v.checked_sub(1),
                )
                .is_ok()
            {
                let ok = s.write_all(BROWSER_REQ).await.is_ok()
                    && tokio::time::timeout(
                        Duration::from_secs(60),
                        read_response(&mut s, &mut buf),
                    )
                    .await
                    .unwrap_or(false);
                if !ok {
                    errors += 1;
                    break;
                }
                done += 1;
            }
            (done, errors)
        }));
    }
    let (mut done, mut errors) = (0u64, 0u64);
    for t in tasks {
        if let Ok((d, e)) = t.await {
            done += d;
            errors += e;
        }
    }
    println!(
        "done={done} errors={errors} secs={:.2}",
        t0.elapsed().as_secs_f64()
    );
}

/// One client of a burst: a new connection, `each` requests in turn; latencies in µs, or None
/// on an error.
async fn burst_client(addr: SocketAddr, each: usize) -> Option<Vec<u32>> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    let _ = s.set_nodelay(true);
    let mut buf = Vec::with_capacity(4096);
    let mut lat = Vec::with_capacity(each);
    for _ in 0..each {
        let t = Instant::now();
        s.write_all(REQ).await.ok()?;
        tokio::time::timeout(Duration::from_secs(30), read_response(&mut s, &mut buf))
            .await
            .ok()?
            .then_some(())?;
        lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
    }
    Some(lat)
}

/// `clients` clients at once, `each` requests each: (latencies sorted, errors).
async fn burst_of(addr: SocketAddr, clients: usize, each: usize) -> (Vec<u32>, u64) {
    let tasks: Vec<_> = (0..clients)
        .map(|_| tokio::spawn(burst_client(addr, each)))
        .collect();
    let (mut lat, mut errors) = (Vec::new(), 0u64);
    for t in tasks {
        match t.await {
            Ok(Some(l)) => lat.extend(l),
            _ => errors += 1,
        }
    }
    lat.sort_unstable();
    (lat, errors)
}

async fn burst(addr: SocketAddr, clients: usize, each: usize, warm: usize, idle_secs: f64) {
    let clients = clients.clamp(1, 20_000);
    let each = each.clamp(1, 1_000);
    if warm > 0 {
        burst_of(addr, warm.min(20_000), 1).await;
        tokio::time::sleep(Duration::from_secs_f64(idle_secs.clamp(0.0, 120.0))).await;
    }
    let t0 = Instant::now();
    let (lat, errors) = burst_of(addr, clients, each).await;
    let ms = |us: u32| f64::from(us) / 1000.0;
    println!(
        "clients={clients} each={each} ok={} errors={errors} p50_ms={:.1} p90_ms={:.1} max_ms={:.1} secs={:.3}",
        lat.len(),
        ms(pct(&lat, 0.50)),
        ms(pct(&lat, 0.90)),
        ms(lat.last().copied().unwrap_or(0)),
        t0.elapsed().as_secs_f64()
    );
}

async fn idle(addr: SocketAddr, n: usize, secs: u64) {
    let n = n.min(20_000);
    let secs = secs.min(120);
    let mut held = Vec::with_capacity(n);
    let deadline = Instant::now() + Duration::from_secs(60);
    for chunk in 0..n.div_ceil(500) {
        let mut tasks = Vec::new();
        for _ in (chunk * 500)..((chunk + 1) * 500).min(n) {
            tasks.push(tokio::spawn(async move {
                let mut s = TcpStream::connect(addr).await.ok()?;
                s.write_all(REQ).await.ok()?;
                let mut buf = Vec::new();
                tokio::time::timeout(Duration::from_secs(10), read_response(&mut s, &mut buf))
                    .await
                    .ok()?
                    .then_some(s)
            }));
        }
        for t in tasks {
            if let Ok(Some(s)) = t.await {
                held.push(s);
            }
        }
        if Instant::now() > deadline {
            break;
        }
    }
    println!("idle_open={}", held.len());
    tokio::time::sleep(Duration::from_secs(secs)).await;
    drop(held);
}

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let usage = || -> ! {
        eprintln!("usage: loadgen rate ADDR RATE CONNS SECS | loadgen idle ADDR N SECS | loadgen count ADDR N CONNS | loadgen burst ADDR CLIENTS EACH [WARM [IDLE_SECS]]");
        std::process::exit(2)
    };
    if a.len() < 4 {
        usage();
    }
    let addr: SocketAddr = a[1].parse().unwrap_or_else(|_| usage());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match a[0].as_str() {
        "rate" if a.len() == 5 => {
            let r: f64 = a[2].parse().unwrap_or_else(|_| usage());
            let c: usize = a[3].parse().unwrap_or_else(|_| usage());
            let s: u64 = a[4].parse().unwrap_or_else(|_| usage());
            rt.block_on(rate(addr, r, c, s));
        }
        "idle" => {
            let n: usize = a[2].parse().unwrap_or_else(|_| usage());
            let s: u64 = a[3].parse().unwrap_or_else(|_| usage());
            rt.block_on(idle(addr, n, s));
        }
        "count" if a.len() == 4 => {
            let n: u64 = a[2].parse().unwrap_or_else(|_| usage());
            let c: usize = a[3].parse().unwrap_or_else(|_| usage());
            rt.block_on(count(addr, n, c));
        }
        "burst" if a.len() <= 6 => {
            let c: usize = a[2].parse().unwrap_or_else(|_| usage());
            let e: usize = a[3].parse().unwrap_or_else(|_| usage());
            let w: usize = a
                .get(4)
                .map_or(Ok(0), |v| v.parse())
                .unwrap_or_else(|_| usage());
            let i: f64 = a
                .get(5)
                .map_or(Ok(0.0), |v| v.parse())
                .unwrap_or_else(|_| usage());
            if !i.is_finite() {
                usage();
            }
            rt.block_on(burst(addr, c, e, w, i));
        }
        _ => usage(),
    }
}
