//! Glob lists for `--exclude` and `--include`. A pattern without `/` matches a
//! file name at any depth; a pattern with `/` matches the whole absolute path
//! (for restore: the path inside the snapshot).

use std::path::Path;

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::error::{Error, Result};
use crate::repo::tree::RawName;

pub struct Globs {
    names: GlobSet,
    paths: GlobSet,
    count: usize,
}

impl Globs {
    /// `flag` names the option in error messages.
    pub fn new(patterns: &[String], flag: &str) -> Result<Self> {
        let (mut names, mut paths) = (GlobSetBuilder::new(), GlobSetBuilder::new());
        for p in patterns {
            let pat = p.trim_end_matches('/');
            let g = Glob::new(pat).map_err(|e| Error::invalid(format!("{flag} pattern"), format!("{p:?}: {e}")))?;
            if pat.contains('/') {
                paths.add(g);
            } else {
                names.add(g);
            }
        }
        let build = |b: GlobSetBuilder| b.build().map_err(|e| Error::invalid(format!("{flag} pattern"), e.to_string()));
        Ok(Globs { names: build(names)?, paths: build(paths)?, count: patterns.len() })
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn matches(&self, full: &Path, name: &RawName) -> bool {
        self.names.is_match(name.as_os_str()) || self.paths.is_match(full)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_name_and_by_path() {
        let g = Globs::new(&["*.tmp".into(), "/data/cache/".into()], "--exclude").unwrap();
        assert!(g.matches(Path::new("/x/a.tmp"), &"a.tmp".into()));
        assert!(g.matches(Path::new("/data/cache"), &"cache".into()));
        assert!(!g.matches(Path::new("/data/keep"), &"keep".into()));
        assert!(Globs::new(&["a[".into()], "--exclude").is_err());
    }
}
