//! Issue 17, "instance gone" with real network namespaces: nodeB runs in its own namespace
//! (`elbfo-<pid>-<tag>`), reaching nodeA over one veth pair (heartbeats) and the EC2 emulator over
//! another (a TCP forwarder on the root side). Its whole namespace disappears (links down, process
//! killed, `ip netns del`): no packet, no "port unreachable", nothing. The survivor takes over
//! when EC2 reports the instance stopped (the test stops it through the API, as an operator or an
//! auto-scaling group would), and does not take over when only the heartbeat link is cut while the
//! instance is `running` and still writing its witness (a partition: 0 moves).
//!
//! Needs root (CAP_NET_ADMIN) and `ip` (iproute2), as CI has. Every address lives in the
//! namespaces made here; an `unreachable` route per subnet keeps a vanished link's packets on this
//! host (they never follow the default route). Everything is removed on drop.

mod support;

use std::process::Command;
use std::time::Duration;

use support::cluster::{EdgeCluster, Timers};
use support::fault_proxy::FaultProxy;
use support::moto::{Moto, World};

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ip_quiet(args: &[&str]) {
    let _ = Command::new("ip").args(args).output();
}

/// A namespace with two veth pairs to the root namespace: `hb` (heartbeats) and `api` (EC2).
struct NetNs {
    name: String,
    /// Root-side and namespace-side names of the heartbeat and API veths.
    hb: (String, String),
    api: (String, String),
    /// Third octet of this namespace's subnets 10.231.K.0/30 (hb) and 10.232.K.0/30 (api).
    k: u32,
    deleted: bool,
}

impl NetNs {
    fn create(tag: u32) -> NetNs {
        let pid = std::process::id();
        let k = (pid % 100) * 2 + tag;
        let name = format!("elbfo-{pid}-{tag}");
        let v = |kind: &str, side: &str| format!("efo{tag}{kind}{}{side}", pid % 100_000);
        let ns = NetNs {
            hb: (v("h", "r"), v("h", "n")),
            api: (v("a", "r"), v("a", "n")),
            name,
            k,
            deleted: false,
        };
        ns.cleanup();
        ip(&["netns", "add", &ns.name]);
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        for (net, (root, inner)) in [(231, &ns.hb), (232, &ns.api)] {
            // Packets to a vanished link stay here (never the default route).
            ip_quiet(&["route", "del", &format!("10.{net}.{k}.0/24")]);
            ip(&[
                "route",
                "add",
                "unreachable",
                &format!("10.{net}.{k}.0/24"),
                "metric",
                "4000",
            ]);
            ip(&[
                "link", "add", root, "type", "veth", "peer", "name", inner, "netns", &ns.name,
            ]);
            ip(&["addr", "add", &format!("10.{net}.{k}.1/30"), "dev", root]);
            ip(&["link", "set", root, "up"]);
            ip(&[
                "-n",
                &ns.name,
                "addr",
                "add",
                &format!("10.{net}.{k}.2/30"),
                "dev",
                inner,
            ]);
            ip(&["-n", &ns.name, "link", "set", inner, "up"]);
        }
        ns
    }

    fn root_hb(&self) -> String {
        format!("10.231.{}.1", self.k)
    }
    fn inner_hb(&self) -> String {
        format!("10.231.{}.2", self.k)
    }
    fn root_api(&self) -> String {
        format!("10.232.{}.1", self.k)
    }

    /// Cuts (or heals) the heartbeat link from inside the namespace: the root side loses its
    /// carrier and drops everything; nothing answers.
    fn hb_link(&self, up: bool) {
        let state = if up { "up" } else { "down" };
        ip(&["-n", &self.name, "link", "set", &self.hb.1, state]);
    }

    /// The instance vanishes: both links down, then the namespace deleted (its veths go with
    /// it once no process is left in it).
    fn vanish_links(&self) {
        ip(&["-n", &self.name, "link", "set", &self.hb.1, "down"]);
        ip(&["-n", &self.name, "link", "set", &self.api.1, "down"]);
    }

    fn delete(&mut self) {
        ip(&["netns", "del", &self.name]);
        self.deleted = true;
    }

    fn cleanup(&self) {
        if !self.deleted {
            ip_quiet(&["netns", "del", &self.name]);
        }
        ip_quiet(&["link", "del", &self.hb.0]);
        ip_quiet(&["link", "del", &self.api.0]);
        for net in [231, 232] {
            ip_quiet(&["route", "del", &format!("10.{net}.{}.0/24", self.k)]);
        }
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// Forwards TCP connections from `listen` (the namespace's side of the API link) to the fault
/// proxy on loopback.
async fn forward_tcp(listen: &str, upstream: String) -> String {
    let l = tokio::net::TcpListener::bind(format!("{listen}:0"))
        .await
        .expect("bind forwarder");
    let addr = l.local_addr().expect("forwarder addr");
    tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = l.accept().await else {
                return;
            };
            let upstream = upstream.clone();
            tokio::spawn(async move {
                if let Ok(mut out) = tokio::net::TcpStream::connect(&upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                }
            });
        }
    });
    format!("http://{addr}")
}

struct NsScenario {
    cluster: EdgeCluster,
    rec: support::moto::PlacementRecorder,
    _proxy: FaultProxy,
    world: World,
    _moto: Moto,
    ns: NetNs,
}

impl NsScenario {
    /// nodeA in the root namespace, nodeB in `ns`; both past initdead, nothing moved.
    async fn start(tag: u32, timers: Timers) -> NsScenario {
        let ns = NetNs::create(tag);
        let moto = Moto::start();
        let world = World::build_with(&moto, 2, 1).await;
        let proxy = FaultProxy::start(moto.endpoint());
        let rec = world.record_placements(support::cluster::SAMPLE);
        let mut cluster = EdgeCluster::new(&world, &proxy.endpoint(), timers.clone(), false);
        let upstream = proxy.endpoint().trim_start_matches("http://").to_string();
        let b_endpoint = forward_tcp(&ns.root_api(), upstream).await;
        // Heartbeat addresses: nodeA on the root side of the hb link, nodeB inside.
        let (a_old, b_old) = (cluster.nodes[0].hb_addr, cluster.nodes[1].hb_addr);
        let a_new = format!("{}:{}", ns.root_hb(), a_old.port());
        let b_new = format!("{}:{}", ns.inner_hb(), b_old.port());
        for node in &mut cluster.nodes {
            let text = std::fs::read_to_string(&node.config_path).expect("config");
            let text = text
                .replace(&a_old.to_string(), &a_new)
                .replace(&b_old.to_string(), &b_new);
            std::fs::write(&node.config_path, text).expect("rewrite config");
        }
        cluster.nodes[0].hb_addr = a_new.parse().expect("addr");
        cluster.nodes[1].hb_addr = b_new.parse().expect("addr");
        cluster.nodes[1].wrap = vec!["ip".into(), "netns".into(), "exec".into(), ns.name.clone()];
        cluster.nodes[1]
            .extra_env
            .push(("AWS_ENDPOINT_URL_EC2".into(), b_endpoint));
        cluster.start_all();
        cluster.wait_logged("heartbeats on", Duration::from_secs(30));
        tokio::time::sleep(timers.initdead + Duration::from_secs(1)).await;
        let sc = NsScenario {
            cluster,
            rec,
            _proxy: proxy,
            world,
            _moto: moto,
            ns,
        };
        for i in 0..2 {
            let alloc = &sc.world.nodes[i].allocation_id;
            assert_eq!(sc.rec.moves(alloc), 0, "start moved {alloc}");
        }
        let b_log = sc.cluster.nodes[1].log();
        assert!(
            !b_log.contains("witness write failed"),
            "nodeB reaches EC2 from its namespace:\n{b_log}"
        );
        sc
    }

    fn now(&self) -> Duration {
        self.rec.elapsed()
    }
}

fn timers(stale_after: Duration) -> Timers {
    Timers {
        witness_stale_after: stale_after,
        ..Timers::default().with_witness()
    }
}

/// The whole instance is gone and EC2 says so: the EIP moves at deadtime, long before the
/// witness stamp (stale only after 20 s here) could say anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_gone_and_instance_stopped_is_taken_over_at_deadtime() {
    let t = timers(Duration::from_secs(20));
    let mut sc = NsScenario::start(0, t.clone()).await;
    let a = sc.world.node(0).clone();
    let b = sc.world.node(1).clone();
    let gone = sc.now();
    sc.ns.vanish_links();
    sc.cluster.node(1).kill9();
    sc.ns.delete();
    sc.world.force_stop(1).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let took = loop {
        if let Some(c) = sc
            .rec
            .history(&b.allocation_id)
            .into_iter()
            .find(|c| c.at >= gone && c.placement == Some(a.takeover()))
        {
            break c.at - gone;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no takeover; nodeA:\n{}",
            sc.cluster.nodes[0].log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!(
        "namespace deleted + instance stopped, deadtime 1s, witness stale after 20s: EIP on the \
         survivor after {:.2}s",
        took.as_secs_f64()
    );
    assert!(
        took >= t.deadtime - t.keepalive,
        "before deadtime: {took:?}"
    );
    assert!(
        took <= t.deadtime + Duration::from_secs(5),
        "issue 17 goal deadtime + 5 s: {took:?}"
    );
    let log = sc.cluster.nodes[0].log();
    assert!(
        log.contains("EC2 says instance") && !log.contains("heartbeat port refuses"),
        "decided by EC2's instance state, not by a port-unreachable:\n{log}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(sc.rec.moves(&b.allocation_id), 1);
    assert_eq!(sc.rec.moves(&a.allocation_id), 0);
}

/// Only the heartbeat link is cut; nodeB's instance is `running` and it still writes its
/// witness over the API link: a partition. Cut for longer than stale_after: 0 moves, during and
/// after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_link_cut_while_the_instance_runs_moves_nothing() {
    let t = timers(Duration::from_secs(8));
    let sc = NsScenario::start(1, t.clone()).await;
    let from = sc.now();
    sc.ns.hb_link(false);
    tokio::time::sleep(t.witness_stale_after + Duration::from_secs(4)).await;
    sc.ns.hb_link(true);
    tokio::time::sleep(Duration::from_secs(3)).await;
    for i in 0..2 {
        let alloc = &sc.world.nodes[i].allocation_id;
        let moved: Vec<_> = sc
            .rec
            .history(alloc)
            .into_iter()
            .filter(|c| c.at > from)
            .collect();
        assert!(
            moved.is_empty(),
            "{alloc} moved during a partition: {moved:?}\nnodeA:\n{}\nnodeB:\n{}",
            sc.cluster.nodes[0].log(),
            sc.cluster.nodes[1].log()
        );
    }
    let a_log = sc.cluster.nodes[0].log();
    assert!(
        a_log.contains("witness fresh"),
        "nodeA never consulted the witness:\n{a_log}"
    );
}
