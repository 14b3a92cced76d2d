//! `edgelb demo`: a working setup on one machine with nothing installed: three built-in HTTP
//! backends on 127.0.0.1:9001-9003 and edgelb in front of them with `conf/local.toml`.
//!
//! The backends answer like the seed's node.js apps (keep-alive, an `ETag`, the server name in
//! the body), so cookies, `Cache-Control: private`, round-robin and the dashboard can be seen with
//! curl and a browser.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use crate::app::{Options, Source};

/// The laptop config shipped in the repository (same file as `conf/local.toml`).
pub const LOCAL_TOML: &str = include_str!("../conf/local.toml");

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

/// Runs the one-node demo until Ctrl-C / SIGTERM.
pub async fn run() -> Result<(), String> {
    for (name, port) in [("web1", 9001u16), ("web2", 9002), ("web3", 9003)] {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        backend(name, addr)
            .await
            .map_err(|e| format!("demo backend {name} on {addr}: {e}"))?;
    }
    let dir = std::env::temp_dir().join(format!("edgelb-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let token_path = dir.join("admin.token");
    crate::demo_cluster::write_secret(&token_path, "demo-token\n")?;
    let text = LOCAL_TOML.replace(
        "# admin_token_file = \"/tmp/edgelb-admin.token\"",
        &format!("admin_token_file = \"{}\"", token_path.display()),
    );
    println!(
        "edgelb demo: backends web1..web3 on 127.0.0.1:9001-9003, edgelb on 127.0.0.1:8080\n\
         \n  curl -i http://127.0.0.1:8080/                       # round-robin, Set-Cookie: SERVERID=...\n\
         \x20 curl -i -b 'SERVERID=web2' http://127.0.0.1:8080/   # pinned to web2, cookie stripped upstream\n\
         \x20 open http://127.0.0.1:9022/                          # dashboard (admin token: demo-token)\n\
         \x20 curl http://127.0.0.1:9023/stats.csv                 # HAProxy-compatible CSV\n\
         \nCtrl-C to stop.\n"
    );
    crate::app::run(Options {
        source: Source::Text(text),
        node: Some("demo".into()),
    })
    .await
    .map_err(|e| e.to_string())
}
