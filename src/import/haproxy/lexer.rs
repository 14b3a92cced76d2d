//! The HAProxy lexer (HAProxy 2.6 `parse_line` rules: `#` comments, `"..."` and `'...'`
//! quoting, backslash escapes, `"${VAR}"` expansion from `Env`, backslash line continuation) and
//! the split of a file into sections of lines; unknown keywords and sections are reported here.

use super::*;

// ------------------------------------------------------------------------------------------------
// Environment

/// The environment variables `"${VAR}"` expands from. `setenv`/`presetenv`/`unsetenv`/`resetenv`
/// in `global` change it for the lines after them, as in HAProxy.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: HashMap<String, Option<String>>,
    process: bool,
}

impl Env {
    /// The process environment (what `haproxy` would have seen when started from this shell).
    pub fn process() -> Self {
        Self {
            vars: HashMap::new(),
            process: true,
        }
    }

    /// A fixed environment, for tests and reproducible imports.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), Some(v.into())))
                .collect(),
            process: false,
        }
    }

    pub fn get(&self, name: &str) -> Option<String> {
        match self.vars.get(name) {
            Some(v) => v.clone(),
            None if self.process => std::env::var(name).ok(),
            None => None,
        }
    }

    fn set(&mut self, name: &str, value: Option<String>) {
        self.vars.insert(name.to_string(), value);
    }
}

// ------------------------------------------------------------------------------------------------
// Lexer

/// The words of one logical line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Lexed {
    pub words: Vec<String>,
    /// `"${VAR}"` references to variables that are not set (expanded to nothing, as HAProxy does).
    pub undefined: Vec<String>,
    /// `$VAR` outside double quotes: HAProxy keeps those literally.
    pub bare_vars: Vec<String>,
    /// Character index (in the line without leading blanks) where a `#` comment starts.
    pub comment_at: Option<usize>,
}

/// Splits one line into words the way HAProxy 2.6 does (`parse_line` with `PARSE_OPT_ENV |
/// PARSE_OPT_DQUOTE | PARSE_OPT_SQUOTE | PARSE_OPT_BKSLASH | PARSE_OPT_SHARP |
/// PARSE_OPT_WORD_EXPAND`): variables are expanded only inside double quotes, single quotes are
/// fully literal, and `\` escapes ` `, `\`, `#`, `'`, `"`, `$` (in double quotes), `\t`, `\n`,
/// `\r` and `\xHH`; any other backslash is kept.
pub fn lex_line(line: &str, env: &Env) -> Result<Lexed, String> {
    let chars: Vec<char> = line.trim_start().chars().collect();
    let mut out = Lexed::default();
    let mut cur = String::new();
    let mut started = false;
    let mut squote = false;
    let mut dquote = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' || c == '\r' {
            break;
        } else if c == '#' && !squote && !dquote {
            out.comment_at = Some(i);
            break;
        } else if c == '"' && !squote {
            dquote = !dquote;
            started = true;
            i += 1;
        } else if c == '\'' && !dquote {
            squote = !squote;
            started = true;
            i += 1;
        } else if c == '\\' && !squote {
            let next = chars.get(i + 1).copied();
            match next {
                Some(n @ (' ' | '\\' | '#' | '\'' | '"')) => {
                    cur.push(n);
                    i += 2;
                }
                Some('$') if dquote => {
                    cur.push('$');
                    i += 2;
                }
                Some('t') => {
                    cur.push('\t');
                    i += 2;
                }
                Some('n') => {
                    cur.push('\n');
                    i += 2;
                }
                Some('r') => {
                    cur.push('\r');
                    i += 2;
                }
                Some('x') => {
                    let hex: String = chars.iter().skip(i + 2).take(2).collect();
                    let byte = (hex.len() == 2)
                        .then(|| u8::from_str_radix(&hex, 16).ok())
                        .flatten()
                        .ok_or_else(|| format!("invalid or incomplete hex sequence \\x{hex}"))?;
                    cur.push(char::from(byte));
                    i += 4;
                }
                _ => {
                    cur.push('\\');
                    i += 1;
                }
            }
            started = true;
        } else if c.is_whitespace() && !squote && !dquote {
            if started || !cur.is_empty() {
                out.words.push(std::mem::take(&mut cur));
            }
            started = false;
            while i < chars.len() && chars[i].is_whitespace() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '$' && dquote {
            i += 1;
            let brace = chars.get(i) == Some(&'{');
            if brace {
                i += 1;
            }
            let start = i;
            match chars.get(i) {
                Some(ch) if ch.is_ascii_alphabetic() || *ch == '_' || *ch == '.' => {}
                _ => return Err("unacceptable character in variable name after '$'".into()),
            }
            if chars[i] == '.' {
                i += 1;
            }
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let name: String = chars[start..i].iter().collect();
            let mut expand_words = false;
            if brace && chars.get(i) == Some(&'[') {
                if chars.get(i + 1) == Some(&'*') && chars.get(i + 2) == Some(&']') {
                    expand_words = true;
                    i += 3;
                } else {
                    return Err(format!("invalid word expansion after ${{{name}"));
                }
            }
            let mut value = if name.starts_with('.') {
                // .LINE/.FILE/.SECTION describe the parser's position; the importer has no use
                // for them beyond keeping them readable.
                Some(format!("<{name}>"))
            } else {
                env.get(&name)
            };
            if brace {
                if chars.get(i) == Some(&'-') {
                    let dstart = i + 1;
                    let Some(end) = chars[dstart..].iter().position(|c| *c == '}') else {
                        return Err(format!("unmatched brace in ${{{name}"));
                    };
                    if value.is_none() {
                        value = Some(chars[dstart..dstart + end].iter().collect());
                    }
                    i = dstart + end;
                }
                if chars.get(i) != Some(&'}') {
                    return Err(format!("unmatched brace in ${{{name}"));
                }
                i += 1;
            }
            match value {
                Some(v) if expand_words => {
                    let mut parts = v.split_whitespace().peekable();
                    while let Some(p) = parts.next() {
                        cur.push_str(p);
                        if parts.peek().is_some() {
                            out.words.push(std::mem::take(&mut cur));
                        }
                    }
                }
                Some(v) => cur.push_str(&v),
                None => out.undefined.push(name),
            }
            started = true;
        } else {
            if c == '$' && !squote {
                let name: String = chars[i + 1..]
                    .iter()
                    .skip_while(|c| **c == '{')
                    .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
                    .collect();
                if !name.is_empty() {
                    out.bare_vars.push(name);
                }
            }
            cur.push(c);
            started = true;
            i += 1;
        }
    }
    if squote || dquote {
        return Err(format!(
            "unterminated {} quote",
            if squote { "single" } else { "double" }
        ));
    }
    if started || !cur.is_empty() {
        out.words.push(cur);
    }
    Ok(out)
}

/// A line of the file with its words.
#[derive(Debug, Clone)]
pub struct Line {
    pub loc: Loc,
    pub words: Vec<String>,
    /// Whether the line starts with blanks (section keywords normally don't).
    pub indented: bool,
}

impl Line {
    pub fn kw(&self) -> &str {
        self.words.first().map(String::as_str).unwrap_or("")
    }
    pub fn arg(&self, i: usize) -> Option<&str> {
        self.words.get(i).map(String::as_str)
    }
}

// ------------------------------------------------------------------------------------------------
// Splitting into sections

pub(super) fn lex_file(text: &str, file: &str, env: &mut Env, rep: &mut Report) -> Vec<Section> {
    let mut sections: Vec<Section> = Vec::new();
    // Lines of an unsupported section are skipped; only its header is reported.
    let mut skipping: Option<(Loc, usize)> = None;
    let raw: Vec<&str> = text.split('\n').collect();
    let mut i = 0;
    let flush_skip = |skipping: &mut Option<(Loc, usize)>, rep: &mut Report| {
        if let Some((at, n)) = skipping.take() {
            if n > 0 {
                rep.note(&at, format!("{n} line(s) of this section skipped with it"));
            }
        }
    };
    while i < raw.len() {
        let first_no = i + 1;
        let mut joined = raw[i].trim_end_matches('\r').to_string();
        let mut continued = false;
        // A line ending in an odd number of backslashes continues on the next one.
        while (joined.len() - joined.trim_end_matches('\\').len()) % 2 == 1 {
            if i + 1 >= raw.len() {
                break;
            }
            joined.pop();
            i += 1;
            joined.push(' ');
            joined.push_str(raw[i].trim_end_matches('\r').trim_start());
            continued = true;
        }
        i += 1;
        let at = Loc::new(file, first_no, &joined);
        let lexed = match lex_line(&joined, env) {
            Ok(l) => l,
            Err(e) => {
                rep.error(&at, e);
                continue;
            }
        };
        if lexed.words.is_empty() {
            continue;
        }
        if continued {
            rep.note(
                &at,
                "backslash line continuation joined; HAProxy itself does not join lines, check the result",
            );
        }
        for v in &lexed.undefined {
            rep.warn(
                &at,
                format!("environment variable {v} is not set; expanded to an empty string as HAProxy would"),
            );
        }
        for v in &lexed.bare_vars {
            rep.note(
                &at,
                format!("${v} is outside double quotes: HAProxy does not expand it there, kept literally"),
            );
        }
        let indented = joined.starts_with([' ', '\t']);
        // The report shows the directive as written, without its trailing comment.
        let at = match lexed.comment_at {
            Some(c) => {
                let shown: String = joined.trim_start().chars().take(c).collect();
                Loc::new(file, first_no, &shown)
            }
            None => at,
        };
        let line = Line {
            loc: at.clone(),
            words: lexed.words,
            indented,
        };
        let kw = line.kw().to_string();
        let next_indented = raw
            .get(i)
            .map(|l| l.starts_with([' ', '\t']))
            .unwrap_or(false);

        if let Some(kind) = match kw.as_str() {
            "global" => Some(SecKind::Global),
            "defaults" => Some(SecKind::Defaults),
            "frontend" => Some(SecKind::Frontend),
            "backend" => Some(SecKind::Backend),
            "listen" => Some(SecKind::Listen),
            _ => None,
        } {
            flush_skip(&mut skipping, rep);
            let name = line.arg(1).unwrap_or("").to_string();
            let mut from = None;
            if line.arg(2) == Some("from") {
                from = line.arg(3).map(str::to_string);
            } else if line.words.len() > 2 {
                rep.warn(&at, "unexpected words after the section name (ignored)");
            }
            if name.is_empty()
                && matches!(kind, SecKind::Frontend | SecKind::Backend | SecKind::Listen)
            {
                rep.error(&at, format!("`{kw}` needs a name"));
            }
            sections.push(Section {
                kind,
                name,
                from,
                at,
                lines: Vec::new(),
            });
            continue;
        }
        if OTHER_SECTIONS.contains(&kw.as_str()) && !indented {
            flush_skip(&mut skipping, rep);
            rep.warn(
                &at,
                format!("`{kw}` sections are not supported by edgelb; the section is not imported"),
            );
            skipping = Some((at, 0));
            continue;
        }
        if !indented && next_indented && !is_known_keyword(&kw) {
            flush_skip(&mut skipping, rep);
            rep.error(
                &at,
                format!("unknown section `{kw}` (HAProxy sections: global, defaults, frontend, backend, listen, peers, resolvers, userlist, ...)"),
            );
            skipping = Some((at, 0));
            continue;
        }
        if let Some((_, n)) = skipping.as_mut() {
            *n += 1;
            continue;
        }
        let Some(sec) = sections.last_mut() else {
            rep.error(&at, format!("`{kw}` is outside of any section"));
            continue;
        };
        if sec.kind == SecKind::Global {
            apply_env_directive(&line, env, rep);
        }
        sec.lines.push(line);
    }
    flush_skip(&mut skipping, rep);
    sections
}

/// `setenv`/`presetenv`/`unsetenv`/`resetenv` act while parsing, so they must be applied before
/// the next line is lexed.
pub(super) fn apply_env_directive(line: &Line, env: &mut Env, rep: &mut Report) {
    let _ = rep;
    match line.kw() {
        "setenv" => {
            if let (Some(n), Some(v)) = (line.arg(1), line.arg(2)) {
                env.set(n, Some(v.to_string()));
            }
        }
        "presetenv" => {
            if let (Some(n), Some(v)) = (line.arg(1), line.arg(2)) {
                if env.get(n).is_none() {
                    env.set(n, Some(v.to_string()));
                }
            }
        }
        "unsetenv" => {
            for n in &line.words[1..] {
                env.set(n, None);
            }
        }
        _ => {}
    }
}

pub(super) fn is_known_keyword(kw: &str) -> bool {
    const KNOWN: &[&str] = &[
        "acl",
        "bind",
        "server",
        "default-server",
        "option",
        "no",
        "timeout",
        "retries",
        "balance",
        "cookie",
        "mode",
        "log",
        "maxconn",
        "default_backend",
        "use_backend",
        "http-request",
        "http-response",
        "http-check",
        "stats",
        "user",
        "group",
        "daemon",
        "chroot",
        "pidfile",
        "nbthread",
        "nbproc",
        "description",
        "errorfile",
        "capture",
        "redirect",
        "tcp-request",
        "tcp-response",
        "stick",
        "stick-table",
        "compression",
        "monitor-uri",
        "fullconn",
        "hash-type",
        "http-reuse",
        "id",
        "disabled",
        "enabled",
        "email-alert",
        "unique-id-format",
        "unique-id-header",
        "log-format",
        "setenv",
        "presetenv",
        "unsetenv",
        "resetenv",
    ];
    KNOWN.contains(&kw)
}
