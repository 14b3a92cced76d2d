//! The dashboard page served at `/` on both stats ports: one self-contained HTML document (inline
//! CSS and JS, no external assets, so it works on an edge node without Internet access) that polls
//! `stats.json` every `[stats] refresh` and calls the admin API with a token kept in
//! `sessionStorage`. All data comes from `/stats.json`; nothing is rendered server-side.

/// The page, compiled into the binary.
pub const PAGE: &str = include_str!("dashboard.html");
