//! `Idempotency-Key` on POST requests (contract §7).
//!
//! While a request runs, its key is held in this process's memory, so a concurrent duplicate on
//! the same process gets 409 and a crash frees every key at once. The handler records its response
//! in the same database transaction as its own writes (`ResponseRecorder`): a crash can never
//! leave writes without their stored response, nor a stored response without its writes, and
//! holding a key costs no extra commit. The record's unique key, checked by the store inside that
//! transaction, decides whether a request is new: a repeat (or a duplicate that ran at the same
//! time on another process) finds a live record, keeps none of its writes, and answers with the
//! stored response (or 422 when the stored request differs). No read precedes the handler on the
//! server's side: the store's check travels with the writes (README "Retries and limits").
//! Responses of requests that wrote nothing are recorded by the layer afterwards; 400s and 5xx are
//! not kept, so the key can be used again.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::body::{Body, to_bytes};
use axum::extract::{OriginalUri, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::AppState;
use super::error::{ApiError, KeyInUse};
use super::extract::{BODY_LIMIT_BYTES, Tenant, payload_too_large};
use crate::store::{IdempotencyClaim, IdempotencyRecord, OrgId, ResponseRecorder, StoreError, StoredResponse};

pub const HEADER: &str = "idempotency-key";
pub const REPLAYED_HEADER: &str = "idempotent-replayed";
pub const MAX_KEY_LEN: usize = 255;
/// Bytes first set aside for a JSON response: a campaign's detail takes about 1,200.
const JSON_BODY_CAPACITY: usize = 2048;

/// Marks a response whose record was already written with the handler's own transaction.
#[derive(Clone, Copy)]
struct Recorded;

/// Whether a response is kept for replay: successes and refusals, but not input errors
/// (a corrected request may reuse the key) nor server errors (a retry runs afresh).
pub fn is_kept(status: StatusCode) -> bool {
    status.is_success()
        || (status.is_client_error()
            && !matches!(status, StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE | StatusCode::UNSUPPORTED_MEDIA_TYPE))
}

pub async fn idempotency(State(app): State<AppState>, request: Request, next: Next) -> Response {
    if request.method() != Method::POST || !request.headers().contains_key(HEADER) {
        return next.run(request).await;
    }
    match begin(&app, request).await {
        Ok(Begun::Run(running)) => {
            let (request, claim, _held) = *running;
            let response = next.run(request).await;
            if response.extensions().get::<KeyInUse>().is_some() {
                // The key has a live record: nothing this request would have written was kept.
                return answer_repeat(&app, &claim, response).await;
            }
            settle(&app, &claim, response).await
        }
        Ok(Begun::Answered(response)) => response,
        Err(error) => error.into_response(),
    }
}

enum Begun {
    Run(Box<(Request, IdempotencyClaim, HeldKey)>),
    Answered(Response),
}

/// Keys of the requests running in this process.
#[derive(Default)]
pub struct RunningKeys(Mutex<HashSet<(OrgId, String)>>);

/// A key held by a running request; dropping it (also on panic) frees the key.
pub struct HeldKey {
    app: AppState,
    entry: (OrgId, String),
}

impl RunningKeys {
    fn hold(app: &AppState, org: OrgId, key: &str) -> Option<HeldKey> {
        let entry = (org, key.to_owned());
        let mut running = app.running_keys.0.lock().unwrap_or_else(|p| p.into_inner());
        running.insert(entry.clone()).then(|| HeldKey { app: app.clone(), entry })
    }
}

impl Drop for HeldKey {
    fn drop(&mut self) {
        self.app.running_keys.0.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.entry);
    }
}

async fn begin(app: &AppState, request: Request) -> Result<Begun, ApiError> {
    let key = parse_key(request.headers().get(HEADER))?.to_owned();
    let tenant = request.extensions().get::<Tenant>().copied().ok_or_else(ApiError::unauthorized)?;
    let (parts, body) = request.into_parts();
    let bytes = to_bytes(body, BODY_LIMIT_BYTES).await.map_err(|_| payload_too_large())?;
    // Nesting strips `/api/v1.0` from the URI; fingerprint the path the client sent.
    let uri = parts.extensions.get::<OriginalUri>().map_or(&parts.uri, |original| &original.0);
    let fingerprint = fingerprint(&parts.method, uri.path_and_query().map_or("", |p| p.as_str()), &bytes);
    let Some(held) = RunningKeys::hold(app, tenant.org_id, &key) else {
        return Ok(Begun::Answered(ApiError::key_in_use().into_response()));
    };
    let now = app.clock.now();
    let expired_before = now.saturating_sub(app.settings.idempotency_ttl).unwrap_or(now);
    let claim = IdempotencyClaim { org_id: tenant.org_id, key, fingerprint, at: now, expired_before };
    let mut request = Request::from_parts(parts, Body::from(bytes));
    request.extensions_mut().insert(claim.clone());
    Ok(Begun::Run(Box::new((request, claim, held))))
}

/// The answer to a repeat of a recorded request: its response again, or 422 for another request.
fn answer_recorded(record: IdempotencyRecord, fingerprint: &[u8; 32]) -> Response {
    if record.fingerprint == fingerprint {
        return replay(record.response);
    }
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "IDEMPOTENCY_KEY_REUSED",
        "this Idempotency-Key was already used for a different request (method, path or body); use a new key",
    )
    .with_field("Idempotency-Key")
    .into_response()
}

/// The answer to a request whose key holds a live record (a repeat, or a duplicate that ran at the
/// same time on another process and committed first): that record's response, or 422 for another
/// request; the 409 when the record cannot be read (retrying then replays).
async fn answer_repeat(app: &AppState, claim: &IdempotencyClaim, in_use: Response) -> Response {
    match app.idempotency.find_idempotency_record(claim.org_id, &claim.key, claim.expired_before).await {
        Ok(Some(record)) => answer_recorded(record, &claim.fingerprint),
        Ok(None) => in_use,
        Err(err) => ApiError::from(err).into_response(),
    }
}

fn parse_key(value: Option<&HeaderValue>) -> Result<&str, ApiError> {
    let invalid = || ApiError::invalid("Idempotency-Key", format!("Idempotency-Key must be 1 to {MAX_KEY_LEN} printable ASCII characters"));
    let key = value.and_then(|v| v.to_str().ok()).ok_or_else(invalid)?;
    if key.is_empty() || key.len() > MAX_KEY_LEN || !key.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        return Err(invalid());
    }
    Ok(key)
}

fn fingerprint(method: &Method, path_and_query: &str, body: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(method.as_str().as_bytes());
    hasher.update(b"\n");
    hasher.update(path_and_query.as_bytes());
    hasher.update(b"\n");
    hasher.update(body);
    hasher.finalize().into()
}

fn replay(stored: StoredResponse) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut response = (status, [(header::CONTENT_TYPE, "application/json")], stored.body).into_response();
    response.headers_mut().insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    response
}

async fn settle(app: &AppState, claim: &IdempotencyClaim, response: Response) -> Response {
    if response.extensions().get::<Recorded>().is_some() {
        return response;
    }
    let status = response.status();
    if !is_kept(status) {
        return response;
    }
    let (parts, body) = response.into_parts();
    let bytes = match to_bytes(body, usize::MAX).await {
        Ok(bytes) => bytes,
        Err(err) => return ApiError::internal(format!("response body could not be buffered: {err}")).into_response(),
    };
    let stored = StoredResponse { status: status.as_u16(), body: bytes.to_vec() };
    match app.idempotency.complete_idempotency_key(claim, stored).await {
        Ok(()) => {}
        Err(StoreError::IdempotencyKeyTaken) => return answer_repeat(app, claim, ApiError::key_in_use().into_response()).await,
        Err(err) => tracing::warn!(error = %err, "could not record a response for its idempotency key"),
    }
    Response::from_parts(parts, Body::from(bytes))
}

/// A JSON reply rendered once into bytes, so that the bytes sent are the bytes kept for replay.
pub struct Reply {
    status: StatusCode,
    body: Vec<u8>,
    recorded: bool,
}

/// A response body as JSON bytes; a value that cannot be serialized is a server error.
pub fn json_body(value: &impl Serialize) -> Result<Vec<u8>, ApiError> {
    // Room for a campaign up front: growing the buffer step by step copies it each time.
    let mut body = Vec::with_capacity(JSON_BODY_CAPACITY);
    serde_json::to_writer(&mut body, value).map_err(|err| ApiError::internal(format!("response could not be serialized: {err}")))?;
    Ok(body)
}

impl Reply {
    pub fn json(status: StatusCode, value: &impl Serialize) -> Reply {
        match json_body(value) {
            Ok(body) => Reply { status, body, recorded: false },
            Err(error) => Reply { status: error.status, body: serde_json::to_vec(&*error.body).unwrap_or_default(), recorded: false },
        }
    }

    fn stored(&self) -> StoredResponse {
        StoredResponse { status: self.status.as_u16(), body: self.body.clone() }
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut response = (self.status, [(header::CONTENT_TYPE, "application/json")], self.body).into_response();
        if self.recorded {
            response.extensions_mut().insert(Recorded);
        }
        response
    }
}

/// A handler's side of an Idempotency-Key: [`Recording::respond`] runs the handler's write with
/// the recorder that stores its reply in the same transaction (when the request has a key), and
/// answers with that same reply (rendered once).
pub struct Recording {
    claim: Option<IdempotencyClaim>,
    rendered: Arc<Mutex<Option<Reply>>>,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Recording {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Recording { claim: parts.extensions.get::<IdempotencyClaim>().cloned(), rendered: Arc::default() })
    }
}

impl Recording {
    /// Runs `write` (a store call given the recorder, or checks that end in one) and answers with
    /// `render` of its outcome.
    pub async fn respond<T, E, W, R>(self, render: R, write: impl FnOnce(Option<ResponseRecorder<T>>) -> W) -> Result<Reply, ApiError>
    where
        T: 'static,
        ApiError: From<E>,
        W: std::future::Future<Output = Result<T, E>>,
        R: Fn(&T) -> Reply + Clone + Send + 'static,
    {
        let outcome = write(self.recorder(render.clone())).await?;
        Ok(self.reply(render, &outcome))
    }

    fn recorder<T: 'static>(&self, render: impl Fn(&T) -> Reply + Send + 'static) -> Option<ResponseRecorder<T>> {
        let rendered = self.rendered.clone();
        self.claim.clone().map(|claim| ResponseRecorder {
            claim,
            render: Box::new(move |value: &T| {
                let reply = render(value);
                let stored = is_kept(reply.status).then(|| reply.stored());
                *rendered.lock().unwrap_or_else(|p| p.into_inner()) = Some(reply);
                stored
            }),
        })
    }

    /// The reply for `value` (the one rendered for the record, if any), marked as already
    /// recorded when it was.
    fn reply<T>(&self, render: impl Fn(&T) -> Reply, value: &T) -> Reply {
        let kept = self.rendered.lock().unwrap_or_else(|p| p.into_inner()).take();
        let mut reply = kept.unwrap_or_else(|| render(value));
        reply.recorded = self.claim.is_some() && is_kept(reply.status);
        reply
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_one_to_255_printable_ascii_characters() {
        let ok = |text: &str| parse_key(Some(&HeaderValue::from_str(text).expect("header"))).is_ok();
        assert!(ok("a"));
        assert!(ok(&"k".repeat(255)));
        assert!(ok("6f0b2c8c-2a7e-4f5e-9b6a-3a2e8b9c4d10"));
        assert!(ok("with space ~"));
        assert!(!ok(""));
        assert!(!ok(&"k".repeat(256)));
        assert!(!ok("tab\there"));
        assert!(parse_key(Some(&HeaderValue::from_bytes(b"caf\xc3\xa9").expect("header"))).is_err());
        assert!(parse_key(None).is_err());
    }

    #[test]
    fn fingerprints_cover_method_path_and_body() {
        let base = fingerprint(&Method::POST, "/api/v1.0/campaigns", b"{}");
        assert_eq!(base, fingerprint(&Method::POST, "/api/v1.0/campaigns", b"{}"));
        assert_ne!(base, fingerprint(&Method::PUT, "/api/v1.0/campaigns", b"{}"));
        assert_ne!(base, fingerprint(&Method::POST, "/api/v1.0/agents", b"{}"));
        assert_ne!(base, fingerprint(&Method::POST, "/api/v1.0/campaigns", b"{ }"));
    }

    #[test]
    fn input_errors_and_server_errors_are_not_kept() {
        assert!(is_kept(StatusCode::CREATED) && is_kept(StatusCode::NOT_FOUND) && is_kept(StatusCode::CONFLICT));
        assert!(
            !is_kept(StatusCode::BAD_REQUEST)
                && !is_kept(StatusCode::UNSUPPORTED_MEDIA_TYPE)
                && !is_kept(StatusCode::INTERNAL_SERVER_ERROR)
        );
    }
}
