//! Runtime state built from a validated `Config`.
//!
//! Two kinds of state live here and must not be confused:
//! - the **snapshot** (`Snapshot`, `ListenRt`, `ServerRt`): immutable, rebuilt whole on reload and
//!   published through one `ArcSwap` in `Runtime`; the request path loads it once per request;
//! - the **live state** (`ServerLive`, `ListenShared`): atomics for health, admin state, weight and
//!   counters, keyed by listen/server name and carried into the next snapshot when the server is
//!   kept, so a reload neither resets counters nor forgets that a server is DOWN.
//!
//! Every mutation of server state goes through `ServerLive` methods, which bump the owning
//! listen's `version`; the balancer notices the new version and rebuilds its schedule lazily, so
//! the request path never takes a lock.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::{ArcSwap, ArcSwapOption};
use ipnet::IpNet;

use crate::balance::Balancer;
use crate::config::{self, Config, HealthSettings, Resolved};
use crate::proxy::access_log::{self, AccessLog, Target};
use crate::proxy::pool::Pool;

/// Milliseconds since the Unix epoch (for "last change" style timestamps shown to humans).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Operator-set state of a server (HAProxy `set server ... state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdminState {
    /// Normal: takes round-robin traffic when UP.
    Ready = 0,
    /// No new round-robin sessions; cookie-pinned clients still reach it.
    Drain = 1,
    /// Maintenance: no traffic at all, checks stopped.
    Maint = 2,
}

impl AdminState {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => AdminState::Drain,
            2 => AdminState::Maint,
            _ => AdminState::Ready,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            AdminState::Ready => "ready",
            AdminState::Drain => "drain",
            AdminState::Maint => "maint",
        }
    }
}

/// Result of the last health check, with HAProxy's `check_status` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum CheckStatus {
    /// Not checked yet.
    Unk = 0,
    Ini = 1,
    SockErr = 2,
    L4Ok = 3,
    L4Tout = 4,
    L4Con = 5,
    L7Ok = 6,
    L7Tout = 7,
    L7Rsp = 8,
    L7Sts = 9,
}

impl CheckStatus {
    pub fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Ini,
            2 => Self::SockErr,
            3 => Self::L4Ok,
            4 => Self::L4Tout,
            5 => Self::L4Con,
            6 => Self::L7Ok,
            7 => Self::L7Tout,
            8 => Self::L7Rsp,
            9 => Self::L7Sts,
            _ => Self::Unk,
        }
    }
    /// The token HAProxy prints in the CSV `check_status` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unk => "UNK",
            Self::Ini => "INI",
            Self::SockErr => "SOCKERR",
            Self::L4Ok => "L4OK",
            Self::L4Tout => "L4TOUT",
            Self::L4Con => "L4CON",
            Self::L7Ok => "L7OK",
            Self::L7Tout => "L7TOUT",
            Self::L7Rsp => "L7RSP",
            Self::L7Sts => "L7STS",
        }
    }
    pub fn is_ok(self) -> bool {
        matches!(self, Self::L4Ok | Self::L7Ok)
    }
}

/// Upper bounds (ms) of the latency histogram buckets; the last bucket is +Inf.
pub const LATENCY_BUCKETS_MS: [u64; 12] = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 10000];

/// A lock-free histogram of total request time, per server (Prometheus buckets).
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    buckets: [AtomicU64; LATENCY_BUCKETS_MS.len() + 1],
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl LatencyHistogram {
    pub fn observe(&self, d: Duration) {
        let ms = d.as_millis() as u64;
        let idx = LATENCY_BUCKETS_MS
            .iter()
            .position(|&b| ms <= b)
            .unwrap_or(LATENCY_BUCKETS_MS.len());
        self.buckets[idx].fetch_add(1, Ordering::Relaxed);
        self.sum_us
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }
    /// (non-cumulative bucket counts, sum in seconds, count)
    pub fn read(&self) -> (Vec<u64>, f64, u64) {
        let b = self
            .buckets
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .collect();
        (
            b,
            self.sum_us.load(Ordering::Relaxed) as f64 / 1e6,
            self.count.load(Ordering::Relaxed),
        )
    }
}

/// Traffic counters shared by frontends, backends and servers (HAProxy `show stat` names).
#[derive(Debug, Default)]
pub struct Counters {
    /// Current sessions (requests in flight for servers, connections for frontends).
    pub scur: AtomicU64,
    pub smax: AtomicU64,
    /// Cumulated sessions.
    pub stot: AtomicU64,
    pub bin: AtomicU64,
    pub bout: AtomicU64,
    /// Denied / invalid requests (frontend).
    pub dreq: AtomicU64,
    pub ereq: AtomicU64,
    /// Connection errors to servers.
    pub econ: AtomicU64,
    /// Response errors (server closed, bad response, server timeout).
    pub eresp: AtomicU64,
    /// Retries on the same server, redispatches to another one.
    pub wretr: AtomicU64,
    pub wredis: AtomicU64,
    /// Times the load balancer picked this server.
    pub lbtot: AtomicU64,
    pub req_tot: AtomicU64,
    pub cli_abrt: AtomicU64,
    pub srv_abrt: AtomicU64,
    /// Responses by class: 1xx, 2xx, 3xx, 4xx, 5xx, other.
    pub hrsp: [AtomicU64; 6],
    /// Unix ms of the last session (0 = never).
    pub last_sess_ms: AtomicU64,
    /// Cumulated connection/response/total times (ms) and their sample count, for averages.
    pub ctime_sum_ms: AtomicU64,
    pub rtime_sum_ms: AtomicU64,
    pub ttime_sum_ms: AtomicU64,
    pub time_samples: AtomicU64,
    pub latency: LatencyHistogram,
}

impl Counters {
    /// Prefer `session()`; a bare start must be paired with `session_end` in a `Drop` impl.
    pub fn session_start(&self) {
        let cur = self.scur.fetch_add(1, Ordering::Relaxed) + 1;
        self.smax.fetch_max(cur, Ordering::Relaxed);
        self.stot.fetch_add(1, Ordering::Relaxed);
    }
    pub fn session_end(&self) {
        self.scur.fetch_sub(1, Ordering::Relaxed);
    }
    /// Starts a session that ends when the guard drops, whatever ends it (return, error, panic).
    pub fn session(&self) -> SessionGuard<'_> {
        self.session_start();
        SessionGuard(self)
    }
    pub fn count_status(&self, status: u16) {
        let idx = match status {
            100..=199 => 0,
            200..=299 => 1,
            300..=399 => 2,
            400..=499 => 3,
            500..=599 => 4,
            _ => 5,
        };
        self.hrsp[idx].fetch_add(1, Ordering::Relaxed);
    }
    pub fn get(a: &AtomicU64) -> u64 {
        a.load(Ordering::Relaxed)
    }
}

/// One session counted in `scur` for as long as the guard lives.
#[must_use = "the session ends when the guard is dropped"]
#[derive(Debug)]
pub struct SessionGuard<'a>(&'a Counters);

impl Drop for SessionGuard<'_> {
    fn drop(&mut self) {
        self.0.session_end();
    }
}

/// Per-listen live state carried across reloads (by listen name).
#[derive(Debug, Default)]
pub struct ListenShared {
    /// Bumped on every server state change; the balancer rebuilds its schedule when it moves.
    pub version: AtomicU64,
    pub frontend: Counters,
    pub backend: Counters,
    /// `accept_proxy`: connections closed for a missing or invalid PROXY header, and for
    /// coming from a source outside `accept_proxy_from`.
    pub proxy_header_errors: AtomicU64,
    pub proxy_untrusted: AtomicU64,
}

/// Live state of one server, carried across reloads (by listen + server name).
#[derive(Debug)]
pub struct ServerLive {
    listen: Arc<ListenShared>,
    admin: AtomicU8,
    up: AtomicBool,
    /// HAProxy's check health counter: 0..=rise+fall-1; the server is UP at >= rise.
    pub health: AtomicU32,
    weight: AtomicU32,
    check_enabled: AtomicBool,
    check_status: AtomicU8,
    /// Duration of the last check in ms (u32::MAX = none yet).
    pub check_duration_ms: AtomicU32,
    /// HTTP status of the last HTTP check (0 = none).
    pub check_code: AtomicU16,
    pub last_check_ms: AtomicU64,
    /// Unix ms of the last UP/DOWN/admin transition.
    pub last_change_ms: AtomicU64,
    /// Total ms spent DOWN before the current state began.
    pub downtime_ms: AtomicU64,
    /// Failed checks, and UP->DOWN transitions.
    pub chkfail: AtomicU64,
    pub chkdown: AtomicU64,
    pub counters: Counters,
}

impl ServerLive {
    pub fn new(
        listen: Arc<ListenShared>,
        weight: u32,
        check: bool,
        disabled: bool,
        rise: u32,
    ) -> Self {
        Self {
            listen,
            admin: AtomicU8::new(if disabled {
                AdminState::Maint as u8
            } else {
                AdminState::Ready as u8
            }),
            // HAProxy starts a checked server UP with health = rise (one failure below max), so
            // one failed check is enough to take it DOWN... after `fall` consecutive failures
            // counting from the top. See haproxy-semantics.md section 4.
            up: AtomicBool::new(true),
            health: AtomicU32::new(rise),
            weight: AtomicU32::new(weight),
            check_enabled: AtomicBool::new(check),
            check_status: AtomicU8::new(if check {
                CheckStatus::Ini as u8
            } else {
                CheckStatus::Unk as u8
            }),
            check_duration_ms: AtomicU32::new(u32::MAX),
            check_code: AtomicU16::new(0),
            last_check_ms: AtomicU64::new(0),
            last_change_ms: AtomicU64::new(unix_ms()),
            downtime_ms: AtomicU64::new(0),
            chkfail: AtomicU64::new(0),
            chkdown: AtomicU64::new(0),
            counters: Counters::default(),
        }
    }

    fn changed(&self) {
        self.listen.version.fetch_add(1, Ordering::Release);
    }

    pub fn admin(&self) -> AdminState {
        AdminState::from_u8(self.admin.load(Ordering::Acquire))
    }
    /// Returns the previous state.
    pub fn set_admin(&self, s: AdminState) -> AdminState {
        let prev = AdminState::from_u8(self.admin.swap(s as u8, Ordering::AcqRel));
        if prev != s {
            self.last_change_ms.store(unix_ms(), Ordering::Relaxed);
            self.changed();
        }
        prev
    }
    /// Operational state from health checks (always true for unchecked servers).
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }
    /// Publishes an UP/DOWN transition; returns true if the state changed.
    pub fn set_up(&self, up: bool) -> bool {
        let prev = self.up.swap(up, Ordering::AcqRel);
        if prev == up {
            return false;
        }
        let now = unix_ms();
        let last = self.last_change_ms.swap(now, Ordering::Relaxed);
        if up {
            self.downtime_ms
                .fetch_add(now.saturating_sub(last), Ordering::Relaxed);
        } else {
            self.chkdown.fetch_add(1, Ordering::Relaxed);
        }
        self.changed();
        true
    }
    pub fn weight(&self) -> u32 {
        self.weight.load(Ordering::Acquire)
    }
    pub fn set_weight(&self, w: u32) {
        if self.weight.swap(w, Ordering::AcqRel) != w {
            self.changed();
        }
    }
    pub fn check_enabled(&self) -> bool {
        self.check_enabled.load(Ordering::Acquire)
    }
    pub fn set_check_enabled(&self, on: bool) {
        self.check_enabled.store(on, Ordering::Release);
    }
    pub fn check_status(&self) -> CheckStatus {
        CheckStatus::from_u8(self.check_status.load(Ordering::Relaxed))
    }
    pub fn set_check_status(&self, s: CheckStatus) {
        self.check_status.store(s as u8, Ordering::Relaxed);
    }
    /// May take new round-robin traffic.
    pub fn eligible_rr(&self) -> bool {
        self.admin() == AdminState::Ready && self.is_up() && self.weight() > 0
    }
    /// May serve a request that carries its persistence cookie (DRAIN and weight 0 still do).
    pub fn eligible_cookie(&self) -> bool {
        self.admin() != AdminState::Maint && self.is_up()
    }
    /// Total downtime including the current DOWN period, in ms.
    pub fn downtime_total_ms(&self) -> u64 {
        let base = self.downtime_ms.load(Ordering::Relaxed);
        if self.is_up() {
            base
        } else {
            base + unix_ms().saturating_sub(self.last_change_ms.load(Ordering::Relaxed))
        }
    }
}

/// Health check parameters of one listen, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthRt {
    pub inter: Duration,
    pub fastinter: Duration,
    pub downinter: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
    pub observe_layer4: bool,
    pub http: Option<HttpCheckRt>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCheckRt {
    pub method: String,
    pub path: String,
    pub host: Option<String>,
    pub expect: (u16, u16),
}

impl HealthRt {
    fn from_config(h: &HealthSettings) -> Self {
        let inter = h.inter.unwrap_or(config::DEFAULT_CHECK_INTER);
        Self {
            inter,
            fastinter: h.fastinter.unwrap_or(inter),
            downinter: h.downinter.unwrap_or(inter),
            timeout: h.timeout.unwrap_or(inter),
            rise: h.rise.unwrap_or(config::DEFAULT_CHECK_RISE),
            fall: h.fall.unwrap_or(config::DEFAULT_CHECK_FALL),
            observe_layer4: h.observe_layer4,
            http: h.http.as_ref().map(|c| HttpCheckRt {
                method: c.method.clone(),
                path: c.path.clone(),
                host: c.host.clone(),
                expect: config::parse_status_range(&c.expect_status).unwrap_or((200, 399)),
            }),
        }
    }
}

/// One server of a listen, as the snapshot knows it.
#[derive(Debug)]
pub struct ServerRt {
    /// Position in the listen (0-based), also HAProxy's `sid` - 1.
    pub index: usize,
    pub name: Arc<str>,
    pub addr: SocketAddr,
    /// Persistence cookie value.
    pub cookie: Arc<str>,
    /// Precomputed `Set-Cookie` header value for insertion.
    pub set_cookie: Option<bytes::Bytes>,
    pub check: bool,
    /// Weight from the config (applied to the live state by `Snapshot::activate`).
    pub config_weight: u32,
    /// `disabled` from the config: MAINT when the server is new or its entry changed.
    pub config_disabled: bool,
    /// A kept server whose `[[listen.server]]` entry differs from the previous file: the reload
    /// applies the file's weight and state over any admin API override.
    pub file_changed: bool,
    pub check_addr: SocketAddr,
    pub live: Arc<ServerLive>,
    pub pool: Arc<Pool>,
    /// Open connections with a PROXY v2 header (never pooled across clients).
    pub send_proxy_v2: bool,
}

/// Precomputed cookie persistence settings of a listen.
#[derive(Debug, Clone)]
pub struct CookieRt {
    pub name: Arc<str>,
    pub indirect: bool,
    pub nocache: bool,
}

/// One `[[listen]]` section, ready for the request path.
#[derive(Debug)]
pub struct ListenRt {
    /// 1-based id like HAProxy's `iid`.
    pub id: usize,
    pub name: Arc<str>,
    pub binds: Vec<SocketAddr>,
    /// What the plain binds speak (HTTP/1 or HTTP/2 with prior knowledge).
    pub proto: config::Proto,
    pub settings: Resolved,
    pub cookie: Option<CookieRt>,
    /// `None` when X-Forwarded-For is off.
    pub forwardfor_except: Option<Vec<IpNet>>,
    pub health: HealthRt,
    pub servers: Vec<Arc<ServerRt>>,
    pub shared: Arc<ListenShared>,
    pub balancer: Balancer,
    /// TLS termination on `tls.binds` (also listed in `binds`).
    pub tls: Option<Arc<crate::tls::TlsListen>>,
    pub forwarded_proto: bool,
    pub forwarded_port: bool,
    pub redirect_https: bool,
    /// `Some(trusted sources)` when every connection starts with a PROXY header.
    pub accept_proxy: Option<Vec<IpNet>>,
    /// Some server has `send_proxy_v2`: accept looks up each connection's exact local address.
    pub needs_local_addr: bool,
}

impl ListenRt {
    /// The TLS side when `local` (the configured bind address a connection came in on) is
    /// one of the TLS binds.
    pub fn tls_on(&self, local: &SocketAddr) -> Option<&Arc<crate::tls::TlsListen>> {
        self.tls.as_ref().filter(|t| t.binds.contains(local))
    }

    pub fn server_by_name(&self, name: &str) -> Option<&Arc<ServerRt>> {
        self.servers.iter().find(|s| &*s.name == name)
    }
    /// Servers currently able to take round-robin traffic.
    pub fn active_servers(&self) -> usize {
        self.servers.iter().filter(|s| s.live.eligible_rr()).count()
    }
    /// Servers UP and not in maintenance (HAProxy's "N active servers left").
    pub fn usable_servers(&self) -> usize {
        self.servers
            .iter()
            .filter(|s| s.live.is_up() && s.live.admin() != AdminState::Maint)
            .count()
    }
}

/// Process-wide settings resolved from `[global]`.
#[derive(Debug, Clone)]
pub struct GlobalRt {
    pub maxconn: u32,
    pub max_header_bytes: usize,
    pub max_header_lines: crate::proxy::h1::MaxLines,
    pub pool_idle_timeout: Duration,
    pub grace: Duration,
    pub dontlognull: bool,
}

/// The immutable view of one loaded configuration.
#[derive(Debug)]
pub struct Snapshot {
    pub generation: u64,
    pub loaded_at: SystemTime,
    pub source: String,
    pub node_name: String,
    pub config: Arc<Config>,
    pub global: GlobalRt,
    pub listens: Vec<Arc<ListenRt>>,
    pub access_log: Arc<AccessLog>,
}

impl Snapshot {
    /// Builds a snapshot, reusing live state and pools from `prev` for kept listens/servers.
    /// Fails only on things validation could not know (a host that stopped resolving).
    pub fn build(
        config: Arc<Config>,
        source: &str,
        node_name: String,
        prev: Option<&Snapshot>,
    ) -> Result<Snapshot, String> {
        let g = &config.global;
        let maxconn = g.maxconn.unwrap_or(config::DEFAULT_MAXCONN);
        let global = GlobalRt {
            maxconn,
            max_header_bytes: g
                .max_header_bytes
                .unwrap_or(config::DEFAULT_MAX_HEADER_BYTES),
            max_header_lines: crate::proxy::h1::MaxLines(
                g.max_header_lines
                    .unwrap_or(crate::proxy::h1::DEFAULT_MAX_HEADER_LINES),
            ),
            pool_idle_timeout: g
                .pool_idle_timeout
                .unwrap_or(config::DEFAULT_POOL_IDLE_TIMEOUT),
            grace: g.grace.unwrap_or(config::DEFAULT_GRACE),
            dontlognull: config.log.dontlognull,
        };
        let mut listens = Vec::with_capacity(config.listen.len());
        for (li, l) in config.listen.iter().enumerate() {
            let prev_listen = prev.and_then(|p| p.listens.iter().find(|x| *x.name == *l.name));
            let shared = prev_listen.map(|p| p.shared.clone()).unwrap_or_default();
            let health = HealthRt::from_config(&l.health);
            let mut servers = Vec::with_capacity(l.server.len());
            for (si, s) in l.server.iter().enumerate() {
                let addr = crate::config::resolve_address(&s.address)
                    .map_err(|e| format!("listen {:?} server {:?}: {e}", l.name, s.name))?;
                let prev_server = prev_listen.and_then(|p| p.server_by_name(&s.name));
                let prev_entry = prev.and_then(|p| {
                    p.config
                        .listen
                        .iter()
                        .find(|x| x.name == l.name)?
                        .server
                        .iter()
                        .find(|x| x.name == s.name)
                });
                let file_changed = prev_server.is_some() && prev_entry != Some(s);
                let live = match prev_server {
                    // Kept server: health and counters carry over; `activate` applies the new
                    // config weight once this snapshot is published.
                    Some(ps) => ps.live.clone(),
                    None => Arc::new(ServerLive::new(
                        shared.clone(),
                        s.weight,
                        s.check,
                        s.disabled,
                        health.rise,
                    )),
                };
                let pool = match prev_server {
                    Some(ps) if ps.addr == addr => ps.pool.clone(),
                    _ => Arc::new(Pool::new(global.pool_idle_timeout)),
                };
                let cookie: Arc<str> = s.cookie.clone().unwrap_or_else(|| s.name.clone()).into();
                let set_cookie = l.cookie.as_ref().map(|c| {
                    let mut v = format!("{}={}; path=/", c.name, cookie);
                    if let Some(d) = &c.domain {
                        v.push_str("; domain=");
                        v.push_str(d);
                    }
                    if c.httponly {
                        v.push_str("; HttpOnly");
                    }
                    if c.secure {
                        v.push_str("; Secure");
                    }
                    bytes::Bytes::from(v)
                });
                let check_addr = SocketAddr::new(addr.ip(), s.check_port.unwrap_or(addr.port()));
                servers.push(Arc::new(ServerRt {
                    index: si,
                    name: s.name.clone().into(),
                    addr,
                    cookie,
                    set_cookie,
                    check: s.check,
                    config_weight: s.weight,
                    config_disabled: s.disabled,
                    file_changed,
                    check_addr,
                    live,
                    pool,
                    send_proxy_v2: s.send_proxy_v2,
                }));
            }
            shared.version.fetch_add(1, Ordering::Release);
            let tls = match &l.tls {
                Some(t) => Some(Arc::new(
                    crate::tls::TlsListen::build(t, prev_listen.and_then(|p| p.tls.as_deref()))
                        .map_err(|ps| {
                            let ps: Vec<String> = ps.iter().map(|p| p.to_string()).collect();
                            format!("listen {:?} tls: {}", l.name, ps.join("; "))
                        })?,
                )),
                None => None,
            };
            let binds = l
                .bind
                .iter()
                .chain(l.tls.iter().flat_map(|t| t.bind.iter()))
                .filter_map(|b| config::parse_bind(b).ok())
                .collect();
            let forwardfor_except = l
                .forwardfor
                .as_ref()
                .filter(|f| f.enabled())
                .map(|f| f.except().to_vec());
            listens.push(Arc::new(ListenRt {
                id: li + 1,
                name: l.name.clone().into(),
                binds,
                proto: l.proto,
                settings: l.proxy.resolve(&config.defaults.proxy, maxconn),
                cookie: l.cookie.as_ref().map(|c| CookieRt {
                    name: c.name.clone().into(),
                    indirect: c.indirect,
                    nocache: c.nocache,
                }),
                forwardfor_except,
                health,
                balancer: Balancer::new(),
                servers,
                shared,
                tls,
                forwarded_proto: l.forwarded_proto,
                forwarded_port: l.forwarded_port,
                redirect_https: l.redirect_https,
                accept_proxy: l.accept_proxy.then(|| l.accept_proxy_from.clone()),
                needs_local_addr: l.server.iter().any(|s| s.send_proxy_v2),
            }));
        }
        let target = Target::parse(&config.log.access);
        let log_limits = access_log::Limits {
            max_line_len: config
                .log
                .max_line_len
                .unwrap_or(access_log::DEFAULT_MAX_LINE_LEN),
            queue_bytes: config
                .log
                .queue_bytes
                .unwrap_or(access_log::DEFAULT_QUEUE_BYTES),
        };
        let access_log = match prev {
            Some(p)
                if p.access_log.target == target
                    && p.access_log.facility == config.log.facility =>
            {
                p.access_log.set_limits(log_limits);
                p.access_log.clone()
            }
            _ => Arc::new(
                AccessLog::start(target, &config.log.facility, log_limits)
                    .map_err(|e| format!("log.access {:?}: {e}", config.log.access))?,
            ),
        };
        Ok(Snapshot {
            access_log,
            generation: prev.map(|p| p.generation + 1).unwrap_or(1),
            loaded_at: SystemTime::now(),
            source: source.to_string(),
            node_name,
            config,
            global,
            listens,
        })
    }

    /// Applies config-owned settings of kept servers to their live state, and the process-wide
    /// `busy_polling` switch (the workers follow it within a second). Called right after the
    /// snapshot is published, so a failed reload changes nothing.
    ///
    /// The rule: what the admin API sets (state, weight) is a runtime override that lasts until
    /// a reload changes that server's entry in the file; then the file's `weight` and
    /// `disabled` win (`disabled = true` -> MAINT, absent/false -> READY), and the change is
    /// logged. A reload that leaves the entry as it was keeps the override.
    pub fn activate(&self) {
        crate::proxy::busy_poll::set_enabled(self.config.global.busy_polling);
        for l in &self.listens {
            for s in &l.servers {
                if s.file_changed {
                    apply_file_entry(l, s);
                }
                if !s.check {
                    s.live.set_check_enabled(false);
                    s.live.set_up(true);
                }
            }
            l.shared.version.fetch_add(1, Ordering::Release);
        }
    }

    pub fn listen_by_name(&self, name: &str) -> Option<&Arc<ListenRt>> {
        self.listens.iter().find(|l| &*l.name == name)
    }
}

/// A reload changed this server's entry: the file's weight and state replace the live ones.
fn apply_file_entry(l: &ListenRt, s: &ServerRt) {
    let old_weight = s.live.weight();
    s.live.set_weight(s.config_weight);
    let want = if s.config_disabled {
        AdminState::Maint
    } else {
        AdminState::Ready
    };
    let old_state = crate::health::apply_state(l, s, want);
    if old_weight != s.config_weight || old_state != want {
        tracing::info!(
            "reload: server {}/{} changed in the file: state {} -> {}, weight {old_weight} -> {}",
            l.name,
            s.name,
            old_state.as_str(),
            want.as_str(),
            s.config_weight
        );
    }
}

/// Outcome of the last (re)load, shown by the stats API.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReloadStatus {
    pub ok: bool,
    pub at_unix_ms: u64,
    pub generation: u64,
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
}

/// Process-wide counters (HAProxy `show info`).
#[derive(Debug, Default)]
pub struct ProcessCounters {
    /// Current client connections.
    pub actconn: AtomicU64,
    pub cum_conns: AtomicU64,
    pub cum_req: AtomicU64,
    /// Connection tasks that panicked (each cost its own connection only; see `proxy::session`).
    pub conn_panics: AtomicU64,
}

/// The shared handle every task holds.
#[derive(Debug)]
pub struct Runtime {
    pub snapshot: ArcSwap<Snapshot>,
    pub started_at: SystemTime,
    pub process: ProcessCounters,
    pub reload: ArcSwap<ReloadStatus>,
    /// Set once every listener is bound (readiness).
    pub listeners_ready: AtomicBool,
    /// Set when a graceful stop began.
    pub stopping: AtomicBool,
    /// The cluster's latest status for display (JSON), published by the cluster node.
    pub cluster_view: ArcSwapOption<serde_json::Value>,
    /// ACME HTTP-01 tokens answered on every listener: ours and those peers shared. Survives
    /// reloads (an order in flight keeps its tokens).
    pub challenges: Arc<crate::cluster::challenges::TokenTable>,
    /// The ACME task's latest status for display (JSON), absent without `[acme]`.
    pub acme_view: ArcSwapOption<serde_json::Value>,
}

impl Runtime {
    pub fn new(snapshot: Snapshot, warnings: Vec<String>) -> Arc<Runtime> {
        let generation = snapshot.generation;
        Arc::new(Runtime {
            snapshot: ArcSwap::from_pointee(snapshot),
            started_at: SystemTime::now(),
            process: ProcessCounters::default(),
            reload: ArcSwap::from_pointee(ReloadStatus {
                ok: true,
                at_unix_ms: unix_ms(),
                generation,
                problems: Vec::new(),
                warnings,
            }),
            listeners_ready: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            cluster_view: ArcSwapOption::empty(),
            challenges: Arc::default(),
            acme_view: ArcSwapOption::empty(),
        })
    }

    pub fn load(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    pub fn uptime(&self) -> Duration {
        self.started_at.elapsed().unwrap_or_default()
    }
}
