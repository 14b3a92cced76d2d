//! `edgelb demo` with an EC2 emulator: two edgelb nodes (child processes of this binary) with a
//! real UDP heartbeat, in front of the three built-in backends, and an EC2 world in moto with one
//! Elastic IP per node. Then it kills one node with SIGKILL, prints where the EIPs are as they
//! move, restarts it, and shows the failback: the whole of Heartbeat + `updateEIP` on one machine.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_ec2::config::{BehaviorVersion, Credentials, Region};

use crate::cloud::emulator::{self, EmuWorld};
use crate::cloud::Placement;

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

/// Children killed when the demo ends, however it ends.
struct Guard(Vec<Child>);

impl Drop for Guard {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
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
    let child = Command::new("python3")
        .arg(&script)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .env("HOME", dir)
        .env("AWS_ACCESS_KEY_ID", "demo")
        .env("AWS_SECRET_ACCESS_KEY", "demo")
        .env("AWS_DEFAULT_REGION", REGION)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().map_err(|e| e.to_string())?))
        .stderr(Stdio::from(log))
        .spawn()
        .map_err(|e| format!("cannot start the EC2 emulator: {e}"))?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(child);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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

fn spawn_node(cfg: &Path, dir: &Path, name: &str) -> Result<Child, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{name}.log")))
        .map_err(|e| e.to_string())?;
    Command::new(exe)
        .arg("run")
        .arg("-c")
        .arg(cfg)
        .env("HOME", dir)
        .env("AWS_ACCESS_KEY_ID", "demo")
        .env("AWS_SECRET_ACCESS_KEY", "demo")
        .env("AWS_REGION", REGION)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_ENDPOINT_URL_EC2")
        .env_remove("AWS_PROFILE")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().map_err(|e| e.to_string())?))
        .stderr(Stdio::from(log))
        .spawn()
        .map_err(|e| format!("cannot start {name}: {e}"))
}

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
    client: &aws_sdk_ec2::Client,
    world: &EmuWorld,
    t0: Instant,
    limit: Duration,
    done: impl Fn(&[Option<Placement>]) -> bool,
) -> Result<Duration, String> {
    let mut last: Vec<Option<Placement>> = Vec::new();
    while t0.elapsed() < limit {
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
    Err(format!("placement not reached within {limit:?}"))
}

/// Runs the two-node demo. With `exit_after` the demo ends after the scripted failover and
/// failback (used by tests); otherwise it keeps running until Ctrl-C.
pub async fn run(ports: Ports, exit_after: bool) -> Result<(), String> {
    for (i, name) in ["web1", "web2", "web3"].into_iter().enumerate() {
        let addr = SocketAddr::from(([127, 0, 0, 1], ports.backend(i)));
        crate::demo::backend(name, addr)
            .await
            .map_err(|e| format!("demo backend {name} on {addr}: {e}"))?;
    }
    let dir: PathBuf = std::env::temp_dir().join(format!("edgelb-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut guard = Guard(Vec::new());
    println!(
        "starting the EC2 emulator (moto) on 127.0.0.1:{} ...",
        ports.moto()
    );
    guard.0.push(start_moto(&dir, ports.moto()).await?);
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
    let mut nodes: Vec<Child> = Vec::new();
    for (i, cfg) in cfgs.iter().enumerate() {
        nodes.push(spawn_node(cfg, &dir, &node_name(i))?);
    }
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
        "  edgelb status --api http://127.0.0.1:{}   # peers and EIPs\n  configs and logs: {}\n  admin token: demo-token\n",
        ports.stats(0),
        dir.display()
    );
    let t0 = Instant::now();
    println!("waiting for both nodes to hold their own EIPs ...");
    let w = &world;
    watch(&client, w, t0, Duration::from_secs(30), |p| {
        p.iter()
            .enumerate()
            .all(|(i, x)| x.as_ref() == Some(&home(w, i)))
    })
    .await?;

    // Let both nodes leave their startup hold-off (initdead 4 s) and see each other alive.
    println!("waiting 5 s for the nodes' startup hold-off (initdead) ...");
    tokio::time::sleep(Duration::from_secs(5)).await;
    println!("\nkill -9 lb2 (pid {}): lb1 should take lb2's EIP onto its secondary IP after deadtime (3 s)", nodes[1].id());
    let _ = nodes[1].kill();
    let _ = nodes[1].wait();
    let t1 = Instant::now();
    let took = watch(&client, w, t1, Duration::from_secs(30), |p| {
        p[1].as_ref()
            .map(|x| x.eni_id == w.nodes[0].eni_id && x.private_ip == w.nodes[0].secondary_ips[0])
            == Some(true)
    })
    .await?;
    println!(
        "failover done: lb2's EIP on lb1's secondary IP after {:.2} s",
        took.as_secs_f64()
    );

    println!("\nrestarting lb2: after failback_hold (5 s) it takes its EIP back");
    nodes[1] = spawn_node(&cfgs[1], &dir, "lb2")?;
    let t2 = Instant::now();
    let took = watch(&client, w, t2, Duration::from_secs(60), |p| {
        p[1].as_ref() == Some(&home(w, 1))
    })
    .await?;
    println!(
        "failback done: lb2's EIP home after {:.2} s\n",
        took.as_secs_f64()
    );
    guard.0.extend(nodes);
    if exit_after {
        return Ok(());
    }
    println!("the demo keeps running: kill one of the nodes yourself and watch the dashboards. Ctrl-C to stop.");
    let _ = tokio::signal::ctrl_c().await;
    Ok(())
}

/// Writes a secret file with mode 0600 (the start-up preflight refuses anything wider).
pub(crate) fn write_secret(path: &Path, text: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).map_err(|e| e.to_string())?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| e.to_string())
}
