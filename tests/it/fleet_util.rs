//! The fleet's test helpers (tests/it/fleet.rs, fleet_shared.rs): a coordinator
//! (`kura daemon` with `[fleet]` on a loopback port) and agents (`kura agent run`),
//! each agent with its own directory and host name, enrolled with `kura agent
//! enroll` + `join`.

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
        // Hooks run in the agent's working directory: their relative files land there.
        .current_dir(dir)
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
        setup.configure("", &Fleet::tables(port, "", systems));
        Fleet { setup, port }
    }

    /// A coordinator whose repository is `location` (a path or `s3:` location), with
    /// `fleet_extra` (lines) added to `[fleet]`.
    pub fn at(location: &str, fleet_extra: &str, systems: &str) -> Fleet {
        let setup = Setup::new();
        let port = free_port();
        setup.configure_at(location, "", &Fleet::tables(port, fleet_extra, systems));
        Fleet { setup, port }
    }

    fn tables(port: u16, fleet_extra: &str, systems: &str) -> String {
        format!(
            "[deadlines]\np3 = \"1h\"\np2 = \"1h\"\np1 = \"1h\"\n\n[fleet]\nlisten = \"127.0.0.1:{port}\"\nname = \"coord\"\nheartbeat = \"2s\"\nagent_lost_after = \"20s\"\n{fleet_extra}\n{systems}"
        )
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
