//! The daemon as systemd runs it: the real binary, real signals, a real NOTIFY_SOCKET.
//! SIGHUP reloads under load without a failed request; a bad config is refused and reported while
//! the old one keeps serving; SIGTERM drains in-flight requests and refuses new connections.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

struct Daemon {
    child: Child,
}

impl Daemon {
    fn start(config: &Path, notify: Option<&Path>) -> Daemon {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_edgelb"));
        cmd.arg("run").arg("-c").arg(config);
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        cmd.env("EDGELB_LOG", "info");
        match notify {
            Some(p) => {
                cmd.env("NOTIFY_SOCKET", p);
            }
            None => {
                cmd.env_remove("NOTIFY_SOCKET");
            }
        }
        Daemon {
            child: cmd.spawn().expect("spawn edgelb"),
        }
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Waits for exit; `None` if still running after `t`.
    fn wait_exit(&mut self, t: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + t;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wait_listening(addr: std::net::SocketAddr) {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("edgelb did not start listening on {addr}");
}

fn config_text(
    port: u16,
    stats_port: u16,
    servers: &[(&Backend, u32)],
    extra_global: &str,
) -> String {
    let mut s = format!(
        "[global]\ngrace = \"5s\"\n{extra_global}\n[log]\naccess = \"off\"\n[stats]\ndashboard_bind = \"127.0.0.1:{stats_port}\"\napi_bind = \"127.0.0.1:{stats_port}\"\n[[listen]]\nname = \"webapp\"\nbind = [\"127.0.0.1:{port}\"]\ncookie = {{ name = \"SERVERID\" }}\nforwardfor = {{ except = [\"127.0.0.0/8\"] }}\n"
    );
    for (b, w) in servers {
        s.push_str(&format!(
            "[[listen.server]]\nname = \"{}\"\naddress = \"{}\"\nweight = {w}\ncheck = false\n",
            b.name, b.addr
        ));
    }
    s
}

/// One backend and a running daemon in front of it: (backend, config dir, daemon, proxy address).
async fn one_backend_daemon() -> (Backend, tempfile::TempDir, Daemon, std::net::SocketAddr) {
    let a = Backend::start("app1").await;
    let dir = tempfile::tempdir().unwrap();
    let (port, sport) = (free_port(), free_port());
    let path = write_file(
        dir.path(),
        "e.toml",
        &config_text(port, sport, &[(&a, 1)], ""),
    );
    let d = Daemon::start(&path, None);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_listening(addr).await;
    (a, dir, d, addr)
}

async fn stats_json(port: u16) -> serde_json::Value {
    let r = fetch(
        format!("127.0.0.1:{port}").parse().unwrap(),
        "/stats.json",
        "",
    )
    .await;
    serde_json::from_slice(&r.body).expect("stats json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reloads_under_load_drop_no_request_and_a_bad_config_is_reported() {
    let backends = [
        Backend::start("app1").await,
        Backend::start("app2").await,
        Backend::start("app3").await,
    ];
    let dir = tempfile::tempdir().unwrap();
    let (port, sport) = (free_port(), free_port());
    let path = write_file(
        dir.path(),
        "edgelb.toml",
        &config_text(port, sport, &[(&backends[0], 1), (&backends[1], 1)], ""),
    );
    let _d = Daemon::start(&path, None);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_listening(addr).await;

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for i in 0..4 {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        clients.push(tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            // Half keep-alive, half new connections per request.
            let mut conn: Option<Client> = None;
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                if conn.is_none() || i % 2 == 1 {
                    conn = Some(Client::connect(addr).await);
                }
                let c = conn.as_mut().unwrap();
                c.send(&get("/load", "")).await;
                match c.read(false).await {
                    Some(r) if r.status == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    other => {
                        eprintln!("failed request: {other:?}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }

    let layouts: [&[(usize, u32)]; 4] = [
        &[(0, 1), (1, 1), (2, 1)],
        &[(0, 3), (2, 1)],
        &[(1, 1)],
        &[(0, 1), (1, 2), (2, 3)],
    ];
    for i in 0..20 {
        let layout = layouts[i % layouts.len()];
        let servers: Vec<(&Backend, u32)> =
            layout.iter().map(|&(b, w)| (&backends[b], w)).collect();
        std::fs::write(&path, config_text(port, sport, &servers, "")).unwrap();
        _d.signal("HUP");
        tokio::time::sleep(Duration::from_millis(150)).await;
        if i == 10 {
            std::fs::write(
                &path,
                "[[listen]]\nname = \"webapp\"\nbind = [\"nonsense\"]\n",
            )
            .unwrap();
            _d.signal("HUP");
            tokio::time::sleep(Duration::from_millis(300)).await;
            let j = stats_json(sport).await;
            let reload = &j["config"]["last_reload"];
            assert_eq!(reload["ok"], serde_json::Value::Bool(false), "{j}");
            let problems = reload["problems"].to_string();
            assert!(
                problems.contains("edgelb.toml:3"),
                "file:line in {problems}"
            );
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let j = stats_json(sport).await;
    assert_eq!(
        j["config"]["last_reload"]["ok"],
        serde_json::Value::Bool(true),
        "{}",
        j["config"]["last_reload"]
    );
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert!(ok > 100, "load ran: {ok}");
    assert_eq!(
        failed,
        0,
        "{failed} of {} requests failed during reloads",
        ok + failed
    );
    // The last layout (i = 19 -> layout 3) has all three servers with weights 1/2/3.
    let servers: Vec<String> = j["listens"][0]["servers"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| s["name"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(servers, ["app1", "app2", "app3"], "{j}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_requests_and_refuses_new_connections() {
    let (_a, _dir, mut d, addr) = one_backend_daemon().await;

    let mut slow = Client::connect(addr).await;
    slow.send(&get("/slow/1500", "")).await;
    let mut idle = Client::connect(addr).await;
    idle.send(&get("/", "")).await;
    assert_eq!(idle.read(false).await.unwrap().status, 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = Instant::now();
    d.signal("TERM");
    // Idle keep-alive connections are closed at once.
    assert!(
        idle.closed_within(Duration::from_secs(1)).await,
        "idle keep-alive closed on drain"
    );
    // New connections are refused soon after.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "new connections refused after SIGTERM"
    );
    // The in-flight slow request completes, marked as the last on its connection.
    let r = slow.read(false).await.expect("in-flight response");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"));
    let status = d
        .wait_exit(Duration::from_secs(5))
        .expect("exits after draining");
    assert!(status.success(), "{status:?}");
    assert!(
        t.elapsed() >= Duration::from_millis(1000),
        "waited for the in-flight request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_sigterm_exits_at_once() {
    let (_a, _dir, mut d, addr) = one_backend_daemon().await;
    let mut slow = Client::connect(addr).await;
    slow.send(&get("/slow/4000", "")).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    d.signal("TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        d.wait_exit(Duration::from_millis(100)).is_none(),
        "first TERM drains"
    );
    let t = Instant::now();
    d.signal("TERM");
    assert!(
        d.wait_exit(Duration::from_secs(2)).is_some(),
        "second TERM exits"
    );
    assert!(t.elapsed() < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_notify_protocol_ready_reloading_stopping() {
    let a = Backend::start("app1").await;
    let dir = tempfile::tempdir().unwrap();
    let (port, sport) = (free_port(), free_port());
    let path = write_file(
        dir.path(),
        "e.toml",
        &config_text(port, sport, &[(&a, 1)], ""),
    );
    let sock_path: PathBuf = dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut d = Daemon::start(&path, Some(&sock_path));
    let recv = || {
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).expect("a notify datagram");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let first = recv();
    assert!(first.contains("READY=1"), "{first}");
    // READY only after the listener is bound.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    d.signal("HUP");
    let r = recv();
    assert!(r.contains("RELOADING=1"), "{r}");
    let r = recv();
    assert!(r.contains("READY=1"), "{r}");
    d.signal("TERM");
    let r = recv();
    assert!(r.contains("STOPPING=1"), "{r}");
    assert!(d.wait_exit(Duration::from_secs(5)).is_some());
}

#[test]
fn bad_config_at_start_exits_1_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(
        dir.path(),
        "bad.toml",
        "[[listen]]\nname = \"web\"\nbind = [\"127.0.0.1:1\"]\n\n[[listen.server]]\nname = \"a\"\naddress = \"10.0.0.1:notaport\"\nweight = 999\n",
    );
    for sub in ["check", "run"] {
        let out = Command::new(env!("CARGO_BIN_EXE_edgelb"))
            .args([sub, "-c"])
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{sub}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("bad.toml:7:") && err.contains("bad port"),
            "{sub}: {err}"
        );
        assert!(
            err.contains("bad.toml:8:") && err.contains("weight 999"),
            "{sub}: {err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_access_log_never_blocks_requests() {
    let a = Backend::start("app1").await;
    let dir = tempfile::tempdir().unwrap();
    let (port, sport) = (free_port(), free_port());
    let text =
        config_text(port, sport, &[(&a, 1)], "").replace("access = \"off\"", "access = \"stdout\"");
    let path = write_file(dir.path(), "e.toml", &text);
    // stdout is a pipe nobody reads: after ~64 KiB the log writer blocks on it.
    let child = Command::new(env!("CARGO_BIN_EXE_edgelb"))
        .arg("run")
        .arg("-c")
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .env_remove("NOTIFY_SOCKET")
        .spawn()
        .unwrap();
    let _d = Daemon { child };
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_listening(addr).await;
    let mut c = Client::connect(addr).await;
    let t = Instant::now();
    for i in 0..3000 {
        c.send(&get(
            &format!("/a-rather-long-path-to-fill-the-log-pipe-quickly/{i}"),
            "",
        ))
        .await;
        let r = c
            .read(false)
            .await
            .expect("response while the log is stuck");
        assert_eq!(r.status, 200);
    }
    assert!(t.elapsed() < Duration::from_secs(30));
    let j = stats_json(sport).await;
    assert!(
        j["process"]["requests_total"].as_u64().unwrap_or(0) >= 3000,
        "{}",
        j["process"]
    );
    // The pipe holds ~64 KiB; the rest waits in the bounded queue (dropped and counted past it).
    assert!(
        j["process"]["log_lines_written"].as_u64().unwrap_or(0) >= 3000,
        "{}",
        j["process"]
    );
}

/// A daemon with two workers, one backend and its access log in `dir/access.log`, listening:
/// the daemon, the log's path, the proxy's address and the stats port.
async fn start_logging_to_a_file(
    dir: &std::path::Path,
    a: &Backend,
    global: &str,
) -> (Daemon, std::path::PathBuf, std::net::SocketAddr, u16) {
    let log = dir.join("access.log");
    let (port, sport) = (free_port(), free_port());
    let text = config_text(port, sport, &[(a, 1)], global).replace(
        "access = \"off\"",
        &format!("access = \"{}\"", log.display()),
    );
    let path = write_file(dir, "e.toml", &text);
    let d = Daemon::start(&path, None);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_listening(addr).await;
    (d, log, addr, sport)
}

/// The lines of the access log at `log` once it has `n`, or as they are after `within`.
async fn log_lines(log: &std::path::Path, n: usize, within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.len() >= n || Instant::now() > deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The daemon's proxy workers batch their access-log lines and hand them over when idle: the
/// file gets every request's line, whole and in order, with no further traffic to push them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_logs_every_request_in_order_without_more_traffic() {
    let a = Backend::start("app1").await;
    let dir = tempfile::tempdir().unwrap();
    let (_d, log, addr, sport) = start_logging_to_a_file(dir.path(), &a, "workers = 2").await;
    let mut c = Client::connect(addr).await;
    for i in 0..50 {
        c.send(&get(&format!("/req-{i}"), "")).await;
        assert_eq!(c.read(false).await.expect("response").status, 200);
    }
    let lines = log_lines(&log, 50, Duration::from_secs(10)).await;
    assert_eq!(lines.len(), 50, "{lines:?}");
    for (i, l) in lines.iter().enumerate() {
        assert!(
            l.contains(" webapp webapp/app1 ")
                && l.ends_with(&format!("\"GET /req-{i} HTTP/1.1\"")),
            "line {i}: {l}"
        );
    }
    let j = stats_json(sport).await;
    assert_eq!(
        j["process"]["log_lines_written"].as_u64(),
        Some(50),
        "{}",
        j["process"]
    );
}

/// A graceful stop logs every request, the last ones too: requests in flight when SIGTERM
/// arrives finish, and their lines (held in the workers' batches, then queued for the writer)
/// are in the file when the process has exited. Three stops, since a lost line is a race.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_logs_the_requests_it_finished() {
    let a = Backend::start("app1").await;
    for round in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let (mut d, log, addr, _) = start_logging_to_a_file(dir.path(), &a, "workers = 2").await;
        let mut clients = Vec::new();
        for i in 0..6 {
            let mut c = Client::connect(addr).await;
            c.send(&get(&format!("/slow/{}", 300 + 10 * i), "")).await;
            clients.push(c);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        d.signal("TERM");
        for c in &mut clients {
            assert_eq!(c.read(false).await.expect("response").status, 200);
        }
        tokio::task::spawn_blocking(move || {
            d.wait_exit(Duration::from_secs(10)).expect("edgelb stops");
        })
        .await
        .unwrap();
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let n = text.lines().filter(|l| l.contains("\"GET /slow/")).count();
        assert_eq!(n, 6, "round {round}: {text}");
    }
}

/// SIGTERM, wait for the exit, and return everything the daemon logged on stderr.
fn stop_and_read_log(d: &mut Daemon) -> String {
    use std::io::Read;
    d.signal("TERM");
    d.wait_exit(Duration::from_secs(10)).expect("edgelb stops");
    let mut log = String::new();
    if let Some(mut e) = d.child.stderr.take() {
        e.read_to_string(&mut log).expect("read stderr");
    }
    log
}

/// Waits until the daemon's stats API shows config generation `g`.
async fn wait_generation(sport: u16, g: u64) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let j = stats_json(sport).await;
        if j["config"]["generation"] == g {
            return j;
        }
        assert!(Instant::now() < deadline, "generation {g} never came: {j}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn admin_state(j: &serde_json::Value, server: &str) -> String {
    j["listens"][0]["servers"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == server))
        .map(|s| s["admin_state"].as_str().unwrap_or("").to_string())
        .unwrap_or_default()
}

/// Which backends answer `n` fresh round-robin requests.
async fn served_by(addr: std::net::SocketAddr, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(fetch(addr, "/", "").await.backend());
    }
    out.sort();
    out.dedup();
    out
}

/// A reload applies what the file says about each server: adding `disabled = true` puts it in
/// MAINT (no traffic), removing it brings it back; each change is logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_disabled_from_the_file_both_ways_and_logs_it() {
    let (a, b) = (Backend::start("app1").await, Backend::start("app2").await);
    let dir = tempfile::tempdir().unwrap();
    let (port, sport) = (free_port(), free_port());
    let enabled = config_text(port, sport, &[(&a, 1), (&b, 1)], "");
    let app2 = format!("address = \"{}\"\nweight = 1\ncheck = false\n", b.addr);
    let disabled = enabled.replace(&app2, &format!("{app2}disabled = true\n"));
    assert_ne!(enabled, disabled);
    let path = write_file(dir.path(), "e.toml", &enabled);
    let mut d = Daemon::start(&path, None);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_listening(addr).await;
    assert_eq!(served_by(addr, 4).await, ["app1", "app2"]);

    std::fs::write(&path, &disabled).unwrap();
    d.signal("HUP");
    let j = wait_generation(sport, 2).await;
    assert_eq!(admin_state(&j, "app2"), "maint", "{j}");
    assert_eq!(served_by(addr, 4).await, ["app1"]);

    std::fs::write(&path, &enabled).unwrap();
    d.signal("HUP");
    let j = wait_generation(sport, 3).await;
    assert_eq!(admin_state(&j, "app2"), "ready", "{j}");
    assert_eq!(served_by(addr, 4).await, ["app1", "app2"]);

    // A reload that leaves app2's entry as it is keeps its runtime state (here: the file's).
    d.signal("HUP");
    let j = wait_generation(sport, 4).await;
    assert_eq!(admin_state(&j, "app2"), "ready", "{j}");

    let log = stop_and_read_log(&mut d);
    assert!(
        log.contains("server webapp/app2 changed in the file: state ready -> maint"),
        "{log}"
    );
    assert!(
        log.contains("server webapp/app2 changed in the file: state maint -> ready"),
        "{log}"
    );
}

/// The log says what is bound at start, each step of a drain, and a final "stopped" line;
/// addresses are printed as addresses (no `Some(...)`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_names_what_is_bound_the_drain_and_the_stop() {
    let (_a, _dir, mut d, addr) = one_backend_daemon().await;
    let log = stop_and_read_log(&mut d);
    assert!(
        log.contains(&format!("listen webapp bound on {addr}")),
        "{log}"
    );
    assert!(
        log.contains("dashboard and stats API bound on 127.0.0.1:"),
        "{log}"
    );
    assert!(log.contains("cluster: off"), "{log}");
    assert!(log.contains("draining: stopped accepting"), "{log}");
    assert!(log.contains("drained: every connection finished"), "{log}");
    assert!(
        log.trim_end()
            .lines()
            .last()
            .unwrap_or("")
            .contains("stopped"),
        "{log}"
    );
    assert!(!log.contains("Some("), "{log}");
}

/// `busy_polling = true` (HAProxy `busy-polling`): the daemon serves as usual; when the
/// requests stop, the worker's spinner parks, handing the access-log lines it held to the
/// writer, and the worker sleeps: an idle daemon spends no CPU. (That it polls without sleeping
/// within its window is `proxy::busy_poll`'s unit test: here, on a busy machine, the gaps
/// between one client's requests can be longer than the window, and then it rightly sleeps.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_polling_serves_hands_over_its_log_lines_and_sleeps_when_idle() {
    let a = Backend::start("app1").await;
    let dir = tempfile::tempdir().unwrap();
    let (d, log, addr, _) =
        start_logging_to_a_file(dir.path(), &a, "workers = 1\nbusy_polling = true").await;
    let pid = d.child.id();
    // Each worker starts its spinner within a second of the option being on.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let mut c = Client::connect(addr).await;
    for i in 0..300 {
        c.send(&get(&format!("/req-{i}"), "")).await;
        assert_eq!(c.read(false).await.expect("response").status, 200);
    }
    // The lines the worker held reach the file with no further traffic, well within the second
    // after which the worker's timer would hand them over anyway.
    let lines = log_lines(&log, 300, Duration::from_millis(600)).await;
    assert_eq!(
        lines.len(),
        300,
        "the spinner hands the lines over when it parks"
    );
    assert!(
        lines[299].ends_with("\"GET /req-299 HTTP/1.1\""),
        "{}",
        lines[299]
    );
    // Idle: the worker sleeps. A spinner that never parked would use the whole second.
    let (t0, cpu0) = (Instant::now(), cpu_seconds(pid));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let used = cpu_seconds(pid) - cpu0;
    let wall = t0.elapsed().as_secs_f64();
    assert!(
        used < 0.25 * wall,
        "an idle daemon used {used} s of CPU in {wall} s"
    );
}
