//! ACME end to end against Pebble (the ACME test CA) with a real two-node edgelb cluster: two
//! `edgelb run` processes heartbeating over loopback (EC2 through moto), each ordering its own
//! certificate for the same names, each with its HTTP listener on its own address
//! (`127.0.0.2` = nodeA, `127.0.0.3` = nodeB) and the same port, which is Pebble's `httpPort`.
//! Pebble's DNS (pebble-challtestsrv) resolves every name to nodeB only, so nodeA's validation
//! reaches nodeB and succeeds only because nodeA shared its tokens over the heartbeat channel.
//!
//! Pinned: issuance through the peer (and the chain verifies against Pebble's root), key mode
//! 0600, renewal of short-lived certificates, the failure when the peer is down, and the
//! failure when sharing is off, each reported in the log and the stats JSON.

mod support;

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::cluster::{EdgeCluster, Timers};
use support::moto::{Moto, World};
use support::pebble::Pebble;
use support::{free_port, http_blocking};

const NAMES: [&str; 2] = ["edgelb.test", "www.edgelb.test"];
const NODE_IPS: [&str; 2] = ["127.0.0.2", "127.0.0.3"];

/// A port free on both nodes' addresses.
fn port_on_both() -> u16 {
    for _ in 0..50 {
        let a = TcpListener::bind((NODE_IPS[0], 0)).expect("bind 127.0.0.2");
        let port = a.local_addr().expect("addr").port();
        if TcpListener::bind((NODE_IPS[1], port)).is_ok() {
            return port;
        }
    }
    panic!("no port free on both node addresses");
}

struct AcmeCluster {
    // Dropped in this order: nodes, then Pebble, then moto.
    cluster: EdgeCluster,
    pebble: Pebble,
    _world: World,
    _moto: Moto,
    api_ports: Vec<u16>,
    storage: Vec<PathBuf>,
    /// nodeA's TLS port: `[listen.tls]` with no certificate configured, so it serves the
    /// ACME directory (empty at start).
    tls_port: u16,
}

impl AcmeCluster {
    async fn start(share: bool, validity: Duration) -> AcmeCluster {
        let http_port = port_on_both();
        let pebble = Pebble::start(http_port, NODE_IPS[1], validity);
        let moto = Moto::start();
        let world = World::build_with(&moto, 2, 1).await;
        let mut cluster = EdgeCluster::new(&world, moto.endpoint(), Timers::default(), false);
        let mut api_ports = Vec::new();
        let mut storage = Vec::new();
        let tls_port = port_on_both();
        for (i, n) in cluster.nodes.iter().enumerate() {
            let text = std::fs::read_to_string(&n.config_path).expect("read config");
            let old_bind = format!("bind = [\"127.0.0.1:{}\"]", n.listen_port);
            assert!(text.contains(&old_bind), "listen bind in {text}");
            let dir = cluster.dir.path().join(format!("{}-acme", n.name));
            let api = free_port();
            let mut bind = format!("bind = [\"{}:{http_port}\"]", NODE_IPS[i]);
            if i == 0 {
                // No `certs` nor `cert_dir`: the listen takes the ACME directory.
                bind += &format!("\n[listen.tls]\nbind = [\"{}:{tls_port}\"]", NODE_IPS[i]);
            }
            let text = text.replace(&old_bind, &bind)
                + &format!(
                    r#"
[stats]
dashboard_bind = "127.0.0.1:{dash}"
api_bind = "127.0.0.1:{api}"

[acme]
directory = "{url}"
contact = ["ops@edgelb.test"]
names = ["{n0}", "{n1}"]
storage = "{storage}"
ca_file = "{ca}"
renew_before = "1h"
share_challenges = {share}
challenge_wait = "5s"
"#,
                    dash = free_port(),
                    url = pebble.directory_url,
                    n0 = NAMES[0],
                    n1 = NAMES[1],
                    storage = dir.display(),
                    ca = pebble.ca_file.display(),
                );
            std::fs::write(&n.config_path, text).expect("write config");
            api_ports.push(api);
            storage.push(dir);
        }
        cluster.start_all();
        cluster.wait_logged("heartbeats on", Duration::from_secs(30));
        AcmeCluster {
            cluster,
            pebble,
            _world: world,
            _moto: moto,
            api_ports,
            storage,
            tls_port,
        }
    }

    /// The certificate file: chain, then key (what `[listen.tls] cert_dir` loads).
    fn pem_path(&self, i: usize) -> PathBuf {
        self.cert_dir(i).join(format!("{}.pem", NAMES[0]))
    }

    fn cert_dir(&self, i: usize) -> PathBuf {
        self.storage[i].join("certs")
    }

    /// Waits until node `i` logged `needle` at least `count` times; returns its log.
    fn wait_log(&self, i: usize, needle: &str, count: usize, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.cluster.nodes[i].log();
            if log.matches(needle).count() >= count {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not log {needle:?} {count} time(s) within {timeout:?}:\n{log}",
                self.cluster.nodes[i].name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The `acme` object of node `i`'s /stats.json.
    fn acme_stats(&self, i: usize) -> serde_json::Value {
        let (status, body) = http_blocking(
            self.api_ports[i],
            "GET",
            "/stats.json",
            b"",
            Duration::from_secs(5),
        )
        .expect("stats.json");
        assert_eq!(status, 200);
        let doc: serde_json::Value = serde_json::from_slice(&body).expect("stats JSON");
        doc["acme"].clone()
    }
}

/// The serial of the certificate node `ip` serves for `NAMES[0]` on `port`, once a TLS
/// client trusting only Pebble's root completes a request through it (`None` until then).
fn served_serial(ip: &str, port: u16, root: &Path) -> Option<String> {
    let url = format!("https://{}:{port}/", NAMES[0]);
    let resolve = format!("{}:{port}:{ip}", NAMES[0]);
    let out = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "3",
        ])
        .arg("--cacert")
        .arg(root)
        .args(["--resolve", &resolve, &url])
        .output()
        .expect("run curl");
    if String::from_utf8_lossy(&out.stdout) != "200" {
        return None;
    }
    let sh = format!(
        "openssl s_client -connect {ip}:{port} -servername {} </dev/null 2>/dev/null | openssl x509 -noout -serial",
        NAMES[0]
    );
    let out = Command::new("sh")
        .args(["-c", &sh])
        .output()
        .expect("openssl");
    let s = String::from_utf8_lossy(&out.stdout);
    s.trim().strip_prefix("serial=").map(normalize_serial)
}

/// Hex without leading zeros, lowercase (openssl and the stats write serials differently).
fn normalize_serial(s: &str) -> String {
    s.to_ascii_lowercase().trim_start_matches('0').to_string()
}

fn serial_of(chain: &Path) -> String {
    let pem = std::fs::read(chain).expect("read chain");
    normalize_serial(
        &edgelb::acme::store::parse_chain(&pem)
            .expect("parses")
            .serial,
    )
}

/// `openssl verify` of the leaf against Pebble's root, with the chain's intermediates.
fn verify_chain(chain: &Path, root_pem: &str, dir: &Path) {
    let text = std::fs::read_to_string(chain).expect("read chain");
    let (begin, end) = ("-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----");
    let mut certs = Vec::new();
    let mut rest = text.as_str();
    while let Some(b) = rest.find(begin) {
        let e = rest[b..].find(end).expect("certificate end") + b + end.len();
        certs.push(&rest[b..e]);
        rest = &rest[e..];
    }
    assert!(certs.len() >= 2, "leaf and intermediate: {text}");
    assert!(
        text.contains("PRIVATE KEY-----"),
        "the key follows the chain"
    );
    let (leaf, rest) = (certs[0].to_string() + "\n", certs[1..].join("\n") + "\n");
    let leaf_path = dir.join("leaf.pem");
    let inter_path = dir.join("intermediates.pem");
    let root_path = dir.join("root.pem");
    std::fs::write(&leaf_path, leaf).expect("write leaf");
    std::fs::write(&inter_path, rest).expect("write intermediates");
    std::fs::write(&root_path, root_pem).expect("write root");
    let out = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(&root_path)
        .arg("-untrusted")
        .arg(&inter_path)
        .arg(&leaf_path)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "chain does not verify against Pebble's root: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// nodeA's certificate is issued although every validation request goes to nodeB; it verifies
/// against Pebble's root, its key is 0600, it renews before expiry (Pebble issues 15 s
/// certificates here: renewal at two thirds, ~10 s), and with nodeB gone the next renewal fails
/// with the CA's reason in the log and the stats.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_issued_through_the_peer_renewed_and_failure_reported_when_peer_down() {
    let c = AcmeCluster::start(true, Duration::from_secs(15)).await;
    let log = c.wait_log(0, "acme: certificate for", 1, Duration::from_secs(60));
    assert!(
        log.contains("token(s) held by every live peer"),
        "nodeA waited for nodeB to hold its tokens:\n{log}"
    );
    c.wait_log(1, "acme: certificate for", 1, Duration::from_secs(30));

    let chain = c.pem_path(0);
    let info =
        edgelb::acme::store::parse_chain(&std::fs::read(&chain).expect("chain")).expect("parses");
    assert_eq!(info.names, NAMES.to_vec());
    let mode = std::fs::metadata(&chain)
        .expect("certificate file")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "key mode");
    let acct_mode = std::fs::metadata(c.storage[0].join("account.json"))
        .expect("account file")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(acct_mode, 0o600, "account key mode");
    let root = c.pebble.root_pem();
    verify_chain(&chain, &root, c.cluster.dir.path());
    let root_path = c.cluster.dir.path().join("pebble-root.pem");
    std::fs::write(&root_path, &root).expect("write root");

    // Every validation went to nodeB: it answered both nodes' tokens, nodeA none.
    let b = c.acme_stats(1);
    let a = c.acme_stats(0);
    assert!(
        b["challenges"]["answered"].as_u64() >= Some(4),
        "nodeB answered 2 names x 2 orders: {b:#}"
    );
    assert_eq!(a["challenges"]["answered"], 0, "{a:#}");
    assert_eq!(a["state"], "valid", "{a:#}");
    assert!(a["next_renewal_unix_ms"].as_u64().is_some(), "{a:#}");

    // nodeA's TLS listen started before any certificate existed (the log says it waits for
    // ACME) and serves the issued one from the ACME directory without a reload.
    let log = c.cluster.nodes[0].log();
    assert!(
        log.contains("waiting for ACME's first issuance"),
        "nodeA's TLS listen started empty:\n{log}"
    );
    let tls_port = c.tls_port;
    let deadline = Instant::now() + Duration::from_secs(10);
    let served = loop {
        if let Some(s) = served_serial(NODE_IPS[0], tls_port, &root_path) {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "TLS port never served the ACME certificate"
        );
        std::thread::sleep(Duration::from_millis(200));
    };

    // Renewal: a new certificate (new serial) replaces the old one on disk, and the TLS
    // listener serves it without a reload.
    let first = serial_of(&chain);
    let issued = c.cluster.nodes[0]
        .log()
        .matches("acme: certificate for")
        .count();
    c.wait_log(
        0,
        "acme: certificate for",
        issued + 1,
        Duration::from_secs(30),
    );
    let second = serial_of(&chain);
    assert_ne!(first, second, "renewed certificate on disk");
    let deadline = Instant::now() + Duration::from_secs(10);
    while served_serial(NODE_IPS[0], tls_port, &root_path).as_deref() != Some(second.as_str()) {
        assert!(
            Instant::now() < deadline,
            "TLS port still serves {served} / not {second}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        c.cluster.nodes[0]
            .log()
            .matches("acme: registered account")
            .count(),
        1,
        "one account, reused for the renewal"
    );

    // nodeB down: validation of nodeA's next renewal cannot reach anyone that holds its
    // tokens; the failure is one line with the CA's reason, and the stats say so.
    let mut c = c;
    c.cluster.node(1).kill9();
    let log = c.wait_log(0, "failed at validation", 1, Duration::from_secs(40));
    let line = log
        .lines()
        .find(|l| l.contains("failed at validation"))
        .expect("line");
    assert!(line.contains("next attempt in"), "{line}");
    let a = c.acme_stats(0);
    assert_eq!(a["state"], "failing", "{a:#}");
    assert!(
        a["last_error"]
            .as_str()
            .is_some_and(|e| e.starts_with("validation: ")),
        "{a:#}"
    );
    assert!(a["next_attempt_unix_ms"].as_u64().is_some(), "{a:#}");
    eprintln!("reported: {line}");
}

/// With token sharing off, nodeA's validation reaches nodeB, which does not know the token
/// (its backend answers instead), so the CA refuses; nodeB's own order still succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_token_sharing_validation_through_the_peer_fails_and_is_reported() {
    let c = AcmeCluster::start(false, Duration::from_secs(3600)).await;
    let log = c.wait_log(0, "failed at validation", 1, Duration::from_secs(60));
    let line = log
        .lines()
        .find(|l| l.contains("failed at validation"))
        .expect("line");
    assert!(line.contains("unauthorized"), "{line}");
    c.wait_log(1, "acme: certificate for", 1, Duration::from_secs(30));
    assert!(!c.pem_path(0).exists(), "no certificate for nodeA");
    let a = c.acme_stats(0);
    assert_eq!(a["state"], "failing", "{a:#}");
    assert_eq!(a["orders_failed"], 1, "{a:#}");
    assert_eq!(
        a["challenges"]["from_peers"],
        serde_json::json!([]),
        "{a:#}"
    );
}
