//! Integrations (§1, PROVIDERS.md §1): create (the signing secret is shown this once), list,
//! retrieve, and PATCH a provider's config (credential rotation). Credentials are sealed before
//! they are stored and shown masked.

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
use crate::domain::integration::{
    Health, Integration, IntegrationInput, IntegrationPatch, PatchRefusal, Provider, ProviderConfig, parse_integration_patch,
    parse_new_integration,
};
use crate::providers::keyring::KeyringError;
use crate::store::{OrgId, ResponseRecorder};

#[derive(Serialize, ToSchema)]
pub struct IntegrationView {
    id: String,
    #[serde(rename = "type")]
    channel: Channel,
    #[schema(format = Uuid)]
    agent_id: String,
    provider: Provider,
    /// The provider's config with defaults filled in; credentials masked (`••••••••` and their
    /// last four characters).
    #[schema(value_type = ProviderConfig)]
    config: serde_json::Value,
    /// Where the provider posts its callbacks (give it to Twilio, Meta, …).
    callback_url: String,
    health: HealthView,
    #[schema(format = DateTime)]
    created_at: String,
    /// Base64 HMAC-SHA256 key for event signatures; present only in the create response.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

/// Whether the integration's dispatch runs: `failing` after an error that shows the integration
/// itself is broken (bad credentials, suspended account), until its config is patched.
#[derive(Serialize, ToSchema)]
pub struct HealthView {
    status: HealthStatus,
    /// What the provider said, when failing.
    #[schema(required = true)]
    reason: Option<String>,
    #[schema(required = true, format = DateTime)]
    since: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    Ok,
    Failing,
}

impl IntegrationView {
    fn new(integration: &Integration, show_secret: bool, public_url: &str) -> Self {
        let health = match &integration.health {
            Health::Ok => HealthView { status: HealthStatus::Ok, reason: None, since: None },
            Health::Failing { reason, since } => {
                HealthView { status: HealthStatus::Failing, reason: Some(reason.clone()), since: Some(format_time(*since)) }
            }
        };
        IntegrationView {
            id: integration.id.clone(),
            channel: integration.channel,
            agent_id: integration.agent_id.to_string(),
            provider: integration.provider,
            config: integration.config.masked(),
            callback_url: callback_url(public_url, &integration.id),
            health,
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

/// Seals the config's plain credentials; a 400 naming `OUTBOUND_SECRET_KEY` when there is no key.
fn sealed(app: &AppState, config: ProviderConfig) -> ApiResult<ProviderConfig> {
    if !config.needs_sealing() {
        return Ok(config);
    }
    match app.settings.keyring.sealing_key() {
        Ok(key) => Ok(config.seal(key)),
        Err(err @ KeyringError::Missing) => Err(ApiError::invalid("config", err.to_string())),
        Err(err) => {
            tracing::error!(error = %err, "cannot seal provider credentials");
            Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "SERVER_ERROR", "credentials cannot be stored: see the server's log"))
        }
    }
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
    let public_url = app.settings.public_url.clone();
    recording
        .respond(move |integration| created_reply(integration, &public_url), |record| create(&app, tenant.org_id, &input, record))
        .await
}

/// Checks a new integration (its agent must be the organization's), seals its credentials and
/// stores it: the API's create and the dashboard's form both come here.
pub(crate) async fn create(
    app: &AppState,
    org: OrgId,
    input: &IntegrationInput,
    record: Option<ResponseRecorder<Integration>>,
) -> ApiResult<Integration> {
    let mut new = parse_new_integration(input).map_err(ApiError::violations)?;
    if app.store.get_agent(org, new.agent_id).await?.is_none() {
        return Err(
            ApiError::new(StatusCode::NOT_FOUND, "AGENT_NOT_FOUND", format!("agent {} not found", new.agent_id)).with_field("agent_id")
        );
    }
    new.config = sealed(app, new.config)?;
    Ok(app.store.create_integration(org, new, app.clock.now(), record).await?)
}

fn created_reply(integration: &Integration, public_url: &str) -> Reply {
    Reply::json(
        StatusCode::CREATED,
        &IntegrationResponse { success: true, integration: IntegrationView::new(integration, true, public_url) },
    )
}

/// List the organization's integrations, oldest first (without secrets).
#[utoipa::path(get, path = "/integrations", tag = "integrations", responses((status = 200, body = IntegrationListResponse)))]
pub async fn list_integrations(State(app): State<AppState>, tenant: Tenant) -> ApiResult<Json<IntegrationListResponse>> {
    let integrations = app.store.list_integrations(tenant.org_id).await?;
    Ok(Json(IntegrationListResponse {
        success: true,
        total_count: integrations.len(),
        integrations: integrations.iter().map(|i| IntegrationView::new(i, false, &app.settings.public_url)).collect(),
    }))
}

/// Retrieve an integration (without its secret).
#[utoipa::path(get, path = "/integrations/{id}", tag = "integrations", params(("id" = String, Path)),
    responses((status = 200, body = IntegrationResponse), (status = 404, body = ErrorBody)))]
pub async fn get_integration(State(app): State<AppState>, tenant: Tenant, Path(id): Path<String>) -> ApiResult<Json<IntegrationResponse>> {
    let integration = find(&app, tenant.org_id, &id).await?;
    Ok(Json(IntegrationResponse { success: true, integration: IntegrationView::new(&integration, false, &app.settings.public_url) }))
}

/// The organization's integration with this id; 404 when there is none (or `id` cannot be one).
pub(crate) async fn find(app: &AppState, org: OrgId, id: &str) -> ApiResult<Integration> {
    if !is_integration_id(id) {
        return Err(ApiError::not_found("integration"));
    }
    app.store.get_integration(org, id).await?.ok_or_else(|| ApiError::not_found("integration"))
}

/// Where the provider posts its callbacks for this integration (PROVIDERS.md §1).
pub fn callback_url(public_url: &str, id: &str) -> String {
    format!("{}/api/v1.0/integrations/{id}/events", public_url.trim_end_matches('/'))
}

/// Replace an integration's config (a credential left out keeps its stored value, so a rotation
/// sends only the new one with the rest); resets a `failing` health. `type`, `provider` and
/// `agent_id` are immutable.
#[utoipa::path(patch, path = "/integrations/{id}", tag = "integrations", params(("id" = String, Path)), request_body = IntegrationPatch,
    responses((status = 200, body = IntegrationResponse), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_integration(
    State(app): State<AppState>,
    tenant: Tenant,
    Path(id): Path<String>,
    JsonBody(patch): JsonBody<IntegrationPatch>,
) -> ApiResult<Json<IntegrationResponse>> {
    let integration = update(&app, tenant.org_id, &id, &patch).await?;
    Ok(Json(IntegrationResponse { success: true, integration: IntegrationView::new(&integration, false, &app.settings.public_url) }))
}

/// Applies a PATCH (PROVIDERS.md §1): the API's and the dashboard's edit both come here.
pub(crate) async fn update(app: &AppState, org: OrgId, id: &str, patch: &IntegrationPatch) -> ApiResult<Integration> {
    let current = find(app, org, id).await?;
    let config = match parse_integration_patch(&current, patch) {
        Ok(Some(config)) => sealed(app, config)?,
        Ok(None) => current.config.clone(),
        Err(PatchRefusal::Immutable(field)) => {
            return Err(ApiError::new(StatusCode::BAD_REQUEST, "IMMUTABLE_FIELD", format!("{field} cannot be changed")).with_field(field));
        }
        Err(PatchRefusal::Invalid(violations)) => return Err(ApiError::violations(violations)),
    };
    app.store.update_integration(org, id, config).await?.ok_or_else(|| ApiError::not_found("integration"))
}
