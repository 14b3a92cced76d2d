//! Pebble, the ACME test CA (Debian `pebble`), and pebble-challtestsrv as its DNS, on loopback.
//!
//! `Pebble::start(http_port, answer_ip, validity)`: a fresh CA (HTTPS on an ephemeral port with a
//! certificate from a test CA made here with rcgen), validating HTTP-01 on `http_port` of
//! whatever address its DNS gives, and a DNS server that answers every A query with
//! `answer_ip` (no AAAA). Fast and deterministic: no validation sleeps, no rejected nonces,
//! no authorization reuse (each order validates anew). Children are killed on drop; their logs
//! are printed when a test fails.

use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

pub struct Pebble {
    pub dir: tempfile::TempDir,
    /// PEM of the CA that signed Pebble's own HTTPS certificate (`[acme] ca_file`).
    pub ca_file: PathBuf,
    pub directory_url: String,
    pub management_port: u16,
    pebble: Child,
    dns: Child,
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("free UDP port")
}

fn spawn_logged(cmd: &mut Command, log: &Path) -> Child {
    let f = std::fs::File::create(log).expect("log file");
    let f2 = f.try_clone().expect("log clone");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(f))
        .stderr(Stdio::from(f2))
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e} (apt-get install pebble)"))
}

impl Pebble {
    /// `validity`: lifetime of issued certificates (Pebble's `certificateValidityPeriod`).
    pub fn start(http_port: u16, answer_ip: &str, validity: Duration) -> Pebble {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "edgelb test CA for Pebble");
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA cert");
        let key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("params");
        let cert = params.signed_by(&key, &ca_cert, &ca_key).expect("cert");
        let ca_file = dir.path().join("test-ca.pem");
        std::fs::write(&ca_file, ca_cert.pem()).expect("write CA");
        std::fs::write(dir.path().join("pebble.pem"), cert.pem()).expect("write cert");
        std::fs::write(dir.path().join("pebble.key"), key.serialize_pem()).expect("write key");

        let dns_port = free_udp_port();
        let dns = spawn_logged(
            Command::new("pebble-challtestsrv").args([
                "-dns01",
                &format!("127.0.0.1:{dns_port}"),
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-management",
                &format!("127.0.0.1:{}", free_port()),
                "-defaultIPv4",
                answer_ip,
                "-defaultIPv6",
                "",
            ]),
            &dir.path().join("challtestsrv.log"),
        );

        let listen_port = free_port();
        let management_port = free_port();
        let config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{listen_port}"),
                "managementListenAddress": format!("127.0.0.1:{management_port}"),
                "certificate": dir.path().join("pebble.pem"),
                "privateKey": dir.path().join("pebble.key"),
                "httpPort": http_port,
                "tlsPort": free_port(),
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false,
                "certificateValidityPeriod": validity.as_secs(),
            }
        });
        let config_path = dir.path().join("pebble.json");
        std::fs::write(&config_path, config.to_string()).expect("write pebble config");
        let pebble = spawn_logged(
            Command::new("pebble")
                .arg("-config")
                .arg(&config_path)
                .args(["-dnsserver", &format!("127.0.0.1:{dns_port}")])
                .env("PEBBLE_VA_NOSLEEP", "1")
                .env("PEBBLE_WFE_NONCEREJECT", "0")
                .env("PEBBLE_AUTHZREUSE", "0")
                .current_dir(dir.path()),
            &dir.path().join("pebble.log"),
        );
        let mut p = Pebble {
            ca_file,
            directory_url: format!("https://127.0.0.1:{listen_port}/dir"),
            management_port,
            pebble,
            dns,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        let addr = SocketAddr::from(([127, 0, 0, 1], listen_port));
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Ok(Some(st)) = p.pebble.try_wait() {
                panic!("pebble exited with {st}: {}", p.logs());
            }
            assert!(
                Instant::now() < deadline,
                "pebble did not start: {}",
                p.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        p
    }

    /// Pebble's issuing root (regenerated at every start), PEM, from its management port.
    pub fn root_pem(&self) -> String {
        let out = Command::new("curl")
            .args(["-sSf", "--cacert"])
            .arg(&self.ca_file)
            .arg(format!(
                "https://127.0.0.1:{}/roots/0",
                self.management_port
            ))
            .output()
            .expect("run curl");
        assert!(out.status.success(), "curl /roots/0: {out:?}");
        String::from_utf8(out.stdout).expect("PEM is text")
    }

    pub fn logs(&self) -> String {
        let read = |n: &str| std::fs::read_to_string(self.dir.path().join(n)).unwrap_or_default();
        format!(
            "----- pebble -----\n{}\n----- challtestsrv -----\n{}",
            read("pebble.log"),
            read("challtestsrv.log")
        )
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for c in [&mut self.pebble, &mut self.dns] {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}
