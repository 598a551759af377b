//! kura: deduplicated, encrypted backups and priority-ordered recovery.
//!
//! Where each concept lives:
//! * `chunk`, `crypto`, `compress`: pure, synchronous building blocks.
//! * `repo`: the on-disk format (packs, index, trees, snapshots, keys); docs/FORMAT.md.
//! * `backend`: where objects are stored (`Backend` trait; local directory, memory).
//! * `backup`, `restore`, `check`: the pipelines built on the repository.
//! * `cli`: argument parsing and all printing; the library itself stays quiet and
//!   reports through `progress::Progress` and `tracing`.

pub mod backend;
pub mod backup;
pub mod check;
pub mod chunk;
pub mod clock;
pub mod compress;
pub mod config;
pub mod crypto;
pub mod daemon;
pub mod error;
pub mod forget;
#[doc(hidden)]
pub mod fuzzing;
pub mod incident;
pub mod notify;
pub mod orchestrate;
pub mod pathmatch;
pub mod plan;
pub mod progress;
pub mod prune;
pub mod repair;
pub mod replicate;
pub mod repo;
pub mod report;
pub mod restore;
pub mod schedule;
pub mod state;
pub mod types;

pub use error::{Error, Result};

/// This machine's host name, recorded in snapshots and key files.
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates on success.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// The user running kura, recorded in snapshots and key files.
pub fn user_name() -> String {
    std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| {
        // SAFETY: getuid has no preconditions.
        format!("uid{}", unsafe { libc::getuid() })
    })
}
