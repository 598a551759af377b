//! S3 locations and settings: parsed from the location string and `KURA_S3_*`
//! variables. Pure (the environment is passed in), so every case is unit-tested.
//!
//! ```text
//! s3:https://host:port/bucket/prefix?key=value&...   a self-hosted store, path-style
//! s3:bucket/prefix?key=value&...                      AWS, virtual-host style
//! ```
//! A query parameter wins over the matching `KURA_S3_<KEY>` variable (upper case).
//! Secrets never appear here: credentials come from a file or the AWS chain.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockMode {
    Governance,
    Compliance,
}

#[derive(Clone, Debug, PartialEq)]
pub struct S3Settings {
    /// `None`: AWS itself (endpoint from the region).
    pub endpoint: Option<String>,
    pub bucket: String,
    /// Object key prefix without leading or trailing `/` (may be empty).
    pub prefix: String,
    pub region: Option<String>,
    pub path_style: bool,
    pub storage_class: Option<String>,
    pub credentials_file: Option<PathBuf>,
    /// `when_required` (default): the SDK adds no checksums of its own and kura sends
    /// Content-MD5 on every upload. `when_supported`: the SDK's default checksums.
    pub checksum_when_required: bool,
    pub multipart_threshold: u64,
    pub part_size: u64,
    pub parallel_parts: usize,
    /// Bytes per second over all transfers of this backend; `None`: unlimited.
    pub bandwidth: Option<u64>,
    pub lock_days: Option<u32>,
    pub lock_mode: LockMode,
    pub connect_timeout: Duration,
    /// No byte received for this long: the attempt fails (a server that never answers).
    pub read_timeout: Duration,
    /// One attempt of one request, at most.
    pub attempt_timeout: Duration,
    /// Attempts per request (1 = no retry), with exponential backoff and jitter.
    pub attempts: u32,
    /// The most requests in flight at once; below it, the backend adapts (see
    /// `concurrency`).
    pub connections: usize,
}

/// Every setting, its query key (env: `KURA_S3_` + upper case) and what it takes.
pub const SETTINGS: &[(&str, &str)] = &[
    ("region", "region name (else the AWS chain, else us-east-1 for an endpoint)"),
    ("path_style", "true|false (default: true with an endpoint, false on AWS)"),
    ("storage_class", "e.g. STANDARD_IA, GLACIER_IR (default: the bucket's)"),
    ("credentials_file", "file with aws_access_key_id / aws_secret_access_key lines (else the AWS chain)"),
    ("checksum", "when_required (default) | when_supported; AWS_REQUEST_CHECKSUM_CALCULATION is honoured"),
    ("multipart_threshold", "size from which uploads are multipart (default 32MiB)"),
    ("part_size", "multipart part size (default 8MiB, at least 5MiB)"),
    ("parallel_parts", "parts of one upload in flight (default 4)"),
    ("bandwidth", "limit per process, bytes/s with suffix, e.g. 20MiB (default unlimited)"),
    ("object_lock_days", "object-lock retention set on every upload (default none)"),
    ("object_lock_mode", "governance (default) | compliance"),
    ("connect_timeout", "seconds (default 10)"),
    ("read_timeout", "seconds without a byte before an attempt fails (default 60)"),
    ("attempt_timeout", "seconds per attempt (default 600)"),
    ("attempts", "tries per request, with backoff and jitter (default 5)"),
    ("connections", "most requests in flight, 1 to 256; fewer while the server is slow or refusing (default 32)"),
];

impl S3Settings {
    /// Parses `s3:...` with `env` looking up variables (`std::env::var` in production).
    pub fn parse(location: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Self> {
        let bad = |reason: String| Error::invalid(format!("S3 location {location:?}"), reason);
        let rest = location.strip_prefix("s3:").ok_or_else(|| bad("it must start with s3:".into()))?;
        let (main, query) = match rest.split_once('?') {
            Some((m, q)) => (m, Some(q)),
            None => (rest, None),
        };
        let mut params: Vec<(String, String)> = Vec::new();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').ok_or_else(|| bad(format!("query parameter {pair:?} has no '='")))?;
            let k = k.replace('-', "_");
            if !SETTINGS.iter().any(|(name, _)| *name == k) {
                let known: Vec<&str> = SETTINGS.iter().map(|(n, _)| *n).collect();
                return Err(bad(format!("unknown setting {k:?} (known: {})", known.join(", "))));
            }
            params.push((k, v.to_string()));
        }
        let get = |key: &str| -> Option<String> {
            params
                .iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
                .or_else(|| env(&format!("KURA_S3_{}", key.to_uppercase())))
                .filter(|v| !v.is_empty())
        };

        let (endpoint, path) =
            if let Some(after) = main.strip_prefix("http://").or_else(|| main.strip_prefix("https://")) {
                let scheme = &main[..main.len() - after.len()];
                let (host, path) = after.split_once('/').unwrap_or((after, ""));
                if host.is_empty() {
                    return Err(bad("the endpoint has no host".into()));
                }
                (Some(format!("{scheme}{host}")), path)
            } else {
                (None, main)
            };
        let path = path.trim_matches('/');
        let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
        if bucket.is_empty() {
            return Err(bad("no bucket: write s3:http(s)://HOST[:PORT]/BUCKET[/PREFIX] or s3:BUCKET[/PREFIX]".into()));
        }
        if !bucket.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
            || bucket.len() < 3
            || bucket.len() > 63
        {
            return Err(bad(format!("{bucket:?} is not a valid bucket name (3-63 of a-z, 0-9, '-', '.')")));
        }

        let boolean = |key: &str, default: bool| -> Result<bool> {
            match get(key).as_deref() {
                None => Ok(default),
                Some("true" | "1" | "yes") => Ok(true),
                Some("false" | "0" | "no") => Ok(false),
                Some(v) => Err(bad(format!("{key}={v:?}: expected true or false"))),
            }
        };
        let size = |key: &str, default: u64| -> Result<u64> {
            match get(key) {
                None => Ok(default),
                Some(v) => parse_size(&v).ok_or_else(|| bad(format!("{key}={v:?}: expected a size like 8MiB"))),
            }
        };
        let number = |key: &str, default: u64| -> Result<u64> {
            match get(key) {
                None => Ok(default),
                Some(v) => v.parse().map_err(|_| bad(format!("{key}={v:?}: expected a whole number"))),
            }
        };

        let checksum_when_required = match get("checksum").or_else(|| env("AWS_REQUEST_CHECKSUM_CALCULATION")) {
            None => true,
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "when_required" => true,
                "when_supported" => false,
                _ => return Err(bad(format!("checksum={v:?}: expected when_required or when_supported"))),
            },
        };
        let part_size = size("part_size", 8 << 20)?;
        if part_size < 5 << 20 {
            return Err(bad("part_size must be at least 5MiB (an S3 limit)".into()));
        }
        let lock_mode = match get("object_lock_mode").as_deref() {
            None | Some("governance") => LockMode::Governance,
            Some("compliance") => LockMode::Compliance,
            Some(v) => return Err(bad(format!("object_lock_mode={v:?}: expected governance or compliance"))),
        };
        let lock_days = match get("object_lock_days") {
            None => None,
            Some(v) => match v.parse::<u32>() {
                Ok(d) if d > 0 => Some(d),
                _ => return Err(bad(format!("object_lock_days={v:?}: expected a number of days above 0"))),
            },
        };
        let attempts = number("attempts", 5)?;
        if attempts == 0 || attempts > 100 {
            return Err(bad("attempts must be between 1 and 100".into()));
        }
        let connections = number("connections", 32)?;
        if connections == 0 || connections > 256 {
            return Err(bad(format!("connections={connections}: expected 1 to 256")));
        }
        let secs = |key: &str, default: u64| -> Result<Duration> {
            let n = number(key, default)?;
            if n == 0 {
                return Err(bad(format!("{key} must be above 0 seconds")));
            }
            Ok(Duration::from_secs(n))
        };
        Ok(S3Settings {
            path_style: boolean("path_style", endpoint.is_some())?,
            endpoint,
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            region: get("region"),
            storage_class: get("storage_class"),
            credentials_file: get("credentials_file").map(PathBuf::from),
            checksum_when_required,
            multipart_threshold: size("multipart_threshold", 32 << 20)?.max(5 << 20),
            part_size,
            parallel_parts: (number("parallel_parts", 4)? as usize).clamp(1, 64),
            bandwidth: match get("bandwidth") {
                None => None,
                Some(v) => Some(
                    parse_size(&v)
                        .filter(|&n| n > 0)
                        .ok_or_else(|| bad(format!("bandwidth={v:?}: expected e.g. 20MiB")))?,
                ),
            },
            lock_days,
            lock_mode,
            connect_timeout: secs("connect_timeout", 10)?,
            read_timeout: secs("read_timeout", 60)?,
            attempt_timeout: secs("attempt_timeout", 600)?,
            attempts: attempts as u32,
            connections: connections as usize,
        })
    }

    /// The location without settings: `s3:http://host:9000/bucket/prefix`.
    pub fn display(&self) -> String {
        let mut s = String::from("s3:");
        if let Some(e) = &self.endpoint {
            s.push_str(e);
            s.push('/');
        }
        s.push_str(&self.bucket);
        if !self.prefix.is_empty() {
            s.push('/');
            s.push_str(&self.prefix);
        }
        s
    }

    /// What error messages name as the server.
    pub fn endpoint_name(&self) -> String {
        match &self.endpoint {
            Some(e) => e.clone(),
            None => format!("AWS S3 (bucket {})", self.bucket),
        }
    }
}

/// "8MiB", "20MB", "1048576", "1.5GiB" -> bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        _ => return None,
    };
    Some((n * mult as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn endpoint_location_is_path_style() {
        let s = S3Settings::parse("s3:http://127.0.0.1:3900/kura-test/site/a", &no_env).unwrap();
        assert_eq!(s.endpoint.as_deref(), Some("http://127.0.0.1:3900"));
        assert_eq!((s.bucket.as_str(), s.prefix.as_str()), ("kura-test", "site/a"));
        assert!(s.path_style && s.checksum_when_required);
        assert_eq!(s.display(), "s3:http://127.0.0.1:3900/kura-test/site/a");
        assert_eq!(s.attempts, 5);
    }

    #[test]
    fn aws_location_is_virtual_host_style() {
        let s = S3Settings::parse("s3:my-bucket", &no_env).unwrap();
        assert_eq!(s.endpoint, None);
        assert_eq!((s.bucket.as_str(), s.prefix.as_str()), ("my-bucket", ""));
        assert!(!s.path_style);
        assert_eq!(s.display(), "s3:my-bucket");
    }

    #[test]
    fn query_beats_environment() {
        let env = |k: &str| match k {
            "KURA_S3_REGION" => Some("eu-west-1".to_string()),
            "KURA_S3_PART_SIZE" => Some("16MiB".to_string()),
            "AWS_REQUEST_CHECKSUM_CALCULATION" => Some("WHEN_SUPPORTED".to_string()),
            _ => None,
        };
        let s = S3Settings::parse(
            "s3:https://s3.example.org/b-1/p?region=garage&object_lock_days=30&object-lock-mode=compliance&bandwidth=2MiB",
            &env,
        )
        .unwrap();
        assert_eq!(s.region.as_deref(), Some("garage"));
        assert_eq!(s.part_size, 16 << 20);
        assert!(!s.checksum_when_required);
        assert_eq!((s.lock_days, s.lock_mode), (Some(30), LockMode::Compliance));
        assert_eq!(s.bandwidth, Some(2 << 20));
        assert_eq!(s.display(), "s3:https://s3.example.org/b-1/p", "settings are not part of the name");
    }

    #[test]
    fn bad_locations_are_named_errors() {
        for (loc, needle) in [
            ("s3:", "no bucket"),
            ("s3:http:///bucket", "no host"),
            ("s3:http://h/Bad_Bucket", "not a valid bucket name"),
            ("s3:bucket?colour=blue", "unknown setting \"colour\""),
            ("s3:bucket?part_size=1MiB", "at least 5MiB"),
            ("s3:bucket?attempts=0", "between 1 and 100"),
            ("s3:bucket?connections=0", "expected 1 to 256"),
            ("s3:bucket?connections=1000", "expected 1 to 256"),
            ("s3:bucket?object_lock_days=x", "object_lock_days"),
            ("s3:bucket?checksum=always", "when_required"),
            ("s3:bucket?path_style=maybe", "true or false"),
            ("s3:bucket?region", "has no '='"),
        ] {
            let e = S3Settings::parse(loc, &no_env).unwrap_err().to_string();
            assert!(e.contains(needle), "{loc}: {e}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("8MiB"), Some(8 << 20));
        assert_eq!(parse_size("1.5 GiB"), Some(3 << 29));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("10MB"), Some(10_000_000));
        assert_eq!(parse_size("lots"), None);
    }
}
