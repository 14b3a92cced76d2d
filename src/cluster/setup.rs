//! From the product config to what the cluster shell runs on: `[aws]` to `AwsSettings`,
//! `[cluster]` + `[[eip]]` + this node's EC2 identity to a `BrainConfig`, the heartbeat
//! destinations of every peer, and the shared key file to a `Keyring`.
//!
//! Everything here is pure (apart from reading the key file) so it can be unit-tested; the I/O
//! shell in `node` calls it once at start and again on reload (key file only).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use super::brain::{BrainConfig, EipSpec, NodeSpec, WitnessConfig};
use super::wire::Keyring;
use crate::cloud::aws::AwsSettings;
use crate::cloud::imds::IdentityOverrides;
use crate::cloud::InstanceIdentity;
use crate::config::{ClusterSection, Config};

/// `cluster.witness_interval` default: one CreateTags per node every 7 s (514/hour).
pub const DEFAULT_WITNESS_INTERVAL: Duration = Duration::from_secs(7);
/// `cluster.witness_stale_after` default with the seed timers (deadtime 15 s); see
/// [`default_witness_stale_after`].
pub const DEFAULT_WITNESS_STALE_AFTER: Duration = Duration::from_secs(18);
/// What `witness_stale_after` adds to deadtime by default: a whole instance gone (no answer at
/// all) is proven dead within deadtime + this + one read + 1 s (stamps are whole seconds).
pub const WITNESS_STALE_MARGIN: Duration = Duration::from_secs(3);

/// `cluster.witness_stale_after` default: deadtime + 3 s (an instance gone is proven dead within
/// deadtime + 5 s, read latency and whole-second stamps included), but at least 2 write intervals + 3 s, so a live node's stamp (written every
/// interval, plus API latency and clock skew) never looks stale. Seed timers: 18 s.
pub fn default_witness_stale_after(deadtime: Duration, interval: Duration) -> Duration {
    (deadtime + WITNESS_STALE_MARGIN).max(interval * 2 + Duration::from_secs(3))
}
/// `aws.reconcile_interval` default: re-check every EIP's placement twice a minute.
pub const DEFAULT_RECONCILE_INTERVAL: Duration = Duration::from_secs(30);
/// `aws.api_budget_per_minute` default (the brain's own default).
pub const DEFAULT_API_BUDGET_PER_MINUTE: u32 = 20;
/// `aws.retry_backoff_max` default: the brain's backoff cap between failed tries. Short, so a
/// recovered API is used within seconds; the call budget, not the backoff, bounds the rate.
pub const DEFAULT_RETRY_BACKOFF_MAX: Duration = Duration::from_secs(2);
/// A gap between two inputs longer than max(2 x keepalive, this) means the process was not
/// scheduled (SIGSTOP, VM freeze). The floor keeps sub-second test timers from reading a busy
/// CI machine's scheduling hiccups as pauses.
pub const PAUSE_THRESHOLD_FLOOR: Duration = Duration::from_secs(1);
/// The brain forgets an API call this long after the SDK's own operation timeout.
pub const CALL_TIMEOUT_MARGIN: Duration = Duration::from_secs(5);
/// The key id a single-secret key file gets.
pub const DEFAULT_KEY_ID: u8 = 1;

/// `[aws]` as the EC2 client wants it; unset keys keep the cloud layer's defaults.
pub fn aws_settings(cfg: &Config) -> AwsSettings {
    let mut s = AwsSettings::default();
    if let Some(a) = &cfg.aws {
        s.region = a.region.clone();
        s.endpoint_url = a.endpoint_url.clone();
        if let Some(v) = a.attempt_timeout {
            s.attempt_timeout = v;
        }
        if let Some(v) = a.operation_timeout {
            s.operation_timeout = v;
        }
        if let Some(v) = a.connect_timeout {
            s.connect_timeout = v;
        }
        if let Some(v) = a.max_attempts {
            s.max_attempts = v;
        }
    }
    s
}

/// What config says about this node's EC2 identity; IMDS fills in the rest.
pub fn identity_overrides(cfg: &Config, me: &str) -> IdentityOverrides {
    let node = cfg
        .cluster
        .as_ref()
        .and_then(|c| c.node.iter().find(|n| n.name == me));
    IdentityOverrides {
        instance_id: node.and_then(|n| n.instance_id.clone()),
        region: cfg.aws.as_ref().and_then(|a| a.region.clone()),
        eni_id: node.and_then(|n| n.eni_id.clone()),
        primary_ip: node.and_then(|n| n.primary_ip),
        secondary_ip: node.and_then(|n| n.secondary_ip.or(n.secondary_ips.first().copied())),
    }
}

/// Every heartbeat path: `(peer name, address)` for every `address` of every other node.
pub fn peer_paths(cl: &ClusterSection, me: &str) -> Result<Vec<(String, SocketAddr)>, String> {
    let mut out = Vec::new();
    for n in cl.node.iter().filter(|n| n.name != me) {
        for a in &n.address {
            let addr = a
                .parse::<SocketAddr>()
                .map_err(|e| format!("[[cluster.node]] {:?} address {a:?}: {e}", n.name))?;
            out.push((n.name.clone(), addr));
        }
    }
    Ok(out)
}

/// Heartbeat destinations of every peer (every `address` of every other `[[cluster.node]]`).
pub fn peer_addresses(cl: &ClusterSection, me: &str) -> Result<Vec<SocketAddr>, String> {
    let mut out = Vec::new();
    for n in cl.node.iter().filter(|n| n.name != me) {
        if n.address.is_empty() {
            return Err(format!(
                "[[cluster.node]] {:?} has no address: heartbeats cannot reach it",
                n.name
            ));
        }
        for a in &n.address {
            let addr = a
                .parse::<SocketAddr>()
                .map_err(|e| format!("[[cluster.node]] {:?} address {a:?}: {e}", n.name))?;
            out.push(addr);
        }
    }
    Ok(out)
}

/// The brain's configuration: timers from `[cluster]`, budget and reconcile interval from
/// `[aws]`, EIPs from `[[eip]]`, this node's placement slots from `identity` (config wins there
/// too, see `identity_overrides`), peers' slots from their `[[cluster.node]]` entries, else from
/// `discovered` (found through the EC2 API at start, see `startup::discover_peers`).
pub fn brain_config(
    cfg: &Config,
    me: &str,
    identity: &InstanceIdentity,
    discovered: &std::collections::HashMap<String, crate::cloud::aws::EniSlots>,
) -> Result<BrainConfig, String> {
    let cl = cfg
        .cluster
        .as_ref()
        .ok_or_else(|| "no [cluster] section".to_string())?;
    let mut nodes = Vec::with_capacity(cl.node.len());
    for n in &cl.node {
        let configured: Vec<Ipv4Addr> = n
            .secondary_ip
            .iter()
            .chain(&n.secondary_ips)
            .copied()
            .collect();
        let spec = if n.name == me {
            let mut secondary_ips = configured;
            if let Some(ip) = identity.secondary_ip {
                if !secondary_ips.contains(&ip) {
                    secondary_ips.insert(0, ip);
                }
            }
            NodeSpec {
                name: n.name.clone(),
                eni_id: identity.eni_id.clone(),
                primary_ip: identity.primary_ip,
                secondary_ips,
            }
        } else {
            let found = discovered.get(&n.name);
            let missing = |what: &str| {
                format!(
                    "[[cluster.node]] {:?} needs {what}: it is neither in the config nor could it \
                     be found through the EC2 API (by the node's heartbeat addresses or where its \
                     own EIP is); set eni_id, primary_ip and secondary_ip for this peer",
                    n.name
                )
            };
            let mut secondary_ips = configured;
            if secondary_ips.is_empty() {
                if let Some(f) = found {
                    secondary_ips = f.secondary_ips.clone();
                }
            }
            NodeSpec {
                name: n.name.clone(),
                eni_id: n
                    .eni_id
                    .clone()
                    .or_else(|| found.map(|f| f.eni_id.clone()))
                    .ok_or_else(|| missing("eni_id"))?,
                primary_ip: n
                    .primary_ip
                    .or_else(|| found.map(|f| f.primary_ip))
                    .ok_or_else(|| missing("primary_ip"))?,
                secondary_ips,
            }
        };
        nodes.push(spec);
    }
    let eips = cfg
        .eip
        .iter()
        .map(|e| EipSpec {
            allocation_id: e.allocation_id.clone(),
            owner: e.owner.clone(),
        })
        .collect();
    let mut b = BrainConfig::new(me, nodes, eips);
    b.keepalive = cl.keepalive;
    b.deadtime = cl.deadtime;
    b.warntime = cl.warntime.unwrap_or(cl.deadtime / 2);
    b.initdead = cl.initdead;
    b.auto_failback = cl.auto_failback;
    b.failback_hold = cl.failback_hold.unwrap_or(cl.deadtime * 2);
    b.pause_threshold = (cl.keepalive * 2).max(PAUSE_THRESHOLD_FLOOR);
    b.pause_holdoff = cl.keepalive * 2 + Duration::from_secs(1);
    let aws = cfg.aws.clone().unwrap_or_default();
    b.reconcile_interval = aws.reconcile_interval.unwrap_or(DEFAULT_RECONCILE_INTERVAL);
    b.api_budget_per_minute = aws
        .api_budget_per_minute
        .unwrap_or(DEFAULT_API_BUDGET_PER_MINUTE);
    b.backoff_max = aws.retry_backoff_max.unwrap_or(DEFAULT_RETRY_BACKOFF_MAX);
    b.backoff_min = b.backoff_min.min(b.backoff_max);
    b.call_timeout = aws_settings(cfg).operation_timeout + CALL_TIMEOUT_MARGIN;
    let write_interval = cl.witness_interval.unwrap_or(DEFAULT_WITNESS_INTERVAL);
    b.witness = WitnessConfig {
        enabled: cl.witness,
        write_interval,
        stale_after: cl
            .witness_stale_after
            .unwrap_or_else(|| default_witness_stale_after(cl.deadtime, write_interval)),
        ..WitnessConfig::default()
    };
    b.requests_per_call = aws_settings(cfg).max_attempts;
    b.unhealthy_hold = b.warntime;
    b.validate().map_err(|e| e.to_string())?;
    Ok(b)
}

/// Parsed key file: the signing key id and every accepted `(id, secret)`.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyMaterial {
    pub signing: u8,
    pub keys: Vec<(u8, Vec<u8>)>,
}

impl std::fmt::Debug for KeyMaterial {
    // Never print secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<u8> = self.keys.iter().map(|(id, _)| *id).collect();
        f.debug_struct("KeyMaterial")
            .field("signing", &self.signing)
            .field("key_ids", &ids)
            .finish()
    }
}

impl KeyMaterial {
    pub fn keyring(&self) -> Keyring {
        Keyring::new(self.signing, self.keys.iter().cloned())
    }
}

/// The secret material of a key file: either one secret (the whole file, trimmed; e.g. 32
/// random bytes in base64) that gets key id 1, or Heartbeat `authkeys`-like lines `ID SECRET`
/// (id 1..=255, `#` comments allowed) where the first line is the signing key and the others
/// are still accepted (key rotation).
pub fn parse_keys(text: &str) -> Result<KeyMaterial, String> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    if lines.is_empty() {
        return Err("is empty".into());
    }
    let numbered = lines.iter().all(|l| {
        l.split_once(char::is_whitespace)
            .is_some_and(|(id, s)| id.parse::<u8>().is_ok() && !s.trim().is_empty())
    });
    if !numbered {
        if lines.len() > 1 {
            return Err("has several lines but not in the `ID SECRET` form".into());
        }
        let secret = lines[0].as_bytes().to_vec();
        return Ok(KeyMaterial {
            signing: DEFAULT_KEY_ID,
            keys: vec![(DEFAULT_KEY_ID, secret)],
        });
    }
    let mut keys: Vec<(u8, Vec<u8>)> = Vec::with_capacity(lines.len());
    for l in lines {
        let Some((id, secret)) = l.split_once(char::is_whitespace) else {
            continue;
        };
        let id: u8 = id.parse().map_err(|_| format!("bad key id {id:?}"))?;
        if id == 0 {
            return Err("key id 0 is reserved; use 1..=255".into());
        }
        if keys.iter().any(|(k, _)| *k == id) {
            return Err(format!("key id {id} appears twice"));
        }
        keys.push((id, secret.trim().as_bytes().to_vec()));
    }
    let signing = keys.first().map(|(id, _)| *id).unwrap_or(DEFAULT_KEY_ID);
    Ok(KeyMaterial { signing, keys })
}

/// Reads the shared key file; refuses a missing, empty or group/other-accessible file (like
/// Heartbeat refuses an `authkeys` that is not mode 600).
pub fn read_key_file(path: &Path) -> Result<KeyMaterial, String> {
    use std::os::unix::fs::PermissionsExt;
    let shown = path.display();
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("cluster key file {shown}: {e} (cluster.auth_key_file)"))?;
    if !meta.is_file() {
        return Err(format!("cluster key file {shown} is not a regular file"));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "cluster key file {shown} has mode {mode:04o}: it must not be accessible by group or \
             others (chmod 600 {shown})"
        ));
    }
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("cluster key file {shown}: {e}"))?;
    parse_keys(&text).map_err(|e| format!("cluster key file {shown} {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        crate::config::load_str(text, "<test>")
            .map(|l| l.config)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    const BASE: &str = r#"
[node]
name = "a"
[[listen]]
name = "web"
bind = ["127.0.0.1:8080"]
[[listen.server]]
name = "s1"
address = "127.0.0.1:9000"
[cluster]
keepalive = "200ms"
deadtime = "1s"
initdead = "2s"
auth_key_file = "/tmp/k"
witness_interval = "1s"
witness_stale_after = "8s"
[[cluster.node]]
name = "a"
address = ["127.0.0.1:7001"]
instance_id = "i-a"
eni_id = "eni-a"
primary_ip = "10.0.1.10"
secondary_ip = "10.0.1.11"
[[cluster.node]]
name = "b"
address = ["127.0.0.1:7002", "127.0.0.1:7003"]
eni_id = "eni-b"
primary_ip = "10.0.1.20"
secondary_ip = "10.0.1.21"
secondary_ips = ["10.0.1.22"]
[aws]
region = "us-east-1"
reconcile_interval = "2s"
api_budget_per_minute = 300
retry_backoff_max = "3s"
[[eip]]
allocation_id = "eipalloc-a"
owner = "a"
[[eip]]
allocation_id = "eipalloc-b"
owner = "b"
"#;

    #[test]
    fn maps_timers_identity_and_peers() {
        let cfg = config(BASE);
        let ov = identity_overrides(&cfg, "a");
        let id = ov.complete().expect("config gives the whole identity");
        assert_eq!(id.eni_id, "eni-a");
        let b = brain_config(&cfg, "a", &id, &Default::default()).expect("brain config");
        assert_eq!(b.keepalive, Duration::from_millis(200));
        assert_eq!(b.warntime, Duration::from_millis(500));
        assert_eq!(b.failback_hold, Duration::from_secs(2));
        assert_eq!(b.pause_threshold, PAUSE_THRESHOLD_FLOOR);
        assert_eq!(b.reconcile_interval, Duration::from_secs(2));
        assert_eq!(b.api_budget_per_minute, 300);
        assert_eq!(b.backoff_max, Duration::from_secs(3));
        assert!(b.witness.enabled);
        assert_eq!(b.witness.stale_after, Duration::from_secs(8));
        assert_eq!(b.nodes[1].secondary_ips.len(), 2);
        assert_eq!(b.nodes[0].secondary_ips, vec![Ipv4Addr::new(10, 0, 1, 11)]);
        let cl = cfg.cluster.as_ref().expect("cluster");
        assert_eq!(peer_addresses(cl, "a").expect("peers").len(), 2);
    }

    #[test]
    fn seed_timers_keep_heartbeat_defaults() {
        let text = BASE
            .replace("keepalive = \"200ms\"", "keepalive = \"2s\"")
            .replace("deadtime = \"1s\"", "deadtime = \"15s\"")
            .replace("initdead = \"2s\"", "initdead = \"60s\"");
        let cfg = config(&text);
        let id = identity_overrides(&cfg, "a").complete().expect("identity");
        let b = brain_config(&cfg, "a", &id, &Default::default()).expect("brain config");
        assert_eq!(b.pause_threshold, Duration::from_secs(4));
        assert_eq!(b.pause_holdoff, Duration::from_secs(5));
        assert_eq!(b.failback_hold, Duration::from_secs(30));
        assert_eq!(b.warntime, Duration::from_millis(7500));
    }

    #[test]
    fn peer_without_eni_is_an_error() {
        let text = BASE.replace("eni_id = \"eni-b\"\n", "");
        let cfg = config(&text);
        let id = identity_overrides(&cfg, "a").complete().expect("identity");
        let err = brain_config(&cfg, "a", &id, &Default::default()).expect_err("peer eni missing");
        assert!(err.contains("\"b\" needs eni_id"), "{err}");
    }

    #[test]
    fn key_file_forms() {
        assert_eq!(
            parse_keys("c2VjcmV0\n").expect("single"),
            KeyMaterial {
                signing: 1,
                keys: vec![(1, b"c2VjcmV0".to_vec())]
            }
        );
        assert_eq!(
            parse_keys("# rotation\n2 new\n1 old\n").expect("numbered"),
            KeyMaterial {
                signing: 2,
                keys: vec![(2, b"new".to_vec()), (1, b"old".to_vec())]
            }
        );
        assert!(parse_keys("  \n").is_err());
        assert!(parse_keys("a b c\nd\n").is_err());
        assert!(parse_keys("0 x").is_err());
    }

    #[test]
    fn key_file_mode_is_checked() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cluster.key");
        std::fs::write(&path, "secret\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = read_key_file(&path).expect_err("world readable");
        assert!(
            err.contains("mode 0644") && err.contains("cluster.key"),
            "{err}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert!(read_key_file(&path).is_ok());
        std::fs::write(&path, "").expect("write");
        assert!(read_key_file(&path)
            .expect_err("empty")
            .contains("is empty"));
        let err = read_key_file(&dir.path().join("nope")).expect_err("missing");
        assert!(err.contains("nope"), "{err}");
    }
}
