//! Indicators of compromise for `kura scan`: a text file of SHA-256 hashes of known
//! malicious files, file-name globs and YARA rule files (docs/DETECTION.md).
//! Parsing and matching; the only I/O is `load` reading the files. The set's digest
//! (its normalized rules and the text of its YARA sources) names it in the state
//! database, so content scanned clean with the same set is not read again.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use sha2::{Digest, Sha256};

use super::yara::{RuleSource, YaraMatcher, YaraRules};
use crate::error::{Error, Result};

/// What a file's content matched: (`hash` or `yara`, the indicator's label or the
/// YARA rule's name).
pub type ContentVerdict = Vec<(String, String)>;

/// A parsed indicator set.
pub struct Indicators {
    /// SHA-256 (raw) -> the indicator's label.
    hashes: HashMap<[u8; 32], String>,
    names: GlobSet,
    name_labels: Vec<String>,
    yara: Option<YaraRules>,
    /// Identifies the set: blake3 over its normalized rules.
    pub digest: String,
    /// Hash and name indicators, plus the YARA rules compiled.
    pub rules: usize,
}

/// Reads the YARA sources a `yara PATH` line names.
type RuleReader<'a> = dyn FnMut(&str) -> std::result::Result<Vec<RuleSource>, String> + 'a;

impl Indicators {
    /// Reads the indicator file and the YARA rule files its `yara` lines name
    /// (relative to its directory).
    pub fn load(path: &Path) -> Result<Indicators> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Indicators::parse_with(&text, &path.display().to_string(), &mut |p| read_rules(&dir.join(p)))
    }

    /// A set without `yara` lines (those need [`Indicators::load`]).
    pub fn parse(text: &str, origin: &str) -> Result<Indicators> {
        Indicators::parse_with(
            text,
            origin,
            &mut |_| Err("YARA rule files are read only from an indicator file".into()),
        )
    }

    /// `origin` names the set in errors (`FILE:LINE`).
    pub fn parse_with(text: &str, origin: &str, read: &mut RuleReader<'_>) -> Result<Indicators> {
        let mut hashes = HashMap::new();
        let mut names = GlobSetBuilder::new();
        let mut name_labels = Vec::new();
        let mut normalized: Vec<String> = Vec::new();
        let mut sources: Vec<RuleSource> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = || format!("{origin}:{}", i + 1);
            let mut parts = line.splitn(3, char::is_whitespace);
            let (kind, value) = (parts.next().unwrap_or(""), parts.next().unwrap_or("").trim());
            let label = parts.next().map(str::trim).filter(|l| !l.is_empty());
            if value.is_empty() {
                return Err(Error::invalid(at(), format!("{line:?}: expected {KINDS}")));
            }
            match kind {
                "sha256" => {
                    let mut h = [0u8; 32];
                    hex_decode(value, &mut h).ok_or_else(|| {
                        Error::invalid(at(), format!("{value:?} is not a SHA-256 hash (64 hex digits)"))
                    })?;
                    hashes.insert(h, label.map_or_else(|| format!("sha256 {}", &value[..16]), str::to_string));
                    normalized.push(format!("sha256 {}", value.to_ascii_lowercase()));
                }
                "name" => {
                    let g = GlobBuilder::new(value)
                        .case_insensitive(true)
                        .literal_separator(true)
                        .build()
                        .map_err(|e| Error::invalid(at(), format!("glob {value:?}: {e}")))?;
                    names.add(g);
                    name_labels.push(label.map_or_else(|| format!("name {value}"), str::to_string));
                    normalized.push(format!("name {value}"));
                }
                "yara" => {
                    let found = read(value).map_err(|e| Error::invalid(at(), format!("yara {value:?}: {e}")))?;
                    if found.is_empty() {
                        return Err(Error::invalid(at(), format!("yara {value:?}: no .yar or .yara file there")));
                    }
                    for s in found {
                        normalized.push(format!("yara {}", blake3::hash(s.text.as_bytes()).to_hex()));
                        sources.push(s);
                    }
                }
                other => return Err(Error::invalid(at(), format!("unknown indicator {other:?}: use {KINDS}"))),
            }
        }
        let yara = match sources.is_empty() {
            true => None,
            false => Some(YaraRules::compile(&sources)?),
        };
        normalized.sort();
        let mut h = blake3::Hasher::new();
        h.update(b"kura indicators v1\n");
        for n in &normalized {
            h.update(n.as_bytes());
            h.update(b"\n");
        }
        let names = names.build().map_err(|e| Error::invalid(origin.to_string(), e.to_string()))?;
        Ok(Indicators {
            rules: hashes.len() + name_labels.len() + yara.as_ref().map_or(0, |y| y.count),
            hashes,
            names,
            name_labels,
            yara,
            digest: h.finalize().to_hex()[..32].to_string(),
        })
    }

    /// Whether the scan must read content (hash or YARA indicators).
    pub fn needs_content(&self) -> bool {
        !self.hashes.is_empty() || self.yara.is_some()
    }

    /// Whether the set has YARA rules.
    pub fn has_yara(&self) -> bool {
        self.yara.is_some()
    }

    /// The label of the hash indicator `sha256` matches.
    pub fn hash_hit(&self, sha256: &[u8; 32]) -> Option<&str> {
        self.hashes.get(sha256).map(String::as_str)
    }

    /// The label of the first name indicator a file name matches.
    pub fn name_hit(&self, name: &[u8]) -> Option<&str> {
        let s = String::from_utf8_lossy(name);
        self.names.matches(s.as_ref()).first().map(|&i| self.name_labels[i].as_str())
    }

    /// A sink for one file's content at a time, checked against the hash and YARA
    /// indicators in the one pass; reused across files.
    pub fn content_check(&self) -> ContentCheck<'_> {
        ContentCheck {
            ind: self,
            sha: (!self.hashes.is_empty()).then(Sha256::new),
            yara: self.yara.as_ref().map(YaraRules::matcher),
        }
    }

    /// A content verdict as the state database remembers it: `None` when clean.
    /// Sets without YARA keep the first format (the hash indicator's label).
    pub fn encode_verdict(&self, v: &ContentVerdict) -> Option<String> {
        match (v.first(), self.has_yara()) {
            (None, _) => None,
            (Some((_, label)), false) => Some(label.clone()),
            (Some(_), true) => Some(serde_json::to_string(v).unwrap_or_default()),
        }
    }

    pub fn decode_verdict(&self, stored: Option<String>) -> Result<ContentVerdict> {
        match (stored, self.has_yara()) {
            (None, _) => Ok(Vec::new()),
            (Some(label), false) => Ok(vec![("hash".into(), label)]),
            (Some(json), true) => serde_json::from_str(&json)
                .map_err(|e| Error::invalid("scanned_content", format!("a stored verdict does not parse: {e}"))),
        }
    }
}

/// See [`Indicators::content_check`].
pub struct ContentCheck<'a> {
    ind: &'a Indicators,
    sha: Option<Sha256>,
    yara: Option<YaraMatcher<'a>>,
}

impl ContentCheck<'_> {
    /// What the content written since the last call matched (`what` names the
    /// file in an error); ready for the next file.
    pub fn finish(&mut self, what: &str) -> Result<ContentVerdict> {
        let mut v = Vec::new();
        if let Some(sha) = self.sha.as_mut() {
            let sum: [u8; 32] = std::mem::take(sha).finalize().into();
            if let Some(label) = self.ind.hash_hit(&sum) {
                v.push(("hash".to_string(), label.to_string()));
            }
        }
        if let Some(y) = self.yara.as_mut() {
            let rules = y.finish().map_err(|e| Error::invalid(what.to_string(), format!("YARA scan: {e}")))?;
            v.extend(rules.into_iter().map(|r| ("yara".to_string(), r)));
        }
        Ok(v)
    }
}

impl Write for ContentCheck<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if let Some(sha) = self.sha.as_mut() {
            sha.update(b);
        }
        if let Some(y) = self.yara.as_mut() {
            y.update(b);
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const KINDS: &str = "`sha256 HEX [LABEL]`, `name GLOB [LABEL]` or `yara PATH`";

/// A `yara PATH` line's sources: the file, or a directory's `.yar` and `.yara`
/// files (not its subdirectories), sorted by name.
fn read_rules(path: &Path) -> std::result::Result<Vec<RuleSource>, String> {
    let read = |p: &Path| {
        std::fs::read_to_string(p)
            .map(|text| RuleSource { origin: p.display().to_string(), text })
            .map_err(|e| format!("{}: {e}", p.display()))
    };
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_dir() {
        return Ok(vec![read(path)?]);
    }
    let mut files: Vec<_> = std::fs::read_dir(path)
        .and_then(|d| d.map(|e| e.map(|e| e.path())).collect::<std::io::Result<Vec<_>>>())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    files.retain(|p| p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("yar" | "yara")));
    files.sort();
    files.iter().map(|p| read(p)).collect()
}

fn hex_decode(s: &str, out: &mut [u8; 32]) -> Option<()> {
    if s.len() != 64 {
        return None;
    }
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_and_matches() {
        let text = format!("# known bad\nsha256 {EMPTY} empty file\nname *.lnk.exe dropper\n\nname invoice*.js\n");
        let i = Indicators::parse(&text, "ioc.txt").unwrap();
        assert_eq!(i.rules, 3);
        let mut h = [0u8; 32];
        hex_decode(EMPTY, &mut h).unwrap();
        assert_eq!(i.hash_hit(&h), Some("empty file"));
        assert_eq!(i.name_hit(b"Report.LNK.exe"), Some("dropper"));
        assert_eq!(i.name_hit(b"invoice_2026.js"), Some("name invoice*.js"));
        assert_eq!(i.name_hit(b"main.rs"), None);
        // The digest ignores order, comments and labels' absence of change.
        let j = Indicators::parse(&format!("name invoice*.js\nname *.lnk.exe x\nsha256 {EMPTY}\n"), "b").unwrap();
        assert_eq!(i.digest, j.digest);
    }

    #[test]
    fn errors_name_the_line() {
        for (text, line) in
            [("sha256 abc\n", 1), ("# x\nmd5 00\n", 2), ("name\n", 1), ("name [\n", 1), ("yara r.yar\n", 1)]
        {
            let e = Indicators::parse(text, "ioc.txt").err().expect(text).to_string();
            assert!(e.contains(&format!("ioc.txt:{line}")), "{e}");
        }
    }
}
