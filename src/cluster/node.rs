//! The cluster's I/O shell: UDP heartbeats, timers and EC2 calls around the sans-io `brain`.
//!
//! `spawn` takes the ready plan of `startup::prepare` (key file, identity, EC2 client, bound
//! heartbeat socket, brain configuration) and starts one drive task. The drive
//! task owns the `Brain`, the wire `Sender`/`Receiver` and the socket, and loops over a
//! `select!` of: a datagram (opened and authenticated, then fed to the brain), the brain's next
//! deadline, the result of an EC2 call (each call runs in its own task and reports back through
//! a channel with its `CallId`), a health poll, and the leave request. After every step it
//! executes the queued actions and publishes `brain.status()` plus wire/API counters to
//! `Runtime::cluster_view`. ACME challenge datagrams (`challenge_wire`) ride the same socket and
//! keys: received ones feed `Runtime::challenges`, and ours go out with every heartbeat and at
//! once when the table changes (`TokenTable::changed`). Brain time is `tokio::time::Instant` since start (monotonic: a
//! SIGSTOP shows up as a gap, which the brain detects).
//!
//! Reload: on a new snapshot generation the key file is re-read; changed keys take effect at
//! once (same incarnation and replay state: nothing moves, no replay window). Changed timers,
//! nodes, EIPs or `[aws]` settings rebuild the brain in place (`apply_settings`), without a
//! failover; only a changed `cluster.bind` needs a restart. (The EC2 client keeps its timeouts.)

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::brain::{Action, ApiOutcome, Brain, CallId, LogLevel, OwnHealth};
use super::last_words;
use super::setup;
use super::startup;
use super::wire::{self, DropReason, RecvCounters};
use crate::cloud::aws::{ApiCalls, Ec2Client};
use crate::cloud::{Ec2, InstanceIdentity};
use crate::config::{parse_bind, Config};
use crate::runtime::Runtime;

/// How long `leave` waits for the brain to announce leaving before giving up.
pub const LEAVE_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest interval between two polls of local health (and of the snapshot generation).
pub const HEALTH_POLL_MAX: Duration = Duration::from_millis(500);
/// A dropped-datagram warning per reason is logged at most this often (the counters count all).
pub const DROP_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// Receive buffer: larger than any valid datagram, so oversized ones are seen as such.
const RECV_BUF: usize = 2048;

/// A running cluster member (absent when the config has no `[cluster]`).
pub struct ClusterHandle {
    leave_tx: mpsc::Sender<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    local_addr: SocketAddr,
}

impl ClusterHandle {
    /// Graceful stop: announce "leaving" so peers take our EIP at once; returns when done (or
    /// after `LEAVE_TIMEOUT`). Our own EIP stays associated: the peers' reassociation moves it.
    pub async fn leave(&self) {
        let (tx, rx) = oneshot::channel();
        if self.leave_tx.send(tx).await.is_err() {
            return;
        }
        if tokio::time::timeout(LEAVE_TIMEOUT, rx).await.is_err() {
            tracing::warn!("cluster: leave not confirmed within {LEAVE_TIMEOUT:?}");
        }
    }

    /// The heartbeat socket's actual address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for ClusterHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the cluster member if the snapshot has a `[cluster]` section: `startup::prepare` runs
/// the start-up sequence, this function only turns its plan into a running drive task.
pub async fn spawn(rt: Arc<Runtime>) -> Result<Option<ClusterHandle>, String> {
    let Some(plan) = startup::prepare(&rt).await? else {
        return Ok(None);
    };
    let start = Instant::now();
    let names: Vec<String> = plan
        .brain_cfg
        .nodes
        .iter()
        .map(|n| n.name.clone())
        .collect();
    let brain = Brain::new(
        plan.brain_cfg,
        plan.incarnation ^ 0x5eed_ed9e_1b00_0000,
        Duration::ZERO,
    )
    .map_err(|e| e.to_string())?;
    let keyring = plan.keys.keyring();
    let sender = wire::Sender::new(plan.me.clone(), plan.incarnation, keyring.clone());
    let receiver = wire::Receiver::new(plan.me, names, keyring);
    let local_addr = plan.local_addr;

    let (results_tx, results_rx) = mpsc::unbounded_channel();
    let (leave_tx, leave_rx) = mpsc::channel(4);
    let shell = Shell {
        rt,
        brain,
        sender,
        receiver,
        socket: plan.socket,
        local_addr,
        peers: plan.peers,
        paths: plan.paths,
        last_heard: Vec::new(),
        ec2: plan.ec2,
        start,
        results_tx,
        identity: plan.identity,
        incarnation: plan.incarnation,
        keys: plan.keys,
        generation: plan.generation,
        cluster_json: plan.cluster_json,
        last_health: None,
        leave_waiters: Vec::new(),
        send_errors: 0,
        recv_errors: 0,
        drop_logged: Vec::new(),
        stopped: false,
    };
    // A panic in the drive task ends membership: the hook says leaving, then exits.
    last_words::install();
    let task = tokio::spawn(last_words::Fatal(Box::pin(
        shell.drive(results_rx, leave_rx),
    )));
    Ok(Some(ClusterHandle {
        leave_tx,
        task,
        local_addr,
    }))
}

/// `EDGELB_FAULT_PANIC_AFTER_MS`: in debug builds only, the drive task panics this long after
/// it starts, so a test can watch a node die of a panic (it must say "leaving" first). Release
/// builds ignore it.
pub const FAULT_PANIC_ENV: &str = "EDGELB_FAULT_PANIC_AFTER_MS";

fn injected_panic_at(start: Instant) -> Option<Instant> {
    if !cfg!(debug_assertions) {
        return None;
    }
    let ms: u64 = std::env::var(FAULT_PANIC_ENV).ok()?.parse().ok()?;
    Some(start + Duration::from_millis(ms))
}

/// `EDGELB_CLOCK_OFFSET_MS` (signed milliseconds, default 0) shifts this process's wall clock
/// as the cluster sees it (heartbeat `sent_unix_ms`, witness stamps): a test knob to run a node
/// "with its clock set back" without touching the host clock. Never needed in production.
pub const CLOCK_OFFSET_ENV: &str = "EDGELB_CLOCK_OFFSET_MS";

fn clock_offset_ms() -> i64 {
    static OFFSET: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *OFFSET.get_or_init(|| {
        std::env::var(CLOCK_OFFSET_ENV)
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    })
}

/// The wall clock the cluster uses (with `EDGELB_CLOCK_OFFSET_MS` applied).
fn wall_clock() -> SystemTime {
    let off = clock_offset_ms();
    let now = SystemTime::now();
    let d = Duration::from_millis(off.unsigned_abs());
    if off >= 0 {
        now + d
    } else {
        now.checked_sub(d).unwrap_or(SystemTime::UNIX_EPOCH)
    }
}

fn unix_ms() -> u64 {
    wall_clock()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// `startup::open_paths` for a reload (synchronous: std sockets handed to tokio).
fn reopen_paths(paths: &[(String, SocketAddr)], local: SocketAddr) -> Vec<Path> {
    let mut out = Vec::with_capacity(paths.len());
    for (node, addr) in paths {
        let sock = std::net::UdpSocket::bind(SocketAddr::new(local.ip(), 0))
            .and_then(|s| s.connect(addr).map(|()| s))
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .and_then(UdpSocket::from_std);
        match sock {
            Ok(sock) => out.push(Path {
                node: node.clone(),
                addr: *addr,
                sock,
                refused_at: None,
            }),
            Err(e) => tracing::warn!("cluster: heartbeat path to {node} at {addr}: {e}"),
        }
    }
    out
}

/// One heartbeat path: a UDP socket connected to one address of one peer. Its send errors
/// carry the peer host's ICMP "port unreachable" back as `ECONNREFUSED`.
pub struct Path {
    pub node: String,
    pub addr: SocketAddr,
    pub sock: UdpSocket,
    /// Last time this path reported "connection refused".
    pub refused_at: Option<Instant>,
}

/// The settings a running brain cannot change, for spotting edits on reload.
pub(super) fn cluster_settings_json(cfg: &Config) -> serde_json::Value {
    serde_json::json!({
        "cluster": cfg.cluster.as_ref().map(|c| {
            let mut c = c.clone();
            c.auth_key_file = String::new();
            c
        }),
        "aws": cfg.aws,
        "eip": cfg.eip,
    })
}

/// Local health as the brain wants it: healthy = listeners bound, not stopping, and every
/// listen has at least one server UP and not in maintenance.
pub fn own_health(rt: &Runtime) -> OwnHealth {
    let snap = rt.load();
    let mut healthy_backends = 0usize;
    let mut total_backends = 0usize;
    let mut every_listen = true;
    for l in &snap.listens {
        let usable = l.usable_servers();
        healthy_backends += usable;
        total_backends += l.servers.len();
        every_listen &= usable > 0;
    }
    let healthy = rt.listeners_ready.load(Ordering::Acquire)
        && !rt.stopping.load(Ordering::Acquire)
        && every_listen;
    OwnHealth {
        healthy,
        healthy_backends: u16::try_from(healthy_backends).unwrap_or(u16::MAX),
        total_backends: u16::try_from(total_backends).unwrap_or(u16::MAX),
    }
}

type Results = mpsc::UnboundedReceiver<(CallId, ApiOutcome)>;

struct Shell {
    rt: Arc<Runtime>,
    brain: Brain,
    sender: wire::Sender,
    receiver: wire::Receiver,
    socket: UdpSocket,
    local_addr: SocketAddr,
    peers: Vec<SocketAddr>,
    paths: Vec<Path>,
    /// Per peer: when we last accepted a heartbeat from it (refusals older than that are moot).
    last_heard: Vec<(String, Instant)>,
    ec2: Ec2Client,
    start: Instant,
    results_tx: mpsc::UnboundedSender<(CallId, ApiOutcome)>,
    identity: InstanceIdentity,
    incarnation: u64,
    keys: setup::KeyMaterial,
    generation: u64,
    cluster_json: serde_json::Value,
    last_health: Option<OwnHealth>,
    leave_waiters: Vec<oneshot::Sender<()>>,
    send_errors: u64,
    recv_errors: u64,
    /// Per drop reason: when it was last logged.
    drop_logged: Vec<(DropReason, Instant)>,
    stopped: bool,
}

impl Shell {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    async fn drive(
        mut self,
        mut results: Results,
        mut leave_rx: mpsc::Receiver<oneshot::Sender<()>>,
    ) {
        let mut buf = vec![0u8; RECV_BUF];
        let poll = self.brain.config().keepalive.min(HEALTH_POLL_MAX);
        let mut health_tick = tokio::time::interval(poll);
        health_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.poll_health();
        let tokens = self.rt.challenges.clone();
        let panic_at = injected_panic_at(self.start);
        loop {
            self.execute();
            self.publish();
            if panic_at.is_some_and(|t| Instant::now() >= t) {
                panic!("injected fault ({FAULT_PANIC_ENV})");
            }
            if self.stopped {
                for w in self.leave_waiters.drain(..) {
                    let _ = w.send(());
                }
                return;
            }
            let mut deadline = self.start + self.brain.next_deadline();
            if let Some(t) = panic_at {
                deadline = deadline.min(t);
            }
            tokio::select! {
                r = self.socket.recv_from(&mut buf) => match r {
                    Ok((n, from)) => {
                        let len = n.min(buf.len());
                        self.on_datagram(&buf[..len], from);
                    }
                    Err(e) => {
                        self.recv_errors += 1;
                        tracing::debug!("cluster: receive error: {e}");
                    }
                },
                _ = tokio::time::sleep_until(deadline) => {
                    let now = self.now();
                    self.brain.tick(now);
                }
                Some((call, outcome)) = results.recv() => {
                    let now = self.now();
                    self.brain.on_api_result(now, call, outcome);
                }
                _ = health_tick.tick() => {
                    self.poll_health();
                    self.check_reload();
                }
                _ = tokens.changed.notified() => self.send_challenges(),
                req = leave_rx.recv() => match req {
                    Some(waiter) => {
                        self.leave_waiters.push(waiter);
                        let now = self.now();
                        self.brain.request_stop(now);
                    }
                    // The handle is gone: nobody can ask us to leave any more.
                    None => return,
                },
            }
        }
    }

    fn on_datagram(&mut self, datagram: &[u8], from: SocketAddr) {
        match self.receiver.open_any_at(datagram, unix_ms()) {
            Ok(wire::Datagram::Challenges(m)) => {
                let now = std::time::Instant::now();
                self.rt.challenges.heard(&m.node, now);
                if share_challenges(&self.rt) {
                    self.rt.challenges.apply_peer(&m.node, &m.payload, now);
                }
            }
            Ok(wire::Datagram::Heartbeat(hb)) => {
                self.rt
                    .challenges
                    .heard(&hb.node, std::time::Instant::now());
                let at = Instant::now();
                match self.last_heard.iter_mut().find(|(n, _)| *n == hb.node) {
                    Some((_, t)) => *t = at,
                    None => self.last_heard.push((hb.node.clone(), at)),
                }
                let now = self.now();
                self.brain.on_heartbeat(now, &hb);
            }
            Err(reason) => self.log_drop(reason, from),
        }
    }

    fn log_drop(&mut self, reason: DropReason, from: SocketAddr) {
        let now = Instant::now();
        let due = match self.drop_logged.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, at)) if now.duration_since(*at) < DROP_LOG_INTERVAL => false,
            Some((_, at)) => {
                *at = now;
                true
            }
            None => {
                self.drop_logged.push((reason, now));
                true
            }
        };
        if due {
            let c = self.receiver.counters();
            tracing::warn!(
                "cluster: dropped heartbeat datagram from {from}: {reason} (dropped so far: \
                 malformed {}, bad MAC {}, unknown key {}, replayed {}, oversized {}, unknown \
                 node {}, own {})",
                c.malformed,
                c.bad_mac,
                c.unknown_key,
                c.replayed,
                c.oversized,
                c.unknown_node,
                c.own
            );
        } else {
            tracing::debug!("cluster: dropped heartbeat datagram from {from}: {reason}");
        }
    }

    fn poll_health(&mut self) {
        let h = own_health(&self.rt);
        if self.last_health != Some(h) {
            self.last_health = Some(h);
            let now = self.now();
            self.brain.set_health(now, h);
        }
    }

    /// Re-reads the key file when a new configuration generation was published.
    fn check_reload(&mut self) {
        let snap = self.rt.load();
        if snap.generation == self.generation {
            return;
        }
        self.generation = snap.generation;
        let Some(cl) = snap.config.cluster.as_ref() else {
            tracing::warn!(
                "cluster: [cluster] removed from the configuration; still running as a cluster \
                 member until restart"
            );
            return;
        };
        let settings = cluster_settings_json(&snap.config);
        if settings != self.cluster_json {
            self.apply_settings(&snap.config, settings);
        }
        match setup::read_key_file(std::path::Path::new(&cl.auth_key_file)) {
            Ok(keys) if keys == self.keys => {}
            Ok(keys) => {
                // Same incarnation, same sequence numbers, same replay state: a key rotation
                // is invisible to the failover logic and opens no replay window.
                let keyring = keys.keyring();
                self.receiver.set_keys(keyring.clone());
                self.sender.set_keys(keyring);
                self.keys = keys;
                tracing::info!(
                    "cluster: key file re-read: signing with key id {}, accepting key ids {:?}",
                    self.keys.signing,
                    self.keys.keys.iter().map(|(id, _)| *id).collect::<Vec<_>>()
                );
            }
            Err(e) => tracing::error!("cluster: reload: {e}; keeping the current keys"),
        }
    }

    /// Applies changed timers, nodes, EIPs or API settings without a failover: a new brain is
    /// built from the new config and takes over in place. Peers see the same incarnation keep
    /// talking, so nothing changes for them; this node re-reads placement and, as after a start,
    /// takes over nobody's EIP for `initdead` (its own stays where it is: no call is made when
    /// placement is right). A changed `bind` needs a restart.
    fn apply_settings(&mut self, cfg: &Config, settings: serde_json::Value) {
        let Some(cl) = cfg.cluster.as_ref() else {
            return;
        };
        let me = self.brain.config().me.clone();
        if parse_bind(&cl.bind).ok() != Some(self.local_addr) && !cl.bind.ends_with(":0") {
            tracing::warn!("cluster: cluster.bind changed: applies after a restart");
        }
        // Peers already located keep their slots unless the new config says otherwise.
        let known: std::collections::HashMap<String, crate::cloud::aws::EniSlots> = self
            .brain
            .config()
            .nodes
            .iter()
            .map(|n| {
                (
                    n.name.clone(),
                    crate::cloud::aws::EniSlots {
                        eni_id: n.eni_id.clone(),
                        primary_ip: n.primary_ip,
                        secondary_ips: n.secondary_ips.clone(),
                    },
                )
            })
            .collect();
        let built = setup::brain_config(cfg, &me, &self.identity, &known)
            .and_then(|b| {
                let peers = setup::peer_addresses(cl, &me)?;
                let paths = setup::peer_paths(cl, &me)?;
                Ok((b, peers, paths))
            })
            .and_then(|(b, peers, paths)| {
                let now = self.now();
                Brain::new(b, self.incarnation ^ now.as_nanos() as u64, now)
                    .map(|brain| (brain, peers, paths))
                    .map_err(|e| e.to_string())
            });
        match built {
            Ok((brain, peers, paths)) => {
                self.brain = brain;
                self.peers = peers;
                if self
                    .paths
                    .iter()
                    .map(|p| (p.node.clone(), p.addr))
                    .collect::<Vec<_>>()
                    != paths
                {
                    self.paths = reopen_paths(&paths, self.local_addr);
                }
                self.cluster_json = settings;
                self.last_health = None;
                tracing::info!(
                    "cluster: settings reloaded in place (no failover); takeovers resume after \
                     initdead"
                );
            }
            Err(e) => {
                tracing::error!("cluster: reload rejected, keeping the running settings: {e}")
            }
        }
    }

    /// Executes every queued action.
    fn execute(&mut self) {
        while let Some(action) = self.brain.poll_action() {
            match action {
                Action::SendHeartbeat(payload) => self.send(&payload),
                Action::Describe {
                    call,
                    allocation_ids,
                } => {
                    let ec2 = self.ec2.clone();
                    self.run(call, async move {
                        ApiOutcome::Described(ec2.describe_addresses(&allocation_ids).await)
                    });
                }
                Action::Associate {
                    call,
                    allocation_id,
                    target,
                } => {
                    tracing::info!(
                        "cluster: taking {allocation_id} onto {}/{}",
                        target.eni_id,
                        target.private_ip
                    );
                    let ec2 = self.ec2.clone();
                    self.run(call, async move {
                        ApiOutcome::Associated(ec2.associate(&allocation_id, &target).await)
                    });
                }
                Action::Disassociate {
                    call,
                    association_id,
                } => {
                    let ec2 = self.ec2.clone();
                    self.run(call, async move {
                        ApiOutcome::Disassociated(ec2.disassociate(&association_id).await)
                    });
                }
                Action::WriteWitness { call, eni_id, node } => {
                    let ec2 = self.ec2.clone();
                    self.run(call, async move {
                        ApiOutcome::WitnessWritten(
                            ec2.write_witness(&eni_id, &node, wall_clock()).await,
                        )
                    });
                }
                Action::ReadWitnesses { call, eni_ids } => {
                    let ec2 = self.ec2.clone();
                    self.run(call, async move {
                        let result = ec2.read_witnesses(&eni_ids).await;
                        let read_unix = unix_ms() / 1000;
                        ApiOutcome::WitnessesRead { read_unix, result }
                    });
                }
                Action::Log { level, message } => match level {
                    LogLevel::Debug => tracing::debug!("cluster: {message}"),
                    LogLevel::Info => tracing::info!("cluster: {message}"),
                    LogLevel::Warn => tracing::warn!("cluster: {message}"),
                    LogLevel::Error => tracing::error!("cluster: {message}"),
                },
                Action::Stopped => {
                    tracing::info!("cluster: left the cluster");
                    self.stopped = true;
                }
            }
        }
    }

    /// Runs one EC2 call in its own task; the result comes back through the channel. The SDK's
    /// operation timeout bounds it, and the brain forgets calls older than its call_timeout.
    fn run<F>(&self, call: CallId, fut: F)
    where
        F: std::future::Future<Output = ApiOutcome> + Send + 'static,
    {
        let tx = self.results_tx.clone();
        tokio::spawn(async move {
            let outcome = fut.await;
            let _ = tx.send((call, outcome));
        });
    }

    /// Seals once and sends the same bytes to every address of every peer, without waiting;
    /// then our ACME challenge datagrams, if an order is in flight anywhere.
    fn send(&mut self, payload: &wire::HeartbeatPayload) {
        let bytes = match self.sender.seal(payload, unix_ms()) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!("cluster: cannot encode heartbeat: {e}");
                return;
            }
        };
        if payload.leaving {
            last_words::clear();
        } else {
            // What to say if this process dies of a panic before the next heartbeat.
            let mut leaving = payload.clone();
            leaving.leaving = true;
            if let Ok(words) = self
                .sender
                .seal_ahead(&leaving, unix_ms(), last_words::SEQ_AHEAD)
            {
                let targets = self.paths.iter().map(|p| p.addr).collect();
                last_words::prepare(words, targets, self.local_addr);
            }
        }
        self.send_bytes(&bytes);
        self.send_challenges();
    }

    /// Our HTTP-01 tokens and acknowledgements (nothing when no order is in flight).
    fn send_challenges(&mut self) {
        if self.stopped || !share_challenges(&self.rt) {
            return;
        }
        let now = std::time::Instant::now();
        self.rt.challenges.expire(now);
        for batch in self.rt.challenges.outgoing(now) {
            match self.sender.seal_challenges(&batch, unix_ms()) {
                Ok(bytes) => self.send_bytes(&bytes),
                Err(e) => tracing::error!("cluster: cannot encode ACME challenges: {e}"),
            }
        }
    }

    fn send_bytes(&mut self, bytes: &[u8]) {
        let mut refused = Vec::new();
        for (k, path) in self.paths.iter_mut().enumerate() {
            match path.sock.try_send(bytes) {
                Ok(_) => {}
                // The peer's host answered an earlier datagram with "port unreachable".
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    path.refused_at = Some(Instant::now());
                    refused.push(k);
                    // That send was consumed by the error report; send this one again.
                    let _ = path.sock.try_send(bytes);
                }
                Err(e) => {
                    self.send_errors += 1;
                    tracing::debug!("cluster: heartbeat to {} at {}: {e}", path.node, path.addr);
                }
            }
        }
        for k in refused {
            self.on_path_refused(k);
        }
    }

    /// A path refused: if every path of that peer refused since we last heard it, its process
    /// is gone (host up, port closed); the brain treats that as proof of death at deadtime.
    fn on_path_refused(&mut self, k: usize) {
        let node = self.paths[k].node.clone();
        let heard = self
            .last_heard
            .iter()
            .find(|(n, _)| *n == node)
            .map(|(_, t)| *t);
        let all = self
            .paths
            .iter()
            .filter(|p| p.node == node)
            .all(|p| p.refused_at.is_some_and(|r| heard.is_none_or(|h| r > h)));
        if all {
            tracing::debug!("cluster: every heartbeat path to {node} refuses");
            let now = self.now();
            self.brain.on_refused(now, &node);
        }
    }

    fn publish(&self) {
        let view = ClusterView {
            status: self.brain.status(),
            incarnation: self.incarnation,
            bind: self.local_addr,
            peer_addresses: &self.peers,
            identity: &self.identity,
            wire: self.receiver.counters(),
            send_errors: self.send_errors,
            recv_errors: self.recv_errors,
            api_calls: api_calls_json(&self.ec2.api_calls()),
            witness: self.brain.config().witness.enabled,
        };
        match serde_json::to_value(&view) {
            Ok(v) => self.rt.cluster_view.store(Some(Arc::new(v))),
            Err(e) => tracing::debug!("cluster: status not serializable: {e}"),
        }
    }
}

/// `[acme] share_challenges` (true without `[acme]`: a node that orders nothing still answers
/// its peers' challenges).
fn share_challenges(rt: &Runtime) -> bool {
    rt.load()
        .config
        .acme
        .as_ref()
        .is_none_or(|a| a.share_challenges)
}

/// What `Runtime::cluster_view` holds: the brain's status flattened, plus the shell's own facts.
#[derive(serde::Serialize)]
struct ClusterView<'a> {
    #[serde(flatten)]
    status: super::brain::ClusterStatus,
    incarnation: u64,
    bind: SocketAddr,
    peer_addresses: &'a [SocketAddr],
    identity: &'a InstanceIdentity,
    wire: RecvCounters,
    send_errors: u64,
    recv_errors: u64,
    api_calls: serde_json::Value,
    witness: bool,
}

/// `{ "DescribeAddresses": {"calls":..,"attempts":..,"errors":..}, ... }`.
fn api_calls_json(calls: &ApiCalls) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for (name, c) in &calls.by_action {
        m.insert(
            (*name).to_string(),
            serde_json::json!({"calls": c.calls, "attempts": c.attempts, "errors": c.errors}),
        );
    }
    serde_json::Value::Object(m)
}
