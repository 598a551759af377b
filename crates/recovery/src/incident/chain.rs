//! The keyed timeline chain and its anchors outside the state database.
//!
//! * Each timeline row carries a MAC over the previous row's MAC, its incident,
//!   position, time, kind and stored JSON. New rows are keyed with the chain key,
//!   derived from the repository's master key, so someone who holds only the state
//!   database cannot recompute a valid chain. Rows written while the repository
//!   could not be opened carry the unkeyed blake3 hash (`unkeyed`), as do rows
//!   written before keying existed (`legacy`).
//! * After every append, the incident's entry count and head MAC are stored as an
//!   encrypted anchor object in the repository (`anchors/<hex>`), which replication
//!   copies to the remote site. A removed tail, an edited row or a recomputed chain
//!   then disagrees with the anchor.
//! * An anchor is only ever extended: a new anchor is written only when the chain
//!   verifies with the key and continues the stored anchor's chain, so writing to
//!   a tampered incident never hides the tampering.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{chain_hash, RawEntry, GENESIS};
use crate::error::Result;
use kura_store::backend::Kind;
use kura_store::crypto::MasterKey;
use kura_store::repo::Repository;

/// The `derive_key` context of the chain key.
pub const CHAIN_KEY_CONTEXT: &str = "kura incident chain v1";

/// The chain key of a repository.
pub fn chain_key(master: &MasterKey) -> [u8; 32] {
    master.derive(CHAIN_KEY_CONTEXT)
}

/// How a row's `hash` was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mac {
    /// Written before the chain was keyed: the unkeyed blake3 chain.
    Legacy,
    /// Written while the repository (and so the key) was not available.
    Unkeyed,
    /// blake3 keyed with the chain key.
    Keyed,
}

impl Mac {
    pub fn as_str(self) -> &'static str {
        match self {
            Mac::Legacy => "legacy",
            Mac::Unkeyed => "unkeyed",
            Mac::Keyed => "keyed",
        }
    }

    pub fn parse(s: &str) -> Option<Mac> {
        match s {
            "legacy" => Some(Mac::Legacy),
            "unkeyed" => Some(Mac::Unkeyed),
            "keyed" => Some(Mac::Keyed),
            _ => None,
        }
    }
}

/// The keyed MAC of a row: the same length-prefixed parts as `chain_hash`.
pub fn keyed_mac(key: &[u8; 32], prev: &str, incident: i64, seq: i64, at: &str, kind: &str, data: &str) -> String {
    let mut h = blake3::Hasher::new_keyed(key);
    for part in [prev, &incident.to_string(), &seq.to_string(), at, kind, data] {
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().to_hex().to_string()
}

/// The MAC a new row gets: keyed when the key is known.
pub fn row_mac(
    key: Option<&[u8; 32]>,
    prev: &str,
    incident: i64,
    seq: i64,
    at: &str,
    kind: &str,
    data: &str,
) -> (Mac, String) {
    match key {
        Some(k) => (Mac::Keyed, keyed_mac(k, prev, incident, seq, at, kind, data)),
        None => (Mac::Unkeyed, chain_hash(prev, incident, seq, at, kind, data)),
    }
}

pub use kura_store::repo::anchor::Anchor;

/// The object name of an incident's anchor: fixed per database and incident, so
/// each anchoring replaces the previous one.
pub fn anchor_name(key: &[u8; 32], db: &str, incident: i64) -> String {
    let mut h = blake3::Hasher::new_keyed(key);
    h.update(b"kura incident anchor\0");
    h.update(db.as_bytes());
    h.update(b"\0");
    h.update(incident.to_string().as_bytes());
    h.finalize().to_hex().to_string()
}

/// Every anchor in a repository that belongs to this incident: the one stored under
/// its name, and any other for the same incident id whose first entry matches.
pub fn find_anchors(repo: &Repository, db: &str, incident: i64, first: Option<&str>) -> Result<Vec<Anchor>> {
    let key = chain_key(repo.key());
    let own = anchor_name(&key, db, incident);
    let mut out = vec![];
    for (name, _) in repo.backend().list(Kind::Anchor)? {
        let a: Anchor = match repo.load_sealed(Kind::Anchor, &name) {
            Ok(a) => a,
            Err(kura_store::Error::Backend(e)) if e.is_not_found() => continue,
            Err(e) => return Err(e.into()),
        };
        let ours = name == own || (a.incident == incident && first.is_some_and(|f| f == a.first));
        if ours && a.incident == incident {
            out.push(a);
        }
    }
    Ok(out)
}

/// One finding of `verify`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Finding {
    /// removed-tail, edited, recomputed, broken-link, missing-entry, downgraded,
    /// not-anchored, anchor-mismatch
    pub kind: &'static str,
    /// The timeline entry it is about, if one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry: Option<i64>,
    pub message: String,
}

fn finding(kind: &'static str, entry: Option<i64>, message: impl Into<String>) -> Finding {
    Finding { kind, entry, message: message.into() }
}

/// The anchors found at one site (the repository, or the remote site).
#[derive(Clone, Debug)]
pub struct SiteAnchors {
    /// "the repository /srv/kura", "the remote site s3:...".
    pub site: String,
    pub remote: bool,
    pub anchors: Vec<Anchor>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Verification {
    pub incident: i64,
    pub entries: usize,
    /// The MAC of the last entry (the chain head).
    pub head: String,
    pub keyed: usize,
    pub unkeyed: usize,
    pub legacy: usize,
    /// Tampering found: any of these means the record cannot be trusted.
    pub problems: Vec<Finding>,
    /// What is not protected yet (legacy rows, entries not anchored).
    pub warnings: Vec<Finding>,
    /// Per site, the entry count its anchor vouches for (0: none).
    pub anchored: Vec<(String, u64)>,
}

impl Verification {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks the rows with the key, then against every site's anchors.
pub fn verify(incident: i64, rows: &[(RawEntry, Mac)], key: &[u8; 32], sites: &[SiteAnchors]) -> Verification {
    let mut v = Verification { incident, entries: rows.len(), ..Default::default() };
    v.head = rows.last().map(|r| r.0.hash.clone()).unwrap_or_default();
    let mut prev = GENESIS.to_string();
    let mut seen_unkeyed_or_keyed = false;
    for (i, (r, mac)) in rows.iter().enumerate() {
        match mac {
            Mac::Keyed => v.keyed += 1,
            Mac::Unkeyed => v.unkeyed += 1,
            Mac::Legacy => v.legacy += 1,
        }
        if !v.problems.is_empty() {
            continue;
        }
        let n = i as i64 + 1;
        if r.seq != n {
            v.problems.push(finding(
                "missing-entry",
                Some(n),
                format!("entry {n} is missing or out of order (found entry {} in its place)", r.seq),
            ));
            continue;
        }
        if r.prev_hash != prev {
            v.problems.push(finding(
                "broken-link",
                Some(n),
                format!("entry {n}: its link to entry {} is broken (an entry was removed or edited)", n - 1),
            ));
            continue;
        }
        let unkeyed = chain_hash(&r.prev_hash, incident, r.seq, &r.at, &r.kind, &r.data);
        match mac {
            Mac::Keyed => {
                let mac = keyed_mac(key, &r.prev_hash, incident, r.seq, &r.at, &r.kind, &r.data);
                if mac != r.hash {
                    let (kind, why) = if unkeyed == r.hash {
                        ("recomputed", "the chain was recomputed without the repository's key")
                    } else {
                        ("edited", "the row was edited")
                    };
                    v.problems.push(finding(kind, Some(n), format!("entry {n}: MAC mismatch: {why}")));
                }
                seen_unkeyed_or_keyed = true;
            }
            Mac::Unkeyed | Mac::Legacy => {
                if *mac == Mac::Legacy && seen_unkeyed_or_keyed {
                    v.problems.push(finding(
                        "downgraded",
                        Some(n),
                        format!("entry {n} claims to be legacy (unkeyed) after newer entries: its row was rewritten"),
                    ));
                } else if unkeyed != r.hash {
                    v.problems.push(finding(
                        "edited",
                        Some(n),
                        format!("entry {n}: hash mismatch: the row was edited"),
                    ));
                }
                seen_unkeyed_or_keyed |= *mac == Mac::Unkeyed;
            }
        }
        prev = r.hash.clone();
    }
    if v.legacy > 0 {
        v.warnings.push(finding(
            "legacy",
            None,
            format!(
                "entries 1-{} are unkeyed (legacy): written before kura keyed the chain, they are protected only by \
                 the anchors written since",
                v.legacy
            ),
        ));
    }
    if v.unkeyed > 0 {
        v.warnings.push(finding(
            "unkeyed",
            None,
            format!(
                "{} entries are unkeyed: written while the repository could not be opened, they are protected only \
                 by the anchors written since",
                v.unkeyed
            ),
        ));
    }
    for site in sites {
        let best = site.anchors.iter().map(|a| a.entries).max().unwrap_or(0);
        v.anchored.push((site.site.clone(), best));
        if site.anchors.is_empty() {
            if site.remote {
                v.warnings.push(finding(
                    "not-anchored",
                    None,
                    format!("{} holds no anchor for this incident yet (replication copies it)", site.site),
                ));
            } else if v.keyed + v.unkeyed > 0 {
                v.problems.push(finding(
                    "not-anchored",
                    None,
                    format!(
                        "{} holds no anchor for this incident: it was deleted, the database was replaced, or no \
                         command could open the repository since the incident was written (then run `kura incident \
                         anchor {incident}`)",
                        site.site
                    ),
                ));
            } else {
                v.warnings.push(finding(
                    "not-anchored",
                    None,
                    format!(
                        "{} holds no anchor for this incident (`kura incident anchor {incident}` adds one)",
                        site.site
                    ),
                ));
            }
            continue;
        }
        for a in &site.anchors {
            let count = a.entries as usize;
            if count > rows.len() {
                v.problems.push(finding(
                    "removed-tail",
                    Some(rows.len() as i64 + 1),
                    format!(
                        "removed tail: the anchor in {} records {} entries, the database holds {}: entries {}-{} were \
                         removed",
                        site.site,
                        a.entries,
                        rows.len(),
                        rows.len() + 1,
                        a.entries
                    ),
                ));
            } else if count == 0 || rows[count - 1].0.hash != a.head || rows[0].0.hash != a.first {
                v.problems.push(finding(
                    "anchor-mismatch",
                    Some(count as i64),
                    format!(
                        "entry {count} does not match the anchor in {}: the rows up to it were edited or the chain was \
                         recomputed",
                        site.site
                    ),
                ));
            } else if count < rows.len() {
                v.warnings.push(finding(
                    "not-anchored",
                    Some(count as i64 + 1),
                    format!(
                        "entries {}-{} are not anchored in {} yet{}",
                        count + 1,
                        rows.len(),
                        site.site,
                        if site.remote {
                            " (the next replication copies the anchor)".to_string()
                        } else {
                            format!(" (`kura incident anchor {incident}` anchors them)")
                        }
                    ),
                ));
            }
        }
    }
    v
}

/// What `anchor` did.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "outcome")]
pub enum Anchored {
    /// The anchor already covered every entry.
    UpToDate {
        entries: u64,
    },
    Written {
        entries: u64,
    },
    /// Not written: the chain does not verify or does not extend the stored anchor.
    Refused {
        reason: String,
    },
}

/// Anchors the incident's chain as it is now in `repo`, if that is safe: the chain
/// verifies with the key and continues every anchor already stored.
pub fn anchor(
    repo: &Repository,
    db: &str,
    incident: i64,
    rows: &[(RawEntry, Mac)],
    now: DateTime<Utc>,
) -> Result<Anchored> {
    let Some(last) = rows.last() else {
        return Ok(Anchored::Refused { reason: "its timeline is empty".into() });
    };
    let key = chain_key(repo.key());
    let site = SiteAnchors {
        site: format!("the repository {}", repo.location()),
        remote: false,
        anchors: find_anchors(repo, db, incident, Some(&rows[0].0.hash))?,
    };
    let v = verify(incident, rows, &key, std::slice::from_ref(&site));
    if let Some(p) = v.problems.iter().find(|p| p.kind != "not-anchored") {
        return Ok(Anchored::Refused { reason: p.message.clone() });
    }
    let entries = rows.len() as u64;
    let own = anchor_name(&key, db, incident);
    if site.anchors.iter().any(|a| a.entries == entries) {
        return Ok(Anchored::UpToDate { entries });
    }
    let a = Anchor {
        db: db.to_string(),
        incident,
        entries,
        head: last.0.hash.clone(),
        first: rows[0].0.hash.clone(),
        anchored_at: now,
    };
    repo.save_sealed(Kind::Anchor, &own, &a)?;
    Ok(Anchored::Written { entries })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::{Event, Fields};

    fn rows(key: Option<&[u8; 32]>, n: usize) -> Vec<(RawEntry, Mac)> {
        let mut prev = GENESIS.to_string();
        let mut out = vec![];
        for i in 0..n {
            let seq = i as i64 + 1;
            let e = if i == 0 {
                Event::Opened { fields: Fields { title: Some("x".into()), ..Default::default() } }
            } else {
                Event::Note { text: format!("note {i}") }
            };
            let at = format!("2026-01-01T00:00:{i:02}Z");
            let data = serde_json::to_string(&e).unwrap();
            let (mac, hash) = row_mac(key, &prev, 3, seq, &at, e.kind(), &data);
            out.push((
                RawEntry { seq, at, kind: e.kind().into(), data, prev_hash: prev.clone(), hash: hash.clone() },
                mac,
            ));
            prev = hash;
        }
        out
    }

    fn site(rows: &[(RawEntry, Mac)], n: usize) -> SiteAnchors {
        SiteAnchors {
            site: "the repository r".into(),
            remote: false,
            anchors: vec![Anchor {
                db: "d".into(),
                incident: 3,
                entries: n as u64,
                head: rows[n - 1].0.hash.clone(),
                first: rows[0].0.hash.clone(),
                anchored_at: Utc::now(),
            }],
        }
    }

    fn kinds(v: &Verification) -> Vec<&'static str> {
        v.problems.iter().map(|p| p.kind).collect()
    }

    #[test]
    fn keyed_chain_detects_tail_edit_and_recompute() {
        let key = [7u8; 32];
        let good = rows(Some(&key), 4);
        let anchors = site(&good, 4);
        let v = verify(3, &good, &key, std::slice::from_ref(&anchors));
        assert!(v.ok() && v.warnings.is_empty(), "{v:?}");

        let v = verify(3, &good[..3], &key, std::slice::from_ref(&anchors));
        assert_eq!(kinds(&v), ["removed-tail"]);

        let mut edited = good.clone();
        edited[1].0.data = edited[1].0.data.replace("note 1", "note X");
        assert_eq!(verify(3, &edited, &key, std::slice::from_ref(&anchors)).problems[0].kind, "edited");

        // Recomputed without the key, still marked keyed: the MAC fails.
        let mut forged = rows(None, 4);
        for r in &mut forged {
            r.1 = Mac::Keyed;
        }
        assert_eq!(verify(3, &forged, &key, std::slice::from_ref(&anchors)).problems[0].kind, "recomputed");
        // ... and marked unkeyed: the anchor's head does not match.
        let forged = rows(None, 4);
        assert_eq!(kinds(&verify(3, &forged, &key, std::slice::from_ref(&anchors))), ["anchor-mismatch"]);
        // A different key does not verify either.
        assert!(!verify(3, &good, &[8u8; 32], std::slice::from_ref(&anchors)).ok());
    }

    #[test]
    fn legacy_chain_verifies_with_a_warning_and_unanchored_entries_are_named() {
        let key = [7u8; 32];
        let mut legacy = rows(None, 2);
        for r in &mut legacy {
            r.1 = Mac::Legacy;
        }
        let none = SiteAnchors { site: "the repository r".into(), remote: false, anchors: vec![] };
        let v = verify(3, &legacy, &key, std::slice::from_ref(&none));
        assert!(v.ok(), "{v:?}");
        assert!(v.warnings.iter().any(|w| w.kind == "legacy"));

        let good = rows(Some(&key), 3);
        let v = verify(3, &good, &key, &[site(&good, 2)]);
        assert!(v.ok());
        assert_eq!(v.warnings[0].entry, Some(3));
        assert!(!verify(3, &good, &key, &[none]).ok(), "keyed entries without any anchor");
    }
}
