//! Integration tests: the real `kura` binary against temporary repositories.
//!
//! `util` holds the shared helpers; each other module covers one area.

mod backend;
mod concurrent;
mod config;
mod coordinator;
mod corruption;
mod crash;
mod daemon;
mod daemon_jobs;
mod damage;
mod dashboard;
mod dedup;
mod detect;
mod errors;
mod find;
mod fleet;
mod fleet_remote;
mod fleet_shared;
mod fleet_trust;
mod fleet_util;
mod forget;
mod fuzz_replay;
mod help;
mod incident_chain;
mod keys;
mod latest_filters;
mod listing;
mod metrics;
mod mount;
mod notify;
mod packaging;
mod partial;
mod passphrase;
mod plans;
mod postgres;
mod prune;
mod recover;
mod repair;
mod report_html;
mod resume;
mod rotation;
mod roundtrip;
mod s3;
mod security;
mod servers;
mod shared_bucket;
mod standby;
mod standby_fleet;
mod standby_watch;
mod state_db;
mod streams;
mod traversal;
mod util;
#[cfg(feature = "yara")]
mod yara;
