//! Whole-record exports built from the state database.

use anyhow::{bail, Result};

use kura::incident::record::{self, Record, Recovery};
use kura::state::recovery::RunKind;
use kura::state::State;

use super::incident::{verify_incident, Sites};

pub fn incident_fields_text(i: &kura::incident::Incident) -> String {
    record::fields_text(i)
}

/// The record, with the chain verified against the anchors of `sites`.
pub fn incident_record(state: &State, id: i64, sites: &Sites) -> Result<Record> {
    let incident = state.incident(id)?;
    let timeline = state.timeline(id)?;
    let (chain, chain_unverified) = match &sites.local {
        Ok(repo) => (Some(verify_incident(state, id, repo, sites.remote.as_ref())?), None),
        Err(e) => (None, Some(format!("the repository could not be opened: {e}"))),
    };
    let chain_verified = chain.as_ref().is_some_and(|v| v.ok());
    let mut recoveries = vec![];
    for run in state.recovery_runs(Some(RunKind::Recovery), Some(id))? {
        let systems = state.run_systems(run.id)?;
        recoveries.push(Recovery { run, systems });
    }
    Ok(Record { incident, timeline, recoveries, chain_verified, chain, chain_unverified })
}

pub fn incident(state: &State, id: i64, format: &str, sites: &Sites) -> Result<String> {
    let r = incident_record(state, id, sites)?;
    match format {
        "md" | "markdown" => Ok(record::markdown(&r)),
        "json" => Ok(serde_json::to_string_pretty(&r)? + "\n"),
        other => bail!("unknown export format {other:?}: use md or json"),
    }
}
