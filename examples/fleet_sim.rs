//! Simulated agents for `benches/fleet_scale.sh`: many agents in one process that
//! speak the real protocol (mutual TLS, enrolment with one-time tokens, long polls
//! as heartbeats, reports). Each task is answered at once with a synthetic result
//! (no data moves), so that the bench measures the coordinator alone.
//!
//! Usage: fleet_sim URL TOKENS_DIR WORK_DIR SECONDS
//! (TOKENS_DIR holds one file per host, named after it, with its token.)

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kura::agent::identity::Identity;
use kura::fleet::proto::{
    BackupResult, HookResult, PollReply, PollRequest, Report, ReportRequest, RestoreResult, StandbyResult, TaskResult,
    TaskSpec, PROTOCOL_VERSION,
};

fn result(spec: &TaskSpec) -> TaskResult {
    match spec {
        TaskSpec::Backup { .. } => TaskResult::Backup(BackupResult { snapshot: "0".repeat(64), ..Default::default() }),
        TaskSpec::Restore { .. } => TaskResult::Restore(RestoreResult::default()),
        TaskSpec::Hook { .. } => TaskResult::Hook(HookResult { ok: true, ..Default::default() }),
        TaskSpec::StandbyApply { snapshot, .. } => {
            TaskResult::StandbyApply(StandbyResult { holds: Some(snapshot.clone()), ..Default::default() })
        }
    }
}

fn agent(id: Identity, until: Instant, polls: Arc<AtomicU64>, done: Arc<AtomicU64>) {
    while Instant::now() < until {
        let req = PollRequest { version: PROTOCOL_VERSION, held: None, wait_ms: 25_000 };
        let reply: PollReply = match id.post("/v1/agent/poll", &req) {
            Ok(r) => r.unwrap_or(PollReply { tasks: vec![] }),
            Err(e) => {
                eprintln!("poll: {e}");
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        polls.fetch_add(1, Ordering::Relaxed);
        for t in reply.tasks {
            let report = Report::Done { result: result(&t.spec) };
            let r = ReportRequest { version: PROTOCOL_VERSION, task: t.id, report };
            if id.post::<_, serde_json::Value>("/v1/agent/report", &r).is_ok() {
                done.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: fleet_sim URL TOKENS_DIR WORK_DIR SECONDS");
        std::process::exit(2);
    }
    let (url, tokens, work) = (&args[1], PathBuf::from(&args[2]), PathBuf::from(&args[3]));
    let secs: u64 = args[4].parse().expect("SECONDS is a number");
    let mut hosts: Vec<String> =
        std::fs::read_dir(&tokens).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    hosts.sort();
    let started = Instant::now();
    let ids: Vec<Identity> = hosts
        .iter()
        .map(|h| {
            let dir = work.join(h);
            if !dir.join("agent.pem").exists() {
                let token = std::fs::read_to_string(tokens.join(h)).unwrap();
                kura::agent::join::join(Some(url), token.trim(), &dir).unwrap_or_else(|e| panic!("join {h}: {e}"));
            }
            Identity::load(&dir).unwrap()
        })
        .collect();
    let joined_ms = started.elapsed().as_millis();
    let until = Instant::now() + Duration::from_secs(secs);
    let (polls, done) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let threads: Vec<_> = ids
        .into_iter()
        .map(|id| {
            let (p, d) = (polls.clone(), done.clone());
            std::thread::Builder::new().stack_size(256 * 1024).spawn(move || agent(id, until, p, d)).unwrap()
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    println!(
        "{}",
        serde_json::json!({
            "agents": hosts.len(), "join_ms": joined_ms, "seconds": secs,
            "polls": polls.load(Ordering::Relaxed), "tasks_done": done.load(Ordering::Relaxed),
        })
    );
}
