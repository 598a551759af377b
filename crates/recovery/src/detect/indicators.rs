//! Indicators of compromise for `kura scan`: a text file of SHA-256 hashes of known
//! malicious files and file-name globs (docs/DETECTION.md). Pure: parsing and
//! matching. The set's digest names it in the state database, so content scanned
//! clean with the same set is not read again.

use std::collections::HashMap;
use std::path::Path;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::error::{Error, Result};

/// A parsed indicator set.
pub struct Indicators {
    /// SHA-256 (raw) -> the indicator's label.
    hashes: HashMap<[u8; 32], String>,
    names: GlobSet,
    name_labels: Vec<String>,
    /// Identifies the set: blake3 over its normalized rules.
    pub digest: String,
    pub rules: usize,
}

impl Indicators {
    pub fn load(path: &Path) -> Result<Indicators> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Indicators::parse(&text, &path.display().to_string())
    }

    /// `origin` names the set in errors (`FILE:LINE`).
    pub fn parse(text: &str, origin: &str) -> Result<Indicators> {
        let mut hashes = HashMap::new();
        let mut names = GlobSetBuilder::new();
        let mut name_labels = Vec::new();
        let mut normalized: Vec<String> = Vec::new();
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
                return Err(Error::invalid(
                    at(),
                    format!("{line:?}: expected `sha256 HEX [LABEL]` or `name GLOB [LABEL]`"),
                ));
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
                other => {
                    return Err(Error::invalid(
                        at(),
                        format!("unknown indicator {other:?}: use `sha256 HEX [LABEL]` or `name GLOB [LABEL]`"),
                    ))
                }
            }
        }
        normalized.sort();
        let mut h = blake3::Hasher::new();
        h.update(b"kura indicators v1\n");
        for n in &normalized {
            h.update(n.as_bytes());
            h.update(b"\n");
        }
        let names = names.build().map_err(|e| Error::invalid(origin.to_string(), e.to_string()))?;
        Ok(Indicators {
            rules: normalized.len(),
            hashes,
            names,
            name_labels,
            digest: h.finalize().to_hex()[..32].to_string(),
        })
    }

    /// Whether content hashing is needed at all.
    pub fn has_hashes(&self) -> bool {
        !self.hashes.is_empty()
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
        for (text, line) in [("sha256 abc\n", 1), ("# x\nmd5 00\n", 2), ("name\n", 1), ("name [\n", 1)] {
            let e = Indicators::parse(text, "ioc.txt").err().expect(text).to_string();
            assert!(e.contains(&format!("ioc.txt:{line}")), "{e}");
        }
    }
}
