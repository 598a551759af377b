//! The webhook channel: an HTTPS (or HTTP) POST through reqwest with rustls.
//! Certificates are verified against the built-in Mozilla roots (webpki-roots)
//! and, when `ca_file` is set, the CA certificates in that PEM file.

use std::path::Path;
use std::time::Duration;

use reqwest::blocking::Client;

use super::{redact, DeliveryError};

/// POSTs `body` as JSON with the event's id in `Idempotency-Key` and
/// `X-Kura-Event-Id`; any 2xx answer is success. Blocking: call it off the async
/// runtime (the daemon uses `spawn_blocking`).
pub fn post_json(
    url: &str,
    ca_file: Option<&Path>,
    event_id: &str,
    body: &str,
    timeout: Duration,
) -> Result<(), DeliveryError> {
    let shown = redact(url);
    let client = client(&shown, ca_file, timeout)?;
    let answer = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("Idempotency-Key", event_id)
        .header("X-Kura-Event-Id", event_id)
        .body(body.to_string())
        .send()
        .map_err(|e| DeliveryError::Http { url: shown.clone(), cause: describe(e) })?;
    let status = answer.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(DeliveryError::Status { url: shown, status: status.to_string() })
    }
}

fn client(shown: &str, ca_file: Option<&Path>, timeout: Duration) -> Result<Client, DeliveryError> {
    let mut b = Client::builder()
        .use_rustls_tls()
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("kura/", env!("CARGO_PKG_VERSION")))
        // A redirect would re-send the event elsewhere; the receiver must answer itself.
        .redirect(reqwest::redirect::Policy::none());
    if let Some(path) = ca_file {
        for c in ca_certs(path)? {
            b = b.add_root_certificate(c);
        }
    }
    b.build().map_err(|e| DeliveryError::Http { url: shown.to_string(), cause: describe(e) })
}

/// The certificates of a PEM file (at least one).
pub(crate) fn ca_certs(path: &Path) -> Result<Vec<reqwest::Certificate>, DeliveryError> {
    let bad = |cause: String| DeliveryError::CaFile { path: path.display().to_string(), cause };
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| bad(describe(e)))?;
    if certs.is_empty() {
        return Err(bad("no PEM certificate in it".into()));
    }
    Ok(certs)
}

/// The error and its causes on one line, without the URL (it may hold secrets):
/// e.g. "error sending request: client error (Connect): invalid peer certificate: UnknownIssuer".
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut out = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        src = s.source();
    }
    out
}
