//! Provider callbacks (§5.4, PROVIDERS.md §1): `/integrations/{id}/events` takes the generic
//! signed format from any integration (`X-Outbound-Signature`), and each provider's own format,
//! verified by its own scheme, through its [`Connector`](crate::providers::Connector). No API key:
//! the signature alone authenticates, and scopes the events to that integration's attempts.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::attempts::CallEndedBy;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::parse_json;
use crate::domain::attempt::{AttemptEvent, AttemptStatus, EventInput};
use crate::domain::campaign::Channel;
use crate::domain::contact::{check_extracted_data, clean_tags};
use crate::domain::ids::{is_integration_id, verify_signature};
use crate::domain::integration::{Integration, MAX_URL_CHARS};
use crate::domain::validation::no_nul;
use crate::metrics::{self, EventRefusal, EventSource};
use crate::providers::{self, Callback, CallbackError, CallbackReply};
use crate::store::{EventOutcome, HeldEvent, InboundMessage};

/// Checks an event body against the integration's channel.
fn parse_event(input: EventInput, channel: Channel) -> ApiResult<AttemptEvent> {
    let status = AttemptStatus::parse_event(channel, &input.status).ok_or_else(|| {
        let allowed = match channel {
            Channel::PhoneCall => "ringing, in-progress, ended, busy, no-answer or failed",
            Channel::Whatsapp => "sent, delivered, read, failed, accepted or rejected",
        };
        ApiError::invalid("status", format!("status must be {allowed} on a {} integration, got {:?}", channel.as_str(), input.status))
    })?;
    let (duration, billed_duration) = (input.duration.map(|d| d.0), input.billed_duration.map(|d| d.0));
    for (field, value) in [("duration", duration), ("billed_duration", billed_duration)] {
        if value.is_some_and(|v| v < 0) {
            return Err(ApiError::invalid(field, format!("{field} must be a whole number of seconds, 0 or more")));
        }
    }
    if let Some(data) = &input.extracted_data {
        check_extracted_data("extracted_data", data).map_err(|message| ApiError::invalid("extracted_data", message))?;
    }
    let tags = input
        .tags
        .as_deref()
        .map(|tags| clean_tags("tags", tags))
        .transpose()
        .map_err(|(field, message)| ApiError::invalid(field, message))?;
    if let Some(url) = &input.recording_url {
        let web = url::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
        if !web || url.chars().count() > MAX_URL_CHARS || url.contains(char::is_control) {
            return Err(ApiError::invalid(
                "recording_url",
                format!("recording_url must be an http(s) URL of at most {MAX_URL_CHARS} characters"),
            ));
        }
    }
    if let Some(reason) = &input.ended_reason {
        no_nul("ended_reason", reason).map_err(|v| ApiError::invalid(v.field, v.message))?;
    }
    if let Some(ended_by) = input.ended_by.as_deref().filter(|e| !e.is_empty() && CallEndedBy::named(e).is_none()) {
        return Err(ApiError::invalid("ended_by", format!("ended_by must be agent, user or system, got {ended_by:?}")));
    }
    Ok(AttemptEvent {
        attempt_id: input.attempt_id,
        status,
        answered_by: input.answered_by,
        started_at: input.started_at,
        ended_at: input.ended_at,
        duration,
        billed_duration,
        ended_by: input.ended_by.filter(|e| !e.is_empty()),
        ended_reason: input.ended_reason,
        converted: input.converted.unwrap_or(false),
        extracted_data: input.extracted_data,
        tags,
        recording_url: input.recording_url,
        transcript: input.transcript,
        invalid_number: false,
        throttled: false,
        final_report: false,
        suppressed: false,
        opt_out: input.opt_out.unwrap_or(false),
    })
}

/// Report what happened to an attempt (provider → Outbound), in the generic format signed with
/// `X-Outbound-Signature` = base64(HMAC-SHA256(base64-decoded integration secret, raw body)), or
/// in the integration's provider's own format (Twilio's form posts, WhatsApp's webhooks),
/// verified by that provider's signature.
#[utoipa::path(post, path = "/integrations/{id}/events", tag = "integrations", request_body = EventInput, security(()),
    params(("id" = String, Path), ("X-Outbound-Signature" = Option<String>, Header, description = "base64 HMAC-SHA256 of the raw body (generic format)")),
    responses((status = 200, body = EventAccepted), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, description = "Unknown attempt", body = ErrorBody), (status = 415, body = ErrorBody)))]
pub async fn post_event(
    State(app): State<AppState>,
    Path(id): Path<String>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let received = receive(&app, &id, &Method::POST, &uri, &headers, &body).await;
    match &received {
        Ok(Received::Applied(outcomes)) => metrics::provider_events(EventSource::Http, outcomes),
        Ok(Received::Challenge(_)) => {}
        Err(err) if err.status == StatusCode::UNAUTHORIZED => {
            metrics::provider_event_refused(EventSource::Http, EventRefusal::BadSignature)
        }
        Err(err) if err.status.is_client_error() => metrics::provider_event_refused(EventSource::Http, EventRefusal::Invalid),
        // A server error says nothing about the event: the provider sends it again.
        Err(_) => {}
    }
    received?.into_response()
}

/// The verification handshake of a provider that checks its callback URL with a `GET`
/// (WhatsApp: `hub.mode=subscribe`, `hub.verify_token`, `hub.challenge` echoed as text).
#[utoipa::path(get, path = "/integrations/{id}/events", tag = "integrations", security(()),
    params(("id" = String, Path), ("hub.mode" = Option<String>, Query), ("hub.verify_token" = Option<String>, Query),
        ("hub.challenge" = Option<String>, Query)),
    responses((status = 200, description = "The challenge, as text", content_type = "text/plain", body = String),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn verify_callback_url(
    State(app): State<AppState>,
    Path(id): Path<String>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> ApiResult<Response> {
    receive(&app, &id, &Method::GET, &uri, &headers, &Bytes::new()).await?.into_response()
}

#[derive(Serialize, ToSchema)]
pub struct EventAccepted {
    success: bool,
}

/// What a callback came to.
enum Received {
    Applied(Vec<EventOutcome>),
    Challenge(String),
}

impl Received {
    fn into_response(self) -> ApiResult<Response> {
        match self {
            Received::Challenge(text) => Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()),
            Received::Applied(outcomes) if outcomes.contains(&EventOutcome::UnknownAttempt) => {
                Err(ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "attempt not found for this integration"))
            }
            Received::Applied(_) => Ok(Json(EventAccepted { success: true }).into_response()),
        }
    }
}

/// An unknown integration and a bad signature answer alike: neither reveals which ids exist.
fn bad_signature(detail: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", format!("missing or invalid signature: {detail}"))
}

const GENERIC_SIGNATURE: &str = "X-Outbound-Signature must be base64(HMAC-SHA256(base64-decoded integration secret, raw body))";

/// Checks a callback's signature and body and applies its events; `Err` for one refused before
/// the store.
async fn receive(
    app: &AppState,
    id: &str,
    method: &Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> ApiResult<Received> {
    if !is_integration_id(id) {
        return Err(bad_signature(GENERIC_SIGNATURE));
    }
    let integration = app.callbacks.callback_integration(id).await?.ok_or_else(|| bad_signature(GENERIC_SIGNATURE))?;
    if let Some(signature) = headers.get("x-outbound-signature") {
        if method != Method::POST || !signature.to_str().is_ok_and(|s| verify_signature(&integration.secret, body, s)) {
            return Err(bad_signature(GENERIC_SIGNATURE));
        }
        return receive_generic(app, &integration, headers, body).await;
    }
    receive_native(app, &integration, method, uri, headers, body).await
}

async fn receive_generic(app: &AppState, integration: &Integration, headers: &HeaderMap, body: &Bytes) -> ApiResult<Received> {
    let is_json = headers.get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            "the request body must be JSON with Content-Type: application/json",
        ));
    }
    let event = parse_event(parse_json::<EventInput>(body)?, integration.channel)?;
    let outcomes = app.callbacks.apply_integration_events(&integration.id, vec![event], app.clock.now(), app.settings.retry).await?;
    Ok(Received::Applied(outcomes))
}

/// A callback in the provider's own format. Events about attempts Outbound does not know are
/// acknowledged and dropped (a provider would otherwise retry them for a day).
async fn receive_native(
    app: &AppState,
    integration: &Integration,
    method: &Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> ApiResult<Received> {
    // Without its credentials the provider's signature cannot be checked: nothing is taken.
    let connector = providers::connect(&integration.config, app.settings.keyring.opening_key(), &app.providers_http)
        .map_err(|reason| bad_signature(&format!("this integration's credentials cannot be read ({reason}); re-enter them")))?;
    let query: Vec<(String, String)> =
        uri.query().map(|q| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default();
    let public = app.settings.public_url.trim_end_matches('/');
    let url = match uri.query() {
        Some(query) => format!("{public}{}?{query}", uri.path()),
        None => format!("{public}{}", uri.path()),
    };
    let request = Callback { method, url: &url, query: &query, headers, body, now: app.clock.now() };
    let reply = match connector.callback(&request) {
        None => return Err(bad_signature(GENERIC_SIGNATURE)),
        Some(Err(CallbackError::BadSignature)) => return Err(bad_signature("the provider's signature does not match this integration")),
        Some(Err(CallbackError::Forbidden)) => {
            return Err(ApiError::new(StatusCode::FORBIDDEN, "FORBIDDEN", "the verification token does not match this integration"));
        }
        Some(Err(CallbackError::Invalid(message))) => return Err(ApiError::new(StatusCode::BAD_REQUEST, "INVALID_REQUEST", message)),
        Some(Ok(reply)) => reply,
    };
    let (events, inbound, broken) = match reply {
        CallbackReply::Challenge(text) => return Ok(Received::Challenge(text)),
        CallbackReply::Events { events, inbound, broken } => (events, inbound, broken),
    };
    let now = app.clock.now();
    if let Some(reason) = broken {
        app.callbacks.mark_integration_failing(&integration.id, &reason, now).await?;
    }
    let mut provider_ids: Vec<String> = events.iter().filter_map(|e| e.provider_id.clone()).collect();
    provider_ids.extend(inbound.iter().filter_map(|text| text.reply_to.clone()));
    let known = if provider_ids.is_empty() {
        Default::default()
    } else {
        app.callbacks.attempts_by_provider_id(&integration.id, &provider_ids).await?
    };
    if !inbound.is_empty() {
        let texts = inbound
            .into_iter()
            .map(|text| InboundMessage {
                attempt_id: text.reply_to.as_ref().and_then(|id| known.get(id)).cloned(),
                sender: text.from,
                body: text.text,
                received_at: text.at.unwrap_or(now),
            })
            .collect();
        app.callbacks.record_inbound(&integration.id, texts).await?;
    }
    // Matched by the provider's id first, then by the attempt id the provider echoed.
    let mut held = Vec::new();
    let mut final_events = Vec::new();
    for mut found in events {
        if let Some(attempt_id) = found.provider_id.as_ref().and_then(|p| known.get(p)) {
            found.event.attempt_id = attempt_id.clone();
        }
        if found.event.attempt_id.is_empty() {
            continue;
        }
        match found.provisional {
            Some(wait) => held.push(HeldEvent { event: found.event, until: now.saturating_add(wait).unwrap_or(now) }),
            None => final_events.push(found.event),
        }
    }
    if !held.is_empty() {
        app.callbacks.hold_events(&integration.id, held).await?;
    }
    if final_events.is_empty() {
        return Ok(Received::Applied(Vec::new()));
    }
    let events = final_events;
    let outcomes = app.callbacks.apply_integration_events(&integration.id, events, app.clock.now(), app.settings.retry).await?;
    Ok(Received::Applied(outcomes.into_iter().filter(|o| *o != EventOutcome::UnknownAttempt).collect()))
}
