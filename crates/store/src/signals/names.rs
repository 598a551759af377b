//! The list of ransomware indicators in file names: ransom-note name globs and
//! extensions that encrypting malware appends. A documented text file
//! (`default_names.txt` is the built-in default, docs/DETECTION.md the format);
//! a site can replace it with its own file.

use std::path::Path;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::error::{Error, Result};

/// The built-in list, compiled in.
pub const DEFAULT: &str = include_str!("default_names.txt");

/// What a name matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameHit {
    /// A ransom note's name.
    Note,
    /// An extension encrypting malware appends.
    Extension,
}

/// A parsed list, ready to match names.
pub struct NamePatterns {
    notes: GlobSet,
    /// Lower-case extensions, without the dot.
    exts: std::collections::HashSet<String>,
    /// The number of rules, for messages.
    pub rules: usize,
}

impl std::fmt::Debug for NamePatterns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NamePatterns").field("rules", &self.rules).finish()
    }
}

impl NamePatterns {
    /// The built-in list.
    pub fn builtin() -> NamePatterns {
        NamePatterns::parse(DEFAULT, "built-in name list").expect("the built-in list parses")
    }

    /// Reads a list from a file; an error names the file and the line.
    pub fn load(path: &Path) -> Result<NamePatterns> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        NamePatterns::parse(&text, &path.display().to_string())
    }

    /// `origin` names the list in errors (`FILE:LINE`).
    pub fn parse(text: &str, origin: &str) -> Result<NamePatterns> {
        let mut notes = GlobSetBuilder::new();
        let mut exts = std::collections::HashSet::new();
        let mut rules = 0;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = || format!("{origin}:{}", i + 1);
            let (kind, value) = line
                .split_once(char::is_whitespace)
                .map(|(k, v)| (k, v.trim()))
                .ok_or_else(|| Error::invalid(at(), format!("{line:?}: expected `note GLOB` or `ext EXTENSION`")))?;
            match kind {
                "note" => {
                    let g = GlobBuilder::new(value)
                        .case_insensitive(true)
                        .literal_separator(true)
                        .build()
                        .map_err(|e| Error::invalid(at(), format!("glob {value:?}: {e}")))?;
                    notes.add(g);
                }
                "ext" => {
                    let e = value.trim_start_matches('.').to_ascii_lowercase();
                    if e.is_empty() || e.contains(['/', '.', '*', '?']) || e.contains(char::is_whitespace) {
                        return Err(Error::invalid(
                            at(),
                            format!("extension {value:?}: give one plain extension, e.g. `ext locked`"),
                        ));
                    }
                    exts.insert(e);
                }
                other => {
                    return Err(Error::invalid(
                        at(),
                        format!("unknown rule {other:?}: use `note GLOB` or `ext EXTENSION`"),
                    ))
                }
            }
            rules += 1;
        }
        let notes = notes.build().map_err(|e| Error::invalid(origin.to_string(), e.to_string()))?;
        Ok(NamePatterns { notes, exts, rules })
    }

    /// What `name` (a file name, no directory) matches, if anything. A note wins
    /// over an extension.
    pub fn classify(&self, name: &[u8]) -> Option<NameHit> {
        let s = String::from_utf8_lossy(name);
        if self.notes.is_match(s.as_ref()) {
            return Some(NameHit::Note);
        }
        let ext = extension(name)?;
        let ext = String::from_utf8_lossy(ext).to_ascii_lowercase();
        self.exts.contains(&ext).then_some(NameHit::Extension)
    }
}

/// The bytes after the last dot, when the name has one that is not its first byte.
pub fn extension(name: &[u8]) -> Option<&[u8]> {
    let dot = name.iter().rposition(|&b| b == b'.')?;
    (dot > 0 && dot + 1 < name.len()).then(|| &name[dot + 1..])
}

/// The name without its last extension (`a.txt` -> `a`; `a` -> `a`).
pub fn stem(name: &[u8]) -> &[u8] {
    match name.iter().rposition(|&b| b == b'.') {
        Some(d) if d > 0 => &name[..d],
        _ => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_matches_notes_and_extensions() {
        let p = NamePatterns::builtin();
        assert_eq!(p.classify(b"HOW_TO_DECRYPT_FILES.txt"), Some(NameHit::Note));
        assert_eq!(p.classify(b"readme_decrypt.html"), Some(NameHit::Note));
        assert_eq!(p.classify(b"report.docx.locked"), Some(NameHit::Extension));
        assert_eq!(p.classify(b"photo.JPG.Encrypted"), Some(NameHit::Extension));
        assert_eq!(p.classify(b"main.rs"), None);
        assert_eq!(p.classify(b"locked"), None);
        assert_eq!(p.classify(b"README.md"), None);
    }

    #[test]
    fn errors_name_the_line() {
        let e = NamePatterns::parse("# c\n\nnote *x*\nbogus y\n", "f.txt").unwrap_err().to_string();
        assert!(e.contains("f.txt:4"), "{e}");
        let e = NamePatterns::parse("ext a.b\n", "f.txt").unwrap_err().to_string();
        assert!(e.contains("f.txt:1"), "{e}");
        let e = NamePatterns::parse("note\n", "f.txt").unwrap_err().to_string();
        assert!(e.contains("f.txt:1"), "{e}");
    }

    #[test]
    fn stems_and_extensions() {
        assert_eq!(extension(b"a.txt"), Some(&b"txt"[..]));
        assert_eq!(extension(b".bashrc"), None);
        assert_eq!(extension(b"a."), None);
        assert_eq!(stem(b"a.txt.locked"), b"a.txt");
        assert_eq!(stem(b".bashrc"), b".bashrc");
    }
}
