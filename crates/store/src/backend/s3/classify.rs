//! The one mapping from SDK errors to `BackendError`: every request's error goes
//! through [`classify`], so what is retried (`Transient`), ignored (`NotFound`) or
//! reported (`Permanent`) is decided here and nowhere else.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use crate::backend::BackendError;

type HttpResponse = aws_smithy_runtime_api::http::Response;

/// The one mapping from SDK errors to `BackendError`.
pub(super) fn classify<E>(err: SdkError<E, HttpResponse>, object: String, endpoint: &str) -> BackendError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let detail = || chain(&err);
    match &err {
        SdkError::DispatchFailure(d) if d.is_user() => {
            BackendError::Permanent { object, reason: format!("request to {endpoint} failed: {}", detail()) }
        }
        SdkError::DispatchFailure(d) if d.is_timeout() => {
            BackendError::Transient { object, reason: format!("no answer from {endpoint} in time: {}", detail()) }
        }
        SdkError::DispatchFailure(_) => {
            let d = detail();
            if d.contains("credentials") {
                return BackendError::Permanent {
                    object,
                    reason: format!(
                        "no usable S3 credentials for {endpoint}: give credentials_file=FILE in the location, or set \
                         AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or an AWS profile ({d})"
                    ),
                };
            }
            BackendError::Transient { object, reason: format!("cannot reach {endpoint}: {d}") }
        }
        SdkError::TimeoutError(_) => BackendError::Transient {
            object,
            reason: format!("no answer from {endpoint} in time (timeout; see read_timeout/attempt_timeout)"),
        },
        SdkError::ResponseError(_) => {
            BackendError::Transient { object, reason: format!("bad or cut-off response from {endpoint}: {}", detail()) }
        }
        SdkError::ConstructionFailure(_) => {
            let d = detail();
            BackendError::Permanent { object, reason: format!("cannot send the request to {endpoint}: {d}") }
        }
        SdkError::ServiceError(_) => {
            let status = err.raw_response().map(|r| r.status().as_u16()).unwrap_or(0);
            let code = err.code().unwrap_or("").to_string();
            let msg = err.message().unwrap_or("").to_string();
            let what = if code.is_empty() { format!("HTTP {status}") } else { format!("{code} (HTTP {status})") };
            match (status, code.as_str()) {
                (_, "NoSuchBucket") => BackendError::Permanent {
                    object,
                    reason: format!("the bucket does not exist at {endpoint}: run `kura init` to create it"),
                },
                (404, _) | (_, "NoSuchKey" | "NotFound") => BackendError::NotFound { object },
                (403, _)
                | (
                    _,
                    "AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "InvalidToken" | "ExpiredToken",
                ) => BackendError::Permanent {
                    object,
                    reason: format!(
                        "access denied by {endpoint}: {what} {msg}; check the credentials and their permissions"
                    ),
                },
                (412, _) | (_, "PreconditionFailed") => BackendError::AlreadyExists { object },
                (416, _) | (_, "InvalidRange") => {
                    BackendError::Permanent { object, reason: "is shorter than the range requested".into() }
                }
                (501, _) | (_, "NotImplemented") => BackendError::Permanent {
                    object,
                    reason: format!("{endpoint} does not implement this request: {what} {msg}"),
                },
                (408 | 429 | 500..=599, _)
                | (
                    _,
                    "SlowDown" | "RequestTimeout" | "InternalError" | "ServiceUnavailable" | "RequestTimeTooSkewed",
                ) => BackendError::Transient { object, reason: format!("{endpoint} answered {what} {msg}") },
                _ => BackendError::Permanent { object, reason: format!("{endpoint} answered {what} {msg}") },
            }
        }
        _ => BackendError::Permanent { object, reason: detail() },
    }
}

/// An error and its sources, one line, each message once.
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(err);
    while let Some(e) = cur {
        let m = e.to_string();
        if !m.is_empty() && !parts.iter().any(|p| p.contains(&m)) {
            parts.push(m);
        }
        cur = e.source();
    }
    let s = parts.join(": ");
    if s.len() > 400 {
        format!("{}...", &s[..s.char_indices().take_while(|(i, _)| *i < 400).last().map_or(0, |(i, _)| i)])
    } else {
        s
    }
}
