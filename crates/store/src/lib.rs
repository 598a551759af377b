//! kura's repository: the on-disk format, where objects are stored, and every
//! operation on a repository. It knows nothing of plans, incidents or SQLite; the
//! recovery crate builds on it, never the reverse.
//!
//! Where each concept lives:
//! * `chunk`, `crypto`, `compress`: pure, synchronous building blocks.
//! * `backend`: where objects are stored (`Backend` trait; local directory, memory, S3).
//! * `repo`: the format (packs, index, trees, snapshots, keys, locks); docs/FORMAT.md.
//! * `backup`, `restore`, `check`, `forget`, `prune`, `repair`, `replicate`: the
//!   operations, each built on `repo`.
//! * `progress`, `clock`: how the quiet library reports progress and asks the time.

pub mod backend;
pub mod backup;
pub mod check;
pub mod chunk;
pub mod clock;
pub mod compress;
pub mod crypto;
pub mod diff;
pub mod dump;
pub mod error;
pub mod find;
pub mod forget;
pub mod mount;
pub mod parallel;
pub mod pathmatch;
pub mod private_file;
pub mod progress;
pub mod prune;
pub mod repair;
pub mod replicate;
pub mod repo;
pub mod restore;
pub mod retain;
pub mod signals;
pub mod sync;
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
