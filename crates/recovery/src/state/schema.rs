//! The state database's schema: every migration step, oldest first.

/// Schema steps, applied in order inside one transaction each. Never edit a
/// released step; append a new one.
pub(super) const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE job_runs (
    id INTEGER PRIMARY KEY,
    job TEXT NOT NULL,            -- backup | replicate | prune | check | drill
    system TEXT,                  -- the system, for backups
    trigger TEXT NOT NULL,        -- schedule | catch-up | manual
    started_at TEXT NOT NULL,     -- RFC 3339, UTC
    ended_at TEXT,
    outcome TEXT NOT NULL,        -- running | ok | partial | failed | interrupted
    bytes INTEGER,
    snapshot TEXT,
    error TEXT,
    detail TEXT                   -- JSON
);
CREATE INDEX job_runs_by_system ON job_runs(system, started_at);
CREATE INDEX job_runs_by_job ON job_runs(job, started_at);
CREATE TABLE schedule_state (
    job TEXT PRIMARY KEY,         -- e.g. backup:web, replicate, prune
    last_slot TEXT,               -- the cron slot the last run was for
    last_run TEXT
);
CREATE TABLE incidents (
    id INTEGER PRIMARY KEY,
    opened_at TEXT NOT NULL
);
-- Append-only; each entry carries the hash of the previous one (tamper evidence).
CREATE TABLE timeline (
    id INTEGER PRIMARY KEY,
    incident INTEGER NOT NULL REFERENCES incidents(id),
    seq INTEGER NOT NULL,
    at TEXT NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL,           -- JSON
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    UNIQUE (incident, seq)
);
CREATE TABLE recovery_runs (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,           -- recovery | drill
    incident INTEGER REFERENCES incidents(id),
    plan_path TEXT NOT NULL,
    plan_name TEXT NOT NULL,
    clock_start TEXT NOT NULL,    -- deadlines count from here
    started_at TEXT NOT NULL,
    ended_at TEXT,
    status TEXT NOT NULL,         -- running | done | failed (some system failed or was skipped)
    options TEXT NOT NULL         -- JSON: from, parallel, sandbox, force reason
);
CREATE TABLE recovery_systems (
    run INTEGER NOT NULL REFERENCES recovery_runs(id),
    name TEXT NOT NULL,
    priority INTEGER NOT NULL,
    deadline_secs INTEGER,
    state TEXT NOT NULL,          -- waiting | pre | restoring | verifying | post | done | failed | skipped
    snapshot TEXT,
    snapshot_time TEXT,
    target TEXT,
    started_at TEXT,
    ended_at TEXT,
    bytes INTEGER,                -- restored so far / in all
    bytes_total INTEGER,          -- size of what the snapshot restores
    files INTEGER,
    restore_ms INTEGER,           -- the restore step alone (throughput = bytes / restore_ms)
    verdict TEXT,                 -- met | missed | no-deadline
    margin_secs INTEGER,
    alert TEXT,                   -- at-risk | breach: the last alert sent
    hooks TEXT,                   -- JSON list of hook outcomes
    verify TEXT,                  -- JSON
    error TEXT,
    PRIMARY KEY (run, name)
);
CREATE TABLE drill_reviews (
    id INTEGER PRIMARY KEY,
    run INTEGER NOT NULL REFERENCES recovery_runs(id),
    at TEXT NOT NULL,
    evaluation TEXT NOT NULL,
    actions TEXT NOT NULL         -- JSON list
);
"#,
    r#"
-- How each timeline row's hash was made: legacy (before keying), unkeyed (the
-- repository was not available), keyed (MAC with the repository's chain key).
ALTER TABLE timeline ADD COLUMN mac TEXT NOT NULL DEFAULT 'legacy';
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
-- Names this database's incident anchors in the repository.
INSERT INTO meta (key, value) VALUES ('db_id', lower(hex(randomblob(16))));
"#,
    r#"
-- Notifications, written before they are sent (crate::notify::outbox): one row
-- per event and channel.
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL,       -- stable; receivers dedupe by it
    dedup_key TEXT NOT NULL,      -- e.g. system_late:web@..., job_failed:backup:web:17
    channel TEXT NOT NULL,        -- webhook | command
    kind TEXT NOT NULL,           -- job_failed | system_late | ...
    body TEXT NOT NULL,           -- the event JSON, as sent
    created_at TEXT NOT NULL,
    status TEXT NOT NULL,         -- pending | delivered | dropped
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at TEXT NOT NULL,        -- the next attempt, while pending
    last_error TEXT,
    delivered_at TEXT,
    UNIQUE (event_id, channel)
);
CREATE INDEX outbox_due ON outbox(status, next_at);
CREATE INDEX outbox_by_key ON outbox(dedup_key, created_at);
"#,
    r#"
-- The shape of what a restore did, for forecasts that hold when the data changes:
-- directories made and pack objects read. NULL in rows written before.
ALTER TABLE recovery_systems ADD COLUMN dirs INTEGER;
ALTER TABLE recovery_systems ADD COLUMN objects INTEGER;
"#,
    r#"
-- Fleet (issue #14, docs/FLEET.md): enrolled certificates by fingerprint, one-time
-- enrolment tokens (only the secret's hash), and the task queue agents poll.
CREATE TABLE fleet_agents (
    fingerprint TEXT PRIMARY KEY, -- SHA-256 of the certificate, hex
    name TEXT NOT NULL,           -- the host (agents) or person (operators, viewers)
    role TEXT NOT NULL,           -- agent | operator | viewer
    enrolled_at TEXT NOT NULL,
    last_seen TEXT,
    revoked_at TEXT
);
CREATE INDEX fleet_agents_by_name ON fleet_agents(name);
CREATE TABLE fleet_tokens (
    hash TEXT PRIMARY KEY,        -- SHA-256 of the secret; the secret is never stored
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at TEXT
);
CREATE TABLE fleet_tasks (
    id INTEGER PRIMARY KEY,
    host TEXT NOT NULL,
    kind TEXT NOT NULL,           -- backup | restore | hook
    system TEXT NOT NULL,
    spec TEXT NOT NULL,           -- kura_fleet::proto::TaskSpec JSON, no secret
    state TEXT NOT NULL,          -- queued | running | done | failed | cancelled
    created_at TEXT NOT NULL,
    started_at TEXT,
    ended_at TEXT,
    progress TEXT,                -- JSON {done, total}
    result TEXT,                  -- JSON, by kind
    error TEXT
);
CREATE INDEX fleet_tasks_by_host ON fleet_tasks(host, state);
"#,
    r#"
-- Incident detection (issue #16, crate::detect): a verdict per snapshot, the
-- operator's false-positive marks, holds that keep a system's last clean snapshot
-- from forget and prune, and indicator scans (results per snapshot; content
-- already scanned clean with the same rules is not read again).
CREATE TABLE snapshot_verdicts (
    repo TEXT NOT NULL,           -- repository id
    snapshot TEXT NOT NULL,       -- snapshot id (hex)
    system TEXT,                  -- the config's system, when known
    snapshot_time TEXT NOT NULL,
    verdict TEXT NOT NULL,        -- unmeasured | learning | clean | suspect
    reasons TEXT NOT NULL,        -- JSON: the verdict with the rules that fired
    assessed_at TEXT NOT NULL,
    false_positive_at TEXT,       -- set by an operator: the baseline learns from it
    false_positive_note TEXT,
    incident INTEGER,             -- the draft incident a suspect verdict opened
    PRIMARY KEY (repo, snapshot)
);
CREATE TABLE snapshot_holds (
    id INTEGER PRIMARY KEY,
    repo TEXT NOT NULL,
    snapshot TEXT NOT NULL,
    system TEXT,
    reason TEXT NOT NULL,
    since TEXT NOT NULL,
    released_at TEXT,             -- NULL while the hold applies
    released_note TEXT
);
CREATE INDEX snapshot_holds_active ON snapshot_holds(repo, released_at);
CREATE TABLE scan_results (
    repo TEXT NOT NULL,
    snapshot TEXT NOT NULL,
    rules TEXT NOT NULL,          -- digest of the indicator set
    scanned_at TEXT NOT NULL,
    files INTEGER NOT NULL,
    files_read INTEGER NOT NULL,  -- files whose content was read (not known clean)
    bytes_read INTEGER NOT NULL,
    hits TEXT NOT NULL,           -- JSON list of {path, indicator}
    PRIMARY KEY (repo, snapshot, rules)
);
CREATE TABLE scanned_content (
    rules TEXT NOT NULL,
    content TEXT NOT NULL,        -- keyed digest of a file's blob id list
    hit TEXT,                     -- NULL: clean; else the indicator that matched
    PRIMARY KEY (rules, content)
);
"#,
    r#"
-- Warm standbys (issue 15, docs/STANDBY.md): one row per system with a standby, and
-- one per failover, failback or failover drill (resumed after a crash from `phase`).
CREATE TABLE standbys (
    system TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    state TEXT NOT NULL,          -- applying | current | failed | serving
    snapshot TEXT,                -- the snapshot it holds completely (NULL: none)
    snapshot_time TEXT,
    applying TEXT,                -- the snapshot an unfinished update goes to
    applied_at TEXT,
    apply_ms INTEGER,
    bytes_written INTEGER,
    verify_ok INTEGER,            -- 1 | 0 | NULL (not verified yet)
    verified_at TEXT,
    error TEXT
);
CREATE TABLE failovers (
    id INTEGER PRIMARY KEY,
    system TEXT NOT NULL,
    kind TEXT NOT NULL,           -- failover | failback | drill
    incident INTEGER REFERENCES incidents(id),
    phase TEXT NOT NULL,          -- see standby::Phase
    started_at TEXT NOT NULL,
    ended_at TEXT,
    snapshot TEXT,
    snapshot_time TEXT,
    apply_ms INTEGER,             -- bringing the data to the snapshot, by difference
    switch_ms INTEGER,            -- the hooks: fence, promote, verify (or demote, unfence)
    downtime_secs INTEGER,
    data_loss_secs INTEGER,
    met INTEGER,
    error TEXT
);
CREATE INDEX failovers_by_system ON failovers(system, id);
-- A system of a recovery run that fails over to its standby instead of restoring.
ALTER TABLE recovery_systems ADD COLUMN failover INTEGER NOT NULL DEFAULT 0;
"#,
    r#"
-- Fleet (issue #14): the host each system of a recovery runs on (its agent, or its
-- replacement / `--on` host); NULL: the coordinator's own machine.
ALTER TABLE recovery_systems ADD COLUMN ran_on TEXT;
"#,
];
