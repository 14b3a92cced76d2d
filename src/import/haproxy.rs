//! HAProxy configuration: the lexer (HAProxy 2.6 `parse_line` rules: `#` comments, `"..."` and
//! `'...'` quoting, backslash escapes, `"${VAR}"` expansion, plus backslash line continuation) and
//! the parser of the subset edgelb can replace, producing edgelb tables and a report entry for
//! every directive.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use ipnet::IpNet;

use super::emit::{str_list, Table, Value};
use super::report::{Loc, Report};

// ------------------------------------------------------------------------------------------------
// Environment

/// The environment variables `"${VAR}"` expands from. `setenv`/`presetenv`/`unsetenv`/`resetenv`
/// in `global` change it for the lines after them, as in HAProxy.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: HashMap<String, Option<String>>,
    process: bool,
}

impl Env {
    /// The process environment (what `haproxy` would have seen when started from this shell).
    pub fn process() -> Self {
        Self {
            vars: HashMap::new(),
            process: true,
        }
    }

    /// A fixed environment, for tests and reproducible imports.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), Some(v.into())))
                .collect(),
            process: false,
        }
    }

    pub fn get(&self, name: &str) -> Option<String> {
        match self.vars.get(name) {
            Some(v) => v.clone(),
            None if self.process => std::env::var(name).ok(),
            None => None,
        }
    }

    fn set(&mut self, name: &str, value: Option<String>) {
        self.vars.insert(name.to_string(), value);
    }
}

// ------------------------------------------------------------------------------------------------
// Lexer

/// The words of one logical line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Lexed {
    pub words: Vec<String>,
    /// `"${VAR}"` references to variables that are not set (expanded to nothing, as HAProxy does).
    pub undefined: Vec<String>,
    /// `$VAR` outside double quotes: HAProxy keeps those literally.
    pub bare_vars: Vec<String>,
    /// Character index (in the line without leading blanks) where a `#` comment starts.
    pub comment_at: Option<usize>,
}

/// Splits one line into words the way HAProxy 2.6 does (`parse_line` with `PARSE_OPT_ENV |
/// PARSE_OPT_DQUOTE | PARSE_OPT_SQUOTE | PARSE_OPT_BKSLASH | PARSE_OPT_SHARP |
/// PARSE_OPT_WORD_EXPAND`): variables are expanded only inside double quotes, single quotes are
/// fully literal, and `\` escapes ` `, `\`, `#`, `'`, `"`, `$` (in double quotes), `\t`, `\n`,
/// `\r` and `\xHH`; any other backslash is kept.
pub fn lex_line(line: &str, env: &Env) -> Result<Lexed, String> {
    let chars: Vec<char> = line.trim_start().chars().collect();
    let mut out = Lexed::default();
    let mut cur = String::new();
    let mut started = false;
    let mut squote = false;
    let mut dquote = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' || c == '\r' {
            break;
        } else if c == '#' && !squote && !dquote {
            out.comment_at = Some(i);
            break;
        } else if c == '"' && !squote {
            dquote = !dquote;
            started = true;
            i += 1;
        } else if c == '\'' && !dquote {
            squote = !squote;
            started = true;
            i += 1;
        } else if c == '\\' && !squote {
            let next = chars.get(i + 1).copied();
            match next {
                Some(n @ (' ' | '\\' | '#' | '\'' | '"')) => {
                    cur.push(n);
                    i += 2;
                }
                Some('$') if dquote => {
                    cur.push('$');
                    i += 2;
                }
                Some('t') => {
                    cur.push('\t');
                    i += 2;
                }
                Some('n') => {
                    cur.push('\n');
                    i += 2;
                }
                Some('r') => {
                    cur.push('\r');
                    i += 2;
                }
                Some('x') => {
                    let hex: String = chars.iter().skip(i + 2).take(2).collect();
                    let byte = (hex.len() == 2)
                        .then(|| u8::from_str_radix(&hex, 16).ok())
                        .flatten()
                        .ok_or_else(|| format!("invalid or incomplete hex sequence \\x{hex}"))?;
                    cur.push(char::from(byte));
                    i += 4;
                }
                _ => {
                    cur.push('\\');
                    i += 1;
                }
            }
            started = true;
        } else if c.is_whitespace() && !squote && !dquote {
            if started || !cur.is_empty() {
                out.words.push(std::mem::take(&mut cur));
            }
            started = false;
            while i < chars.len() && chars[i].is_whitespace() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '$' && dquote {
            i += 1;
            let brace = chars.get(i) == Some(&'{');
            if brace {
                i += 1;
            }
            let start = i;
            match chars.get(i) {
                Some(ch) if ch.is_ascii_alphabetic() || *ch == '_' || *ch == '.' => {}
                _ => return Err("unacceptable character in variable name after '$'".into()),
            }
            if chars[i] == '.' {
                i += 1;
            }
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let name: String = chars[start..i].iter().collect();
            let mut expand_words = false;
            if brace && chars.get(i) == Some(&'[') {
                if chars.get(i + 1) == Some(&'*') && chars.get(i + 2) == Some(&']') {
                    expand_words = true;
                    i += 3;
                } else {
                    return Err(format!("invalid word expansion after ${{{name}"));
                }
            }
            let mut value = if name.starts_with('.') {
                // .LINE/.FILE/.SECTION describe the parser's position; the importer has no use
                // for them beyond keeping them readable.
                Some(format!("<{name}>"))
            } else {
                env.get(&name)
            };
            if brace {
                if chars.get(i) == Some(&'-') {
                    let dstart = i + 1;
                    let Some(end) = chars[dstart..].iter().position(|c| *c == '}') else {
                        return Err(format!("unmatched brace in ${{{name}"));
                    };
                    if value.is_none() {
                        value = Some(chars[dstart..dstart + end].iter().collect());
                    }
                    i = dstart + end;
                }
                if chars.get(i) != Some(&'}') {
                    return Err(format!("unmatched brace in ${{{name}"));
                }
                i += 1;
            }
            match value {
                Some(v) if expand_words => {
                    let mut parts = v.split_whitespace().peekable();
                    while let Some(p) = parts.next() {
                        cur.push_str(p);
                        if parts.peek().is_some() {
                            out.words.push(std::mem::take(&mut cur));
                        }
                    }
                }
                Some(v) => cur.push_str(&v),
                None => out.undefined.push(name),
            }
            started = true;
        } else {
            if c == '$' && !squote {
                let name: String = chars[i + 1..]
                    .iter()
                    .skip_while(|c| **c == '{')
                    .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
                    .collect();
                if !name.is_empty() {
                    out.bare_vars.push(name);
                }
            }
            cur.push(c);
            started = true;
            i += 1;
        }
    }
    if squote || dquote {
        return Err(format!(
            "unterminated {} quote",
            if squote { "single" } else { "double" }
        ));
    }
    if started || !cur.is_empty() {
        out.words.push(cur);
    }
    Ok(out)
}

/// A line of the file with its words.
#[derive(Debug, Clone)]
pub struct Line {
    pub loc: Loc,
    pub words: Vec<String>,
    /// Whether the line starts with blanks (section keywords normally don't).
    pub indented: bool,
}

impl Line {
    fn kw(&self) -> &str {
        self.words.first().map(String::as_str).unwrap_or("")
    }
    fn arg(&self, i: usize) -> Option<&str> {
        self.words.get(i).map(String::as_str)
    }
}

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

// ------------------------------------------------------------------------------------------------
// Splitting into sections

fn lex_file(text: &str, file: &str, env: &mut Env, rep: &mut Report) -> Vec<Section> {
    let mut sections: Vec<Section> = Vec::new();
    // Lines of an unsupported section are skipped; only its header is reported.
    let mut skipping: Option<(Loc, usize)> = None;
    let raw: Vec<&str> = text.split('\n').collect();
    let mut i = 0;
    let flush_skip = |skipping: &mut Option<(Loc, usize)>, rep: &mut Report| {
        if let Some((at, n)) = skipping.take() {
            if n > 0 {
                rep.note(&at, format!("{n} line(s) of this section skipped with it"));
            }
        }
    };
    while i < raw.len() {
        let first_no = i + 1;
        let mut joined = raw[i].trim_end_matches('\r').to_string();
        let mut continued = false;
        // A line ending in an odd number of backslashes continues on the next one.
        while (joined.len() - joined.trim_end_matches('\\').len()) % 2 == 1 {
            if i + 1 >= raw.len() {
                break;
            }
            joined.pop();
            i += 1;
            joined.push(' ');
            joined.push_str(raw[i].trim_end_matches('\r').trim_start());
            continued = true;
        }
        i += 1;
        let at = Loc::new(file, first_no, &joined);
        let lexed = match lex_line(&joined, env) {
            Ok(l) => l,
            Err(e) => {
                rep.error(&at, e);
                continue;
            }
        };
        if lexed.words.is_empty() {
            continue;
        }
        if continued {
            rep.note(
                &at,
                "backslash line continuation joined; HAProxy itself does not join lines, check the result",
            );
        }
        for v in &lexed.undefined {
            rep.warn(
                &at,
                format!("environment variable {v} is not set; expanded to an empty string as HAProxy would"),
            );
        }
        for v in &lexed.bare_vars {
            rep.note(
                &at,
                format!("${v} is outside double quotes: HAProxy does not expand it there, kept literally"),
            );
        }
        let indented = joined.starts_with([' ', '\t']);
        // The report shows the directive as written, without its trailing comment.
        let at = match lexed.comment_at {
            Some(c) => {
                let shown: String = joined.trim_start().chars().take(c).collect();
                Loc::new(file, first_no, &shown)
            }
            None => at,
        };
        let line = Line {
            loc: at.clone(),
            words: lexed.words,
            indented,
        };
        let kw = line.kw().to_string();
        let next_indented = raw
            .get(i)
            .map(|l| l.starts_with([' ', '\t']))
            .unwrap_or(false);

        if let Some(kind) = match kw.as_str() {
            "global" => Some(SecKind::Global),
            "defaults" => Some(SecKind::Defaults),
            "frontend" => Some(SecKind::Frontend),
            "backend" => Some(SecKind::Backend),
            "listen" => Some(SecKind::Listen),
            _ => None,
        } {
            flush_skip(&mut skipping, rep);
            let name = line.arg(1).unwrap_or("").to_string();
            let mut from = None;
            if line.arg(2) == Some("from") {
                from = line.arg(3).map(str::to_string);
            } else if line.words.len() > 2 {
                rep.warn(&at, "unexpected words after the section name (ignored)");
            }
            if name.is_empty()
                && matches!(kind, SecKind::Frontend | SecKind::Backend | SecKind::Listen)
            {
                rep.error(&at, format!("`{kw}` needs a name"));
            }
            sections.push(Section {
                kind,
                name,
                from,
                at,
                lines: Vec::new(),
            });
            continue;
        }
        if OTHER_SECTIONS.contains(&kw.as_str()) && !indented {
            flush_skip(&mut skipping, rep);
            rep.warn(
                &at,
                format!("`{kw}` sections are not supported by edgelb; the section is not imported"),
            );
            skipping = Some((at, 0));
            continue;
        }
        if !indented && next_indented && !is_known_keyword(&kw) {
            flush_skip(&mut skipping, rep);
            rep.error(
                &at,
                format!("unknown section `{kw}` (HAProxy sections: global, defaults, frontend, backend, listen, peers, resolvers, userlist, ...)"),
            );
            skipping = Some((at, 0));
            continue;
        }
        if let Some((_, n)) = skipping.as_mut() {
            *n += 1;
            continue;
        }
        let Some(sec) = sections.last_mut() else {
            rep.error(&at, format!("`{kw}` is outside of any section"));
            continue;
        };
        if sec.kind == SecKind::Global {
            apply_env_directive(&line, env, rep);
        }
        sec.lines.push(line);
    }
    flush_skip(&mut skipping, rep);
    sections
}

/// `setenv`/`presetenv`/`unsetenv`/`resetenv` act while parsing, so they must be applied before
/// the next line is lexed.
fn apply_env_directive(line: &Line, env: &mut Env, rep: &mut Report) {
    let _ = rep;
    match line.kw() {
        "setenv" => {
            if let (Some(n), Some(v)) = (line.arg(1), line.arg(2)) {
                env.set(n, Some(v.to_string()));
            }
        }
        "presetenv" => {
            if let (Some(n), Some(v)) = (line.arg(1), line.arg(2)) {
                if env.get(n).is_none() {
                    env.set(n, Some(v.to_string()));
                }
            }
        }
        "unsetenv" => {
            for n in &line.words[1..] {
                env.set(n, None);
            }
        }
        _ => {}
    }
}

fn is_known_keyword(kw: &str) -> bool {
    const KNOWN: &[&str] = &[
        "acl",
        "bind",
        "server",
        "default-server",
        "option",
        "no",
        "timeout",
        "retries",
        "balance",
        "cookie",
        "mode",
        "log",
        "maxconn",
        "default_backend",
        "use_backend",
        "http-request",
        "http-response",
        "http-check",
        "stats",
        "user",
        "group",
        "daemon",
        "chroot",
        "pidfile",
        "nbthread",
        "nbproc",
        "description",
        "errorfile",
        "capture",
        "redirect",
        "tcp-request",
        "tcp-response",
        "stick",
        "stick-table",
        "compression",
        "monitor-uri",
        "fullconn",
        "hash-type",
        "http-reuse",
        "id",
        "disabled",
        "enabled",
        "email-alert",
        "unique-id-format",
        "unique-id-header",
        "log-format",
        "setenv",
        "presetenv",
        "unsetenv",
        "resetenv",
    ];
    KNOWN.contains(&kw)
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

// ------------------------------------------------------------------------------------------------
// global

fn global_directive(ctx: &mut Ctx<'_>, l: &Line) {
    let at = &l.loc;
    let c = at.comment();
    match l.kw() {
        "maxconn" => match parse_u32(l.arg(1), "maxconn") {
            Ok(n) => {
                ctx.out.global.set("maxconn", Value::Int(n.into()), c);
                ctx.rep.mapped(at, format!("global.maxconn = {n}"));
            }
            Err(e) => ctx.rep.error(at, e),
        },
        "nbthread" => match parse_u32(l.arg(1), "nbthread") {
            Ok(n) => {
                ctx.out.global.set("workers", Value::Int(n.into()), c);
                ctx.rep.mapped(at, format!("global.workers = {n}"));
            }
            Err(e) => ctx.rep.error(at, e),
        },
        "nbproc" => match l.arg(1) {
            Some("1") => ctx.rep.not_needed(at, "edgelb is one process"),
            _ => ctx.rep.warn(
                at,
                "edgelb is one multi-threaded process; set global.workers instead",
            ),
        },
        "hard-stop-after" => match l.arg(1).map(parse_time) {
            Some(Ok(d)) => {
                ctx.out.global.set("grace", Value::Dur(d), c);
                ctx.rep.mapped(
                    at,
                    format!("global.grace = \"{}\"", super::emit::format_duration(d)),
                );
            }
            Some(Err(e)) => ctx.rep.error(at, e),
            None => ctx.rep.error(at, "missing time"),
        },
        "log" => global_log(ctx, l),
        "stats" => match l.arg(1) {
            Some("socket") => {
                let admin = l
                    .words
                    .windows(2)
                    .any(|w| w[0] == "level" && w[1] == "admin");
                // A local socket becomes loopback TCP, never a public bind (a `listen stats`
                // section, processed later, may set the address the source did expose).
                let t = ctx.stats.get_or_insert_with(|| Table::new("[stats]"));
                t.comments.push(format!(
                    "{c}: replaced by the admin API (api_bind) and dashboard, on loopback like the socket"
                ));
                if t.get("dashboard_bind").is_none() {
                    let d = crate::config::DEFAULT_DASHBOARD_BIND;
                    let a = crate::config::DEFAULT_API_BIND;
                    t.set("dashboard_bind", Value::Str(d.into()), None);
                    t.set("api_bind", Value::Str(a.into()), None);
                }
                ctx.rep.note(
                    at,
                    if admin {
                        "the admin API on 127.0.0.1:9023 (loopback only, as the socket was local) replaces the admin socket ([stats] emitted; set admin_token_file to allow admin actions)"
                    } else {
                        "the stats API on 127.0.0.1:9023 (loopback only, as the socket was local) replaces the stats socket ([stats] emitted)"
                    },
                );
            }
            Some("timeout") => ctx.rep.not_needed(
                at,
                "applies to the stats socket, which the HTTP API replaces",
            ),
            Some("maxconn") => ctx.rep.not_needed(
                at,
                "applies to the stats socket, which the HTTP API replaces",
            ),
            _ => ctx.rep.warn(at, "unsupported stats directive"),
        },
        "user" | "group" | "uid" | "gid" => ctx
            .rep
            .not_needed(at, "edgelb runs as the service user of its systemd unit"),
        "chroot" => ctx.rep.not_needed(
            at,
            "edgelb opens no files while serving; confine it with the systemd unit",
        ),
        "pidfile" => ctx
            .rep
            .not_needed(at, "edgelb runs in the foreground under systemd"),
        "daemon" | "master-worker" => ctx.rep.not_needed(
            at,
            "edgelb runs in the foreground under systemd and reloads in place",
        ),
        "module-path" | "module-load" => ctx
            .rep
            .not_needed(at, "HAProxy Enterprise modules; edgelb is one binary"),
        "setenv" | "presetenv" | "unsetenv" | "resetenv" => ctx.rep.not_needed(
            at,
            "applied while importing: the variables are expanded into the values",
        ),
        "ulimit-n" | "fd-hard-limit" => ctx
            .rep
            .not_needed(at, "set LimitNOFILE in the systemd unit"),
        "node" | "description" => ctx
            .rep
            .not_needed(at, "edgelb names nodes in [node] / [[cluster.node]]"),
        "ca-base"
        | "crt-base"
        | "ssl-default-bind-ciphers"
        | "ssl-default-bind-options"
        | "ssl-default-server-ciphers"
        | "ssl-default-server-options"
        | "ssl-default-bind-ciphersuites"
        | "ssl-default-server-ciphersuites"
        | "tune.ssl.default-dh-param"
        | "ssl-server-verify" => ctx.rep.note(
            at,
            "TLS settings: edgelb does not terminate TLS, so there is nothing to apply them to",
        ),
        "spread-checks" => ctx.rep.warn(
            at,
            "unsupported: edgelb spreads the first checks over one interval, not configurable",
        ),
        kw => ctx
            .rep
            .warn(at, format!("unsupported global directive `{kw}`")),
    }
}

fn global_log(ctx: &mut Ctx<'_>, l: &Line) {
    let at = &l.loc;
    let Some(target) = l.arg(1) else {
        ctx.rep.error(at, "`log` needs a target");
        return;
    };
    // log <target> [len N] [format F] [sample R:S] <facility> [level [minlevel]]
    let mut rest: Vec<&str> = l.words[2..].iter().map(String::as_str).collect();
    let mut extra = Vec::new();
    while let Some(first) = rest.first().copied() {
        if matches!(first, "len" | "format" | "sample") && rest.len() >= 2 {
            if !(first == "format" && matches!(rest[1], "rfc3164" | "raw" | "short")) {
                extra.push(format!("{first} {}", rest[1]));
            }
            rest.drain(..2);
        } else {
            break;
        }
    }
    let facility = rest.first().copied();
    let level = rest.get(1).copied();
    let access = match target {
        "stdout" | "stderr" => Some(target.to_string()),
        "/dev/log" | "unix@/dev/log" => Some("syslog".into()),
        t => {
            let t = t
                .strip_prefix("udp@")
                .or_else(|| t.strip_prefix("udp4@"))
                .unwrap_or(t);
            let t = t.strip_prefix("ipv4@").unwrap_or(t);
            if let Ok(ip) = t.parse::<IpAddr>() {
                Some(format!("udp://{}", std::net::SocketAddr::new(ip, 514)))
            } else if let Ok(sa) = t.parse::<std::net::SocketAddr>() {
                Some(format!("udp://{sa}"))
            } else {
                None
            }
        }
    };
    if let Some(first) = ctx.log_first.clone() {
        ctx.rep.note(
            at,
            format!(
                "edgelb has one access-log target (from {}): request lines go there with facility {}; this line's other messages (server state changes, alerts) are edgelb's own log, written to stderr (the journal under systemd), not to this target",
                first.comment(),
                ctx.out.log.get("facility").map(|v| match v { Value::Str(s) => s.clone(), _ => String::new() }).unwrap_or_default()
            ),
        );
        return;
    }
    let Some(access) = access else {
        ctx.rep.warn(
            at,
            format!(
                "unsupported log target {target:?} (edgelb: stdout, stderr, /dev/log, IP[:PORT])"
            ),
        );
        return;
    };
    let c = at.comment();
    ctx.out
        .log
        .set("access", Value::Str(access.clone()), c.clone());
    let mut msg = format!("log.access = \"{access}\"");
    if let Some(f) = facility {
        ctx.out.log.set("facility", Value::Str(f.to_string()), None);
        msg.push_str(&format!(", log.facility = \"{f}\""));
    }
    ctx.rep.mapped(at, msg);
    ctx.log_first = Some(at.clone());
    if let Some(lv) = level {
        if !matches!(lv, "info" | "debug") {
            ctx.rep.warn(
                at,
                format!("level `{lv}` filtered out traffic logs in HAProxy; edgelb has no level filter and logs every request"),
            );
        }
    }
    if !extra.is_empty() {
        ctx.rep
            .warn(at, format!("unsupported log options: {}", extra.join(", ")));
    }
}

// ------------------------------------------------------------------------------------------------
// proxies

/// The edgelb listen a section contributes to (backends take their frontend's binds).
fn listen_names(sections: &[Section], rep: &mut Report) -> HashMap<usize, String> {
    let mut out = HashMap::new();
    for (i, s) in sections.iter().enumerate() {
        match s.kind {
            SecKind::Listen | SecKind::Backend => {
                out.insert(i, s.name.clone());
            }
            SecKind::Frontend => {
                let mut target = None;
                let mut default = None;
                for l in &s.lines {
                    match l.kw() {
                        "use_backend" if l.words.len() == 2 && target.is_none() => {
                            target = l.arg(1).map(str::to_string)
                        }
                        "use_backend" => rep.warn(
                            &l.loc,
                            "conditional backend switching (ACLs) is not supported: requests go to the default_backend",
                        ),
                        "default_backend" => default = l.arg(1).map(str::to_string),
                        _ => {}
                    }
                }
                if let Some(b) = target.or(default) {
                    out.insert(i, b);
                }
            }
            _ => {}
        }
    }
    out
}

/// The `[[listen]]` name of a section: a frontend merged with its backend is named after the
/// (first) frontend, as HAProxy's access log names the frontend (`www app/s1`); a `listen`
/// section, or a backend no frontend uses, keeps its own name.
fn listen_label(sections: &[Section], names: &HashMap<usize, String>, i: usize) -> Option<String> {
    let target = names.get(&i)?;
    if sections[i].kind == SecKind::Listen {
        return Some(target.clone());
    }
    let first_fe = sections
        .iter()
        .enumerate()
        .find(|(j, s)| s.kind == SecKind::Frontend && names.get(j) == Some(target));
    Some(match first_fe {
        Some((_, fe)) => fe.name.clone(),
        None => target.clone(),
    })
}

/// `option httplog` and `option dontlognull` of the first imported listen.
type LogFlags = (Option<Src<bool>>, Option<Src<bool>>);

#[derive(Debug, Clone, Default)]
struct Proxy {
    opts: Opts,
    binds: Vec<Src<String>>,
    servers: Vec<Server>,
    stats_enabled: Option<Loc>,
    /// `stats auth`: the source's stats page needed a password.
    stats_auth: Option<Loc>,
    disabled: bool,
}

fn proxies(ctx: &mut Ctx<'_>, sections: &[Section]) {
    let names = listen_names(sections, ctx.rep);
    let mut current = Opts::default();
    let mut named: HashMap<String, Opts> = HashMap::new();
    let mut first_defaults: Option<Opts> = None;
    let mut parsed: Vec<(usize, Proxy)> = Vec::new();
    let mut ranges: HashMap<usize, std::ops::Range<usize>> = HashMap::new();
    for (i, s) in sections.iter().enumerate() {
        let base = match &s.from {
            Some(f) => match named.get(f) {
                Some(o) => o.clone(),
                None => {
                    ctx.rep
                        .error(&s.at, format!("no defaults section named {f:?}"));
                    Opts::default()
                }
            },
            None if s.kind == SecKind::Defaults => Opts::default(),
            None => current.clone(),
        };
        match s.kind {
            SecKind::Global => {}
            SecKind::Defaults => {
                ctx.rep.mapped(
                    &s.at,
                    "[defaults] (proxy settings) and per-[[listen]] defaults",
                );
                let mut p = Proxy {
                    opts: base,
                    ..Proxy::default()
                };
                for l in &s.lines {
                    proxy_directive(ctx, s, "defaults", &mut p, l);
                }
                current = p.opts.clone();
                if !s.name.is_empty() {
                    named.insert(s.name.clone(), current.clone());
                }
            }
            _ => {
                let target = match listen_label(sections, &names, i) {
                    Some(n) => format!("listen {n:?}"),
                    None => format!("{} {:?}", kind_word(s.kind), s.name),
                };
                if first_defaults.is_none() {
                    first_defaults = Some(base.clone());
                }
                let mut p = Proxy {
                    opts: base,
                    ..Proxy::default()
                };
                let start = ctx.rep.entries.len();
                for l in &s.lines {
                    proxy_directive(ctx, s, &target, &mut p, l);
                }
                ranges.insert(i, start..ctx.rep.entries.len());
                parsed.push((i, p));
            }
        }
    }
    let defaults = first_defaults.unwrap_or(current);
    emit_defaults(ctx, &defaults);

    // Assemble listens: `listen` sections as they are; each used backend with its frontends.
    let mut log_settings: Option<LogFlags> = None;
    let mut dropped: Vec<usize> = Vec::new();
    for (i, p) in &parsed {
        let s = &sections[*i];
        if p.disabled {
            ctx.rep.warn(&s.at, "the proxy is disabled: not imported");
            dropped.push(*i);
            continue;
        }
        match s.kind {
            SecKind::Listen => {
                if p.stats_enabled.is_some() && p.servers.is_empty() {
                    stats_proxy(ctx, s, p);
                    continue;
                }
                ctx.rep
                    .mapped(&s.at, format!("[[listen]] name = {:?}", s.name));
                if let Some(ls) = emit_listen(ctx, &s.name, &s.at, p, p, &defaults) {
                    log_settings
                        .get_or_insert((p.opts.httplog.clone(), p.opts.dontlognull.clone()));
                    ctx.out.listens.push(ls);
                } else {
                    dropped.push(*i);
                }
            }
            SecKind::Frontend => {
                let Some(bname) = names.get(i) else {
                    if p.stats_enabled.is_some() {
                        stats_proxy(ctx, s, p);
                    } else {
                        ctx.rep.warn(&s.at, "frontend without a default_backend (or unconditional use_backend): not imported");
                        dropped.push(*i);
                    }
                    continue;
                };
                let backend = parsed.iter().find(|(j, _)| {
                    sections[*j].kind == SecKind::Backend && sections[*j].name == *bname
                });
                let Some((_, be)) = backend else {
                    ctx.rep
                        .error(&s.at, format!("backend {bname:?} is not defined"));
                    continue;
                };
                let first_fe = parsed.iter().find(|(j, _)| {
                    sections[*j].kind == SecKind::Frontend && names.get(j) == Some(bname)
                });
                let label = listen_label(sections, &names, *i).unwrap_or_else(|| bname.clone());
                if first_fe.map(|(j, _)| j) != Some(i) {
                    ctx.rep
                        .mapped(&s.at, format!("binds added to [[listen]] name = {label:?}"));
                    if let Some(l) = ctx.out.listens.iter_mut().find(|l| {
                        l.first().and_then(|t| t.get("name")) == Some(&Value::Str(label.clone()))
                    }) {
                        if let Some(Value::List(binds)) = l[0]
                            .fields
                            .iter_mut()
                            .find(|f| f.key == "bind")
                            .map(|f| &mut f.value)
                        {
                            binds.extend(p.binds.iter().map(|b| Value::Str(b.v.clone())));
                        }
                    }
                    ctx.rep.warn(&s.at, format!("a second frontend for backend {bname:?}: only its binds are merged; its other settings are not (edgelb uses the first frontend's)"));
                    continue;
                }
                ctx.rep.mapped(
                    &s.at,
                    format!("merged with backend {bname:?} into [[listen]] name = {label:?} (named after the frontend, as HAProxy's log names it)"),
                );
                if let Some(ls) = emit_listen(ctx, &label, &s.at, p, be, &defaults) {
                    log_settings
                        .get_or_insert((p.opts.httplog.clone(), p.opts.dontlognull.clone()));
                    ctx.out.listens.push(ls);
                } else {
                    dropped.push(*i);
                    if let Some((j, _)) = backend {
                        dropped.push(*j);
                    }
                }
            }
            SecKind::Backend => {
                if names
                    .iter()
                    .any(|(j, n)| sections[*j].kind == SecKind::Frontend && *n == s.name)
                {
                    ctx.rep.mapped(
                        &s.at,
                        format!(
                            "servers and backend settings of [[listen]] name = {:?}",
                            listen_label(sections, &names, *i).unwrap_or_else(|| s.name.clone())
                        ),
                    );
                } else {
                    ctx.rep.warn(
                        &s.at,
                        "backend not used by any frontend (or only through ACLs): not imported",
                    );
                    dropped.push(*i);
                }
            }
            _ => {}
        }
    }

    // Directives of a section that was not imported did not become anything.
    for i in dropped {
        let Some(r) = ranges.get(&i) else { continue };
        let line = sections[i].at.line;
        for e in &mut ctx.rep.entries[r.clone()] {
            if e.kind == super::report::Kind::Mapped {
                e.kind = super::report::Kind::Note;
                e.message = format!("not imported with its section (line {line})");
            }
        }
    }

    // [log]: httplog / dontlognull are global in edgelb.
    if let Some((httplog, dontlognull)) = log_settings {
        match httplog {
            Some(Src { v: true, at }) => {
                ctx.out
                    .log
                    .set("format", Value::Str("httplog".into()), at.comment())
            }
            _ => {
                ctx.out.log.set(
                    "format",
                    Value::Str("httplog".into()),
                    "edgelb always logs in the httplog format".to_string(),
                );
            }
        }
        match dontlognull {
            Some(Src { v, at }) => ctx.out.log.set("dontlognull", Value::Bool(v), at.comment()),
            None => ctx.out.log.set(
                "dontlognull",
                Value::Bool(false),
                "no `option dontlognull`: HAProxy logs empty connections too".to_string(),
            ),
        }
    }
}

fn kind_word(k: SecKind) -> &'static str {
    match k {
        SecKind::Global => "global",
        SecKind::Defaults => "defaults",
        SecKind::Frontend => "frontend",
        SecKind::Backend => "backend",
        SecKind::Listen => "listen",
    }
}

/// A stats-only proxy becomes `[stats]` on the address the source bound, and only there: the
/// API shares the dashboard's address (one server answers both) instead of opening 9023, and a
/// page the source protected with `stats auth` stays on loopback until a read token is set, so
/// the import never exposes more than the source did.
fn stats_proxy(ctx: &mut Ctx<'_>, s: &Section, p: &Proxy) {
    let t = ctx.stats.get_or_insert_with(|| Table::new("[stats]"));
    ctx.rep.mapped(&s.at, "[stats] (a stats-only proxy)");
    if let Some(b) = p.binds.first() {
        let addr = crate::config::parse_bind(&b.v).ok();
        let public = addr.is_some_and(|a| !a.ip().is_loopback());
        let bind = match (&p.stats_auth, addr) {
            (Some(auth), Some(a)) if public => {
                t.todo(format!(
                    "the source protected the stats page on {} with `stats auth` ({}:{}): put a \
                     token in a file (mode 0600), set read_token_file to it, then bind {} again",
                    b.v, auth.file, auth.line, b.v
                ));
                format!("127.0.0.1:{}", a.port())
            }
            _ => b.v.clone(),
        };
        t.set("dashboard_bind", Value::Str(bind.clone()), b.at.comment());
        t.set(
            "api_bind",
            Value::Str(bind.clone()),
            Some("the API shares the dashboard's address: the source opened no other port".into()),
        );
        ctx.rep.mapped(
            &b.at,
            format!("stats.dashboard_bind = stats.api_bind = {bind:?}"),
        );
    }
    for b in p.binds.iter().skip(1) {
        ctx.rep.warn(
            &b.at,
            "the dashboard has one bind address; extra bind not imported",
        );
    }
}

/// Effective proxy settings with HAProxy's implicit values, to compare a listen with [defaults].
#[derive(Debug, Clone, PartialEq)]
struct Eff {
    timeout_connect: Option<Duration>,
    timeout_client: Option<Duration>,
    timeout_server: Option<Duration>,
    timeout_http_request: Option<Duration>,
    timeout_http_keep_alive: Option<Duration>,
    timeout_tunnel: Option<Duration>,
    retries: u32,
    redispatch: bool,
    maxconn: Option<u32>,
}

fn eff(fe: &Opts, be: &Opts) -> Eff {
    let v = |o: &Option<Src<Duration>>| o.as_ref().map(|s| s.v);
    let ka = v(&fe.timeout_http_keep_alive).or(v(&fe.timeout_http_request));
    Eff {
        timeout_connect: v(&be.timeout_connect),
        timeout_client: v(&fe.timeout_client),
        timeout_server: v(&be.timeout_server),
        timeout_http_request: v(&fe.timeout_http_request),
        timeout_http_keep_alive: ka,
        timeout_tunnel: v(&be.timeout_tunnel),
        retries: be.retries.as_ref().map(|s| s.v).unwrap_or(3),
        redispatch: be.redispatch.as_ref().map(|s| s.v).unwrap_or(false),
        maxconn: fe.maxconn.as_ref().map(|s| s.v),
    }
}

fn emit_proxy_settings(t: &mut Table, fe: &Opts, be: &Opts, base: Option<&Eff>) {
    let e = eff(fe, be);
    let dur = |t: &mut Table,
               key: &str,
               v: Option<Duration>,
               b: Option<Option<Duration>>,
               src: &Option<Src<Duration>>,
               why: Option<String>| {
        if let Some(d) = v {
            if b != Some(Some(d)) {
                let c = match (src, why) {
                    (_, Some(w)) => w,
                    (Some(s), None) => s.at.comment(),
                    (None, None) => String::new(),
                };
                t.set(key, Value::Dur(d), (!c.is_empty()).then_some(c));
            }
        }
    };
    dur(
        t,
        "timeout_connect",
        e.timeout_connect,
        base.map(|b| b.timeout_connect),
        &be.timeout_connect,
        None,
    );
    dur(
        t,
        "timeout_client",
        e.timeout_client,
        base.map(|b| b.timeout_client),
        &fe.timeout_client,
        None,
    );
    dur(
        t,
        "timeout_server",
        e.timeout_server,
        base.map(|b| b.timeout_server),
        &be.timeout_server,
        None,
    );
    dur(
        t,
        "timeout_http_request",
        e.timeout_http_request,
        base.map(|b| b.timeout_http_request),
        &fe.timeout_http_request,
        None,
    );
    let ka_why = match (&fe.timeout_http_keep_alive, &fe.timeout_http_request) {
        (None, Some(r)) => Some(format!("{}: HAProxy uses timeout http-request for keep-alive when timeout http-keep-alive is unset", r.at.comment())),
        _ => None,
    };
    dur(
        t,
        "timeout_http_keep_alive",
        e.timeout_http_keep_alive,
        base.map(|b| b.timeout_http_keep_alive),
        &fe.timeout_http_keep_alive,
        ka_why,
    );
    dur(
        t,
        "timeout_tunnel",
        e.timeout_tunnel,
        base.map(|b| b.timeout_tunnel),
        &be.timeout_tunnel,
        None,
    );
    if base.map(|b| b.retries) != Some(e.retries) {
        let c = be
            .retries
            .as_ref()
            .map(|s| s.at.comment())
            .unwrap_or_else(|| "HAProxy's default retries".into());
        t.set("retries", Value::Int(e.retries.into()), c);
    }
    if base.map(|b| b.redispatch) != Some(e.redispatch) {
        let c = be
            .redispatch
            .as_ref()
            .map(|s| s.at.comment())
            .unwrap_or_else(|| {
                "no `option redispatch`: HAProxy keeps a request on its cookie's server".into()
            });
        t.set("redispatch", Value::Bool(e.redispatch), c);
    }
    if let Some(m) = e.maxconn {
        if base.map(|b| b.maxconn) != Some(Some(m)) {
            t.set(
                "maxconn",
                Value::Int(m.into()),
                fe.maxconn.as_ref().map(|s| s.at.comment()),
            );
        }
    }
}

fn emit_defaults(ctx: &mut Ctx<'_>, d: &Opts) {
    let mut t = std::mem::take(&mut ctx.out.defaults);
    emit_proxy_settings(&mut t, d, d, None);
    ctx.out.defaults = t;
}

fn emit_listen(
    ctx: &mut Ctx<'_>,
    name: &str,
    at: &Loc,
    fe: &Proxy,
    be: &Proxy,
    defaults: &Opts,
) -> Option<Vec<Table>> {
    let (fo, bo) = (&fe.opts, &be.opts);
    let mode = fo.mode.as_ref().or(bo.mode.as_ref());
    match mode {
        Some(Src { v, at: mat }) if v != "http" => {
            ctx.rep.warn(
                mat,
                format!("listen {name:?} is mode {v}: not imported (edgelb proxies HTTP only)"),
            );
            return None;
        }
        None => ctx.rep.warn(
            at,
            "no `mode`: HAProxy defaults to tcp; imported as an HTTP proxy",
        ),
        _ => {}
    }
    let mut t = Table::new("[[listen]]");
    t.set("name", Value::Str(name.to_string()), at.comment());
    if fe.binds.is_empty() {
        ctx.rep.warn(
            at,
            format!("listen {name:?} has no usable bind: not imported"),
        );
        return None;
    }
    let comments: Vec<String> = fe.binds.iter().map(|b| b.at.comment()).collect();
    t.set("bind", str_list(fe.binds.iter().map(|b| b.v.clone())), None);
    if let Some(f) = t.fields.iter_mut().find(|f| f.key == "bind") {
        f.comments = dedup(comments);
    }
    t.set("balance", Value::Str("roundrobin".into()), None);
    let ff = fo
        .forwardfor
        .as_ref()
        .filter(|f| f.v.is_some())
        .or(bo.forwardfor.as_ref());
    if let Some(Src {
        v: Some(except),
        at,
    }) = ff
    {
        let v = if except.is_empty() {
            Value::Bool(true)
        } else {
            Value::Inline(vec![(
                "except".into(),
                str_list(except.iter().map(|n| n.to_string())),
            )])
        };
        t.set("forwardfor", v, at.comment());
    }
    if let Some(Src { v: ck, at }) = &bo.cookie {
        let mut kv = vec![
            ("name".to_string(), Value::Str(ck.name.clone())),
            ("insert".into(), Value::Bool(true)),
            ("indirect".into(), Value::Bool(ck.indirect)),
            ("nocache".into(), Value::Bool(ck.nocache)),
        ];
        if ck.httponly {
            kv.push(("httponly".into(), Value::Bool(true)));
        }
        if ck.secure {
            kv.push(("secure".into(), Value::Bool(true)));
        }
        if let Some(d) = &ck.domain {
            kv.push(("domain".into(), Value::Str(d.clone())));
        }
        t.set("cookie", Value::Inline(kv), at.comment());
    }
    let base = eff(defaults, defaults);
    emit_proxy_settings(&mut t, fo, bo, Some(&base));

    let mut tables = vec![t];

    // Health: per-server timers in HAProxy, per-listen in edgelb.
    let mut h = Table::new("[listen.health]");
    let checked: Vec<&Server> = be
        .servers
        .iter()
        .filter(|s| s.p.check == Some(true))
        .collect();
    fn agree<T: PartialEq + Clone>(
        ctx: &mut Ctx<'_>,
        servers: &[&Server],
        get: impl Fn(&SrvParams) -> Option<Src<T>>,
        what: &str,
    ) -> Option<Src<T>> {
        let vals: Vec<Src<T>> = servers.iter().filter_map(|s| get(&s.p)).collect();
        let first = vals.first().cloned()?;
        if vals.iter().any(|v| v.v != first.v) || vals.len() != servers.len() {
            ctx.rep.warn(
                &first.at,
                format!("servers have different `{what}` values; edgelb has one per listen and uses this one"),
            );
        }
        Some(first)
    }
    let inter = agree(ctx, &checked, |p| p.inter.clone(), "inter");
    let fastinter = agree(ctx, &checked, |p| p.fastinter.clone(), "fastinter");
    let downinter = agree(ctx, &checked, |p| p.downinter.clone(), "downinter");
    let rise = agree(ctx, &checked, |p| p.rise.clone(), "rise");
    let fall = agree(ctx, &checked, |p| p.fall.clone(), "fall");
    let observe = agree(ctx, &checked, |p| p.observe_l4.clone(), "observe");
    for (k, v) in [
        ("inter", inter),
        ("fastinter", fastinter),
        ("downinter", downinter),
    ] {
        if let Some(s) = v {
            h.set(k, Value::Dur(s.v), s.at.comment());
        }
    }
    if let Some(s) = &bo.timeout_check {
        h.set("timeout", Value::Dur(s.v), s.at.comment());
    }
    for (k, v) in [("rise", rise), ("fall", fall)] {
        if let Some(s) = v {
            h.set(k, Value::Int(s.v.into()), s.at.comment());
        }
    }
    if let Some(s) = observe {
        h.set("observe_layer4", Value::Bool(s.v), s.at.comment());
    }
    let mut http_t = None;
    if let Some(Src { v: chk, at }) = &bo.httpchk {
        let mut ht = Table::new("[listen.health.http]");
        ht.set("method", Value::Str(chk.method.clone()), at.comment());
        ht.set("path", Value::Str(chk.path.clone()), None);
        if let Some(host) = &chk.host {
            ht.set("host", Value::Str(host.clone()), None);
        }
        let expect = bo.expect.as_ref();
        ht.set(
            "expect_status",
            Value::Str(
                expect
                    .map(|e| e.v.clone())
                    .unwrap_or_else(|| "200-399".into()),
            ),
            expect.map(|e| e.at.comment()),
        );
        http_t = Some(ht);
    } else if let Some(e) = &bo.expect {
        ctx.rep.warn(
            &e.at,
            "`http-check expect` without `option httpchk` has no effect in HAProxy either; ignored",
        );
    }
    tables.push(h);
    if let Some(ht) = http_t {
        tables.push(ht);
    }

    // Servers
    let bind_ports: Vec<u16> = {
        let mut v: Vec<u16> = fe
            .binds
            .iter()
            .filter_map(|b| b.v.rsplit_once(':').and_then(|(_, p)| p.parse().ok()))
            .collect();
        v.dedup();
        v
    };
    for s in &be.servers {
        if s.p.backup {
            let mut t = Table::new("");
            t.comments.push(s.at.comment());
            t.todo(format!(
                "backup server {:?} ({}) not imported: edgelb has no backup servers",
                s.name, s.address
            ));
            tables.push(t);
            continue;
        }
        let mut st = Table::new("[[listen.server]]");
        st.set("name", Value::Str(s.name.clone()), s.at.comment());
        let address = if s.no_port {
            match bind_ports.as_slice() {
                [p] => {
                    ctx.rep.note(&s.at, format!("no port: HAProxy uses the port the client connected to, which is always {p} here"));
                    format!("{}:{p}", s.address)
                }
                _ => {
                    ctx.rep.warn(
                        &s.at,
                        "no port and several bind ports: edgelb needs a fixed port; TODO left",
                    );
                    st.todo(format!(
                        "set the port of {:?} (HAProxy used the client's destination port)",
                        s.address
                    ));
                    format!("{}:80", s.address)
                }
            }
        } else {
            s.address.clone()
        };
        st.set("address", Value::Str(address), None);
        if let Some(w) = s.p.weight {
            if w != 1 {
                st.set("weight", Value::Int(w.into()), None);
            }
        }
        if let Some(c) = &s.p.cookie {
            st.set("cookie", Value::Str(c.clone()), None);
        }
        st.set("check", Value::Bool(s.p.check == Some(true)), None);
        if let Some(p) = s.p.port {
            st.set("check_port", Value::Int(p.into()), None);
        }
        if s.p.disabled == Some(true) {
            st.set("disabled", Value::Bool(true), None);
        }
        tables.push(st);
    }
    if be.servers.is_empty() {
        ctx.rep.warn(
            at,
            format!("listen {name:?} has no servers: every request will get 503"),
        );
    }
    Some(tables)
}

fn dedup(v: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in v {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

fn proxy_directive(ctx: &mut Ctx<'_>, s: &Section, target: &str, p: &mut Proxy, l: &Line) {
    let at = &l.loc;
    let is_defaults = s.kind == SecKind::Defaults;
    let fe_side = matches!(
        s.kind,
        SecKind::Frontend | SecKind::Listen | SecKind::Defaults
    );
    let be_side = matches!(
        s.kind,
        SecKind::Backend | SecKind::Listen | SecKind::Defaults
    );
    let per_listen = |key: &str| {
        if is_defaults {
            format!("listen.{key} of every [[listen]]")
        } else {
            format!("{target}: {key}")
        }
    };
    let key = |k: &str| {
        if is_defaults {
            format!("defaults.{k}")
        } else {
            format!("{target}: {k}")
        }
    };
    let o = &mut p.opts;
    match l.kw() {
        "mode" => match l.arg(1) {
            Some("http") => {
                o.mode = src("http".into(), at);
                ctx.rep.not_needed(at, "edgelb is an HTTP proxy");
            }
            Some(m) => {
                o.mode = src(m.to_string(), at);
                ctx.rep.warn(at, format!("mode {m} is not supported: edgelb proxies HTTP only"));
            }
            None => ctx.rep.error(at, "`mode` needs an argument"),
        },
        "log" => match l.arg(1) {
            Some("global") => {
                ctx.any_proxy_logs = true;
                ctx.rep.not_needed(at, "proxies always log to the [log] target");
            }
            _ => {
                ctx.any_proxy_logs = true;
                ctx.rep.warn(at, "per-proxy log targets are not supported; edgelb logs to the one [log] target");
            }
        },
        "option" | "no" => option(ctx, l, o, &key, &per_listen),
        "retries" => match parse_u32(l.arg(1), "retries") {
            Ok(n) => {
                o.retries = src(n, at);
                ctx.rep.mapped(at, format!("{} = {n}", key("retries")));
            }
            Err(e) => ctx.rep.error(at, e),
        },
        "maxconn" => match parse_u32(l.arg(1), "maxconn") {
            Ok(n) if fe_side => {
                o.maxconn = src(n, at);
                ctx.rep.mapped(at, format!("{} = {n}", key("maxconn")));
            }
            Ok(_) => ctx.rep.warn(at, "maxconn in a backend has no effect in HAProxy (it is fullconn's default); ignored"),
            Err(e) => ctx.rep.error(at, e),
        },
        "timeout" => timeout(ctx, l, o, &key, &per_listen),
        "contimeout" | "clitimeout" | "srvtimeout" => {
            let which = match l.kw() {
                "contimeout" => "connect",
                "clitimeout" => "client",
                _ => "server",
            };
            let mut words = vec!["timeout".to_string(), which.to_string()];
            words.extend(l.words[1..].iter().cloned());
            let l2 = Line { loc: at.clone(), words, indented: true };
            timeout(ctx, &l2, o, &key, &per_listen);
        }
        "balance" => match l.arg(1) {
            Some("roundrobin") => {
                ctx.rep.mapped(at, per_listen("balance = \"roundrobin\""));
            }
            Some("static-rr") => ctx.rep.warn(
                at,
                "static-rr mapped to roundrobin (same order; weights can then change at run time)",
            ),
            Some(a) => ctx.rep.warn(
                at,
                format!("balance {a} is not supported: edgelb balances roundrobin only, which is used instead"),
            ),
            None => ctx.rep.error(at, "`balance` needs an algorithm"),
        },
        "cookie" if be_side => cookie(ctx, l, o, &per_listen),
        "default-server" if be_side => {
            let mut params = o.default_server.clone();
            server_params(ctx, l, 1, &mut params);
            o.default_server = params;
            ctx.rep.mapped(at, per_listen("server defaults (inherited by the servers below)"));
        }
        "server" if matches!(s.kind, SecKind::Backend | SecKind::Listen) => server(ctx, l, p, target),
        "bind" if matches!(s.kind, SecKind::Frontend | SecKind::Listen) => bind(ctx, l, p, target),
        "default_backend" | "use_backend" if s.kind == SecKind::Frontend => {
            if l.kw() == "default_backend" || l.words.len() == 2 {
                ctx.rep.mapped(at, format!("frontend merged into {target}"));
            }
        }
        "http-check" if be_side => http_check(ctx, l, o, &per_listen),
        "stats" if !is_defaults => {
            match l.arg(1) {
                Some("enable") => {
                    p.stats_enabled = Some(at.clone());
                    ctx.rep.mapped(at, "[stats] dashboard");
                }
                Some("uri") => {
                    p.stats_enabled.get_or_insert(at.clone());
                    ctx.rep.note(at, "the edgelb dashboard is served on its own port ([stats] dashboard_bind); the URI is fixed");
                }
                Some("refresh") => match l.arg(2).map(parse_time_secs) {
                    Some(Ok(d)) => {
                        ctx.stats.get_or_insert_with(|| Table::new("[stats]")).set("refresh", Value::Dur(d), at.comment());
                        ctx.rep.mapped(at, format!("stats.refresh = \"{}\"", super::emit::format_duration(d)));
                    }
                    Some(Err(e)) => ctx.rep.error(at, e),
                    None => ctx.rep.error(at, "missing time"),
                },
                Some("admin") => {
                    let t = ctx.stats.get_or_insert_with(|| Table::new("[stats]"));
                    t.todo("set admin_token_file to enable the admin actions HAProxy allowed with `stats admin`");
                    ctx.rep.warn(at, "admin actions need [stats] admin_token_file (a bearer token), which HAProxy had no equivalent of; TODO left");
                }
                Some("auth") => {
                    p.stats_auth.get_or_insert(at.clone());
                    ctx.rep.warn(at, "stats user/password auth is not imported: edgelb reads a token from [stats] read_token_file (the Basic password, any user name); the dashboard is kept on loopback until you set it (TODO left)");
                }
                Some("realm") => ctx.rep.not_needed(at, "edgelb sends no Basic challenge"),
                Some("hide-version") | Some("show-legends") | Some("show-node") | Some("show-desc") => ctx.rep.not_needed(at, "dashboard display option"),
                _ => ctx.rep.warn(at, "unsupported stats directive"),
            }
        }
        "disabled" => {
            p.disabled = true;
        }
        "enabled" | "description" | "id" => ctx.rep.not_needed(at, "informational"),
        "acl" => ctx.rep.warn(at, "ACLs are not supported by edgelb; not imported"),
        "fullconn" | "hash-type" => ctx.rep.not_needed(at, "only meaningful with HAProxy's dynamic maxconn / hashing balance algorithms"),
        "http-reuse" => ctx.rep.note(at, "edgelb always reuses idle server connections safely (like http-reuse safe)"),
        kw @ ("http-request" | "http-response" | "tcp-request" | "tcp-response" | "redirect"
        | "errorfile" | "capture" | "stick" | "stick-table" | "compression" | "monitor-uri"
        | "unique-id-format" | "unique-id-header" | "log-format" | "email-alert" | "http-after-response"
        | "reqadd" | "rspadd" | "reqrep" | "rsprep" | "errorloc" | "errorfiles" | "filter") => {
            ctx.rep.warn(at, format!("`{kw}` is not supported by edgelb; not imported"))
        }
        kw => ctx.rep.warn(at, format!("unsupported directive `{kw}` in {} section; not imported", kind_word(s.kind))),
    }
}

/// `stats refresh` takes seconds by default.
fn parse_time_secs(s: &str) -> Result<Duration, String> {
    if s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|e| e.to_string())
    } else {
        parse_time(s)
    }
}

fn option(
    ctx: &mut Ctx<'_>,
    l: &Line,
    o: &mut Opts,
    key: &dyn Fn(&str) -> String,
    per_listen: &dyn Fn(&str) -> String,
) {
    let at = &l.loc;
    let (neg, name_idx) = if l.kw() == "no" {
        if l.arg(1) != Some("option") {
            ctx.rep.warn(at, "unsupported `no` directive");
            return;
        }
        (true, 2)
    } else {
        (false, 1)
    };
    let Some(name) = l.arg(name_idx) else {
        ctx.rep.error(at, "`option` needs a name");
        return;
    };
    let args: Vec<&str> = l.words[name_idx + 1..].iter().map(String::as_str).collect();
    match name {
        "httplog" => {
            o.httplog = src(!neg, at);
            if neg {
                ctx.rep.note(at, "edgelb always logs in the httplog format");
            } else {
                ctx.rep.mapped(at, "log.format = \"httplog\"");
            }
        }
        "dontlognull" => {
            o.dontlognull = src(!neg, at);
            ctx.rep.mapped(at, format!("log.dontlognull = {}", !neg));
        }
        "redispatch" => {
            if !neg && !args.is_empty() && args[0] != "-1" {
                ctx.rep.warn(at, format!("redispatch interval {} is not supported: edgelb redispatches on the last retry like the default", args[0]));
            }
            o.redispatch = src(!neg, at);
            ctx.rep.mapped(at, format!("{} = {}", key("redispatch"), !neg));
        }
        "forwardfor" => {
            if neg {
                o.forwardfor = src(None, at);
                ctx.rep.mapped(at, per_listen("forwardfor absent"));
                return;
            }
            let mut except = Vec::new();
            let mut i = 0;
            let mut ok = true;
            while i < args.len() {
                match args[i] {
                    "except" => {
                        match args.get(i + 1).map(|n| parse_net(n)) {
                            Some(Ok(n)) => except.push(n),
                            Some(Err(e)) => {
                                ctx.rep.error(at, e);
                                ok = false;
                            }
                            None => {
                                ctx.rep.error(at, "`except` needs a network");
                                ok = false;
                            }
                        }
                        i += 2;
                    }
                    "header" => {
                        ctx.rep.warn(at, format!("custom header name {:?} is not supported: edgelb sends X-Forwarded-For", args.get(i + 1).copied().unwrap_or("")));
                        i += 2;
                    }
                    "if-none" => {
                        ctx.rep.warn(at, "if-none is not supported: edgelb always appends X-Forwarded-For");
                        i += 1;
                    }
                    a => {
                        ctx.rep.warn(at, format!("unknown forwardfor argument {a:?}"));
                        i += 1;
                    }
                }
            }
            if ok {
                let shown = if except.is_empty() {
                    "forwardfor = true".to_string()
                } else {
                    format!(
                        "forwardfor = {{ except = [{}] }}",
                        except.iter().map(|n| format!("\"{n}\"")).collect::<Vec<_>>().join(", ")
                    )
                };
                o.forwardfor = src(Some(except), at);
                ctx.rep.mapped(at, per_listen(&shown));
            }
        }
        "httpchk" => {
            if neg {
                o.httpchk = None;
                ctx.rep.mapped(at, per_listen("health.http absent (TCP checks)"));
                return;
            }
            let (method, uri, version) = match args.as_slice() {
                [] => ("OPTIONS", "/", None),
                [u] => ("OPTIONS", *u, None),
                [m, u] => (*m, *u, None),
                [m, u, v, ..] => (*m, *u, Some(*v)),
            };
            let host = version.and_then(|v| {
                v.split("\r\n").skip(1).find_map(|h| {
                    let (n, val) = h.split_once(':')?;
                    n.trim().eq_ignore_ascii_case("host").then(|| val.trim().to_string())
                })
            });
            if let Some(v) = version {
                let extra_headers = v.split("\r\n").skip(1).filter(|h| !h.is_empty()).count();
                if extra_headers > usize::from(host.is_some()) {
                    ctx.rep.warn(at, "check request headers other than Host are not supported; not imported");
                }
            }
            o.httpchk = src(
                HttpChk {
                    method: method.to_string(),
                    path: uri.to_string(),
                    host: host.clone(),
                },
                at,
            );
            let mut shown = format!("health.http = {{ method = \"{method}\", path = \"{uri}\"");
            if let Some(h) = &host {
                shown.push_str(&format!(", host = \"{h}\""));
            }
            shown.push_str(" }");
            ctx.rep.mapped(at, per_listen(&shown));
        }
        "http-server-close" => ctx.rep.note(
            at,
            "edgelb keeps idle server connections in a pool (closed after global.pool_idle_timeout, 4s) instead of closing after each response",
        ),
        "http-keep-alive" => ctx.rep.not_needed(at, "keep-alive is edgelb's default on both sides"),
        "tcp-smart-accept" | "tcp-smart-connect" => ctx.rep.not_needed(at, "edgelb always delays ACKs this way"),
        "splice-auto" | "splice-request" | "splice-response" | "contstats" | "log-separate-errors" => {
            ctx.rep.not_needed(at, "performance/logging detail with no edgelb equivalent needed")
        }
        "clitcpka" | "srvtcpka" | "tcpka" => ctx.rep.note(at, "edgelb relies on its timeouts, not TCP keep-alive probes"),
        "log-health-checks" => ctx.rep.note(at, "edgelb logs server state changes, not every check"),
        "tcplog" => ctx.rep.warn(at, "tcplog is for mode tcp; edgelb logs in httplog format"),
        other => ctx.rep.warn(
            at,
            format!("{}option {other} is not supported by edgelb; not imported", if neg { "no " } else { "" }),
        ),
    }
}

fn parse_net(s: &str) -> Result<IpNet, String> {
    if let Ok(n) = s.parse::<IpNet>() {
        return Ok(n.trunc());
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(IpNet::from(ip));
    }
    // HAProxy also accepts a dotted mask: 10.0.0.0/255.0.0.0
    if let Some((a, m)) = s.split_once('/') {
        if let (Ok(IpAddr::V4(a)), Ok(IpAddr::V4(m))) = (a.parse::<IpAddr>(), m.parse::<IpAddr>()) {
            let bits = u32::from(m);
            if bits.leading_ones() + bits.trailing_zeros() == 32 {
                if let Ok(n) = ipnet::Ipv4Net::new(a, bits.leading_ones() as u8) {
                    return Ok(IpNet::V4(n.trunc()));
                }
            }
        }
    }
    Err(format!("invalid network {s:?}"))
}

fn timeout(
    ctx: &mut Ctx<'_>,
    l: &Line,
    o: &mut Opts,
    key: &dyn Fn(&str) -> String,
    per_listen: &dyn Fn(&str) -> String,
) {
    let at = &l.loc;
    let (Some(which), Some(val)) = (l.arg(1), l.arg(2)) else {
        ctx.rep.error(at, "`timeout` needs a name and a value");
        return;
    };
    let d = match parse_time(val) {
        Ok(d) => d,
        Err(e) => {
            ctx.rep.error(at, e);
            return;
        }
    };
    if d.is_zero() {
        ctx.rep.warn(at, "a zero timeout means no timeout in HAProxy; edgelb requires a positive value and keeps its default");
        return;
    }
    let shown = super::emit::format_duration(d);
    let (slot, k) = match which {
        "connect" => (&mut o.timeout_connect, "timeout_connect"),
        "client" => (&mut o.timeout_client, "timeout_client"),
        "server" => (&mut o.timeout_server, "timeout_server"),
        "http-request" => (&mut o.timeout_http_request, "timeout_http_request"),
        "http-keep-alive" => (&mut o.timeout_http_keep_alive, "timeout_http_keep_alive"),
        "tunnel" => (&mut o.timeout_tunnel, "timeout_tunnel"),
        "check" => {
            o.timeout_check = src(d, at);
            ctx.rep
                .mapped(at, per_listen(&format!("health.timeout = \"{shown}\"")));
            return;
        }
        "queue" => {
            ctx.rep.warn(
                at,
                "edgelb does not queue requests (no server maxconn); not imported",
            );
            return;
        }
        "client-fin" | "server-fin" | "tarpit" => {
            ctx.rep.warn(
                at,
                format!("timeout {which} is not supported; not imported"),
            );
            return;
        }
        other => {
            ctx.rep.error(at, format!("unknown timeout {other:?}"));
            return;
        }
    };
    *slot = src(d, at);
    ctx.rep.mapped(at, format!("{} = \"{shown}\"", key(k)));
}

fn cookie(ctx: &mut Ctx<'_>, l: &Line, o: &mut Opts, per_listen: &dyn Fn(&str) -> String) {
    let at = &l.loc;
    let Some(name) = l.arg(1) else {
        ctx.rep.error(at, "`cookie` needs a name");
        return;
    };
    let mut ck = Cookie {
        name: name.to_string(),
        indirect: false,
        nocache: false,
        httponly: false,
        secure: false,
        domain: None,
    };
    let mut mode = None;
    let mut i = 2;
    while i < l.words.len() {
        let w = l.words[i].as_str();
        match w {
            "insert" | "rewrite" | "prefix" => mode = Some(w),
            "indirect" => ck.indirect = true,
            "nocache" => ck.nocache = true,
            "httponly" => ck.httponly = true,
            "secure" => ck.secure = true,
            "domain" => {
                i += 1;
                match (l.words.get(i), &ck.domain) {
                    (Some(d), None) => ck.domain = Some(d.clone()),
                    (Some(d), Some(_)) => ctx.rep.warn(
                        at,
                        format!("edgelb sets one cookie domain; extra domain {d:?} not imported"),
                    ),
                    (None, _) => ctx.rep.error(at, "`domain` needs a value"),
                }
            }
            "maxidle" | "maxlife" => {
                i += 1;
                ctx.rep.warn(at, format!("cookie {w} is not supported: edgelb's cookie is a session cookie with no date; not imported"));
            }
            "attr" => {
                i += 1;
                ctx.rep
                    .warn(at, "cookie attr is not supported; not imported");
            }
            "postonly" | "preserve" | "dynamic" => ctx.rep.warn(
                at,
                format!("cookie option {w} is not supported; not imported"),
            ),
            other => ctx
                .rep
                .error(at, format!("unknown cookie option {other:?}")),
        }
        i += 1;
    }
    match mode {
        Some("insert") => {}
        Some(m) => ctx.rep.warn(at, format!("cookie mode {m} is not supported: edgelb inserts its own cookie (insert mode) instead")),
        None => ctx.rep.warn(at, "passive cookie mode (set by the application) is not supported: edgelb inserts its own cookie (insert mode) instead"),
    }
    let mut shown = format!(
        "cookie = {{ name = \"{}\", insert = true, indirect = {}, nocache = {}",
        ck.name, ck.indirect, ck.nocache
    );
    if ck.httponly {
        shown.push_str(", httponly = true");
    }
    if ck.secure {
        shown.push_str(", secure = true");
    }
    if let Some(d) = &ck.domain {
        shown.push_str(&format!(", domain = \"{d}\""));
    }
    shown.push_str(" }");
    ctx.rep.mapped(at, per_listen(&shown));
    o.cookie = src(ck, at);
}

fn http_check(ctx: &mut Ctx<'_>, l: &Line, o: &mut Opts, per_listen: &dyn Fn(&str) -> String) {
    let at = &l.loc;
    match l.arg(1) {
        Some("expect") => {
            let (neg, i) = if l.arg(2) == Some("!") {
                (true, 3)
            } else {
                (false, 2)
            };
            match (l.arg(i), l.arg(i + 1)) {
                (Some("status"), Some(v))
                    if !neg && crate::config::parse_status_range(v).is_some() =>
                {
                    o.expect = src(v.to_string(), at);
                    ctx.rep.mapped(
                        at,
                        per_listen(&format!("health.http.expect_status = \"{v}\"")),
                    );
                }
                _ => ctx.rep.warn(
                    at,
                    "only `http-check expect status N` or `status N-M` is supported; not imported",
                ),
            }
        }
        Some("send") => {
            let mut chk = o.httpchk.as_ref().map(|s| s.v.clone()).unwrap_or(HttpChk {
                method: "OPTIONS".into(),
                path: "/".into(),
                host: None,
            });
            let mut i = 2;
            while i + 1 < l.words.len() {
                let v = l.words[i + 1].clone();
                match l.words[i].as_str() {
                    "meth" => chk.method = v,
                    "uri" => chk.path = v,
                    "ver" => {}
                    "hdr" => {
                        let val = l.words.get(i + 2).cloned().unwrap_or_default();
                        if v.eq_ignore_ascii_case("host") {
                            chk.host = Some(val);
                        } else {
                            ctx.rep.warn(
                                at,
                                format!("check header {v:?} is not supported; not imported"),
                            );
                        }
                        i += 1;
                    }
                    other => ctx
                        .rep
                        .warn(at, format!("http-check send {other} is not supported")),
                }
                i += 2;
            }
            let at0 = o
                .httpchk
                .as_ref()
                .map(|s| s.at.clone())
                .unwrap_or_else(|| at.clone());
            o.httpchk = src(chk, &at0);
            ctx.rep
                .mapped(at, per_listen("health.http method/path/host"));
        }
        Some("disable-on-404") => ctx
            .rep
            .warn(at, "disable-on-404 is not supported; not imported"),
        _ => ctx
            .rep
            .warn(at, "unsupported http-check rule; not imported"),
    }
}

/// HAProxy address forms: `*:80`, `:80`, `1.2.3.4:80`, `[::1]:80`, `::1:80`, `ipv4@...`.
/// Returns the address as edgelb spells it, plus whether a port was present.
fn parse_addr(s: &str) -> Result<(String, bool), String> {
    let s = s
        .strip_prefix("ipv4@")
        .or_else(|| s.strip_prefix("ipv6@"))
        .or_else(|| s.strip_prefix("tcp@"))
        .unwrap_or(s);
    if s.contains('@') || s.starts_with('/') {
        return Err(format!("{s:?}: only TCP addresses are supported"));
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, p) = rest
            .split_once(']')
            .ok_or_else(|| format!("{s:?}: missing ]"))?;
        (h.to_string(), p.strip_prefix(':').map(str::to_string))
    } else if s.matches(':').count() > 1 {
        match s.rsplit_once(':') {
            Some((h, p)) if h.parse::<Ipv6Addr>().is_ok() => (h.to_string(), Some(p.to_string())),
            _ => (s.to_string(), None),
        }
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h.to_string(), Some(p.to_string())),
            None => (s.to_string(), None),
        }
    };
    let port = match port.as_deref() {
        None | Some("") => None,
        Some(p) if p.starts_with(['+', '-']) => {
            return Err(format!("{s:?}: port offsets are not supported"))
        }
        Some(p) if p.contains('-') => return Err(format!("{s:?}: port ranges are not supported")),
        Some(p) => Some(
            p.parse::<u16>()
                .map_err(|_| format!("{s:?}: invalid port {p:?}"))?,
        ),
    };
    let host = if host.is_empty() || host == "*" {
        "*".to_string()
    } else {
        host
    };
    let host_out = if host.parse::<Ipv6Addr>().is_ok() {
        format!("[{host}]")
    } else {
        host
    };
    match port {
        Some(p) => Ok((format!("{host_out}:{p}"), true)),
        None => Ok((host_out, false)),
    }
}

fn bind(ctx: &mut Ctx<'_>, l: &Line, p: &mut Proxy, target: &str) {
    let at = &l.loc;
    let Some(addrs) = l.arg(1) else {
        ctx.rep.error(at, "`bind` needs an address");
        return;
    };
    let params: Vec<&str> = l.words[2..].iter().map(String::as_str).collect();
    let tls = params.iter().any(|w| matches!(*w, "ssl" | "crt" | "quic"));
    if tls {
        ctx.rep.warn(
            at,
            "TLS binds are not supported (edgelb does not terminate TLS); bind not imported",
        );
        return;
    }
    let mut i = 0;
    while i < params.len() {
        match params[i] {
            "name" | "id" | "process" | "thread" | "nice" => {
                i += 1;
            }
            "tfo" | "defer-accept" | "v4v6" | "v6only" => {}
            "proto" | "alpn" | "npn" => {
                let v = params.get(i + 1).copied().unwrap_or("");
                ctx.rep.warn(
                    at,
                    format!(
                        "bind option `{} {v}` is not supported: edgelb serves HTTP/1.1 on this bind",
                        params[i]
                    ),
                );
                i += 1;
            }
            "interface" | "maxconn" | "backlog" | "mss" | "mode" | "user" | "group"
            | "namespace" => {
                ctx.rep.warn(
                    at,
                    format!("bind option {} is not supported; ignored", params[i]),
                );
                i += 1;
            }
            other => ctx
                .rep
                .warn(at, format!("bind option {other} is not supported; ignored")),
        }
        i += 1;
    }
    let mut shown = Vec::new();
    for a in addrs.split(',') {
        match parse_addr(a) {
            Ok((addr, true)) => {
                shown.push(addr.clone());
                p.binds.push(Src {
                    v: addr,
                    at: at.clone(),
                });
            }
            Ok((_, false)) => ctx.rep.error(at, format!("bind address {a:?} has no port")),
            Err(e) => ctx.rep.warn(at, format!("bind {e}; not imported")),
        }
    }
    if !shown.is_empty() {
        ctx.rep.mapped(
            at,
            format!(
                "{target}: bind += [{}]",
                shown
                    .iter()
                    .map(|s| format!("\"{s}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    }
}

fn server(ctx: &mut Ctx<'_>, l: &Line, p: &mut Proxy, target: &str) {
    let at = &l.loc;
    let (Some(name), Some(addr)) = (l.arg(1), l.arg(2)) else {
        ctx.rep.error(at, "`server` needs a name and an address");
        return;
    };
    let (address, has_port) = match parse_addr(addr) {
        Ok(a) => a,
        Err(e) => {
            ctx.rep.warn(at, format!("server {e}; not imported"));
            return;
        }
    };
    let mut params = p.opts.default_server.clone();
    server_params(ctx, l, 3, &mut params);
    if params.backup {
        ctx.rep.warn(
            at,
            "backup servers are not supported; left as a TODO comment",
        );
    } else {
        ctx.rep
            .mapped(at, format!("{target}: [[listen.server]] name = {name:?}"));
    }
    p.servers.push(Server {
        at: at.clone(),
        name: name.to_string(),
        address,
        no_port: !has_port,
        p: params,
    });
}

fn server_params(ctx: &mut Ctx<'_>, l: &Line, start: usize, p: &mut SrvParams) {
    let at = &l.loc;
    let w = &l.words;
    let mut i = start;
    while i < w.len() {
        let k = w[i].as_str();
        let v = w.get(i + 1).map(String::as_str);
        let mut takes_arg = true;
        let time = |ctx: &mut Ctx<'_>| -> Option<Src<Duration>> {
            match v.map(parse_time) {
                Some(Ok(d)) if !d.is_zero() => src(d, at),
                Some(Ok(_)) => {
                    ctx.rep.error(at, format!("{k} must be greater than 0"));
                    None
                }
                Some(Err(e)) => {
                    ctx.rep.error(at, e);
                    None
                }
                None => {
                    ctx.rep.error(at, format!("{k} needs a value"));
                    None
                }
            }
        };
        match k {
            "cookie" => p.cookie = v.map(str::to_string),
            "check" => {
                p.check = Some(true);
                takes_arg = false;
            }
            "no-check" => {
                p.check = Some(false);
                takes_arg = false;
            }
            "inter" => p.inter = time(ctx),
            "fastinter" => p.fastinter = time(ctx),
            "downinter" => p.downinter = time(ctx),
            "rise" | "fall" => match parse_u32(v, k) {
                Ok(0) => ctx.rep.error(at, format!("{k} must be at least 1")),
                Ok(n) if k == "rise" => p.rise = src(n, at),
                Ok(n) => p.fall = src(n, at),
                Err(e) => ctx.rep.error(at, e),
            },
            "weight" => match parse_u32(v, "weight") {
                Ok(n) if n <= 256 => p.weight = Some(n),
                Ok(n) => ctx
                    .rep
                    .error(at, format!("weight {n} is out of range 0..=256")),
                Err(e) => ctx.rep.error(at, e),
            },
            "port" => match v.and_then(|v| v.parse::<u16>().ok()).filter(|p| *p > 0) {
                Some(n) => p.port = Some(n),
                None => ctx.rep.error(at, "invalid check port"),
            },
            "backup" => {
                p.backup = true;
                takes_arg = false;
            }
            "no-backup" => {
                p.backup = false;
                takes_arg = false;
            }
            "disabled" => {
                p.disabled = Some(true);
                takes_arg = false;
            }
            "enabled" => {
                p.disabled = Some(false);
                takes_arg = false;
            }
            "observe" => match v {
                Some("layer4") => p.observe_l4 = src(true, at),
                _ => ctx
                    .rep
                    .warn(at, "only `observe layer4` is supported; not imported"),
            },
            "id" => {}
            "init-addr" | "resolve-prefer" | "resolvers" => {
                ctx.rep.note(
                    at,
                    format!("{k}: edgelb resolves server names once at load"),
                );
            }
            "maxconn" | "maxqueue" | "minconn" | "slowstart" | "on-error" | "on-marked-down"
            | "on-marked-up" | "error-limit" | "addr" | "agent-check" | "agent-port"
            | "agent-inter" | "track" | "source" | "pool-max-conn" | "pool-purge-delay"
            | "proto" | "alpn" | "sni" | "crt" | "ca-file" | "verify" => {
                if matches!(k, "agent-check") {
                    takes_arg = false;
                }
                ctx.rep.warn(
                    at,
                    format!("server option `{k}` is not supported; not imported"),
                );
            }
            "ssl" | "check-ssl" | "send-proxy" | "send-proxy-v2" | "check-send-proxy" | "tfo"
            | "no-ssl" | "resolve-opts" => {
                takes_arg = k == "resolve-opts";
                ctx.rep.warn(
                    at,
                    format!("server option `{k}` is not supported; not imported"),
                );
            }
            other => {
                takes_arg = false;
                ctx.rep
                    .warn(at, format!("unknown server option `{other}`; not imported"));
            }
        }
        i += if takes_arg { 2 } else { 1 };
    }
}
