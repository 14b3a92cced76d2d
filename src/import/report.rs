//! The import report: one entry per source directive saying what became of it (the edgelb key it
//! maps to, why it is not needed, or why it could not be carried over), rendered as plain text
//! for stderr and golden files. The report also decides the exit status of `edgelb import`.

use std::fmt::Write as _;

/// What happened to one source directive. Ordered by severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Carried over to an edgelb key.
    Mapped,
    /// Irrelevant for edgelb by design; nothing is lost.
    NotNeeded,
    /// Carried over, but something about it is worth knowing (a default that differs, a
    /// replacement feature). Not a loss.
    Note,
    /// Not carried over, or carried over with different behaviour; a `# TODO` may be left in the
    /// output. Makes the exit status 2.
    Warning,
    /// The sources are unusable (syntax, invalid values, insecure keys). Makes the exit status 1.
    Error,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Entry {
    pub file: String,
    /// 1-based; 0 when the entry is about a whole file.
    pub line: usize,
    /// The directive as written (trimmed), empty for whole-file entries.
    pub source: String,
    pub kind: Kind,
    pub message: String,
}

impl Entry {
    pub fn location(&self) -> String {
        if self.line == 0 {
            self.file.clone()
        } else {
            format!("{}:{}", self.file, self.line)
        }
    }
}

impl std::fmt::Display for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let loc = self.location();
        let src = if self.source.is_empty() {
            String::new()
        } else {
            format!(" {}", self.source)
        };
        match self.kind {
            Kind::Mapped => write!(f, "{loc}{src} -> {}", self.message),
            Kind::NotNeeded => write!(f, "{loc}{src}: not needed: {}", self.message),
            Kind::Note => write!(f, "{loc}{src}: note: {}", self.message),
            Kind::Warning => write!(f, "{loc}{src}: warning: {}", self.message),
            Kind::Error => write!(f, "{loc}{src}: error: {}", self.message),
        }
    }
}

/// Where a directive came from: file name (as shown to the user), line, and its text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Loc {
    pub file: String,
    pub line: usize,
    pub text: String,
}

impl Loc {
    pub fn new(file: &str, line: usize, text: &str) -> Self {
        Self {
            file: file.to_string(),
            line,
            text: text.trim().to_string(),
        }
    }
    /// A whole-file location.
    pub fn file(file: &str) -> Self {
        Self::new(file, 0, "")
    }
    /// `file:line text`, the form used in the comments of the generated TOML.
    pub fn comment(&self) -> String {
        if self.line == 0 {
            self.file.clone()
        } else {
            format!("{}:{} {}", self.file, self.line, self.text)
        }
    }
}

/// Everything the importer has to say, in the order it was found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    pub entries: Vec<Entry>,
}

/// Exit status: imported with nothing lost.
pub const EXIT_OK: u8 = 0;
/// Exit status: could not import.
pub const EXIT_FAILED: u8 = 1;
/// Exit status: imported, but with warnings (unsupported directives, TODOs left in the output).
pub const EXIT_WARNINGS: u8 = 2;

impl Report {
    pub fn push(&mut self, loc: &Loc, kind: Kind, message: impl Into<String>) {
        self.entries.push(Entry {
            file: loc.file.clone(),
            line: loc.line,
            source: loc.text.clone(),
            kind,
            message: message.into(),
        });
    }
    pub fn mapped(&mut self, loc: &Loc, target: impl Into<String>) {
        self.push(loc, Kind::Mapped, target);
    }
    pub fn not_needed(&mut self, loc: &Loc, why: impl Into<String>) {
        self.push(loc, Kind::NotNeeded, why);
    }
    pub fn note(&mut self, loc: &Loc, msg: impl Into<String>) {
        self.push(loc, Kind::Note, msg);
    }
    pub fn warn(&mut self, loc: &Loc, msg: impl Into<String>) {
        self.push(loc, Kind::Warning, msg);
    }
    pub fn error(&mut self, loc: &Loc, msg: impl Into<String>) {
        self.push(loc, Kind::Error, msg);
    }

    pub fn extend(&mut self, other: Report) {
        self.entries.extend(other.entries);
    }

    pub fn count(&self, kind: Kind) -> usize {
        self.entries.iter().filter(|e| e.kind == kind).count()
    }
    pub fn has_errors(&self) -> bool {
        self.count(Kind::Error) > 0
    }
    pub fn has_warnings(&self) -> bool {
        self.count(Kind::Warning) > 0
    }

    /// 0 clean, 2 warnings, 1 errors (see [`EXIT_OK`], [`EXIT_WARNINGS`], [`EXIT_FAILED`]).
    pub fn exit_code(&self) -> u8 {
        if self.has_errors() {
            EXIT_FAILED
        } else if self.has_warnings() {
            EXIT_WARNINGS
        } else {
            EXIT_OK
        }
    }

    /// Only the entries of `kind`.
    pub fn of_kind(&self, kind: Kind) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(move |e| e.kind == kind)
    }

    /// The full report: entries grouped by file in order of appearance (stable within a file by
    /// line), then a summary line.
    pub fn render(&self) -> String {
        let mut files: Vec<&str> = Vec::new();
        for e in &self.entries {
            if !files.contains(&e.file.as_str()) {
                files.push(&e.file);
            }
        }
        let mut out = String::new();
        for f in files {
            let mut es: Vec<&Entry> = self.entries.iter().filter(|e| e.file == f).collect();
            es.sort_by_key(|e| e.line);
            for e in es {
                let _ = writeln!(out, "{e}");
            }
        }
        let _ = writeln!(out, "{}", self.summary());
        out
    }

    pub fn summary(&self) -> String {
        format!(
            "summary: {} mapped, {} not needed, {} notes, {} warnings, {} errors",
            self.count(Kind::Mapped),
            self.count(Kind::NotNeeded),
            self.count(Kind::Note),
            self.count(Kind::Warning),
            self.count(Kind::Error)
        )
    }

    /// Only warnings and errors, for error messages.
    pub fn render_problems(&self) -> String {
        let mut out = String::new();
        for e in self.entries.iter().filter(|e| e.kind >= Kind::Warning) {
            let _ = writeln!(out, "{e}");
        }
        out
    }
}
