//! The dashboard in a real headless Chromium: real backends, health checks every 200 ms, the stats
//! server on port 0. A killed backend must show as DOWN in the rendered DOM; a screenshot is kept
//! in the target directory (`dashboard.png`) for humans.
//!
//! A second test drives Chromium over the DevTools protocol (`tests/support/dashboard_cdp.js`, run
//! by node): at 1280 and 1920 px the page must not overflow horizontally, sparklines and the
//! cluster timeline must render, full-page screenshots go to `$CARGO_TARGET_TMPDIR/dashboard_browser/`
//! (paths printed), and the page's own token field and drain button must work.
//!
//! Needs `/usr/bin/chromium` (or `EDGELB_CHROMIUM=/path`) and `node` (or `EDGELB_NODE`). Without
//! chromium the tests fail with a clear message, unless `EDGELB_SKIP_BROWSER=1`.

mod common_stats;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common_stats::*;
use edgelb::runtime::Runtime;

fn chromium() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("EDGELB_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

/// Chromium, or None when it is missing and `EDGELB_SKIP_BROWSER=1` (else the test fails).
fn chromium_or_skip() -> Option<PathBuf> {
    if let Some(bin) = chromium() {
        return Some(bin);
    }
    if std::env::var("EDGELB_SKIP_BROWSER").as_deref() == Ok("1") {
        eprintln!("chromium not found; skipped because EDGELB_SKIP_BROWSER=1");
        return None;
    }
    panic!(
        "chromium not found at /usr/bin/chromium (install it, point EDGELB_CHROMIUM at it, \
         or set EDGELB_SKIP_BROWSER=1 to skip this test)"
    );
}

async fn three_backends() -> [Backend; 3] {
    [
        Backend::start().await,
        Backend::start().await,
        Backend::start().await,
    ]
}

/// Runs headless Chromium on `url` with `extra` args; returns stdout.
async fn run_chromium(bin: &PathBuf, url: &str, extra: &[String]) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1500,900",
        // Virtual time stops while fetches are pending, so the page's first poll completes.
        "--virtual-time-budget=4000",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .args(extra)
    .arg(url)
    .kill_on_drop(true)
    .stdin(std::process::Stdio::null());
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("chromium finished within 60 s")
        .expect("chromium started");
    assert!(
        out.status.success(),
        "chromium failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `data-status` of a server row in the dumped DOM.
fn row_status(dom: &str, listen: &str, server: &str) -> Option<String> {
    let key = format!("data-listen=\"{listen}\" data-server=\"{server}\" data-status=\"");
    let start = dom.find(&key)? + key.len();
    let end = dom[start..].find('"')?;
    Some(dom[start..start + end].to_string())
}

fn screenshot_path() -> PathBuf {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent()
        .map(|p| p.to_path_buf())
        .unwrap_or(tmp)
        .join("dashboard.png")
}

async fn json_status(rt_addr: std::net::SocketAddr, server_idx: usize) -> String {
    let j = http(rt_addr, "GET", "/stats.json", &[], "").await.json();
    j["listens"][0]["servers"][server_idx]["status"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_a_killed_backend_down() {
    let Some(bin) = chromium_or_skip() else {
        return;
    };
    let mut backends = three_backends().await;
    let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
    let (_dir, token) = token_file("dash-token");
    let toml = format!(
        "[stats]\nadmin_token_file = \"{token}\"\nrefresh = \"200ms\"\n{}",
        listen_toml("webapp", 18080, &addrs, "inter = \"200ms\"")
    );
    let rt: Arc<Runtime> = runtime(&toml);
    rt.listeners_ready
        .store(true, std::sync::atomic::Ordering::Release);
    rt.cluster_view.store(Some(Arc::new(serde_json::json!({
        "peers": [{"name": "lb2", "state": "alive", "last_heard_ms": 150}],
        "eips": [{"allocation_id": "eipalloc-0abc", "public_ip": "203.0.113.10", "holder": "lb1"}]
    }))));
    let _health = edgelb::health::spawn(rt.clone());
    let stats = StatsServer::start(rt.clone()).await;
    let addr = stats.addr;
    wait_for(Duration::from_secs(5), "all servers UP", || async move {
        for i in 0..3 {
            if json_status(addr, i).await != "UP" {
                return false;
            }
        }
        true
    })
    .await;
    edgelb::health::set_state(&rt, "webapp", "app3", "drain").expect("drain app3");

    let url = stats.url("/");
    let dom = run_chromium(&bin, &url, &["--dump-dom".into()]).await;
    assert_eq!(
        row_status(&dom, "webapp", "app2").as_deref(),
        Some("UP"),
        "{dom}"
    );
    assert_eq!(row_status(&dom, "webapp", "app3").as_deref(), Some("DRAIN"));

    backends[1].kill().await;
    wait_for(Duration::from_secs(5), "app2 DOWN in JSON", || async move {
        json_status(addr, 1).await == "DOWN"
    })
    .await;
    let dom = run_chromium(&bin, &url, &["--dump-dom".into()]).await;
    assert_eq!(
        row_status(&dom, "webapp", "app2").as_deref(),
        Some("DOWN"),
        "{dom}"
    );
    assert_eq!(row_status(&dom, "webapp", "app1").as_deref(), Some("UP"));
    assert!(dom.contains("status st-down"), "DOWN row is coloured red");
    assert!(dom.contains("Connection refused"), "check info is shown");
    assert!(
        dom.contains("lb2") && dom.contains("203.0.113.10"),
        "cluster view shown"
    );
    assert!(dom.contains(">lb1<"), "node name in the header");

    let shot = screenshot_path();
    run_chromium(&bin, &url, &[format!("--screenshot={}", shot.display())]).await;
    let meta = std::fs::metadata(&shot).expect("screenshot written");
    assert!(meta.len() > 10_000, "screenshot looks empty");
    eprintln!("dashboard screenshot: {}", shot.display());
}

/// The cluster view as the node publishes it (`Runtime::cluster_view`), at one step of a
/// failover: lb2 alive and holding its EIP, then dead with a move pending, then moved to lb1.
fn cluster_step(peer: &str, holder: &str, desired: &str, pending: bool) -> serde_json::Value {
    serde_json::json!({
        "me": "lb1", "phase": "active", "healthy": true, "api_tokens": 55,
        "peers": [{"name": "lb2", "state": peer, "incarnation": 7, "last_heard_ago_ms": 15300,
                   "serving": peer == "Alive", "healthy_backends": 3, "total_backends": 3,
                   "sees_us": peer == "Alive"}],
        "eips": [{"allocation_id": "eipalloc-0abc", "public_ip": "203.0.113.10", "owner": "lb2",
                  "observed_holder": holder, "desired_holder": desired, "reason": "owner dead",
                  "pending_call": if pending { serde_json::json!(4) } else { serde_json::Value::Null },
                  "moves": 1}]
    })
}

/// Where this test writes its screenshots (printed, kept after the run).
fn shots_dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard_browser");
    std::fs::create_dir_all(&d).expect("screenshot dir");
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_fits_laptop_and_desktop_with_sparklines_timeline_and_working_buttons() {
    let Some(bin) = chromium_or_skip() else {
        return;
    };
    let backends = three_backends().await;
    let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
    let (_dir, token) = token_file("dash-token");
    let toml = format!(
        "[stats]\ndashboard_bind = \"127.0.0.2:0\"\napi_bind = \"127.0.0.2:0\"\n\
         admin_token_file = \"{token}\"\nrefresh = \"300ms\"\n[log]\naccess = \"off\"\n{}",
        listen_toml("webapp", 0, &addrs, "inter = \"200ms\"")
    );
    let app = edgelb::app::App::start(edgelb::app::Options {
        source: edgelb::app::Source::Text(toml),
        node: Some("lb1".into()),
    })
    .await
    .expect("edgelb starts");
    let stats = app.stats_addresses()[0];
    let proxy = app.listen_addr("webapp").expect("webapp bound");
    let rt = app.rt.clone();

    // Real traffic through the proxy for the sparklines, and a failover in the published view.
    let load = tokio::spawn(async move {
        loop {
            let _ = http(proxy, "GET", "/", &[], "").await;
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
    });
    rt.cluster_view
        .store(Some(Arc::new(cluster_step("Alive", "lb2", "lb2", false))));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    rt.cluster_view
        .store(Some(Arc::new(cluster_step("Dead", "lb2", "lb1", true))));
    tokio::time::sleep(Duration::from_millis(2200)).await;
    rt.cluster_view
        .store(Some(Arc::new(cluster_step("Dead", "lb1", "lb1", false))));
    tokio::time::sleep(Duration::from_millis(2200)).await;

    let node = std::env::var("EDGELB_NODE").unwrap_or_else(|_| "node".into());
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/support/dashboard_cdp.js"
    );
    let out_dir = shots_dir();
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(&node)
            .arg(script)
            .arg(&bin)
            .arg(format!("http://{stats}/"))
            .arg("dash-token")
            .arg(&out_dir)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("browser run within 120 s")
    .expect("node runs (set EDGELB_NODE=/path/to/node)");
    load.abort();
    assert!(
        out.status.success(),
        "driver failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("driver JSON");
    for w in ["1280", "1920"] {
        let f = &v["widths"][w];
        eprintln!(
            "dashboard screenshot at {w} px: {}",
            f["screenshot"].as_str().unwrap_or("?")
        );
        assert_eq!(f["fit"], "yes", "no horizontal overflow at {w} px: {f}");
        assert!(f["rate_sparklines"].as_u64() >= Some(3), "{w}: {f}");
        assert!(f["latency_sparklines"].as_u64() >= Some(3), "{w}: {f}");
        assert!(f["heartbeat_cells"].as_u64() >= Some(4), "{w}: {f}");
        assert!(f["eip_moves"].as_u64() >= Some(1), "{w}: {f}");
        let events = f["events"].to_string();
        assert!(events.contains("lb2: Alive -> Dead"), "{w}: {events}");
        assert!(
            events.contains("EIP 203.0.113.10 (eipalloc-0abc): lb2 -> lb1 in"),
            "{w}: {events}"
        );
        let shot = std::fs::metadata(f["screenshot"].as_str().unwrap()).expect("screenshot");
        assert!(shot.len() > 10_000, "screenshot looks empty");
    }
    // The page's drain button went through the admin API (same origin, Bearer, JSON).
    assert!(
        !v["drain_message"]
            .as_str()
            .unwrap_or("")
            .contains("[error]"),
        "{v}"
    );
    assert_eq!(v["app1_after"], "DRAIN");
    let j = http(stats, "GET", "/stats.json", &[], "").await.json();
    assert_eq!(j["listens"][0]["servers"][0]["admin_state"], "drain");
}
