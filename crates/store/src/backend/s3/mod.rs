//! A repository in an S3 bucket (AWS, Garage, MinIO, Ceph RGW, ...).
//!
//! The `Backend` trait is synchronous; this backend owns a small tokio runtime and
//! blocks on it, so pipeline worker threads call it like the local one. A caller that
//! is itself inside a tokio context (a daemon job on a `spawn_blocking` thread, or a
//! test's runtime) is served too: the call hops to a short-lived plain thread, since
//! tokio refuses to nest `block_on` in a runtime context.
//!
//! * Layout: the local one under the prefix (`config`, `keys/`, `data/ab/abcd...`, ...),
//!   so a local repository synced to a bucket opens as is.
//! * Errors: every SDK error goes through [`classify`], the one mapping to
//!   `BackendError`. Retries (exponential backoff with full jitter) happen in
//!   [`Inner::retry`] only; the SDK's own retries are disabled.
//! * Integrity: with `checksum=when_required` (the default) every upload carries a
//!   Content-MD5 that the server checks; readers verify content hashes anyway.
//! * Servers without conditional writes (Garage) overwrite silently: nothing here
//!   relies on If-None-Match. Objects are content-addressed, so an overwrite writes
//!   the same bytes.

pub mod settings;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
    StalledStreamProtectionConfig,
};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketLocationConstraint, CompletedMultipartUpload, CompletedPart, CreateBucketConfiguration, ObjectLockEnabled,
    ObjectLockMode, StorageClass,
};
use aws_sdk_s3::Client;
use base64::Engine as _;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use md5::Digest as _;
use rand::Rng;

use super::{object_name, BResult, Backend, BackendError, Kind};
use crate::error::{Error, Result};
pub use settings::{LockMode, S3Settings};

type HttpResponse = aws_smithy_runtime_api::http::Response;

pub struct S3Backend {
    /// Always `Some` until drop, which shuts it down without blocking (dropping a
    /// runtime inside another runtime's context would panic).
    rt: Option<tokio::runtime::Runtime>,
    inner: Arc<Inner>,
}

impl Drop for S3Backend {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// Runs `f` on this thread, or on a plain scoped thread when this one is inside a
/// tokio context, where `Runtime::block_on` panics.
fn outside_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|scope| match scope.spawn(f).join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

struct Inner {
    client: Client,
    s: S3Settings,
    throttle: Option<Throttle>,
    /// Result of probing the bucket's object-lock configuration (only when retention is set).
    lock_probe: tokio::sync::OnceCell<std::result::Result<(), String>>,
}

impl S3Backend {
    /// Opens `s3:...` with settings from the location and `KURA_S3_*` variables.
    pub fn open(location: &str) -> Result<Self> {
        let s = S3Settings::parse(location, &|k| std::env::var(k).ok())?;
        Self::new(s)
    }

    pub fn new(s: S3Settings) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("kura-s3")
            .enable_all()
            .build()
            .map_err(|e| Error::io("tokio runtime", e))?;
        let file_creds = match &s.credentials_file {
            Some(p) => Some(read_credentials_file(p)?),
            None => None,
        };
        let client = outside_runtime(|| rt.block_on(make_client(&s, file_creds)));
        let throttle = s.bandwidth.map(Throttle::new);
        Ok(S3Backend { rt: Some(rt), inner: Arc::new(Inner { client, s, throttle, lock_probe: Default::default() }) })
    }

    pub fn settings(&self) -> &S3Settings {
        &self.inner.s
    }

    fn run<T: Send>(&self, f: impl Future<Output = BResult<T>> + Send) -> BResult<T> {
        let rt = self.rt.as_ref().expect("the runtime lives until drop");
        outside_runtime(|| rt.block_on(f))
    }

    /// The retention date of an object under object lock, if it is still in the future.
    pub fn retained_until(&self, kind: Kind, name: &str) -> BResult<Option<DateTime<Utc>>> {
        let inner = &self.inner;
        self.run(async move { Ok(inner.head(kind, name).await?.1) })
    }
}

async fn make_client(s: &S3Settings, file_creds: Option<Credentials>) -> Client {
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
fn read_credentials_file(path: &std::path::Path) -> Result<Credentials> {
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

/// The one mapping from SDK errors to `BackendError`.
fn classify<E>(err: SdkError<E, HttpResponse>, object: String, endpoint: &str) -> BackendError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let detail = || chain(&err);
    match &err {
        SdkError::DispatchFailure(d) if d.is_user() => {
            BackendError::Permanent { object, reason: format!("request to {endpoint} failed: {}", detail()) }
        }
        SdkError::DispatchFailure(d) if d.is_timeout() => {
            BackendError::Transient { object, reason: format!("no answer from {endpoint} in time: {}", detail()) }
        }
        SdkError::DispatchFailure(_) => {
            let d = detail();
            if d.contains("credentials") {
                return BackendError::Permanent {
                    object,
                    reason: format!(
                        "no usable S3 credentials for {endpoint}: give credentials_file=FILE in the location, or set \
                         AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or an AWS profile ({d})"
                    ),
                };
            }
            BackendError::Transient { object, reason: format!("cannot reach {endpoint}: {d}") }
        }
        SdkError::TimeoutError(_) => BackendError::Transient {
            object,
            reason: format!("no answer from {endpoint} in time (timeout; see read_timeout/attempt_timeout)"),
        },
        SdkError::ResponseError(_) => {
            BackendError::Transient { object, reason: format!("bad or cut-off response from {endpoint}: {}", detail()) }
        }
        SdkError::ConstructionFailure(_) => {
            let d = detail();
            BackendError::Permanent { object, reason: format!("cannot send the request to {endpoint}: {d}") }
        }
        SdkError::ServiceError(_) => {
            let status = err.raw_response().map(|r| r.status().as_u16()).unwrap_or(0);
            let code = err.code().unwrap_or("").to_string();
            let msg = err.message().unwrap_or("").to_string();
            let what = if code.is_empty() { format!("HTTP {status}") } else { format!("{code} (HTTP {status})") };
            match (status, code.as_str()) {
                (_, "NoSuchBucket") => BackendError::Permanent {
                    object,
                    reason: format!("the bucket does not exist at {endpoint}: run `kura init` to create it"),
                },
                (404, _) | (_, "NoSuchKey" | "NotFound") => BackendError::NotFound { object },
                (403, _)
                | (
                    _,
                    "AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "InvalidToken" | "ExpiredToken",
                ) => BackendError::Permanent {
                    object,
                    reason: format!(
                        "access denied by {endpoint}: {what} {msg}; check the credentials and their permissions"
                    ),
                },
                (412, _) | (_, "PreconditionFailed") => BackendError::AlreadyExists { object },
                (416, _) | (_, "InvalidRange") => {
                    BackendError::Permanent { object, reason: "is shorter than the range requested".into() }
                }
                (501, _) | (_, "NotImplemented") => BackendError::Permanent {
                    object,
                    reason: format!("{endpoint} does not implement this request: {what} {msg}"),
                },
                (408 | 429 | 500..=599, _)
                | (
                    _,
                    "SlowDown" | "RequestTimeout" | "InternalError" | "ServiceUnavailable" | "RequestTimeTooSkewed",
                ) => BackendError::Transient { object, reason: format!("{endpoint} answered {what} {msg}") },
                _ => BackendError::Permanent { object, reason: format!("{endpoint} answered {what} {msg}") },
            }
        }
        _ => BackendError::Permanent { object, reason: detail() },
    }
}

/// An error and its sources, one line, each message once.
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(err);
    while let Some(e) = cur {
        let m = e.to_string();
        if !m.is_empty() && !parts.iter().any(|p| p.contains(&m)) {
            parts.push(m);
        }
        cur = e.source();
    }
    let s = parts.join(": ");
    if s.len() > 400 {
        format!("{}...", &s[..s.char_indices().take_while(|(i, _)| *i < 400).last().map_or(0, |(i, _)| i)])
    } else {
        s
    }
}

/// Delay before retry `attempt` (1-based): 200 ms doubling up to 20 s, full jitter
/// in its upper half so that parallel workers do not retry in lockstep.
fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(200).saturating_mul(1 << attempt.min(10)).min(Duration::from_secs(20));
    let ms = base.as_millis() as u64;
    Duration::from_millis(rand::thread_rng().gen_range(ms / 2..=ms))
}

/// A shared pacing clock for the bandwidth limit: each transfer reserves its share of
/// time and waits until its slot starts.
struct Throttle {
    rate: u64,
    next: std::sync::Mutex<Instant>,
}

impl Throttle {
    fn new(rate: u64) -> Self {
        Throttle { rate, next: std::sync::Mutex::new(Instant::now()) }
    }
    async fn take(&self, bytes: u64) {
        let wait = {
            let mut next = self.next.lock().unwrap();
            let now = Instant::now();
            let start = (*next).max(now);
            *next = start + Duration::from_secs_f64(bytes as f64 / self.rate as f64);
            start - now
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

fn md5_b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(data))
}

impl Inner {
    fn key(&self, kind: Kind, name: &str) -> String {
        let rel = match kind {
            Kind::Config => "config".to_string(),
            Kind::Pack => format!("data/{}", super::pack_path(name)),
            _ => format!("{}/{name}", kind.dir()),
        };
        self.full(&rel)
    }

    fn full(&self, rel: &str) -> String {
        if self.s.prefix.is_empty() {
            rel.to_string()
        } else {
            format!("{}/{rel}", self.s.prefix)
        }
    }

    fn endpoint(&self) -> String {
        self.s.endpoint_name()
    }

    /// Runs `op` until it succeeds, fails for good, or runs out of attempts.
    async fn retry<T, F, Fut>(&self, mut op: F) -> BResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = BResult<T>>,
    {
        let mut attempt = 1;
        loop {
            match op().await {
                Err(BackendError::Transient { object, reason }) => {
                    if attempt >= self.s.attempts {
                        let reason = format!("{reason} (gave up after {attempt} attempts)");
                        return Err(BackendError::Transient { object, reason });
                    }
                    tracing::debug!(%object, %reason, attempt, "transient S3 error, retrying");
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
                r => return r,
            }
        }
    }

    async fn check_lock_support(&self) -> BResult<()> {
        if self.s.lock_days.is_none() {
            return Ok(());
        }
        let r = self
            .lock_probe
            .get_or_init(|| async {
                let out = self
                    .retry(|| async {
                        self.client
                            .get_object_lock_configuration()
                            .bucket(&self.s.bucket)
                            .send()
                            .await
                            .map_err(|e| classify(e, format!("bucket {}", self.s.bucket), &self.endpoint()))
                    })
                    .await;
                let enabled = match &out {
                    Ok(o) => o
                        .object_lock_configuration()
                        .and_then(|c| c.object_lock_enabled())
                        .is_some_and(|e| *e == ObjectLockEnabled::Enabled),
                    Err(BackendError::NotFound { .. }) => false,
                    Err(BackendError::Permanent { reason, .. })
                        if reason.contains("ObjectLockConfigurationNotFound") =>
                    {
                        false
                    }
                    Err(BackendError::Permanent { reason, .. }) if reason.contains("does not implement") => false,
                    Err(e) => return Err(e.to_string()),
                };
                if enabled {
                    Ok(())
                } else {
                    Err(format!(
                        "object_lock_days is set, but bucket {} at {} has no object lock enabled (it must be created \
                         with object lock; some servers, e.g. Garage, do not support it)",
                        self.s.bucket,
                        self.endpoint()
                    ))
                }
            })
            .await;
        r.clone().map_err(|reason| BackendError::Permanent { object: format!("bucket {}", self.s.bucket), reason })
    }

    async fn put(self: &Arc<Self>, kind: Kind, name: &str, data: Bytes) -> BResult<()> {
        self.check_lock_support().await?;
        if data.len() as u64 >= self.s.multipart_threshold {
            return self.put_multipart(kind, name, data).await;
        }
        let key = self.key(kind, name);
        let md5 = self.s.checksum_when_required.then(|| md5_b64(&data));
        self.retry(|| async {
            if let Some(t) = &self.throttle {
                t.take(data.len() as u64).await;
            }
            let mut req =
                self.client.put_object().bucket(&self.s.bucket).key(&key).body(ByteStream::from(data.clone()));
            req = req.set_content_md5(md5.clone());
            if let Some(sc) = &self.s.storage_class {
                req = req.storage_class(StorageClass::from(sc.as_str()));
            }
            if let Some((mode, until)) = self.retention(kind) {
                req = req.object_lock_mode(mode).object_lock_retain_until_date(until);
            }
            req.send().await.map(|_| ()).map_err(|e| classify(e, object_name(kind, name), &self.endpoint()))
        })
        .await
    }

    /// Retention for a new object. Locks and pending-deletion records are working
    /// state that must stay deletable; everything a restore needs is retained.
    fn retention(&self, kind: Kind) -> Option<(ObjectLockMode, aws_sdk_s3::primitives::DateTime)> {
        if matches!(kind, Kind::Lock | Kind::Pending) {
            return None;
        }
        let days = self.s.lock_days?;
        let until = Utc::now() + chrono::Duration::days(days as i64);
        let mode = match self.s.lock_mode {
            LockMode::Governance => ObjectLockMode::Governance,
            LockMode::Compliance => ObjectLockMode::Compliance,
        };
        Some((mode, aws_sdk_s3::primitives::DateTime::from_secs(until.timestamp())))
    }

    async fn put_multipart(self: &Arc<Self>, kind: Kind, name: &str, data: Bytes) -> BResult<()> {
        let key = self.key(kind, name);
        let object = || object_name(kind, name);
        let created = self
            .retry(|| async {
                let mut req = self.client.create_multipart_upload().bucket(&self.s.bucket).key(&key);
                if let Some(sc) = &self.s.storage_class {
                    req = req.storage_class(StorageClass::from(sc.as_str()));
                }
                if let Some((mode, until)) = self.retention(kind) {
                    req = req.object_lock_mode(mode).object_lock_retain_until_date(until);
                }
                req.send().await.map_err(|e| classify(e, object(), &self.endpoint()))
            })
            .await?;
        let upload_id = created.upload_id().unwrap_or_default().to_string();
        let result = self.upload_parts(kind, name, &key, &upload_id, &data).await;
        let result = match result {
            Ok(parts) => {
                self.retry(|| async {
                    self.client
                        .complete_multipart_upload()
                        .bucket(&self.s.bucket)
                        .key(&key)
                        .upload_id(&upload_id)
                        .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts.clone())).build())
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(|e| classify(e, object(), &self.endpoint()))
                })
                .await
            }
            Err(e) => Err(e),
        };
        if result.is_err() {
            // Best effort: a leftover upload holds space until a lifecycle rule or this succeeds.
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(&self.s.bucket)
                .key(&key)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        result
    }

    /// Uploads the parts, up to `parallel_parts` at a time; returns them in order.
    async fn upload_parts(
        self: &Arc<Self>,
        kind: Kind,
        name: &str,
        key: &str,
        upload_id: &str,
        data: &Bytes,
    ) -> BResult<Vec<CompletedPart>> {
        let part = self.s.part_size as usize;
        let n = data.len().div_ceil(part);
        let sem = Arc::new(tokio::sync::Semaphore::new(self.s.parallel_parts));
        let mut set = tokio::task::JoinSet::new();
        for i in 0..n {
            let chunk = data.slice(i * part..((i + 1) * part).min(data.len()));
            let (me, sem) = (Arc::clone(self), Arc::clone(&sem));
            let (key, upload_id, name) = (key.to_string(), upload_id.to_string(), name.to_string());
            set.spawn(async move {
                let _permit = sem.acquire_owned().await.expect("semaphore is never closed");
                let number = i as i32 + 1;
                let md5 = me.s.checksum_when_required.then(|| md5_b64(&chunk));
                let etag = me
                    .retry(|| async {
                        if let Some(t) = &me.throttle {
                            t.take(chunk.len() as u64).await;
                        }
                        me.client
                            .upload_part()
                            .bucket(&me.s.bucket)
                            .key(&key)
                            .upload_id(&upload_id)
                            .part_number(number)
                            .set_content_md5(md5.clone())
                            .body(ByteStream::from(chunk.clone()))
                            .send()
                            .await
                            .map_err(|e| {
                                classify(e, format!("{} part {number}", object_name(kind, &name)), &me.endpoint())
                            })
                    })
                    .await?
                    .e_tag()
                    .unwrap_or_default()
                    .to_string();
                Ok::<_, BackendError>(CompletedPart::builder().part_number(number).e_tag(etag).build())
            });
        }
        let mut parts = Vec::with_capacity(n);
        while let Some(r) = set.join_next().await {
            match r {
                Ok(Ok(p)) => parts.push(p),
                Ok(Err(e)) => return Err(e), // dropping the set aborts the other parts
                Err(e) => {
                    return Err(BackendError::Permanent { object: object_name(kind, name), reason: e.to_string() })
                }
            }
        }
        parts.sort_by_key(|p| p.part_number());
        Ok(parts)
    }

    async fn get(&self, kind: Kind, name: &str, range: Option<(u64, u64)>) -> BResult<Vec<u8>> {
        let key = self.key(kind, name);
        self.retry(|| async {
            let mut req = self.client.get_object().bucket(&self.s.bucket).key(&key);
            if let Some((off, len)) = range {
                req = req.range(format!("bytes={}-{}", off, off + len - 1));
            }
            let out = req.send().await.map_err(|e| classify(e, object_name(kind, name), &self.endpoint()))?;
            let body = out.body.collect().await.map_err(|e| BackendError::Transient {
                object: object_name(kind, name),
                reason: format!("connection to {} lost while reading: {e}", self.endpoint()),
            })?;
            let bytes = body.into_bytes();
            if let Some(t) = &self.throttle {
                t.take(bytes.len() as u64).await;
            }
            Ok(bytes.to_vec())
        })
        .await
    }

    /// Size and (future) retention date of an object.
    async fn head(&self, kind: Kind, name: &str) -> BResult<(u64, Option<DateTime<Utc>>)> {
        let key = self.key(kind, name);
        let out = self
            .retry(|| async {
                self.client
                    .head_object()
                    .bucket(&self.s.bucket)
                    .key(&key)
                    .send()
                    .await
                    .map_err(|e| classify(e, object_name(kind, name), &self.endpoint()))
            })
            .await?;
        let until = out
            .object_lock_retain_until_date()
            .and_then(|d| DateTime::<Utc>::from_timestamp(d.secs(), 0))
            .filter(|d| *d > Utc::now());
        Ok((out.content_length().unwrap_or(0).max(0) as u64, until))
    }

    async fn list_keys(&self, prefix: &str) -> BResult<Vec<(String, u64)>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .retry(|| async {
                    self.client
                        .list_objects_v2()
                        .bucket(&self.s.bucket)
                        .prefix(prefix)
                        .set_continuation_token(token.clone())
                        .send()
                        .await
                        .map_err(|e| classify(e, format!("listing of {prefix}"), &self.endpoint()))
                })
                .await?;
            for o in page.contents() {
                if let Some(k) = o.key() {
                    out.push((k.to_string(), o.size().unwrap_or(0).max(0) as u64));
                }
            }
            token = page.next_continuation_token().map(str::to_string);
            if !page.is_truncated().unwrap_or(false) || token.is_none() {
                break;
            }
        }
        Ok(out)
    }

    async fn delete(&self, kind: Kind, name: &str) -> BResult<()> {
        let (_, until) = self.head(kind, name).await?;
        if let Some(until) = until {
            return Err(BackendError::Permanent {
                object: object_name(kind, name),
                reason: format!("is under object-lock retention until {}", until.format("%Y-%m-%d %H:%M UTC")),
            });
        }
        let key = self.key(kind, name);
        let obj = || object_name(kind, name);
        if self.s.lock_days.is_none() {
            return self
                .retry(|| async {
                    self.client
                        .delete_object()
                        .bucket(&self.s.bucket)
                        .key(&key)
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(|e| classify(e, obj(), &self.endpoint()))
                })
                .await;
        }
        // A versioned (object-lock) bucket: a plain delete only hides the object behind a
        // delete marker. Remove every version of this key so the space is freed.
        let versions = self
            .retry(|| async {
                self.client
                    .list_object_versions()
                    .bucket(&self.s.bucket)
                    .prefix(&key)
                    .send()
                    .await
                    .map_err(|e| classify(e, obj(), &self.endpoint()))
            })
            .await?;
        let mut ids: Vec<String> = Vec::new();
        for v in versions.versions() {
            if v.key() == Some(key.as_str()) {
                ids.extend(v.version_id().map(str::to_string));
            }
        }
        for m in versions.delete_markers() {
            if m.key() == Some(key.as_str()) {
                ids.extend(m.version_id().map(str::to_string));
            }
        }
        for id in ids {
            self.retry(|| async {
                self.client
                    .delete_object()
                    .bucket(&self.s.bucket)
                    .key(&key)
                    .version_id(&id)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| classify(e, obj(), &self.endpoint()))
            })
            .await?;
        }
        Ok(())
    }

    async fn create(&self) -> BResult<()> {
        let bucket = || format!("bucket {}", self.s.bucket);
        let head = self
            .retry(|| async {
                self.client
                    .head_bucket()
                    .bucket(&self.s.bucket)
                    .send()
                    .await
                    .map_err(|e| classify(e, bucket(), &self.endpoint()))
            })
            .await;
        match head {
            Ok(_) => {}
            Err(e) if e.is_not_found() || e.to_string().contains("does not exist") => {
                let region = self.client.config().region().map(|r| r.to_string()).unwrap_or_default();
                let created = self
                    .retry(|| async {
                        let mut req = self.client.create_bucket().bucket(&self.s.bucket);
                        if self.s.endpoint.is_none() && region != "us-east-1" && !region.is_empty() {
                            req = req.create_bucket_configuration(
                                CreateBucketConfiguration::builder()
                                    .location_constraint(BucketLocationConstraint::from(region.as_str()))
                                    .build(),
                            );
                        }
                        if self.s.lock_days.is_some() {
                            req = req.object_lock_enabled_for_bucket(true);
                        }
                        req.send().await.map(|_| ()).map_err(|e| classify(e, bucket(), &self.endpoint()))
                    })
                    .await;
                match created {
                    Ok(()) => {}
                    Err(e) if e.to_string().contains("BucketAlreadyOwnedByYou") => {}
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
        match self.head(Kind::Config, "config").await {
            Ok(_) => return Err(BackendError::AlreadyExists { object: format!("repository at {}", self.s.display()) }),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        self.check_lock_support().await
    }
}

impl Backend for S3Backend {
    fn location(&self) -> String {
        self.inner.s.display()
    }

    fn create(&self) -> BResult<()> {
        self.run(self.inner.create())
    }

    fn put(&self, kind: Kind, name: &str, data: &[u8]) -> BResult<()> {
        let data = Bytes::copy_from_slice(data);
        self.run(self.inner.put(kind, name, data))
    }

    fn get(&self, kind: Kind, name: &str) -> BResult<Vec<u8>> {
        self.run(self.inner.get(kind, name, None))
    }

    fn get_range(&self, kind: Kind, name: &str, offset: u64, len: u64) -> BResult<Vec<u8>> {
        let inner = &self.inner;
        let short = || BackendError::Permanent {
            object: object_name(kind, name),
            reason: format!("is shorter than {} bytes", offset + len),
        };
        self.run(async move {
            if len == 0 {
                let (size, _) = inner.head(kind, name).await?;
                return if size >= offset { Ok(Vec::new()) } else { Err(short()) };
            }
            match inner.get(kind, name, Some((offset, len))).await {
                Ok(b) if b.len() as u64 == len => Ok(b),
                Ok(_) => Err(short()),
                Err(BackendError::Permanent { reason, .. }) if reason.contains("shorter") => Err(short()),
                Err(e) => Err(e),
            }
        })
    }

    /// Like the default, but a bucket that does not exist yet is an empty place.
    fn first_entry(&self) -> BResult<Option<String>> {
        for kind in [Kind::Key, Kind::Snapshot, Kind::Index, Kind::Pack, Kind::Lock, Kind::Pending] {
            match self.list(kind) {
                Ok(l) => {
                    if let Some((name, _)) = l.into_iter().next() {
                        return Ok(Some(object_name(kind, &name)));
                    }
                }
                Err(BackendError::Permanent { reason, .. }) if reason.contains("the bucket does not exist") => {
                    return Ok(None)
                }
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    fn list(&self, kind: Kind) -> BResult<Vec<(String, u64)>> {
        let inner = &self.inner;
        self.run(async move {
            if kind == Kind::Config {
                return match inner.head(kind, "config").await {
                    Ok((size, _)) => Ok(vec![("config".to_string(), size)]),
                    Err(e) if e.is_not_found() => Ok(vec![]),
                    Err(e) => Err(e),
                };
            }
            let prefix = inner.full(&format!("{}/", kind.dir()));
            let mut out: Vec<(String, u64)> = inner
                .list_keys(&prefix)
                .await?
                .into_iter()
                .filter_map(|(k, size)| {
                    let rest = k.strip_prefix(&prefix)?;
                    if kind == Kind::Pack {
                        let (folder, file) = rest.split_once('/')?;
                        return (!file.is_empty() && !file.contains('/'))
                            .then(|| (super::pack_list_name(folder, file), size));
                    }
                    (!rest.is_empty() && !rest.contains('/')).then(|| (rest.to_string(), size))
                })
                .collect();
            out.sort();
            Ok(out)
        })
    }

    fn delete(&self, kind: Kind, name: &str) -> BResult<()> {
        self.run(self.inner.delete(kind, name))
    }

    fn exists(&self, kind: Kind, name: &str) -> BResult<bool> {
        let inner = &self.inner;
        self.run(async move {
            match inner.head(kind, name).await {
                Ok(_) => Ok(true),
                Err(e) if e.is_not_found() => Ok(false),
                Err(e) => Err(e),
            }
        })
    }

    fn retained_until(&self, kind: Kind, name: &str) -> BResult<Option<DateTime<Utc>>> {
        // Asked even without object_lock_days: objects locked by an earlier setting
        // (or a bucket default) are protected all the same.
        match S3Backend::retained_until(self, kind, name) {
            Err(e) if e.is_not_found() => Ok(None),
            r => r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempt in 1..20 {
            let d = backoff(attempt);
            assert!(d <= Duration::from_secs(20), "{d:?}");
            assert!(d >= Duration::from_millis(200), "{d:?}");
        }
        assert!(backoff(1) <= Duration::from_millis(400));
    }

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

    #[test]
    fn works_from_inside_a_runtime_and_its_blocking_threads() {
        // The daemon runs jobs on spawn_blocking threads, which carry a runtime
        // context: the backend must be built, called and dropped there.
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let e = rt
            .block_on(async {
                tokio::task::spawn_blocking(|| {
                    let s = S3Settings::parse("s3:http://127.0.0.1:9/bucket?attempts=1", &|_| None).unwrap();
                    let b = S3Backend::new(s).unwrap();
                    b.get(Kind::Config, "config").unwrap_err()
                })
                .await
            })
            .unwrap();
        assert!(!e.to_string().contains("runtime"), "{e}");
        assert!(e.to_string().contains("127.0.0.1:9"), "the error names the endpoint: {e}");
        // And straight on a runtime thread.
        let e = rt.block_on(async {
            let s = S3Settings::parse("s3:http://127.0.0.1:9/bucket?attempts=1", &|_| None).unwrap();
            S3Backend::new(s).unwrap().get(Kind::Config, "config").unwrap_err()
        });
        assert!(!e.to_string().contains("runtime"), "{e}");
    }
}
