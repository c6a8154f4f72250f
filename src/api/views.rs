//! Small response shapes shared by several endpoints.

use jiff::Timestamp;
use jiff::fmt::temporal::DateTimePrinter;
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::campaign::{AgentRef, Channel, IntegrationRef};

/// RFC 3339 in UTC with `Z`, whole seconds (`2026-06-08T18:00:00Z`).
pub fn format_time(at: Timestamp) -> String {
    // The RFC 3339 printer, not `strftime`: no format string to interpret on every response.
    const WHOLE_SECONDS: DateTimePrinter = DateTimePrinter::new().precision(Some(0));
    WHOLE_SECONDS.timestamp_to_string(&at)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc_3339_in_utc_to_the_second() {
        let at = |text: &str| text.parse::<Timestamp>().expect("a timestamp");
        assert_eq!(format_time(at("2026-06-08T18:00:00Z")), "2026-06-08T18:00:00Z");
        assert_eq!(format_time(at("2026-06-08T18:00:59.999999999Z")), "2026-06-08T18:00:59Z", "a fraction is cut, not rounded");
        assert_eq!(format_time(at("2026-06-08T20:30:05+02:00")), "2026-06-08T18:30:05Z");
        assert_eq!(format_time(at("1970-01-01T00:00:00Z")), "1970-01-01T00:00:00Z");
    }
}
