//! The HTTP/1.1 request path: listeners, the per-connection service, upstream connections.
//!
//! Where things are: `listener` accepts; `session` runs one client connection (head reads,
//! keep-alive, the access-log line, the guards that release every counter); `exchange` runs one
//! request/response (cookie, server choice, connect + retries, relay); `request` writes the
//! upstream head and streams the request body; `response` reads response heads and streams the
//! body; `tunnel` carries an upgraded connection. `h1_lex` lexes a head's syntax, `h1` checks
//! what it means and frames bodies, `error_pages` holds every generated response; `clock` reads
//! the time once per poll of a connection task; `acme_http01` answers ACME validations before
//! all of it. `h2` serves HTTP/2 clients: each stream is fed through the same `session` loop as
//! an HTTP/1.1 connection (see `h2::stream_io`).
//!
//! edgelb speaks HTTP/1 itself on the proxy path (its own lexer, held to httparse's reading by
//! the fuzz checks, and its own framing) instead of going through hyper: it must answer
//! malformed input byte-for-byte like HAProxy (400/408 pages, `<BADREQ>` log lines), rewrite
//! headers in place without re-encoding, and know exactly when a request's bytes may have reached
//! a backend (retry safety). hyper serves the stats ports.

pub mod access_log;
pub mod acme_http01;
pub mod bufs;
pub mod busy_poll;
pub mod clock;
pub mod conn_task;
pub mod cookie;
pub mod error_pages;
pub mod exchange;
pub mod forwarded;
pub mod h1;
pub mod h1_lex;
pub mod h2;
pub mod handshake;
pub mod idle;
pub mod listener;
pub mod pool;
pub mod proxy_protocol;
pub mod request;
pub mod response;
pub mod session;
pub mod tunnel;
pub mod upstream;
pub mod workers;
