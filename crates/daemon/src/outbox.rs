//! Notifications in the daemon: events go to the outbox of the state database
//! (`kura_recovery::notify::outbox`), and one delivery worker sends what is due,
//! one row at a time, on a blocking thread. A row is marked delivered only after
//! its channel accepted it; a failure is tried again after an exponential backoff
//! (`[notify] retry_initial` doubling up to `retry_max`). Rows left pending by a
//! stopped or killed daemon are sent by the next one.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Utc};

use crate::daemon::Daemon;
use crate::scheduler::min_opt;
use kura_recovery::config::{Config, Notify};
use kura_recovery::notify::outbox::{backoff, Status};
use kura_recovery::notify::{self, Event, Outgoing, Pending};

/// How many due rows one pass reads.
const BATCH: usize = 16;

/// How long delivered rows stay in the outbox (for `kura status` and inspection).
const KEEP: chrono::Duration = chrono::Duration::days(30);

/// The outbox entry for `ev` on the channels `cfg` configures.
pub(crate) fn outgoing(cfg: &Config, event: Event, key: String) -> Outgoing {
    Outgoing { event, key, channels: notify::channels(&cfg.notify), repeat_after: cfg.notify.repeat_after }
}

impl Daemon {
    /// Writes an event to the outbox and wakes the worker. Returns its id, or None
    /// when it was deduplicated (or nothing is configured).
    pub(crate) async fn enqueue(&self, cfg: &Config, ev: Event, key: String) -> Option<String> {
        let o = outgoing(cfg, ev, key.clone());
        if o.channels.is_empty() {
            return None;
        }
        let now = self.clock.now();
        match self.db.query(move |st| st.enqueue(&o, now)).await {
            Ok(Some(id)) => {
                self.wake.notify_waiters();
                Some(id)
            }
            Ok(None) => {
                tracing::info!(key = %key, "already notified within repeat_after; not notifying again");
                None
            }
            Err(e) => {
                tracing::error!(key = %key, error = %e, "cannot write the notification to the outbox");
                None
            }
        }
    }

    /// The delivery worker: runs until a stop is requested.
    pub async fn run_outbox(self: Arc<Self>) {
        let mut pruned: Option<DateTime<Utc>> = None;
        loop {
            if self.is_stopping() {
                break;
            }
            if pruned.is_none_or(|t| self.clock.now() - t >= chrono::Duration::hours(1)) {
                self.prune_outbox().await;
                pruned = Some(self.clock.now());
            }
            let wake = self.wake.notified();
            let next = self.deliver_due().await;
            let now = self.clock.now();
            let wait = next.map(|n| (n - now).to_std().unwrap_or_default()).unwrap_or(StdDuration::from_secs(1));
            let wait = wait.clamp(StdDuration::from_millis(20), StdDuration::from_secs(1));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = wake => {}
                _ = self.stopping() => {}
            }
        }
    }

    /// Forgets delivered and dropped rows older than `KEEP` (or than `repeat_after`,
    /// which deduplication needs, when that is longer).
    pub(crate) async fn prune_outbox(&self) {
        let keep = chrono::Duration::from_std(self.config().notify.repeat_after).unwrap_or(KEEP).max(KEEP);
        let before = self.clock.now().checked_sub_signed(keep).unwrap_or(DateTime::<Utc>::MIN_UTC);
        match self.db.query(move |st| st.outbox_prune(before)).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(rows = n, "removed old delivered notifications from the outbox"),
            Err(e) => tracing::error!(error = %e, "pruning the outbox"),
        }
    }

    /// One pass: delivers every row due now. Returns when the next pending row is due.
    pub(crate) async fn deliver_due(&self) -> Option<DateTime<Utc>> {
        let now = self.clock.now();
        let due = match self.db.query(move |st| st.outbox_due(now, BATCH)).await {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "reading the outbox");
                return None;
            }
        };
        let mut next = None;
        for p in due {
            if self.is_stopping() {
                break;
            }
            next = min_opt(next, self.attempt(p).await);
        }
        let later = self.db.query(|st| st.outbox_next_due()).await;
        min_opt(next, later.map_err(|e| tracing::error!(error = %e, "reading the outbox")).ok().flatten())
    }

    /// Sends one row and records the result; returns when it is due again, if it failed.
    async fn attempt(&self, p: Pending) -> Option<DateTime<Utc>> {
        let n: Notify = self.config().notify.clone();
        let (initial, max) = (n.retry_initial, n.retry_max);
        let q = p.clone();
        let sent =
            tokio::task::spawn_blocking(move || notify::deliver(&n, q.channel, &q.kind, &q.event_id, &q.body)).await;
        let now = self.clock.now();
        let (status, error, retry_at) = match sent {
            Ok(Ok(())) => {
                tracing::info!(event = %p.event_id, key = %p.key, channel = %p.channel, "notification delivered");
                (Status::Delivered, None, now)
            }
            Ok(Err(notify::DeliveryError::NotConfigured(what))) => {
                tracing::warn!(event = %p.event_id, key = %p.key, "notification dropped: no {what} is configured any more");
                (Status::Dropped, Some(format!("no {what} configured")), now)
            }
            failed => {
                let msg = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "the delivery thread panicked".to_string(),
                };
                let delay = backoff(p.attempts + 1, initial, max);
                tracing::warn!(
                    event = %p.event_id, key = %p.key, channel = %p.channel, attempt = p.attempts + 1,
                    retry_in_secs = delay.as_secs_f64(), "notification not delivered: {msg}"
                );
                let at = now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::seconds(300));
                (Status::Pending, Some(msg), at)
            }
        };
        let row = p.row;
        let rec = self.db.query(move |st| st.outbox_record(row, now, status, error.as_deref(), retry_at)).await;
        if let Err(e) = rec {
            tracing::error!(error = %e, "recording a notification attempt in the outbox");
        }
        (status == Status::Pending).then_some(retry_at)
    }
}
