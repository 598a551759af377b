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
//! * Errors: every SDK error goes through `classify::classify`, the one mapping to
//!   `BackendError`. Retries (exponential backoff with full jitter) happen in
//!   `Inner::retry` (`retry.rs`) only; the SDK's own retries are disabled.
//! * Integrity: with `checksum=when_required` (the default) every upload carries a
//!   Content-MD5 that the server checks; readers verify content hashes anyway.
//! * Servers without conditional writes (Garage) overwrite silently: nothing here
//!   relies on If-None-Match. Objects are content-addressed, so an overwrite writes
//!   the same bytes.
//!
//! Modules: `client` (building the SDK client, the runtime bridge), `classify`
//! (errors), `retry`, `throttle` (bandwidth), `requests` (one function per S3
//! operation), `multipart`, `retention` (object lock). This file holds the backend
//! itself and the `Backend` calls, which block on the runtime.

mod classify;
mod client;
mod concurrency;
mod multipart;
mod requests;
mod retention;
mod retry;
pub mod settings;
mod throttle;

use std::future::Future;
use std::sync::Arc;

use aws_sdk_s3::Client;
use bytes::Bytes;
use chrono::{DateTime, Utc};

use super::{object_name, BResult, Backend, BackendError, Kind};
use crate::error::{Error, Result};
use client::{make_client, outside_runtime, read_credentials_file};
pub use settings::{LockMode, S3Settings};
use throttle::Throttle;

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

/// What every request needs; shared (`Arc`) with the tasks of a multipart upload.
struct Inner {
    client: Client,
    s: S3Settings,
    throttle: Option<Throttle>,
    /// Requests in flight, adapted to the server below `connections=`.
    gate: concurrency::Gate,
    /// Whether the bucket has object lock enabled, once a probe has answered.
    lock_probe: tokio::sync::OnceCell<bool>,
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
        Ok(S3Backend {
            rt: Some(rt),
            inner: Arc::new(Inner {
                client,
                gate: concurrency::Gate::new(s.connections),
                s,
                throttle,
                lock_probe: Default::default(),
            }),
        })
    }

    pub fn settings(&self) -> &S3Settings {
        &self.inner.s
    }

    fn run<T: Send>(&self, f: impl Future<Output = BResult<T>> + Send) -> BResult<T> {
        let rt = self.rt.as_ref().expect("the runtime lives until drop");
        outside_runtime(|| rt.block_on(f))
    }

    /// A range of an object, into `reuse`'s memory.
    fn get_range_reusing(&self, kind: Kind, name: &str, offset: u64, len: u64, reuse: Vec<u8>) -> BResult<Vec<u8>> {
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
            match inner.get_reusing(kind, name, Some((offset, len)), reuse).await {
                Ok(b) if b.len() as u64 == len => Ok(b),
                Ok(_) => Err(short()),
                Err(BackendError::Permanent { reason, .. }) if reason.contains("shorter") => Err(short()),
                Err(e) => Err(e),
            }
        })
    }

    /// The retention date of an object under object lock, if it is still in the future.
    pub fn retained_until(&self, kind: Kind, name: &str) -> BResult<Option<DateTime<Utc>>> {
        let inner = &self.inner;
        self.run(async move { Ok(inner.head(kind, name).await?.1) })
    }
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
        self.get_range_reusing(kind, name, offset, len, Vec::new())
    }

    fn get_range_into(&self, kind: Kind, name: &str, offset: u64, len: u64, buf: &mut Vec<u8>) -> BResult<()> {
        *buf = self.get_range_reusing(kind, name, offset, len, std::mem::take(buf))?;
        Ok(())
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

    fn lock_period(&self) -> Option<chrono::Duration> {
        self.inner.s.lock_days.map(|d| chrono::Duration::days(d as i64))
    }

    fn extend_retention(&self, kind: Kind, name: &str, until: DateTime<Utc>) -> BResult<Option<DateTime<Utc>>> {
        let inner = &self.inner;
        self.run(async move { inner.extend_retention(kind, name, until).await })
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
