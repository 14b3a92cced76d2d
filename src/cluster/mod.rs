//! Cluster membership and Elastic IP placement: the authenticated UDP heartbeat (`wire`) and the
//! sans-io failover state machine (`brain`). The I/O shell that drives them lives in `node`.

pub mod brain;
pub mod node;
pub mod wire;
