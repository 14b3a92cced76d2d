//! HTTP/2 attacks over a real socket with hand-written frames: each ends with the connection
//! closed or the stream refused, the proxy still serving, and every counter back at zero.

mod common;
#[path = "common/h2c.rs"]
mod h2c;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use h2c::*;

const ENHANCE_YOUR_CALM: u32 = 0xb;
const REFUSED_STREAM: u32 = 0x7;
const SECS: Duration = Duration::from_secs(5);

fn h2_config(backends: &[&Backend], extra: &str) -> String {
    seed_config(backends, &format!("proto = \"h2\"\n{extra}"), "")
}

async fn assert_settled(p: &Proxy) {
    let mut last = String::new();
    for _ in 0..100 {
        let snap = p.app.rt.load();
        let l = &snap.listens[0];
        let fe = l.shared.frontend.scur.load(Ordering::Relaxed);
        let be = l.shared.backend.scur.load(Ordering::Relaxed);
        let srv: u64 = l
            .servers
            .iter()
            .map(|s| s.live.counters.scur.load(Ordering::Relaxed))
            .sum();
        let act = p.app.rt.process.actconn.load(Ordering::Relaxed);
        if fe == 0 && be == 0 && srv == 0 && act == 0 {
            return;
        }
        last = format!("frontend {fe}, backend {be}, servers {srv}, actconn {act}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("counters did not settle: {last}");
}

/// The proxy still answers a fresh h2 client.
async fn still_serves(p: &Proxy) {
    let mut s = h2c::connect(p.addr).await;
    let r = h2c::send(&mut s, h2c::get("t", "/after", &[]), None)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_is_answered_with_goaway_enhance_your_calm() {
    let a = Backend::start("s1").await;
    let p = Proxy::start(&h2_config(&[&a], "")).await;
    let mut c = Raw::connect(p.addr).await;
    // CVE-2023-44487: open a stream and reset it at once, over and over, in one write.
    let mut burst = Vec::new();
    for i in 0..1000u32 {
        let id = 2 * i + 1;
        burst.extend(frame(
            HEADERS,
            END_STREAM | END_HEADERS,
            id,
            &get_block("/slow/200"),
        ));
        burst.extend(frame(RST_STREAM, 0, id, &8u32.to_be_bytes()));
    }
    let _ = tokio::time::timeout(SECS, c.send(&burst)).await;
    let g = c.until(SECS, |f| f.kind == GOAWAY).await;
    let g = g.expect("a GOAWAY");
    assert_eq!(g.error_code(), ENHANCE_YOUR_CALM);
    assert!(c.closed_within(SECS).await);
    // Few of the 1000 streams cost the backend a request.
    let n = a.requests().len();
    assert!(n <= 250, "{n} requests reached the backend");
    assert_settled(&p).await;
    still_serves(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resets_of_accepted_streams_over_the_rate_limit_close_the_connection() {
    let a = Backend::start("s1").await;
    let p = Proxy::start(&h2_config(&[&a], "")).await;
    let mut c = Raw::connect(p.addr).await;
    // Streams that are accepted (and go to the backend) before the client resets them: h2's
    // pending-accept guard does not see these; the meter does.
    let mut goaway = None;
    'outer: for round in 0..30u32 {
        let mut batch = Vec::new();
        for i in 0..20u32 {
            let id = 2 * (round * 20 + i) + 1;
            batch.extend(frame(
                HEADERS,
                END_STREAM | END_HEADERS,
                id,
                &get_block("/slow/1000"),
            ));
        }
        if c.send(&batch).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut rst = Vec::new();
        for i in 0..20u32 {
            let id = 2 * (round * 20 + i) + 1;
            rst.extend(frame(RST_STREAM, 0, id, &8u32.to_be_bytes()));
        }
        if c.send(&rst).await.is_err() {
            break;
        }
        while let Some(f) = c.next(Duration::from_millis(5)).await {
            if f.kind == GOAWAY {
                goaway = Some(f);
                break 'outer;
            }
        }
    }
    let g = match goaway {
        Some(g) => g,
        None => c.until(SECS, |f| f.kind == GOAWAY).await.expect("a GOAWAY"),
    };
    assert_eq!(g.error_code(), ENHANCE_YOUR_CALM);
    assert!(c.closed_within(SECS).await);
    assert_settled(&p).await;
    still_serves(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_and_ping_floods_are_answered_with_goaway_enhance_your_calm() {
    let a = Backend::start("s1").await;
    let p = Proxy::start(&h2_config(&[&a], "")).await;
    for flood in [
        settings(&[(0x4, 65535)]),
        frame(PING, 0, 0, &[1, 2, 3, 4, 5, 6, 7, 8]),
        frame(PRIORITY, 0, 3, &[0, 0, 0, 0, 16]),
    ] {
        let mut c = Raw::connect(p.addr).await;
        let burst: Vec<u8> = flood.repeat(5000);
        // The client never reads: the proxy must not queue 5000 replies for it.
        let _ = tokio::time::timeout(SECS, c.send(&burst)).await;
        let g = c.until(SECS, |f| f.kind == GOAWAY).await.expect("a GOAWAY");
        assert_eq!(g.error_code(), ENHANCE_YOUR_CALM);
        assert!(c.closed_within(SECS).await);
    }
    assert_settled(&p).await;
    still_serves(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuation_flood_and_hpack_bomb_are_cut_at_max_header_bytes() {
    let a = Backend::start("s1").await;
    let p = Proxy::start(&h2_config(&[&a], "")).await;

    // CONTINUATION flood: a header block that never ends, 100 bytes of fields per frame.
    let mut c = Raw::connect(p.addr).await;
    c.send(&frame(HEADERS, END_STREAM, 1, &get_block("/cont")))
        .await
        .unwrap();
    let mut field = Vec::new();
    lit(&mut field, b"x-flood", &[b'a'; 90]);
    let cont = frame(CONTINUATION, 0, 1, &field);
    let mut sent = 0usize;
    let mut cut = false;
    for _ in 0..20_000 {
        match tokio::time::timeout(Duration::from_secs(2), c.send(&cont)).await {
            Ok(Ok(())) => sent += cont.len(),
            _ => {
                cut = true;
                break;
            }
        }
    }
    // Either the writes failed (closed) or a GOAWAY/RST came, long before 2 MB of headers.
    let ended = cut
        || c.until(SECS, |f| f.kind == GOAWAY || f.kind == RST_STREAM)
            .await
            .is_some()
        || c.closed_within(SECS).await;
    assert!(ended, "the flood was accepted ({sent} bytes)");
    assert!(
        a.requests().is_empty(),
        "a flooded request reached the backend"
    );

    // HPACK bomb: one 4000-byte value in the dynamic table, then referenced 1000 times (1 byte
    // each): 4 MB of decoded fields from 5 kB on the wire.
    let mut c = Raw::connect(p.addr).await;
    let mut block = get_block("/bomb");
    block.push(0x40); // literal with incremental indexing, new name
    int(&mut block, 0, 7, 6);
    block.extend_from_slice(b"x-bomb");
    int(&mut block, 0, 7, 4000);
    block.extend(std::iter::repeat_n(b'b', 4000));
    block.extend(std::iter::repeat_n(0x80 | 62, 1000)); // indexed, first dynamic entry
                                                        // Split into frames of at most 16384 bytes (the default max frame size).
    let chunks: Vec<&[u8]> = block.chunks(16_000).collect();
    for (i, ch) in chunks.iter().enumerate() {
        let last = i + 1 == chunks.len();
        let (kind, flags) = if i == 0 {
            (HEADERS, END_STREAM | if last { END_HEADERS } else { 0 })
        } else {
            (CONTINUATION, if last { END_HEADERS } else { 0 })
        };
        let _ = c.send(&frame(kind, flags, 1, ch)).await;
    }
    // The stream is refused: a 431 answer, a reset, or the connection closed; never forwarded.
    let f = c
        .until(SECS, |f| {
            (f.kind == HEADERS && f.stream == 1) || f.kind == RST_STREAM || f.kind == GOAWAY
        })
        .await;
    assert!(
        f.is_some() || c.closed_within(SECS).await,
        "no answer to the bomb"
    );
    assert!(a.requests().is_empty(), "the bomb reached the backend");
    assert_settled(&p).await;
    still_serves(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_over_max_concurrent_streams_are_refused_and_all_are_released() {
    let a = Backend::start("s1").await;
    let p = Proxy::start(&h2_config(&[&a], "")).await;
    let mut c = Raw::connect(p.addr).await;
    let s = c.until(SECS, |f| f.kind == SETTINGS).await.unwrap();
    let advertised: Vec<(u16, u32)> = s
        .payload
        .chunks(6)
        .map(|p| {
            (
                u16::from_be_bytes([p[0], p[1]]),
                u32::from_be_bytes([p[2], p[3], p[4], p[5]]),
            )
        })
        .collect();
    assert!(advertised.contains(&(0x3, 100)), "{advertised:?}");
    c.send(&frame(SETTINGS, ACK, 0, &[])).await.unwrap();
    let mut burst = Vec::new();
    for i in 0..101u32 {
        burst.extend(frame(
            HEADERS,
            END_STREAM | END_HEADERS,
            2 * i + 1,
            &get_block("/slow/1500"),
        ));
    }
    c.send(&burst).await.unwrap();
    let r = c
        .until(SECS, |f| f.kind == RST_STREAM)
        .await
        .expect("the 101st stream is refused");
    assert_eq!((r.stream, r.error_code()), (201, REFUSED_STREAM));
    // The 100 others are answered.
    let mut answered = 0;
    while answered < 100 {
        match c.next(SECS).await {
            Some(f) if f.kind == HEADERS => answered += 1,
            Some(_) => {}
            None => break,
        }
    }
    assert_eq!(answered, 100);
    drop(c);
    assert_settled(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_opens_its_window_meets_timeout_client() {
    let a = Backend::start("s1").await;
    let p = Proxy::start(&h2_config(&[&a], "timeout_client = \"1s\"")).await;
    let mut c = Raw::connect(p.addr).await;
    // A zero stream window: the response head can come, no DATA can.
    c.send(&settings(&[(0x4, 0)])).await.unwrap();
    c.send(&frame(
        HEADERS,
        END_STREAM | END_HEADERS,
        1,
        &get_block("/big/4000000"),
    ))
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let r = c
        .until(Duration::from_secs(10), |f| {
            f.kind == RST_STREAM && f.stream == 1
        })
        .await
        .expect("the stream is reset once timeout_client passes");
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_ne!(r.error_code(), 0);
    // The backend connection and every slot are released while the client stays connected.
    let snap = p.app.rt.load();
    for _ in 0..40 {
        if snap.listens[0].servers[0]
            .live
            .counters
            .scur
            .load(Ordering::Relaxed)
            == 0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        snap.listens[0].servers[0]
            .live
            .counters
            .scur
            .load(Ordering::Relaxed),
        0
    );
    drop(snap);
    drop(c);
    assert_settled(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_get_goaway_after_the_idle_timeouts() {
    let a = Backend::start("s1").await;
    let p = Proxy::start(&h2_config(
        &[&a],
        "timeout_http_request = \"400ms\"\ntimeout_http_keep_alive = \"600ms\"",
    ))
    .await;
    // Never a stream: closed after timeout_http_request.
    let mut c = Raw::connect(p.addr).await;
    let t = std::time::Instant::now();
    let g = c.until(SECS, |f| f.kind == GOAWAY).await.expect("GOAWAY");
    assert_eq!(g.error_code(), 0);
    assert!(
        t.elapsed() >= Duration::from_millis(350),
        "{:?}",
        t.elapsed()
    );
    assert!(c.closed_answering_pings(SECS).await);
    // After a stream: closed after timeout_http_keep_alive.
    let mut c = Raw::connect(p.addr).await;
    c.send(&frame(
        HEADERS,
        END_STREAM | END_HEADERS,
        1,
        &get_block("/one"),
    ))
    .await
    .unwrap();
    let _ = c
        .until(SECS, |f| f.kind == DATA && f.flags & END_STREAM != 0)
        .await
        .expect("the response");
    let t = std::time::Instant::now();
    let g = c.until(SECS, |f| f.kind == GOAWAY).await.expect("GOAWAY");
    assert_eq!(g.error_code(), 0);
    assert!(
        t.elapsed() >= Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    assert!(c.closed_answering_pings(SECS).await);
    assert_settled(&p).await;
}
