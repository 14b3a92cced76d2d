//! HAProxy configuration: the lexer (HAProxy 2.6 `parse_line` rules: `#` comments, `"..."` and
//! `'...'` quoting, backslash escapes, `"${VAR}"` expansion, plus backslash line continuation) and
//! the parser of the subset edgelb can replace, producing edgelb tables and a report entry for
//! every directive.
//!
//! Where things are: `lexer` (words, `Env`, sections), `global`, `proxies` (sections -> listens,
//! emitted tables), `directives` (one proxy directive at a time); this file holds the parsed
//! model they share and `import`, which runs them in order.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use ipnet::IpNet;

use crate::import::emit::{str_list, Table, Value};
use crate::import::report::{Loc, Report};

mod directives;
mod global;
mod lexer;
mod proxies;
mod tls_rules;

use directives::*;
use global::*;
use lexer::*;
pub use lexer::{lex_line, Env, Lexed, Line};
use proxies::*;
use tls_rules::TlsImport;

// ------------------------------------------------------------------------------------------------
// Values

/// HAProxy time: a bare number is in milliseconds; units `us`, `ms`, `s`, `m`, `h`, `d`.
pub fn parse_time(s: &str) -> Result<Duration, String> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(format!(
            "invalid time {s:?}: expected a number with an optional unit (us, ms, s, m, h, d)"
        ));
    }
    let n: u64 = s[..digits]
        .parse()
        .map_err(|_| format!("invalid time {s:?}: number too large"))?;
    let d = match &s[digits..] {
        "" | "ms" => Duration::from_millis(n),
        "us" => Duration::from_micros(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        "d" => Duration::from_secs(n.saturating_mul(86400)),
        u => {
            return Err(format!(
                "invalid time {s:?}: unknown unit {u:?} (us, ms, s, m, h, d)"
            ))
        }
    };
    Ok(d)
}

fn parse_u32(s: Option<&str>, what: &str) -> Result<u32, String> {
    let s = s.ok_or_else(|| format!("missing {what}"))?;
    s.parse()
        .map_err(|_| format!("invalid {what} {s:?}: expected a non-negative integer"))
}

/// A value with the directive that set it.
#[derive(Debug, Clone)]
struct Src<T> {
    v: T,
    at: Loc,
}

fn src<T>(v: T, at: &Loc) -> Option<Src<T>> {
    Some(Src { v, at: at.clone() })
}

#[derive(Debug, Clone, PartialEq)]
struct Cookie {
    name: String,
    indirect: bool,
    nocache: bool,
    httponly: bool,
    secure: bool,
    domain: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
struct HttpChk {
    method: String,
    path: String,
    host: Option<String>,
}

/// Server keywords that `default-server` can preset.
#[derive(Debug, Clone, Default)]
struct SrvParams {
    cookie: Option<String>,
    check: Option<bool>,
    inter: Option<Src<Duration>>,
    fastinter: Option<Src<Duration>>,
    downinter: Option<Src<Duration>>,
    rise: Option<Src<u32>>,
    fall: Option<Src<u32>>,
    weight: Option<u32>,
    disabled: Option<bool>,
    port: Option<u16>,
    observe_l4: Option<Src<bool>>,
    backup: bool,
    send_proxy_v2: bool,
}

/// What a `defaults`, `frontend`, `backend` or `listen` section sets.
#[derive(Debug, Clone, Default)]
struct Opts {
    mode: Option<Src<String>>,
    timeout_connect: Option<Src<Duration>>,
    timeout_client: Option<Src<Duration>>,
    timeout_server: Option<Src<Duration>>,
    timeout_http_request: Option<Src<Duration>>,
    timeout_http_keep_alive: Option<Src<Duration>>,
    timeout_tunnel: Option<Src<Duration>>,
    timeout_check: Option<Src<Duration>>,
    retries: Option<Src<u32>>,
    redispatch: Option<Src<bool>>,
    maxconn: Option<Src<u32>>,
    /// `Some(None)`: explicitly disabled.
    forwardfor: Option<Src<Option<Vec<IpNet>>>>,
    httplog: Option<Src<bool>>,
    dontlognull: Option<Src<bool>>,
    cookie: Option<Src<Cookie>>,
    httpchk: Option<Src<HttpChk>>,
    expect: Option<Src<String>>,
    default_server: SrvParams,
}

#[derive(Debug, Clone)]
struct Server {
    at: Loc,
    name: String,
    address: String,
    /// The address had no port: HAProxy then uses the port the client connected to.
    no_port: bool,
    p: SrvParams,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SecKind {
    Global,
    Defaults,
    Frontend,
    Backend,
    Listen,
}

#[derive(Debug, Clone)]
struct Section {
    kind: SecKind,
    name: String,
    from: Option<String>,
    at: Loc,
    lines: Vec<Line>,
}

const PROXY_SECTIONS: &[&str] = &["global", "defaults", "frontend", "backend", "listen"];
const OTHER_SECTIONS: &[&str] = &[
    "peers",
    "resolvers",
    "userlist",
    "mailers",
    "cache",
    "program",
    "http-errors",
    "ring",
    "log-forward",
    "fcgi-app",
    "crt-store",
    "traces",
    "acme",
    "dynamic-update",
];

/// Whether `text` is an HAProxy configuration rather than an edgelb TOML file: some line starts
/// with a section keyword (`global`, `defaults`, `listen`, `frontend`, `backend`) used as HAProxy
/// does (not `key = value`), and no line is a TOML table header.
pub fn looks_like_haproxy(text: &str) -> bool {
    let mut section = false;
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if t.starts_with('[') {
            return false;
        }
        let mut words = t.split_whitespace();
        let first = words.next().unwrap_or("");
        let second = words.next().unwrap_or("");
        if PROXY_SECTIONS.contains(&first) && !second.starts_with('=') && !first.contains('=') {
            section = true;
        }
    }
    section
}

/// `option httplog` and `option dontlognull` of the first imported listen.
type LogFlags = (Option<Src<bool>>, Option<Src<bool>>);

#[derive(Debug, Clone, Default)]
struct Proxy {
    opts: Opts,
    binds: Vec<Src<String>>,
    /// `bind ... proto h2` lines (h2c with prior knowledge), and whether other binds speak
    /// HTTP/1: edgelb's `proto` is per listen.
    h2_binds: Vec<Loc>,
    h1_binds: bool,
    servers: Vec<Server>,
    stats_enabled: Option<Loc>,
    /// `stats auth`: the source's stats page needed a password.
    stats_auth: Option<Loc>,
    disabled: bool,
    tls: TlsImport,
}

// ------------------------------------------------------------------------------------------------
// The result

/// What the HAProxy half of an import produces.
#[derive(Debug, Clone, Default)]
pub struct HaproxyImport {
    pub global: Table,
    pub log: Table,
    pub defaults: Table,
    /// Each listen: `[[listen]]`, then its `[listen.health]`, `[listen.health.http]` and
    /// `[[listen.server]]` tables.
    pub listens: Vec<Vec<Table>>,
    pub stats: Option<Table>,
    pub report: Report,
}

struct Ctx<'a> {
    rep: &'a mut Report,
    out: HaproxyImport,
    stats: Option<Table>,
    any_proxy_logs: bool,
    log_first: Option<Loc>,
}

/// Imports one HAProxy configuration. `file` is the name shown in the report and comments.
pub fn import(text: &str, file: &str, env: &mut Env) -> HaproxyImport {
    let mut rep = Report::default();
    let sections = lex_file(text, file, env, &mut rep);
    let mut ctx = Ctx {
        rep: &mut rep,
        out: HaproxyImport {
            global: Table::new("[global]"),
            log: Table::new("[log]"),
            defaults: Table::new("[defaults]"),
            ..HaproxyImport::default()
        },
        stats: None,
        any_proxy_logs: false,
        log_first: None,
    };
    for s in sections.iter().filter(|s| s.kind == SecKind::Global) {
        ctx.rep.not_needed(&s.at, "section header");
        for l in &s.lines {
            global_directive(&mut ctx, l);
        }
    }
    proxies(&mut ctx, &sections);
    if ctx.log_first.is_some() && !ctx.any_proxy_logs {
        let at = ctx.log_first.clone().unwrap_or_default();
        ctx.rep.note(
            &at,
            "no proxy had `log global`, so HAProxy did not log traffic; edgelb writes access lines to this target",
        );
    }
    let mut out = ctx.out;
    out.stats = ctx.stats;
    out.report = rep;
    out
}
