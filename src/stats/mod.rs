//! The stats servers: the dashboard (9022) and the API (9023).
//!
//! Owns: HTTP routing for `/` (dashboard page), `/stats.json`, `/stats.csv` (and HAProxy's `;csv`
//! forms), `/metrics`, `/history.json`, `/healthz`, `/readyz` and `/admin/...`; the 1-second
//! sampler (rates, sparkline and cluster-timeline history); the token files and access rules
//! (`auth.rs`). Both binds answer every route (the dashboard page calls `/stats.json` and the
//! admin API on its own origin); when `dashboard_bind == api_bind` one server answers everything.
//!
//! Must not: slow the request path. Everything here reads the snapshot (`ArcSwap` load) and the
//! atomics in `ServerLive`/`Counters`; the only writes are the admin actions, which go through
//! `health`'s functions and so through `ServerLive` methods.

pub mod admin;
pub mod auth;
pub mod csv;
pub mod dashboard;
pub mod history;
pub mod json;
pub mod metrics;
pub mod rates;

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::config::StatsSection;
use crate::runtime::{AdminState, ListenRt, Runtime, ServerRt};

pub use rates::{Kind, Rate, Rates};

/// Slow or idle clients of the stats ports are dropped after this long without a full head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

pub type Body = Full<Bytes>;

/// Everything a stats request needs: the runtime, the rate table, the history rings and the
/// token cache.
#[derive(Debug)]
pub struct StatsState {
    pub rt: Arc<Runtime>,
    pub rates: Arc<Rates>,
    pub history: Arc<history::History>,
    token: auth::TokenCache,
}

impl StatsState {
    pub fn new(rt: Arc<Runtime>) -> Arc<Self> {
        Arc::new(Self {
            rt,
            rates: Arc::new(Rates::default()),
            history: Arc::new(history::History::default()),
            token: auth::TokenCache::default(),
        })
    }

    /// Takes one sample of everything the sampler keeps (rates, then history, which reads them).
    pub fn sample(&self, elapsed: Duration) {
        let snap = self.rt.load();
        self.rates.sample(&snap, elapsed);
        self.history.sample(
            &snap,
            &self.rates,
            self.rt.cluster_view.load_full().as_deref(),
        );
    }

    /// Starts the 1-second sampler; abort the handle to stop it.
    pub fn spawn_sampler(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last = tokio::time::Instant::now();
            loop {
                tick.tick().await;
                let now = tokio::time::Instant::now();
                me.sample(now - last);
                last = now;
            }
        })
    }
}

/// HAProxy's server `status` column: `UP`, `DOWN`, `MAINT`, `DRAIN`, `no check`, and
/// `UP 1/3` / `DOWN 1/2` / `DRAIN 1/3` while a checked server is transitioning.
pub fn server_status(listen: &ListenRt, s: &ServerRt) -> String {
    let live = &s.live;
    let h = &listen.health;
    let checking = s.check && live.check_enabled();
    let health = live.health.load(std::sync::atomic::Ordering::Acquire);
    let max = (h.rise + h.fall).saturating_sub(1);
    if live.admin() == AdminState::Maint {
        return "MAINT".into();
    }
    if live.is_up() {
        let going_down = checking && health < max;
        let word = if live.admin() == AdminState::Drain {
            "DRAIN"
        } else if !checking {
            "no check"
        } else {
            "UP"
        };
        if going_down {
            format!("{word} {}/{}", (health + 1).saturating_sub(h.rise), h.fall)
        } else {
            word.into()
        }
    } else if checking && health > 0 {
        format!("DOWN {health}/{}", h.rise)
    } else {
        "DOWN".into()
    }
}

/// HAProxy's BACKEND `act` and `weight`: servers that can take round-robin traffic, and the sum
/// of their weights.
pub fn backend_active(listen: &ListenRt) -> (usize, u64) {
    listen
        .servers
        .iter()
        .filter(|s| s.live.eligible_rr())
        .fold((0, 0), |(n, w), s| (n + 1, w + s.live.weight() as u64))
}

/// `/readyz`: ready when every listener is bound, the process is not stopping, and **every**
/// listen has at least one server that takes new clients (UP, ready, weight > 0: what round-robin
/// may pick). While all servers of a listen are down, drained or in MAINT every new client gets a
/// 503, so the node is not ready even if cookie holders are still served; the reason names the
/// listens.
pub fn readiness(rt: &Runtime) -> Result<(), String> {
    use std::sync::atomic::Ordering;
    if rt.stopping.load(Ordering::Acquire) {
        return Err("stopping".into());
    }
    if !rt.listeners_ready.load(Ordering::Acquire) {
        return Err("listeners not bound yet".into());
    }
    let snap = rt.load();
    let empty: Vec<&str> = snap
        .listens
        .iter()
        .filter(|l| backend_active(l).0 == 0)
        .map(|l| &*l.name)
        .collect();
    if empty.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "no server takes new clients (all down, drained or in maintenance) in: {}",
            empty.join(", ")
        ))
    }
}

pub(crate) fn respond(
    status: StatusCode,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-cache"),
    );
    r
}

pub(crate) fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    let mut b: String = body.into();
    if !b.ends_with('\n') {
        b.push('\n');
    }
    respond(status, "text/plain; charset=utf-8", b)
}

/// Answers one request on either stats port.
pub async fn handle<B>(state: Arc<StatsState>, req: Request<B>) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes> + Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let path = req.uri().path().to_string();
    if path == "/admin" || path.starts_with("/admin/") {
        return admin::handle(&state, req).await;
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
        r.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    // HAProxy's modifiers follow the stats URI (`/;csv`, `/haproxy?stats;csv;norefresh`).
    let whole = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let is_csv = path == "/stats.csv" || path == "/stats;csv" || whole.contains(";csv");
    // Open routes: probes and the page (it holds no data; it fetches with the token).
    match path.as_str() {
        "/healthz" => return text(StatusCode::OK, "ok"),
        "/readyz" => {
            return match readiness(&state.rt) {
                Ok(()) => text(StatusCode::OK, "ready"),
                Err(why) => text(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}")),
            }
        }
        "/" | "/index.html" | "/dashboard" if !is_csv => {
            return respond(StatusCode::OK, "text/html; charset=utf-8", dashboard::PAGE)
        }
        _ => {}
    }
    if let Some(refused) = state.token.check_read(&state.rt, req.headers()) {
        return refused;
    }
    if is_csv {
        return respond(StatusCode::OK, "text/plain", csv::render(&state));
    }
    match path.as_str() {
        "/stats.json" => respond(StatusCode::OK, "application/json", json::render(&state)),
        "/history.json" => respond(
            StatusCode::OK,
            "application/json",
            state.history.render_json(),
        ),
        "/metrics" => {
            let format = metrics::Format::negotiate(req.headers().get(header::ACCEPT));
            respond(
                StatusCode::OK,
                format.content_type(),
                metrics::render(&state, format),
            )
        }
        _ => text(StatusCode::NOT_FOUND, "not found"),
    }
}

/// Binds the dashboard and API addresses of `section` (one socket when they are equal).
pub async fn bind(section: &StatsSection) -> io::Result<Vec<TcpListener>> {
    let parse = |s: &str| {
        crate::config::parse_bind(s).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
    };
    let dash: SocketAddr = parse(&section.dashboard_bind)?;
    let api: SocketAddr = parse(&section.api_bind)?;
    let mut out = vec![TcpListener::bind(dash).await?];
    if api != dash {
        out.push(TcpListener::bind(api).await?);
    }
    Ok(out)
}

/// Binds `[stats]` of the current config and serves until `shutdown` completes. Without a
/// `[stats]` section it just waits for `shutdown`.
pub async fn serve(rt: Arc<Runtime>, shutdown: impl Future<Output = ()>) -> io::Result<()> {
    let section = rt.load().config.stats.clone();
    let Some(section) = section else {
        shutdown.await;
        return Ok(());
    };
    let listeners = bind(&section).await?;
    serve_on(StatsState::new(rt), listeners, shutdown).await;
    Ok(())
}

/// Serves already-bound listeners (tests bind `127.0.0.1:0`) with the rate sampler running,
/// until `shutdown` completes; open connections are then dropped.
pub async fn serve_on(
    state: Arc<StatsState>,
    listeners: Vec<TcpListener>,
    shutdown: impl Future<Output = ()>,
) {
    let sampler = state.spawn_sampler();
    let mut accepts = tokio::task::JoinSet::new();
    for l in listeners {
        accepts.spawn(accept_loop(state.clone(), l));
    }
    shutdown.await;
    sampler.abort();
    accepts.shutdown().await;
}

async fn accept_loop(state: Arc<StatsState>, listener: TcpListener) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!("stats accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        while conns.try_join_next().is_some() {}
        let st = state.clone();
        conns.spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let st = st.clone();
                async move { Ok::<_, Infallible>(handle(st, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
