//! The failover brain: a pure (sans-io) state machine from inputs to actions. It owns peer
//! liveness, the desired placement of every Elastic IP, and the decision of when this node calls
//! the EC2 API. It performs no I/O, never reads a clock and draws randomness only from the seed
//! it is given, so the same inputs always give the same actions (see `tests/cluster_sim.rs`).
//!
//! # How the I/O shell drives it
//!
//! ```text
//! let mut brain = Brain::new(config, seed, now)?;          // now: monotonic Duration
//! loop {
//!     while let Some(action) = brain.poll_action() { execute(action) }
//!     select! {
//!         sleep_until(brain.next_deadline())     => brain.tick(now),
//!         datagram (wire::Receiver::open -> Ok)  => brain.on_heartbeat(now, &hb),
//!         API call finished                      => brain.on_api_result(now, call, outcome),
//!         health changed                         => brain.set_health(now, health),
//!         SIGTERM                                => brain.request_stop(now),
//!     }
//! }
//! ```
//!
//! * `now` is monotonic time since any fixed origin (e.g. `Instant::now() - start`); every input
//!   takes it, and the brain detects scheduling gaps (SIGSTOP, VM freeze) from it.
//! * `Action::SendHeartbeat` carries the payload; the shell seals it with `wire::Sender` (which
//!   adds node name, incarnation, sequence number and MAC) and sends it to every peer.
//! * API actions carry a [`CallId`]; the shell runs the call (Associate with
//!   `AllowReassociation=true`) and reports the outcome with the same id. A result the brain no
//!   longer waits for is ignored. The brain never has more than one call in flight per EIP, one
//!   describe, one witness read and one witness write. The shell must bound every call with a
//!   timeout; the brain additionally forgets calls older than `call_timeout`.
//! * `Action::Stopped` (after `request_stop`) means it is safe to exit.
//!
//! # Model
//!
//! Peer states (from this node's point of view): `Init` (not heard yet, within our `initdead`),
//! `Alive`, `Warn` (silent > warntime), `Suspect` (silent > deadtime, witness verdict pending),
//! `SilentWitnessed` (silent > deadtime but its witness stamp is fresh: partition, not death),
//! `Dead`, `Unhealthy` (heard, announces `serving=false`) and `Leaving` (announced a graceful
//! stop). For placement these collapse to *up* (Alive, Warn), *down* (Dead, Unhealthy, Leaving)
//! and *unknown* (Init, Suspect, SilentWitnessed): nothing moves for an unknown node.
//!
//! Desired holder of an EIP, computed identically by every node from its own view:
//! 1. owner up: the owner's primary IP; but if the EIP sits on another *up* node, it stays there
//!    until failback (never, when `auto_failback=false`).
//! 2. owner down: if an up survivor already has it on a secondary IP, it stays (no shuffling
//!    between survivors); otherwise the up node (not the owner, with a free secondary IP) that
//!    ranks highest in rendezvous hashing of `(allocation_id, node)` takes it. Several orphaned
//!    EIPs are assigned in allocation-id order, each to the best-ranked node with a free slot, so
//!    they spread over survivors and never share a private IP.
//! 3. owner unknown: nothing moves.
//!
//! Only the desired holder acts, and only ever with `Associate` onto **its own** ENI: takeover
//! onto a secondary IP, reclaim onto its primary. Nobody pushes an EIP onto another node, and the
//! old holder never disassociates (reassociation moves the EIP atomically), so `Disassociate`
//! exists in the action vocabulary but the current policy never emits it.
//!
//! **Failback agreement.** The owner reclaims its EIP from a live holder only when (a) it has
//! itself been up continuously for `failback_hold` (reset by start, health loss and scheduling
//! gaps) and past `initdead`, and (b) the holder's heartbeats have listed the owner in their
//! `alive_view` continuously for `failback_hold`. (b) is the holder's own judgement "the owner is
//! steadily alive" carried over the wire, so holder and owner agree on when the EIP goes home; a
//! holder that still thinks the owner is dead (asymmetric partition) blocks the reclaim instead
//! of ping-ponging. The holder never acts on failback; it just stops re-taking the EIP once the
//! owner is up.
//!
//! **Stranded EIPs vs partitions.** An EIP observed on a node we consider down is taken (owner
//! reclaims, or a survivor takes it) only if that node announced holding it before it went silent,
//! or its witness is stale, or it is Unhealthy/Leaving, or we never heard it at all. An EIP that
//! arrived on a node *while that node was silent to us* proves the node is alive and partitioned
//! from us; touching it would start a ping-pong, so we leave it (and log it).
//!
//! # Timing defaults (`BrainConfig::new`)
//!
//! keepalive 2 s, deadtime 15 s, warntime 7.5 s, initdead 60 s (Heartbeat seed values);
//! `failback_hold` 30 s (2 × deadtime: a peer must survive two full detection windows before its
//! EIP comes back); reconcile every 30 s ± 20 %; backoff 1 s doubling to 30 s with jitter,
//! 60 s after non-retryable errors; API budget 20 calls/min (token bucket, burst 20).
//! A gap of more than `pause_threshold` (2 × keepalive = 4 s; the shell ticks at least every
//! keepalive) between inputs means we were not scheduled: peer silence is re-measured from the
//! resume, our own steadiness restarts, and no associate is issued for `pause_holdoff`
//! (2 × keepalive + 1 s = 5 s, long enough to hear every live peer twice) *and* until a
//! DescribeAddresses issued after the resume has succeeded.
//!
//! # Partition witness
//!
//! With `witness.enabled`, each healthy node writes a timestamp tag on its own ENI every
//! `write_interval` (10 s). A peer silent past deadtime becomes `Suspect`; we read its stamp
//! (one DescribeNetworkInterfaces) and declare it dead only if `read_time - stamp > stale_after`
//! (25 s). A fresh stamp makes it `SilentWitnessed`: no takeover; we re-read when that stamp
//! would turn stale. If the witness cannot be read, we keep retrying and declare the peer dead
//! only after deadtime + stale_after of silence: an API outage must not strand an EIP forever,
//! and without the API no takeover could be executed anyway. Trade-off: a cut link *plus* an
//! unreadable witness for that long swaps EIPs (Heartbeat behaviour), it never blackholes them.
//! Kill -9 detection with the witness takes at most ~stale_after + 1 s (the stamp stops
//! advancing when the process dies), versus deadtime without it. Stamps compare wall clocks of
//! two hosts, so stale_after must dwarf their skew (NTP on EC2: milliseconds).
//!
//! A stale stamp only counts while our own witness writes succeed: during an API outage nobody
//! can write, and every stamp would look stale once reads work again.
//!
//! # Known limitations
//!
//! * Without the witness, a 3-node cluster split into groups has no tie-breaker: an orphaned
//!   EIP may move once per group.
//! * Without the witness, an EIP that arrived on a node after it fell silent to us (it is then
//!   assumed alive behind a partition) is left alone until that node is heard again, even if
//!   it has really died meanwhile. The witness resolves both.
//! * An associate that EC2 *applies* late (after a newer decision) is healed by the next
//!   reconcile, at the cost of one extra move.
//!
//! API cost: witness writes 360/hour/node (every 10 s); reads 1 per suspect event plus one per
//! `stale_after` while a peer stays silent-but-witnessed; describes ~120/hour/node (every 30 s)
//! plus one per membership change and one per associate; associates only on moves.

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::wire::{self, Heartbeat, HeartbeatPayload};
use crate::cloud::{AddressState, CloudError, Placement, WitnessStamp};

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
}

impl Default for WitnessConfig {
    fn default() -> Self {
        WitnessConfig {
            enabled: true,
            write_interval: Duration::from_secs(10),
            stale_after: Duration::from_secs(25),
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
    /// EC2 calls (describe, associate, witness read/write) this node may spend per minute.
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
            backoff_max: Duration::from_secs(30),
            call_timeout: Duration::from_secs(60),
            pause_threshold: keepalive * 2,
            pause_holdoff: keepalive * 2 + Duration::from_secs(1),
            leave_burst: 3,
            witness: WitnessConfig::default(),
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
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cluster config: {0}")]
pub struct ConfigError(pub String);

/// Matches an API result to the action that asked for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct CallId(pub u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Seal with `wire::Sender` and send to every peer.
    SendHeartbeat(HeartbeatPayload),
    Describe {
        call: CallId,
        allocation_ids: Vec<String>,
    },
    /// AssociateAddress with `AllowReassociation=true`. `target` is always on our own ENI.
    Associate {
        call: CallId,
        allocation_id: String,
        target: Placement,
    },
    /// Compare-and-swap disassociate by association id. Reserved: the current policy never
    /// emits it (reassociation moves an EIP atomically; disassociating opens a gap).
    Disassociate {
        call: CallId,
        association_id: String,
    },
    /// Write our witness stamp (wall clock now) on our own ENI.
    WriteWitness {
        call: CallId,
        eni_id: String,
        node: String,
    },
    ReadWitnesses {
        call: CallId,
        eni_ids: Vec<String>,
    },
    Log {
        level: LogLevel,
        message: String,
    },
    /// Graceful stop finished: safe to exit.
    Stopped,
}

/// The result of an API action, reported with the action's `CallId`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiOutcome {
    Described(Result<Vec<AddressState>, CloudError>),
    /// The new association id.
    Associated(Result<String, CloudError>),
    Disassociated(Result<(), CloudError>),
    WitnessWritten(Result<(), CloudError>),
    WitnessesRead {
        /// Wall clock (unix seconds) when the read completed; stamps are aged against it.
        read_unix: u64,
        result: Result<Vec<WitnessStamp>, CloudError>,
    },
}

/// This node's own health as the health checker sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct OwnHealth {
    /// False: announce `serving=false`, take nothing over, let peers take our EIP.
    pub healthy: bool,
    pub healthy_backends: u16,
    pub total_backends: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum PeerState {
    Init,
    Alive,
    Warn,
    Suspect,
    SilentWitnessed,
    Dead,
    Unhealthy,
    Leaving,
}

impl PeerState {
    fn liveness(self) -> Live {
        match self {
            PeerState::Alive | PeerState::Warn => Live::Up,
            PeerState::Dead | PeerState::Unhealthy | PeerState::Leaving => Live::Down,
            PeerState::Init | PeerState::Suspect | PeerState::SilentWitnessed => Live::Unknown,
        }
    }

    /// Whether the node may be chosen to take over an orphaned EIP: up, or silent but witnessed
    /// alive. On both sides of a witnessed partition the same node then wins, so an orphaned EIP
    /// moves once, not once per side.
    fn candidate(self) -> bool {
        matches!(
            self,
            PeerState::Alive | PeerState::Warn | PeerState::SilentWitnessed
        )
    }

    fn describe(self) -> &'static str {
        match self {
            PeerState::Init => "init",
            PeerState::Alive => "up",
            PeerState::Warn => "late heartbeat",
            PeerState::Suspect => "silent past deadtime, checking witness",
            PeerState::SilentWitnessed => {
                "silent but witness fresh: partition suspected, not taking over"
            }
            PeerState::Dead => "dead",
            PeerState::Unhealthy => "unhealthy (not serving)",
            PeerState::Leaving => "leaving (graceful stop)",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Live {
    Up,
    Down,
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Primary,
    Secondary(usize),
    /// On the node's ENI but on an IP the config doesn't know.
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Unknown { since: Duration },
    Fresh { until: Duration, age_secs: u64 },
    Stale,
}

#[derive(Debug, Clone)]
struct Peer {
    node: usize,
    last_heard: Option<Duration>,
    incarnation: Option<u64>,
    seq: u64,
    last: HeartbeatPayload,
    state: PeerState,
    up_since: Option<Duration>,
    /// Since when this peer's heartbeats have continuously listed us as alive.
    sees_me_since: Option<Duration>,
    witness: Option<Verdict>,
    witnessed_logged: bool,
}

#[derive(Debug, Clone)]
struct Observed {
    placement: Option<Placement>,
    /// When the describe that produced it was issued.
    issued: Duration,
    at: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Decision {
    holder: Option<usize>,
    slot: Option<Slot>,
    why: &'static str,
}

#[derive(Debug, Clone)]
struct EipTrack {
    allocation_id: String,
    owner: usize,
    observed: Option<Observed>,
    /// Issue time of the last observation that showed the EIP somewhere other than its current
    /// holder: a holder's "I hold it" announcement only proves anything if heard after this.
    elsewhere_at: Duration,
    /// Issue time of the first observation that showed it on its current holder.
    arrived_seen_at: Duration,
    /// Nodes (bit per node index) our own plan designated as holder while they were up, since
    /// the EIP was last seen at home: if it sits on one of them, it got there by a plan we agreed
    /// on, not behind a partition.
    agreed_holders: u128,
    /// Describes issued before this call id predate our last associate of this EIP.
    ignore_describes_before: u64,
    pending: Option<CallId>,
    attempts: u32,
    not_before: Duration,
    last_move: Option<Duration>,
    moves: u64,
    decision: Decision,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum CallKind {
    Describe,
    Associate { eip: usize, target: Placement },
    WriteWitness,
    ReadWitnesses { eni_ids: Vec<String> },
}

#[derive(Debug, Clone)]
struct Pending {
    call: CallId,
    kind: CallKind,
    issued: Duration,
}

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

/// splitmix64: tiny, seedable, and stable across crate versions (the simulation tests depend on
/// reproducible schedules).
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [lo, hi] milliseconds.
    fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        let lo_ms = lo.as_millis() as u64;
        let hi_ms = (hi.as_millis() as u64).max(lo_ms);
        Duration::from_millis(lo_ms + self.next() % (hi_ms - lo_ms + 1))
    }
}

fn rendezvous(allocation_id: &str, node: &str) -> u64 {
    let mut h = Sha256::new();
    h.update(allocation_id.as_bytes());
    h.update([0u8]);
    h.update(node.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_be_bytes(b)
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The failover state machine. See the module docs.
#[derive(Debug)]
pub struct Brain {
    cfg: BrainConfig,
    me: usize,
    rng: Rng,
    started: Duration,
    now: Duration,
    /// Peer silence is measured from no earlier than this (start, or resume after a pause).
    listen_since: Duration,
    holdoff_until: Duration,
    /// Last change of anyone's liveness (ours included). Associates only act on observations
    /// issued after it, so a node never moves an EIP on a pre-change picture of the world.
    membership_at: Duration,
    /// Hold-off also lasts until a describe with at least this id succeeded.
    holdoff_describe_from: Option<u64>,
    health: OwnHealth,
    self_up_since: Option<Duration>,
    stopped: bool,
    peers: Vec<Peer>,
    eips: Vec<EipTrack>,
    pending: Vec<Pending>,
    next_call: u64,
    actions: VecDeque<Action>,
    next_heartbeat: Duration,
    next_reconcile: Duration,
    describe_wanted: bool,
    describe_attempts: u32,
    describe_not_before: Duration,
    next_witness_write: Duration,
    witness_write_attempts: u32,
    /// Our own last successful witness write: if even we could not write recently, a peer's
    /// stale stamp says more about the API than about the peer.
    witness_write_ok: Option<Duration>,
    /// Start of our current run of successful witness writes (None after a failure). A peer's
    /// stamp only proves death once we have been writing fine for a whole `stale_after`: right
    /// after an API outage everyone's stamps are old, the peer's too.
    witness_write_ok_since: Option<Duration>,
    witness_read_attempts: u32,
    witness_read_not_before: Duration,
    tokens: f64,
    tokens_at: Duration,
    budget_blocked: bool,
    counters: BrainCounters,
}

impl Brain {
    /// `seed` drives all jitter; `now` is the monotonic time of process start.
    pub fn new(config: BrainConfig, seed: u64, now: Duration) -> Result<Brain, ConfigError> {
        config.validate()?;
        let mut cfg = config;
        // Allocation-id order makes the multi-EIP assignment identical on every node.
        cfg.eips
            .sort_by(|a, b| a.allocation_id.cmp(&b.allocation_id));
        let me = cfg
            .nodes
            .iter()
            .position(|n| n.name == cfg.me)
            .ok_or_else(|| ConfigError("me not in nodes".into()))?;
        let peers = (0..cfg.nodes.len())
            .map(|node| Peer {
                node,
                last_heard: None,
                incarnation: None,
                seq: 0,
                last: HeartbeatPayload::default(),
                state: PeerState::Init,
                up_since: None,
                sees_me_since: None,
                witness: None,
                witnessed_logged: false,
            })
            .collect();
        let mut eips = Vec::with_capacity(cfg.eips.len());
        for e in &cfg.eips {
            let owner = cfg
                .nodes
                .iter()
                .position(|n| n.name == e.owner)
                .ok_or_else(|| ConfigError(format!("unknown owner {}", e.owner)))?;
            eips.push(EipTrack {
                allocation_id: e.allocation_id.clone(),
                owner,
                observed: None,
                elsewhere_at: Duration::ZERO,
                arrived_seen_at: Duration::ZERO,
                agreed_holders: 0,
                ignore_describes_before: 0,
                pending: None,
                attempts: 0,
                not_before: now,
                last_move: None,
                moves: 0,
                decision: Decision {
                    holder: None,
                    slot: None,
                    why: "no observation yet",
                },
            });
        }
        let tokens = f64::from(cfg.api_budget_per_minute);
        let mut brain = Brain {
            me,
            rng: Rng(seed),
            started: now,
            now,
            listen_since: now,
            holdoff_until: now,
            membership_at: now,
            holdoff_describe_from: None,
            health: OwnHealth {
                healthy: true,
                healthy_backends: 0,
                total_backends: 0,
            },
            self_up_since: Some(now),
            stopped: false,
            peers,
            eips,
            pending: Vec::new(),
            next_call: 1,
            actions: VecDeque::new(),
            next_heartbeat: now,
            next_reconcile: now,
            describe_wanted: true,
            describe_attempts: 0,
            describe_not_before: now,
            next_witness_write: now,
            witness_write_attempts: 0,
            witness_write_ok: None,
            witness_write_ok_since: None,
            witness_read_attempts: 0,
            witness_read_not_before: now,
            tokens,
            tokens_at: now,
            budget_blocked: false,
            counters: BrainCounters::default(),
            cfg,
        };
        brain.log(
            LogLevel::Info,
            format!(
                "cluster brain starting as {} ({} nodes, {} EIPs, initdead {:?})",
                brain.cfg.me,
                brain.cfg.nodes.len(),
                brain.eips.len(),
                brain.cfg.initdead
            ),
        );
        brain.evaluate();
        Ok(brain)
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Drains every queued action.
    pub fn drain_actions(&mut self) -> Vec<Action> {
        self.actions.drain(..).collect()
    }

    /// When the shell must call `tick` at the latest (never later than one keepalive).
    pub fn next_deadline(&self) -> Duration {
        if self.stopped {
            return self.now + Duration::from_secs(3600);
        }
        let now = self.now;
        let mut best = self.next_heartbeat.max(now + Duration::from_millis(1));
        let mut consider = |t: Duration| {
            if t > now && t < best {
                best = t;
            }
        };
        consider(self.next_reconcile);
        consider(self.started + self.cfg.initdead);
        consider(self.holdoff_until);
        if self.describe_wanted {
            consider(self.describe_not_before);
        }
        if self.cfg.witness.enabled {
            consider(self.next_witness_write);
            consider(self.witness_read_not_before);
        }
        if let Some(t) = self.self_up_since {
            consider(t + self.cfg.failback_hold);
        }
        for p in &self.peers {
            if p.node == self.me {
                continue;
            }
            let base = self.silence_base(p);
            consider(base + self.cfg.warntime);
            consider(base + self.cfg.deadtime);
            consider(self.started + self.cfg.initdead);
            match p.witness {
                Some(Verdict::Fresh { until, .. }) => {
                    consider(until);
                    consider(until + self.cfg.witness.stale_after);
                }
                Some(Verdict::Unknown { since }) => consider(since + self.cfg.witness.stale_after),
                _ => {}
            }
            if let Some(t) = p.sees_me_since {
                consider(t + self.cfg.failback_hold);
            }
        }
        for e in &self.eips {
            consider(e.not_before);
        }
        for c in &self.pending {
            consider(c.issued + self.cfg.call_timeout);
        }
        if self.budget_blocked {
            let per_sec = f64::from(self.cfg.api_budget_per_minute) / 60.0;
            let wait = ((1.0 - self.tokens).max(0.0) / per_sec).min(60.0);
            consider(now + Duration::from_secs_f64(wait) + Duration::from_millis(1));
        }
        best
    }

    pub fn tick(&mut self, now: Duration) {
        if self.advance(now) {
            self.evaluate();
        }
    }

    /// A heartbeat that `wire::Receiver::open` accepted (authenticated, not replayed).
    pub fn on_heartbeat(&mut self, now: Duration, hb: &Heartbeat) {
        if !self.advance(now) {
            return;
        }
        let Some(idx) = self.cfg.nodes.iter().position(|n| n.name == hb.node) else {
            return;
        };
        if idx == self.me {
            return;
        }
        self.counters.heartbeats_received += 1;
        let me_name = self.cfg.me.clone();
        let now = self.now;
        let p = &mut self.peers[idx];
        let restarted = p.incarnation.is_some_and(|i| i != hb.incarnation);
        if p.incarnation.is_some_and(|i| hb.incarnation < i)
            || (p.incarnation == Some(hb.incarnation) && hb.seq <= p.seq)
        {
            // Reordered or replayed (the shell's ReplayGuard should have dropped it already):
            // acting on it would roll the peer's state back.
            return;
        }
        p.incarnation = Some(hb.incarnation);
        p.seq = hb.seq;
        p.last_heard = Some(now);
        p.last = hb.payload.clone();
        p.witness = None;
        p.witnessed_logged = false;
        if restarted {
            p.sees_me_since = None;
            p.up_since = None;
        }
        if hb.payload.alive_view.contains(&me_name) {
            p.sees_me_since.get_or_insert(now);
        } else {
            p.sees_me_since = None;
        }
        if restarted {
            let msg = format!(
                "Node {}: restarted (incarnation {})",
                hb.node, hb.incarnation
            );
            self.log(LogLevel::Info, msg);
        }
        self.evaluate();
    }

    pub fn set_health(&mut self, now: Duration, health: OwnHealth) {
        if !self.advance(now) {
            return;
        }
        let was = self.health.healthy;
        self.health = health;
        if was != health.healthy {
            if health.healthy {
                self.self_up_since = Some(self.now);
                self.log(LogLevel::Info, "local health: healthy, serving".into());
            } else {
                self.self_up_since = None;
                self.log(
                    LogLevel::Warn,
                    "local health: unhealthy: announcing serving=false, peers take our EIPs".into(),
                );
            }
            self.describe_wanted = true;
            self.membership_at = self.now;
            // Tell peers at once rather than at the next keepalive.
            self.next_heartbeat = self.now;
        }
        self.evaluate();
    }

    /// Graceful stop: tell peers we are leaving (they take over at once), keep our EIP
    /// associated (their reassociation moves it atomically), then `Action::Stopped`.
    pub fn request_stop(&mut self, now: Duration) {
        if !self.advance(now) {
            return;
        }
        self.log(
            LogLevel::Info,
            "graceful stop: announcing leaving; peers take over our EIPs".into(),
        );
        let mut payload = self.payload();
        payload.leaving = true;
        for _ in 0..self.cfg.leave_burst.max(1) {
            self.counters.heartbeats_sent += 1;
            self.actions
                .push_back(Action::SendHeartbeat(payload.clone()));
        }
        self.stopped = true;
        self.actions.push_back(Action::Stopped);
    }

    pub fn on_api_result(&mut self, now: Duration, call: CallId, outcome: ApiOutcome) {
        if !self.advance(now) {
            return;
        }
        let Some(pos) = self.pending.iter().position(|p| p.call == call) else {
            self.log(
                LogLevel::Debug,
                format!("ignoring result of call {} (no longer pending)", call.0),
            );
            return;
        };
        let pending = self.pending.swap_remove(pos);
        match (pending.kind, outcome) {
            (CallKind::Describe, ApiOutcome::Described(r)) => {
                self.on_described(call, pending.issued, r)
            }
            (CallKind::Associate { eip, target }, ApiOutcome::Associated(r)) => {
                self.on_associated(eip, target, r)
            }
            (CallKind::WriteWitness, ApiOutcome::WitnessWritten(r)) => self.on_witness_written(r),
            (
                CallKind::ReadWitnesses { eni_ids },
                ApiOutcome::WitnessesRead { read_unix, result },
            ) => self.on_witnesses(&eni_ids, read_unix, result),
            (kind, _) => {
                self.log(
                    LogLevel::Warn,
                    format!("call {}: outcome does not match request {:?}", call.0, kind),
                );
                self.release(kind);
            }
        }
        self.evaluate();
    }

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

    pub fn counters(&self) -> BrainCounters {
        self.counters
    }

    pub fn config(&self) -> &BrainConfig {
        &self.cfg
    }

    // ---------------------------------------------------------------------------------------
    // time

    /// Moves the clock forward and detects scheduling gaps. Returns false once stopped.
    fn advance(&mut self, now: Duration) -> bool {
        if self.stopped {
            return false;
        }
        // A monotonic clock should never go back; if the shell's does, hold still.
        let now = now.max(self.now);
        let gap = now - self.now;
        self.now = now;
        if gap > self.cfg.pause_threshold {
            self.counters.scheduling_gaps += 1;
            self.listen_since = now;
            self.holdoff_until = now + self.cfg.pause_holdoff;
            self.holdoff_describe_from = Some(self.next_call);
            if self.health.healthy {
                self.self_up_since = Some(now);
            }
            for p in &mut self.peers {
                p.sees_me_since = None;
                p.witness = None;
            }
            self.describe_wanted = true;
            self.describe_not_before = now;
            self.membership_at = now;
            self.next_heartbeat = now;
            self.log(
                LogLevel::Warn,
                format!(
                    "not scheduled for {:.1}s (paused/frozen?): ignoring peer silence across the gap, \
                     holding off takeovers until peers are re-heard and placement re-read",
                    gap.as_secs_f64()
                ),
            );
        }
        true
    }

    fn in_initdead(&self) -> bool {
        self.now < self.started + self.cfg.initdead
    }

    fn in_holdoff(&self) -> bool {
        self.now < self.holdoff_until || self.holdoff_describe_from.is_some()
    }

    fn silence_base(&self, p: &Peer) -> Duration {
        p.last_heard.unwrap_or(self.started).max(self.listen_since)
    }

    // ---------------------------------------------------------------------------------------
    // the evaluation loop

    fn evaluate(&mut self) {
        if self.stopped {
            return;
        }
        self.expire_calls();
        self.update_peers();
        self.decide();
        self.maybe_describe();
        self.maybe_witness();
        self.maybe_heartbeat();
    }

    fn expire_calls(&mut self) {
        let now = self.now;
        let timeout = self.cfg.call_timeout;
        let mut expired = Vec::new();
        self.pending.retain(|c| {
            let keep = now.saturating_sub(c.issued) < timeout;
            if !keep {
                expired.push(c.kind.clone());
            }
            keep
        });
        for kind in expired {
            self.counters.call_timeouts += 1;
            self.log(
                LogLevel::Warn,
                format!("API call {kind:?} got no result within {timeout:?}; retrying"),
            );
            let err = CloudError::Unavailable("no result within call_timeout".into());
            match kind {
                CallKind::Describe => self.on_described(CallId(0), now, Err(err)),
                CallKind::Associate { eip, target } => self.on_associated(eip, target, Err(err)),
                CallKind::WriteWitness => self.on_witness_written(Err(err)),
                CallKind::ReadWitnesses { eni_ids } => self.on_witnesses(&eni_ids, 0, Err(err)),
            }
        }
    }

    fn release(&mut self, kind: CallKind) {
        match kind {
            CallKind::Associate { eip, .. } => self.eips[eip].pending = None,
            CallKind::Describe | CallKind::WriteWitness | CallKind::ReadWitnesses { .. } => {}
        }
    }

    fn classify(&mut self, i: usize) -> PeerState {
        let now = self.now;
        let base = self.silence_base(&self.peers[i]);
        let init_end = self.started + self.cfg.initdead;
        let deadtime = self.cfg.deadtime;
        let witness = self.cfg.witness.clone();
        let p = &mut self.peers[i];
        if p.last_heard.is_some() && p.last.leaving {
            return PeerState::Leaving;
        }
        let silence = now.saturating_sub(base);
        if p.last_heard.is_none() && now < init_end {
            return PeerState::Init;
        }
        if silence <= deadtime {
            if p.last_heard.is_none() {
                return PeerState::Init;
            }
            if !p.last.serving {
                return PeerState::Unhealthy;
            }
            return if silence > self.cfg.warntime {
                PeerState::Warn
            } else {
                PeerState::Alive
            };
        }
        if !witness.enabled {
            return PeerState::Dead;
        }
        // "since" is when we started needing a verdict, so the unreadable-witness allowance
        // (stale_after) is granted in full even when the suspicion starts at initdead's end.
        let v = p.witness.get_or_insert(Verdict::Unknown { since: now });
        match *v {
            Verdict::Stale => PeerState::Dead,
            // Past `until` we re-read; the peer stays witnessed meanwhile (so candidacy doesn't
            // flicker), unless the re-read cannot complete within stale_after.
            Verdict::Fresh { until, .. } if now >= until + witness.stale_after => PeerState::Dead,
            Verdict::Fresh { .. } => PeerState::SilentWitnessed,
            Verdict::Unknown { since } => {
                if now >= since + witness.stale_after {
                    PeerState::Dead
                } else {
                    PeerState::Suspect
                }
            }
        }
    }

    fn update_peers(&mut self) {
        let now = self.now;
        let mut membership_changed = false;
        for i in 0..self.peers.len() {
            if i == self.me {
                continue;
            }
            let new = self.classify(i);
            let old = self.peers[i].state;
            if new == old {
                continue;
            }
            self.peers[i].state = new;
            let (lo, ln) = (old.liveness(), new.liveness());
            if ln == Live::Up && lo != Live::Up {
                self.peers[i].up_since = Some(now);
            }
            if ln != Live::Up {
                self.peers[i].up_since = None;
                self.peers[i].sees_me_since = None;
            }
            if lo != ln || old.candidate() != new.candidate() {
                membership_changed = true;
            }
            let quiet_witness_flip = matches!(
                (old, new),
                (PeerState::SilentWitnessed, PeerState::Suspect)
                    | (PeerState::Suspect, PeerState::SilentWitnessed)
            ) && self.peers[i].witnessed_logged;
            if new == PeerState::SilentWitnessed {
                self.peers[i].witnessed_logged = true;
            }
            if !quiet_witness_flip {
                let level = match new {
                    PeerState::Dead | PeerState::SilentWitnessed | PeerState::Unhealthy => {
                        LogLevel::Warn
                    }
                    _ => LogLevel::Info,
                };
                let unreadable = new == PeerState::Dead
                    && matches!(self.peers[i].witness, Some(Verdict::Unknown { .. }));
                let msg = format!(
                    "Node {}: status {}{}",
                    self.cfg.nodes[i].name,
                    new.describe(),
                    if unreadable {
                        " (witness unreadable for stale_after past deadtime)"
                    } else {
                        ""
                    }
                );
                self.log(level, msg);
            }
        }
        if membership_changed {
            self.describe_wanted = true;
            self.membership_at = now;
        }
    }

    fn live(&self, i: usize) -> Live {
        if i == self.me {
            if self.health.healthy && !self.stopped {
                Live::Up
            } else {
                Live::Down
            }
        } else {
            self.peers[i].state.liveness()
        }
    }

    fn locate(&self, p: &Placement) -> Option<(usize, Slot)> {
        let i = self.cfg.nodes.iter().position(|n| n.eni_id == p.eni_id)?;
        let n = &self.cfg.nodes[i];
        let slot = if n.primary_ip == p.private_ip {
            Slot::Primary
        } else if let Some(k) = n.secondary_ips.iter().position(|ip| *ip == p.private_ip) {
            Slot::Secondary(k)
        } else {
            Slot::Other
        };
        Some((i, slot))
    }

    fn target(&self, d: &Decision) -> Option<Placement> {
        let n = &self.cfg.nodes[d.holder?];
        match d.slot? {
            Slot::Primary => Some(n.primary()),
            Slot::Secondary(k) => n.secondary(k),
            Slot::Other => None,
        }
    }

    /// Whether an EIP sitting on down node `h` is safe to take: `h` cannot be alive and
    /// deliberately holding it behind a partition.
    fn stranded(&self, h: usize, eip: usize) -> bool {
        let p = &self.peers[h];
        match p.state {
            PeerState::Leaving | PeerState::Unhealthy => true,
            // A stale witness is only recorded while our own witness writes succeed (so the
            // API is healthy), which makes it proof of death on its own.
            PeerState::Dead => {
                p.last_heard.is_none()
                    || matches!(p.witness, Some(Verdict::Stale))
                    || self.held_while_heard(h, eip)
            }
            _ => false,
        }
    }

    /// The EIP arrived on `h` after we last heard `h`: only `h` itself could have put it there
    /// (nodes only associate onto themselves), so `h` is alive behind a partition.
    fn moved_while_silent(&self, h: usize, eip: usize) -> bool {
        let p = &self.peers[h];
        p.state == PeerState::Dead
            && p.last_heard.is_some()
            && !matches!(p.witness, Some(Verdict::Stale))
            && !self.held_while_heard(h, eip)
    }

    /// Evidence that `h` already held the EIP while we could still hear it: we observed it
    /// there by then, or `h` announced it after we last saw it elsewhere.
    fn held_while_heard(&self, h: usize, eip: usize) -> bool {
        let p = &self.peers[h];
        let t = &self.eips[eip];
        (h < 128 && t.agreed_holders & (1u128 << h) != 0)
            || p.last_heard.is_some_and(|l| {
                l >= t.arrived_seen_at
                    || (l >= t.elsewhere_at && p.last.held_eips.contains(&t.allocation_id))
            })
    }

    fn failback_ready(&self, owner: usize, holder: usize) -> bool {
        let hold = self.cfg.failback_hold;
        let now = self.now;
        if owner == self.me {
            let self_steady = self.self_up_since.is_some_and(|t| now >= t + hold);
            let holder_agrees = holder == self.me
                || self.peers[holder]
                    .sees_me_since
                    .is_some_and(|t| now >= t + hold);
            self_steady && holder_agrees
        } else {
            self.peers[owner].up_since.is_some_and(|t| now >= t + hold)
        }
    }

    fn plan(&self) -> Vec<Decision> {
        let n = self.cfg.nodes.len();
        let live: Vec<Live> = (0..n).map(|i| self.live(i)).collect();
        let mut free: Vec<Vec<bool>> = self
            .cfg
            .nodes
            .iter()
            .map(|nd| vec![true; nd.secondary_ips.len()])
            .collect();
        let located: Vec<Option<(usize, Slot)>> = self
            .eips
            .iter()
            .map(|e| {
                e.observed
                    .as_ref()
                    .and_then(|o| o.placement.as_ref())
                    .and_then(|p| self.locate(p))
            })
            .collect();
        for (h, slot) in located.iter().flatten() {
            if let Slot::Secondary(k) = slot {
                free[*h][*k] = false;
            }
        }
        let stay = |h: usize, slot: Slot, why| Decision {
            holder: Some(h),
            slot: Some(slot),
            why,
        };
        let wait = |why| Decision {
            holder: None,
            slot: None,
            why,
        };
        let mut out = Vec::with_capacity(self.eips.len());
        let mut orphans = Vec::new();
        for (e, t) in self.eips.iter().enumerate() {
            let owner = t.owner;
            if t.observed.is_none() {
                out.push(wait("no observation yet"));
                continue;
            }
            let holder = located[e];
            let d = match live[owner] {
                Live::Unknown => wait("owner state unknown (init, suspect or witnessed)"),
                Live::Up => match holder {
                    Some((h, Slot::Primary)) if h == owner => stay(owner, Slot::Primary, "home"),
                    Some((h, slot)) if h != owner && live[h] == Live::Up => {
                        if !self.cfg.auto_failback {
                            stay(h, slot, "auto_failback off: stays with its live holder")
                        } else if self.failback_ready(owner, h) {
                            stay(owner, Slot::Primary, "failback: owner steadily alive")
                        } else {
                            stay(h, slot, "failback hold: owner not steadily alive yet")
                        }
                    }
                    Some((h, _)) if h != owner && live[h] == Live::Unknown => {
                        wait("holder state unknown")
                    }
                    Some((h, _)) if h != owner && !self.stranded(h, e) => {
                        wait("partition suspected: moved onto a node while it was silent to us")
                    }
                    _ => stay(owner, Slot::Primary, "owner up"),
                },
                Live::Down => match holder {
                    Some((h, Slot::Secondary(k))) if h != owner && live[h] == Live::Up => {
                        stay(h, Slot::Secondary(k), "survivor keeps it")
                    }
                    Some((h, _)) if h != owner && live[h] == Live::Unknown => {
                        wait("holder state unknown")
                    }
                    Some((h, _)) if h != owner && live[h] == Live::Down && !self.stranded(h, e) => {
                        wait("partition suspected: moved onto a node while it was silent to us")
                    }
                    Some((h, _)) if h == owner && self.moved_while_silent(h, e) => {
                        wait("partition suspected: owner reclaimed it while silent to us")
                    }
                    _ => {
                        orphans.push(e);
                        wait("orphaned")
                    }
                },
            };
            out.push(d);
        }
        let candidate =
            |i: usize| live[i] == Live::Up || (i != self.me && self.peers[i].state.candidate());
        for e in orphans {
            let t = &self.eips[e];
            let best = (0..n)
                .filter(|&i| i != t.owner && candidate(i) && free[i].iter().any(|f| *f))
                .max_by_key(|&i| rendezvous(&t.allocation_id, &self.cfg.nodes[i].name));
            out[e] = match best.and_then(|b| free[b].iter().position(|f| *f).map(|k| (b, k))) {
                Some((b, k)) => {
                    free[b][k] = false;
                    stay(b, Slot::Secondary(k), "takeover: owner down")
                }
                None => wait("owner down, no live survivor with a free secondary IP"),
            };
        }
        out
    }

    fn decide(&mut self) {
        let plan = self.plan();
        for (e, d) in plan.into_iter().enumerate() {
            if self.eips[e].decision.holder != d.holder {
                let who = d
                    .holder
                    .map_or("nobody".to_string(), |h| self.cfg.nodes[h].name.clone());
                let msg = format!(
                    "EIP {}: desired holder {} ({})",
                    self.eips[e].allocation_id, who, d.why
                );
                self.log(LogLevel::Info, msg);
            }
            if let Some(h) = d.holder {
                if h < 128 && (h == self.me || self.live(h) == Live::Up) {
                    self.eips[e].agreed_holders |= 1u128 << h;
                }
            }
            self.eips[e].decision = d;
            if d.holder != Some(self.me) {
                continue;
            }
            let Some(target) = self.target(&d) else {
                continue;
            };
            let t = &self.eips[e];
            let observed = t.observed.as_ref().and_then(|o| o.placement.as_ref());
            if observed == Some(&target) || t.pending.is_some() || self.now < t.not_before {
                continue;
            }
            if t.observed
                .as_ref()
                .is_some_and(|o| o.issued < self.membership_at)
            {
                // The describe requested by the membership change is on its way.
                continue;
            }
            let owner_leaving = self.peers[t.owner].state == PeerState::Leaving;
            if !owner_leaving && (self.in_initdead() || self.in_holdoff()) {
                continue;
            }
            let allocation_id = t.allocation_id.clone();
            let from = observed.map_or("unassociated".to_string(), |p| {
                format!("{}/{}", p.eni_id, p.private_ip)
            });
            if !self.spend() {
                continue;
            }
            let call = self.new_call();
            self.eips[e].pending = Some(call);
            self.pending.push(Pending {
                call,
                kind: CallKind::Associate {
                    eip: e,
                    target: target.clone(),
                },
                issued: self.now,
            });
            self.log(
                LogLevel::Info,
                format!(
                    "EIP {allocation_id}: associating to {}/{} (was {from}; {})",
                    target.eni_id, target.private_ip, d.why
                ),
            );
            self.actions.push_back(Action::Associate {
                call,
                allocation_id,
                target,
            });
        }
    }

    fn maybe_describe(&mut self) {
        if self.now >= self.next_reconcile {
            self.describe_wanted = true;
        }
        if !self.describe_wanted
            || self.eips.is_empty()
            || self.now < self.describe_not_before
            || self.pending.iter().any(|c| c.kind == CallKind::Describe)
        {
            return;
        }
        if !self.spend() {
            return;
        }
        self.describe_wanted = false;
        let interval = self.cfg.reconcile_interval;
        let pct = self.cfg.reconcile_jitter_pct;
        let lo = interval * (100 - pct) / 100;
        let hi = interval * (100 + pct) / 100;
        self.next_reconcile = self.now + self.rng.between(lo, hi);
        let call = self.new_call();
        self.counters.describes += 1;
        self.pending.push(Pending {
            call,
            kind: CallKind::Describe,
            issued: self.now,
        });
        let allocation_ids = self.eips.iter().map(|e| e.allocation_id.clone()).collect();
        self.actions.push_back(Action::Describe {
            call,
            allocation_ids,
        });
    }

    fn maybe_witness(&mut self) {
        if !self.cfg.witness.enabled {
            return;
        }
        let now = self.now;
        let me = &self.cfg.nodes[self.me];
        let (eni_id, node) = (me.eni_id.clone(), me.name.clone());
        if self.health.healthy
            && self.now >= self.next_witness_write
            && !self
                .pending
                .iter()
                .any(|c| c.kind == CallKind::WriteWitness)
            && self.spend()
        {
            let call = self.new_call();
            self.counters.witness_writes += 1;
            self.next_witness_write = self.now + self.cfg.witness.write_interval;
            self.pending.push(Pending {
                call,
                kind: CallKind::WriteWitness,
                issued: self.now,
            });
            self.actions
                .push_back(Action::WriteWitness { call, eni_id, node });
        }
        let eni_ids: Vec<String> = self
            .peers
            .iter()
            .filter(|p| match (p.state, p.witness) {
                (PeerState::Suspect, _) => true,
                (PeerState::SilentWitnessed, Some(Verdict::Fresh { until, .. })) => now >= until,
                // Declared dead without proof (the witness could not be read in time): keep
                // reading until a verdict, or an EIP it may hold behind a partition stays put.
                (PeerState::Dead, Some(Verdict::Unknown { .. } | Verdict::Fresh { .. })) => true,
                _ => false,
            })
            .map(|p| self.cfg.nodes[p.node].eni_id.clone())
            .collect();
        if eni_ids.is_empty()
            || self.now < self.witness_read_not_before
            || self
                .pending
                .iter()
                .any(|c| matches!(c.kind, CallKind::ReadWitnesses { .. }))
            || !self.spend()
        {
            return;
        }
        let call = self.new_call();
        self.counters.witness_reads += 1;
        self.pending.push(Pending {
            call,
            kind: CallKind::ReadWitnesses {
                eni_ids: eni_ids.clone(),
            },
            issued: self.now,
        });
        self.actions
            .push_back(Action::ReadWitnesses { call, eni_ids });
    }

    fn payload(&self) -> HeartbeatPayload {
        let me = &self.cfg.nodes[self.me];
        let held_eips = self
            .eips
            .iter()
            .filter(|e| {
                e.observed
                    .as_ref()
                    .and_then(|o| o.placement.as_ref())
                    .is_some_and(|p| p.eni_id == me.eni_id)
            })
            .map(|e| e.allocation_id.clone())
            .collect();
        let alive_view = (0..self.cfg.nodes.len())
            .filter(|&i| self.live(i) == Live::Up)
            .map(|i| self.cfg.nodes[i].name.clone())
            .collect();
        HeartbeatPayload {
            serving: self.health.healthy,
            healthy_backends: self.health.healthy_backends,
            total_backends: self.health.total_backends,
            held_eips,
            leaving: false,
            alive_view,
        }
    }

    fn maybe_heartbeat(&mut self) {
        if self.now < self.next_heartbeat {
            return;
        }
        self.next_heartbeat = self.now + self.cfg.keepalive;
        self.counters.heartbeats_sent += 1;
        let payload = self.payload();
        self.actions.push_back(Action::SendHeartbeat(payload));
    }

    // ---------------------------------------------------------------------------------------
    // API results

    fn on_described(
        &mut self,
        call: CallId,
        issued: Duration,
        r: Result<Vec<AddressState>, CloudError>,
    ) {
        match r {
            Ok(list) => {
                self.describe_attempts = 0;
                if self
                    .holdoff_describe_from
                    .is_some_and(|from| call.0 >= from)
                {
                    self.holdoff_describe_from = None;
                }
                for a in list {
                    let Some(e) = self
                        .eips
                        .iter()
                        .position(|t| t.allocation_id == a.allocation_id)
                    else {
                        continue;
                    };
                    if call.0 < self.eips[e].ignore_describes_before {
                        continue;
                    }
                    let prev = self.eips[e].observed.as_ref().map(|o| o.placement.clone());
                    let holder_of =
                        |p: Option<&Placement>| p.and_then(|p| self.locate(p)).map(|l| l.0);
                    let new_holder = holder_of(a.placement.as_ref());
                    let prev_holder = self.eips[e]
                        .observed
                        .as_ref()
                        .map(|o| holder_of(o.placement.as_ref()));
                    if new_holder == Some(self.eips[e].owner) {
                        // Home again: past agreements about who holds it are settled.
                        self.eips[e].agreed_holders = 0;
                    }
                    match (&self.eips[e].observed, prev_holder) {
                        (Some(_), Some(ph)) if ph == new_holder => {}
                        (Some(o), _) => {
                            self.eips[e].elsewhere_at = o.issued;
                            self.eips[e].arrived_seen_at = issued;
                        }
                        (None, _) => self.eips[e].arrived_seen_at = issued,
                    }
                    if prev.as_ref() != Some(&a.placement) {
                        let msg = format!(
                            "EIP {}: observed {}",
                            a.allocation_id,
                            self.describe_placement(a.placement.as_ref())
                        );
                        self.log(LogLevel::Info, msg);
                    }
                    self.eips[e].observed = Some(Observed {
                        placement: a.placement,
                        issued,
                        at: self.now,
                    });
                }
            }
            Err(err) => {
                self.api_failed("DescribeAddresses", &err);
                let delay = self.backoff(self.describe_attempts, err.is_retryable());
                self.describe_attempts = self.describe_attempts.saturating_add(1);
                self.describe_not_before = self.now + delay;
                self.describe_wanted = true;
            }
        }
    }

    fn describe_placement(&self, p: Option<&Placement>) -> String {
        match p {
            None => "unassociated".into(),
            Some(p) => match self.locate(p) {
                Some((n, slot)) => format!(
                    "on {} {} ({}/{})",
                    self.cfg.nodes[n].name,
                    match slot {
                        Slot::Primary => "primary",
                        Slot::Secondary(_) => "secondary",
                        Slot::Other => "unknown IP",
                    },
                    p.eni_id,
                    p.private_ip
                ),
                None => format!("on a foreign ENI {}/{}", p.eni_id, p.private_ip),
            },
        }
    }

    fn on_associated(&mut self, e: usize, target: Placement, r: Result<String, CloudError>) {
        self.eips[e].pending = None;
        match r {
            Ok(_association_id) => {
                let t = &mut self.eips[e];
                t.attempts = 0;
                t.elsewhere_at = t.observed.as_ref().map_or(Duration::ZERO, |o| o.issued);
                t.arrived_seen_at = self.now;
                t.observed = Some(Observed {
                    placement: Some(target.clone()),
                    issued: self.now,
                    at: self.now,
                });
                // Any describe already in flight may predate this move.
                t.ignore_describes_before = self.next_call;
                t.last_move = Some(self.now);
                t.moves += 1;
                self.counters.moves += 1;
                let msg = format!(
                    "EIP {}: now on {}/{} (verifying)",
                    t.allocation_id, target.eni_id, target.private_ip
                );
                self.log(LogLevel::Info, msg);
                self.describe_wanted = true;
            }
            Err(err) => {
                let what = format!("AssociateAddress {}", self.eips[e].allocation_id);
                self.api_failed(&what, &err);
                let delay = self.backoff(self.eips[e].attempts, err.is_retryable());
                let t = &mut self.eips[e];
                t.attempts = t.attempts.saturating_add(1);
                t.not_before = self.now + delay;
                if !err.is_retryable() {
                    self.describe_wanted = true;
                }
            }
        }
    }

    fn on_witness_written(&mut self, r: Result<(), CloudError>) {
        match r {
            Ok(()) => {
                self.witness_write_attempts = 0;
                self.witness_write_ok = Some(self.now);
                self.witness_write_ok_since.get_or_insert(self.now);
            }
            Err(err) => {
                self.witness_write_ok_since = None;
                self.api_failed("witness write", &err);
                let delay = self
                    .backoff(self.witness_write_attempts, err.is_retryable())
                    .min(self.cfg.witness.write_interval);
                self.witness_write_attempts = self.witness_write_attempts.saturating_add(1);
                self.next_witness_write = self.now + delay;
            }
        }
    }

    fn on_witnesses(
        &mut self,
        eni_ids: &[String],
        read_unix: u64,
        r: Result<Vec<WitnessStamp>, CloudError>,
    ) {
        let stamps = match r {
            Ok(s) => s,
            Err(err) => {
                self.api_failed("witness read", &err);
                let delay = self.backoff(self.witness_read_attempts, err.is_retryable());
                self.witness_read_attempts = self.witness_read_attempts.saturating_add(1);
                self.witness_read_not_before = self.now + delay;
                return;
            }
        };
        self.witness_read_attempts = 0;
        let stale_after = self.cfg.witness.stale_after.as_secs();
        let writes_work = self
            .witness_write_ok
            .is_some_and(|t| self.now.saturating_sub(t) <= self.cfg.witness.stale_after)
            && self
                .witness_write_ok_since
                .is_some_and(|t| self.now.saturating_sub(t) >= self.cfg.witness.stale_after);
        for eni in eni_ids {
            let Some(i) = self.cfg.nodes.iter().position(|n| n.eni_id == *eni) else {
                continue;
            };
            if i == self.me || self.peers[i].witness.is_none() {
                // Heard again since the read was issued: the heartbeat is better evidence.
                continue;
            }
            let node = self.cfg.nodes[i].name.clone();
            let stamp = stamps
                .iter()
                .filter(|s| s.eni_id == *eni && s.node == node)
                .map(|s| s.stamp_unix)
                .max();
            let verdict = match stamp {
                Some(s) if read_unix.saturating_sub(s) <= stale_after => {
                    let age = read_unix.saturating_sub(s);
                    // Re-read just after the stamp would turn stale if not refreshed.
                    let until = self.now + Duration::from_secs(stale_after - age + 1);
                    Verdict::Fresh {
                        until,
                        age_secs: age,
                    }
                }
                _ => Verdict::Stale,
            };
            if verdict == Verdict::Stale && !writes_work {
                self.log(
                    LogLevel::Warn,
                    format!(
                        "Node {node}: witness stale, but our own witness writes are failing too: \
                         inconclusive, re-reading"
                    ),
                );
                let delay = self.backoff(self.witness_read_attempts, true);
                self.witness_read_attempts = self.witness_read_attempts.saturating_add(1);
                self.witness_read_not_before = self.now + delay;
                continue;
            }
            if verdict == Verdict::Stale {
                let age = stamp.map_or("no stamp".to_string(), |s| {
                    format!("stamp {}s old", read_unix.saturating_sub(s))
                });
                self.log(
                    LogLevel::Warn,
                    format!("Node {node}: witness stale ({age}): confirmed dead"),
                );
            }
            self.peers[i].witness = Some(verdict);
        }
    }

    fn api_failed(&mut self, what: &str, err: &CloudError) {
        self.counters.api_errors += 1;
        let (level, tail) = if err.is_retryable() {
            (LogLevel::Warn, "will retry with backoff")
        } else {
            (
                LogLevel::Error,
                "not retryable; backing off longer, will keep reconciling",
            )
        };
        self.log(level, format!("{what} failed: {err}; {tail}"));
    }

    // ---------------------------------------------------------------------------------------
    // helpers

    fn backoff(&mut self, attempts: u32, retryable: bool) -> Duration {
        let base = if retryable {
            let exp = self
                .cfg
                .backoff_min
                .saturating_mul(1u32 << attempts.min(16));
            exp.min(self.cfg.backoff_max)
        } else {
            self.cfg.backoff_max * 2
        };
        // Jitter in [base/2, base] so that nodes hitting the same throttle spread out.
        self.rng.between(base / 2, base)
    }

    fn spend(&mut self) -> bool {
        let per_sec = f64::from(self.cfg.api_budget_per_minute) / 60.0;
        let cap = f64::from(self.cfg.api_budget_per_minute);
        let elapsed = self.now.saturating_sub(self.tokens_at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * per_sec).min(cap);
        self.tokens_at = self.now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.counters.api_calls += 1;
            self.budget_blocked = false;
            true
        } else {
            if !self.budget_blocked {
                self.log(
                    LogLevel::Warn,
                    "API budget exhausted: deferring EC2 calls".into(),
                );
            }
            self.counters.api_budget_deferrals += 1;
            self.budget_blocked = true;
            false
        }
    }

    fn new_call(&mut self) -> CallId {
        let c = CallId(self.next_call);
        self.next_call += 1;
        c
    }

    fn log(&mut self, level: LogLevel, message: String) {
        self.actions.push_back(Action::Log { level, message });
    }
}
