//! End-to-end Elastic IP failover with real `edgelb` processes: UDP heartbeats on loopback, EC2
//! through the fault proxy to the patched moto, placements observed straight at moto by the
//! `PlacementRecorder`. Covers kill -9 (without and with the witness, with test timers and once
//! with the Heartbeat seed timers), restart with auto failback, SIGTERM handoff and forged
//! heartbeats. Timings are printed (`cargo nextest run --test failover --no-capture`).

mod support;

use std::time::Duration;

use edgelb::cluster::wire::{HeartbeatPayload, Keyring, Sender};
use support::cluster::{Scenario, Timers, KEY};

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Scenarios 1 + 2: kill -9 nodeB => its EIP on nodeA's secondary within deadtime + 1 s; restart
/// nodeB => back on its primary after failback_hold, exactly one move back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_takeover_then_failback_without_witness() {
    let timers = Timers::default();
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
    let back = sc
        .wait_seen(&eip_b, &Some(b.home()), restarted, Duration::from_secs(20))
        .await;
    let failback = back - restarted;
    eprintln!(
        "failback after restart: {:.2}s (initdead {:?}, failback_hold {:?})",
        secs(failback),
        timers.initdead,
        timers.failback_hold
    );
    assert!(
        failback >= timers.failback_hold,
        "failback before failback_hold: {failback:?}"
    );
    assert!(
        failback <= timers.initdead + timers.failback_hold + Duration::from_secs(4),
        "failback took {failback:?}"
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

/// Scenario 1 with the partition witness: detection waits for the dead node's stamp to go
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
        takeover <= timers.deadtime + timers.witness_stale_after + Duration::from_secs(2),
        "takeover took {takeover:?}"
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
        .wait_seen(&eip_b, &Some(a.takeover()), stopped, Duration::from_secs(10))
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
    for reason in [
        "bad MAC",
        "unknown key id",
        "replayed datagram",
        "truncated or malformed",
        "larger than",
        "not in the cluster config",
    ] {
        assert!(log.contains(reason), "nodeA did not report {reason:?}:\n{log}");
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

/// The Heartbeat seed timers (keepalive 2 s, deadtime 15 s), witness off: one kill -9, measured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_takeover_with_seed_timers() {
    let timers = Timers::seed();
    let mut sc = Scenario::start(2, 1, timers.clone(), false).await;
    let a = sc.world.node(0).clone();
    let eip_b = sc.alloc(1);
    sc.proxy.reset_counts();
    let killed = sc.now();
    sc.cluster.node(1).kill9();
    let took = sc
        .wait_seen(&eip_b, &Some(a.takeover()), killed, Duration::from_secs(30))
        .await;
    let takeover = took - killed;
    eprintln!(
        "kill -9 takeover with seed timers (keepalive 2s, deadtime 15s, no witness): {:.2}s; \
         EC2 calls: {:?}",
        secs(takeover),
        sc.api_counts()
    );
    assert!(
        takeover >= timers.deadtime - timers.keepalive,
        "too early: {takeover:?}"
    );
    assert!(
        takeover <= timers.deadtime + Duration::from_secs(1),
        "takeover took {takeover:?}"
    );
    assert_eq!(sc.rec.moves(&eip_b), 1);
}
