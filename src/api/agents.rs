//! Agents (§1): create, list, retrieve.

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
use crate::domain::agent::{Agent, AgentInput, parse_agent_name};
use crate::store::{OrgId, ResponseRecorder};

#[derive(Serialize, ToSchema)]
pub struct AgentView {
    #[schema(format = Uuid)]
    id: String,
    name: String,
    #[schema(format = DateTime)]
    created_at: String,
}

impl From<&Agent> for AgentView {
    fn from(agent: &Agent) -> Self {
        AgentView { id: agent.id.to_string(), name: agent.name.clone(), created_at: format_time(agent.created_at) }
    }
}

#[derive(Serialize, ToSchema)]
pub struct AgentResponse {
    success: bool,
    agent: AgentView,
}

#[derive(Serialize, ToSchema)]
pub struct AgentListResponse {
    success: bool,
    total_count: usize,
    agents: Vec<AgentView>,
}

/// Create an agent.
#[utoipa::path(post, path = "/agents", tag = "agents", request_body = AgentInput,
    responses((status = 201, body = AgentResponse), (status = 400, body = ErrorBody)))]
pub async fn create_agent(
    State(app): State<AppState>,
    tenant: Tenant,
    recording: Recording,
    JsonBody(input): JsonBody<AgentInput>,
) -> ApiResult<Reply> {
    recording.respond(created_reply, |record| create(&app, tenant.org_id, &input, record)).await
}

/// Checks a new agent and stores it: the API's create and the dashboard's form both come here,
/// so the rule lives once.
pub(crate) async fn create(app: &AppState, org: OrgId, input: &AgentInput, record: Option<ResponseRecorder<Agent>>) -> ApiResult<Agent> {
    let name = parse_agent_name(input).map_err(|v| ApiError::violations(vec![v]))?;
    Ok(app.store.create_agent(org, &name, app.clock.now(), record).await?)
}

fn created_reply(agent: &Agent) -> Reply {
    Reply::json(StatusCode::CREATED, &AgentResponse { success: true, agent: AgentView::from(agent) })
}

/// List the organization's agents, oldest first.
#[utoipa::path(get, path = "/agents", tag = "agents", responses((status = 200, body = AgentListResponse)))]
pub async fn list_agents(State(app): State<AppState>, tenant: Tenant) -> ApiResult<Json<AgentListResponse>> {
    let agents = app.store.list_agents(tenant.org_id).await?;
    Ok(Json(AgentListResponse { success: true, total_count: agents.len(), agents: agents.iter().map(AgentView::from).collect() }))
}

/// Retrieve an agent.
#[utoipa::path(get, path = "/agents/{id}", tag = "agents", params(("id" = String, Path, format = Uuid)),
    responses((status = 200, body = AgentResponse), (status = 404, body = ErrorBody)))]
pub async fn get_agent(State(app): State<AppState>, tenant: Tenant, Path(id): Path<String>) -> ApiResult<Json<AgentResponse>> {
    let not_found = || ApiError::not_found("agent");
    let id = uuid::Uuid::parse_str(&id).map_err(|_| not_found())?;
    let agent = app.store.get_agent(tenant.org_id, id).await?.ok_or_else(not_found)?;
    Ok(Json(AgentResponse { success: true, agent: AgentView::from(&agent) }))
}
