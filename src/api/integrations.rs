//! Integrations (§1): create (the signing secret is shown this once), list, retrieve.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{JsonBody, Tenant};
use super::idempotency::{Recording, Reply};
use super::views::format_time;
use crate::domain::campaign::Channel;
use crate::domain::ids::is_integration_id;
use crate::domain::integration::{Integration, IntegrationInput, Provider, ProviderConfig, parse_new_integration};

#[derive(Serialize, ToSchema)]
pub struct IntegrationView {
    id: String,
    #[serde(rename = "type")]
    channel: Channel,
    #[schema(format = Uuid)]
    agent_id: String,
    provider: Provider,
    config: ProviderConfig,
    #[schema(format = DateTime)]
    created_at: String,
    /// Base64 HMAC-SHA256 key for event signatures; present only in the create response.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

impl IntegrationView {
    fn new(integration: &Integration, show_secret: bool) -> Self {
        IntegrationView {
            id: integration.id.clone(),
            channel: integration.channel,
            agent_id: integration.agent_id.to_string(),
            provider: integration.provider,
            config: integration.config.clone(),
            created_at: format_time(integration.created_at),
            secret: show_secret.then(|| integration.secret.clone()),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct IntegrationResponse {
    success: bool,
    integration: IntegrationView,
}

#[derive(Serialize, ToSchema)]
pub struct IntegrationListResponse {
    success: bool,
    total_count: usize,
    integrations: Vec<IntegrationView>,
}

/// Create an integration for an agent.
#[utoipa::path(post, path = "/integrations", tag = "integrations", request_body = IntegrationInput,
    responses((status = 201, body = IntegrationResponse), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn create_integration(
    State(app): State<AppState>,
    tenant: Tenant,
    recording: Recording,
    JsonBody(input): JsonBody<IntegrationInput>,
) -> ApiResult<Reply> {
    let new = parse_new_integration(&input).map_err(ApiError::violations)?;
    if app.store.get_agent(tenant.org_id, new.agent_id).await?.is_none() {
        return Err(
            ApiError::new(StatusCode::NOT_FOUND, "AGENT_NOT_FOUND", format!("agent {} not found", new.agent_id)).with_field("agent_id")
        );
    }
    recording.respond(created_reply, |record| app.store.create_integration(tenant.org_id, new, app.clock.now(), record)).await
}

fn created_reply(integration: &Integration) -> Reply {
    Reply::json(StatusCode::CREATED, &IntegrationResponse { success: true, integration: IntegrationView::new(integration, true) })
}

/// List the organization's integrations, oldest first (without secrets).
#[utoipa::path(get, path = "/integrations", tag = "integrations", responses((status = 200, body = IntegrationListResponse)))]
pub async fn list_integrations(State(app): State<AppState>, tenant: Tenant) -> ApiResult<Json<IntegrationListResponse>> {
    let integrations = app.store.list_integrations(tenant.org_id).await?;
    Ok(Json(IntegrationListResponse {
        success: true,
        total_count: integrations.len(),
        integrations: integrations.iter().map(|i| IntegrationView::new(i, false)).collect(),
    }))
}

/// Retrieve an integration (without its secret).
#[utoipa::path(get, path = "/integrations/{id}", tag = "integrations", params(("id" = String, Path)),
    responses((status = 200, body = IntegrationResponse), (status = 404, body = ErrorBody)))]
pub async fn get_integration(State(app): State<AppState>, tenant: Tenant, Path(id): Path<String>) -> ApiResult<Json<IntegrationResponse>> {
    if !is_integration_id(&id) {
        return Err(ApiError::not_found("integration"));
    }
    let integration = app.store.get_integration(tenant.org_id, &id).await?.ok_or_else(|| ApiError::not_found("integration"))?;
    Ok(Json(IntegrationResponse { success: true, integration: IntegrationView::new(&integration, false) }))
}
