//! Agents: the AI persona a campaign speaks as (§1).

use jiff::Timestamp;
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::validation::{self, Field, Violation};

#[derive(Debug, Clone, PartialEq)]
pub struct Agent {
    pub id: Uuid,
    pub name: String,
    pub created_at: Timestamp,
}

impl Agent {
    /// A new agent, created at `at` (whole seconds, the precision resources keep).
    pub fn new(name: String, at: Timestamp) -> Agent {
        Agent { id: Uuid::new_v4(), name, created_at: super::whole_seconds(at) }
    }
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentInput {
    #[serde(default)]
    #[schema(value_type = String, required = true, min_length = 1, max_length = 255, pattern = r"^[^\u0000]*\S[^\u0000]*$", example = "Sales bot")]
    pub name: Field<String>,
}

/// Validates a create-agent request and returns the trimmed name.
pub fn parse_agent_name(input: &AgentInput) -> Result<String, Violation> {
    validation::required("name", &input.name).and_then(|name| validation::text("name", name, 1, 255))
}
