//! Real S3 servers on loopback for the tests: Garage (the main one) and moto (object
//! lock). Each is started on free ports with a temp data dir and stopped on drop.
//! A server that cannot start fails the test loudly: these tests are never skipped.
//!
//! Binaries: `KURA_GARAGE` or `garage` on PATH or `~/.cargo/bin/garage`
//! (scripts/deps/garage.sh installs it); `KURA_MOTO` or
//! `~/.cache/kura-moto/bin/moto_server` (scripts/deps/moto.sh).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::RngCore;

/// A free loopback TCP port (bound, then released for the server to take).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn home() -> PathBuf {
    PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
}

fn find_binary(env: &str, name: &str, fallback: PathBuf, install: &str) -> PathBuf {
    if let Ok(p) = std::env::var(env) {
        return PathBuf::from(p);
    }
    if let Ok(path) = std::env::var("PATH") {
        for d in std::env::split_paths(&path) {
            if d.join(name).is_file() {
                return d.join(name);
            }
        }
    }
    if fallback.is_file() {
        return fallback;
    }
    panic!("{name} is not installed (looked at ${env}, PATH and {}): run {install}", fallback.display());
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// Polls until `port` answers an HTTP request, or panics with the server's log.
fn wait_http(port: u16, child: &mut Child, log: &Path, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("{what} exited ({status}) while starting:\n{}", std::fs::read_to_string(log).unwrap_or_default());
        }
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = s.write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
            let mut buf = [0u8; 12];
            if s.read(&mut buf).is_ok_and(|n| n >= 12 && buf.starts_with(b"HTTP/")) {
                return;
            }
        }
        if Instant::now() > deadline {
            panic!(
                "{what} did not answer on port {port} within 30 s:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub struct Garage {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub key_id: String,
    secret: String,
    pub creds_file: PathBuf,
}

impl Garage {
    /// A single-node Garage with a default key that may create buckets.
    pub fn start() -> Garage {
        let dir = tempfile::Builder::new().prefix("kura-garage-").tempdir().unwrap();
        let (rpc, port, admin) = (free_port(), free_port(), free_port());
        let d = dir.path().display();
        let config = format!(
            "metadata_dir = \"{d}/meta\"\ndata_dir = \"{d}/data\"\ndb_engine = \"sqlite\"\nreplication_factor = 1\n\
             rpc_bind_addr = \"127.0.0.1:{rpc}\"\nrpc_public_addr = \"127.0.0.1:{rpc}\"\nrpc_secret = \"{}\"\n\
             [s3_api]\ns3_region = \"garage\"\napi_bind_addr = \"127.0.0.1:{port}\"\nroot_domain = \".s3.garage.localhost\"\n\
             [admin]\napi_bind_addr = \"127.0.0.1:{admin}\"\n",
            random_hex(32)
        );
        std::fs::write(dir.path().join("garage.toml"), config).unwrap();
        let key_id = format!("GK{}", random_hex(12));
        let secret = random_hex(32);
        let creds_file = dir.path().join("credentials");
        std::fs::write(
            &creds_file,
            format!("[default]\naws_access_key_id = {key_id}\naws_secret_access_key = {secret}\n"),
        )
        .unwrap();
        let mut g = Garage { child: None, dir, port, key_id, secret, creds_file };
        g.spawn();
        g
    }

    fn spawn(&mut self) {
        let bin = find_binary("KURA_GARAGE", "garage", home().join(".cargo/bin/garage"), "scripts/deps/garage.sh");
        let log = self.dir.path().join("garage.log");
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
        let mut child = Command::new(&bin)
            .arg("-c")
            .arg(self.dir.path().join("garage.toml"))
            .args(["server", "--single-node", "--default-access-key"])
            .env("GARAGE_DEFAULT_ACCESS_KEY", &self.key_id)
            .env("GARAGE_DEFAULT_SECRET_KEY", &self.secret)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        wait_http(self.port, &mut child, &log, "garage");
        self.child = Some(child);
    }

    /// SIGKILL, as a crash or a power cut would stop it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same data and ports.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// `s3:http://127.0.0.1:PORT/BUCKET/PREFIX?region=garage&credentials_file=...` plus `extra`.
    pub fn location(&self, bucket_and_prefix: &str, extra: &str) -> String {
        format!(
            "s3:http://127.0.0.1:{}/{bucket_and_prefix}?region=garage&credentials_file={}{extra}",
            self.port,
            self.creds_file.display()
        )
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        self.kill();
    }
}

pub struct Moto {
    child: Child,
    _dir: tempfile::TempDir,
    pub port: u16,
    pub creds_file: PathBuf,
}

impl Moto {
    pub fn start() -> Moto {
        let bin = find_binary(
            "KURA_MOTO",
            "kura-moto-unused",
            home().join(".cache/kura-moto/bin/moto_server"),
            "scripts/deps/moto.sh",
        );
        let dir = tempfile::Builder::new().prefix("kura-moto-").tempdir().unwrap();
        let port = free_port();
        let log = dir.path().join("moto.log");
        let out = std::fs::File::create(&log).unwrap();
        let mut child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        wait_http(port, &mut child, &log, "moto");
        let creds_file = dir.path().join("credentials");
        std::fs::write(&creds_file, "aws_access_key_id = testing\naws_secret_access_key = testing\n").unwrap();
        Moto { child, _dir: dir, port, creds_file }
    }

    pub fn location(&self, bucket_and_prefix: &str, extra: &str) -> String {
        format!(
            "s3:http://127.0.0.1:{}/{bucket_and_prefix}?region=us-east-1&credentials_file={}{extra}",
            self.port,
            self.creds_file.display()
        )
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
