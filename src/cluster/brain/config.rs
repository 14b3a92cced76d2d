//! The brain's configuration: cluster members, Elastic IPs, timers, budget and witness
//! settings, with the validation `Brain::new` runs (Heartbeat's timer rules included).

use std::net::Ipv4Addr;
use std::time::Duration;

use super::wire;
use crate::cloud::Placement;

/// A cluster member as configured.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NodeSpec {
    pub name: String,
    pub eni_id: String,
    /// Where this node's own EIP lives.
    pub primary_ip: Ipv4Addr,
    /// Private IPs that can carry peers' EIPs, one EIP each (EC2 allows a single EIP per private
    /// IP). Empty: this node never takes over.
    pub secondary_ips: Vec<Ipv4Addr>,
}

impl NodeSpec {
    pub fn primary(&self) -> Placement {
        Placement {
            eni_id: self.eni_id.clone(),
            private_ip: self.primary_ip,
        }
    }

    pub fn secondary(&self, slot: usize) -> Option<Placement> {
        self.secondary_ips.get(slot).map(|ip| Placement {
            eni_id: self.eni_id.clone(),
            private_ip: *ip,
        })
    }
}

/// An Elastic IP and the node whose primary IP it normally lives on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EipSpec {
    pub allocation_id: String,
    pub owner: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitnessConfig {
    pub enabled: bool,
    pub write_interval: Duration,
    /// A stamp older than this (against the reader's wall clock) means the writer is dead.
    pub stale_after: Duration,
    /// While a silent peer's stamp is still fresh and its silence younger than deadtime +
    /// stale_after, its witness and instance state are re-read this often (not only when the
    /// stamp would turn stale): an instance that EC2 stops or terminates after our first read
    /// is then proven dead within this interval. Reads are cheap (2 requests) and happen only
    /// while a peer is silent; nothing at rest.
    pub silent_read_interval: Duration,
}

impl WitnessConfig {
    /// How long a witness that cannot be read (API outage) is waited for before a silent peer
    /// counts as dead anyway: stale_after + write_interval (25 s by default). Longer than
    /// stale_after, so an outage during a partition rarely swaps EIPs; bounded, so an outage
    /// never strands one.
    pub fn unreadable_grace(&self) -> Duration {
        self.stale_after + self.write_interval
    }
}

impl Default for WitnessConfig {
    fn default() -> Self {
        WitnessConfig {
            enabled: true,
            write_interval: Duration::from_secs(7),
            stale_after: Duration::from_secs(18),
            silent_read_interval: Duration::from_secs(3),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrainConfig {
    pub me: String,
    pub nodes: Vec<NodeSpec>,
    pub eips: Vec<EipSpec>,
    pub keepalive: Duration,
    pub deadtime: Duration,
    pub warntime: Duration,
    pub initdead: Duration,
    pub auto_failback: bool,
    pub failback_hold: Duration,
    pub reconcile_interval: Duration,
    /// Reconcile interval jitter, in percent either way.
    pub reconcile_jitter_pct: u32,
    /// EC2 requests (describe, associate, witness write: 1 call each; witness read: 2, the ENI
    /// tags and the instance states) this node may spend per minute.
    pub api_budget_per_minute: u32,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// In-flight calls older than this are forgotten (treated as failed); late results ignored.
    pub call_timeout: Duration,
    pub pause_threshold: Duration,
    pub pause_holdoff: Duration,
    /// How many `leaving` heartbeats a graceful stop sends.
    pub leave_burst: u32,
    pub witness: WitnessConfig,
    /// How long a peer must have announced `serving=false`, and a survivor been healthy,
    /// before the survivor takes that peer's EIP: when every node's backends fail together
    /// (a shared backend pool), health checks see it at slightly different times, and nobody
    /// can serve anyway, so nothing should move.
    pub unhealthy_hold: Duration,
    /// HTTP requests one EC2 call may cost (the SDK's `max_attempts`): the budget is charged
    /// this many tokens per call, so `api_budget_per_minute` bounds requests, retries included.
    pub requests_per_call: u32,
}

impl BrainConfig {
    /// Heartbeat-like defaults; see the module docs for the reasoning.
    pub fn new(me: impl Into<String>, nodes: Vec<NodeSpec>, eips: Vec<EipSpec>) -> Self {
        let keepalive = Duration::from_secs(2);
        let deadtime = Duration::from_secs(15);
        BrainConfig {
            me: me.into(),
            nodes,
            eips,
            keepalive,
            deadtime,
            warntime: deadtime / 2,
            initdead: Duration::from_secs(60),
            auto_failback: true,
            failback_hold: deadtime * 2,
            reconcile_interval: Duration::from_secs(30),
            reconcile_jitter_pct: 20,
            api_budget_per_minute: 20,
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(2),
            call_timeout: Duration::from_secs(60),
            pause_threshold: keepalive * 2,
            pause_holdoff: keepalive * 2 + Duration::from_secs(1),
            leave_burst: 3,
            witness: WitnessConfig::default(),
            unhealthy_hold: deadtime / 2,
            requests_per_call: 1,
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError(m));
        if self.nodes.is_empty() || self.nodes.len() > wire::MAX_VIEW {
            return bad(format!("need 1..={} nodes", wire::MAX_VIEW));
        }
        if self.eips.len() > wire::MAX_EIPS {
            return bad(format!("at most {} EIPs", wire::MAX_EIPS));
        }
        for (i, n) in self.nodes.iter().enumerate() {
            if n.name.is_empty() || n.name.len() > wire::MAX_NAME {
                return bad(format!(
                    "node name {:?}: 1..={} bytes",
                    n.name,
                    wire::MAX_NAME
                ));
            }
            if self.nodes[..i].iter().any(|m| m.name == n.name) {
                return bad(format!("duplicate node {}", n.name));
            }
            if self.nodes[..i].iter().any(|m| m.eni_id == n.eni_id) {
                return bad(format!("node {} shares an ENI with another node", n.name));
            }
            if n.secondary_ips.contains(&n.primary_ip) {
                return bad(format!("node {}: secondary IP equals primary", n.name));
            }
        }
        if !self.nodes.iter().any(|n| n.name == self.me) {
            return bad(format!("me ({}) is not in the node list", self.me));
        }
        for (i, e) in self.eips.iter().enumerate() {
            if e.allocation_id.is_empty() || e.allocation_id.len() > wire::MAX_ALLOC_ID {
                return bad(format!("allocation id {:?}", e.allocation_id));
            }
            if self.eips[..i]
                .iter()
                .any(|f| f.allocation_id == e.allocation_id)
            {
                return bad(format!("duplicate EIP {}", e.allocation_id));
            }
            if !self.nodes.iter().any(|n| n.name == e.owner) {
                return bad(format!(
                    "EIP {}: unknown owner {}",
                    e.allocation_id, e.owner
                ));
            }
        }
        if self.keepalive.is_zero() || self.deadtime <= self.keepalive * 2 {
            return bad("deadtime must exceed 2 x keepalive (Heartbeat rule)".into());
        }
        if self.warntime >= self.deadtime {
            return bad("warntime must be below deadtime".into());
        }
        if self.initdead < self.deadtime {
            return bad("initdead must be at least deadtime (Heartbeat rule)".into());
        }
        if self.pause_threshold <= self.keepalive {
            return bad(
                "pause_threshold must exceed keepalive (the shell ticks that often)".into(),
            );
        }
        if self.requests_per_call == 0 || self.requests_per_call > self.api_budget_per_minute {
            return bad(
                "api_budget_per_minute must allow at least one call of max_attempts requests"
                    .into(),
            );
        }
        if self.api_budget_per_minute == 0 {
            return bad("api_budget_per_minute must be positive".into());
        }
        if self.reconcile_interval.is_zero() || self.reconcile_jitter_pct >= 100 {
            return bad("reconcile interval must be positive, jitter below 100%".into());
        }
        if self.backoff_min.is_zero() || self.backoff_max < self.backoff_min {
            return bad("backoff_min must be positive and <= backoff_max".into());
        }
        if self.witness.enabled
            && (self.witness.write_interval.is_zero()
                || self.witness.stale_after <= self.witness.write_interval)
        {
            return bad("witness stale_after must exceed write_interval".into());
        }
        if self.witness.enabled && self.witness.silent_read_interval.is_zero() {
            return bad("witness silent_read_interval must be positive".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cluster config: {0}")]
pub struct ConfigError(pub String);
