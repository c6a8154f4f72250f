//! Small response shapes shared by several endpoints.

use jiff::Timestamp;
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::campaign::{AgentRef, Channel, IntegrationRef};

/// RFC 3339 in UTC with `Z`, whole seconds (`2026-06-08T18:00:00Z`).
pub fn format_time(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[derive(Serialize, ToSchema)]
pub struct AgentRefView {
    #[schema(format = Uuid)]
    pub id: String,
    pub name: String,
}

impl From<&AgentRef> for AgentRefView {
    fn from(agent: &AgentRef) -> Self {
        AgentRefView { id: agent.id.to_string(), name: agent.name.clone() }
    }
}

#[derive(Serialize, ToSchema)]
pub struct IntegrationRefView {
    pub id: String,
    #[serde(rename = "type")]
    pub channel: Channel,
}

impl From<&IntegrationRef> for IntegrationRefView {
    fn from(integration: &IntegrationRef) -> Self {
        IntegrationRefView { id: integration.id.clone(), channel: integration.channel }
    }
}
