//! The HTTP/1.1 request path: listeners, the per-connection service, upstream connections.

pub mod pool;
