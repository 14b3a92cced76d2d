//! testssl.sh (Debian `testssl.sh`) against edgelb's TLS port: protocols, cipher categories and
//! the quick vulnerability checks. Nothing weak may be offered and nothing may be flagged: every
//! finding is OK or INFO. (The full run, `-p -s -U -S`, is in README "TLS"; it takes ~75 s.)

mod common;
mod common_tls;

use std::time::Duration;

use common::{free_port, seed_config, Backend, Proxy};
use common_tls::{write_leaf, Ca};

fn testssl_available() -> bool {
    if std::process::Command::new("testssl")
        .arg("--version")
        .output()
        .is_ok()
    {
        return true;
    }
    if std::env::var("EDGELB_SKIP_TESTSSL").as_deref() == Ok("1") {
        eprintln!("testssl not installed: skipped (EDGELB_SKIP_TESTSSL=1)");
        return false;
    }
    panic!("testssl is not installed (apt-get install testssl.sh), or set EDGELB_SKIP_TESTSSL=1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn testssl_finds_no_weak_protocol_cipher_or_vulnerability() {
    if !testssl_available() {
        return;
    }
    let a = Backend::start("a").await;
    let ca = Ca::new();
    let dir = tempfile::tempdir().unwrap();
    // An ECDSA and an RSA chain for the same name, as a site serving every client has.
    let ec = ca.issue(&["www.example.com"], 1);
    let rsa = ca.issue_with(
        &["www.example.com"],
        2,
        rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap_or_else(|_| {
            rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap()
        }),
    );
    let (ec_cert, ec_key) = write_leaf(dir.path(), "ec", &ec);
    let (rsa_cert, rsa_key) = write_leaf(dir.path(), "rsa", &rsa);
    let port = free_port();
    let cfg = seed_config(
        &[&a],
        &format!(
            "[listen.tls]\nbind = [\"127.0.0.1:{port}\"]\n\
             certs = [{{ cert = \"{}\", key = \"{}\" }}, {{ cert = \"{}\", key = \"{}\" }}]\n",
            ec_cert.display(),
            ec_key.display(),
            rsa_cert.display(),
            rsa_key.display()
        ),
        "",
    );
    let _p = Proxy::start(&cfg).await;
    let json = dir.path().join("testssl.json");
    let run = tokio::process::Command::new("testssl")
        .args([
            "--quiet",
            "--color",
            "0",
            "--warnings",
            "off",
            "-p",
            "-s",
            "-H",
            "-I",
            "-C",
            "-B",
            "-O",
            "-Z",
            "-W",
            "-F",
            "-A",
            "-L",
            "-4",
            "--jsonfile",
        ])
        .arg(&json)
        .args(["--ip", "127.0.0.1", &format!("www.example.com:{port}")])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(240), run)
        .await
        .expect("testssl within 240 s")
        .expect("testssl runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let findings: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json written"))
            .expect("testssl JSON");
    let get = |id: &str| {
        findings
            .iter()
            .find(|f| f["id"] == id)
            .map(|f| f["finding"].as_str().unwrap_or("").to_string())
            .unwrap_or_else(|| panic!("no finding {id}:\n{text}"))
    };
    for id in ["SSLv2", "SSLv3", "TLS1", "TLS1_1"] {
        assert!(get(id).starts_with("not offered"), "{id}: {}", get(id));
    }
    for id in ["TLS1_2", "TLS1_3", "cipherlist_STRONG"] {
        assert!(get(id).starts_with("offered"), "{id}: {}", get(id));
    }
    for id in [
        "cipherlist_NULL",
        "cipherlist_aNULL",
        "cipherlist_EXPORT",
        "cipherlist_LOW",
        "cipherlist_3DES_IDEA",
        "cipherlist_AVERAGE",
    ] {
        assert!(get(id).starts_with("not offered"), "{id}: {}", get(id));
    }
    for id in [
        "heartbleed",
        "CCS",
        "CRIME_TLS",
        "POODLE_SSL",
        "SWEET32",
        "FREAK",
        "BEAST",
        "LUCKY13",
        "RC4",
    ] {
        let f = findings.iter().find(|f| f["id"] == id);
        assert!(f.is_some(), "vulnerability check {id} ran:\n{text}");
    }
    let flagged: Vec<String> = findings
        .iter()
        .filter(|f| !matches!(f["severity"].as_str(), Some("OK") | Some("INFO")))
        .map(|f| format!("{} {} {}", f["id"], f["severity"], f["finding"]))
        .collect();
    assert!(flagged.is_empty(), "testssl flagged: {flagged:#?}\n{text}");
}
