//! Free loopback ports for tests that must write a port into a config or a command line before
//! the process that binds it starts.
//!
//! Not from the kernel's ephemeral range (`net.ipv4.ip_local_port_range`, 32768-60999 by
//! default): a port bound there and released can be handed at once to another test's outgoing
//! connection as its local port, and the bind that follows fails with `EADDRINUSE` (seen in CI:
//! `tests/tls.rs`). Ports come from 10000-32767 instead, where the kernel never picks, starting
//! at a point that differs per process and stepping on by one per call, each checked free on
//! 127.0.0.1 and 0.0.0.0 at the time of the call.

use std::sync::atomic::{AtomicU32, Ordering};

const LOW: u32 = 10_000;
const HIGH: u32 = 32_767;

/// A loopback port that was free a moment ago, outside the kernel's ephemeral range.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let span = HIGH - LOW;
    let seed = {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        std::process::id().wrapping_mul(7919) ^ t
    };
    // The first call picks the process's start; later calls step on from it.
    let _ = NEXT.compare_exchange(0, 1 + seed % span, Ordering::SeqCst, Ordering::SeqCst);
    for _ in 0..span {
        let k = NEXT.fetch_add(1, Ordering::SeqCst);
        let port = (LOW + k % span) as u16;
        let free =
            |ip: [u8; 4]| std::net::TcpListener::bind((std::net::Ipv4Addr::from(ip), port)).is_ok();
        if free([127, 0, 0, 1]) && free([0, 0, 0, 0]) {
            return port;
        }
    }
    panic!("no free loopback port in {LOW}-{HIGH}");
}
