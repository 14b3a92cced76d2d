//! The TOML writer of the importer. The generated file is meant to be read and kept by people, so
//! it is written by hand rather than serialised: each key carries a comment naming the source
//! directive(s) it came from, and anything that could not be derived is left as a `# TODO` line
//! where the key would go.

use std::fmt::Write as _;
use std::time::Duration;

/// A TOML value as the importer produces it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
    /// Written in humantime form (`"10s"`, `"1m 30s"`, `"500ms"`), as the config model reads it.
    Dur(Duration),
    List(Vec<Value>),
    /// `{ a = 1, b = "x" }`
    Inline(Vec<(String, Value)>),
}

impl Value {
    fn render(&self, out: &mut String) {
        match self {
            Value::Str(s) => out.push_str(&quote(s)),
            Value::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Value::Bool(b) => {
                let _ = write!(out, "{b}");
            }
            Value::Dur(d) => out.push_str(&quote(&format_duration(*d))),
            Value::List(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    v.render(out);
                }
                out.push(']');
            }
            Value::Inline(kvs) => {
                out.push_str("{ ");
                for (i, (k, v)) in kvs.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    out.push_str(&bare_key(k));
                    out.push_str(" = ");
                    v.render(out);
                }
                out.push_str(" }");
            }
        }
    }
}

/// `10s`, `1m 30s`, `250ms`: what `humantime_serde` parses back to the same duration.
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".into();
    }
    humantime::format_duration(d).to_string()
}

/// A TOML basic string with every character that needs it escaped.
pub fn quote(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn bare_key(k: &str) -> String {
    if !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        k.to_string()
    } else {
        quote(k)
    }
}

/// One `key = value` line with the comments written above it.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub key: String,
    pub value: Value,
    pub comments: Vec<String>,
}

/// One table (`[global]`, `[[listen]]`, `[listen.health]`...). An empty header is the root.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Table {
    pub header: String,
    /// Comment lines written above the header.
    pub comments: Vec<String>,
    pub fields: Vec<Field>,
    /// `# TODO` lines written after the fields (without the `# ` prefix).
    pub todos: Vec<String>,
}

impl Table {
    pub fn new(header: &str) -> Self {
        Self {
            header: header.to_string(),
            ..Self::default()
        }
    }

    /// Sets `key`, replacing an earlier value (later directives win, as in HAProxy) and keeping
    /// the comments of both so the reader sees what was overridden.
    pub fn set(&mut self, key: &str, value: Value, comment: impl Into<Option<String>>) {
        let comment = comment.into();
        if let Some(f) = self.fields.iter_mut().find(|f| f.key == key) {
            f.value = value;
            f.comments.extend(comment);
        } else {
            self.fields.push(Field {
                key: key.to_string(),
                value,
                comments: comment.into_iter().collect(),
            });
        }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.fields.iter().find(|f| f.key == key).map(|f| &f.value)
    }

    pub fn todo(&mut self, text: impl Into<String>) {
        self.todos.push(text.into());
    }

    fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.todos.is_empty() && self.comments.is_empty()
    }
}

/// A whole generated file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Doc {
    /// Comment lines at the top of the file.
    pub header: Vec<String>,
    pub tables: Vec<Table>,
}

impl Doc {
    pub fn render(&self) -> String {
        let mut out = String::new();
        for c in &self.header {
            push_comment(&mut out, c);
        }
        for t in &self.tables {
            // `[global]` with nothing in it says nothing; array tables must stay (they are items).
            if t.is_empty() && !t.header.starts_with("[[") {
                continue;
            }
            if !out.is_empty() {
                out.push('\n');
            }
            for c in &t.comments {
                push_comment(&mut out, c);
            }
            if !t.header.is_empty() {
                out.push_str(&t.header);
                out.push('\n');
            }
            for f in &t.fields {
                for c in &f.comments {
                    push_comment(&mut out, c);
                }
                out.push_str(&bare_key(&f.key));
                out.push_str(" = ");
                f.value.render(&mut out);
                out.push('\n');
            }
            for t in &t.todos {
                // An optional hint is not a TODO: the output works without it (exit 0).
                match t.strip_prefix("(optional) ") {
                    Some(hint) => push_comment(&mut out, &format!("optional: {hint}")),
                    None => push_comment(&mut out, &format!("TODO: {t}")),
                }
            }
        }
        out
    }
}

/// Comments may contain anything from the sources; a newline must not end the comment early.
fn push_comment(out: &mut String, text: &str) {
    for line in text.split(['\n', '\r']) {
        if line.is_empty() {
            out.push_str("#\n");
        } else {
            out.push_str("# ");
            // TOML forbids control characters in comments.
            out.extend(
                line.chars()
                    .map(|c| if c.is_control() && c != '\t' { '?' } else { c }),
            );
            out.push('\n');
        }
    }
}

/// `"a"`-lists are common enough to deserve a helper.
pub fn str_list<I: IntoIterator<Item = S>, S: Into<String>>(items: I) -> Value {
    Value::List(items.into_iter().map(|s| Value::Str(s.into())).collect())
}
