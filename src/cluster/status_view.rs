//! Text rendering of the published cluster status (`Runtime::cluster_view`, served as
//! `"cluster"` in the stats API's `/stats.json`) for `edgelb status`: this node, a peer table
//! and an EIP table, then wire and EC2 API counters. Tolerant of missing fields, so an older or
//! newer node's JSON still renders.

use serde_json::Value;

/// Renders the whole `/stats.json` document (or just its `cluster` object).
pub fn render_stats(stats: &Value) -> String {
    match stats.get("cluster") {
        Some(Value::Null) => "this node runs no cluster (no [cluster] section)\n".to_string(),
        Some(c) => render_cluster(c),
        None if stats.get("me").is_some() => render_cluster(stats),
        None => "the stats API reports no cluster status\n".to_string(),
    }
}

fn s(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(x)) => x.clone(),
        Some(Value::Null) | None => "-".into(),
        Some(other) => other.to_string(),
    }
}

fn yes(v: &Value, key: &str) -> &'static str {
    match v.get(key).and_then(Value::as_bool) {
        Some(true) => "yes",
        Some(false) => "no",
        None => "-",
    }
}

fn ago(v: &Value, key: &str) -> String {
    match v.get(key).and_then(Value::as_u64) {
        Some(ms) if ms < 10_000 => format!("{ms}ms ago"),
        Some(ms) => format!("{}s ago", ms / 1000),
        None => "never".into(),
    }
}

fn placement(v: Option<&Value>) -> String {
    match v {
        Some(p) if !p.is_null() => format!("{}/{}", s(p, "eni_id"), s(p, "private_ip")),
        _ => "unassociated".into(),
    }
}

/// A left-aligned table with a header row.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            let w = widths.get(i).copied().unwrap_or(0);
            if i + 1 == cells.len() {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}  "));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        out.push_str(&line(r.clone()));
    }
    out
}

/// Renders the cluster object itself.
pub fn render_cluster(c: &Value) -> String {
    let mut out = String::new();
    let id = c.get("identity").cloned().unwrap_or(Value::Null);
    out.push_str(&format!(
        "node {}  phase {}  healthy {}  incarnation {}  witness {}\n",
        s(c, "me"),
        s(c, "phase"),
        yes(c, "healthy"),
        s(c, "incarnation"),
        match c.get("witness").and_then(Value::as_bool) {
            Some(true) => "on",
            Some(false) => "off",
            None => "-",
        }
    ));
    out.push_str(&format!(
        "  instance {}  ENI {}  primary {}  secondary {}  heartbeat {}\n\n",
        s(&id, "instance_id"),
        s(&id, "eni_id"),
        s(&id, "primary_ip"),
        s(&id, "secondary_ip"),
        s(c, "bind"),
    ));
    let empty = Vec::new();
    let peers = c.get("peers").and_then(Value::as_array).unwrap_or(&empty);
    let rows: Vec<Vec<String>> = peers
        .iter()
        .map(|p| {
            vec![
                s(p, "name"),
                s(p, "state"),
                ago(p, "last_heard_ago_ms"),
                yes(p, "serving").into(),
                format!("{}/{}", s(p, "healthy_backends"), s(p, "total_backends")),
                yes(p, "sees_us").into(),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "PEER",
            "STATE",
            "LAST HEARD",
            "SERVING",
            "BACKENDS",
            "SEES US",
        ],
        &rows,
    ));
    out.push('\n');
    let eips = c.get("eips").and_then(Value::as_array).unwrap_or(&empty);
    let rows: Vec<Vec<String>> = eips
        .iter()
        .map(|e| {
            let on = match e.get("observed_holder").and_then(Value::as_str) {
                Some(h) => format!("{h} ({})", placement(e.get("observed_placement"))),
                None => placement(e.get("observed_placement")),
            };
            vec![
                s(e, "allocation_id"),
                s(e, "owner"),
                on,
                s(e, "desired_holder"),
                s(e, "moves"),
                s(e, "reason"),
            ]
        })
        .collect();
    out.push_str(&table(
        &["EIP", "OWNER", "ON", "WANTED ON", "MOVES", "WHY"],
        &rows,
    ));
    if let Some(w) = c.get("wire").and_then(Value::as_object) {
        let parts: Vec<String> = w.iter().map(|(k, v)| format!("{k} {v}")).collect();
        out.push_str(&format!("\nheartbeats received: {}\n", parts.join(", ")));
    }
    if let Some(a) = c.get("api_calls").and_then(Value::as_object) {
        let parts: Vec<String> = a
            .iter()
            .filter(|(_, v)| v.get("calls").and_then(Value::as_u64).unwrap_or(0) > 0)
            .map(|(k, v)| format!("{k} {} ({} errors)", s(v, "calls"), s(v, "errors")))
            .collect();
        out.push_str(&format!(
            "EC2 API calls: {}\n",
            if parts.is_empty() {
                "none".to_string()
            } else {
                parts.join(", ")
            }
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_peers_and_eips() {
        let v = serde_json::json!({"cluster": {
            "me": "nodeA", "phase": "active", "healthy": true, "incarnation": 7, "witness": false,
            "bind": "127.0.0.1:694",
            "identity": {"instance_id": "i-1", "eni_id": "eni-a", "primary_ip": "10.0.1.10",
                         "secondary_ip": "10.0.1.11", "region": "us-east-1"},
            "peers": [{"name": "nodeB", "state": "Dead", "last_heard_ago_ms": 15300,
                       "serving": true, "healthy_backends": 1, "total_backends": 1,
                       "sees_us": false}],
            "eips": [{"allocation_id": "eipalloc-b", "owner": "nodeB",
                      "observed_holder": "nodeA",
                      "observed_placement": {"eni_id": "eni-a", "private_ip": "10.0.1.11"},
                      "desired_holder": "nodeA", "moves": 1, "reason": "owner down"}],
            "wire": {"accepted": 10, "bad_mac": 2},
            "api_calls": {"AssociateAddress": {"calls": 1, "attempts": 1, "errors": 0},
                          "CreateTags": {"calls": 0, "attempts": 0, "errors": 0}}
        }});
        let text = render_stats(&v);
        assert!(text.contains("node nodeA  phase active"), "{text}");
        assert!(text.contains("nodeB  Dead"), "{text}");
        assert!(text.contains("15s ago"), "{text}");
        assert!(text.contains("nodeA (eni-a/10.0.1.11)"), "{text}");
        assert!(text.contains("bad_mac 2"), "{text}");
        assert!(text.contains("AssociateAddress 1 (0 errors)"), "{text}");
        assert!(!text.contains("CreateTags"), "{text}");
    }

    #[test]
    fn no_cluster() {
        let text = render_stats(&serde_json::json!({"cluster": null}));
        assert!(text.contains("no cluster"));
        let text = render_stats(&serde_json::json!({"listens": []}));
        assert!(text.contains("no cluster status"));
    }
}
