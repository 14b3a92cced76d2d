//! `edgelb demo`: the README's run command. With moto installed it starts two nodes and an EC2
//! emulator, kills one node and shows the EIP moving to the survivor and back.

use std::process::Command;

#[test]
fn demo_shows_a_failover_and_a_failback() {
    let moto = Command::new("python3")
        .args(["-c", "import moto, flask"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !moto {
        assert_eq!(
            std::env::var("EDGELB_SKIP_MOTO").as_deref(),
            Ok("1"),
            "moto is not installed (pip install 'moto[server]'), or set EDGELB_SKIP_MOTO=1"
        );
        return;
    }
    // Fixed ports below the kernel's ephemeral range (32768+), so no test's port 0 can take them.
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
}
