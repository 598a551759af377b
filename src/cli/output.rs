//! Printing helpers: progress bars, human units, JSON.

use std::path::Path;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use kura::progress::Progress;
use serde::Serialize;

/// indicatif behind the library's progress trait. Warnings always reach stderr.
pub struct Bar {
    bar: Option<ProgressBar>,
}

impl Bar {
    /// A spinner with byte counters until the total is known, then a bar.
    pub fn new(show: bool, msg: &'static str) -> Self {
        let bar = show.then(|| {
            let b = ProgressBar::new(0);
            b.set_style(
                ProgressStyle::with_template("{msg} {spinner} [{elapsed_precise}] {bytes} ({binary_bytes_per_sec})")
                    .expect("valid template"),
            );
            b.set_message(msg);
            b.enable_steady_tick(Duration::from_millis(200));
            b
        });
        Bar { bar }
    }
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl Progress for Bar {
    fn set_total(&self, total: u64) {
        if let Some(b) = &self.bar {
            b.set_style(
                ProgressStyle::with_template(
                    "{msg} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({binary_bytes_per_sec}, {eta} left)",
                )
                .expect("valid template"),
            );
            b.set_length(total);
        }
    }
    fn advance(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }
    fn file_done(&self, _p: &Path) {}
    fn warn(&self, msg: &str) {
        match &self.bar {
            Some(b) => b.suspend(|| eprintln!("warning: {msg}")),
            None => eprintln!("warning: {msg}"),
        }
    }
    fn note(&self, msg: &str) {
        match &self.bar {
            Some(b) => b.suspend(|| eprintln!("note: {msg}")),
            None => eprintln!("note: {msg}"),
        }
    }
}

pub fn bytes(n: u64) -> String {
    kura::types::HumanBytes(n).to_string()
}

pub fn duration_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 120_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    }
}

pub fn print_json<T: Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// A file name for human output: control characters (newline, tab, escape...) and
/// bytes that are not UTF-8 are written as escapes, and a backslash as `\\`, as
/// `ls -b` does, so one name is always one line and cannot move the terminal's
/// cursor. JSON output carries names exactly instead.
pub fn escape_name(raw: &[u8]) -> String {
    let mut out = String::with_capacity(raw.len());
    for chunk in raw.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if (c as u32) < 0x80 && c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
                c if c.is_control() => out.push_str(&format!("\\u{{{:04x}}}", c as u32)),
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape_name;

    #[test]
    fn escape_name_quotes_control_characters_and_bad_utf8() {
        assert_eq!(escape_name(b"plain name.txt"), "plain name.txt");
        assert_eq!(escape_name("caf\u{e9}".as_bytes()), "caf\u{e9}");
        assert_eq!(escape_name(b"a\nb\tc\rd"), "a\\nb\\tc\\rd");
        assert_eq!(escape_name(b"esc\x1b[2J"), "esc\\x1b[2J");
        assert_eq!(escape_name(b"back\\slash"), "back\\\\slash");
        assert_eq!(escape_name(b"bad\xffutf8"), "bad\\xffutf8");
        assert_eq!(escape_name("c1\u{85}".as_bytes()), "c1\\u{0085}");
    }
}
