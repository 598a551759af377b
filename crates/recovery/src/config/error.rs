//! Why a duration or a schedule was refused. The messages are what users see in
//! config and plan diagnostics; keep their wording when changing the types.

/// A duration (`"90s"`, `"24h"`, `"1h30m"`) that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("{0:?} is not a duration: use a number and a unit (s, m, h, d, w), e.g. \"90s\", \"24h\", \"3d\"")]
    NotADuration(String),
    #[error("{0:?} is longer than a hundred years")]
    TooLong(String),
}

/// A cron expression that kura refuses.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error(
        "bad cron expression {expr:?}: {fields} fields; use 5 (minute hour day month weekday) \
         or 6-7 with seconds first"
    )]
    FieldCount { expr: String, fields: usize },
    /// crontab counts Sunday as 0, the `cron` crate as 1: a number would be ambiguous.
    #[error(
        "bad cron expression {expr:?}: give days of the week by name (sun, mon, ..., sat; \
         ranges like mon-fri), not by number"
    )]
    NumberedWeekday { expr: String },
    #[error("bad cron expression {expr:?}: {problem}")]
    Range { expr: String, problem: RangeError },
    /// The `cron` crate's own refusal. Its text is part of the message, so it is
    /// deliberately not a `#[source]` (it would print twice in a chain).
    #[error("bad cron expression {expr:?}: {cause}")]
    Cron { expr: String, cause: cron::error::Error },
    #[error(
        "cron expression {expr:?} never fires: no time in the next {years} years matches it \
         (does the day exist in that month? February has at most 29 days, April, June, September \
         and November 30; and is a year given that has passed?)"
    )]
    NeverFires { expr: String, years: i64 },
}

/// A number of a cron field outside what the field allows, in kura's own words
/// (the `cron` crate's are off by one: "must be less than 59").
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error("{name} step {step:?} in {item:?} must be a whole number of 1 or more")]
    Step { name: &'static str, step: String, item: String },
    #[error("{name} {n} is out of range: {plural} are {min}-{max}")]
    OutOfRange { name: &'static str, n: u32, plural: &'static str, min: u32, max: u32 },
    #[error("the {name} range {range} runs backwards: write the smaller number first")]
    Backwards { name: &'static str, range: String },
}
