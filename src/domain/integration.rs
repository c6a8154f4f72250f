//! Integrations: the channel and provider an agent reaches contacts through (§1, §5.3).

use jiff::Timestamp;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::campaign::Channel;
use super::validation::{self, Field, Violation, Violations, WholeNumber, whole_number};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    Simulator,
    Webhook,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Simulator => "simulator",
            Provider::Webhook => "webhook",
        }
    }

    pub fn parse(text: &str) -> Option<Provider> {
        match text {
            "simulator" => Some(Provider::Simulator),
            "webhook" => Some(Provider::Webhook),
            _ => None,
        }
    }
}

/// Outcome rates of the in-process simulator; every field optional on input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SimulatorConfig {
    #[schema(minimum = 0, maximum = 1)]
    pub answer_rate: f64,
    #[schema(minimum = 0, maximum = 1)]
    pub machine_rate: f64,
    #[schema(minimum = 0, maximum = 1)]
    pub convert_rate: f64,
    #[schema(minimum = 0, maximum = 1)]
    pub delivery_rate: f64,
    #[schema(minimum = 0, maximum = 1)]
    pub read_rate: f64,
    #[schema(minimum = 0, maximum = 1)]
    pub accept_rate: f64,
    /// Inclusive range of call durations in seconds.
    #[serde(deserialize_with = "whole_pair")]
    #[schema(min_items = 2, max_items = 2)]
    pub duration_s: [u32; 2],
    #[serde(deserialize_with = "whole_number")]
    #[schema(maximum = 60000)]
    pub latency_ms: u32,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        SimulatorConfig {
            answer_rate: 0.5,
            machine_rate: 0.2,
            convert_rate: 0.2,
            delivery_rate: 0.95,
            read_rate: 0.7,
            accept_rate: 0.3,
            duration_s: [20, 180],
            latency_ms: 0,
        }
    }
}

pub const MAX_SIMULATOR_LATENCY_MS: u32 = 60_000;
pub const MAX_WEBHOOK_TIMEOUT_MS: u32 = 60_000;
/// The longest URL kept (a webhook's, a recording's): what browsers and most proxies take.
pub const MAX_URL_CHARS: usize = 2000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// An http(s) URL of a host name or an IPv4 address (see [`is_http_url`]).
    #[schema(max_length = 2000)]
    pub url: String,
    #[serde(default = "default_webhook_timeout_ms", deserialize_with = "whole_number")]
    #[schema(minimum = 1, maximum = 60000)]
    pub timeout_ms: u32,
}

/// The URLs Outbound posts to (a webhook provider's, a webhook subscription's): http(s), a host
/// name (its last label starting with a letter), an IPv4 address or a bracketed IPv6 one, an
/// optional port, then printable ASCII. The OpenAPI document states this very pattern.
pub const HTTP_URL_PATTERN: &str = concat!(
    r"^[hH][tT][tT][pP][sS]?://",
    r"(([A-Za-z0-9-]+\.)*[A-Za-z][A-Za-z0-9-]*|((25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])",
    // An IPv6 literal in brackets, in each of its compressed forms.
    r"|\[(([0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4}|([0-9a-fA-F]{1,4}:){1,7}:|([0-9a-fA-F]{1,4}:){1,6}:[0-9a-fA-F]{1,4}",
    r"|([0-9a-fA-F]{1,4}:){1,5}(:[0-9a-fA-F]{1,4}){1,2}|([0-9a-fA-F]{1,4}:){1,4}(:[0-9a-fA-F]{1,4}){1,3}",
    r"|([0-9a-fA-F]{1,4}:){1,3}(:[0-9a-fA-F]{1,4}){1,4}|([0-9a-fA-F]{1,4}:){1,2}(:[0-9a-fA-F]{1,4}){1,5}",
    r"|[0-9a-fA-F]{1,4}:(:[0-9a-fA-F]{1,4}){1,6}|:((:[0-9a-fA-F]{1,4}){1,7}|:))\])",
    r"(:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4}))?",
    r"([/?#][!-~]*)?$"
);

/// Whether `text` is a URL Outbound posts to: [`HTTP_URL_PATTERN`], at most [`MAX_URL_CHARS`].
pub fn is_http_url(text: &str) -> bool {
    static PATTERN: std::sync::LazyLock<Option<regex::Regex>> = std::sync::LazyLock::new(|| regex::Regex::new(HTTP_URL_PATTERN).ok());
    text.len() <= MAX_URL_CHARS && PATTERN.as_ref().is_some_and(|p| p.is_match(text)) && url::Url::parse(text).is_ok()
}

/// Two whole numbers (see [`whole_number`]).
fn whole_pair<'de, D: Deserializer<'de>>(deserializer: D) -> Result<[u32; 2], D::Error> {
    let [low, high] = <[WholeNumber; 2]>::deserialize(deserializer)?;
    let convert = |n: i64| {
        u32::try_from(n).map_err(|_| serde::de::Error::invalid_value(serde::de::Unexpected::Signed(n), &"a whole number of seconds"))
    };
    Ok([convert(low.0)?, convert(high.0)?])
}

fn default_webhook_timeout_ms() -> u32 {
    5000
}

/// A provider's validated configuration, stored and returned with defaults filled in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ProviderConfig {
    Simulator(SimulatorConfig),
    Webhook(WebhookConfig),
}

impl ProviderConfig {
    pub fn provider(&self) -> Provider {
        match self {
            ProviderConfig::Simulator(_) => Provider::Simulator,
            ProviderConfig::Webhook(_) => Provider::Webhook,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Integration {
    pub id: String,
    pub agent_id: Uuid,
    pub channel: Channel,
    pub provider: Provider,
    pub config: ProviderConfig,
    /// Base64 HMAC key for event signatures; shown to the client only at creation.
    pub secret: String,
    pub created_at: Timestamp,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IntegrationInput {
    #[serde(default)]
    #[schema(value_type = String, format = Uuid, required = true)]
    pub agent_id: Field<String>,
    #[serde(default, rename = "type")]
    #[schema(value_type = Channel, required = true)]
    pub channel: Field<Channel>,
    #[serde(default)]
    #[schema(value_type = Provider, required = true)]
    pub provider: Field<Provider>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub config: Field<serde_json::Value>,
}

pub struct NewIntegration {
    pub agent_id: Uuid,
    pub channel: Channel,
    pub provider: Provider,
    pub config: ProviderConfig,
}

impl NewIntegration {
    /// The integration, with a new id and signing secret, created at `at`.
    pub fn create(self, at: jiff::Timestamp) -> Integration {
        Integration {
            id: super::ids::new_integration_id(self.channel),
            agent_id: self.agent_id,
            channel: self.channel,
            provider: self.provider,
            config: self.config,
            secret: super::ids::new_signing_secret(),
            created_at: super::whole_seconds(at),
        }
    }
}

pub fn parse_new_integration(input: &IntegrationInput) -> Result<NewIntegration, Vec<Violation>> {
    let mut violations = Violations::default();
    let agent_id =
        violations
            .check(validation::required("agent_id", &input.agent_id).and_then(|id| {
                Uuid::parse_str(id).map_err(|_| Violation::new("agent_id", format!("agent_id must be a UUID, got {id:?}")))
            }));
    let channel = violations.check(validation::required("type", &input.channel).copied());
    let provider = violations.check(validation::required("provider", &input.provider).copied());
    let config = provider.and_then(|provider| {
        let raw = match &input.config {
            Field::Value(value) => value.clone(),
            Field::Absent | Field::Null => serde_json::json!({}),
        };
        violations.check(parse_config(provider, raw))
    });
    violations.into_result()?;
    match (agent_id, channel, provider, config) {
        (Some(agent_id), Some(channel), Some(provider), Some(config)) => Ok(NewIntegration { agent_id, channel, provider, config }),
        _ => Err(vec![Violation::new("config", "invalid integration")]),
    }
}

fn parse_config(provider: Provider, raw: serde_json::Value) -> Result<ProviderConfig, Violation> {
    let structural = |err: serde_path_to_error::Error<serde_json::Error>| {
        let path = err.path().to_string();
        let field = if path == "." { "config".to_owned() } else { format!("config.{path}") };
        Violation::new(field, format!("config: {}", err.inner()))
    };
    match provider {
        Provider::Simulator => {
            let config: SimulatorConfig = serde_path_to_error::deserialize(raw).map_err(structural)?;
            for (field, rate) in [
                ("answer_rate", config.answer_rate),
                ("machine_rate", config.machine_rate),
                ("convert_rate", config.convert_rate),
                ("delivery_rate", config.delivery_rate),
                ("read_rate", config.read_rate),
                ("accept_rate", config.accept_rate),
            ] {
                if !(0.0..=1.0).contains(&rate) {
                    return Err(Violation::new(format!("config.{field}"), format!("config.{field} must be between 0 and 1, got {rate}")));
                }
            }
            let [min, max] = config.duration_s;
            if min > max {
                return Err(Violation::new(
                    "config.duration_s",
                    format!("config.duration_s must be [min, max] with min <= max, got [{min}, {max}]"),
                ));
            }
            if config.latency_ms > MAX_SIMULATOR_LATENCY_MS {
                return Err(Violation::new(
                    "config.latency_ms",
                    format!("config.latency_ms must be between 0 and {MAX_SIMULATOR_LATENCY_MS}, got {}", config.latency_ms),
                ));
            }
            Ok(ProviderConfig::Simulator(config))
        }
        Provider::Webhook => {
            let config: WebhookConfig = serde_path_to_error::deserialize(raw).map_err(structural)?;
            if !is_http_url(&config.url) {
                return Err(Violation::new(
                    "config.url",
                    format!("config.url must be an http(s) URL of at most {MAX_URL_CHARS} characters, got {:?}", config.url),
                ));
            }
            if !(1..=MAX_WEBHOOK_TIMEOUT_MS).contains(&config.timeout_ms) {
                return Err(Violation::new(
                    "config.timeout_ms",
                    format!("config.timeout_ms must be between 1 and {MAX_WEBHOOK_TIMEOUT_MS}, got {}", config.timeout_ms),
                ));
            }
            Ok(ProviderConfig::Webhook(config))
        }
    }
}
