//! The patched moto server as a child process (`Moto`), the EC2 world built inside it (`World`),
//! and observers of where each Elastic IP is (`placement_of`, `wait_for_placement`,
//! `PlacementRecorder`).
//!
//! Observers talk to moto directly with their own SDK client, never through a fault proxy and
//! never through the code under test, so what they report is ground truth.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_ec2::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_ec2::types::Filter;
use edgelb::cloud::Placement;

use super::{free_port, http_blocking, ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY};

/// How long moto may take to answer its first request (Python import ≈0.5 s on a quiet box;
/// generous because two cores are shared with compilers).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Any AMI from moto's catalogue; moto does not validate AMIs by default anyway.
const AMI: &str = "ami-760aaa0f";
const SUBNET_PREFIX: [u8; 3] = [10, 0, 1];
pub const MAX_NODES: usize = 20;

/// A patched moto server (`deploy/demo/moto_server.py`) on a free loopback port, killed on
/// drop. Python interpreter: `$EDGELB_TEST_PYTHON`, else `python3`.
pub struct Moto {
    child: Child,
    port: u16,
    endpoint: String,
    dir: tempfile::TempDir,
}

impl Moto {
    /// Spawns moto and blocks until it answers. Panics (with moto's log) if it cannot start.
    pub fn start() -> Moto {
        let mut last_err = String::new();
        // A port picked free can be taken before moto binds it; try a few.
        for _ in 0..3 {
            match Self::try_start() {
                Ok(m) => return m,
                Err(e) => last_err = e,
            }
        }
        panic!("could not start moto: {last_err}");
    }

    fn try_start() -> Result<Moto, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let port = free_port();
        let log_path = dir.path().join("moto.log");
        let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let python = std::env::var("EDGELB_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let child = Command::new(&python)
            .arg(script_path())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("HOME", dir.path())
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
            .env("AWS_DEFAULT_REGION", REGION)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("EDGELB_MOTO_PARENT_PID", std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .spawn()
            .map_err(|e| {
                format!("spawn {python}: {e} (is moto installed? pip install 'moto[server]')")
            })?;
        let mut moto = Moto {
            child,
            port,
            endpoint: format!("http://127.0.0.1:{port}"),
            dir,
        };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Ok(Some(status)) = moto.child.try_wait() {
                return Err(format!("moto exited with {status}: {}", moto.log()));
            }
            if let Ok((200, _)) =
                http_blocking(port, "POST", "/moto-api/reset", b"", Duration::from_secs(2))
            {
                return Ok(moto);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "moto did not answer within {STARTUP_TIMEOUT:?}: {}",
                    moto.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Empties the account (`POST /moto-api/reset`).
    pub fn reset(&self) {
        let (status, body) = http_blocking(
            self.port,
            "POST",
            "/moto-api/reset",
            b"",
            Duration::from_secs(10),
        )
        .expect("moto reset");
        assert_eq!(
            status,
            200,
            "moto reset: {}",
            String::from_utf8_lossy(&body)
        );
    }

    /// moto's stdout/stderr so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("moto.log")).unwrap_or_default()
    }

    /// A plain SDK client straight at moto (no fault proxy, no edgelb code).
    pub fn sdk_client(&self) -> aws_sdk_ec2::Client {
        sdk_client(&self.endpoint)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn script_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/demo/moto_server.py")
}

/// An SDK client for `endpoint` with test credentials, built without reading the environment.
pub fn sdk_client(endpoint: &str) -> aws_sdk_ec2::Client {
    let conf = aws_sdk_ec2::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new(
            ACCESS_KEY_ID,
            SECRET_ACCESS_KEY,
            None,
            None,
            "test",
        ))
        .endpoint_url(endpoint)
        .timeout_config(
            aws_sdk_ec2::config::timeout::TimeoutConfig::builder()
                .operation_timeout(Duration::from_secs(30))
                .build(),
        )
        .build();
    aws_sdk_ec2::Client::from_conf(conf)
}

/// One node of the world: an instance with one ENI carrying a primary and a secondary private
/// IP, and its own EIP on the primary IP.
#[derive(Debug, Clone)]
pub struct WorldNode {
    /// `nodeA`, `nodeB`, ...
    pub name: String,
    pub instance_id: String,
    pub eni_id: String,
    pub mac: String,
    pub primary_ip: Ipv4Addr,
    pub secondary_ip: Ipv4Addr,
    /// Every secondary IP, `secondary_ip` first (more than one with `World::build_with`).
    pub secondary_ips: Vec<Ipv4Addr>,
    pub allocation_id: String,
    pub public_ip: Ipv4Addr,
    /// The association made while building; stale once the EIP has moved.
    pub association_id: String,
}

impl WorldNode {
    /// Where this node's own EIP lives normally.
    pub fn home(&self) -> Placement {
        Placement {
            eni_id: self.eni_id.clone(),
            private_ip: self.primary_ip,
        }
    }

    /// Where a peer's EIP goes when this node takes it over.
    pub fn takeover(&self) -> Placement {
        Placement {
            eni_id: self.eni_id.clone(),
            private_ip: self.secondary_ip,
        }
    }

    /// Every placement on this node's secondary IPs.
    pub fn takeover_slots(&self) -> Vec<Placement> {
        self.secondary_ips
            .iter()
            .map(|ip| Placement {
                eni_id: self.eni_id.clone(),
                private_ip: *ip,
            })
            .collect()
    }
}

/// The EC2 world: VPC 10.0.0.0/16, subnet 10.0.1.0/24, node i with private IPs
/// 10.0.1.(10i+10) (primary) and 10.0.1.(10i+11) (secondary), EIP i on node i's primary IP.
#[derive(Debug, Clone)]
pub struct World {
    pub endpoint: String,
    pub region: String,
    pub vpc_id: String,
    pub subnet_id: String,
    pub nodes: Vec<WorldNode>,
    client: aws_sdk_ec2::Client,
}

impl World {
    /// Resets moto and builds the world with `nodes` nodes (1..=20).
    pub async fn build(moto: &Moto, nodes: usize) -> World {
        Self::build_with(moto, nodes, 1).await
    }

    /// Like `build`, with `secondaries` (1..=9) secondary IPs per node: 10.0.1.(10i+11) up to
    /// 10.0.1.(10i+10+secondaries). A node that must carry the EIPs of k dead peers needs k.
    pub async fn build_with(moto: &Moto, nodes: usize, secondaries: usize) -> World {
        assert!((1..=MAX_NODES).contains(&nodes), "1..={MAX_NODES} nodes");
        assert!((1..=9).contains(&secondaries), "1..=9 secondary IPs");
        moto.reset();
        let client = moto.sdk_client();
        let emu = edgelb::cloud::emulator::build_world(&client, REGION, nodes, secondaries)
            .await
            .unwrap_or_else(|e| panic!("building the EC2 world: {e}"));
        let built = emu
            .nodes
            .into_iter()
            .map(|n| WorldNode {
                name: n.name,
                instance_id: n.instance_id,
                eni_id: n.eni_id,
                mac: n.mac,
                primary_ip: n.primary_ip,
                secondary_ip: n.secondary_ips[0],
                secondary_ips: n.secondary_ips,
                allocation_id: n.allocation_id,
                public_ip: n.public_ip,
                association_id: n.association_id,
            })
            .collect();
        World {
            endpoint: moto.endpoint().to_string(),
            region: REGION.to_string(),
            vpc_id: emu.vpc_id,
            subnet_id: emu.subnet_id,
            nodes: built,
            client,
        }
    }

    pub fn node(&self, i: usize) -> &WorldNode {
        &self.nodes[i]
    }

    pub fn allocation_ids(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.allocation_id.clone()).collect()
    }

    pub fn eni_ids(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.eni_id.clone()).collect()
    }

    /// The observer's own SDK client (straight at moto).
    pub fn client(&self) -> &aws_sdk_ec2::Client {
        &self.client
    }

    /// Stops node `i`'s instance at once (`StopInstances --force`: an operator, an auto-scaling
    /// group, a spot interruption).
    pub async fn force_stop(&self, i: usize) {
        self.client
            .stop_instances()
            .instance_ids(&self.nodes[i].instance_id)
            .force(true)
            .send()
            .await
            .expect("StopInstances");
    }

    /// A fresh ENI in the world's subnet with only a primary IP (`10.0.1.<host>`).
    pub async fn create_bare_eni(&self, host: u8) -> String {
        self.client
            .create_network_interface()
            .subnet_id(&self.subnet_id)
            .private_ip_address(Ipv4Addr::new(10, 0, 1, host).to_string())
            .send()
            .await
            .expect("CreateNetworkInterface")
            .network_interface
            .and_then(|n| n.network_interface_id)
            .expect("ENI id")
    }

    /// Where the EIP is now (ground truth from moto), `None` when unassociated.
    pub async fn placement_of(&self, allocation_id: &str) -> Option<Placement> {
        self.placements()
            .await
            .into_iter()
            .find(|(a, _)| a == allocation_id)
            .and_then(|(_, p)| p)
    }

    /// Every world EIP's placement, in node order.
    pub async fn placements(&self) -> Vec<(String, Option<Placement>)> {
        placements(&self.client, &self.allocation_ids()).await
    }

    /// Polls (every 50 ms) until the EIP is at `expected` (`None` = unassociated); returns how
    /// long that took. Panics with the last observed placement after `timeout`.
    pub async fn wait_for_placement(
        &self,
        allocation_id: &str,
        expected: Option<Placement>,
        timeout: Duration,
    ) -> Duration {
        let start = Instant::now();
        loop {
            let now = self.placement_of(allocation_id).await;
            if now == expected {
                return start.elapsed();
            }
            if start.elapsed() > timeout {
                panic!("{allocation_id} not at {expected:?} after {timeout:?}; it is at {now:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts recording placement changes of all world EIPs every `interval` (~100 ms is good).
    pub fn record_placements(&self, interval: Duration) -> PlacementRecorder {
        PlacementRecorder::start(self.client.clone(), self.allocation_ids(), interval)
    }
}

async fn placements(
    client: &aws_sdk_ec2::Client,
    allocation_ids: &[String],
) -> Vec<(String, Option<Placement>)> {
    try_placements(client, allocation_ids)
        .await
        .unwrap_or_else(|e| panic!("observer DescribeAddresses: {e}"))
}

async fn try_placements(
    client: &aws_sdk_ec2::Client,
    allocation_ids: &[String],
) -> Result<Vec<(String, Option<Placement>)>, String> {
    let out = client
        .describe_addresses()
        .filters(
            Filter::builder()
                .name("allocation-id")
                .set_values(Some(allocation_ids.to_vec()))
                .build(),
        )
        .send()
        .await
        .map_err(|e| aws_sdk_ec2::error::DisplayErrorContext(e).to_string())?;
    Ok(allocation_ids
        .iter()
        .map(|id| {
            let placement = out
                .addresses()
                .iter()
                .find(|a| a.allocation_id() == Some(id.as_str()))
                .and_then(|a| {
                    a.association_id().filter(|s| !s.is_empty())?;
                    Some(Placement {
                        eni_id: a
                            .network_interface_id()
                            .filter(|s| !s.is_empty())?
                            .to_string(),
                        private_ip: a.private_ip_address()?.parse().ok()?,
                    })
                });
            (id.clone(), placement)
        })
        .collect())
}

/// One observed change: at `at` (since the recorder started) `allocation_id` was seen at
/// `placement`. The first entry per EIP is its initial placement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementChange {
    pub at: Duration,
    pub allocation_id: String,
    pub placement: Option<Placement>,
}

/// Background poller of DescribeAddresses that keeps a timeline of placement changes. Polls
/// straight at moto on its own runtime thread, so it keeps going while the test blocks.
pub struct PlacementRecorder {
    timeline: Arc<Mutex<Vec<PlacementChange>>>,
    started: Instant,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PlacementRecorder {
    fn start(client: aws_sdk_ec2::Client, allocation_ids: Vec<String>, interval: Duration) -> Self {
        let timeline = Arc::new(Mutex::new(Vec::new()));
        let started = Instant::now();
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel();
        let tl = timeline.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("recorder runtime");
            rt.block_on(async move {
                let mut last: std::collections::HashMap<String, Option<Placement>> =
                    Default::default();
                let mut tick = tokio::time::interval(interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = &mut stop_rx => return,
                        _ = tick.tick() => {}
                    }
                    // moto may already be gone at the end of a test: just skip the sample.
                    let Ok(now) = try_placements(&client, &allocation_ids).await else {
                        continue;
                    };
                    let at = started.elapsed();
                    let mut tl = tl.lock().expect("timeline lock");
                    for (id, p) in now {
                        if last.get(&id) != Some(&p) {
                            tl.push(PlacementChange {
                                at,
                                allocation_id: id.clone(),
                                placement: p.clone(),
                            });
                            last.insert(id, p);
                        }
                    }
                }
            });
        });
        PlacementRecorder {
            timeline,
            started,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// All changes so far (initial placements first).
    pub fn timeline(&self) -> Vec<PlacementChange> {
        self.timeline.lock().expect("timeline lock").clone()
    }

    /// Changes of one EIP, initial placement included.
    pub fn history(&self, allocation_id: &str) -> Vec<PlacementChange> {
        self.timeline()
            .into_iter()
            .filter(|c| c.allocation_id == allocation_id)
            .collect()
    }

    /// How many times the EIP moved after the first observation (a move through "unassociated"
    /// counts twice: off, then on).
    pub fn moves(&self, allocation_id: &str) -> usize {
        self.history(allocation_id).len().saturating_sub(1)
    }

    /// When the EIP was first seen at `expected` (since the recorder started).
    pub fn first_seen_at(
        &self,
        allocation_id: &str,
        expected: &Option<Placement>,
    ) -> Option<Duration> {
        self.history(allocation_id)
            .into_iter()
            .find(|c| &c.placement == expected)
            .map(|c| c.at)
    }

    /// When the EIP reached its current placement and has stayed there since.
    pub fn settled_at(&self, allocation_id: &str) -> Option<(Duration, Option<Placement>)> {
        self.history(allocation_id)
            .pop()
            .map(|c| (c.at, c.placement))
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Stops polling and returns the full timeline.
    pub fn stop(mut self) -> Vec<PlacementChange> {
        self.shutdown();
        self.timeline()
    }

    fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for PlacementRecorder {
    fn drop(&mut self) {
        self.shutdown();
    }
}
