//! The directives of a proxy section (`option`, `timeout`, `cookie`, `http-check`, `bind`,
//! `server` and its parameters), each mapped to edgelb keys with a report entry.

use super::*;

pub(super) fn proxy_directive(
    ctx: &mut Ctx<'_>,
    s: &Section,
    target: &str,
    p: &mut Proxy,
    l: &Line,
) {
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
                        ctx.rep.mapped(at, format!("stats.refresh = \"{}\"", crate::import::emit::format_duration(d)));
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
        "redirect" | "http-request"
            if super::tls_rules::redirect(ctx, l, &mut p.tls, target) => {}
        "http-request" | "http-response"
            if super::tls_rules::set_header(ctx, l, &mut p.tls, target) => {}
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
pub(super) fn parse_time_secs(s: &str) -> Result<Duration, String> {
    if s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|e| e.to_string())
    } else {
        parse_time(s)
    }
}

pub(super) fn option(
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

pub(super) fn parse_net(s: &str) -> Result<IpNet, String> {
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

pub(super) fn timeout(
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
    let shown = crate::import::emit::format_duration(d);
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

pub(super) fn cookie(
    ctx: &mut Ctx<'_>,
    l: &Line,
    o: &mut Opts,
    per_listen: &dyn Fn(&str) -> String,
) {
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

pub(super) fn http_check(
    ctx: &mut Ctx<'_>,
    l: &Line,
    o: &mut Opts,
    per_listen: &dyn Fn(&str) -> String,
) {
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
pub(super) fn parse_addr(s: &str) -> Result<(String, bool), String> {
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

pub(super) fn bind(ctx: &mut Ctx<'_>, l: &Line, p: &mut Proxy, target: &str) {
    let at = &l.loc;
    let Some(addrs) = l.arg(1) else {
        ctx.rep.error(at, "`bind` needs an address");
        return;
    };
    let params: Vec<&str> = l.words[2..].iter().map(String::as_str).collect();
    if params.contains(&"quic") {
        ctx.rep
            .warn(at, "QUIC binds are not supported; bind not imported");
        return;
    }
    let ssl = super::tls_rules::bind_params(ctx, l, &params, &mut p.tls);
    let mut i = 0;
    let mut h2 = false;
    while i < params.len() {
        match params[i] {
            "name" | "id" | "process" | "thread" | "nice" => {
                i += 1;
            }
            "tfo" | "defer-accept" | "v4v6" | "v6only" => {}
            // h2c with prior knowledge (on TLS binds, ALPN chooses).
            "proto" if !ssl && params.get(i + 1) == Some(&"h2") => {
                h2 = true;
                i += 1;
            }
            // TLS and PROXY parameters: `tls_rules::bind_params` reported them.
            "ssl"
            | "accept-proxy"
            | "strict-sni"
            | "no-sslv3"
            | "no-tlsv10"
            | "no-tlsv11"
            | "force-tlsv12"
            | "force-tlsv13"
            | "no-tls-tickets"
            | "prefer-client-ciphers"
            | "allow-0rtt" => {}
            "crt" | "alpn" | "ssl-min-ver" | "ciphers" | "ciphersuites" | "curves" | "ecdhe"
            | "ssl-max-ver" | "dhparam" | "ca-file" | "verify" | "crl-file" | "ca-ignore-err"
            | "crt-ignore-err" | "crt-list" | "npn" | "ca-sign-file" => {
                i += 1;
            }
            "proto" => {
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
    if h2 {
        p.h2_binds.push(at.clone());
    } else if !ssl {
        p.h1_binds = true;
    }
    let mut shown = Vec::new();
    for a in addrs.split(',') {
        match parse_addr(a) {
            Ok((addr, true)) => {
                shown.push(addr.clone());
                let binds = if ssl { &mut p.tls.binds } else { &mut p.binds };
                binds.push(Src {
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
                "{target}: {}bind += [{}]",
                if ssl { "tls." } else { "" },
                shown
                    .iter()
                    .map(|s| format!("\"{s}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    }
}

pub(super) fn server(ctx: &mut Ctx<'_>, l: &Line, p: &mut Proxy, target: &str) {
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

pub(super) fn server_params(ctx: &mut Ctx<'_>, l: &Line, start: usize, p: &mut SrvParams) {
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
            "send-proxy-v2" => {
                p.send_proxy_v2 = true;
                takes_arg = false;
            }
            "send-proxy" => {
                p.send_proxy_v2 = true;
                takes_arg = false;
                ctx.rep.warn(at, "send-proxy (v1): edgelb sends PROXY v2 only; imported as send_proxy_v2 (the server must accept v2, as HAProxy's accept-proxy and nginx's proxy_protocol do)");
            }
            "check-send-proxy" => {
                takes_arg = false;
                ctx.rep.note(at, "checks of a send_proxy_v2 server send a PROXY v2 LOCAL header unless check_port is set");
            }
            "ssl" | "check-ssl" | "tfo" | "no-ssl" | "resolve-opts" => {
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
