//! The `global` section: process settings (`maxconn`, `nbthread`, `hard-stop-after`, `stats
//! socket`) and `log` targets.

use super::*;

// ------------------------------------------------------------------------------------------------
// global

pub(super) fn global_directive(ctx: &mut Ctx<'_>, l: &Line) {
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
        "busy-polling" => {
            ctx.out.global.set("busy_polling", Value::Bool(true), c);
            ctx.rep.mapped(at, "global.busy_polling = true");
        }
        "nbproc" => match l.arg(1) {
            Some("1") => ctx.rep.not_needed(at, "edgelb is one process"),
            _ => ctx.rep.warn(
                at,
                "edgelb is one multi-threaded process; set global.workers instead",
            ),
        },
        // HAProxy's slots include the end of the head: `maxhdr N` accepts N - 1 header lines.
        "tune.http.maxhdr" => match parse_u32(l.arg(1), "tune.http.maxhdr") {
            Ok(n) if n >= 2 && (n as usize - 1) <= crate::proxy::h1::MAX_HEADER_LINES_CAP => {
                let lines = n - 1;
                ctx.out
                    .global
                    .set("max_header_lines", Value::Int(lines.into()), c);
                ctx.rep
                    .mapped(at, format!("global.max_header_lines = {lines}"));
            }
            Ok(n) => ctx.rep.error(
                at,
                format!(
                    "tune.http.maxhdr {n} is out of edgelb's range 2..={}",
                    crate::proxy::h1::MAX_HEADER_LINES_CAP + 1
                ),
            ),
            Err(e) => ctx.rep.error(at, e),
        },
        "hard-stop-after" => match l.arg(1).map(parse_time) {
            Some(Ok(d)) => {
                ctx.out.global.set("grace", Value::Dur(d), c);
                ctx.rep.mapped(
                    at,
                    format!(
                        "global.grace = \"{}\"",
                        crate::import::emit::format_duration(d)
                    ),
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

pub(super) fn global_log(ctx: &mut Ctx<'_>, l: &Line) {
    let at = &l.loc;
    let Some(target) = l.arg(1) else {
        ctx.rep.error(at, "`log` needs a target");
        return;
    };
    // log <target> [len N] [format F] [sample R:S] <facility> [level [minlevel]]
    let mut rest: Vec<&str> = l.words[2..].iter().map(String::as_str).collect();
    let mut extra = Vec::new();
    let mut len = None;
    while let Some(first) = rest.first().copied() {
        if matches!(first, "len" | "format" | "sample") && rest.len() >= 2 {
            if first == "len" {
                len = Some(rest[1]);
            } else if !(first == "format" && matches!(rest[1], "rfc3164" | "raw" | "short")) {
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
    match len.map(|s| parse_u32(Some(s), "log len")) {
        Some(Ok(n)) if (80..=65535).contains(&n) => {
            ctx.out.log.set("max_line_len", Value::Int(n.into()), None);
            msg.push_str(&format!(", log.max_line_len = {n}"));
        }
        Some(Ok(n)) => ctx
            .rep
            .error(at, format!("log len {n} is out of range 80..=65535")),
        Some(Err(e)) => ctx.rep.error(at, e),
        None => {}
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
