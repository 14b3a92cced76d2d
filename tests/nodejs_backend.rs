//! A real node.js backend, as in the seed: node closes idle keep-alive connections after 5 s, and a
//! proxy that reuses such a connection at that moment sends a request into a closing socket.
//! edgelb drops idle upstream connections at 4 s and, should a reused connection still die before
//! any response byte, replays an idempotent body-less request once on a fresh connection.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

const APP: &str = r#"
const http = require('http');
const port = parseInt(process.argv[2], 10);
const server = http.createServer((req, res) => {
  res.setHeader('x-backend', 'node');
  res.setHeader('etag', '"n"');
  res.end('hello from node ' + req.url + ' xff=' + (req.headers['x-forwarded-for'] || '') + '\n');
});
server.listen(port, '127.0.0.1', () => console.log('listening'));
"#;

struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn node_available() -> bool {
    if Command::new("node").arg("--version").output().is_ok() {
        return true;
    }
    if std::env::var("EDGELB_SKIP_NODE").as_deref() == Ok("1") {
        eprintln!("node not installed: skipped (EDGELB_SKIP_NODE=1)");
        return false;
    }
    panic!("node.js is not installed (apt-get install nodejs), or set EDGELB_SKIP_NODE=1");
}

async fn start_node(dir: &std::path::Path) -> (Node, std::net::SocketAddr) {
    let script = write_file(dir, "app.js", APP);
    let port = free_port();
    let node = Node(
        Command::new("node")
            .arg(&script)
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start node"),
    );
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return (node, addr);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("node did not start");
}

fn config(node: std::net::SocketAddr, pool_idle: &str) -> String {
    format!(
        "[global]\npool_idle_timeout = \"{pool_idle}\"\n[log]\naccess = \"off\"\n[[listen]]\nname = \"webapp\"\nbind = [\"127.0.0.1:0\"]\nforwardfor = {{ except = [\"10.0.0.0/8\"] }}\ncookie = {{ name = \"SERVERID\" }}\n[[listen.server]]\nname = \"node1\"\naddress = \"{node}\"\ncheck = false\n"
    )
}

/// Opens `n` pooled upstream connections (n concurrent requests), waits `idle`, then sends `n`
/// concurrent requests again; returns the statuses of the second wave.
async fn wave(p: &Proxy, n: usize, idle: Duration) -> Vec<u16> {
    let first: Vec<_> = (0..n)
        .map(|i| {
            let addr = p.addr;
            tokio::spawn(async move { fetch(addr, &format!("/warm{i}"), "").await.status })
        })
        .collect();
    for f in first {
        assert_eq!(f.await.unwrap(), 200);
    }
    tokio::time::sleep(idle).await;
    let second: Vec<_> = (0..n)
        .map(|i| {
            let addr = p.addr;
            tokio::spawn(async move { fetch(addr, &format!("/again{i}"), "").await.status })
        })
        .collect();
    let mut out = Vec::new();
    for f in second {
        out.push(f.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_backend_gets_cookies_and_xff_like_behind_haproxy() {
    if !node_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_node, addr) = start_node(dir.path()).await;
    let p = Proxy::start(&config(addr, "4s")).await;
    let r = fetch(p.addr, "/x", "").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("set-cookie"), Some("SERVERID=node1; path=/"));
    assert_eq!(
        r.header("cache-control"),
        Some("private"),
        "node sends an ETag"
    );
    assert!(r.text().contains("xff=127.0.0.1"), "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_after_node_keep_alive_timeout_all_succeed() {
    if !node_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_node, addr) = start_node(dir.path()).await;
    // Default pool idle timeout (4 s) is below node's 5 s: idle connections are never reused late.
    let p = Proxy::start(&config(addr, "4s")).await;
    let statuses = wave(&p, 8, Duration::from_millis(5050)).await;
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reusing_a_connection_node_is_closing_is_replayed_not_failed() {
    if !node_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_node, addr) = start_node(dir.path()).await;
    // A pool that keeps connections past node's 5 s: the race happens; replay must absorb it.
    let p = Proxy::start(&config(addr, "30s")).await;
    let mut all = Vec::new();
    for idle_ms in [4995u64, 5000, 5005] {
        all.extend(wave(&p, 12, Duration::from_millis(idle_ms)).await);
    }
    assert!(all.iter().all(|&s| s == 200), "{all:?}");
}
