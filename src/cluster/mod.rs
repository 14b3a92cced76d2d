//! Cluster membership and Elastic IP placement: the authenticated UDP heartbeat (`wire`) and the
//! sans-io failover state machine (`brain`). The I/O shell that drives them lives in `node`,
//! the mapping from config to both in `setup`, and `status_view` renders the published status
//! for `edgelb status`.

pub mod brain;
pub mod node;
pub mod setup;
pub mod status_view;
pub mod wire;
