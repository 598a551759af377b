//! The one place where the enums of a recovery run meet the text the state
//! database stores for them.
//!
//! The stored text must stay readable by every kura that wrote it: change a
//! variant's name in the code freely, but never its text here (or add a
//! migration). A value that does not parse is an error naming the table, the
//! row and the column ([`Error::StateValue`]), never a default: the database is
//! an audit trail, and a guess would falsify it.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serializer;

use super::jobs::Outcome;
use super::recovery::{RunKind, RunStatus};
use super::standby::{StandbyState, SwitchKind, SwitchPhase};
use crate::error::{Error, Result};
use crate::notify::outbox::{Channel, Status as OutboxStatus};
use crate::orchestrate::deadline::{Alert, Verdict};
use crate::orchestrate::hooks::HookStage;
use crate::orchestrate::queue::Phase;
use crate::schedule::{JobKind, Trigger};

/// An enum stored as text. `ALL` lists every value, for parsing and for the
/// error's "is not one of" list.
pub trait Stored: Copy + PartialEq + 'static {
    const ALL: &'static [Self];
    fn stored(self) -> &'static str;
}

/// Where a stored value was read: the table and the row, for the error.
#[derive(Clone, Copy, Debug)]
pub struct RowRef {
    pub table: &'static str,
    pub row: i64,
}

impl RowRef {
    /// An error about `column` of this row.
    pub fn bad(self, column: &'static str, problem: impl Into<String>) -> Error {
        Error::StateValue { table: self.table, row: self.row, column, problem: problem.into() }
    }

    /// Parses the text stored in `column` of this row.
    pub fn parse<T: Stored>(self, column: &'static str, text: &str) -> Result<T> {
        T::ALL.iter().copied().find(|v| v.stored() == text).ok_or_else(|| {
            let all: Vec<&str> = T::ALL.iter().map(|v| v.stored()).collect();
            self.bad(column, format!("{text:?} is not one of {}", all.join(", ")))
        })
    }

    /// Parses an optional column: NULL stays None, any text must parse.
    pub fn parse_opt<T: Stored>(self, column: &'static str, text: Option<String>) -> Result<Option<T>> {
        text.map(|t| self.parse(column, &t)).transpose()
    }

    /// Parses a time column (RFC 3339).
    pub fn time(self, column: &'static str, text: &str) -> Result<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| self.bad(column, format!("{text:?} is not a time")))
    }

    /// Parses an optional time column: NULL stays None.
    pub fn time_opt(self, column: &'static str, text: Option<String>) -> Result<Option<DateTime<Utc>>> {
        text.map(|t| self.time(column, &t)).transpose()
    }

    /// Parses a column holding JSON.
    pub fn json<T: serde::de::DeserializeOwned>(self, column: &'static str, text: &str) -> Result<T> {
        serde_json::from_str(text).map_err(|e| self.bad(column, format!("is not valid: {e}")))
    }
}

/// Collects rows read by a mapper that returns SQLite's error outside and a
/// stored value's error inside (the row readers of `state/`).
pub(crate) fn collect<T>(
    path: &std::path::Path,
    rows: impl Iterator<Item = rusqlite::Result<Result<T>>>,
) -> Result<Vec<T>> {
    rows.map(|r| r.map_err(|e| super::db_err(path, e))?).collect()
}

/// Serializes a stored enum as its stored text.
pub fn serialize<T: Stored, S: Serializer>(v: &T, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(v.stored())
}

/// Serializes an optional stored enum as its stored text (the JSON of `kura
/// recover status` shows what the database holds).
pub fn serialize_opt<T: Stored, S: Serializer>(v: &Option<T>, s: S) -> std::result::Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.serialize_str(v.stored()),
        None => s.serialize_none(),
    }
}

macro_rules! stored {
    ($ty:ty { $($variant:ident => $text:literal),+ $(,)? }) => {
        stored!(@stored $ty { $($variant => $text),+ });
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.stored())
            }
        }
    };
    // A type of another crate (it has its own Display).
    (@stored $ty:ty { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl Stored for $ty {
            const ALL: &'static [Self] = &[$(<$ty>::$variant),+];
            fn stored(self) -> &'static str {
                match self {
                    $(<$ty>::$variant => $text),+
                }
            }
        }
    };
}

// Warm standbys (issue 15).
stored!(StandbyState { Applying => "applying", Current => "current", Failed => "failed", Serving => "serving" });
stored!(SwitchKind { Failover => "failover", Failback => "failback", Drill => "drill" });
stored!(SwitchPhase {
    Fence => "fence",
    Demote => "demote",
    Backup => "backup",
    Apply => "apply",
    Promote => "promote",
    Unfence => "unfence",
    Verify => "verify",
    Done => "done",
    Failed => "failed",
});

stored!(Phase {
    Waiting => "waiting",
    Pre => "pre",
    Restoring => "restoring",
    Verifying => "verifying",
    Post => "post",
    Done => "done",
    Failed => "failed",
    Skipped => "skipped",
});

stored!(RunStatus { Running => "running", Done => "done", Failed => "failed" });

stored!(RunKind { Recovery => "recovery", Drill => "drill" });

// `Pending` is never stored (it describes a system still running); it parses
// back all the same, so every value has one text.
stored!(Verdict { Met => "met", Missed => "missed", NoDeadline => "no-deadline", Pending => "pending" });

stored!(Alert { AtRisk => "at-risk", Breach => "breach" });

stored!(Outcome {
    Running => "running",
    Ok => "ok",
    Partial => "partial",
    Failed => "failed",
    Interrupted => "interrupted",
});

stored!(Trigger { Schedule => "schedule", CatchUp => "catch-up", Manual => "manual" });

stored!(JobKind { Backup => "backup", Replicate => "replicate", Prune => "prune", Check => "check", Drill => "drill" });

stored!(Channel { Webhook => "webhook", Command => "command" });

stored!(OutboxStatus { Pending => "pending", Delivered => "delivered", Dropped => "dropped" });

// Stored inside the `hooks` column's JSON through serde; the test below keeps
// the two texts equal.
stored!(@stored HookStage {
    Pre => "pre", Verify => "verify", Post => "post", Fence => "fence", Promote => "promote", Demote => "demote",
    Unfence => "unfence"
});

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: Stored + fmt::Debug>() {
        let at = RowRef { table: "t", row: 1 };
        for v in T::ALL {
            assert_eq!(at.parse::<T>("c", v.stored()).unwrap(), *v);
        }
    }

    #[test]
    fn every_stored_value_reads_back() {
        round_trip::<Phase>();
        round_trip::<RunStatus>();
        round_trip::<RunKind>();
        round_trip::<Verdict>();
        round_trip::<Alert>();
        round_trip::<HookStage>();
        round_trip::<Outcome>();
        round_trip::<Trigger>();
    }

    #[test]
    fn hook_stages_serialize_as_stored() {
        for v in HookStage::ALL {
            assert_eq!(serde_json::to_value(v).unwrap(), v.stored());
        }
    }

    #[test]
    fn an_unknown_value_names_table_row_and_column() {
        let e = RowRef { table: "recovery_runs", row: 12 }.parse::<RunStatus>("status", "finshed").unwrap_err();
        assert_eq!(
            e.to_string(),
            "state database: recovery_runs row 12: status \"finshed\" is not one of running, done, failed"
        );
    }
}
