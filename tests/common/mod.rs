//! Test builders for the proxy: real HTTP/1.1 backends on 127.0.0.1:0 that record the exact bytes
//! they receive, an in-process edgelb, and raw-socket clients that see the exact bytes sent back.
#![allow(dead_code)]

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use edgelb::app::{App, Options, Source};

/// A keep-alive HTTP/1.1 backend that answers `server=NAME` plus the request head it received.
///
/// Paths: `/slow/MS`, `/close` (drop without answer), `/garbage`, `/truncated` (promises 1000
/// bytes, sends 10, closes), `/chunked`, `/nolen` (close-delimited), `/status/N`, `/setcookie`,
/// `/ws` (101 then echo), `/big/N` (N body bytes); `?h=Name:value` adds a response header
/// (`%20` = space). `Expect: 100-continue` is answered with a 100 before the body is read.
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    /// Raw bytes of every request (head and body) in arrival order.
    pub received: Arc<Mutex<Vec<Vec<u8>>>>,
    pub connections: Arc<AtomicUsize>,
    task: JoinHandle<()>,
    /// Tasks of accepted connections, so `kill` can drop them.
    conn_tasks: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Backend {
    pub async fn start(name: &str) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(name, listener)
    }

    /// Starts on a given address (to bring a stopped backend back).
    pub async fn start_at(name: &str, addr: SocketAddr) -> Backend {
        let listener = TcpListener::bind(addr).await.unwrap();
        Self::serve(name, listener)
    }

    fn serve(name: &str, listener: TcpListener) -> Backend {
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let conn_tasks = Arc::new(Mutex::new(Vec::new()));
        let (n, r, c) = (name.to_string(), received.clone(), connections.clone());
        let ct = conn_tasks.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    return;
                };
                c.fetch_add(1, Ordering::SeqCst);
                let h = tokio::spawn(backend_conn(s, n.clone(), r.clone()));
                ct.lock().unwrap().push(h.abort_handle());
            }
        });
        Backend {
            name: name.to_string(),
            addr,
            received,
            connections,
            task,
            conn_tasks,
        }
    }

    /// Kills the backend: stops listening (new connections are refused) and drops every
    /// established connection, as when the process dies.
    pub fn kill(&self) {
        self.task.abort();
        for h in self.conn_tasks.lock().unwrap().drain(..) {
            h.abort();
        }
    }

    /// Stops listening: new connections are refused (established ones keep going).
    pub fn stop(&self) {
        self.task.abort();
    }

    pub fn requests(&self) -> Vec<String> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect()
    }

    pub fn last_request(&self) -> String {
        self.requests().pop().unwrap_or_default()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn query_headers(target: &str) -> Vec<String> {
    let Some((_, q)) = target.split_once('?') else {
        return Vec::new();
    };
    q.split('&')
        .filter_map(|kv| kv.strip_prefix("h="))
        .map(|v| v.replace("%20", " "))
        .collect()
}

async fn backend_conn(mut s: TcpStream, name: String, received: Arc<Mutex<Vec<Vec<u8>>>>) {
    let mut buf: Vec<u8> = Vec::new();
    let mut served = 0usize;
    loop {
        // Read a head.
        let head_len = loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut headers);
            if let Ok(httparse::Status::Complete(n)) = req.parse(&buf) {
                break n;
            }
            let mut tmp = [0u8; 8192];
            match s.read(&mut tmp).await {
                Ok(0) | Err(_) => return,
                Ok(k) => buf.extend_from_slice(&tmp[..k]),
            }
        };
        let head = buf[..head_len].to_vec();
        let head_text = String::from_utf8_lossy(&head).into_owned();
        let lower = head_text.to_ascii_lowercase();
        let target = head_text.split(' ').nth(1).unwrap_or("/").to_string();
        let path = target.split('?').next().unwrap_or("/").to_string();
        if lower.contains("\r\nexpect: 100-continue") {
            let _ = s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await;
        }
        // Read the body.
        let mut rest = buf.split_off(head_len);
        let mut body = Vec::new();
        if let Some(cl) = lower
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
        {
            while rest.len() < cl {
                let mut tmp = [0u8; 8192];
                match s.read(&mut tmp).await {
                    Ok(0) | Err(_) => return,
                    Ok(k) => rest.extend_from_slice(&tmp[..k]),
                }
            }
            body = rest.drain(..cl).collect();
        } else if lower.contains("\r\ntransfer-encoding: chunked") {
            let mut dec = edgelb::proxy::h1::ChunkedDecoder::default();
            loop {
                let mut raw = Vec::new();
                let n = match dec.feed(&rest, &mut raw, true) {
                    Ok(n) => n,
                    Err(_) => return,
                };
                body.extend_from_slice(&raw);
                rest.drain(..n);
                if dec.is_done() {
                    break;
                }
                let mut tmp = [0u8; 8192];
                match s.read(&mut tmp).await {
                    Ok(0) | Err(_) => return,
                    Ok(k) => rest.extend_from_slice(&tmp[..k]),
                }
            }
        }
        buf = rest;
        let mut rec = head.clone();
        rec.extend_from_slice(&body);
        received.lock().unwrap().push(rec);

        let extra: String = query_headers(&target)
            .iter()
            .map(|h| format!("{h}\r\n"))
            .collect();
        let text_body = format!("server={name}\n{head_text}");
        served += 1;
        // `/oneshot...`: like node closing an idle keep-alive connection just as a request
        // arrives: only the first request of a connection is answered.
        if path.starts_with("/oneshot") && served > 1 {
            return;
        }
        let resp: Vec<u8> = if let Some(ms) = path.strip_prefix("/slow/") {
            tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(100))).await;
            ok(&name, &extra, text_body.as_bytes())
        } else if path == "/close" {
            return;
        } else if path == "/garbage" {
            let _ = s.write_all(b"THIS IS NOT HTTP\r\n\r\n").await;
            return;
        } else if path == "/truncated" {
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n0123456789")
                .await;
            return;
        } else if path == "/chunked" {
            format!(
                "HTTP/1.1 200 OK\r\nx-backend: {name}\r\n{extra}transfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
            )
            .into_bytes()
        } else if path == "/nolen" {
            let _ = s
                .write_all(
                    format!("HTTP/1.1 200 OK\r\nx-backend: {name}\r\n\r\nuntil-close").as_bytes(),
                )
                .await;
            return;
        } else if let Some(code) = path.strip_prefix("/status/") {
            let code: u16 = code.parse().unwrap_or(200);
            if code == 204 || code == 304 {
                format!("HTTP/1.1 {code} X\r\nx-backend: {name}\r\n{extra}\r\n").into_bytes()
            } else {
                let b = format!("status {code}");
                format!(
                    "HTTP/1.1 {code} X\r\nx-backend: {name}\r\n{extra}content-length: {}\r\n\r\n{b}",
                    b.len()
                )
                .into_bytes()
            }
        } else if path == "/setcookie" {
            let extra =
                format!("{extra}set-cookie: SERVERID=from-app; path=/\r\nset-cookie: app=1\r\n");
            ok(&name, &extra, text_body.as_bytes())
        } else if let Some(n) = path.strip_prefix("/big/") {
            let n: usize = n.parse().unwrap_or(0);
            let mut v =
                format!("HTTP/1.1 200 OK\r\nx-backend: {name}\r\ncontent-length: {n}\r\n\r\n")
                    .into_bytes();
            v.resize(v.len() + n, b'x');
            v
        } else if path == "/ws" {
            let _ = s
                .write_all(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n")
                .await;
            let mut tmp = [0u8; 4096];
            if !buf.is_empty() {
                let _ = s.write_all(&buf).await;
            }
            loop {
                match s.read(&mut tmp).await {
                    Ok(0) | Err(_) => return,
                    Ok(k) => {
                        if s.write_all(&tmp[..k]).await.is_err() {
                            return;
                        }
                    }
                }
            }
        } else {
            ok(&name, &extra, text_body.as_bytes())
        };
        let is_head = head_text.starts_with("HEAD ");
        let resp = if is_head {
            let end = resp
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map(|p| p + 4)
                .unwrap_or(resp.len());
            resp[..end].to_vec()
        } else {
            resp
        };
        if s.write_all(&resp).await.is_err() {
            return;
        }
        if lower.contains("\r\nconnection: close") {
            return;
        }
    }
}

fn ok(name: &str, extra: &str, body: &[u8]) -> Vec<u8> {
    let mut v = format!(
        "HTTP/1.1 200 OK\r\nx-backend: {name}\r\n{extra}content-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    v.extend_from_slice(body);
    v
}

/// An in-process edgelb.
pub struct Proxy {
    pub app: App,
    pub addr: SocketAddr,
}

impl Proxy {
    pub async fn start(toml: &str) -> Proxy {
        let app = App::start(Options {
            source: Source::Text(toml.to_string()),
            node: Some("test".into()),
        })
        .await
        .unwrap_or_else(|e| panic!("edgelb failed to start: {e}\n{toml}"));
        let name = app.rt.load().listens[0].name.to_string();
        let addr = app.listen_addr(&name).expect("listen address");
        Proxy { app, addr }
    }
}

/// The seed's `listen webapp` over these backends, plus `extra` lines inside `[[listen]]`.
pub fn seed_config(backends: &[&Backend], extra_listen: &str, extra_top: &str) -> String {
    let mut s = format!(
        "[log]\naccess = \"off\"\n{extra_top}\n[[listen]]\nname = \"webapp\"\nbind = [\"127.0.0.1:0\"]\nforwardfor = {{ except = [\"10.0.0.0/8\"] }}\ncookie = {{ name = \"SERVERID\", insert = true, indirect = true, nocache = true }}\n{extra_listen}\n"
    );
    for b in backends {
        let _ = write!(
            unsafe_string(&mut s),
            "[[listen.server]]\nname = \"{}\"\naddress = \"{}\"\ncheck = false\n",
            b.name,
            b.addr
        );
    }
    s
}

fn unsafe_string(s: &mut String) -> StringWriter<'_> {
    StringWriter(s)
}

pub struct StringWriter<'a>(&'a mut String);

impl std::io::Write for StringWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.push_str(&String::from_utf8_lossy(buf));
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A parsed response as the client saw it.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub raw: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn backend(&self) -> String {
        self.header("x-backend").unwrap_or("").to_string()
    }
}

/// A client connection that reads whole responses (keep-alive aware).
pub struct Client {
    pub s: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        Client {
            s: TcpStream::connect(addr).await.unwrap(),
            buf: Vec::new(),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).await.unwrap();
    }

    /// Reads one response; `head_request` for HEAD (no body).
    pub async fn read(&mut self, head_request: bool) -> Option<Response> {
        tokio::time::timeout(Duration::from_secs(20), self.read_inner(head_request))
            .await
            .expect("response within 20 s")
    }

    async fn fill(&mut self) -> bool {
        let mut tmp = [0u8; 16384];
        match self.s.read(&mut tmp).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&tmp[..n]);
                true
            }
        }
    }

    async fn read_inner(&mut self, head_request: bool) -> Option<Response> {
        loop {
            let (status, headers, head_len) = {
                let mut h = [httparse::EMPTY_HEADER; 64];
                let mut r = httparse::Response::new(&mut h);
                match r.parse(&self.buf) {
                    Ok(httparse::Status::Complete(n)) => (
                        r.code.unwrap_or(0),
                        r.headers
                            .iter()
                            .map(|h| {
                                (
                                    h.name.to_string(),
                                    String::from_utf8_lossy(h.value).into_owned(),
                                )
                            })
                            .collect::<Vec<_>>(),
                        n,
                    ),
                    _ => {
                        if !self.fill().await {
                            return None;
                        }
                        continue;
                    }
                }
            };
            let get = |n: &str| {
                headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(n))
                    .map(|(_, v)| v.clone())
            };
            let mut raw: Vec<u8> = self.buf.drain(..head_len).collect();
            if (100..200).contains(&status) && status != 101 {
                continue;
            }
            let mut body = Vec::new();
            if head_request || status == 204 || status == 304 || status == 101 {
            } else if get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
                let mut dec = edgelb::proxy::h1::ChunkedDecoder::default();
                loop {
                    let mut data = Vec::new();
                    let n = dec
                        .feed(&self.buf, &mut data, false)
                        .expect("valid chunked");
                    raw.extend(self.buf.drain(..n));
                    body.extend_from_slice(&data);
                    if dec.is_done() || !self.fill().await {
                        break;
                    }
                }
            } else if let Some(cl) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
                while self.buf.len() < cl {
                    if !self.fill().await {
                        break;
                    }
                }
                let n = cl.min(self.buf.len());
                body = self.buf.drain(..n).collect();
                raw.extend_from_slice(&body);
            } else {
                while self.fill().await {}
                body = std::mem::take(&mut self.buf);
                raw.extend_from_slice(&body);
            }
            return Some(Response {
                status,
                headers,
                body,
                raw,
            });
        }
    }

    /// True when the server closed the connection (within `wait`).
    pub async fn closed_within(&mut self, wait: Duration) -> bool {
        let mut tmp = [0u8; 1];
        matches!(
            tokio::time::timeout(wait, self.s.read(&mut tmp)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}

/// Sends raw bytes on a fresh connection and returns everything received until the server closes
/// (or `wait` passes).
pub async fn raw_exchange(addr: SocketAddr, bytes: &[u8], wait: Duration) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, s.read_to_end(&mut out)).await;
    out
}

/// The status code of a raw response (0 when there is none).
pub fn status_of(raw: &[u8]) -> u16 {
    String::from_utf8_lossy(raw)
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// A GET with optional extra header lines, on a keep-alive connection.
pub fn get(path: &str, extra: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n{extra}\r\n").into_bytes()
}

/// One GET on a new connection.
pub async fn fetch(addr: SocketAddr, path: &str, extra: &str) -> Response {
    let mut c = Client::connect(addr).await;
    c.send(&get(path, extra)).await;
    c.read(false).await.expect("a response")
}

// Free loopback ports outside the kernel's ephemeral range (`free_port`).
#[path = "../support/ports.rs"]
mod ports;
#[allow(unused_imports)] // not every test crate that includes this module picks ports
pub use ports::free_port;

pub fn write_file(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    let mut f = std::fs::File::create(&p).unwrap();
    f.write_all(text.as_bytes()).unwrap();
    p
}

/// A backend that accepts connections and never answers (a stalled, SIGSTOPped process): the
/// sockets stay open and nothing is read or written until the backend is dropped.
pub struct StallBackend {
    pub addr: SocketAddr,
    pub accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl StallBackend {
    pub async fn start() -> StallBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let a = accepted.clone();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                held.push(s);
            }
        });
        StallBackend {
            addr,
            accepted,
            task,
        }
    }
}

impl Drop for StallBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A backend that reads each request head and answers with `script` (raw bytes), then either
/// closes normally or, with `reset`, aborts the connection with a TCP RST (SO_LINGER 0).
pub struct ScriptedBackend {
    pub addr: SocketAddr,
    pub accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl ScriptedBackend {
    pub async fn start(script: &'static [u8], reset: bool) -> ScriptedBackend {
        Self::spawn(Answer::Fixed(script, reset)).await
    }

    /// Answers each request with `route(path)`, then half-closes and reads until the proxy
    /// closes (so the answer is never cut by a reset).
    pub async fn start_routed(route: fn(&str) -> &'static [u8]) -> ScriptedBackend {
        Self::spawn(Answer::ByPath(route)).await
    }

    async fn spawn(answer: Answer) -> ScriptedBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let a = accepted.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut tmp = [0u8; 4096];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut tmp).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&tmp[..n]),
                        }
                    }
                    match answer {
                        Answer::Fixed(script, reset) => {
                            let _ = s.write_all(script).await;
                            if reset {
                                let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
                            }
                        }
                        Answer::ByPath(route) => {
                            let text = String::from_utf8_lossy(&buf).into_owned();
                            let _ = s
                                .write_all(route(text.split(' ').nth(1).unwrap_or("/")))
                                .await;
                            let _ = s.shutdown().await;
                            while let Ok(n) = s.read(&mut tmp).await {
                                if n == 0 {
                                    break;
                                }
                            }
                        }
                    }
                    drop(s);
                });
            }
        });
        ScriptedBackend {
            addr,
            accepted,
            task,
        }
    }
}

#[derive(Clone, Copy)]
enum Answer {
    Fixed(&'static [u8], bool),
    ByPath(fn(&str) -> &'static [u8]),
}

impl Drop for ScriptedBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A config whose servers are given as (name, address) pairs, for backends that are not
/// `Backend`s; otherwise like `seed_config`.
pub fn seed_config_addrs(
    servers: &[(&str, SocketAddr)],
    extra_listen: &str,
    extra_top: &str,
) -> String {
    let mut s = format!(
        "[log]\naccess = \"off\"\n{extra_top}\n[[listen]]\nname = \"webapp\"\nbind = [\"127.0.0.1:0\"]\nforwardfor = {{ except = [\"10.0.0.0/8\"] }}\ncookie = {{ name = \"SERVERID\", insert = true, indirect = true, nocache = true }}\n{extra_listen}\n"
    );
    for (name, addr) in servers {
        s.push_str(&format!(
            "[[listen.server]]\nname = \"{name}\"\naddress = \"{addr}\"\ncheck = false\n"
        ));
    }
    s
}

/// A real HAProxy process, killed on drop.
pub struct Haproxy(pub std::process::Child);

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether `haproxy` can run; panics with a clear message when it is missing, unless
/// `EDGELB_SKIP_HAPROXY=1` (then the caller skips its differential test).
pub fn haproxy_available() -> bool {
    if std::process::Command::new("haproxy")
        .arg("-v")
        .output()
        .is_ok()
    {
        return true;
    }
    if std::env::var("EDGELB_SKIP_HAPROXY").as_deref() == Ok("1") {
        eprintln!("haproxy not installed: differential test skipped (EDGELB_SKIP_HAPROXY=1)");
        return false;
    }
    panic!("haproxy is not installed (apt-get install haproxy), or set EDGELB_SKIP_HAPROXY=1");
}

/// Starts `haproxy -db` on config text `cfg` (written into `dir`) and waits for `port` to listen.
pub async fn start_haproxy_cfg(dir: &std::path::Path, port: u16, cfg: &str) -> Haproxy {
    let path = write_file(dir, "haproxy.cfg", cfg);
    let child = std::process::Command::new("haproxy")
        .arg("-f")
        .arg(&path)
        .arg("-db")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start haproxy");
    for _ in 0..100 {
        if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Haproxy(child)
}

/// A real `edgelb run -c <config>` process (output discarded), killed when dropped.
pub struct Daemon(pub std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the real binary on `config` and waits (10 s at most) until `addr`, one of its binds,
/// accepts connections (a bare connect, closed at once: edgelb opens nothing for it).
pub async fn spawn_daemon(config: &std::path::Path, addr: SocketAddr) -> Daemon {
    let d = Daemon(
        std::process::Command::new(env!("CARGO_BIN_EXE_edgelb"))
            .arg("run")
            .arg("-c")
            .arg(config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn edgelb"),
    );
    for _ in 0..400 {
        if TcpStream::connect(addr).await.is_ok() {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("edgelb did not start listening on {addr}");
}

/// CPU time of process `pid` so far, user and system, in seconds (/proc/PID/stat).
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the `(comm)`: utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}
