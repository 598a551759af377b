//! The optional HTTP listener (`[http]` in the config): OpenMetrics text at
//! `/metrics` (`metrics.rs`) and a read-only live dashboard at `/` with its JSON at
//! `/api/dashboard` (`dashboard.rs`, assets built in from `assets/`).
//!
//! * Bound by the caller ([`Listener::bind`]) before the daemon starts, served on
//!   the daemon's runtime until it stops. Every read of the state database goes
//!   through the daemon's state thread (`db.rs`): nothing blocks the runtime.
//! * Authentication: a bearer token kept in a file (`token.rs`), accepted as
//!   `Authorization: Bearer TOKEN`, as the `kura_token` cookie, or as `?token=` on
//!   the page's URL (which then sets that cookie, HttpOnly, SameSite=Strict).
//!   `/metrics` needs no token when the listener is on a loopback address, and
//!   the token otherwise. Anything else without a valid token gets 401.

mod auth;
mod dashboard;
pub(crate) mod metrics;
mod token;
pub(crate) mod view;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::routing::get;
use axum::Router;

use crate::daemon::Daemon;
pub use token::token_path;

/// Why the listener could not be set up; each names the address or the file.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot listen on {addr} ([http] listen in {config}): {source}")]
    Bind { addr: SocketAddr, config: PathBuf, source: std::io::Error },
    #[error("token file {path}: {problem}")]
    Token { path: PathBuf, problem: String },
}

/// A bound listener and the token its requests must carry.
pub struct Listener {
    listener: tokio::net::TcpListener,
    token: String,
    token_file: PathBuf,
}

impl Listener {
    /// Binds `[http] listen` and reads the token file (creating it, 0600 with a
    /// random token, when absent). `state` is the state database's path: the
    /// default token file lives beside it.
    pub async fn bind(cfg: &kura_recovery::config::Config, state: &Path) -> Result<Option<Listener>, HttpError> {
        let Some(http) = &cfg.http else { return Ok(None) };
        let token_file = token_path(http, state);
        let token = token::load_or_create(&token_file)?;
        let listener = tokio::net::TcpListener::bind(http.listen).await.map_err(|source| HttpError::Bind {
            addr: http.listen,
            config: cfg.path.clone(),
            source,
        })?;
        Ok(Some(Listener { listener, token, token_file }))
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }
}

/// What every handler gets.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub daemon: Arc<Daemon>,
    pub token: Arc<str>,
    /// `/metrics` without a token (the listener is on a loopback address).
    pub open_metrics: bool,
}

/// `?token=`, accepted on the page (and on `/metrics`).
#[derive(serde::Deserialize)]
pub(crate) struct TokenQuery {
    pub token: Option<String>,
}

/// Serves until the daemon stops.
pub(crate) async fn serve(l: Listener, daemon: Arc<Daemon>) {
    let addr = l.local_addr();
    let open_metrics = addr.is_some_and(|a| a.ip().is_loopback());
    tracing::info!(
        listen = %addr.map(|a| a.to_string()).unwrap_or_default(),
        token_file = %l.token_file.display(),
        "http listener: /metrics and the dashboard"
    );
    let ctx = Ctx { daemon: daemon.clone(), token: Arc::from(l.token.as_str()), open_metrics };
    let app = router(ctx);
    let stop = async move { daemon.stopping().await };
    if let Err(e) = axum::serve(l.listener, app).with_graceful_shutdown(stop).await {
        tracing::warn!(error = %e, "the http listener stopped");
    }
}

fn router(ctx: Ctx) -> Router {
    Router::new()
        .route("/metrics", get(metrics::handler))
        .route("/", get(dashboard::page))
        .route("/app.js", get(dashboard::script))
        .route("/style.css", get(dashboard::style))
        .route("/api/dashboard", get(dashboard::data))
        .route("/reports/incident/{id}", get(dashboard::incident_report))
        .with_state(ctx)
}
