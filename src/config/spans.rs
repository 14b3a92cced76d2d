//! Maps a key path (`listen[0].server[2].address`) back to its line in the TOML source, so every
//! config problem can be reported as `file:line: reason`.

use toml_edit::{ImDocument, Item, Table, Value};

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

pub type KeyPath = Vec<Seg>;

pub fn key(k: &str) -> Seg {
    Seg::Key(k.to_string())
}

/// `listen[0].server[2].address`
pub fn display_path(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// An index from byte offsets to 1-based line numbers plus the parsed document for span lookups.
pub struct SourceMap<'a> {
    text: &'a str,
    doc: Option<ImDocument<&'a str>>,
}

impl<'a> SourceMap<'a> {
    pub fn new(text: &'a str) -> Self {
        Self {
            text,
            doc: ImDocument::parse(text).ok(),
        }
    }

    pub fn line_of_offset(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    /// Line of the deepest element of `path` that exists in the document (falls back to the
    /// nearest enclosing table, then to line 1).
    pub fn line_of(&self, path: &[Seg]) -> usize {
        let Some(doc) = &self.doc else { return 1 };
        let mut best: Option<usize> = None;
        let mut cur = Cursor::Table(doc.as_table());
        for seg in path {
            let next = match (&cur, seg) {
                (Cursor::Table(t), Seg::Key(k)) => {
                    if let Some(span) = t.key(k).and_then(|k| k.span()) {
                        best = Some(span.start);
                    }
                    t.get(k).map(Cursor::from_item)
                }
                (Cursor::Inline(t), Seg::Key(k)) => {
                    if let Some(span) = t.key(k).and_then(|k| k.span()) {
                        best = Some(span.start);
                    }
                    t.get(k).map(Cursor::from_value)
                }
                (Cursor::Tables(a), Seg::Index(i)) => a.get(*i).map(|t| {
                    if let Some(span) = t.span() {
                        best = Some(span.start);
                    }
                    Cursor::Table(t)
                }),
                (Cursor::Array(a), Seg::Index(i)) => a.get(*i).map(|v| {
                    if let Some(span) = v.span() {
                        best = Some(span.start);
                    }
                    Cursor::from_value(v)
                }),
                _ => None,
            };
            match next {
                Some(n) => cur = n,
                None => break,
            }
        }
        best.map(|o| self.line_of_offset(o)).unwrap_or(1)
    }
}

enum Cursor<'d> {
    Table(&'d Table),
    Inline(&'d toml_edit::InlineTable),
    Tables(&'d toml_edit::ArrayOfTables),
    Array(&'d toml_edit::Array),
    Leaf,
}

impl<'d> Cursor<'d> {
    fn from_item(item: &'d Item) -> Self {
        match item {
            Item::Table(t) => Cursor::Table(t),
            Item::ArrayOfTables(a) => Cursor::Tables(a),
            Item::Value(v) => Cursor::from_value(v),
            Item::None => Cursor::Leaf,
        }
    }
    fn from_value(v: &'d Value) -> Self {
        match v {
            Value::InlineTable(t) => Cursor::Inline(t),
            Value::Array(a) => Cursor::Array(a),
            _ => Cursor::Leaf,
        }
    }
}
