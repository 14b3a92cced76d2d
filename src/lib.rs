//! edgelb: one process for an EC2 edge node. An HAProxy-compatible HTTP/1.1 load balancer
//! (round-robin, cookie persistence, X-Forwarded-For, health checks, retries, stats) and a
//! Heartbeat-style cluster that moves Elastic IPs between nodes through the EC2 API.
//!
//! Data flows one way: `config` (file -> validated `Config`) -> `runtime` (immutable snapshot
//! behind an `ArcSwap`, plus per-server live state carried across reloads) -> `proxy` (listeners,
//! request path) -> backends. `health`, `stats`, `cluster` and `cloud` sit beside the request
//! path: they read the snapshot or publish state into atomics, never the other way round.
#![forbid(unsafe_code)]

pub mod app;
pub mod balance;
pub mod cloud;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod demo_cluster;
pub mod health;
pub mod import;
pub mod ops;
pub mod preflight;
pub mod proxy;
pub mod runtime;
pub mod stats;
pub mod tls;
