//! Webhooks out (§8): subscriptions (create, read, list, update, delete, validation, private
//! targets, Idempotency-Key, tenants), delivery (body, headers and both signatures, retries on the
//! schedule, the deliveries log and a retry by hand, secret rotation, disabled and deleted
//! subscriptions) and the events (`webhook.test`, `campaign.status_changed`,
//! `campaign.cycle_completed`, `on_call_end`, `message.status_changed`). Receivers are wiremock
//! servers; deliveries are sent by `app.deliver()` at the controlled clock's instant.

use std::collections::BTreeSet;
use std::time::Duration;

use base64::Engine as _;
use hmac::Mac as _;
use jiff::{SignedDuration, Timestamp};
use outbound::api::ApiSettings;
use outbound::webhooks::WebhookSettings;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use super::engine::{Harness, Provider, accepting_provider, numbers, retry_settings};
use super::helpers::{TestApp, assert_error, post_with_key, start_time};

const ALL_EVENTS: [&str; 5] =
    ["campaign.status_changed", "campaign.cycle_completed", "on_call_end", "message.status_changed", "webhook.test"];
const CAMPAIGN_STATUSES: [&str; 6] = ["pending", "ready", "active", "inactive", "cooldown", "finished"];
const ENVELOPE_KEYS: [&str; 6] = ["event_id", "event_type", "occurred_at", "api_version", "project_id", "data"];
const DELIVERY_KEYS: [&str; 11] = [
    "id",
    "event_id",
    "event_type",
    "status",
    "attempts",
    "last_status_code",
    "last_error",
    "next_attempt_at",
    "created_at",
    "delivered_at",
    "payload",
];

/// A receiver that answers every POST with `status`.
async fn receiver(status: u16) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(status)).mount(&server).await;
    server
}

fn hook_url(server: &MockServer) -> String {
    format!("{}/hook", server.uri())
}

/// What a receiver got so far, in order of arrival.
async fn received(server: &MockServer) -> Vec<Request> {
    server.received_requests().await.expect("request recording on")
}

async fn received_bodies(server: &MockServer) -> Vec<Value> {
    received(server).await.iter().map(body_of).collect()
}

fn body_of(request: &Request) -> Value {
    serde_json::from_slice(&request.body).unwrap_or_else(|e| panic!("delivery body is not JSON ({e}): {:?}", request.body))
}

/// Subscribes `url` to `events` (with `filters` unless null); returns the webhook's id and secret.
async fn subscribe(app: &TestApp, url: &str, events: &[&str], filters: Value) -> (String, String) {
    let mut body = json!({ "url": url, "events": events });
    if !filters.is_null() {
        body["filters"] = filters;
    }
    let (status, body) = app.post("/webhooks", body).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["webhook"]["id"].as_str().expect("webhook id").to_owned();
    let secret = body["webhook"]["secret"].as_str().expect("webhook secret").to_owned();
    (id, secret)
}

/// base64(HMAC-SHA256(base64-decoded secret, message)), computed here without the server's code.
fn hmac_b64(secret: &str, message: &[u8]) -> String {
    let key = base64::engine::general_purpose::STANDARD.decode(secret).expect("secret is base64");
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).expect("HMAC takes any key length");
    mac.update(message);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn header(request: &Request, name: &str) -> String {
    request
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("header {name} missing in {:?}", request.headers))
        .to_owned()
}

/// Asserts the delivery's headers and both signatures with `secret`, a `webhook-timestamp` of
/// `sent_at` and a compact JSON body; returns the `webhook-id` header.
#[track_caller]
fn assert_signed(request: &Request, secret: &str, sent_at: Timestamp) -> String {
    assert_eq!(request.method.as_str(), "POST");
    assert_eq!(header(request, "content-type"), "application/json");
    let agent = header(request, "user-agent");
    assert!(agent.starts_with("Outbound-Webhooks/") && agent.len() > "Outbound-Webhooks/".len(), "User-Agent {agent}");
    assert_eq!(header(request, "x-altur-signature"), hmac_b64(secret, &request.body), "X-Altur-Signature");
    let id = header(request, "webhook-id");
    assert_id(&id, "evt_");
    let timestamp = header(request, "webhook-timestamp");
    assert_eq!(timestamp, sent_at.as_second().to_string(), "webhook-timestamp is the attempt's time");
    let mut signed = format!("{id}.{timestamp}.").into_bytes();
    signed.extend_from_slice(&request.body);
    assert_eq!(header(request, "webhook-signature"), format!("v1,{}", hmac_b64(secret, &signed)), "webhook-signature");
    assert_compact(&request.body);
    id
}

/// No whitespace outside JSON strings.
#[track_caller]
fn assert_compact(body: &[u8]) {
    let (mut in_string, mut escaped) = (false, false);
    for (i, &byte) in body.iter().enumerate() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
        } else if byte == b'"' {
            in_string = true;
        } else {
            assert!(!byte.is_ascii_whitespace(), "whitespace at byte {i} of {}", String::from_utf8_lossy(body));
        }
    }
}

/// `prefix` followed by 20 base62 characters.
#[track_caller]
fn assert_id(id: &str, prefix: &str) {
    let rest = id.strip_prefix(prefix).unwrap_or_else(|| panic!("{id} does not start with {prefix}"));
    assert!(rest.len() == 20 && rest.chars().all(|c| c.is_ascii_alphanumeric()), "{id}: {prefix} and 20 base62 characters");
}

#[track_caller]
fn assert_secret(secret: &Value) -> String {
    let secret = secret.as_str().unwrap_or_else(|| panic!("secret is a string: {secret}"));
    let bytes = base64::engine::general_purpose::STANDARD.decode(secret).expect("secret is base64");
    assert_eq!(bytes.len(), 32, "secret is 32 bytes");
    secret.to_owned()
}

fn keys(object: &Value) -> BTreeSet<&str> {
    object.as_object().unwrap_or_else(|| panic!("an object: {object}")).keys().map(String::as_str).collect()
}

/// Asserts the campaign event envelope (§8.3) of this type; returns `data`.
#[track_caller]
fn assert_envelope(event: &Value, event_type: &str, occurred_at: &str) -> Value {
    assert_eq!(keys(event), BTreeSet::from(ENVELOPE_KEYS), "{event:#}");
    assert_id(event["event_id"].as_str().expect("event_id"), "evt_");
    assert_eq!(event["event_type"], event_type, "{event:#}");
    assert_eq!(event["occurred_at"], occurred_at, "{event:#}");
    assert_eq!(event["api_version"], "1.0");
    assert_id(event["project_id"].as_str().expect("project_id"), "prj_");
    event["data"].clone()
}

fn at(offset_secs: i64) -> Timestamp {
    start_time() + SignedDuration::from_secs(offset_secs)
}

/// `2026-06-08T18:00:00Z` + `offset_secs`, as the contract writes timestamps.
fn utc(offset_secs: i64) -> String {
    at(offset_secs).to_string()
}

fn same_instant(value: &Value, expected: Timestamp) -> bool {
    value.as_str().and_then(|s| s.parse::<Timestamp>().ok()) == Some(expected)
}

/// The deliveries log of a webhook, with `query` (`?status=…`); asserts 200 and the item shape.
async fn deliveries(app: &TestApp, webhook: &str, query: &str) -> Vec<Value> {
    let (status, body) = app.get(&format!("/webhooks/{webhook}/deliveries{query}")).await;
    assert_eq!(status, StatusCode::OK, "{query}: {body}");
    assert_eq!(body["success"], true, "{body}");
    assert!(body["pagination"].is_object(), "{body}");
    let items = body["deliveries"].as_array().unwrap_or_else(|| panic!("deliveries: {body}")).clone();
    for item in &items {
        for key in DELIVERY_KEYS {
            assert!(item.get(key).is_some(), "{key} missing in {item:#}");
        }
        let id = item["id"].as_str().expect("delivery id");
        assert!(id.starts_with("dlv_") && id.len() > 4, "delivery id {id}");
    }
    items
}

/// The only delivery of a webhook.
async fn only_delivery(app: &TestApp, webhook: &str) -> Value {
    let all = deliveries(app, webhook, "").await;
    assert_eq!(all.len(), 1, "{all:#?}");
    all[0].clone()
}

/// POST /webhooks/{id}/test; returns the event id.
async fn send_test(app: &TestApp, webhook: &str) -> String {
    let (status, body) = app.post(&format!("/webhooks/{webhook}/test"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(keys(&body), BTreeSet::from(["success", "event_id"]), "{body}");
    assert_eq!(body["success"], true);
    let event_id = body["event_id"].as_str().expect("event_id").to_owned();
    assert_id(&event_id, "evt_");
    event_id
}

/// A webhook detail without its secret, as GET answers it.
fn without_secret(webhook: &Value) -> Value {
    let mut webhook = webhook.clone();
    webhook.as_object_mut().expect("object").remove("secret");
    webhook
}

async fn get_webhook(app: &TestApp, id: &str) -> Value {
    let (status, body) = app.get(&format!("/webhooks/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(keys(&body), BTreeSet::from(["success", "webhook"]), "{body}");
    assert_eq!(body["success"], true);
    assert!(body["webhook"].get("secret").is_none(), "GET never shows the secret: {body}");
    body["webhook"].clone()
}

async fn list_webhooks(app: &TestApp, query: &str) -> Value {
    let (status, body) = app.get(&format!("/webhooks{query}")).await;
    assert_eq!(status, StatusCode::OK, "{query}: {body}");
    assert_eq!(keys(&body), BTreeSet::from(["success", "total_count", "webhooks", "pagination"]), "{body}");
    for webhook in body["webhooks"].as_array().expect("webhooks") {
        assert!(webhook.get("secret").is_none(), "the list never shows a secret: {webhook}");
    }
    body
}

/// The offset-paging fields of a list's `pagination` (each present, `null` when there is no such page).
fn paging(list: &Value) -> Value {
    let pagination = &list["pagination"];
    let mut out = serde_json::Map::new();
    for key in ["has_next", "has_previous", "next_page", "previous_page"] {
        let value = pagination.get(key).unwrap_or_else(|| panic!("pagination.{key} missing in {pagination}"));
        out.insert(key.to_owned(), value.clone());
    }
    Value::Object(out)
}

fn ids(list: &Value) -> Vec<String> {
    list["webhooks"].as_array().expect("webhooks").iter().map(|w| w["id"].as_str().expect("id").to_owned()).collect()
}

#[tokio::test]
async fn subscriptions_are_created_read_listed_updated_and_deleted() {
    let Some(app) = TestApp::spawn().await else { return };
    let (status, body) =
        app.post("/webhooks", json!({ "url": "https://crm.example.com/hooks/outbound", "events": ["campaign.status_changed"] })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(keys(&body), BTreeSet::from(["success", "webhook"]), "{body}");
    assert_eq!(body["success"], true);
    let first = body["webhook"].clone();
    let first_id = first["id"].as_str().expect("id").to_owned();
    assert_id(&first_id, "whk_");
    let secret = assert_secret(&first["secret"]);
    assert_eq!(
        first,
        json!({ "id": first_id, "url": "https://crm.example.com/hooks/outbound", "events": ["campaign.status_changed"],
            "filters": null, "description": null, "enabled": true,
            "created_at": "2026-06-08T18:00:00Z", "updated_at": "2026-06-08T18:00:00Z", "secret": secret }),
        "defaults: filters and description null, enabled true"
    );
    assert_eq!(get_webhook(&app, &first_id).await, without_secret(&first));

    // Every field given; every event type and every campaign status in the filter; plain http.
    app.clock.advance(SignedDuration::from_mins(1));
    let full = json!({ "url": "http://crm.example.com/all", "events": ALL_EVENTS, "filters": { "status": CAMPAIGN_STATUSES },
        "description": "CRM sync", "enabled": false });
    let (status, body) = app.post("/webhooks", full.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let second = body["webhook"].clone();
    let second_id = second["id"].as_str().expect("id").to_owned();
    let second_secret = assert_secret(&second["secret"]);
    assert_ne!(second_secret, secret, "each webhook has a secret of its own");
    let mut expected = full.clone();
    for (k, v) in [
        ("id", json!(second_id)),
        ("created_at", json!("2026-06-08T18:01:00Z")),
        ("updated_at", json!("2026-06-08T18:01:00Z")),
        ("secret", json!(second_secret)),
    ] {
        expected[k] = v;
    }
    assert_eq!(second, expected);
    app.clock.advance(SignedDuration::from_mins(1));
    let (third_id, _) = subscribe(&app, "https://crm.example.com/third", &["webhook.test"], Value::Null).await;

    // The list: newest first, offset paging as the contacts list.
    let list = list_webhooks(&app, "").await;
    assert_eq!(list["total_count"], 3);
    assert_eq!(ids(&list), [third_id.clone(), second_id.clone(), first_id.clone()]);
    assert_eq!(list["webhooks"][1], without_secret(&second));
    let page = list_webhooks(&app, "?pageSize=2").await;
    assert_eq!(ids(&page), [third_id.clone(), second_id.clone()]);
    assert_eq!(page["total_count"], 3);
    assert_eq!(paging(&page), json!({ "has_next": true, "has_previous": false, "next_page": 1, "previous_page": null }));
    let page = list_webhooks(&app, "?pageSize=2&pageIndex=1").await;
    assert_eq!(ids(&page), std::slice::from_ref(&first_id));
    assert_eq!(paging(&page), json!({ "has_next": false, "has_previous": true, "next_page": null, "previous_page": 0 }));
    for (query, field) in
        [("?pageSize=0", "pageSize"), ("?pageSize=101", "pageSize"), ("?pageIndex=-1", "pageIndex"), ("?pageIndex=25001", "pageIndex")]
    {
        let (status, body) = app.get(&format!("/webhooks{query}")).await;
        assert_error(status, &body, 400, "INVALID_REQUEST", Some(field));
    }

    // PATCH each field: the answer is the whole webhook without its secret, updated_at moves.
    app.clock.advance(SignedDuration::from_mins(10));
    let mut current = without_secret(&first);
    current["updated_at"] = json!("2026-06-08T18:12:00Z");
    for (field, value) in [
        ("url", json!("https://crm.example.com/v2/hooks")),
        ("events", json!(["on_call_end", "campaign.status_changed"])),
        ("filters", json!({ "status": ["finished", "inactive"] })),
        ("description", json!("CRM sync v2")),
        ("enabled", json!(false)),
        ("enabled", json!(true)),
        ("filters", json!(null)),
        ("description", json!(null)),
    ] {
        let (status, body) = app.patch(&format!("/webhooks/{first_id}"), json!({ field: value })).await;
        assert_eq!(status, StatusCode::OK, "PATCH {field}: {body}");
        assert_eq!(keys(&body), BTreeSet::from(["success", "webhook"]), "{body}");
        current[field] = value;
        assert_eq!(body["webhook"], current, "PATCH {field}");
        assert_eq!(get_webhook(&app, &first_id).await, current);
    }
    for (patch, field) in [
        (json!({ "url": "ftp://crm.example.com/x" }), "url"),
        (json!({ "events": [] }), "events"),
        (json!({ "events": ["campaign.status_changed", "campaign.created"] }), "events[1]"),
        (json!({ "filters": { "status": ["done"] } }), "filters.status[0]"),
        (json!({ "secret": "c2VjcmV0" }), "secret"),
        (json!({ "surprise": true }), "surprise"),
    ] {
        let (status, body) = app.patch(&format!("/webhooks/{first_id}"), patch.clone()).await;
        assert_error(status, &body, 400, "INVALID_REQUEST", Some(field));
    }
    assert_eq!(get_webhook(&app, &first_id).await, current, "refused PATCHes change nothing");
    let unknown = "whk_00000000000000000000";
    let (status, body) = app.patch(&format!("/webhooks/{unknown}"), json!({ "enabled": false })).await;
    assert_error(status, &body, 404, "NOT_FOUND", None);
    let (status, body) = app.get(&format!("/webhooks/{unknown}")).await;
    assert_error(status, &body, 404, "NOT_FOUND", None);

    // DELETE: 204, then 404 everywhere.
    let (status, body) = app.call(Method::DELETE, &format!("/webhooks/{second_id}"), None).await;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, Value::Null));
    let (status, body) = app.get(&format!("/webhooks/{second_id}")).await;
    assert_error(status, &body, 404, "NOT_FOUND", None);
    let (status, body) = app.call(Method::DELETE, &format!("/webhooks/{second_id}"), None).await;
    assert_error(status, &body, 404, "NOT_FOUND", None);
    let (status, body) = app.patch(&format!("/webhooks/{second_id}"), json!({ "enabled": true })).await;
    assert_error(status, &body, 404, "NOT_FOUND", None);
    assert_eq!(ids(&list_webhooks(&app, "").await), [third_id.clone(), first_id]);

    // A method a path does not take: 405 with the path's methods in `Allow` (§0.3).
    for (m, path, allow) in [
        (Method::DELETE, "/webhooks".to_owned(), vec!["GET", "HEAD", "POST"]),
        (Method::PUT, format!("/webhooks/{third_id}"), vec!["DELETE", "GET", "HEAD", "PATCH"]),
        (Method::GET, format!("/webhooks/{third_id}/test"), vec!["POST"]),
        (Method::GET, format!("/webhooks/{third_id}/rotate-secret"), vec!["POST"]),
        (Method::POST, format!("/webhooks/{third_id}/deliveries"), vec!["GET", "HEAD"]),
        (Method::GET, format!("/webhooks/{third_id}/deliveries/dlv_x/retry"), vec!["POST"]),
    ] {
        let response = app
            .client
            .request(m.clone(), app.url(&format!("/api/v1.0{path}")))
            .header("Authorization", format!("api-key {}", app.key))
            .send()
            .await
            .expect("sent");
        let status = response.status();
        let mut listed: Vec<String> = response
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no Allow on {m} {path}"))
            .split(',')
            .map(|x| x.trim().to_owned())
            .collect();
        listed.sort();
        assert_eq!(listed, allow, "{m} {path}");
        let body: Value = response.json().await.expect("json");
        assert_error(status, &body, 405, "METHOD_NOT_ALLOWED", None);
    }
}

#[tokio::test]
async fn subscription_input_is_validated_at_its_edges() {
    let Some(app) = TestApp::spawn().await else { return };
    let prefix = "https://hooks.example.com/";
    let longest = format!("{prefix}{}", "a".repeat(2000 - prefix.len()));
    let too_long = format!("{longest}a");
    assert_eq!((longest.chars().count(), too_long.chars().count()), (2000, 2001));
    let event = json!(["campaign.status_changed"]);
    for (body, field) in [
        (json!({ "url": "ftp://hooks.example.com/x", "events": event }), "url"),
        (json!({ "url": "hooks.example.com/x", "events": event }), "url"),
        (json!({ "url": "", "events": event }), "url"),
        (json!({ "url": too_long, "events": event }), "url"),
        (json!({ "events": event }), "url"),
        (json!({ "url": 42, "events": event }), "url"),
        (json!({ "url": prefix }), "events"),
        (json!({ "url": prefix, "events": [] }), "events"),
        (json!({ "url": prefix, "events": "campaign.status_changed" }), "events"),
        (json!({ "url": prefix, "events": ["campaign.status_changed", "campaign.started"] }), "events[1]"),
        (json!({ "url": prefix, "events": ["webhook.test", "WEBHOOK.TEST"] }), "events[1]"),
        (json!({ "url": prefix, "events": event, "filters": { "status": ["done"] } }), "filters.status[0]"),
        (json!({ "url": prefix, "events": event, "filters": { "status": ["finished", "archived"] } }), "filters.status[1]"),
        (json!({ "url": prefix, "events": event, "filters": { "state": ["finished"] } }), "filters.state"),
        (json!({ "url": prefix, "events": event, "enabled": "yes" }), "enabled"),
        (json!({ "url": prefix, "events": event, "enabled": null }), "enabled"),
        (json!({ "url": prefix, "events": event, "description": "a".repeat(1001) }), "description"),
        (json!({ "url": prefix, "events": event, "description": "CRM\u{0}sync" }), "description"),
        (json!({ "url": prefix, "events": event, "surprise": 1 }), "surprise"),
        (json!({ "url": prefix, "events": event, "secret": "c2VjcmV0" }), "secret"),
    ] {
        let (status, err) = app.post("/webhooks", body.clone()).await;
        assert_error(status, &err, 400, "INVALID_REQUEST", Some(field));
    }
    let (status, err) = app.post("/webhooks", json!({ "url": prefix, "events": ["webhook.test", "campaign.started"] })).await;
    assert_error(status, &err, 400, "INVALID_REQUEST", Some("events[1]"));
    assert!(err["message"].as_str().is_some_and(|m| m.contains("campaign.started")), "the message names the value: {err}");
    assert_eq!(list_webhooks(&app, "").await["total_count"], 0, "nothing refused was stored");

    // The accepted edges: 2,000 characters, http, one event, every event and status.
    for body in [
        json!({ "url": longest, "events": event }),
        json!({ "url": "http://hooks.example.com", "events": ["webhook.test"] }),
        json!({ "url": prefix, "events": ALL_EVENTS, "filters": { "status": CAMPAIGN_STATUSES } }),
    ] {
        let (status, created) = app.post("/webhooks", body.clone()).await;
        assert_eq!(status, StatusCode::CREATED, "{body}: {created}");
        assert_eq!((&created["webhook"]["url"], &created["webhook"]["events"]), (&body["url"], &body["events"]));
    }
    // The longest description (1,000 characters) is taken as sent.
    let longest_description = "d".repeat(1000);
    let (status, body) = app.post("/webhooks", json!({ "url": prefix, "events": event, "description": longest_description })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["webhook"]["description"], longest_description.as_str());
    assert_eq!(list_webhooks(&app, "").await["total_count"], 4);

    // Idempotency-Key on POST /webhooks replays the same webhook.
    let body = json!({ "url": "https://crm.example.com/once", "events": ["webhook.test"], "description": "once" });
    let first = post_with_key(&app, "create-webhook-1", &app.key, "/webhooks", &body).await;
    assert_eq!((first.status, first.replayed), (StatusCode::CREATED, false), "{}", first.json());
    let again = post_with_key(&app, "create-webhook-1", &app.key, "/webhooks", &body).await;
    assert_eq!((again.status, again.replayed), (StatusCode::CREATED, true), "{}", again.json());
    assert_eq!(again.body, first.body, "same id, same secret");
    assert_eq!(list_webhooks(&app, "").await["total_count"], 5, "one webhook created");
    let other =
        post_with_key(&app, "create-webhook-1", &app.key, "/webhooks", &json!({ "url": "https://x.example", "events": ["webhook.test"] }))
            .await;
    assert_error(other.status, &other.json(), 422, "IDEMPOTENCY_KEY_REUSED", Some("Idempotency-Key"));
}

#[tokio::test]
async fn another_organization_neither_sees_nor_receives_anything() {
    let Some(app) = TestApp::spawn().await else { return };
    let a_receiver = receiver(200).await;
    let b_receiver = receiver(200).await;
    let (a_hook, a_secret) = subscribe(&app, &hook_url(&a_receiver), &ALL_EVENTS, Value::Null).await;
    send_test(&app, &a_hook).await;
    assert_eq!(app.deliver().await, 1);
    let a_delivery = only_delivery(&app, &a_hook).await;
    let a_webhook = get_webhook(&app, &a_hook).await;

    let b = app.new_key("globex").await;
    let call = |m: Method, path: String, body: Option<Value>| {
        let b = b.clone();
        let app = &app;
        async move { app.call_with_key(m, &path, body, Some(&b)).await }
    };
    let delivery_id = a_delivery["id"].as_str().expect("id");
    for (m, path, body) in [
        (Method::GET, format!("/webhooks/{a_hook}"), None),
        (Method::PATCH, format!("/webhooks/{a_hook}"), Some(json!({ "enabled": false }))),
        (Method::DELETE, format!("/webhooks/{a_hook}"), None),
        (Method::POST, format!("/webhooks/{a_hook}/rotate-secret"), Some(json!({}))),
        (Method::POST, format!("/webhooks/{a_hook}/test"), Some(json!({}))),
        (Method::GET, format!("/webhooks/{a_hook}/deliveries"), None),
        (Method::POST, format!("/webhooks/{a_hook}/deliveries/{delivery_id}/retry"), Some(json!({}))),
    ] {
        let (status, body) = call(m, path, body).await;
        assert_error(status, &body, 404, "NOT_FOUND", None);
    }
    let (status, list) = call(Method::GET, "/webhooks".into(), None).await;
    assert_eq!((status, &list["total_count"], &list["webhooks"]), (StatusCode::OK, &json!(0), &json!([])), "{list}");
    assert_eq!(get_webhook(&app, &a_hook).await, a_webhook, "untouched");
    assert_eq!(app.deliver().await, 0, "B's test of A's webhook queued nothing");

    // B's own subscription to everything, and a campaign on each side.
    let (status, body) = call(Method::POST, "/webhooks".into(), Some(json!({ "url": hook_url(&b_receiver), "events": ALL_EVENTS }))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (b_hook, b_secret) = (body["webhook"]["id"].as_str().unwrap().to_owned(), body["webhook"]["secret"].as_str().unwrap().to_owned());
    let setup = app.setup().await;
    let a_campaign = app.create_campaign(setup.phone(json!({ "name": "A's campaign" }))).await["id"].as_i64().expect("id");
    let (status, body) = app.post(&format!("/campaigns/{a_campaign}/contacts"), json!({ "contacts": numbers(1) })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, agent) = call(Method::POST, "/agents".into(), Some(json!({ "name": "B bot" }))).await;
    let agent = agent["agent"]["id"].as_str().expect("B's agent").to_owned();
    let (_, integration) =
        call(Method::POST, "/integrations".into(), Some(json!({ "agent_id": agent, "type": "phone_call", "provider": "simulator" }))).await;
    let integration = integration["integration"]["id"].as_str().expect("B's integration").to_owned();
    let (status, body) = call(
        Method::POST,
        "/campaigns".into(),
        Some(json!({ "name": "B's campaign", "agent_id": agent, "integration_id": integration, "integration_type": "phone_call" })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let b_campaign = body["campaign"]["id"].as_i64().expect("id");
    let (status, body) = call(Method::POST, format!("/campaigns/{b_campaign}/contacts"), Some(json!({ "contacts": numbers(1) }))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    send_test(&app, &a_hook).await;
    let (status, body) = call(Method::POST, format!("/webhooks/{b_hook}/test"), Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    assert_eq!(app.deliver().await, 4, "one campaign event and one test on each side");
    let a_hits = received(&a_receiver).await;
    let b_hits = received(&b_receiver).await;
    assert_eq!((a_hits.len(), b_hits.len()), (3, 2));
    for hit in &a_hits {
        assert_signed(hit, &a_secret, start_time());
    }
    for hit in &b_hits {
        assert_signed(hit, &b_secret, start_time());
    }
    let a_bodies: Vec<Value> = a_hits.iter().map(body_of).collect();
    let b_bodies: Vec<Value> = b_hits.iter().map(body_of).collect();
    let campaigns_of = |bodies: &[Value]| -> Vec<Value> {
        bodies.iter().filter(|b| b["event_type"] == "campaign.status_changed").map(|b| b["data"]["campaign"].clone()).collect()
    };
    let a_campaigns = campaigns_of(&a_bodies);
    let b_campaigns = campaigns_of(&b_bodies);
    assert_eq!(a_campaigns.iter().map(|c| (&c["id"], &c["name"])).collect::<Vec<_>>(), [(&json!(a_campaign), &json!("A's campaign"))]);
    assert_eq!(b_campaigns.iter().map(|c| (&c["id"], &c["name"])).collect::<Vec<_>>(), [(&json!(b_campaign), &json!("B's campaign"))]);
    let projects = |bodies: &[Value]| -> BTreeSet<String> { bodies.iter().map(|b| b["project_id"].as_str().unwrap().to_owned()).collect() };
    let (a_projects, b_projects) = (projects(&a_bodies), projects(&b_bodies));
    assert_eq!((a_projects.len(), b_projects.len()), (1, 1), "one project id per organization");
    assert_ne!(a_projects, b_projects, "organizations have project ids of their own");
    let (status, log) = call(Method::GET, format!("/webhooks/{b_hook}/deliveries"), None).await;
    assert_eq!(status, StatusCode::OK, "{log}");
    assert_eq!(log["deliveries"].as_array().map(Vec::len), Some(2));
    let (status, body) = app.get(&format!("/webhooks/{b_hook}")).await;
    assert_error(status, &body, 404, "NOT_FOUND", None);
}

#[tokio::test]
async fn private_targets_are_refused_unless_allowed() {
    let settings = ApiSettings {
        rate_limit_rps: None,
        webhooks: WebhookSettings { allow_private: false, ..WebhookSettings::default() },
        ..ApiSettings::default()
    };
    let Some(app) = TestApp::spawn_with(settings).await else { return };
    let local = receiver(200).await;
    let (public_hook, _) = subscribe(&app, "https://hooks.example.com/x", &["webhook.test"], Value::Null).await;
    for url in [
        "http://127.0.0.1:9/x",
        "http://127.1.2.3/",
        "http://[::1]/",
        "http://10.0.0.1/",
        "http://172.16.0.1/",
        "http://192.168.1.1/",
        "http://169.254.1.1/",
        "http://0.0.0.0/",
        "http://[::]/",
        "http://[fe80::1]/",
        "http://[fd00::1]/",
        "http://[::ffff:127.0.0.1]/",
    ] {
        let (status, body) = app.post("/webhooks", json!({ "url": url, "events": ["webhook.test"] })).await;
        assert_error(status, &body, 400, "INVALID_REQUEST", Some("url"));
        let (status, body) = app.patch(&format!("/webhooks/{public_hook}"), json!({ "url": url })).await;
        assert_error(status, &body, 400, "INVALID_REQUEST", Some("url"));
    }
    assert_eq!(get_webhook(&app, &public_hook).await["url"], "https://hooks.example.com/x");
    // Public literals next to the private ranges are fine.
    for url in ["http://172.32.0.1/x", "http://93.184.216.34/x"] {
        let (status, body) = app.patch(&format!("/webhooks/{public_hook}"), json!({ "url": url })).await;
        assert_eq!(status, StatusCode::OK, "{url}: {body}");
    }

    // A name is accepted; at delivery it resolves to loopback and the attempt fails.
    let port = local.address().port();
    let (hook, _) = subscribe(&app, &format!("http://localhost:{port}/hook"), &["webhook.test"], Value::Null).await;
    let (status, body) = app.patch(&format!("/webhooks/{public_hook}"), json!({ "url": format!("http://localhost:{port}/other") })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    app.call(Method::DELETE, &format!("/webhooks/{public_hook}"), None).await;
    let event_id = send_test(&app, &hook).await;
    app.deliver().await;
    assert_eq!(received(&local).await.len(), 0, "nothing reaches a private address");
    let delivery = only_delivery(&app, &hook).await;
    assert_eq!((&delivery["event_id"], &delivery["last_error"]), (&json!(event_id), &json!("private_address")), "{delivery:#}");
    assert_eq!(delivery["attempts"], 1, "{delivery:#}");
    assert_eq!(delivery["last_status_code"], json!(null), "{delivery:#}");
    assert_ne!(delivery["status"], "delivered", "{delivery:#}");
}

#[tokio::test]
async fn a_public_ipv6_literal_is_an_http_url_like_any_other() {
    let settings = ApiSettings {
        rate_limit_rps: None,
        webhooks: WebhookSettings { allow_private: false, ..WebhookSettings::default() },
        ..ApiSettings::default()
    };
    let Some(app) = TestApp::spawn_with(settings).await else { return };
    let url = "https://[2606:4700::1111]/x";
    let (status, body) = app.post("/webhooks", json!({ "url": url, "events": ["webhook.test"] })).await;
    assert_eq!(status, StatusCode::CREATED, "{url}: {body}");
    let id = body["webhook"]["id"].as_str().expect("id");
    let (status, body) = app.patch(&format!("/webhooks/{id}"), json!({ "url": "http://[2001:4860:4860::8888]:8080/hook" })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Private IPv6 literals are still refused, for being private.
    let (status, body) = app.patch(&format!("/webhooks/{id}"), json!({ "url": "http://[::1]/" })).await;
    assert_error(status, &body, 400, "INVALID_REQUEST", Some("url"));
    assert!(body["message"].as_str().is_some_and(|m| m.contains("private")), "{body}");
}

#[tokio::test]
async fn a_test_event_reaches_its_subscription_only_signed_both_ways() {
    let Some(app) = TestApp::spawn().await else { return };
    let target = receiver(200).await;
    let bystander = receiver(200).await;
    let (hook, secret) = subscribe(&app, &hook_url(&target), &["webhook.test"], Value::Null).await;
    let (other, other_secret) = subscribe(&app, &hook_url(&bystander), &ALL_EVENTS, Value::Null).await;

    // With an Idempotency-Key: one event, the repeat replayed.
    let path = format!("/webhooks/{hook}/test");
    let first = post_with_key(&app, "test-once", &app.key, &path, &json!({})).await;
    assert_eq!((first.status, first.replayed), (StatusCode::OK, false), "{}", first.json());
    let event_id = first.json()["event_id"].as_str().expect("event_id").to_owned();
    assert_id(&event_id, "evt_");
    assert_eq!(first.json(), json!({ "success": true, "event_id": event_id }));
    let again = post_with_key(&app, "test-once", &app.key, &path, &json!({})).await;
    assert_eq!((again.status, again.replayed, &again.body), (StatusCode::OK, true, &first.body));

    assert_eq!(app.deliver().await, 1, "one event, one subscription");
    assert_eq!(app.deliver().await, 0, "delivered once");
    assert!(received(&bystander).await.is_empty(), "only the tested subscription receives it");
    let hits = received(&target).await;
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].url.path(), "/hook");
    let webhook_id = assert_signed(&hits[0], &secret, start_time());
    assert_eq!(webhook_id, event_id, "webhook-id is the event id");
    let event = body_of(&hits[0]);
    assert_eq!(keys(&event), BTreeSet::from(ENVELOPE_KEYS), "{event:#}");
    assert_eq!(
        (&event["event_id"], &event["event_type"], &event["api_version"]),
        (&json!(event_id), &json!("webhook.test"), &json!("1.0"))
    );
    assert_id(event["project_id"].as_str().expect("project_id"), "prj_");
    assert!(same_instant(&event["occurred_at"], start_time()), "{event:#}");
    let occurred = event["occurred_at"].as_str().expect("occurred_at");
    assert_eq!(occurred.split(['.', 'Z', '+', '-']).nth(3).map(str::len), Some(6), "microseconds in {occurred}");
    assert_eq!(event["data"], json!({ "webhook_id": hook }));

    let delivery = only_delivery(&app, &hook).await;
    assert_eq!(
        (&delivery["event_id"], &delivery["event_type"], &delivery["status"], &delivery["attempts"]),
        (&json!(event_id), &json!("webhook.test"), &json!("delivered"), &json!(1))
    );
    assert_eq!(
        (&delivery["last_status_code"], &delivery["last_error"], &delivery["next_attempt_at"]),
        (&json!(200), &json!(null), &json!(null))
    );
    assert_eq!((&delivery["created_at"], &delivery["delivered_at"]), (&json!(utc(0)), &json!(utc(0))));
    assert_eq!(delivery["payload"], event, "the log keeps the event as sent");

    // A later test: a new event, signed at its own time, of the same project.
    app.clock.advance(SignedDuration::from_secs(90));
    let second = send_test(&app, &hook).await;
    assert_ne!(second, event_id);
    assert_eq!(app.deliver().await, 1);
    let hits = received(&target).await;
    assert_eq!(assert_signed(&hits[1], &secret, at(90)), second);
    let later = body_of(&hits[1]);
    assert_eq!(later["project_id"], event["project_id"]);
    assert!(same_instant(&later["occurred_at"], at(90)), "{later:#}");

    // The other subscription's own test reaches it alone.
    let other_event = send_test(&app, &other).await;
    assert_eq!(app.deliver().await, 1);
    let hits = received(&bystander).await;
    assert_eq!(hits.len(), 1);
    assert_eq!(assert_signed(&hits[0], &other_secret, at(90)), other_event);
    assert_eq!(body_of(&hits[0])["data"], json!({ "webhook_id": other }));
    assert_eq!(received(&target).await.len(), 2);

    let (status, body) = app.post("/webhooks/whk_00000000000000000000/test", json!({})).await;
    assert_error(status, &body, 404, "NOT_FOUND", None);
}

#[tokio::test]
async fn every_status_change_of_a_campaign_is_one_event_with_analytics_when_finished() {
    let simulator = json!({ "answer_rate": 1.0, "machine_rate": 0.0, "convert_rate": 0.0 });
    let Some(h) = Harness::new(retry_settings(30, 1), "phone_call", Provider::Simulator(simulator)).await else { return };
    let everything = receiver(200).await;
    let finished_only = receiver(200).await;
    let others = receiver(200).await;
    let (_, secret) = subscribe(&h, &hook_url(&everything), &["campaign.status_changed"], Value::Null).await;
    let (finished_hook, _) =
        subscribe(&h, &hook_url(&finished_only), &["campaign.status_changed", "webhook.test"], json!({ "status": ["finished"] })).await;
    subscribe(&h, &hook_url(&others), &["message.status_changed", "campaign.cycle_completed"], Value::Null).await;

    let id = h.campaign(json!({ "name": "June push" })).await;
    assert_eq!(h.deliver().await, 0, "creation is no status change");
    let step = |minute: i64| {
        h.clock.set(at(minute * 60));
    };
    let mut expected: Vec<(&str, &str, String)> = Vec::new();
    step(1);
    h.add(id, numbers(3)).await;
    expected.push(("pending", "ready", "2026-06-08T12:01:00.000000-06:00".into()));
    assert_eq!(h.deliver().await, 1);
    step(2);
    h.action(id, "activate").await;
    expected.push(("ready", "active", "2026-06-08T12:02:00.000000-06:00".into()));
    assert_eq!(h.deliver().await, 1);
    h.action(id, "activate").await;
    assert_eq!(h.deliver().await, 0, "a no-op action changes no status");
    step(3);
    h.action(id, "pause").await;
    expected.push(("active", "inactive", "2026-06-08T12:03:00.000000-06:00".into()));
    assert_eq!(h.deliver().await, 1);
    h.action(id, "pause").await;
    assert_eq!(h.deliver().await, 0, "a no-op action changes no status");
    step(4);
    h.action(id, "resume").await;
    expected.push(("inactive", "active", "2026-06-08T12:04:00.000000-06:00".into()));
    assert_eq!(h.deliver().await, 1);
    step(5);
    h.settle().await;
    let campaign = h.detail(id).await;
    assert_eq!(campaign["status"], "finished", "{campaign:#}");
    expected.push(("active", "finished", "2026-06-08T12:05:00.000000-06:00".into()));
    assert_eq!(h.deliver().await, 2, "to everything and to the finished-only filter");
    h.action(id, "archive").await;
    assert_eq!(h.deliver().await, 0, "archiving changes no status");

    let hits = received(&everything).await;
    assert_eq!(hits.len(), expected.len(), "{:#?}", received_bodies(&everything).await);
    let mut event_ids = BTreeSet::new();
    for (i, (hit, (previous, status, occurred_at))) in hits.iter().zip(&expected).enumerate() {
        assert_signed(hit, &secret, at((i as i64 + 1) * 60));
        let event = body_of(hit);
        event_ids.insert(event["event_id"].as_str().expect("event_id").to_owned());
        let data = assert_envelope(&event, "campaign.status_changed", occurred_at);
        assert_eq!(data["campaign"], json!({ "id": id, "name": "June push", "status": status, "previous_status": previous }));
        if *status == "finished" {
            assert_eq!(keys(&data), BTreeSet::from(["campaign", "analytics"]));
            assert_eq!(data["analytics"], campaign["analytics"], "the §5.7 object of GET /campaigns/{{id}}");
            assert_eq!(data["analytics"]["calls"], 3);
        } else {
            assert_eq!(keys(&data), BTreeSet::from(["campaign"]), "analytics only when finished: {data:#}");
        }
    }
    assert_eq!(event_ids.len(), expected.len(), "every event has an id of its own");
    let finished = received_bodies(&finished_only).await;
    assert_eq!(finished.len(), 1, "{finished:#?}");
    assert_eq!(finished[0], body_of(hits.last().expect("finished")), "the same event to both subscriptions");
    assert!(received(&others).await.is_empty(), "a subscription to other events gets none of these");
    // The status filter narrows campaign.status_changed only.
    send_test(&h, &finished_hook).await;
    assert_eq!(h.deliver().await, 1);
    assert_eq!(received_bodies(&finished_only).await[1]["event_type"], "webhook.test");

    // occurred_at carries the offset of the campaign's own timezone.
    step(6);
    let madrid = h.campaign(json!({ "timezone": "Europe/Madrid" })).await;
    h.add(madrid, numbers(1)).await;
    assert_eq!(h.deliver().await, 1);
    let event = received_bodies(&everything).await.pop().expect("event");
    let data = assert_envelope(&event, "campaign.status_changed", "2026-06-08T20:06:00.000000+02:00");
    assert_eq!((&data["campaign"]["id"], &data["campaign"]["status"]), (&json!(madrid), &json!("ready")));
}

#[tokio::test]
async fn each_iteration_of_a_cycles_campaign_ends_with_cycle_completed() {
    let simulator = json!({ "answer_rate": 1.0, "machine_rate": 0.0, "convert_rate": 0.0 });
    let Some(h) = Harness::new(retry_settings(30, 1), "phone_call", Provider::Simulator(simulator)).await else { return };
    let cycles_receiver = receiver(200).await;
    let status_receiver = receiver(200).await;
    // A status filter applies to campaign.status_changed only: the cooldown iteration still arrives.
    let (_, secret) = subscribe(&h, &hook_url(&cycles_receiver), &["campaign.cycle_completed"], json!({ "status": ["finished"] })).await;
    subscribe(&h, &hook_url(&status_receiver), &["campaign.status_changed"], Value::Null).await;
    let cycles = json!({ "enabled": true, "mode": "cooldown", "max_iterations": 2, "cooldown_minutes": 30 });
    let (id, _) = h.start(json!({ "name": "Cycles", "cycles": cycles }), 2).await;
    assert_eq!(h.claims().await, 2);
    let campaign = h.detail(id).await;
    assert_eq!((&campaign["status"], &campaign["cycles"]["next_cycle_at"]), (&json!("cooldown"), &json!("2026-06-08T18:30:00Z")));
    h.deliver().await;
    let hits = received(&cycles_receiver).await;
    assert_eq!(hits.len(), 1);
    assert_signed(&hits[0], &secret, start_time());
    let data = assert_envelope(&body_of(&hits[0]), "campaign.cycle_completed", "2026-06-08T12:00:00.000000-06:00");
    assert_eq!(keys(&data), BTreeSet::from(["campaign", "cycle_iteration", "next_cycle_at"]), "{data:#}");
    assert_eq!(data["campaign"], json!({ "id": id, "name": "Cycles", "status": "cooldown", "previous_status": null }));
    assert_eq!(data["cycle_iteration"], 1);
    assert!(same_instant(&data["next_cycle_at"], at(30 * 60)), "next_cycle_at: {data:#}");

    h.advance_mins(30);
    assert_eq!(h.claims().await, 2);
    assert_eq!(h.status(id).await, "finished");
    h.deliver().await;
    let hits = received(&cycles_receiver).await;
    assert_eq!(hits.len(), 2);
    assert_signed(&hits[1], &secret, at(30 * 60));
    let data = assert_envelope(&body_of(&hits[1]), "campaign.cycle_completed", "2026-06-08T12:30:00.000000-06:00");
    assert_eq!(data["campaign"], json!({ "id": id, "name": "Cycles", "status": "finished", "previous_status": null }));
    assert_eq!((&data["cycle_iteration"], &data["next_cycle_at"]), (&json!(2), &json!(null)), "none follows the last");

    // The status changes of the same run, cooldown included.
    let mut changes: Vec<(String, String)> = received_bodies(&status_receiver)
        .await
        .iter()
        .map(|e| {
            let c = &e["data"]["campaign"];
            (c["previous_status"].as_str().expect("previous").to_owned(), c["status"].as_str().expect("status").to_owned())
        })
        .collect();
    changes.sort();
    let mut expected: Vec<(String, String)> =
        [("pending", "ready"), ("ready", "active"), ("active", "cooldown"), ("cooldown", "active"), ("active", "finished")]
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect();
    expected.sort();
    assert_eq!(changes, expected);
}

#[tokio::test]
async fn on_call_end_carries_the_whole_call_in_altur_flat_shape() {
    let Some(h) = Harness::new(retry_settings(30, 1), "phone_call", Provider::Webhook(accepting_provider().await)).await else { return };
    let calls_receiver = receiver(200).await;
    let (hook, secret) = subscribe(&h, &hook_url(&calls_receiver), &["on_call_end"], Value::Null).await;
    let id = h.campaign(json!({ "name": "Calls", "retries": 0 })).await;
    let ana = json!({ "contact": "+525520000000", "name": "Ana", "f_id": "crm-1", "context": "likes mornings",
        "extracted_data": { "plan": "basic" }, "tags": ["vip"] });
    let c = h.add(id, vec![ana, json!({ "contact": "+525520000001" })]).await;
    h.action(id, "activate").await;
    assert_eq!(h.claims().await, 2);
    let (answered, missed) = (h.attempt_of(id, c[0]).await, h.attempt_of(id, c[1]).await);
    h.event_ok(&answered, "in-progress", json!({ "started_at": "2026-06-08T18:00:05Z" })).await;
    assert_eq!(h.deliver().await, 0, "a call in progress has not ended");
    let transcript = json!([
        { "sent_by": "assistant", "sent_at": "2026-06-08T18:00:06Z", "content": "Hola, ¿hablo con Ana?" },
        { "sent_by": "user", "sent_at": "2026-06-08T18:00:09Z", "content": "Sí, \"Ana\"" },
    ]);
    h.advance_mins(2);
    h.event_ok(
        &answered,
        "ended",
        json!({ "answered_by": "human", "ended_at": "2026-06-08T18:01:40Z", "duration": 95, "billed_duration": 96,
            "ended_by": "user", "ended_reason": "user_hangup", "recording_url": "https://media.example/rec/1.mp3",
            "transcript": transcript, "extracted_data": { "plan": "pro", "budget": 1000 }, "tags": ["hot"] }),
    )
    .await;
    h.event_ok(&missed, "no-answer", json!({})).await;
    h.settle().await;
    assert_eq!(h.deliver().await, 2, "one on_call_end per finished call");
    assert_eq!(h.deliver().await, 0);

    let hits = received(&calls_receiver).await;
    let hit_of =
        |attempt: &str| hits.iter().find(|r| body_of(r)["id"] == json!(attempt)).unwrap_or_else(|| panic!("no event for {attempt}"));
    let calls = h.calls(id, "").await;
    let call = calls["calls"].as_array().expect("calls").iter().find(|c| c["id"] == json!(answered)).expect("call").clone();
    let contact = h.contact(id, c[0]).await;
    let webhook_id = assert_signed(hit_of(&answered), &secret, at(120));
    let event = body_of(hit_of(&answered));
    let top: BTreeSet<&str> = [
        "event_type",
        "id",
        "type",
        "status",
        "phone_number_from",
        "phone_number_to",
        "answered_by",
        "created_at",
        "started_at",
        "ended_at",
        "ended_by",
        "ended_reason",
        "duration",
        "billed_duration",
        "recording_url",
        "transcript",
        "assistant",
        "end_user",
        "campaign_user",
        "campaign",
    ]
    .into_iter()
    .collect();
    assert!(keys(&event).is_superset(&top), "missing {:?} in {event:#}", top.difference(&keys(&event)).collect::<Vec<_>>());
    assert!(event.get("event_id").is_none() && event.get("data").is_none(), "no envelope: {event:#}");
    assert_eq!((&event["event_type"], &event["id"], &event["type"]), (&json!("on_call_end"), &json!(answered), &json!("outbound")));
    assert_eq!((&event["status"], &event["answered_by"]), (&json!("ended"), &json!("human")));
    assert!(event["phone_number_from"].is_null() || event["phone_number_from"].is_string(), "{event:#}");
    assert_eq!(event["phone_number_to"], "+525520000000");
    assert_eq!(
        (&event["created_at"], &event["started_at"], &event["ended_at"]),
        (&call["created_at"], &call["started_at"], &call["ended_at"])
    );
    assert_eq!((&event["started_at"], &event["ended_at"]), (&json!("2026-06-08T18:00:05Z"), &json!("2026-06-08T18:01:40Z")));
    assert_eq!((&event["ended_by"], &event["ended_reason"]), (&json!("user"), &json!("user_hangup")));
    assert_eq!((&event["duration"], &event["billed_duration"]), (&json!(95), &json!(96)));
    assert_eq!(event["recording_url"], "https://media.example/rec/1.mp3");
    assert_eq!(event["transcript"], transcript);
    assert_eq!(event["assistant"], json!({ "id": h.agent, "nickname": "Sales bot", "name": "Sales bot" }));
    assert_eq!(event["campaign"], json!({ "id": id, "name": "Calls" }));
    let end_user = &event["end_user"];
    assert_eq!(keys(end_user), BTreeSet::from(["id", "status", "display_name", "phone_number", "context", "extracted_data", "tags"]));
    let id_text = |v: &Value| v.as_i64().map(|n| n.to_string()).or_else(|| v.as_str().map(str::to_owned));
    assert_eq!(id_text(&end_user["id"]), Some(c[0].to_string()), "end_user.id is the contact's id: {end_user}");
    assert_eq!(
        (&end_user["status"], &end_user["display_name"], &end_user["phone_number"], &end_user["context"]),
        (&json!("answered"), &json!("Ana"), &json!("+525520000000"), &json!("likes mornings"))
    );
    assert_eq!((&end_user["extracted_data"], &end_user["tags"]), (&contact["extracted_data"], &contact["tags"]));
    assert_eq!(contact["extracted_data"], json!({ "plan": "pro", "budget": 1000 }));
    assert_eq!(
        event["campaign_user"],
        json!({ "f_id": "crm-1", "name": "Ana", "contact": "+525520000000", "context": "likes mornings", "status": "answered",
            "failed_retries": 0, "voicemail_retries": 0, "extracted_data": contact["extracted_data"], "tags": contact["tags"] })
    );

    // The call that never connected.
    let event = body_of(hit_of(&missed));
    assert!(keys(&event).is_superset(&top), "missing {:?} in {event:#}", top.difference(&keys(&event)).collect::<Vec<_>>());
    assert_eq!((&event["status"], &event["answered_by"]), (&json!("no-answer"), &json!(null)));
    assert_eq!((&event["phone_number_to"], &event["campaign_user"]["status"]), (&json!("+525520000001"), &json!("retrying")));

    // The deliveries log names the same event id as the header.
    let logged = deliveries(&h, &hook, "").await;
    let entry = logged.iter().find(|d| d["payload"]["id"] == json!(answered)).expect("logged");
    assert_eq!(
        (&entry["event_id"], &entry["event_type"], &entry["status"]),
        (&json!(webhook_id), &json!("on_call_end"), &json!("delivered"))
    );
    assert_eq!(entry["payload"], body_of(hit_of(&answered)));

    // A call with no final event is closed by the engine after the attempt timeout (2 h): that
    // is a final status too. (The missed contact's retry is dispatched by the same settle.)
    let silent = h.campaign(json!({ "name": "Silent" })).await;
    let s = h.add(silent, numbers(1)).await;
    h.action(silent, "activate").await;
    assert_eq!(h.claims().await, 1);
    let attempt = h.attempt_of(silent, s[0]).await;
    h.advance_mins(121);
    h.settle().await;
    let closed = h.calls(silent, "").await["calls"][0].clone();
    assert_eq!((&closed["id"], &closed["status"]), (&json!(attempt), &json!("failed")), "{closed:#}");
    assert_eq!(h.deliver().await, 1);
    let hits = received(&calls_receiver).await;
    assert_eq!(hits.len(), 3);
    assert_signed(&hits[2], &secret, at(120 + 121 * 60));
    let event = body_of(&hits[2]);
    assert_eq!(
        (&event["id"], &event["status"], &event["campaign"]),
        (&json!(attempt), &json!("failed"), &json!({ "id": silent, "name": "Silent" }))
    );
}

#[tokio::test]
async fn each_message_status_change_is_one_event() {
    let Some(h) = Harness::new(retry_settings(30, 1), "whatsapp", Provider::Webhook(accepting_provider().await)).await else { return };
    let messages_receiver = receiver(200).await;
    let (_, secret) = subscribe(&h, &hook_url(&messages_receiver), &["message.status_changed"], Value::Null).await;
    let id = h.campaign(json!({ "name": "Promo" })).await;
    let c = h.add(id, numbers(2)).await;
    h.action(id, "activate").await;
    assert_eq!(h.claims().await, 2);
    assert_eq!(h.deliver().await, 0, "a queued message has changed no status yet");
    let (first, second) = (h.attempt_of(id, c[0]).await, h.attempt_of(id, c[1]).await);
    let harness = &h;
    let message = |attempt: String| async move {
        let messages = harness.messages(id, "").await;
        messages["messages"].as_array().expect("messages").iter().find(|m| m["id"] == json!(attempt)).expect("message").clone()
    };

    let mut seen = 0;
    for (minute, attempt, status, previous) in [
        (1, &first, "sent", "queued"),
        (2, &first, "delivered", "sent"),
        (3, &first, "read", "delivered"),
        (4, &second, "failed", "queued"),
    ] {
        h.clock.set(at(minute * 60));
        h.event_ok(attempt, status, json!({})).await;
        h.settle().await;
        assert_eq!(h.deliver().await, 1, "{status}");
        let hits = received(&messages_receiver).await;
        seen += 1;
        assert_eq!(hits.len(), seen);
        let hit = hits.last().expect("event");
        assert_signed(hit, &secret, at(minute * 60));
        let occurred_at = format!("2026-06-08T12:0{minute}:00.000000-06:00");
        let data = assert_envelope(&body_of(hit), "message.status_changed", &occurred_at);
        assert_eq!(keys(&data), BTreeSet::from(["message", "campaign", "previous_status"]), "{data:#}");
        assert_eq!(data["message"], message(attempt.clone()).await, "the /messages item");
        assert_eq!(data["message"]["status"], status);
        assert_eq!((&data["campaign"], &data["previous_status"]), (&json!({ "id": id, "name": "Promo" }), &json!(previous)));
    }
    // Repeats, late events and contact outcomes change no message status.
    h.event_ok(&first, "read", json!({})).await;
    h.event_ok(&first, "delivered", json!({})).await;
    h.event_ok(&first, "accepted", json!({})).await;
    h.settle().await;
    assert_eq!(h.deliver().await, 0);
    assert_eq!(received(&messages_receiver).await.len(), 4);
}

#[tokio::test]
async fn a_failing_receiver_is_retried_on_the_schedule_then_by_hand() {
    let Some(app) = TestApp::spawn().await else { return };
    let failing = receiver(500).await;
    let (hook, secret) = subscribe(&app, &hook_url(&failing), &["webhook.test"], Value::Null).await;
    let event_id = send_test(&app, &hook).await;
    assert_eq!(app.deliver().await, 1, "the first attempt at once");
    let delivery = only_delivery(&app, &hook).await;
    let delivery_id = delivery["id"].as_str().expect("id").to_owned();
    assert_eq!(
        (&delivery["status"], &delivery["attempts"], &delivery["last_status_code"], &delivery["next_attempt_at"]),
        (&json!("pending"), &json!(1), &json!(500), &json!(utc(60)))
    );
    assert_eq!((&delivery["delivered_at"], &delivery["created_at"]), (&json!(null), &json!(utc(0))));
    let (status, body) = app.post(&format!("/webhooks/{hook}/deliveries/{delivery_id}/retry"), json!({})).await;
    assert_error(status, &body, 409, "INVALID_STATUS_TRANSITION", None);

    for (attempt, (due, next)) in [(60, Some(120)), (120, Some(240)), (240, Some(480)), (480, None)].into_iter().enumerate() {
        app.clock.set(at(due - 1));
        assert_eq!(app.deliver().await, 0, "not before {due} s");
        app.clock.set(at(due));
        assert_eq!(app.deliver().await, 1, "at {due} s");
        let delivery = only_delivery(&app, &hook).await;
        assert_eq!((&delivery["attempts"], &delivery["last_status_code"]), (&json!(attempt + 2), &json!(500)));
        match next {
            Some(next) => assert_eq!((&delivery["status"], &delivery["next_attempt_at"]), (&json!("pending"), &json!(utc(next)))),
            None => assert_eq!((&delivery["status"], &delivery["next_attempt_at"]), (&json!("failed"), &json!(null))),
        }
    }
    app.clock.set(at(3600));
    assert_eq!(app.deliver().await, 0, "five attempts in all");
    let hits = received(&failing).await;
    assert_eq!(hits.len(), 5);
    let payload = body_of(&hits[0]);
    for (hit, sent_at) in hits.iter().zip([0, 60, 120, 240, 480]) {
        assert_eq!(assert_signed(hit, &secret, at(sent_at)), event_id, "same event id on every attempt");
        assert_eq!(body_of(hit), payload);
    }
    let failed = only_delivery(&app, &hook).await;
    assert_eq!(
        (&failed["event_id"], &failed["event_type"], &failed["status"], &failed["attempts"]),
        (&json!(event_id), &json!("webhook.test"), &json!("failed"), &json!(5))
    );
    assert_eq!((&failed["last_status_code"], &failed["delivered_at"], &failed["payload"]), (&json!(500), &json!(null), &payload));

    // The receiver recovers; a retry by hand is one more attempt of the same event.
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).with_priority(1).mount(&failing).await;
    let retry = format!("/webhooks/{hook}/deliveries/{delivery_id}/retry");
    let (status, body) = app.post(&retry, json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, body) = app.post(&retry, json!({})).await;
    assert_error(status, &body, 409, "INVALID_STATUS_TRANSITION", None);
    assert_eq!(app.deliver().await, 1);
    assert_eq!(app.deliver().await, 0);
    let hits = received(&failing).await;
    assert_eq!(hits.len(), 6);
    assert_eq!(assert_signed(&hits[5], &secret, at(3600)), event_id);
    assert_eq!(body_of(&hits[5]), payload);
    let delivered = only_delivery(&app, &hook).await;
    assert_eq!(
        (&delivered["id"], &delivered["status"], &delivered["attempts"], &delivered["last_status_code"]),
        (&json!(delivery_id), &json!("delivered"), &json!(6), &json!(200))
    );
    assert_eq!((&delivered["delivered_at"], &delivered["next_attempt_at"]), (&json!(utc(3600)), &json!(null)));
    let (status, body) = app.post(&retry, json!({})).await;
    assert_error(status, &body, 409, "INVALID_STATUS_TRANSITION", None);

    // A pending delivery cannot be retried; the log filters by status, newest first.
    app.clock.set(at(3660));
    let pending_event = send_test(&app, &hook).await;
    let all = deliveries(&app, &hook, "").await;
    let listed: Vec<&Value> = all.iter().map(|d| &d["event_id"]).collect();
    assert_eq!(listed, [&json!(pending_event), &json!(event_id)], "newest first");
    let pending = &all[0];
    assert_eq!((&pending["status"], &pending["attempts"], &pending["created_at"]), (&json!("pending"), &json!(0), &json!(utc(3660))));
    let (status, body) = app.post(&format!("/webhooks/{hook}/deliveries/{}/retry", pending["id"].as_str().unwrap()), json!({})).await;
    assert_error(status, &body, 409, "INVALID_STATUS_TRANSITION", None);
    let event_ids = |items: Vec<Value>| -> Vec<Value> { items.iter().map(|d| d["event_id"].clone()).collect() };
    assert_eq!(event_ids(deliveries(&app, &hook, "?status=pending").await), [json!(pending_event)]);
    assert_eq!(event_ids(deliveries(&app, &hook, "?status=delivered").await), [json!(event_id)]);
    assert!(deliveries(&app, &hook, "?status=failed").await.is_empty());
    let (status, page) = app.get(&format!("/webhooks/{hook}/deliveries?pageSize=1")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["deliveries"].as_array().map(Vec::len), Some(1));
    assert_eq!(page["deliveries"][0]["event_id"], json!(pending_event));
    assert_eq!(page["pagination"]["has_next"], true);
    let (status, page) = app.get(&format!("/webhooks/{hook}/deliveries?pageSize=1&pageIndex=1")).await;
    assert_eq!((status, &page["deliveries"][0]["event_id"]), (StatusCode::OK, &json!(event_id)), "{page}");
    for (query, field) in [("?status=bogus", "status"), ("?status=Delivered", "status"), ("?pageSize=0", "pageSize")] {
        let (status, body) = app.get(&format!("/webhooks/{hook}/deliveries{query}")).await;
        assert_error(status, &body, 400, "INVALID_REQUEST", Some(field));
    }

    // Unknown deliveries, and a delivery of another webhook.
    let (status, body) = app.post(&format!("/webhooks/{hook}/deliveries/dlv_00000000000000000000/retry"), json!({})).await;
    assert_error(status, &body, 404, "NOT_FOUND", None);
    let (other, _) = subscribe(&app, &hook_url(&failing), &["webhook.test"], Value::Null).await;
    let (status, body) = app.post(&format!("/webhooks/{other}/deliveries/{delivery_id}/retry"), json!({})).await;
    assert_error(status, &body, 404, "NOT_FOUND", None);
}

#[tokio::test]
async fn errors_of_every_kind_are_retried_until_a_2xx_in_time() {
    let settings = ApiSettings {
        rate_limit_rps: None,
        webhooks: WebhookSettings { allow_private: true, timeout: Duration::from_millis(200), ..WebhookSettings::default() },
        ..ApiSettings::default()
    };
    let Some(app) = TestApp::spawn_with(settings).await else { return };
    // 500, then 404, then 200 on the third attempt.
    let flaky = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(500)).up_to_n_times(1).with_priority(1).mount(&flaky).await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(404)).up_to_n_times(1).with_priority(2).mount(&flaky).await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(204)).mount(&flaky).await;
    // A 200 that comes too late, and a port nobody listens on.
    let slow = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(5))).mount(&slow).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
    let (flaky_hook, _) = subscribe(&app, &hook_url(&flaky), &["webhook.test"], Value::Null).await;
    let (slow_hook, _) = subscribe(&app, &hook_url(&slow), &["webhook.test"], Value::Null).await;
    let (dead_hook, _) = subscribe(&app, &format!("http://{closed}/hook"), &["webhook.test"], Value::Null).await;
    for hook in [&flaky_hook, &slow_hook, &dead_hook] {
        send_test(&app, hook).await;
    }

    assert_eq!(app.deliver().await, 3);
    let flaky_delivery = only_delivery(&app, &flaky_hook).await;
    assert_eq!((&flaky_delivery["status"], &flaky_delivery["last_status_code"]), (&json!("pending"), &json!(500)));
    let slow_delivery = only_delivery(&app, &slow_hook).await;
    assert_eq!((&slow_delivery["status"], &slow_delivery["attempts"]), (&json!("pending"), &json!(1)), "a late 200 is no delivery");
    assert_eq!(slow_delivery["last_error"], "timeout", "{slow_delivery:#}");
    let dead_delivery = only_delivery(&app, &dead_hook).await;
    assert_eq!(
        (&dead_delivery["status"], &dead_delivery["attempts"], &dead_delivery["last_status_code"]),
        (&json!("pending"), &json!(1), &json!(null))
    );
    assert_eq!(dead_delivery["last_error"], "connection_failed", "a connection error is named: {dead_delivery:#}");
    assert_eq!(dead_delivery["next_attempt_at"], utc(60));

    app.clock.set(at(60));
    assert_eq!(app.deliver().await, 3);
    let flaky_delivery = only_delivery(&app, &flaky_hook).await;
    assert_eq!((&flaky_delivery["status"], &flaky_delivery["last_status_code"]), (&json!("pending"), &json!(404)), "a 4xx is retried too");
    app.clock.set(at(120));
    assert_eq!(app.deliver().await, 3);
    let flaky_delivery = only_delivery(&app, &flaky_hook).await;
    assert_eq!(
        (&flaky_delivery["status"], &flaky_delivery["attempts"], &flaky_delivery["last_status_code"]),
        (&json!("delivered"), &json!(3), &json!(204))
    );
    assert_eq!((&flaky_delivery["delivered_at"], &flaky_delivery["next_attempt_at"]), (&json!(utc(120)), &json!(null)));
    app.clock.set(at(240));
    assert_eq!(app.deliver().await, 2, "the delivered one is done");
    assert_eq!(received(&flaky).await.len(), 3);
}

#[tokio::test]
async fn the_retry_schedule_is_a_setting_whose_length_is_the_number_of_attempts() {
    let defaults = WebhookSettings::default();
    let delays: Vec<SignedDuration> = [0, 60, 120, 240, 480].into_iter().map(SignedDuration::from_secs).collect();
    assert_eq!((&defaults.retry_delays, defaults.timeout, defaults.allow_private), (&delays, Duration::from_secs(5), false));
    let settings = ApiSettings {
        rate_limit_rps: None,
        webhooks: WebhookSettings {
            retry_delays: vec![SignedDuration::ZERO, SignedDuration::from_secs(30)],
            allow_private: true,
            ..WebhookSettings::default()
        },
        ..ApiSettings::default()
    };
    let Some(app) = TestApp::spawn_with(settings).await else { return };
    let failing = receiver(503).await;
    let (hook, _) = subscribe(&app, &hook_url(&failing), &["webhook.test"], Value::Null).await;
    send_test(&app, &hook).await;
    assert_eq!(app.deliver().await, 1);
    let delivery = only_delivery(&app, &hook).await;
    assert_eq!((&delivery["status"], &delivery["next_attempt_at"]), (&json!("pending"), &json!(utc(30))));
    app.clock.set(at(29));
    assert_eq!(app.deliver().await, 0);
    app.clock.set(at(30));
    assert_eq!(app.deliver().await, 1);
    let delivery = only_delivery(&app, &hook).await;
    assert_eq!(
        (&delivery["status"], &delivery["attempts"], &delivery["last_status_code"], &delivery["next_attempt_at"]),
        (&json!("failed"), &json!(2), &json!(503), &json!(null))
    );
    app.clock.set(at(3600));
    assert_eq!(app.deliver().await, 0);
    assert_eq!(received(&failing).await.len(), 2);
}

#[tokio::test]
async fn a_rotated_secret_signs_the_events_that_follow() {
    let Some(app) = TestApp::spawn().await else { return };
    let target = receiver(200).await;
    let (hook, old) = subscribe(&app, &hook_url(&target), &["webhook.test"], Value::Null).await;
    let before = get_webhook(&app, &hook).await;
    let rotate = format!("/webhooks/{hook}/rotate-secret");
    let rotated = post_with_key(&app, "rotate-1", &app.key, &rotate, &json!({})).await;
    assert_eq!((rotated.status, rotated.replayed), (StatusCode::OK, false), "{}", rotated.json());
    let replayed = post_with_key(&app, "rotate-1", &app.key, &rotate, &json!({})).await;
    assert_eq!((replayed.status, replayed.replayed, &replayed.body), (StatusCode::OK, true, &rotated.body), "rotated once");
    let body = rotated.json();
    assert_eq!(keys(&body), BTreeSet::from(["success", "webhook"]), "{body}");
    let new = assert_secret(&body["webhook"]["secret"]);
    assert_ne!(new, old);
    let shown = without_secret(&body["webhook"]);
    assert_eq!((&shown["id"], &shown["url"], &shown["events"]), (&before["id"], &before["url"], &before["events"]));
    assert!(get_webhook(&app, &hook).await.get("secret").is_none());

    send_test(&app, &hook).await;
    assert_eq!(app.deliver().await, 1);
    let hits = received(&target).await;
    assert_signed(&hits[0], &new, start_time());
    assert_ne!(header(&hits[0], "x-altur-signature"), hmac_b64(&old, &hits[0].body), "the old secret no longer signs");

    let (status, body) = app.post("/webhooks/whk_00000000000000000000/rotate-secret", json!({})).await;
    assert_error(status, &body, 404, "NOT_FOUND", None);
}

#[tokio::test]
async fn disabled_subscriptions_receive_nothing_and_deleted_ones_lose_their_pending_deliveries() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    let enabled = receiver(200).await;
    let disabled = receiver(200).await;
    subscribe(&app, &hook_url(&enabled), &["campaign.status_changed"], Value::Null).await;
    let (status, body) =
        app.post("/webhooks", json!({ "url": hook_url(&disabled), "events": ["campaign.status_changed"], "enabled": false })).await;
    assert_eq!((status, &body["webhook"]["enabled"]), (StatusCode::CREATED, &json!(false)), "{body}");
    let disabled_hook = body["webhook"]["id"].as_str().expect("id").to_owned();

    let first = app.create_campaign(setup.phone(json!({}))).await["id"].as_i64().expect("id");
    app.post(&format!("/campaigns/{first}/contacts"), json!({ "contacts": numbers(1) })).await;
    assert_eq!(app.deliver().await, 1);
    assert_eq!(received(&enabled).await.len(), 1);
    assert!(received(&disabled).await.is_empty(), "a disabled subscription receives nothing");
    // Not even a test event: it waits, and goes out once the subscription is enabled.
    let test_event = send_test(&app, &disabled_hook).await;
    assert_eq!(app.deliver().await, 0);

    // Enabled again: it receives what happens from then on, and the test event.
    let (status, body) = app.patch(&format!("/webhooks/{disabled_hook}"), json!({ "enabled": true })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let second = app.create_campaign(setup.phone(json!({}))).await["id"].as_i64().expect("id");
    app.post(&format!("/campaigns/{second}/contacts"), json!({ "contacts": numbers(1) })).await;
    assert_eq!(app.deliver().await, 3);
    let bodies = received_bodies(&disabled).await;
    assert_eq!(bodies.len(), 2, "{bodies:#?}");
    assert!(bodies.iter().any(|b| b["event_id"] == test_event.as_str()), "{bodies:#?}");
    assert!(bodies.iter().any(|b| b["data"]["campaign"]["id"] == second), "{bodies:#?}");

    // Deleted with an event pending: nothing arrives afterwards.
    app.post(&format!("/campaigns/{second}/activate"), json!({})).await;
    let (status, _) = app.call(Method::DELETE, &format!("/webhooks/{disabled_hook}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(app.deliver().await, 1, "only the remaining subscription");
    app.clock.advance(SignedDuration::from_mins(30));
    assert_eq!(app.deliver().await, 0);
    assert_eq!(received(&disabled).await.len(), 2);
    assert_eq!(received(&enabled).await.len(), 3);
    let (status, body) = app.get(&format!("/webhooks/{disabled_hook}/deliveries")).await;
    assert_error(status, &body, 404, "NOT_FOUND", None);
}

/// Delivered and failed deliveries stay in the log 30 days (§8.2); pending ones are never purged.
#[tokio::test]
async fn deliveries_ended_more_than_30_days_ago_are_purged() {
    use outbound::clock::Clock;
    let Some(app) = TestApp::spawn().await else { return };
    let receiver = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).up_to_n_times(1).mount(&receiver).await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(500)).mount(&receiver).await;
    let (_, created) = app.post("/webhooks", json!({ "url": receiver.uri(), "events": ["webhook.test"] })).await;
    let id = created["webhook"]["id"].as_str().expect("id").to_owned();
    app.post(&format!("/webhooks/{id}/test"), json!({})).await;
    assert_eq!(app.deliver().await, 1, "delivered");
    app.clock.advance(SignedDuration::from_hours(24 * 30));
    app.post(&format!("/webhooks/{id}/test"), json!({})).await;
    assert_eq!(app.deliver().await, 1, "answered 500: pending, to be retried");
    let count = |log: &serde_json::Value| log["total_count"].as_i64().expect("count");

    let kept_for = SignedDuration::from_hours(24 * 30);
    let purged = app.store.purge_deliveries(app.clock.now() - kept_for).await.expect("purge");
    assert_eq!(purged, 0, "the first ended exactly 30 days ago: kept");
    app.clock.advance(SignedDuration::from_secs(1));
    let purged = app.store.purge_deliveries(app.clock.now() - kept_for).await.expect("purge");
    assert_eq!(purged, 1);
    let (_, log) = app.get(&format!("/webhooks/{id}/deliveries")).await;
    assert_eq!(count(&log), 1);
    assert_eq!(log["deliveries"][0]["status"], "pending");
    app.clock.advance(SignedDuration::from_hours(24 * 60));
    assert_eq!(app.store.purge_deliveries(app.clock.now() - kept_for).await.expect("purge"), 0, "pending: never purged");
}

/// A process that took a subscription's deliveries and died: another one takes the subscription
/// over once its lease ends, sends what the dead one had not taken at once, and the deliveries it
/// had taken once theirs end; each event once.
#[tokio::test]
async fn a_dead_process_is_taken_over_after_its_leases() {
    use outbound::store::DeliveryTake;
    let Some(app) = TestApp::spawn().await else { return };
    let target = receiver(200).await;
    let (hook, _) = subscribe(&app, &hook_url(&target), &["webhook.test"], Value::Null).await;
    let mut events = BTreeSet::new();
    for _ in 0..5 {
        events.insert(send_test(&app, &hook).await);
    }
    let now = start_time();
    let dead = DeliveryTake {
        owner: "a process that dies".to_owned(),
        at: now,
        subscriptions_until: now + SignedDuration::from_secs(30),
        deliveries_until: now + SignedDuration::from_mins(10),
        limit: 2,
        busy: Vec::new(),
    };
    assert_eq!(app.store.take_deliveries(dead).await.expect("taken").len(), 2);

    assert_eq!(app.deliver().await, 0, "the subscription is another process's");
    app.clock.advance(SignedDuration::from_secs(30));
    assert_eq!(app.deliver().await, 0, "until its lease has ended");
    app.clock.advance(SignedDuration::from_secs(1));
    assert_eq!(app.deliver().await, 3, "what the dead process had not taken");
    app.clock.advance(SignedDuration::from_mins(10));
    assert_eq!(app.deliver().await, 2, "what it had taken, once their lease ended");
    assert_eq!(app.deliver().await, 0);
    let sent: Vec<String> = received(&target).await.iter().map(|r| header(r, "webhook-id")).collect();
    assert_eq!(sent.len(), 5);
    assert_eq!(sent.into_iter().collect::<BTreeSet<_>>(), events, "each event once");
}

/// A live worker keeps its subscriptions: its takes renew their lease once half of it has passed,
/// so another worker never takes over from one that is alive.
#[tokio::test]
async fn a_live_worker_keeps_its_subscription_by_renewing_its_lease() {
    let Some(app) = TestApp::spawn().await else { return };
    let target = receiver(200).await;
    let (hook, _) = subscribe(&app, &hook_url(&target), &["webhook.test"], Value::Null).await;
    send_test(&app, &hook).await;
    assert_eq!(app.deliver().await, 1, "the app's worker holds the subscription from now on");
    let other =
        outbound::webhooks::Deliveries::new(app.store.clone(), app.clock.clone(), super::helpers::local_webhooks()).expect("client");

    app.clock.advance(SignedDuration::from_secs(20));
    assert_eq!(app.deliver().await, 0, "nothing due; the lease, at 10 s from its end, is renewed");
    app.clock.advance(SignedDuration::from_secs(20));
    send_test(&app, &hook).await;
    assert_eq!(other.settle().await.expect("settles"), 0, "past the first lease, but not the renewed one");
    assert_eq!(app.deliver().await, 1);
    assert_eq!(received(&target).await.len(), 2);
}
