//! `kura mount DIR`: the snapshots as a read-only FUSE file system, in the foreground
//! until unmounted or stopped by Ctrl-C / SIGTERM (then it unmounts itself).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use fuser::{Config, MountOption};

use super::mount_fs::MountFs;
use super::Ctx;

const DEV_FUSE: &str = "/dev/fuse";

#[derive(clap::Args)]
#[command(after_help = "Layout (docs/MOUNT.md):\n  \
    ids/<short id>/               each snapshot by id\n  \
    snapshots/<time>/, latest     every snapshot by time (2026-12-06T01:02:03Z)\n  \
    hosts/<host>/<time>/, latest  by host\n  \
    tags/<tag>/<time>/, latest    by tag\n\
    Snapshots of the same second are named <time>-<short id>.\n\
    Stop with Ctrl-C, SIGTERM or `umount DIR`.\n\n\
    Example:\n  mkdir /mnt/kura && kura mount /mnt/kura &\n  cp /mnt/kura/snapshots/latest/etc/hosts /tmp/")]
pub struct Args {
    /// Empty directory to mount the snapshots on
    #[arg(value_name = "DIR")]
    dir: PathBuf,
    /// Show only the snapshots that match these filters
    #[command(flatten)]
    filter: super::filter::FilterArgs,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<ExitCode> {
    check_mount_point(&a.dir)?;
    check_device(Path::new(DEV_FUSE))?;
    // Before any thread starts, so that every thread inherits the mask and the
    // signals wait for `sigwait` below.
    let signals = block_stop_signals()?;
    let repo = ctx.open()?;
    let _lock = kura::repo::lock::reader_lock(&repo, "mount");
    let snaps = a.filter.filter().select(repo.snapshots()?);
    let index = Arc::new(repo.load_index()?);
    let fs = MountFs::new(kura::mount::Source::new(repo.clone(), index), &snaps);
    let mut session = fuser::Session::new(fs, &a.dir, &config()).map_err(|e| mount_error(&a.dir, e))?;
    let unmounter = session.unmount_callable();
    let serving = std::thread::Builder::new().name("kura-fuse".into()).spawn(move || session.run())?;
    println!(
        "mounted {} snapshot(s) of {} at {} (read-only); stop with Ctrl-C, SIGTERM or `umount {}`",
        snaps.len(),
        repo.location(),
        a.dir.display(),
        a.dir.display()
    );
    std::io::stdout().flush()?;
    let dir = a.dir.clone();
    std::thread::Builder::new()
        .name("kura-signals".into())
        .spawn(move || unmount_on_signal(signals, unmounter, &dir))?;
    let res = serving.join().map_err(|_| anyhow::anyhow!("the FUSE session thread panicked"))?;
    res.with_context(|| format!("serving the mount at {}", a.dir.display()))?;
    println!("unmounted {}", a.dir.display());
    Ok(ExitCode::SUCCESS)
}

fn config() -> Config {
    let mut c = Config::default();
    c.mount_options = vec![MountOption::RO, MountOption::FSName("kura".into()), MountOption::NoAtime];
    c.n_threads = Some(2);
    c
}

/// DIR must be an existing, empty directory.
fn check_mount_point(dir: &Path) -> Result<()> {
    let meta = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("mount point {} does not exist: create an empty directory first", dir.display())
        }
        Err(e) => bail!("mount point {}: {e}", dir.display()),
    };
    if !meta.is_dir() {
        bail!("mount point {} is not a directory: give an empty directory", dir.display());
    }
    let mut entries = std::fs::read_dir(dir).with_context(|| format!("mount point {}", dir.display()))?;
    if entries.next().is_some() {
        bail!("mount point {} is not empty: give an empty directory (mounting would hide its content)", dir.display());
    }
    Ok(())
}

/// The FUSE device must exist (it does not in most containers by default).
fn check_device(dev: &Path) -> Result<()> {
    if !dev.exists() {
        bail!(
            "{} does not exist: this system offers no FUSE. Load the kernel module (`modprobe fuse`), \
             or in a container pass the device (`--device /dev/fuse --cap-add SYS_ADMIN`)",
            dev.display()
        );
    }
    Ok(())
}

fn mount_error(dir: &Path, e: std::io::Error) -> anyhow::Error {
    let d = dir.display();
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => anyhow::anyhow!(
            "mounting on {d} is not permitted ({e}): as root kura mounts through {DEV_FUSE} directly \
             (a container also needs CAP_SYS_ADMIN); other users need fusermount3 (Debian package fuse3)"
        ),
        std::io::ErrorKind::NotFound => anyhow::anyhow!(
            "mounting on {d} needs fusermount3 when not root, and it was not found ({e}): install the fuse3 package, \
             or run kura mount as root"
        ),
        _ => anyhow::anyhow!("mounting on {d} failed: {e}"),
    }
}

/// Blocks SIGINT and SIGTERM in this thread (and the threads it starts), returning
/// the set for `sigwait`.
fn block_stop_signals() -> Result<libc::sigset_t> {
    // SAFETY: the set is initialized by sigemptyset before use; the calls only read
    // and write it and this thread's signal mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            bail!("cannot block SIGINT and SIGTERM: {}", std::io::Error::from_raw_os_error(rc));
        }
        Ok(set)
    }
}

/// Waits for SIGINT or SIGTERM, then unmounts DIR; the session then ends and `run`
/// returns. A busy mount point (a shell inside it) is detached lazily instead.
fn unmount_on_signal(set: libc::sigset_t, mut unmounter: fuser::SessionUnmounter, dir: &Path) {
    let mut sig = 0;
    // SAFETY: set is a valid, initialized signal set; sig is a valid out pointer.
    if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
        return;
    }
    eprintln!("signal {sig}: unmounting {}", dir.display());
    if let Err(e) = unmounter.unmount() {
        eprintln!("unmounting {}: {e}; detaching it (it goes once no process uses it)", dir.display());
        detach(dir);
    }
}

fn detach(dir: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else { return };
    // SAFETY: c is a valid NUL-terminated path.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
        eprintln!("error: detaching {}: {}", dir.display(), std::io::Error::last_os_error());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_fuse_device_is_named_with_what_to_do() {
        let e = check_device(Path::new("/nonexistent/kura-test/fuse")).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/kura-test/fuse does not exist") && e.contains("modprobe fuse"), "{e}");
        assert!(e.contains("--device /dev/fuse"), "{e}");
        let e = mount_error(Path::new("/mnt/x"), std::io::Error::from(std::io::ErrorKind::PermissionDenied));
        assert!(e.to_string().contains("mounting on /mnt/x is not permitted"), "{e}");
    }
}
