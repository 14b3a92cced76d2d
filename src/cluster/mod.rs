//! Cluster membership and Elastic IP placement: the authenticated UDP heartbeat (`wire`) and the
//! sans-io failover state machine (`brain`). The start-up sequence lives in `startup`, the I/O
//! shell that drives them in `node`, the pure mapping from config to both in `setup`, and
//! `status_view` renders the published status for `edgelb status`; `last_words` says "leaving"
//! for a process that goes down on a panic.

pub mod brain;
pub mod last_words;
pub mod node;
pub mod setup;
pub mod startup;
pub mod status_view;
pub mod wire;
