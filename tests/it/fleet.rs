//! The fleet with real processes and real mutual TLS: a coordinator (`kura daemon`
//! with `[fleet]` on a loopback port) and agents (`kura agent run`), each agent with
//! its own directory and host name, enrolled with `kura agent enroll` + `join`.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use serde_json::Value;

use crate::daemon::{eventually, DaemonProc, Setup};
use crate::servers::free_port;
use crate::util::*;

pub struct Fleet {
    pub setup: Setup,
    pub port: u16,
}

/// A running `kura agent run`; killed on drop.
pub struct AgentProc {
    pub host: String,
    pub dir: PathBuf,
    child: Option<Child>,
    log: PathBuf,
}

impl AgentProc {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
    /// Starts the agent process again (same directory, same identity).
    pub fn restart(&mut self) {
        self.kill9();
        self.child = Some(spawn_agent(&self.dir, &self.log));
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn spawn_agent(dir: &Path, log: &Path) -> Child {
    let logf = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    bare_kura()
        .args(["agent", "run", "--dir", s(dir)])
        .env("KURA_LOG", "info")
        .stdout(Stdio::null())
        .stderr(logf)
        .spawn()
        .expect("start kura agent")
}

impl Fleet {
    /// A coordinator config: `[fleet]` on a free loopback port (heartbeat 2 s), then `systems`.
    pub fn new(systems: &str) -> Fleet {
        let setup = Setup::new();
        let port = free_port();
        let tables = format!(
            "[fleet]\nlisten = \"127.0.0.1:{port}\"\nname = \"coord\"\nheartbeat = \"2s\"\nagent_lost_after = \"20s\"\n\n{systems}"
        );
        setup.configure("", &tables);
        Fleet { setup, port }
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    pub fn state(&self) -> &Path {
        &self.setup.state
    }

    /// `kura --state S ARGS` (the coordinator's commands).
    pub fn kura(&self, args: &[&str]) -> Out {
        run(bare_kura().arg("--state").arg(self.state()).args(args))
    }

    pub fn daemon(&self) -> DaemonProc {
        let d = self.setup.daemon();
        // The fleet port listens once the daemon has bound it, before the socket.
        eventually(20, "the fleet listener", || std::net::TcpStream::connect(("127.0.0.1", self.port)).ok());
        d
    }

    pub fn enroll(&self, name: &str, extra: &[&str]) -> String {
        let url = self.url();
        let mut args = vec!["agent", "enroll", name, "--url", &url];
        args.extend_from_slice(extra);
        self.kura(&args).ok().stdout.trim().to_string()
    }

    pub fn agent_dir(&self, host: &str) -> PathBuf {
        self.setup.repo.base().join("agents").join(host)
    }

    /// `kura agent join URL --token T --dir D`.
    pub fn join(&self, token: &str, dir: &Path) -> Out {
        run(bare_kura().args(["agent", "join", &self.url(), "--token", token, "--dir", s(dir)]))
    }

    /// Enrols `host`, joins it, starts its agent.
    pub fn agent(&self, host: &str) -> AgentProc {
        let token = self.enroll(host, &[]);
        let dir = self.agent_dir(host);
        self.join(&token, &dir).ok();
        let log = self.setup.repo.base().join(format!("agent-{host}.log"));
        let child = spawn_agent(&dir, &log);
        let a = AgentProc { host: host.into(), dir, child: Some(child), log };
        eventually(30, &format!("agent {host} connected"), || {
            let list = self.kura(&["--json", "agent", "list"]).ok().json();
            list.as_array()?.iter().find(|r| r["name"] == host && !r["last_seen"].is_null()).map(|_| ())
        });
        a
    }

    /// A host's repository and its passphrase file (kept by the coordinator).
    pub fn host_repo(&self, host: &str) -> (PathBuf, PathBuf) {
        let key = self.state().parent().unwrap().join("fleet/keys").join(host);
        (self.setup.repo.path.join("hosts").join(host), key)
    }

    pub fn host_snapshots(&self, host: &str) -> Vec<Value> {
        let (repo, key) = self.host_repo(host);
        let o = run(bare_kura().args(["--json", "--repo", s(&repo), "--password-file", s(&key), "snapshots"]));
        match o.ok().json() {
            Value::Array(a) => a,
            v => panic!("not a list: {v}"),
        }
    }
}

/// A system on `host` backing up `path`.
pub fn system(name: &str, priority: u8, host: &str, path: &Path) -> String {
    format!("[[system]]\nname = \"{name}\"\npriority = {priority}\nhost = \"{host}\"\npaths = [\"{}\"]\n\n", s(path))
}

#[test]
fn manual_backups_on_three_agent_hosts_land_in_their_own_repositories() {
    let base = tempfile::tempdir().unwrap();
    let mut systems = String::new();
    let mut srcs = Vec::new();
    for (i, host) in ["h1", "h2", "h3"].iter().enumerate() {
        let src = base.path().join(host).join("data");
        std::fs::create_dir_all(&src).unwrap();
        write_random(&src.join("blob.bin"), 200_000 + i * 1000, i as u64);
        write(&src.join("sub/note.txt"), format!("host {host}\n"));
        systems += &system(&format!("sys{}", i + 1), 3 - i as u8, host, &src);
        srcs.push(src);
    }
    let fleet = Fleet::new(&systems);
    let _d = fleet.daemon();
    let agents: Vec<AgentProc> = ["h1", "h2", "h3"].iter().map(|h| fleet.agent(h)).collect();
    for (i, a) in agents.iter().enumerate() {
        let name = format!("sys{}", i + 1);
        fleet.setup.cli(&["run", &name]).ok();
        let snaps = fleet.host_snapshots(&a.host);
        assert_eq!(snaps.len(), 1, "{}", a.log());
        assert_eq!(snaps[0]["host"], a.host.as_str());
        assert!(snaps[0]["tags"].as_array().unwrap().iter().any(|t| t == &format!("system:{name}")), "{}", snaps[0]);
        // Byte-identical when restored from the host's repository.
        let (repo, key) = fleet.host_repo(&a.host);
        let target = base.path().join(format!("restored-{}", a.host));
        run(bare_kura().args(["--repo", s(&repo), "--password-file", s(&key), "restore", "latest", "--target", s(&target)]))
            .ok();
        assert_same_tree(&srcs[i], &restored(&target, &srcs[i]), Compare { times: true, root_meta: false });
    }
    // The main repository holds none of them; the job history names the snapshots.
    assert!(fleet.setup.repo.snapshots(&[]).is_empty());
    let jobs = fleet.setup.jobs(&[]);
    assert_eq!(jobs.iter().filter(|j| j["outcome"] == "ok").count(), 3, "{jobs:?}");
}
