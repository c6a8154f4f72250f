//! Sign-in sessions (contract §11): a random 256-bit id in an `HttpOnly`, `SameSite=Lax` cookie,
//! stored only as its SHA-256; 12 hours idle and 7 days at most; a revoked key ends its sessions
//! at the next request. Every state-changing request must carry the session's CSRF token (a form
//! field or the `X-CSRF-Token` header) and, when the browser sends one, a same-origin `Origin`.

use axum::body::{Body, to_bytes};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use jiff::{SignedDuration, Timestamp};
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::DashError;
use crate::api::AppState;
use crate::api::auth::constant_time_eq;
use crate::store::OrgId;

pub const COOKIE: &str = "outbound_session";
pub const IDLE: SignedDuration = SignedDuration::from_hours(12);
pub const LONGEST: SignedDuration = SignedDuration::from_hours(7 * 24);
/// `last_seen_at` is written at most this often per session, so page views stay reads.
const TOUCH_EVERY: SignedDuration = SignedDuration::from_mins(1);
/// The largest form body read for its CSRF token (forms are small; uploads send the header).
const FORM_LIMIT: usize = 256 * 1024;

/// The signed-in organization, for handlers (put in place by [`require_session`]).
#[derive(Clone, Debug)]
pub struct Session {
    pub org_id: OrgId,
    pub organization: String,
    pub key_id: i64,
    /// Goes into every form and the `X-CSRF-Token` header of htmx requests.
    pub csrf: String,
}

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = DashError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, DashError> {
        parts.extensions.get::<Session>().cloned().ok_or(DashError::SignedOut)
    }
}

/// A new session id (shown once, in the cookie) and the hash it is stored under.
pub fn new_id() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let hash = hash_id(&id);
    (id, hash)
}

pub fn hash_id(id: &str) -> String {
    hex(&Sha256::digest(format!("outbound-session:{id}").as_bytes()))
}

/// The CSRF token of a session: derived from its id, so it needs no storage and dies with it.
pub fn csrf_token(id: &str) -> String {
    hex(&Sha256::digest(format!("outbound-csrf:{id}").as_bytes())[..16])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn cookie_value(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// `Set-Cookie` for a new session, or (`id` None) one that clears it.
pub fn set_cookie(app: &AppState, id: Option<&str>) -> HeaderValue {
    let secure = if app.settings.public_url.starts_with("https://") { "; Secure" } else { "" };
    let text = match id {
        Some(id) => format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{secure}", LONGEST.as_secs()),
        None => format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure}"),
    };
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("outbound_session=; Path=/; Max-Age=0"))
}

/// Whether a session opened at `created_at` and last seen at `last_seen_at` is still valid at `now`.
pub fn alive(created_at: Timestamp, last_seen_at: Timestamp, now: Timestamp) -> bool {
    now.duration_since(last_seen_at) < IDLE && now.duration_since(created_at) < LONGEST
}

/// Every dashboard route but sign-in and assets: the session, then for a state-changing request
/// its origin and CSRF token.
pub async fn require_session(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let session = match load(&app, request.headers()).await {
        Ok(Some(session)) => session,
        Ok(None) => return signed_out(&request),
        Err(err) => return err.into_response(),
    };
    let request = if is_safe(request.method()) {
        request
    } else {
        match check_request(&session, request).await {
            Ok(request) => request,
            Err(err) => return err.into_response(),
        }
    };
    let mut request = request;
    request.extensions_mut().insert(session);
    next.run(request).await
}

async fn load(app: &AppState, headers: &HeaderMap) -> Result<Option<Session>, DashError> {
    let Some(id) = cookie_value(headers) else { return Ok(None) };
    let id_hash = hash_id(id);
    let Some(record) = app.dashboard.find_session(&id_hash).await? else { return Ok(None) };
    let now = app.clock.now();
    if record.key_revoked || !alive(record.created_at, record.last_seen_at, now) {
        app.dashboard.delete_session(&id_hash).await?;
        return Ok(None);
    }
    if now.duration_since(record.last_seen_at) >= TOUCH_EVERY {
        app.dashboard.touch_session(&id_hash, now).await?;
    }
    Ok(Some(Session { org_id: record.org_id, organization: record.organization, key_id: record.key_id, csrf: csrf_token(id) }))
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// To sign-in, and back here afterwards; htmx requests are told to go there themselves.
fn signed_out(request: &Request) -> Response {
    let back = request.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let target = if is_safe(request.method()) && !request.headers().contains_key("hx-request") {
        format!("/sign-in?next={}", url::form_urlencoded::byte_serialize(back.as_bytes()).collect::<String>())
    } else {
        "/sign-in".to_owned()
    };
    if request.headers().contains_key("hx-request") {
        // HTML, so that the API's envelope layer leaves it alone.
        return (StatusCode::UNAUTHORIZED, [("hx-redirect", target.as_str()), ("content-type", "text/html; charset=utf-8")])
            .into_response();
    }
    Redirect::to(&target).into_response()
}

/// A cross-site `Origin` is refused outright; otherwise the token must match, from the header
/// or the urlencoded form's `csrf` field (the body is read and put back for the handler).
async fn check_request(session: &Session, request: Request) -> Result<Request, DashError> {
    check_origin(request.headers())?;
    let from_header = request.headers().get("x-csrf-token").and_then(|v| v.to_str().ok()).map(str::to_owned);
    if let Some(token) = from_header {
        return if constant_time_eq(token.as_bytes(), session.csrf.as_bytes()) { Ok(request) } else { Err(DashError::Csrf) };
    }
    let is_form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return Err(DashError::Csrf);
    }
    let (parts, body) = request.into_parts();
    let bytes = to_bytes(body, FORM_LIMIT).await.map_err(|_| DashError::Invalid("the form is larger than 256 KiB".into()))?;
    let token = url::form_urlencoded::parse(&bytes).find(|(name, _)| name == "csrf").map(|(_, value)| value.into_owned());
    match token {
        Some(token) if constant_time_eq(token.as_bytes(), session.csrf.as_bytes()) => Ok(Request::from_parts(parts, Body::from(bytes))),
        _ => Err(DashError::Csrf),
    }
}

/// A browser's `Origin` must name the host the request was sent to.
pub fn check_origin(headers: &HeaderMap) -> Result<(), DashError> {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else { return Ok(()) };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let origin_host = origin.split_once("://").map(|(_, rest)| rest).unwrap_or_default();
    if origin_host.eq_ignore_ascii_case(host) { Ok(()) } else { Err(DashError::Csrf) }
}

/// Where to go after signing in: a path of this site only.
pub fn local_target(next: Option<&str>) -> &str {
    match next {
        Some(path) if path.starts_with('/') && !path.starts_with("//") && !path.starts_with("/\\") => path,
        _ => "/campaigns",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_when_idle_or_old() {
        let start: Timestamp = "2026-06-08T00:00:00Z".parse().expect("time");
        let at = |hours: i64| start.checked_add(SignedDuration::from_hours(hours)).expect("time");
        assert!(alive(start, start, at(11)));
        assert!(!alive(start, start, at(12)));
        // Seen an hour ago, opened almost 7 days ago: alive; 7 days: over.
        assert!(alive(start, at(166), at(167)));
        assert!(!alive(start, at(167), at(168)));
    }

    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        assert_eq!(local_target(Some("/campaigns/4")), "/campaigns/4");
        assert_eq!(local_target(Some("//evil.example")), "/campaigns");
        assert_eq!(local_target(Some("https://evil.example")), "/campaigns");
        assert_eq!(local_target(None), "/campaigns");
    }

    #[test]
    fn origins_must_match_the_host() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(check_origin(&headers).is_ok());
        headers.insert(header::ORIGIN, HeaderValue::from_static("http://127.0.0.1:8080"));
        assert!(check_origin(&headers).is_ok());
        headers.insert(header::ORIGIN, HeaderValue::from_static("https://evil.example"));
        assert!(check_origin(&headers).is_err());
    }
}
