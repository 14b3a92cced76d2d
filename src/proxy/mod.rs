//! The HTTP/1.1 request path: listeners, the per-connection service, upstream connections.
//!
//! edgelb speaks HTTP/1 itself on the proxy path (httparse + its own framing) instead of going
//! through hyper: it must answer malformed input byte-for-byte like HAProxy (400/408 pages,
//! `<BADREQ>` log lines), rewrite headers in place without re-encoding, and know exactly when a
//! request's bytes may have reached a backend (retry safety). hyper serves the stats ports.

pub mod access_log;
pub mod cookie;
pub mod error_pages;
pub mod forwarded;
pub mod h1;
pub mod listener;
pub mod pool;
pub mod service;
pub mod upstream;
