//! Provider integrations through HTTP (PROVIDERS.md §1): configs validated per provider, the
//! credentials sealed at rest and shown masked, `PATCH` (rotation keeps what is left out, `type`
//! and `provider` immutable), `callback_url`, `health`, and the key's absence on PostgreSQL.

use outbound::api::ApiSettings;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::helpers::{TestApp, assert_error};

const TOKEN: &str = "twilio-auth-token-0000-9876";

fn twilio(agent: &str, config: Value) -> Value {
    json!({ "agent_id": agent, "type": "phone_call", "provider": "twilio", "config": config })
}

pub fn twilio_config() -> Value {
    json!({
        "account_sid": format!("AC{}", "a".repeat(32)), "auth_token": TOKEN, "from": "+14155550199",
        "twiml_url": "https://agent.example/twiml"
    })
}

pub fn whatsapp_config() -> Value {
    json!({
        "phone_number_id": "106540352242922", "access_token": "EAAG-access-token-4321", "app_secret": "app-secret-8765",
        "verify_token": "meatyhamhock"
    })
}

async fn agent(app: &TestApp) -> String {
    let (status, body) = app.post("/agents", json!({ "name": "Caller" })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["agent"]["id"].as_str().expect("agent id").to_owned()
}

#[tokio::test]
async fn a_twilio_integration_shows_its_config_with_defaults_masked_credentials_callback_url_and_health() {
    let Some(app) = TestApp::spawn().await else { return };
    let agent = agent(&app).await;
    let (status, body) = app.post("/integrations", twilio(&agent, twilio_config())).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let integration = &body["integration"];
    let id = integration["id"].as_str().expect("id");
    assert!(id.starts_with("iph_"), "{id}");
    assert_eq!(
        integration["config"],
        json!({
            "account_sid": format!("AC{}", "a".repeat(32)), "auth_token": "••••••••9876", "from": "+14155550199",
            "twiml_url": "https://agent.example/twiml", "twiml": null, "machine_detection": "Enable", "timeout_s": 30,
            "record": false, "api_base": "https://api.twilio.com", "timeout_ms": 10000, "max_per_second": 1.0
        })
    );
    assert_eq!(integration["callback_url"], format!("{}/api/v1.0/integrations/{id}/events", app.base));
    assert_eq!(integration["health"], json!({ "status": "ok", "reason": null, "since": null }));
    assert!(integration["secret"].is_string(), "the signing secret is shown at creation");

    let (status, shown) = app.get(&format!("/integrations/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["integration"]["config"]["auth_token"], "••••••••9876");
    assert!(shown["integration"].get("secret").is_none());
    assert!(!shown.to_string().contains(TOKEN), "never shown");
    let (_, list) = app.get("/integrations").await;
    assert!(!list.to_string().contains(TOKEN));

    // At rest, sealed: the database holds no plain credential.
    if app.database_url.starts_with("sqlite") {
        let path = outbound::store::sqlite_file(&app.database_url).expect("a file");
        let conn = rusqlite::Connection::open(path).expect("open");
        let config: String = conn.query_row("SELECT config FROM integrations WHERE id = ?", [id], |r| r.get(0)).expect("row");
        assert!(!config.contains(TOKEN), "{config}");
        assert!(config.contains("\"sealed\""), "{config}");
    }
}

#[tokio::test]
async fn provider_configs_are_validated_with_the_field_at_fault() {
    let Some(app) = TestApp::spawn().await else { return };
    let agent = agent(&app).await;
    // The config with these keys changed; "-" removes one.
    let with = |change: Value| {
        let mut config = twilio_config();
        for (key, value) in change.as_object().expect("object") {
            if value == "-" {
                config.as_object_mut().expect("object").remove(key);
            } else {
                config[key] = value.clone();
            }
        }
        twilio(&agent, config)
    };
    let rejected = [
        (with(json!({ "account_sid": "AC123" })), "config.account_sid"),
        (with(json!({ "auth_token": "-" })), "config.auth_token"),
        (with(json!({ "auth_token": null })), "config.auth_token"),
        (with(json!({ "auth_token": "" })), "config.auth_token"),
        (with(json!({ "auth_token": "t".repeat(513) })), "config.auth_token"),
        (with(json!({ "auth_token": { "sealed": "x", "last4": "1234" } })), "config.auth_token"),
        (with(json!({ "from": "4155550199" })), "config.from"),
        (with(json!({ "twiml_url": "-" })), "config.twiml_url"),
        (with(json!({ "twiml": "<Response/>" })), "config.twiml_url"),
        (with(json!({ "twiml_url": "ftp://agent.example" })), "config.twiml_url"),
        (with(json!({ "timeout_s": 4 })), "config.timeout_s"),
        (with(json!({ "timeout_s": 601 })), "config.timeout_s"),
        (with(json!({ "max_per_second": 0 })), "config.max_per_second"),
        (with(json!({ "max_per_second": 10001 })), "config.max_per_second"),
        (with(json!({ "timeout_ms": 0 })), "config.timeout_ms"),
        (with(json!({ "api_base": "not a url" })), "config.api_base"),
        (with(json!({ "machine_detection": "Sometimes" })), "config.machine_detection"),
        (with(json!({ "colour": "blue" })), "config.colour"),
        (
            json!({ "agent_id": agent, "type": "whatsapp", "provider": "whatsapp_cloud",
                    "config": merge_into(whatsapp_config(), json!({ "parameters": ["name", "birthday"] })) }),
            "config.parameters[1]",
        ),
        (
            json!({ "agent_id": agent, "type": "whatsapp", "provider": "whatsapp_cloud",
                    "config": merge_into(whatsapp_config(), json!({ "language": "Spanish" })) }),
            "config.language",
        ),
        (
            json!({ "agent_id": agent, "type": "whatsapp", "provider": "whatsapp_cloud",
                    "config": merge_into(whatsapp_config(), json!({ "verify_token": "" })) }),
            "config.verify_token",
        ),
    ];
    for (body, field) in rejected {
        let (status, reply) = app.post("/integrations", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {reply}");
        assert_error(status, &reply, 400, "INVALID_REQUEST", Some(field));
    }
    let (_, list) = app.get("/integrations").await;
    assert_eq!(list["total_count"], 0, "nothing stored");

    // Accepted edges: the inline TwiML at 4,000 characters, AMD off, the fastest pace, a
    // fractional pace, ring time bounds.
    for change in [
        json!({ "twiml_url": "-", "twiml": "x".repeat(4000) }),
        json!({ "machine_detection": null, "timeout_s": 5 }),
        json!({ "max_per_second": 10000, "timeout_s": 600 }),
        json!({ "max_per_second": 0.5 }),
        json!({ "auth_token": "t".repeat(512) }),
    ] {
        let (status, reply) = app.post("/integrations", with(change.clone())).await;
        assert_eq!(status, StatusCode::CREATED, "{change}: {reply}");
    }
    let (status, reply) = app.post("/integrations", with(json!({ "twiml_url": "-", "twiml": "x".repeat(4001) }))).await;
    assert_error(status, &reply, 400, "INVALID_REQUEST", Some("config.twiml"));
    let (status, reply) = app.post("/integrations", with(json!({ "machine_detection": null }))).await;
    assert_eq!(reply["integration"]["config"]["machine_detection"], Value::Null, "{status} {reply}");

    let whatsapp = json!({ "agent_id": agent, "type": "whatsapp", "provider": "whatsapp_cloud",
        "config": merge_into(whatsapp_config(), json!({ "parameters": ["name", "contact", "context", "f_id", "extracted_data.plan"] })) });
    let (status, reply) = app.post("/integrations", whatsapp).await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    let config = &reply["integration"]["config"];
    assert!(reply["integration"]["id"].as_str().is_some_and(|id| id.starts_with("iwa_")));
    assert_eq!(config["access_token"], "••••••••4321");
    assert_eq!(config["app_secret"], "••••••••8765");
    assert_eq!(config["verify_token"], "meatyhamhock", "not a credential: Meta sends it back in the clear");
    assert_eq!(
        [&config["api_version"], &config["language"], &config["accept_payloads"], &config["reject_payloads"], &config["convert_payloads"]],
        [&json!("v21.0"), &json!("es_MX"), &json!(["accept"]), &json!(["reject"]), &json!([])]
    );
    assert_eq!(config["max_per_second"], 80.0);
    assert_eq!(config["api_base"], "https://graph.facebook.com");
}

/// The voice platforms' configs (PROVIDERS.md §4, §5): each rule with a refused and an accepted
/// edge, credentials masked, defaults filled in.
#[tokio::test]
async fn voice_platform_configs_are_validated_with_the_field_at_fault() {
    let Some(app) = TestApp::spawn().await else { return };
    let agent = agent(&app).await;
    let vapi = |change: Value| {
        let config = json!({ "api_key": "vapi-private-key-0001", "assistant_id": "4a170597-a0c2-4657-8c32-cb93f080cead",
            "phone_number_id": "c6ea6cb0-0dfb-4a65-918f-6a33abb54b64", "server_secret": "server-secret-0002" });
        json!({ "agent_id": agent, "type": "phone_call", "provider": "vapi", "config": merge_into(config, change) })
    };
    let retell = |change: Value| {
        let config = json!({ "api_key": "key_retell_0003", "from_number": "+14157774444" });
        json!({ "agent_id": agent, "type": "phone_call", "provider": "retell", "config": merge_into(config, change) })
    };
    let rejected = [
        (vapi(json!({ "assistant_id": "" })), "config.assistant_id"),
        (vapi(json!({ "assistant_id": "a".repeat(201) })), "config.assistant_id"),
        (vapi(json!({ "phone_number_id": "" })), "config.phone_number_id"),
        (vapi(json!({ "api_key": "" })), "config.api_key"),
        (vapi(json!({ "server_secret": null })), "config.server_secret"),
        (vapi(json!({ "success_key": "" })), "config.success_key"),
        (vapi(json!({ "server_hmac": "yes" })), "config.server_hmac"),
        (vapi(json!({ "max_per_second": 0 })), "config.max_per_second"),
        (vapi(json!({ "api_base": "ftp://api.vapi.ai" })), "config.api_base"),
        (vapi(json!({ "colour": "blue" })), "config.colour"),
        (retell(json!({ "from_number": "4157774444" })), "config.from_number"),
        (retell(json!({ "api_key": "k".repeat(513) })), "config.api_key"),
        (retell(json!({ "agent_id": "" })), "config.agent_id"),
        (retell(json!({ "timeout_ms": 60001 })), "config.timeout_ms"),
        (retell(json!({ "max_per_second": 10001 })), "config.max_per_second"),
    ];
    for (body, field) in rejected {
        let (status, reply) = app.post("/integrations", body.clone()).await;
        assert_error(status, &reply, 400, "INVALID_REQUEST", Some(field));
    }
    let (_, list) = app.get("/integrations").await;
    assert_eq!(list["total_count"], 0, "nothing stored");

    let (status, reply) = app.post("/integrations", vapi(json!({}))).await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    let config = &reply["integration"]["config"];
    assert_eq!(
        [&config["api_key"], &config["server_secret"], &config["server_hmac"], &config["success_key"]],
        [&json!("••••••••0001"), &json!("••••••••0002"), &json!(false), &Value::Null]
    );
    assert_eq!(
        [&config["api_base"], &config["timeout_ms"], &config["max_per_second"]],
        [&json!("https://api.vapi.ai"), &json!(10000), &json!(5.0)]
    );
    let (status, reply) = app.post("/integrations", retell(json!({}))).await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    let config = &reply["integration"]["config"];
    assert_eq!(
        [&config["api_key"], &config["agent_id"], &config["api_base"], &config["max_per_second"]],
        [&json!("••••••••0003"), &Value::Null, &json!("https://api.retellai.com"), &json!(5.0)]
    );
    // Accepted edges.
    for body in [
        vapi(json!({ "assistant_id": "a".repeat(200), "success_key": "k", "server_hmac": true, "max_per_second": 10000 })),
        vapi(json!({ "api_key": "k".repeat(512), "timeout_ms": 1 })),
        retell(json!({ "from_number": "+1234567", "agent_id": "a".repeat(200), "max_per_second": 0.1 })),
    ] {
        let (status, reply) = app.post("/integrations", body.clone()).await;
        assert_eq!(status, StatusCode::CREATED, "{body}: {reply}");
    }
}

fn merge_into(mut base: Value, change: Value) -> Value {
    for (key, value) in change.as_object().expect("object") {
        base[key] = value.clone();
    }
    base
}

#[tokio::test]
async fn patch_replaces_the_config_keeps_credentials_left_out_and_refuses_type_and_provider_changes() {
    let Some(app) = TestApp::spawn().await else { return };
    let agent = agent(&app).await;
    let (_, created) = app.post("/integrations", twilio(&agent, twilio_config())).await;
    let id = created["integration"]["id"].as_str().expect("id").to_owned();
    let path = format!("/integrations/{id}");

    // The whole config is replaced, the token left out is kept.
    let mut config = twilio_config();
    config.as_object_mut().expect("object").remove("auth_token");
    config["max_per_second"] = json!(5);
    let (status, body) = app.patch(&path, json!({ "config": config })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["integration"]["config"]["auth_token"], "••••••••9876");
    assert_eq!(body["integration"]["config"]["max_per_second"], 5.0);
    assert_eq!(body["integration"]["config"]["timeout_s"], 30, "defaults fill what the new config leaves out");

    // Rotation: a new token.
    let mut rotated = twilio_config();
    rotated["auth_token"] = json!("rotated-token-5555");
    let (status, body) = app.patch(&path, json!({ "config": rotated, "type": "phone_call", "provider": "twilio" })).await;
    assert_eq!(status, StatusCode::OK, "the same type and provider are accepted: {body}");
    assert_eq!(body["integration"]["config"]["auth_token"], "••••••••5555");
    assert_eq!(body["integration"]["config"]["max_per_second"], 1.0, "the whole config was replaced");
    assert!(body["integration"].get("secret").is_none());

    for (patch, field) in [
        (json!({ "provider": "simulator" }), "provider"),
        (json!({ "type": "whatsapp" }), "type"),
        (json!({ "agent_id": uuid::Uuid::new_v4() }), "agent_id"),
    ] {
        let (status, body) = app.patch(&path, patch).await;
        assert_error(status, &body, 400, "IMMUTABLE_FIELD", Some(field));
    }
    let (status, body) = app.patch(&path, json!({ "config": merge_into(twilio_config(), json!({ "account_sid": "nope" })) })).await;
    assert_error(status, &body, 400, "INVALID_REQUEST", Some("config.account_sid"));
    let (status, body) = app.patch(&path, json!({ "name": "x" })).await;
    assert_error(status, &body, 400, "INVALID_REQUEST", Some("name"));
    let (_, shown) = app.get(&path).await;
    assert_eq!(shown["integration"]["config"]["auth_token"], "••••••••5555", "refused patches changed nothing");

    // Another tenant's integration is not found; so is a malformed id.
    let other = app.new_key("globex").await;
    let (status, body) = app.call_with_key(reqwest::Method::PATCH, &path, Some(json!({ "config": twilio_config() })), Some(&other)).await;
    assert_error(status, &body, 404, "NOT_FOUND", None);
    let (status, body) = app.patch("/integrations/iph_nope", json!({})).await;
    assert_error(status, &body, 404, "NOT_FOUND", None);

    // A simulator's config may be patched too (it has no credentials).
    let (_, sim) = app.post("/integrations", json!({ "agent_id": agent, "type": "phone_call", "provider": "simulator" })).await;
    let sim_path = format!("/integrations/{}", sim["integration"]["id"].as_str().expect("id"));
    let (status, body) = app.patch(&sim_path, json!({ "config": { "answer_rate": 1 } })).await;
    assert_eq!((status, &body["integration"]["config"]["answer_rate"]), (StatusCode::OK, &json!(1.0)), "{body}");
}

#[tokio::test]
async fn without_a_secret_key_a_provider_with_credentials_is_refused_naming_the_variable() {
    // As on PostgreSQL with OUTBOUND_SECRET_KEY unset: no key file to fall back on.
    let settings = ApiSettings { rate_limit_rps: None, ..ApiSettings::default() };
    let Some(app) = TestApp::spawn_with(settings).await else { return };
    let agent = agent(&app).await;
    let (status, body) = app.post("/integrations", twilio(&agent, twilio_config())).await;
    assert_error(status, &body, 400, "INVALID_REQUEST", Some("config"));
    assert!(body["message"].as_str().is_some_and(|m| m.contains("OUTBOUND_SECRET_KEY")), "{body}");
    // Providers without credentials need no key.
    let (status, body) = app.post("/integrations", json!({ "agent_id": agent, "type": "phone_call", "provider": "simulator" })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}
