//! The state database's copy on the remote site: every second (hence at each
//! schedule tick too) the daemon asks `kura_recovery::state::offsite::Pusher`
//! whether the database changed, and the pusher stores a new version when it did.
//! Only with a `[remote]` in the config. Failures are logged and retried; they
//! never stop the daemon (docs/DAEMON.md, "The state database at the remote site").

use std::sync::Arc;
use std::time::Duration as StdDuration;

use kura_recovery::state::offsite::Pusher;

use crate::daemon::Daemon;

impl Daemon {
    /// Runs until a stop is requested; returns the pusher for the last push, which
    /// `serve` makes once running jobs have been recorded.
    pub async fn run_offsite(self: Arc<Self>) -> Pusher {
        let mut pusher = Pusher::new(&self.state_path);
        let mut failing = false;
        while !self.is_stopping() {
            pusher = self.push_step(pusher, &mut failing).await;
            tokio::select! {
                _ = tokio::time::sleep(StdDuration::from_secs(1)) => {}
                _ = self.stopping() => {}
            }
        }
        pusher
    }

    /// One step of the pusher on a blocking thread (it reads the database, seals and
    /// uploads); a no-op without `[remote]`.
    pub async fn push_step(&self, mut pusher: Pusher, failing: &mut bool) -> Pusher {
        let Some(remote) = self.config().remote.clone() else { return pusher };
        let last = self.is_stopping();
        let (pusher, res) = match tokio::task::spawn_blocking(move || {
            let r = if last { pusher.flush(&remote) } else { pusher.step(&remote) };
            (pusher, r)
        })
        .await
        {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(error = %e, "the state push thread failed");
                return Pusher::new(&self.state_path);
            }
        };
        match res {
            Ok(Some(v)) => {
                *failing = false;
                tracing::info!(version = %v.version.name, bytes = v.db_bytes, removed = v.removed,
                    "state database copied to the remote site");
            }
            Ok(None) => {}
            Err(e) if !*failing => {
                *failing = true;
                tracing::warn!(error = %e, "cannot copy the state database to the remote site; retrying");
            }
            Err(e) => tracing::debug!(error = %e, "state push still failing"),
        }
        pusher
    }
}
