//! The configuration model: one TOML file, typed and validated.
//!
//! This module owns the types (with their HAProxy/Heartbeat defaults as named constants) and
//! `load`, which turns a file into a `Config` or a list of every problem with `file:line: reason`.
//! Nothing here opens sockets or touches runtime state; `runtime` builds from a validated `Config`.

mod acme;
mod keys;
mod load;
mod spans;
pub mod tls;
mod validate;

pub use acme::{AcmeSection, LETSENCRYPT, LETSENCRYPT_STAGING};
pub use load::{load_file, load_str, ConfigError, ConfigProblem, Loaded};
pub use tls::{CertFiles, Hsts, TlsSettings};
pub use validate::resolve_address;

/// The line of a dotted key (`["stats", "admin_token_file"]`) in TOML `text`, for problems found
/// after validation (the start-up preflight); 1 when the key is not found.
pub fn line_of_key(text: &str, path: &[&str]) -> usize {
    let path: Vec<spans::Seg> = path.iter().map(|k| spans::key(k)).collect();
    spans::SourceMap::new(text).line_of(&path)
}

/// The line of a key inside the `listen`-th `[[listen]]` table (`["tls"]`), for problems
/// found after validation (certificate files); the listen's line when the key is not found.
pub fn line_of_listen_key(text: &str, listen: usize, path: &[&str]) -> usize {
    let map = spans::SourceMap::new(text);
    let mut segs = vec![spans::key("listen"), spans::Seg::Index(listen)];
    let at_listen = map.line_of(&segs);
    segs.extend(path.iter().map(|k| spans::key(k)));
    match map.line_of(&segs) {
        1 => at_listen,
        n => n,
    }
}

use std::net::SocketAddr;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// `timeout connect` of the seed (HAProxy `timeout connect 10s`).
pub const DEFAULT_TIMEOUT_CONNECT: Duration = Duration::from_secs(10);
/// `timeout client` of the seed (30 s). Also the default for `timeout_http_request` and
/// `timeout_http_keep_alive`, as in HAProxy when those are unset.
pub const DEFAULT_TIMEOUT_CLIENT: Duration = Duration::from_secs(30);
/// `timeout server` of the seed (30 s).
pub const DEFAULT_TIMEOUT_SERVER: Duration = Duration::from_secs(30);
/// `retries 3`: connection attempts after the first one.
pub const DEFAULT_RETRIES: u32 = 3;
/// Per-process connection limit (HAProxy `maxconn`).
pub const DEFAULT_MAXCONN: u32 = 20_000;
/// Idle upstream connections are closed after this long: below node.js's 5 s keep-alive so we never
/// send a request on a socket the backend is closing.
pub const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(4);
/// Health check `inter 2s`, `rise 2`, `fall 3` (HAProxy defaults for a plain `check`).
pub const DEFAULT_CHECK_INTER: Duration = Duration::from_secs(2);
pub const DEFAULT_CHECK_RISE: u32 = 2;
pub const DEFAULT_CHECK_FALL: u32 = 3;
/// Graceful stop: how long in-flight requests may take after SIGTERM.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(30);
/// Largest request or response head accepted (HAProxy's default `tune.bufsize` is 16 KiB).
pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct Config {
    #[serde(default)]
    pub node: NodeSection,
    #[serde(default)]
    pub global: GlobalSection,
    #[serde(default)]
    pub log: LogSection,
    #[serde(default)]
    pub defaults: Defaults,
    #[serde(default)]
    pub listen: Vec<Listen>,
    #[serde(default)]
    pub stats: Option<StatsSection>,
    #[serde(default)]
    pub cluster: Option<ClusterSection>,
    #[serde(default)]
    pub aws: Option<AwsSection>,
    #[serde(default)]
    pub eip: Vec<EipSection>,
    /// Certificates that renew themselves (`config::acme`).
    #[serde(default)]
    pub acme: Option<AcmeSection>,
}

impl Config {
    /// Points TLS listens at the ACME certificate directory: one with neither `certs` nor
    /// `cert_dir` gets it, and any whose `cert_dir` is it is marked `acme_managed` (empty until
    /// the first issuance). Called once after parsing, before validation.
    pub fn link_acme_cert_dirs(&mut self) {
        let Some(acme) = &self.acme else {
            return;
        };
        let dir = acme.cert_dir();
        let norm = |d: &str| d.trim_end_matches('/').to_string();
        for l in &mut self.listen {
            let Some(t) = l.tls.as_mut() else {
                continue;
            };
            if t.certs.is_empty() && t.cert_dir.is_none() {
                t.cert_dir = Some(dir.clone());
            }
            t.acme_managed = t.cert_dir.as_deref().map(norm) == Some(norm(&dir));
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct NodeSection {
    /// This node's name in the cluster. Defaults to the host name, so one file can serve every
    /// node; `edgelb run --node NAME` overrides it.
    pub name: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct GlobalSection {
    /// Proxy worker threads, one event loop and one `SO_REUSEPORT` socket per bind each
    /// (HAProxy `nbthread`); default: number of CPUs.
    pub workers: Option<usize>,
    /// Busy polling (HAProxy `busy-polling`): a worker that has just had work polls its
    /// sockets for up to 200 µs (an adaptive window) before it sleeps, so the peers that send
    /// to it need not wake it. Off by default: a busy worker then shows as 100 % busy.
    #[serde(default)]
    pub busy_polling: bool,
    /// Process-wide limit of concurrent client connections (HAProxy `maxconn`).
    pub maxconn: Option<u32>,
    /// Seconds in-flight requests may take to finish after SIGTERM.
    #[serde(default, with = "humantime_serde::option")]
    pub grace: Option<Duration>,
    /// Largest accepted request/response head in bytes.
    pub max_header_bytes: Option<usize>,
    /// Most header lines in a request (more: 400) or response (more: 502) head; default 100
    /// (`DEFAULT_MAX_HEADER_LINES`, HAProxy `tune.http.maxhdr 101`, which counts the end of the
    /// head too).
    pub max_header_lines: Option<usize>,
    /// Idle upstream connection lifetime in the pool.
    #[serde(default, with = "humantime_serde::option")]
    pub pool_idle_timeout: Option<Duration>,
    /// How often certificate files of `[listen.tls]` are checked for changes (default 2 s,
    /// `tls::POLL_INTERVAL`); a changed, valid set is served from the next handshake on.
    #[serde(default, with = "humantime_serde::option")]
    pub tls_watch_interval: Option<Duration>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct LogSection {
    /// `"stdout"`, `"stderr"`, `"syslog"` (the local /dev/log), `"udp://HOST:PORT"` (remote
    /// syslog, like HAProxy's `log 127.0.0.1 local0`), a file path, or `"off"`.
    #[serde(default = "default_log_access")]
    pub access: String,
    /// Only `"httplog"` (HAProxy's `option httplog` line) is supported.
    #[serde(default = "default_log_format")]
    pub format: String,
    /// HAProxy `option dontlognull`: connections that sent nothing are not logged.
    #[serde(default = "default_true")]
    pub dontlognull: bool,
    /// Syslog facility for syslog targets (HAProxy `local0`).
    #[serde(default = "default_facility")]
    pub facility: String,
    /// Longest log message in bytes, syslog header and newline included; longer lines are cut
    /// (HAProxy `log ... len`, default 1024: `access_log::DEFAULT_MAX_LINE_LEN`).
    pub max_line_len: Option<usize>,
    /// Bytes of log lines that may wait for a slow target before lines are dropped (default
    /// 4 MiB: `access_log::DEFAULT_QUEUE_BYTES`).
    pub queue_bytes: Option<usize>,
}

impl Default for LogSection {
    fn default() -> Self {
        Self {
            access: default_log_access(),
            format: default_log_format(),
            dontlognull: true,
            facility: default_facility(),
            max_line_len: None,
            queue_bytes: None,
        }
    }
}

fn default_log_access() -> String {
    "stdout".into()
}
fn default_log_format() -> String {
    "httplog".into()
}
fn default_facility() -> String {
    "local0".into()
}
fn default_true() -> bool {
    true
}

/// Settings every `[[listen]]` inherits unless it sets its own.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(from = "ProxySettings")]
pub struct Defaults {
    #[serde(flatten)]
    pub proxy: ProxySettings,
}

impl From<ProxySettings> for Defaults {
    fn from(proxy: ProxySettings) -> Self {
        Defaults { proxy }
    }
}

/// The per-listen tunables shared by `[defaults]` and `[[listen]]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ProxySettings {
    #[serde(default, with = "humantime_serde::option")]
    pub timeout_connect: Option<Duration>,
    #[serde(default, with = "humantime_serde::option")]
    pub timeout_client: Option<Duration>,
    #[serde(default, with = "humantime_serde::option")]
    pub timeout_server: Option<Duration>,
    #[serde(default, with = "humantime_serde::option")]
    pub timeout_http_request: Option<Duration>,
    #[serde(default, with = "humantime_serde::option")]
    pub timeout_http_keep_alive: Option<Duration>,
    /// HAProxy `timeout tunnel`: inactivity limit of an upgraded (WebSocket) connection, for
    /// every read and write on either side. Unset: `timeout_client` (measured on HAProxy 2.6.12:
    /// an idle WebSocket closed after `timeout client` whether server's was shorter or longer).
    #[serde(default, with = "humantime_serde::option")]
    pub timeout_tunnel: Option<Duration>,
    pub retries: Option<u32>,
    pub redispatch: Option<bool>,
    pub maxconn: Option<u32>,
}

/// Fully resolved timeouts and retry policy of one listen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Resolved {
    pub timeout_connect: Duration,
    pub timeout_client: Duration,
    pub timeout_server: Duration,
    pub timeout_http_request: Duration,
    pub timeout_http_keep_alive: Duration,
    /// Set only when `timeout_http_request` was configured: then the whole head must arrive
    /// within it. Unset, `timeout_client` applies between reads of the head (HAProxy 2.6).
    pub http_request_deadline: Option<Duration>,
    pub timeout_tunnel: Duration,
    pub retries: u32,
    pub redispatch: bool,
    pub maxconn: u32,
}

impl ProxySettings {
    /// Listen value, else `[defaults]`, else HAProxy's seed value.
    pub fn resolve(&self, defaults: &ProxySettings, global_maxconn: u32) -> Resolved {
        let client = self
            .timeout_client
            .or(defaults.timeout_client)
            .unwrap_or(DEFAULT_TIMEOUT_CLIENT);
        let server = self
            .timeout_server
            .or(defaults.timeout_server)
            .unwrap_or(DEFAULT_TIMEOUT_SERVER);
        Resolved {
            timeout_connect: self
                .timeout_connect
                .or(defaults.timeout_connect)
                .unwrap_or(DEFAULT_TIMEOUT_CONNECT),
            timeout_client: client,
            timeout_server: server,
            timeout_http_request: self
                .timeout_http_request
                .or(defaults.timeout_http_request)
                .unwrap_or(client),
            timeout_http_keep_alive: self
                .timeout_http_keep_alive
                .or(defaults.timeout_http_keep_alive)
                .unwrap_or(client),
            http_request_deadline: self.timeout_http_request.or(defaults.timeout_http_request),
            timeout_tunnel: self
                .timeout_tunnel
                .or(defaults.timeout_tunnel)
                .unwrap_or(client),
            retries: self.retries.or(defaults.retries).unwrap_or(DEFAULT_RETRIES),
            redispatch: self.redispatch.or(defaults.redispatch).unwrap_or(true),
            maxconn: self.maxconn.or(defaults.maxconn).unwrap_or(global_maxconn),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(from = "ListenRaw")]
pub struct Listen {
    pub name: String,
    /// Addresses to accept on: `"0.0.0.0:80"`, `"[::]:80"`, `"*:80"` (= 0.0.0.0), `"127.0.0.1:8080"`.
    pub bind: Vec<String>,
    /// What the plain (non-TLS) binds speak: `"h1"` (HTTP/1.1, the default) or `"h2"` (HTTP/2
    /// with prior knowledge, h2c, as HAProxy's `bind ... proto h2`).
    pub proto: Proto,
    pub balance: Balance,
    /// `forwardfor = { except = ["127.0.0.0/8"] }`, `forwardfor = true`, or absent/false.
    pub forwardfor: Option<ForwardFor>,
    pub cookie: Option<CookieSettings>,
    #[serde(flatten)]
    pub proxy: ProxySettings,
    pub health: HealthSettings,
    pub server: Vec<ServerConfig>,
    /// TLS termination on the addresses of `tls.bind` (`[listen.tls]`).
    pub tls: Option<TlsSettings>,
    /// Set `X-Forwarded-Proto: https|http` on every request, replacing what the client sent
    /// (HAProxy `http-request set-header X-Forwarded-Proto https if { ssl_fc }`).
    pub forwarded_proto: bool,
    /// Set `X-Forwarded-Port: <port the client connected to>`, replacing the client's.
    pub forwarded_port: bool,
    /// Answer every request on a plain (non-TLS) address with a 302 to the same URL over https
    /// (HAProxy `redirect scheme https if !{ ssl_fc }`).
    pub redirect_https: bool,
    /// Every connection starts with a PROXY protocol v1 or v2 header (HAProxy `accept-proxy`);
    /// its source address is the client's for X-Forwarded-For, `except`, and the log.
    pub accept_proxy: bool,
    /// Sources allowed to send PROXY headers (the load balancer's networks). Required with
    /// `accept_proxy`; a connection from elsewhere is closed.
    pub accept_proxy_from: Vec<IpNet>,
}

/// The `[[listen]]` table as written: every key explicit (no `flatten`), so unknown keys are
/// reported and type errors point at their line.
#[derive(Debug, Clone, Deserialize)]
struct ListenRaw {
    name: String,
    #[serde(default)]
    bind: Vec<String>,
    #[serde(default)]
    proto: Proto,
    #[serde(default)]
    balance: Balance,
    #[serde(default)]
    forwardfor: Option<ForwardFor>,
    #[serde(default)]
    cookie: Option<CookieSettings>,
    #[serde(default, with = "humantime_serde::option")]
    timeout_connect: Option<Duration>,
    #[serde(default, with = "humantime_serde::option")]
    timeout_client: Option<Duration>,
    #[serde(default, with = "humantime_serde::option")]
    timeout_server: Option<Duration>,
    #[serde(default, with = "humantime_serde::option")]
    timeout_http_request: Option<Duration>,
    #[serde(default, with = "humantime_serde::option")]
    timeout_http_keep_alive: Option<Duration>,
    #[serde(default, with = "humantime_serde::option")]
    timeout_tunnel: Option<Duration>,
    retries: Option<u32>,
    redispatch: Option<bool>,
    maxconn: Option<u32>,
    #[serde(default)]
    health: HealthSettings,
    #[serde(default)]
    server: Vec<ServerConfig>,
    #[serde(default)]
    tls: Option<TlsSettings>,
    #[serde(default)]
    forwarded_proto: bool,
    #[serde(default)]
    forwarded_port: bool,
    #[serde(default)]
    redirect_https: bool,
    #[serde(default)]
    accept_proxy: bool,
    #[serde(default)]
    accept_proxy_from: Vec<IpNet>,
}

impl From<ListenRaw> for Listen {
    fn from(r: ListenRaw) -> Self {
        Listen {
            name: r.name,
            bind: r.bind,
            proto: r.proto,
            balance: r.balance,
            forwardfor: r.forwardfor,
            cookie: r.cookie,
            proxy: ProxySettings {
                timeout_connect: r.timeout_connect,
                timeout_client: r.timeout_client,
                timeout_server: r.timeout_server,
                timeout_http_request: r.timeout_http_request,
                timeout_http_keep_alive: r.timeout_http_keep_alive,
                timeout_tunnel: r.timeout_tunnel,
                retries: r.retries,
                redispatch: r.redispatch,
                maxconn: r.maxconn,
            },
            health: r.health,
            server: r.server,
            tls: r.tls,
            forwarded_proto: r.forwarded_proto,
            forwarded_port: r.forwarded_port,
            redirect_https: r.redirect_https,
            accept_proxy: r.accept_proxy,
            accept_proxy_from: r.accept_proxy_from,
        }
    }
}

/// The protocol a listen's plain binds speak (`proto`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// HTTP/1.1 (and 1.0).
    #[default]
    H1,
    /// HTTP/2 with prior knowledge (h2c, RFC 9113 3.3): the client starts with the preface.
    H2,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Balance {
    #[default]
    Roundrobin,
}

impl Balance {
    pub fn as_str(self) -> &'static str {
        match self {
            Balance::Roundrobin => "roundrobin",
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum ForwardFor {
    Enabled(bool),
    Options {
        /// Client source networks for which no header is added (HAProxy `except`).
        #[serde(default)]
        except: Vec<IpNet>,
    },
}

impl ForwardFor {
    pub fn enabled(&self) -> bool {
        !matches!(self, ForwardFor::Enabled(false))
    }
    pub fn except(&self) -> &[IpNet] {
        match self {
            ForwardFor::Options { except } => except,
            ForwardFor::Enabled(_) => &[],
        }
    }
}

/// HAProxy `cookie NAME insert indirect nocache`: the only cookie mode edgelb implements (the
/// others are reported by `edgelb import`).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct CookieSettings {
    pub name: String,
    #[serde(default = "default_true")]
    pub insert: bool,
    #[serde(default = "default_true")]
    pub indirect: bool,
    #[serde(default = "default_true")]
    pub nocache: bool,
    #[serde(default)]
    pub httponly: bool,
    #[serde(default)]
    pub secure: bool,
    pub domain: Option<String>,
}

/// Health check settings of a listen (`check` with HAProxy's defaults).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct HealthSettings {
    #[serde(default, with = "humantime_serde::option")]
    pub inter: Option<Duration>,
    #[serde(default, with = "humantime_serde::option")]
    pub fastinter: Option<Duration>,
    #[serde(default, with = "humantime_serde::option")]
    pub downinter: Option<Duration>,
    /// Per-probe timeout; default = `inter`.
    #[serde(default, with = "humantime_serde::option")]
    pub timeout: Option<Duration>,
    pub rise: Option<u32>,
    pub fall: Option<u32>,
    /// `observe layer4`: failed proxied connects count toward `fall`.
    #[serde(default)]
    pub observe_layer4: bool,
    /// HTTP check instead of a TCP connect (HAProxy `option httpchk`).
    pub http: Option<HttpCheck>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct HttpCheck {
    #[serde(default = "default_check_method")]
    pub method: String,
    #[serde(default = "default_check_path")]
    pub path: String,
    pub host: Option<String>,
    /// Accepted status range, `"200-399"` (HAProxy's default for httpchk is 2xx/3xx).
    #[serde(default = "default_check_expect")]
    pub expect_status: String,
}

fn default_check_method() -> String {
    "GET".into()
}
fn default_check_path() -> String {
    "/".into()
}
fn default_check_expect() -> String {
    "200-399".into()
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ServerConfig {
    pub name: String,
    /// `IP:PORT` or `host:port` (resolved once at load).
    pub address: String,
    /// 0..=256 like HAProxy; 0 = no round-robin traffic, cookie holders still served.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Persistence cookie value; defaults to the server name (the seed uses the name).
    pub cookie: Option<String>,
    /// Health-check this server. HAProxy needs `check` spelled out; edgelb checks by default.
    #[serde(default = "default_true")]
    pub check: bool,
    /// Health-check port when it differs from the traffic port.
    pub check_port: Option<u16>,
    /// Start in maintenance (HAProxy `disabled`).
    #[serde(default)]
    pub disabled: bool,
    /// Open every connection to this server with a PROXY protocol v2 header carrying the
    /// client's addresses (HAProxy `send-proxy-v2`). Such connections are never shared between
    /// clients; health checks send a v2 `LOCAL` header unless `check_port` is set (HAProxy's
    /// default for `check-send-proxy`).
    #[serde(default)]
    pub send_proxy_v2: bool,
}

fn default_weight() -> u32 {
    1
}

/// `[stats]`: the dashboard (9022) and the API (9023).
///
/// Both default to loopback: the dashboard and the read-only routes show backend addresses and
/// the node's EC2 identity, so a public bind is something the operator writes, not a default.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct StatsSection {
    /// Default [`DEFAULT_DASHBOARD_BIND`] (loopback; HAProxy has no default stats bind).
    #[serde(default = "default_dashboard_bind")]
    pub dashboard_bind: String,
    /// Default [`DEFAULT_API_BIND`] (loopback).
    #[serde(default = "default_api_bind")]
    pub api_bind: String,
    /// File holding the admin bearer token (`Authorization: Bearer <token>`). Without it the
    /// admin actions are disabled (403). Must be owned by edgelb (or root), mode 0600.
    pub admin_token_file: Option<String>,
    /// File holding a read token. When set, `/stats.json`, `/stats.csv` (and `;csv`), `/metrics`
    /// and `/history.json` need it (Bearer, or a Basic password with any user name, like
    /// HAProxy's `stats auth`); the admin token is accepted too. `/healthz`, `/readyz` and the
    /// dashboard page itself stay open. Default: none (reads are open to whoever reaches the bind).
    pub read_token_file: Option<String>,
    /// How often the dashboard refreshes.
    #[serde(default = "default_refresh", with = "humantime_serde")]
    pub refresh: Duration,
}

/// Default `[stats] dashboard_bind`: loopback only.
pub const DEFAULT_DASHBOARD_BIND: &str = "127.0.0.1:9022";
/// Default `[stats] api_bind`: loopback only.
pub const DEFAULT_API_BIND: &str = "127.0.0.1:9023";

fn default_dashboard_bind() -> String {
    DEFAULT_DASHBOARD_BIND.into()
}
fn default_api_bind() -> String {
    DEFAULT_API_BIND.into()
}
fn default_refresh() -> Duration {
    Duration::from_secs(2)
}

/// `[cluster]`: the Heartbeat replacement. Timers default to the seed's ha.cf.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ClusterSection {
    #[serde(default = "default_cluster_bind")]
    pub bind: String,
    #[serde(default = "default_keepalive", with = "humantime_serde")]
    pub keepalive: Duration,
    #[serde(default = "default_deadtime", with = "humantime_serde")]
    pub deadtime: Duration,
    /// Default: deadtime / 2 (Heartbeat's implicit warntime).
    #[serde(default, with = "humantime_serde::option")]
    pub warntime: Option<Duration>,
    #[serde(default = "default_initdead", with = "humantime_serde")]
    pub initdead: Duration,
    #[serde(default = "default_true")]
    pub auto_failback: bool,
    /// How long a returning owner must be steadily alive before its EIP goes back.
    #[serde(default, with = "humantime_serde::option")]
    pub failback_hold: Option<Duration>,
    /// Shared secret file (must not be readable by group/other).
    pub auth_key_file: String,
    /// Partition witness through EC2 tags on each node's ENI.
    #[serde(default = "default_true")]
    pub witness: bool,
    /// How often each node writes its witness stamp (default
    /// `cluster::setup::DEFAULT_WITNESS_INTERVAL`, 7 s).
    #[serde(default, with = "humantime_serde::option")]
    pub witness_interval: Option<Duration>,
    /// A silent peer whose stamp is older than this is dead, not partitioned (default
    /// `cluster::setup::default_witness_stale_after`: deadtime + 3 s, at least 2 intervals + 3 s;
    /// 18 s with the seed timers). Bounds "instance gone" detection with the witness on; must
    /// exceed `witness_interval` and dwarf clock skew.
    #[serde(default, with = "humantime_serde::option")]
    pub witness_stale_after: Option<Duration>,
    #[serde(default)]
    pub node: Vec<ClusterNode>,
}

fn default_cluster_bind() -> String {
    "0.0.0.0:694".into()
}
fn default_keepalive() -> Duration {
    Duration::from_secs(2)
}
fn default_deadtime() -> Duration {
    Duration::from_secs(15)
}
fn default_initdead() -> Duration {
    Duration::from_secs(60)
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ClusterNode {
    pub name: String,
    /// Heartbeat destinations of this node (`IP:PORT`); several = several paths.
    #[serde(default)]
    pub address: Vec<String>,
    /// EC2 identity of this node. Only needed for the *local* node off EC2 (tests, demo); on EC2
    /// it comes from IMDSv2. For peers it lets the witness be read without discovery.
    pub instance_id: Option<String>,
    pub eni_id: Option<String>,
    pub primary_ip: Option<std::net::Ipv4Addr>,
    pub secondary_ip: Option<std::net::Ipv4Addr>,
    /// More private IPs that can carry peers' EIPs (one EIP each), after `secondary_ip`. A
    /// cluster of N nodes needs N-1 per node for every EIP to find a home when all but one die.
    #[serde(default)]
    pub secondary_ips: Vec<std::net::Ipv4Addr>,
}

/// `[aws]`: how to reach the EC2 API.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct AwsSection {
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    #[serde(default, with = "humantime_serde::option")]
    pub attempt_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde::option")]
    pub operation_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde::option")]
    pub connect_timeout: Option<Duration>,
    pub max_attempts: Option<u32>,
    #[serde(default, with = "humantime_serde::option")]
    pub reconcile_interval: Option<Duration>,
    /// EC2 calls this node may make per minute (all kinds together).
    pub api_budget_per_minute: Option<u32>,
    /// Assign a secondary private IP to the ENI at start when it has none.
    #[serde(default = "default_true")]
    pub ensure_secondary_ip: bool,
    /// Longest wait between two tries of a failed EIP move or describe (the reconcile loop's
    /// backoff, not the SDK's per-call retries); default
    /// `cluster::setup::DEFAULT_RETRY_BACKOFF_MAX` (2 s).
    #[serde(default, with = "humantime_serde::option")]
    pub retry_backoff_max: Option<Duration>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct EipSection {
    pub allocation_id: String,
    /// The node whose EIP this is (it holds it on its primary IP when healthy).
    pub owner: String,
    /// For display only.
    pub public_ip: Option<std::net::Ipv4Addr>,
}

/// A bind string parsed: `*:80` means all IPv4 addresses, like HAProxy's `bind *:80`.
pub fn parse_bind(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    let normalized;
    let s = if let Some(port) = s.strip_prefix("*:") {
        normalized = format!("0.0.0.0:{port}");
        normalized.as_str()
    } else {
        s
    };
    s.parse::<SocketAddr>().map_err(|e| {
        format!("invalid bind address {s:?}: {e} (expected IP:PORT, [IPv6]:PORT or *:PORT)")
    })
}

/// Whether `[log] access` names a target edgelb can write to.
pub fn log_target_is_valid(s: &str) -> bool {
    matches!(s, "stdout" | "stderr" | "syslog" | "off")
        || s.strip_prefix("udp://")
            .map(|a| a.parse::<SocketAddr>().is_ok())
            .unwrap_or(false)
        || s.starts_with('/')
}

/// `"200"` or `"200-399"` to an inclusive range.
pub fn parse_status_range(s: &str) -> Option<(u16, u16)> {
    let (lo, hi) = match s.split_once('-') {
        Some((a, b)) => (a.trim().parse().ok()?, b.trim().parse().ok()?),
        None => {
            let v = s.trim().parse().ok()?;
            (v, v)
        }
    };
    ((100..=599).contains(&lo) && (100..=599).contains(&hi) && lo <= hi).then_some((lo, hi))
}
