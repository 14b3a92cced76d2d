//! The `edgelb` command line: a thin layer over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use edgelb::app::{self, Options, Source};

mod allocator;

#[derive(Parser)]
#[command(
    name = "edgelb",
    version,
    about = "HAProxy-compatible HTTP load balancer with Heartbeat-style Elastic IP failover"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the node (proxy, health checks, stats, cluster).
    Run {
        /// edgelb TOML, or a HAProxy config (detected by its sections).
        #[arg(short, long, default_value = "/etc/edgelb/edgelb.toml")]
        config: PathBuf,
        /// Run straight from a HAProxy configuration (supported subset, see `import`).
        #[arg(long, conflicts_with = "config")]
        haproxy_config: Option<PathBuf>,
        /// This node's name (overrides [node] name).
        #[arg(long)]
        node: Option<String>,
    },
    /// Validate a config file: every problem with file:line, exit 1 if any.
    Check {
        #[arg(short, long, default_value = "/etc/edgelb/edgelb.toml")]
        config: PathBuf,
    },
    /// Convert HAProxy + Heartbeat files into one edgelb config, with a report.
    /// Exit 0 = clean, 2 = imported with warnings/TODOs, 1 = could not import.
    Import(edgelb::import::ImportArgs),
    /// Run a complete local setup: three built-in backends and two edgelb nodes with an EC2
    /// emulator (moto, if installed) showing an Elastic IP failover; without moto, one node.
    Demo {
        /// One node, no cluster (the setup of conf/local.toml).
        #[arg(long)]
        single: bool,
        /// First port of the demo (nodes listen on BASE, BASE+1; dashboards on BASE+942,
        /// BASE+1042; backends on BASE+921..923; one node: API on BASE+943).
        #[arg(long, default_value_t = edgelb::demo::DEFAULT_BASE_PORT)]
        base_port: u16,
        /// Exit after the scripted failover and failback (for tests).
        #[arg(long)]
        exit_after_failover: bool,
    },
    /// Show the cluster as this node sees it (peers, EIPs), from the stats API.
    Status {
        /// Base URL of the stats API ([stats] api_bind).
        #[arg(long, default_value = "http://127.0.0.1:9023")]
        api: String,
        /// Print the raw cluster JSON instead of tables.
        #[arg(long)]
        json: bool,
        /// File with the read (or admin) token, when [stats] read_token_file is set.
        #[arg(long)]
        token_file: Option<PathBuf>,
    },
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("EDGELB_LOG")
        // The AWS SDK's own chatter (credential lookups, retries) stays out of the log by default.
        .unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(
                "info,aws_config=warn,aws_smithy_runtime=warn,aws_smithy_runtime_api=warn,aws_sdk_ec2=warn",
            )
        });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}

fn main() -> ExitCode {
    allocator::setup();
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Check { config } => check(&config),
        Cmd::Status {
            api,
            json,
            token_file,
        } => status(&api, json, token_file.as_deref()),
        Cmd::Import(args) => edgelb::import::run(&args),
        Cmd::Demo {
            single,
            base_port,
            exit_after_failover,
        } => {
            init_tracing();
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("cannot start the runtime: {e}");
                    return ExitCode::from(1);
                }
            };
            let cluster = !single && edgelb::demo_cluster::moto_available();
            if !single && !cluster {
                eprintln!(
                    "moto is not installed: running one node without EIP failover \
                     (install it with `./test.sh` once, or `bash .ci/install`)"
                );
            }
            let result = if cluster {
                rt.block_on(edgelb::demo_cluster::run(
                    edgelb::demo_cluster::Ports { base: base_port },
                    exit_after_failover,
                ))
            } else {
                rt.block_on(edgelb::demo::run(base_port))
            };
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(1)
                }
            }
        }
        Cmd::Run {
            config,
            haproxy_config,
            node,
        } => {
            init_tracing();
            let source = match haproxy_config {
                Some(p) => Source::HaproxyFile(p),
                None => Source::File(config),
            };
            let workers = match app::load(&source) {
                Ok(l) => l.config.global.workers,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(1);
                }
            };
            // The proxy runs on `workers` thread-per-core workers (current-thread runtimes,
            // one SO_REUSEPORT socket each: src/proxy/workers.rs); reload, health checks,
            // stats and the cluster run on one control thread.
            let workers = workers.unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1)
            });
            if let Err(e) = edgelb::proxy::workers::install(workers, Some(allocator::tidy)) {
                eprintln!("cannot start the proxy workers: {e}");
                return ExitCode::from(1);
            }
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.enable_all().worker_threads(1);
            let rt = match builder.build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("cannot start the runtime: {e}");
                    return ExitCode::from(1);
                }
            };
            match rt.block_on(app::run(Options { source, node })) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

fn check(path: &std::path::Path) -> ExitCode {
    match app::load(&Source::File(path.to_path_buf())) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                eprintln!("warning: {w}");
            }
            println!("{}: configuration is valid", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            for p in e.problems() {
                eprintln!("{p}");
            }
            ExitCode::from(1)
        }
    }
}

/// Seconds `edgelb status` waits for the stats API.
const STATUS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

fn status(api: &str, json: bool, token_file: Option<&std::path::Path>) -> ExitCode {
    let token = match token_file.map(std::fs::read_to_string).transpose() {
        Ok(t) => t.map(|t| t.trim().to_string()),
        Err(e) => {
            eprintln!("cannot read the token file: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let fetched = rt.block_on(async {
        tokio::time::timeout(STATUS_TIMEOUT, fetch_stats(api, token.as_deref()))
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {STATUS_TIMEOUT:?}")))
    });
    let body = match fetched {
        Ok(b) => b,
        Err(e) => {
            eprintln!("cannot reach the edgelb stats API at {api}: {e} (is edgelb running with [stats] api_bind there?)");
            return ExitCode::from(2);
        }
    };
    let value: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("{api}/stats.json is not JSON: {e}");
            return ExitCode::from(2);
        }
    };
    if json {
        let cluster = value
            .get("cluster")
            .cloned()
            .unwrap_or(serde_json::Value::Null);
        println!(
            "{}",
            serde_json::to_string_pretty(&cluster).unwrap_or_else(|_| cluster.to_string())
        );
    } else {
        print!("{}", edgelb::cluster::status_view::render_stats(&value));
    }
    ExitCode::SUCCESS
}

/// GET `<api>/stats.json` with a minimal HTTP/1.1 client (plain http only).
async fn fetch_stats(api: &str, token: Option<&str>) -> Result<Vec<u8>, String> {
    use http_body_util::BodyExt;
    let uri: http::Uri = format!("{}/stats.json", api.trim_end_matches('/'))
        .parse()
        .map_err(|e| format!("bad URL: {e}"))?;
    if uri.scheme_str().is_some_and(|s| s != "http") {
        return Err("only http:// is supported".into());
    }
    let host = uri.host().ok_or("URL has no host")?.to_string();
    let port = uri.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| e.to_string())?;
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let path = uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/stats.json");
    let mut req = http::Request::get(path)
        .header(http::header::HOST, format!("{host}:{port}"))
        .header(http::header::ACCEPT, "application/json");
    if let Some(t) = token {
        req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = req
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    if status == http::StatusCode::UNAUTHORIZED {
        return Err(
            "HTTP 401: the stats need a token (--token-file /etc/edgelb/read.token)".into(),
        );
    }
    if !status.is_success() {
        return Err(format!("HTTP {status}"));
    }
    Ok(body.to_vec())
}
