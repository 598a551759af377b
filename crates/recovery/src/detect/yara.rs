//! YARA rules among the indicators of compromise (cargo feature `yara`, on by
//! default), through the yara-x crate. The rules are compiled once per scan and
//! matched against each file's content as the scan reads it for its SHA-256 (one
//! read feeds both). No YARA modules are built in (docs/DETECTION.md, "YARA").
//!
//! Size: a file up to [`WHOLE_MAX`] is matched whole, with every YARA feature
//! (`filesize`, `uint32(0)`, anchored offsets). A larger file is matched in blocks
//! of [`BLOCK`] bytes that overlap by [`OVERLAP`], so memory stays bounded: strings
//! up to the overlap match anywhere, but `filesize` and `uintN()` are undefined
//! for it, so conditions on them do not match there.

use crate::error::{Error, Result};

/// Files up to this size are matched whole (in memory).
pub const WHOLE_MAX: usize = 32 << 20;
/// Larger files are matched in blocks of this size...
pub const BLOCK: usize = 8 << 20;
/// ...that overlap by this much, so a string up to it is never cut in two.
pub const OVERLAP: usize = 64 << 10;

/// One YARA rule file: where it came from (errors name it) and its text.
#[derive(Clone, Debug)]
pub struct RuleSource {
    pub origin: String,
    pub text: String,
}

#[cfg(feature = "yara")]
pub use engine::{YaraMatcher, YaraRules};
#[cfg(not(feature = "yara"))]
pub use none::{YaraMatcher, YaraRules};

/// Whether this build has the YARA engine.
pub const AVAILABLE: bool = cfg!(feature = "yara");

#[cfg(feature = "yara")]
mod engine {
    use super::*;

    /// A per-file scan is stopped after this long (a pathological rule).
    const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

    /// Compiled rules.
    pub struct YaraRules {
        rules: yara_x::Rules,
        /// How many rules the sources declare.
        pub count: usize,
    }

    impl YaraRules {
        /// Compiles the sources; the first error names its file, line and column
        /// (yara-x's report) and what is wrong.
        pub fn compile(sources: &[RuleSource]) -> Result<YaraRules> {
            let mut c = yara_x::Compiler::new();
            c.colorize_errors(false);
            // Every source must be in the set's digest (incremental scans): an
            // `include` would pull in a file the digest does not cover.
            c.enable_includes(false);
            for s in sources {
                let code = yara_x::SourceCode::from(s.text.as_str()).with_origin(s.origin.clone());
                c.add_source(code).map_err(|e| Error::invalid(format!("YARA rules {}", s.origin), e.to_string()))?;
            }
            let rules = c.build();
            let count = rules.iter().len();
            Ok(YaraRules { rules, count })
        }

        pub fn matcher(&self) -> YaraMatcher<'_> {
            YaraMatcher { rules: &self.rules, whole: None, blocks: None, buf: Vec::new(), base: None, err: None }
        }
    }

    /// Takes one file's content as written to it; [`YaraMatcher::finish`] names
    /// the rules that matched and readies it for the next file. Reused across
    /// files: the yara-x scanners are made once.
    pub struct YaraMatcher<'r> {
        rules: &'r yara_x::Rules,
        whole: Option<yara_x::Scanner<'r>>,
        blocks: Option<yara_x::blocks::Scanner<'r>>,
        buf: Vec<u8>,
        /// Block mode: the offset of `buf[0]` in the file.
        base: Option<usize>,
        err: Option<String>,
    }

    impl YaraMatcher<'_> {
        pub fn update(&mut self, data: &[u8]) {
            if self.err.is_some() {
                return;
            }
            self.buf.extend_from_slice(data);
            if self.base.is_none() && self.buf.len() > WHOLE_MAX {
                self.base = Some(0);
            }
            if self.base.is_some() {
                while self.buf.len() >= BLOCK + OVERLAP && self.err.is_none() {
                    self.scan_block(BLOCK + OVERLAP);
                }
            }
        }

        /// Scans `buf[..len]` as a block, then keeps its last `OVERLAP` bytes.
        fn scan_block(&mut self, len: usize) {
            let base = self.base.unwrap_or(0);
            let rules = self.rules;
            let s = self.blocks.get_or_insert_with(|| {
                let mut s = yara_x::blocks::Scanner::new(rules);
                s.set_timeout(TIMEOUT);
                s
            });
            if let Err(e) = s.scan(base, &self.buf[..len]) {
                self.err = Some(e.to_string());
                return;
            }
            let keep_from = len.saturating_sub(OVERLAP);
            self.buf.drain(..keep_from);
            self.base = Some(base + keep_from);
        }

        /// The names of the rules that matched the content written since the last
        /// call; an error is yara-x's (e.g. a timeout).
        pub fn finish(&mut self) -> std::result::Result<Vec<String>, String> {
            let names = self.matched();
            if names.is_err() {
                // A block scan cut short keeps its state: start the next file afresh.
                self.blocks = None;
            }
            self.buf.clear();
            if self.buf.capacity() > 4 << 20 {
                self.buf.shrink_to(1 << 20);
            }
            self.base = None;
            self.err = None;
            names
        }

        fn matched(&mut self) -> std::result::Result<Vec<String>, String> {
            if let Some(e) = self.err.take() {
                return Err(e);
            }
            let rules = self.rules;
            if self.base.is_some() {
                self.scan_block(self.buf.len());
                if let Some(e) = self.err.take() {
                    return Err(e);
                }
                let s = self.blocks.as_mut().ok_or("no block scanner")?;
                let r = s.finish().map_err(|e| e.to_string())?;
                return Ok(r.matching_rules().map(|m| m.identifier().to_string()).collect());
            }
            let s = self.whole.get_or_insert_with(|| {
                let mut s = yara_x::Scanner::new(rules);
                s.set_timeout(TIMEOUT);
                s
            });
            let r = s.scan(&self.buf).map_err(|e| e.to_string())?;
            Ok(r.matching_rules().map(|m| m.identifier().to_string()).collect())
        }
    }
}

#[cfg(not(feature = "yara"))]
mod none {
    use super::*;

    /// This build has no YARA engine: compiling refuses, so nothing else is reached.
    pub struct YaraRules {
        pub count: usize,
        never: std::convert::Infallible,
    }

    impl YaraRules {
        pub fn compile(sources: &[RuleSource]) -> Result<YaraRules> {
            let origin = sources.first().map_or("YARA rules".to_string(), |s| format!("YARA rules {}", s.origin));
            Err(Error::invalid(
                origin,
                "this kura was built without YARA (cargo feature `yara`, on by default): \
                 build it with the default features, or use sha256 and name indicators only",
            ))
        }

        pub fn matcher(&self) -> YaraMatcher<'_> {
            match self.never {}
        }
    }

    pub struct YaraMatcher<'r>(&'r YaraRules);

    impl YaraMatcher<'_> {
        pub fn update(&mut self, _data: &[u8]) {
            match self.0.never {}
        }

        pub fn finish(&mut self) -> std::result::Result<Vec<String>, String> {
            match self.0.never {}
        }
    }
}

#[cfg(all(test, feature = "yara"))]
mod tests {
    use super::*;

    fn rules(text: &str) -> YaraRules {
        YaraRules::compile(&[RuleSource { origin: "t.yar".into(), text: text.into() }]).unwrap()
    }

    #[test]
    fn matches_whole_files_and_large_ones_in_overlapping_blocks() {
        let r = rules(
            "rule Marker { strings: $m = \"RANSOM-MARKER\" condition: $m }\n\
             rule Small { condition: filesize < 100 }\n",
        );
        assert_eq!(r.count, 2);
        let mut m = r.matcher();
        m.update(b"hello RANSOM-");
        m.update(b"MARKER here");
        assert_eq!(m.finish().unwrap(), vec!["Marker", "Small"]);
        m.update(b"nothing");
        assert_eq!(m.finish().unwrap(), vec!["Small"]);
        // Over WHOLE_MAX: blocks. A marker across a block boundary and one at the
        // very end are found; `filesize` is undefined there.
        let mut big = vec![b'x'; WHOLE_MAX + 3 * BLOCK];
        let at = BLOCK + OVERLAP - 5;
        big[at..at + 13].copy_from_slice(b"RANSOM-MARKER");
        for chunk in big.chunks(1 << 20) {
            m.update(chunk);
        }
        assert_eq!(m.finish().unwrap(), vec!["Marker"]);
        let mut end = vec![b'y'; WHOLE_MAX + BLOCK / 2];
        let n = end.len();
        end[n - 13..].copy_from_slice(b"RANSOM-MARKER");
        m.update(&end);
        assert_eq!(m.finish().unwrap(), vec!["Marker"]);
        m.update(&vec![b'z'; WHOLE_MAX + 1]);
        assert!(m.finish().unwrap().is_empty());
    }

    #[test]
    fn a_bad_rule_names_its_file_and_line() {
        let e = YaraRules::compile(&[RuleSource {
            origin: "rules/bad.yar".into(),
            text: "rule A { condition: true }\nrule B {\n  condition: $nope\n}\n".into(),
        }])
        .err()
        .expect("refused")
        .to_string();
        assert!(e.contains("rules/bad.yar:3"), "{e}");
        assert!(e.contains("$nope"), "{e}");
    }
}

#[cfg(all(test, not(feature = "yara")))]
mod tests {
    use super::*;

    #[test]
    fn without_the_feature_yara_rules_are_refused_saying_so() {
        let e = YaraRules::compile(&[RuleSource { origin: "r.yar".into(), text: "rule A { condition: true }".into() }])
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains("r.yar") && e.contains("built without YARA"), "{e}");
    }
}
