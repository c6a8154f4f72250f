//! The engine through HTTP with a controlled clock: campaigns run to the end. Also the harness
//! the `engine_*` test files share: a campaign's integration (simulator or a wiremock webhook
//! provider), signed events, and readers of campaigns, contacts, calls and messages.

use std::ops::Deref;

use jiff::{SignedDuration, Timestamp};
use outbound::api::ApiSettings;
use outbound::domain::attempt::RetrySettings;
use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::helpers::{TestApp, assert_matches_altur, merge};

/// `count` valid Mexican mobile numbers.
pub fn numbers(count: usize) -> Vec<Value> {
    numbers_from(0, count)
}

/// `count` valid Mexican mobile numbers starting at `first` (distinct from those of `numbers`
/// for other ranges).
pub fn numbers_from(first: usize, count: usize) -> Vec<Value> {
    (first..first + count).map(|i| json!({ "contact": format!("+5255{:08}", 20_000_000 + i), "name": format!("Contact {i}") })).collect()
}

/// A week schedule open around the clock every day.
pub fn always_open() -> Value {
    let day = json!({ "startTime": "00:00", "stopTime": "24:00" });
    json!({ "mon": day, "tue": day, "wed": day, "thu": day, "fri": day, "sat": day, "sun": day })
}

/// The instant of a wall-clock time ("2026-06-08T23:00") in America/Mexico_City.
pub fn local(civil: &str) -> Timestamp {
    let civil: jiff::civil::DateTime = civil.parse().expect("civil date-time");
    civil.in_tz("America/Mexico_City").expect("zone").timestamp()
}

/// API settings without a rate limit and with these retry settings.
pub fn retry_settings(retry_interval_mins: i64, failed_retry_limit: i64) -> ApiSettings {
    ApiSettings {
        rate_limit_rps: None,
        retry: RetrySettings { retry_interval: SignedDuration::from_mins(retry_interval_mins), failed_retry_limit },
        webhooks: super::helpers::local_webhooks(),
        keyring: super::helpers::test_keyring(),
        ..ApiSettings::default()
    }
}

/// The provider behind a harness's integration.
pub enum Provider {
    /// The in-process simulator with this config.
    Simulator(Value),
    /// A webhook provider posting to this mock server (mocks mounted by the caller).
    Webhook(MockServer),
    /// A webhook provider posting to this URL with this timeout in milliseconds.
    WebhookUrl(String, u32),
    /// Any provider with this config (`twilio`, `whatsapp_cloud`).
    Config(&'static str, Value),
}

/// A test app with one agent and one integration of a channel.
pub struct Harness {
    pub app: TestApp,
    pub agent: String,
    pub integration: String,
    pub secret: String,
    pub channel: &'static str,
    pub provider: Option<MockServer>,
}

impl Deref for Harness {
    type Target = TestApp;

    fn deref(&self) -> &TestApp {
        &self.app
    }
}

/// A mock provider that accepts every attempt (200) and never reports back.
pub async fn accepting_provider() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&server).await;
    server
}

impl Harness {
    /// `None` when the test's database is not available (the test is skipped).
    pub async fn new(settings: ApiSettings, channel: &'static str, provider: Provider) -> Option<Harness> {
        let app = TestApp::spawn_with(settings).await?;
        let agent = app.create_agent("Sales bot").await;
        let (kind, config, server) = match provider {
            Provider::Simulator(config) => ("simulator", config, None),
            Provider::Webhook(server) => ("webhook", json!({ "url": format!("{}/send", server.uri()), "timeout_ms": 2000 }), Some(server)),
            Provider::WebhookUrl(url, timeout_ms) => ("webhook", json!({ "url": url, "timeout_ms": timeout_ms }), None),
            Provider::Config(kind, config) => (kind, config, None),
        };
        let integration = app.create_integration_with(&agent, channel, kind, config).await;
        let id = integration["id"].as_str().expect("integration id").to_owned();
        let secret = integration["secret"].as_str().expect("secret").to_owned();
        Some(Harness { app, agent, integration: id, secret, channel, provider: server })
    }

    /// Default settings, the simulator with `config`.
    pub async fn simulator(channel: &'static str, config: Value) -> Option<Harness> {
        Self::new(retry_settings(30, 1), channel, Provider::Simulator(config)).await
    }

    /// Default settings, a webhook provider that accepts every attempt and never reports back.
    pub async fn webhook(channel: &'static str) -> Option<Harness> {
        Self::new(retry_settings(30, 1), channel, Provider::Webhook(accepting_provider().await)).await
    }

    /// A campaign body for this integration, open around the clock, with `extra` merged in.
    pub fn campaign_body(&self, extra: Value) -> Value {
        let mut body = json!({
            "name": "Engine run", "agent_id": self.agent, "integration_id": self.integration,
            "integration_type": self.channel, "scheduling": always_open(),
        });
        if self.channel == "whatsapp" {
            body["template"] = json!("promo_june_v1");
        }
        merge(body, extra)
    }

    pub async fn campaign(&self, extra: Value) -> i64 {
        self.app.create_campaign(self.campaign_body(extra)).await["id"].as_i64().expect("campaign id")
    }

    /// Adds contacts; returns their ids in order (every item must be created).
    pub async fn add(&self, id: i64, contacts: Vec<Value>) -> Vec<i64> {
        let count = contacts.len();
        let (status, body) = self.post(&format!("/campaigns/{id}/contacts"), json!({ "contacts": contacts })).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["summary"]["created"], count, "{body}");
        (0..count).map(|i| body["results"][i]["id"].as_str().expect("id").parse().expect("numeric id")).collect()
    }

    /// Creates a campaign with `extra`, adds `contacts` numbers and activates it.
    pub async fn start(&self, extra: Value, contacts: usize) -> (i64, Vec<i64>) {
        let id = self.campaign(extra).await;
        let ids = self.add(id, numbers(contacts)).await;
        self.action(id, "activate").await;
        (id, ids)
    }

    /// A lifecycle action that must succeed; returns the campaign.
    pub async fn action(&self, id: i64, action: &str) -> Value {
        let (status, body) = self.post(&format!("/campaigns/{id}/{action}"), json!({})).await;
        assert_eq!(status, StatusCode::OK, "{action}: {body}");
        assert_matches_altur("CampaignDetailResponse", &body);
        body["campaign"].clone()
    }

    /// The campaign object, checked against Altur's schema.
    pub async fn detail(&self, id: i64) -> Value {
        let (status, body) = self.get(&format!("/campaigns/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_matches_altur("CampaignDetailResponse", &body);
        body["campaign"].clone()
    }

    pub async fn status(&self, id: i64) -> String {
        self.detail(id).await["status"].as_str().expect("status").to_owned()
    }

    pub async fn contact(&self, id: i64, contact_id: i64) -> Value {
        let (status, body) = self.get(&format!("/campaigns/{id}/contacts/{contact_id}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["contact"].clone()
    }

    /// Every contact of the campaign, oldest first.
    pub async fn contacts(&self, id: i64) -> Vec<Value> {
        let mut out = Vec::new();
        for page in 0.. {
            let (status, body) = self.get(&format!("/campaigns/{id}/contacts?pageSize=100&pageIndex={page}")).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            out.extend(body["contacts"].as_array().expect("contacts").iter().cloned());
            if body["pagination"]["has_next"] != true {
                break;
            }
        }
        out
    }

    /// The statuses of the campaign's contacts, oldest first.
    pub async fn statuses(&self, id: i64) -> Vec<String> {
        self.contacts(id).await.iter().map(|c| c["status"].as_str().expect("status").to_owned()).collect()
    }

    /// GET /campaigns/{id}/calls{query}, asserting 200 and Altur's schema.
    pub async fn calls(&self, id: i64, query: &str) -> Value {
        let (status, body) = self.get(&format!("/campaigns/{id}/calls{query}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_matches_altur("CampaignCallsResponse", &body);
        body
    }

    /// GET /campaigns/{id}/messages{query}, asserting 200.
    pub async fn messages(&self, id: i64, query: &str) -> Value {
        let (status, body) = self.get(&format!("/campaigns/{id}/messages{query}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// Every attempt (call or message) of the campaign, oldest first.
    pub async fn attempts(&self, id: i64) -> Vec<Value> {
        let (route, key) = if self.channel == "whatsapp" { ("messages", "messages") } else { ("calls", "calls") };
        let mut out = Vec::new();
        for page in 0.. {
            let (status, body) = self.get(&format!("/campaigns/{id}/{route}?pageSize=100&pageIndex={page}")).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            if route == "calls" {
                assert_matches_altur("CampaignCallsResponse", &body);
            }
            out.extend(body[key].as_array().expect("attempts").iter().cloned());
            if body["pagination"]["has_next"] != true {
                break;
            }
        }
        out
    }

    /// The id of the contact's latest attempt.
    pub async fn attempt_of(&self, id: i64, contact_id: i64) -> String {
        let attempts = self.attempts(id).await;
        let latest = attempts.iter().rev().find(|a| a["contact"]["id"] == contact_id);
        latest.unwrap_or_else(|| panic!("no attempt for contact {contact_id} in {attempts:#?}"))["id"].as_str().expect("id").to_owned()
    }

    /// Posts a signed event `{attempt_id, status, ..extra}`.
    pub async fn event(&self, attempt_id: &str, status: &str, extra: Value) -> (StatusCode, Value) {
        let body = merge(json!({ "attempt_id": attempt_id, "status": status }), extra);
        self.post_event(&self.integration, &self.secret, &body).await
    }

    /// Posts a signed event that must answer `200 {"success": true}`.
    pub async fn event_ok(&self, attempt_id: &str, status: &str, extra: Value) {
        let (code, body) = self.event(attempt_id, status, extra).await;
        assert_eq!((code, &body), (StatusCode::OK, &json!({ "success": true })), "event {status} on {attempt_id}");
    }

    /// Posts a final event on the contact's latest attempt.
    pub async fn finish(&self, id: i64, contact_id: i64, status: &str, extra: Value) {
        let attempt = self.attempt_of(id, contact_id).await;
        self.event_ok(&attempt, status, extra).await;
    }

    /// Settles and returns how many attempts were claimed.
    pub async fn claims(&self) -> usize {
        self.settle().await.claimed
    }

    pub fn advance_mins(&self, mins: i64) {
        self.clock.advance(SignedDuration::from_mins(mins));
    }

    /// The requests the mock provider received so far.
    pub async fn received(&self) -> Vec<wiremock::Request> {
        self.provider.as_ref().expect("a webhook harness").received_requests().await.expect("request recording on")
    }
}

/// The `Idempotency-Key` header of a provider request.
pub fn idempotency_key(request: &wiremock::Request) -> String {
    request.headers.get("idempotency-key").and_then(|v| v.to_str().ok()).expect("Idempotency-Key header").to_owned()
}

/// Rounds as the contract does: count / denominator to 4 decimals, 0 when the denominator is 0.
pub fn rate(count: usize, total: usize) -> f64 {
    if total == 0 { 0.0 } else { (count as f64 / total as f64 * 10_000.0).round() / 10_000.0 }
}

#[tokio::test]
async fn a_phone_campaign_runs_to_finished_with_exact_analytics() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    let campaign = app.create_campaign(setup.phone(json!({ "concurrency_limit": 5, "message_limit": 10000 }))).await;
    let id = campaign["id"].as_i64().expect("id");
    let (status, body) = app.post(&format!("/campaigns/{id}/contacts"), json!({ "contacts": numbers(40) })).await;
    assert_eq!(status, 201, "{body}");
    let (status, _) = app.post(&format!("/campaigns/{id}/activate"), json!({})).await;
    assert_eq!(status, 200);
    for _ in 0..10 {
        app.settle().await;
        app.clock.advance(SignedDuration::from_mins(31));
    }
    let (status, body) = app.get(&format!("/campaigns/{id}")).await;
    assert_eq!(status, 200);
    assert_matches_altur("CampaignDetailResponse", &body);
    let campaign = &body["campaign"];
    assert_eq!(campaign["status"], "finished", "{campaign:#}");
    let analytics = &campaign["analytics"];
    assert_eq!(analytics["contacts"], 40);
    let (status, calls) = app.get(&format!("/campaigns/{id}/calls?pageSize=100")).await;
    assert_eq!(status, 200, "{calls}");
    assert_matches_altur("CampaignCallsResponse", &calls);
    assert_eq!(calls["total_count"], analytics["calls"], "{analytics:#}");
    println!("{analytics:#}");
}
