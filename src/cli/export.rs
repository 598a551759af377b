//! Whole-record exports built from the state database.

use anyhow::{bail, Result};

use kura::incident::record::{self, Record, Recovery};
use kura::state::recovery::RunKind;
use kura::state::State;

pub fn incident_fields_text(i: &kura::incident::Incident) -> String {
    record::fields_text(i)
}

pub fn incident_record(state: &State, id: i64) -> Result<Record> {
    let incident = state.incident(id)?;
    let timeline = state.timeline(id)?;
    let chain_verified = kura::incident::verify_chain(id, &state.raw_timeline(id)?).is_ok();
    let mut recoveries = vec![];
    for run in state.recovery_runs(Some(RunKind::Recovery), Some(id))? {
        let systems = state.run_systems(run.id)?;
        recoveries.push(Recovery { run, systems });
    }
    Ok(Record { incident, timeline, recoveries, chain_verified })
}

pub fn incident(state: &State, id: i64, format: &str) -> Result<String> {
    let r = incident_record(state, id)?;
    match format {
        "md" | "markdown" => Ok(record::markdown(&r)),
        "json" => Ok(serde_json::to_string_pretty(&r)? + "\n"),
        other => bail!("unknown export format {other:?}: use md or json"),
    }
}
