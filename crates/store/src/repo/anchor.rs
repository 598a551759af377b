//! Anchors: where an incident's timeline is pinned outside the state database. The
//! recovery side computes them (kura_recovery's `incident::chain`); the store only
//! keeps them, and `replicate` copies them to the remote site, never letting a
//! shorter or rewritten one replace what the destination holds.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Stored sealed at `anchors/<anchor_name>`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Anchor {
    /// The state database the incident lives in (its `meta.db_id`).
    pub db: String,
    pub incident: i64,
    /// How many timeline entries the chain had.
    pub entries: u64,
    /// The MAC of entry `entries`.
    pub head: String,
    /// The MAC of entry 1: finds the anchor again if the database's identity changes.
    pub first: String,
    pub anchored_at: DateTime<Utc>,
}
