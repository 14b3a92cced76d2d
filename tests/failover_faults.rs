//! Failover under faults (issue 9) with real `edgelb` processes: a paused process (SIGSTOP), a
//! cut heartbeat link (UDP relays), a throttled EC2 API during a takeover, a flapping node,
//! three nodes with two dying, and a node whose backends all fail. Placements are ground truth
//! from moto (`PlacementRecorder`); timings are printed with `--no-capture`.

mod support;

use std::time::Duration;

use edgelb::cloud::Placement;
use support::cluster::{Scenario, Timers};
use support::moto::PlacementChange;

/// Witness timers for the fault tests: a pause of deadtime + 5 s (6 s) must stay well inside
/// `witness_stale_after`, so a paused node is never declared dead.
fn witness_timers() -> Timers {
    Timers {
        witness_stale_after: Duration::from_secs(10),
        ..Timers::default().with_witness()
    }
}

/// Where `alloc` was at recorder time `t`, from its history.
fn placement_at(history: &[PlacementChange], t: Duration) -> Option<Placement> {
    history
        .iter()
        .take_while(|c| c.at <= t)
        .last()
        .and_then(|c| c.placement.clone())
}

/// Scenario 5: nodeA is paused (SIGSTOP) for deadtime + 5 s, then continued. Its peer sees
/// silence but a fresh witness (partition, not death) and moves nothing; the woken node detects
/// its own pause and does not grab the healthy peer's EIP. Zero moves either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigstop_longer_than_deadtime_moves_nothing_with_witness() {
    let timers = witness_timers();
    let sc = Scenario::start(2, 1, timers.clone(), false).await;
    let from = sc.now();
    let pause = timers.deadtime + Duration::from_secs(5);
    sc.cluster.nodes[0].sigstop();
    tokio::time::sleep(pause).await;
    sc.cluster.nodes[0].sigcont();
    tokio::time::sleep(Duration::from_secs(8)).await;
    sc.assert_no_moves_after(from, "SIGSTOP/SIGCONT");
    let b_log = sc.cluster.nodes[1].log();
    assert!(
        b_log.contains("witness fresh"),
        "nodeB never consulted the witness:\n{b_log}"
    );
    let a_log = sc.cluster.nodes[0].log();
    eprintln!(
        "nodeA after the pause: {}",
        a_log
            .lines()
            .filter(|l| l.contains("paus") || l.contains("gap") || l.contains("resum"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Scenario 5 without the witness: the paused nodeA looks dead, so nodeB takes nodeA's EIP
/// (Heartbeat semantics, one move). The woken nodeA detects its pause and never touches nodeB's
/// EIP; it gets its own back once, after failback_hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigstop_without_witness_woken_node_takes_nothing() {
    let timers = Timers::default();
    let sc = Scenario::start(2, 1, timers.clone(), false).await;
    let (a, b) = (sc.world.node(0).clone(), sc.world.node(1).clone());
    let (eip_a, eip_b) = (sc.alloc(0), sc.alloc(1));
    let from = sc.now();
    sc.cluster.nodes[0].sigstop();
    let took = sc
        .wait_seen(&eip_a, &Some(b.takeover()), from, Duration::from_secs(5))
        .await;
    tokio::time::sleep((from + timers.deadtime + Duration::from_secs(5)).saturating_sub(sc.now()))
        .await;
    let resumed = sc.now();
    sc.cluster.nodes[0].sigcont();
    let back = sc
        .wait_seen(&eip_a, &Some(a.home()), resumed, Duration::from_secs(15))
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    eprintln!(
        "SIGSTOP without witness: nodeB took nodeA's EIP after {:.2}s; back home {:.2}s after \
         SIGCONT",
        (took - from).as_secs_f64(),
        (back - resumed).as_secs_f64()
    );
    assert!(
        sc.changes_after(&eip_b, from).is_empty(),
        "the woken node touched nodeB's EIP: {:#?}",
        sc.rec.history(&eip_b)
    );
    assert_eq!(sc.rec.moves(&eip_a), 2, "{:#?}", sc.rec.history(&eip_a));
    assert!(back - resumed >= timers.failback_hold);
}

/// Scenario 6: the heartbeat link (only) is cut for 40 s with the witness on: both sides see a
/// silent peer whose witness is fresh and move nothing; healing moves nothing either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_partition_40s_with_witness_moves_nothing() {
    let timers = witness_timers();
    let sc = Scenario::start(2, 1, timers, true).await;
    let from = sc.now();
    sc.cluster.cut(0, 1, true);
    tokio::time::sleep(Duration::from_secs(40)).await;
    sc.assert_no_moves_after(from, "partition");
    assert!(sc.cluster.relay(0, 1).dropped() > 100, "the link was cut");
    for n in &sc.cluster.nodes {
        let log = n.log();
        assert!(
            log.contains("partition suspected"),
            "{} did not see a partition:\n{log}",
            n.name
        );
    }
    let healed = sc.now();
    sc.cluster.cut(0, 1, false);
    tokio::time::sleep(Duration::from_secs(8)).await;
    sc.assert_no_moves_after(from, "partition healed");
    eprintln!(
        "partition 40s + heal: zero moves ({:.1}s observed after healing)",
        (sc.now() - healed).as_secs_f64()
    );
}

/// Scenario 7: the EC2 API answers RequestLimitExceeded for 45 s starting when nodeB is killed.
/// Nothing can move meanwhile; once the API recovers the stranded EIP lands on nodeA's
/// secondary, exactly one move.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_throttled_45s_during_kill_heals_after() {
    let timers = Timers::default().with_witness();
    let mut sc = Scenario::start(2, 1, timers.clone(), false).await;
    let (a, b) = (sc.world.node(0).clone(), sc.world.node(1).clone());
    let eip_b = sc.alloc(1);
    sc.proxy.reset_counts();
    sc.proxy.throttle();
    let killed = sc.now();
    sc.cluster.node(1).kill9();
    tokio::time::sleep(Duration::from_secs(45)).await;
    assert_eq!(
        placement_at(&sc.rec.history(&eip_b), sc.now()),
        Some(b.home()),
        "nothing can move while throttled"
    );
    let throttled = sc.api_counts();
    sc.proxy.pass();
    let recovered = sc.now();
    let took = sc
        .wait_seen(
            &eip_b,
            &Some(a.takeover()),
            recovered,
            Duration::from_secs(20),
        )
        .await;
    eprintln!(
        "throttled 45s from the kill: EIP on the survivor {:.2}s after the API recovered \
         ({:.1}s after the kill); requests during throttling: {throttled:?}",
        (took - recovered).as_secs_f64(),
        (took - killed).as_secs_f64()
    );
    assert!(
        took - recovered <= timers.retry_backoff_max + Duration::from_secs(6),
        "healing took {:?}",
        took - recovered
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(sc.rec.moves(&eip_b), 1, "{:#?}", sc.rec.history(&eip_b));
    assert_eq!(sc.rec.moves(&sc.alloc(0)), 0);
}

/// Scenario 8: nodeB is killed and restarted every 10 s, three times (down 3 s, up 7 s). Flap
/// damping (initdead + failback_hold 10 s) keeps its EIP on nodeA: one move away, and one move
/// back only once nodeB stays up. The EIP never sits on the dead nodeB past the detection
/// window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flapping_node_moves_eip_once_away_once_back() {
    let timers = Timers {
        failback_hold: Duration::from_secs(10),
        ..Timers::default().with_witness()
    };
    let mut sc = Scenario::start(2, 1, timers.clone(), false).await;
    let (a, b) = (sc.world.node(0).clone(), sc.world.node(1).clone());
    let eip_b = sc.alloc(1);
    let mut down_windows = Vec::new();
    let mut last_restart = Duration::ZERO;
    for _ in 0..3 {
        let killed = sc.now();
        sc.cluster.node(1).kill9();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let restarted = sc.now();
        sc.cluster.start(1);
        down_windows.push((killed, restarted));
        last_restart = restarted;
        tokio::time::sleep(Duration::from_secs(7)).await;
    }
    let back = sc
        .wait_seen(
            &eip_b,
            &Some(b.home()),
            last_restart,
            Duration::from_secs(25),
        )
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let history = sc.rec.history(&eip_b);
    eprintln!(
        "flapping: EIP history {:?}; back home {:.1}s after the last restart",
        history
            .iter()
            .map(|c| (
                format!("{:.1}s", c.at.as_secs_f64()),
                c.placement.as_ref().map(|p| p.private_ip)
            ))
            .collect::<Vec<_>>(),
        (back - last_restart).as_secs_f64()
    );
    assert_eq!(sc.rec.moves(&eip_b), 2, "one away, one back: {history:#?}");
    let away = history[1].at;
    assert_eq!(history[1].placement, Some(a.takeover()));
    assert!(
        away - down_windows[0].0 <= timers.deadtime + Duration::from_secs(1),
        "first takeover took {:?}",
        away - down_windows[0].0
    );
    assert!(
        back - last_restart >= timers.failback_hold,
        "failback before failback_hold"
    );
    let window = timers.deadtime + Duration::from_secs(1);
    for (killed, restarted) in down_windows {
        let mut t = killed + window;
        while t < restarted {
            assert_ne!(
                placement_at(&history, t),
                Some(b.home()),
                "EIP on dead nodeB at {t:?}"
            );
            t += Duration::from_millis(100);
        }
    }
    assert_eq!(sc.rec.moves(&sc.alloc(0)), 0);
}

/// Scenario 9: three nodes (two secondary IPs each), nodeA and nodeB die together: both EIPs
/// land on nodeC, on two distinct secondary IPs, one move each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_two_dying_both_eips_on_the_last() {
    let timers = Timers::default().with_witness();
    let mut sc = Scenario::start(3, 2, timers.clone(), false).await;
    let c = sc.world.node(2).clone();
    let slots = c.takeover_slots();
    let killed = sc.now();
    sc.cluster.node(0).kill9();
    sc.cluster.node(1).kill9();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let (pa, pb) = loop {
        let pa = placement_at(&sc.rec.history(&sc.alloc(0)), sc.now());
        let pb = placement_at(&sc.rec.history(&sc.alloc(1)), sc.now());
        let on_c = |p: &Option<Placement>| p.as_ref().is_some_and(|p| slots.contains(p));
        if on_c(&pa) && on_c(&pb) {
            break (pa, pb);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not both on nodeC: {:#?}",
            sc.rec.timeline()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_ne!(pa, pb, "two EIPs on one private IP");
    let settled = sc.now() - killed;
    eprintln!(
        "3 nodes, 2 killed: both EIPs on nodeC ({:?}, {:?}) within {:.2}s",
        pa.as_ref().map(|p| p.private_ip),
        pb.as_ref().map(|p| p.private_ip),
        settled.as_secs_f64()
    );
    assert!(settled <= timers.deadtime + Duration::from_secs(2));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(sc.rec.moves(&sc.alloc(0)), 1);
    assert_eq!(sc.rec.moves(&sc.alloc(1)), 1);
    assert_eq!(sc.rec.moves(&sc.alloc(2)), 0);
}

/// Scenario 10: nodeA's only backend goes away; health checks mark it DOWN, so nodeA announces
/// serving=false: nodeB takes nodeA's EIP, and nodeA takes nothing when nodeB dies later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn unhealthy_node_loses_its_eip_and_takes_none() {
    let timers = Timers {
        check: true,
        ..Timers::default().with_witness()
    };
    let mut sc = Scenario::start(2, 1, timers.clone(), false).await;
    let (a, b) = (sc.world.node(0).clone(), sc.world.node(1).clone());
    let eip_a = sc.alloc(0);
    let eip_b = sc.alloc(1);
    let stopped = sc.now();
    sc.cluster.stop_backend(0);
    let took = sc
        .wait_seen(
            &eip_a,
            &Some(b.takeover()),
            stopped,
            Duration::from_secs(10),
        )
        .await;
    eprintln!(
        "unhealthy nodeA lost its EIP after {:.2}s",
        (took - stopped).as_secs_f64()
    );
    let killed = sc.now();
    sc.cluster.node(1).kill9();
    tokio::time::sleep(timers.deadtime + Duration::from_secs(5)).await;
    assert!(
        sc.changes_after(&eip_b, killed).is_empty(),
        "unhealthy nodeA took nodeB's EIP"
    );
    assert!(
        sc.changes_after(&eip_a, killed).is_empty(),
        "unhealthy nodeA took its own EIP back"
    );
    assert_ne!(
        placement_at(&sc.rec.history(&eip_b), sc.now()),
        Some(a.takeover())
    );
}

/// Issue 17: every node's backends fail at once (nobody can serve): the health checks see it a
/// little apart, but nothing moves (`unhealthy_hold`); before, 3-4 moves happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_backends_down_everywhere_moves_nothing() {
    let timers = Timers {
        check: true,
        ..Timers::default()
    };
    let mut sc = Scenario::start(2, 1, timers.clone(), false).await;
    let from = sc.now();
    sc.cluster.stop_backend(0);
    // The second pool fails a health-check interval later, as when a shared backend dies.
    tokio::time::sleep(Duration::from_millis(200)).await;
    sc.cluster.stop_backend(1);
    tokio::time::sleep(Duration::from_secs(8)).await;
    sc.assert_no_moves_after(from, "all backends down");
    for n in &sc.cluster.nodes {
        let log = n.log();
        assert!(
            log.contains("local health: unhealthy"),
            "{} never went unhealthy:\n{log}",
            n.name
        );
    }
}
