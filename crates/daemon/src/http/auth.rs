//! The token check: `Authorization: Bearer`, the `kura_token` cookie, or
//! `?token=` (the page only). The comparison takes the same time wherever the
//! first difference is.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// The cookie a `?token=` page view sets.
pub const COOKIE: &str = "kura_token";

/// Whether the request carries the token (header, cookie, or `query`).
pub fn allowed(token: &str, headers: &HeaderMap, query: Option<&str>) -> bool {
    offered(headers, query).iter().any(|t| same(t.as_bytes(), token.as_bytes()))
}

fn offered<'a>(headers: &'a HeaderMap, query: Option<&'a str>) -> Vec<&'a str> {
    let mut out: Vec<&str> = query.into_iter().collect();
    for v in headers.get_all(header::AUTHORIZATION) {
        if let Some(t) = v.to_str().ok().and_then(|s| s.strip_prefix("Bearer ")) {
            out.push(t.trim());
        }
    }
    for v in headers.get_all(header::COOKIE) {
        let Ok(s) = v.to_str() else { continue };
        out.extend(s.split(';').filter_map(|kv| kv.trim().strip_prefix(COOKIE)?.strip_prefix('=')));
    }
    out
}

fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// 401, saying how to authenticate (never what the token is).
pub fn unauthorized() -> Response {
    let mut r = (
        StatusCode::UNAUTHORIZED,
        "401 unauthorized: send the token of the daemon's token file as `Authorization: Bearer TOKEN`, \
         or open the dashboard as /?token=TOKEN (docs/DAEMON.md)\n",
    )
        .into_response();
    r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"kura\""));
    r
}

/// The cookie that lets a browser that opened `/?token=` go on without it.
pub fn set_cookie(token: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!("{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn header_cookie_or_query() {
        let none = HeaderMap::new();
        assert!(!allowed("s3cret", &none, None));
        assert!(allowed("s3cret", &none, Some("s3cret")));
        assert!(!allowed("s3cret", &none, Some("s3cre")));
        assert!(allowed("s3cret", &headers(&[(header::AUTHORIZATION, "Bearer s3cret")]), None));
        assert!(!allowed("s3cret", &headers(&[(header::AUTHORIZATION, "Basic s3cret")]), None));
        assert!(allowed("s3cret", &headers(&[(header::COOKIE, "a=b; kura_token=s3cret")]), None));
        assert!(!allowed("s3cret", &headers(&[(header::COOKIE, "kura_token=wrong")]), None));
    }
}
