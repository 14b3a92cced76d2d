//! TLS termination: the rustls server configuration of a listen, its certificates chosen by SNI,
//! session resumption, and certificate reload.
//!
//! Owns: building a `TlsListen` from `[listen.tls]` (protocol versions, cipher suites, ALPN,
//! ticket keys, session cache, the SNI resolver), the preflight that `check`, start and every
//! reload run on the certificate files, and noticing changed files (`poll_changes`). Must not:
//! accept connections or touch the request path (that is `proxy::handshake`), or know about the
//! runtime snapshot (the caller hands in what to poll).
//!
//! Crypto: the aws-lc-rs provider the AWS SDK already links. TLS 1.2 and 1.3 only, ECDHE key
//! exchange with AEAD ciphers only (AES-GCM, ChaCha20-Poly1305), in Mozilla's "intermediate"
//! order with the server's preference winning (HAProxy's `prefer-server-ciphers`). No 0-RTT.

pub mod certs;
pub mod resolver;
pub mod x509;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::{
    NoServerSessionStorage, ProducesTickets, ServerSessionMemoryCache, StoresServerSessions,
};
use rustls::ServerConfig;

use crate::config::{self, Config, TlsSettings};
pub use certs::{CertSet, Problem};
pub use resolver::SniResolver;

/// How often certificate files are checked for changes (an ACME renewal written by atomic
/// rename is served within this long).
pub const POLL_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// The crypto provider of every TLS listen: aws-lc-rs with only ECDHE + AEAD suites.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: std::sync::OnceLock<Arc<CryptoProvider>> = std::sync::OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            use rustls::crypto::aws_lc_rs::cipher_suite as cs;
            let mut p = rustls::crypto::aws_lc_rs::default_provider();
            p.cipher_suites = vec![
                cs::TLS13_AES_128_GCM_SHA256,
                cs::TLS13_AES_256_GCM_SHA384,
                cs::TLS13_CHACHA20_POLY1305_SHA256,
                cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
                cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
                cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
                cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
                cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
                cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
            ];
            Arc::new(p)
        })
        .clone()
}

/// Counters of one TLS listen (carried across reloads).
#[derive(Debug, Default)]
pub struct TlsCounters {
    /// Completed handshakes, and how many of them resumed a session.
    pub handshakes: AtomicU64,
    pub resumed: AtomicU64,
    /// Handshakes that failed (bad ClientHello, no shared version or cipher, unknown SNI under
    /// `strict_sni`, peer closed) or timed out.
    pub handshake_failures: AtomicU64,
    pub handshake_timeouts: AtomicU64,
    /// Certificate sets swapped in by file change, and rejected ones (the old set kept serving).
    pub cert_reloads: AtomicU64,
    pub cert_reload_failures: AtomicU64,
}

/// What outlives one snapshot: counters, the ticket key rotator and the session cache, so a
/// reload neither resets stats nor breaks resumption.
pub struct TlsShared {
    pub counters: TlsCounters,
    ticketer: Arc<dyn ProducesTickets>,
    cache: Arc<dyn StoresServerSessions>,
    cache_size: usize,
    /// The fingerprint of the last set that failed to load, so it is reported once.
    last_failed: std::sync::Mutex<Option<certs::Fingerprint>>,
}

impl std::fmt::Debug for TlsShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsShared")
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl TlsShared {
    fn new(cache_size: usize) -> Result<Self, Problem> {
        // rustls's ticketer rotates its key every 6 hours and still accepts the previous one.
        let ticketer = rustls::crypto::aws_lc_rs::Ticketer::new().map_err(|e| Problem {
            file: "tls".into(),
            reason: format!("cannot create session ticket keys: {e}"),
        })?;
        let cache: Arc<dyn StoresServerSessions> = if cache_size == 0 {
            Arc::new(NoServerSessionStorage {})
        } else {
            ServerSessionMemoryCache::new(cache_size)
        };
        Ok(TlsShared {
            counters: TlsCounters::default(),
            ticketer,
            cache,
            cache_size,
            last_failed: std::sync::Mutex::new(None),
        })
    }
}

/// A listen's TLS side, built per snapshot.
pub struct TlsListen {
    /// Addresses that speak TLS.
    pub binds: Vec<SocketAddr>,
    pub settings: TlsSettings,
    pub acceptor: tokio_rustls::TlsAcceptor,
    pub resolver: Arc<SniResolver>,
    pub shared: Arc<TlsShared>,
    /// `strict-transport-security: ...\r\n`, added to responses sent over TLS.
    pub hsts: Option<Box<[u8]>>,
}

impl std::fmt::Debug for TlsListen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsListen")
            .field("binds", &self.binds)
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

/// The ALPN protocols offered when `alpn` is not set.
pub const DEFAULT_ALPN: &[&str] = &["http/1.1"];

impl TlsListen {
    /// Loads the certificates and builds the server configuration. `prev` (the same listen
    /// in the running snapshot) lends its counters, ticket keys and session cache.
    pub fn build(t: &TlsSettings, prev: Option<&TlsListen>) -> Result<TlsListen, Vec<Problem>> {
        let set = certs::load(t, &provider())?;
        for w in &set.warnings {
            tracing::warn!("tls: {w} (served anyway)");
        }
        let cache_size = t
            .session_cache
            .unwrap_or(config::tls::DEFAULT_SESSION_CACHE);
        let shared = match prev {
            Some(p) if p.shared.cache_size == cache_size => p.shared.clone(),
            _ => Arc::new(TlsShared::new(cache_size).map_err(|p| vec![p])?),
        };
        let resolver = Arc::new(SniResolver::new(set, t.strict_sni));
        let versions: &[&'static rustls::SupportedProtocolVersion] = match t.min_version.as_deref()
        {
            Some("1.3") => &[&rustls::version::TLS13],
            _ => &[&rustls::version::TLS13, &rustls::version::TLS12],
        };
        let mut sc = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .map_err(|e| {
                vec![Problem {
                    file: "tls".into(),
                    reason: format!("protocol versions: {e}"),
                }]
            })?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        sc.ignore_client_order = true;
        sc.session_storage = shared.cache.clone();
        sc.ticketer = shared.ticketer.clone();
        sc.alpn_protocols = match &t.alpn {
            Some(list) => list.iter().map(|p| p.as_bytes().to_vec()).collect(),
            None => DEFAULT_ALPN.iter().map(|p| p.as_bytes().to_vec()).collect(),
        };
        let binds = t
            .bind
            .iter()
            .filter_map(|b| config::parse_bind(b).ok())
            .collect();
        let hsts = t.hsts.as_ref().map(|h| {
            format!("strict-transport-security: {}\r\n", h.header_value())
                .into_bytes()
                .into_boxed_slice()
        });
        Ok(TlsListen {
            binds,
            settings: t.clone(),
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(sc)),
            resolver,
            shared,
            hsts,
        })
    }

    /// Re-reads the certificates when their files changed since the set being served was
    /// loaded. A good new set is swapped in (handshakes in flight keep the chain they chose);
    /// a bad one is reported once, with file and reason, and the old set keeps serving.
    /// Blocking file I/O: call it off the async workers.
    pub fn poll_changes(&self, listen: &str) {
        let now = certs::fingerprint(&self.settings);
        if now == self.resolver.set.load().fingerprint {
            return;
        }
        let mut failed = self
            .shared
            .last_failed
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if failed.as_ref() == Some(&now) {
            return;
        }
        match certs::load(&self.settings, &provider()) {
            Ok(set) => {
                for w in &set.warnings {
                    tracing::warn!("listen {listen}: tls: {w} (served anyway)");
                }
                let served: Vec<String> = set
                    .certs
                    .iter()
                    .map(|c| format!("{} (serial {})", c.file.display(), c.info.serial_hex))
                    .collect();
                self.resolver.set.store(Arc::new(set));
                self.shared
                    .counters
                    .cert_reloads
                    .fetch_add(1, Ordering::Relaxed);
                *failed = None;
                tracing::info!(
                    "listen {listen}: certificates reloaded: {}",
                    served.join(", ")
                );
            }
            Err(problems) => {
                self.shared
                    .counters
                    .cert_reload_failures
                    .fetch_add(1, Ordering::Relaxed);
                for p in &problems {
                    tracing::error!(
                        "listen {listen}: certificate reload rejected, the previous certificates \
                         keep serving: {p}"
                    );
                }
                *failed = Some(now);
            }
        }
    }
}

/// Every certificate problem of `cfg` as (listen index, problem): `check`, start and reload
/// refuse the config when this is not empty.
pub fn preflight(cfg: &Config) -> Vec<(usize, Problem)> {
    let mut out = Vec::new();
    for (i, l) in cfg.listen.iter().enumerate() {
        if let Some(t) = &l.tls {
            if let Err(ps) = certs::load(t, &provider()) {
                out.extend(ps.into_iter().map(|p| (i, p)));
            }
        }
    }
    out
}
