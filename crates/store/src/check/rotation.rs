//! `check --read-data-subset next/M` and the daemon's rotating check job: which part
//! of the packs the next check reads. Both entry points go through [`Rotation`], so
//! a check from the command line and one run by the daemon continue one rotation
//! per repository (on this machine, for this user's cache directory).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

use super::{CheckReport, ReadData};

/// At most this many parts: a part is the packs whose first id byte is `n-1`
/// modulo M, so beyond 256 some parts would be empty and M runs would not read all.
pub const MAX_PARTS: u32 = 256;

/// Part `n` of `of` (1-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Part {
    pub n: u32,
    pub of: u32,
}

impl Part {
    pub fn read_data(self) -> ReadData {
        ReadData::Part(self.n, self.of)
    }
}

/// The part after `last` when reading `of` parts. A last part of another M names
/// other packs, so a changed M starts again at part 1.
pub fn next_after(last: Option<Part>, of: u32) -> Part {
    match last {
        Some(l) if l.of == of => Part { n: l.n % of + 1, of },
        _ => Part { n: 1, of },
    }
}

/// Where one repository's rotation is remembered: a small file holding the last
/// part a clean check read (`n/M`).
#[derive(Clone, Debug)]
pub struct Rotation {
    file: PathBuf,
}

/// A decided part, to be passed back to [`Turn::finish`] with the check's report.
#[derive(Debug)]
#[must_use = "finish the turn, or the rotation never advances"]
pub struct Turn<'a> {
    rotation: &'a Rotation,
    pub part: Part,
}

impl Rotation {
    /// The rotation of the repository with this id, in the user's cache directory
    /// (`$XDG_CACHE_HOME`, else `~/.cache`, else the temporary directory).
    pub fn for_repository(repo_id: &str) -> Rotation {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(std::env::temp_dir);
        let short = repo_id.get(..16).unwrap_or(repo_id);
        Rotation::at(base.join("kura").join(format!("check-rotation-{short}")))
    }

    pub fn at(file: impl Into<PathBuf>) -> Rotation {
        Rotation { file: file.into() }
    }

    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Decides the part the next check reads. An unreadable or missing file starts
    /// at part 1: losing the rotation costs a re-read, never a skipped part.
    pub fn next(&self, of: u32) -> Result<Turn<'_>> {
        if !(1..=MAX_PARTS).contains(&of) {
            return Err(Error::invalid(
                "rotating check",
                format!("expected next/M with 1 <= M <= {MAX_PARTS}, not next/{of}"),
            ));
        }
        Ok(Turn { rotation: self, part: next_after(self.last(of), of) })
    }

    fn last(&self, of: u32) -> Option<Part> {
        let text = std::fs::read_to_string(&self.file).ok()?;
        let text = text.trim();
        match text.split_once('/') {
            Some((n, m)) => Some(Part { n: n.parse().ok()?, of: m.parse().ok()? }),
            // Written before M was recorded: taken as a part of the same M.
            None => Some(Part { n: text.parse().ok()?, of }),
        }
    }
}

impl Turn<'_> {
    /// Advances the rotation past this part if the check was clean; a part with
    /// damage is read again next time.
    pub fn finish(self, report: &CheckReport) -> Result<()> {
        if !report.is_clean() {
            return Ok(());
        }
        let file = &self.rotation.file;
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        std::fs::write(file, format!("{}/{}", self.part.n, self.part.of)).map_err(|e| Error::io(file, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean() -> CheckReport {
        CheckReport::default()
    }

    #[test]
    fn cycles_through_the_parts_and_repeats_a_damaged_one() {
        let dir = tempfile::tempdir().unwrap();
        let r = Rotation::at(dir.path().join("sub/rot"));
        let mut seen = Vec::new();
        for _ in 0..4 {
            let t = r.next(3).unwrap();
            seen.push(t.part.n);
            t.finish(&clean()).unwrap();
        }
        assert_eq!(seen, [1, 2, 3, 1]);
        let mut damaged = clean();
        damaged.errors.push("pack x is damaged".into());
        let t = r.next(3).unwrap();
        assert_eq!(t.part.n, 2);
        t.finish(&damaged).unwrap();
        assert_eq!(r.next(3).unwrap().part.n, 2, "a part with damage is read again");
        // Another M starts over; a file from before M was recorded continues.
        assert_eq!(r.next(5).unwrap().part, Part { n: 1, of: 5 });
        std::fs::write(r.file(), "2\n").unwrap();
        assert_eq!(r.next(4).unwrap().part, Part { n: 3, of: 4 });
        assert!(r.next(0).is_err());
        assert!(r.next(MAX_PARTS + 1).unwrap_err().to_string().contains("next/M"));
    }

    #[test]
    fn next_after_wraps() {
        assert_eq!(next_after(None, 4), Part { n: 1, of: 4 });
        assert_eq!(next_after(Some(Part { n: 4, of: 4 }), 4), Part { n: 1, of: 4 });
        assert_eq!(next_after(Some(Part { n: 1, of: 1 }), 1), Part { n: 1, of: 1 });
        assert_eq!(next_after(Some(Part { n: 2, of: 7 }), 4), Part { n: 1, of: 4 });
    }
}
