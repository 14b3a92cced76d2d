//! `[acme]`: certificates that renew themselves (RFC 8555, HTTP-01). The types with their
//! defaults, and the checks TOML types cannot express. The client itself is `crate::acme`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::spans::{key, KeyPath, Seg};

/// Let's Encrypt production directory (`directory = "letsencrypt"`).
pub const LETSENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt staging directory (`directory = "letsencrypt-staging"`): untrusted certificates,
/// generous rate limits; use it first.
pub const LETSENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";
/// Default `storage`: account key and certificates.
pub const DEFAULT_STORAGE: &str = "/var/lib/edgelb/acme";
/// Default `renew_before`: renew when less than this is left (Let's Encrypt's 90-day
/// certificates then renew at day 60, as certbot and Caddy do), but never before two thirds of
/// the certificate's lifetime (short-lived certificates).
pub const DEFAULT_RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);
/// Default `challenge_wait`: longest wait for every live peer to confirm it can answer our
/// tokens before the CA is asked to validate.
pub const DEFAULT_CHALLENGE_WAIT: Duration = Duration::from_secs(5);
/// Default `retry_max`: longest wait between two attempts after failures (it starts at
/// `crate::acme::RETRY_FIRST` and doubles). Let's Encrypt allows 5 failed validations per
/// name per hour.
pub const DEFAULT_RETRY_MAX: Duration = Duration::from_secs(3600);
/// Most names in one certificate (Let's Encrypt's limit).
pub const MAX_NAMES: usize = 100;

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct AcmeSection {
    /// The CA's directory URL, or `"letsencrypt"` / `"letsencrypt-staging"`.
    pub directory: String,
    /// Contact addresses for the account (`ops@example.com` or `mailto:ops@example.com`).
    #[serde(default)]
    pub contact: Vec<String>,
    /// The certificate's names (subject alternative names); the first names the files.
    pub names: Vec<String>,
    /// Directory for the account key and the certificates (created 0700). Default
    /// [`DEFAULT_STORAGE`].
    #[serde(default = "default_storage")]
    pub storage: String,
    /// Where `<cert_name>.pem` (the chain followed by its key, mode 0600) is written for the
    /// TLS listeners (`[listen.tls] cert_dir`); default: `<storage>/certs`.
    pub cert_dir: Option<String>,
    /// File name stem of the certificate and key; default: the first name.
    pub cert_name: Option<String>,
    /// Renew when less than this is left; default [`DEFAULT_RENEW_BEFORE`] (30 days).
    #[serde(default, with = "humantime_serde::option")]
    pub renew_before: Option<Duration>,
    /// PEM file of the CA that signed the ACME server's HTTPS certificate (a private CA, or
    /// Pebble's in tests); default: the system's trust store.
    pub ca_file: Option<String>,
    /// Share our HTTP-01 tokens with the cluster's peers (and answer theirs), so the CA's
    /// validation succeeds whichever node DNS sends it to. Default true.
    #[serde(default = "default_true")]
    pub share_challenges: bool,
    /// Longest wait for every live peer to hold our tokens; default [`DEFAULT_CHALLENGE_WAIT`].
    #[serde(default, with = "humantime_serde::option")]
    pub challenge_wait: Option<Duration>,
    /// Longest wait between attempts after failures; default [`DEFAULT_RETRY_MAX`].
    #[serde(default, with = "humantime_serde::option")]
    pub retry_max: Option<Duration>,
}

fn default_storage() -> String {
    DEFAULT_STORAGE.into()
}

fn default_true() -> bool {
    true
}

impl AcmeSection {
    /// The directory URL with the aliases resolved.
    pub fn directory_url(&self) -> &str {
        match self.directory.as_str() {
            "letsencrypt" => LETSENCRYPT,
            "letsencrypt-staging" => LETSENCRYPT_STAGING,
            other => other,
        }
    }

    /// Contacts as URIs (`mailto:` added to bare addresses).
    pub fn contact_uris(&self) -> Vec<String> {
        self.contact
            .iter()
            .map(|c| {
                if c.contains(':') {
                    c.clone()
                } else {
                    format!("mailto:{c}")
                }
            })
            .collect()
    }

    pub fn cert_dir(&self) -> String {
        self.cert_dir
            .clone()
            .unwrap_or_else(|| format!("{}/certs", self.storage.trim_end_matches('/')))
    }

    pub fn cert_name(&self) -> String {
        self.cert_name
            .clone()
            .or_else(|| self.names.first().cloned())
            .unwrap_or_else(|| "acme".into())
    }

    pub fn renew_before(&self) -> Duration {
        self.renew_before.unwrap_or(DEFAULT_RENEW_BEFORE)
    }

    pub fn challenge_wait(&self) -> Duration {
        self.challenge_wait.unwrap_or(DEFAULT_CHALLENGE_WAIT)
    }

    pub fn retry_max(&self) -> Duration {
        self.retry_max.unwrap_or(DEFAULT_RETRY_MAX)
    }
}

/// A DNS name a public CA can validate over HTTP-01: LDH labels of 1..=63, at most 253 bytes,
/// at least two labels.
fn is_dns_name(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').count() >= 2
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Every problem of `[acme]`, with its key path.
pub(super) fn validate(a: &AcmeSection, out: &mut Vec<(KeyPath, String)>) {
    let at = |k: &str| vec![key("acme"), key(k)];
    let url = a.directory_url();
    if !(url.starts_with("https://") && url.len() > "https://".len()) {
        out.push((
            at("directory"),
            format!(
                "{:?} is not an https:// URL (or \"letsencrypt\" / \"letsencrypt-staging\")",
                a.directory
            ),
        ));
    }
    if a.names.is_empty() {
        out.push((at("names"), "needs at least one name".into()));
    }
    if a.names.len() > MAX_NAMES {
        out.push((at("names"), format!("at most {MAX_NAMES} names")));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, n) in a.names.iter().enumerate() {
        let path = vec![key("acme"), key("names"), Seg::Index(i)];
        if n.starts_with("*.") {
            out.push((
                path,
                format!("{n:?}: wildcard names need the DNS-01 challenge; edgelb does HTTP-01"),
            ));
        } else if !is_dns_name(n) {
            out.push((path, format!("{n:?} is not a DNS name")));
        } else if !seen.insert(n.to_ascii_lowercase()) {
            out.push((path, format!("{n:?} is listed twice")));
        }
    }
    for (i, c) in a.contact.iter().enumerate() {
        let addr = c.strip_prefix("mailto:").unwrap_or(c);
        if !addr.contains('@') || addr.contains(char::is_whitespace) {
            out.push((
                vec![key("acme"), key("contact"), Seg::Index(i)],
                format!("{c:?} is not an e-mail address"),
            ));
        }
    }
    if a.storage.trim().is_empty() {
        out.push((at("storage"), "must not be empty".into()));
    }
    if let Some(n) = &a.cert_name {
        if n.is_empty() || n.contains('/') || n.starts_with('.') {
            out.push((at("cert_name"), format!("{n:?} is not a file name stem")));
        }
    }
    if a.renew_before == Some(Duration::ZERO) {
        out.push((at("renew_before"), "must be greater than 0".into()));
    }
    if a.challenge_wait
        .is_some_and(|d| d > Duration::from_secs(60))
    {
        out.push((at("challenge_wait"), "at most 60s".into()));
    }
    if a.retry_max.is_some_and(|d| d < Duration::from_secs(1)) {
        out.push((at("retry_max"), "at least 1s".into()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section() -> AcmeSection {
        toml::from_str(
            r#"directory = "letsencrypt-staging"
names = ["example.com", "www.example.com"]
contact = ["ops@example.com"]"#,
        )
        .expect("parses")
    }

    #[test]
    fn defaults_and_aliases() {
        let a = section();
        assert_eq!(a.directory_url(), LETSENCRYPT_STAGING);
        assert_eq!(a.contact_uris(), vec!["mailto:ops@example.com"]);
        assert_eq!(a.cert_name(), "example.com");
        assert_eq!(a.cert_dir(), format!("{DEFAULT_STORAGE}/certs"));
        assert_eq!(a.renew_before(), DEFAULT_RENEW_BEFORE);
        assert!(a.share_challenges);
        let mut out = Vec::new();
        validate(&a, &mut out);
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn every_problem_is_reported() {
        let mut a = section();
        a.directory = "http://ca.example/dir".into();
        a.names = vec![
            "*.example.com".into(),
            "bad_name".into(),
            "ok.example".into(),
            "OK.example".into(),
        ];
        a.contact = vec!["nobody".into()];
        a.renew_before = Some(Duration::ZERO);
        a.cert_name = Some("../x".into());
        let mut out = Vec::new();
        validate(&a, &mut out);
        let msgs: Vec<&str> = out.iter().map(|(_, m)| m.as_str()).collect();
        assert_eq!(out.len(), 7, "{msgs:#?}");
        assert!(msgs.iter().any(|m| m.contains("DNS-01")));
        assert!(msgs.iter().any(|m| m.contains("listed twice")));
    }
}
