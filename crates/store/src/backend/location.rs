//! Repository locations, parsed once: every place that opens a repository or asks
//! "is this local?" (the backend opener, `config check`, restore's thread count)
//! goes through [`Location::parse`], so a string means the same everywhere.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Where a repository lives.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Location {
    /// A directory on this machine (relative paths are relative to the caller's
    /// base: the current directory, or the config file's directory).
    Local(PathBuf),
    /// An `s3:...` location, kept as written. Its details (endpoint, bucket,
    /// settings) are parsed by `s3::settings` when it is opened, because they also
    /// read `KURA_S3_*` from the environment at that moment.
    S3(String),
}

/// Why a string is not a repository location.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LocationError {
    #[error("invalid repository location: it is empty")]
    Empty,
    /// `scheme://...` that kura has no backend for (`http://x`): neither a local
    /// path nor S3, and treating it as a directory named `http:` would surprise.
    #[error(
        "{location:?} is not a repository location: kura has no {scheme}:// backend. \
         Write a local directory path, or an S3 location such as {suggestion}"
    )]
    UnsupportedScheme { location: String, scheme: String, suggestion: String },
}

impl Location {
    pub fn parse(s: &str) -> Result<Location, LocationError> {
        if s.is_empty() {
            return Err(LocationError::Empty);
        }
        if let Some(scheme) = url_scheme(s) {
            let rest = &s[scheme.len() + 3..];
            let suggestion = match scheme.to_ascii_lowercase().as_str() {
                "http" | "https" => format!("s3:{s}"),
                "s3" => format!("s3:{rest}"),
                _ => "s3:https://HOST/BUCKET/PREFIX".to_string(),
            };
            return Err(LocationError::UnsupportedScheme {
                location: s.to_string(),
                scheme: scheme.to_string(),
                suggestion,
            });
        }
        // After the scheme test: `s3://bucket` is a URL, not the `s3:` syntax.
        if s.starts_with("s3:") {
            return Ok(Location::S3(s.to_string()));
        }
        Ok(Location::Local(PathBuf::from(s)))
    }

    pub fn is_local(&self) -> bool {
        matches!(self, Location::Local(_))
    }

    /// The local directory, if this is one.
    pub fn local_path(&self) -> Option<&Path> {
        match self {
            Location::Local(p) => Some(p),
            Location::S3(_) => None,
        }
    }
}

/// `scheme` of `scheme://...` (RFC 3986 scheme characters), if the string has one.
fn url_scheme(s: &str) -> Option<&str> {
    let (scheme, _) = s.split_once("://")?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    (first.is_ascii_alphabetic() && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
        .then_some(scheme)
}

impl FromStr for Location {
    type Err = LocationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Location::parse(s)
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(p) => write!(f, "{}", p.display()),
            Location::S3(s) => f.write_str(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_local_s3_and_refuses_other_schemes() {
        assert_eq!(Location::parse("/srv/kura").unwrap(), Location::Local("/srv/kura".into()));
        assert_eq!(Location::parse("repo").unwrap(), Location::Local("repo".into()));
        // A colon or "://" after a path segment is part of a local name.
        assert_eq!(Location::parse("./a://b").unwrap(), Location::Local("./a://b".into()));
        assert_eq!(Location::parse("/x/http://y").unwrap(), Location::Local("/x/http://y".into()));
        let s3 = "s3:https://s3.example.net/bucket/kura";
        assert_eq!(Location::parse(s3).unwrap(), Location::S3(s3.into()));
        assert_eq!(Location::parse(""), Err(LocationError::Empty));
        let e = Location::parse("http://x/b").unwrap_err();
        assert!(matches!(&e, LocationError::UnsupportedScheme { scheme, .. } if scheme == "http"), "{e:?}");
        assert!(e.to_string().contains("s3:http://x/b"), "{e}");
        let e = Location::parse("s3://bucket/p").unwrap_err();
        assert!(e.to_string().contains("such as s3:bucket/p"), "{e}");
        assert!(Location::parse("sftp://host/x").is_err());
    }

    #[test]
    fn displays_as_written() {
        assert_eq!(Location::parse("s3:b/p").unwrap().to_string(), "s3:b/p");
        assert_eq!(Location::parse("/srv/kura").unwrap().to_string(), "/srv/kura");
    }
}
