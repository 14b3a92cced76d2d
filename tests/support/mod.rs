//! Test harness for everything EC2, all on 127.0.0.1: a patched moto server (`moto`), the
//! two-or-more-node world built in it (`moto::World`), a fault-injecting proxy in front of it
//! (`fault_proxy`), an IMDSv2 stand-in per node (`imds_stub`), and the environment a child
//! edgelb process needs to use them (`ChildAwsEnv`).
//!
//! Typical use from another integration test:
//! ```ignore
//! mod support;
//! let moto = support::moto::Moto::start();
//! let world = support::moto::World::build(&moto, 2).await;
//! let proxy = support::fault_proxy::FaultProxy::start(moto.endpoint());
//! let imds = support::imds_stub::ImdsStub::for_node(&world, 0);
//! let env = support::ChildAwsEnv::new(proxy.endpoint()).with_imds(imds.endpoint());
//! let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_edgelb"));
//! env.apply(&mut cmd);
//! ```
#![allow(dead_code)]

pub mod cluster;
pub mod fault_proxy;
pub mod imds_stub;
pub mod moto;
pub mod pebble;
mod ports;

use std::path::{Path, PathBuf};

/// Region every harness piece uses.
pub const REGION: &str = "us-east-1";
/// Dummy credentials moto accepts.
pub const ACCESS_KEY_ID: &str = "testing";
pub const SECRET_ACCESS_KEY: &str = "testing";

/// AWS-related variables a child process could inherit from the developer's shell and that
/// would change where it talks to or which identity it uses.
const INHERITED_AWS_VARS: &[&str] = &[
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_EC2",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_DEFAULT_REGION",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_EC2_METADATA_SERVICE_ENDPOINT",
    "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE",
    "AWS_EC2_METADATA_DISABLED",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
    "AWS_MAX_ATTEMPTS",
    "AWS_RETRY_MODE",
];

/// The environment for a child process (e.g. the edgelb binary) that must reach EC2 only at
/// `ec2_endpoint` and IMDS only at the stub (or not at all), with static test credentials and a
/// `HOME` of its own so `~/.aws` cannot leak in.
pub struct ChildAwsEnv {
    pub ec2_endpoint: String,
    pub imds_endpoint: Option<String>,
    home: HomeDir,
}

enum HomeDir {
    Owned(tempfile::TempDir),
    Given(PathBuf),
}

impl ChildAwsEnv {
    pub fn new(ec2_endpoint: impl Into<String>) -> Self {
        ChildAwsEnv {
            ec2_endpoint: ec2_endpoint.into(),
            imds_endpoint: None,
            home: HomeDir::Owned(tempfile::tempdir().expect("temp HOME")),
        }
    }

    /// Lets the child use IMDS, at this loopback stub only.
    pub fn with_imds(mut self, imds_endpoint: impl Into<String>) -> Self {
        self.imds_endpoint = Some(imds_endpoint.into());
        self
    }

    /// Uses an existing directory as `HOME` (e.g. the test's own temp dir).
    pub fn with_home(mut self, home: impl Into<PathBuf>) -> Self {
        self.home = HomeDir::Given(home.into());
        self
    }

    pub fn home(&self) -> &Path {
        match &self.home {
            HomeDir::Owned(d) => d.path(),
            HomeDir::Given(p) => p,
        }
    }

    /// Variables to set, in order.
    pub fn vars(&self) -> Vec<(&'static str, String)> {
        let home = self.home().to_path_buf();
        let mut v = vec![
            ("HOME", home.display().to_string()),
            (
                "AWS_CONFIG_FILE",
                home.join("no-aws-config").display().to_string(),
            ),
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                home.join("no-aws-credentials").display().to_string(),
            ),
            ("AWS_REGION", REGION.to_string()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID.to_string()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY.to_string()),
            ("AWS_ENDPOINT_URL_EC2", self.ec2_endpoint.clone()),
        ];
        match &self.imds_endpoint {
            Some(imds) => v.push(("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.clone())),
            None => v.push(("AWS_EC2_METADATA_DISABLED", "true".to_string())),
        }
        v
    }

    /// Variables to remove from the inherited environment before `vars()` are set.
    pub fn removed(&self) -> &'static [&'static str] {
        INHERITED_AWS_VARS
    }

    pub fn apply(&self, cmd: &mut std::process::Command) {
        for k in self.removed() {
            cmd.env_remove(k);
        }
        cmd.envs(self.vars());
    }

    pub fn apply_tokio(&self, cmd: &mut tokio::process::Command) {
        for k in self.removed() {
            cmd.env_remove(k);
        }
        cmd.envs(self.vars());
    }
}

/// One blocking HTTP/1.1 exchange on loopback (`Connection: close`), for harness control calls
/// that must work without an async runtime. Returns (status, body).
pub fn http_blocking(
    port: u16,
    method: &str,
    path: &str,
    body: &[u8],
    timeout: std::time::Duration,
) -> std::io::Result<(u16, Vec<u8>)> {
    use std::io::{Read, Write};
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no HTTP header end"))?;
    let head = String::from_utf8_lossy(&raw[..text_end]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line: {head}")))?;
    Ok((status, raw[text_end + 4..].to_vec()))
}

pub use ports::free_port;

/// A tiny HTTP/1.1 server on an ephemeral 127.0.0.1 port, running on its own thread and runtime
/// so it keeps serving whatever the test's runtime is doing (blocking on a child process, say).
/// The handler gets the request with its whole body; `None` drops the connection unanswered.
/// Stops (and cancels in-flight handlers) on drop.
pub struct LoopbackServer {
    port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

pub type HttpResponse = http::Response<bytes::Bytes>;

impl LoopbackServer {
    pub fn start<H, F>(name: &str, handler: H) -> LoopbackServer
    where
        H: Fn(http::Request<bytes::Bytes>) -> F + Send + Sync + 'static,
        F: std::future::Future<Output = Option<HttpResponse>> + Send + 'static,
    {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let port = listener.local_addr().expect("local addr").port();
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let handler = std::sync::Arc::new(handler);
        let thread = std::thread::Builder::new()
            .name(format!("{name}-{port}"))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("server runtime");
                rt.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                    loop {
                        let stream = tokio::select! {
                            _ = &mut stop_rx => return,
                            accepted = listener.accept() => match accepted {
                                Ok((s, _)) => s,
                                Err(_) => continue,
                            },
                        };
                        let _ = stream.set_nodelay(true);
                        let handler = handler.clone();
                        tokio::spawn(serve_connection(stream, handler));
                    }
                });
            })
            .expect("spawn server thread");
        LoopbackServer {
            port,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn serve_connection<H, F>(stream: tokio::net::TcpStream, handler: std::sync::Arc<H>)
where
    H: Fn(http::Request<bytes::Bytes>) -> F + Send + Sync + 'static,
    F: std::future::Future<Output = Option<HttpResponse>> + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| call(handler.clone(), req));
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
        .await;
}

async fn call<H, F>(
    handler: std::sync::Arc<H>,
    req: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<http_body_util::Full<bytes::Bytes>>, BoxError>
where
    H: Fn(http::Request<bytes::Bytes>) -> F + Send + Sync + 'static,
    F: std::future::Future<Output = Option<HttpResponse>> + Send + 'static,
{
    use http_body_util::BodyExt;
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    match handler(http::Request::from_parts(parts, body)).await {
        Some(resp) => Ok(resp.map(http_body_util::Full::new)),
        // An error from the service makes hyper close the connection without a response.
        None => Err(BoxError::from(String::from(
            "connection dropped on purpose",
        ))),
    }
}

impl Drop for LoopbackServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A response with a body and content type.
pub fn respond(status: u16, content_type: &str, body: impl Into<bytes::Bytes>) -> HttpResponse {
    http::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(body.into())
        .expect("valid response")
}
