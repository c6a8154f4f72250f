//! Integrations: the list with each one's health and callback URL, the create form with one
//! fieldset per provider (PROVIDERS.md; the chosen provider's is used) or a JSON config, the
//! signing secret shown once, and an integration's page with its config (credentials masked)
//! and the edit form (PATCH semantics: a credential left blank keeps its stored value).

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{FormErrors, FormFields, names, refused, render_with, secret_page, see_other, utc};
use crate::api::AppState;
use crate::api::integrations::callback_url;
use crate::dashboard::campaigns::channel_label;
use crate::dashboard::session::Session;
use crate::dashboard::{Chrome, DashError};
use crate::domain::agent::Agent;
use crate::domain::campaign::Channel;
use crate::domain::integration::{Health, Integration, IntegrationInput, IntegrationPatch, Provider};
use crate::domain::validation::Field;

/// How a config key is entered and sent.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Text,
    LongText,
    /// A write-only credential: a password input, never filled with the stored value.
    Secret,
    /// A JSON number; what is not one is sent as typed, for the API to name.
    Number,
    Check,
    /// A list of strings, one per line.
    Lines,
    /// Two numbers, `min, max`.
    Pair,
    /// Twilio's answering-machine detection: default, a mode, or off (`null`).
    MachineDetection,
}

/// One key of a provider's config, as the form shows it.
pub(crate) struct ConfigField {
    key: &'static str,
    label: &'static str,
    kind: Kind,
    hint: &'static str,
}

const fn field(key: &'static str, label: &'static str, kind: Kind, hint: &'static str) -> ConfigField {
    ConfigField { key, label, kind, hint }
}

/// The config keys of each provider (PROVIDERS.md §2–5, contract §5.3), in the API's names.
fn config_fields(provider: Provider) -> &'static [ConfigField] {
    use Kind::*;
    const SIMULATOR: &[ConfigField] = &[
        field("answer_rate", "Answer rate", Number, "Share of calls answered, 0 to 1 (default 0.5)."),
        field("machine_rate", "Machine rate", Number, "Share of answered calls a machine takes, 0 to 1 (default 0.2)."),
        field("convert_rate", "Conversion rate", Number, "0 to 1 (default 0.2)."),
        field("delivery_rate", "Delivery rate", Number, "WhatsApp: share of messages delivered, 0 to 1 (default 0.95)."),
        field("read_rate", "Read rate", Number, "WhatsApp: 0 to 1 (default 0.7)."),
        field("accept_rate", "Accept rate", Number, "WhatsApp: 0 to 1 (default 0.3)."),
        field("duration_s", "Call length range (seconds)", Pair, "Shortest and longest, as min, max (default 20, 180)."),
        field("latency_ms", "Latency (ms)", Number, "Delay before each outcome, 0 to 60000 (default 0)."),
    ];
    const WEBHOOK: &[ConfigField] = &[
        field("url", "URL", Text, "The http(s) URL Outbound posts each attempt to."),
        field("timeout_ms", "Timeout (ms)", Number, "1 to 60000 (default 5000)."),
    ];
    const TWILIO: &[ConfigField] = &[
        field("account_sid", "Account SID", Text, "AC followed by 32 hexadecimal digits."),
        field("auth_token", "Auth token", Secret, "Stored encrypted; shown masked."),
        field("from", "From number", Text, "The calling number in E.164, such as +14155550100."),
        field("twiml_url", "TwiML URL", Text, "Your agent's call handler, fetched when the call connects (or TwiML below: exactly one)."),
        field("twiml", "TwiML", LongText, "Inline TwiML instead of a URL, at most 4,000 characters."),
        field("machine_detection", "Answering-machine detection", MachineDetection, "Run asynchronously."),
        field("timeout_s", "Ring time (seconds)", Number, "5 to 600 (default 30)."),
        field("record", "Record calls", Check, ""),
        field("api_base", "API base URL", Text, "Default https://api.twilio.com."),
        field("timeout_ms", "Hand-off timeout (ms)", Number, "1 to 60000 (default 10000)."),
        field("max_per_second", "Calls per second at most", Number, "Across campaigns and processes (default 1)."),
    ];
    const WHATSAPP_CLOUD: &[ConfigField] = &[
        field("phone_number_id", "Phone number ID", Text, "The numeric id of the business phone number."),
        field("access_token", "Access token", Secret, "Stored encrypted; shown masked."),
        field("app_secret", "App secret", Secret, "Verifies Meta's callbacks; stored encrypted."),
        field("verify_token", "Verify token", Text, "What Meta sends as hub.verify_token when it checks the callback URL."),
        field("api_version", "Graph API version", Text, "Default v21.0."),
        field("language", "Template language", Text, "A language code such as es_MX (the default)."),
        field(
            "parameters",
            "Template body parameters",
            Lines,
            "One per line, in order: name, contact, context, f_id or extracted_data.<key>.",
        ),
        field("accept_payloads", "Accept button payloads", Lines, "One per line (default accept)."),
        field("reject_payloads", "Reject button payloads", Lines, "One per line (default reject)."),
        field("convert_payloads", "Convert button payloads", Lines, "One per line (default none)."),
        field("api_base", "API base URL", Text, "Default https://graph.facebook.com."),
        field("timeout_ms", "Hand-off timeout (ms)", Number, "1 to 60000 (default 10000)."),
        field("max_per_second", "Messages per second at most", Number, "Across campaigns and processes (default 80)."),
    ];
    const VAPI: &[ConfigField] = &[
        field("api_key", "Private API key", Secret, "Stored encrypted; shown masked."),
        field("assistant_id", "Assistant ID", Text, "The Vapi assistant that talks to each contact."),
        field("phone_number_id", "Phone number ID", Text, "The Vapi phone number calls are made from."),
        field("server_secret", "Server secret", Secret, "What Vapi sends in X-Vapi-Secret (or the HMAC key); stored encrypted."),
        field("server_hmac", "Vapi signs with HMAC", Check, "Accept x-signature over {timestamp}.{body} as well."),
        field("success_key", "Structured-data key that means converted", Text, "Default: the success evaluation is \"true\"."),
        field("api_base", "API base URL", Text, "Default https://api.vapi.ai."),
        field("timeout_ms", "Hand-off timeout (ms)", Number, "1 to 60000 (default 10000)."),
        field("max_per_second", "Calls per second at most", Number, "Across campaigns and processes (default 5)."),
    ];
    const RETELL: &[ConfigField] = &[
        field("api_key", "API key", Secret, "The key with the webhook badge (it signs Retell's webhooks); stored encrypted."),
        field("from_number", "From number", Text, "A Retell number in E.164, such as +14155550100."),
        field("agent_id", "Agent ID", Text, "Optional: without it the number's own agent answers."),
        field("api_base", "API base URL", Text, "Default https://api.retellai.com."),
        field("timeout_ms", "Hand-off timeout (ms)", Number, "1 to 60000 (default 10000)."),
        field("max_per_second", "Calls per second at most", Number, "Across campaigns and processes (default 5)."),
    ];
    match provider {
        Provider::Simulator => SIMULATOR,
        Provider::Webhook => WEBHOOK,
        Provider::Twilio => TWILIO,
        Provider::WhatsappCloud => WHATSAPP_CLOUD,
        Provider::Vapi => VAPI,
        Provider::Retell => RETELL,
    }
}

pub(crate) fn provider_label(provider: Provider) -> &'static str {
    match provider {
        Provider::Simulator => "Simulator (built in, for trials)",
        Provider::Webhook => "Webhook (your own agent runtime)",
        Provider::Twilio => "Twilio Voice (phone calls)",
        Provider::WhatsappCloud => "WhatsApp Cloud API (WhatsApp)",
        Provider::Vapi => "Vapi assistant (phone calls)",
        Provider::Retell => "Retell agent (phone calls)",
    }
}

/// The form name of a provider's config key: each provider's fieldset has its own names.
fn input_name(provider: Provider, key: &str) -> String {
    format!("{}.{key}", provider.as_str())
}

/// The config a form describes: the JSON textarea when filled in, else the chosen provider's
/// fieldset. Blank inputs are left out (the API's defaults apply; on an edit, a blank credential
/// keeps its stored value). Values are sent as typed where they are not what the key takes, so
/// the API's own check names the field.
fn config_from_form(provider: Provider, form: &FormFields) -> Result<Value, (String, String)> {
    if let Some(raw) = form.text("config_json") {
        return serde_json::from_str(raw).map_err(|err| ("config".to_owned(), format!("config (JSON) is not valid JSON: {err}")));
    }
    let mut config = Map::new();
    for f in config_fields(provider) {
        let name = input_name(provider, f.key);
        let value = match f.kind {
            Kind::Check => Some(Value::Bool(form.has(&name))),
            Kind::Text | Kind::LongText | Kind::Secret => form.text(&name).map(|v| Value::String(v.to_owned())),
            Kind::Number => form.text(&name).map(number),
            Kind::Lines => form
                .text(&name)
                .map(|v| Value::Array(v.lines().map(str::trim).filter(|l| !l.is_empty()).map(|l| Value::String(l.to_owned())).collect())),
            Kind::Pair => form.text(&name).map(|v| Value::Array(v.split([',', ' ']).filter(|p| !p.is_empty()).map(number).collect())),
            Kind::MachineDetection => match form.text(&name) {
                None => None,
                Some("off") => Some(Value::Null),
                Some(mode) => Some(Value::String(mode.to_owned())),
            },
        };
        if let Some(value) = value {
            config.insert(f.key.to_owned(), value);
        }
    }
    Ok(Value::Object(config))
}

/// A typed number as JSON: a whole number, a decimal, or (neither) the text itself.
fn number(text: &str) -> Value {
    let text = text.trim();
    if let Ok(n) = text.parse::<i64>() {
        return Value::from(n);
    }
    text.parse::<f64>().ok().and_then(serde_json::Number::from_f64).map_or_else(|| Value::String(text.to_owned()), Value::Number)
}

/// A stored (masked) config value as the form shows it.
fn shown(kind: Kind, value: &Value) -> String {
    match (kind, value) {
        (Kind::MachineDetection, Value::Null) => "off".to_owned(),
        (_, Value::Null) => String::new(),
        (_, Value::String(text)) => text.clone(),
        (Kind::Lines, Value::Array(items)) => items.iter().map(|i| shown(Kind::Text, i)).collect::<Vec<_>>().join("\n"),
        (Kind::Pair, Value::Array(items)) => items.iter().map(|i| shown(Kind::Text, i)).collect::<Vec<_>>().join(", "),
        (_, other) => other.to_string(),
    }
}

/// One input of a provider's fieldset, ready to render.
pub(crate) struct FieldView {
    name: String,
    id: String,
    label: &'static str,
    kind: Kind,
    hint: &'static str,
    value: String,
    checked: bool,
    /// A credential's stored value, masked (edit form only).
    mask: Option<String>,
    error: Option<String>,
}

pub(crate) struct ProviderFieldset {
    provider: &'static str,
    label: &'static str,
    fields: Vec<FieldView>,
}

/// Where a fieldset's values come from.
enum Values<'a> {
    Blank,
    Submitted(&'a FormFields),
    /// The stored config, masked as the API shows it.
    Stored(&'a Value),
}

/// A provider's fieldset: its values, the masks of stored credentials and, when it is the one
/// submitted, the errors beside their fields.
fn fieldset(provider: Provider, values: &Values, stored: Option<&Value>, errors: Option<&FormErrors>) -> ProviderFieldset {
    let fields = config_fields(provider)
        .iter()
        .map(|f| {
            let name = input_name(provider, f.key);
            let (value, checked) = match values {
                Values::Blank => (String::new(), false),
                Values::Submitted(form) => (form.get(&name).to_owned(), form.has(&name)),
                Values::Stored(config) => {
                    let value = config.get(f.key).unwrap_or(&Value::Null);
                    let text = if f.kind == Kind::Secret { String::new() } else { shown(f.kind, value) };
                    (text, value == &Value::Bool(true))
                }
            };
            let mask = stored.filter(|_| f.kind == Kind::Secret).and_then(|c| c.get(f.key)).and_then(Value::as_str).map(str::to_owned);
            let error = errors.and_then(|e| e.of(&format!("config.{}", f.key))).map(str::to_owned);
            FieldView {
                id: format!("{}-{}", provider.as_str(), f.key),
                name,
                label: f.label,
                kind: f.kind,
                hint: f.hint,
                value,
                checked,
                mask,
                error,
            }
        })
        .collect();
    ProviderFieldset { provider: provider.as_str(), label: provider_label(provider), fields }
}

/// The message of a config error no input of `provider` shows (the JSON's, or a key the
/// fieldset does not have): shown beside the JSON textarea.
fn config_error(provider: Option<Provider>, errors: &FormErrors) -> Option<String> {
    let keys: Vec<String> = provider.map(config_fields).unwrap_or_default().iter().map(|f| format!("config.{}", f.key)).collect();
    errors
        .list
        .iter()
        .find(|(field, _)| names(field, "config") || (field.starts_with("config.") && !keys.iter().any(|key| names(field, key))))
        .map(|(_, message)| message.clone())
}

fn health_text(health: &Health) -> (&'static str, String) {
    match health {
        Health::Ok => ("ok", String::new()),
        Health::Failing { reason, since } => ("failing", format!("{reason} (since {})", utc(*since))),
    }
}

/// A masked config as rows of key and value.
fn config_rows(config: &Value) -> Vec<(String, String)> {
    let Some(object) = config.as_object() else { return Vec::new() };
    object
        .iter()
        .map(|(key, value)| {
            let text = match value {
                Value::Null => "—".to_owned(),
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            (key.clone(), text)
        })
        .collect()
}

// --- The list and the create form -------------------------------------------------------------

struct Row {
    id: String,
    agent: String,
    channel: &'static str,
    provider: &'static str,
    health: &'static str,
    health_reason: String,
    callback_url: String,
    config: Vec<(String, String)>,
    created: String,
}

/// What the create form holds: blank, or as submitted.
#[derive(Default)]
struct NewForm {
    agent_id: String,
    channel: String,
    provider: String,
    config_json: String,
}

#[derive(Template)]
#[template(path = "integrations.html")]
struct ListPage {
    chrome: Chrome,
    rows: Vec<Row>,
    agents: Vec<(String, String)>,
    channels: [Channel; 2],
    providers: [Provider; 6],
    form: NewForm,
    fieldsets: Vec<ProviderFieldset>,
    errors: FormErrors,
    config_error: Option<String>,
}

pub(super) async fn list(State(app): State<AppState>, session: Session) -> Result<Response, DashError> {
    let fieldsets = Provider::ALL.into_iter().map(|p| fieldset(p, &Values::Blank, None, None)).collect();
    list_response(&app, &session, NewForm::default(), fieldsets, FormErrors::default(), StatusCode::OK).await
}

async fn list_response(
    app: &AppState,
    session: &Session,
    form: NewForm,
    fieldsets: Vec<ProviderFieldset>,
    errors: FormErrors,
    status: StatusCode,
) -> Result<Response, DashError> {
    let agents = app.store.list_agents(session.org_id).await?;
    let integrations = app.store.list_integrations(session.org_id).await?;
    let rows = integrations
        .iter()
        .map(|i| {
            let (health, health_reason) = health_text(&i.health);
            Row {
                id: i.id.clone(),
                agent: agent_name(&agents, i),
                channel: channel_label(i.channel),
                provider: i.provider.as_str(),
                health,
                health_reason,
                callback_url: callback_url(&app.settings.public_url, &i.id),
                config: config_rows(&i.config.masked()),
                created: utc(i.created_at),
            }
        })
        .collect();
    let config_error = config_error(Provider::parse(&form.provider), &errors);
    let page = ListPage {
        chrome: Chrome::new(session, "integrations"),
        rows,
        agents: agents.into_iter().map(|a| (a.id.to_string(), a.name)).collect(),
        channels: Channel::ALL,
        providers: Provider::ALL,
        form,
        fieldsets,
        errors,
        config_error,
    };
    Ok(render_with(status, &page))
}

fn agent_name(agents: &[Agent], integration: &Integration) -> String {
    agents.iter().find(|a| a.id == integration.agent_id).map_or_else(|| integration.agent_id.to_string(), |a| a.name.clone())
}

/// `POST /integrations`: the API's create; the answer shows the new integration and its signing
/// secret, this once.
pub(super) async fn create(State(app): State<AppState>, session: Session, body: Bytes) -> Result<Response, DashError> {
    let form = FormFields::parse(&body);
    let provider = Provider::parse(form.get("provider"));
    let mut input = IntegrationInput {
        agent_id: form.text("agent_id").map_or(Field::Absent, |id| Field::Value(id.to_owned())),
        channel: Channel::parse(form.get("type")).map_or(Field::Absent, Field::Value),
        provider: provider.map_or(Field::Absent, Field::Value),
        config: Field::Absent,
    };
    let outcome = match provider.map(|p| config_from_form(p, &form)) {
        Some(Err((field, message))) => Err(crate::api::error::ApiError::invalid(field, message)),
        config => {
            input.config = config.and_then(Result::ok).map_or(Field::Absent, Field::Value);
            crate::api::integrations::create(&app, session.org_id, &input, None).await
        }
    };
    match outcome {
        Ok(integration) => Ok(secret_page(&page_view(&app, &session, &integration, Edit::Stored, Some(integration.secret.clone())).await?)),
        Err(err) => {
            let (status, errors) = refused(err)?;
            let fieldsets = Provider::ALL
                .into_iter()
                .map(|p| fieldset(p, &Values::Submitted(&form), None, (Some(p) == provider).then_some(&errors)))
                .collect();
            let kept = NewForm {
                agent_id: form.get("agent_id").to_owned(),
                channel: form.get("type").to_owned(),
                provider: form.get("provider").to_owned(),
                config_json: form.get("config_json").to_owned(),
            };
            list_response(&app, &session, kept, fieldsets, errors, status).await
        }
    }
}

// --- An integration's page and its edit form --------------------------------------------------

#[derive(Template)]
#[template(path = "integration.html")]
struct IntegrationPage {
    chrome: Chrome,
    id: String,
    agent: String,
    channel: &'static str,
    provider: &'static str,
    health: &'static str,
    health_reason: String,
    callback_url: String,
    created: String,
    config: Vec<(String, String)>,
    fieldset: ProviderFieldset,
    config_json: String,
    errors: FormErrors,
    config_error: Option<String>,
    /// The signing secret, on the page that answers the creation only.
    secret: Option<String>,
    saved: bool,
}

/// What the edit form holds.
enum Edit<'a> {
    Stored,
    Refused(&'a FormFields, FormErrors),
}

async fn page_view(
    app: &AppState,
    session: &Session,
    integration: &Integration,
    edit: Edit<'_>,
    secret: Option<String>,
) -> Result<IntegrationPage, DashError> {
    let agents = app.store.list_agents(session.org_id).await?;
    let masked = integration.config.masked();
    let (health, health_reason) = health_text(&integration.health);
    let (fieldset, config_json, errors) = match edit {
        Edit::Stored => {
            (fieldset(integration.provider, &Values::Stored(&masked), Some(&masked), None), String::new(), FormErrors::default())
        }
        Edit::Refused(form, errors) => (
            fieldset(integration.provider, &Values::Submitted(form), Some(&masked), Some(&errors)),
            form.get("config_json").to_owned(),
            errors,
        ),
    };
    Ok(IntegrationPage {
        chrome: Chrome::new(session, "integrations"),
        id: integration.id.clone(),
        agent: agent_name(&agents, integration),
        channel: channel_label(integration.channel),
        provider: provider_label(integration.provider),
        health,
        health_reason,
        callback_url: callback_url(&app.settings.public_url, &integration.id),
        created: utc(integration.created_at),
        config: config_rows(&masked),
        fieldset,
        config_json,
        config_error: config_error(Some(integration.provider), &errors),
        errors,
        secret,
        saved: false,
    })
}

#[derive(Deserialize)]
pub(super) struct SavedQuery {
    saved: Option<String>,
}

pub(super) async fn page(
    State(app): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(query): Query<SavedQuery>,
) -> Result<Response, DashError> {
    let integration = crate::api::integrations::find(&app, session.org_id, &id).await?;
    let mut view = page_view(&app, &session, &integration, Edit::Stored, None).await?;
    view.saved = query.saved.is_some();
    Ok(crate::dashboard::render(&view))
}

/// `POST /integrations/{id}`: the API's PATCH with the whole config of the form (a credential
/// left blank keeps its stored value); resets a failing health, as the API does.
pub(super) async fn update(
    State(app): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, DashError> {
    let current = crate::api::integrations::find(&app, session.org_id, &id).await?;
    let form = FormFields::parse(&body);
    let outcome = match config_from_form(current.provider, &form) {
        Err((field, message)) => Err(crate::api::error::ApiError::invalid(field, message)),
        Ok(config) => {
            let patch = IntegrationPatch { config: Field::Value(config), ..IntegrationPatch::default() };
            crate::api::integrations::update(&app, session.org_id, &current.id, &patch).await
        }
    };
    match outcome {
        Ok(integration) => Ok(see_other(&format!("/integrations/{}?saved=1", integration.id))),
        Err(err) => {
            let (status, errors) = refused(err)?;
            Ok(render_with(status, &page_view(&app, &session, &current, Edit::Refused(&form, errors), None).await?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fieldset_becomes_the_providers_config() {
        let form = FormFields::parse(
            b"provider=twilio&twilio.account_sid=+AC1&twilio.auth_token=&twilio.timeout_s=45&twilio.max_per_second=0.5\
              &twilio.machine_detection=off&twilio.record=on&twilio.api_base=&webhook.url=https%3A%2F%2Fignored.example",
        );
        let config = config_from_form(Provider::Twilio, &form).expect("config");
        assert_eq!(
            config,
            serde_json::json!({ "account_sid": "AC1", "timeout_s": 45, "max_per_second": 0.5, "machine_detection": null, "record": true })
        );
        let form = FormFields::parse(b"whatsapp_cloud.parameters=name%0D%0A+contact+%0D%0A%0D%0A&simulator.duration_s=20%2C+x");
        assert_eq!(config_from_form(Provider::WhatsappCloud, &form).expect("config")["parameters"], serde_json::json!(["name", "contact"]));
        assert_eq!(config_from_form(Provider::Simulator, &form).expect("config")["duration_s"], serde_json::json!([20, "x"]));
    }

    #[test]
    fn the_json_config_wins_and_must_be_json() {
        let form = FormFields::parse(b"config_json=%7B%22url%22%3A%22https%3A%2F%2Fa.example%22%7D&webhook.url=https%3A%2F%2Fb.example");
        assert_eq!(config_from_form(Provider::Webhook, &form).expect("config"), serde_json::json!({ "url": "https://a.example" }));
        let form = FormFields::parse(b"config_json=%7Bnope");
        assert_eq!(config_from_form(Provider::Webhook, &form).expect_err("not JSON").0, "config");
    }

    #[test]
    fn stored_values_fill_the_edit_form_but_credentials_stay_blank() {
        let stored = serde_json::json!({ "auth_token": "••••••••1234", "machine_detection": null, "record": true, "timeout_s": 30 });
        let set = fieldset(Provider::Twilio, &Values::Stored(&stored), Some(&stored), None);
        let of = |key: &str| set.fields.iter().find(|f| f.name == format!("twilio.{key}")).expect("field");
        assert_eq!(of("auth_token").value, "");
        assert_eq!(of("auth_token").mask.as_deref(), Some("••••••••1234"));
        assert_eq!(of("machine_detection").value, "off");
        assert!(of("record").checked);
        assert_eq!(of("timeout_s").value, "30");
    }
}
