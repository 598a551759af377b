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

/// A free loopback TCP port (bound, then released for the server to take), never
/// one handed out before in this process: tests start servers in parallel, and two
/// servers given the same port would have one of them answer for both.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
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

/// A loopback TCP proxy in front of a server that hangs up connections once more than
/// `limit` bytes went from the client to the server, while its budget of hang-ups
/// lasts (an S3 server or a middlebox going away in the middle of an upload).
pub struct HangupProxy {
    pub port: u16,
    budget: std::sync::Arc<std::sync::atomic::AtomicU64>,
    hangups: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl HangupProxy {
    pub fn start(upstream: u16, limit: usize, budget: u64) -> HangupProxy {
        use std::sync::atomic::{AtomicU64, Ordering};
        use std::sync::Arc;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let budget = Arc::new(AtomicU64::new(budget));
        let hangups = Arc::new(AtomicU64::new(0));
        let (b, h) = (budget.clone(), hangups.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else { continue };
                let (b, h) = (b.clone(), h.clone());
                // server -> client: a plain pump.
                let (mut from_server, mut to_client) = (server.try_clone().unwrap(), client.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from_server, &mut to_client);
                    let _ = to_client.shutdown(std::net::Shutdown::Both);
                });
                // client -> server: counts bytes, hangs up past the limit.
                std::thread::spawn(move || {
                    let (mut from_client, mut to_server) = (client, server);
                    let mut sent = 0usize;
                    let mut buf = vec![0u8; 16 << 10];
                    loop {
                        let n = match from_client.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if sent + n > limit
                            && b.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1)).is_ok()
                        {
                            let _ = to_server.write_all(&buf[..limit - sent]);
                            h.fetch_add(1, Ordering::SeqCst);
                            // A reset, as a dying server's kernel sends: linger 0, then
                            // the last descriptor closes when the other pump sees EOF.
                            reset_on_close(&from_client);
                            let _ = to_server.shutdown(std::net::Shutdown::Both);
                            return;
                        }
                        if to_server.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        sent += n;
                    }
                    let _ = to_server.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        HangupProxy { port, budget, hangups }
    }

    pub fn hangups(&self) -> u64 {
        self.hangups.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn set_budget(&self, n: u64) {
        self.budget.store(n, std::sync::atomic::Ordering::SeqCst)
    }
}

/// SO_LINGER 0: closing the socket sends a reset instead of a FIN.
fn reset_on_close(s: &TcpStream) {
    use std::os::fd::AsRawFd;
    let l = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: a valid socket descriptor and a correctly sized option value.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// A loopback HTTP proxy in front of an S3 server that is busy: it serves at most
/// `limit` requests at a time (each held `delay` longer, as a slow server would) and
/// answers any request beyond that with 503 Slow Down, as S3 does. It forwards each
/// request on a connection of its own, so that the count is of requests, not of the
/// client's pooled connections.
pub struct BusyProxy {
    pub port: u16,
    stats: std::sync::Arc<BusyStats>,
}

#[derive(Default)]
struct BusyStats {
    in_flight: std::sync::atomic::AtomicUsize,
    served: std::sync::atomic::AtomicU64,
    refused: std::sync::atomic::AtomicU64,
}

impl BusyProxy {
    pub fn start(upstream: u16, limit: usize, delay: Duration) -> BusyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stats = std::sync::Arc::new(BusyStats::default());
        let st = stats.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let st = st.clone();
                std::thread::spawn(move || while busy_one_request(&client, upstream, limit, delay, &st).is_some() {});
            }
        });
        BusyProxy { port, stats }
    }

    /// (requests served, requests refused with 503).
    pub fn counts(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::SeqCst;
        (self.stats.served.load(SeqCst), self.stats.refused.load(SeqCst))
    }
}

/// Reads an HTTP head (up to the blank line) byte by byte; None at EOF.
fn read_head(r: &mut impl Read) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if r.read(&mut b).ok()? == 0 {
            return None;
        }
        head.push(b[0]);
    }
    Some(head)
}

fn content_length(head: &[u8]) -> Option<usize> {
    String::from_utf8_lossy(head).lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case("content-length").then(|| v.trim().parse().ok())?
    })
}

/// Serves one request of a client connection; None when the client is gone.
fn busy_one_request(
    mut client: &TcpStream,
    upstream: u16,
    limit: usize,
    delay: Duration,
    st: &BusyStats,
) -> Option<()> {
    use std::sync::atomic::Ordering::SeqCst;
    let head = read_head(&mut client)?;
    let mut body = vec![0u8; content_length(&head).unwrap_or(0)];
    client.read_exact(&mut body).ok()?;
    if st.in_flight.fetch_add(1, SeqCst) >= limit {
        st.in_flight.fetch_sub(1, SeqCst);
        st.refused.fetch_add(1, SeqCst);
        let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code>\
                   <Message>Please reduce your request rate.</Message></Error>";
        let reply = format!(
            "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\r\n{xml}",
            xml.len()
        );
        return client.write_all(reply.as_bytes()).ok();
    }
    let reply = (|| {
        std::thread::sleep(delay);
        let mut server = TcpStream::connect(("127.0.0.1", upstream)).ok()?;
        // One request per upstream connection: it closes after the reply.
        let end_of_request_line = head.windows(2).position(|w| w == b"\r\n")? + 2;
        server.write_all(&head[..end_of_request_line]).ok()?;
        server.write_all(b"Connection: close\r\n").ok()?;
        server.write_all(&head[end_of_request_line..]).ok()?;
        server.write_all(&body).ok()?;
        let mut reply = Vec::new();
        server.read_to_end(&mut reply).ok()?;
        Some(reply)
    })();
    st.in_flight.fetch_sub(1, SeqCst);
    let reply = reply?;
    st.served.fetch_add(1, SeqCst);
    // Keep the client's connection open: drop the server's "Connection: close".
    let split = reply.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head: String = String::from_utf8_lossy(&reply[..split])
        .split_inclusive("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .collect();
    let framed = content_length(head.as_bytes()).is_some() || head.to_ascii_lowercase().contains("chunked");
    let head = if framed {
        head
    } else {
        head.replacen("\r\n\r\n", &format!("\r\nContent-Length: {}\r\n\r\n", reply.len() - split), 1)
    };
    client.write_all(head.as_bytes()).ok()?;
    client.write_all(&reply[split..]).ok()
}
