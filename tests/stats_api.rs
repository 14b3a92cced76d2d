//! The stats API over real HTTP: HAProxy-compatible CSV (header byte-equal to 2.6.12), JSON,
//! Prometheus, /healthz, /readyz, and the authenticated admin routes with their 401/403/400/404.

mod common_stats;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common_stats::*;
use edgelb::runtime::Runtime;
use edgelb::stats::StatsState;

const TOKEN: &str = "s3cret-token";

struct Fixture {
    rt: Arc<Runtime>,
    stats: StatsServer,
    backends: Vec<Backend>,
    _dir: Option<tempfile::TempDir>,
}

/// Two listens (`webapp` with 3 servers, `api` with 1), `[stats]` with a token file.
async fn fixture(health: &str, with_token: bool) -> Fixture {
    let backends = vec![
        Backend::start().await,
        Backend::start().await,
        Backend::start().await,
        Backend::start().await,
    ];
    let (dir, path) = token_file(TOKEN);
    let stats = if with_token {
        format!("[stats]\nadmin_token_file = \"{path}\"\nrefresh = \"500ms\"\n")
    } else {
        "[stats]\n".to_string()
    };
    let toml = format!(
        "{stats}{}{}",
        listen_toml(
            "webapp",
            18080,
            &[backends[0].addr, backends[1].addr, backends[2].addr],
            health
        ),
        listen_toml("api", 18081, &[backends[3].addr], health)
    );
    let rt = runtime(&toml);
    let stats = StatsServer::start(rt.clone()).await;
    Fixture {
        rt,
        stats,
        backends,
        _dir: Some(dir),
    }
}

fn bearer() -> (&'static str, String) {
    ("Authorization", format!("Bearer {TOKEN}"))
}

async fn post_state(f: &Fixture, path: &str, body: &str) -> Resp {
    let (k, v) = bearer();
    f.stats
        .post(path, &[(k, &v), ("Content-Type", "text/plain")], body)
        .await
}

#[tokio::test]
async fn csv_header_is_byte_equal_to_haproxy_2_6_12() {
    let f = fixture("", true).await;
    let r = f.stats.get("/stats.csv").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    let first = r.body.split_inclusive('\n').next().unwrap();
    assert_eq!(first, HAPROXY_HEADER);
    assert_eq!(edgelb::stats::csv::header(), HAPROXY_HEADER);
    // The sample captured from HAProxy starts with the same line.
    assert!(HAPROXY_SAMPLE.starts_with(HAPROXY_HEADER));
}

#[tokio::test]
async fn csv_rows_follow_haproxy_order_and_shape() {
    let f = fixture("", true).await;
    let body = f.stats.get("/stats.csv").await.body;
    assert!(body.ends_with("\n\n"), "ends with an empty line");
    let rows: Vec<(String, String)> = body
        .lines()
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let mut it = l.split(',');
            (it.next().unwrap().into(), it.next().unwrap().into())
        })
        .collect();
    let expect: Vec<(String, String)> = [
        ("webapp", "FRONTEND"),
        ("webapp", "app1"),
        ("webapp", "app2"),
        ("webapp", "app3"),
        ("webapp", "BACKEND"),
        ("api", "FRONTEND"),
        ("api", "app1"),
        ("api", "BACKEND"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(rows, expect);
    // Every row has as many fields as HAProxy's (each followed by a comma).
    let n = HAPROXY_HEADER.matches(',').count();
    for l in body.lines().skip(1).filter(|l| !l.is_empty()) {
        assert_eq!(l.matches(',').count(), n, "row {l}");
    }
    // Fresh checked server, as HAProxy shows it before the first check.
    let field = |px, sv, col| csv_field(&body, px, sv, col);
    assert_eq!(field("webapp", "app1", "status"), "UP 1/3");
    assert_eq!(field("webapp", "app1", "check_status"), "INI");
    assert_eq!(field("webapp", "app1", "check_desc"), "Initializing");
    assert_eq!(field("webapp", "app1", "check_health"), "2");
    assert_eq!(field("webapp", "app1", "type"), "2");
    assert_eq!(field("webapp", "app1", "sid"), "1");
    assert_eq!(field("webapp", "app1", "lastsess"), "-1");
    assert_eq!(field("webapp", "app1", "cookie"), "app1");
    assert_eq!(
        field("webapp", "app1", "addr"),
        f.backends[0].addr.to_string()
    );
    assert_eq!(field("webapp", "FRONTEND", "status"), "OPEN");
    assert_eq!(field("webapp", "FRONTEND", "type"), "0");
    assert_eq!(field("webapp", "BACKEND", "status"), "UP");
    assert_eq!(field("webapp", "BACKEND", "act"), "3");
    assert_eq!(field("webapp", "BACKEND", "weight"), "3");
    assert_eq!(field("webapp", "BACKEND", "cookie"), "SERVERID");
    assert_eq!(field("webapp", "BACKEND", "algo"), "roundrobin");
    assert_eq!(field("webapp", "BACKEND", "mode"), "http");
    assert_eq!(field("webapp", "BACKEND", "-"), "-");
    assert_eq!(field("api", "BACKEND", "iid"), "2");
}

#[tokio::test]
async fn csv_is_served_on_haproxy_suffix_forms() {
    let f = fixture("", true).await;
    for p in [
        "/;csv",
        "/stats;csv",
        "/stats.csv",
        "/haproxy?stats;csv",
        "/;csv;norefresh",
    ] {
        let r = f.stats.get(p).await;
        assert_eq!(r.status, 200, "{p}");
        assert!(r.body.starts_with("# pxname,svname,"), "{p}");
    }
}

#[tokio::test]
async fn killed_backend_is_down_within_fall_times_inter_in_csv_json_and_metrics() {
    let mut f = fixture("inter = \"200ms\"", true).await;
    let _h = edgelb::health::spawn(f.rt.clone());
    let addr = f.stats.addr;
    wait_for(Duration::from_secs(5), "all UP", || async move {
        let body = http(addr, "GET", "/stats.csv", &[], "").await.body;
        ["app1", "app2", "app3"]
            .iter()
            .all(|s| csv_field(&body, "webapp", s, "status") == "UP")
    })
    .await;
    f.backends[1].kill().await;
    let killed = Instant::now();
    wait_for(Duration::from_secs(5), "app2 DOWN in CSV", || async move {
        let body = http(addr, "GET", "/stats.csv", &[], "").await.body;
        csv_field(&body, "webapp", "app2", "status") == "DOWN"
    })
    .await;
    let took = killed.elapsed();
    // fall (3) x inter (200 ms), plus one probe's phase and scheduling slack on a busy box.
    assert!(
        took <= Duration::from_millis(3 * 200 + 200 + 600),
        "took {took:?}"
    );
    eprintln!("backend killed -> DOWN in CSV after {took:?} (fall 3 x inter 200ms)");
    let body = f.stats.get("/stats.csv").await.body;
    assert_eq!(csv_field(&body, "webapp", "app2", "check_status"), "L4CON");
    assert_eq!(
        csv_field(&body, "webapp", "app2", "last_chk"),
        "Connection refused"
    );
    assert_eq!(csv_field(&body, "webapp", "app2", "chkdown"), "1");
    assert_eq!(csv_field(&body, "webapp", "BACKEND", "act"), "2");

    let j = f.stats.get("/stats.json").await.json();
    let app2 = &j["listens"][0]["servers"][1];
    assert_eq!(app2["name"], "app2");
    assert_eq!(app2["status"], "DOWN");
    assert_eq!(app2["up"], false);
    assert_eq!(app2["check"]["status"], "L4CON");
    assert_eq!(app2["check"]["info"], "Connection refused");
    assert_eq!(j["listens"][0]["backend"]["active_servers"], 2);

    let m = f.stats.get("/metrics").await.body;
    assert!(
        m.contains("edgelb_server_up{listen=\"webapp\",server=\"app2\"} 0\n"),
        "{m}"
    );
    assert!(m.contains("edgelb_server_up{listen=\"webapp\",server=\"app1\"} 1\n"));
}

#[tokio::test]
async fn admin_without_credentials_is_401_and_changes_nothing() {
    let f = fixture("", true).await;
    let path = "/admin/servers/webapp/app1/state";
    let r = f.stats.post(path, &[], "maint").await;
    assert_eq!(r.status, 401);
    // A Bearer challenge only: a Basic one would make browsers prompt and cache the login.
    assert_eq!(challenges(&r), ["Bearer realm=\"edgelb admin\""]);
    let r = f
        .stats
        .post(path, &[("Authorization", "Bearer wrong")], "maint")
        .await;
    assert_eq!(r.status, 401);
    let bad_basic = base64::engine::general_purpose::STANDARD.encode("admin:wrong");
    let r = f
        .stats
        .post(
            path,
            &[("Authorization", &format!("Basic {bad_basic}"))],
            "maint",
        )
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(f.stats.get("/admin/servers").await.status, 401);
    let j = f.stats.get("/stats.json").await.json();
    assert_eq!(j["listens"][0]["servers"][0]["admin_state"], "ready");
    // Basic, even with the right password, is refused for admin: browsers replay it cross-site.
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("ops:{TOKEN}"));
    let r = f
        .stats
        .post(
            path,
            &[("Authorization", &format!("Basic {basic}"))],
            "drain",
        )
        .await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.body.contains("Bearer"), "{}", r.body);
    assert_eq!(challenges(&r), ["Bearer realm=\"edgelb admin\""]);
    let j = f.stats.get("/stats.json").await.json();
    assert_eq!(j["listens"][0]["servers"][0]["admin_state"], "ready");
}

fn challenges(r: &Resp) -> Vec<&str> {
    r.headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("www-authenticate"))
        .map(|(_, v)| v.as_str())
        .collect()
}

fn admin_state(j: &serde_json::Value, server: usize) -> String {
    j["listens"][0]["servers"][server]["admin_state"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[tokio::test]
async fn cross_origin_form_post_with_valid_basic_credentials_changes_nothing() {
    let f = fixture("", true).await;
    let path = "/admin/servers/webapp/app1/state";
    let basic_s = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("ops:{TOKEN}"))
    );
    let bearer_s = format!("Bearer {TOKEN}");
    let (basic, bearer): (&str, &str) = (&basic_s, &bearer_s);
    let form = ("Content-Type", "application/x-www-form-urlencoded");
    let evil = ("Origin", "http://evil.example");
    // What a page on another site makes a browser send: a form POST, the cached Basic login,
    // and the browser's own Origin / Sec-Fetch-Site.
    let attacks: Vec<Vec<(&str, &str)>> = vec![
        vec![("Authorization", basic), form, evil],
        vec![
            ("Authorization", basic),
            form,
            evil,
            ("Sec-Fetch-Site", "cross-site"),
        ],
        vec![
            ("Authorization", basic),
            form,
            ("Sec-Fetch-Site", "cross-site"),
        ],
        vec![("Authorization", basic), form, ("Origin", "null")],
        // Even holding the token, a cross-site request is refused.
        vec![("Authorization", bearer), form, evil],
        vec![
            ("Authorization", bearer),
            ("Content-Type", "application/json"),
            ("Sec-Fetch-Site", "same-site"),
        ],
    ];
    for h in &attacks {
        let r = f.stats.post(path, h, "state=maint").await;
        assert!(
            r.status == 403 || r.status == 401,
            "{h:?}: {} {}",
            r.status,
            r.body
        );
        assert!(
            challenges(&r).iter().all(|c| !c.starts_with("Basic")),
            "{h:?}"
        );
    }
    // Basic without any browser header (a script replaying it) is refused too.
    let r = f
        .stats
        .post(path, &[("Authorization", basic), form], "state=maint")
        .await;
    assert_eq!(r.status, 401);
    // A same-origin browser write must be JSON: text/form bodies are what forms can send.
    let same_s = format!("http://{}", f.stats.addr);
    let same: &str = &same_s;
    let r = f
        .stats
        .post(
            path,
            &[
                ("Authorization", bearer),
                ("Origin", same),
                ("Content-Type", "text/plain"),
            ],
            "maint",
        )
        .await;
    assert_eq!(r.status, 415, "{}", r.body);
    let j = f.stats.get("/stats.json").await.json();
    assert_eq!(admin_state(&j, 0), "ready", "nothing changed");
    // The dashboard's own request: same origin, Bearer, JSON.
    let r = f
        .stats
        .post(
            path,
            &[
                ("Authorization", bearer),
                ("Origin", same),
                ("Sec-Fetch-Site", "same-origin"),
                ("Content-Type", "application/json"),
            ],
            r#"{"state":"drain"}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // curl: no browser headers, `-d drain` labels the bare word as a form.
    let r = f
        .stats
        .post(
            "/admin/servers/webapp/app2/state",
            &[("Authorization", bearer), form],
            "maint",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let j = f.stats.get("/stats.json").await.json();
    assert_eq!(
        (admin_state(&j, 0), admin_state(&j, 1)),
        ("drain".into(), "maint".into())
    );
}

#[tokio::test]
async fn read_token_guards_stats_but_not_probes_or_the_page() {
    let backends = [Backend::start().await];
    let dir = tempfile::tempdir().unwrap();
    let (_d1, admin) = token_file(TOKEN);
    let read = dir.path().join("read.token");
    std::fs::write(&read, "r3ad\n").unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&read, std::fs::Permissions::from_mode(0o600)).unwrap();
    let toml = format!(
        "[stats]\nadmin_token_file = \"{admin}\"\nread_token_file = \"{}\"\n{}",
        read.display(),
        listen_toml("webapp", 18080, &[backends[0].addr], "")
    );
    let rt = runtime(&toml);
    rt.listeners_ready.store(true, Ordering::Release);
    let stats = StatsServer::start(rt).await;
    let basic = |user: &str, pw: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
        )
    };
    for path in [
        "/stats.json",
        "/stats.csv",
        "/;csv",
        "/haproxy?stats;csv",
        "/metrics",
        "/history.json",
    ] {
        let r = stats.get(path).await;
        assert_eq!(r.status, 401, "{path}");
        assert_eq!(challenges(&r), ["Bearer realm=\"edgelb stats\""], "{path}");
        let r = http(
            stats.addr,
            "GET",
            path,
            &[("Authorization", "Bearer wrong")],
            "",
        )
        .await;
        assert_eq!(r.status, 401, "{path}");
        for good in [
            "Bearer r3ad".to_string(),
            format!("Bearer {TOKEN}"),
            basic("prometheus", "r3ad"),
        ] {
            let r = http(stats.addr, "GET", path, &[("Authorization", &good)], "").await;
            assert_eq!(r.status, 200, "{path} with {good}");
        }
    }
    for path in ["/healthz", "/readyz", "/"] {
        assert_eq!(stats.get(path).await.status, 200, "{path} stays open");
    }
    // The read token is not an admin credential.
    let r = stats
        .post(
            "/admin/servers/webapp/app1/state",
            &[("Authorization", "Bearer r3ad")],
            "drain",
        )
        .await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn default_stats_binds_are_loopback() {
    let toml = format!(
        "[stats]\n{}",
        listen_toml("web", 18080, &["127.0.0.1:9".parse().unwrap()], "")
    );
    let loaded = edgelb::config::load_str(&toml, "t.toml").unwrap();
    let st = loaded.config.stats.unwrap();
    assert_eq!(
        (st.dashboard_bind.as_str(), st.api_bind.as_str()),
        ("127.0.0.1:9022", "127.0.0.1:9023")
    );
    for b in [&st.dashboard_bind, &st.api_bind] {
        assert!(edgelb::config::parse_bind(b).unwrap().ip().is_loopback());
    }
    assert!(st.read_token_file.is_none());
}

#[tokio::test]
async fn admin_without_token_file_is_403() {
    let f = fixture("", false).await;
    let (k, v) = bearer();
    let r = f
        .stats
        .post("/admin/servers/webapp/app1/state", &[(k, &v)], "maint")
        .await;
    assert_eq!(r.status, 403);
    assert!(r.body.contains("admin disabled"), "{}", r.body);
    assert_eq!(f.stats.get("/admin/servers").await.status, 403);
    let j = f.stats.get("/stats.json").await.json();
    assert_eq!(j["listens"][0]["servers"][0]["admin_state"], "ready");
}

#[tokio::test]
async fn admin_bad_input_is_400_with_the_reason() {
    let f = fixture("", true).await;
    let cases = [
        (
            "/admin/servers/webapp/app1/state",
            "up",
            "expects 'ready', 'drain' and 'maint'",
        ),
        ("/admin/servers/webapp/app1/state", "", "missing state"),
        (
            "/admin/servers/webapp/app1/weight",
            "257",
            "between 0 and 256",
        ),
        (
            "/admin/servers/webapp/app1/weight",
            "abc",
            "between 0 and 256",
        ),
        ("/admin/servers/webapp/app1/weight", "x%", "Relative weight"),
        ("/admin/servers/webapp/app1/check", "maybe", "enable"),
    ];
    for (path, body, why) in cases {
        let r = post_state(&f, path, body).await;
        assert_eq!(r.status, 400, "{path} {body:?}: {}", r.body);
        assert!(r.body.contains(why), "{path} {body:?}: {}", r.body);
    }
    let (k, v) = bearer();
    let r = f
        .stats
        .post(
            "/admin/servers/webapp/app1/state",
            &[(k, &v), ("Content-Type", "application/json")],
            "{not json",
        )
        .await;
    assert_eq!(r.status, 400);
    let j = f.stats.get("/stats.json").await.json();
    let s = &j["listens"][0]["servers"][0];
    assert_eq!(
        (s["admin_state"].as_str(), s["weight"].as_u64()),
        (Some("ready"), Some(1))
    );
}

#[tokio::test]
async fn admin_unknown_listen_server_or_route_is_404() {
    let f = fixture("", true).await;
    let r = post_state(&f, "/admin/servers/nope/app1/state", "drain").await;
    assert_eq!((r.status, r.body.trim()), (404, "No such backend."));
    let r = post_state(&f, "/admin/servers/webapp/nope/state", "drain").await;
    assert_eq!((r.status, r.body.trim()), (404, "No such server."));
    let r = post_state(&f, "/admin/servers/webapp/nope/state", "bogus").await;
    assert_eq!(r.status, 404, "unknown server wins over a bad body");
    let r = post_state(&f, "/admin/frobnicate", "x").await;
    assert_eq!(r.status, 404);
    let (k, v) = bearer();
    let r = http(
        f.stats.addr,
        "GET",
        "/admin/servers/webapp/nope",
        &[(k, &v)],
        "",
    )
    .await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn drain_via_api_keeps_cookie_eligibility_and_shows_everywhere() {
    let f = fixture("", true).await;
    let r = post_state(&f, "/admin/servers/webapp/app2/state", "drain").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let doc = r.json();
    assert_eq!(doc["listen"], "webapp");
    assert_eq!(doc["admin_state"], "drain");
    assert_eq!(doc["eligible_cookie"], true);
    assert_eq!(doc["eligible_rr"], false);
    let snap = f.rt.load();
    let s = snap.listens[0].server_by_name("app2").unwrap();
    assert!(s.live.eligible_cookie());
    assert!(!s.live.eligible_rr());
    let csv = f.stats.get("/stats.csv").await.body;
    assert!(csv_field(&csv, "webapp", "app2", "status").starts_with("DRAIN"));
    assert_eq!(csv_field(&csv, "webapp", "BACKEND", "act"), "2");
    let m = f.stats.get("/metrics").await.body;
    assert!(m.contains(
        "edgelb_server_admin_state{listen=\"webapp\",server=\"app2\",state=\"drain\"} 1"
    ));
    // Form body, then JSON body.
    let (k, v) = bearer();
    let r = f
        .stats
        .post(
            "/admin/servers/webapp/app2/state",
            &[
                (k, &v),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            "state=maint",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["status"], "MAINT");
    assert!(!s.live.eligible_cookie());
    let r = f
        .stats
        .post(
            "/admin/servers/webapp/app2/state",
            &[(k, &v), ("Content-Type", "application/json")],
            r#"{"state":"ready"}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json()["status"],
        "UP 1/3",
        "leaving MAINT: UP with health = rise"
    );
}

#[tokio::test]
async fn access_log_line_counters_are_exposed() {
    let f = fixture("", true).await;
    let j = f.stats.get("/stats.json").await.json();
    for k in [
        "log_lines_written",
        "log_lines_dropped",
        "log_lines_truncated",
    ] {
        assert!(j["process"][k].is_u64(), "{k}: {}", j["process"]);
    }
    let m = f.stats.get("/metrics").await.body;
    for outcome in ["queued", "dropped", "truncated"] {
        let line = format!("edgelb_access_log_lines_total{{outcome=\"{outcome}\"}}");
        assert!(m.contains(&line), "{line} missing");
    }
}

#[tokio::test]
async fn huge_relative_weights_cap_at_256_without_overflow() {
    let f = fixture("", true).await;
    // u64::MAX % of weight 1 overflowed the multiplication (a panic in the admin task).
    for body in [
        "18446744073709551615%",
        "99999999999999999999999999999%",
        "25600%",
    ] {
        let r = post_state(&f, "/admin/servers/webapp/app1/weight", body).await;
        assert_eq!(r.status, 200, "{body}: {}", r.body);
        assert_eq!(r.json()["weight"], 256, "{body}");
    }
    let r = post_state(&f, "/admin/servers/webapp/app1/weight", "-1%").await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn weight_and_check_via_api() {
    let f = fixture("", true).await;
    let r = post_state(&f, "/admin/servers/webapp/app1/weight", "0").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let d = r.json();
    assert_eq!(
        (d["weight"].as_u64(), d["initial_weight"].as_u64()),
        (Some(0), Some(1))
    );
    assert_eq!(d["eligible_rr"], false);
    assert_eq!(d["eligible_cookie"], true);
    let csv = f.stats.get("/stats.csv").await.body;
    assert_eq!(csv_field(&csv, "webapp", "app1", "weight"), "0");
    assert_eq!(csv_field(&csv, "webapp", "BACKEND", "weight"), "2");
    let r = post_state(&f, "/admin/servers/webapp/app1/weight", "300%").await;
    assert_eq!(r.json()["weight"], 3);
    let r = post_state(&f, "/admin/servers/webapp/app1/check", "disable").await;
    assert_eq!(r.json()["status"], "no check");
    assert_eq!(r.json()["check"]["enabled"], false);
    let r = post_state(&f, "/admin/servers/webapp/app1/check", "enable").await;
    assert_eq!(r.json()["check"]["enabled"], true);
}

#[tokio::test]
async fn admin_servers_lists_every_server() {
    let f = fixture("", true).await;
    let (k, v) = bearer();
    let r = http(f.stats.addr, "GET", "/admin/servers", &[(k, &v)], "").await;
    assert_eq!(r.status, 200);
    let j = r.json();
    let names: Vec<String> = j["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{}/{}",
                s["listen"].as_str().unwrap(),
                s["name"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        names,
        ["webapp/app1", "webapp/app2", "webapp/app3", "api/app1"]
    );
    let r = http(
        f.stats.addr,
        "GET",
        "/admin/servers/%232/%231",
        &[(k, &v)],
        "",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["listen"], "api");
}

#[tokio::test]
async fn healthz_and_readyz() {
    let f = fixture("", true).await;
    let r = f.stats.get("/healthz").await;
    assert_eq!((r.status, r.body.trim()), (200, "ok"));
    let r = f.stats.get("/readyz").await;
    assert_eq!(r.status, 503);
    assert!(r.body.contains("listeners not bound"), "{}", r.body);
    f.rt.listeners_ready.store(true, Ordering::Release);
    assert_eq!(f.stats.get("/readyz").await.status, 200);
    // Every listen needs a server for new clients: put the only `api` server in MAINT.
    post_state(&f, "/admin/servers/api/app1/state", "maint").await;
    let r = f.stats.get("/readyz").await;
    assert_eq!(r.status, 503);
    assert!(r.body.contains("in: api"), "{}", r.body);
    post_state(&f, "/admin/servers/api/app1/state", "ready").await;
    assert_eq!(f.stats.get("/readyz").await.status, 200);
    // Every `webapp` server drained: cookie holders are still served, but every new client
    // would get a 503, so the node is not ready.
    for s in ["app1", "app2", "app3"] {
        post_state(&f, &format!("/admin/servers/webapp/{s}/state"), "drain").await;
    }
    let r = f.stats.get("/readyz").await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(
        r.body.contains("drained") && r.body.contains("in: webapp"),
        "{}",
        r.body
    );
    post_state(&f, "/admin/servers/webapp/app2/state", "ready").await;
    assert_eq!(f.stats.get("/readyz").await.status, 200);
    // Weight 0 on the last ready server: round-robin can pick nobody.
    post_state(&f, "/admin/servers/webapp/app2/weight", "0").await;
    assert_eq!(f.stats.get("/readyz").await.status, 503);
    post_state(&f, "/admin/servers/webapp/app2/weight", "1").await;
    assert_eq!(f.stats.get("/readyz").await.status, 200);
    f.rt.stopping.store(true, Ordering::Release);
    assert_eq!(f.stats.get("/readyz").await.status, 503);
    assert_eq!(f.stats.get("/healthz").await.status, 200);
}

#[tokio::test]
async fn json_has_node_config_counters_and_cluster_view() {
    let f = fixture("", true).await;
    let snap = f.rt.load();
    let l = &snap.listens[0];
    let c = &l.servers[0].live.counters;
    c.session_start();
    c.req_tot.fetch_add(5, Ordering::Relaxed);
    c.count_status(200);
    c.count_status(503);
    c.bin.fetch_add(100, Ordering::Relaxed);
    l.shared.frontend.req_tot.fetch_add(5, Ordering::Relaxed);
    f.rt.cluster_view.store(Some(Arc::new(serde_json::json!({
        "peers": [{"name": "lb2", "state": "alive"}],
        "eips": [{"allocation_id": "eipalloc-1", "holder": "lb1"}]
    }))));
    let j = f.stats.get("/stats.json").await.json();
    assert_eq!(j["node"], "lb1");
    assert_eq!(j["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(j["config"]["generation"], 1);
    assert_eq!(j["config"]["last_reload"]["ok"], true);
    assert_eq!(j["refresh_ms"], 500);
    assert!(j["uptime_s"].is_u64());
    let s = &j["listens"][0]["servers"][0];
    assert_eq!(s["sessions_current"], 1);
    assert_eq!(s["sessions_total"], 1);
    assert_eq!(s["requests_total"], 5);
    assert_eq!(s["hrsp"]["2xx"], 1);
    assert_eq!(s["hrsp"]["5xx"], 1);
    assert_eq!(s["bytes_in"], 100);
    assert_eq!(j["listens"][0]["frontend"]["requests_total"], 5);
    assert_eq!(j["cluster"]["peers"][0]["name"], "lb2");
}

#[tokio::test]
async fn rates_come_from_the_one_second_sampler() {
    let f = fixture("", true).await;
    let state = StatsState::new(f.rt.clone());
    let snap = f.rt.load();
    state.rates.sample(&snap, Duration::from_secs(1));
    let c = &snap.listens[0].servers[0].live.counters;
    for _ in 0..7 {
        c.session_start();
        c.session_end();
    }
    c.req_tot.fetch_add(7, Ordering::Relaxed);
    state.rates.sample(&snap, Duration::from_secs(1));
    let doc = edgelb::stats::json::build(&state);
    let s = &doc.listens[0].servers[0].traffic;
    assert_eq!((s.rate, s.rate_max, s.req_rate), (7, 7, 7));
    state.rates.sample(&snap, Duration::from_secs(1));
    let doc = edgelb::stats::json::build(&state);
    let s = &doc.listens[0].servers[0].traffic;
    assert_eq!((s.rate, s.rate_max), (0, 7), "max is kept");
    let csv = edgelb::stats::csv::render(&state);
    assert_eq!(csv_field(&csv, "webapp", "app1", "rate_max"), "7");
}

#[tokio::test]
async fn metrics_use_prometheus_conventions() {
    let f = fixture("", true).await;
    let snap = f.rt.load();
    let c = &snap.listens[0].servers[0].live.counters;
    c.count_status(200);
    c.latency.observe(Duration::from_millis(3));
    c.latency.observe(Duration::from_millis(40));
    let om = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let r = http(f.stats.addr, "GET", "/metrics", &[("Accept", om)], "").await;
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("application/openmetrics-text; version=1.0.0"));
    let m = r.body;
    for needle in [
        "# TYPE edgelb_server_requests counter",
        "edgelb_server_requests_total{listen=\"webapp\",server=\"app1\",code_class=\"2xx\"} 1",
        "edgelb_server_up{listen=\"webapp\",server=\"app1\"} 1\n",
        "edgelb_frontend_connections_current{listen=\"webapp\"} 0",
        "edgelb_backend_active_servers{listen=\"webapp\"} 3",
        "# TYPE edgelb_server_request_duration_seconds histogram",
        "edgelb_server_request_duration_seconds_bucket{le=\"0.005\",listen=\"webapp\",server=\"app1\"} 1",
        "edgelb_server_request_duration_seconds_bucket{le=\"0.05\",listen=\"webapp\",server=\"app1\"} 2",
        "edgelb_server_request_duration_seconds_bucket{le=\"+Inf\",listen=\"webapp\",server=\"app1\"} 2",
        "edgelb_server_request_duration_seconds_count{listen=\"webapp\",server=\"app1\"} 2",
        "edgelb_build_info{version=",
        "edgelb_config_generation 1",
        "# EOF",
    ] {
        assert!(m.contains(needle), "missing {needle:?} in\n{m}");
    }
}

#[tokio::test]
async fn metrics_default_to_prometheus_text_and_promtool_reports_nothing() {
    let f = fixture("", true).await;
    let snap = f.rt.load();
    let c = &snap.listens[0].servers[0].live.counters;
    c.count_status(200);
    c.latency.observe(Duration::from_millis(3));
    let m = f.stats.get("/metrics").await;
    let plain = http(
        f.stats.addr,
        "GET",
        "/metrics",
        &[("Accept", "text/plain")],
        "",
    )
    .await;
    for r in [&m, &plain] {
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("content-type"),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        assert!(!r.body.contains("# EOF"));
        for needle in [
            "# TYPE edgelb_server_requests_total counter\n",
            "edgelb_server_requests_total{listen=\"webapp\",server=\"app1\",code_class=\"2xx\"} 1\n",
            "# TYPE edgelb_server_up gauge\n",
            "# TYPE edgelb_server_request_duration_seconds histogram\n",
            "edgelb_server_request_duration_seconds_bucket{le=\"0.005\",listen=\"webapp\",server=\"app1\"} 1\n",
        ] {
            assert!(r.body.contains(needle), "missing {needle:?} in\n{}", r.body);
        }
    }
    let Some(promtool) = promtool() else {
        if std::env::var("EDGELB_SKIP_PROMTOOL").as_deref() == Ok("1") {
            eprintln!("promtool not found; skipped because EDGELB_SKIP_PROMTOOL=1");
            return;
        }
        panic!("promtool not found (apt-get install prometheus, EDGELB_PROMTOOL=/path, or EDGELB_SKIP_PROMTOOL=1)");
    };
    use std::io::Write as _;
    let mut child = std::process::Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(m.body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics: {}\n{said}",
        out.status
    );
}

#[tokio::test]
async fn unknown_paths_and_methods() {
    let f = fixture("", true).await;
    assert_eq!(f.stats.get("/nope").await.status, 404);
    let r = f.stats.post("/stats.json", &[], "").await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    let (k, v) = bearer();
    let r = http(
        f.stats.addr,
        "DELETE",
        "/admin/servers/webapp/app1/state",
        &[(k, &v)],
        "",
    )
    .await;
    assert_eq!(r.status, 405);
}

#[tokio::test]
async fn dashboard_page_is_self_contained() {
    let f = fixture("", true).await;
    let r = f.stats.get("/").await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    let b = r.body.to_ascii_lowercase();
    assert!(b.contains("<script>") && b.contains("stats.json"));
    for external in ["http://", "https://", "<link", "src=\"", "@import"] {
        assert!(
            !b.contains(external),
            "external asset reference {external:?}"
        );
    }
}

#[tokio::test]
async fn serve_binds_dashboard_and_api_addresses() {
    // Same address: one socket answers everything.
    let section: edgelb::config::StatsSection =
        toml::from_str("dashboard_bind = \"127.0.0.1:0\"\napi_bind = \"127.0.0.1:0\"").unwrap();
    assert_eq!(edgelb::stats::bind(&section).await.unwrap().len(), 1);
    // Different addresses: two sockets, both serving every route.
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    };
    let (a, b) = (free(), free());
    let section: edgelb::config::StatsSection =
        toml::from_str(&format!("dashboard_bind = \"{a}\"\napi_bind = \"{b}\"")).unwrap();
    let listeners = edgelb::stats::bind(&section).await.unwrap();
    assert_eq!(listeners.len(), 2);
    let rt = runtime(&listen_toml(
        "webapp",
        18080,
        &["127.0.0.1:1".parse().unwrap()],
        "",
    ));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(edgelb::stats::serve_on(
        StatsState::new(rt),
        listeners,
        async {
            let _ = rx.await;
        },
    ));
    for addr in [a, b] {
        assert_eq!(http(addr, "GET", "/stats.json", &[], "").await.status, 200);
        assert_eq!(http(addr, "GET", "/", &[], "").await.status, 200);
    }
    let _ = tx.send(());
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
    let bad: edgelb::config::StatsSection =
        toml::from_str("dashboard_bind = \"nonsense\"").unwrap();
    assert!(edgelb::stats::bind(&bad).await.is_err());
}

/// Measures scrape cost with many servers; prints the numbers (run with --nocapture).
#[tokio::test]
async fn scrape_cost_with_200_servers() {
    let mut toml = String::from("[stats]\n");
    for l in 0..4 {
        let addrs: Vec<std::net::SocketAddr> = (0..50)
            .map(|i| {
                format!("127.0.0.1:{}", 20000 + l * 100 + i)
                    .parse()
                    .unwrap()
            })
            .collect();
        toml.push_str(&listen_toml(&format!("l{l}"), 18080 + l as u16, &addrs, ""));
    }
    let rt = runtime(&toml);
    let state = StatsState::new(rt.clone());
    state.rates.sample(&rt.load(), Duration::from_secs(1));
    let time = |name: &str, f: &dyn Fn() -> usize| {
        let n = 50;
        let mut bytes = 0;
        let start = Instant::now();
        for _ in 0..n {
            bytes = f();
        }
        let per = start.elapsed() / n;
        eprintln!("{name}: {per:?} per scrape, {bytes} bytes (200 servers, debug build)");
        per
    };
    let j = time("/stats.json", &|| edgelb::stats::json::render(&state).len());
    let c = time("/stats.csv", &|| edgelb::stats::csv::render(&state).len());
    let m = time("/metrics", &|| {
        edgelb::stats::metrics::render(&state, edgelb::stats::metrics::Format::Prometheus).len()
    });
    // Generous bounds: a debug build on a shared 2-core box.
    for d in [j, c, m] {
        assert!(d < Duration::from_millis(250), "{d:?}");
    }
}
