//! `edgelb demo`: the README's run command. With moto installed it starts two nodes and an EC2
//! emulator, kills one node and shows the EIP moving to the survivor and back. However it is
//! stopped (SIGTERM, the SIGHUP of a closed terminal, Ctrl-C) it leaves no process and no
//! temporary directory behind, and it refuses ports that are taken instead of half-starting.
//!
//! Fixed ports below the kernel's ephemeral range (32768+), so no test's port 0 can take them;
//! each test has its own base port.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn moto_installed() -> bool {
    let moto = Command::new("python3")
        .args(["-c", "import moto, flask"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !moto {
        assert_eq!(
            std::env::var("EDGELB_SKIP_MOTO").as_deref(),
            Ok("1"),
            "moto is not installed (./test.sh installs it), or set EDGELB_SKIP_MOTO=1"
        );
    }
    moto
}

#[test]
fn demo_shows_a_failover_and_a_failback() {
    if !moto_installed() {
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_edgelb"))
        .args(["demo", "--base-port", "21080", "--exit-after-failover"])
        .env("EDGELB_LOG", "warn")
        .output()
        .expect("run the demo");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("is on lb1 secondary IP 10.0.1.11"), "{text}");
    assert!(text.contains("failover done"), "{text}");
    assert!(text.contains("failback done"), "{text}");
    assert!(text.contains("is on lb2 primary IP 10.0.1.20"), "{text}");
    // The nodes' own narrative, from their logs: lb1 sees lb2 die and takes its EIP.
    let narrative: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("[lb1] cluster:"))
        .collect();
    assert!(
        narrative
            .iter()
            .any(|l| l.contains("lb2") && l.contains("dead")),
        "{text}"
    );
    assert!(narrative.iter().any(|l| l.contains("taking")), "{text}");
    // The exact command (with its environment) to start a node by hand.
    assert!(text.contains("AWS_EC2_METADATA_DISABLED=true"), "{text}");
    assert!(text.contains("run -c /"), "{text}");
    assert!(text.contains("lb2.toml"), "{text}");
    let pid = out_pid_dir(&text);
    assert!(!pid.exists(), "{} was not removed", pid.display());
}

/// The temporary directory the demo printed ("configs and logs: DIR").
fn out_pid_dir(text: &str) -> std::path::PathBuf {
    let line = text
        .lines()
        .find(|l| l.contains("configs and logs: "))
        .unwrap_or_else(|| panic!("no temp dir printed:\n{text}"));
    let rest = line.split("configs and logs: ").nth(1).unwrap_or("");
    std::path::PathBuf::from(rest.split(' ').next().unwrap_or(""))
}

/// Pids of the direct children of `pid` (from /proc).
fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so parse after the last ')'.
        let after = stat.rsplit_once(')').map(|x| x.1).unwrap_or("");
        let ppid = after.split_whitespace().nth(1).and_then(|s| s.parse().ok());
        if ppid == Some(pid) {
            out.push(p);
        }
    }
    out
}

fn alive(pid: u32) -> bool {
    // A zombie still has /proc/PID until reaped; count it as gone.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit_once(')')
            .map(|x| x.1.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// Starts the demo in its own process group (like a shell job) and reads its stdout until the
/// nodes are up; returns the child, the pids of its children and its temp dir.
fn start_demo_until_ready(base: u16) -> (Child, Vec<u32>, std::path::PathBuf, bool) {
    use std::os::unix::process::CommandExt;
    let cluster = moto_installed();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_edgelb"));
    cmd.args(["demo", "--base-port", &base.to_string()]);
    if !cluster {
        cmd.arg("--single");
    }
    let mut child = cmd
        .env("EDGELB_LOG", "warn")
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the demo");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let ready = if cluster {
        "waiting for both nodes to hold their own EIPs"
    } else {
        "Ctrl-C to stop"
    };
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while !seen.contains(ready) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => {
                seen.push_str(&l);
                seen.push('\n');
            }
            Err(_) => {
                let _ = child.kill();
                panic!("the demo did not get ready:\n{seen}");
            }
        }
    }
    let dir = std::env::temp_dir().join(format!("edgelb-demo-{}", child.id()));
    assert!(dir.exists(), "{} missing:\n{seen}", dir.display());
    let kids = children_of(child.id());
    if cluster {
        assert!(kids.len() >= 3, "moto + 2 nodes expected, got {kids:?}");
    }
    // Keep draining stdout so the demo never blocks on a full pipe.
    std::thread::spawn(move || while rx.recv().is_ok() {});
    (child, kids, dir, cluster)
}

fn assert_stopped_clean(mut child: Child, kids: &[u32], dir: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the demo did not stop");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "demo exit status {status}");
    let left: Vec<u32> = kids.iter().copied().filter(|&p| alive(p)).collect();
    assert!(left.is_empty(), "children still running: {left:?}");
    assert!(!dir.exists(), "{} was not removed", dir.display());
}

fn kill(args: &[&str]) {
    assert!(Command::new("kill").args(args).status().unwrap().success());
}

#[test]
fn sigterm_stops_the_demo_its_nodes_and_moto_and_removes_its_directory() {
    let (child, kids, dir, _) = start_demo_until_ready(23080);
    kill(&["-TERM", &child.id().to_string()]);
    assert_stopped_clean(child, &kids, &dir);
}

#[test]
fn a_closed_terminal_sighup_stops_the_demo_and_no_node_takes_it_as_a_reload() {
    let (child, kids, dir, _) = start_demo_until_ready(25080);
    // A terminal that closes sends SIGHUP to its foreground process group: the demo's.
    kill(&["-HUP", "--", &format!("-{}", child.id())]);
    assert_stopped_clean(child, &kids, &dir);
}

#[test]
fn a_busy_port_is_refused_naming_base_port() {
    let base = 27080u16;
    // The demo's listen port and its emulator's port (a stale moto) are taken.
    let _listen = std::net::TcpListener::bind(("127.0.0.1", base)).unwrap();
    let _moto = std::net::TcpListener::bind(("127.0.0.1", base + 20)).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_edgelb"));
    cmd.args(["demo", "--base-port", &base.to_string()]);
    let cluster = moto_installed();
    if !cluster {
        cmd.arg("--single");
    }
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("--base-port"), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{base}/tcp")), "{err}");
    if cluster {
        assert!(err.contains("EC2 emulator"), "{err}");
    }
}
