//! What the brain publishes for `edgelb status` and the stats API: per-peer and per-EIP views,
//! pending calls and counters. Read-only: nothing here changes the state machine.

use super::*;

/// Counters for the stats API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct BrainCounters {
    pub moves: u64,
    pub api_calls: u64,
    pub api_errors: u64,
    pub api_budget_deferrals: u64,
    pub describes: u64,
    pub witness_writes: u64,
    pub witness_reads: u64,
    pub heartbeats_sent: u64,
    pub heartbeats_received: u64,
    pub scheduling_gaps: u64,
    pub call_timeouts: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PeerStatus {
    pub name: String,
    pub state: PeerState,
    pub last_heard_ago_ms: Option<u64>,
    pub incarnation: Option<u64>,
    pub serving: bool,
    pub healthy_backends: u16,
    pub total_backends: u16,
    pub alive_view: Vec<String>,
    /// For silent peers with a witness reading: age of its stamp at the read.
    pub witness_stamp_age_secs: Option<u64>,
    pub sees_us: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EipStatus {
    pub allocation_id: String,
    pub owner: String,
    pub desired_holder: Option<String>,
    pub desired_placement: Option<Placement>,
    pub reason: String,
    pub observed_placement: Option<Placement>,
    pub observed_holder: Option<String>,
    pub observed_ago_ms: Option<u64>,
    pub last_move_ago_ms: Option<u64>,
    pub moves: u64,
    pub pending_call: Option<CallId>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PendingCallStatus {
    pub call: CallId,
    pub kind: String,
    pub age_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ClusterStatus {
    pub me: String,
    /// "initdead", "hold-off", "active", "unhealthy" or "stopped".
    pub phase: String,
    pub healthy: bool,
    pub peers: Vec<PeerStatus>,
    pub eips: Vec<EipStatus>,
    pub pending_calls: Vec<PendingCallStatus>,
    pub api_tokens: u32,
    pub counters: BrainCounters,
}

impl Brain {
    pub fn status(&self) -> ClusterStatus {
        let now = self.now;
        let name = |i: usize| self.cfg.nodes[i].name.clone();
        let peers = self
            .peers
            .iter()
            .filter(|p| p.node != self.me)
            .map(|p| PeerStatus {
                name: name(p.node),
                state: p.state,
                last_heard_ago_ms: p.last_heard.map(|t| ms(now.saturating_sub(t))),
                incarnation: p.incarnation,
                serving: p.last.serving,
                healthy_backends: p.last.healthy_backends,
                total_backends: p.last.total_backends,
                alive_view: p.last.alive_view.clone(),
                witness_stamp_age_secs: match p.witness {
                    Some(Verdict::Fresh { age_secs, .. }) => Some(age_secs),
                    _ => None,
                },
                sees_us: p.sees_me_since.is_some(),
            })
            .collect();
        let eips = self
            .eips
            .iter()
            .map(|e| {
                let observed = e.observed.as_ref().and_then(|o| o.placement.clone());
                EipStatus {
                    allocation_id: e.allocation_id.clone(),
                    owner: name(e.owner),
                    desired_holder: e.decision.holder.map(name),
                    desired_placement: self.target(&e.decision),
                    reason: e.decision.why.to_string(),
                    observed_holder: observed
                        .as_ref()
                        .and_then(|p| self.locate(p))
                        .map(|(n, _)| name(n)),
                    observed_placement: observed,
                    observed_ago_ms: e.observed.as_ref().map(|o| ms(now.saturating_sub(o.at))),
                    last_move_ago_ms: e.last_move.map(|t| ms(now.saturating_sub(t))),
                    moves: e.moves,
                    pending_call: e.pending,
                }
            })
            .collect();
        let pending_calls = self
            .pending
            .iter()
            .map(|c| PendingCallStatus {
                call: c.call,
                kind: match &c.kind {
                    CallKind::Describe => "describe".into(),
                    CallKind::Associate { eip, target } => format!(
                        "associate {} -> {}/{}",
                        self.eips[*eip].allocation_id, target.eni_id, target.private_ip
                    ),
                    CallKind::WriteWitness => "write witness".into(),
                    CallKind::ReadWitnesses { eni_ids } => {
                        format!("read witnesses {}", eni_ids.join(","))
                    }
                },
                age_ms: ms(now.saturating_sub(c.issued)),
            })
            .collect();
        let phase = if self.stopped {
            "stopped"
        } else if !self.health.healthy {
            "unhealthy"
        } else if self.in_initdead() {
            "initdead"
        } else if self.in_holdoff() {
            "hold-off"
        } else {
            "active"
        };
        ClusterStatus {
            me: self.cfg.me.clone(),
            phase: phase.into(),
            healthy: self.health.healthy,
            peers,
            eips,
            pending_calls,
            api_tokens: self.tokens.max(0.0) as u32,
            counters: self.counters,
        }
    }
}
