//! Semantic checks of a deserialised `Config`: every rule that TOML types can't express. Returns
//! every problem with the key path it belongs to; `load` turns paths into lines.

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use super::spans::{key, KeyPath, Seg};
use super::{parse_bind, Config, ProxySettings};

type Problems = Vec<(KeyPath, String)>;

fn p(segs: &[Seg]) -> KeyPath {
    segs.to_vec()
}

/// Cookie names are HTTP tokens (RFC 6265 `cookie-name`).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Listen and server names are written into each access-log line, whose framing (one line, one
/// syslog message) a newline or another control character would break.
fn control_char(name: &str) -> Option<String> {
    name.chars()
        .any(char::is_control)
        .then(|| format!("{name:?}: control characters are not allowed in a name"))
}

/// Cookie values may not contain separators or blanks (RFC 6265 `cookie-octet`).
fn is_cookie_value(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && !b"\",;\\|".contains(&b))
}

/// `host:port` or `IP:PORT` to one address (resolution happens once at load).
pub fn resolve_address(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(format!(
            "invalid address {s:?}: expected IP:PORT or host:port"
        ));
    };
    if port.parse::<u16>().is_err() {
        return Err(format!("invalid address {s:?}: bad port {port:?}"));
    }
    if host.is_empty() {
        return Err(format!("invalid address {s:?}: empty host"));
    }
    match s.to_socket_addrs() {
        Ok(mut it) => it
            .next()
            .ok_or_else(|| format!("invalid address {s:?}: host does not resolve")),
        Err(e) => Err(format!("invalid address {s:?}: {e}")),
    }
}

fn check_timeouts(base: &[Seg], s: &ProxySettings, out: &mut Problems) {
    let fields: [(&str, Option<Duration>); 6] = [
        ("timeout_connect", s.timeout_connect),
        ("timeout_client", s.timeout_client),
        ("timeout_server", s.timeout_server),
        ("timeout_http_request", s.timeout_http_request),
        ("timeout_http_keep_alive", s.timeout_http_keep_alive),
        ("timeout_tunnel", s.timeout_tunnel),
    ];
    for (name, v) in fields {
        if v == Some(Duration::ZERO) {
            let mut path = base.to_vec();
            path.push(key(name));
            out.push((path, "must be greater than 0".into()));
        }
    }
    if let Some(r) = s.retries {
        if r > 100 {
            let mut path = base.to_vec();
            path.push(key("retries"));
            out.push((path, format!("{r} retries is not sensible (at most 100)")));
        }
    }
    if s.maxconn == Some(0) {
        let mut path = base.to_vec();
        path.push(key("maxconn"));
        out.push((path, "must be greater than 0".into()));
    }
}

pub fn validate(c: &Config) -> Problems {
    let mut out = Problems::new();

    if let Some(name) = &c.node.name {
        if name.trim().is_empty() {
            out.push((p(&[key("node"), key("name")]), "must not be empty".into()));
        }
    }
    if c.global.workers == Some(0) {
        out.push((
            p(&[key("global"), key("workers")]),
            "must be at least 1".into(),
        ));
    }
    if let Some(d) = c.global.tls_watch_interval {
        if d < Duration::from_millis(10) {
            out.push((
                p(&[key("global"), key("tls_watch_interval")]),
                "must be at least 10ms".into(),
            ));
        }
    }
    if c.global.maxconn == Some(0) {
        out.push((
            p(&[key("global"), key("maxconn")]),
            "must be greater than 0".into(),
        ));
    }
    if let Some(n) = c.global.max_header_bytes {
        if !(1024..=1024 * 1024).contains(&n) {
            out.push((
                p(&[key("global"), key("max_header_bytes")]),
                "must be between 1024 and 1048576".into(),
            ));
        }
    }
    if let Some(n) = c.global.max_header_lines {
        if !(1..=crate::proxy::h1::MAX_HEADER_LINES_CAP).contains(&n) {
            out.push((
                p(&[key("global"), key("max_header_lines")]),
                format!(
                    "must be between 1 and {}",
                    crate::proxy::h1::MAX_HEADER_LINES_CAP
                ),
            ));
        }
    }
    if let Some(n) = c.log.max_line_len {
        // HAProxy's `len` range.
        if !(80..=65535).contains(&n) {
            out.push((
                p(&[key("log"), key("max_line_len")]),
                "must be between 80 and 65535".into(),
            ));
        }
    }
    if let Some(n) = c.log.queue_bytes {
        if n < 64 * 1024 {
            out.push((
                p(&[key("log"), key("queue_bytes")]),
                "must be at least 65536".into(),
            ));
        }
    }
    match c.log.format.as_str() {
        "httplog" => {}
        other => out.push((
            p(&[key("log"), key("format")]),
            format!("unsupported log format {other:?} (supported: \"httplog\")"),
        )),
    }
    if !crate::config::log_target_is_valid(&c.log.access) {
        out.push((
            p(&[key("log"), key("access")]),
            format!(
                "invalid log target {:?}: expected \"stdout\", \"stderr\", \"syslog\", \"udp://HOST:PORT\", \"off\" or an absolute file path",
                c.log.access
            ),
        ));
    }
    check_timeouts(&[key("defaults")], &c.defaults.proxy, &mut out);

    let mut listen_names = HashSet::new();
    let mut binds: HashMap<SocketAddr, String> = HashMap::new();
    if c.listen.is_empty() {
        out.push((Vec::new(), "no [[listen]] section: nothing to serve".into()));
    }
    for (li, l) in c.listen.iter().enumerate() {
        let base = [key("listen"), Seg::Index(li)];
        let at = |k: &str| {
            let mut v = base.to_vec();
            v.push(key(k));
            v
        };
        if l.name.trim().is_empty() {
            out.push((at("name"), "must not be empty".into()));
        } else if let Some(e) = control_char(&l.name) {
            out.push((at("name"), e));
        } else if !listen_names.insert(l.name.clone()) {
            out.push((at("name"), format!("duplicate listen name {:?}", l.name)));
        }
        let tls_binds = l.tls.as_ref().map_or(0, |t| t.bind.len());
        if l.bind.is_empty() && tls_binds == 0 {
            out.push((at("bind"), "at least one bind address is required".into()));
        }
        let plain = l
            .bind
            .iter()
            .enumerate()
            .map(|(i, b)| (vec![key("bind"), Seg::Index(i)], b));
        let secure = l.tls.iter().flat_map(|t| {
            t.bind
                .iter()
                .enumerate()
                .map(|(i, b)| (vec![key("tls"), key("bind"), Seg::Index(i)], b))
        });
        for (rel, b) in plain.chain(secure) {
            let mut path = base.to_vec();
            path.extend(rel);
            match parse_bind(b) {
                Ok(addr) => {
                    if let Some(prev) = binds.insert(addr, l.name.clone()) {
                        out.push((path, format!("{addr} is already bound by listen {prev:?}")));
                    }
                }
                Err(e) => out.push((path, e)),
            }
        }
        if let Some(t) = &l.tls {
            super::tls::validate(&base, t, &mut out);
        }
        if l.redirect_https && l.bind.is_empty() {
            out.push((
                at("redirect_https"),
                "redirects requests on plain `bind` addresses to https, and this listen has none"
                    .into(),
            ));
        }
        if l.accept_proxy && l.accept_proxy_from.is_empty() {
            out.push((
                at("accept_proxy"),
                "needs `accept_proxy_from`: the networks of the load balancers allowed to send \
                 PROXY headers (anyone else could forge client addresses); \
                 [\"0.0.0.0/0\", \"::/0\"] trusts every source"
                    .into(),
            ));
        }
        if !l.accept_proxy && !l.accept_proxy_from.is_empty() {
            out.push((
                at("accept_proxy_from"),
                "has no effect without `accept_proxy = true`".into(),
            ));
        }
        check_timeouts(&base, &l.proxy, &mut out);
        if let Some(ck) = &l.cookie {
            if !is_token(&ck.name) {
                out.push((at("cookie"), format!("invalid cookie name {:?}", ck.name)));
            }
            if !ck.insert {
                out.push((
                    at("cookie"),
                    "only `insert` mode is supported (insert = true)".into(),
                ));
            }
        }
        let h = &l.health;
        for (name, v) in [
            ("inter", h.inter),
            ("fastinter", h.fastinter),
            ("downinter", h.downinter),
            ("timeout", h.timeout),
        ] {
            if v == Some(Duration::ZERO) {
                let mut path = at("health");
                path.push(key(name));
                out.push((path, "must be greater than 0".into()));
            }
        }
        for (name, v) in [("rise", h.rise), ("fall", h.fall)] {
            if v == Some(0) {
                let mut path = at("health");
                path.push(key(name));
                out.push((path, "must be at least 1".into()));
            }
        }
        if let Some(http) = &h.http {
            let mut path = at("health");
            path.push(key("http"));
            if !http.path.starts_with('/') {
                out.push((
                    path.clone(),
                    format!("check path {:?} must start with /", http.path),
                ));
            }
            if !is_token(&http.method) {
                out.push((path.clone(), format!("invalid method {:?}", http.method)));
            }
            if crate::config::parse_status_range(&http.expect_status).is_none() {
                out.push((
                    path,
                    format!(
                        "invalid expect_status {:?}: expected \"200\" or \"200-399\"",
                        http.expect_status
                    ),
                ));
            }
        }

        let mut names = HashSet::new();
        let mut cookies: HashMap<String, String> = HashMap::new();
        for (si, s) in l.server.iter().enumerate() {
            let sat = |k: &str| {
                let mut v = base.to_vec();
                v.push(key("server"));
                v.push(Seg::Index(si));
                v.push(key(k));
                v
            };
            if s.name.trim().is_empty() {
                out.push((sat("name"), "must not be empty".into()));
            } else if let Some(e) = control_char(&s.name) {
                out.push((sat("name"), e));
            } else if !names.insert(s.name.clone()) {
                out.push((
                    sat("name"),
                    format!("duplicate server name {:?} in listen {:?}", s.name, l.name),
                ));
            }
            if let Err(e) = resolve_address(&s.address) {
                out.push((sat("address"), e));
            }
            if s.weight > 256 {
                out.push((
                    sat("weight"),
                    format!("weight {} is out of range 0..=256", s.weight),
                ));
            }
            if s.check_port == Some(0) {
                out.push((sat("check_port"), "must be 1..=65535".into()));
            }
            if l.cookie.is_some() {
                let value = s.cookie.clone().unwrap_or_else(|| s.name.clone());
                if !is_cookie_value(&value) {
                    out.push((
                        sat(if s.cookie.is_some() { "cookie" } else { "name" }),
                        format!("{value:?} can't be used as a cookie value (no blanks, quotes, ; , \\ or |)"),
                    ));
                } else if let Some(other) = cookies.insert(value.clone(), s.name.clone()) {
                    out.push((
                        sat("cookie"),
                        format!("cookie value {value:?} is already used by server {other:?}"),
                    ));
                }
            }
        }
    }

    if let Some(st) = &c.stats {
        for (k, v) in [
            ("dashboard_bind", &st.dashboard_bind),
            ("api_bind", &st.api_bind),
        ] {
            match parse_bind(v) {
                Ok(addr) => {
                    if let Some(prev) = binds.get(&addr) {
                        out.push((
                            p(&[key("stats"), key(k)]),
                            format!("{addr} is already bound by listen {prev:?}"),
                        ));
                    }
                }
                Err(e) => out.push((p(&[key("stats"), key(k)]), e)),
            }
        }
        if st.dashboard_bind == st.api_bind {
            // One server answers both; allowed.
        }
        if st.refresh < Duration::from_millis(200) {
            out.push((
                p(&[key("stats"), key("refresh")]),
                "must be at least 200ms".into(),
            ));
        }
    }

    validate_cluster(c, &mut out);
    if let Some(a) = &c.acme {
        super::acme::validate(a, &mut out);
    }
    out
}

fn validate_cluster(c: &Config, out: &mut Problems) {
    let Some(cl) = &c.cluster else {
        if !c.eip.is_empty() {
            out.push((
                p(&[key("eip")]),
                "[[eip]] needs a [cluster] section (who owns and who takes over)".into(),
            ));
        }
        return;
    };
    let at = |k: &str| p(&[key("cluster"), key(k)]);
    if let Err(e) = parse_bind(&cl.bind) {
        out.push((at("bind"), e));
    }
    if cl.keepalive.is_zero() {
        out.push((at("keepalive"), "must be greater than 0".into()));
    }
    // Heartbeat's own rules (config.c): deadtime > 2 * keepalive, initdead >= deadtime.
    if cl.deadtime <= cl.keepalive * 2 {
        out.push((
            at("deadtime"),
            format!(
                "deadtime ({}) must be greater than 2 x keepalive ({})",
                humantime::format_duration(cl.deadtime),
                humantime::format_duration(cl.keepalive)
            ),
        ));
    }
    if cl.initdead < cl.deadtime {
        out.push((
            at("initdead"),
            format!(
                "initdead ({}) must be at least deadtime ({})",
                humantime::format_duration(cl.initdead),
                humantime::format_duration(cl.deadtime)
            ),
        ));
    }
    if let Some(w) = cl.warntime {
        if w >= cl.deadtime {
            out.push((at("warntime"), "must be less than deadtime".into()));
        }
    }
    let interval = cl
        .witness_interval
        .unwrap_or(crate::cluster::setup::DEFAULT_WITNESS_INTERVAL);
    let stale = cl.witness_stale_after.unwrap_or_else(|| {
        crate::cluster::setup::default_witness_stale_after(cl.deadtime, interval)
    });
    if cl.witness && interval.is_zero() {
        out.push((at("witness_interval"), "must be greater than 0".into()));
    } else if cl.witness && stale <= interval {
        out.push((
            at("witness_stale_after"),
            format!(
                "witness_stale_after ({}) must be greater than witness_interval ({})",
                humantime::format_duration(stale),
                humantime::format_duration(interval)
            ),
        ));
    }
    if cl.auth_key_file.trim().is_empty() {
        out.push((
            at("auth_key_file"),
            "must name the shared secret file".into(),
        ));
    }
    let mut names = HashSet::new();
    for (i, n) in cl.node.iter().enumerate() {
        let nat = |k: &str| p(&[key("cluster"), key("node"), Seg::Index(i), key(k)]);
        if n.name.trim().is_empty() {
            out.push((nat("name"), "must not be empty".into()));
        } else if !names.insert(n.name.clone()) {
            out.push((nat("name"), format!("duplicate node name {:?}", n.name)));
        }
        let mut ips: Vec<_> = n.secondary_ip.iter().chain(&n.secondary_ips).collect();
        if n.primary_ip.is_some_and(|p| ips.contains(&&p)) {
            out.push((
                nat("secondary_ips"),
                "a secondary IP equals the primary IP".into(),
            ));
        }
        let count = ips.len();
        ips.sort();
        ips.dedup();
        if ips.len() != count {
            out.push((nat("secondary_ips"), "duplicate secondary IP".into()));
        }
        for (ai, a) in n.address.iter().enumerate() {
            if let Err(e) = a.parse::<SocketAddr>() {
                let mut path = nat("address");
                path.push(Seg::Index(ai));
                out.push((
                    path,
                    format!("invalid heartbeat address {a:?}: {e} (expected IP:PORT)"),
                ));
            }
        }
    }
    if cl.node.len() < 2 {
        out.push((
            at("node"),
            "a cluster needs at least two [[cluster.node]] entries (this node and a peer)".into(),
        ));
    }
    if let Some(me) = &c.node.name {
        if !cl.node.is_empty() && !names.contains(me) {
            out.push((
                p(&[key("node"), key("name")]),
                format!("node {me:?} is not listed in [[cluster.node]]"),
            ));
        }
    }
    let mut allocs = HashSet::new();
    for (i, e) in c.eip.iter().enumerate() {
        let eat = |k: &str| p(&[key("eip"), Seg::Index(i), key(k)]);
        if !e.allocation_id.starts_with("eipalloc-") {
            out.push((
                eat("allocation_id"),
                format!(
                    "{:?} is not an allocation id (eipalloc-...)",
                    e.allocation_id
                ),
            ));
        } else if !allocs.insert(e.allocation_id.clone()) {
            out.push((
                eat("allocation_id"),
                format!("duplicate EIP {:?}", e.allocation_id),
            ));
        }
        if !names.contains(&e.owner) {
            out.push((
                eat("owner"),
                format!("owner {:?} is not a [[cluster.node]]", e.owner),
            ));
        }
    }
    if let Some(aws) = &c.aws {
        if aws.max_attempts == Some(0) {
            out.push((
                p(&[key("aws"), key("max_attempts")]),
                "must be at least 1".into(),
            ));
        }
        if aws
            .retry_backoff_max
            .is_some_and(|d| d < Duration::from_secs(1))
        {
            out.push((
                p(&[key("aws"), key("retry_backoff_max")]),
                "must be at least 1s".into(),
            ));
        }
        if aws.api_budget_per_minute == Some(0) {
            out.push((
                p(&[key("aws"), key("api_budget_per_minute")]),
                "must be at least 1".into(),
            ));
        }
    }
}
