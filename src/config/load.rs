//! Reading a config file: TOML parse, typed deserialisation with unknown keys collected as
//! warnings, then validation. Every problem found is reported at once with `file:line: reason`;
//! a file with any error yields no `Config` at all (a reload never half-applies).

use std::fmt;
use std::path::Path;

use super::spans::{display_path, KeyPath, Seg, SourceMap};
use super::validate::validate;
use super::Config;

/// A validated configuration plus the warnings found on the way.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<ConfigProblem>,
    pub source: String,
}

/// One problem, located.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConfigProblem {
    pub file: String,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
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
    let at = |path: &[Seg], message: String| ConfigProblem {
        file: file.to_string(),
        line: map.line_of(path),
        message,
    };

    let mut ignored: Vec<KeyPath> = Vec::new();
    let de = toml::Deserializer::new(text);
    let parsed: Result<Config, toml::de::Error> = serde_ignored::deserialize(de, |p| {
        ignored.push(to_key_path(&p));
    });
    let config = match parsed {
        Ok(c) => c,
        Err(e) => {
            let line = e.span().map(|s| map.line_of_offset(s.start)).unwrap_or(1);
            let mut msg = e.message().trim().to_string();
            // Name the key written on that line, which toml's message leaves out.
            if let Some(k) = text
                .lines()
                .nth(line.saturating_sub(1))
                .and_then(|l| l.split_once('='))
                .map(|(k, _)| k.trim())
                .filter(|k| !k.is_empty() && !k.starts_with('['))
            {
                msg = format!("`{k}`: {msg}");
            }
            return Err(ConfigError::Invalid(vec![ConfigProblem {
                file: file.to_string(),
                line,
                message: msg,
            }]));
        }
    };
    let warnings: Vec<ConfigProblem> = ignored
        .iter()
        .map(|p| at(p, format!("unknown key `{}` (ignored)", display_path(p))))
        .collect();

    let errors = validate(&config);
    if !errors.is_empty() {
        let mut problems: Vec<ConfigProblem> = errors
            .into_iter()
            .map(|(path, msg)| {
                let p = display_path(&path);
                at(
                    &path,
                    if p.is_empty() {
                        msg
                    } else {
                        format!("{p}: {msg}")
                    },
                )
            })
            .collect();
        problems.sort_by_key(|p| p.line);
        return Err(ConfigError::Invalid(problems));
    }
    Ok(Loaded {
        config,
        warnings,
        source: file.to_string(),
    })
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
