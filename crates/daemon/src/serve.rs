//! The entry point: [`serve`] runs the daemon on a listener the caller bound, until
//! the caller's shutdown future resolves or a client asks it to stop. The accept loop
//! and the protocol dispatch live here too.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::oneshot;

use crate::api::{Reply, Request, Response};
use crate::daemon::Daemon;
use crate::error::{DaemonError, Result};
use crate::jobs;
use crate::Options;
use kura_recovery::schedule::Trigger;
use kura_recovery::state::jobs::RunFilter;

/// Runs the daemon: the scheduler, the jobs and the control API on `listener`.
///
/// Returns once a stop was asked (`shutdown` resolved, or a `stop` request), the
/// socket file was removed (no new clients), and running jobs ended or, after
/// `options.shutdown_timeout`, were recorded as interrupted. Each message on
/// `options.reload` reloads the config file; a config with errors is logged and the
/// old one kept. Signals and binding are the caller's (`kura daemon`, or a test).
pub async fn serve(listener: UnixListener, mut options: Options, shutdown: impl Future<Output = ()>) -> Result<()> {
    let socket: PathBuf =
        listener.local_addr().ok().and_then(|a| a.as_pathname().map(|p| p.to_path_buf())).unwrap_or_default();
    let mut reloads = options.reload.take();
    let http = options.http.take();
    let fleet = options.fleet.take();
    let daemon = match Daemon::new(options, socket.clone()).await {
        Ok(d) => d,
        Err(e) => {
            drop(listener);
            let _ = std::fs::remove_file(&socket);
            return Err(e);
        }
    };
    tracing::info!(
        pid = std::process::id(),
        config = %daemon.config().path.display(),
        state = %daemon.state_path.display(),
        socket = %socket.display(),
        "kura daemon started"
    );
    let accept = tokio::spawn(accept_loop(listener, daemon.clone()));
    let scheduler = tokio::spawn(daemon.clone().run_scheduler());
    let outbox = tokio::spawn(daemon.clone().run_outbox());
    let offsite = tokio::spawn(daemon.clone().run_offsite());
    let http = http.map(|l| tokio::spawn(crate::http::serve(l, daemon.clone())));
    let fleet = fleet.map(|l| tokio::spawn(crate::fleet::serve(l, daemon.clone())));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => { daemon.request_stop(); break; }
            r = async { reloads.as_mut()?.recv().await }, if reloads.is_some() => match r {
                Some(()) => {
                    if let Err(p) = daemon.reload() {
                        tracing::error!("the new config has errors; keeping the old one:\n{p}");
                    }
                }
                None => reloads = None,
            },
            _ = daemon.stopping() => break,
        }
    }
    let _ = scheduler.await;
    let _ = accept.await;
    if let Some(h) = http {
        // Open dashboard connections get a moment to finish their request.
        if tokio::time::timeout(std::time::Duration::from_secs(5), h).await.is_err() {
            tracing::warn!("the http listener did not stop within 5 s");
        }
    }
    if let Some(f) = fleet {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), f).await;
    }
    let _ = std::fs::remove_file(&socket);
    daemon.drain(daemon.shutdown_timeout).await;
    // A delivery in progress ends (within its timeout) and is recorded; what is
    // still pending is sent by the next daemon.
    let _ = outbox.await;
    // The last version holds how the jobs ended.
    if let Ok(pusher) = offsite.await {
        daemon.push_step(pusher, &mut false).await;
    }
    Ok(())
}

/// Accepts connections until the daemon stops; the listener is dropped on return.
async fn accept_loop(listener: UnixListener, daemon: Arc<Daemon>) {
    loop {
        tokio::select! {
            _ = daemon.stopping() => break,
            acc = listener.accept() => match acc {
                Ok((stream, _)) => {
                    tokio::spawn(connection(stream, daemon.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "control socket accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// Answers the requests of one connection, in order, until the client hangs up.
async fn connection(stream: UnixStream, daemon: Arc<Daemon>) {
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.trim().is_empty() {
            continue;
        }
        let resp = match serde_json::from_str::<Request>(&line) {
            Ok(req) => Response::from(answer(&daemon, req).await),
            Err(e) => Response::refused(format!("bad request {line:?}: {e}")),
        };
        let mut out = serde_json::to_string(&resp).expect("responses serialize");
        out.push('\n');
        if w.write_all(out.as_bytes()).await.is_err() {
            break;
        }
    }
}

/// Answers one control request.
pub(crate) async fn answer(daemon: &Arc<Daemon>, req: Request) -> Result<Reply> {
    match req {
        Request::Status => Ok(Reply::Status(Box::new(daemon.status().await?))),
        Request::Jobs { system, job, limit } => {
            let f = RunFilter { system, job, limit: Some(limit.unwrap_or(50)) };
            let runs = daemon.db.query(move |st| st.list_runs(&f)).await?;
            Ok(Reply::Runs { runs })
        }
        Request::Run { target, wait } => {
            let spec = jobs::resolve(&daemon.config(), &target)?;
            let (stx, srx) = oneshot::channel();
            let job = spec.key.clone();
            let done = daemon.dispatch(spec, Trigger::Manual, None, serde_json::json!({}), Some(stx))?;
            if wait {
                let run = done.await.map_err(|_| DaemonError::RunLost)??;
                Ok(Reply::Ended { run })
            } else {
                let started = srx.await.map_err(|_| DaemonError::RunLost)??;
                Ok(Reply::Started { job, started })
            }
        }
        Request::Stop => {
            daemon.request_stop();
            Ok(Reply::Stopping { stopping: true, pid: std::process::id() })
        }
        Request::RecoveryStatus { incident, run } => {
            let recovery = daemon
                .db
                .query(move |st| {
                    use kura_recovery::state::recovery::RunKind;
                    let rec = match run {
                        Some(r) => Some(st.recovery_run(r)?),
                        None => st.recovery_runs(Some(RunKind::Recovery), incident)?.pop(),
                    };
                    let Some(rec) = rec else { return Ok(None) };
                    let systems = st.run_systems(rec.id)?;
                    Ok(Some(serde_json::json!({ "run": rec, "systems": systems })))
                })
                .await?;
            let recovery = recovery.ok_or_else(|| DaemonError::NoRecovery { incident })?;
            Ok(Reply::Recovery { recovery })
        }
    }
}
