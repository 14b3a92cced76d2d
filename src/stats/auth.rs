//! Who may use the stats ports: the token files of the current config generation, the read
//! credential of the read-only routes and the rules that keep a web page on another site from
//! using the admin API through the operator's browser.
//!
//! Rules (README "Stats and admin API" and deploy/README.md "Threat model"):
//! - `/healthz`, `/readyz` and the dashboard page are open (load balancers, systemd, and a page
//!   that holds no data).
//! - Reads (`/stats.json`, CSV, `/metrics`, `/history.json`) need the read token when
//!   `read_token_file` is set: `Authorization: Bearer <token>`, or Basic with any user name and
//!   the token as password (what Prometheus and prometheus-haproxy-exporter send). The admin
//!   token is accepted too.
//! - `/admin/...` needs `Authorization: Bearer <admin token>`. Basic is refused there, and no
//!   answer ever carries `WWW-Authenticate: Basic`, so no browser is prompted into caching a
//!   credential that it would attach to a cross-site form.
//! - A request a browser marks as cross-site (`Sec-Fetch-Site: cross-site|same-site`, or an
//!   `Origin` that is not this host) is refused before anything else, and a browser's admin write
//!   must carry a JSON body (a custom header plus JSON is never a CORS "simple" request, and
//!   edgelb answers no preflight). Non-browser clients (curl: no `Origin`, no `Sec-Fetch-*`) may
//!   send the value as text or a form body.
//!
//! Token files are read when the config generation changes (startup and each reload, after the
//! shared preflight accepted them), never per request. A file that became unreadable fails
//! closed: admin 403, reads 403.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use base64::Engine as _;
use http::{header, HeaderMap, Response, StatusCode};
use subtle::ConstantTimeEq;

use crate::runtime::Runtime;

use super::{text, Body};

#[derive(Debug)]
struct Tokens {
    generation: u64,
    /// Ok(token) or Err(why admin is disabled).
    admin: Result<Vec<u8>, String>,
    /// None: reads are open. Some(Err): configured but unusable, reads refused.
    read: Option<Result<Vec<u8>, String>>,
}

/// The token files of the current config generation.
#[derive(Debug, Default)]
pub struct TokenCache {
    cur: ArcSwapOption<Tokens>,
}

fn load(path: &str, key: &str) -> Result<Vec<u8>, String> {
    crate::preflight::read_token_file(Path::new(path), key).map_err(|e| {
        tracing::warn!("stats: {e}");
        e
    })
}

impl TokenCache {
    fn current(&self, rt: &Runtime) -> Arc<Tokens> {
        let snap = rt.load();
        if let Some(t) = self.cur.load_full() {
            if t.generation == snap.generation {
                return t;
            }
        }
        let st = snap.config.stats.as_ref();
        let admin = match st.and_then(|s| s.admin_token_file.as_deref()) {
            None => Err("admin disabled: no admin_token_file in [stats]".to_string()),
            Some(p) => load(p, "stats.admin_token_file")
                .map_err(|e| format!("admin disabled: cannot use the token file: {e}")),
        };
        let read = st
            .and_then(|s| s.read_token_file.as_deref())
            .map(|p| load(p, "stats.read_token_file"));
        let t = Arc::new(Tokens {
            generation: snap.generation,
            admin,
            read,
        });
        self.cur.store(Some(t.clone()));
        t
    }
}

/// How a credential was presented.
#[derive(Debug, PartialEq, Eq)]
enum Scheme {
    Bearer,
    Basic,
}

fn presented(headers: &HeaderMap) -> Option<(Scheme, Vec<u8>)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = v.split_once(' ').unwrap_or((v, ""));
    if scheme.eq_ignore_ascii_case("bearer") {
        Some((Scheme::Bearer, rest.trim().as_bytes().to_vec()))
    } else if scheme.eq_ignore_ascii_case("basic") {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .ok()?;
        let i = raw.iter().position(|&b| b == b':')?;
        Some((Scheme::Basic, raw[i + 1..].to_vec()))
    } else {
        None
    }
}

fn matches(given: &[u8], token: &[u8]) -> bool {
    given.ct_eq(token).into()
}

/// 401 with a Bearer challenge only (a Basic challenge makes browsers prompt and cache).
fn unauthorized(realm: &'static str, why: &str) -> Response<Body> {
    let mut r = text(StatusCode::UNAUTHORIZED, why.to_string());
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static(realm),
    );
    r
}

/// True when a browser sent the request (fetch metadata or an `Origin`): curl sends neither.
pub fn from_browser(headers: &HeaderMap) -> bool {
    headers.contains_key(header::ORIGIN) || headers.contains_key("sec-fetch-site")
}

/// Refuses requests a browser marks as coming from another site.
pub fn cross_site(headers: &HeaderMap) -> Option<Response<Body>> {
    let site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase());
    if let Some(site) = site {
        if site != "same-origin" && site != "none" {
            return Some(text(
                StatusCode::FORBIDDEN,
                format!("cross-site request refused (Sec-Fetch-Site: {site})"),
            ));
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("null").trim();
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .trim();
        let same = |scheme: &str, default_port: &str| {
            origin.strip_prefix(scheme).is_some_and(|o| {
                o.eq_ignore_ascii_case(host)
                    || o.eq_ignore_ascii_case(host.trim_end_matches(default_port))
                    || format!("{o}{default_port}").eq_ignore_ascii_case(host)
            })
        };
        if host.is_empty() || !(same("http://", ":80") || same("https://", ":443")) {
            return Some(text(
                StatusCode::FORBIDDEN,
                format!("cross-origin request refused (Origin: {origin})"),
            ));
        }
    }
    None
}

impl TokenCache {
    /// Gate of the read-only routes: `None` lets the request through.
    pub fn check_read(&self, rt: &Runtime, headers: &HeaderMap) -> Option<Response<Body>> {
        let t = self.current(rt);
        let read = match &t.read {
            None => return None,
            Some(Err(_)) => {
                return Some(text(
                    StatusCode::FORBIDDEN,
                    "stats disabled: the read token file cannot be used (see the log)",
                ))
            }
            Some(Ok(r)) => r,
        };
        if let Some((_, given)) = presented(headers) {
            let admin_ok = t.admin.as_ref().is_ok_and(|a| matches(&given, a));
            if matches(&given, read) || admin_ok {
                return None;
            }
        }
        Some(unauthorized(
            "Bearer realm=\"edgelb stats\"",
            "unauthorized: the read token is required (Authorization: Bearer <token>)",
        ))
    }

    /// Gate of `/admin/...`: same-site, admin token configured, Bearer credential.
    pub fn check_admin(&self, rt: &Runtime, headers: &HeaderMap) -> Option<Response<Body>> {
        if let Some(r) = cross_site(headers) {
            return Some(r);
        }
        let t = self.current(rt);
        let token = match &t.admin {
            Ok(t) => t,
            Err(why) => return Some(text(StatusCode::FORBIDDEN, why.clone())),
        };
        match presented(headers) {
            Some((Scheme::Bearer, given)) if matches(&given, token) => None,
            Some((Scheme::Basic, _)) => Some(unauthorized(
                "Bearer realm=\"edgelb admin\"",
                "unauthorized: the admin API takes Authorization: Bearer <token>; Basic is not \
                 accepted (a browser would replay cached Basic credentials for other sites)",
            )),
            _ => Some(unauthorized(
                "Bearer realm=\"edgelb admin\"",
                "unauthorized: admin token required (Authorization: Bearer <token>)",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, v.parse().expect("header value"));
        }
        m
    }

    #[test]
    fn credentials() {
        assert_eq!(presented(&h(&[])), None);
        assert_eq!(
            presented(&h(&[("authorization", "Bearer s3cret")])),
            Some((Scheme::Bearer, b"s3cret".to_vec()))
        );
        let basic = base64::engine::general_purpose::STANDARD.encode("anyone:s3cret");
        assert_eq!(
            presented(&h(&[("authorization", &format!("Basic {basic}"))])),
            Some((Scheme::Basic, b"s3cret".to_vec()))
        );
        assert_eq!(presented(&h(&[("authorization", "Basic !!")])), None);
    }

    #[test]
    fn origin_rules() {
        let host = ("host", "127.0.0.1:9023");
        assert!(cross_site(&h(&[host])).is_none(), "curl");
        assert!(cross_site(&h(&[host, ("origin", "http://127.0.0.1:9023")])).is_none());
        assert!(cross_site(&h(&[host, ("sec-fetch-site", "same-origin")])).is_none());
        assert!(cross_site(&h(&[host, ("origin", "http://evil.example")])).is_some());
        assert!(cross_site(&h(&[host, ("origin", "null")])).is_some());
        assert!(cross_site(&h(&[host, ("sec-fetch-site", "cross-site")])).is_some());
        assert!(cross_site(&h(&[host, ("sec-fetch-site", "same-site")])).is_some());
        assert!(
            cross_site(&h(&[("origin", "http://x")])).is_some(),
            "no Host"
        );
        let h80 = ("host", "stats.example");
        assert!(cross_site(&h(&[h80, ("origin", "http://stats.example")])).is_none());
        assert!(cross_site(&h(&[h80, ("origin", "https://stats.example")])).is_none());
        assert!(cross_site(&h(&[h80, ("origin", "http://stats.example.evil")])).is_some());
    }
}
