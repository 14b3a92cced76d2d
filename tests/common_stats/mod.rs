//! Test support for the health, stats API and dashboard tests: real TCP/HTTP backends on
//! `127.0.0.1:0` that can be killed, a runtime built from TOML, the stats server on port 0, and a
//! tiny HTTP/1.1 client (raw socket, so tests see exactly what the server sent).
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use edgelb::runtime::Runtime;
use edgelb::stats::StatsState;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The HAProxy 2.6.12 header line, captured from a real `haproxy -f` run (`show stat`).
pub const HAPROXY_HEADER: &str = include_str!("haproxy-2.6.12-stats-header.csv");
/// A whole `show stat` of HAProxy 2.6.12 (one listen, two servers, one drained) for reference.
pub const HAPROXY_SAMPLE: &str = include_str!("haproxy-2.6.12-show-stat-sample.csv");

/// An HTTP backend answering every request with `status` (changeable while running).
pub struct Backend {
    pub addr: SocketAddr,
    pub status: Arc<AtomicU16>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Backend {
    pub async fn start() -> Backend {
        Self::start_at("127.0.0.1:0".parse().expect("addr")).await
    }

    /// Starts on a given address (to bring a killed backend back on its port).
    pub async fn start_at(at: SocketAddr) -> Backend {
        let listener = TcpListener::bind(at).await.expect("bind backend");
        let addr = listener.local_addr().expect("addr");
        let status = Arc::new(AtomicU16::new(200));
        let st = status.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    continue;
                };
                let st = st.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let code = st.load(Ordering::Relaxed);
                    let reason = if code == 200 {
                        "OK"
                    } else {
                        "Service Unavailable"
                    };
                    let resp = format!(
                        "HTTP/1.1 {code} {reason}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                    );
                    let _ = s.write_all(resp.as_bytes()).await;
                });
            }
        });
        Backend {
            addr,
            status,
            task: Some(task),
        }
    }

    /// Closes the listening socket: new connections are refused from now on.
    pub async fn kill(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// `promtool` (Debian `prometheus`), if installed: `EDGELB_PROMTOOL` or `/usr/bin/promtool`.
pub fn promtool() -> Option<std::path::PathBuf> {
    tool("EDGELB_PROMTOOL", "/usr/bin/promtool")
}

/// A tool the test needs: the variable's path, else the default path if it exists.
pub fn tool(var: &str, default: &str) -> Option<std::path::PathBuf> {
    if let Ok(p) = std::env::var(var) {
        return Some(p.into());
    }
    let p = std::path::PathBuf::from(default);
    p.exists().then_some(p)
}

/// One `[[listen]]` named `name` with a server per backend (`app1`, `app2`, ...) and `health`
/// lines appended to `[listen.health]`.
pub fn listen_toml(name: &str, bind_port: u16, backends: &[SocketAddr], health: &str) -> String {
    let mut s = format!(
        "[[listen]]\nname = \"{name}\"\nbind = [\"127.0.0.1:{bind_port}\"]\ncookie = {{ name = \"SERVERID\" }}\n[listen.health]\n{health}\n"
    );
    for (i, b) in backends.iter().enumerate() {
        s.push_str(&format!(
            "[[listen.server]]\nname = \"app{}\"\naddress = \"{b}\"\n",
            i + 1
        ));
    }
    s
}

pub fn runtime(toml: &str) -> Arc<Runtime> {
    let loaded = edgelb::config::load_str(toml, "test.toml").expect("valid test config");
    let snap =
        edgelb::runtime::Snapshot::build(Arc::new(loaded.config), "test.toml", "lb1".into(), None)
            .expect("snapshot");
    Runtime::new(snap, vec![])
}

/// Builds the next snapshot generation from `toml`, keeping live state, and publishes it.
pub fn reload(rt: &Runtime, toml: &str) {
    let loaded = edgelb::config::load_str(toml, "test.toml").expect("valid test config");
    let prev = rt.load();
    let snap = edgelb::runtime::Snapshot::build(
        Arc::new(loaded.config),
        "test.toml",
        "lb1".into(),
        Some(&prev),
    )
    .expect("snapshot");
    rt.snapshot.store(Arc::new(snap));
}

/// The stats server on `127.0.0.1:0`, stopped on drop.
pub struct StatsServer {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl StatsServer {
    pub async fn start(rt: Arc<Runtime>) -> StatsServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind stats");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let state = StatsState::new(rt);
        let task = tokio::spawn(async move {
            edgelb::stats::serve_on(state, vec![listener], async {
                let _ = rx.await;
            })
            .await;
        });
        StatsServer {
            addr,
            stop: Some(tx),
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn get(&self, path: &str) -> Resp {
        http(self.addr, "GET", path, &[], "").await
    }

    pub async fn post(&self, path: &str, headers: &[(&str, &str)], body: &str) -> Resp {
        http(self.addr, "POST", path, headers, body).await
    }
}

impl Drop for StatsServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.task.abort();
    }
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// One HTTP/1.1 request with `Connection: close`; reads the whole answer.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Resp {
    let mut s = TcpStream::connect(addr).await.expect("connect stats");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if method == "POST" || !body.is_empty() {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
        .await
        .expect("response within 10s")
        .expect("read");
    let text = String::from_utf8(raw).expect("utf-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("response head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Resp {
        status,
        headers,
        body: body.to_string(),
    }
}

/// Polls `cond` every 20 ms until it holds or `limit` passes; returns the time it took.
pub async fn wait_for<F, Fut>(limit: Duration, what: &str, mut cond: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if cond().await {
            return start.elapsed();
        }
        if start.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The CSV rows as (pxname, svname) -> fields, using the header for names.
pub fn csv_field(csv: &str, px: &str, sv: &str, col: &str) -> String {
    let mut lines = csv.lines();
    let header = lines.next().expect("header");
    let cols: Vec<&str> = header.trim_start_matches("# ").split(',').collect();
    let idx = cols
        .iter()
        .position(|c| *c == col)
        .unwrap_or_else(|| panic!("no column {col}"));
    for l in lines {
        let f: Vec<&str> = l.split(',').collect();
        if f.len() > 1 && f[0] == px && f[1] == sv {
            return f[idx].to_string();
        }
    }
    panic!("no row {px}/{sv} in\n{csv}");
}

/// A token file under a temp dir; returns (dir guard, path).
pub fn token_file(token: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("admin.token");
    std::fs::write(&p, format!("{token}\n")).expect("write token");
    // Secret files must be mode 0600 (the start-up preflight and the stats token cache check).
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod token");
    let s = p.display().to_string();
    (dir, s)
}
