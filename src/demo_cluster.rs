//! `edgelb demo` with an EC2 emulator: two edgelb nodes (child processes of this binary) with a
//! real UDP heartbeat, in front of the three built-in backends, and an EC2 world in moto with one
//! Elastic IP per node. Then it kills one node with SIGKILL, prints where the EIPs are as they
//! move, restarts it, and shows the failback: the whole of Heartbeat + `updateEIP` on one machine.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_ec2::config::{BehaviorVersion, Credentials, Region};

use crate::cloud::emulator::{self, EmuWorld};
use crate::cloud::Placement;
use crate::demo::{check_ports, DemoDir, NeededPort, StopSignals};

const REGION: &str = "us-east-1";

/// Ports used by the demo, all on 127.0.0.1, derived from one base so tests can move them.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub base: u16,
}

impl Ports {
    pub fn listen(&self, node: usize) -> u16 {
        self.base + node as u16
    }
    pub fn stats(&self, node: usize) -> u16 {
        self.base + 942 + 100 * node as u16
    }
    pub fn heartbeat(&self, node: usize) -> u16 {
        self.base + 10 + node as u16
    }
    pub fn backend(&self, i: usize) -> u16 {
        self.base + 921 + i as u16
    }
    pub fn moto(&self) -> u16 {
        self.base + 20
    }
}

/// Whether Python can run the emulator (`pip install 'moto[server]'`).
pub fn moto_available() -> bool {
    Command::new("python3")
        .args(["-c", "import moto, flask"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn sdk(endpoint: &str) -> aws_sdk_ec2::Client {
    let conf = aws_sdk_ec2::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new("demo", "demo", None, None, "demo"))
        .endpoint_url(endpoint)
        .build();
    aws_sdk_ec2::Client::from_conf(conf)
}

async fn start_moto(dir: &Path, port: u16) -> Result<Child, String> {
    let script = dir.join("moto_server.py");
    std::fs::write(&script, emulator::PATCHED_MOTO).map_err(|e| e.to_string())?;
    let log = std::fs::File::create(dir.join("moto.log")).map_err(|e| e.to_string())?;
    let mut child = Command::new("python3")
        .arg(&script)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .env("HOME", dir)
        .env("AWS_ACCESS_KEY_ID", "demo")
        .env("AWS_SECRET_ACCESS_KEY", "demo")
        .env("AWS_DEFAULT_REGION", REGION)
        // Exits when the demo dies, even by SIGKILL (deploy/demo/moto_server.py).
        .env("EDGELB_MOTO_PARENT_PID", std::process::id().to_string())
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().map_err(|e| e.to_string())?))
        .stderr(Stdio::from(log))
        .spawn()
        .map_err(|e| format!("cannot start the EC2 emulator: {e}"))?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(dir.join("moto.log")).unwrap_or_default();
            return Err(format!("the EC2 emulator exited ({status}):\n{log}"));
        }
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(child);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    Err(format!(
        "the EC2 emulator did not answer on {addr} (see {})",
        dir.join("moto.log").display()
    ))
}

fn node_name(i: usize) -> String {
    format!("lb{}", i + 1)
}

fn node_config(i: usize, ports: Ports, world: &EmuWorld, dir: &Path, endpoint: &str) -> String {
    let mut s = format!(
        r#"# edgelb demo node {name} (generated)
[node]
name = "{name}"

[log]
access = "{log}"

[stats]
dashboard_bind = "127.0.0.1:{stats}"
api_bind = "127.0.0.1:{stats}"
admin_token_file = "{token}"
refresh = "1s"

[[listen]]
name = "webapp"
bind = ["127.0.0.1:{listen}"]
forwardfor = {{ except = ["10.0.0.0/8"] }}
cookie = {{ name = "SERVERID" }}
[listen.health]
inter = "1s"
"#,
        name = node_name(i),
        log = dir.join(format!("{}-access.log", node_name(i))).display(),
        stats = ports.stats(i),
        token = dir.join("admin.token").display(),
        listen = ports.listen(i),
    );
    for b in 0..3 {
        s.push_str(&format!(
            "[[listen.server]]\nname = \"web{}\"\naddress = \"127.0.0.1:{}\"\n",
            b + 1,
            ports.backend(b)
        ));
    }
    s.push_str(&format!(
        r#"
[cluster]
bind = "127.0.0.1:{hb}"
keepalive = "500ms"
deadtime = "3s"
initdead = "4s"
failback_hold = "5s"
auth_key_file = "{key}"
witness = false
"#,
        hb = ports.heartbeat(i),
        key = dir.join("cluster.key").display(),
    ));
    for (n, w) in world.nodes.iter().enumerate() {
        s.push_str(&format!(
            "[[cluster.node]]\nname = \"{}\"\naddress = [\"127.0.0.1:{}\"]\ninstance_id = \"{}\"\neni_id = \"{}\"\nprimary_ip = \"{}\"\nsecondary_ip = \"{}\"\n",
            node_name(n),
            ports.heartbeat(n),
            w.instance_id,
            w.eni_id,
            w.primary_ip,
            w.secondary_ips[0],
        ));
    }
    s.push_str(&format!(
        "\n[aws]\nregion = \"{REGION}\"\nendpoint_url = \"{endpoint}\"\nreconcile_interval = \"5s\"\nensure_secondary_ip = false\n"
    ));
    for (n, w) in world.nodes.iter().enumerate() {
        s.push_str(&format!(
            "[[eip]]\nallocation_id = \"{}\"\nowner = \"{}\"\npublic_ip = \"{}\"\n",
            w.allocation_id,
            node_name(n),
            w.public_ip
        ));
    }
    s
}

/// The environment a node runs with: fake credentials, no instance metadata, info logs.
fn node_env(dir: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("HOME", dir.display().to_string()),
        ("AWS_ACCESS_KEY_ID", "demo".into()),
        ("AWS_SECRET_ACCESS_KEY", "demo".into()),
        ("AWS_REGION", REGION.into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("EDGELB_LOG", "info".into()),
    ]
}

/// Variables a node must not inherit (the config names the endpoint; no systemd here).
const NODE_ENV_REMOVED: [&str; 4] = [
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_EC2",
    "AWS_PROFILE",
    "NOTIFY_SOCKET",
];

/// The shell command that starts node `name` by hand exactly as the demo does.
fn restart_command(exe: &Path, cfg: &Path, dir: &Path, name: &str) -> String {
    let mut cmd = String::from("env");
    for k in NODE_ENV_REMOVED {
        cmd.push_str(&format!(" -u {k}"));
    }
    for (k, v) in node_env(dir) {
        cmd.push_str(&format!(" {k}={}", shell_quote(&v)));
    }
    cmd.push_str(&format!(
        " {} run -c {} >>{} 2>&1 &",
        shell_quote(&exe.display().to_string()),
        shell_quote(&cfg.display().to_string()),
        shell_quote(&dir.join(format!("{name}.log")).display().to_string())
    ));
    cmd
}

fn shell_quote(s: &str) -> String {
    if s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._-:=".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Starts node `name` in its own process group, so the terminal's signals (Ctrl-C, the SIGHUP
/// of a closed terminal) reach only the demo, which stops the node itself.
fn spawn_node(cfg: &Path, dir: &Path, name: &str) -> Result<Child, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{name}.log")))
        .map_err(|e| e.to_string())?;
    let mut cmd = Command::new(exe);
    cmd.arg("run").arg("-c").arg(cfg);
    for k in NODE_ENV_REMOVED {
        cmd.env_remove(k);
    }
    cmd.envs(node_env(dir))
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().map_err(|e| e.to_string())?))
        .stderr(Stdio::from(log))
        .spawn()
        .map_err(|e| format!("cannot start {name}: {e}"))
}

/// The last `n` lines of a node's log, indented, for error messages.
fn log_tail(dir: &Path, name: &str, n: usize) -> String {
    let path = dir.join(format!("{name}.log"));
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(n);
    let mut out = format!("last lines of {}:\n", path.display());
    for l in &lines[from..] {
        out.push_str("    ");
        out.push_str(l);
        out.push('\n');
    }
    out
}

/// Prints each node's own cluster log lines as they are written (`[lb1] cluster: ...`): the
/// nodes' narrative of deaths, takeovers and verifications next to the demo's EIP view.
fn follow_cluster_log(path: PathBuf, name: String) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut pos = 0usize;
        let mut partial = String::new();
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let Ok(bytes) = tokio::fs::read(&path).await else {
                continue;
            };
            if bytes.len() <= pos {
                continue;
            }
            partial.push_str(&String::from_utf8_lossy(&bytes[pos..]));
            pos = bytes.len();
            while let Some(i) = partial.find('\n') {
                let line: String = partial.drain(..=i).collect();
                if let Some(shown) = narrative(&line) {
                    println!("  [{name}] {shown}");
                }
            }
        }
    })
}

/// The part of a node log line worth showing in the demo, if any: cluster events without the
/// timestamp, minus per-datagram noise.
fn narrative(line: &str) -> Option<&str> {
    let at = line.find("cluster: ")?;
    let rest = line[at..].trim_end();
    if rest.contains("dropped heartbeat datagram") {
        return None;
    }
    Some(rest)
}

/// Everything the cluster demo started; dropping it (normal end, error, or a stop signal that
/// cancelled the script) kills every child and removes the temporary directory.
struct Started {
    moto: Option<Child>,
    nodes: Vec<Option<Child>>,
    followers: Vec<tokio::task::JoinHandle<()>>,
    /// Last field so it is removed after the children are gone.
    dir: DemoDir,
}

impl Drop for Started {
    fn drop(&mut self) {
        for f in &self.followers {
            f.abort();
        }
        for c in self.nodes.iter_mut().flatten().chain(self.moto.as_mut()) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Started {
    /// Fails with the node's log tail if a node that should run has exited.
    fn check_nodes(&mut self) -> Result<(), String> {
        for (i, slot) in self.nodes.iter_mut().enumerate() {
            if let Some(c) = slot {
                if let Ok(Some(status)) = c.try_wait() {
                    *slot = None;
                    let name = node_name(i);
                    return Err(format!(
                        "node {name} exited ({status})\n{}",
                        log_tail(self.dir.path(), &name, 20)
                    ));
                }
            }
        }
        Ok(())
    }

    /// Waits until node `i` accepts connections on its listen and stats ports.
    async fn wait_ready(&mut self, i: usize, ports: Ports) -> Result<(), String> {
        let deadline = Instant::now() + NODE_READY_TIMEOUT;
        loop {
            self.check_nodes()?;
            let up = |p: u16| tokio::net::TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], p)));
            if up(ports.listen(i)).await.is_ok() && up(ports.stats(i)).await.is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "node {} did not start listening within {NODE_READY_TIMEOUT:?}\n{}",
                    node_name(i),
                    log_tail(self.dir.path(), &node_name(i), 20)
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// How long the demo waits for the nodes' log lines of a step before it prints its summary
/// (the log follower polls every 100 ms).
const NARRATIVE_SETTLE: Duration = Duration::from_millis(400);

/// How long a node may take to bind its ports.
const NODE_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Where each EIP is, as "lb1 primary 10.0.1.10" style text.
async fn placements(client: &aws_sdk_ec2::Client, world: &EmuWorld) -> Vec<Option<Placement>> {
    let ids: Vec<String> = world
        .nodes
        .iter()
        .map(|n| n.allocation_id.clone())
        .collect();
    let mut out = vec![None; ids.len()];
    let Ok(r) = client
        .describe_addresses()
        .set_allocation_ids(Some(ids.clone()))
        .send()
        .await
    else {
        return out;
    };
    for a in r.addresses() {
        let Some(i) = ids
            .iter()
            .position(|x| Some(x.as_str()) == a.allocation_id())
        else {
            continue;
        };
        let eni = a.network_interface_id().filter(|s| !s.is_empty());
        let ip = a
            .private_ip_address()
            .and_then(|s| s.parse::<Ipv4Addr>().ok());
        if let (Some(eni), Some(ip)) = (eni, ip) {
            out[i] = Some(Placement {
                eni_id: eni.to_string(),
                private_ip: ip,
            });
        }
    }
    out
}

fn describe(world: &EmuWorld, p: &Option<Placement>) -> String {
    let Some(p) = p else {
        return "nowhere".into();
    };
    for (i, n) in world.nodes.iter().enumerate() {
        if n.eni_id == p.eni_id {
            let kind = if n.primary_ip == p.private_ip {
                "primary"
            } else {
                "secondary"
            };
            return format!("{} {kind} IP {}", node_name(i), p.private_ip);
        }
    }
    format!("{} on {}", p.private_ip, p.eni_id)
}

fn home(world: &EmuWorld, i: usize) -> Placement {
    Placement {
        eni_id: world.nodes[i].eni_id.clone(),
        private_ip: world.nodes[i].primary_ip,
    }
}

/// Polls placements, printing each change, until `done` holds (or `limit` passes).
async fn watch(
    started: &mut Started,
    client: &aws_sdk_ec2::Client,
    world: &EmuWorld,
    t0: Instant,
    limit: Duration,
    done: impl Fn(&[Option<Placement>]) -> bool,
) -> Result<Duration, String> {
    let mut last: Vec<Option<Placement>> = Vec::new();
    while t0.elapsed() < limit {
        started.check_nodes()?;
        let now = placements(client, world).await;
        if now != last {
            for (i, p) in now.iter().enumerate() {
                if last.get(i) != Some(p) {
                    println!(
                        "  t+{:5.2}s  EIP {} (owner {}) is on {}",
                        t0.elapsed().as_secs_f64(),
                        world.nodes[i].public_ip,
                        node_name(i),
                        describe(world, p)
                    );
                }
            }
            last = now.clone();
        }
        if done(&now) {
            return Ok(t0.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dir = started.dir.path();
    Err(format!(
        "the EIPs did not get where expected within {limit:?}\n{}{}",
        log_tail(dir, "lb1", 15),
        log_tail(dir, "lb2", 15)
    ))
}

/// Every port the cluster demo needs, for the busy-port check.
fn needed_ports(ports: Ports) -> Result<Vec<NeededPort>, String> {
    if ports.base.checked_add(1042).is_none() {
        return Err(format!(
            "--base-port {} is too high (the demo uses up to base+1042)",
            ports.base
        ));
    }
    let tcp = |port, what| NeededPort {
        port,
        udp: false,
        what,
    };
    let udp = |port, what| NeededPort {
        port,
        udp: true,
        what,
    };
    Ok(vec![
        tcp(ports.listen(0), "lb1 listen"),
        tcp(ports.listen(1), "lb2 listen"),
        tcp(ports.stats(0), "lb1 dashboard/API"),
        tcp(ports.stats(1), "lb2 dashboard/API"),
        udp(ports.heartbeat(0), "lb1 heartbeat"),
        udp(ports.heartbeat(1), "lb2 heartbeat"),
        tcp(ports.backend(0), "backend web1"),
        tcp(ports.backend(1), "backend web2"),
        tcp(ports.backend(2), "backend web3"),
        tcp(ports.moto(), "EC2 emulator"),
    ])
}

/// Runs the two-node demo. With `exit_after` the demo ends after the scripted failover and
/// failback (used by tests); otherwise it keeps running until SIGINT, SIGTERM or SIGHUP. However
/// it ends, the nodes and moto are killed and the temporary directory is removed.
pub async fn run(ports: Ports, exit_after: bool) -> Result<(), String> {
    check_ports(&needed_ports(ports)?, ports.base)?;
    let mut signals = StopSignals::register()?;
    let mut started = Started {
        moto: None,
        nodes: vec![None, None],
        followers: Vec::new(),
        dir: DemoDir::create()?,
    };
    let result = tokio::select! {
        r = script(&mut started, ports, exit_after) => r,
        sig = signals.recv() => {
            println!("\n{sig}: stopping the demo");
            Ok(())
        }
    };
    let dir = started.dir.path().display().to_string();
    drop(started);
    println!("demo stopped: nodes and the EC2 emulator killed, {dir} removed");
    result
}

async fn script(started: &mut Started, ports: Ports, exit_after: bool) -> Result<(), String> {
    for (i, name) in ["web1", "web2", "web3"].into_iter().enumerate() {
        let addr = SocketAddr::from(([127, 0, 0, 1], ports.backend(i)));
        crate::demo::backend(name, addr)
            .await
            .map_err(|e| format!("demo backend {name} on {addr}: {e}"))?;
    }
    let dir = started.dir.path().to_path_buf();
    println!(
        "starting the EC2 emulator (moto) on 127.0.0.1:{} ...",
        ports.moto()
    );
    started.moto = Some(start_moto(&dir, ports.moto()).await?);
    let endpoint = format!("http://127.0.0.1:{}", ports.moto());
    let client = sdk(&endpoint);
    let world = emulator::build_world(&client, REGION, 2, 1).await?;
    write_secret(
        &dir.join("cluster.key"),
        "demo-cluster-secret-0123456789abcdef\n",
    )?;
    write_secret(&dir.join("admin.token"), "demo-token\n")?;
    let mut cfgs = Vec::new();
    for i in 0..2 {
        let p = dir.join(format!("{}.toml", node_name(i)));
        std::fs::write(&p, node_config(i, ports, &world, &dir, &endpoint))
            .map_err(|e| e.to_string())?;
        crate::config::load_file(&p).map_err(|e| e.to_string())?;
        cfgs.push(p);
    }
    for (i, cfg) in cfgs.iter().enumerate() {
        let name = node_name(i);
        started.nodes[i] = Some(spawn_node(cfg, &dir, &name)?);
        started
            .followers
            .push(follow_cluster_log(dir.join(format!("{name}.log")), name));
    }
    for i in 0..2 {
        started.wait_ready(i, ports).await?;
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    println!(
        "\nedgelb demo: two nodes, one EIP each, backends web1..web3 on 127.0.0.1:{}-{}\n",
        ports.backend(0),
        ports.backend(2)
    );
    for (i, n) in world.nodes.iter().enumerate() {
        println!(
            "  {name}: curl -i http://127.0.0.1:{listen}/   dashboard http://127.0.0.1:{stats}/   (EIP {eip}, ENI {eni}, IPs {p} + {s})",
            name = node_name(i),
            listen = ports.listen(i),
            stats = ports.stats(i),
            eip = n.public_ip,
            eni = n.eni_id,
            p = n.primary_ip,
            s = n.secondary_ips[0],
        );
    }
    println!(
        "\n  {exe} status --api http://127.0.0.1:{}   # peers and EIPs (`edgelb status` once installed: cargo install --path .)\n  \
         configs and logs: {} (removed when the demo stops)\n  admin token: demo-token\n  \
         lines starting with [lb1]/[lb2] are the nodes' own cluster log\n",
        ports.stats(0),
        dir.display(),
        exe = exe.display(),
    );
    let t0 = Instant::now();
    println!("waiting for both nodes to hold their own EIPs ...");
    let w = &world;
    watch(started, &client, w, t0, Duration::from_secs(30), |p| {
        p.iter()
            .enumerate()
            .all(|(i, x)| x.as_ref() == Some(&home(w, i)))
    })
    .await?;

    // Let both nodes leave their startup hold-off (initdead 4 s) and see each other alive.
    println!("waiting 5 s for the nodes' startup hold-off (initdead) ...");
    sleep_watching(started, Duration::from_secs(5)).await?;
    let mut lb2 = started.nodes[1].take().ok_or("lb2 is not running")?;
    println!(
        "\nkill -9 lb2 (pid {}): lb1 should take lb2's EIP onto its secondary IP after deadtime (3 s)",
        lb2.id()
    );
    let _ = lb2.kill();
    let _ = lb2.wait();
    let t1 = Instant::now();
    let took = watch(started, &client, w, t1, Duration::from_secs(30), |p| {
        p[1].as_ref()
            .map(|x| x.eni_id == w.nodes[0].eni_id && x.private_ip == w.nodes[0].secondary_ips[0])
            == Some(true)
    })
    .await?;
    // Let the nodes' own lines about this step reach the screen first.
    sleep_watching(started, NARRATIVE_SETTLE).await?;
    println!(
        "failover done: lb2's EIP on lb1's secondary IP after {:.2} s",
        took.as_secs_f64()
    );

    println!(
        "\nrestarting lb2 (by hand, the same would be:\n  {}\n): after failback_hold (5 s) it takes its EIP back",
        restart_command(&exe, &cfgs[1], &dir, "lb2")
    );
    started.nodes[1] = Some(spawn_node(&cfgs[1], &dir, "lb2")?);
    let t2 = Instant::now();
    let took = watch(started, &client, w, t2, Duration::from_secs(60), |p| {
        p[1].as_ref() == Some(&home(w, 1))
    })
    .await?;
    sleep_watching(started, NARRATIVE_SETTLE).await?;
    println!(
        "failback done: lb2's EIP home after {:.2} s\n",
        took.as_secs_f64()
    );
    if exit_after {
        return Ok(());
    }
    println!("the demo keeps running: kill one of the nodes yourself and watch the dashboards. Ctrl-C to stop.");
    std::future::pending::<()>().await;
    Ok(())
}

/// Sleeps `d`, failing early (with its log tail) if a node exits meanwhile.
async fn sleep_watching(started: &mut Started, d: Duration) -> Result<(), String> {
    let end = Instant::now() + d;
    while Instant::now() < end {
        started.check_nodes()?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Writes a secret file with mode 0600 (the start-up preflight refuses anything wider).
pub(crate) fn write_secret(path: &Path, text: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).map_err(|e| e.to_string())?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| e.to_string())
}
