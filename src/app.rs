//! The running node: loads the config, publishes the runtime, starts listeners and the side
//! tasks, and applies reloads and the graceful stop. `main` is a thin CLI over this; tests drive
//! it in-process.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{self, ConfigError, Loaded};
use crate::ops::notify;
use crate::proxy::listener::Listeners;
use crate::runtime::{unix_ms, ReloadStatus, Runtime, Snapshot};

/// Where the configuration comes from.
#[derive(Debug, Clone)]
pub enum Source {
    File(PathBuf),
    /// A HAProxy configuration of the supported subset, converted at load.
    HaproxyFile(PathBuf),
    /// In-memory TOML (tests); reload re-reads the same text unless replaced.
    Text(String),
}

#[derive(Debug, Clone)]
pub struct Options {
    pub source: Source,
    /// Overrides `[node] name`.
    pub node: Option<String>,
}

/// The node name: CLI flag, else `[node] name`, else the host name.
pub fn node_name(cfg: &config::Config, flag: Option<&str>) -> String {
    if let Some(n) = flag {
        return n.to_string();
    }
    if let Some(n) = &cfg.node.name {
        return n.clone();
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "edgelb".into())
}

/// Loads, validates and runs the start-up preflight (`preflight::check`: key and token files
/// exist with safe owner and mode); `check`, `run` and every reload share this one path, so a
/// config `check` accepts is one `run` starts with. A file in HAProxy's format (or one forced
/// with `--haproxy-config`) goes through `import` first.
pub fn load(source: &Source) -> Result<Loaded, ConfigError> {
    let (loaded, text) = match source {
        Source::File(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| ConfigError::Read {
                file: p.display().to_string(),
                reason: e.to_string(),
            })?;
            if crate::import::looks_like_haproxy(&text) {
                (load_haproxy(p)?, None)
            } else {
                (
                    config::load_str(&text, &p.display().to_string())?,
                    Some(text),
                )
            }
        }
        Source::HaproxyFile(p) => (load_haproxy(p)?, None),
        Source::Text(t) => (config::load_str(t, "<config>")?, Some(t.clone())),
    };
    let mut problems: Vec<config::ConfigProblem> = crate::preflight::check(&loaded.config)
        .into_iter()
        .map(|(key, message)| config::ConfigProblem {
            file: loaded.source.clone(),
            line: text.as_deref().map_or(1, |t| config::line_of_key(t, &key)),
            message,
        })
        .collect();
    // Certificates and keys: parsable, key matching, key file owner and mode.
    for (li, p) in crate::tls::preflight(&loaded.config) {
        problems.push(config::ConfigProblem {
            file: loaded.source.clone(),
            line: text
                .as_deref()
                .map_or(1, |t| config::line_of_listen_key(t, li, &["tls"])),
            message: format!(
                "listen {:?} tls: {p}",
                loaded.config.listen.get(li).map_or("", |l| l.name.as_str())
            ),
        });
    }
    if problems.is_empty() {
        Ok(loaded)
    } else {
        Err(ConfigError::Invalid(problems))
    }
}

fn load_haproxy(p: &Path) -> Result<Loaded, ConfigError> {
    let file = p.display().to_string();
    match crate::import::haproxy_to_config(p) {
        Ok(imported) => {
            let warnings = imported
                .report
                .entries
                .iter()
                .filter(|e| matches!(e.kind, crate::import::Kind::Warning))
                .map(|e| config::ConfigProblem {
                    file: e.file.clone(),
                    line: e.line,
                    message: e.message.clone(),
                })
                .collect();
            Ok(Loaded {
                config: imported.config,
                warnings,
                source: file,
            })
        }
        Err(crate::import::ImportError::Read { file, reason }) => {
            Err(ConfigError::Read { file, reason })
        }
        Err(crate::import::ImportError::Rejected { report, .. }) => Err(ConfigError::Invalid(
            report
                .entries
                .iter()
                .filter(|e| matches!(e.kind, crate::import::Kind::Error))
                .map(|e| config::ConfigProblem {
                    file: e.file.clone(),
                    line: e.line,
                    message: e.message.clone(),
                })
                .collect(),
        )),
    }
}

pub struct App {
    pub rt: Arc<Runtime>,
    opts: Options,
    listeners: Listeners,
    side_tasks: Vec<tokio::task::JoinHandle<()>>,
    cluster: Option<crate::cluster::node::ClusterHandle>,
    health: Option<crate::health::HealthHandle>,
    /// (configured, actual) addresses of the stats servers.
    stats_addrs: Vec<std::net::SocketAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Build(String),
    #[error("{0}")]
    Bind(#[from] std::io::Error),
}

impl App {
    /// Loads the config, binds every listener and starts serving.
    pub async fn start(opts: Options) -> Result<App, StartError> {
        let loaded = load(&opts.source)?;
        for w in &loaded.warnings {
            tracing::warn!("{w}");
        }
        let node = node_name(&loaded.config, opts.node.as_deref());
        let snap = Snapshot::build(Arc::new(loaded.config), &loaded.source, node, None)
            .map_err(StartError::Build)?;
        snap.activate();
        let rt = Runtime::new(
            snap,
            loaded.warnings.iter().map(|w| w.to_string()).collect(),
        );
        let mut listeners = Listeners::new(rt.clone());
        listeners.sync(&rt.load())?;
        rt.listeners_ready.store(true, Ordering::Release);
        let mut side_tasks = vec![
            tokio::spawn(sweep_pools(rt.clone())),
            tokio::spawn(watch_certificates(rt.clone())),
        ];
        let health = Some(crate::health::spawn(rt.clone()));
        side_tasks.push(crate::acme::spawn(rt.clone()));
        let mut stats_addrs = Vec::new();
        if let Some(section) = rt.load().config.stats.clone() {
            let bound = crate::stats::bind(&section).await.map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot bind the stats ports: {e}"))
            })?;
            stats_addrs = bound.iter().filter_map(|l| l.local_addr().ok()).collect();
            let state = crate::stats::StatsState::new(rt.clone());
            side_tasks.push(tokio::spawn(crate::stats::serve_on(
                state,
                bound,
                std::future::pending::<()>(),
            )));
        }
        let cluster = crate::cluster::node::spawn(rt.clone())
            .await
            .map_err(StartError::Build)?;
        Ok(App {
            rt,
            opts,
            listeners,
            side_tasks,
            cluster,
            health,
            stats_addrs,
        })
    }

    /// (configured, actual) listener addresses.
    pub fn listener_addresses(&self) -> Vec<(std::net::SocketAddr, std::net::SocketAddr)> {
        self.listeners.addresses()
    }

    /// The actual address of the first bind of listen `name`.
    pub fn listen_addr(&self, name: &str) -> Option<std::net::SocketAddr> {
        let snap = self.rt.load();
        let l = snap.listen_by_name(name)?;
        let want = l.binds.first()?;
        self.listeners
            .addresses()
            .into_iter()
            .find(|(k, _)| k == want)
            .map(|(_, a)| a)
    }

    /// Actual addresses of the stats servers (dashboard first).
    pub fn stats_addresses(&self) -> &[std::net::SocketAddr] {
        &self.stats_addrs
    }

    pub fn set_source(&mut self, source: Source) {
        self.opts.source = source;
    }

    /// Parse -> validate -> build -> bind new sockets -> swap. Any failure leaves the running
    /// configuration untouched and is recorded for the stats API.
    pub fn reload(&mut self) -> Result<u64, Vec<String>> {
        notify::reloading();
        let result = self.try_reload();
        let prev = self.rt.reload.load_full();
        let status = match &result {
            Ok(generation) => ReloadStatus {
                ok: true,
                at_unix_ms: unix_ms(),
                generation: *generation,
                problems: Vec::new(),
                warnings: prev.warnings.clone(),
            },
            Err(problems) => {
                for p in problems {
                    tracing::error!(
                        "reload rejected, still serving generation {}: {p}",
                        self.rt.load().generation
                    );
                }
                ReloadStatus {
                    ok: false,
                    at_unix_ms: unix_ms(),
                    generation: self.rt.load().generation,
                    problems: problems.clone(),
                    warnings: Vec::new(),
                }
            }
        };
        self.rt.reload.store(Arc::new(status));
        notify::ready();
        result
    }

    fn try_reload(&mut self) -> Result<u64, Vec<String>> {
        let loaded = load(&self.opts.source).map_err(|e| {
            e.problems()
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
        })?;
        for w in &loaded.warnings {
            tracing::warn!("{w}");
        }
        let prev = self.rt.load();
        let node = node_name(&loaded.config, self.opts.node.as_deref());
        let snap = Snapshot::build(Arc::new(loaded.config), &loaded.source, node, Some(&prev))
            .map_err(|e| vec![e])?;
        let fresh = self
            .listeners
            .bind_new(&snap)
            .map_err(|e| vec![e.to_string()])?;
        let snap = Arc::new(snap);
        self.rt.snapshot.store(snap.clone());
        snap.activate();
        self.listeners.commit(&snap, fresh);
        let generation = snap.generation;
        tracing::info!(
            "configuration reloaded: generation {generation} from {}",
            snap.source
        );
        Ok(generation)
    }

    /// Logs every address this node listens on: each listen's binds, the stats servers and
    /// the heartbeat socket.
    pub fn log_bound(&self) {
        let snap = self.rt.load();
        let bound = self.listeners.addresses();
        for l in &snap.listens {
            let addrs: Vec<String> = l
                .binds
                .iter()
                .map(|want| {
                    bound
                        .iter()
                        .find(|(k, _)| k == want)
                        .map(|(_, a)| a.to_string())
                        .unwrap_or_else(|| want.to_string())
                })
                .collect();
            tracing::info!("listen {} bound on {}", l.name, addrs.join(", "));
        }
        match self.stats_addrs.as_slice() {
            [] => tracing::info!("stats: off (no [stats] section)"),
            [one] => tracing::info!("dashboard and stats API bound on {one}"),
            [dash, api, ..] => {
                tracing::info!("dashboard bound on {dash}, stats API bound on {api}")
            }
        }
        match &snap.config.cluster {
            Some(c) => tracing::info!("heartbeat (UDP) bound on {}", c.bind),
            None => tracing::info!("cluster: off (no [cluster] section)"),
        }
    }

    /// Graceful stop: stop accepting, let in-flight requests finish (keep-alive connections
    /// close after their current response), give up after `grace`.
    pub async fn drain(&mut self, grace: Option<Duration>) {
        notify::stopping();
        self.rt.stopping.store(true, Ordering::Release);
        // Peers take our EIP first, so clients are moved before we stop accepting.
        if let Some(c) = &self.cluster {
            c.leave().await;
        }
        let grace = grace.unwrap_or(self.rt.load().global.grace);
        self.listeners.stop_accepting();
        let started = Instant::now();
        let deadline = started + grace;
        tracing::info!(
            "draining: stopped accepting; {} connection(s) open, waiting up to {grace:?}",
            self.rt.process.actconn.load(Ordering::Acquire)
        );
        while self.rt.process.actconn.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = self.rt.process.actconn.load(Ordering::Acquire);
        if left > 0 {
            tracing::warn!("grace period over: closing {left} connections");
        } else {
            tracing::info!(
                "drained: every connection finished in {:.2} s",
                started.elapsed().as_secs_f64()
            );
        }
        for t in self.side_tasks.drain(..) {
            t.abort();
        }
        if let Some(h) = self.health.take() {
            h.shutdown();
        }
        self.settle_access_log().await;
    }

    /// Before the process exits: the proxy workers hand over the log lines they hold, and the
    /// writer gets up to `LOG_SETTLE` to write them, so the last requests are logged too.
    async fn settle_access_log(&self) {
        const LOG_SETTLE: Duration = Duration::from_secs(2);
        let deadline = Instant::now() + LOG_SETTLE;
        let flushes: Vec<_> = crate::proxy::workers::handles()
            .unwrap_or(&[])
            .iter()
            .map(|h| h.spawn(async { crate::proxy::access_log::flush_this_thread() }))
            .collect();
        for f in flushes {
            let _ = tokio::time::timeout_at(deadline.into(), f).await;
        }
        let log = self.rt.load().access_log.clone();
        while !log.all_written() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub fn config_path(&self) -> Option<&Path> {
        match &self.opts.source {
            Source::File(p) | Source::HaproxyFile(p) => Some(p),
            Source::Text(_) => None,
        }
    }
}

/// Closes idle upstream connections past their idle timeout, every second.
async fn sweep_pools(rt: Arc<Runtime>) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let snap = rt.load();
        for l in &snap.listens {
            for s in &l.servers {
                s.pool.sweep();
            }
        }
    }
}

/// Re-reads certificate files when they change (ACME renewals, an operator's copy), every
/// `tls::POLL_INTERVAL`; see `TlsListen::poll_changes`. A SIGHUP reload re-reads them too.
async fn watch_certificates(rt: Arc<Runtime>) {
    loop {
        let every = rt
            .load()
            .config
            .global
            .tls_watch_interval
            .unwrap_or(crate::tls::POLL_INTERVAL);
        tokio::time::sleep(every).await;
        let snap = rt.load();
        if snap.listens.iter().all(|l| l.tls.is_none()) {
            continue;
        }
        let _ = tokio::task::spawn_blocking(move || {
            for l in &snap.listens {
                if let Some(t) = &l.tls {
                    t.poll_changes(&l.name);
                }
            }
        })
        .await;
    }
}

/// Runs until SIGTERM/SIGINT; SIGHUP reloads. A second stop signal exits at once.
pub async fn run(opts: Options) -> Result<(), StartError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut app = App::start(opts).await?;
    notify::ready();
    notify::spawn_watchdog();
    let snap = app.rt.load();
    tracing::info!(
        "edgelb {} node {} serving generation {} ({} listen sections)",
        env!("CARGO_PKG_VERSION"),
        snap.node_name,
        snap.generation,
        snap.listens.len()
    );
    app.log_bound();
    loop {
        tokio::select! {
            _ = hup.recv() => {
                let _ = app.reload();
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tokio::select! {
        _ = app.drain(None) => {}
        _ = term.recv() => tracing::warn!("second stop signal: exiting now"),
        _ = int.recv() => tracing::warn!("second stop signal: exiting now"),
    }
    tracing::info!("edgelb node {} stopped", app.rt.load().node_name);
    Ok(())
}
