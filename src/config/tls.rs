//! The `[listen.tls]` table: TLS termination of a listen (certificates, versions, ALPN, HSTS).
//!
//! Types only, with their defaults; the files they name are read by `crate::tls`, and checked
//! at `check`, start and every reload (`crate::tls::preflight`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// HAProxy's `tune.ssl.cachesize` default: server-side TLS session cache entries.
pub const DEFAULT_SESSION_CACHE: usize = 20_000;

/// `[listen.tls]`: the addresses in `bind` speak TLS; the listen's own `bind` stays plain HTTP.
/// One listen can therefore serve `:80` and `:443` with the same servers, cookies and stats,
/// like a HAProxy frontend with `bind :80` and `bind :443 ssl crt ...`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct TlsSettings {
    /// Addresses that speak TLS (`"*:443"`, `"[::]:443"`).
    #[serde(default)]
    pub bind: Vec<String>,
    /// Certificate files: `{ cert = "site.pem", key = "site.key", ocsp = "site.ocsp" }`. `key`
    /// defaults to the cert file itself (HAProxy's combined PEM); `ocsp` is a DER OCSP response
    /// to staple.
    #[serde(default)]
    pub certs: Vec<CertFiles>,
    /// A directory of certificates, like HAProxy's `crt DIR`: every file except `*.key`,
    /// `*.ocsp`, `*.issuer`, `*.sctl` and dot-files is a PEM certificate chain; its key is in the
    /// same file or in `NAME.key` (or `NAME.pem.key`), its OCSP response in `NAME.ocsp` (or
    /// `NAME.pem.ocsp`). Files are read in name order. Watched for changes.
    pub cert_dir: Option<String>,
    /// The certificate served when the client sends no SNI or a name no certificate has: a
    /// path among `certs` or inside `cert_dir`. Default: the first of `certs`, else the first
    /// file of `cert_dir` (HAProxy: the first certificate of the bind line).
    pub default_cert: Option<String>,
    /// Refuse the handshake when SNI is missing or matches no certificate, instead of serving
    /// the default (HAProxy `strict-sni`).
    #[serde(default)]
    pub strict_sni: bool,
    /// Lowest protocol version, `"1.2"` (default) or `"1.3"`. Nothing older is ever offered.
    pub min_version: Option<String>,
    /// ALPN protocols in preference order (HAProxy `alpn`). Default: `["http/1.1"]`.
    pub alpn: Option<Vec<String>>,
    /// Server-side session cache entries (resumption by session id; tickets need none).
    /// Default [`DEFAULT_SESSION_CACHE`]; 0 disables the cache.
    pub session_cache: Option<usize>,
    /// `Strict-Transport-Security` on every response sent over TLS.
    pub hsts: Option<Hsts>,
    /// Set at load, not in the file: `cert_dir` is where `[acme]` writes its certificates, so an
    /// empty (or not yet created) directory is the state before the first issuance, not an
    /// error: the listen starts, handshakes fail until the certificate lands, then it is
    /// served without a reload. A listen with `[acme]` and no `certs` nor `cert_dir` gets the
    /// ACME directory.
    #[serde(skip)]
    pub acme_managed: bool,
}

/// One certificate chain with its key and optional stapled OCSP response.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct CertFiles {
    pub cert: String,
    pub key: Option<String>,
    pub ocsp: Option<String>,
}

/// `hsts = { max_age = "365d", include_subdomains = true, preload = false }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Hsts {
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    #[serde(default)]
    pub include_subdomains: bool,
    #[serde(default)]
    pub preload: bool,
}

impl Hsts {
    /// The header value, as HAProxy's `http-response set-header Strict-Transport-Security`
    /// idiom writes it.
    pub fn header_value(&self) -> String {
        let mut v = format!("max-age={}", self.max_age.as_secs());
        if self.include_subdomains {
            v.push_str("; includeSubDomains");
        }
        if self.preload {
            v.push_str("; preload");
        }
        v
    }
}

/// ALPN protocol names a listen may offer (`proxy::handshake::dispatch` hands each to its
/// front end).
pub const ALPN_SUPPORTED: &[&str] = &["h2", "http/1.1"];

/// Checks of the table itself (the files it names are checked by `crate::tls::preflight`).
pub(super) fn validate(
    base: &[super::spans::Seg],
    t: &TlsSettings,
    out: &mut Vec<(super::spans::KeyPath, String)>,
) {
    use super::spans::key;
    let at = |k: &str| {
        let mut v = base.to_vec();
        v.push(key("tls"));
        v.push(key(k));
        v
    };
    if t.bind.is_empty() {
        out.push((
            at("bind"),
            "at least one TLS bind address is required (`bind = [\"*:443\"]`)".into(),
        ));
    }
    if t.certs.is_empty() && t.cert_dir.is_none() {
        out.push((
            at("certs"),
            "no certificate: set `certs = [{ cert = \"...\", key = \"...\" }]` or `cert_dir`"
                .into(),
        ));
    }
    if let Some(v) = &t.min_version {
        if !matches!(v.as_str(), "1.2" | "1.3") {
            out.push((
                at("min_version"),
                format!("{v:?}: expected \"1.2\" or \"1.3\" (older versions are never offered)"),
            ));
        }
    }
    if let Some(alpn) = &t.alpn {
        if alpn.is_empty() {
            out.push((at("alpn"), "must name at least one protocol".into()));
        }
        for p in alpn {
            if !ALPN_SUPPORTED.contains(&p.as_str()) {
                out.push((
                    at("alpn"),
                    format!("{p:?} is not supported (supported: {ALPN_SUPPORTED:?})"),
                ));
            }
        }
    }
    if t.session_cache.is_some_and(|n| n > 10_000_000) {
        out.push((at("session_cache"), "at most 10000000 entries".into()));
    }
}
