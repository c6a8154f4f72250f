//! Outbound's own OpenAPI document (§0.3): generated from the handlers' annotations, then refined
//! here, once, with what layers and shared parsers enforce rather than handlers: the answers of
//! authentication, rate limit, body and Idempotency-Key layers, the bounds of ids, paging,
//! dates and keys, and the fields `POST /campaigns` requires (one input type serves create and
//! update). Each rule below names the server constant it mirrors, so the two cannot drift.

use serde_json::{Map, Value, json};
use utoipa::OpenApi;

use super::campaigns::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use super::contacts::MAX_PAGE_INDEX;
use super::error;
use super::idempotency::MAX_KEY_LEN;
use crate::domain::contact::{MAX_BATCH, MAX_TEXT_CHARS};
use crate::domain::dnc::{MAX_KEYWORD_CHARS, MAX_KEYWORDS};
use crate::domain::integration::HTTP_URL_PATTERN;
use crate::domain::timezone::TimeZone;

#[derive(OpenApi)]
#[openapi(
    info(title = "Outbound API", version = "1.0", description = "Outbound campaigns API, compatible with Altur's public campaigns API."),
    servers((url = "/api/v1.0")),
    modifiers(&ApiKeyAuth),
    security(("api_key" = [])),
    components(schemas(error::ErrorBody)),
)]
pub(super) struct ApiDoc;

struct ApiKeyAuth;

impl utoipa::Modify for ApiKeyAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description("Authorization", "api-key YOUR_API_KEY"))),
        );
    }
}

/// The document served at `/api/v1.0/openapi.json`: the generated one, refined.
pub(super) fn document(generated: &utoipa::openapi::OpenApi) -> Value {
    let mut document = serde_json::to_value(generated).unwrap_or_default();
    if let Some(paths) = document.get_mut("paths").and_then(Value::as_object_mut) {
        for (path, item) in paths.iter_mut() {
            let Some(item) = item.as_object_mut() else { continue };
            for (method, operation) in item.iter_mut() {
                if let Some(operation) = operation.as_object_mut() {
                    shared_answers(method, operation);
                    shared_parameters(operation);
                    if path == "/campaigns" && method == "post" {
                        operation.insert("requestBody".to_owned(), json_body("CampaignCreate"));
                    }
                    if path == "/webhooks/{id}" && method == "patch" {
                        operation.insert("requestBody".to_owned(), json_body("WebhookPatch"));
                    }
                }
            }
        }
    }
    if let Some(schemas) = document.pointer_mut("/components/schemas").and_then(Value::as_object_mut) {
        for (schema, fields) in TEXT_FIELDS {
            if let Some(properties) = schemas.get_mut(*schema).and_then(|s| s.get_mut("properties")) {
                for field in *fields {
                    forbid_nul(&mut properties[*field]);
                }
            }
        }
        if let Some(timezone) = schemas.get_mut("CampaignInput").and_then(|s| s.pointer_mut("/properties/timezone")) {
            // The zones of the bundled tz database (`TimeZone::parse`), so that the document
            // lists exactly the names taken.
            timezone["enum"] = json!(TimeZone::names());
        }
        // Tags: 1 to 1,000 characters after trimming (`clean_tags`, `validation::text`); a
        // contact's are kept as JSON and take U+0000, a campaign's filter tags do not.
        let tag = |text: &str| json!({ "type": "string", "minLength": 1, "maxLength": MAX_TEXT_CHARS, "pattern": text });
        if let Some(tags) = schemas.get_mut("ContactInput").and_then(|s| s.pointer_mut("/properties/tags")) {
            tags["items"] = tag("\\S");
        }
        if let Some(tags) = schemas.get_mut("CyclesInput").and_then(|s| s.pointer_mut("/properties/filter_tags")) {
            tags["items"] = tag("^[^\\u0000]*\\S[^\\u0000]*$");
        }
        week_schedule_rules(schemas);
        cycles_rules(schemas);
        campaign_create_schema(schemas);
        integration_input_schema(schemas);
        webhook_input_schemas(schemas);
        if let Some(batch) = schemas.get_mut("ContactBatchInput").and_then(|s| s.pointer_mut("/properties/contacts")) {
            batch["minItems"] = json!(1);
            batch["maxItems"] = json!(MAX_BATCH);
        }
        // Opt-out keywords: 1 to 40 characters after trimming (`dnc::parse_keywords`), no U+0000.
        if let Some(keywords) = schemas.get_mut("KeywordsInput").and_then(|s| s.pointer_mut("/properties/keywords")) {
            keywords["minItems"] = json!(1);
            keywords["maxItems"] = json!(MAX_KEYWORDS);
            keywords["items"] =
                json!({ "type": "string", "minLength": 1, "maxLength": MAX_KEYWORD_CHARS, "pattern": "^[^\\u0000]*\\S[^\\u0000]*$" });
        }
    }
    document
}

/// Inputs kept as text (not as JSON), which refuse U+0000 (`validation::no_nul`); patterned
/// fields (names, times, URLs) say so in their own pattern.
const TEXT_FIELDS: &[(&str, &[&str])] = &[
    ("CampaignInput", &["description", "integration_id", "first_message", "template", "template_alt"]),
    ("ContactInput", &["name", "context", "f_id"]),
    ("WebhookInput", &["description"]),
    ("DncEntryInput", &["reason"]),
];

fn forbid_nul(schema: &mut Value) {
    let target = if schema.get("items").is_some() { &mut schema["items"] } else { schema };
    target["pattern"] = json!("^[^\\u0000]*$");
}

/// A week needs an active day (§2.5): some day given whose `active` is not false; an active day
/// needs both times (`active` defaults to true).
fn week_schedule_rules(schemas: &mut Map<String, Value>) {
    let days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let inactive = json!({ "required": ["active"], "properties": { "active": { "const": false } } });
    if let Some(week) = schemas.get_mut("WeekScheduleInput") {
        let active_day = |day: &str| json!({ "required": [day], "properties": { day: { "type": "object", "not": inactive } } });
        week["anyOf"] = Value::Array(days.iter().map(|day| active_day(day)).collect());
    }
    if let Some(day) = schemas.get_mut("DayInput") {
        day["if"] = json!({ "not": inactive });
        day["then"] = json!({ "required": ["startTime", "stopTime"],
            "properties": { "startTime": { "type": "string" }, "stopTime": { "type": "string" } } });
    }
}

/// Cycles (§2.6): with cycles enabled, cooldown mode takes no schedule or dates (null is taken),
/// and scheduled mode needs a schedule.
fn cycles_rules(schemas: &mut Map<String, Value>) {
    let Some(cycles) = schemas.get_mut("CyclesInput") else { return };
    let enabled = json!({ "required": ["enabled"], "properties": { "enabled": { "const": true } } });
    let scheduled = json!({ "required": ["mode"], "properties": { "mode": { "const": "scheduled" } } });
    cycles["allOf"] = json!([
        { "if": { "allOf": [enabled, { "not": scheduled }] },
          "then": { "properties": { "schedule": { "type": "null" }, "schedule_start_date": { "type": "null" }, "schedule_end_date": { "type": "null" } } } },
        { "if": { "allOf": [enabled, scheduled] },
          "then": { "required": ["schedule"], "properties": { "schedule": { "$ref": "#/components/schemas/WeekScheduleInput" } } } },
    ]);
}

fn json_body(schema: &str) -> Value {
    json!({ "required": true, "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } } })
}

/// The answers that layers give, not handlers: 401 and 429 on every operation that takes an API
/// key, 413 and 415 on those with a body, 409 and 422 on keyed POSTs (Idempotency-Key, §7), and
/// everywhere 400 (a bad path id, query parameter, header or body), 405 (another method on the
/// path) and 500.
fn shared_answers(method: &str, operation: &mut Map<String, Value>) {
    // Provider events opt out of the API key with an empty requirement (`security(())`).
    let keyed = operation.get("security").and_then(Value::as_array).is_none_or(|all| all.iter().all(|r| r != &json!({})));
    let mut answers = vec![
        ("400", "Invalid request: a bad path id, query parameter, header or body"),
        ("405", "Method not allowed on this path; Allow lists the methods it takes"),
        ("500", "A bug or an unavailable store; never leaks internals, safe to retry"),
    ];
    if keyed {
        answers.push(("401", "Missing, malformed, unknown or revoked API key"));
        answers.push(("429", "Over the per-key rate limit; see Retry-After and RateLimit"));
    }
    if operation.contains_key("requestBody") {
        answers.push(("413", "Body over 5 MiB"));
        answers.push(("415", "Body without Content-Type: application/json"));
    }
    if keyed && method == "post" {
        answers.push(("409", "A request with the same Idempotency-Key is still being processed"));
        answers.push(("422", "Idempotency-Key reused with a different request"));
    }
    let responses = operation.entry("responses").or_insert_with(|| json!({}));
    for (status, description) in answers {
        match responses.get_mut(status) {
            Some(existing) => {
                let known = existing["description"].as_str().unwrap_or_default().to_owned();
                if !known.contains(description) {
                    existing["description"] = json!(format!("{known}; or: {description}"));
                }
            }
            None => responses[status] = error_answer(status, description),
        }
    }
}

fn error_answer(status: &str, description: &str) -> Value {
    let mut answer = json!({ "description": description,
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ErrorBody" } } } });
    if status == "405" {
        answer["headers"] = json!({ "Allow": { "description": "The methods of this path", "schema": { "type": "string" } } });
    }
    if status == "429" {
        answer["headers"] = json!({
            "Retry-After": { "description": "Whole seconds to wait", "schema": { "type": "integer", "minimum": 1 } },
            "RateLimit": { "description": "\"default\";r=<remaining>;t=<seconds>", "schema": { "type": "string" } },
            "RateLimit-Policy": { "description": "\"default\";q=<rate>;w=1", "schema": { "type": "string" } },
        });
    }
    answer
}

/// Bounds of the parameters every endpoint parses alike (`parse_id`, `parse_offset_paging`,
/// `parse_time_param`, `QueryParams::flag`, the Idempotency-Key layer).
fn shared_parameters(operation: &mut Map<String, Value>) {
    let Some(parameters) = operation.get_mut("parameters").and_then(Value::as_array_mut) else { return };
    for parameter in parameters {
        let name = parameter["name"].as_str().unwrap_or_default().to_owned();
        let place = parameter["in"].as_str().unwrap_or_default().to_owned();
        let schema = match (place.as_str(), name.as_str()) {
            ("path", "id" | "contact_id") if parameter["schema"]["type"] == "integer" => {
                json!({ "type": "integer", "format": "int64", "minimum": 1 })
            }
            ("query", "pageSize") => json!({ "type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE, "default": DEFAULT_PAGE_SIZE }),
            ("query", "pageIndex") => json!({ "type": "integer", "minimum": 0, "maximum": MAX_PAGE_INDEX, "default": 0 }),
            ("query", "archived") => json!({ "type": "boolean", "default": false }),
            ("query", time) if time.ends_with("Date") || time.ends_with("After") || time.ends_with("Before") => {
                json!({ "anyOf": [{ "type": "string", "format": "date-time" }, { "type": "string", "format": "date" }] })
            }
            ("header", "Idempotency-Key") => {
                // Printable ASCII; HTTP drops spaces at either end, so a key neither starts nor ends with one.
                json!({ "type": "string", "minLength": 1, "maxLength": MAX_KEY_LEN,
                        "pattern": format!("^[!-~]([ -~]{{0,{}}}[!-~])?$", MAX_KEY_LEN - 2) })
            }
            _ => continue,
        };
        parameter["schema"] = schema;
    }
}

/// `POST /campaigns` takes the update body with four fields required (§2.1), where `null` means
/// the default for the fields that have one; one shape per channel, since each refuses the
/// other's fields (§2.1: a channel-only field is refused even when null) and WhatsApp campaigns
/// take no enabled cycles.
fn campaign_create_schema(schemas: &mut Map<String, Value>) {
    let Some(mut create) = schemas.get("CampaignInput").cloned() else { return };
    create["required"] = json!(["name", "agent_id", "integration_id", "integration_type"]);
    for field in ["timezone", "retries", "message_limit", "concurrency_limit", "scheduling", "cycles"] {
        let schema = create["properties"][field].take();
        create["properties"][field] = json!({ "oneOf": [schema, { "type": "null" }] });
    }
    let variant = |channel: &str, other_channel_fields: &[&str]| {
        let mut shape = create.clone();
        if let Some(properties) = shape["properties"].as_object_mut() {
            for field in other_channel_fields {
                properties.remove(*field);
            }
        }
        shape["properties"]["integration_type"] = json!({ "type": "string", "enum": [channel] });
        shape.as_object_mut().map(|o| o.remove("description"));
        shape
    };
    let phone = variant("phone_call", &["template", "template_alt"]);
    let mut whatsapp = variant("whatsapp", &["first_message", "concurrency_limit"]);
    whatsapp["properties"]["cycles"] = json!({ "oneOf": [{ "type": "null" },
        { "allOf": [{ "$ref": "#/components/schemas/CyclesInput" }, { "properties": { "enabled": { "enum": [false, null] } } }] }] });
    schemas.insert(
        "CampaignCreate".to_owned(),
        json!({ "description": "The body of `POST /campaigns` (§2.1): a phone or a WhatsApp campaign.", "oneOf": [phone, whatsapp] }),
    );
}

/// `POST /integrations`: each provider with its own config (§1, §5.3): the simulator's is
/// optional, the webhook's required.
fn integration_input_schema(schemas: &mut Map<String, Value>) {
    let Some(input) = schemas.get("IntegrationInput").cloned() else { return };
    let variant = |provider: &str, config: Value, required: &[&str]| {
        let mut shape = input.clone();
        shape["properties"]["provider"] = json!({ "type": "string", "enum": [provider] });
        shape["properties"]["config"] = config;
        shape["required"] = json!(required);
        shape.as_object_mut().map(|o| o.remove("description"));
        shape
    };
    let simulator = variant(
        "simulator",
        json!({ "oneOf": [{ "$ref": "#/components/schemas/SimulatorConfig" }, { "type": "null" }] }),
        &["agent_id", "type", "provider"],
    );
    let webhook = variant("webhook", json!({ "$ref": "#/components/schemas/WebhookConfig" }), &["agent_id", "type", "provider", "config"]);
    schemas.insert("IntegrationInput".to_owned(), json!({ "oneOf": [simulator, webhook] }));
}

/// The URLs Outbound posts to (`is_http_url`), of webhook providers and subscriptions; a
/// subscription's literal private address is refused unless the server allows them, which no
/// schema can say. `PATCH /webhooks/{id}` takes the create body with every field optional.
fn webhook_input_schemas(schemas: &mut Map<String, Value>) {
    if let Some(url) = schemas.get_mut("WebhookConfig").and_then(|s| s.pointer_mut("/properties/url")) {
        url["pattern"] = json!(HTTP_URL_PATTERN);
    }
    let Some(input) = schemas.get_mut("WebhookInput") else { return };
    input["properties"]["url"]["pattern"] = json!(HTTP_URL_PATTERN);
    let mut patch = input.clone();
    patch.as_object_mut().map(|o| o.remove("required"));
    patch["description"] = json!("The body of `PATCH /webhooks/{id}`: the fields to change.");
    schemas.insert("WebhookPatch".to_owned(), patch);
}
