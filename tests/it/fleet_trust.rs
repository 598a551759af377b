//! Enrolment and trust with real TLS: a reused token, an expired token, a
//! certificate from another CA, an agent asking for (or reporting on) another
//! host's work, a revoked agent refused at once, a viewer that cannot do work.

use std::time::{Duration, Instant};

use kura::fleet::pki::{generate_client_key, Ca};
use kura::fleet::proto::{PollReply, PollRequest, Report, ReportRequest, TaskSpec, PROTOCOL_VERSION};

use crate::fleet_util::Fleet;

fn poll_req(wait_ms: u64) -> PollRequest {
    PollRequest { version: PROTOCOL_VERSION, held: None, wait_ms }
}

#[test]
fn enrolment_tokens_other_ca_other_hosts_work_and_revocation() {
    let fleet = Fleet::new("");
    let _d = fleet.daemon();
    let base = fleet.setup.repo.base().to_path_buf();

    // A token works once.
    let token = fleet.enroll("db1", &[]);
    fleet.join(&token, &base.join("db1")).ok().stdout_has("joined as db1 (agent)");
    let key = std::fs::metadata(base.join("db1/agent.key")).unwrap();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&key.permissions()) & 0o777, 0o600);
    fleet.join(&token, &base.join("db1-again")).code(2).stderr_has("already used");
    assert!(!base.join("db1-again/agent.pem").exists());

    // An expired token is refused, with the time it expired.
    let short = fleet.enroll("web1", &["--ttl", "1s"]);
    std::thread::sleep(Duration::from_millis(2100));
    fleet.join(&short, &base.join("web1")).code(2).stderr_has("expired at");
    // A damaged token is named as such.
    fleet.join("kura1.abc", &base.join("x")).code(2).stderr_has("enrolment token");

    // The coordinator's CA, as the agent stored it.
    let ca_pem = std::fs::read_to_string(base.join("db1/ca.pem")).unwrap();

    // A certificate from another CA fails the TLS handshake.
    let (other, _) = Ca::generate().unwrap();
    let (k, pk) = generate_client_key().unwrap();
    let foreign = other.client_cert("db1", kura::fleet::role::RoleKind::Agent, &pk).unwrap();
    let tls = kura::fleet::tls::client_config(&ca_pem, Some((&foreign, &k))).unwrap();
    let client = kura::agent::identity::client(tls).unwrap();
    let e =
        kura::agent::identity::post::<_, PollReply>(&client, &fleet.url(), "/v1/agent/poll", &poll_req(0)).unwrap_err();
    assert!(matches!(e, kura::agent::AgentError::Unreachable { .. }), "{e}");

    // No certificate at all: the CA and join only.
    let tls = kura::fleet::tls::client_config(&ca_pem, None).unwrap();
    let anon = kura::agent::identity::client(tls).unwrap();
    let e =
        kura::agent::identity::post::<_, PollReply>(&anon, &fleet.url(), "/v1/agent/poll", &poll_req(0)).unwrap_err();
    assert!(matches!(e, kura::agent::AgentError::Refused { status: 401, .. }), "{e}");

    // Another host's work: db1 never gets web1's task and may not report on it.
    let mut st = kura::state::State::open(fleet.state()).unwrap();
    let spec = TaskSpec::Hook {
        system: "web".into(),
        stage: kura::fleet::proto::HookStage::Pre,
        command: "true".into(),
        env: vec![],
        timeout_ms: 1000,
        run: None,
    };
    let task = st.fleet_insert_task("web1", &spec, chrono::Utc::now()).unwrap();
    let db1 = kura::agent::identity::Identity::load(&base.join("db1")).unwrap();
    let got: PollReply = db1.post("/v1/agent/poll", &poll_req(500)).unwrap().unwrap();
    assert!(got.tasks.is_empty(), "{:?}", got.tasks);
    let report = ReportRequest { version: PROTOCOL_VERSION, task, report: Report::Failed { error: "x".into() } };
    let e = db1.post::<_, serde_json::Value>("/v1/agent/report", &report).unwrap_err();
    assert!(matches!(&e, kura::agent::AgentError::Refused { status: 403, .. }), "{e}");
    assert_eq!(st.fleet_task(task).unwrap().unwrap().state, kura::state::fleet::TaskState::Queued);

    // Another protocol major version is refused, naming both.
    let old = PollRequest { version: kura::fleet::proto::Version { major: 9, minor: 0 }, held: None, wait_ms: 0 };
    let e = db1.post::<_, PollReply>("/v1/agent/poll", &old).unwrap_err();
    assert!(e.to_string().contains("9.0") && e.to_string().contains("1.1"), "{e}");

    // A viewer may not fetch work.
    let vt = fleet.enroll("alice", &["--role", "viewer"]);
    fleet.join(&vt, &base.join("alice")).ok().stdout_has("viewer");
    let alice = kura::agent::identity::Identity::load(&base.join("alice")).unwrap();
    let e = alice.post::<_, PollReply>("/v1/agent/poll", &poll_req(0)).unwrap_err();
    assert!(matches!(&e, kura::agent::AgentError::Refused { status: 403, .. }), "{e}");

    // Revocation takes effect at once: an open long poll ends, the next request is refused.
    let dir = base.join("db1");
    let waiter = std::thread::spawn(move || {
        let id = kura::agent::identity::Identity::load(&dir).unwrap();
        let t = Instant::now();
        (id.post::<_, PollReply>("/v1/agent/poll", &poll_req(20_000)).map(|_| ()), t.elapsed())
    });
    std::thread::sleep(Duration::from_millis(600));
    fleet.kura(&["agent", "revoke", "db1"]).ok();
    let (res, took) = waiter.join().unwrap();
    let e = res.unwrap_err();
    assert!(e.to_string().contains("revoked"), "{e}");
    assert!(took < Duration::from_secs(5), "the long poll took {took:?}");
    let list = fleet.kura(&["--json", "agent", "list"]).ok().json();
    let row = list.as_array().unwrap().iter().find(|r| r["name"] == "db1").unwrap().clone();
    assert!(!row["revoked_at"].is_null(), "{row}");
    // The token's secret is in no table of the database.
    let db = std::fs::read(fleet.state()).unwrap();
    let secret = hex::encode(kura::fleet::token::Token::parse(&token).unwrap().secret);
    assert!(!String::from_utf8_lossy(&db).contains(&secret));
}
