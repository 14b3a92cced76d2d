//! TLS and PROXY protocol directives: `bind ... ssl crt FILE|DIR alpn ... accept-proxy`,
//! `redirect scheme https [if !{ ssl_fc }]`, the `X-Forwarded-Proto`/`X-Forwarded-Port`
//! `set-header` idioms, `http-response set-header Strict-Transport-Security`, and the server's
//! `send-proxy[-v2]`; then the `[listen.tls]` table and listen keys they become.

use super::*;

/// What a section's TLS-related lines set.
#[derive(Debug, Clone, Default)]
pub(super) struct TlsImport {
    pub(super) binds: Vec<Src<String>>,
    pub(super) cert_files: Vec<Src<String>>,
    pub(super) cert_dir: Option<Src<String>>,
    pub(super) alpn: Option<Src<Vec<String>>>,
    pub(super) strict_sni: Option<Loc>,
    pub(super) min_version: Option<Src<String>>,
    pub(super) accept_proxy: Option<Loc>,
    /// Binds without `accept-proxy` (edgelb's `accept_proxy` covers every bind of a listen).
    pub(super) binds_without_proxy: Vec<Loc>,
    pub(super) redirect_https: Option<Loc>,
    pub(super) forwarded_proto: Option<Loc>,
    pub(super) forwarded_port: Option<Loc>,
    /// (max-age seconds, includeSubDomains, preload)
    pub(super) hsts: Option<Src<(u64, bool, bool)>>,
}

/// The condition after `if`/`unless` in a rule's words, normalised (`!{ ssl_fc }`).
fn condition(words: &[String]) -> Option<(bool, String)> {
    let i = words.iter().position(|w| w == "if" || w == "unless")?;
    Some((words[i] == "unless", words[i + 1..].join(" ")))
}

/// Whether the rule applies to plain connections only (`if !{ ssl_fc }`, `unless { ssl_fc }`),
/// TLS only, or always (`None` = some other condition edgelb cannot express).
#[derive(Debug, PartialEq)]
enum Applies {
    Always,
    Plain,
    Tls,
}

fn applies(words: &[String]) -> Option<Applies> {
    match condition(words) {
        None => Some(Applies::Always),
        Some((false, c)) if c == "!{ ssl_fc }" => Some(Applies::Plain),
        Some((true, c)) if c == "{ ssl_fc }" => Some(Applies::Plain),
        Some((false, c)) if c == "{ ssl_fc }" => Some(Applies::Tls),
        Some((true, c)) if c == "!{ ssl_fc }" => Some(Applies::Tls),
        _ => None,
    }
}

/// The `bind` parameters about TLS and PROXY; returns whether the bind speaks TLS. Unknown
/// TLS tuning is reported; `i` advances past parameter values.
pub(super) fn bind_params(ctx: &mut Ctx<'_>, l: &Line, params: &[&str], t: &mut TlsImport) -> bool {
    let at = &l.loc;
    let ssl = params.contains(&"ssl");
    let mut i = 0;
    while i < params.len() {
        let v = params.get(i + 1).copied();
        match params[i] {
            "ssl" => {}
            "accept-proxy" => {
                t.accept_proxy.get_or_insert(at.clone());
            }
            "crt" => {
                i += 1;
                let Some(path) = v else {
                    ctx.rep.error(at, "`crt` needs a file or directory");
                    continue;
                };
                if std::path::Path::new(path).is_dir() {
                    if let Some(d) = &t.cert_dir {
                        ctx.rep.warn(at, format!("a second certificate directory {path:?}: edgelb reads one cert_dir per listen ({:?} kept)", d.v));
                    } else {
                        t.cert_dir = src(path.to_string(), at);
                    }
                } else {
                    t.cert_files.push(Src {
                        v: path.to_string(),
                        at: at.clone(),
                    });
                }
            }
            "alpn" => {
                i += 1;
                let list: Vec<String> = v.unwrap_or("").split(',').map(str::to_string).collect();
                t.alpn = src(list, at);
            }
            "strict-sni" => {
                t.strict_sni = Some(at.clone());
            }
            "ssl-min-ver" => {
                i += 1;
                match v {
                    Some("TLSv1.3") => t.min_version = src("1.3".into(), at),
                    Some("TLSv1.2") => t.min_version = src("1.2".into(), at),
                    Some(other) => ctx.rep.warn(at, format!("ssl-min-ver {other}: edgelb never offers anything older than TLS 1.2; min_version = \"1.2\"")),
                    None => ctx.rep.error(at, "`ssl-min-ver` needs a version"),
                }
            }
            "ciphers" | "ciphersuites" | "curves" | "ecdhe" | "ssl-max-ver" | "dhparam" => {
                i += 1;
                ctx.rep.note(at, format!("`{}`: edgelb offers TLS 1.2 and 1.3 with ECDHE and AEAD suites only (Mozilla intermediate); not configurable", params[i - 1]));
            }
            "no-sslv3"
            | "no-tlsv10"
            | "no-tlsv11"
            | "force-tlsv12"
            | "force-tlsv13"
            | "no-tls-tickets"
            | "prefer-client-ciphers"
            | "allow-0rtt" => {
                ctx.rep.note(
                    at,
                    format!(
                        "`{}`: edgelb never offers SSLv3, TLS 1.0 or 1.1 and has no 0-RTT",
                        params[i]
                    ),
                );
            }
            "ca-file" | "verify" | "crl-file" | "ca-ignore-err" | "crt-ignore-err" | "crt-list"
            | "npn" | "ca-sign-file" => {
                i += 1;
                ctx.rep.warn(at, format!("bind option `{}` (client certificates, crt-list, NPN) is not supported; not imported", params[i - 1]));
            }
            _ => {}
        }
        i += 1;
    }
    if !params.contains(&"accept-proxy") {
        t.binds_without_proxy.push(at.clone());
    }
    if ssl && t.cert_files.is_empty() && t.cert_dir.is_none() {
        ctx.rep
            .error(at, "`ssl` without `crt`: no certificate to serve");
    }
    ssl
}

/// `redirect scheme https ...` (also as `http-request redirect`). True when handled.
pub(super) fn redirect(ctx: &mut Ctx<'_>, l: &Line, t: &mut TlsImport, target: &str) -> bool {
    let w = &l.words;
    let start = usize::from(l.kw() == "http-request");
    if w.get(start).map(String::as_str) != Some("redirect")
        || w.get(start + 1).map(String::as_str) != Some("scheme")
        || w.get(start + 2).map(String::as_str) != Some("https")
    {
        return false;
    }
    let at = &l.loc;
    if let Some(i) = w.iter().position(|x| x == "code") {
        if w.get(i + 1).map(String::as_str) != Some("302") {
            ctx.rep.warn(
                at,
                "edgelb's https redirect answers 302 (HAProxy's default); the code is not imported",
            );
        }
    }
    match applies(w) {
        Some(Applies::Plain) | Some(Applies::Always) => {
            t.redirect_https = Some(at.clone());
            ctx.rep.mapped(
                at,
                format!("{target}: redirect_https = true (plain binds only)"),
            );
        }
        _ => ctx.rep.warn(
            at,
            "redirect condition other than `!{ ssl_fc }` is not supported; not imported",
        ),
    }
    true
}

/// `http-request set-header X-Forwarded-Proto|X-Forwarded-Port ...` and `http-response
/// set-header Strict-Transport-Security ...`. True when handled.
pub(super) fn set_header(ctx: &mut Ctx<'_>, l: &Line, t: &mut TlsImport, target: &str) -> bool {
    let w = &l.words;
    let (Some(action), Some(name), Some(value)) = (l.arg(1), l.arg(2), l.arg(3)) else {
        return false;
    };
    if !matches!(action, "set-header" | "add-header") {
        return false;
    }
    let at = &l.loc;
    let cond = applies(w);
    match (l.kw(), name.to_ascii_lowercase().as_str()) {
        ("http-request", "x-forwarded-proto") => {
            let consistent = matches!(
                (value, &cond),
                ("https", Some(Applies::Tls))
                    | ("http", Some(Applies::Plain))
                    | ("https" | "http", Some(Applies::Always))
            );
            if !consistent {
                ctx.rep.warn(at, "X-Forwarded-Proto rule not in the `https if { ssl_fc }` / `http if !{ ssl_fc }` form; not imported");
                return true;
            }
            if cond == Some(Applies::Always) {
                ctx.rep.note(at, "edgelb sets X-Forwarded-Proto from the connection (https on TLS binds, http on plain ones)");
            }
            t.forwarded_proto.get_or_insert(at.clone());
            ctx.rep
                .mapped(at, format!("{target}: forwarded_proto = true"));
            true
        }
        ("http-request", "x-forwarded-port") if value == "%[dst_port]" => {
            t.forwarded_port = Some(at.clone());
            ctx.rep
                .mapped(at, format!("{target}: forwarded_port = true"));
            true
        }
        ("http-response", "strict-transport-security") => {
            if cond == Some(Applies::Plain) {
                ctx.rep.warn(
                    at,
                    "HSTS on plain HTTP is ignored by browsers; not imported",
                );
                return true;
            }
            let mut max_age = None;
            let (mut sub, mut preload) = (false, false);
            for part in value.split(';').map(str::trim) {
                let lower = part.to_ascii_lowercase();
                if let Some(n) = lower.strip_prefix("max-age=") {
                    max_age = n.trim_matches('"').parse::<u64>().ok();
                } else if lower == "includesubdomains" {
                    sub = true;
                } else if lower == "preload" {
                    preload = true;
                }
            }
            match max_age {
                Some(n) => {
                    t.hsts = src((n, sub, preload), at);
                    ctx.rep
                        .mapped(at, format!("{target}: tls.hsts (TLS responses)"));
                }
                None => ctx.rep.warn(
                    at,
                    "Strict-Transport-Security without max-age; not imported",
                ),
            }
            true
        }
        _ => false,
    }
}

/// Listen keys and the `[listen.tls]` table for a frontend `fe` merged with backend `be`.
pub(super) fn emit(
    ctx: &mut Ctx<'_>,
    name: &str,
    fe: &TlsImport,
    be: &TlsImport,
    t: &mut Table,
) -> Option<Table> {
    let pick = |a: &Option<Loc>, b: &Option<Loc>| a.clone().or_else(|| b.clone());
    if let Some(at) = pick(&fe.forwarded_proto, &be.forwarded_proto) {
        t.set("forwarded_proto", Value::Bool(true), at.comment());
    }
    if let Some(at) = pick(&fe.forwarded_port, &be.forwarded_port) {
        t.set("forwarded_port", Value::Bool(true), at.comment());
    }
    if let Some(at) = pick(&fe.redirect_https, &be.redirect_https) {
        t.set("redirect_https", Value::Bool(true), at.comment());
    }
    if let Some(at) = &fe.accept_proxy {
        t.set("accept_proxy", Value::Bool(true), at.comment());
        t.set("accept_proxy_from", str_list(["0.0.0.0/0", "::/0"]), None);
        t.todo("accept_proxy_from trusts every source, as HAProxy's accept-proxy did: narrow it to your load balancers' networks");
        ctx.rep.warn(at, format!("{name}: accept-proxy trusted every source; imported as accept_proxy_from = [\"0.0.0.0/0\", \"::/0\"] with a TODO to narrow it"));
        for b in &fe.binds_without_proxy {
            ctx.rep.warn(b, "this bind had no accept-proxy, but edgelb's accept_proxy covers every bind of the listen: clients here must now send a PROXY header (split the frontend into two listens to keep it plain)");
        }
    }
    if fe.binds.is_empty() {
        return None;
    }
    let mut tt = Table::new("[listen.tls]");
    let comments: Vec<String> = fe.binds.iter().map(|b| b.at.comment()).collect();
    tt.set("bind", str_list(fe.binds.iter().map(|b| b.v.clone())), None);
    if let Some(f) = tt.fields.iter_mut().find(|f| f.key == "bind") {
        f.comments = dedup(comments);
    }
    if !fe.cert_files.is_empty() {
        let certs = fe
            .cert_files
            .iter()
            .map(|c| {
                let key = format!("{}.key", c.v);
                let mut kv = vec![("cert".to_string(), Value::Str(c.v.clone()))];
                // HAProxy reads `FILE.key` when the PEM holds no key.
                if std::path::Path::new(&key).is_file() {
                    kv.push(("key".into(), Value::Str(key)));
                }
                let ocsp = format!("{}.ocsp", c.v);
                if std::path::Path::new(&ocsp).is_file() {
                    kv.push(("ocsp".into(), Value::Str(ocsp)));
                }
                Value::Inline(kv)
            })
            .collect();
        tt.set("certs", Value::List(certs), None);
    }
    if let Some(d) = &fe.cert_dir {
        tt.set("cert_dir", Value::Str(d.v.clone()), d.at.comment());
    }
    if fe.strict_sni.is_some() {
        tt.set("strict_sni", Value::Bool(true), None);
    }
    if let Some(v) = &fe.min_version {
        tt.set("min_version", Value::Str(v.v.clone()), v.at.comment());
    }
    if let Some(a) = &fe.alpn {
        let supported = crate::config::tls::ALPN_SUPPORTED;
        let (keep, drop): (Vec<String>, Vec<String>) =
            a.v.iter()
                .cloned()
                .partition(|p| supported.contains(&p.as_str()));
        if !drop.is_empty() {
            ctx.rep.warn(
                &a.at,
                format!("ALPN {drop:?} not available in this edgelb; offering {keep:?}"),
            );
        }
        if !keep.is_empty() {
            tt.set("alpn", str_list(keep), a.at.comment());
        }
    }
    if let Some(h) = be.hsts.as_ref().or(fe.hsts.as_ref()) {
        let (n, sub, pre) = h.v;
        let mut kv = vec![("max_age".to_string(), Value::Str(format!("{n}s")))];
        if sub {
            kv.push(("include_subdomains".into(), Value::Bool(true)));
        }
        if pre {
            kv.push(("preload".into(), Value::Bool(true)));
        }
        tt.set("hsts", Value::Inline(kv), h.at.comment());
    }
    Some(tt)
}
