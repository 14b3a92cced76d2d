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
//!   longer waits for is ignored. The brain never waits for more than one call per EIP, one
//!   describe, one witness read and one witness write (a write unanswered for the witness
//!   `write_interval` is given up and the next one sent). The shell must bound every call with a
//!   timeout; the brain additionally forgets calls older than `call_timeout`.
//! * `Action::Stopped` (after `request_stop`) means it is safe to exit.
//!
//! # Model
//!
//! The code is split by concern: `clock` (deadlines, scheduling gaps), `membership` (peer
//! states from heartbeats, silence and evidence), `placement` (the plan every node computes, the associates this node issues, what
//! DescribeAddresses says), `witness` (EC2 tag stamps), `calls` (budget, backoff, timeouts),
//! `status` (what `edgelb status` shows) and `config`.
//!
//! Peer states (from this node's point of view): `Init` (not heard yet, within our `initdead`),
//! `Alive`, `Warn` (silent > warntime), `Suspect` (silent > deadtime, witness verdict pending),
//! `SilentWitnessed` (silent > deadtime but its witness stamp is fresh: partition, not death),
//! `Dead`, `Failing` (announces `serving=false`, for less than `unhealthy_hold`), `Unhealthy`
//! (announces `serving=false` for longer) and `Leaving` (announced a graceful stop). For
//! placement these collapse to *up* (Alive, Warn), *down* (Dead, Unhealthy, Leaving) and
//! *unknown* (Init, Suspect, SilentWitnessed, Failing): nothing moves for an unknown node.
//!
//! **Evidence of death, fastest first** (measured in `tests/failover*.rs`, see README):
//! 1. `leaving` (clean stop, or a fatal error the process survives long enough to announce):
//!    at once. Only from an incarnation we heard as a member: a recorded `leaving` replayed to
//!    a node that just restarted moves nothing.
//! 2. *Port refused* (`on_refused`): every heartbeat address of the peer answered ICMP
//!    port-unreachable after its last heartbeat. Its host is up and nothing listens: the process
//!    is gone (kill -9, crash, OOM). A partition drops packets silently and a paused process
//!    still owns its socket, so neither produces this. Dead at deadtime, no witness read:
//!    kill -9 is detected in deadtime, witness on or off. (A firewall that REJECTs heartbeats
//!    instead of dropping them would fake it; AWS security groups and NACLs drop.)
//! 3. *EC2 says the instance is not running*: silent past deadtime, no refusal (the host is
//!    gone or unreachable). We read its witness, and with it what EC2 says of the instance behind
//!    its ENI (DescribeInstanceStatus): `pending`, `stopping`, `stopped`, `shutting-down`,
//!    `terminated`, a failed instance status check, or an ENI deleted or detached is proof of
//!    death at once (a partitioned node is `running`, so a partition cannot fake it, and it
//!    holds during our own witness-write failures). This is how an instance that an operator,
//!    an auto-scaling group or a spot interruption stops or terminates is taken over at
//!    deadtime; while the silence is young (< deadtime + stale_after) and the stamp still fresh,
//!    the read repeats every `silent_read_interval` (3 s), so a stop that comes later is seen
//!    within that interval.
//! 4. *Witness stale*: silent past deadtime, no refusal, instance `running` (kernel hang, host
//!    gone without EC2 noticing yet, partition, paused process): the peer's EC2 tag stamp
//!    decides, stale after `stale_after` (default max(deadtime + 3 s, 2 × interval + 3 s): one
//!    missed write is tolerated). That is a lease: no read cadence can prove death sooner than
//!    the stamp ages past `stale_after`, only a shorter `witness_interval` can (each halving
//!    doubles the writes at rest). With the seed timers a hung instance is dead within
//!    deadtime + 5 s (18 s + 1 s re-read granularity + the read); with tight timers (deadtime
//!    1 s) the 17 s floor of the default interval dominates.
//! 5. Without the witness: silence past deadtime alone (Heartbeat's rule).
//!
//! **initdead** is the wait for peers not heard yet (Heartbeat's meaning): it ends as soon as
//! every peer has been heard, and a peer heard and then lost is judged by deadtime and evidence
//! like any other. A restarted owner whose peers all answer gets its EIP back `failback_hold`
//! after its holder first lists it as alive (the holder sends a heartbeat at once on any
//! membership change, so that is one round trip after the owner's first heartbeat).
//!
//! **Nobody can serve.** A peer announcing `serving=false` is `Failing` for `unhealthy_hold`
//! (warntime) before it counts as down, and the taker of its EIP must itself have been healthy
//! for that long: when every node's backends fail (or recover) together, the health checks of
//! the nodes see it at slightly different times, and nothing moves.
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
//! or our plan put it there while we heard it, or it is proven dead (stale witness, EC2 says its
//! instance is not running, or its port refuses), or it is Unhealthy, or we never heard it at
//! all. An EIP that arrived on a node *while that node was silent to us* (a leaver included)
//! proves the node is alive and partitioned from us; touching it would start a ping-pong, so we
//! leave it (and log it). A proof of death older than `stale_after` is re-read before an EIP
//! moves off that node (a node proven dead while unhealthy may have recovered behind a
//! partition), and an EIP is never moved between two silent nodes neither of which is proven
//! dead (both may be alive, the owner reclaiming it).
//!
//! **Agreeing on a taker across a split.** Peers that are dead to us without proof (the witness
//! was unreadable for the grace, the proof is older than `stale_after`, or this incarnation never
//! heard them) stay candidates for orphaned EIPs, so that both sides of a split pick the same
//! rendezvous winner; a winner that is really dead is found out by the re-read (which runs while
//! an orphan waits) and the next one takes over. A peer whose verdict is still pending
//! (`Suspect`: silent past deadtime, witness not read yet) ranks too: if it wins, the others
//! wait one read for its verdict rather than a runner-up taking the EIP (sim seed 15855). An
//! owner dead without proof may be reclaiming its EIP behind the split, so nobody else takes
//! that EIP off another node until a read proves the owner dead; such a wait re-reads old
//! proofs like an orphan does (sim seeds 12914, 7697). A peer that said "leaving" is down at once,
//! and after deadtime of silence it is judged like any silent peer (its witness), so a restart
//! we could not hear does not look like a leaver for ever.
//!
//! # Timing defaults (`BrainConfig::new`)
//!
//! keepalive 2 s, deadtime 15 s, warntime 7.5 s, initdead 60 s (Heartbeat seed values);
//! `failback_hold` 30 s (2 × deadtime: a peer must survive two full detection windows before its
//! EIP comes back); reconcile every 30 s ± 20 %; backoff 1 s doubling to 2 s with jitter (the
//! budget, not the backoff, bounds the rate, so a recovered API is used within seconds), 4 s
//! after non-retryable errors; API budget 20 requests/min (token bucket, burst 20; each call
//! costs `requests_per_call` = the SDK's `max_attempts`, 1 by default, so SDK retries are
//! counted too).
//! A gap of more than `pause_threshold` (2 × keepalive = 4 s; the shell ticks at least every
//! keepalive) between inputs means we were not scheduled: peer silence is re-measured from the
//! resume, our own steadiness restarts, and no associate is issued for `pause_holdoff`
//! (2 × keepalive + 1 s = 5 s, long enough to hear every live peer twice) *and* until a
//! DescribeAddresses issued after the resume has succeeded.
//!
//! # Partition witness
//!
//! With `witness.enabled`, each healthy node writes a timestamp tag on its own ENI every
//! `write_interval` (7 s). A peer silent past deadtime (and not refusing) becomes `Suspect`; we
//! read its stamp and its instance state (DescribeNetworkInterfaces + DescribeInstanceStatus)
//! and declare it dead if EC2 says its instance is not running, or if
//! `read_time - stamp > stale_after` (deadtime + 3 s, at least 2 intervals + 3 s: 18 s with the
//! seed timers). A fresh stamp of a running instance makes it `SilentWitnessed`: no takeover; we
//! re-read every `silent_read_interval` while the silence is young, then when that stamp would
//! turn stale. If the witness cannot be read, we keep retrying and declare the peer dead
//! only after deadtime + stale_after of silence: an API outage must not strand an EIP forever,
//! and without the API no takeover could be executed anyway. Trade-off: a cut link *plus* an
//! unreadable witness for that long may move an EIP off a live node once (Heartbeat behaviour),
//! but not back and forth: an EIP seen arriving on its silent owner (seeds 33508, 42480) or
//! sitting between two silent nodes (seed 3691) waits for a readable proof, so if the witness
//! can never be read (a missing IAM right) such an EIP waits until its owner is heard again.
//! A process that is paused (SIGSTOP) longer than about `stale_after - write_interval` past
//! deadtime looks like a dead host and is taken over; shorter pauses move nothing. Stamps compare wall clocks of
//! two hosts, so stale_after must dwarf their skew (NTP on EC2: milliseconds).
//!
//! A stale stamp only counts while our own witness writes succeed: during an API outage nobody
//! can write, and every stamp would look stale once reads work again. "Succeed" is counted by
//! the time a write was *sent* (an answer 20 s late may carry a 20 s old stamp), over a run of
//! writes sent less than stale_after apart, for a whole stale_after. A live node keeps renewing
//! its own lease through API trouble: the write has first call on the budget (every other call
//! leaves its cost in the bucket), and a write unanswered for `write_interval` is superseded by
//! the next instead of holding up the cadence (sim seeds 55621, 66881, 77660: a live node's
//! stamp went stale, a partitioned peer took its EIP and it took it back).
//!
//! Without the witness, an EIP we first observe on a peer only after we last heard that peer
//! (we restarted while EC2 was unreadable) is not "moved while silent": we cannot tell, and
//! nothing would ever tell us, so it is taken if that peer is dead (sim seed 68950).
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
//! API cost per node (requests; `requests_per_call` = 1 by default). At rest: witness writes
//! 514/hour (every 7 s) and describes ~120/hour (every 30 s ± 20 %), about 634/hour in all, 10.6
//! a minute of the 20-a-minute budget. Reads happen only while a peer is silent past deadtime:
//! 2 requests each (DescribeNetworkInterfaces for the stamps, DescribeInstanceStatus for the
//! instance states), at deadtime, then every `silent_read_interval` (3 s) while the silence is
//! younger than deadtime + stale_after and the stamp fresh (at most ~7 reads, 14 requests, per
//! silence), then once per stale_after (~400 requests/hour during a lasting partition). Plus one
//! describe per membership change and one per associate; associates only on moves. Throttling
//! (`RequestLimitExceeded`) backs off 1 s doubling to 2 s with jitter and never spends beyond
//! the budget.

use std::collections::VecDeque;
use std::time::Duration;

use super::wire::{self, Heartbeat, HeartbeatPayload};
use crate::cloud::{AddressState, CloudError, Placement, WitnessRead};

mod calls;
mod clock;
mod config;
mod membership;
mod placement;
mod status;
mod witness;

pub use config::{BrainConfig, ConfigError, EipSpec, NodeSpec, WitnessConfig};
pub use status::{BrainCounters, ClusterStatus, EipStatus, PeerStatus, PendingCallStatus};

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
        result: Result<WitnessRead, CloudError>,
    },
}

impl ApiOutcome {
    /// EC2 refused the call for its request rate.
    fn throttled(&self) -> bool {
        let t = |e: Option<&CloudError>| matches!(e, Some(CloudError::Throttled(_)));
        match self {
            ApiOutcome::Described(r) => t(r.as_ref().err()),
            ApiOutcome::Associated(r) => t(r.as_ref().err()),
            ApiOutcome::Disassociated(r) | ApiOutcome::WitnessWritten(r) => t(r.as_ref().err()),
            ApiOutcome::WitnessesRead { result, .. } => t(result.as_ref().err()),
        }
    }
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
    /// Announces `serving=false`, for less than `unhealthy_hold`: nothing moves yet.
    Failing,
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
    Unknown {
        since: Duration,
    },
    /// The stamp was fresh: partition, not death. `until`: when it would turn stale;
    /// `recheck`: the next read (earlier than `until` while the silence is young, so an
    /// instance EC2 stops or terminates meanwhile is seen within `silent_read_interval`).
    Fresh {
        until: Duration,
        recheck: Duration,
        age_secs: u64,
    },
    /// Proven dead at `at`: the stamp was stale (while our own writes worked), or EC2 said its
    /// instance was not running. A proof older than stale_after is re-read before an EIP is
    /// moved off that node (a partitioned node that was unhealthy, and so not writing, may have
    /// recovered since: sim seed 3242).
    Stale {
        at: Duration,
    },
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
    /// Last time every heartbeat address of this peer answered "port unreachable" (its host is
    /// up, nothing listens on the heartbeat port): positive evidence that the process is gone.
    refused_at: Option<Duration>,
    /// Whether its current incarnation has been heard as a member (not only saying "leaving"):
    /// a `leaving` from an incarnation we never heard alive (a replay after our restart) moves
    /// nothing.
    heard_alive: bool,
    /// Since when it has announced `serving=false` (see `BrainConfig::unhealthy_hold`).
    unhealthy_since: Option<Duration>,
    /// Sender clock of the newest heartbeat accepted from it.
    last_sent_ms: u64,
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
    /// Issue time of our first successful observation of it (this incarnation): before it we
    /// cannot tell where it was, so a peer last heard before it gives no "moved while silent"
    /// evidence either way (sim seed 68950).
    first_seen_at: Option<Duration>,
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
    /// Where our last associate put it, until a describe confirms (or contradicts) it.
    verifying: Option<Placement>,
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
    /// Issue time of our own last successful witness write: if even we could not write
    /// recently, a peer's stale stamp says more about the API than about the peer.
    witness_write_ok: Option<Duration>,
    /// Issue time starting our current run of successful witness writes (None after a failure;
    /// restarted where two successes were issued stale_after or more apart). A peer's
    /// stamp only proves death once we have been writing fine for a whole `stale_after`: right
    /// after an API outage everyone's stamps are old, the peer's too.
    witness_write_ok_since: Option<Duration>,
    witness_read_attempts: u32,
    witness_read_not_before: Duration,
    tokens: f64,
    tokens_at: Duration,
    budget_blocked: bool,
    /// The last EC2 answer was a throttling error: retries may then spend only the upper half
    /// of the bucket, so the lower half is there for the takeover once the API recovers.
    api_throttled: bool,
    /// Tokens the call that found the budget empty needed.
    budget_need: u32,
    /// The last plan had an orphaned EIP waiting for a taker, or one waiting for a proof that
    /// a silent peer is dead: old proofs of death are then re-read.
    orphans_waiting: bool,
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
                refused_at: None,
                heard_alive: false,
                unhealthy_since: None,
                last_sent_ms: 0,
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
                first_seen_at: None,
                agreed_holders: 0,
                ignore_describes_before: 0,
                pending: None,
                attempts: 0,
                not_before: now,
                last_move: None,
                moves: 0,
                verifying: None,
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
            api_throttled: false,
            budget_need: 1,
            orphans_waiting: false,
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

    pub fn tick(&mut self, now: Duration) {
        if self.advance(now) {
            self.evaluate();
        }
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
        self.api_throttled = outcome.throttled();
        match (pending.kind, outcome) {
            (CallKind::Describe, ApiOutcome::Described(r)) => {
                self.on_described(call, pending.issued, r)
            }
            (CallKind::Associate { eip, target }, ApiOutcome::Associated(r)) => {
                self.on_associated(eip, target, r)
            }
            (CallKind::WriteWitness, ApiOutcome::WitnessWritten(r)) => {
                self.on_witness_written(pending.issued, r)
            }
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

    pub fn counters(&self) -> BrainCounters {
        self.counters
    }

    pub fn config(&self) -> &BrainConfig {
        &self.cfg
    }

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

    fn new_call(&mut self) -> CallId {
        let c = CallId(self.next_call);
        self.next_call += 1;
        c
    }

    fn log(&mut self, level: LogLevel, message: String) {
        self.actions.push_back(Action::Log { level, message });
    }
}
