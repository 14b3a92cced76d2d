//! Health checks against real TCP/HTTP backends on 127.0.0.1: HAProxy's rise/fall arithmetic,
//! startup at `health = rise`, HTTP checks, MAINT/ready, reloads, observe layer4, shutdown.

mod common_stats;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common_stats::*;
use edgelb::health::{self, Probe};
use edgelb::runtime::{AdminState, CheckStatus, ListenRt, Runtime, ServerRt};
use edgelb::stats::server_status;

fn server(rt: &Runtime, name: &str) -> (Arc<ListenRt>, Arc<ServerRt>) {
    let snap = rt.load();
    let l = snap.listens[0].clone();
    let s = l.server_by_name(name).expect("server").clone();
    (l, s)
}

fn status(rt: &Runtime, name: &str) -> String {
    let (l, s) = server(rt, name);
    server_status(&l, &s)
}

fn fail() -> Probe {
    Probe {
        status: CheckStatus::L4Con,
        code: 0,
        info: "Connection refused".into(),
    }
}

fn ok() -> Probe {
    Probe {
        status: CheckStatus::L4Ok,
        code: 0,
        info: String::new(),
    }
}

#[tokio::test]
async fn rise_fall_arithmetic_matches_haproxy() {
    let rt = runtime(&listen_toml(
        "webapp",
        18080,
        &["127.0.0.1:1".parse().unwrap()],
        "",
    ));
    let (l, s) = server(&rt, "app1");
    let step = |p: Probe| health::apply_check(&l, &s, &p, Duration::from_millis(1));
    let h = || s.live.health.load(Ordering::Relaxed);
    // Start: UP with health = rise, shown as "UP 1/3" with check status INI.
    assert_eq!((h(), s.live.is_up()), (2, true));
    assert_eq!(server_status(&l, &s), "UP 1/3");
    assert_eq!(s.live.check_status(), CheckStatus::Ini);
    step(ok());
    assert_eq!((h(), server_status(&l, &s).as_str()), (4, "UP"));
    step(fail());
    assert_eq!((h(), server_status(&l, &s).as_str()), (3, "UP 2/3"));
    step(fail());
    assert_eq!((h(), server_status(&l, &s).as_str()), (2, "UP 1/3"));
    assert!(s.live.is_up());
    step(fail());
    assert_eq!((h(), server_status(&l, &s).as_str()), (0, "DOWN"));
    assert!(!s.live.is_up());
    // Failures while already at 0 are not counted (HAProxy only counts while health > 0).
    step(fail());
    assert_eq!(s.live.chkfail.load(Ordering::Relaxed), 3);
    assert_eq!(s.live.chkdown.load(Ordering::Relaxed), 1);
    step(ok());
    assert_eq!((h(), server_status(&l, &s).as_str()), (1, "DOWN 1/2"));
    assert!(!s.live.is_up());
    step(ok());
    assert_eq!((h(), server_status(&l, &s).as_str()), (4, "UP"));
    assert!(s.live.is_up());
    assert_eq!(s.live.check_status(), CheckStatus::L4Ok);
}

#[tokio::test]
async fn one_failed_first_check_marks_a_dead_server_down() {
    let alive = Backend::start().await;
    let mut dead = Backend::start().await;
    dead.kill().await;
    let rt = runtime(&listen_toml(
        "webapp",
        18080,
        &[alive.addr, dead.addr],
        "inter = \"200ms\"",
    ));
    let _h = health::spawn(rt.clone());
    // First probe is jittered within one inter; one failure from health = rise is enough.
    let took = wait_for(Duration::from_secs(3), "app2 DOWN", || {
        let rt = rt.clone();
        async move { status(&rt, "app2") == "DOWN" }
    })
    .await;
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    let (_, s2) = server(&rt, "app2");
    assert_eq!(s2.live.check_status(), CheckStatus::L4Con);
    assert_eq!(s2.live.chkdown.load(Ordering::Relaxed), 1);
    wait_for(Duration::from_secs(3), "app1 fully UP", || {
        let rt = rt.clone();
        async move { status(&rt, "app1") == "UP" }
    })
    .await;
    let (_, s1) = server(&rt, "app1");
    assert_eq!(s1.live.check_status(), CheckStatus::L4Ok);
    assert_eq!(s1.live.health.load(Ordering::Relaxed), 4);
}

#[tokio::test]
async fn up_server_needs_fall_failures_then_rise_successes() {
    let mut b = Backend::start().await;
    let addr = b.addr;
    let rt = runtime(&listen_toml("webapp", 18080, &[addr], "inter = \"250ms\""));
    let _h = health::spawn(rt.clone());
    wait_for(Duration::from_secs(3), "fully UP", || {
        let rt = rt.clone();
        async move { status(&rt, "app1") == "UP" }
    })
    .await;
    b.kill().await;
    // Passes through "UP 2/3" and "UP 1/3" before DOWN: three failures, about 3 x inter.
    let mut seen = Vec::new();
    let took = wait_for(Duration::from_secs(3), "DOWN after fall", || {
        let st = status(&rt, "app1");
        if seen.last() != Some(&st) {
            seen.push(st.clone());
        }
        async move { st == "DOWN" }
    })
    .await;
    assert_eq!(seen, ["UP", "UP 2/3", "UP 1/3", "DOWN"], "took {took:?}");
    assert!(took >= Duration::from_millis(400), "too fast: {took:?}");
    let (_, s) = server(&rt, "app1");
    assert_eq!(s.live.chkfail.load(Ordering::Relaxed), 3);

    let _b = Backend::start_at(addr).await;
    let mut seen = Vec::new();
    wait_for(Duration::from_secs(3), "UP after rise", || {
        let st = status(&rt, "app1");
        if seen.last() != Some(&st) {
            seen.push(st.clone());
        }
        async move { st == "UP" }
    })
    .await;
    assert_eq!(seen, ["DOWN", "DOWN 1/2", "UP"]);
    assert!(s.live.downtime_total_ms() > 0);
}

#[tokio::test]
async fn http_check_uses_expected_status_range() {
    let b = Backend::start().await;
    b.status.store(503, Ordering::Relaxed);
    let rt = runtime(&listen_toml(
        "webapp",
        18080,
        &[b.addr],
        "inter = \"100ms\"\nhttp = { path = \"/health\", expect_status = \"200-299\" }",
    ));
    let _h = health::spawn(rt.clone());
    wait_for(Duration::from_secs(3), "DOWN on 503", || {
        let rt = rt.clone();
        async move { status(&rt, "app1") == "DOWN" }
    })
    .await;
    let (_, s) = server(&rt, "app1");
    assert_eq!(s.live.check_status(), CheckStatus::L7Sts);
    assert_eq!(s.live.check_code.load(Ordering::Relaxed), 503);
    assert_eq!(
        health::check_info(&s.live).as_deref(),
        Some("Service Unavailable")
    );
    b.status.store(200, Ordering::Relaxed);
    wait_for(Duration::from_secs(3), "UP on 200", || {
        let rt = rt.clone();
        async move { status(&rt, "app1") == "UP" }
    })
    .await;
    assert_eq!(s.live.check_status(), CheckStatus::L7Ok);
    assert_eq!(s.live.check_code.load(Ordering::Relaxed), 200);
}

#[tokio::test]
async fn http_check_timeout_and_garbage_are_layer7_errors() {
    // A listener that accepts and never answers: L7TOUT after `timeout`.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let _keep = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let h = edgelb::runtime::HealthRt {
        inter: Duration::from_millis(200),
        fastinter: Duration::from_millis(200),
        downinter: Duration::from_millis(200),
        timeout: Duration::from_millis(200),
        rise: 2,
        fall: 3,
        observe_layer4: false,
        http: Some(edgelb::runtime::HttpCheckRt {
            method: "GET".into(),
            path: "/".into(),
            host: None,
            expect: (200, 399),
        }),
    };
    assert_eq!(
        health::probe(silent_addr, &h).await.status,
        CheckStatus::L7Tout
    );
    // Something that is not HTTP.
    let junk = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let junk_addr = junk.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Ok((mut s, _)) = junk.accept().await {
            let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2\r\n").await;
        }
    });
    assert_eq!(
        health::probe(junk_addr, &h).await.status,
        CheckStatus::L7Rsp
    );
    // Refused connect: L4CON with strerror as info, like HAProxy.
    let mut dead = Backend::start().await;
    dead.kill().await;
    let p = health::probe(dead.addr, &h).await;
    assert_eq!(
        (p.status, p.info.as_str()),
        (CheckStatus::L4Con, "Connection refused")
    );
}

#[tokio::test]
async fn maint_stops_checks_and_ready_comes_back_up_1_of_3() {
    let mut dead = Backend::start().await;
    dead.kill().await;
    let rt = runtime(&listen_toml(
        "webapp",
        18080,
        &[dead.addr],
        "inter = \"100ms\"",
    ));
    let _h = health::spawn(rt.clone());
    wait_for(Duration::from_secs(3), "DOWN", || {
        let rt = rt.clone();
        async move { status(&rt, "app1") == "DOWN" }
    })
    .await;
    health::set_state(&rt, "webapp", "app1", "maint").unwrap();
    assert_eq!(status(&rt, "app1"), "MAINT");
    let (_, s) = server(&rt, "app1");
    tokio::time::sleep(Duration::from_millis(150)).await;
    let last = s.live.last_check_ms.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        s.live.last_check_ms.load(Ordering::Relaxed),
        last,
        "MAINT must stop checks"
    );
    // Leaving MAINT: UP at once with health = rise, so one failed check takes it down again.
    health::set_state(&rt, "webapp", "app1", "ready").unwrap();
    assert_eq!(status(&rt, "app1"), "UP 1/3");
    assert!(s.live.eligible_rr());
    wait_for(
        Duration::from_secs(3),
        "DOWN again after one failure",
        || {
            let rt = rt.clone();
            async move { status(&rt, "app1") == "DOWN" }
        },
    )
    .await;
}

#[tokio::test]
async fn drain_keeps_cookie_holders_and_checks_running() {
    let b = Backend::start().await;
    let rt = runtime(&listen_toml(
        "webapp",
        18080,
        &[b.addr],
        "inter = \"100ms\"",
    ));
    let _h = health::spawn(rt.clone());
    health::set_state(&rt, "webapp", "app1", "drain").unwrap();
    let (_, s) = server(&rt, "app1");
    assert_eq!(s.live.admin(), AdminState::Drain);
    assert!(s.live.eligible_cookie());
    assert!(!s.live.eligible_rr());
    let before = s.live.last_check_ms.load(Ordering::Relaxed);
    wait_for(Duration::from_secs(3), "checks continue in DRAIN", || {
        let s = s.clone();
        async move { s.live.last_check_ms.load(Ordering::Relaxed) > before }
    })
    .await;
    wait_for(Duration::from_secs(3), "DRAIN fully up", || {
        let rt = rt.clone();
        async move { status(&rt, "app1") == "DRAIN" }
    })
    .await;
}

#[tokio::test]
async fn weight_and_check_admin_operations() {
    let b = Backend::start().await;
    let toml = format!(
        "[[listen]]\nname = \"webapp\"\nbind = [\"127.0.0.1:18080\"]\n[[listen.server]]\nname = \"app1\"\naddress = \"{}\"\nweight = 4\n",
        b.addr
    );
    let rt = runtime(&toml);
    assert_eq!(health::set_weight(&rt, "webapp", "app1", "50%"), Ok(2));
    assert_eq!(health::set_weight(&rt, "webapp", "app1", "0"), Ok(0));
    let (l, s) = server(&rt, "app1");
    assert!(!s.live.eligible_rr() && s.live.eligible_cookie());
    assert_eq!(
        server_status(&l, &s),
        "UP 1/3",
        "weight 0 keeps its UP status"
    );
    assert!(health::set_weight(&rt, "webapp", "app1", "257").is_err());
    assert_eq!(health::set_weight(&rt, "webapp", "app1", "100%"), Ok(4));
    assert_eq!(
        health::set_weight(&rt, "webapp", "nope", "1"),
        Err(health::AdminError::NoSuchServer)
    );
    assert_eq!(
        health::set_weight(&rt, "nope", "app1", "1"),
        Err(health::AdminError::NoSuchListen)
    );
    assert_eq!(health::set_weight(&rt, "#1", "#1", "3"), Ok(3));
    health::set_check(&rt, "webapp", "app1", "disable").unwrap();
    assert_eq!(server_status(&l, &s), "no check");
    health::set_check(&rt, "webapp", "app1", "enable").unwrap();
    assert_eq!(server_status(&l, &s), "UP 1/3");
    assert!(health::set_check(&rt, "webapp", "app1", "maybe").is_err());
}

#[tokio::test]
async fn reload_keeps_state_of_kept_servers_and_follows_added_and_removed() {
    let mut dead = Backend::start().await;
    dead.kill().await;
    let alive = Backend::start().await;
    let health_cfg = "inter = \"100ms\"";
    let rt = runtime(&listen_toml(
        "webapp",
        18080,
        &[dead.addr, alive.addr],
        health_cfg,
    ));
    let _h = health::spawn(rt.clone());
    wait_for(Duration::from_secs(3), "app1 DOWN", || {
        let rt = rt.clone();
        async move { status(&rt, "app1") == "DOWN" }
    })
    .await;
    let (_, old_app2) = server(&rt, "app2");
    // New config: app1 kept (same live state), app2 removed, app3 added (dead).
    let mut dead3 = Backend::start().await;
    dead3.kill().await;
    let toml = format!(
        "[[listen]]\nname = \"webapp\"\nbind = [\"127.0.0.1:18080\"]\n[listen.health]\n{health_cfg}\n\
         [[listen.server]]\nname = \"app1\"\naddress = \"{}\"\n\
         [[listen.server]]\nname = \"app3\"\naddress = \"{}\"\n",
        dead.addr, dead3.addr
    );
    reload(&rt, &toml);
    assert_eq!(status(&rt, "app1"), "DOWN", "kept server keeps its state");
    wait_for(Duration::from_secs(3), "app3 checked and DOWN", || {
        let rt = rt.clone();
        async move { status(&rt, "app3") == "DOWN" }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let last = old_app2.live.last_check_ms.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        old_app2.live.last_check_ms.load(Ordering::Relaxed),
        last,
        "removed server is no longer probed"
    );
}

#[tokio::test]
async fn observe_layer4_counts_failed_connects_toward_fall() {
    let b = Backend::start().await;
    // Checks far apart so only the passive signal moves health during the test.
    let rt = runtime(&listen_toml(
        "webapp",
        18080,
        &[b.addr],
        "inter = \"60s\"\nobserve_layer4 = true",
    ));
    let (l, s) = server(&rt, "app1");
    health::apply_check(&l, &s, &ok(), Duration::ZERO);
    assert_eq!(server_status(&l, &s), "UP");
    health::observe_connect(&l, &s, true);
    assert_eq!(
        s.live.health.load(Ordering::Relaxed),
        4,
        "successes change nothing"
    );
    health::observe_connect(&l, &s, false);
    health::observe_connect(&l, &s, false);
    assert_eq!(server_status(&l, &s), "UP 1/3");
    health::observe_connect(&l, &s, false);
    assert_eq!(server_status(&l, &s), "DOWN");

    // Without observe_layer4 the signal is ignored.
    let rt2 = runtime(&listen_toml("webapp", 18080, &[b.addr], ""));
    let (l2, s2) = server(&rt2, "app1");
    for _ in 0..5 {
        health::observe_connect(&l2, &s2, false);
    }
    assert!(s2.live.is_up());
}

#[tokio::test]
async fn dropping_the_handle_stops_all_checks() {
    let b = Backend::start().await;
    let rt = runtime(&listen_toml("webapp", 18080, &[b.addr], "inter = \"50ms\""));
    let h = health::spawn(rt.clone());
    let (_, s) = server(&rt, "app1");
    wait_for(Duration::from_secs(3), "first check", || {
        let s = s.clone();
        async move { s.live.last_check_ms.load(Ordering::Relaxed) != 0 }
    })
    .await;
    h.shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let last = s.live.last_check_ms.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(s.live.last_check_ms.load(Ordering::Relaxed), last);
}

#[tokio::test]
async fn first_probes_are_spread_over_the_interval() {
    let backends: Vec<Backend> = futures_join(8).await;
    let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
    let rt = runtime(&listen_toml("webapp", 18080, &addrs, "inter = \"1s\""));
    let _h = health::spawn(rt.clone());
    let snap = rt.load();
    let servers = snap.listens[0].servers.clone();
    wait_for(Duration::from_secs(3), "every server checked once", || {
        let servers = servers.clone();
        async move {
            servers
                .iter()
                .all(|s| s.live.last_check_ms.load(Ordering::Relaxed) != 0)
        }
    })
    .await;
    let times: Vec<u64> = servers
        .iter()
        .map(|s| s.live.last_check_ms.load(Ordering::Relaxed))
        .collect();
    let spread = times.iter().max().unwrap() - times.iter().min().unwrap();
    // Eight uniform draws over 1 s: all within 50 ms of each other has probability ~1e-8.
    assert!(spread > 50, "first probes in lockstep: {times:?}");
}

async fn futures_join(n: usize) -> Vec<Backend> {
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(Backend::start().await);
    }
    v
}
