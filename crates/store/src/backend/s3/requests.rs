//! The requests behind each `Backend` call: one function per S3 operation, each
//! retried through `Inner::retry` and its errors mapped by `classify`.

use std::sync::Arc;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration, StorageClass};
use base64::Engine as _;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use md5::Digest as _;

use super::classify::classify;
use super::Inner;
use crate::backend::{object_name, BResult, BackendError, Kind};

/// The most a GET reserves up front from the size the server announces (a bogus
/// size must not allocate gigabytes; a larger body still grows the buffer).
const MAX_PREALLOC: u64 = 64 << 20;

/// The Content-MD5 header of an upload, which the server checks.
pub(super) fn md5_b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(data))
}

impl Inner {
    pub(super) async fn put(self: &Arc<Self>, kind: Kind, name: &str, data: Bytes) -> BResult<()> {
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

    pub(super) async fn get(&self, kind: Kind, name: &str, range: Option<(u64, u64)>) -> BResult<Vec<u8>> {
        self.get_reusing(kind, name, range, Vec::new()).await
    }

    /// Like `get`, into `reuse`'s memory: a reader of many ranges keeps one buffer.
    pub(super) async fn get_reusing(
        &self,
        kind: Kind,
        name: &str,
        range: Option<(u64, u64)>,
        reuse: Vec<u8>,
    ) -> BResult<Vec<u8>> {
        let key = self.key(kind, name);
        let reuse = std::sync::Mutex::new(reuse);
        self.retry(|| async {
            let mut req = self.client.get_object().bucket(&self.s.bucket).key(&key);
            if let Some((off, len)) = range {
                req = req.range(format!("bytes={}-{}", off, off + len - 1));
            }
            let out = req.send().await.map_err(|e| classify(e, object_name(kind, name), &self.endpoint()))?;
            // The body's chunks go straight into one buffer of the expected size: one
            // copy (a pack range is megabytes, and a restore has several in flight).
            let expected = range.map_or(out.content_length.unwrap_or(0).max(0) as u64, |(_, len)| len);
            let mut bytes = std::mem::take(&mut *reuse.lock().unwrap_or_else(|e| e.into_inner()));
            bytes.clear();
            bytes.reserve(expected.min(MAX_PREALLOC) as usize);
            let mut body = out.body;
            while let Some(chunk) = body.try_next().await.map_err(|e| BackendError::Transient {
                object: object_name(kind, name),
                reason: format!("connection to {} lost while reading: {e}", self.endpoint()),
            })? {
                bytes.extend_from_slice(&chunk);
            }
            if let Some(t) = &self.throttle {
                t.take(bytes.len() as u64).await;
            }
            Ok(bytes)
        })
        .await
    }

    /// Size and (future) retention date of an object.
    pub(super) async fn head(&self, kind: Kind, name: &str) -> BResult<(u64, Option<DateTime<Utc>>)> {
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

    pub(super) async fn list_keys(&self, prefix: &str) -> BResult<Vec<(String, u64)>> {
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

    pub(super) async fn delete(&self, kind: Kind, name: &str) -> BResult<()> {
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
        self.delete_all_versions(kind, name, &key).await
    }

    pub(super) async fn create(&self) -> BResult<()> {
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
