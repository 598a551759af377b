//! Cron schedules as kura reads them: crontab's five fields or the `cron` crate's
//! six or seven, weekday names only, every number checked against its range with
//! kura's own wording, and no schedule that never fires.

use std::str::FromStr;

use chrono::Duration;

use super::{RangeError, Schedule, ScheduleError};

/// Parses a cron expression: 5 fields (minute hour day-of-month month day-of-week,
/// as in crontab; kura adds a seconds field of 0), or 6-7 fields with seconds first
/// (and an optional year last), or a shortcut such as `@daily`. Days of the week
/// are names (`mon-fri`): crontab counts Sunday as 0, the `cron` crate as 1, so
/// numbers would be ambiguous and are refused.
pub fn parse_schedule(expr: &str) -> Result<Schedule, ScheduleError> {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    let full = if expr.trim_start().starts_with('@') {
        expr.trim().to_string()
    } else {
        let dow = match fields.len() {
            5 => 4,
            6 | 7 => 5,
            n => return Err(ScheduleError::FieldCount { expr: expr.into(), fields: n }),
        };
        if fields[dow].bytes().any(|c| c.is_ascii_digit()) {
            return Err(ScheduleError::NumberedWeekday { expr: expr.into() });
        }
        if fields.len() == 5 {
            format!("0 {}", fields.join(" "))
        } else {
            fields.join(" ")
        }
    };
    if !full.starts_with('@') {
        check_ranges(&full).map_err(|problem| ScheduleError::Range { expr: expr.into(), problem })?;
    }
    let cron = cron::Schedule::from_str(&full).map_err(|cause| ScheduleError::Cron { expr: expr.into(), cause })?;
    // A valid expression can still name a time that never comes (February 30th).
    let now = chrono::Utc::now();
    if cron.after(&now).next().is_none_or(|t| t - now >= Duration::days(NEVER_FIRES_YEARS * 366)) {
        return Err(ScheduleError::NeverFires { expr: expr.into(), years: NEVER_FIRES_YEARS });
    }
    Ok(Schedule { expr: expr.trim().to_string(), cron })
}

/// A schedule that matches no time within this many years is refused.
const NEVER_FIRES_YEARS: i64 = 5;

/// The fields of a full cron expression (seconds first): name and allowed numbers.
const CRON_FIELDS: [(&str, &str, u32, u32); 7] = [
    ("second", "seconds", 0, 59),
    ("minute", "minutes", 0, 59),
    ("hour", "hours", 0, 23),
    ("day of month", "days of the month", 1, 31),
    ("month", "months", 1, 12),
    ("day of week", "", 0, 0), // names only, checked before
    ("year", "years", 1970, 2100),
];

/// Checks every number of every field against its range, with kura's own wording
/// (the `cron` crate's messages are off by one: "must be less than 59").
fn check_ranges(full: &str) -> Result<(), RangeError> {
    for (field, (name, plural, min, max)) in full.split_whitespace().zip(CRON_FIELDS) {
        if name == "day of week" {
            continue;
        }
        for item in field.split(',') {
            let (base, step) = match item.split_once('/') {
                Some((b, s)) => (b, Some(s)),
                None => (item, None),
            };
            if let Some(step) = step {
                match step.parse::<u32>() {
                    Ok(n) if n >= 1 => {}
                    _ => return Err(RangeError::Step { name, step: step.into(), item: item.into() }),
                }
            }
            let ends: Vec<&str> = base.split('-').collect();
            let mut numbers = Vec::new();
            for e in &ends {
                // Names (jan, feb) and * are left to the cron parser.
                if let Ok(n) = e.parse::<u32>() {
                    if n < min || n > max {
                        return Err(RangeError::OutOfRange { name, n, plural, min, max });
                    }
                    numbers.push(n);
                }
            }
            if let [a, b] = numbers[..] {
                if ends.len() == 2 && a > b {
                    return Err(RangeError::Backwards { name, range: base.into() });
                }
            }
        }
    }
    Ok(())
}
