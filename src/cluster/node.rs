//! The cluster's I/O shell: UDP heartbeats, timers and EC2 calls around the sans-io `brain`.

use std::sync::Arc;

use crate::runtime::Runtime;

/// A running cluster member (absent when the config has no `[cluster]`).
pub struct ClusterHandle {}

impl ClusterHandle {
    /// Graceful stop: announce "leaving" so peers take our EIP at once; returns when done.
    pub async fn leave(&self) {}
}

/// Starts the cluster member if the snapshot has a `[cluster]` section.
pub async fn spawn(_rt: Arc<Runtime>) -> Result<Option<ClusterHandle>, String> {
    Ok(None)
}
