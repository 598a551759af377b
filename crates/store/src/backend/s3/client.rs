//! Building the SDK client (HTTP, time-outs, region, credentials) and the bridge
//! from synchronous callers to the backend's runtime.
//!
//! The SDK's own retries are turned off here: retrying is `retry.rs`'s job alone, so
//! attempts and time stay bounded by the settings.

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
    StalledStreamProtectionConfig,
};
use aws_sdk_s3::Client;

use super::S3Settings;
use crate::error::{Error, Result};

/// Runs `f` on this thread, or on a plain scoped thread when this one is inside a
/// tokio context, where `Runtime::block_on` panics.
pub(super) fn outside_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|scope| match scope.spawn(f).join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

pub(super) async fn make_client(s: &S3Settings, file_creds: Option<Credentials>) -> Client {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(s.connect_timeout)
        .read_timeout(s.read_timeout)
        .operation_attempt_timeout(s.attempt_timeout)
        .build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http.clone())
        .retry_config(RetryConfig::disabled())
        .timeout_config(timeouts.clone());
    // A self-hosted endpoint: the region is a name the server expects, never looked up
    // in instance metadata.
    let region = s.region.clone().or_else(|| {
        s.endpoint.as_ref().map(|_| {
            ["AWS_REGION", "AWS_DEFAULT_REGION"]
                .iter()
                .find_map(|v| std::env::var(v).ok().filter(|r| !r.is_empty()))
                .unwrap_or_else(|| "us-east-1".into())
        })
    });
    if let Some(r) = region {
        loader = loader.region(Region::new(r));
    }
    if let Some(c) = file_creds {
        loader = loader.credentials_provider(c);
    }
    let shared = loader.load().await;
    let mut b = aws_sdk_s3::config::Builder::from(&shared)
        .http_client(http)
        .retry_config(RetryConfig::disabled())
        .timeout_config(timeouts)
        .force_path_style(s.path_style)
        // A bandwidth limit is a deliberate slowdown, not a stall.
        .stalled_stream_protection(StalledStreamProtectionConfig::disabled());
    if shared.region().is_none() {
        b = b.region(Region::new("us-east-1"));
    }
    if let Some(e) = &s.endpoint {
        b = b.endpoint_url(e);
    }
    if s.checksum_when_required {
        b = b
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
    }
    Client::from_conf(b.build())
}

/// A credentials file: `aws_access_key_id`, `aws_secret_access_key` and optionally
/// `aws_session_token` as `key = value` lines (the AWS credentials-file format; the
/// `[default]` section, or the only one).
pub(super) fn read_credentials_file(path: &std::path::Path) -> Result<Credentials> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let bad = |reason: String| Error::invalid(format!("credentials file {}", path.display()), reason);
    // Sections in order, each with its key = value pairs.
    let mut sections: Vec<(String, Vec<(String, String)>)> = vec![(String::new(), Vec::new())];
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            sections.push((name.trim().to_string(), Vec::new()));
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            let shown: String = line.chars().take(12).collect();
            return Err(bad(format!("a line starting {shown:?}... is not `key = value`")));
        };
        let k = k.trim().to_ascii_lowercase();
        sections.last_mut().expect("never empty").1.push((k, v.trim().to_string()));
    }
    let chosen = sections
        .iter()
        .find(|(n, _)| n == "default")
        .or_else(|| sections.iter().find(|(_, kv)| !kv.is_empty()))
        .map(|(_, kv)| kv.clone())
        .unwrap_or_default();
    let get = |names: &[&str]| chosen.iter().find(|(k, _)| names.contains(&k.as_str())).map(|(_, v)| v.clone());
    let id = get(&["aws_access_key_id", "access_key_id"]);
    let secret = get(&["aws_secret_access_key", "secret_access_key"]);
    let token = get(&["aws_session_token", "session_token"]);
    match (id, secret) {
        (Some(id), Some(secret)) => Ok(Credentials::new(id, secret, token, None, "kura-credentials-file")),
        _ => Err(bad("it needs aws_access_key_id and aws_secret_access_key lines".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_file_formats() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("creds");
        std::fs::write(
            &p,
            "[other]\naws_access_key_id = X\n[default]\naws_access_key_id = GKabc\naws_secret_access_key = s3cr3t\n",
        )
        .unwrap();
        let c = read_credentials_file(&p).unwrap();
        assert_eq!(c.access_key_id(), "GKabc", "the [default] section wins");
        std::fs::write(&p, "aws_access_key_id = GKabc\naws_secret_access_key = s3cr3t\n").unwrap();
        let c = read_credentials_file(&p).unwrap();
        assert_eq!((c.access_key_id(), c.secret_access_key()), ("GKabc", "s3cr3t"));
        std::fs::write(&p, "aws_access_key_id = GKabc\n").unwrap();
        let e = read_credentials_file(&p).unwrap_err().to_string();
        assert!(e.contains("aws_secret_access_key") && !e.contains("GKabc"), "{e}");
        std::fs::write(&p, "justasecretvalue\n").unwrap();
        let e = read_credentials_file(&p).unwrap_err().to_string();
        assert!(e.contains("key = value") && !e.contains("justasecretvalue"), "{e}");
    }
}
