//! Real multi-process edgelb clusters on loopback for failover tests: per node a config file
//! (listen + backend so it is healthy, `[cluster]` with test timers, world identity, `[aws]`,
//! `[[eip]]`), a key file (0600), a child `edgelb run` process with its log in a file, and
//! optionally a UDP relay on every directed heartbeat link so a test can cut the link
//! (partition) or capture datagrams (replay). Every child is killed on drop; on a failing test
//! the node logs are printed.

use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::moto::World;
use super::{free_port, respond, ChildAwsEnv, LoopbackServer};

/// The shared secret every node of a test cluster uses.
pub const KEY: &str = "dGVzdC1jbHVzdGVyLWtleS0zMi1ieXRlcy1sb25nISE=";

/// Cluster timers and switches for one test (sub-second by default).
#[derive(Debug, Clone)]
pub struct Timers {
    pub keepalive: Duration,
    pub deadtime: Duration,
    pub warntime: Duration,
    pub initdead: Duration,
    pub failback_hold: Duration,
    pub witness: bool,
    pub witness_interval: Duration,
    pub witness_stale_after: Duration,
    pub reconcile: Duration,
    pub api_budget_per_minute: u32,
    pub retry_backoff_max: Duration,
    /// `[aws] max_attempts` (the SDK's retries; the budget is charged this many per call).
    pub max_attempts: u32,
    /// Health-check the backend (needs the health module to have any effect).
    pub check: bool,
    /// Write every peer's ENI and private IPs into each node's config (false: nodes must find
    /// their peers through the EC2 API).
    pub peer_identity: bool,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            keepalive: Duration::from_millis(200),
            deadtime: Duration::from_secs(1),
            warntime: Duration::from_millis(500),
            initdead: Duration::from_secs(2),
            failback_hold: Duration::from_secs(2),
            witness: false,
            witness_interval: Duration::from_secs(1),
            witness_stale_after: Duration::from_secs(8),
            reconcile: Duration::from_secs(2),
            api_budget_per_minute: 600,
            retry_backoff_max: Duration::from_secs(2),
            max_attempts: 3,
            check: false,
            peer_identity: true,
        }
    }
}

impl Timers {
    pub fn with_witness(mut self) -> Self {
        self.witness = true;
        self
    }

    /// The Heartbeat seed values (keepalive 2 s, deadtime 15 s, initdead 60 s) except initdead,
    /// which only delays the test (a restarted node is not part of the measurement).
    pub fn seed() -> Self {
        Timers {
            keepalive: Duration::from_secs(2),
            deadtime: Duration::from_secs(15),
            warntime: Duration::from_millis(7500),
            initdead: Duration::from_secs(15),
            failback_hold: Duration::from_secs(30),
            reconcile: Duration::from_secs(30),
            api_budget_per_minute: 60,
            retry_backoff_max: Duration::from_secs(30),
            ..Timers::default()
        }
    }
}

fn dur(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

/// A loopback UDP forwarder for one directed heartbeat link.
pub struct UdpRelay {
    addr: SocketAddr,
    drop: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    forwarded: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
    captured: Arc<Mutex<Vec<Vec<u8>>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl UdpRelay {
    pub fn start(target: SocketAddr) -> UdpRelay {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("relay bind");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("relay timeout");
        let addr = sock.local_addr().expect("relay addr");
        let drop = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let forwarded = Arc::new(AtomicU64::new(0));
        let dropped = Arc::new(AtomicU64::new(0));
        let captured = Arc::new(Mutex::new(Vec::new()));
        let (d, s, f, x, c) = (
            drop.clone(),
            stop.clone(),
            forwarded.clone(),
            dropped.clone(),
            captured.clone(),
        );
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !s.load(Ordering::Relaxed) {
                let Ok((n, _)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                if d.load(Ordering::Relaxed) {
                    x.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let _ = sock.send_to(&buf[..n], target);
                f.fetch_add(1, Ordering::Relaxed);
                let mut cap = c.lock().expect("capture lock");
                if cap.len() >= 16 {
                    cap.remove(0);
                }
                cap.push(buf[..n].to_vec());
            }
        });
        UdpRelay {
            addr,
            drop,
            stop,
            forwarded,
            dropped,
            captured,
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drop (true) or forward (false) everything from now on.
    pub fn set_cut(&self, cut: bool) {
        self.drop.store(cut, Ordering::Relaxed);
    }

    pub fn forwarded(&self) -> u64 {
        self.forwarded.load(Ordering::Relaxed)
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The latest forwarded datagrams (up to 16), oldest first.
    pub fn captured(&self) -> Vec<Vec<u8>> {
        self.captured.lock().expect("capture lock").clone()
    }
}

impl Drop for UdpRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One edgelb node: its files, ports and (while running) its process.
pub struct EdgeNode {
    pub name: String,
    pub index: usize,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    pub hb_addr: SocketAddr,
    pub listen_port: u16,
    /// Extra environment for the next starts (e.g. `EDGELB_CLOCK_OFFSET_MS`).
    pub extra_env: Vec<(String, String)>,
    /// A command the binary runs under (e.g. `ip netns exec NS`), empty for none. It must exec
    /// the binary in place, so the child's pid stays the node's.
    pub wrap: Vec<String>,
    child: Option<Child>,
    starts: u32,
}

impl EdgeNode {
    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    fn signal(&self, sig: i32) {
        let pid = self.pid().expect("node is running");
        // SAFETY: plain kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0, "kill({pid}, {sig})");
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn sigterm(&self) {
        self.signal(libc::SIGTERM);
    }

    pub fn sigstop(&self) {
        self.signal(libc::SIGSTOP);
    }

    pub fn sigcont(&self) {
        self.signal(libc::SIGCONT);
    }

    /// Waits for the process to exit on its own; returns its exit status (panics after
    /// `timeout`).
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().expect("node is running");
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                self.child = None;
                return st;
            }
            assert!(Instant::now() < deadline, "{} did not exit", self.name);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Everything the node logged so far (all of its runs).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    fn start(&mut self, env: &ChildAwsEnv) {
        assert!(self.child.is_none(), "{} already running", self.name);
        self.starts += 1;
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("node log");
        let _ = writeln!(log, "===== start #{} =====", self.starts);
        let err = log.try_clone().expect("log clone");
        let mut cmd = match self.wrap.split_first() {
            Some((prog, args)) => {
                let mut c = Command::new(prog);
                c.args(args).arg(env!("CARGO_BIN_EXE_edgelb"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_edgelb")),
        };
        cmd.args(["run", "--config"])
            .arg(&self.config_path)
            .env("EDGELB_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err));
        env.apply(&mut cmd);
        cmd.envs(self.extra_env.iter().map(|(k, v)| (k, v)));
        self.child = Some(cmd.spawn().expect("spawn edgelb"));
    }
}

impl Drop for EdgeNode {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            // A stopped process must be continued to die cleanly in every kernel.
            // SAFETY: kill(2) on our own child.
            unsafe {
                libc::kill(pid, libc::SIGCONT);
            }
        }
        self.kill9();
    }
}

/// A test cluster: one edgelb process per world node.
pub struct EdgeCluster {
    pub dir: tempfile::TempDir,
    pub nodes: Vec<EdgeNode>,
    pub backends: Vec<Option<LoopbackServer>>,
    /// `relays[from][to]`: the link from node `from` to node `to` (None on the diagonal or
    /// without relays).
    pub relays: Vec<Vec<Option<UdpRelay>>>,
    pub env: ChildAwsEnv,
    pub timers: Timers,
}

fn free_udp_addr() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("free UDP port")
}

impl EdgeCluster {
    /// Writes configs for every world node (EC2 through `ec2_endpoint`); starts nothing.
    /// `relays`: heartbeats go through a `UdpRelay` per directed link.
    pub fn new(world: &World, ec2_endpoint: &str, timers: Timers, relays: bool) -> EdgeCluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let key_path = dir.path().join("cluster.key");
        write_key(&key_path, KEY);
        let n = world.nodes.len();
        let hb: Vec<SocketAddr> = (0..n).map(|_| free_udp_addr()).collect();
        let relays: Vec<Vec<Option<UdpRelay>>> = (0..n)
            .map(|from| {
                (0..n)
                    .map(|to| (relays && from != to).then(|| UdpRelay::start(hb[to])))
                    .collect()
            })
            .collect();
        let backends: Vec<Option<LoopbackServer>> = (0..n)
            .map(|_| {
                Some(LoopbackServer::start("backend", |_req| async {
                    Some(respond(200, "text/plain", "ok"))
                }))
            })
            .collect();
        let mut nodes = Vec::with_capacity(n);
        for (i, w) in world.nodes.iter().enumerate() {
            let listen_port = free_port();
            let backend_port = backends[i].as_ref().map(|b| b.port()).unwrap_or(1);
            let mut text = format!(
                r#"[node]
name = "{name}"

[global]
workers = 1
grace = "1s"

[log]
access = "off"

[[listen]]
name = "web"
bind = ["127.0.0.1:{listen_port}"]
[listen.health]
inter = "200ms"
rise = 1
fall = 1
[[listen.server]]
name = "app"
address = "127.0.0.1:{backend_port}"
check = {check}

[cluster]
bind = "{bind}"
keepalive = "{keepalive}"
deadtime = "{deadtime}"
warntime = "{warntime}"
initdead = "{initdead}"
auto_failback = true
failback_hold = "{failback_hold}"
auth_key_file = "{key}"
witness = {witness}
witness_interval = "{witness_interval}"
witness_stale_after = "{witness_stale_after}"
"#,
                name = w.name,
                check = timers.check,
                bind = hb[i],
                keepalive = dur(timers.keepalive),
                deadtime = dur(timers.deadtime),
                warntime = dur(timers.warntime),
                initdead = dur(timers.initdead),
                failback_hold = dur(timers.failback_hold),
                key = key_path.display(),
                witness = timers.witness,
                witness_interval = dur(timers.witness_interval),
                witness_stale_after = dur(timers.witness_stale_after),
            );
            for (j, p) in world.nodes.iter().enumerate() {
                let address = match &relays[i][j] {
                    Some(r) => r.addr(),
                    None => hb[j],
                };
                let extra: Vec<String> = p.secondary_ips[1..]
                    .iter()
                    .map(|ip| format!("\"{ip}\""))
                    .collect();
                if i != j && !timers.peer_identity {
                    text.push_str(&format!(
                        "\n[[cluster.node]]\nname = \"{}\"\naddress = [\"{address}\"]\n",
                        p.name
                    ));
                    continue;
                }
                text.push_str(&format!(
                    r#"
[[cluster.node]]
name = "{name}"
address = ["{address}"]
instance_id = "{instance}"
eni_id = "{eni}"
primary_ip = "{primary}"
secondary_ip = "{secondary}"
secondary_ips = [{extra}]
"#,
                    name = p.name,
                    instance = p.instance_id,
                    eni = p.eni_id,
                    primary = p.primary_ip,
                    secondary = p.secondary_ip,
                    extra = extra.join(", "),
                ));
            }
            text.push_str(&format!(
                r#"
[aws]
region = "us-east-1"
attempt_timeout = "2s"
operation_timeout = "5s"
connect_timeout = "1s"
max_attempts = {max_attempts}
reconcile_interval = "{reconcile}"
api_budget_per_minute = {budget}
retry_backoff_max = "{backoff}"
ensure_secondary_ip = false
"#,
                reconcile = dur(timers.reconcile),
                budget = timers.api_budget_per_minute,
                backoff = dur(timers.retry_backoff_max),
                max_attempts = timers.max_attempts,
            ));
            for p in &world.nodes {
                text.push_str(&format!(
                    "\n[[eip]]\nallocation_id = \"{}\"\nowner = \"{}\"\npublic_ip = \"{}\"\n",
                    p.allocation_id, p.name, p.public_ip
                ));
            }
            let config_path = dir.path().join(format!("{}.toml", w.name));
            std::fs::write(&config_path, text).expect("write config");
            nodes.push(EdgeNode {
                name: w.name.clone(),
                index: i,
                config_path,
                log_path: dir.path().join(format!("{}.log", w.name)),
                hb_addr: hb[i],
                listen_port,
                extra_env: Vec::new(),
                wrap: Vec::new(),
                child: None,
                starts: 0,
            });
        }
        let env = ChildAwsEnv::new(ec2_endpoint).with_home(dir.path());
        EdgeCluster {
            dir,
            nodes,
            backends,
            relays,
            env,
            timers,
        }
    }

    pub fn start(&mut self, i: usize) {
        let env = &self.env;
        self.nodes[i].start(env);
    }

    pub fn start_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.start(i);
        }
    }

    pub fn node(&mut self, i: usize) -> &mut EdgeNode {
        &mut self.nodes[i]
    }

    /// Cuts (or heals) every heartbeat link between `a` and `b`, both directions.
    pub fn cut(&self, a: usize, b: usize, cut: bool) {
        for (x, y) in [(a, b), (b, a)] {
            self.relays[x][y]
                .as_ref()
                .expect("cluster built with relays")
                .set_cut(cut);
        }
    }

    pub fn relay(&self, from: usize, to: usize) -> &UdpRelay {
        self.relays[from][to]
            .as_ref()
            .expect("cluster built with relays")
    }

    /// Stops node `i`'s backend (its health checks then fail).
    pub fn stop_backend(&mut self, i: usize) {
        self.backends[i] = None;
    }

    /// Waits until every node logged `needle` (e.g. that it started its cluster member).
    pub fn wait_logged(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        for n in &self.nodes {
            while !n.log().contains(needle) {
                assert!(
                    Instant::now() < deadline,
                    "{} never logged {needle:?}:\n{}",
                    n.name,
                    n.log()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    pub fn logs(&self) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            out.push_str(&format!("----- {} -----\n{}\n", n.name, n.log()));
        }
        out
    }
}

impl Drop for EdgeCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(pid) = n.pid() {
                // SAFETY: kill(2) on our own child.
                unsafe {
                    libc::kill(pid, libc::SIGCONT);
                }
            }
            n.kill9();
        }
        if std::thread::panicking() || std::env::var_os("EDGELB_TEST_LOGS").is_some() {
            eprintln!("{}", self.logs());
        }
    }
}

/// Writes a key file with mode 0600.
/// Asserts that a takeover (or failback) time lies within `lo..=hi`; `goal` names the upper
/// bound.
pub fn assert_within(took: Duration, lo: Duration, hi: Duration, goal: &str) {
    assert!(took >= lo, "too early: {took:?}, before {lo:?}");
    assert!(took <= hi, "{goal}: took {took:?}, bound {hi:?}");
}

pub fn write_key(path: &Path, key: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, format!("{key}\n")).expect("write key");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod key");
}

/// Everything one failover scenario runs on, dropped in a safe order (nodes first, moto last).
pub struct Scenario {
    pub cluster: EdgeCluster,
    pub rec: super::moto::PlacementRecorder,
    pub proxy: super::fault_proxy::FaultProxy,
    pub world: World,
    pub moto: super::moto::Moto,
}

/// How often the recorder samples placements (ground truth, straight at moto).
pub const SAMPLE: Duration = Duration::from_millis(50);

impl Scenario {
    /// moto + world (`secondaries` per node) + fault proxy + one edgelb per node, started and
    /// past initdead; asserts that starting moved nothing.
    pub async fn start(nodes: usize, secondaries: usize, timers: Timers, relays: bool) -> Scenario {
        Self::start_with(nodes, secondaries, timers, relays, |_| {}).await
    }

    /// Like `start`; `prepare` adjusts the cluster (environment, configs) before any node runs.
    pub async fn start_with(
        nodes: usize,
        secondaries: usize,
        timers: Timers,
        relays: bool,
        prepare: impl FnOnce(&mut EdgeCluster),
    ) -> Scenario {
        let moto = super::moto::Moto::start();
        let world = World::build_with(&moto, nodes, secondaries).await;
        let proxy = super::fault_proxy::FaultProxy::start(moto.endpoint());
        let rec = world.record_placements(SAMPLE);
        let mut cluster = EdgeCluster::new(&world, &proxy.endpoint(), timers.clone(), relays);
        prepare(&mut cluster);
        cluster.start_all();
        cluster.wait_logged("heartbeats on", Duration::from_secs(30));
        tokio::time::sleep(timers.initdead + Duration::from_secs(1)).await;
        let sc = Scenario {
            cluster,
            rec,
            proxy,
            world,
            moto,
        };
        for i in 0..nodes {
            assert_eq!(
                sc.rec.moves(&sc.alloc(i)),
                0,
                "start moved {}: {:?}",
                sc.alloc(i),
                sc.rec.timeline()
            );
        }
        sc
    }

    pub fn alloc(&self, i: usize) -> String {
        self.world.nodes[i].allocation_id.clone()
    }

    /// Recorder time (since it started).
    pub fn now(&self) -> Duration {
        self.rec.elapsed()
    }

    /// Waits until the recorder saw `alloc` at `at` at or after recorder time `after`; returns
    /// that recorder time. Panics after `timeout` with the timeline.
    pub async fn wait_seen(
        &self,
        alloc: &str,
        at: &Option<edgelb::cloud::Placement>,
        after: Duration,
        timeout: Duration,
    ) -> Duration {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(c) = self
                .rec
                .history(alloc)
                .into_iter()
                .find(|c| c.at >= after && &c.placement == at)
            {
                return c.at;
            }
            assert!(
                Instant::now() < deadline,
                "{alloc} not seen at {at:?} within {timeout:?} after {after:?}; timeline: {:#?}",
                self.rec.timeline()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// How long after recorder time `from` node `by`'s takeover address held node `of`'s EIP.
    /// Panics after `timeout` with the timeline.
    pub async fn takeover_after(
        &self,
        of: usize,
        by: usize,
        from: Duration,
        timeout: Duration,
    ) -> Duration {
        let at = Some(self.world.node(by).takeover());
        self.wait_seen(&self.alloc(of), &at, from, timeout).await - from
    }

    /// Issue 17's "instance gone" that EC2 knows of: node 1's process is killed (-9) and its
    /// instance stopped through the API. Waits for node 0 to hold node 1's EIP (panics after
    /// `timeout`), asserts it moved within the goal (silence counts from the last heartbeat,
    /// up to one keepalive before the kill, so deadtime - keepalive .. deadtime + 5 s) and that
    /// EC2's instance state decided it; returns how long it took.
    pub async fn stopped_instance_taken_over(&mut self, timeout: Duration, goal: &str) -> Duration {
        let t = self.cluster.timers.clone();
        let killed = self.now();
        self.cluster.node(1).kill9();
        self.world.force_stop(1).await;
        let took = self.takeover_after(1, 0, killed, timeout).await;
        assert_within(
            took,
            t.deadtime - t.keepalive,
            t.deadtime + Duration::from_secs(5),
            goal,
        );
        self.assert_decided_by(
            0,
            &["EC2 says instance", "is stopped"],
            "EC2's instance state",
        );
        took
    }

    /// Asserts that node `i`'s log has every one of `needles`: `what` decided the move.
    pub fn assert_decided_by(&self, i: usize, needles: &[&str], what: &str) {
        let log = self.cluster.nodes[i].log();
        assert!(
            needles.iter().all(|n| log.contains(n)),
            "not decided by {what}:\n{log}"
        );
    }

    /// Changes of `alloc` seen after recorder time `t`.
    pub fn changes_after(&self, alloc: &str, t: Duration) -> Vec<super::moto::PlacementChange> {
        self.rec
            .history(alloc)
            .into_iter()
            .filter(|c| c.at > t)
            .collect()
    }

    /// Asserts that no EIP moved after recorder time `t`.
    pub fn assert_no_moves_after(&self, t: Duration, what: &str) {
        for i in 0..self.world.nodes.len() {
            let ch = self.changes_after(&self.alloc(i), t);
            assert!(ch.is_empty(), "{what}: {} moved: {ch:#?}", self.alloc(i));
        }
    }

    /// EC2 requests by Action since the last `proxy.reset_counts()`.
    pub fn api_counts(&self) -> Vec<(String, u64)> {
        self.proxy
            .counts()
            .into_iter()
            .map(|(k, v)| (k, v.received))
            .collect()
    }
}
