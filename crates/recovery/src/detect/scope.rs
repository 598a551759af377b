//! `kura incident scope`: for every system of the config, its last clean snapshot
//! compared with the live data (when its paths can be read) or with its newest
//! snapshot, through `kura_store::diff`. The figures become the incident's scope and
//! damage, with the evidence on its timeline.

use chrono::{DateTime, Utc};
use kura_store::diff::{Change, Diff};
use kura_store::repo::Repository;
use serde::Serialize;

use crate::config::SystemConfig;
use crate::error::Result;
use crate::state::State;

use super::Rules;

/// One system's damage.
#[derive(Clone, Debug, Serialize)]
pub struct SystemScope {
    pub system: String,
    pub affected: bool,
    /// The last clean snapshot (hex), when there is one.
    pub clean: Option<String>,
    /// `live` or the newest snapshot's id.
    pub compared_with: Option<String>,
    pub first_suspect: Option<DateTime<Utc>>,
    /// Renamed to a new extension with new content: encrypted in place.
    pub encrypted: u64,
    pub added: u64,
    pub deleted: u64,
    pub modified: u64,
    /// Up to ten examples of encrypted files.
    pub examples: Vec<String>,
    /// Why nothing could be compared, when so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Scopes one system.
pub fn scope_system(
    state: Option<&State>,
    repo: &Repository,
    sys: &SystemConfig,
    rules: &Rules,
) -> Result<SystemScope> {
    let tag = sys.tag();
    let mine = |s: &kura_store::repo::snapshot::Snapshot| s.has_tag(&tag);
    let cp = super::clean_point_of(state, repo, &mine, rules, None)?;
    let mut out = SystemScope {
        system: sys.name.clone(),
        affected: cp.first_suspect.is_some(),
        clean: cp.clean.clone(),
        compared_with: None,
        first_suspect: cp.first_suspect,
        encrypted: 0,
        added: 0,
        deleted: 0,
        modified: 0,
        examples: Vec::new(),
        note: None,
    };
    let all = repo.snapshots()?;
    let (Some(clean), Some(newest)) = (cp.clean_id(), all.iter().rev().find(|(_, s)| mine(s))) else {
        out.note = Some(if cp.ranked.is_empty() { "no snapshot" } else { "no clean snapshot" }.into());
        out.affected |= !cp.ranked.is_empty();
        return Ok(out);
    };
    let clean_snap = &all.iter().find(|(i, _)| *i == clean).expect("the clean point is a snapshot").1;
    let index = repo.load_index()?;
    let live = sys.stream.is_none() && !sys.paths.is_empty() && sys.paths.iter().all(|p| p.is_dir());
    let diff = if live {
        out.compared_with = Some("live".into());
        let mut d = Diff::default();
        for p in &sys.paths {
            let one = kura_store::diff::diff_live(repo, &index, &clean_snap.tree, p, &clean.short())?;
            d.changes.extend(one.changes);
        }
        d
    } else {
        out.compared_with = Some(newest.0.to_hex());
        kura_store::diff::diff(repo, &index, &clean_snap.tree, &newest.1.tree)?
    };
    count(&mut out, &diff);
    out.affected |= out.encrypted > 0;
    Ok(out)
}

fn count(out: &mut SystemScope, d: &Diff) {
    let s = kura_store::diff::summarize(&d.changes);
    out.encrypted = s.renamed_new_extension;
    out.added = s.added;
    out.deleted = s.removed;
    out.modified = s.modified;
    out.examples = d
        .changes
        .iter()
        .filter(|c| c.change == Change::Renamed && c.content_changed != Some(false))
        .filter(|c| c.from.as_deref().is_some_and(|f| ext(f) != ext(&c.path)))
        .take(10)
        .map(|c| c.path.clone())
        .collect();
}

fn ext(p: &str) -> &str {
    let name = p.rsplit('/').next().unwrap_or(p);
    name.rfind('.').filter(|&i| i > 0).map_or("", |i| &name[i + 1..])
}

/// The incident's scope and damage fields, in words.
pub fn render(scopes: &[SystemScope]) -> (String, String) {
    let affected: Vec<&SystemScope> = scopes.iter().filter(|s| s.affected).collect();
    let names = |v: &[&SystemScope]| v.iter().map(|s| s.system.as_str()).collect::<Vec<_>>().join(", ");
    let unaffected: Vec<&SystemScope> = scopes.iter().filter(|s| !s.affected).collect();
    let first = affected.iter().filter_map(|s| s.first_suspect).min();
    let mut scope = format!(
        "{} of {} systems affected: {}. Unaffected: {}.",
        affected.len(),
        scopes.len(),
        if affected.is_empty() { "none".into() } else { names(&affected) },
        if unaffected.is_empty() { "none".into() } else { names(&unaffected) }
    );
    if let Some(t) = first {
        scope.push_str(&format!(" First suspect snapshot: {}.", t.format("%Y-%m-%d %H:%M:%S UTC")));
    }
    let damage: Vec<String> = scopes
        .iter()
        .map(|s| {
            let against = match s.compared_with.as_deref() {
                Some("live") => "the live data".to_string(),
                Some(id) => format!("snapshot {}", &id[..8.min(id.len())]),
                None => return format!("{}: {}", s.system, s.note.as_deref().unwrap_or("not compared")),
            };
            format!(
                "{}: {} files encrypted, {} added, {} deleted, {} modified since the clean point {} (compared with {against})",
                s.system,
                s.encrypted,
                s.added,
                s.deleted,
                s.modified,
                s.clean.as_deref().map_or("-", |c| &c[..8])
            )
        })
        .collect();
    (scope, damage.join("; "))
}
