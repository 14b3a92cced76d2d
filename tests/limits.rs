//! Configured limits through the real proxy: `[global] max_header_lines` applies to requests
//! (400) and to responses (502), and the next request is served.

mod common;

use std::time::Duration;

use common::*;

fn head_with_lines(lines: usize) -> Vec<u8> {
    let mut s = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
    for i in 1..lines {
        s.push_str(&format!("X-{i}: v\r\n"));
    }
    s.push_str("Connection: close\r\n\r\n");
    s.into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_header_lines_is_configurable_for_requests_and_responses() {
    let ok = ScriptedBackend::start(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: 1\r\nX-B: 2\r\nX-C: 3\r\nX-D: 4\r\nConnection: close\r\n\r\nok",
        false,
    )
    .await;
    let too_many = ScriptedBackend::start(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: 1\r\nX-B: 2\r\nX-C: 3\r\nX-D: 4\r\nX-E: 5\r\nConnection: close\r\n\r\nok",
        false,
    )
    .await;
    let wait = Duration::from_secs(10);
    let cfg = |addr| seed_config_addrs(&[("app1", addr)], "", "[global]\nmax_header_lines = 5\n");
    let e = Proxy::start(&cfg(ok.addr)).await;
    // Five lines (Host + 4) pass; six get 400 and never reach the backend.
    assert_eq!(
        status_of(&raw_exchange(e.addr, &head_with_lines(5), wait).await),
        200
    );
    let before = ok.accepted.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        status_of(&raw_exchange(e.addr, &head_with_lines(6), wait).await),
        400
    );
    assert_eq!(
        ok.accepted.load(std::sync::atomic::Ordering::SeqCst),
        before
    );
    // A response with five lines passes (Connection: close does not count), six give 502.
    // Several times: a request may resume on the other worker thread, in another buffer set,
    // and the limit goes with it.
    let e2 = Proxy::start(&cfg(too_many.addr)).await;
    for _ in 0..20 {
        assert_eq!(
            status_of(&raw_exchange(e2.addr, &head_with_lines(1), wait).await),
            502
        );
    }
    assert_eq!(
        status_of(&raw_exchange(e.addr, &head_with_lines(1), wait).await),
        200
    );
}
