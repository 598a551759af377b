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
