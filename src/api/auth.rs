//! `Authorization: api-key <KEY>` on every `/api/v1.0` route that takes a key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;
use super::extract::Tenant;
use crate::domain::ids::{KeyPrefix, hash_api_key};

/// `last_used_at` is written at most this often per key, so reads stay reads.
const TOUCH_EVERY_SECONDS: i64 = 60;

pub async fn require_api_key(State(app): State<AppState>, mut request: Request, next: Next) -> Response {
    match authenticate(&app, request.headers()).await {
        Ok(tenant) => {
            request.extensions_mut().insert(tenant);
            next.run(request).await
        }
        Err(error) => error.into_response(),
    }
}

async fn authenticate(app: &AppState, headers: &HeaderMap) -> Result<Tenant, ApiError> {
    let header = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).ok_or_else(ApiError::unauthorized)?;
    let (scheme, key) = header.trim().split_once(' ').ok_or_else(ApiError::unauthorized)?;
    if !scheme.eq_ignore_ascii_case("api-key") {
        return Err(ApiError::unauthorized());
    }
    check_key(app, key.trim()).await
}

/// The tenant an API key belongs to, when it is a live key (the dashboard's sign-in too).
pub async fn check_key(app: &AppState, key: &str) -> Result<Tenant, ApiError> {
    let key_prefix = KeyPrefix::of_key(key).ok_or_else(ApiError::unauthorized)?;
    let prefix = key_prefix.as_str();
    // Read before the key: whatever this request reads may be taken from the read cache only if
    // it was read under this very version. Without a version (PostgreSQL, or SQLite could not
    // tell) everything is read from the database, which reports its own errors.
    let data_version = app.health.data_version().ok().flatten();
    let record = match data_version.and_then(|version| app.read_cache.key(version, prefix)) {
        Some(record) => record,
        None => {
            let record = Arc::new(app.keys.find_api_key(prefix).await?.ok_or_else(ApiError::unauthorized)?);
            if let Some(version) = data_version {
                app.read_cache.keep_key(version, prefix, record.clone());
            }
            record
        }
    };
    if record.revoked || !constant_time_eq(record.hash.as_bytes(), hash_api_key(key).as_bytes()) {
        return Err(ApiError::unauthorized());
    }
    let now = app.clock.now();
    if app.key_touches.due(record.id, now.as_second()) {
        let (store, key_id) = (app.keys.clone(), record.id);
        tokio::spawn(async move {
            if let Err(err) = store.touch_api_key(key_id, now).await {
                tracing::warn!(error = %err, "could not record API key use");
            }
        });
    }
    Ok(Tenant { org_id: record.org_id, key_id: record.id, key_prefix, data_version })
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// When each key's last use was last written; one entry per key ever seen by this process.
#[derive(Default)]
pub struct KeyTouches(Mutex<HashMap<i64, i64>>);

impl KeyTouches {
    fn due(&self, key_id: i64, now: i64) -> bool {
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match seen.get(&key_id) {
            Some(last) if now - last < TOUCH_EVERY_SECONDS => false,
            _ => {
                seen.insert(key_id, now);
                true
            }
        }
    }
}
