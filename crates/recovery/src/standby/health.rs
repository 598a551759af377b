//! Whether a standby can take over: pure, from its record, the primary's last good
//! backup and the allowed backup age (the RPO watch's rule for the system).

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::state::standby::{StandbyRecord, StandbyState};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "health", rename_all = "kebab-case")]
pub enum Health {
    /// Holds a recent snapshot and its last verification passed.
    Healthy,
    /// Serving in the primary's place (a failover happened).
    Serving,
    /// Never brought to any snapshot.
    Empty,
    /// Its lag behind the primary's last good backup is over the allowed age.
    Stale { lag_secs: i64, allowed_secs: i64 },
    /// Its last update or verification failed.
    Failed { reason: String },
    /// An update is under way (or was interrupted): it holds no snapshot completely.
    Applying,
}

impl Health {
    /// Fit to fail over to (a recovery fails over instead of restoring).
    pub fn can_take_over(&self) -> bool {
        matches!(self, Health::Healthy | Health::Stale { .. })
    }
    /// Worth an alert: "must not stop" no longer holds.
    pub fn is_alert(&self) -> bool {
        matches!(self, Health::Stale { .. } | Health::Failed { .. } | Health::Empty)
    }
}

/// How far the standby is behind: the time between the snapshot it holds and the
/// primary's last good backup (zero when it holds that one).
pub fn lag(rec: &StandbyRecord, last_backup: Option<DateTime<Utc>>) -> Option<Duration> {
    let held = rec.snapshot_time?;
    Some(last_backup.map_or(Duration::zero(), |b| (b - held).max(Duration::zero())))
}

impl Health {
    /// One word per kind, for alert keys and metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Serving => "serving",
            Health::Empty => "empty",
            Health::Stale { .. } => "stale",
            Health::Failed { .. } => "failed",
            Health::Applying => "applying",
        }
    }

    /// The alert for people (None: nothing to alert about).
    pub fn alert_message(&self, system: &str) -> Option<String> {
        let h = crate::human::human_secs;
        Some(match self {
            Health::Stale { lag_secs, allowed_secs } => format!(
                "the standby of {system} is stale: {} behind the last good backup, {} allowed",
                h(*lag_secs),
                h(*allowed_secs)
            ),
            Health::Failed { reason } => format!("the standby of {system} failed: {reason}"),
            Health::Empty => format!("the standby of {system} holds no snapshot yet"),
            _ => return None,
        })
    }
}

pub fn health(rec: Option<&StandbyRecord>, last_backup: Option<DateTime<Utc>>, allowed: Option<Duration>) -> Health {
    let Some(rec) = rec else { return Health::Empty };
    match rec.state {
        StandbyState::Serving => return Health::Serving,
        StandbyState::Failed => {
            return Health::Failed { reason: rec.error.clone().unwrap_or_else(|| "its last update failed".into()) }
        }
        StandbyState::Applying => return Health::Applying,
        StandbyState::Current => {}
    }
    if rec.verify_ok == Some(false) {
        return Health::Failed { reason: rec.error.clone().unwrap_or_else(|| "its verification failed".into()) };
    }
    let Some(l) = lag(rec, last_backup) else { return Health::Empty };
    match allowed {
        Some(a) if l > a => Health::Stale { lag_secs: l.num_seconds(), allowed_secs: a.num_seconds() },
        _ => Health::Healthy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(state: StandbyState, held: Option<i64>, verify_ok: Option<bool>) -> StandbyRecord {
        StandbyRecord {
            system: "db".into(),
            path: "/sb".into(),
            state,
            snapshot: held.map(|_| "ab".repeat(32)),
            snapshot_time: held.map(|s| DateTime::from_timestamp(s, 0).unwrap()),
            applying: None,
            applied_at: None,
            apply_ms: None,
            bytes_written: None,
            verify_ok,
            verified_at: None,
            error: None,
        }
    }

    fn at(s: i64) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp(s, 0)
    }

    #[test]
    fn stale_when_the_lag_is_over_the_allowed_age() {
        let r = rec(StandbyState::Current, Some(1000), Some(true));
        let allowed = Some(Duration::seconds(600));
        assert_eq!(health(Some(&r), at(1500), allowed), Health::Healthy);
        assert_eq!(health(Some(&r), at(1601), allowed), Health::Stale { lag_secs: 601, allowed_secs: 600 });
        assert_eq!(health(Some(&r), at(1601), None), Health::Healthy);
    }

    #[test]
    fn failed_verify_applying_and_missing_are_not_healthy() {
        assert!(health(None, at(1), None).is_alert());
        let bad = rec(StandbyState::Current, Some(1000), Some(false));
        assert!(matches!(health(Some(&bad), at(1000), None), Health::Failed { .. }));
        assert_eq!(health(Some(&rec(StandbyState::Applying, None, None)), at(1000), None), Health::Applying);
        assert!(!Health::Applying.can_take_over());
        assert_eq!(health(Some(&rec(StandbyState::Serving, Some(1), None)), at(1000), None), Health::Serving);
    }
}
