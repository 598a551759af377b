//! The fleet routes: the CA, join, the agents' poll and report. Each request is
//! identified by its certificate's fingerprint, looked up in the registry every
//! time, and checked with `kura_fleet::role::allowed`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use kura_fleet::pki::{fingerprint, pem_to_der, Ca};
use kura_fleet::proto::{
    check_version, CliReply, CliRequest, ErrorReply, JoinReply, JoinRequest, PollReply, PollRequest, ReportRequest,
    Task, TaskSpec, Version,
};
use kura_fleet::role::{allowed, Action, Role};
use kura_recovery::fleet_dir::FleetDir;
use kura_recovery::state::fleet::{AgentRecord, TaskState};

use super::{OperatorRequest, Peer};
use crate::api::{Request, Response as ApiResponse};
use crate::daemon::Daemon;

#[derive(Clone)]
pub(crate) struct Ctx {
    pub daemon: Arc<Daemon>,
    pub ca: Arc<Ca>,
    pub fleet_dir: Arc<FleetDir>,
    pub cli: Option<Arc<super::cli::RemoteCli>>,
}

pub(crate) fn router(ctx: Ctx) -> Router {
    Router::new()
        .route("/v1/ca", get(ca))
        .route("/v1/join", post(join))
        .route("/v1/agent/poll", post(poll))
        .route("/v1/agent/report", post(report))
        .route("/v1/operator", post(operator))
        .route("/v1/cli", post(cli))
        .with_state(ctx)
}

/// A refusal: a status and a sentence.
pub(crate) struct Refused(StatusCode, String);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        (self.0, Json(ErrorReply { error: self.1 })).into_response()
    }
}

fn internal(e: impl std::fmt::Display) -> Refused {
    Refused(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

fn version(v: Version) -> Result<(), Refused> {
    check_version(v).map_err(|e| Refused(StatusCode::BAD_REQUEST, e.to_string()))
}

async fn ca(State(ctx): State<Ctx>) -> String {
    ctx.ca.cert_pem.clone()
}

async fn join(State(ctx): State<Ctx>, Json(req): Json<JoinRequest>) -> Result<Json<JoinReply>, Refused> {
    version(req.version)?;
    let pk =
        hex::decode(&req.public_key).map_err(|_| Refused(StatusCode::BAD_REQUEST, "public_key is not hex".into()))?;
    let hash = kura_fleet::token::hash_secret(&req.secret);
    let now = ctx.daemon.clock.now();
    let ca = ctx.ca.clone();
    let (res, cert) = ctx
        .daemon
        .db
        .call(move |st| {
            let mut cert = None;
            let r = st.fleet_redeem_token(&hash, now, |name, role| {
                let pem = ca
                    .client_cert(name, role, &pk)
                    .map_err(|e| kura_recovery::error::Error::invalid("public key", e.to_string()))?;
                let fp = hex::encode(fingerprint(&pem_to_der(&pem).unwrap_or_default()));
                cert = Some(pem);
                Ok(fp)
            });
            (r, cert)
        })
        .await
        .map_err(internal)?;
    let (name, role) = match res {
        Ok(Ok(nr)) => nr,
        Ok(Err(refused)) => return Err(Refused(StatusCode::FORBIDDEN, refused.to_string())),
        Err(e) => return Err(Refused(StatusCode::BAD_REQUEST, e.to_string())),
    };
    tracing::info!(name = %name, role = %role, "enrolled");
    Ok(Json(JoinReply { name, role, certificate_pem: cert.unwrap_or_default(), ca_pem: ctx.ca.cert_pem.clone() }))
}

/// The registered, unrevoked certificate of this request, and its role.
async fn identify(ctx: &Ctx, peer: &Peer) -> Result<(AgentRecord, Role), Refused> {
    let Some(fp) = peer.0.clone() else {
        return Err(Refused(
            StatusCode::UNAUTHORIZED,
            "this route needs a client certificate: join first (`kura agent join URL --token T`)".into(),
        ));
    };
    let rec = ctx.daemon.db.query(move |st| st.fleet_agent(&fp)).await.map_err(internal)?;
    let rec = rec.ok_or_else(|| {
        Refused(StatusCode::FORBIDDEN, "this certificate is not registered with the coordinator".into())
    })?;
    if let Some(at) = rec.revoked_at {
        return Err(Refused(
            StatusCode::FORBIDDEN,
            format!("the certificate of {} was revoked at {}", rec.name, at.format("%Y-%m-%d %H:%M:%S UTC")),
        ));
    }
    let role = rec.role();
    Ok((rec, role))
}

fn forbid(role: &Role, action: Action) -> Result<(), Refused> {
    if allowed(role, &action) {
        Ok(())
    } else {
        Err(Refused(StatusCode::FORBIDDEN, format!("a {} certificate may not do this ({action:?})", role.kind())))
    }
}

/// How often a held poll looks at the task table (and the registry).
const POLL_ROUND: Duration = Duration::from_millis(400);

/// Long poll: the caller's host's open tasks, as soon as there are any, or an
/// empty list after the wait. Each round re-reads the registry, so a revoked
/// certificate's poll ends within a round.
async fn poll(
    State(ctx): State<Ctx>,
    Extension(peer): Extension<Peer>,
    Json(req): Json<PollRequest>,
) -> Result<Json<PollReply>, Refused> {
    version(req.version)?;
    let heartbeat = ctx.daemon.config().fleet.as_ref().map_or(Duration::from_secs(25), |f| f.heartbeat);
    let deadline = tokio::time::Instant::now() + Duration::from_millis(req.wait_ms).min(heartbeat);
    let mut first = true;
    loop {
        let (rec, role) = identify(&ctx, &peer).await?;
        let host = rec.name.clone();
        forbid(&role, Action::PollWork { host: &host })?;
        let now = ctx.daemon.clock.now();
        let fp = rec.fingerprint.clone();
        let h = host.clone();
        let open = ctx
            .daemon
            .db
            .query(move |st| {
                // The heartbeat is written once per poll; the rounds after it only read.
                if first {
                    st.fleet_seen(&fp, now)?;
                }
                st.fleet_open_tasks(&h)
            })
            .await
            .map_err(internal)?;
        first = false;
        if !open.is_empty() {
            return Ok(Json(PollReply { tasks: hand_out(&ctx, open).await? }));
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(Json(PollReply { tasks: vec![] }));
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL_ROUND) => {}
            _ = ctx.daemon.stopping() => return Ok(Json(PollReply { tasks: vec![] })),
        }
    }
}

/// Marks queued tasks running and attaches the passphrase each one needs. Both on
/// the state thread: not on the blocking pool, which a fleet's backup jobs can fill
/// while they wait for exactly these tasks (reading a key file is a small read).
async fn hand_out(ctx: &Ctx, open: Vec<kura_recovery::state::fleet::TaskRecord>) -> Result<Vec<Task>, Refused> {
    let cfg = ctx.daemon.config();
    let dir = ctx.fleet_dir.clone();
    let now = ctx.daemon.clock.now();
    let queued: Vec<i64> = open.iter().filter(|t| t.state == TaskState::Queued).map(|t| t.id).collect();
    ctx.daemon
        .db
        .query(move |st| {
            if !queued.is_empty() {
                st.fleet_tasks_started(&queued, now)?;
            }
            open.into_iter()
                .map(|t| {
                    let passphrase = match &t.spec {
                        TaskSpec::Hook { .. } => None,
                        spec => Some(dir.passphrase_for(&cfg, spec.repository().unwrap_or_default())?),
                    };
                    Ok(Task { id: t.id, spec: t.spec, passphrase })
                })
                .collect()
        })
        .await
        .map_err(internal)
}

async fn report(
    State(ctx): State<Ctx>,
    Extension(peer): Extension<Peer>,
    Json(req): Json<ReportRequest>,
) -> Result<StatusCode, Refused> {
    version(req.version)?;
    let (rec, role) = identify(&ctx, &peer).await?;
    let id = req.task;
    let task = ctx.daemon.db.query(move |st| st.fleet_task(id)).await.map_err(internal)?;
    let task = task.ok_or_else(|| Refused(StatusCode::NOT_FOUND, format!("no task {id}")))?;
    forbid(&role, Action::ReportWork { host: &task.host })?;
    let now = ctx.daemon.clock.now();
    let fp = rec.fingerprint.clone();
    ctx.daemon
        .db
        .query(move |st| {
            st.fleet_seen(&fp, now)?;
            st.fleet_report(id, &req.report, now)
        })
        .await
        .map_err(internal)?;
    Ok(StatusCode::NO_CONTENT)
}

/// An operator's or viewer's request: the daemon's own control protocol, allowed
/// by role (status and jobs read; run and stop change).
async fn operator(
    State(ctx): State<Ctx>,
    Extension(peer): Extension<Peer>,
    Json(req): Json<OperatorRequest>,
) -> Result<Json<ApiResponse>, Refused> {
    version(req.version)?;
    let (rec, role) = identify(&ctx, &peer).await?;
    let action = match &req.request {
        Request::Status | Request::Jobs { .. } | Request::RecoveryStatus { .. } => Action::Read,
        Request::Run { .. } | Request::Stop => Action::Change,
    };
    forbid(&role, action)?;
    tracing::info!(name = %rec.name, role = %role.kind(), request = ?req.request, "remote request");
    Ok(Json(ApiResponse::from(crate::serve::answer(&ctx.daemon, req.request).await)))
}

/// An operator's or viewer's command line: parsed and classified with the CLI's own
/// definitions, allowed by role, run by the coordinator (`cli.rs`). Only the
/// command's name is logged, never its arguments.
async fn cli(
    State(ctx): State<Ctx>,
    Extension(peer): Extension<Peer>,
    Json(req): Json<CliRequest>,
) -> Result<Json<CliReply>, Refused> {
    version(req.version)?;
    let (rec, role) = identify(&ctx, &peer).await?;
    // An agent's certificate learns nothing, not even whether its command parses.
    forbid(&role, Action::Read)?;
    let Some(cli) = ctx.cli.clone() else {
        return Err(Refused(StatusCode::NOT_IMPLEMENTED, "this coordinator runs no remote commands".into()));
    };
    let c = (cli.classify)(&req.args).map_err(|e| Refused(StatusCode::BAD_REQUEST, e))?;
    if !allowed(&role, &c.action) {
        return Err(Refused(
            StatusCode::FORBIDDEN,
            format!(
                "a {} certificate may not run `kura {}`: it changes the coordinator's state; ask an operator",
                role.kind(),
                c.name
            ),
        ));
    }
    super::cli::check_plans(&ctx.daemon.config().path, &c.plans).map_err(|e| Refused(StatusCode::BAD_REQUEST, e))?;
    tracing::info!(name = %rec.name, role = %role.kind(), command = %c.name, "remote command");
    Ok(Json(super::cli::run(&ctx.daemon, &cli, &req.args, &c).await))
}
