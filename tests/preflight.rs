//! `edgelb check` runs the same preflight as `edgelb run`: for each broken secret file (cluster
//! key or admin/read token missing, empty, or readable by group/others) the real binary's `check`
//! exits 1 naming the file and key with its line, and `run` refuses to start with the same words.
//! A config `check` accepts is one `run` starts with.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_edgelb");

fn config(key: &Path, token: &Path) -> String {
    format!(
        r#"[node]
name = "a"

[[listen]]
name = "web"
bind = ["127.0.0.1:0"]
[[listen.server]]
name = "s1"
address = "127.0.0.1:9"

[stats]
dashboard_bind = "127.0.0.1:39022"
api_bind = "127.0.0.1:39022"
admin_token_file = "{token}"

[cluster]
bind = "127.0.0.1:0"
auth_key_file = "{key}"
[[cluster.node]]
name = "a"
address = ["127.0.0.1:7001"]
instance_id = "i-a"
eni_id = "eni-a"
primary_ip = "10.0.1.10"
secondary_ip = "10.0.1.11"
[[cluster.node]]
name = "b"
address = ["127.0.0.1:7002"]
eni_id = "eni-b"
primary_ip = "10.0.1.20"
secondary_ip = "10.0.1.21"

[aws]
region = "us-east-1"

[[eip]]
allocation_id = "eipalloc-a"
owner = "a"
"#,
        key = key.display(),
        token = token.display(),
    )
}

fn write(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn edgelb(args: &[&str]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env("EDGELB_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start edgelb");
    // `run` must refuse at once; a run that starts is killed after a while and fails the test.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "edgelb {args:?} kept running: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn line_of(text: &str, key: &str) -> usize {
    text.lines()
        .position(|l| l.starts_with(key))
        .map(|i| i + 1)
        .unwrap()
}

#[test]
fn check_rejects_exactly_what_run_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let (key, token) = (
        dir.path().join("cluster.key"),
        dir.path().join("admin.token"),
    );
    let cfg = dir.path().join("edgelb.toml");
    let text = config(&key, &token);
    std::fs::write(&cfg, &text).unwrap();
    let cfg_s = cfg.display().to_string();
    let key_line = line_of(&text, "auth_key_file");
    let token_line = line_of(&text, "admin_token_file");

    type Setup = fn(&Path, &Path);
    let cases: [(&str, Setup, &str, usize); 6] = [
        (
            "cluster key missing",
            |_, t| write(t, "tok\n", 0o600),
            "No such file",
            key_line,
        ),
        (
            "cluster key world-readable",
            |k, t| {
                write(k, "s3cret-key-material\n", 0o644);
                write(t, "tok\n", 0o600)
            },
            "mode 0644",
            key_line,
        ),
        (
            "cluster key group-readable",
            |k, t| {
                write(k, "s3cret-key-material\n", 0o640);
                write(t, "tok\n", 0o600)
            },
            "mode 0640",
            key_line,
        ),
        (
            "admin token missing",
            |k, _| write(k, "s3cret-key-material\n", 0o600),
            "stats.admin_token_file",
            token_line,
        ),
        (
            "admin token world-readable",
            |k, t| {
                write(k, "s3cret-key-material\n", 0o600);
                write(t, "tok\n", 0o644)
            },
            "mode 0644",
            token_line,
        ),
        (
            "admin token empty",
            |k, t| {
                write(k, "s3cret-key-material\n", 0o600);
                write(t, "\n", 0o600)
            },
            "is empty",
            token_line,
        ),
    ];
    for (what, setup, needle, line) in cases {
        let _ = std::fs::remove_file(&key);
        let _ = std::fs::remove_file(&token);
        setup(&key, &token);
        let check = edgelb(&["check", "-c", &cfg_s]);
        let said = String::from_utf8_lossy(&check.stderr).to_string();
        assert_eq!(
            check.status.code(),
            Some(1),
            "{what}: check accepted it: {said}"
        );
        assert!(said.contains(needle), "{what}: {said}");
        assert!(
            said.contains(&format!("{cfg_s}:{line}:")),
            "{what}: names the line of the key: {said}"
        );
        let run = edgelb(&["run", "-c", &cfg_s]);
        let run_said = String::from_utf8_lossy(&run.stderr).to_string();
        assert_eq!(run.status.code(), Some(1), "{what}: {run_said}");
        assert!(
            run_said.contains(needle),
            "{what}: run says why: {run_said}"
        );
    }

    // Everything in order: check accepts it.
    write(&key, "s3cret-key-material\n", 0o600);
    write(&token, "tok\n", 0o600);
    let check = edgelb(&["check", "-c", &cfg_s]);
    assert_eq!(
        check.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}
