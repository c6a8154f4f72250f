//! Integrations: the channel and provider an agent reaches contacts through (§1, §5.3).

use jiff::Timestamp;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::campaign::Channel;
use super::credentials::{Credential, SecretKey};
use super::validation::{self, Field, Violation, Violations, WholeNumber, whole_number};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    Simulator,
    Webhook,
    Twilio,
    WhatsappCloud,
    Vapi,
    Retell,
}

impl Provider {
    pub const ALL: [Provider; 6] =
        [Provider::Simulator, Provider::Webhook, Provider::Twilio, Provider::WhatsappCloud, Provider::Vapi, Provider::Retell];

    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Simulator => "simulator",
            Provider::Webhook => "webhook",
            Provider::Twilio => "twilio",
            Provider::WhatsappCloud => "whatsapp_cloud",
            Provider::Vapi => "vapi",
            Provider::Retell => "retell",
        }
    }

    pub fn parse(text: &str) -> Option<Provider> {
        Self::ALL.into_iter().find(|p| p.as_str() == text)
    }

    /// The one channel a real provider serves; `None` for those that serve both.
    pub fn channel(self) -> Option<Channel> {
        match self {
            Provider::Simulator | Provider::Webhook => None,
            Provider::Twilio | Provider::Vapi | Provider::Retell => Some(Channel::PhoneCall),
            Provider::WhatsappCloud => Some(Channel::Whatsapp),
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

/// Twilio's AMD modes (`MachineDetection`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum MachineDetection {
    Enable,
    DetectMessageEnd,
}

/// `twilio` (PROVIDERS.md §2): calls through a Twilio number, the customer's agent answering at
/// `twiml_url` (or the inline `twiml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TwilioConfig {
    #[schema(pattern = "^AC[0-9a-fA-F]{32}$")]
    pub account_sid: String,
    /// Write-only: shown as `••••••••` and its last four characters.
    #[serde(default)]
    #[schema(value_type = String)]
    pub auth_token: Credential,
    /// The calling number, E.164.
    #[schema(pattern = "^\\+[1-9][0-9]{6,14}$")]
    pub from: String,
    #[serde(default)]
    #[schema(max_length = 2000)]
    pub twiml_url: Option<String>,
    #[serde(default)]
    #[schema(max_length = 4000)]
    pub twiml: Option<String>,
    /// Answering-machine detection, run asynchronously; `null` turns it off.
    #[serde(default = "default_machine_detection")]
    pub machine_detection: Option<MachineDetection>,
    /// Ring time in seconds.
    #[serde(default = "default_ring_seconds", deserialize_with = "whole_number")]
    #[schema(minimum = 5, maximum = 600)]
    pub timeout_s: u32,
    #[serde(default)]
    pub record: bool,
    #[serde(default = "twilio_api_base")]
    #[schema(max_length = 2000)]
    pub api_base: String,
    #[serde(default = "default_handoff_timeout_ms", deserialize_with = "whole_number")]
    #[schema(minimum = 1, maximum = 60000)]
    pub timeout_ms: u32,
    #[serde(default = "twilio_max_per_second")]
    #[schema(exclusive_minimum = 0, maximum = 10000)]
    pub max_per_second: f64,
}

/// `whatsapp_cloud` (PROVIDERS.md §3): template messages through the WhatsApp Cloud API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WhatsappCloudConfig {
    #[schema(pattern = "^[0-9]{1,30}$")]
    pub phone_number_id: String,
    /// Write-only: shown as `••••••••` and its last four characters.
    #[serde(default)]
    #[schema(value_type = String)]
    pub access_token: Credential,
    /// Write-only: shown as `••••••••` and its last four characters.
    #[serde(default)]
    #[schema(value_type = String)]
    pub app_secret: Credential,
    /// What Meta must send as `hub.verify_token` when it checks the callback URL.
    #[schema(min_length = 1, max_length = 200)]
    pub verify_token: String,
    #[serde(default = "default_graph_version")]
    #[schema(pattern = "^v[0-9]+\\.[0-9]+$")]
    pub api_version: String,
    /// The template's language code.
    #[serde(default = "default_template_language")]
    #[schema(pattern = "^[a-z]{2,3}(_[A-Za-z0-9]{2,8})?$")]
    pub language: String,
    /// The contact fields that fill the template's body parameters, in order: `name`,
    /// `contact`, `context`, `f_id` or `extracted_data.<key>`.
    #[serde(default)]
    #[schema(max_items = 20)]
    pub parameters: Vec<String>,
    #[serde(default = "default_accept_payloads")]
    pub accept_payloads: Vec<String>,
    #[serde(default = "default_reject_payloads")]
    pub reject_payloads: Vec<String>,
    #[serde(default)]
    pub convert_payloads: Vec<String>,
    #[serde(default = "graph_api_base")]
    #[schema(max_length = 2000)]
    pub api_base: String,
    #[serde(default = "default_handoff_timeout_ms", deserialize_with = "whole_number")]
    #[schema(minimum = 1, maximum = 60000)]
    pub timeout_ms: u32,
    #[serde(default = "whatsapp_max_per_second")]
    #[schema(exclusive_minimum = 0, maximum = 10000)]
    pub max_per_second: f64,
}

/// `vapi` (PROVIDERS.md §4): calls placed by a Vapi assistant from a Vapi phone number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VapiConfig {
    /// Write-only: the private API key, shown as `••••••••` and its last four characters.
    #[serde(default)]
    #[schema(value_type = String)]
    pub api_key: Credential,
    #[schema(min_length = 1, max_length = 200)]
    pub assistant_id: String,
    #[schema(min_length = 1, max_length = 200)]
    pub phone_number_id: String,
    /// Write-only: what Vapi sends in `X-Vapi-Secret` (or the HMAC key when `server_hmac`).
    #[serde(default)]
    #[schema(value_type = String)]
    pub server_secret: Credential,
    /// Also accept Vapi's HMAC credential: `x-signature` = hex HMAC-SHA256(`server_secret`,
    /// `{x-timestamp}.{body}`).
    #[serde(default)]
    pub server_hmac: bool,
    /// A structured-data boolean that means converted; by default `analysis.successEvaluation`
    /// `"true"` does.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 200)]
    pub success_key: Option<String>,
    #[serde(default = "vapi_api_base")]
    #[schema(max_length = 2000)]
    pub api_base: String,
    #[serde(default = "default_handoff_timeout_ms", deserialize_with = "whole_number")]
    #[schema(minimum = 1, maximum = 60000)]
    pub timeout_ms: u32,
    #[serde(default = "voice_platform_max_per_second")]
    #[schema(exclusive_minimum = 0, maximum = 10000)]
    pub max_per_second: f64,
}

/// `retell` (PROVIDERS.md §5): calls placed by a Retell agent from a Retell number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetellConfig {
    /// Write-only: the API key (with the webhook badge: it also signs Retell's webhooks).
    #[serde(default)]
    #[schema(value_type = String)]
    pub api_key: Credential,
    /// The calling number, E.164.
    #[schema(pattern = "^\\+[1-9][0-9]{6,14}$")]
    pub from_number: String,
    /// Sent as `override_agent_id`; without it the number's own agent answers.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 200)]
    pub agent_id: Option<String>,
    #[serde(default = "retell_api_base")]
    #[schema(max_length = 2000)]
    pub api_base: String,
    #[serde(default = "default_handoff_timeout_ms", deserialize_with = "whole_number")]
    #[schema(minimum = 1, maximum = 60000)]
    pub timeout_ms: u32,
    #[serde(default = "voice_platform_max_per_second")]
    #[schema(exclusive_minimum = 0, maximum = 10000)]
    pub max_per_second: f64,
}

fn default_machine_detection() -> Option<MachineDetection> {
    Some(MachineDetection::Enable)
}
fn default_ring_seconds() -> u32 {
    30
}
fn twilio_api_base() -> String {
    "https://api.twilio.com".to_owned()
}
fn graph_api_base() -> String {
    "https://graph.facebook.com".to_owned()
}
fn vapi_api_base() -> String {
    "https://api.vapi.ai".to_owned()
}
fn retell_api_base() -> String {
    "https://api.retellai.com".to_owned()
}
fn voice_platform_max_per_second() -> f64 {
    5.0
}
fn default_handoff_timeout_ms() -> u32 {
    10_000
}
fn twilio_max_per_second() -> f64 {
    1.0
}
fn whatsapp_max_per_second() -> f64 {
    80.0
}
fn default_graph_version() -> String {
    "v21.0".to_owned()
}
fn default_template_language() -> String {
    "es_MX".to_owned()
}
fn default_accept_payloads() -> Vec<String> {
    vec!["accept".to_owned()]
}
fn default_reject_payloads() -> Vec<String> {
    vec!["reject".to_owned()]
}

/// The highest `max_per_second` a provider integration takes.
pub const MAX_PER_SECOND: f64 = 10_000.0;
/// The most body parameters a WhatsApp template takes here.
pub const MAX_TEMPLATE_PARAMETERS: usize = 20;
/// The most quick-reply payloads per list.
pub const MAX_PAYLOADS: usize = 20;

/// A provider's validated configuration, stored and returned with defaults filled in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ProviderConfig {
    Simulator(SimulatorConfig),
    Webhook(WebhookConfig),
    Twilio(TwilioConfig),
    WhatsappCloud(WhatsappCloudConfig),
    Vapi(VapiConfig),
    Retell(RetellConfig),
}

impl ProviderConfig {
    pub fn provider(&self) -> Provider {
        match self {
            ProviderConfig::Simulator(_) => Provider::Simulator,
            ProviderConfig::Webhook(_) => Provider::Webhook,
            ProviderConfig::Twilio(_) => Provider::Twilio,
            ProviderConfig::WhatsappCloud(_) => Provider::WhatsappCloud,
            ProviderConfig::Vapi(_) => Provider::Vapi,
            ProviderConfig::Retell(_) => Provider::Retell,
        }
    }

    /// Reads a stored config of `provider`.
    pub fn from_stored(provider: Provider, config: &str) -> serde_json::Result<ProviderConfig> {
        Ok(match provider {
            Provider::Simulator => ProviderConfig::Simulator(serde_json::from_str(config)?),
            Provider::Webhook => ProviderConfig::Webhook(serde_json::from_str(config)?),
            Provider::Twilio => ProviderConfig::Twilio(serde_json::from_str(config)?),
            Provider::WhatsappCloud => ProviderConfig::WhatsappCloud(serde_json::from_str(config)?),
            Provider::Vapi => ProviderConfig::Vapi(serde_json::from_str(config)?),
            Provider::Retell => ProviderConfig::Retell(serde_json::from_str(config)?),
        })
    }

    /// The config's credentials by key, in the order the provider lists them.
    fn credentials_mut(&mut self) -> Vec<(&'static str, &mut Credential)> {
        match self {
            ProviderConfig::Simulator(_) | ProviderConfig::Webhook(_) => Vec::new(),
            ProviderConfig::Twilio(c) => vec![("auth_token", &mut c.auth_token)],
            ProviderConfig::WhatsappCloud(c) => vec![("access_token", &mut c.access_token), ("app_secret", &mut c.app_secret)],
            ProviderConfig::Vapi(c) => vec![("api_key", &mut c.api_key), ("server_secret", &mut c.server_secret)],
            ProviderConfig::Retell(c) => vec![("api_key", &mut c.api_key)],
        }
    }

    /// Whether some credential was given in plain and must be sealed before it is stored.
    pub fn needs_sealing(&self) -> bool {
        self.clone().credentials_mut().iter().any(|(_, c)| c.is_plain())
    }

    /// Seals every plain credential with `key`.
    pub fn seal(mut self, key: &SecretKey) -> ProviderConfig {
        for (_, credential) in self.credentials_mut() {
            *credential = std::mem::take(credential).seal(key);
        }
        self
    }

    /// The config as responses show it: credentials masked.
    pub fn masked(&self) -> serde_json::Value {
        let mut shown = self.clone();
        let masks: Vec<(&'static str, Option<String>)> = shown.credentials_mut().into_iter().map(|(k, c)| (k, c.masked())).collect();
        let mut value = serde_json::to_value(&shown).unwrap_or_default();
        if let Some(object) = value.as_object_mut() {
            for (key, mask) in masks {
                object.insert(key.to_owned(), mask.map_or(serde_json::Value::Null, serde_json::Value::String));
            }
        }
        value
    }

    /// The number calls are made from (`phone_number_from` in `on_call_end`), when the provider has one.
    pub fn caller_number(&self) -> Option<&str> {
        match self {
            ProviderConfig::Twilio(c) => Some(&c.from),
            ProviderConfig::Retell(c) => Some(&c.from_number),
            _ => None,
        }
    }

    /// `max_per_second` of a real provider; `None` for the simulator and the webhook.
    pub fn max_per_second(&self) -> Option<f64> {
        match self {
            ProviderConfig::Simulator(_) | ProviderConfig::Webhook(_) => None,
            ProviderConfig::Twilio(c) => Some(c.max_per_second),
            ProviderConfig::WhatsappCloud(c) => Some(c.max_per_second),
            ProviderConfig::Vapi(c) => Some(c.max_per_second),
            ProviderConfig::Retell(c) => Some(c.max_per_second),
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
    pub health: Health,
}

/// Whether an integration's dispatch runs (PROVIDERS.md §1): `failing` from the first error that
/// shows the integration itself is broken until its config is patched.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Health {
    #[default]
    Ok,
    Failing {
        reason: String,
        since: Timestamp,
    },
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
            health: Health::Ok,
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
    let provider = violations.check(validation::required("provider", &input.provider).copied().and_then(|provider| {
        match (provider.channel(), channel) {
            (Some(serves), Some(channel)) if serves != channel => Err(Violation::new(
                "provider",
                format!("provider {} serves {} integrations, not {}", provider.as_str(), serves.as_str(), channel.as_str()),
            )),
            _ => Ok(provider),
        }
    }));
    let config = provider.and_then(|provider| violations.check(parse_config(provider, &input.config, None)));
    violations.into_result()?;
    match (agent_id, channel, provider, config) {
        (Some(agent_id), Some(channel), Some(provider), Some(config)) => Ok(NewIntegration { agent_id, channel, provider, config }),
        _ => Err(vec![Violation::new("config", "invalid integration")]),
    }
}

/// `PATCH /integrations/{id}` (PROVIDERS.md §1): a new config, whole; `type` and `provider`
/// may only repeat their values.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IntegrationPatch {
    /// Replaces the whole config; a credential left out keeps its stored value.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub config: Field<serde_json::Value>,
    #[serde(default, rename = "type")]
    #[schema(value_type = Option<Channel>)]
    pub channel: Field<Channel>,
    #[serde(default)]
    #[schema(value_type = Option<Provider>)]
    pub provider: Field<Provider>,
    #[serde(default)]
    #[schema(value_type = Option<String>, format = Uuid)]
    pub agent_id: Field<String>,
}

/// What a PATCH changes: the new config (credentials left out kept from `current`). An
/// attempt to change `type`, `provider` or `agent_id` is [`ImmutableField`].
pub fn parse_integration_patch(current: &Integration, patch: &IntegrationPatch) -> Result<Option<ProviderConfig>, PatchRefusal> {
    let immutable = [
        ("type", matches!(&patch.channel, Field::Value(c) if *c != current.channel) || patch.channel == Field::Null),
        ("provider", matches!(&patch.provider, Field::Value(p) if *p != current.provider) || patch.provider == Field::Null),
        (
            "agent_id",
            match &patch.agent_id {
                Field::Absent => false,
                Field::Value(id) => Uuid::parse_str(id).ok() != Some(current.agent_id),
                Field::Null => true,
            },
        ),
    ];
    if let Some((field, _)) = immutable.iter().find(|(_, changed)| *changed) {
        return Err(PatchRefusal::Immutable(field));
    }
    match &patch.config {
        Field::Absent => Ok(None),
        config => parse_config(current.provider, config, Some(&current.config)).map(Some).map_err(|v| PatchRefusal::Invalid(vec![v])),
    }
}

/// Why a PATCH was refused.
#[derive(Debug)]
pub enum PatchRefusal {
    Immutable(&'static str),
    Invalid(Vec<Violation>),
}

/// The longest credential kept.
pub const MAX_CREDENTIAL_CHARS: usize = 512;

fn parse_config(
    provider: Provider,
    input: &Field<serde_json::Value>,
    previous: Option<&ProviderConfig>,
) -> Result<ProviderConfig, Violation> {
    let raw = match input {
        Field::Value(value) => value.clone(),
        Field::Absent | Field::Null => serde_json::json!({}),
    };
    if let Some(object) = raw.as_object() {
        for (key, value) in object {
            if CREDENTIAL_KEYS.contains(&key.as_str()) && !value.is_string() {
                return Err(Violation::new(format!("config.{key}"), format!("config.{key} must be a string")));
            }
        }
    }
    let structural = |err: serde_path_to_error::Error<serde_json::Error>| {
        let path = err.path().to_string();
        let field = if path == "." { "config".to_owned() } else { format!("config.{path}") };
        Violation::new(field, format!("config: {}", err.inner()))
    };
    let mut config = match provider {
        Provider::Simulator => ProviderConfig::Simulator(serde_path_to_error::deserialize(raw).map_err(structural)?),
        Provider::Webhook => ProviderConfig::Webhook(serde_path_to_error::deserialize(raw).map_err(structural)?),
        Provider::Twilio => ProviderConfig::Twilio(serde_path_to_error::deserialize(raw).map_err(structural)?),
        Provider::WhatsappCloud => ProviderConfig::WhatsappCloud(serde_path_to_error::deserialize(raw).map_err(structural)?),
        Provider::Vapi => ProviderConfig::Vapi(serde_path_to_error::deserialize(raw).map_err(structural)?),
        Provider::Retell => ProviderConfig::Retell(serde_path_to_error::deserialize(raw).map_err(structural)?),
    };
    let mut kept = previous.cloned();
    let kept_credentials: Vec<(&'static str, Credential)> =
        kept.as_mut().map(|p| p.credentials_mut().into_iter().map(|(k, c)| (k, c.clone())).collect()).unwrap_or_default();
    for (key, credential) in config.credentials_mut() {
        if credential.is_absent()
            && let Some((_, stored)) = kept_credentials.iter().find(|(k, _)| *k == key)
        {
            *credential = stored.clone();
        }
        match credential {
            Credential::Absent => return Err(Violation::new(format!("config.{key}"), format!("config.{key} is required"))),
            Credential::Plain(plain) => check_text(&format!("config.{key}"), plain, 1, MAX_CREDENTIAL_CHARS)?,
            Credential::Sealed(_) => {}
        }
    }
    check_config(&config)?;
    Ok(config)
}

/// Every provider's credential keys (PROVIDERS.md §1).
const CREDENTIAL_KEYS: [&str; 5] = ["auth_token", "access_token", "app_secret", "api_key", "server_secret"];

/// A text of `min..=max` characters without control characters.
fn check_text(field: &str, text: &str, min: usize, max: usize) -> Result<(), Violation> {
    let chars = text.chars().count();
    if chars < min || chars > max || text.chars().any(char::is_control) {
        return Err(Violation::new(
            field,
            format!("{field} must be {min} to {max} characters without control characters, got {chars} characters"),
        ));
    }
    Ok(())
}

fn check_pattern(field: &str, text: &str, pattern: &str, what: &str) -> Result<(), Violation> {
    let matches = regex::Regex::new(pattern).is_ok_and(|re| re.is_match(text));
    if matches { Ok(()) } else { Err(Violation::new(field, format!("{field} must be {what}, got {text:?}"))) }
}

fn check_url(field: &str, url: &str) -> Result<(), Violation> {
    if is_http_url(url) {
        Ok(())
    } else {
        Err(Violation::new(field, format!("{field} must be an http(s) URL of at most {MAX_URL_CHARS} characters, got {url:?}")))
    }
}

/// The settings every real provider has: `api_base`, `timeout_ms`, `max_per_second`.
fn check_common(api_base: &str, timeout_ms: u32, max_per_second: f64) -> Result<(), Violation> {
    check_url("config.api_base", api_base)?;
    if !(1..=MAX_WEBHOOK_TIMEOUT_MS).contains(&timeout_ms) {
        return Err(Violation::new(
            "config.timeout_ms",
            format!("config.timeout_ms must be between 1 and {MAX_WEBHOOK_TIMEOUT_MS}, got {timeout_ms}"),
        ));
    }
    if !(max_per_second > 0.0 && max_per_second <= MAX_PER_SECOND) {
        return Err(Violation::new(
            "config.max_per_second",
            format!("config.max_per_second must be above 0 and at most {MAX_PER_SECOND}, got {max_per_second}"),
        ));
    }
    Ok(())
}

/// The contact fields a template parameter may name.
pub fn is_parameter_source(name: &str) -> bool {
    matches!(name, "name" | "contact" | "context" | "f_id")
        || name.strip_prefix("extracted_data.").is_some_and(|key| !key.is_empty() && key.chars().count() <= 200)
}

fn check_config(config: &ProviderConfig) -> Result<(), Violation> {
    match config {
        ProviderConfig::Simulator(config) => {
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
        }
        ProviderConfig::Webhook(config) => {
            check_url("config.url", &config.url)?;
            if !(1..=MAX_WEBHOOK_TIMEOUT_MS).contains(&config.timeout_ms) {
                return Err(Violation::new(
                    "config.timeout_ms",
                    format!("config.timeout_ms must be between 1 and {MAX_WEBHOOK_TIMEOUT_MS}, got {}", config.timeout_ms),
                ));
            }
        }
        ProviderConfig::Twilio(config) => {
            check_pattern("config.account_sid", &config.account_sid, "^AC[0-9a-fA-F]{32}$", "AC followed by 32 hexadecimal digits")?;
            check_pattern("config.from", &config.from, r"^\+[1-9][0-9]{6,14}$", "an E.164 number such as +14155550100")?;
            match (&config.twiml_url, &config.twiml) {
                (Some(url), None) => check_url("config.twiml_url", url)?,
                (None, Some(twiml)) => check_text("config.twiml", twiml, 1, 4000)?,
                _ => return Err(Violation::new("config.twiml_url", "exactly one of config.twiml_url and config.twiml is required")),
            }
            if !(5..=600).contains(&config.timeout_s) {
                return Err(Violation::new(
                    "config.timeout_s",
                    format!("config.timeout_s must be between 5 and 600, got {}", config.timeout_s),
                ));
            }
            check_common(&config.api_base, config.timeout_ms, config.max_per_second)?;
        }
        ProviderConfig::WhatsappCloud(config) => {
            check_pattern(
                "config.phone_number_id",
                &config.phone_number_id,
                "^[0-9]{1,30}$",
                "the numeric id of the business phone number",
            )?;
            check_text("config.verify_token", &config.verify_token, 1, 200)?;
            check_pattern("config.api_version", &config.api_version, r"^v[0-9]+\.[0-9]+$", "a Graph API version such as v21.0")?;
            check_pattern(
                "config.language",
                &config.language,
                "^[a-z]{2,3}(_[A-Za-z0-9]{2,8})?$",
                "a template language code such as es_MX",
            )?;
            if config.parameters.len() > MAX_TEMPLATE_PARAMETERS {
                return Err(Violation::new(
                    "config.parameters",
                    format!("config.parameters takes at most {MAX_TEMPLATE_PARAMETERS} items"),
                ));
            }
            for (index, name) in config.parameters.iter().enumerate() {
                if !is_parameter_source(name) {
                    return Err(Violation::new(
                        format!("config.parameters[{index}]"),
                        format!("config.parameters[{index}] must be name, contact, context, f_id or extracted_data.<key>, got {name:?}"),
                    ));
                }
            }
            for (key, payloads) in [
                ("accept_payloads", &config.accept_payloads),
                ("reject_payloads", &config.reject_payloads),
                ("convert_payloads", &config.convert_payloads),
            ] {
                if payloads.len() > MAX_PAYLOADS {
                    return Err(Violation::new(format!("config.{key}"), format!("config.{key} takes at most {MAX_PAYLOADS} items")));
                }
                for (index, payload) in payloads.iter().enumerate() {
                    check_text(&format!("config.{key}[{index}]"), payload, 1, 256)?;
                }
            }
            check_common(&config.api_base, config.timeout_ms, config.max_per_second)?;
        }
        ProviderConfig::Vapi(config) => {
            check_text("config.assistant_id", &config.assistant_id, 1, 200)?;
            check_text("config.phone_number_id", &config.phone_number_id, 1, 200)?;
            if let Some(key) = &config.success_key {
                check_text("config.success_key", key, 1, 200)?;
            }
            check_common(&config.api_base, config.timeout_ms, config.max_per_second)?;
        }
        ProviderConfig::Retell(config) => {
            check_pattern("config.from_number", &config.from_number, r"^\+[1-9][0-9]{6,14}$", "an E.164 number such as +14155550100")?;
            if let Some(agent_id) = &config.agent_id {
                check_text("config.agent_id", agent_id, 1, 200)?;
            }
            check_common(&config.api_base, config.timeout_ms, config.max_per_second)?;
        }
    }
    Ok(())
}
