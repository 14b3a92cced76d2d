//! The keys each config table accepts, read from the serde types themselves (so a key added
//! to a struct is known here at once), and the "did you mean" suggestion for an unknown key.

use serde::de::{self, Deserialize, Deserializer, Visitor};

use super::spans::{display_path, Seg};
use super::tls::{CertFiles, Hsts, TlsSettings};
use super::{
    AcmeSection, AwsSection, ClusterNode, ClusterSection, Config, CookieSettings, Defaults,
    EipSection, GlobalSection, HealthSettings, HttpCheck, Listen, LogSection, NodeSection,
    ServerConfig, StatsSection,
};

/// The message for an unknown key at `path`: a suggestion from its own table when one is
/// close, else the table where that exact key belongs.
pub fn unknown_key_message(path: &[Seg]) -> String {
    let shown = display_path(path);
    let Some(Seg::Key(key)) = path.last() else {
        return format!("unknown key `{shown}`");
    };
    let table = table_of(&path[..path.len() - 1]);
    let known = known_keys(&table);
    if let Some(s) = suggest(key, &known) {
        return format!("unknown key `{shown}`: did you mean `{s}`?");
    }
    if let Some(other) = TABLES
        .iter()
        .find(|t| **t != table && known_keys(t).contains(&key.as_str()))
    {
        return format!("unknown key `{shown}`: `{key}` belongs in `[{other}]`");
    }
    if known.is_empty() {
        format!("unknown key `{shown}`")
    } else {
        format!("unknown key `{shown}` (known here: {})", known.join(", "))
    }
}

/// Every table of the config, by its path without indices.
const TABLES: &[&str] = &[
    "",
    "node",
    "global",
    "log",
    "defaults",
    "listen",
    "listen.cookie",
    "listen.forwardfor",
    "listen.health",
    "listen.health.http",
    "listen.server",
    "listen.tls",
    "listen.tls.certs",
    "listen.tls.hsts",
    "stats",
    "cluster",
    "cluster.node",
    "aws",
    "eip",
    "acme",
];

/// `listen[0].server[2]` -> `listen.server`.
fn table_of(path: &[Seg]) -> String {
    let keys: Vec<&str> = path
        .iter()
        .filter_map(|s| match s {
            Seg::Key(k) => Some(k.as_str()),
            Seg::Index(_) => None,
        })
        .collect();
    keys.join(".")
}

/// The keys the table accepts (empty for a path that is not a table).
pub fn known_keys(table: &str) -> Vec<&'static str> {
    match table {
        "" => fields::<Config>(),
        "node" => fields::<NodeSection>(),
        "global" => fields::<GlobalSection>(),
        "log" => fields::<LogSection>(),
        "defaults" => fields::<Defaults>(),
        "listen" => fields::<Listen>(),
        "listen.cookie" => fields::<CookieSettings>(),
        // `forwardfor` is `true` or a table (untagged, so serde names no fields).
        "listen.forwardfor" => vec!["except"],
        "listen.health" => fields::<HealthSettings>(),
        "listen.health.http" => fields::<HttpCheck>(),
        "listen.server" => fields::<ServerConfig>(),
        "listen.tls" => fields::<TlsSettings>(),
        "listen.tls.certs" => fields::<CertFiles>(),
        "listen.tls.hsts" => fields::<Hsts>(),
        "stats" => fields::<StatsSection>(),
        "cluster" => fields::<ClusterSection>(),
        "cluster.node" => fields::<ClusterNode>(),
        "aws" => fields::<AwsSection>(),
        "eip" => fields::<EipSection>(),
        "acme" => fields::<AcmeSection>(),
        _ => Vec::new(),
    }
}

/// The closest known key: within a third of its length in edits, or one a prefix of the other
/// (`healthcheck` -> `health`).
fn suggest<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    let key_l = key.to_ascii_lowercase();
    let mut best: Option<(usize, &'a str)> = None;
    for k in known {
        let d = edit_distance(&key_l, k);
        let close = d <= (k.len().max(key_l.len()) / 3).max(1)
            || (k.len() >= 3 && key_l.starts_with(k))
            || (key_l.len() >= 3 && k.starts_with(key_l.as_str()));
        if close && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, k));
        }
    }
    best.map(|(_, k)| k)
}

/// Levenshtein distance over bytes (config keys are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The field names serde's derive hands to `deserialize_struct`.
fn fields<'de, T: Deserialize<'de>>() -> Vec<&'static str> {
    match T::deserialize(FieldNames) {
        Err(Found(f)) => f,
        Ok(_) => Vec::new(),
    }
}

/// A deserializer that only records the field list of the struct asked for, then stops.
struct FieldNames;

#[derive(Debug)]
struct Found(Vec<&'static str>);

impl std::fmt::Display for Found {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "fields: {:?}", self.0)
    }
}

impl std::error::Error for Found {}

impl de::Error for Found {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Found(Vec::new())
    }
}

impl<'de> Deserializer<'de> for FieldNames {
    type Error = Found;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Found> {
        Err(Found(Vec::new()))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Found> {
        Err(Found(fields.to_vec()))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_knows_its_keys() {
        for t in TABLES {
            assert!(!known_keys(t).is_empty(), "table `{t}` has no keys");
        }
        assert!(known_keys("listen").contains(&"health"));
        assert!(known_keys("listen").contains(&"timeout_client"));
        assert!(known_keys("defaults").contains(&"retries"));
        assert!(known_keys("listen.server").contains(&"disabled"));
    }

    #[test]
    fn suggestions() {
        let listen = known_keys("listen");
        assert_eq!(suggest("healthcheck", &listen), Some("health"));
        assert_eq!(suggest("servers", &listen), Some("server"));
        assert_eq!(suggest("timeout_clinet", &listen), Some("timeout_client"));
        assert_eq!(suggest("zzz", &listen), None);
        let msg = unknown_key_message(&[Seg::Key("defaults".into()), Seg::Key("grace".into())]);
        assert!(msg.contains("belongs in `[global]`"), "{msg}");
    }
}
