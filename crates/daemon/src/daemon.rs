//! The daemon's one owner of its in-memory state ([`Book`]) and of the handles it
//! works with (state thread, clock, executor). The book sits behind one std mutex
//! that is only ever taken through [`Daemon::with_book`], whose closure cannot
//! `.await`: the lock is never held across a suspension point, and there is no
//! second lock to take in another order. SQLite is reached through [`Db`], never
//! under the book's lock.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::db::Db;
use crate::error::Result;
use crate::jobs::{Executor, JobProgress, JobSpec};
use crate::{ConfigLoader, Options};
use kura_recovery::config::{Config, Problems};
use kura_recovery::schedule::{LateTracker, Trigger};
use kura_recovery::state::State;
use kura_store::clock::Clock;

/// A job that was started and has not ended.
pub(crate) struct Active {
    pub spec: JobSpec,
    pub trigger: Trigger,
    /// Set once it got past the repository gate and was recorded.
    pub run: Option<i64>,
    pub queued_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub progress: Arc<JobProgress>,
}

/// Everything the daemon keeps in memory and changes while it runs.
pub(crate) struct Book {
    pub config: Arc<Config>,
    /// Jobs started and not ended, by job key.
    pub active: HashMap<String, Active>,
    /// Per repository location: backups and readers share, prune is exclusive.
    pub gates: HashMap<String, Arc<tokio::sync::RwLock<()>>>,
    /// When the daemon started watching each job / system (start or reload).
    pub watching: HashMap<String, DateTime<Utc>>,
    /// The slot each job last ran (or is running) for; filled from the state on a miss.
    pub last_slot: HashMap<String, Option<DateTime<Utc>>>,
    pub late: LateTracker,
    /// When each late system was last announced (written to the outbox).
    pub announced: HashMap<String, DateTime<Utc>>,
    /// Per system with a standby, the key of its last health seen (an alert on change).
    pub standby_alerts: HashMap<String, String>,
}

impl Book {
    pub fn watching_since(&mut self, key: &str, now: DateTime<Utc>) -> DateTime<Utc> {
        *self.watching.entry(key.to_string()).or_insert(now)
    }

    pub fn gate(&mut self, location: &str) -> Arc<tokio::sync::RwLock<()>> {
        self.gates.entry(location.to_string()).or_default().clone()
    }
}

pub(crate) struct Daemon {
    book: Mutex<Book>,
    pub db: Db,
    loader: ConfigLoader,
    pub state_path: PathBuf,
    pub socket: PathBuf,
    pub clock: Arc<dyn Clock>,
    pub executor: Arc<dyn Executor>,
    pub shutdown_timeout: StdDuration,
    pub started_at: DateTime<Utc>,
    /// Woken when a run ends, the config changes or a stop is asked.
    pub wake: tokio::sync::Notify,
    /// `true` once a stop was asked; the one place that says so.
    stop_tx: watch::Sender<bool>,
}

impl Daemon {
    /// Opens the state database (on a blocking thread) and marks runs left `running`
    /// by a daemon that was killed as `interrupted`.
    pub async fn new(o: Options, socket: PathBuf) -> Result<Arc<Daemon>> {
        let now = o.clock.now();
        let path = o.state.clone();
        let state = tokio::task::spawn_blocking(move || -> kura_recovery::error::Result<State> {
            let state = State::open(&path)?;
            let n = state.mark_interrupted(now, "the daemon stopped before the run ended (killed or crashed)", None)?;
            if n > 0 {
                tracing::warn!(runs = n, "marked runs left running by a previous daemon as interrupted");
            }
            Ok(state)
        })
        .await
        .expect("opening the state database does not panic")?;
        let (stop_tx, _) = watch::channel(false);
        Ok(Arc::new(Daemon {
            book: Mutex::new(Book {
                config: Arc::new(o.config),
                active: HashMap::new(),
                gates: HashMap::new(),
                watching: HashMap::new(),
                last_slot: HashMap::new(),
                late: LateTracker::default(),
                announced: HashMap::new(),
                standby_alerts: HashMap::new(),
            }),
            db: Db::start(state)?,
            loader: o.loader,
            state_path: o.state,
            socket,
            clock: o.clock,
            executor: o.executor,
            shutdown_timeout: o.shutdown_timeout,
            started_at: now,
            wake: tokio::sync::Notify::new(),
            stop_tx,
        }))
    }

    /// The only way to the book. The closure is synchronous, so the lock cannot be
    /// held across an `.await`.
    pub fn with_book<R>(&self, f: impl FnOnce(&mut Book) -> R) -> R {
        let mut book = self.book.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut book)
    }

    pub fn config(&self) -> Arc<Config> {
        self.with_book(|b| b.config.clone())
    }

    /// Asks the daemon to stop: no new jobs; running ones get the shutdown timeout.
    pub fn request_stop(&self) {
        if self.stop_tx.send_if_modified(|s| !std::mem::replace(s, true)) {
            tracing::info!("stopping: no new jobs; waiting for running ones");
        }
        self.wake.notify_waiters();
    }

    pub fn is_stopping(&self) -> bool {
        *self.stop_tx.borrow()
    }

    /// Resolves when a stop was requested.
    pub async fn stopping(&self) {
        let mut rx = self.stop_tx.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Reloads the config from its file; on problems the old one stays. Reading the
    /// file is quick and rare, so it runs where it is called.
    pub fn reload(&self) -> std::result::Result<(), Problems> {
        let path = self.config().path.clone();
        let cfg = Arc::new((self.loader)(&path)?);
        if self.config().http != cfg.http {
            tracing::warn!("[http] changed: the listener keeps its address and token until the next start");
        }
        let names: Vec<&str> = cfg.systems.iter().map(|s| s.name.as_str()).collect();
        self.with_book(|b| {
            b.late.retain(&names);
            b.config = cfg.clone();
        });
        tracing::info!(config = %path.display(), "config reloaded");
        self.wake.notify_waiters();
        Ok(())
    }

    pub fn active_count(&self) -> usize {
        self.with_book(|b| b.active.len())
    }

    /// Ids of the runs that are recorded and still going.
    pub fn running_ids(&self) -> Vec<i64> {
        self.with_book(|b| b.active.values().filter_map(|a| a.run).collect())
    }
}
