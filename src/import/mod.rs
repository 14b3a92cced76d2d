//! `edgelb import`: turns an HAProxy + Linux-HA Heartbeat setup into one edgelb TOML file plus a
//! report of what every source directive became, and `haproxy_to_config` for running edgelb
//! straight from an HAProxy file (`edgelb run --haproxy-config`).
//!
//! Exit status of [`run`]:
//! * `0`: imported; every directive was carried over or is not needed by edgelb;
//! * `2`: imported with warnings: some directives are unsupported (reported with file:line) or
//!   `# TODO` lines were left in the output;
//! * `1`: could not import: unreadable files, syntax errors, invalid values (Heartbeat's own timer
//!   rules, a `crc`-only authkeys...) or a result `edgelb::config::load_str` rejects. Nothing is
//!   written then.

pub mod emit;
pub mod haproxy;
pub mod heartbeat;
pub mod report;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use emit::{Doc, Table, Value};
pub use haproxy::{looks_like_haproxy, Env};
pub use report::{Entry, Kind, Loc, Report, EXIT_FAILED, EXIT_OK, EXIT_WARNINGS};

/// `edgelb import` arguments.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ImportArgs {
    /// The HAProxy configuration (hapee-lb.cfg / haproxy.cfg).
    #[arg(long, value_name = "FILE")]
    pub haproxy: PathBuf,
    /// Heartbeat's ha.cf.
    #[arg(long = "ha-cf", value_name = "FILE")]
    pub ha_cf: Option<PathBuf>,
    /// Heartbeat's authkeys; the active secret is written to --key-out.
    #[arg(long, value_name = "FILE")]
    pub authkeys: Option<PathBuf>,
    /// Heartbeat's haresources (`node updateEIP1` lines).
    #[arg(long, value_name = "FILE")]
    pub haresources: Option<PathBuf>,
    /// Directory with the updateEIPn resource scripts, either one node's (flat) or one
    /// sub-directory per node name.
    #[arg(long = "update-eip-dir", value_name = "DIR")]
    pub update_eip_dir: Option<PathBuf>,
    /// Where to write the edgelb config (default: standard output).
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// The node this file is for (sets [node] name; also says whose scripts a flat
    /// --update-eip-dir holds).
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// Where to write the cluster secret from authkeys (mode 0600). Default: `cluster.key` next
    /// to the output file (or in the current directory when writing to standard output).
    #[arg(long = "key-out", value_name = "FILE")]
    pub key_out: Option<PathBuf>,
}

/// All inputs of an import, already read. Built by [`read_sources`]; tests build it directly.
#[derive(Debug, Clone)]
pub struct Sources {
    pub haproxy: heartbeat::Source,
    pub heartbeat: heartbeat::Inputs,
    /// `--node`: written as `[node] name`.
    pub node: Option<String>,
    pub env: Env,
    /// The name the generated file is checked under (shown in load errors).
    pub output_name: String,
}

/// The result of an import that produced a loadable configuration.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The commented TOML.
    pub toml: String,
    /// The same, parsed and validated by `edgelb::config::load_str`.
    pub config: crate::config::Config,
    pub report: Report,
    /// The cluster secret from authkeys, to be written to `cluster.auth_key_file`.
    pub secret: Option<String>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ImportError {
    #[error("{file}: cannot read: {reason}")]
    Read { file: String, reason: String },
    /// The sources have errors (listed in the report).
    #[error("cannot import:\n{}", .report.render_problems())]
    Rejected { report: Report, toml: String },
}

impl ImportError {
    pub fn report(&self) -> Option<&Report> {
        match self {
            ImportError::Read { .. } => None,
            ImportError::Rejected { report, .. } => Some(report),
        }
    }
}

/// Reads an HAProxy file and converts it (no cluster), with the process environment for
/// `"${VAR}"`. Warnings are in the report; errors, or a result that does not load, are `Err`.
pub fn haproxy_to_config(path: &Path) -> Result<Imported, ImportError> {
    let text = read(path)?;
    let name = path.display().to_string();
    import_sources(Sources {
        haproxy: heartbeat::Source {
            name: name.clone(),
            text,
            mode: None,
        },
        heartbeat: heartbeat::Inputs::default(),
        node: None,
        env: Env::process(),
        output_name: format!("{name} (as edgelb config)"),
    })
}

fn read(path: &Path) -> Result<String, ImportError> {
    std::fs::read_to_string(path).map_err(|e| ImportError::Read {
        file: path.display().to_string(),
        reason: e.to_string(),
    })
}

fn source(path: &Path) -> Result<heartbeat::Source, ImportError> {
    let text = read(path)?;
    Ok(heartbeat::Source {
        name: path.display().to_string(),
        text,
        mode: file_mode(path),
    })
}

#[cfg(unix)]
fn file_mode(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).ok().map(|m| m.permissions().mode())
}
#[cfg(not(unix))]
fn file_mode(_: &Path) -> Option<u32> {
    None
}

/// Where the secret goes when `--key-out` is not given.
pub fn default_key_path(args: &ImportArgs) -> PathBuf {
    if let Some(k) = &args.key_out {
        return k.clone();
    }
    let dir = args
        .output
        .as_ref()
        .and_then(|o| o.parent().map(Path::to_path_buf))
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));
    dir.join("cluster.key")
}

/// Reads every file the arguments name. The key path is made absolute so the generated config
/// works whatever directory edgelb is started from.
pub fn read_sources(args: &ImportArgs) -> Result<Sources, ImportError> {
    let key = default_key_path(args);
    let key = std::path::absolute(&key).unwrap_or(key);
    let mut scripts = Vec::new();
    if let Some(dir) = &args.update_eip_dir {
        let rd = |d: &Path| -> Result<Vec<PathBuf>, ImportError> {
            let mut v: Vec<PathBuf> = std::fs::read_dir(d)
                .map_err(|e| ImportError::Read {
                    file: d.display().to_string(),
                    reason: e.to_string(),
                })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect();
            v.sort();
            Ok(v)
        };
        for p in rd(dir)? {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if p.is_dir() {
                for q in rd(&p)? {
                    if q.is_file() {
                        scripts.push(heartbeat::Script {
                            resource: q
                                .file_name()
                                .map(|n| n.to_string_lossy().into_owned())
                                .unwrap_or_default(),
                            node: Some(name.clone()),
                            source: source(&q)?,
                        });
                    }
                }
            } else if p.is_file() {
                scripts.push(heartbeat::Script {
                    resource: name,
                    node: None,
                    source: source(&p)?,
                });
            }
        }
    }
    let opt = |p: &Option<PathBuf>| p.as_deref().map(source).transpose();
    Ok(Sources {
        haproxy: source(&args.haproxy)?,
        heartbeat: heartbeat::Inputs {
            ha_cf: opt(&args.ha_cf)?,
            authkeys: opt(&args.authkeys)?,
            haresources: opt(&args.haresources)?,
            scripts,
            node: args.node.clone(),
            key_file: key.display().to_string(),
        },
        node: args.node.clone(),
        env: Env::process(),
        output_name: args
            .output
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "<stdout>".into()),
    })
}

/// The whole conversion over sources already in memory. Always returns the TOML that was
/// produced and the report; `Err` when the report has errors or the TOML does not load.
pub fn import_sources(mut src: Sources) -> Result<Imported, ImportError> {
    let hap = haproxy::import(&src.haproxy.text, &src.haproxy.name, &mut src.env);
    let hb = heartbeat::import(&src.heartbeat);
    let mut report = hap.report.clone();
    report.extend(hb.report.clone());

    let iam_note = doc_cluster_note(&hb);
    let mut doc = Doc::default();
    let mut files = vec![src.haproxy.name.clone()];
    let h = &src.heartbeat;
    for s in [&h.ha_cf, &h.authkeys, &h.haresources]
        .into_iter()
        .flatten()
    {
        files.push(s.name.clone());
    }
    files.extend(h.scripts.iter().map(|s| s.source.name.clone()));
    doc.header = vec!["edgelb configuration generated by `edgelb import` from:".into()];
    doc.header.extend(files.iter().map(|f| format!("  {f}")));
    doc.header.push(
        "Comments name the source directive of each key; review every TODO before use.".into(),
    );
    if let Some(n) = &src.node {
        let mut t = Table::new("[node]");
        t.set("name", Value::Str(n.clone()), "--node".to_string());
        doc.tables.push(t);
    }
    doc.tables.push(hap.global);
    doc.tables.push(hap.log);
    doc.tables.push(hap.defaults);
    for l in hap.listens {
        doc.tables.extend(l);
    }
    if let Some(s) = hap.stats {
        doc.tables.push(s);
    }
    doc.tables.extend(hb.cluster);
    if let Some(a) = hb.aws {
        doc.tables.push(a);
    }
    doc.tables.extend(hb.eips);
    let toml = doc.render();
    let todos: Vec<usize> = toml
        .lines()
        .enumerate()
        .filter(|(_, l)| l.trim_start().starts_with("# TODO"))
        .map(|(i, _)| i + 1)
        .collect();
    if let Some(first) = todos.first() {
        report.warn(
            &Loc::new(&src.output_name, *first, ""),
            format!(
                "{} `# TODO` line(s) left in the output (lines {}): fill them in before use",
                todos.len(),
                todos
                    .iter()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    }

    if let Some(c) = iam_note {
        report.note(&Loc::file(&src.output_name), c);
    }
    if report.has_errors() {
        return Err(ImportError::Rejected { report, toml });
    }
    match crate::config::load_str(&toml, &src.output_name) {
        Ok(loaded) => {
            for w in loaded.warnings {
                report.warn(
                    &Loc::new(&w.file, w.line, ""),
                    format!("generated config: {}", w.message),
                );
            }
            Ok(Imported {
                toml,
                config: loaded.config,
                report,
                secret: hb.secret,
            })
        }
        Err(e) => {
            for p in e.problems() {
                report.error(
                    &Loc::new(&p.file, p.line, ""),
                    format!("the generated config does not load: {}", p.message),
                );
            }
            Err(ImportError::Rejected { report, toml })
        }
    }
}

/// The EC2 rights the imported cluster needs, for the report: the seed's `updateEIP` role
/// lacked `ec2:CreateTags`, which the partition witness writes.
fn doc_cluster_note(hb: &heartbeat::HeartbeatImport) -> Option<String> {
    hb.cluster.first()?;
    Some(
        "IAM: the instance role needs ec2:DescribeAddresses, ec2:AssociateAddress, \
         ec2:DisassociateAddress, ec2:DescribeNetworkInterfaces, ec2:AssignPrivateIpAddresses \
         (aws.ensure_secondary_ip) and, for the partition witness (cluster.witness, on by \
         default), ec2:CreateTags on network interfaces (tag key edgelb:witness) plus \
         ec2:DescribeNetworkInterfaces and ec2:DescribeInstanceStatus; the seed's EIP policy has no ec2:CreateTags. \
         deploy/iam-policy.json has exactly these"
            .into(),
    )
}

/// Writes `secret` to `path` readable by the owner only.
pub fn write_key(path: &Path, secret: &str) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    // An existing file keeps its mode on open; the secret must not stay readable by others.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    f.write_all(secret.as_bytes())?;
    f.write_all(b"\n")?;
    Ok(())
}

/// `edgelb import`: writes the TOML (to `-o` or stdout), the secret to the key file, and the
/// report to stderr. Exit status: 0 clean, 2 with warnings, 1 failed (nothing written).
pub fn run(args: &ImportArgs) -> ExitCode {
    let code = run_inner(args, &mut std::io::stdout(), &mut std::io::stderr());
    ExitCode::from(code)
}

/// [`run`] with its output streams passed in (for tests); returns the exit status.
pub fn run_inner(
    args: &ImportArgs,
    stdout: &mut dyn std::io::Write,
    stderr: &mut dyn std::io::Write,
) -> u8 {
    let src = match read_sources(args) {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(stderr, "edgelb import: {e}");
            return EXIT_FAILED;
        }
    };
    let key_path = PathBuf::from(&src.heartbeat.key_file);
    match import_sources(src) {
        Err(ImportError::Read { file, reason }) => {
            let _ = writeln!(stderr, "edgelb import: {file}: cannot read: {reason}");
            EXIT_FAILED
        }
        Err(ImportError::Rejected { report, .. }) => {
            let _ = stderr.write_all(report.render().as_bytes());
            let _ = writeln!(stderr, "edgelb import: could not import; nothing written");
            EXIT_FAILED
        }
        Ok(imp) => {
            let _ = stderr.write_all(imp.report.render().as_bytes());
            if let Some(secret) = &imp.secret {
                if let Err(e) = write_key(&key_path, secret) {
                    let _ = writeln!(
                        stderr,
                        "edgelb import: {}: cannot write the cluster key: {e}",
                        key_path.display()
                    );
                    return EXIT_FAILED;
                }
                let _ = writeln!(
                    stderr,
                    "cluster secret written to {} (mode 0600)",
                    key_path.display()
                );
            }
            match &args.output {
                Some(p) => {
                    if let Err(e) = std::fs::write(p, &imp.toml) {
                        let _ =
                            writeln!(stderr, "edgelb import: {}: cannot write: {e}", p.display());
                        return EXIT_FAILED;
                    }
                    let _ = writeln!(stderr, "configuration written to {}", p.display());
                }
                None => {
                    if stdout.write_all(imp.toml.as_bytes()).is_err() {
                        return EXIT_FAILED;
                    }
                }
            }
            imp.report.exit_code()
        }
    }
}
