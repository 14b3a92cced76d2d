//! The `edgelb` command line: a thin layer over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use edgelb::app::{self, Options, Source};

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
    /// Run a complete local setup: three built-in backends and edgelb on 127.0.0.1:8080.
    Demo,
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("EDGELB_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Check { config } => check(&config),
        Cmd::Import(args) => edgelb::import::run(&args),
        Cmd::Demo => {
            init_tracing();
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("cannot start the runtime: {e}");
                    return ExitCode::from(1);
                }
            };
            match rt.block_on(edgelb::demo::run()) {
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
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.enable_all();
            if let Some(w) = workers {
                builder.worker_threads(w);
            }
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
