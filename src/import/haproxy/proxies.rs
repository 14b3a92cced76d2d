//! Proxies: which `[[listen]]` each `listen`/`frontend`/`backend` section becomes (a frontend
//! is merged with its backend), `[defaults]`, and the emitted listen tables.

use super::*;

// ------------------------------------------------------------------------------------------------
// proxies

/// The edgelb listen a section contributes to (backends take their frontend's binds).
pub(super) fn listen_names(sections: &[Section], rep: &mut Report) -> HashMap<usize, String> {
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
pub(super) fn listen_label(
    sections: &[Section],
    names: &HashMap<usize, String>,
    i: usize,
) -> Option<String> {
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

pub(super) fn proxies(ctx: &mut Ctx<'_>, sections: &[Section]) {
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
            if e.kind == crate::import::report::Kind::Mapped {
                e.kind = crate::import::report::Kind::Note;
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

pub(super) fn kind_word(k: SecKind) -> &'static str {
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
pub(super) fn stats_proxy(ctx: &mut Ctx<'_>, s: &Section, p: &Proxy) {
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

pub(super) fn emit_defaults(ctx: &mut Ctx<'_>, d: &Opts) {
    let mut t = std::mem::take(&mut ctx.out.defaults);
    emit_proxy_settings(&mut t, d, d, None);
    ctx.out.defaults = t;
}

pub(super) fn emit_listen(
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
    if fe.binds.is_empty() && fe.tls.binds.is_empty() {
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
    if let Some(h2_at) = fe.h2_binds.first() {
        if fe.h1_binds {
            ctx.rep.warn(
                h2_at,
                "`proto h2` on some binds of this proxy only: edgelb sets `proto` per listen, so \
                 these binds serve HTTP/1.1 (put them in a listen of their own for h2c)",
            );
        } else {
            t.set("proto", Value::Str("h2".into()), h2_at.comment());
            ctx.rep
                .mapped(h2_at, "proto = \"h2\" (HTTP/2 with prior knowledge)");
        }
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
    let tls_table = super::tls_rules::emit(ctx, name, &fe.tls, &be.tls, &mut t);

    let mut tables = vec![t];
    tables.extend(tls_table);

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
        if s.p.send_proxy_v2 {
            st.set("send_proxy_v2", Value::Bool(true), None);
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

pub(super) fn dedup(v: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in v {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}
