//! End-to-end Elastic IP failover with real `edgelb` processes: UDP heartbeats on loopback, EC2
//! through the fault proxy to the patched moto, placements observed straight at moto by the
//! `PlacementRecorder`. Covers kill -9 (without and with the witness), restart with auto
//! failback, SIGTERM handoff, forged heartbeats, instance gone/stopped and a panic, with test
//! timers (the Heartbeat seed timers and the default witness cadence are in
//! `failover_defaults.rs`). Timings are printed (`cargo test --test failover -- --nocapture`).

mod support;

use std::time::Duration;

use edgelb::cluster::wire::{HeartbeatPayload, Keyring, Sender};
use support::cluster::{assert_within, Scenario, Timers, KEY};

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Scenarios 1 + 2: kill -9 nodeB => its EIP on nodeA's secondary within deadtime + 1 s; restart
/// nodeB => back on its primary failback_hold after its first heartbeat (initdead, 8 s here,
/// does not apply: every peer is heard at once), exactly one move back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_takeover_then_failback_without_witness() {
    let timers = Timers {
        initdead: Duration::from_secs(8),
        ..Timers::default()
    };
    let mut sc = Scenario::start(2, 1, timers.clone(), false).await;
    let (a, b) = (sc.world.node(0).clone(), sc.world.node(1).clone());
    let eip_b = sc.alloc(1);

    sc.proxy.reset_counts();
    let killed = sc.now();
    sc.cluster.node(1).kill9();
    let took = sc
        .wait_seen(&eip_b, &Some(a.takeover()), killed, Duration::from_secs(10))
        .await;
    let takeover = took - killed;
    eprintln!(
        "kill -9 takeover (keepalive 200ms, deadtime 1s, no witness): {:.2}s",
        secs(takeover)
    );
    assert!(
        takeover <= timers.deadtime + Duration::from_secs(1),
        "takeover took {takeover:?}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    eprintln!("EC2 calls for the takeover: {:?}", sc.api_counts());

    let restarted = sc.now();
    sc.cluster.start(1);
    // The restarted node's first heartbeat goes out when it logs "heartbeats on".
    while sc.cluster.nodes[1].log().matches("heartbeats on").count() < 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let first_hb = sc.now();
    let back = sc
        .wait_seen(&eip_b, &Some(b.home()), restarted, Duration::from_secs(20))
        .await;
    let failback = back.saturating_sub(first_hb);
    eprintln!(
        "failback: {:.2}s after the restarted node's first heartbeat ({:.2}s after the restart; \
         initdead {:?}, failback_hold {:?})",
        secs(failback),
        secs(back - restarted),
        timers.initdead,
        timers.failback_hold
    );
    assert_within(
        failback,
        timers.failback_hold,
        timers.failback_hold + Duration::from_secs(1),
        "bound",
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        sc.rec.moves(&eip_b),
        2,
        "one move away, one back: {:#?}",
        sc.rec.history(&eip_b)
    );
    assert_eq!(sc.rec.moves(&sc.alloc(0)), 0, "nodeA's own EIP stayed");
}

/// Scenario 1 with the partition witness (the default): the dead process's host answers
/// port-unreachable, which proves death at deadtime without waiting for the witness stamp to go
/// stale. Also measures the EC2 calls at rest and per takeover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_takeover_with_witness() {
    let timers = Timers::default().with_witness();
    let mut sc = Scenario::start(2, 1, timers.clone(), false).await;
    let a = sc.world.node(0).clone();
    let eip_b = sc.alloc(1);

    sc.proxy.reset_counts();
    let rest_from = sc.now();
    let rest = Duration::from_secs(10);
    tokio::time::sleep(rest).await;
    let at_rest = sc.api_counts();
    let total: u64 = at_rest.iter().map(|(_, n)| n).sum();
    eprintln!(
        "EC2 calls at rest, 2 nodes, {rest:?} (reconcile {:?}, witness every {:?}): {at_rest:?} \
         = {:.0}/hour/node",
        timers.reconcile,
        timers.witness_interval,
        total as f64 * 3600.0 / rest.as_secs_f64() / 2.0
    );
    sc.assert_no_moves_after(rest_from, "at rest");

    sc.proxy.reset_counts();
    let killed = sc.now();
    sc.cluster.node(1).kill9();
    let took = sc
        .wait_seen(&eip_b, &Some(a.takeover()), killed, Duration::from_secs(20))
        .await;
    let takeover = took - killed;
    eprintln!(
        "kill -9 takeover with witness (deadtime 1s, stale_after {:?}): {:.2}s; EC2 calls from \
         kill to takeover: {:?}",
        timers.witness_stale_after,
        secs(takeover),
        sc.api_counts()
    );
    assert!(
        takeover >= timers.deadtime - timers.keepalive,
        "took over before deadtime: {takeover:?}"
    );
    assert!(
        takeover <= timers.deadtime + Duration::from_secs(1),
        "takeover took {takeover:?} (stale_after {:?} must not matter)",
        timers.witness_stale_after
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(sc.rec.moves(&eip_b), 1);
    assert_eq!(sc.rec.moves(&sc.alloc(0)), 0);
}

/// Scenario 3: SIGTERM => the leaving node says so and the peer takes over within 1 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_off_within_one_second() {
    let timers = Timers::default().with_witness();
    let mut sc = Scenario::start(2, 1, timers, false).await;
    let a = sc.world.node(0).clone();
    let eip_b = sc.alloc(1);

    sc.proxy.reset_counts();
    let stopped = sc.now();
    sc.cluster.node(1).sigterm();
    let took = sc
        .wait_seen(
            &eip_b,
            &Some(a.takeover()),
            stopped,
            Duration::from_secs(10),
        )
        .await;
    let handoff = took - stopped;
    eprintln!(
        "SIGTERM handoff: {:.2}s; EC2 calls: {:?}",
        secs(handoff),
        sc.api_counts()
    );
    assert!(
        handoff <= Duration::from_secs(1),
        "handoff took {handoff:?}"
    );
    let status = sc.cluster.node(1).wait_exit(Duration::from_secs(10));
    assert!(status.success(), "nodeB exit: {status}");
    let log = sc.cluster.nodes[1].log();
    assert!(log.contains("announcing leaving"), "{log}");
    assert!(log.contains("left the cluster"), "{log}");
    assert!(
        !log.contains("taking "),
        "the leaving node moved an EIP itself:\n{log}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(sc.rec.moves(&eip_b), 1);
    assert_eq!(sc.rec.moves(&sc.alloc(0)), 0);
}

/// Scenario 4: forged heartbeats from a third party (wrong key claiming nodeB is leaving, an
/// unknown key id, a replayed captured datagram, garbage, an unknown node with the right key)
/// are dropped and counted; nothing moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_heartbeats_are_ignored_and_counted() {
    let timers = Timers::default();
    let sc = Scenario::start(2, 1, timers, true).await;
    let target = sc.cluster.nodes[0].hb_addr;
    let captured = sc.cluster.relay(1, 0).captured();
    assert!(!captured.is_empty(), "relay captured nodeB's heartbeats");

    let leaving = HeartbeatPayload {
        serving: false,
        leaving: true,
        ..HeartbeatPayload::default()
    };
    let incarnation = u64::MAX / 2;
    let mut wrong_key = Sender::new(
        "nodeB",
        incarnation,
        Keyring::new(1, [(1u8, b"not-the-cluster-key".to_vec())]),
    );
    let mut unknown_key_id = Sender::new(
        "nodeB",
        incarnation,
        Keyring::new(9, [(9u8, KEY.as_bytes().to_vec())]),
    );
    let mut stranger = Sender::new(
        "nodeZ",
        incarnation,
        Keyring::new(1, [(1u8, KEY.as_bytes().to_vec())]),
    );
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("forger socket");
    let start = sc.now();
    for round in 0..40u64 {
        let now_ms = 1_700_000_000_000 + round;
        let mut datagrams = vec![
            wrong_key.seal(&leaving, now_ms).expect("seal"),
            unknown_key_id.seal(&leaving, now_ms).expect("seal"),
            stranger.seal(&leaving, now_ms).expect("seal"),
            b"EH\x01garbage".to_vec(),
            vec![0u8; 1500],
        ];
        datagrams.extend(captured.iter().cloned());
        for d in &datagrams {
            sock.send_to(d, target).expect("send forged");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    sc.assert_no_moves_after(start, "forged heartbeats");
    let log = sc.cluster.nodes[0].log();
    // Captured datagrams replayed within the sequence window are exact copies of ones already
    // accepted: counted as duplicates (what a second heartbeat path produces), dropped either way.
    assert!(
        log.contains("replayed datagram") || log.contains("duplicate"),
        "nodeA did not report the replays:\n{log}"
    );
    for reason in [
        "bad MAC",
        "unknown key id",
        "truncated or malformed",
        "larger than",
        "not in the cluster config",
    ] {
        assert!(
            log.contains(reason),
            "nodeA did not report {reason:?}:\n{log}"
        );
    }
    assert!(
        !log.contains("leaving"),
        "a forged leaving notice was believed:\n{log}"
    );
    // The counters in the last warning: 40 rounds of each kind.
    let last = log
        .lines()
        .rev()
        .find(|l| l.contains("dropped so far"))
        .expect("drop summary");
    eprintln!("nodeA: {last}");
}

/// The published `cluster_view` of an in-process node (nodeA) paired with a child nodeB: it
/// shows the peer and both EIPs, renders as tables, and `edgelb status` prints it from a stats
/// API (here a stand-in serving `{"cluster": view}`). Then the in-process graceful stop
/// (`App::drain` -> `ClusterHandle::leave`) hands nodeA's EIP to nodeB within 1 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_view_and_in_process_leave() {
    use support::cluster::EdgeCluster;
    let timers = Timers::default();
    let moto = support::moto::Moto::start();
    let world = support::moto::World::build(&moto, 2).await;
    let proxy = support::fault_proxy::FaultProxy::start(moto.endpoint());
    let rec = world.record_placements(support::cluster::SAMPLE);
    let mut cluster = EdgeCluster::new(&world, &proxy.endpoint(), timers.clone(), false);
    cluster.start(1);
    // nextest runs every test in its own process, so this environment is ours alone.
    for k in cluster.env.removed() {
        std::env::remove_var(k);
    }
    for (k, v) in cluster.env.vars() {
        std::env::set_var(k, v);
    }
    let config = cluster.nodes[0].config_path.clone();
    let mut app = edgelb::app::App::start(edgelb::app::Options {
        source: edgelb::app::Source::File(config),
        node: None,
    })
    .await
    .expect("nodeA starts in-process");
    tokio::time::sleep(timers.initdead + Duration::from_secs(1)).await;

    let view = app.rt.cluster_view.load_full().expect("cluster view");
    let view = (*view).clone();
    assert_eq!(view["me"], "nodeA");
    assert_eq!(view["phase"], "active");
    assert_eq!(view["peers"][0]["name"], "nodeB");
    assert_eq!(view["peers"][0]["state"], "Alive");
    assert_eq!(view["eips"].as_array().map(Vec::len), Some(2));
    assert!(view["wire"]["accepted"].as_u64().unwrap_or(0) > 5, "{view}");
    assert!(view["api_calls"]["DescribeAddresses"]["calls"].as_u64() >= Some(1));
    let text = edgelb::cluster::status_view::render_cluster(&view);
    assert!(text.contains("nodeB  Alive"), "{text}");
    assert!(text.contains(&world.node(1).allocation_id), "{text}");

    let body = serde_json::json!({ "cluster": view }).to_string();
    let api = support::LoopbackServer::start("stats-api", move |req| {
        let body = body.clone();
        async move {
            Some(if req.uri().path() == "/stats.json" {
                support::respond(200, "application/json", body)
            } else {
                support::respond(404, "text/plain", "not found")
            })
        }
    });
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_edgelb"))
        .args(["status", "--api", &api.endpoint()])
        .output()
        .expect("edgelb status");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("PEER") && stdout.contains("nodeB"),
        "{stdout}"
    );
    eprintln!("edgelb status:\n{stdout}");
    drop(api);
    let dead = support::free_port();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_edgelb"))
        .args(["status", "--api", &format!("http://127.0.0.1:{dead}")])
        .output()
        .expect("edgelb status");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot reach"), "{stderr}");

    let eip_a = world.node(0).allocation_id.clone();
    let left = rec.elapsed();
    app.drain(Some(Duration::ZERO)).await;
    let took = loop {
        if let Some(c) = rec
            .history(&eip_a)
            .into_iter()
            .find(|c| c.at >= left && c.placement == Some(world.node(1).takeover()))
        {
            break c.at - left;
        }
        assert!(rec.elapsed() - left < Duration::from_secs(10), "no handoff");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!("in-process leave handoff: {:.2}s", secs(took));
    assert!(took <= Duration::from_secs(1), "handoff took {took:?}");
    let view = app.rt.cluster_view.load_full().expect("cluster view");
    assert_eq!(view["phase"], "stopped");
    drop(cluster);
    drop(rec);
}

/// Key rotation through SIGHUP on both nodes (accept new, sign new, drop old) keeps the cluster
/// together: nothing moves, and each node logs the re-read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_by_reload_moves_nothing() {
    let timers = Timers::default();
    let sc = Scenario::start(2, 1, timers, false).await;
    let from = sc.now();
    let key_path = sc.cluster.dir.path().join("cluster.key");
    let new = "bmV3LWNsdXN0ZXIta2V5";
    for text in [
        format!("1 {KEY}\n2 {new}"),
        format!("2 {new}\n1 {KEY}"),
        format!("2 {new}"),
    ] {
        support::cluster::write_key(&key_path, &text);
        for n in &sc.cluster.nodes {
            let pid = n.pid().expect("running");
            // SAFETY: kill(2) on our own child.
            assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    sc.assert_no_moves_after(from, "key rotation");
    for n in &sc.cluster.nodes {
        let log = n.log();
        assert_eq!(
            log.matches("key file re-read").count(),
            3,
            "{}:\n{log}",
            n.name
        );
        assert!(!log.contains("bad MAC"), "{}:\n{log}", n.name);
        // Same incarnation across the rotation: peers see no restart, no replay window.
        assert!(
            !log.contains("restarted (incarnation"),
            "{}:\n{log}",
            n.name
        );
    }
}

/// Issue 13.3: nodeB stops cleanly (its `leaving` is recorded on the wire), comes back and gets
/// its EIP home; then nodeA restarts (empty replay state) and the recorded `leaving` is replayed
/// to it at once. It is from an incarnation nodeA never heard alive: nothing moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_leaving_replayed_after_a_restart_moves_nothing() {
    use edgelb::cluster::wire::decode;
    let timers = Timers::default();
    let mut sc = Scenario::start(2, 1, timers.clone(), true).await;
    let (a, b) = (sc.world.node(0).clone(), sc.world.node(1).clone());
    let eip_b = sc.alloc(1);
    let t0 = sc.now();
    sc.cluster.nodes[1].sigterm();
    sc.cluster.nodes[1].wait_exit(Duration::from_secs(10));
    sc.wait_seen(&eip_b, &Some(a.takeover()), t0, Duration::from_secs(5))
        .await;
    let ring = Keyring::new(1, [(1, KEY.as_bytes().to_vec())]);
    let leaving: Vec<Vec<u8>> = sc
        .cluster
        .relay(1, 0)
        .captured()
        .into_iter()
        .filter(|d| decode(d, &ring).is_ok_and(|hb| hb.payload.leaving))
        .collect();
    assert!(!leaving.is_empty(), "no leaving datagram recorded");
    let t1 = sc.now();
    sc.cluster.start(1);
    sc.wait_seen(&eip_b, &Some(b.home()), t1, Duration::from_secs(15))
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let from = sc.now();
    sc.cluster.node(0).kill9();
    sc.cluster.start(0);
    while sc.cluster.nodes[0].log().matches("heartbeats on").count() < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    for d in &leaving {
        sock.send_to(d, sc.cluster.nodes[0].hb_addr)
            .expect("replay");
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
    sc.assert_no_moves_after(from, "replayed leaving after a restart");
    let log = sc.cluster.nodes[0].log();
    let run = log.rsplit("===== start #").next().unwrap_or_default();
    assert!(
        run.contains("never heard alive")
            || run.contains("older incarnation")
            || run.contains("freshness window"),
        "the replay was not recognised:\n{run}"
    );
}

/// Issue 13.4: nodeB restarts with its clock 20 s behind its previous run (within the 30 s
/// freshness window). Incarnations are not ordered, so nodeA accepts it as a restart, and its
/// EIP comes home after failback_hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_restarted_with_its_clock_set_back_gets_its_eip_back() {
    let timers = Timers::default().with_witness();
    let mut sc = Scenario::start(2, 1, timers.clone(), false).await;
    let (a, b) = (sc.world.node(0).clone(), sc.world.node(1).clone());
    let eip_b = sc.alloc(1);
    let killed = sc.now();
    sc.cluster.node(1).kill9();
    sc.wait_seen(&eip_b, &Some(a.takeover()), killed, Duration::from_secs(10))
        .await;
    sc.cluster.nodes[1].extra_env = vec![("EDGELB_CLOCK_OFFSET_MS".into(), "-20000".into())];
    let restarted = sc.now();
    sc.cluster.start(1);
    let back = sc
        .wait_seen(&eip_b, &Some(b.home()), restarted, Duration::from_secs(20))
        .await;
    eprintln!(
        "clock set back 20 s: EIP home {:.2}s after the restart",
        secs(back - restarted)
    );
    assert!(back - restarted >= timers.failback_hold);
    let a_log = sc.cluster.nodes[0].log();
    assert!(!a_log.contains("replayed"), "{a_log}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(sc.rec.moves(&eip_b), 2, "{:#?}", sc.rec.history(&eip_b));
}

/// A key file readable by group/other is refused at start, naming the file and its mode.
#[test]
fn refuses_group_readable_key_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("cluster.key");
    std::fs::write(&key, "secret\n").expect("key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let port = support::free_port();
    let config = dir.path().join("edgelb.toml");
    std::fs::write(
        &config,
        format!(
            r#"[node]
name = "a"
[log]
access = "off"
[[listen]]
name = "web"
bind = ["127.0.0.1:{port}"]
[[listen.server]]
name = "s"
address = "127.0.0.1:9"
check = false
[cluster]
bind = "127.0.0.1:0"
auth_key_file = "{key}"
[[cluster.node]]
name = "a"
address = ["127.0.0.1:1"]
[[cluster.node]]
name = "b"
address = ["127.0.0.1:2"]
"#,
            key = key.display()
        ),
    )
    .expect("config");
    let env = support::ChildAwsEnv::new("http://127.0.0.1:9");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_edgelb"));
    cmd.args(["run", "--config"]).arg(&config);
    env.apply(&mut cmd);
    let out = cmd.output().expect("edgelb run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cluster.key") && stderr.contains("mode 0640"),
        "{stderr}"
    );
}

/// One config for every node: peers' ENIs and IPs are not written down; each node finds them
/// through the EC2 API at start (here: where each peer's own EIP is).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_are_found_through_ec2_when_the_config_omits_them() {
    let timers = Timers {
        peer_identity: false,
        ..Timers::default()
    };
    let mut sc = Scenario::start(2, 1, timers.clone(), false).await;
    let a = sc.world.node(0).clone();
    let eip_b = sc.alloc(1);
    let killed = sc.now();
    sc.cluster.node(1).kill9();
    let took = sc
        .wait_seen(&eip_b, &Some(a.takeover()), killed, Duration::from_secs(10))
        .await;
    assert!(
        took - killed <= timers.deadtime + Duration::from_secs(2),
        "{:?}",
        took - killed
    );
}

/// Changed cluster timers apply on SIGHUP without a failover: no EIP moves, and a later death
/// is detected with the new deadtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_timers_change_by_reload_without_a_failover() {
    let timers = Timers::default();
    let mut sc = Scenario::start(2, 1, timers, false).await;
    let from = sc.now();
    for n in &sc.cluster.nodes {
        let text = std::fs::read_to_string(&n.config_path).expect("config");
        assert!(text.contains("deadtime = \"1000ms\""), "{text}");
        let text = text
            .replace("deadtime = \"1000ms\"", "deadtime = \"2500ms\"")
            .replace("initdead = \"2000ms\"", "initdead = \"2500ms\"");
        std::fs::write(&n.config_path, text).expect("write config");
        let pid = n.pid().expect("running");
        // SAFETY: kill(2) on our own child.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    sc.assert_no_moves_after(from, "cluster settings reload");
    for n in &sc.cluster.nodes {
        let log = n.log();
        assert!(
            log.contains("settings reloaded in place"),
            "{}:\n{log}",
            n.name
        );
    }
    let a = sc.world.node(0).clone();
    let eip_b = sc.alloc(1);
    let killed = sc.now();
    sc.cluster.node(1).kill9();
    let took = sc
        .wait_seen(&eip_b, &Some(a.takeover()), killed, Duration::from_secs(10))
        .await;
    let took = took - killed;
    assert!(
        took >= Duration::from_millis(2000),
        "new deadtime applies: {took:?}"
    );
    assert!(took <= Duration::from_secs(5), "{took:?}");
}

/// Issue 17, "instance gone": the peer's process dies *and* nothing answers its heartbeat
/// address any more (heartbeats go through a relay, which swallows the port-unreachable, as a
/// vanished host would). No refusal, so the witness decides: with the default cadence formula
/// (stale_after = max(deadtime + 3 s, 2 × interval + 3 s)), as the defaults do (15 s -> 18 s),
/// the witness decides: the EIP moves after deadtime and within the witness's own bound,
/// stale_after + 2 × witness_interval (the last stamp's age and the read that sees it) + 2 s
/// for the associate and the verify. Issue 17's goal, deadtime + 5 s, is the same figure minus
/// the reads: measured 5.9 s here (deadtime 1 s), so it is met only at the edge today.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_gone_takeover_is_decided_by_the_witness_within_its_bound() {
    let timers = Timers {
        witness_interval: Duration::from_millis(500),
        witness_stale_after: Duration::from_secs(4),
        ..Timers::default().with_witness()
    };
    let mut sc = Scenario::start(2, 1, timers.clone(), true).await;
    let a = sc.world.node(0).clone();
    let eip_b = sc.alloc(1);
    let killed = sc.now();
    sc.cluster.node(1).kill9();
    let took = sc
        .wait_seen(&eip_b, &Some(a.takeover()), killed, Duration::from_secs(20))
        .await;
    let takeover = took - killed;
    eprintln!(
        "instance gone (no port-unreachable), witness every 0.5s, stale after 4s, deadtime 1s: \
         {:.2}s",
        secs(takeover)
    );
    let bound = timers.witness_stale_after + 2 * timers.witness_interval + Duration::from_secs(2);
    assert_within(takeover, timers.deadtime, bound, "bound");
    let log = sc.cluster.nodes[0].log();
    assert!(
        log.contains("witness stale"),
        "not decided by the witness:\n{log}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(sc.rec.moves(&eip_b), 1);
}

/// Issue 17, "instance gone" that EC2 knows of: the peer's process dies, nothing answers its
/// heartbeat address (relay: no port-unreachable), and its instance is stopped through the API
/// (as an operator, an auto-scaling group or a spot interruption does). The survivor reads the
/// instance state with the witness at deadtime: EC2's `stopped` is proof of death that a
/// partition cannot fake, so the EIP moves at deadtime, although the stamp (stale only after
/// 20 s here) would still say "alive".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_stopped_in_ec2_is_taken_over_at_deadtime_with_the_witness_on() {
    let timers = Timers {
        witness_stale_after: Duration::from_secs(20),
        ..Timers::default().with_witness()
    };
    let mut sc = Scenario::start(2, 1, timers, true).await;
    let eip_b = sc.alloc(1);
    let takeover = sc
        .stopped_instance_taken_over(Duration::from_secs(15), "issue 17 goal")
        .await;
    eprintln!(
        "instance stopped in EC2 (no port-unreachable), deadtime 1s, stale_after 20s: {:.2}s",
        secs(takeover)
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(sc.rec.moves(&eip_b), 1);
}

/// Issue 17: a node that dies of a panic says "leaving" first. nodeB's cluster task panics
/// (an injected fault, debug builds only); its panic hook sends the prepared `leaving` to every
/// heartbeat address and the process exits with status 70. Its heartbeats go through relays
/// (no port-unreachable) and deadtime is 3 s, so only the leaving can move the EIP this soon.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_dying_of_a_panic_says_leaving_and_its_eip_moves_at_once() {
    let timers = Timers {
        deadtime: Duration::from_secs(3),
        warntime: Duration::from_millis(1500),
        initdead: Duration::from_secs(3),
        ..Timers::default().with_witness()
    };
    let mut sc = Scenario::start_with(2, 1, timers.clone(), true, |c| {
        c.nodes[1]
            .extra_env
            .push(("EDGELB_FAULT_PANIC_AFTER_MS".into(), "7000".into()));
        // No backtrace to print: the exit follows the panic within milliseconds.
        c.nodes[1]
            .extra_env
            .push(("RUST_BACKTRACE".into(), "0".into()));
    })
    .await;
    let a = sc.world.node(0).clone();
    let eip_b = sc.alloc(1);
    let status = sc.cluster.node(1).wait_exit(Duration::from_secs(15));
    let exited = sc.now();
    assert_eq!(status.code(), Some(70), "exit status after the panic");
    let b_log = sc.cluster.nodes[1].log();
    assert!(
        b_log.contains("injected fault") && b_log.contains("said leaving"),
        "{b_log}"
    );
    let took = sc
        .wait_seen(
            &eip_b,
            &Some(a.takeover()),
            exited.saturating_sub(Duration::from_millis(500)),
            Duration::from_secs(10),
        )
        .await;
    let after = took.saturating_sub(exited);
    eprintln!(
        "panic -> leaving -> EIP on the survivor {:.2}s after the exit (deadtime 3s)",
        secs(after)
    );
    assert!(
        after < timers.deadtime - timers.keepalive,
        "moved only after deadtime: {after:?}; not by the leaving"
    );
    let a_log = sc.cluster.nodes[0].log();
    assert!(a_log.contains("leaving (graceful stop)"), "{a_log}");
    assert_eq!(sc.rec.moves(&eip_b), 1);
}
