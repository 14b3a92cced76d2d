//! Micro-benchmarks of the per-request hot path: cookie scan/strip, the X-Forwarded-For decision,
//! request-head parsing and the round-robin pick. Run with `cargo bench --bench hotpath`.
//! Numbers go in benches/README.md; nothing here is asserted.

use std::hint::black_box;
use std::net::IpAddr;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use edgelb::proxy::{cookie, forwarded, h1};

const BROWSER_GET: &[u8] = b"GET /api/v1/items?page=2&sort=desc HTTP/1.1\r\n\
Host: www.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Referer: https://www.example.com/items\r\n\
Cookie: _ga=GA1.2.1234567890.1700000000; session=abcdef0123456789; SERVERID=ip-20-0-0-67.ec2.internal; theme=dark\r\n\
Connection: keep-alive\r\n\
Upgrade-Insecure-Requests: 1\r\n\
\r\n";

const MINIMAL_GET: &[u8] = b"GET /bench HTTP/1.1\r\nHost: bench\r\nUser-Agent: wrk\r\n\r\n";

const COOKIE: &[u8] =
    b"_ga=GA1.2.1234567890.1700000000; session=abcdef0123456789; SERVERID=ip-20-0-0-67.ec2.internal; theme=dark";
const COOKIE_NO_SERVERID: &[u8] =
    b"_ga=GA1.2.1234567890.1700000000; session=abcdef0123456789; theme=dark";

fn bench_cookie(c: &mut Criterion) {
    let mut g = c.benchmark_group("cookie");
    g.throughput(Throughput::Bytes(COOKIE.len() as u64));
    g.bench_function("scan/with_serverid", |b| {
        b.iter(|| cookie::scan(black_box(COOKIE), black_box(b"SERVERID")))
    });
    g.bench_function("scan/without_serverid", |b| {
        b.iter(|| cookie::scan(black_box(COOKIE_NO_SERVERID), black_box(b"SERVERID")))
    });
    let mut out = Vec::with_capacity(256);
    g.bench_function("strip", |b| {
        b.iter(|| {
            out.clear();
            cookie::strip(black_box(COOKIE), black_box(b"SERVERID"), true, &mut out)
        })
    });
    g.bench_function("match_value", |b| {
        b.iter(|| cookie::match_value(black_box(b"ip-20-0-0-67.ec2.internal|1700000000")))
    });
    g.finish();
}

fn bench_forwarded(c: &mut Criterion) {
    let except: Vec<ipnet::IpNet> = vec!["127.0.0.0/8".parse().unwrap()];
    let v4: IpAddr = "192.0.2.77".parse().unwrap();
    let mapped: IpAddr = "::ffff:192.0.2.77".parse().unwrap();
    let mut g = c.benchmark_group("forwarded");
    g.bench_function("should_add/v4", |b| {
        b.iter(|| forwarded::should_add(black_box(&except), black_box(v4)))
    });
    g.bench_function("should_add/v4_mapped", |b| {
        b.iter(|| forwarded::should_add(black_box(&except), black_box(mapped)))
    });
    let mut out = Vec::with_capacity(64);
    g.bench_function("write_header/v4", |b| {
        b.iter(|| {
            out.clear();
            forwarded::write_header(&mut out, black_box(v4));
        })
    });
    g.finish();
}

fn bench_parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("h1");
    let mut head = h1::RequestHead::default();
    for (name, req) in [("browser_get", BROWSER_GET), ("minimal_get", MINIMAL_GET)] {
        g.throughput(Throughput::Bytes(req.len() as u64));
        g.bench_function(format!("parse_request/{name}"), |b| {
            b.iter(|| h1::parse_request(black_box(req), &mut head).is_ok())
        });
    }
    let res: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nETag: W/\"1d-bench\"\r\nX-Backend: app1\r\nContent-Length: 29\r\n\r\n";
    let mut rh = h1::ResponseHead::default();
    g.throughput(Throughput::Bytes(res.len() as u64));
    g.bench_function("parse_response/small", |b| {
        b.iter(|| h1::parse_response(black_box(res), h1::Method::Get, &mut rh).is_ok())
    });
    let body: &[u8] = b"400\r\n";
    let mut chunk = body.to_vec();
    chunk.resize(chunk.len() + 0x400, b'x');
    chunk.extend_from_slice(b"\r\n0\r\n\r\n");
    let mut out = Vec::with_capacity(2048);
    g.throughput(Throughput::Bytes(chunk.len() as u64));
    g.bench_function("chunked_feed/1KiB", |b| {
        b.iter(|| {
            out.clear();
            let mut d = h1::ChunkedDecoder::default();
            d.feed(black_box(&chunk), &mut out, true).is_ok()
        })
    });
    g.finish();
}

fn bench_balance(c: &mut Criterion) {
    let toml = r#"
[log]
access = "off"
[[listen]]
name = "webapp"
bind = ["127.0.0.1:0"]
[[listen.server]]
name = "a"
address = "127.0.0.1:1"
check = false
[[listen.server]]
name = "b"
address = "127.0.0.1:2"
check = false
weight = 2
[[listen.server]]
name = "c"
address = "127.0.0.1:3"
check = false
"#;
    let loaded = edgelb::config::load_str(toml, "bench.toml").expect("bench config");
    let snap =
        edgelb::runtime::Snapshot::build(Arc::new(loaded.config), toml, "bench".into(), None)
            .expect("snapshot");
    snap.activate();
    let l = snap.listens[0].clone();
    let mut g = c.benchmark_group("balance");
    g.bench_function("roundrobin_pick/3_servers", |b| {
        b.iter(|| l.balancer.pick(&l.shared, &l.servers, black_box(None)))
    });
    g.bench_function("roundrobin_pick/exclude", |b| {
        b.iter(|| l.balancer.pick(&l.shared, &l.servers, black_box(Some(1))))
    });
    g.bench_function("fwrr_schedule/weights_3_2_1", |b| {
        b.iter(|| edgelb::balance::fwrr_order(black_box(&[3, 2, 1]), 12))
    });
    g.finish();
}

criterion_group!(
    benches,
    bench_cookie,
    bench_forwarded,
    bench_parse,
    bench_balance
);
criterion_main!(benches);
