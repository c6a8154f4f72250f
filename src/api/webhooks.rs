//! Webhook subscriptions (§8.1) and their deliveries log (§8.2): create (the secret is shown this
//! once), list, retrieve, change, delete, rotate the secret, send a test event, retry a failed
//! delivery.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;
use serde_json::value::RawValue;
use utoipa::ToSchema;

use super::AppState;
use super::attempts::PagePosition;
use super::contacts::parse_offset_paging;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{JsonBody, QueryParams, Tenant};
use super::idempotency::{Recording, Reply};
use super::views::format_time;
use crate::domain::ids::new_signing_secret;
use crate::domain::webhook::{
    DeliveryStatus, EventType, Webhook, WebhookFilters, WebhookInput, delivery_public_id, is_webhook_id, parse_delivery_id,
    parse_new_webhook, parse_webhook_change,
};
use crate::store::{Delivery, DeliveryPage, OrgId, ResponseRecorder, RetryOutcome};
use crate::webhooks::payload;

#[derive(Serialize, ToSchema)]
pub struct WebhookView {
    #[schema(pattern = "^whk_[0-9A-Za-z]{20}$")]
    id: String,
    url: String,
    events: Vec<EventType>,
    #[schema(required = true)]
    filters: Option<WebhookFilters>,
    #[schema(required = true)]
    description: Option<String>,
    enabled: bool,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
    /// Base64 of the 32-byte HMAC key both signatures use; present only when created and rotated.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    secret: Option<String>,
}

impl WebhookView {
    fn new(webhook: &Webhook, show_secret: bool) -> Self {
        WebhookView {
            id: webhook.id.clone(),
            url: webhook.url.clone(),
            events: webhook.events.clone(),
            filters: webhook.filters.clone(),
            description: webhook.description.clone(),
            enabled: webhook.enabled,
            created_at: format_time(webhook.created_at),
            updated_at: format_time(webhook.updated_at),
            secret: show_secret.then(|| webhook.secret.clone()),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct WebhookResponse {
    success: bool,
    webhook: WebhookView,
}

#[derive(Serialize, ToSchema)]
pub struct WebhookListResponse {
    success: bool,
    total_count: i64,
    webhooks: Vec<WebhookView>,
    pagination: PagePosition,
}

#[derive(Serialize, ToSchema)]
pub struct TestEventResponse {
    success: bool,
    #[schema(pattern = "^evt_[0-9A-Za-z]{20}$")]
    event_id: String,
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryView {
    #[schema(pattern = "^dlv_[0-9]+$")]
    id: String,
    event_id: String,
    event_type: EventType,
    status: DeliveryStatus,
    attempts: i64,
    #[schema(required = true)]
    last_status_code: Option<i64>,
    /// `receiver answered <code>`, `timeout`, `connection_failed`, `private_address`, … when the
    /// last attempt failed.
    #[schema(required = true)]
    last_error: Option<String>,
    #[schema(required = true, format = DateTime)]
    next_attempt_at: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(required = true, format = DateTime)]
    delivered_at: Option<String>,
    /// The event: as sent, or, for a call's or message's event, as it is sent now (rendered from
    /// the call or message); `null` when that call or message no longer exists.
    #[schema(required = true, value_type = Option<Object>)]
    payload: Option<Box<RawValue>>,
}

impl From<Delivery> for DeliveryView {
    fn from(d: Delivery) -> Self {
        let payload = payload::body(&d.event, &d.body).and_then(|text| RawValue::from_string(text).ok());
        DeliveryView {
            id: delivery_public_id(d.id),
            event_id: d.event.event_id,
            event_type: d.event.event_type,
            status: d.status,
            attempts: d.attempts,
            last_status_code: d.last_status_code,
            last_error: d.last_error,
            next_attempt_at: d.next_attempt_at.filter(|_| d.status == DeliveryStatus::Pending).map(format_time),
            created_at: format_time(d.event.occurred_at),
            delivered_at: d.delivered_at.map(format_time),
            payload,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryListResponse {
    success: bool,
    total_count: i64,
    deliveries: Vec<DeliveryView>,
    pagination: PagePosition,
}

#[derive(Serialize, ToSchema)]
pub struct RetryResponse {
    success: bool,
}

/// The subscription id of a path, or 404 when it cannot be one.
fn webhook_id(raw: &str) -> ApiResult<&str> {
    if is_webhook_id(raw) { Ok(raw) } else { Err(not_found()) }
}

fn not_found() -> ApiError {
    ApiError::not_found("webhook")
}

/// Subscribe an endpoint to events.
#[utoipa::path(post, path = "/webhooks", tag = "webhooks", request_body = WebhookInput,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retried request safe (§7)")),
    responses((status = 201, body = WebhookResponse), (status = 400, body = ErrorBody)))]
pub async fn create_webhook(
    State(app): State<AppState>,
    tenant: Tenant,
    recording: Recording,
    JsonBody(input): JsonBody<WebhookInput>,
) -> ApiResult<Reply> {
    recording.respond(created_reply, |record| create(&app, tenant.org_id, &input, record)).await
}

/// Checks a new subscription and stores it with a new secret: the API's create and the
/// dashboard's form both come here.
pub(crate) async fn create(
    app: &AppState,
    org: OrgId,
    input: &WebhookInput,
    record: Option<ResponseRecorder<Webhook>>,
) -> ApiResult<Webhook> {
    let new = parse_new_webhook(input, app.settings.webhooks.allow_private).map_err(ApiError::violations)?;
    Ok(app.webhooks.create_webhook(org, new.create(app.clock.now()), record).await?)
}

fn created_reply(webhook: &Webhook) -> Reply {
    Reply::json(StatusCode::CREATED, &WebhookResponse { success: true, webhook: WebhookView::new(webhook, true) })
}

/// List the organization's subscriptions, newest first (without secrets).
#[utoipa::path(get, path = "/webhooks", tag = "webhooks",
    params(("pageSize" = Option<u32>, Query, description = "1–100, default 50"), ("pageIndex" = Option<u32>, Query, description = "0–25000, default 0")),
    responses((status = 200, body = WebhookListResponse), (status = 400, body = ErrorBody)))]
pub async fn list_webhooks(State(app): State<AppState>, tenant: Tenant, query: QueryParams) -> ApiResult<Json<WebhookListResponse>> {
    query.check(&["pageSize", "pageIndex"])?;
    let (page_size, page_index) = parse_offset_paging(&query)?;
    let page = app.webhooks.list_webhooks(tenant.org_id, page_size, page_index).await?;
    Ok(Json(WebhookListResponse {
        success: true,
        total_count: page.total_count,
        webhooks: page.webhooks.iter().map(|w| WebhookView::new(w, false)).collect(),
        pagination: PagePosition::new(page.total_count, page_size, page_index),
    }))
}

/// Retrieve a subscription (without its secret).
#[utoipa::path(get, path = "/webhooks/{id}", tag = "webhooks", params(("id" = String, Path)),
    responses((status = 200, body = WebhookResponse), (status = 404, body = ErrorBody)))]
pub async fn get_webhook(State(app): State<AppState>, tenant: Tenant, Path(id): Path<String>) -> ApiResult<Json<WebhookResponse>> {
    let webhook = find(&app, tenant.org_id, &id).await?;
    Ok(Json(WebhookResponse { success: true, webhook: WebhookView::new(&webhook, false) }))
}

/// The organization's subscription with this id; 404 when there is none.
pub(crate) async fn find(app: &AppState, org: OrgId, id: &str) -> ApiResult<Webhook> {
    app.webhooks.get_webhook(org, webhook_id(id)?).await?.ok_or_else(not_found)
}

/// Change a subscription's `url`, `events`, `filters`, `description` or `enabled`.
#[utoipa::path(patch, path = "/webhooks/{id}", tag = "webhooks", params(("id" = String, Path)), request_body = WebhookInput,
    responses((status = 200, body = WebhookResponse), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_webhook(
    State(app): State<AppState>,
    tenant: Tenant,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<WebhookInput>,
) -> ApiResult<Json<WebhookResponse>> {
    let id = webhook_id(&id)?;
    let change = parse_webhook_change(&input, app.settings.webhooks.allow_private).map_err(ApiError::violations)?;
    let webhook = app.webhooks.update_webhook(tenant.org_id, id, change, app.clock.now()).await?.ok_or_else(not_found)?;
    Ok(Json(WebhookResponse { success: true, webhook: WebhookView::new(&webhook, false) }))
}

/// Delete a subscription; its pending deliveries are dropped.
#[utoipa::path(delete, path = "/webhooks/{id}", tag = "webhooks", params(("id" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody)))]
pub async fn delete_webhook(State(app): State<AppState>, tenant: Tenant, Path(id): Path<String>) -> ApiResult<StatusCode> {
    delete(&app, tenant.org_id, &id).await.map(|()| StatusCode::NO_CONTENT)
}

/// Deletes a subscription (its pending deliveries are dropped); 404 when there is none.
pub(crate) async fn delete(app: &AppState, org: OrgId, id: &str) -> ApiResult<()> {
    if app.webhooks.delete_webhook(org, webhook_id(id)?).await? { Ok(()) } else { Err(not_found()) }
}

/// Give a subscription a new secret: events created from now on are signed with it.
#[utoipa::path(post, path = "/webhooks/{id}/rotate-secret", tag = "webhooks",
    params(("id" = String, Path), ("Idempotency-Key" = Option<String>, Header, description = "Makes a retried request safe (§7)")),
    responses((status = 200, body = WebhookResponse), (status = 404, body = ErrorBody)))]
pub async fn rotate_secret(State(app): State<AppState>, tenant: Tenant, recording: Recording, Path(id): Path<String>) -> ApiResult<Reply> {
    let id = webhook_id(&id)?;
    let (secret, now) = (new_signing_secret(), app.clock.now());
    recording.respond(rotated_reply, |record| app.webhooks.rotate_webhook_secret(tenant.org_id, id, secret, now, record)).await
}

fn rotated_reply(webhook: &Option<Webhook>) -> Reply {
    match webhook {
        Some(webhook) => Reply::json(StatusCode::OK, &WebhookResponse { success: true, webhook: WebhookView::new(webhook, true) }),
        None => not_found().into_reply(),
    }
}

/// Queue a `webhook.test` event to this subscription only.
#[utoipa::path(post, path = "/webhooks/{id}/test", tag = "webhooks",
    params(("id" = String, Path), ("Idempotency-Key" = Option<String>, Header, description = "Makes a retried request safe (§7)")),
    responses((status = 200, body = TestEventResponse), (status = 404, body = ErrorBody)))]
pub async fn test_webhook(State(app): State<AppState>, tenant: Tenant, recording: Recording, Path(id): Path<String>) -> ApiResult<Reply> {
    recording.respond(tested_reply, |record| send_test(&app, tenant.org_id, &id, record)).await
}

/// Queues a `webhook.test` event to this subscription only: its event id, `None` when there is
/// no such subscription (the reply, recorded with an Idempotency-Key, is then the 404).
pub(crate) async fn send_test(
    app: &AppState,
    org: OrgId,
    id: &str,
    record: Option<ResponseRecorder<Option<String>>>,
) -> ApiResult<Option<String>> {
    Ok(app.webhooks.queue_test_event(org, webhook_id(id)?, app.clock.now(), record).await?)
}

fn tested_reply(event_id: &Option<String>) -> Reply {
    match event_id {
        Some(event_id) => Reply::json(StatusCode::OK, &TestEventResponse { success: true, event_id: event_id.clone() }),
        None => not_found().into_reply(),
    }
}

/// A subscription's deliveries, newest first; kept 30 days.
#[utoipa::path(get, path = "/webhooks/{id}/deliveries", tag = "webhooks",
    params(("id" = String, Path), ("status" = Option<DeliveryStatus>, Query),
        ("pageSize" = Option<u32>, Query, description = "1–100, default 50"), ("pageIndex" = Option<u32>, Query, description = "0–25000, default 0")),
    responses((status = 200, body = DeliveryListResponse), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_deliveries(
    State(app): State<AppState>,
    tenant: Tenant,
    Path(id): Path<String>,
    query: QueryParams,
) -> ApiResult<Json<DeliveryListResponse>> {
    webhook_id(&id)?;
    query.check(&["status", "pageSize", "pageIndex"])?;
    let status = match query.get("status") {
        None => None,
        Some(raw) => Some(
            DeliveryStatus::parse(raw)
                .ok_or_else(|| ApiError::invalid("status", format!("status must be one of pending, delivered, failed, got {raw:?}")))?,
        ),
    };
    let (page_size, page_index) = parse_offset_paging(&query)?;
    let page = deliveries(&app, tenant.org_id, &id, status, page_size, page_index).await?;
    Ok(Json(DeliveryListResponse {
        success: true,
        total_count: page.total_count,
        deliveries: page.deliveries.into_iter().map(DeliveryView::from).collect(),
        pagination: PagePosition::new(page.total_count, page_size, page_index),
    }))
}

/// A page of a subscription's deliveries, newest first; 404 when there is no such subscription.
pub(crate) async fn deliveries(
    app: &AppState,
    org: OrgId,
    id: &str,
    status: Option<DeliveryStatus>,
    page_size: u32,
    page_index: u32,
) -> ApiResult<DeliveryPage> {
    app.webhooks.list_deliveries(org, webhook_id(id)?, status, page_size, page_index).await?.ok_or_else(not_found)
}

/// Send a failed delivery again at once: one more attempt, same `event_id`.
#[utoipa::path(post, path = "/webhooks/{id}/deliveries/{delivery_id}/retry", tag = "webhooks",
    params(("id" = String, Path), ("delivery_id" = String, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes a retried request safe (§7)")),
    responses((status = 202, body = RetryResponse), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn retry_delivery(
    State(app): State<AppState>,
    tenant: Tenant,
    recording: Recording,
    Path((id, delivery_id)): Path<(String, String)>,
) -> ApiResult<Reply> {
    recording.respond(retried_reply, |record| retry(&app, tenant.org_id, &id, &delivery_id, record)).await
}

/// Makes a failed delivery due at once for one more attempt: the outcome, which
/// [`retry_refusal`] turns into the API's error when it was not retried.
pub(crate) async fn retry(
    app: &AppState,
    org: OrgId,
    id: &str,
    delivery_id: &str,
    record: Option<ResponseRecorder<RetryOutcome>>,
) -> ApiResult<RetryOutcome> {
    let id = webhook_id(id)?;
    let delivery_id = parse_delivery_id(delivery_id).ok_or_else(delivery_not_found)?;
    Ok(app.webhooks.retry_delivery(org, id, delivery_id, app.clock.now(), record).await?)
}

fn delivery_not_found() -> ApiError {
    ApiError::not_found("delivery")
}

fn retried_reply(outcome: &RetryOutcome) -> Reply {
    match retry_refusal(outcome) {
        None => Reply::json(StatusCode::ACCEPTED, &RetryResponse { success: true }),
        Some(error) => error.into_reply(),
    }
}

/// Why a delivery was not retried, as the API answers it; `None` when it was.
pub(crate) fn retry_refusal(outcome: &RetryOutcome) -> Option<ApiError> {
    match outcome {
        RetryOutcome::Retried => None,
        RetryOutcome::NotFailed(status) => Some(ApiError::new(
            StatusCode::CONFLICT,
            "INVALID_STATUS_TRANSITION",
            format!("only a failed delivery can be retried; this one is {}", status.as_str()),
        )),
        RetryOutcome::NotFound => Some(delivery_not_found()),
    }
}
