//! kura's recovery side: what a site looks like (config), how it comes back
//! (plans), what happened (incidents), and the engine that restores systems in
//! priority order against their deadlines, with its state database and reports.
//! It builds on `kura_store`; the store never depends on it.
//!
//! Where each concept lives:
//! * `config`: kura.toml, the site (systems, repository, remote, jobs).
//! * `plan`: restoration plans, validated and ordered.
//! * `incident`: the incident record and its keyed, anchored timeline.
//! * `orchestrate`: the engine (queue, deadlines, hooks, gate, run lock, drill, forecast).
//! * `state`: the SQLite state database.
//! * `report`: facts, then Markdown, HTML, JSON and CSV.
//! * `standby`: warm standbys: kept current, failover, failback, drills.
//! * `schedule`, `notify`: schedule decisions and notifications.
//! * `detect`: incident detection in the backups (signal rules, verdicts, holds).
//! * `human`: durations for people, the one formatter every output uses.

pub mod config;
pub mod detect;
pub mod error;
pub mod fleet_dir;
pub mod human;
pub mod incident;
pub mod notify;
pub mod orchestrate;
pub mod plan;
pub mod report;
pub mod schedule;
pub mod standby;
pub mod state;

pub use error::{Error, Result};
