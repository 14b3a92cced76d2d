//! `edgelb import` tests: golden files over real-world-shaped HAProxy + Heartbeat setups
//! (`tests/fixtures/import/<case>/`), the lexer's HAProxy quoting rules, bad inputs with their
//! file:line messages and exit codes, and `run_inner` end to end on a temporary directory.
//! `UPDATE_GOLDEN=1 cargo nextest run --test import` rewrites the golden files.

use std::path::{Path, PathBuf};

use edgelb::import::haproxy::{lex_line, parse_time};
use edgelb::import::heartbeat::parse_hb_time;
use edgelb::import::{
    haproxy_to_config, import_sources, looks_like_haproxy, read_sources, run_inner, Env,
    ImportArgs, ImportError, Kind, Report, Sources,
};

const KEY: &str = "/etc/edgelb/cluster.key";

fn fixtures() -> PathBuf {
    Path::new("tests/fixtures/import").to_path_buf()
}

fn opt(dir: &Path, name: &str) -> Option<PathBuf> {
    let p = dir.join(name);
    p.exists().then_some(p)
}

/// The arguments for a fixture directory: every input file that exists there.
fn case_args(dir: &Path) -> ImportArgs {
    ImportArgs {
        haproxy: std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|e| e == "cfg"))
            .expect("a .cfg in the fixture"),
        ha_cf: opt(dir, "ha.cf"),
        authkeys: opt(dir, "authkeys"),
        haresources: opt(dir, "haresources"),
        update_eip_dir: opt(dir, "update-eip"),
        output: None,
        node: std::fs::read_to_string(dir.join("node"))
            .ok()
            .map(|s| s.trim().to_string()),
        key_out: Some(PathBuf::from(KEY)),
    }
}

/// `NAME=value` lines of the fixture's `env` file: the environment HAProxy would have had.
fn case_env(dir: &Path) -> Env {
    let text = std::fs::read_to_string(dir.join("env")).unwrap_or_default();
    Env::from_pairs(text.lines().filter_map(|l| {
        l.split_once('=')
            .map(|(k, v)| (k.trim().to_string(), v.to_string()))
    }))
}

fn case_sources(dir: &Path) -> Sources {
    let mut src = read_sources(&case_args(dir)).expect("fixture readable");
    src.env = case_env(dir);
    // Git does not keep 0600; the permission check has its own test.
    if let Some(a) = src.heartbeat.authkeys.as_mut() {
        a.mode = Some(0o600);
    }
    src.output_name = "edgelb.toml".into();
    src
}

fn golden(path: &Path, actual: &str) {
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_else(|_| {
        panic!(
            "{} missing: run with UPDATE_GOLDEN=1 to create it",
            path.display()
        )
    });
    if expected != actual {
        panic!(
            "{} differs (UPDATE_GOLDEN=1 to accept):\n--- actual ---\n{actual}",
            path.display()
        );
    }
}

/// Runs one fixture case: golden TOML + report, TOML loads, and the expected exit status.
fn golden_case(name: &str, exit: u8) -> (edgelb::import::Imported, Report) {
    let dir = fixtures().join(name);
    let imp = import_sources(case_sources(&dir)).unwrap_or_else(|e| panic!("{name}: {e}"));
    golden(&dir.join("expected.toml"), &imp.toml);
    golden(&dir.join("expected.report"), &imp.report.render());
    edgelb::config::load_str(&imp.toml, "expected.toml").expect("generated TOML loads");
    assert_eq!(
        imp.report.exit_code(),
        exit,
        "{name}: exit status; report:\n{}",
        imp.report.render()
    );
    let r = imp.report.clone();
    (imp, r)
}

// ---- golden cases --------------------------------------------------------------------------------

#[test]
fn golden_seed_imports_cleanly_with_nothing_lost() {
    let (imp, report) = golden_case("seed", 0);
    assert_eq!(report.count(Kind::Warning), 0);
    assert_eq!(report.count(Kind::Error), 0);
    let c = &imp.config;
    assert_eq!(c.listen.len(), 1);
    let l = &c.listen[0];
    assert_eq!(l.name, "webapp");
    assert_eq!(l.bind, vec!["*:80"]);
    assert_eq!(l.server.len(), 3);
    assert_eq!(l.server[0].address, "20.0.0.61:80");
    assert_eq!(
        l.server[0].cookie.as_deref(),
        Some("ip-20-0-0-66.ec2.internal")
    );
    let ck = l.cookie.as_ref().unwrap();
    assert!(ck.insert && ck.indirect && ck.nocache && !ck.httponly);
    assert_eq!(
        l.forwardfor.as_ref().unwrap().except()[0].to_string(),
        "127.0.0.0/8"
    );
    assert_eq!(c.log.access, "udp://127.0.0.1:514");
    assert!(c.stats.is_some());
    let cl = c.cluster.as_ref().unwrap();
    assert_eq!(cl.keepalive.as_secs(), 2);
    assert_eq!(cl.deadtime.as_secs(), 15);
    assert_eq!(cl.initdead.as_secs(), 60);
    assert!(cl.auto_failback);
    assert_eq!(cl.auth_key_file, KEY);
    assert_eq!(cl.node.len(), 2);
    assert_eq!(cl.node[0].address, vec!["20.0.0.33:694", "20.0.0.161:694"]);
    assert_eq!(cl.node[1].address, vec!["20.0.0.182:694", "20.0.0.16:694"]);
    assert_eq!(cl.node[0].eni_id.as_deref(), Some("eni-0c4d5e6f708192a3b"));
    assert_eq!(c.eip.len(), 2);
    assert_eq!(c.eip[0].owner, "ip-20-0-0-98");
    assert_eq!(c.eip[1].allocation_id, "eipalloc-0f9e8d7c6b5a49382");
    assert_eq!(
        imp.secret.as_deref(),
        Some("9f2c4e7a1b3d5f60718293a4b5c6d7e8")
    );
    assert!(
        !imp.toml.contains("9f2c4e7a"),
        "the secret must not be in the TOML"
    );
    assert!(!report.render().contains("9f2c4e7a"), "nor in the report");
    assert!(report
        .render()
        .contains("timeout connect 10s -> defaults.timeout_connect = \"10s\""));
    // The report says which EC2 rights the result needs, including what the seed's role lacks.
    let text = report.render();
    assert!(
        text.contains("ec2:CreateTags") && text.contains("ec2:DescribeNetworkInterfaces"),
        "{text}"
    );
    // The second `log` line: health transitions go to stderr, not to syslog local1.
    let local1 = text
        .lines()
        .find(|l| l.contains("local1 notice"))
        .unwrap_or_default();
    assert!(local1.contains("stderr"), "{local1}");
    // An optional hint is not a TODO (exit 0 above).
    assert!(!imp.toml.contains("# TODO"));
}

#[test]
fn proto_h2_bind_imports_as_h2c_and_a_mixed_proxy_warns() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("h2.cfg");
    std::fs::write(
        &cfg,
        "defaults
    mode http
frontend www
    bind 127.0.0.1:8080 proto h2
    default_backend app
backend app
    server s1 127.0.0.1:9001
",
    )
    .unwrap();
    let imp = haproxy_to_config(&cfg).unwrap();
    let text = imp.report.render();
    assert!(!text.contains("warning:"), "{text}");
    assert!(text.contains("proto = \"h2\""), "{text}");
    assert_eq!(imp.config.listen[0].name, "www");
    assert_eq!(imp.config.listen[0].proto, edgelb::config::Proto::H2);
    assert!(imp.toml.contains("proto = \"h2\""), "{}", imp.toml);

    // `proto` is per listen in edgelb: a proxy with h2 and HTTP/1 binds stays HTTP/1, said once.
    std::fs::write(
        &cfg,
        "defaults
    mode http
frontend www
    bind 127.0.0.1:8080 proto h2
    bind 127.0.0.1:8081
    default_backend app
backend app
    server s1 127.0.0.1:9001
",
    )
    .unwrap();
    let imp = haproxy_to_config(&cfg).unwrap();
    let text = imp.report.render();
    let warnings: Vec<&str> = text.lines().filter(|l| l.contains("warning:")).collect();
    assert_eq!(warnings.len(), 1, "{text}");
    assert!(warnings[0].contains("proto h2"), "{text}");
    assert!(warnings[0].contains("HTTP/1.1"), "{text}");
    assert_eq!(imp.config.listen[0].proto, edgelb::config::Proto::H1);
}

#[test]
fn golden_split_frontend_backend_and_per_node_scripts() {
    let (imp, _) = golden_case("split", 0);
    let c = &imp.config;
    assert_eq!(c.listen.len(), 1, "frontend+backend merged");
    let l = &c.listen[0];
    // Named after the frontend, as HAProxy's access log names it (`www app/web2`).
    assert_eq!(l.name, "www");
    let http = l.health.http.as_ref().unwrap();
    assert_eq!(http.host.as_deref(), Some("app.example.com"));
    let cl = c.cluster.as_ref().unwrap();
    assert_eq!(
        cl.node[1].secondary_ip.map(|i| i.to_string()).as_deref(),
        Some("10.1.0.21")
    );
}

#[test]
fn golden_loopback_config_runs_from_haproxy_file() {
    let (imp, _) = golden_case("loopback", 0);
    let imp2 = haproxy_to_config(&fixtures().join("loopback/haproxy.cfg")).unwrap();
    assert_eq!(imp2.config.listen[0].bind, imp.config.listen[0].bind);
    assert_eq!(imp2.config.listen[0].server[2].address, "127.0.0.1:18083");
}

#[test]
fn golden_unsupported_directives_are_reported_not_dropped() {
    let (imp, report) = golden_case("unsupported", 2);
    let text = report.render();
    for needle in [
        "mode tcp",
        "balance leastconn",
        "ACLs are not supported",
        "conditional backend switching",
        "backup servers are not supported",
        "cookie maxidle is not supported",
        "static-rr mapped to roundrobin",
        "1 `# TODO` line(s) left in the output (lines 47)",
    ] {
        assert!(text.contains(needle), "report lacks {needle:?}:\n{text}");
    }
    assert!(imp.toml.contains("# TODO: backup server"));
}

// ---- lexer and units ---------------------------------------------------------------------------------

fn words(line: &str, env: &Env) -> Vec<String> {
    lex_line(line, env).unwrap().words
}

#[test]
fn lexer_follows_haproxy_quoting_rules() {
    let env = Env::from_pairs([("PORT", "8080"), ("LIST", "a b  c")]);
    assert_eq!(words("  bind :80   # comment", &env), ["bind", ":80"]);
    assert_eq!(
        words(r#"x "a b" 'c d' e\ f"#, &env),
        ["x", "a b", "c d", "e f"]
    );
    assert_eq!(
        words(r#"x "${PORT}" "$PORT" '${PORT}'"#, &env),
        ["x", "8080", "8080", "${PORT}"]
    );
    assert_eq!(words(r#"x "${NOPE-9}""#, &env), ["x", "9"]);
    assert_eq!(words(r#"x "${LIST[*]}""#, &env), ["x", "a", "b", "c"]);
    assert_eq!(words(r#"x \x41\#b "q\"q""#, &env), ["x", "A#b", "q\"q"]);
    assert_eq!(words(r#"x "a\r\nHost:\ h""#, &env), ["x", "a\r\nHost: h"]);
    assert_eq!(words(r#"x "" y"#, &env), ["x", "", "y"]);
    assert_eq!(words(r#"x \q"#, &env), ["x", "\\q"]);
    let bare = lex_line("x $PORT", &env).unwrap();
    assert_eq!(
        bare.words,
        ["x", "$PORT"],
        "HAProxy expands only inside double quotes"
    );
    assert_eq!(bare.bare_vars, ["PORT"]);
    assert_eq!(
        lex_line(r#"x "${UNSET}""#, &env).unwrap().undefined,
        ["UNSET"]
    );
    assert!(lex_line(r#"x "open"#, &env)
        .unwrap_err()
        .contains("unterminated double quote"));
    assert!(lex_line("x 'open", &env)
        .unwrap_err()
        .contains("unterminated single quote"));
    assert!(lex_line(r#"x "${A""#, &env)
        .unwrap_err()
        .contains("unmatched brace"));
}

#[test]
fn haproxy_and_heartbeat_time_units() {
    use std::time::Duration;
    assert_eq!(parse_time("1500").unwrap(), Duration::from_millis(1500));
    assert_eq!(parse_time("10s").unwrap(), Duration::from_secs(10));
    assert_eq!(parse_time("2m").unwrap(), Duration::from_secs(120));
    assert_eq!(parse_time("1h").unwrap(), Duration::from_secs(3600));
    assert_eq!(parse_time("1d").unwrap(), Duration::from_secs(86400));
    assert_eq!(parse_time("250us").unwrap(), Duration::from_micros(250));
    assert!(parse_time("10x").is_err());
    assert!(parse_time("s").is_err());
    assert_eq!(parse_hb_time("2").unwrap(), Duration::from_secs(2));
    assert_eq!(parse_hb_time("1.5").unwrap(), Duration::from_millis(1500));
    assert_eq!(parse_hb_time("500ms").unwrap(), Duration::from_millis(500));
    assert!(parse_hb_time("fast").is_err());
}

#[test]
fn format_detection() {
    assert!(looks_like_haproxy(
        "global\n  maxconn 10\nlisten x\n  bind :80\n"
    ));
    assert!(looks_like_haproxy("# c\ndefaults\n  mode http\n"));
    assert!(!looks_like_haproxy("[global]\nmaxconn = 10\n"));
    assert!(!looks_like_haproxy("[[listen]]\nname = \"x\"\n"));
    assert!(!looks_like_haproxy("global = 1\n"));
    assert!(!looks_like_haproxy(""));
}

// ---- bad inputs -------------------------------------------------------------------------------------

fn hap_only(text: &str) -> Result<edgelb::import::Imported, ImportError> {
    import_sources(Sources {
        haproxy: edgelb::import::heartbeat::Source {
            name: "bad.cfg".into(),
            text: text.into(),
            mode: None,
        },
        heartbeat: Default::default(),
        node: None,
        env: Env::from_pairs(Vec::<(String, String)>::new()),
        output_name: "out.toml".into(),
    })
}

const OK_TAIL: &str =
    "defaults\n  mode http\nlisten web\n  bind 127.0.0.1:8080\n  server a 127.0.0.1:9000 check\n";

fn rejected(r: Result<edgelb::import::Imported, ImportError>) -> Report {
    match r {
        Err(ImportError::Rejected { report, .. }) => {
            assert_eq!(report.exit_code(), 1);
            report
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(i) => panic!("imported although it should not:\n{}", i.report.render()),
    }
}

#[test]
fn unknown_section_is_an_error_with_location() {
    let r = rejected(hap_only(&format!("{OK_TAIL}frontned other\n  bind :81\n")));
    let t = r.render();
    assert!(
        t.contains("bad.cfg:6 frontned other: error: unknown section `frontned`"),
        "{t}"
    );
}

#[test]
fn unterminated_quote_is_an_error_with_location() {
    let r = rejected(hap_only(&format!("{OK_TAIL}  cookie \"SERVERID insert\n")));
    assert!(r.render().contains("bad.cfg:6"), "{}", r.render());
    assert!(r.render().contains("unterminated double quote"));
}

#[test]
fn unsupported_directives_give_warnings_and_exit_2() {
    let imp = hap_only(
        "defaults\n  mode http\nlisten web\n  bind :8080\n  balance leastconn\n  acl api path_beg /api\n  server a 127.0.0.1:9000 check\nlisten raw\n  mode tcp\n  bind :9999\n  server b 127.0.0.1:9001\n",
    )
    .unwrap();
    let t = imp.report.render();
    assert_eq!(imp.report.exit_code(), 2, "{t}");
    assert!(
        t.contains("bad.cfg:5 balance leastconn: warning: balance leastconn is not supported"),
        "{t}"
    );
    assert!(
        t.contains("bad.cfg:6 acl api path_beg /api: warning: ACLs are not supported"),
        "{t}"
    );
    assert!(
        t.contains("bad.cfg:9 mode tcp: warning: mode tcp is not supported"),
        "{t}"
    );
    assert_eq!(imp.config.listen.len(), 1, "the tcp listen is not imported");
}

#[test]
fn bad_time_is_an_error() {
    let r = rejected(hap_only(&format!("{OK_TAIL}  timeout server 30sec\n")));
    assert!(
        r.render()
            .contains("bad.cfg:6 timeout server 30sec: error: invalid time"),
        "{}",
        r.render()
    );
}

fn hb_case(
    ha_cf: &str,
    authkeys: &str,
    mode: u32,
) -> Result<edgelb::import::Imported, ImportError> {
    let dir = fixtures().join("seed");
    let mut src = case_sources(&dir);
    src.heartbeat.ha_cf.as_mut().unwrap().text = ha_cf.into();
    let a = src.heartbeat.authkeys.as_mut().unwrap();
    a.text = authkeys.into();
    a.mode = Some(mode);
    import_sources(src)
}

const SEED_HA: &str = "keepalive 2\ndeadtime 15\ninitdead 60\nudpport 694\nucast eth0 20.0.0.33\nucast eth0 20.0.0.161\nucast eth0 20.0.0.182\nucast eth0 20.0.0.16\nauto_failback on\nnode ip-20-0-0-98\nnode ip-20-0-0-43\n";
const SHA1: &str = "auth 1\n1 sha1 s3cret\n";

#[test]
fn heartbeat_timer_rules_are_errors_with_location() {
    let r = rejected(hb_case(
        &SEED_HA.replace("deadtime 15", "deadtime 4"),
        SHA1,
        0o600,
    ));
    let t = r.render();
    assert!(
        t.contains(
            "seed/ha.cf:2 deadtime 4: error: deadtime (4s) must be greater than 2 x keepalive (2s)"
        ),
        "{t}"
    );
    let r = rejected(hb_case(
        &SEED_HA.replace("initdead 60", "initdead 10"),
        SHA1,
        0o600,
    ));
    assert!(
        r.render()
            .contains("ha.cf:3 initdead 10: error: initdead (10s) must be at least deadtime (15s)"),
        "{}",
        r.render()
    );
    let r = rejected(hb_case(
        &SEED_HA.replace("keepalive 2", "keepalive 2 fast\nwarntime 20"),
        SHA1,
        0o600,
    ));
    assert!(
        r.render()
            .contains("warntime (20s) must be less than deadtime (15s)"),
        "{}",
        r.render()
    );
    let r = rejected(hb_case(
        &SEED_HA.replace("keepalive 2", "keepalive soon"),
        SHA1,
        0o600,
    ));
    assert!(
        r.render()
            .contains("ha.cf:1 keepalive soon: error: invalid time"),
        "{}",
        r.render()
    );
}

#[test]
fn heartbeat_ms_units_and_udpport_order() {
    let ha = "keepalive 500ms\ndeadtime 2.5\nucast eth0 20.0.0.33\nudpport 5694\nucast eth0 20.0.0.161\nucast eth0 20.0.0.182\nucast eth0 20.0.0.16\nnode ip-20-0-0-98\nnode ip-20-0-0-43\n";
    let imp = hb_case(ha, SHA1, 0o600).unwrap();
    let cl = imp.config.cluster.as_ref().unwrap();
    assert_eq!(cl.keepalive.as_millis(), 500);
    assert_eq!(cl.deadtime.as_millis(), 2500);
    assert_eq!(
        cl.initdead.as_secs(),
        12,
        "Heartbeat's default for deadtime < 6s"
    );
    assert_eq!(cl.node[0].address, vec!["20.0.0.33:694", "20.0.0.161:5694"]);
    let t = imp.report.render();
    assert!(t.contains("udpport comes after ucast lines"), "{t}");
    assert_eq!(imp.report.exit_code(), 2);
}

#[test]
fn crc_authkeys_is_refused() {
    let r = rejected(hb_case(SEED_HA, "auth 2\n2 crc\n", 0o600));
    let t = r.render();
    assert!(
        t.contains("authkeys:2 2 crc ****: error: crc authentication is refused"),
        "{t}"
    );
}

#[test]
fn crc_with_another_key_uses_that_key_with_a_warning() {
    let imp = hb_case(SEED_HA, "auth 2\n1 sha1 s3cret\n2 crc\n", 0o600).unwrap();
    assert_eq!(imp.secret.as_deref(), Some("s3cret"));
    assert_eq!(imp.report.exit_code(), 2);
    assert!(imp.report.render().contains("key 1 (sha1) is used instead"));
}

#[test]
fn readable_authkeys_is_a_warning() {
    let imp = hb_case(SEED_HA, SHA1, 0o644).unwrap();
    assert_eq!(imp.report.exit_code(), 2);
    assert!(imp
        .report
        .render()
        .contains("mode 0644: authkeys is readable by group/others"));
}

#[test]
fn scripts_without_node_evidence_leave_todos() {
    // Node names that are not EC2 host names and ucast addresses that are not grouped per node:
    // nothing says which node the flat script directory belongs to.
    let ha = "keepalive 2\ndeadtime 15\nucast eth0 20.0.0.161\nucast eth0 20.0.0.33\nucast eth0 20.0.0.182\nucast eth0 20.0.0.16\nnode lb1\nnode lb2\n";
    let dir = fixtures().join("seed");
    let mut src = case_sources(&dir);
    src.heartbeat.ha_cf.as_mut().unwrap().text = ha.into();
    src.heartbeat.haresources.as_mut().unwrap().text = "lb1 updateEIP1\nlb2 updateEIP2\n".into();
    let imp = import_sources(src).unwrap();
    assert_eq!(imp.report.exit_code(), 2);
    let t = imp.report.render();
    assert!(
        t.contains("cannot tell which node these scripts belong to"),
        "{t}"
    );
    assert!(
        imp.toml
            .contains("# TODO: pick this node's heartbeat addresses from"),
        "{}",
        imp.toml
    );
    assert_eq!(imp.config.eip.len(), 2, "EIPs are still derivable");
}

// ---- run() end to end ----------------------------------------------------------------------------------

#[test]
fn run_writes_config_and_key_and_returns_exit_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = fixtures().join("seed");
    let authkeys = tmp.path().join("authkeys");
    std::fs::copy(dir.join("authkeys"), &authkeys).unwrap();
    set_mode(&authkeys, 0o600);
    let mut args = case_args(&dir);
    args.authkeys = Some(authkeys.clone());
    args.output = Some(tmp.path().join("edgelb.toml"));
    args.key_out = None;
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = run_inner(&args, &mut out, &mut err);
    let err = String::from_utf8_lossy(&err).to_string();
    assert_eq!(code, 0, "{err}");
    assert!(out.is_empty(), "config went to the file");
    let toml = std::fs::read_to_string(tmp.path().join("edgelb.toml")).unwrap();
    edgelb::config::load_str(&toml, "edgelb.toml").unwrap();
    let key = tmp.path().join("cluster.key");
    assert_eq!(
        std::fs::read_to_string(&key).unwrap(),
        "9f2c4e7a1b3d5f60718293a4b5c6d7e8\n"
    );
    assert_eq!(mode(&key) & 0o777, 0o600);
    assert!(toml.contains(&format!(
        "auth_key_file = \"{}\"",
        std::path::absolute(&key).unwrap().display()
    )));
    assert!(err.contains("summary:"));

    // Readable authkeys: imported, exit 2.
    set_mode(&authkeys, 0o644);
    let code = run_inner(&args, &mut Vec::new(), &mut Vec::new());
    assert_eq!(code, 2);

    // crc-only authkeys: exit 1 and nothing written.
    std::fs::write(&authkeys, "auth 1\n1 crc\n").unwrap();
    set_mode(&authkeys, 0o600);
    args.output = Some(tmp.path().join("never.toml"));
    let mut err = Vec::new();
    assert_eq!(run_inner(&args, &mut Vec::new(), &mut err), 1);
    assert!(!tmp.path().join("never.toml").exists());
    assert!(String::from_utf8_lossy(&err).contains("nothing written"));

    // Missing file: exit 1.
    args.haproxy = tmp.path().join("missing.cfg");
    let mut err = Vec::new();
    assert_eq!(run_inner(&args, &mut Vec::new(), &mut err), 1);
    assert!(String::from_utf8_lossy(&err).contains("missing.cfg: cannot read"));
}

#[test]
fn run_to_stdout_without_heartbeat() {
    let args = ImportArgs {
        haproxy: fixtures().join("loopback/haproxy.cfg"),
        ..ImportArgs::default()
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    assert_eq!(
        run_inner(&args, &mut out, &mut err),
        0,
        "{}",
        String::from_utf8_lossy(&err)
    );
    let toml = String::from_utf8(out).unwrap();
    assert!(toml.contains("[[listen]]"));
    assert!(!toml.contains("[cluster]"));
}

#[cfg(unix)]
fn set_mode(p: &Path, m: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
}
#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode()
}

// ---- import never exposes more than the source --------------------------------------------------

fn stats_binds(text: &str) -> (String, String, String) {
    let imp = hap_only(text).unwrap_or_else(|e| panic!("{e}"));
    let st = imp.config.stats.expect("[stats]");
    (st.dashboard_bind, st.api_bind, imp.toml)
}

#[test]
fn import_never_widens_what_the_source_exposed() {
    // The seed's local, mode-660 admin socket: loopback TCP, never 0.0.0.0.
    let (dash, api, _) = stats_binds(&format!(
        "global\n  stats socket /run/hapee.sock mode 660 level admin\n{OK_TAIL}"
    ));
    assert_eq!(
        (dash.as_str(), api.as_str()),
        ("127.0.0.1:9022", "127.0.0.1:9023")
    );
    let (golden, _) = golden_case("seed", 0);
    let st = golden.config.stats.expect("seed [stats]");
    assert_eq!(
        (st.dashboard_bind.as_str(), st.api_bind.as_str()),
        ("127.0.0.1:9022", "127.0.0.1:9023")
    );

    // A `listen stats` on one address: that address only, no 9023 it never mentioned.
    let stats = "listen stats\n  bind 10.0.0.5:8404\n  stats enable\n  stats uri /\n";
    for (global, what) in [
        ("", "no socket"),
        (
            "global\n  stats socket /run/h.sock level admin\n",
            "with a socket",
        ),
    ] {
        let (dash, api, _) = stats_binds(&format!("{global}{OK_TAIL}{stats}"));
        assert_eq!(
            (dash.as_str(), api.as_str()),
            ("10.0.0.5:8404", "10.0.0.5:8404"),
            "{what}"
        );
    }

    // A page the source protected with `stats auth`: loopback until a read token is set.
    let (dash, api, toml) = stats_binds(&format!(
        "{OK_TAIL}listen stats\n  bind *:8404\n  stats enable\n  stats auth admin:pw\n"
    ));
    assert_eq!(
        (dash.as_str(), api.as_str()),
        ("127.0.0.1:8404", "127.0.0.1:8404")
    );
    assert!(toml.contains("read_token_file"), "{toml}");
    assert!(
        !toml.contains("admin:pw") && !toml.contains("\"pw\""),
        "no password copied: {toml}"
    );
}

#[test]
fn timeout_tunnel_is_imported_from_defaults_and_listen() {
    let imp = hap_only(
        "defaults\n  mode http\n  timeout tunnel 1h\nlisten web\n  bind 127.0.0.1:8080\n  server a 127.0.0.1:9000 check\nlisten ws\n  bind 127.0.0.1:8081\n  timeout tunnel 90s\n  server b 127.0.0.1:9001\n",
    )
    .unwrap();
    let t = imp.report.render();
    assert_eq!(imp.report.exit_code(), 0, "{t}");
    assert!(imp.toml.contains("timeout_tunnel = \"1h\""), "{}", imp.toml);
    let c = &imp.config;
    assert_eq!(
        c.defaults.proxy.timeout_tunnel,
        Some(std::time::Duration::from_secs(3600))
    );
    let ws = c.listen.iter().find(|l| l.name == "ws").unwrap();
    assert_eq!(
        ws.proxy.resolve(&c.defaults.proxy, 100).timeout_tunnel,
        std::time::Duration::from_secs(90)
    );
    let web = c.listen.iter().find(|l| l.name == "web").unwrap();
    assert_eq!(
        web.proxy.resolve(&c.defaults.proxy, 100).timeout_tunnel,
        std::time::Duration::from_secs(3600)
    );
}

#[test]
fn header_and_log_line_limits_are_imported() {
    let imp = hap_only(&format!(
        "global\n  tune.http.maxhdr 51\n  log 127.0.0.1:514 len 300 local0\n{OK_TAIL}"
    ))
    .unwrap();
    assert_eq!(imp.config.global.max_header_lines, Some(50), "{}", imp.toml);
    assert_eq!(imp.config.log.max_line_len, Some(300), "{}", imp.toml);
    let t = imp.report.render();
    assert!(!t.contains("unsupported log options"), "{t}");
    let r = rejected(hap_only(&format!(
        "global\n  tune.http.maxhdr 1\n{OK_TAIL}"
    )));
    assert!(r.render().contains("bad.cfg:2"), "{}", r.render());
}

/// `bind :443 ssl crt FILE crt DIR alpn h2,http/1.1`, `redirect scheme https if !{ ssl_fc }`,
/// the X-Forwarded-Proto/Port idioms, HSTS, `accept-proxy` and `send-proxy-v2` become their
/// edgelb keys, and the HAProxy file then runs as is: TLS served with SNI, plain redirected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_redirect_forwarded_hsts_and_proxy_idioms_import_and_run() {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["www.example.com".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    // HAProxy's combined PEM: certificate and key in one file (so it is a secret file).
    let pem = dir.path().join("site.pem");
    std::fs::write(&pem, format!("{}{}", cert.pem(), key.serialize_pem())).unwrap();
    std::fs::set_permissions(&pem, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let certdir = dir.path().join("more");
    std::fs::create_dir(&certdir).unwrap();
    let backend = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let baddr = backend.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = backend.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                        .await;
                }
            });
        }
    });
    let (p80, p443) = (free_port(), free_port());
    let cfg = dir.path().join("haproxy.cfg");
    std::fs::write(
        &cfg,
        format!(
            "defaults
    mode http
    timeout client 5s
frontend www
    bind 127.0.0.1:{p80}
    bind 127.0.0.1:{p443} ssl crt {} crt {} alpn h2,http/1.1
    redirect scheme https if !{{ ssl_fc }}
    http-request set-header X-Forwarded-Proto https if {{ ssl_fc }}
    http-request set-header X-Forwarded-Port %[dst_port]
    http-response set-header Strict-Transport-Security \"max-age=600\"
    default_backend app
backend app
    server s1 {baddr} send-proxy-v2
",
            pem.display(),
            certdir.display()
        ),
    )
    .unwrap();
    let imp = haproxy_to_config(&cfg).unwrap();
    let text = imp.report.render();
    let l = &imp.config.listen[0];
    assert!(
        l.redirect_https && l.forwarded_proto && l.forwarded_port,
        "{text}"
    );
    assert!(l.server[0].send_proxy_v2);
    let tls = l.tls.as_ref().expect("a [listen.tls] table");
    assert_eq!(tls.bind, vec![format!("127.0.0.1:{p443}")]);
    assert_eq!(tls.certs[0].cert, pem.display().to_string());
    assert_eq!(tls.cert_dir.as_deref(), Some(certdir.to_str().unwrap()));
    assert_eq!(
        tls.alpn.as_deref(),
        Some(&["h2".to_string(), "http/1.1".to_string()][..])
    );
    assert_eq!(tls.hsts.as_ref().unwrap().max_age.as_secs(), 600);
    assert!(!text.contains("not available"), "{text}");

    // accept-proxy becomes accept_proxy with an explicit, flagged trust-everyone list.
    let ap = dir.path().join("ap.cfg");
    std::fs::write(
        &ap,
        "defaults\n  mode http\nfrontend f\n  bind 127.0.0.1:1 accept-proxy\n  default_backend b\nbackend b\n  server s 127.0.0.1:2\n",
    )
    .unwrap();
    let imp2 = haproxy_to_config(&ap).unwrap();
    assert!(imp2.config.listen[0].accept_proxy);
    assert_eq!(imp2.config.listen[0].accept_proxy_from.len(), 2);
    assert!(imp2
        .toml
        .contains("# TODO: accept_proxy_from trusts every source"));

    // The HAProxy file runs: plain port redirects, TLS port serves.
    let app = edgelb::app::App::start(edgelb::app::Options {
        source: edgelb::app::Source::HaproxyFile(cfg.clone()),
        node: Some("t".into()),
    })
    .await
    .expect("the imported config starts");
    let r = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tokio::process::Command::new("curl")
            .args(["-sS", "-k", "-i", "--resolve"])
            .arg(format!("www.example.com:{p443}:127.0.0.1"))
            .arg(format!("https://www.example.com:{p443}/"))
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    let out = String::from_utf8_lossy(&r.stdout);
    // `alpn h2,http/1.1` was imported whole: curl gets HTTP/2.
    assert!(out.starts_with("HTTP/2 200"), "{out}");
    assert!(
        out.contains("strict-transport-security: max-age=600"),
        "{out}"
    );
    let r = tokio::process::Command::new("curl")
        .args(["-sS", "-i"])
        .arg(format!("http://127.0.0.1:{p80}/x"))
        .output()
        .await
        .unwrap();
    let out = String::from_utf8_lossy(&r.stdout);
    assert!(out.starts_with("HTTP/1.1 302"), "{out}");
    assert!(
        out.contains(&format!("location: https://127.0.0.1:{p80}/x")),
        "{out}"
    );
    drop(app);
}

#[path = "support/ports.rs"]
mod ports;
use ports::free_port;
