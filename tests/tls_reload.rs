//! Certificate reload: files replaced by atomic rename are served from the next handshake on
//! (no signal needed), SIGHUP re-reads them too, a bad replacement keeps the old certificate
//! serving and is reported with file and reason, and 20 replacements under a loop of fresh TLS
//! connections fail no handshake and no request.

mod common;
mod common_tls;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{free_port, seed_config, Backend, Proxy};
use common_tls::{client_config, connect, get, served, write_atomic, write_leaf, Ca, Leaf};

struct Site {
    dir: tempfile::TempDir,
    p: Proxy,
    addr: SocketAddr,
}

async fn site(a: &Backend, first: &Leaf, watch: &str) -> Site {
    let dir = tempfile::tempdir().unwrap();
    write_leaf(dir.path(), "www", first);
    let port = free_port();
    let cfg = seed_config(
        &[a],
        &format!(
            "[listen.tls]\nbind = [\"127.0.0.1:{port}\"]\ncert_dir = \"{}\"\n",
            dir.path().display()
        ),
        &format!("[global]\ntls_watch_interval = \"{watch}\"\n"),
    );
    let p = Proxy::start(&cfg).await;
    Site {
        dir,
        p,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
    }
}

async fn served_now(s: &Site, ca: &Ca) -> Vec<u8> {
    let c = connect(s.addr, "www.example.com", client_config(ca, &["http/1.1"]))
        .await
        .expect("handshake");
    served(&c)
}

async fn wait_served(s: &Site, ca: &Ca, want: &[u8]) -> bool {
    for _ in 0..200 {
        if served_now(s, ca).await == want {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_certificate_is_served_and_a_bad_one_keeps_the_old_serving() {
    let a = Backend::start("a").await;
    let ca = Ca::new();
    let one = ca.issue(&["www.example.com"], 101);
    let s = site(&a, &one, "50ms").await;
    assert_eq!(served_now(&s, &ca).await, one.der);

    // Renewal written by atomic rename (key first, then certificate): served without a signal.
    let two = ca.issue(&["www.example.com"], 102);
    write_leaf(s.dir.path(), "www", &two);
    assert!(wait_served(&s, &ca, &two.der).await, "serial 102 served");

    // A certificate whose key is another one's: rejected, serial 102 keeps serving.
    let three = ca.issue(&["www.example.com"], 103);
    write_atomic(
        &s.dir.path().join("www.pem"),
        three.cert_pem.as_bytes(),
        0o644,
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(served_now(&s, &ca).await, two.der, "old certificate kept");
    let snap = s.p.app.rt.load();
    let c = &snap.listens[0].tls.as_ref().unwrap().shared.counters;
    assert_eq!(
        c.cert_reload_failures.load(Ordering::Relaxed),
        1,
        "reported once"
    );
    // Unparsable: still the old one.
    write_atomic(&s.dir.path().join("www.pem"), b"garbage", 0o644);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(served_now(&s, &ca).await, two.der);
    // The key arrives: the pair is good again and served.
    write_leaf(s.dir.path(), "www", &three);
    assert!(wait_served(&s, &ca, &three.der).await, "serial 103 served");
    assert_eq!(c.cert_reloads.load(Ordering::Relaxed), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_rereads_certificates_and_refuses_a_bad_one_with_file_and_reason() {
    let a = Backend::start("a").await;
    let ca = Ca::new();
    let one = ca.issue(&["www.example.com"], 201);
    // Watching slowly, so only the reload can have changed anything.
    let mut s = site(&a, &one, "1h").await;
    let two = ca.issue(&["www.example.com"], 202);
    write_leaf(s.dir.path(), "www", &two);
    assert_eq!(served_now(&s, &ca).await, one.der);
    s.p.app.reload().expect("reload with a good certificate");
    assert_eq!(served_now(&s, &ca).await, two.der);

    let other = ca.issue(&["www.example.com"], 203);
    write_atomic(
        &s.dir.path().join("www.key"),
        other.key_pem.as_bytes(),
        0o600,
    );
    let problems = s.p.app.reload().expect_err("a key mismatch is refused");
    let text = problems.join("\n");
    assert!(
        text.contains("www.key") && text.contains("does not belong"),
        "{text}"
    );
    assert_eq!(served_now(&s, &ca).await, two.der, "generation kept");
    let status = s.p.app.rt.reload.load();
    assert!(!status.ok);
}

/// 20 certificate replacements (by file change, and every 4th also by reload) while four
/// clients open fresh TLS connections in a loop: no handshake and no request fails, and both
/// certificates are seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_replacements_under_load_fail_no_handshake_and_no_request() {
    let a = Backend::start("a").await;
    let ca = Arc::new(Ca::new());
    let leaves: Vec<Leaf> = (0..21)
        .map(|i| ca.issue(&["www.example.com"], 300 + i))
        .collect();
    let mut s = site(&a, &leaves[0], "20ms").await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let seen = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
    let resuming = client_config(&ca, &["http/1.1"]);
    let mut full = (*resuming).clone();
    full.resumption = rustls::client::Resumption::disabled();
    let full = Arc::new(full);
    let mut tasks = Vec::new();
    // Three clients with full handshakes (each sees the certificate of the moment), one that
    // resumes (its tickets must survive every swap).
    for i in 0..4 {
        let cfg = if i == 0 {
            resuming.clone()
        } else {
            full.clone()
        };
        let (stop, ok, failed, seen) = (stop.clone(), ok.clone(), failed.clone(), seen.clone());
        let addr = s.addr;
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match connect(addr, "www.example.com", cfg.clone()).await {
                    Ok(mut c) => {
                        if i > 0 {
                            seen.lock().unwrap().insert(served(&c));
                        }
                        match get(&mut c, "/", "").await {
                            Some((h, _)) if h.starts_with("HTTP/1.1 200") => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            other => {
                                eprintln!("request failed: {other:?}");
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    Err(e) => {
                        eprintln!("handshake failed: {e}");
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for (i, leaf) in leaves.iter().enumerate().skip(1) {
        tokio::time::sleep(Duration::from_millis(150)).await;
        write_leaf(s.dir.path(), "www", leaf);
        if i % 4 == 0 {
            s.p.app.reload().expect("reload");
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let snap = s.p.app.rt.load();
    let c = &snap.listens[0].tls.as_ref().unwrap().shared.counters;
    eprintln!(
        "requests ok {}, certificates seen {}, file reloads {}, handshakes {} ({} resumed)",
        ok.load(Ordering::Relaxed),
        seen.lock().unwrap().len(),
        c.cert_reloads.load(Ordering::Relaxed),
        c.handshakes.load(Ordering::Relaxed),
        c.resumed.load(Ordering::Relaxed),
    );
    assert_eq!(failed.load(Ordering::Relaxed), 0);
    assert_eq!(c.handshake_failures.load(Ordering::Relaxed), 0);
    assert!(ok.load(Ordering::Relaxed) > 40);
    assert!(
        c.resumed.load(Ordering::Relaxed) > 0,
        "resumption survived the swaps"
    );
    assert!(seen.lock().unwrap().len() >= 10, "replacements were served");
    assert!(seen.lock().unwrap().contains(&leaves[20].der));
    assert_eq!(served_now(&s, &ca).await, leaves[20].der);
}
