//! Linux-HA Heartbeat (R1 mode) sources: `ha.cf` (timers, `udpport`/`ucast`, `node`,
//! `auto_failback`), `authkeys` (the active shared secret), `haresources` (which node owns which
//! resource) and the `updateEIPn` resource scripts (allocation id, ENI, private IPs). Produces
//! `[cluster]`, `[[cluster.node]]`, `[[eip]]` and `[aws]` tables.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use super::emit::{format_duration, str_list, Table, Value};
use super::report::{Loc, Report};

/// One input file.
#[derive(Debug, Clone)]
pub struct Source {
    /// The name shown in the report (the path as given).
    pub name: String,
    pub text: String,
    /// Unix permission bits, when known (authkeys must not be group/world-readable).
    pub mode: Option<u32>,
}

/// One `updateEIPn` resource script.
#[derive(Debug, Clone)]
pub struct Script {
    /// The resource name `haresources` uses (the file name).
    pub resource: String,
    /// The node whose `/etc/ha.d/resource.d` it came from, when the directory layout says so
    /// (`DIR/<node>/updateEIP1`).
    pub node: Option<String>,
    pub source: Source,
}

/// The Heartbeat sources of an import.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub ha_cf: Option<Source>,
    pub authkeys: Option<Source>,
    pub haresources: Option<Source>,
    pub scripts: Vec<Script>,
    /// `--node`: the node the flat script directory belongs to.
    pub node: Option<String>,
    /// Where the cluster secret goes (`cluster.auth_key_file`).
    pub key_file: String,
}

/// What the Heartbeat half of an import produces.
#[derive(Debug, Clone, Default)]
pub struct HeartbeatImport {
    /// `[cluster]` then its `[[cluster.node]]` tables.
    pub cluster: Vec<Table>,
    pub eips: Vec<Table>,
    pub aws: Option<Table>,
    /// The active authkeys secret, to be written to `key_file`.
    pub secret: Option<String>,
    pub report: Report,
}

/// Heartbeat time: a plain number is seconds (fractions allowed), `NNNms` milliseconds.
pub fn parse_hb_time(s: &str) -> Result<Duration, String> {
    let (num, scale) = if let Some(n) = s.strip_suffix("ms").or_else(|| s.strip_suffix("msec")) {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix("us").or_else(|| s.strip_suffix("usec")) {
        (n, 1e-6)
    } else if let Some(n) = s.strip_suffix("sec").or_else(|| s.strip_suffix('s')) {
        (n, 1.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num.parse().map_err(|_| {
        format!("invalid time {s:?}: expected seconds (2, 0.5) or milliseconds (500ms)")
    })?;
    if !v.is_finite() || !(0.0..=1e9).contains(&v) {
        return Err(format!("invalid time {s:?}"));
    }
    Ok(Duration::from_micros((v * scale * 1e6).round() as u64))
}

/// Lines without comments, with their 1-based numbers. `\` at the end continues a line.
fn lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let body = raw.split('#').next().unwrap_or("").trim();
        let (start, mut acc) = pending.take().unwrap_or((i + 1, String::new()));
        if let Some(b) = body.strip_suffix('\\') {
            acc.push_str(b);
            acc.push(' ');
            pending = Some((start, acc));
            continue;
        }
        acc.push_str(body);
        if !acc.trim().is_empty() {
            out.push((start, acc.trim().to_string()));
        }
    }
    if let Some((n, acc)) = pending {
        if !acc.trim().is_empty() {
            out.push((n, acc.trim().to_string()));
        }
    }
    out
}

#[derive(Debug, Clone)]
struct Ucast {
    ip: IpAddr,
    port: u16,
    at: Loc,
}

#[derive(Debug, Clone, Default)]
struct NodeInfo {
    eni: Option<(String, Loc)>,
    primary: Option<(Ipv4Addr, Loc)>,
    secondary: Option<(Ipv4Addr, Loc)>,
    addresses: Vec<Ucast>,
    /// How the addresses were assigned, for the comment above them.
    why: Vec<String>,
}

/// Variables of a resource script (`NAME=value`, `export NAME=value`).
fn script_vars(text: &str) -> HashMap<String, (String, usize)> {
    let mut vars = HashMap::new();
    for (i, raw) in text.lines().enumerate() {
        let t = raw.trim();
        let t = t.strip_prefix("export ").unwrap_or(t).trim_start();
        let Some((name, rest)) = t.split_once('=') else {
            continue;
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            continue;
        }
        let rest = rest.trim();
        let value = if let Some(q) = rest.strip_prefix('"') {
            q.split('"').next().unwrap_or("").to_string()
        } else if let Some(q) = rest.strip_prefix('\'') {
            q.split('\'').next().unwrap_or("").to_string()
        } else {
            rest.split_whitespace().next().unwrap_or("").to_string()
        };
        vars.entry(name.to_string()).or_insert((value, i + 1));
    }
    vars
}

/// `ip-10-0-0-5` (EC2's default host name) -> 10.0.0.5.
fn ip_from_hostname(name: &str) -> Option<Ipv4Addr> {
    let host = name.split('.').next()?;
    let rest = host.strip_prefix("ip-")?;
    rest.replace('-', ".").parse().ok()
}

struct ScriptInfo {
    resource: String,
    file: String,
    owner: Option<String>,
    node: Option<String>,
    vars: HashMap<String, (String, usize)>,
}

impl ScriptInfo {
    fn var(&self, n: &str) -> Option<(&str, Loc)> {
        self.vars
            .get(n)
            .map(|(v, line)| (v.as_str(), Loc::new(&self.file, *line, &format!("{n}={v}"))))
    }
}

pub fn import(inp: &Inputs) -> HeartbeatImport {
    let mut rep = Report::default();
    let mut out = HeartbeatImport::default();
    let Some(ha) = &inp.ha_cf else {
        for s in [&inp.authkeys, &inp.haresources].into_iter().flatten() {
            rep.warn(
                &Loc::file(&s.name),
                "ignored: without ha.cf there is no cluster to configure",
            );
        }
        out.report = rep;
        return out;
    };

    // ---- ha.cf
    let mut cl = Table::new("[cluster]");
    let mut keepalive: (Duration, Option<Loc>) = (Duration::from_secs(1), None);
    let mut deadtime: (Duration, Option<Loc>) = (Duration::from_secs(30), None);
    let mut warntime: Option<(Duration, Loc)> = None;
    let mut initdead: Option<(Duration, Loc)> = None;
    let mut udpport: (u16, Option<Loc>) = (694, None);
    let mut ports_seen: BTreeSet<u16> = BTreeSet::new();
    let mut ucasts: Vec<Ucast> = Vec::new();
    let mut nodes: Vec<(String, Loc)> = Vec::new();
    let mut auto_failback: Option<(bool, Loc)> = None;
    for (n, line) in lines(&ha.text) {
        let at = Loc::new(&ha.name, n, &line);
        let mut words = line.split_whitespace();
        let kw = words.next().unwrap_or("");
        let args: Vec<&str> = words.collect();
        let time = |rep: &mut Report| -> Option<Duration> {
            match args.first().map(|a| parse_hb_time(a)) {
                Some(Ok(d)) => Some(d),
                Some(Err(e)) => {
                    rep.error(&at, e);
                    None
                }
                None => {
                    rep.error(&at, format!("`{kw}` needs a value"));
                    None
                }
            }
        };
        match kw {
            "keepalive" => {
                if let Some(d) = time(&mut rep) {
                    keepalive = (d, Some(at.clone()));
                    rep.mapped(&at, format!("cluster.keepalive = \"{}\"", format_duration(d)));
                }
            }
            "deadtime" => {
                if let Some(d) = time(&mut rep) {
                    deadtime = (d, Some(at.clone()));
                    rep.mapped(&at, format!("cluster.deadtime = \"{}\"", format_duration(d)));
                }
            }
            "warntime" => {
                if let Some(d) = time(&mut rep) {
                    warntime = Some((d, at.clone()));
                    rep.mapped(&at, format!("cluster.warntime = \"{}\"", format_duration(d)));
                }
            }
            "initdead" => {
                if let Some(d) = time(&mut rep) {
                    initdead = Some((d, at.clone()));
                    rep.mapped(&at, format!("cluster.initdead = \"{}\"", format_duration(d)));
                }
            }
            "deadping" => rep.not_needed(&at, "edgelb has no ping nodes"),
            "udpport" => match args.first().and_then(|p| p.parse::<u16>().ok()).filter(|p| *p > 0) {
                Some(p) => {
                    if !ucasts.is_empty() {
                        rep.warn(
                            &at,
                            format!(
                                "udpport comes after ucast lines: Heartbeat reads ha.cf in order, so those lines still use port {}; kept that way",
                                udpport.0
                            ),
                        );
                    }
                    udpport = (p, Some(at.clone()));
                    rep.mapped(&at, format!("cluster.bind = \"0.0.0.0:{p}\" and the port of the ucast addresses after it"));
                }
                None => rep.error(&at, "invalid udpport"),
            },
            "ucast" => match args.as_slice() {
                [_dev, ip] => match ip.parse::<IpAddr>() {
                    Ok(ip) => {
                        ports_seen.insert(udpport.0);
                        ucasts.push(Ucast { ip, port: udpport.0, at: at.clone() });
                        rep.mapped(&at, format!("heartbeat address \"{}:{}\" of a [[cluster.node]]", ip, udpport.0));
                    }
                    Err(_) => rep.warn(&at, format!("{ip:?} is not an IP address: edgelb needs IP:PORT heartbeat addresses; not imported")),
                },
                _ => rep.error(&at, "expected `ucast DEVICE IP`"),
            },
            "bcast" | "mcast" | "mcast6" => rep.warn(
                &at,
                format!("{kw} heartbeats are not supported (EC2 has no broadcast/multicast): edgelb uses unicast to each node's addresses; not imported"),
            ),
            "serial" | "baud" => rep.warn(&at, "serial heartbeats are not supported; not imported"),
            "node" => {
                for name in &args {
                    if !nodes.iter().any(|(n, _)| n == name) {
                        nodes.push((name.to_string(), at.clone()));
                    }
                }
                rep.mapped(&at, format!("[[cluster.node]] name = {}", args.iter().map(|a| format!("{a:?}")).collect::<Vec<_>>().join(", ")));
            }
            "auto_failback" => match args.first().copied() {
                Some("on") => {
                    auto_failback = Some((true, at.clone()));
                    rep.mapped(&at, "cluster.auto_failback = true");
                }
                Some("off") => {
                    auto_failback = Some((false, at.clone()));
                    rep.mapped(&at, "cluster.auto_failback = false");
                }
                Some("legacy") => {
                    auto_failback = Some((true, at.clone()));
                    rep.warn(&at, "auto_failback legacy mapped to true (Heartbeat warns about legacy too); set it explicitly");
                }
                _ => rep.error(&at, "auto_failback must be on, off or legacy"),
            },
            "ping" | "ping_group" => rep.not_needed(
                &at,
                "edgelb's own health gating and the EC2 witness replace ping nodes (without ipfail they did nothing in Heartbeat)",
            ),
            "respawn" => {
                if args.iter().any(|a| a.ends_with("ipfail")) {
                    rep.not_needed(&at, "ipfail is replaced by edgelb's health gating and EC2 witness");
                } else {
                    rep.warn(&at, "respawned helper processes are not supported; run them as their own systemd units");
                }
            }
            "crm" => match args.first().copied() {
                Some("no" | "off" | "false") => rep.not_needed(&at, "edgelb replaces Heartbeat's R1 (haresources) mode"),
                _ => rep.warn(&at, "crm/Pacemaker mode is not supported: edgelb replaces haresources-style EIP failover only"),
            },
            "logfacility" | "logfile" | "debugfile" | "use_logd" | "debug" => {
                rep.not_needed(&at, "edgelb logs cluster events with the rest of its log (journal)")
            }
            "coredumps" | "realtime" | "uuidfrom" | "hbgenmethod" | "compression" | "traditional_compression"
            | "compression_threshold" | "max_rexmit_delay" | "msgfmt" | "conn_logd_time" | "apiauth" | "rtprio" => {
                rep.not_needed(&at, "Heartbeat internals with no edgelb equivalent needed")
            }
            "autojoin" => rep.warn(&at, "autojoin is not supported: list every node in [[cluster.node]]"),
            "stonith" | "stonith_host" | "watchdog" => rep.warn(&at, format!("{kw} is not supported; not imported")),
            other => rep.warn(&at, format!("unknown ha.cf directive `{other}`; not imported")),
        }
    }
    if ports_seen.len() > 1 {
        rep.warn(&Loc::file(&ha.name), "ucast lines use different ports (udpport moved between them); edgelb listens on one port");
    }

    // Heartbeat's own checks (config.c), reported where the values came from.
    let dt_loc = deadtime
        .1
        .clone()
        .or(keepalive.1.clone())
        .unwrap_or_else(|| Loc::file(&ha.name));
    if deadtime.0 <= keepalive.0 * 2 {
        rep.error(
            &dt_loc,
            format!(
                "deadtime ({}) must be greater than 2 x keepalive ({}), as Heartbeat requires",
                format_duration(deadtime.0),
                format_duration(keepalive.0)
            ),
        );
    }
    let (initdead_v, initdead_comment) = match &initdead {
        Some((d, at)) => (*d, at.comment()),
        None => {
            // Heartbeat's default when unset.
            let d = if deadtime.0 > Duration::from_secs(10) {
                deadtime.0
            } else if deadtime.0 < Duration::from_secs(6) {
                Duration::from_secs(12)
            } else {
                deadtime.0 * 2
            };
            (
                d,
                "Heartbeat's default initdead for this deadtime".to_string(),
            )
        }
    };
    if let Some((d, at)) = &initdead {
        if *d < deadtime.0 {
            rep.error(
                at,
                format!(
                    "initdead ({}) must be at least deadtime ({}), as Heartbeat requires",
                    format_duration(*d),
                    format_duration(deadtime.0)
                ),
            );
        } else if *d < Duration::from_secs(10) {
            rep.note(
                at,
                "initdead below 10s: Heartbeat warns the peer may not be up yet",
            );
        }
    }
    if let Some((w, at)) = &warntime {
        if *w >= deadtime.0 {
            rep.error(
                at,
                format!(
                    "warntime ({}) must be less than deadtime ({})",
                    format_duration(*w),
                    format_duration(deadtime.0)
                ),
            );
        }
    }
    cl.set(
        "bind",
        Value::Str(format!("0.0.0.0:{}", udpport.0)),
        origin(&udpport.1, "udpport"),
    );
    cl.set(
        "keepalive",
        Value::Dur(keepalive.0),
        origin(&keepalive.1, "keepalive"),
    );
    cl.set(
        "deadtime",
        Value::Dur(deadtime.0),
        origin(&deadtime.1, "deadtime"),
    );
    if let Some((w, at)) = &warntime {
        cl.set("warntime", Value::Dur(*w), at.comment());
    }
    cl.set("initdead", Value::Dur(initdead_v), initdead_comment);
    match &auto_failback {
        Some((v, at)) => cl.set("auto_failback", Value::Bool(*v), at.comment()),
        None => {
            rep.note(&Loc::file(&ha.name), "no auto_failback: Heartbeat's default (legacy) behaves as on for two nodes; auto_failback = true");
            cl.set(
                "auto_failback",
                Value::Bool(true),
                "Heartbeat's default".to_string(),
            );
        }
    }

    // ---- authkeys
    cl.set("auth_key_file", Value::Str(inp.key_file.clone()), None);
    match &inp.authkeys {
        Some(src) => {
            if let Some((secret, comment)) = authkeys(src, &mut rep) {
                out.secret = Some(secret);
                if let Some(f) = cl.fields.iter_mut().find(|f| f.key == "auth_key_file") {
                    f.comments.push(comment);
                    f.comments.push(
                        "the secret is written there (mode 0600): copy it to every node".into(),
                    );
                }
            }
        }
        None => {
            rep.warn(
                &Loc::file(&ha.name),
                "no authkeys given: create the cluster secret file yourself (TODO left)",
            );
            cl.todo(format!(
                "create {} (mode 0600) with the same random secret on every node, e.g. `head -c 32 /dev/urandom | base64`",
                inp.key_file
            ));
        }
    }

    // ---- haresources and scripts
    let mut owners: Vec<(String, String, Loc)> = Vec::new(); // (node, resource, loc)
    if let Some(hr) = &inp.haresources {
        for (n, line) in lines(&hr.text) {
            let at = Loc::new(&hr.name, n, &line);
            let mut words = line.split_whitespace();
            let Some(node) = words.next() else { continue };
            let res: Vec<&str> = words.collect();
            if res.is_empty() {
                rep.error(&at, "expected `NODE RESOURCE...`");
                continue;
            }
            if !nodes.iter().any(|(n, _)| n == node) {
                rep.warn(
                    &at,
                    format!("node {node:?} is not listed with `node` in ha.cf; added"),
                );
                nodes.push((node.to_string(), at.clone()));
            }
            for r in res {
                owners.push((node.to_string(), r.to_string(), at.clone()));
            }
        }
    }
    let scripts: Vec<ScriptInfo> = inp
        .scripts
        .iter()
        .map(|s| ScriptInfo {
            resource: s.resource.clone(),
            file: s.source.name.clone(),
            owner: owners
                .iter()
                .find(|(_, r, _)| *r == s.resource)
                .map(|(n, _, _)| n.clone()),
            node: s.node.clone(),
            vars: script_vars(&s.source.text),
        })
        .collect();
    for s in &scripts {
        for (k, (v, line)) in &s.vars {
            if v.contains("{{") || v.contains("{%") {
                rep.warn(
                    &Loc::new(&s.file, *line, &format!("{k}={v}")),
                    "unrendered template value; not usable",
                );
            }
        }
    }

    // ---- per-node facts from the scripts
    let names: Vec<String> = nodes.iter().map(|(n, _)| n.clone()).collect();
    let mut info: HashMap<String, NodeInfo> = names
        .iter()
        .map(|n| (n.clone(), NodeInfo::default()))
        .collect();
    let mut groups: Vec<(Option<String>, Vec<&ScriptInfo>)> = Vec::new();
    for s in &scripts {
        match groups.iter_mut().find(|(n, _)| *n == s.node) {
            Some(g) => g.1.push(s),
            None => groups.push((s.node.clone(), vec![s])),
        }
    }
    for (dir_node, group) in &groups {
        let first_file = group.first().map(|s| s.file.clone()).unwrap_or_default();
        let who = match (dir_node, &inp.node) {
            (Some(n), _) => Some((n.clone(), "directory name".to_string())),
            (None, Some(n)) => Some((n.clone(), "--node".to_string())),
            (None, None) => infer_script_node(&names, group, &ucasts),
        };
        let Some((x, how)) = who else {
            rep.warn(
                &Loc::file(&first_file),
                "cannot tell which node these scripts belong to (ENI_ID/PRIVATE_IP are per node): pass --node; eni_id/primary_ip/secondary_ip left as TODO",
            );
            continue;
        };
        if !info.contains_key(&x) {
            rep.error(
                &Loc::file(&first_file),
                format!("node {x:?} is not in ha.cf"),
            );
            continue;
        }
        if how != "directory name" && how != "--node" {
            rep.note(
                &Loc::file(&first_file),
                format!("these scripts are node {x:?}'s: {how}"),
            );
        }
        let ni = info.entry(x.clone()).or_default();
        for s in group {
            if let Some((eni, at)) = s.var("ENI_ID") {
                if eni.starts_with("eni-") {
                    match &ni.eni {
                        Some((e, _)) if e != eni => rep.warn(
                            &at,
                            format!("differs from {e} in another script of the same node"),
                        ),
                        Some(_) => {
                            rep.mapped(&at, format!("[[cluster.node]] {x:?}: eni_id (same)"))
                        }
                        None => {
                            rep.mapped(&at, format!("[[cluster.node]] {x:?}: eni_id = \"{eni}\""));
                            ni.eni = Some((eni.to_string(), at));
                        }
                    }
                }
            }
            if let Some((ip, at)) = s.var("PRIVATE_IP") {
                let Ok(ip) = ip.parse::<Ipv4Addr>() else {
                    continue;
                };
                let primary = s.owner.as_deref() == Some(x.as_str());
                let slot = if primary {
                    &mut ni.primary
                } else {
                    &mut ni.secondary
                };
                let key = if primary {
                    "primary_ip"
                } else {
                    "secondary_ip"
                };
                match slot {
                    Some((p, _)) if *p != ip => {
                        rep.warn(&at, format!("conflicts with {key} {p} from another script"))
                    }
                    Some(_) => {}
                    None => {
                        rep.mapped(
                            &at,
                            format!(
                                "[[cluster.node]] {x:?}: {key} = \"{ip}\" (the script of {} EIP)",
                                if primary { "its own" } else { "the peer's" }
                            ),
                        );
                        *slot = Some((ip, at));
                    }
                }
            }
        }
    }

    // ---- heartbeat addresses per node
    let mut taken: Vec<bool> = vec![false; ucasts.len()];
    for n in &names {
        let Some(ni) = info.get_mut(n) else { continue };
        let mine: Vec<Ipv4Addr> = [&ni.primary, &ni.secondary]
            .into_iter()
            .flatten()
            .map(|(ip, _)| *ip)
            .collect();
        for (i, u) in ucasts.iter().enumerate() {
            if !taken[i] && matches!(u.ip, IpAddr::V4(v) if mine.contains(&v)) {
                taken[i] = true;
                ni.addresses.push(u.clone());
            }
        }
        if !ni.addresses.is_empty() {
            ni.why
                .push("its PRIVATE_IPs in the updateEIP scripts".into());
        }
        if ni.addresses.is_empty() {
            if let Some(ip) = ip_from_hostname(n) {
                if let Some(i) = ucasts.iter().position(|u| u.ip == IpAddr::V4(ip)) {
                    if !taken[i] {
                        taken[i] = true;
                        ni.addresses.push(ucasts[i].clone());
                        ni.why.push("its EC2 host name".into());
                    }
                }
            }
        }
    }
    let rest: Vec<usize> = (0..ucasts.len()).filter(|i| !taken[*i]).collect();
    let without: Vec<&String> = names
        .iter()
        .filter(|n| info.get(*n).map(|i| i.addresses.is_empty()).unwrap_or(true))
        .collect();
    if !rest.is_empty() {
        if without.len() == 1 && names.len() > 1 {
            if let Some(ni) = info.get_mut(without[0]) {
                for i in &rest {
                    ni.addresses.push(ucasts[*i].clone());
                }
                ni.why.push("the ucast addresses no other node has".into());
            }
        } else {
            let list: Vec<String> = rest
                .iter()
                .map(|i| format!("{}:{}", ucasts[*i].ip, ucasts[*i].port))
                .collect();
            for i in &rest {
                rep.warn(&ucasts[*i].at, "cannot tell which node this address belongs to: pass --update-eip-dir (and --node); TODO left");
            }
            for n in &without {
                if let Some(ni) = info.get_mut(*n) {
                    ni.why.push(format!(
                        "TODO: pick this node's heartbeat addresses from: {}",
                        list.join(", ")
                    ));
                }
            }
        }
    }
    for n in &without {
        if rest.is_empty() && ucasts.is_empty() {
            rep.warn(
                &Loc::file(&ha.name),
                format!("no ucast addresses: node {n:?} has no heartbeat address; TODO left"),
            );
        }
    }

    let mut tables = vec![cl];
    for (n, at) in &nodes {
        let mut t = Table::new("[[cluster.node]]");
        t.set("name", Value::Str(n.clone()), at.comment());
        let ni = info.remove(n).unwrap_or_default();
        let todo_why: Vec<String> = ni
            .why
            .iter()
            .filter(|w| w.starts_with("TODO: "))
            .cloned()
            .collect();
        if !ni.addresses.is_empty() {
            let mut comments: Vec<String> = ni.addresses.iter().map(|u| u.at.comment()).collect();
            comments.push(format!("assigned to this node by {}", ni.why.join(" and ")));
            t.set(
                "address",
                str_list(ni.addresses.iter().map(|u| format!("{}:{}", u.ip, u.port))),
                None,
            );
            if let Some(f) = t.fields.iter_mut().find(|f| f.key == "address") {
                f.comments = comments;
            }
        }
        for w in todo_why {
            t.todo(w.trim_start_matches("TODO: ").to_string());
        }
        if let Some((e, at)) = &ni.eni {
            t.set("eni_id", Value::Str(e.clone()), at.comment());
        }
        if let Some((ip, at)) = &ni.primary {
            t.set("primary_ip", Value::Str(ip.to_string()), at.comment());
        }
        if let Some((ip, at)) = &ni.secondary {
            t.set("secondary_ip", Value::Str(ip.to_string()), at.comment());
        }
        if ni.eni.is_none() || ni.primary.is_none() || ni.secondary.is_none() {
            let missing: Vec<&str> = [
                ("eni_id", ni.eni.is_none()),
                ("primary_ip", ni.primary.is_none()),
                ("secondary_ip", ni.secondary.is_none()),
            ]
            .into_iter()
            .filter(|(_, m)| *m)
            .map(|(k, _)| k)
            .collect();
            t.todo(format!(
                "(optional) {} of {n}: not in the scripts given (they come from each node's own updateEIP scripts); on EC2 edgelb reads them from instance metadata and EC2",
                missing.join(", ")
            ));
            rep.note(at, format!("{} of node {n:?} not derivable from the scripts given; edgelb discovers them on EC2 (an `# optional:` comment is left)", missing.join(", ")));
        }
        tables.push(t);
    }
    if nodes.len() < 2 {
        rep.error(
            &Loc::file(&ha.name),
            "fewer than two `node` lines: a cluster needs this node and a peer",
        );
    }

    // ---- EIPs
    let mut region: Option<(String, Loc)> = None;
    for (node, res, at) in &owners {
        let script = scripts.iter().find(|s| s.resource == *res);
        let Some(s) = script else {
            if res.contains("::") || res.starts_with("IPaddr") {
                rep.warn(at, format!("resource {res:?} is not an EIP script: edgelb only moves Elastic IPs; not imported"));
            } else {
                rep.warn(at, format!("resource script {res:?} not found (pass --update-eip-dir): its [[eip]] is left as a TODO"));
                let mut t = Table::new("");
                t.comments.push(at.comment());
                t.todo(format!(
                    "[[eip]] owned by {node:?} (resource {res}): allocation_id unknown"
                ));
                out.eips.push(t);
            }
            continue;
        };
        let Some((alloc, aat)) = s
            .var("ALLOCATION_ID")
            .filter(|(a, _)| a.starts_with("eipalloc-"))
        else {
            rep.warn(at, format!("{} has no ALLOCATION_ID=eipalloc-...: not an EIP script edgelb understands; TODO left", s.file));
            let mut t = Table::new("");
            t.comments.push(at.comment());
            t.todo(format!(
                "[[eip]] owned by {node:?} (resource {res}): allocation_id unknown"
            ));
            out.eips.push(t);
            continue;
        };
        let mut t = Table::new("[[eip]]");
        t.set(
            "allocation_id",
            Value::Str(alloc.to_string()),
            aat.comment(),
        );
        t.set("owner", Value::Str(node.clone()), at.comment());
        rep.mapped(at, format!("[[eip]] owner = {node:?}"));
        rep.mapped(&aat, format!("[[eip]] allocation_id = \"{alloc}\""));
        if let Some((eip, eat)) = s.var("EIP") {
            if let Ok(ip) = eip.parse::<Ipv4Addr>() {
                t.set("public_ip", Value::Str(ip.to_string()), eat.comment());
                rep.mapped(&eat, format!("[[eip]] public_ip = \"{ip}\""));
            }
        }
        if let Some((r, rat)) = s.var("AWS_DEFAULT_REGION") {
            match &region {
                Some((prev, _)) if prev != r => {
                    rep.warn(&rat, format!("region differs from {prev}"))
                }
                Some(_) => rep.mapped(&rat, "aws.region (same)"),
                None => {
                    rep.mapped(&rat, format!("aws.region = \"{r}\""));
                    region = Some((r.to_string(), rat));
                }
            }
        }
        out.eips.push(t);
    }
    for s in &scripts {
        if s.owner.is_none() {
            rep.warn(
                &Loc::file(&s.file),
                format!(
                    "script {} is not used in haresources; not imported",
                    s.resource
                ),
            );
        }
    }
    if let Some((r, at)) = region {
        let mut t = Table::new("[aws]");
        t.set("region", Value::Str(r), at.comment());
        out.aws = Some(t);
    }
    out.cluster = tables;
    out.report = rep;
    out
}

/// Which node a flat directory of updateEIP scripts belongs to. On node X, the script of X's own
/// EIP associates it with X's primary IP and the peer's script with X's secondary IP, so
/// PRIVATE_IP alone fits either node; the tie is broken by the EC2 host name (`ip-A-B-C-D` =
/// primary IP) or by ha.cf's ucast order (rendered per node, primary first, in `node` order).
fn infer_script_node(
    names: &[String],
    group: &[&ScriptInfo],
    ucasts: &[Ucast],
) -> Option<(String, String)> {
    let mut found: Vec<(String, String)> = Vec::new();
    for x in names {
        let mut primaries = BTreeSet::new();
        let mut secondaries = BTreeSet::new();
        for s in group {
            let Some((ip, _)) = s.var("PRIVATE_IP") else {
                continue;
            };
            let Ok(ip) = ip.parse::<Ipv4Addr>() else {
                continue;
            };
            if s.owner.as_deref() == Some(x.as_str()) {
                primaries.insert(ip);
            } else {
                secondaries.insert(ip);
            }
        }
        if primaries.len() != 1
            || secondaries.len() > 1
            || primaries.intersection(&secondaries).next().is_some()
        {
            continue;
        }
        let Some(primary) = primaries.iter().next().copied() else {
            continue;
        };
        if ip_from_hostname(x) == Some(primary) {
            return Some((
                x.clone(),
                format!(
                    "its EC2 host name matches the PRIVATE_IP {primary} of its own EIP's script"
                ),
            ));
        }
        let per = if names.is_empty() || !ucasts.len().is_multiple_of(names.len()) {
            0
        } else {
            ucasts.len() / names.len()
        };
        let idx = names.iter().position(|n| n == x)?;
        let pos = |ip: Ipv4Addr| ucasts.iter().position(|u| u.ip == IpAddr::V4(ip));
        let Some(pp) = pos(primary) else { continue };
        let sec_ok = match secondaries.iter().next() {
            Some(s) => pos(*s)
                .map(|sp| sp > pp && per > 0 && sp / per == idx)
                .unwrap_or(false),
            None => true,
        };
        if per > 0 && pp / per == idx && pp % per == 0 && sec_ok {
            found.push((
                x.clone(),
                format!(
                    "the PRIVATE_IPs are its ucast addresses in ha.cf (node {} of {}, primary first); pass --node to say so explicitly",
                    idx + 1,
                    names.len()
                ),
            ));
        }
    }
    if found.len() == 1 {
        found.pop()
    } else {
        None
    }
}

/// The active secret of an authkeys file, with the comment for the output.
fn authkeys(src: &Source, rep: &mut Report) -> Option<(String, String)> {
    let file = Loc::file(&src.name);
    if let Some(mode) = src.mode {
        if mode & 0o077 != 0 {
            rep.warn(
                &file,
                format!("mode {:04o}: authkeys is readable by group/others (Heartbeat requires 0600); rotate the secret if others could read it", mode & 0o7777),
            );
        }
    }
    let mut active: Option<(u32, Loc)> = None;
    let mut keys: Vec<(u32, String, String, Loc)> = Vec::new();
    for (n, line) in lines(&src.text) {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or("");
        // Never echo the secret into the report.
        let shown = if first == "auth" {
            line.clone()
        } else {
            format!(
                "{} {} ****",
                first,
                line.split_whitespace().nth(1).unwrap_or("")
            )
        };
        let at = Loc::new(&src.name, n, &shown);
        if first == "auth" {
            match words.next().and_then(|k| k.parse::<u32>().ok()) {
                Some(k) => active = Some((k, at)),
                None => rep.error(&at, "`auth` needs a key number"),
            }
            continue;
        }
        let Ok(num) = first.parse::<u32>() else {
            rep.error(&at, "expected `auth N` or `N METHOD SECRET`");
            continue;
        };
        let method = words.next().unwrap_or("").to_ascii_lowercase();
        let secret = words.collect::<Vec<_>>().join(" ");
        keys.push((num, method, secret, at));
    }
    let Some((k, aat)) = active else {
        rep.error(&file, "no `auth N` line: no active key");
        return None;
    };
    let Some(key) = keys.iter().find(|(n, ..)| *n == k) else {
        rep.error(&aat, format!("key {k} is not defined"));
        return None;
    };
    let usable = |m: &str| m == "sha1" || m == "md5";
    let chosen = if usable(&key.1) {
        key
    } else if key.1 == "crc" {
        match keys
            .iter()
            .filter(|(_, m, s, _)| usable(m) && !s.is_empty())
            .max_by_key(|(_, m, ..)| m == "sha1")
        {
            Some(other) => {
                rep.warn(
                    &aat,
                    format!("the active key uses crc, which has no secret and authenticates nothing; key {} ({}) is used instead", other.0, other.1),
                );
                other
            }
            None => {
                rep.error(
                    &key.3,
                    "crc authentication is refused: it has no secret, so anyone on the network could take over the EIPs; add a `N sha1 SECRET` line and `auth N`",
                );
                return None;
            }
        }
    } else {
        rep.error(
            &key.3,
            format!("unknown authentication method {:?} (sha1, md5, crc)", key.1),
        );
        return None;
    };
    if chosen.2.is_empty() {
        rep.error(&chosen.3, "the key has no secret");
        return None;
    }
    rep.mapped(
        &aat,
        "the active key: its secret goes to the cluster.auth_key_file",
    );
    if chosen.1 == "md5" {
        rep.note(&chosen.3, "md5 key: edgelb keys its own HMAC-SHA256 with this secret, so only the secret carries over");
    } else {
        rep.mapped(
            &chosen.3,
            "cluster.auth_key_file (secret; edgelb authenticates with HMAC-SHA256 keyed by it)",
        );
    }
    for (n, _, _, at) in &keys {
        if *n != chosen.0 {
            rep.not_needed(at, "inactive key (only the active key is carried over)");
        }
    }
    Some((chosen.2.clone(), chosen.3.comment()))
}

/// Where a timer came from: its ha.cf line, or Heartbeat's default for `what`.
fn origin(at: &Option<Loc>, what: &str) -> Option<String> {
    Some(
        at.as_ref()
            .map(Loc::comment)
            .unwrap_or_else(|| format!("Heartbeat's default {what}")),
    )
}
