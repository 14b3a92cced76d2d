//! The floor: the least a proxy can do on the bench rig, to measure what the kernel and the rig
//! cost before any HTTP work. A byte relay on one tokio current-thread (like one edgelb worker):
//! each client connection gets its own backend connection (round-robin over the backends, kept
//! for the client connection's life) and bytes are copied both ways (`copy_bidirectional`), so
//! a keep-alive request costs exactly what a proxy cannot avoid: a read and a write on each
//! side, and the epoll wake-ups. No parsing, no headers, no log, no pool.
//!
//!   cargo run --release --example bench_floor -- 127.0.0.1:18160 127.0.0.1:18181 127.0.0.1:18182
//!
//! It stops by itself after `BENCH_BACKEND_SECS` seconds (default 900), so a forgotten run ends.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

async fn relay(mut client: TcpStream, backend: SocketAddr) {
    let Ok(mut up) = TcpStream::connect(backend).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = up.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut up).await;
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(listen), backends) = (args.next(), args.collect::<Vec<_>>()) else {
        eprintln!("usage: bench_floor LISTEN BACKEND...");
        std::process::exit(2);
    };
    let backends: Vec<SocketAddr> = match backends.iter().map(|b| b.parse()).collect() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("bad backend address: {e}");
            std::process::exit(2);
        }
    };
    if backends.is_empty() {
        eprintln!("usage: bench_floor LISTEN BACKEND...");
        std::process::exit(2);
    }
    let secs = std::env::var("BENCH_BACKEND_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(900);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            std::process::exit(1);
        }
    };
    rt.block_on(async move {
        let l = match TcpListener::bind(&listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("bind {listen}: {e}");
                std::process::exit(1);
            }
        };
        let accept = async {
            let mut next = 0;
            loop {
                match l.accept().await {
                    Ok((s, _)) => {
                        tokio::spawn(relay(s, backends[next % backends.len()]));
                        next += 1;
                    }
                    // Out of descriptors and the like: back off instead of spinning.
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(secs), accept).await;
    });
}
