//! The webhook provider (§5.3) against a mock server: the signed attempt it POSTs, re-sends of
//! the same attempt after a 5xx, a timeout or a refused connection (1 s, 2 s, 4 s, 8 s, 16 s),
//! a 4xx failing the attempt, and six 5xx answers failing it.

use std::sync::Arc;
use std::time::Duration;

use jiff::SignedDuration;
use outbound::domain::ids::verify_signature;
use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::engine::{Harness, Provider, idempotency_key, retry_settings};

fn advance_secs(h: &Harness, secs: i64) {
    h.clock.advance(SignedDuration::from_secs(secs));
}

#[tokio::test]
async fn the_provider_receives_a_signed_attempt_with_its_id_as_idempotency_key() {
    let Some(h) = Harness::webhook("phone_call").await else { return };
    let id = h.campaign(json!({ "name": "June calls", "first_message": "Hola, le llamo de Acme." })).await;
    let contact = json!({ "contact": "+525520000000", "name": "Ana", "f_id": "crm-7", "context": "prefers mornings",
        "extracted_data": { "plan": "basic" }, "tags": ["vip"] });
    let c = h.add(id, vec![contact]).await;
    h.action(id, "activate").await;
    assert_eq!(h.claims().await, 1);

    let requests = h.received().await;
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method.as_str(), "POST");
    assert_eq!(request.url.path(), "/send");
    let content_type = request.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert!(content_type.starts_with("application/json"), "{content_type}");
    let attempt = h.attempt_of(id, c[0]).await;
    assert_eq!(idempotency_key(request), attempt);
    let signature = request.headers.get("x-outbound-signature").and_then(|v| v.to_str().ok()).expect("signature header");
    assert!(verify_signature(&h.secret, &request.body, signature), "signed with the integration secret over the raw body");
    let other = h.create_integration_with(&h.agent, "phone_call", "simulator", json!({})).await;
    assert!(!verify_signature(other["secret"].as_str().expect("secret"), &request.body, signature));

    let body: Value = serde_json::from_slice(&request.body).expect("JSON body");
    let callback_url = h.url(&format!("/api/v1.0/integrations/{}/events", h.integration));
    assert_eq!(
        body,
        json!({
            "attempt_id": attempt,
            "channel": "phone_call",
            "campaign": { "id": id, "name": "June calls" },
            "agent": { "id": h.agent, "name": "Sales bot" },
            "contact": { "id": c[0], "f_id": "crm-7", "name": "Ana", "contact": "+525520000000", "context": "prefers mornings",
                "extracted_data": { "plan": "basic" }, "tags": ["vip"] },
            "first_message": "Hola, le llamo de Acme.",
            "iteration": 1,
            "callback_url": callback_url,
        })
    );
    assert_eq!(h.contact(id, c[0]).await["status"], "sending", "accepted: waiting for events");

    // The callback URL takes the provider's signed events.
    let event = serde_json::to_vec(&json!({ "attempt_id": attempt, "status": "ended", "answered_by": "human" })).expect("json");
    let signature = outbound::domain::ids::sign(&h.secret, &event).expect("sign");
    let response = h
        .client
        .post(&callback_url)
        .header("Content-Type", "application/json")
        .header("X-Outbound-Signature", signature)
        .body(event)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(h.contact(id, c[0]).await["status"], "answered");
}

#[tokio::test]
async fn a_5xx_is_resent_with_the_same_attempt_id_until_accepted() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(503)).up_to_n_times(2).with_priority(1).mount(&server).await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).with_priority(2).mount(&server).await;
    let Some(h) = Harness::new(retry_settings(30, 1), "phone_call", Provider::Webhook(server)).await else { return };
    let (id, c) = h.start(json!({}), 1).await;

    assert_eq!(h.claims().await, 1);
    assert_eq!(h.received().await.len(), 1);
    assert_eq!(h.settle().await.resent, 0, "not before 1 s");
    assert_eq!(h.contact(id, c[0]).await["status"], "sending");
    assert_eq!(h.calls(id, "").await["calls"][0]["status"], "in-progress");
    // Paused: nothing new starts, but the attempt in flight is still handed off.
    h.action(id, "pause").await;

    advance_secs(&h, 1);
    assert_eq!(h.settle().await.resent, 1);
    assert_eq!(h.received().await.len(), 2);
    advance_secs(&h, 1);
    assert_eq!(h.settle().await.resent, 0, "the second wait is 2 s");
    advance_secs(&h, 1);
    assert_eq!(h.settle().await.resent, 1);
    assert_eq!(h.received().await.len(), 3, "accepted at the third POST");

    h.advance_mins(10);
    assert_eq!(h.settle().await, Default::default(), "an accepted attempt is not sent again");
    let requests = h.received().await;
    assert_eq!(requests.len(), 3);
    let attempt = h.attempt_of(id, c[0]).await;
    for request in &requests {
        assert_eq!(idempotency_key(request), attempt);
        assert_eq!(request.body, requests[0].body, "every re-send carries the same body");
    }
    let contact = h.contact(id, c[0]).await;
    assert_eq!((&contact["status"], &contact["call_count"]), (&json!("sending"), &json!(1)));
    assert_eq!(h.calls(id, "").await["total_count"], 1);
    h.event_ok(&attempt, "ended", json!({ "answered_by": "human" })).await;
    h.action(id, "resume").await;
    h.settle().await;
    assert_eq!(h.status(id).await, "finished");
}

#[tokio::test]
async fn a_4xx_fails_the_attempt_and_the_failed_retry_rules_apply() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(422)).mount(&server).await;
    let Some(h) = Harness::new(retry_settings(30, 1), "phone_call", Provider::Webhook(server)).await else { return };
    let (id, c) = h.start(json!({}), 1).await;
    assert_eq!(h.claims().await, 1);
    let call = h.calls(id, "").await["calls"][0].clone();
    assert_eq!(
        (&call["status"], &call["ended_reason"], &call["ended_by"]),
        (&json!("failed"), &json!("provider_rejected"), &json!("system"))
    );
    let contact = h.contact(id, c[0]).await;
    assert_eq!((&contact["status"], &contact["failed_retries"]), (&json!("retrying"), &json!(1)));
    advance_secs(&h, 16);
    assert_eq!(h.settle().await, Default::default(), "a 4xx is not re-sent");
    assert_eq!(h.received().await.len(), 1);

    h.clock.set(super::helpers::start_time() + SignedDuration::from_mins(30));
    assert_eq!(h.claims().await, 1, "the failed retry, as a new attempt");
    let keys: Vec<String> = h.received().await.iter().map(idempotency_key).collect();
    assert_eq!(keys.len(), 2);
    assert_ne!(keys[0], keys[1]);
    let contact = h.contact(id, c[0]).await;
    assert_eq!((&contact["status"], &contact["call_count"]), (&json!("failed"), &json!(2)));
    let campaign = h.detail(id).await;
    assert_eq!(campaign["status"], "finished");
    assert_eq!((&campaign["analytics"]["calls"], &campaign["analytics"]["contactsFailed"]), (&json!(2), &json!(1)));
    assert_eq!(h.calls(id, "?status=failed").await["total_count"], 2);
}

#[tokio::test]
async fn six_5xx_answers_fail_the_attempt() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(500)).mount(&server).await;
    let Some(h) = Harness::new(retry_settings(30, 0), "phone_call", Provider::Webhook(server)).await else { return };
    let (id, c) = h.start(json!({}), 1).await;
    assert_eq!(h.claims().await, 1);
    for (resend, wait) in [1, 2, 4, 8, 16].into_iter().enumerate() {
        advance_secs(&h, wait - 1);
        assert_eq!(h.settle().await.resent, 0, "re-send {} not before {wait} s", resend + 1);
        advance_secs(&h, 1);
        assert_eq!(h.settle().await.resent, 1, "re-send {} after {wait} s", resend + 1);
        assert_eq!(h.received().await.len(), resend + 2);
    }
    let requests = h.received().await;
    assert_eq!(requests.len(), 6);
    let attempt = h.attempt_of(id, c[0]).await;
    assert!(requests.iter().all(|r| idempotency_key(r) == attempt));
    let call = h.calls(id, "").await["calls"][0].clone();
    assert_eq!((&call["status"], &call["ended_reason"]), (&json!("failed"), &json!("provider_unavailable")));
    assert_eq!(h.contact(id, c[0]).await["status"], "failed");
    assert_eq!(h.status(id).await, "finished");
    h.advance_mins(60);
    h.settle().await;
    assert_eq!(h.received().await.len(), 6, "nothing after the sixth POST");
}

#[tokio::test]
async fn a_timeout_or_a_refused_connection_is_resent_like_a_5xx() {
    // A provider slower than the 50 ms timeout once, then prompt.
    let slow = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(400)))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&slow)
        .await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).with_priority(2).mount(&slow).await;
    let Some(h) = Harness::new(retry_settings(30, 1), "phone_call", Provider::WebhookUrl(format!("{}/send", slow.uri()), 50)).await else {
        return;
    };
    let (id, c) = h.start(json!({}), 1).await;
    assert_eq!(h.claims().await, 1);
    assert_eq!(h.contact(id, c[0]).await["status"], "sending");
    advance_secs(&h, 1);
    assert_eq!(h.settle().await.resent, 1);
    let requests = slow.received_requests().await.expect("recorded");
    assert_eq!(requests.len(), 2);
    assert_eq!(idempotency_key(&requests[0]), idempotency_key(&requests[1]));
    advance_secs(&h, 30);
    assert_eq!(h.settle().await.resent, 0, "accepted at the second POST");

    // Nobody listening at first (the port is held, bound but not listening, so that no other
    // server takes it); the provider comes up before the re-send.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
    let address = socket.local_addr().expect("addr");
    let Some(down) = Harness::new(retry_settings(30, 1), "phone_call", Provider::WebhookUrl(format!("http://{address}/send"), 2000)).await
    else {
        return;
    };
    let (id, c) = down.start(json!({}), 1).await;
    assert_eq!(down.claims().await, 1);
    let attempt = down.attempt_of(id, c[0]).await;
    let call = down.calls(id, "").await["calls"][0].clone();
    assert_eq!(call["status"], "in-progress", "{call:#}");
    let listener = socket.listen(64).expect("listen").into_std().expect("std listener");
    let up = MockServer::builder().listener(listener).start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&up).await;
    advance_secs(&down, 1);
    assert_eq!(down.settle().await.resent, 1);
    let requests = up.received_requests().await.expect("recorded");
    assert_eq!(requests.len(), 1);
    assert_eq!(idempotency_key(&requests[0]), attempt);
    assert_eq!(down.contact(id, c[0]).await["status"], "sending");
}

#[tokio::test]
async fn an_event_before_the_handoff_is_confirmed_stops_the_resends() {
    // The provider took the attempt but answered 503; its events arrive all the same.
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(503)).mount(&server).await;
    let Some(h) = Harness::new(retry_settings(30, 1), "phone_call", Provider::Webhook(server)).await else { return };
    let (id, c) = h.start(json!({}), 1).await;
    assert_eq!(h.claims().await, 1);
    let attempt = h.attempt_of(id, c[0]).await;
    h.event_ok(&attempt, "ringing", json!({})).await;
    for wait in [1, 2, 4, 8, 16, 60] {
        advance_secs(&h, wait);
        assert_eq!(h.settle().await.resent, 0, "after {wait} s");
    }
    assert_eq!(h.received().await.len(), 1);
    h.event_ok(&attempt, "ended", json!({ "answered_by": "human" })).await;
    let call = h.calls(id, "").await["calls"][0].clone();
    assert_eq!((&call["status"], &call["answered_by"]), (&json!("ended"), &json!("human")));
    assert_eq!(h.contact(id, c[0]).await["status"], "answered");
}

/// A provider that takes each attempt and answers only once the test lets it.
async fn blocking_provider(release: Arc<tokio::sync::Notify>, received: Arc<tokio::sync::Notify>) -> String {
    let app = axum::Router::new().route(
        "/send",
        axum::routing::post(move || {
            let (release, received) = (release.clone(), received.clone());
            async move {
                received.notify_one();
                release.notified().await;
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}/send")
}

/// In `outbound serve` the engine runs on its own: a provider that holds its answer holds up
/// only its own campaign's attempts, while another campaign calls all of its contacts.
#[tokio::test]
async fn a_provider_that_does_not_answer_holds_up_no_other_campaign() {
    let (release, received) = (Arc::new(tokio::sync::Notify::new()), Arc::new(tokio::sync::Notify::new()));
    let url = blocking_provider(release.clone(), received.clone()).await;
    let Some(h) = Harness::new(retry_settings(30, 1), "phone_call", Provider::WebhookUrl(url, 60_000)).await else { return };
    let simulator = h.create_integration_with(&h.agent, "phone_call", "simulator", json!({})).await;
    let (held, held_contacts) = h.start(json!({}), 1).await;
    let running = h.campaign(json!({ "integration_id": simulator["id"] })).await;
    let contacts = h.add(running, (0..20).map(|i| json!({ "contact": format!("+52552100{i:04}") })).collect()).await;
    let stop = Arc::new(tokio::sync::Notify::new());
    let engine = {
        let stop = stop.clone();
        tokio::spawn(h.engine.clone().run(async move { stop.notified().await }))
    };
    received.notified().await;
    h.action(running, "activate").await;

    // Waits for a state, not for time: with the provider's answer held, the other campaign's
    // contacts can only all be called if its dispatch does not wait for that answer.
    let processed = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let (_, body) = h.get(&format!("/campaigns/{running}")).await;
            if body["campaign"]["analytics"]["contactsProcessed"] == contacts.len() {
                return body;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the simulator's campaign called every contact while the webhook held its answer");
    assert_eq!(processed["campaign"]["analytics"]["calls"], contacts.len());
    assert_eq!(h.contact(held, held_contacts[0]).await["status"], "sending");

    // Stopping waits for the held send: its answer is recorded, nothing is re-sent later.
    release.notify_one();
    stop.notify_one();
    engine.await.expect("the engine stops");
    h.clock.advance(SignedDuration::from_mins(5));
    assert_eq!(h.settle().await.resent, 0, "the handoff was confirmed before the engine stopped");
}
