//! The scheduler: ticks, slots, catch-up, and the RPO watch. Decisions are pure
//! (`kura_recovery::schedule`); this file applies them with the daemon's clock.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Utc};

use crate::daemon::Daemon;
use crate::human_duration;
use crate::jobs::{self, JobSpec, SlotDetail};
use kura_recovery::config::{Config, Schedule, SystemConfig};
use kura_recovery::notify::{Event, EventKind};
use kura_recovery::schedule::{self, Decision, Transition, Trigger};

impl Daemon {
    /// One pass of the scheduler: starts due jobs, watches recovery points. Returns
    /// when the next slot is due.
    pub async fn tick(self: &Arc<Self>) -> Option<DateTime<Utc>> {
        let now = self.clock.now();
        let cfg = self.config();
        let mut next: Option<DateTime<Utc>> = None;
        if !self.is_stopping() {
            for (spec, sched) in jobs::jobs_of(&cfg) {
                let Some(sched) = sched else { continue };
                next = min_opt(next, self.consider(&cfg, spec, sched, now).await);
            }
        }
        self.watch_rpo(&cfg, now).await;
        self.watch_agents(&cfg, now).await;
        self.watch_standbys(&cfg, now).await;
        next
    }

    /// Starts or skips one scheduled job when its slot came; returns its next slot.
    async fn consider(
        self: &Arc<Self>,
        cfg: &Config,
        spec: JobSpec,
        sched: &Schedule,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let (since, active) = self.with_book(|b| (b.watching_since(&spec.key, now), b.active.contains_key(&spec.key)));
        if active {
            // Deferred: its slots are made up (once) when the current run ends.
            return None;
        }
        let last = self.last_slot(&spec.key).await;
        match schedule::decide(&sched.cron, last, since, cfg.catch_up, now, &chrono::Local) {
            Decision::Run { slot, trigger, missed } => {
                if trigger == Trigger::CatchUp {
                    tracing::info!(job = %spec.key, missed, "catching up once for slots missed while the daemon was down");
                }
                let detail =
                    serde_json::to_value(SlotDetail { slot, missed_slots: missed }).expect("a slot detail serializes");
                let key = spec.key.clone();
                if self.dispatch(spec, trigger, Some(slot), detail, None).is_ok() {
                    self.with_book(|b| b.last_slot.insert(key, Some(slot)));
                }
                schedule::next_slot(&sched.cron, now, &chrono::Local)
            }
            Decision::Skip { slot, missed } => {
                tracing::info!(job = %spec.key, missed, "skipping slots missed while the daemon was down (catch_up = skip)");
                let key = spec.key.clone();
                let saved = self.db.query(move |st| st.set_schedule_state(&key, slot, None)).await;
                if let Err(e) = saved {
                    tracing::error!(error = %e, "saving schedule state");
                }
                self.with_book(|b| b.last_slot.insert(spec.key, Some(slot)));
                schedule::next_slot(&sched.cron, now, &chrono::Local)
            }
            Decision::Wait { next } => next,
        }
    }

    /// The cached last slot of a job, read from the state on a miss.
    async fn last_slot(&self, key: &str) -> Option<DateTime<Utc>> {
        if let Some(v) = self.with_book(|b| b.last_slot.get(key).copied()) {
            return v;
        }
        let k = key.to_string();
        let read = self.db.query(move |st| st.schedule_state(&k)).await;
        let v = read.map_err(|e| tracing::error!(error = %e, "reading schedule state")).ok().flatten();
        let v = v.and_then(|s| s.last_slot);
        self.with_book(|b| *b.last_slot.entry(key.to_string()).or_insert(v))
    }

    /// The RPO watch: notifies when a system becomes late (once per transition).
    async fn watch_rpo(&self, cfg: &Config, now: DateTime<Utc>) {
        let names: Vec<String> = cfg.systems.iter().map(|s| s.name.clone()).collect();
        let read = self
            .db
            .call(move |st| {
                names
                    .iter()
                    .map(|n| {
                        st.last_good_backup(n)
                            .map_err(|e| tracing::error!(error = %e, "reading job runs"))
                            .ok()
                            .flatten()
                    })
                    .collect::<Vec<_>>()
            })
            .await;
        let lasts = match read {
            Ok(l) => l,
            Err(e) => return tracing::error!(error = %e, "reading job runs"),
        };
        for (s, last) in cfg.systems.iter().zip(lasts) {
            let max = cfg.max_backup_age[s.priority.get() as usize];
            let last_at = last.and_then(|r| r.ended_at);
            let transition = self.with_book(|b| {
                let since = b.watching_since(&format!("rpo:{}", s.name), now);
                b.late.update(&s.name, schedule::rpo(last_at, max, since, now).late)
            });
            match transition {
                Some(Transition::BackOnTime) => {
                    self.with_book(|b| b.announced.remove(&s.name));
                    tracing::info!(system = %s.name, "system is back within its allowed backup age")
                }
                Some(Transition::BecameLate) => self.announce_late(cfg, s, last_at, max, now).await,
                None if self.repeat_due(cfg, &s.name, now) => self.announce_late(cfg, s, last_at, max, now).await,
                None => {}
            }
        }
    }

    /// The fleet watch: an agent host not heard from for `agent_lost_after` puts
    /// its systems at risk; notified once per silence (keyed by its last contact).
    async fn watch_agents(&self, cfg: &Config, now: DateTime<Utc>) {
        let Some(fleet) = &cfg.fleet else { return };
        let lost = crate::fleet::lost_agents(self, cfg, now).await;
        // An agent heard from again may be announced again when it is lost again.
        self.with_book(|b| {
            b.announced.retain(|k, _| k.strip_prefix("agent:").is_none_or(|h| lost.iter().any(|(l, _)| l == h)))
        });
        for (host, seen) in lost {
            let mark = format!("agent:{host}");
            if self.with_book(|b| b.announced.contains_key(&mark)) {
                continue;
            }
            self.with_book(|b| b.announced.insert(mark, now));
            let systems: Vec<&str> = cfg
                .systems
                .iter()
                .filter(|s| cfg.agent_host(s) == Some(host.as_str()))
                .map(|s| s.name.as_str())
                .collect();
            let since = seen.map_or("never".to_string(), kura_recovery::state::jobs::ts);
            let msg = format!(
                "agent {host} lost: not heard from since {since} (agent_lost_after {}); its systems are at risk: {}",
                human_duration(chrono::Duration::from_std(fleet.agent_lost_after).unwrap_or_default()),
                systems.join(", ")
            );
            tracing::warn!("{msg}");
            let mut ev = Event::new(EventKind::AgentLost, now, msg);
            ev.host = host.clone();
            self.enqueue(cfg, ev, format!("agent_lost:{host}@{since}")).await;
        }
    }

    /// The standbys' watch: a standby that is stale, failed or empty is an alert
    /// (`standby_unhealthy`), sent when its health changes and again after
    /// `repeat_after` (the outbox's key names the system, the health and the snapshot).
    async fn watch_standbys(&self, cfg: &Config, now: DateTime<Utc>) {
        let names: Vec<String> = cfg.systems.iter().filter(|s| s.standby.is_some()).map(|s| s.name.clone()).collect();
        if names.is_empty() {
            return;
        }
        let read = self
            .db
            .call(move |st| {
                names
                    .into_iter()
                    .map(|n| {
                        let good = st.last_good_backup(&n).ok().flatten().map(|r| r.started_at);
                        (n.clone(), good, st.standby(&n).ok().flatten())
                    })
                    .collect::<Vec<_>>()
            })
            .await;
        let Ok(rows) = read.map_err(|e| tracing::error!(error = %e, "reading standbys")) else { return };
        for (name, good, rec) in rows {
            let Some(s) = cfg.system(&name) else { continue };
            let max = cfg.max_backup_age[s.priority.get() as usize];
            let h = kura_recovery::standby::health(rec.as_ref(), good, max);
            let key = format!(
                "standby_unhealthy:{name}:{}@{}",
                h.kind(),
                rec.as_ref().and_then(|r| r.snapshot.clone()).unwrap_or_else(|| "none".into())
            );
            let changed = self.with_book(|b| b.standby_alerts.insert(name.clone(), key.clone()) != Some(key.clone()));
            let Some(msg) = h.alert_message(&name) else { continue };
            if changed || self.repeat_due(cfg, &format!("standby:{name}"), now) {
                tracing::warn!(system = %name, "{msg}");
                self.with_book(|b| b.announced.insert(format!("standby:{name}"), now));
                let mut ev = Event::new(EventKind::StandbyUnhealthy, now, msg);
                ev.system = Some(name.clone());
                ev.priority = Some(s.priority.get());
                ev.last_backup = good;
                self.enqueue(cfg, ev, key).await;
            }
        }
    }

    /// Whether a system still late was last announced `repeat_after` ago.
    fn repeat_due(&self, cfg: &Config, system: &str, now: DateTime<Utc>) -> bool {
        let every = chrono::Duration::from_std(cfg.notify.repeat_after).unwrap_or(chrono::Duration::MAX);
        self.with_book(|b| b.announced.get(system).is_some_and(|t| now - *t >= every))
    }

    /// Writes the `system_late` event to the outbox. Its key names the system and its
    /// last good backup: a daemon restarted while the system is still late finds the
    /// key written and does not announce it again before `repeat_after`.
    async fn announce_late(
        &self,
        cfg: &Config,
        s: &SystemConfig,
        last_at: Option<DateTime<Utc>>,
        max: Option<chrono::Duration>,
        now: DateTime<Utc>,
    ) {
        self.with_book(|b| b.announced.insert(s.name.clone(), now));
        let since = last_at.map_or("never".to_string(), kura_recovery::state::jobs::ts);
        let key = format!("system_late:{}@{since}", s.name);
        self.enqueue(cfg, late_event(s, last_at, max, now), key).await;
    }

    /// Runs the scheduler until a stop is requested.
    pub async fn run_scheduler(self: Arc<Self>) {
        loop {
            if self.is_stopping() {
                break;
            }
            let wake = self.wake.notified();
            let next = self.tick().await;
            let now = self.clock.now();
            // Sleep until the next slot, but look again at least every second (the
            // RPO watch, the clock moving, jobs that were deferred).
            let mut wait = next.map(|n| (n - now).to_std().unwrap_or_default()).unwrap_or(StdDuration::from_secs(1));
            wait = wait.clamp(StdDuration::from_millis(20), StdDuration::from_secs(1));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = wake => {}
                _ = self.stopping() => {}
            }
        }
    }
}

/// The `system_late` event (and its log line) for a system that just became late.
fn late_event(
    s: &SystemConfig,
    last_at: Option<DateTime<Utc>>,
    max: Option<chrono::Duration>,
    now: DateTime<Utc>,
) -> Event {
    let age = last_at.map(|t| now - t);
    let allowed = human_duration(max.unwrap_or_default());
    let msg = match age {
        Some(a) => format!(
            "system {} (priority {}) is late: its last good backup is {} old, {allowed} allowed",
            s.name,
            s.priority,
            human_duration(a),
        ),
        None => format!("system {} (priority {}) is late: no good backup yet, {allowed} allowed", s.name, s.priority),
    };
    tracing::warn!(system = %s.name, "{msg}");
    let mut ev = Event::new(EventKind::SystemLate, now, msg);
    ev.system = Some(s.name.clone());
    ev.priority = Some(s.priority.get());
    ev.last_backup = last_at;
    ev.age_secs = age.map(|a| a.num_seconds());
    ev.max_age_secs = max.map(|m| m.num_seconds());
    ev
}

pub(crate) fn min_opt(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}
