//! Certificates that renew themselves: the ACME client task (`[acme]`).
//!
//! One task per process. Every node of a cluster orders its own certificate (same names, own
//! account and key): no shared storage, no leader, and each node keeps renewing whatever
//! happens to its peers. What the nodes share is the HTTP-01 *tokens*: the CA's validation
//! request goes to whichever node DNS names, so a node that starts a challenge puts its token
//! in `Runtime::challenges`, the cluster shell sends it to every peer over the authenticated
//! heartbeat channel, every node answers it (`proxy::acme_http01`), and the order goes on only
//! once every live peer confirmed it holds the token (`order`).
//!
//! The loop: read the certificate on disk (`store`), decide whether to order
//! (`schedule::reason_to_order`: none yet, names changed, or due), order (`order::run`), write
//! key and chain atomically (`store::save_cert`; the TLS listeners reload on change), and
//! publish the status (`Runtime::acme_view`: next renewal, last error) for the stats. A failure
//! is logged as one line with the step and the CA's reason, and retried with a doubling
//! backoff (`schedule::backoff`). A config reload is picked up within `CONFIG_POLL`.

pub mod order;
pub mod schedule;
pub mod store;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use instant_acme::{Account, NewAccount};

use crate::config::AcmeSection;
use crate::runtime::{Runtime, Snapshot};
use store::{CertInfo, CertPaths};

/// How often the task looks at the configuration (and the clock) while it waits.
pub const CONFIG_POLL: Duration = Duration::from_secs(2);
/// Longest one attempt (account + order + issuance) may take before it counts as failed.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(300);

/// Starts the ACME task; it idles while the configuration has no `[acme]`.
pub fn spawn(rt: Arc<Runtime>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(run(rt))
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// What `Runtime::acme_view` holds.
#[derive(Debug, Default, Clone, serde::Serialize)]
struct Status {
    directory: String,
    names: Vec<String>,
    /// The chain followed by its key, one file (what `[listen.tls] cert_dir` loads).
    certificate_file: String,
    /// `ordering`, `valid` (certificate good until the next renewal), or `failing` (waiting to
    /// retry; any certificate on disk is still served).
    state: &'static str,
    certificate: Option<CertInfo>,
    next_renewal_unix_ms: Option<u64>,
    next_attempt_unix_ms: Option<u64>,
    last_success_unix_ms: Option<u64>,
    last_error: Option<String>,
    last_error_unix_ms: Option<u64>,
    orders_ok: u64,
    orders_failed: u64,
    consecutive_failures: u32,
    share_challenges: bool,
}

/// The account in use, with what it was made from.
struct CachedAccount {
    directory: String,
    ca_file: Option<String>,
    account: Account,
}

async fn run(rt: Arc<Runtime>) {
    let mut status = Status::default();
    let mut last_cfg: Option<AcmeSection> = None;
    let mut account: Option<CachedAccount> = None;
    let mut retry_at: Option<SystemTime> = None;
    loop {
        let snap = rt.load();
        let Some(cfg) = snap.config.acme.clone() else {
            if last_cfg.take().is_some() {
                rt.acme_view.store(None);
                tracing::info!("acme: [acme] removed from the configuration; not renewing");
            }
            tokio::time::sleep(CONFIG_POLL).await;
            continue;
        };
        let paths = CertPaths::new(Path::new(&cfg.cert_dir()), &cfg.cert_name());
        if last_cfg.as_ref() != Some(&cfg) {
            // New or changed settings: try at once, with a fresh backoff.
            retry_at = None;
            status.consecutive_failures = 0;
            status.directory = cfg.directory_url().to_string();
            status.names = cfg.names.clone();
            status.certificate_file = paths.pem.display().to_string();
            status.share_challenges = cfg.share_challenges;
            last_cfg = Some(cfg.clone());
        }
        let now = SystemTime::now();
        let cert = match store::load_cert(&paths) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("acme: {e}; ordering a new certificate");
                None
            }
        };
        status.next_renewal_unix_ms = cert
            .as_ref()
            .map(|c| unix_ms(schedule::renew_at(c, cfg.renew_before())));
        status.certificate = cert.clone();
        let reason = schedule::reason_to_order(cert.as_ref(), &cfg.names, cfg.renew_before(), now);
        let Some(reason) = reason else {
            status.state = "valid";
            status.next_attempt_unix_ms = None;
            publish(&rt, &status);
            let until = cert
                .map(|c| schedule::renew_at(&c, cfg.renew_before()))
                .and_then(|at| at.duration_since(now).ok())
                .unwrap_or_default();
            tokio::time::sleep(until.clamp(Duration::from_millis(100), CONFIG_POLL)).await;
            continue;
        };
        if let Some(wait) = retry_at.and_then(|at| at.duration_since(now).ok()) {
            status.state = "failing";
            publish(&rt, &status);
            tokio::time::sleep(wait.min(CONFIG_POLL)).await;
            continue;
        }
        status.state = "ordering";
        status.next_attempt_unix_ms = None;
        publish(&rt, &status);
        tracing::info!(
            "acme: ordering a certificate for {} from {} ({reason})",
            cfg.names.join(", "),
            cfg.directory_url()
        );
        let attempt = attempt(&rt, &snap, &cfg, &mut account, &paths);
        let result = match tokio::time::timeout(ATTEMPT_TIMEOUT, attempt).await {
            Ok(r) => r,
            Err(_) => Err(format!("timed out after {ATTEMPT_TIMEOUT:?}")),
        };
        let done = SystemTime::now();
        match result {
            Ok(info) => {
                status.orders_ok += 1;
                status.consecutive_failures = 0;
                status.last_success_unix_ms = Some(unix_ms(done));
                retry_at = None;
                tracing::info!(
                    "acme: certificate for {} issued (serial {}, valid until {}), written to {}",
                    info.names.join(", "),
                    info.serial,
                    humantime::format_rfc3339_seconds(info.not_after),
                    paths.pem.display()
                );
            }
            Err(e) => {
                status.orders_failed += 1;
                status.consecutive_failures += 1;
                let wait = schedule::backoff(status.consecutive_failures, cfg.retry_max());
                retry_at = Some(done + wait);
                status.next_attempt_unix_ms = Some(unix_ms(done + wait));
                status.last_error = Some(e.clone());
                status.last_error_unix_ms = Some(unix_ms(done));
                status.state = "failing";
                tracing::error!(
                    "acme: order for {} failed at {e}; next attempt in {}",
                    cfg.names.join(", "),
                    humantime::format_duration(wait)
                );
            }
        }
        publish(&rt, &status);
    }
}

fn publish(rt: &Runtime, status: &Status) {
    match serde_json::to_value(status) {
        Ok(v) => rt.acme_view.store(Some(Arc::new(v))),
        Err(e) => tracing::debug!("acme: status not serializable: {e}"),
    }
}

/// One attempt: the account (stored, or registered now), the order, the files.
async fn attempt(
    rt: &Arc<Runtime>,
    snap: &Snapshot,
    cfg: &AcmeSection,
    cached: &mut Option<CachedAccount>,
    paths: &CertPaths,
) -> Result<CertInfo, String> {
    let directory = cfg.directory_url().to_string();
    let reuse = cached
        .as_ref()
        .is_some_and(|c| c.directory == directory && c.ca_file == cfg.ca_file);
    if !reuse {
        let account = load_or_create_account(cfg)
            .await
            .map_err(|e| format!("account: {e}"))?;
        *cached = Some(CachedAccount {
            directory,
            ca_file: cfg.ca_file.clone(),
            account,
        });
    }
    let Some(c) = cached.as_ref() else {
        return Err("account: none".into());
    };
    let (peers, fresh) = match (&snap.config.cluster, cfg.share_challenges) {
        (Some(cl), true) => (
            cl.node
                .iter()
                .map(|n| n.name.clone())
                .filter(|n| *n != snap.node_name)
                .collect(),
            cl.deadtime,
        ),
        _ => (Vec::new(), Duration::ZERO),
    };
    let ctx = order::Ctx {
        names: &cfg.names,
        table: &rt.challenges,
        peers,
        fresh,
        challenge_wait: cfg.challenge_wait(),
    };
    let issued = order::run(&c.account, &ctx)
        .await
        .map_err(|e| e.to_string())?;
    let info = store::parse_chain(issued.chain_pem.as_bytes())
        .map_err(|e| format!("certificate: the CA sent {e}"))?;
    store::save_cert(paths, &issued.chain_pem, &issued.key_pem)
        .map_err(|e| format!("storage: {e}"))?;
    Ok(info)
}

async fn load_or_create_account(cfg: &AcmeSection) -> Result<Account, String> {
    let directory = cfg.directory_url();
    let storage = Path::new(&cfg.storage);
    let builder = match &cfg.ca_file {
        Some(f) => Account::builder_with_root(f).map_err(|e| format!("ca_file {f}: {e}"))?,
        None => Account::builder().map_err(|e| order::error_line(&e))?,
    };
    if let Some(creds) = store::load_account(storage, directory)? {
        return builder
            .from_credentials(creds)
            .await
            .map_err(|e| order::error_line(&e));
    }
    let contact = cfg.contact_uris();
    let contact_refs: Vec<&str> = contact.iter().map(String::as_str).collect();
    let (account, creds) = builder
        .create(
            &NewAccount {
                contact: &contact_refs,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            directory.to_string(),
            None,
        )
        .await
        .map_err(|e| order::error_line(&e))?;
    store::save_account(storage, directory, creds)?;
    tracing::info!(
        "acme: registered account {} at {directory}, key stored in {}",
        account.id(),
        store::account_path(storage).display()
    );
    Ok(account)
}
