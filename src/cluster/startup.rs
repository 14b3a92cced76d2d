//! The cluster member's start-up sequence, in order, in one place: key file, heartbeat
//! destinations, this node's EC2 identity (config first, IMDSv2 for the rest), the EC2 client,
//! a secondary private IP to carry peers' EIPs, peers' ENIs found through the EC2 API, the
//! brain's configuration, the bound heartbeat socket and the incarnation. `prepare` hands the
//! result to `node::spawn` as a ready [`Plan`]; nothing here runs after start.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::net::UdpSocket;

use super::brain::BrainConfig;
use super::setup;
use crate::cloud::aws::Ec2Client;
use crate::cloud::{imds, CloudError, Ec2 as _, InstanceIdentity, Placement};
use crate::config::{parse_bind, Config};
use crate::runtime::Runtime;

/// Everything the running cluster member needs, resolved once at start.
pub struct Plan {
    pub me: String,
    /// The configuration generation the plan was made from (reloads compare against it).
    pub generation: u64,
    pub keys: setup::KeyMaterial,
    /// Heartbeat destinations: every address of every peer.
    pub peers: Vec<SocketAddr>,
    /// One connected UDP socket per heartbeat path (see `node::Path`).
    pub paths: Vec<super::node::Path>,
    pub identity: InstanceIdentity,
    pub ec2: Ec2Client,
    pub brain_cfg: BrainConfig,
    pub socket: UdpSocket,
    pub local_addr: SocketAddr,
    /// The settings a running brain cannot change in place (see `node::cluster_settings_json`).
    pub cluster_json: serde_json::Value,
    pub incarnation: u64,
}

/// Runs the start-up sequence; `None` when the configuration has no `[cluster]`.
pub async fn prepare(rt: &Arc<Runtime>) -> Result<Option<Plan>, String> {
    let snap = rt.load();
    let cfg = snap.config.clone();
    let Some(cl) = cfg.cluster.as_ref() else {
        return Ok(None);
    };
    let me = snap.node_name.clone();
    let generation = snap.generation;
    drop(snap);
    let keys = setup::read_key_file(std::path::Path::new(&cl.auth_key_file))?;
    let peers = setup::peer_addresses(cl, &me)?;
    let bind = parse_bind(&cl.bind).map_err(|e| format!("cluster.bind: {e}"))?;

    let mut overrides = setup::identity_overrides(&cfg, &me);
    if overrides.region.is_none() {
        // Off EC2 (or with IMDS locked down) the SDK's own region variable is a fine source.
        overrides.region = ["AWS_REGION", "AWS_DEFAULT_REGION"]
            .iter()
            .find_map(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()));
    }
    let mut identity = imds::resolve_identity(&overrides, None)
        .await
        .map_err(|e| format!("cluster: identity of node {me}: {e}"))?;
    let settings = setup::aws_settings(&cfg);
    let ec2 = Ec2Client::new(&settings, Some(&identity.region))
        .await
        .map_err(|e| format!("cluster: EC2 client: {e}"))?;
    let ensure = cfg.aws.as_ref().is_none_or(|a| a.ensure_secondary_ip);
    if identity.secondary_ip.is_none() && ensure {
        match ec2.ensure_secondary_ip(&identity.eni_id).await {
            Ok(ip) => {
                tracing::info!("cluster: ENI {} secondary IP {ip}", identity.eni_id);
                identity.secondary_ip = Some(ip);
            }
            Err(e) => tracing::warn!(
                "cluster: could not ensure a secondary IP on {}: {e}; this node will not take \
                 over peers' EIPs",
                identity.eni_id
            ),
        }
    }
    let discovered = discover_peers(&ec2, &cfg, &me, &identity).await;
    let brain_cfg = setup::brain_config(&cfg, &me, &identity, &discovered)?;
    let socket = UdpSocket::bind(bind)
        .await
        .map_err(|e| format!("cluster.bind {bind}: {e}"))?;
    let local_addr = socket
        .local_addr()
        .map_err(|e| format!("cluster.bind {bind}: {e}"))?;
    let incarnation = new_incarnation();
    let paths = open_paths(&peer_paths_of(&cfg, &me)?, local_addr).await;

    spawn_dry_run(&ec2, &cfg, &me, &identity);

    tracing::info!(
        "cluster: node {me} (incarnation {incarnation}) heartbeats on {local_addr} to {} \
         address(es); ENI {} primary {} secondary {}; witness {}",
        peers.len(),
        identity.eni_id,
        identity.primary_ip,
        identity
            .secondary_ip
            .map_or_else(|| "none".to_string(), |ip| ip.to_string()),
        if cl.witness { "on" } else { "off" },
    );
    Ok(Some(Plan {
        me,
        generation,
        keys,
        peers,
        paths,
        identity,
        ec2,
        brain_cfg,
        socket,
        local_addr,
        cluster_json: super::node::cluster_settings_json(&cfg),
        incarnation,
    }))
}

/// A random incarnation: never derived from the wall clock alone, so a node restarted with its
/// clock set back is still a new incarnation to its peers (they do not order incarnations).
pub fn new_incarnation() -> u64 {
    use sha2::{Digest, Sha256};
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let local = 0u8;
    let mut h = Sha256::new();
    h.update(nanos.to_be_bytes());
    h.update(std::process::id().to_be_bytes());
    h.update(format!("{:p}{:?}", &local, std::time::Instant::now()).as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_be_bytes(b)
}

pub(super) fn peer_paths_of(cfg: &Config, me: &str) -> Result<Vec<(String, SocketAddr)>, String> {
    match cfg.cluster.as_ref() {
        Some(cl) => setup::peer_paths(cl, me),
        None => Ok(Vec::new()),
    }
}

/// Connected UDP sockets, one per heartbeat path, bound to our heartbeat IP: sending through a
/// connected socket is what lets the kernel report the peer host's "port unreachable" to us.
pub(super) async fn open_paths(
    paths: &[(String, SocketAddr)],
    local: SocketAddr,
) -> Vec<super::node::Path> {
    let mut out = Vec::with_capacity(paths.len());
    for (node, addr) in paths {
        let bind = SocketAddr::new(local.ip(), 0);
        let sock = match UdpSocket::bind(bind).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("cluster: heartbeat path to {node} at {addr}: bind {bind}: {e}");
                continue;
            }
        };
        if let Err(e) = sock.connect(addr).await {
            tracing::warn!("cluster: heartbeat path to {node} at {addr}: {e}");
            continue;
        }
        out.push(super::node::Path {
            node: node.clone(),
            addr: *addr,
            sock,
            refused_at: None,
        });
    }
    out
}

/// The IAM self-check (AssociateAddress with DryRun) in the background: a warning, never fatal.
fn spawn_dry_run(ec2: &Ec2Client, cfg: &Config, me: &str, identity: &InstanceIdentity) {
    let Some(eip) = cfg
        .eip
        .iter()
        .find(|e| e.owner == me)
        .or_else(|| cfg.eip.first())
    else {
        return;
    };
    let ec2 = ec2.clone();
    let alloc = eip.allocation_id.clone();
    let target = Placement {
        eni_id: identity.eni_id.clone(),
        private_ip: identity.primary_ip,
    };
    tokio::spawn(async move {
        match ec2.dry_run_check(&alloc, &target).await {
            Ok(()) => tracing::info!("cluster: IAM self-check passed (AssociateAddress DryRun)"),
            Err(CloudError::Denied(e)) => tracing::warn!(
                "cluster: IAM self-check FAILED: AssociateAddress on {alloc} is denied ({e}); \
                 this node cannot move EIPs until the instance role allows it"
            ),
            Err(e) => tracing::warn!("cluster: IAM self-check inconclusive: {e}"),
        }
    });
}

/// Finds the ENI and private IPs of peers whose `[[cluster.node]]` entry doesn't give them, so one
/// config file (without ENI ids) can serve every node: first by the peer's heartbeat addresses
/// (its private IPs), then by where the peer's own EIP is while it sits at home. Retries API errors
/// for a short while; what stays unknown is reported by `setup::brain_config`.
pub async fn discover_peers(
    ec2: &Ec2Client,
    cfg: &crate::config::Config,
    me: &str,
    identity: &crate::cloud::InstanceIdentity,
) -> std::collections::HashMap<String, crate::cloud::aws::EniSlots> {
    use crate::cloud::Ec2 as _;
    let mut found = std::collections::HashMap::new();
    let Some(cl) = cfg.cluster.as_ref() else {
        return found;
    };
    let wanted: Vec<&crate::config::ClusterNode> = cl
        .node
        .iter()
        .filter(|n| n.name != me && (n.eni_id.is_none() || n.primary_ip.is_none()))
        .collect();
    for attempt in 0..5u32 {
        let mut retry = false;
        for n in &wanted {
            if found.contains_key(&n.name) {
                continue;
            }
            let ips = n
                .address
                .iter()
                .filter_map(|a| a.parse::<std::net::SocketAddr>().ok())
                .filter_map(|a| match a.ip() {
                    std::net::IpAddr::V4(v4) if !v4.is_loopback() => Some(v4),
                    _ => None,
                });
            for ip in ips {
                match ec2
                    .eni_slots("addresses.private-ip-address", &ip.to_string())
                    .await
                {
                    Ok(list) => {
                        if let Some(s) = list.into_iter().find(|s| s.eni_id != identity.eni_id) {
                            found.insert(n.name.clone(), s);
                            break;
                        }
                    }
                    Err(e) => retry |= e.is_retryable(),
                }
            }
            if found.contains_key(&n.name) {
                continue;
            }
            let allocs: Vec<String> = cfg
                .eip
                .iter()
                .filter(|e| e.owner == n.name)
                .map(|e| e.allocation_id.clone())
                .collect();
            if allocs.is_empty() {
                continue;
            }
            match ec2.describe_addresses(&allocs).await {
                Ok(addrs) => {
                    let home = addrs
                        .into_iter()
                        .filter_map(|a| a.placement)
                        .find(|p| p.eni_id != identity.eni_id);
                    if let Some(p) = home {
                        match ec2.eni_slots("network-interface-id", &p.eni_id).await {
                            Ok(list) => {
                                if let Some(s) = list.into_iter().next() {
                                    found.insert(n.name.clone(), s);
                                }
                            }
                            Err(e) => retry |= e.is_retryable(),
                        }
                    }
                }
                Err(e) => retry |= e.is_retryable(),
            }
        }
        if found.len() == wanted.len() || !retry {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500 * (attempt as u64 + 1))).await;
    }
    for (name, s) in &found {
        tracing::info!(
            "cluster: peer {name} is ENI {} ({} + {:?}), found through the EC2 API",
            s.eni_id,
            s.primary_ip,
            s.secondary_ips
        );
    }
    found
}
