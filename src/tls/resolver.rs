//! The SNI certificate resolver rustls calls on every handshake: one atomic load of the current
//! `CertSet`, then a hash lookup. A reload stores a new set; handshakes already past `resolve`
//! hold their own `Arc` of the chain they chose, so nothing in flight ever fails.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::certs::CertSet;

#[derive(Debug)]
pub struct SniResolver {
    pub set: ArcSwap<CertSet>,
    strict: bool,
    /// Handshakes refused because SNI matched nothing under `strict_sni`.
    pub unmatched: AtomicU64,
}

impl SniResolver {
    pub fn new(set: CertSet, strict: bool) -> Self {
        SniResolver {
            set: ArcSwap::from_pointee(set),
            strict,
            unmatched: AtomicU64::new(0),
        }
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let set = self.set.load();
        let found = set
            .select(hello.server_name(), hello.signature_schemes(), self.strict)
            .cloned();
        if found.is_none() {
            self.unmatched.fetch_add(1, Ordering::Relaxed);
        }
        found
    }
}
