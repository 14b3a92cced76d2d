//! Reading a config file: TOML parse, typed deserialisation, unknown keys, then validation.
//! Every problem found is reported at once with `file:line: reason`; a file with any error
//! yields no `Config` at all (a reload never half-applies).
//!
//! serde stops at the first type error, so a file is deserialised in rounds: each error is
//! recorded and the `key = value` it points at is blanked out (same bytes, same line numbers),
//! then the next round finds the next error. Unknown keys are errors too (HAProxy refuses
//! unknown keywords), with a "did you mean" from `keys.rs`.

use std::fmt;
use std::ops::Range;
use std::path::Path;

use super::keys;
use super::spans::{display_path, KeyPath, Seg, SourceMap};
use super::validate::validate;
use super::Config;

/// Most problems reported for one file (later rounds are not tried).
const MAX_PROBLEMS: usize = 50;

/// A validated configuration plus the warnings found on the way.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<ConfigProblem>,
    pub source: String,
}

/// One problem, located. `line` 0 means the problem is about the file as a whole (it cannot
/// be read) and is shown as `file: reason`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConfigProblem {
    pub file: String,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {reason}")]
    Read { file: String, reason: String },
    #[error("{}", render(.0))]
    Invalid(Vec<ConfigProblem>),
}

impl ConfigError {
    pub fn problems(&self) -> Vec<ConfigProblem> {
        match self {
            ConfigError::Read { file, reason } => vec![ConfigProblem {
                file: file.clone(),
                line: 0,
                message: format!("cannot read: {reason}"),
            }],
            ConfigError::Invalid(p) => p.clone(),
        }
    }
}

fn render(problems: &[ConfigProblem]) -> String {
    let mut out = String::new();
    for (i, p) in problems.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&p.to_string());
    }
    out
}

pub fn load_file(path: &Path) -> Result<Loaded, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        file: file.clone(),
        reason: e.to_string(),
    })?;
    load_str(&text, &file)
}

/// Parses and validates `text`; `file` is only used in messages.
pub fn load_str(text: &str, file: &str) -> Result<Loaded, ConfigError> {
    let map = SourceMap::new(text);
    let at = |line: usize, message: String| ConfigProblem {
        file: file.to_string(),
        line,
        message,
    };
    let mut problems: Vec<ConfigProblem> = Vec::new();
    let (config, ignored) = deserialize_all(text, |line, msg| problems.push(at(line, msg)));
    for p in &ignored {
        problems.push(at(map.line_of(p), keys::unknown_key_message(p)));
    }
    let Some(mut config) = config else {
        problems.sort_by_key(|p| p.line);
        return Err(ConfigError::Invalid(problems));
    };
    config.link_acme_cert_dirs();
    // Validation reads the typed config, so it only runs on a file whose every value had the
    // right type; unknown keys do not stop it (both are reported together).
    for (path, msg) in validate(&config) {
        let p = display_path(&path);
        let msg = if p.is_empty() {
            msg
        } else {
            format!("{p}: {msg}")
        };
        problems.push(at(map.line_of(&path), msg));
    }
    if !problems.is_empty() {
        problems.sort_by_key(|p| p.line);
        problems.dedup();
        return Err(ConfigError::Invalid(problems));
    }
    Ok(Loaded {
        config,
        warnings: Vec::new(),
        source: file.to_string(),
    })
}

/// Deserialises `text`, reporting each syntax or type error through `report(line, message)`
/// and blanking what it points at before trying again. Returns the config when a round
/// succeeds with nothing blanked, and the unknown keys of the last round.
fn deserialize_all(
    text: &str,
    mut report: impl FnMut(usize, String),
) -> (Option<Config>, Vec<KeyPath>) {
    let mut work = text.to_string();
    let mut blanked: Vec<Range<usize>> = Vec::new();
    let mut reported = 0;
    loop {
        let mut ignored: Vec<KeyPath> = Vec::new();
        let de = toml::Deserializer::new(&work);
        let parsed: Result<Config, toml::de::Error> =
            serde_ignored::deserialize(de, |p| ignored.push(to_key_path(&p)));
        let e = match parsed {
            Ok(c) if blanked.is_empty() => return (Some(c), ignored),
            Ok(_) => return (None, ignored),
            Err(e) => e,
        };
        let span = e.span().unwrap_or(0..0);
        let line = line_of_offset(&work, span.start);
        let message = e.message().trim().replace('\n', "; ");
        // A required key missing from a table we blanked a key of: the earlier error said it.
        let after_blank = message.starts_with("missing field")
            && table_region(&work, span.start)
                .is_some_and(|t| blanked.iter().any(|b| b.start >= t.start && b.end <= t.end));
        if !after_blank {
            report(line, with_key_name(&work, line, message));
            reported += 1;
        }
        let Some(range) = blank_range(&work, &span) else {
            return (None, Vec::new());
        };
        if reported >= MAX_PROBLEMS || blanked.contains(&range) {
            return (None, Vec::new());
        }
        blank(&mut work, &range);
        blanked.push(range);
    }
}

/// Names the key written on that line, which toml's message leaves out.
fn with_key_name(text: &str, line: usize, message: String) -> String {
    match text
        .lines()
        .nth(line.saturating_sub(1))
        .and_then(|l| l.split_once('='))
        .map(|(k, _)| k.trim())
        .filter(|k| !k.is_empty() && !k.starts_with('[') && !k.starts_with('#'))
    {
        Some(k) => format!("`{k}`: {message}"),
        None => message,
    }
}

fn line_of_offset(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// What to blank so the next round gets past this error: the `key = value` entry holding the
/// span (a whole table when the error is about the table itself), else the span's lines.
fn blank_range(text: &str, span: &Range<usize>) -> Option<Range<usize>> {
    let Ok(doc) = toml_edit::ImDocument::parse(text) else {
        // A syntax error: blank the line it starts on.
        return Some(whole_lines(text, span.start, span.start));
    };
    let mut best: Option<Range<usize>> = None;
    collect_entries(doc.as_table(), span, &mut best);
    if let Some(r) = best {
        return Some(whole_lines(text, r.start, r.end.saturating_sub(1)));
    }
    table_region(text, span.start)
}

/// The smallest `key = value` entry of a (non-inline) table whose bytes contain `span`.
fn collect_entries(table: &toml_edit::Table, span: &Range<usize>, best: &mut Option<Range<usize>>) {
    use toml_edit::Item;
    for (k, item) in table.iter() {
        match item {
            Item::Value(v) => {
                let key = table.key(k).and_then(|k| k.span());
                if let (Some(ks), Some(vs)) = (key, v.span()) {
                    let r = ks.start.min(vs.start)..vs.end.max(ks.end);
                    let inside = r.start <= span.start && span.end <= r.end;
                    let smaller = best.as_ref().is_none_or(|b| r.len() < b.len());
                    if inside && smaller {
                        *best = Some(r);
                    }
                }
            }
            Item::Table(t) => collect_entries(t, span, best),
            Item::ArrayOfTables(a) => {
                for t in a.iter() {
                    collect_entries(t, span, best);
                }
            }
            Item::None => {}
        }
    }
}

/// From the start of the line holding byte `first` to the end of the line holding `last`.
fn whole_lines(text: &str, first: usize, last: usize) -> Range<usize> {
    let first = first.min(text.len());
    let last = last.max(first).min(text.len());
    let start = text[..first].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let end = text[last..]
        .find('\n')
        .map(|i| last + i)
        .unwrap_or(text.len());
    start..end
}

/// The table holding `offset`: its header line through the line before the next header that
/// is not one of its sub-tables (`[listen.health]` belongs to the `[[listen]]` above it).
fn table_region(text: &str, offset: usize) -> Option<Range<usize>> {
    let mut headers: Vec<(usize, String)> = Vec::new();
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        let t = line.trim_start();
        if t.starts_with('[') {
            let name = t
                .trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or("")
                .trim()
                .to_string();
            headers.push((pos, name));
        }
        pos += line.len();
    }
    let idx = headers.iter().rposition(|(p, _)| *p <= offset)?;
    let (start, name) = &headers[idx];
    let prefix = format!("{name}.");
    let end = headers[idx + 1..]
        .iter()
        .find(|(_, n)| !n.starts_with(&prefix))
        .map(|(p, _)| *p)
        .unwrap_or(text.len());
    Some(*start..end)
}

/// Replaces every byte of `r` except newlines with a space (lines keep their numbers).
fn blank(text: &mut String, r: &Range<usize>) {
    let blanked: String = text[r.clone()]
        .chars()
        .flat_map(|c| {
            let (ch, n) = if c == '\n' {
                ('\n', 1)
            } else {
                (' ', c.len_utf8())
            };
            std::iter::repeat_n(ch, n)
        })
        .collect();
    text.replace_range(r.clone(), &blanked);
}

fn to_key_path(p: &serde_ignored::Path<'_>) -> KeyPath {
    use serde_ignored::Path as P;
    let mut out = match p {
        P::Root => return Vec::new(),
        P::Seq { parent, .. }
        | P::Map { parent, .. }
        | P::Some { parent }
        | P::NewtypeStruct { parent }
        | P::NewtypeVariant { parent } => to_key_path(parent),
    };
    match p {
        P::Seq { index, .. } => out.push(Seg::Index(*index)),
        P::Map { key, .. } => out.push(Seg::Key(key.clone())),
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<String> {
        match load_str(text, "e.toml") {
            Ok(_) => Vec::new(),
            Err(e) => e.problems().iter().map(|p| p.to_string()).collect(),
        }
    }

    const LISTEN: &str = "[[listen]]\nname = \"web\"\nbind = [\"127.0.0.1:8080\"]\n";

    #[test]
    fn every_type_error_is_reported_with_its_line() {
        let text = format!(
            "[global]\nmaxconn = \"lots\"\n{LISTEN}retries = \"three\"\n\
             [[listen.server]]\nname = \"a\"\naddress = 5\n\
             [[listen.server]]\nname = \"b\"\naddress = \"127.0.0.1:1\"\nweight = \"heavy\"\n"
        );
        let p = problems(&text);
        assert_eq!(p.len(), 4, "{p:#?}");
        assert!(p[0].starts_with("e.toml:2: `maxconn`:"), "{p:#?}");
        assert!(p[1].starts_with("e.toml:6: `retries`:"), "{p:#?}");
        assert!(p[2].starts_with("e.toml:9: `address`:"), "{p:#?}");
        assert!(p[3].starts_with("e.toml:13: `weight`:"), "{p:#?}");
    }

    #[test]
    fn unknown_keys_are_errors_with_a_suggestion() {
        let text = format!(
            "{LISTEN}[listen.healthcheck]\ninter = \"1s\"\n[[listen.server]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\nwieght = 2\n"
        );
        let p = problems(&text);
        assert_eq!(
            p,
            vec![
                "e.toml:4: unknown key `listen[0].healthcheck`: did you mean `health`?",
                "e.toml:9: unknown key `listen[0].server[0].wieght`: did you mean `weight`?",
            ]
        );
    }

    #[test]
    fn type_errors_unknown_keys_and_validation_come_together() {
        let text = format!("[global]\nmaxconn = \"x\"\nbogus = 1\n{LISTEN}");
        let p = problems(&text);
        assert_eq!(p.len(), 2, "{p:#?}");
        // With every value typed, unknown keys and validation errors are reported together.
        let text = "[global]\nbogus = 1\n[[listen]]\nname = \"web\"\nbind = [\"nonsense\"]\n";
        let p = problems(text);
        assert_eq!(p.len(), 2, "{p:#?}");
        assert!(p[0].starts_with("e.toml:2: unknown key"), "{p:#?}");
        assert!(p[1].starts_with("e.toml:5:"), "{p:#?}");
    }

    #[test]
    fn syntax_errors_do_not_hide_later_ones() {
        let text = format!("[global]\nmaxconn = \n{LISTEN}retries = \"x\"\n");
        let p = problems(&text);
        assert_eq!(p.len(), 2, "{p:#?}");
        assert!(p[0].starts_with("e.toml:2:"), "{p:#?}");
        assert!(p[1].starts_with("e.toml:6: `retries`"), "{p:#?}");
    }

    /// A name goes into every access-log line: a control character in it is an error at its
    /// line (a space is not: HAProxy's quoted `server 'web 1'` imports as it is).
    #[test]
    fn control_characters_in_listen_and_server_names_are_errors() {
        let text = "[[listen]]\nname = \"web\\nx\"\nbind = [\"127.0.0.1:8080\"]\n\
                    [[listen.server]]\nname = \"a\\u0007\"\naddress = \"127.0.0.1:1\"\n\
                    [[listen.server]]\nname = \"web 1\"\naddress = \"127.0.0.1:2\"\n";
        let p = problems(text);
        assert_eq!(p.len(), 2, "{p:#?}");
        assert!(
            p[0].starts_with("e.toml:2: ") && p[0].contains("control characters"),
            "{p:#?}"
        );
        assert!(
            p[1].starts_with("e.toml:5: ") && p[1].contains("control characters"),
            "{p:#?}"
        );
    }

    #[test]
    fn a_missing_file_names_the_file_without_a_line() {
        let e = load_file(Path::new("/nonexistent/edgelb.toml")).unwrap_err();
        let p = e.problems();
        assert_eq!(p.len(), 1);
        let shown = p[0].to_string();
        assert!(
            shown.starts_with("/nonexistent/edgelb.toml: cannot read: "),
            "{shown}"
        );
        assert!(!shown.contains(":0"), "{shown}");
    }
}
