//! A small spanned view of a TOML document, shared by the config and plan readers.
//!
//! serde stops at the first error; kura reports every problem in a file, each with
//! its line and dotted field. So the document is parsed with `toml_edit` (which
//! keeps the byte span of every key, value and table header), turned into a tree of
//! `Node`s carrying 1-based line numbers, and read field by field through `Obj`,
//! which records each problem in a `Diag` and carries on.

use std::path::{Path, PathBuf};

use toml_edit::{ImDocument, Item, Table, Value};

use super::error::DurationError;
use crate::plan::problems::{Problem, Severity};

#[derive(Clone, Debug)]
pub(crate) enum Kind {
    Str(String),
    Int(i64),
    Float,
    Bool(bool),
    Datetime,
    Array(Vec<Node>),
    Table(Vec<Entry>),
}

#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub line: usize,
    pub kind: Kind,
}

#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub key: String,
    /// Line of the key (where a problem with this field is reported).
    pub line: usize,
    pub node: Node,
}

impl Kind {
    fn describe(&self) -> &'static str {
        match self {
            Kind::Str(_) => "a string",
            Kind::Int(_) => "an integer",
            Kind::Float => "a float",
            Kind::Bool(_) => "a boolean",
            Kind::Datetime => "a date-time",
            Kind::Array(_) => "an array",
            Kind::Table(_) => "a table",
        }
    }
}

/// Byte offset to 1-based line.
struct Lines(Vec<usize>);

impl Lines {
    fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Lines(starts)
    }
    fn line(&self, offset: usize) -> usize {
        self.0.partition_point(|&s| s <= offset).max(1)
    }
    fn of(&self, span: Option<std::ops::Range<usize>>) -> Option<usize> {
        span.map(|s| self.line(s.start))
    }
}

/// Parses `text` into a tree; a syntax error is one problem with its line.
pub(crate) fn parse(file: &Path, text: &str) -> Result<Node, Problem> {
    let lines = Lines::new(text);
    match ImDocument::parse(text) {
        Ok(doc) => Ok(table(&lines, doc.as_table(), 1)),
        Err(e) => Err(Problem {
            file: file.to_path_buf(),
            line: lines.of(e.span()),
            field: "(syntax)".into(),
            message: format!("invalid TOML: {}", e.message().trim()),
            severity: Severity::Error,
        }),
    }
}

fn table(lines: &Lines, t: &Table, parent_line: usize) -> Node {
    let own = lines.of(t.span());
    let base = own.unwrap_or(parent_line);
    let mut entries = Vec::with_capacity(t.len());
    for (k, item) in t.iter() {
        let key_line = lines.of(t.key(k).and_then(|k| k.span()));
        let node = self::item(lines, item, key_line.unwrap_or(base));
        entries.push(Entry { key: k.to_string(), line: key_line.unwrap_or(node.line), node });
    }
    // An implicit table (`jobs` in `[jobs.prune]`) has no header of its own.
    let line = own.or_else(|| entries.iter().map(|e| e.line).min()).unwrap_or(parent_line);
    Node { line, kind: Kind::Table(entries) }
}

fn item(lines: &Lines, it: &Item, parent_line: usize) -> Node {
    match it {
        Item::None => Node { line: parent_line, kind: Kind::Table(Vec::new()) },
        Item::Value(v) => value(lines, v, parent_line),
        Item::Table(t) => table(lines, t, parent_line),
        Item::ArrayOfTables(a) => {
            let line = lines.of(a.span()).unwrap_or(parent_line);
            Node { line, kind: Kind::Array(a.iter().map(|t| table(lines, t, line)).collect()) }
        }
    }
}

fn value(lines: &Lines, v: &Value, parent_line: usize) -> Node {
    let line = lines.of(v.span()).unwrap_or(parent_line);
    let kind = match v {
        Value::String(s) => Kind::Str(s.value().clone()),
        Value::Integer(i) => Kind::Int(*i.value()),
        Value::Float(_) => Kind::Float,
        Value::Boolean(b) => Kind::Bool(*b.value()),
        Value::Datetime(_) => Kind::Datetime,
        Value::Array(a) => Kind::Array(a.iter().map(|v| value(lines, v, line)).collect()),
        Value::InlineTable(t) => {
            let mut entries = Vec::with_capacity(t.len());
            for (k, v) in t.iter() {
                let key_line = lines.of(t.key(k).and_then(|k| k.span()));
                let node = value(lines, v, key_line.unwrap_or(line));
                entries.push(Entry { key: k.to_string(), line: key_line.unwrap_or(node.line), node });
            }
            Kind::Table(entries)
        }
    };
    Node { line, kind }
}

/// Collects the problems of one file.
pub(crate) struct Diag {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
    /// The file's top-level keys: one of them found inside a table gets a hint.
    pub top_keys: &'static [&'static str],
}

impl Diag {
    pub fn new(file: &Path) -> Self {
        Diag { file: file.to_path_buf(), problems: Vec::new(), top_keys: &[] }
    }
    pub fn push(&mut self, severity: Severity, line: Option<usize>, field: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            file: self.file.clone(),
            line,
            field: field.to_string(),
            message: message.into(),
            severity,
        });
    }
    pub fn error(&mut self, line: usize, field: &str, message: impl Into<String>) {
        self.push(Severity::Error, Some(line), field, message)
    }
    pub fn warning(&mut self, line: usize, field: &str, message: impl Into<String>) {
        self.push(Severity::Warning, Some(line), field, message)
    }
    pub fn has_errors(&self) -> bool {
        self.problems.iter().any(|p| p.severity == Severity::Error)
    }
}

/// A value read from the file with where it was.
#[derive(Clone, Debug)]
pub(crate) struct At<T> {
    pub value: T,
    pub line: usize,
    pub field: String,
}

/// A table being read. Unknown keys are reported when it is opened.
pub(crate) struct Obj<'a> {
    entries: &'a [Entry],
    pub path: String,
    pub line: usize,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

impl<'a> Obj<'a> {
    /// Views `node` as a table named `path`. Keys outside `allowed` and `handled`
    /// are reported as unknown (`handled` keys are the caller's to report).
    pub fn open(d: &mut Diag, node: &'a Node, path: &str, allowed: &[&str], handled: &[&str]) -> Option<Obj<'a>> {
        let Kind::Table(entries) = &node.kind else {
            d.error(node.line, path, format!("expected a table, found {}", node.kind.describe()));
            return None;
        };
        for e in entries {
            if !allowed.contains(&e.key.as_str()) && !handled.contains(&e.key.as_str()) {
                let hint = if !path.is_empty() && d.top_keys.contains(&e.key.as_str()) {
                    format!(" (`{}` is a top-level field: in TOML it must come before the first [table] header)", e.key)
                } else {
                    String::new()
                };
                d.error(
                    e.line,
                    &join(path, &e.key),
                    format!("unknown field `{}`; expected one of: {}{hint}", e.key, allowed.join(", ")),
                );
            }
        }
        Some(Obj { entries, path: path.to_string(), line: node.line })
    }

    pub fn field(&self, key: &str) -> String {
        join(&self.path, key)
    }

    pub fn get(&self, key: &str) -> Option<&'a Entry> {
        self.entries.iter().find(|e| e.key == key)
    }

    fn typed<T>(&self, d: &mut Diag, key: &str, want: &str, f: impl Fn(&Kind) -> Option<T>) -> Option<At<T>> {
        let e = self.get(key)?;
        let field = self.field(key);
        match f(&e.node.kind) {
            Some(value) => Some(At { value, line: e.node.line, field }),
            None => {
                d.error(e.node.line, &field, format!("expected {want}, found {}", e.node.kind.describe()));
                None
            }
        }
    }

    pub fn missing(&self, d: &mut Diag, key: &str, what: &str) {
        d.error(self.line, &self.field(key), format!("missing field `{key}`: {what}"));
    }

    pub fn str(&self, d: &mut Diag, key: &str) -> Option<At<String>> {
        self.typed(d, key, "a string", |k| match k {
            Kind::Str(s) => Some(s.clone()),
            _ => None,
        })
    }

    /// A string that must be present and not empty; `what` explains the field.
    pub fn req_str(&self, d: &mut Diag, key: &str, what: &str) -> Option<At<String>> {
        if self.get(key).is_none() {
            self.missing(d, key, what);
            return None;
        }
        let s = self.str(d, key)?;
        if s.value.trim().is_empty() {
            d.error(s.line, &s.field, format!("`{key}` is empty: {what}"));
            return None;
        }
        Some(s)
    }

    pub fn int(&self, d: &mut Diag, key: &str) -> Option<At<i64>> {
        self.typed(d, key, "an integer", |k| match k {
            Kind::Int(i) => Some(*i),
            _ => None,
        })
    }

    pub fn bool(&self, d: &mut Diag, key: &str) -> Option<At<bool>> {
        self.typed(d, key, "true or false", |k| match k {
            Kind::Bool(b) => Some(*b),
            _ => None,
        })
    }

    /// An array of strings; each wrong element is reported.
    pub fn str_list(&self, d: &mut Diag, key: &str) -> Option<At<Vec<At<String>>>> {
        let e = self.get(key)?;
        let field = self.field(key);
        let Kind::Array(items) = &e.node.kind else {
            d.error(e.node.line, &field, format!("expected an array of strings, found {}", e.node.kind.describe()));
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, n) in items.iter().enumerate() {
            let f = format!("{field}[{i}]");
            match &n.kind {
                Kind::Str(s) => out.push(At { value: s.clone(), line: n.line, field: f }),
                other => d.error(n.line, &f, format!("expected a string, found {}", other.describe())),
            }
        }
        Some(At { value: out, line: e.node.line, field })
    }

    /// A sub-table, opened with its own allowed keys.
    pub fn table(&self, d: &mut Diag, key: &str, allowed: &[&str]) -> Option<Obj<'a>> {
        let e = self.get(key)?;
        Obj::open(d, &e.node, &self.field(key), allowed, &[])
    }

    /// An array of tables (`[[key]]`), each opened with `allowed` and `handled`;
    /// yields the element index with each.
    pub fn tables(&self, d: &mut Diag, key: &str, allowed: &[&str], handled: &[&str]) -> Vec<(usize, Obj<'a>)> {
        let Some(e) = self.get(key) else { return Vec::new() };
        let field = self.field(key);
        let Kind::Array(items) = &e.node.kind else {
            d.error(
                e.node.line,
                &field,
                format!("expected an array of tables ([[{key}]]), found {}", e.node.kind.describe()),
            );
            return Vec::new();
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, n) in items.iter().enumerate() {
            if let Some(o) = Obj::open(d, n, &format!("{field}[{i}]"), allowed, handled) {
                out.push((i, o));
            }
        }
        out
    }
}

/// `base.join(p)` for a relative `p`, with `.` and `..` resolved lexically (symbolic
/// links are not followed: the file may describe another machine).
pub(crate) fn resolve_path(base: &Path, p: &str) -> PathBuf {
    use std::path::Component;
    let joined = base.join(p);
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Parses a duration such as "0", "90s", "5m", "24h", "3d", "1w" or "1h30m".
pub fn parse_duration(text: &str) -> Result<std::time::Duration, DurationError> {
    let s = text.trim();
    let bad = || DurationError::NotADuration(text.into());
    if s.is_empty() {
        return Err(bad());
    }
    if s == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    let mut total: u64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit = match rest[..unit_len].trim() {
            "s" | "sec" | "secs" => 1,
            "m" | "min" | "mins" => 60,
            "h" | "hour" | "hours" => 3600,
            "d" | "day" | "days" => 86_400,
            "w" | "week" | "weeks" => 604_800,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total = n.checked_mul(unit).and_then(|v| total.checked_add(v)).ok_or_else(bad)?;
    }
    if total > 100 * 365 * 86_400 {
        return Err(DurationError::TooLong(text.into()));
    }
    Ok(std::time::Duration::from_secs(total))
}

/// A duration for people: "0", "45s", "5m", "90m", "24h", "3d", "1h30m".
pub fn format_duration(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        return "0".into();
    }
    if secs.is_multiple_of(86_400) && secs >= 2 * 86_400 {
        return format!("{}d", secs / 86_400);
    }
    if secs.is_multiple_of(3600) {
        return format!("{}h", secs / 3600);
    }
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out += &format!("{h}h");
    }
    if m > 0 {
        out += &format!("{m}m");
    }
    if s > 0 {
        out += &format!("{s}s");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print() {
        let p = |s: &str| parse_duration(s).map(|d| d.as_secs());
        assert_eq!(p("0"), Ok(0));
        assert_eq!(p("0s"), Ok(0));
        assert_eq!(p("90s"), Ok(90));
        assert_eq!(p("5m"), Ok(300));
        assert_eq!(p("24h"), Ok(86_400));
        assert_eq!(p("3d"), Ok(259_200));
        assert_eq!(p("1w"), Ok(604_800));
        assert_eq!(p("1h30m"), Ok(5400));
        for bad in ["", "h", "5", "5x", "-1h", "1.5h", "none", "99999999999999w"] {
            assert!(p(bad).is_err(), "{bad:?} should be rejected");
        }
        let f = |s: u64| format_duration(std::time::Duration::from_secs(s));
        assert_eq!(f(0), "0");
        assert_eq!(f(86_400), "24h");
        assert_eq!(f(259_200), "3d");
        assert_eq!(f(5400), "1h30m");
        assert_eq!(f(300), "5m");
    }

    #[test]
    fn lines_follow_keys_and_headers() {
        let text = "a = 1\n\n[t]\nb = \"x\"\n\n[[s]]\nc = [1, 2]\n[[s]]\nd = true\n[j.k]\ne = 1\n";
        let root = parse(Path::new("f.toml"), text).unwrap();
        let mut d = Diag::new(Path::new("f.toml"));
        let o = Obj::open(&mut d, &root, "", &["a", "t", "s", "j"], &[]).unwrap();
        assert_eq!(o.int(&mut d, "a").unwrap().line, 1);
        let t = o.table(&mut d, "t", &["b"]).unwrap();
        assert_eq!(t.line, 3);
        assert_eq!(t.str(&mut d, "b").unwrap().line, 4);
        let s = o.tables(&mut d, "s", &["c"], &[]);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].1.line, 6);
        assert_eq!(s[1].1.line, 8);
        // `d` is unknown in s[1]
        assert_eq!(d.problems.len(), 1);
        assert_eq!(d.problems[0].line, Some(9));
        assert_eq!(d.problems[0].field, "s[1].d");
        let j = o.table(&mut d, "j", &["k"]).unwrap();
        assert_eq!(j.table(&mut d, "k", &["e"]).unwrap().line, 10);
        let err = parse(Path::new("f.toml"), "a = 1\nb = = 2\n").unwrap_err();
        assert_eq!(err.line, Some(2));
    }
}
