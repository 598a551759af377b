//! Multipart uploads for objects of `multipart_threshold` or more: parts of
//! `part_size`, up to `parallel_parts` in flight, each retried on its own. A failed
//! upload is aborted so that the server frees its parts.

use std::sync::Arc;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, StorageClass};
use bytes::Bytes;

use super::classify::classify;
use super::requests::md5_b64;
use super::Inner;
use crate::backend::{object_name, BResult, BackendError, Kind};

impl Inner {
    pub(super) async fn put_multipart(self: &Arc<Self>, kind: Kind, name: &str, data: Bytes) -> BResult<()> {
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
}
