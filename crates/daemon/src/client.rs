//! The client side of the control protocol, used by the CLI (`kura status`, `jobs`,
//! `run`, `daemon stop`) and by the tests that drive a daemon in-process. Blocking:
//! the CLI has no runtime.
//!
//! Before it talks, it checks that the socket file and the process answering on it
//! (`SO_PEERCRED`) belong to this user or to root, so that another local user
//! cannot impersonate the daemon.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use crate::api::{self, Reply, Request, Response};
use crate::status::Status;
use kura_recovery::schedule::JobKind;
use kura_recovery::state::jobs::JobRun;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "no kura daemon is listening on {} ({source}): start it with `kura daemon --config PATH`, or give its socket with --socket",
        socket.display()
    )]
    NotListening { socket: PathBuf, source: std::io::Error },
    #[error(transparent)]
    UnsafeSocket(#[from] kura_recovery::error::Error),
    #[error(
        "the process listening on {} runs as uid {uid}, neither this user (uid {me}) nor root: it is not \
         a kura daemon of yours, so kura will not talk to it",
        socket.display()
    )]
    ForeignPeer { socket: PathBuf, uid: u32, me: u32 },
    #[error("talking to the daemon on {}", socket.display())]
    Io { socket: PathBuf, source: std::io::Error },
    #[error("the daemon on {} closed the connection without answering", socket.display())]
    Closed { socket: PathBuf },
    #[error("bad answer from the daemon: {answer:?}")]
    BadAnswer { answer: String, source: serde_json::Error },
    /// The daemon could not carry the request out; its reason.
    #[error("{0}")]
    Refused(String),
    #[error("the daemon answered a {asked} request with something else")]
    Unexpected { asked: &'static str },
}

/// How `run` answered: the ended run (with `wait`) or the started one.
#[derive(Clone, Debug)]
pub enum RunAnswer {
    Ended(JobRun),
    Started { job: String, run: i64 },
}

/// One connection to the daemon; requests may follow each other on it.
pub struct Client {
    stream: BufReader<UnixStream>,
    socket: PathBuf,
}

impl Client {
    pub fn connect(socket: &Path) -> Result<Client, ClientError> {
        api::check_socket_owner(socket)?;
        let stream = UnixStream::connect(socket)
            .map_err(|source| ClientError::NotListening { socket: socket.to_path_buf(), source })?;
        // The file could have been swapped after the check: the process that answers
        // must run as this user or root too.
        if let Some(uid) = peer_uid(&stream) {
            // SAFETY: geteuid has no preconditions.
            let me = unsafe { libc::geteuid() };
            if uid != me && uid != 0 {
                return Err(ClientError::ForeignPeer { socket: socket.to_path_buf(), uid, me });
            }
        }
        Ok(Client { stream: BufReader::new(stream), socket: socket.to_path_buf() })
    }

    /// Sends one request and reads its answer; a refusal is an error.
    pub fn request(&mut self, req: &Request) -> Result<Reply, ClientError> {
        let io = |source| ClientError::Io { socket: self.socket.clone(), source };
        let mut line = serde_json::to_string(req).expect("requests serialize");
        line.push('\n');
        self.stream.get_mut().write_all(line.as_bytes()).map_err(io)?;
        let mut answer = String::new();
        self.stream.read_line(&mut answer).map_err(io)?;
        if answer.is_empty() {
            return Err(ClientError::Closed { socket: self.socket.clone() });
        }
        let r: Response = match serde_json::from_str(&answer) {
            Ok(r) => r,
            Err(source) => return Err(ClientError::BadAnswer { answer, source }),
        };
        match (r.ok, r.data) {
            (true, Some(data)) => Ok(data),
            _ => Err(ClientError::Refused(r.error.unwrap_or_else(|| "the daemon refused the request".into()))),
        }
    }

    pub fn status(&mut self) -> Result<Status, ClientError> {
        match self.request(&Request::Status)? {
            Reply::Status(s) => Ok(*s),
            _ => Err(ClientError::Unexpected { asked: "status" }),
        }
    }

    pub fn jobs(
        &mut self,
        system: Option<String>,
        job: Option<JobKind>,
        limit: Option<usize>,
    ) -> Result<Vec<JobRun>, ClientError> {
        match self.request(&Request::Jobs { system, job, limit })? {
            Reply::Runs { runs } => Ok(runs),
            _ => Err(ClientError::Unexpected { asked: "jobs" }),
        }
    }

    pub fn run(&mut self, target: &str, wait: bool) -> Result<RunAnswer, ClientError> {
        match self.request(&Request::Run { target: target.to_string(), wait })? {
            Reply::Ended { run } => Ok(RunAnswer::Ended(run)),
            Reply::Started { job, started } => Ok(RunAnswer::Started { job, run: started }),
            _ => Err(ClientError::Unexpected { asked: "run" }),
        }
    }

    /// Asks the daemon to stop; returns its pid.
    pub fn stop(&mut self) -> Result<u32, ClientError> {
        match self.request(&Request::Stop)? {
            Reply::Stopping { pid, .. } => Ok(pid),
            _ => Err(ClientError::Unexpected { asked: "stop" }),
        }
    }

    /// Blocks until the daemon closes the connection. After `stop`, a daemon keeps
    /// it open until its process exits, so this waits for the exit.
    pub fn wait_closed(mut self) {
        let mut rest = Vec::new();
        let _ = self.stream.read_to_end(&mut rest);
    }
}

/// The uid of the process at the other end of a unix socket (SO_PEERCRED).
fn peer_uid(stream: &UnixStream) -> Option<u32> {
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`, which is that large.
    let rc = unsafe {
        libc::getsockopt(
            std::os::fd::AsRawFd::as_raw_fd(stream),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(cred.uid)
}
