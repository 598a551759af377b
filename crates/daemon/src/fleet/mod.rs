//! The coordinator's fleet listener (`[fleet]` in the config): HTTPS with mutual
//! TLS for agents and remote operators (docs/FLEET.md).
//!
//! * Bound by the caller ([`Listener::bind`]) like the `[http]` listener: the CA is
//!   made on first use in the state directory's `fleet/`, and a server certificate
//!   for `[fleet] name`, `advertise`, localhost and 127.0.0.1 is issued on each start.
//! * Our own accept loop (tokio-rustls + hyper) so that each request carries the
//!   peer certificate's fingerprint (`Peer`); the routes look it up in the registry
//!   on every request, so a revocation takes effect at once.
//! * Every state access goes through the daemon's state thread.

pub(crate) mod backup;
pub mod cli;
mod routes;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use kura_fleet::pki::{fingerprint, Ca};
use kura_recovery::fleet_dir::FleetDir;

use crate::daemon::Daemon;

/// Why the fleet listener could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("cannot listen on {addr} ([fleet] listen in {config}): {source}")]
    Bind { addr: SocketAddr, config: PathBuf, source: std::io::Error },
    #[error("fleet certificates in {dir}: {problem}")]
    Pki { dir: PathBuf, problem: String },
}

pub struct Listener {
    listener: tokio::net::TcpListener,
    tls: tokio_rustls::TlsAcceptor,
    ca: Arc<Ca>,
    fleet_dir: Arc<FleetDir>,
    cli: Option<cli::RemoteCli>,
}

impl Listener {
    /// Lets operators and viewers run coordinator-side command lines (`POST /v1/cli`).
    pub fn with_cli(mut self, cli: cli::RemoteCli) -> Listener {
        self.cli = Some(cli);
        self
    }

    /// Binds `[fleet] listen`; `state` is the state database's path (the CA lives beside it).
    pub async fn bind(cfg: &kura_recovery::config::Config, state: &Path) -> Result<Option<Listener>, FleetError> {
        let Some(fleet) = &cfg.fleet else { return Ok(None) };
        let dir = FleetDir::for_state(state);
        let pki = |problem: String| FleetError::Pki { dir: dir.root().to_path_buf(), problem };
        let ca = dir.ca().map_err(|e| pki(e.to_string()))?;
        let mut names = vec![fleet.name.clone(), "localhost".to_string(), "127.0.0.1".to_string()];
        names.extend(fleet.advertise.iter().cloned());
        names.dedup();
        let (cert, key) = ca.server_cert(&names).map_err(|e| pki(e.to_string()))?;
        let server = kura_fleet::tls::server_config(&ca.cert_pem, &cert, &key).map_err(|e| pki(e.to_string()))?;
        let listener = tokio::net::TcpListener::bind(fleet.listen).await.map_err(|source| FleetError::Bind {
            addr: fleet.listen,
            config: cfg.path.clone(),
            source,
        })?;
        Ok(Some(Listener {
            listener,
            tls: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
            ca: Arc::new(ca),
            fleet_dir: Arc::new(dir),
            cli: None,
        }))
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }
}

/// What `POST /v1/operator` carries: the control protocol's request (`api.rs`).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct OperatorRequest {
    pub version: kura_fleet::proto::Version,
    pub request: crate::api::Request,
}

/// The peer certificate's SHA-256 (hex), when the client sent one (verified by TLS).
#[derive(Clone, Debug)]
pub(crate) struct Peer(pub Option<String>);

/// Serves until the daemon stops.
pub(crate) async fn serve(l: Listener, daemon: Arc<Daemon>) {
    tracing::info!(listen = %l.local_addr().map(|a| a.to_string()).unwrap_or_default(), "fleet listener (mutual TLS)");
    let ctx = routes::Ctx {
        daemon: daemon.clone(),
        ca: l.ca.clone(),
        fleet_dir: l.fleet_dir.clone(),
        cli: l.cli.clone().map(Arc::new),
    };
    let app = routes::router(ctx);
    loop {
        let (tcp, addr) = tokio::select! {
            r = l.listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "fleet accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = daemon.stopping() => break,
        };
        let tls = l.tls.clone();
        let app = app.clone();
        let daemon = daemon.clone();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(std::time::Duration::from_secs(10), tls.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    // A certificate from another CA ends here.
                    tracing::info!(peer = %addr, error = %e, "fleet TLS handshake refused");
                    return;
                }
                Err(_) => return,
            };
            let peer =
                stream.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| hex::encode(fingerprint(c)));
            let svc = app.layer(axum::Extension(Peer(peer)));
            let svc = hyper_util::service::TowerToHyperService::new(svc);
            let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                r = conn => if let Err(e) = r { tracing::debug!(peer = %addr, error = %e, "fleet connection ended"); },
                _ = daemon.stopping() => {}
            }
        });
    }
}

/// Agent hosts of the config's systems not heard from for `[fleet] agent_lost_after`
/// (never connected: counted from the daemon's start), with their last contact.
pub(crate) async fn lost_agents(
    daemon: &Daemon,
    cfg: &kura_recovery::config::Config,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<(String, Option<chrono::DateTime<chrono::Utc>>)> {
    let Some(fleet) = &cfg.fleet else { return vec![] };
    let mut hosts: Vec<String> = cfg.systems.iter().filter_map(|s| cfg.agent_host(s)).map(str::to_string).collect();
    hosts.sort();
    hosts.dedup();
    let limit = chrono::Duration::from_std(fleet.agent_lost_after).unwrap_or_default();
    let started = daemon.started_at;
    let seen = daemon
        .db
        .call(move |st| hosts.into_iter().map(|h| (st.fleet_last_seen(&h).ok().flatten(), h)).collect::<Vec<_>>())
        .await
        .unwrap_or_default();
    seen.into_iter().filter(|(last, _)| now - last.unwrap_or(started) > limit).map(|(last, h)| (h, last)).collect()
}
