//! `edgelb demo`: a working setup on one machine with nothing installed: three built-in HTTP
//! backends and edgelb in front of them with `conf/local.toml` (ports moved with `--base-port`).
//!
//! The backends answer like the seed's node.js apps (keep-alive, an `ETag`, the server name in
//! the body), so cookies, `Cache-Control: private`, round-robin and the dashboard can be seen with
//! curl and a browser. This module also holds what both demos share: the busy-port check, the
//! temporary directory removed on every exit, and the stop signals (SIGINT, SIGTERM and the
//! SIGHUP of a closed terminal all stop the demo; none of them reloads anything).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use crate::app::{App, Options, Source};

/// The laptop config shipped in the repository (same file as `conf/local.toml`).
pub const LOCAL_TOML: &str = include_str!("../conf/local.toml");

/// The default `--base-port`: the ports of `conf/local.toml` (8080, backends 9001-9003, stats
/// 9022/9023) are this plus fixed offsets.
pub const DEFAULT_BASE_PORT: u16 = 8080;

/// How long the demo's node may take to finish requests when the demo stops.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Serves `hello from NAME` with an ETag on `addr` until the process ends.
pub async fn backend(name: &'static str, addr: SocketAddr) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| async move {
                    let body = format!("hello from {name}: {} {}\n", req.method(), req.uri());
                    Ok::<_, Infallible>(
                        Response::builder()
                            .header("content-type", "text/plain")
                            .header("etag", format!("\"{name}\""))
                            .header("x-backend", name)
                            .body(Full::new(Bytes::from(body)))
                            .unwrap_or_default(),
                    )
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(())
}

/// A port the demo needs, for the busy-port check.
#[derive(Debug, Clone, Copy)]
pub struct NeededPort {
    pub port: u16,
    pub udp: bool,
    pub what: &'static str,
}

/// Refuses to start when any port is taken (by another demo, a stale emulator, anything),
/// naming the port, its use and `--base-port`.
pub fn check_ports(ports: &[NeededPort], base: u16) -> Result<(), String> {
    let mut busy = Vec::new();
    for p in ports {
        let addr = SocketAddr::from(([127, 0, 0, 1], p.port));
        let free = if p.udp {
            std::net::UdpSocket::bind(addr).is_ok()
        } else {
            std::net::TcpListener::bind(addr).is_ok()
        };
        if !free {
            busy.push(format!(
                "{}/{} ({})",
                addr,
                if p.udp { "udp" } else { "tcp" },
                p.what
            ));
        }
    }
    if busy.is_empty() {
        return Ok(());
    }
    Err(format!(
        "edgelb demo: port(s) already in use: {}\n\
         Another demo or program holds them. Stop it, or move every demo port with \
         --base-port (now {base}), e.g. `edgelb demo --base-port {}`.",
        busy.join(", "),
        base.saturating_add(2000)
    ))
}

/// The demo's temporary directory (configs, secrets, logs), removed however the demo ends.
pub struct DemoDir(PathBuf);

impl DemoDir {
    pub fn create() -> Result<DemoDir, String> {
        let dir = std::env::temp_dir().join(format!("edgelb-demo-{}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Ok(DemoDir(dir))
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for DemoDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// SIGINT, SIGTERM and SIGHUP, registered before anything is started so none of them can kill
/// the demo without its clean-up.
pub struct StopSignals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl StopSignals {
    pub fn register() -> Result<StopSignals, String> {
        use tokio::signal::unix::{signal, SignalKind};
        let s = |k: SignalKind| signal(k).map_err(|e| format!("cannot handle signals: {e}"));
        Ok(StopSignals {
            int: s(SignalKind::interrupt())?,
            term: s(SignalKind::terminate())?,
            hup: s(SignalKind::hangup())?,
        })
    }

    /// Waits for the first stop signal; returns its name.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
            _ = self.hup.recv() => "SIGHUP",
        }
    }
}

/// The one-node demo's ports: the node on `base`, backends on `base+921..923`, dashboard on
/// `base+942`, API on `base+943` (8080, 9001-9003, 9022, 9023 by default).
fn single_ports(base: u16) -> Result<[NeededPort; 6], String> {
    if base.checked_add(943).is_none() {
        return Err(format!(
            "--base-port {base} is too high (the demo uses up to base+943)"
        ));
    }
    let p = |off: u16, what| NeededPort {
        port: base + off,
        udp: false,
        what,
    };
    Ok([
        p(0, "edgelb listen"),
        p(921, "backend web1"),
        p(922, "backend web2"),
        p(923, "backend web3"),
        p(942, "dashboard"),
        p(943, "stats API"),
    ])
}

/// `conf/local.toml` with its ports moved to `base` and the admin token file set.
fn single_config(base: u16, token: &Path) -> String {
    let mut text = LOCAL_TOML.replace(
        "# admin_token_file = \"/tmp/edgelb-admin.token\"",
        &format!("admin_token_file = \"{}\"", token.display()),
    );
    for (old, off) in [
        (8080u16, 0u16),
        (9001, 921),
        (9002, 922),
        (9003, 923),
        (9022, 942),
        (9023, 943),
    ] {
        text = text.replace(
            &format!("\"127.0.0.1:{old}\""),
            &format!("\"127.0.0.1:{}\"", base + off),
        );
    }
    text
}

/// Runs the one-node demo until SIGINT, SIGTERM or SIGHUP.
pub async fn run(base: u16) -> Result<(), String> {
    let ports = single_ports(base)?;
    check_ports(&ports, base)?;
    let mut signals = StopSignals::register()?;
    for (i, name) in ["web1", "web2", "web3"].into_iter().enumerate() {
        let addr = SocketAddr::from(([127, 0, 0, 1], ports[1 + i].port));
        backend(name, addr)
            .await
            .map_err(|e| format!("demo backend {name} on {addr}: {e}"))?;
    }
    let dir = DemoDir::create()?;
    let token_path = dir.path().join("admin.token");
    crate::demo_cluster::write_secret(&token_path, "demo-token\n")?;
    let text = single_config(base, &token_path);
    let mut app = App::start(Options {
        source: Source::Text(text),
        node: Some("demo".into()),
    })
    .await
    .map_err(|e| e.to_string())?;
    let (l, d, a) = (ports[0].port, ports[4].port, ports[5].port);
    println!(
        "edgelb demo: backends web1..web3 on 127.0.0.1:{}-{}, edgelb on 127.0.0.1:{l}\n\
         \n  curl -i http://127.0.0.1:{l}/                       # round-robin, Set-Cookie: SERVERID=...\n\
         \x20 curl -i -b 'SERVERID=web2' http://127.0.0.1:{l}/   # pinned to web2, cookie stripped upstream\n\
         \x20 open http://127.0.0.1:{d}/                          # dashboard (admin token: demo-token)\n\
         \x20 curl http://127.0.0.1:{a}/stats.csv                 # HAProxy-compatible CSV\n\
         \x20 curl -H 'Authorization: Bearer demo-token' -d state=drain http://127.0.0.1:{a}/admin/servers/webapp/web1/state\n\
         \n  {exe} check -c conf/local.toml   # `edgelb ...` once installed: cargo install --path .\n\
         \nCtrl-C to stop.\n",
        ports[1].port,
        ports[3].port,
        exe = std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "edgelb".into()),
    );
    let sig = signals.recv().await;
    println!("\n{sig}: stopping the demo");
    app.drain(Some(STOP_GRACE)).await;
    drop(dir);
    println!("demo stopped");
    Ok(())
}
