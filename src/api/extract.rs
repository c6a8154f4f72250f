//! Request extractors that turn every malformed input into the contract's envelope
//! (axum's own rejections answer plain text with other status codes).

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::domain::ids::KeyPrefix;
use crate::store::OrgId;

/// A JSON body: `Content-Type: application/json` required (415), size-limited (413), unknown
/// fields and wrong types rejected with the dotted path of the offending field (400).
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(req.headers().get(header::CONTENT_TYPE)) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED_MEDIA_TYPE",
                "the request body must be JSON with Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                payload_too_large()
            } else {
                ApiError::new(StatusCode::BAD_REQUEST, "INVALID_REQUEST", format!("the request body could not be read: {rejection}"))
            }
        })?;
        // serde would read a struct from an array too; every body of this API is an object.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()).is_some_and(|b| *b != b'{') {
            return Err(ApiError::new(StatusCode::BAD_REQUEST, "INVALID_REQUEST", "the request body must be a JSON object"));
        }
        parse_json(&bytes).map(JsonBody)
    }
}

pub const BODY_LIMIT_BYTES: usize = 5 * 1024 * 1024;

pub fn payload_too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "PAYLOAD_TOO_LARGE",
        format!("the request body is larger than the limit of {BODY_LIMIT_BYTES} bytes (5 MiB)"),
    )
}

fn is_json(content_type: Option<&header::HeaderValue>) -> bool {
    let Some(value) = content_type.and_then(|v| v.to_str().ok()) else { return false };
    let essence = value.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
        || essence.len() > 17 && essence[..12].eq_ignore_ascii_case("application/") && essence.to_ascii_lowercase().ends_with("+json")
}

/// Parses JSON, naming the offending field on data errors (`cycles.max_iterations`).
/// Valid bodies take one plain pass. A body that fails is read again into a `Value` and then
/// with path tracking, which tells syntax errors from wrong types (serde_json reports a number
/// where an enum's string belongs as a syntax error) and finds the field at fault.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if let Ok(parsed) = serde_json::from_slice(bytes) {
        return Ok(parsed);
    }
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|err| ApiError::new(StatusCode::BAD_REQUEST, "INVALID_REQUEST", format!("malformed JSON: {err}")))?;
    serde_path_to_error::deserialize(value).map_err(json_error)
}

fn json_error(err: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let inner = err.inner();
    let path = err.path().to_string();
    let path = if path == "." { String::new() } else { path };
    let text = inner.to_string();
    // The path ends with an unknown field's own name, but stops at the parent of a missing one.
    let field = match text.strip_prefix("missing field `").and_then(|rest| rest.split_once('`')) {
        Some((name, _)) if path.is_empty() => name.to_owned(),
        Some((name, _)) => format!("{path}.{name}"),
        None => path,
    };
    let message = strip_position(&text);
    let message = if field.is_empty() { message.to_owned() } else { format!("{field}: {message}") };
    let error = ApiError::new(StatusCode::BAD_REQUEST, "INVALID_REQUEST", message);
    if field.is_empty() { error } else { error.with_field(field) }
}

/// serde_json appends " at line L column C"; the field path says more.
fn strip_position(text: &str) -> &str {
    match text.rfind(" at line ") {
        Some(i) => &text[..i],
        None => text,
    }
}

/// A numeric id from the path; anything else is a 400 naming the parameter.
pub fn parse_id(name: &str, raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::invalid(name, format!("{name} must be a positive integer, got {raw:?}")))
}

/// The organization (and key) that authenticated the request; set by the auth layer.
#[derive(Debug, Clone, Copy)]
pub struct Tenant {
    pub org_id: OrgId,
    pub key_id: i64,
    pub key_prefix: KeyPrefix,
    /// The store's data version read as the request was authenticated (see `read_cache`).
    pub data_version: Option<u64>,
}

impl<S: Send + Sync> FromRequestParts<S> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts.extensions.get::<Tenant>().copied().ok_or_else(ApiError::unauthorized)
    }
}

/// Query parameters as ordered pairs; each endpoint says which names it knows.
pub struct QueryParams(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
        Ok(QueryParams(pairs))
    }
}

impl QueryParams {
    /// Rejects names not in `known` and names given twice; returns a lookup.
    pub fn check(&self, known: &[&str]) -> Result<(), ApiError> {
        for (i, (name, _)) in self.0.iter().enumerate() {
            if !known.contains(&name.as_str()) {
                return Err(ApiError::invalid(name.clone(), format!("unknown query parameter {name:?}; known: {}", known.join(", "))));
            }
            if self.0[..i].iter().any(|(other, _)| other == name) {
                return Err(ApiError::invalid(name.clone(), format!("query parameter {name:?} given more than once")));
            }
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// A boolean parameter: `true`/`false` in any letter case, or `1`/`0` (generated clients
    /// send `True`, `true` or `1`, §0.2); `default` when absent.
    pub fn flag(&self, name: &str, default: bool) -> Result<bool, ApiError> {
        match self.get(name) {
            None => Ok(default),
            Some(raw) if raw == "1" || raw.eq_ignore_ascii_case("true") => Ok(true),
            Some(raw) if raw == "0" || raw.eq_ignore_ascii_case("false") => Ok(false),
            Some(raw) => Err(ApiError::invalid(name, format!("{name} must be true or false (or 1 or 0), got {raw:?}"))),
        }
    }
}
