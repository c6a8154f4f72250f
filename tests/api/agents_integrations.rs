//! Agents and integrations (§1): ids in the contract's formats, the secret shown once, configs
//! validated and stored with their defaults.

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::helpers::{TestApp, assert_error};

fn is_base62(text: &str) -> bool {
    text.bytes().all(|b| b.is_ascii_alphanumeric())
}

#[tokio::test]
async fn agents_are_created_listed_and_retrieved() {
    let Some(app) = TestApp::spawn().await else { return };
    let (status, body) = app.post("/agents", json!({ "name": "  Sales bot  " })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["agent"]["id"].as_str().expect("id").to_owned();
    let parsed = uuid::Uuid::parse_str(&id).expect("uuid");
    assert_eq!(parsed.get_version_num(), 4);
    assert_eq!(body["agent"]["name"], "Sales bot");
    let (status, fetched) = app.get(&format!("/agents/{id}")).await;
    assert_eq!((status, &fetched["agent"]), (StatusCode::OK, &body["agent"]));
    let (status, list) = app.get("/agents").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["agents"], json!([body["agent"]]));

    let long = "x".repeat(255);
    let (status, _) = app.post("/agents", json!({ "name": long })).await;
    assert_eq!(status, StatusCode::CREATED);
    for (bad, _why) in [
        (json!({ "name": "x".repeat(256) }), "too long"),
        (json!({ "name": "   " }), "blank"),
        (json!({}), "missing"),
        (json!({ "name": 5 }), "type"),
    ] {
        let (status, body) = app.post("/agents", bad).await;
        assert_error(status, &body, 400, "INVALID_REQUEST", Some("name"));
    }
    let (status, body) = app.get("/agents/6cb951e6-9877-4d7c-88d7-56b4948d3cce").await;
    assert_error(status, &body, 404, "NOT_FOUND", None);
    let (status, body) = app.get("/agents/not-a-uuid").await;
    assert_error(status, &body, 404, "NOT_FOUND", None);
}

#[tokio::test]
async fn integrations_show_their_secret_once_and_fill_config_defaults() {
    let Some(app) = TestApp::spawn().await else { return };
    let agent = app.create_agent("Bot").await;
    let (status, body) = app
        .post(
            "/integrations",
            json!({ "agent_id": agent, "type": "phone_call", "provider": "simulator", "config": { "answer_rate": 1.0 } }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let integration = &body["integration"];
    let id = integration["id"].as_str().expect("id");
    assert!(id.starts_with("iph_") && id.len() == 24 && is_base62(&id[4..]), "{id}");
    assert_eq!(integration["type"], "phone_call");
    assert_eq!(integration["agent_id"], json!(agent));
    assert_eq!(integration["provider"], "simulator");
    assert_eq!(integration["config"]["answer_rate"], 1.0);
    assert_eq!(integration["config"]["delivery_rate"], 0.95);
    assert_eq!(integration["config"]["duration_s"], json!([20, 180]));
    let secret = integration["secret"].as_str().expect("secret shown at creation");
    assert_eq!(base64_len(secret), 32);

    let (status, fetched) = app.get(&format!("/integrations/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(fetched["integration"].get("secret").is_none(), "secret is shown only at creation: {fetched}");
    assert_eq!(fetched["integration"]["config"], integration["config"]);
    let (_, list) = app.get("/integrations").await;
    assert_eq!(list["integrations"].as_array().map(Vec::len), Some(1));
    assert!(list["integrations"][0].get("secret").is_none());

    let (status, body) = app
        .post(
            "/integrations",
            json!({ "agent_id": agent, "type": "whatsapp", "provider": "webhook", "config": { "url": "https://provider.example/send" } }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(body["integration"]["id"].as_str().expect("id").starts_with("iwa_"));
    assert_eq!(body["integration"]["config"], json!({ "url": "https://provider.example/send", "timeout_ms": 5000 }));
}

fn base64_len(secret: &str) -> usize {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(secret).map(|b| b.len()).unwrap_or(0)
}

#[tokio::test]
async fn integration_configs_are_validated() {
    let Some(app) = TestApp::spawn().await else { return };
    let agent = app.create_agent("Bot").await;
    let sim = |config: Value| json!({ "agent_id": agent, "type": "phone_call", "provider": "simulator", "config": config });
    let hook = |config: Value| json!({ "agent_id": agent, "type": "phone_call", "provider": "webhook", "config": config });
    let accepted = [
        sim(json!({ "answer_rate": 0.0, "convert_rate": 1.0, "duration_s": [0, 0], "latency_ms": 60000 })),
        sim(json!(null)),
        hook(json!({ "url": "http://127.0.0.1:9000/hook", "timeout_ms": 1 })),
        hook(json!({ "url": "https://x.example", "timeout_ms": 60000 })),
    ];
    for body in accepted {
        let (status, reply) = app.post("/integrations", body.clone()).await;
        assert_eq!(status, StatusCode::CREATED, "{body} → {reply}");
    }
    let rejected = [
        (sim(json!({ "answer_rate": 1.01 })), "config.answer_rate"),
        (sim(json!({ "machine_rate": -0.1 })), "config.machine_rate"),
        (sim(json!({ "duration_s": [30, 20] })), "config.duration_s"),
        (sim(json!({ "latency_ms": 60001 })), "config.latency_ms"),
        (sim(json!({ "colour": 1 })), "config.colour"),
        (hook(json!({})), "config"),
        (hook(json!({ "url": "ftp://x.example" })), "config.url"),
        (hook(json!({ "url": "not a url" })), "config.url"),
        (hook(json!({ "url": "https://x.example", "timeout_ms": 0 })), "config.timeout_ms"),
        (hook(json!({ "url": "https://x.example", "timeout_ms": 60001 })), "config.timeout_ms"),
        (json!({ "agent_id": agent, "type": "sms", "provider": "simulator" }), "type"),
        (json!({ "agent_id": agent, "type": "phone_call", "provider": "bland" }), "provider"),
        // A real provider serves one channel.
        (json!({ "agent_id": agent, "type": "phone_call", "provider": "whatsapp_cloud" }), "provider"),
        (json!({ "agent_id": agent, "type": "whatsapp", "provider": "twilio" }), "provider"),
        (json!({ "agent_id": agent, "type": "whatsapp", "provider": "vapi" }), "provider"),
        (json!({ "agent_id": agent, "type": "whatsapp", "provider": "retell" }), "provider"),
        (json!({ "agent_id": "nope", "type": "phone_call", "provider": "simulator" }), "agent_id"),
        (json!({ "type": "phone_call", "provider": "simulator" }), "agent_id"),
    ];
    for (body, field) in rejected {
        let (status, reply) = app.post("/integrations", body.clone()).await;
        assert_error(status, &reply, 400, "INVALID_REQUEST", Some(field));
    }
    let (status, reply) =
        app.post("/integrations", json!({ "agent_id": uuid::Uuid::new_v4(), "type": "phone_call", "provider": "simulator" })).await;
    assert_error(status, &reply, 404, "AGENT_NOT_FOUND", Some("agent_id"));
    let (_, list) = app.get("/integrations").await;
    assert_eq!(list["total_count"], 4, "only accepted requests created integrations");
}
