//! `/metrics`: OpenMetrics text (Prometheus scrapes it), built from a fresh
//! [`View`] on every scrape. Names, types and labels are listed in docs/DAEMON.md.
//! Not yet: agents (kura has no fleet of agents to measure).

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::view::{self, RecoveryView, View};
use super::{auth, Ctx, TokenQuery};
use crate::status::SystemStatus;
use kura_recovery::state::codec::Stored;
use kura_recovery::state::recovery::RunStatus;

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels = Vec<(String, String)>;
type Gauges = Family<Labels, Gauge>;

pub async fn handler(State(ctx): State<Ctx>, headers: HeaderMap, q: Query<TokenQuery>) -> Response {
    if !ctx.open_metrics && !auth::allowed(&ctx.token, &headers, q.token.as_deref()) {
        return auth::unauthorized();
    }
    let text = match view::gather(&ctx.daemon).await {
        Ok(v) => render(&v),
        Err(e) => Err(e.to_string()),
    };
    match text {
        Ok(t) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], t).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot read the metrics: {e}\n")).into_response(),
    }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn gauges(reg: &mut Registry, name: &str, help: &str) -> Gauges {
    let f = Gauges::default();
    reg.register(name, help, f.clone());
    f
}

/// The exposition text of a view.
pub fn render(v: &View) -> Result<String, String> {
    let mut reg = Registry::default();
    systems(&mut reg, &v.status.systems);
    standbys(&mut reg, &v.status.systems);
    let runs = Family::<Labels, Counter>::default();
    reg.register("kura_job_runs", "Job runs recorded in the state database, by job kind and outcome", runs.clone());
    for r in &v.runs {
        runs.get_or_create(&labels(&[("kind", r.job.as_str()), ("outcome", r.outcome.as_str())])).inc_by(r.runs);
    }
    recovery(&mut reg, v.recovery.as_ref().filter(|r| r.run.status == RunStatus::Running));
    let mut out = String::new();
    encode(&mut out, &reg).map_err(|e| e.to_string())?;
    Ok(out)
}

fn systems(reg: &mut Registry, systems: &[SystemStatus]) {
    let priority = gauges(reg, "kura_system_priority", "The system's recovery priority (3 most critical)");
    let age = gauges(reg, "kura_system_backup_age_seconds", "Age of the system's last good backup");
    let max_age = gauges(reg, "kura_system_backup_max_age_seconds", "Allowed age of the last good backup (RPO)");
    let late = gauges(reg, "kura_system_late", "1 when the last good backup is older than allowed");
    let dur = gauges(reg, "kura_system_last_backup_duration_seconds", "Duration of the last backup run");
    let bytes = gauges(reg, "kura_system_last_backup_bytes", "Bytes the last backup run stored");
    let outcome = gauges(reg, "kura_system_last_backup_outcome", "1 for the outcome of the last backup run");
    for s in systems {
        let l = labels(&[("system", &s.name)]);
        priority.get_or_create(&l).set(s.priority.into());
        late.get_or_create(&l).set(s.late.into());
        let opt = [(&age, s.age_secs), (&max_age, s.max_age_secs), (&dur, s.last_run_secs)];
        for (fam, v) in opt {
            if let Some(v) = v {
                fam.get_or_create(&l).set(v);
            }
        }
        if let Some(b) = s.last_run_bytes {
            bytes.get_or_create(&l).set(i64::try_from(b).unwrap_or(i64::MAX));
        }
        if let Some(o) = s.last_outcome {
            outcome.get_or_create(&labels(&[("system", &s.name), ("outcome", o.as_str())])).set(1);
        }
    }
}

/// Warm standbys (docs/STANDBY.md): lag, health, last verification.
fn standbys(reg: &mut Registry, systems: &[SystemStatus]) {
    let lag = gauges(reg, "kura_standby_lag_seconds", "How far the standby is behind the system's last good backup");
    let healthy =
        gauges(reg, "kura_standby_healthy", "1 when the standby can take over (holds a recent, verified snapshot)");
    let health = gauges(
        reg,
        "kura_standby_health",
        "1 for the standby's health (healthy, stale, failed, empty, applying, serving)",
    );
    let verify =
        gauges(reg, "kura_standby_verify_ok", "1 when the standby's last verification passed, 0 when it failed");
    let applied =
        gauges(reg, "kura_standby_applied_timestamp_seconds", "When the standby was last brought to a snapshot");
    for s in systems {
        let Some(b) = &s.standby else { continue };
        let l = labels(&[("system", &s.name)]);
        healthy.get_or_create(&l).set((b.health == kura_recovery::standby::Health::Healthy).into());
        health.get_or_create(&labels(&[("system", &s.name), ("health", b.health.kind())])).set(1);
        if let Some(v) = b.lag_secs {
            lag.get_or_create(&l).set(v);
        }
        if let Some(v) = b.verify_ok {
            verify.get_or_create(&l).set(v.into());
        }
        if let Some(t) = b.applied_at {
            applied.get_or_create(&l).set(t.timestamp());
        }
    }
}

fn recovery(reg: &mut Registry, r: Option<&RecoveryView>) {
    let running = Gauge::<i64>::default();
    reg.register("kura_recovery_running", "1 while a recovery run is going on", running.clone());
    let state = gauges(reg, "kura_recovery_system_state", "1 for each system's state in the running recovery");
    let due = gauges(reg, "kura_recovery_system_deadline_timestamp_seconds", "When the system's deadline falls");
    let left = gauges(reg, "kura_recovery_system_seconds_left", "Seconds until the deadline (negative: past it)");
    running.set(r.is_some().into());
    let Some(r) = r else { return };
    let run = r.run.id.to_string();
    for s in &r.systems {
        let l = labels(&[("run", &run), ("system", &s.record.name)]);
        let st = labels(&[("run", &run), ("system", &s.record.name), ("state", s.record.state.stored())]);
        state.get_or_create(&st).set(1);
        if let Some(d) = s.deadline_at {
            due.get_or_create(&l).set(d.timestamp());
        }
        if let Some(t) = s.time_left_secs {
            left.get_or_create(&l).set(t);
        }
    }
}
