//! Checks of the operator-facing files: the example configs load cleanly, the IAM policy grants
//! exactly what edgelb calls, the systemd units carry the required directives (and pass
//! `systemd-analyze verify` where it exists), the shell scripts parse, the secondary-IP script
//! speaks IMDSv2 to a loopback stub, and the cargo-deb metadata points at files that exist.
//!
//! External tools (systemd-analyze, bash, sh, curl, ip, terraform) are used when present; a part
//! that needs a missing tool prints a note and is skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use edgelb::config::load_str;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Absolute path of an executable found on PATH (or at one of the usual places).
fn tool(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/bin", "/bin", "/usr/sbin", "/sbin"].map(PathBuf::from));
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

fn skip(what: &str, missing: &str) {
    println!("note: skipping {what}: `{missing}` is not installed here");
}

fn load_clean(rel: &str) -> edgelb::config::Config {
    let loaded = load_str(&read(rel), rel).unwrap_or_else(|e| panic!("{rel} does not load:\n{e}"));
    assert!(
        loaded.warnings.is_empty(),
        "{rel} loads with warnings: {:#?}",
        loaded.warnings
    );
    loaded.config
}

// ---------------------------------------------------------------------------------------------
// Configs

/// The production config's EC2 budget covers the witness writes and the reconcile at rest with
/// about half left for a takeover's reads and associate (issue 17: `max_attempts = 6` with a
/// budget of 60 left 10 calls a minute where 10.6 are needed at rest).
#[test]
fn production_config_budget_leaves_room_for_a_takeover() {
    use edgelb::cluster::setup::{
        DEFAULT_API_BUDGET_PER_MINUTE, DEFAULT_RECONCILE_INTERVAL, DEFAULT_WITNESS_INTERVAL,
    };
    let c = load_clean("conf/edgelb.toml");
    let cl = c.cluster.as_ref().expect("[cluster]");
    let aws = c.aws.as_ref().expect("[aws]");
    let witness = cl.witness_interval.unwrap_or(DEFAULT_WITNESS_INTERVAL);
    let reconcile = aws.reconcile_interval.unwrap_or(DEFAULT_RECONCILE_INTERVAL);
    let per_call = f64::from(aws.max_attempts.unwrap_or(1));
    let budget = f64::from(
        aws.api_budget_per_minute
            .unwrap_or(DEFAULT_API_BUDGET_PER_MINUTE),
    );
    let writes = if cl.witness {
        60.0 / witness.as_secs_f64()
    } else {
        0.0
    };
    let at_rest = (writes + 60.0 / reconcile.as_secs_f64()) * per_call;
    assert!(
        at_rest <= budget * 0.55,
        "at rest {at_rest:.1} requests a minute of a budget of {budget}"
    );
}

#[test]
fn production_config_loads_without_errors_or_warnings() {
    let c = load_clean("conf/edgelb.toml");

    // One identical file on every node: the node name must come from the host name.
    assert!(c.node.name.is_none(), "[node] name must stay unset");

    let l = &c.listen[..];
    assert_eq!(l.len(), 1);
    let web = &l[0];
    assert_eq!(web.name, "webapp");
    assert_eq!(web.bind, ["*:80"]);
    assert_eq!(web.balance.as_str(), "roundrobin");
    let ck = web.cookie.as_ref().expect("cookie");
    assert_eq!(ck.name, "SERVERID");
    assert!(ck.insert && ck.indirect && ck.nocache);
    let ff = web.forwardfor.as_ref().expect("forwardfor");
    assert!(ff.enabled());
    assert_eq!(ff.except().len(), 1);
    assert_eq!(ff.except()[0].to_string(), "127.0.0.0/8");
    let names: Vec<&str> = web.server.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "ip-20-0-0-66.ec2.internal",
            "ip-20-0-0-5.ec2.internal",
            "ip-20-0-0-63.ec2.internal"
        ]
    );
    assert!(web
        .server
        .iter()
        .all(|s| s.check && s.address.ends_with(":80")));

    let r = web.proxy.resolve(&c.defaults.proxy, 20_000);
    assert_eq!(r.timeout_connect, Duration::from_secs(10));
    assert_eq!(r.timeout_client, Duration::from_secs(30));
    assert_eq!(r.timeout_server, Duration::from_secs(30));
    assert_eq!(r.retries, 3);
    assert!(r.redispatch);

    assert_eq!(c.log.access, "udp://127.0.0.1:514");
    assert_eq!(c.log.facility, "local0");
    assert_eq!(c.log.format, "httplog");

    let st = c.stats.as_ref().expect("[stats]");
    assert!(st.dashboard_bind.ends_with(":9022"));
    assert!(st.api_bind.ends_with(":9023"));
    assert!(st.admin_token_file.is_some());

    let cl = c.cluster.as_ref().expect("[cluster]");
    assert_eq!(cl.keepalive, Duration::from_secs(2));
    assert_eq!(cl.deadtime, Duration::from_secs(15));
    assert_eq!(cl.initdead, Duration::from_secs(60));
    assert!(cl.auto_failback);
    assert!(cl.bind.ends_with(":694"));
    assert!(cl.auth_key_file.starts_with("/etc/edgelb/"));
    assert_eq!(cl.node.len(), 2);
    for n in &cl.node {
        assert_eq!(
            n.address.len(),
            2,
            "node {} needs its primary and secondary private IP as heartbeat paths",
            n.name
        );
        assert!(n.address.iter().all(|a| a.ends_with(":694")));
    }

    assert_eq!(c.eip.len(), 2);
    let owners: BTreeSet<&str> = c.eip.iter().map(|e| e.owner.as_str()).collect();
    let nodes: BTreeSet<&str> = cl.node.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(owners, nodes, "each node owns exactly one EIP");

    let aws = c.aws.as_ref().expect("[aws]");
    assert!(aws.ensure_secondary_ip);
    assert!(
        aws.endpoint_url.is_none(),
        "production must use the real EC2 endpoint"
    );
}

#[test]
fn local_config_loads_without_errors_or_warnings_and_stays_on_loopback() {
    let c = load_clean("conf/local.toml");
    assert!(c.cluster.is_none() && c.aws.is_none() && c.eip.is_empty());
    assert_eq!(c.log.access, "stdout");
    let web = &c.listen[0];
    assert_eq!(web.bind, ["127.0.0.1:8080"]);
    let addrs: Vec<&str> = web.server.iter().map(|s| s.address.as_str()).collect();
    assert_eq!(
        addrs,
        ["127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"]
    );
    let st = c.stats.as_ref().expect("[stats]");
    assert_eq!(st.dashboard_bind, "127.0.0.1:9022");
    assert_eq!(st.api_bind, "127.0.0.1:9023");
}

// ---------------------------------------------------------------------------------------------
// IAM

fn as_list(v: &serde_json::Value) -> Vec<String> {
    match v {
        serde_json::Value::String(s) => vec![s.clone()],
        serde_json::Value::Array(a) => a
            .iter()
            .map(|x| x.as_str().expect("string").to_string())
            .collect(),
        other => panic!("expected a string or a list, got {other}"),
    }
}

#[test]
fn iam_policy_grants_exactly_the_calls_edgelb_makes() {
    let text = read("deploy/iam-policy.json");
    let doc: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(doc["Version"], "2012-10-17");
    let statements = doc["Statement"].as_array().expect("Statement list");

    let mut granted = BTreeSet::new();
    let mut by_action: BTreeMap<String, Vec<&serde_json::Value>> = BTreeMap::new();
    for s in statements {
        assert_eq!(s["Effect"], "Allow", "only Allow statements: {s}");
        assert!(s.get("NotAction").is_none() && s.get("NotResource").is_none());
        for a in as_list(&s["Action"]) {
            assert!(!a.contains('*'), "no wildcard actions: {a}");
            granted.insert(a.clone());
            by_action.entry(a).or_default().push(s);
        }
    }
    let expected: BTreeSet<String> = [
        "ec2:DescribeAddresses",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeInstanceStatus",
        "ec2:AssociateAddress",
        "ec2:DisassociateAddress",
        "ec2:CreateTags",
        "ec2:AssignPrivateIpAddresses",
    ]
    .map(String::from)
    .into();
    assert_eq!(granted, expected);

    // Describe* have no resource-level permissions.
    for a in [
        "ec2:DescribeAddresses",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeInstanceStatus",
    ] {
        for s in &by_action[a] {
            assert_eq!(as_list(&s["Resource"]), ["*"]);
        }
    }
    // Everything that changes something is scoped by resource type and a tag condition.
    for a in [
        "ec2:AssociateAddress",
        "ec2:DisassociateAddress",
        "ec2:CreateTags",
        "ec2:AssignPrivateIpAddresses",
    ] {
        for s in &by_action[a] {
            let res = as_list(&s["Resource"]);
            assert!(
                res.iter().all(|r| r != "*"),
                "{a} must not be on Resource *"
            );
            assert!(
                s["Condition"]["StringEquals"]["aws:ResourceTag/edgelb-cluster"].is_string(),
                "{a} must be limited to resources tagged edgelb-cluster"
            );
        }
    }
    for s in &by_action["ec2:CreateTags"] {
        assert_eq!(
            as_list(&s["Resource"]),
            ["arn:aws:ec2:*:*:network-interface/*"]
        );
        assert_eq!(
            as_list(&s["Condition"]["ForAllValues:StringEquals"]["aws:TagKeys"]),
            ["edgelb:witness"]
        );
        assert_eq!(s["Condition"]["Null"]["aws:TagKeys"], "false");
    }
    for s in &by_action["ec2:AssignPrivateIpAddresses"] {
        assert_eq!(
            as_list(&s["Resource"]),
            ["arn:aws:ec2:*:*:network-interface/*"]
        );
    }
}

// ---------------------------------------------------------------------------------------------
// systemd units

/// `Key=Value` lines of a unit file (all sections; repeated keys keep every value).
fn unit_directives(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .filter(|l| !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn value_of<'a>(d: &'a [(String, String)], key: &str) -> Option<&'a str> {
    d.iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn parse_seconds(v: &str) -> u64 {
    let v = v.trim();
    if let Some(s) = v.strip_suffix("min") {
        return s.parse::<u64>().unwrap() * 60;
    }
    v.trim_end_matches('s').parse().unwrap()
}

#[test]
fn service_unit_has_the_required_directives() {
    let text = read("deploy/edgelb.service");
    let d = unit_directives(&text);
    let required = [
        ("Type", "notify"),
        (
            "ExecStartPre",
            "/usr/bin/edgelb check -c /etc/edgelb/edgelb.toml",
        ),
        (
            "ExecStart",
            "/usr/bin/edgelb run -c /etc/edgelb/edgelb.toml",
        ),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("KillSignal", "SIGTERM"),
        ("Restart", "on-failure"),
        ("User", "edgelb"),
        ("AmbientCapabilities", "CAP_NET_BIND_SERVICE"),
        ("CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        (
            "RestrictAddressFamilies",
            "AF_INET AF_INET6 AF_UNIX AF_NETLINK",
        ),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("SystemCallFilter", "@system-service"),
        ("ReadWritePaths", "/var/log/edgelb"),
        ("LimitNOFILE", "1048576"),
        ("WantedBy", "multi-user.target"),
    ];
    for (k, v) in required {
        assert_eq!(value_of(&d, k), Some(v), "edgelb.service: {k}={v}");
    }
    // Stop timeout must exceed the 30 s drain grace (and the grace in conf/edgelb.toml).
    let stop = parse_seconds(value_of(&d, "TimeoutStopSec").expect("TimeoutStopSec"));
    let grace = load_clean("conf/edgelb.toml")
        .global
        .grace
        .unwrap_or(edgelb::config::DEFAULT_GRACE);
    assert!(
        stop > grace.as_secs() && stop > 30,
        "TimeoutStopSec={stop}s must exceed the {}s grace",
        grace.as_secs()
    );
    if let Some(w) = value_of(&d, "WatchdogSec") {
        assert!(parse_seconds(w) >= 10, "WatchdogSec too short: {w}");
    }
    // The unit runs the same paths the .deb installs.
    assert!(text.contains("/etc/edgelb/edgelb.toml"));
}

#[test]
fn secondary_ip_unit_orders_before_edgelb() {
    let d = unit_directives(&read("deploy/edgelb-secondary-ip.service"));
    assert_eq!(value_of(&d, "Type"), Some("oneshot"));
    assert_eq!(value_of(&d, "RemainAfterExit"), Some("yes"));
    assert_eq!(value_of(&d, "Before"), Some("edgelb.service"));
    assert_eq!(
        value_of(&d, "ExecStart"),
        Some("/usr/libexec/edgelb/edgelb-secondary-ip.sh")
    );
    assert_eq!(value_of(&d, "CapabilityBoundingSet"), Some("CAP_NET_ADMIN"));
}

/// `systemd-analyze verify` in a scratch root that holds the system's units, the unit under test
/// and stand-ins for the executables it names (verify rejects missing ExecStart binaries).
fn systemd_verify(unit_rel: &str, executables: &[&str]) {
    let Some(analyze) = tool("systemd-analyze") else {
        skip(
            &format!("systemd-analyze verify {unit_rel}"),
            "systemd-analyze",
        );
        return;
    };
    let sys_units = ["/usr/lib/systemd/system", "/lib/systemd/system"]
        .map(Path::new)
        .into_iter()
        .find(|p| p.join("sysinit.target").exists());
    let Some(sys_units) = sys_units else {
        println!(
            "note: skipping systemd-analyze verify {unit_rel}: no system units to verify against"
        );
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let r = tmp.path();
    let units_dst = r.join("usr/lib/systemd/system");
    std::fs::create_dir_all(&units_dst).unwrap();
    for e in std::fs::read_dir(sys_units).unwrap() {
        let e = e.unwrap();
        let ft = e.file_type().unwrap();
        if ft.is_file() || ft.is_symlink() {
            let _ = std::fs::copy(e.path(), units_dst.join(e.file_name()));
        }
    }
    for exe in executables {
        let dst = r.join(exe.trim_start_matches('/'));
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::write(&dst, "#!/bin/sh\nexit 0\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let etc = r.join("etc/systemd/system");
    std::fs::create_dir_all(&etc).unwrap();
    let name = Path::new(unit_rel).file_name().unwrap();
    std::fs::copy(root().join(unit_rel), etc.join(name)).unwrap();

    let out = Command::new(analyze)
        .arg("verify")
        .arg(format!("--root={}", r.display()))
        .arg(Path::new("/etc/systemd/system").join(name))
        .env("SYSTEMD_LOG_COLOR", "0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify {unit_rel} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    println!("systemd-analyze verify {unit_rel}: clean");
}

#[test]
fn service_unit_passes_systemd_analyze_verify() {
    systemd_verify("deploy/edgelb.service", &["/usr/bin/edgelb", "/bin/kill"]);
}

#[test]
fn secondary_ip_unit_passes_systemd_analyze_verify() {
    systemd_verify(
        "deploy/edgelb-secondary-ip.service",
        &["/usr/libexec/edgelb/edgelb-secondary-ip.sh"],
    );
}

// ---------------------------------------------------------------------------------------------
// Scripts

fn syntax_check(shell: &str, rel: &str) {
    let Some(sh) = tool(shell) else {
        skip(&format!("{shell} -n {rel}"), shell);
        return;
    };
    let out = Command::new(sh)
        .arg("-n")
        .arg(root().join(rel))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{shell} -n {rel}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn scripts_parse() {
    syntax_check("bash", "deploy/edgelb-secondary-ip.sh");
    syntax_check("sh", "deploy/debian/postinst");
    syntax_check("sh", "deploy/debian/postrm");
    for rel in [
        "deploy/edgelb-secondary-ip.sh",
        "deploy/debian/postinst",
        "deploy/debian/postrm",
    ] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(root().join(rel))
            .unwrap()
            .permissions()
            .mode();
        assert!(mode & 0o111 != 0, "{rel} must be executable");
    }
    let script = read("deploy/edgelb-secondary-ip.sh");
    assert!(script.contains("X-aws-ec2-metadata-token-ttl-seconds"));
    assert!(script.contains("local-ipv4s"));
}

/// A minimal IMDSv2 on loopback: PUT /latest/api/token gives a token, every GET without it is 401.
/// The MAC served is the loopback interface's, so the script finds a real interface.
fn imds_stub(lo_mac: String) -> (u16, std::sync::mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(64) {
            let Ok(mut s) = stream else { continue };
            s.set_read_timeout(Some(Duration::from_secs(5))).ok();
            let mut reader = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let mut parts = line.split_whitespace();
            let method = parts.next().unwrap_or("").to_string();
            let path = parts.next().unwrap_or("").to_string();
            let mut headers = Vec::new();
            let mut len = 0usize;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                    break;
                }
                let lower = h.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                headers.push(lower.trim().to_string());
            }
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            let _ = tx.send(format!("{method} {path}"));
            let has = |h: &str| headers.iter().any(|x| x.starts_with(h));
            let base = format!("/latest/meta-data/network/interfaces/macs/{lo_mac}");
            let (status, body) = match (method.as_str(), path.as_str()) {
                ("PUT", "/latest/api/token") if has("x-aws-ec2-metadata-token-ttl-seconds:") => {
                    ("200 OK", "stub-token".to_string())
                }
                ("GET", _) if !headers.contains(&"x-aws-ec2-metadata-token: stub-token".into()) => {
                    ("401 Unauthorized", String::new())
                }
                ("GET", "/latest/meta-data/network/interfaces/macs/") => {
                    ("200 OK", format!("{lo_mac}/"))
                }
                ("GET", p) if p == format!("{base}/subnet-ipv4-cidr-block") => {
                    ("200 OK", "127.0.0.0/8".to_string())
                }
                // Primary first, then a secondary that lo does not have, then one it has.
                ("GET", p) if p == format!("{base}/local-ipv4s") => {
                    ("200 OK", "127.0.0.1\n127.0.0.77\n127.0.0.1".to_string())
                }
                _ => ("404 Not Found", String::new()),
            };
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, rx)
}

#[test]
fn secondary_ip_script_uses_imdsv2_and_adds_only_missing_addresses() {
    let (Some(bash), Some(_), Some(_)) = (tool("bash"), tool("curl"), tool("ip")) else {
        skip("the secondary-ip dry run", "bash, curl or ip");
        return;
    };
    let Ok(mac) = std::fs::read_to_string("/sys/class/net/lo/address") else {
        println!("note: skipping the secondary-ip dry run: no /sys/class/net/lo");
        return;
    };
    let (port, seen) = imds_stub(mac.trim().to_string());
    let out = Command::new(bash)
        .arg(root().join("deploy/edgelb-secondary-ip.sh"))
        .arg("--dry-run")
        .env("IMDS_ENDPOINT", format!("http://127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "script failed: {stderr}");
    assert!(
        stderr.contains("would run: ip addr add 127.0.0.77/8 dev lo"),
        "{stderr}"
    );
    assert!(stderr.contains("127.0.0.1 already on lo"), "{stderr}");
    assert!(stderr.contains("done (1 address(es) added)"), "{stderr}");
    let requests: Vec<String> = seen.try_iter().collect();
    assert_eq!(
        requests.first().map(String::as_str),
        Some("PUT /latest/api/token")
    );
    assert!(requests.len() >= 4, "{requests:?}");
}

// ---------------------------------------------------------------------------------------------
// Packaging

#[test]
fn deb_metadata_points_at_existing_files() {
    let manifest: toml::Value = toml::from_str(&read("Cargo.toml")).unwrap();
    let deb = &manifest["package"]["metadata"]["deb"];
    let scripts = deb["maintainer-scripts"].as_str().unwrap();
    assert_eq!(scripts.trim_end_matches('/'), "deploy/debian");
    for s in ["postinst", "postrm"] {
        let text = read(&format!("deploy/debian/{s}"));
        assert!(
            text.contains("#DEBHELPER#"),
            "{s} needs the #DEBHELPER# token"
        );
    }
    let postinst = read("deploy/debian/postinst");
    assert!(postinst.contains("adduser --system"));
    assert!(postinst.contains("/var/log/edgelb"));

    let conf_files: Vec<&str> = deb["conf-files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(conf_files.contains(&"/etc/edgelb/edgelb.toml"));

    let mut targets = Vec::new();
    for a in deb["assets"].as_array().unwrap() {
        let a = a.as_array().unwrap();
        let src = a[0].as_str().unwrap();
        let dst = a[1].as_str().unwrap();
        targets.push(dst.to_string());
        if !src.starts_with("target/") {
            assert!(root().join(src).is_file(), "asset source {src} is missing");
        }
    }
    assert!(targets.iter().any(|t| t == "usr/bin/"));
    assert!(targets.iter().any(|t| t == "etc/edgelb/edgelb.toml"));
    let units = deb["systemd-units"]["unit-scripts"].as_str().unwrap();
    assert!(root().join(units).join("edgelb.service").is_file());
}

// ---------------------------------------------------------------------------------------------
// Terraform

#[test]
fn terraform_is_fmt_clean() {
    let Some(tf) = tool("terraform") else {
        skip("terraform fmt -check", "terraform");
        return;
    };
    let out = Command::new(tf)
        .args(["fmt", "-check", "-diff", "-recursive"])
        .arg(root().join("deploy/terraform"))
        .env("TF_CLI_CONFIG_FILE", "/dev/null")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "terraform fmt -check:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Evaluates one expression with `terraform console` in an empty scratch directory (no providers
/// needed) and returns the heredoc string it prints.
fn terraform_eval(tf: &Path, expr: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(tf)
        .arg("console")
        .current_dir(dir.path())
        .env("TF_CLI_CONFIG_FILE", "/dev/null")
        .env("CHECKPOINT_DISABLE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{expr}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "terraform console failed:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let body = stdout
        .trim_end()
        .strip_prefix("<<EOT\n")
        .and_then(|s| s.strip_suffix("EOT"))
        .unwrap_or_else(|| panic!("unexpected console output:\n{stdout}"));
    body.to_string()
}

#[test]
fn terraform_rendered_edgelb_toml_loads_cleanly() {
    let Some(tf) = tool("terraform") else {
        skip("rendering templates/edgelb.toml.tftpl", "terraform");
        return;
    };
    let tpl = root().join("deploy/terraform/templates/edgelb.toml.tftpl");
    let expr = format!(
        r#"templatefile("{}", {{ region = "eu-west-1", nodes = {{ "edge-a" = {{ primary_ip = "10.0.0.10", secondary_ip = "10.0.0.11" }}, "edge-b" = {{ primary_ip = "10.0.0.20", secondary_ip = "10.0.0.21" }} }}, eips = {{ "edge-a" = {{ allocation_id = "eipalloc-0123456789abcdef0", public_ip = "198.51.100.10" }}, "edge-b" = {{ allocation_id = "eipalloc-0123456789abcdef1", public_ip = "198.51.100.20" }} }}, backends = [ {{ name = "ip-10-0-0-101.ec2.internal", address = "10.0.0.101:80" }}, {{ name = "ip-10-0-0-102.ec2.internal", address = "10.0.0.102:80" }}, {{ name = "ip-10-0-0-103.ec2.internal", address = "10.0.0.103:80" }} ] }})"#,
        tpl.display()
    );
    let text = terraform_eval(&tf, &expr);
    let loaded = load_str(&text, "rendered edgelb.toml")
        .unwrap_or_else(|e| panic!("rendered config does not load:\n{e}\n---\n{text}"));
    assert!(loaded.warnings.is_empty(), "{:#?}", loaded.warnings);
    let c = loaded.config;
    assert_eq!(c.listen[0].server.len(), 3);
    let cl = c.cluster.expect("[cluster]");
    assert_eq!(cl.node.len(), 2);
    assert_eq!(cl.node[1].address, ["10.0.0.20:694", "10.0.0.21:694"]);
    assert_eq!(c.eip.len(), 2);
    assert_eq!(c.eip[0].owner, "edge-a");
    assert_eq!(c.aws.expect("[aws]").region.as_deref(), Some("eu-west-1"));
}

#[test]
fn terraform_rendered_edge_cloud_init_is_a_cloud_config() {
    let Some(tf) = tool("terraform") else {
        skip(
            "rendering templates/edge-cloud-init.yaml.tftpl",
            "terraform",
        );
        return;
    };
    let tpl = root().join("deploy/terraform/templates/edge-cloud-init.yaml.tftpl");
    let expr = format!(
        r#"templatefile("{}", {{ node_name = "edge-a", deb_url = "https://example.invalid/edgelb.deb?a=1&b=%2F", edgelb_toml = "[global]\n", cluster_key = "k3y", admin_token = "t0ken", read_token = "r3ad" }})"#,
        tpl.display()
    );
    let text = terraform_eval(&tf, &expr);
    assert!(text.starts_with("#cloud-config\n"), "{text}");
    assert!(text.contains("hostname: edge-a\n"));
    // Secrets and the URL only appear base64-encoded (no YAML or shell quoting problems).
    assert!(!text.contains("k3y") && !text.contains("t0ken") && !text.contains("example.invalid"));
    assert!(!text.contains("r3ad"));
    assert!(text.contains("install -m 0600 -o edgelb -g edgelb read.token /etc/edgelb/read.token"));
    assert!(text.contains("systemctl enable --now edgelb.service"));
    assert!(!text.contains('\t'), "YAML must not contain tabs");
}
