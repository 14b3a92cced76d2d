//! Fairness between client connections on the real binary with one proxy worker (`workers = 1`,
//! the benchmark setting): a client that pipelines requests flat out cannot starve the others.
//! Each wake-up of a connection serves a bounded amount of work (a pipelined burst yields every
//! few requests, an accept burst every few accepts), and the worker's run queue is FIFO.
//!
//! Asserted by behaviour, not timing: the other clients finish all their requests while the
//! flooding client has received only a small part of its answers.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::*;

/// Requests the flooding client pipelines.
const FLOOD: usize = 20_000;
/// Sequential keep-alive requests of each other client.
const EACH: usize = 30;
const OTHERS: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pipelining_client_cannot_starve_the_others() {
    let backend = Backend::start("app1").await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = format!(
        "[global]\nworkers = 1\n[log]\naccess = \"off\"\n[[listen]]\nname = \"webapp\"\nbind = [\"127.0.0.1:{port}\"]\n[[listen.server]]\nname = \"app1\"\naddress = \"{}\"\ncheck = false\n",
        backend.addr
    );
    let path = write_file(dir.path(), "e.toml", &cfg);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let _d = spawn_daemon(&path, addr).await;

    // The flooder: one connection, FLOOD pipelined GETs written as fast as the proxy takes them.
    let flood = TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = flood.into_split();
    let writer = tokio::spawn(async move {
        let one = get("/flood", "");
        let batch: Vec<u8> = one.iter().copied().cycle().take(one.len() * 100).collect();
        for _ in 0..FLOOD / 100 {
            if wr.write_all(&batch).await.is_err() {
                return;
            }
        }
    });
    let answered = Arc::new(AtomicUsize::new(0));
    let counter = answered.clone();
    let reader = tokio::spawn(async move {
        const MARK: &[u8] = b"HTTP/1.1 200 ";
        let mut carry: Vec<u8> = Vec::new();
        let mut tmp = vec![0u8; 65536];
        loop {
            let n = match rd.read(&mut tmp).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            carry.extend_from_slice(&tmp[..n]);
            let found = carry.windows(MARK.len()).filter(|w| *w == MARK).count();
            counter.fetch_add(found, Ordering::Relaxed);
            // Keep only a tail shorter than the mark, so no mark is counted twice.
            let keep = carry.len().min(MARK.len() - 1);
            carry.drain(..carry.len() - keep);
        }
    });
    // The flood is flowing before the others start.
    for _ in 0..2000 {
        if answered.load(Ordering::Relaxed) >= 50 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        answered.load(Ordering::Relaxed) >= 50,
        "the flood never got going"
    );

    let mut others = Vec::new();
    for i in 0..OTHERS {
        others.push(tokio::spawn(async move {
            let mut c = Client::connect(addr).await;
            for k in 0..EACH {
                c.send(&get(&format!("/other/{i}/{k}"), "")).await;
                let r = c.read(false).await.expect("an answer");
                assert_eq!(r.status, 200);
            }
        }));
    }
    for o in others {
        tokio::time::timeout(Duration::from_secs(60), o)
            .await
            .expect("the other clients are served while the flood goes on")
            .expect("other client");
    }
    let at_end = answered.load(Ordering::Relaxed);
    eprintln!("flood answers when the others were done: {at_end} of {FLOOD}");
    writer.abort();
    reader.abort();
    // Served in turn, the flood advanced by roughly as many requests as the others made; a
    // connection that kept its worker would have had its whole flood answered first.
    assert!(
        at_end < FLOOD / 2,
        "the flooding client got {at_end} of {FLOOD} answers before {OTHERS} other clients \
         finished {EACH} requests each"
    );
}
