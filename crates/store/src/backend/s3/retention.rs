//! Object lock (`object_lock_days`): what new objects are retained for, the bucket
//! probe that refuses to write unprotected, and deleting every version of a key in
//! the versioned buckets that object lock requires.

use aws_sdk_s3::types::{ObjectLockEnabled, ObjectLockMode, ObjectLockRetention, ObjectLockRetentionMode};
use chrono::{DateTime, Utc};

use super::classify::classify;
use super::{Inner, LockMode};
use crate::backend::{object_name, BResult, BackendError, Kind};

impl Inner {
    /// With `object_lock_days` set, refuses to write to a bucket without object lock:
    /// the objects would silently go unprotected. Probed once per backend.
    pub(super) async fn check_lock_support(&self) -> BResult<()> {
        if self.s.lock_days.is_none() {
            return Ok(());
        }
        // Only the answer is kept: a failed probe (the server unreachable for a
        // moment) is asked again next time instead of refusing for good.
        let enabled = *self
            .lock_probe
            .get_or_try_init(|| async {
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
                match out {
                    Ok(o) => Ok(o
                        .object_lock_configuration()
                        .and_then(|c| c.object_lock_enabled())
                        .is_some_and(|e| *e == ObjectLockEnabled::Enabled)),
                    Err(BackendError::NotFound { .. }) => Ok(false),
                    Err(BackendError::Permanent { reason, .. })
                        if reason.contains("ObjectLockConfigurationNotFound")
                            || reason.contains("does not implement") =>
                    {
                        Ok(false)
                    }
                    Err(e) => Err(e),
                }
            })
            .await?;
        if enabled {
            return Ok(());
        }
        Err(BackendError::Permanent {
            object: format!("bucket {}", self.s.bucket),
            reason: format!(
                "object_lock_days is set, but bucket {} at {} has no object lock enabled (it must be created \
                 with object lock; some servers, e.g. Garage, do not support it)",
                self.s.bucket,
                self.endpoint()
            ),
        })
    }

    /// Retention for a new object. Locks and pending-deletion records are working
    /// state that must stay deletable; everything a restore needs is retained.
    pub(super) fn retention(&self, kind: Kind) -> Option<(ObjectLockMode, aws_sdk_s3::primitives::DateTime)> {
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

    /// Extends an object's retention to at least `until` (a hold on a snapshot,
    /// docs/DETECTION.md). Extending is allowed in both modes without any bypass
    /// permission; a date already later is left alone (S3 refuses to shorten).
    pub(super) async fn extend_retention(
        &self,
        kind: Kind,
        name: &str,
        until: DateTime<Utc>,
    ) -> BResult<Option<DateTime<Utc>>> {
        if self.retention(kind).is_none() {
            return Ok(None);
        }
        let current = self.head(kind, name).await?.1;
        if current.is_some_and(|c| c >= until) {
            return Ok(current);
        }
        let mode = match self.s.lock_mode {
            LockMode::Governance => ObjectLockRetentionMode::Governance,
            LockMode::Compliance => ObjectLockRetentionMode::Compliance,
        };
        let date = aws_sdk_s3::primitives::DateTime::from_secs(until.timestamp());
        let key = self.key(kind, name);
        let obj = || object_name(kind, name);
        self.retry(|| async {
            let r = ObjectLockRetention::builder().mode(mode.clone()).retain_until_date(date).build();
            self.client
                .put_object_retention()
                .bucket(&self.s.bucket)
                .key(&key)
                .retention(r)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| classify(e, obj(), &self.endpoint()))
        })
        .await?;
        Ok(Some(until))
    }

    /// In a versioned (object-lock) bucket a plain delete only hides the object behind
    /// a delete marker. This removes every version of the key, so the space is freed.
    pub(super) async fn delete_all_versions(&self, kind: Kind, name: &str, key: &str) -> BResult<()> {
        let obj = || object_name(kind, name);
        let key = key.to_string();
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
}
