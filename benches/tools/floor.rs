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
//! `FLOOR_SPIN` and `FLOOR_TOUCH` add work per read (see `Work`), for experiments only.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

/// Work added per read, to see how user-space work changes the kernel's cost per request
/// (benches/README.md, "the floor with work"): `FLOOR_SPIN` iterations of a dependent
/// multiply (CPU only, on hot data), and `FLOOR_TOUCH` bytes of per-connection state written,
/// one byte per 64-byte line (memory a request keeps, cold by the time it is touched again).
/// Both 0 (the default): the plain `copy_bidirectional` floor.
#[derive(Clone, Copy)]
struct Work {
    spin: u64,
    touch: usize,
}

impl Work {
    fn from_env() -> Work {
        let var = |k: &str| std::env::var(k).ok().and_then(|v| v.parse().ok());
        Work {
            spin: var("FLOOR_SPIN").unwrap_or(0),
            touch: var("FLOOR_TOUCH").map(|v: u64| v as usize).unwrap_or(0),
        }
    }

    fn none(self) -> bool {
        self.spin == 0 && self.touch == 0
    }

    fn run(self, state: &mut [u8], salt: u8) {
        let mut x = std::hint::black_box(salt as u64 | 1);
        for _ in 0..self.spin {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
        }
        std::hint::black_box(x);
        for b in state.iter_mut().step_by(64) {
            *b = b.wrapping_add(salt);
        }
    }
}

/// One direction of the relay with `work` done after each read.
async fn pump<R, W>(mut rd: R, mut wr: W, work: Work, salt: u8) -> std::io::Result<()>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 8192];
    let mut state = vec![0u8; work.touch];
    loop {
        let n = rd.read(&mut buf).await?;
        if n == 0 {
            return wr.shutdown().await;
        }
        work.run(&mut state, salt);
        wr.write_all(&buf[..n]).await?;
    }
}

async fn relay(mut client: TcpStream, backend: SocketAddr, work: Work) {
    let Ok(mut up) = TcpStream::connect(backend).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = up.set_nodelay(true);
    if work.none() {
        let _ = tokio::io::copy_bidirectional(&mut client, &mut up).await;
        return;
    }
    let (crd, cwr) = client.split();
    let (urd, uwr) = up.split();
    let _ = tokio::join!(pump(crd, uwr, work, 1), pump(urd, cwr, work, 2));
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
    let work = Work::from_env();
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
                        tokio::spawn(relay(s, backends[next % backends.len()], work));
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
