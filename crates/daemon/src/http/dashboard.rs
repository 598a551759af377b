//! The read-only dashboard: one page and its script and style, built into the
//! binary (`assets/`), polling `/api/dashboard` every second; and each
//! incident's HTML report, rendered from the state database on request.

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::view;
use super::{auth, Ctx, TokenQuery};
use kura_recovery::report::{self, Format};

const PAGE: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/style.css");

const NO_STORE: (header::HeaderName, &str) = (header::CACHE_CONTROL, "no-store");
/// The page runs only its own script and style, and is never framed.
const CSP: (header::HeaderName, &str) = (
    header::CONTENT_SECURITY_POLICY,
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; \
     frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
);
const NOSNIFF: (header::HeaderName, &str) = (header::X_CONTENT_TYPE_OPTIONS, "nosniff");

/// `/`: the page; `?token=` sets the cookie the script's requests then carry.
pub async fn page(State(ctx): State<Ctx>, headers: HeaderMap, q: Query<TokenQuery>) -> Response {
    if !auth::allowed(&ctx.token, &headers, q.token.as_deref()) {
        return auth::unauthorized();
    }
    let mut r = ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), NO_STORE, CSP, NOSNIFF], PAGE).into_response();
    if let Some(c) = q.token.as_deref().and_then(auth::set_cookie) {
        r.headers_mut().insert(header::SET_COOKIE, c);
    }
    r
}

pub async fn script(State(ctx): State<Ctx>, headers: HeaderMap) -> Response {
    asset(&ctx, &headers, "text/javascript; charset=utf-8", SCRIPT)
}

pub async fn style(State(ctx): State<Ctx>, headers: HeaderMap) -> Response {
    asset(&ctx, &headers, "text/css; charset=utf-8", STYLE)
}

fn asset(ctx: &Ctx, headers: &HeaderMap, kind: &'static str, body: &'static str) -> Response {
    if !auth::allowed(&ctx.token, headers, None) {
        return auth::unauthorized();
    }
    ([(header::CONTENT_TYPE, kind), NO_STORE, NOSNIFF], body).into_response()
}

/// `/api/dashboard`: everything the page shows, as JSON.
pub async fn data(State(ctx): State<Ctx>, headers: HeaderMap) -> Response {
    if !auth::allowed(&ctx.token, &headers, None) {
        return auth::unauthorized();
    }
    let json = match view::gather(&ctx.daemon).await {
        Ok(v) => serde_json::to_string(&v).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match json {
        Ok(j) => ([(header::CONTENT_TYPE, "application/json"), NO_STORE], j).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot read the state: {e}\n")).into_response(),
    }
}

/// `/reports/incident/ID`: the incident's HTML report, as `kura report --incident
/// ID --format html` writes it.
pub async fn incident_report(State(ctx): State<Ctx>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if !auth::allowed(&ctx.token, &headers, None) {
        return auth::unauthorized();
    }
    let Ok(id) = id.parse::<i64>() else {
        return (StatusCode::NOT_FOUND, format!("{id:?} is not an incident number\n")).into_response();
    };
    let now = ctx.daemon.clock.now();
    let facts = ctx.daemon.db.query(move |st| report::collect::incident(st, id, now)).await;
    match facts {
        Ok(f) => {
            let html = report::render(&f, Format::Html);
            ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), NO_STORE], html).into_response()
        }
        Err(e) => (StatusCode::NOT_FOUND, format!("no report for incident {id}: {e}\n")).into_response(),
    }
}
