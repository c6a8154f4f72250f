//! Attempt events (§5.4): what an event writes onto the call and the contact, idempotence and
//! out-of-order delivery, signature checks (401), media type (415), body validation (400) and
//! unknown attempts (404).

use reqwest::StatusCode;
use serde_json::{Value, json};

use outbound::api::ApiSettings;

use super::engine::{Harness, Provider, accepting_provider, numbers};
use super::helpers::assert_error;

#[tokio::test]
async fn an_event_writes_the_call_and_merges_data_and_tags_into_the_contact() {
    let Some(h) = Harness::webhook("phone_call").await else { return };
    let id = h.campaign(json!({})).await;
    let contact = json!({ "contact": "+525520000000", "name": "Ana", "f_id": "crm-1", "context": "likes mornings",
        "extracted_data": { "plan": "basic", "city": "CDMX" }, "tags": ["vip"] });
    let c = h.add(id, vec![contact]).await;
    h.action(id, "activate").await;
    assert_eq!(h.claims().await, 1);
    let attempt = h.attempt_of(id, c[0]).await;
    assert!(attempt.starts_with("cll_"), "{attempt}");

    h.event_ok(&attempt, "ringing", json!({})).await;
    assert_eq!(h.calls(id, "").await["calls"][0]["status"], "in-progress");
    h.event_ok(&attempt, "in-progress", json!({ "started_at": "2026-06-08T18:00:05Z" })).await;
    assert_eq!(h.contact(id, c[0]).await["status"], "sending");
    h.event_ok(
        &attempt,
        "ended",
        json!({ "answered_by": "human", "ended_at": "2026-06-08T18:01:40Z", "duration": 95, "billed_duration": 96,
            "ended_by": "user", "ended_reason": "user_hangup", "converted": false,
            "extracted_data": { "plan": "pro", "budget": 1000 }, "tags": ["hot", "vip"] }),
    )
    .await;

    let calls = h.calls(id, "").await;
    let call = &calls["calls"][0];
    assert_eq!(call["id"], json!(attempt));
    assert_eq!((&call["type"], &call["status"], &call["answered_by"]), (&json!("outbound"), &json!("ended"), &json!("human")));
    assert_eq!((&call["started_at"], &call["ended_at"]), (&json!("2026-06-08T18:00:05Z"), &json!("2026-06-08T18:01:40Z")));
    assert_eq!((&call["duration"], &call["billed_duration"]), (&json!(95), &json!(96)));
    assert_eq!((&call["ended_by"], &call["ended_reason"]), (&json!("user"), &json!("user_hangup")));
    assert_eq!(call["extracted_data"], json!({ "plan": "pro", "budget": 1000 }));
    assert_eq!(call["tags"], json!(["hot", "vip"]));
    assert_eq!(call["created_at"], "2026-06-08T18:00:00Z");
    assert_eq!(
        call["contact"],
        json!({ "id": c[0], "f_id": "crm-1", "name": "Ana", "phone_number": "+525520000000", "status": "answered" })
    );

    let contact = h.contact(id, c[0]).await;
    assert_eq!(contact["status"], "answered");
    assert_eq!(contact["extracted_data"], json!({ "plan": "pro", "city": "CDMX", "budget": 1000 }));
    assert_eq!(contact["tags"], json!(["vip", "hot"]));
    assert_eq!((&contact["billed_duration"], &contact["call_count"]), (&json!(96), &json!(1)));
    h.settle().await;
    assert_eq!(h.status(id).await, "finished");
}

#[tokio::test]
async fn events_are_idempotent_and_tolerate_any_order() {
    let Some(h) = Harness::webhook("phone_call").await else { return };
    let (id, c) = h.start(json!({}), 2).await;
    assert_eq!(h.claims().await, 2);
    let first = h.attempt_of(id, c[0]).await;
    let ended = json!({ "answered_by": "human", "billed_duration": 30, "extracted_data": { "n": 1 }, "tags": ["t"] });
    h.event_ok(&first, "ended", ended.clone()).await;
    let before = (h.detail(id).await["analytics"].clone(), h.contact(id, c[0]).await, h.calls(id, "").await);
    // The same event again, a late ringing and a second final event: all 200, nothing changes.
    h.event_ok(&first, "ended", ended).await;
    h.event_ok(&first, "ringing", json!({})).await;
    h.event_ok(&first, "in-progress", json!({})).await;
    h.event_ok(&first, "busy", json!({ "billed_duration": 7 })).await;
    h.event_ok(&first, "ended", json!({ "answered_by": "machine", "billed_duration": 9 })).await;
    let after = (h.detail(id).await["analytics"].clone(), h.contact(id, c[0]).await, h.calls(id, "").await);
    assert_eq!(before, after);
    assert_eq!((&after.0["calls"], &after.0["callsAnsweredByHuman"]), (&json!(1), &json!(1)));
    assert_eq!((&after.1["status"], &after.1["billed_duration"]), (&json!("answered"), &json!(30)));

    // in-progress before ringing: the call stays in progress, then ends.
    let second = h.attempt_of(id, c[1]).await;
    h.event_ok(&second, "in-progress", json!({})).await;
    h.event_ok(&second, "ringing", json!({})).await;
    let calls = h.calls(id, "?status=in-progress").await;
    assert_eq!(calls["calls"][0]["id"], json!(second));
    h.event_ok(&second, "no-answer", json!({})).await;
    h.event_ok(&second, "no-answer", json!({})).await;
    let contact = h.contact(id, c[1]).await;
    assert_eq!((&contact["status"], &contact["failed_retries"]), (&json!("retrying"), &json!(1)), "counted once");
    assert_eq!(h.detail(id).await["analytics"]["calls"], 2);
}

#[tokio::test]
async fn events_need_a_valid_signature_and_a_json_body() {
    let Some(h) = Harness::webhook("phone_call").await else { return };
    let (id, c) = h.start(json!({}), 1).await;
    assert_eq!(h.claims().await, 1);
    let attempt = h.attempt_of(id, c[0]).await;
    let body = serde_json::to_vec(&json!({ "attempt_id": attempt, "status": "ended", "answered_by": "human" })).expect("json");
    let good = outbound::domain::ids::sign(&h.secret, &body).expect("sign");
    let other = h.create_integration_with(&h.agent, "phone_call", "simulator", json!({})).await;
    let other_secret = other["secret"].as_str().expect("secret");
    let foreign = outbound::domain::ids::sign(other_secret, &body).expect("sign");
    let tampered = outbound::domain::ids::sign(&h.secret, b"{\"attempt_id\":\"x\",\"status\":\"ended\"}").expect("sign");
    let json_type = Some("application/json");

    for (signature, why) in [
        (None, "missing"),
        (Some("AAAA"), "wrong"),
        (Some("not base64 %%%"), "not base64"),
        (Some(foreign.as_str()), "another integration's secret"),
        (Some(tampered.as_str()), "over another body"),
        (Some(""), "empty"),
    ] {
        let (status, err) = h.post_event_raw(&h.integration, &body, signature, json_type).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{why}: {err}");
        assert_error(status, &err, 401, "UNAUTHORIZED", None);
    }
    let (status, err) = h.post_event_raw("iph_00000000000000000000", &body, Some(&good), json_type).await;
    assert_error(status, &err, 401, "UNAUTHORIZED", None);
    // The right signature on another integration's route is refused too.
    let (status, err) = h.post_event_raw(other["id"].as_str().expect("id"), &body, Some(&good), json_type).await;
    assert_error(status, &err, 401, "UNAUTHORIZED", None);

    for content_type in [Some("text/plain"), None] {
        let (status, err) = h.post_event_raw(&h.integration, &body, Some(&good), content_type).await;
        assert_error(status, &err, 415, "UNSUPPORTED_MEDIA_TYPE", None);
    }
    assert_eq!(h.contact(id, c[0]).await["status"], "sending", "no refused event changed anything");

    // An API key is neither needed nor enough; the signature alone counts.
    let (status, ok) = h.post_event_raw(&h.integration, &body, Some(&good), Some("application/json; charset=utf-8")).await;
    assert_eq!((status, ok), (StatusCode::OK, json!({ "success": true })));
    assert_eq!(h.contact(id, c[0]).await["status"], "answered");
}

#[tokio::test]
async fn event_bodies_are_validated_and_unknown_attempts_answer_404() {
    let Some(h) = Harness::webhook("phone_call").await else { return };
    let (id, c) = h.start(json!({}), 1).await;
    assert_eq!(h.claims().await, 1);
    let attempt = h.attempt_of(id, c[0]).await;

    for (extra, status, field) in [
        (json!({}), "sent", "status"),
        (json!({}), "queued", "status"),
        (json!({}), "delivered", "status"),
        (json!({}), "ENDED", "status"),
        (json!({ "duration": -1 }), "ended", "duration"),
        (json!({ "billed_duration": -5 }), "ended", "billed_duration"),
        (json!({ "ended_by": "robot" }), "ended", "ended_by"),
        (json!({ "surprise": 1 }), "ended", "surprise"),
        (json!({ "recording_url": "ftp://media.example/1.mp3" }), "ended", "recording_url"),
        (json!({ "recording_url": format!("https://media.example/{}", "r".repeat(1981)) }), "ended", "recording_url"),
        (
            json!({ "transcript": [{ "sent_by": "robot", "sent_at": "2026-06-08T18:00:06Z", "content": "hi" }] }),
            "ended",
            "transcript[0].sent_by",
        ),
        (json!({ "transcript": [{ "sent_by": "user", "content": "hi" }] }), "ended", "transcript[0].sent_at"),
        (json!({ "transcript": [["user", "2026-06-08T18:00:06Z", "hi"]] }), "ended", "transcript[0]"),
        (json!({ "tags": (0..51).map(|i| format!("t{i}")).collect::<Vec<_>>() }), "ended", "tags"),
        (json!({ "extracted_data": { "k": "x".repeat(16 * 1024) } }), "ended", "extracted_data"),
    ] {
        let (code, body) = h.event(&attempt, status, extra.clone()).await;
        assert_error(code, &body, 400, "INVALID_REQUEST", Some(field));
    }
    // Structurally broken bodies.
    for bad in [json!({ "status": "ended" }), json!({ "attempt_id": attempt, "status": "ended", "answered_by": "alien" }), json!([1])] {
        let (code, body) = h.post_event(&h.integration, &h.secret, &bad).await;
        assert_eq!((code, &body["error"]), (StatusCode::BAD_REQUEST, &json!("INVALID_REQUEST")), "{bad}: {body}");
    }
    let raw = b"{\"attempt_id\": ";
    let signature = outbound::domain::ids::sign(&h.secret, raw).expect("sign");
    let (code, body) = h.post_event_raw(&h.integration, raw, Some(&signature), Some("application/json")).await;
    assert_eq!((code, &body["error"]), (StatusCode::BAD_REQUEST, &json!("INVALID_REQUEST")), "{body}");
    assert_eq!(h.contact(id, c[0]).await["status"], "sending", "no rejected event changed anything");
    // The accepted edges of the same limits: 50 tags, 16 KiB of extracted data (compact JSON).
    let tags: Vec<String> = (0..50).map(|i| format!("t{i}")).collect();
    let data = json!({ "k": "x".repeat(16 * 1024 - 8) });
    h.event_ok(&attempt, "in-progress", json!({ "tags": tags, "extracted_data": data })).await;
    assert_eq!(h.calls(id, "").await["calls"][0]["tags"].as_array().map(Vec::len), Some(50));

    // Unknown attempts, and attempts of another integration.
    let (code, body) = h.event("cll_00000000000000000000", "ended", json!({})).await;
    assert_error(code, &body, 404, "NOT_FOUND", None);
    let other = h
        .create_integration_with(
            &h.agent,
            "phone_call",
            "webhook",
            json!({ "url": format!("{}/send", h.provider.as_ref().unwrap().uri()) }),
        )
        .await;
    let other_id = other["id"].as_str().expect("id").to_owned();
    let other_secret = other["secret"].as_str().expect("secret").to_owned();
    let body = h.campaign_body(json!({ "integration_id": other_id }));
    let other_campaign = h.create_campaign(body).await["id"].as_i64().expect("id");
    let oc = h.add(other_campaign, numbers(1)).await;
    h.action(other_campaign, "activate").await;
    assert_eq!(h.claims().await, 1);
    let foreign_attempt = h.attempt_of(other_campaign, oc[0]).await;
    let (code, body) = h.event(&foreign_attempt, "ended", json!({ "answered_by": "human" })).await;
    assert_error(code, &body, 404, "NOT_FOUND", None);
    let event: Value = json!({ "attempt_id": foreign_attempt, "status": "ended", "answered_by": "human" });
    let (code, _) = h.post_event(&other_id, &other_secret, &event).await;
    assert_eq!(code, StatusCode::OK, "on its own integration it is accepted");
    assert_eq!(h.contact(other_campaign, oc[0]).await["status"], "answered");
    assert_eq!(h.contact(id, c[0]).await["status"], "sending");
}

#[tokio::test]
async fn events_are_outside_the_rate_limit_and_idempotency_key_handling() {
    let settings = ApiSettings { rate_limit_rps: std::num::NonZeroU32::new(12), ..ApiSettings::default() };
    let Some(h) = Harness::new(settings, "phone_call", Provider::Webhook(accepting_provider().await)).await else { return };
    let (id, c) = h.start(json!({}), 1).await;
    assert_eq!(h.claims().await, 1);
    let attempt = h.attempt_of(id, c[0]).await;

    let send = |status: &'static str, key: &'static str| {
        let body = serde_json::to_vec(&json!({ "attempt_id": attempt, "status": status, "answered_by": "human" })).expect("json");
        let signature = outbound::domain::ids::sign(&h.secret, &body).expect("sign");
        h.client
            .post(h.url(&format!("/api/v1.0/integrations/{}/events", h.integration)))
            .header("Content-Type", "application/json")
            .header("X-Outbound-Signature", signature)
            .header("Idempotency-Key", key)
            .body(body)
            .send()
    };
    // Far more events than the key's 12 per second: none is limited.
    for _ in 0..30 {
        let response = send("ringing", "same-key").await.expect("sent");
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers().get("ratelimit").is_none(), "events carry no rate-limit fields");
    }
    // The same Idempotency-Key with another body is neither refused nor replayed: the event applies.
    let response = send("ended", "same-key").await.expect("sent");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get("idempotent-replayed").is_none());
    assert_eq!(h.contact(id, c[0]).await["status"], "answered");
}

#[tokio::test]
async fn recordings_and_transcripts_show_on_the_call_also_when_they_come_after_the_end() {
    let Some(h) = Harness::webhook("phone_call").await else { return };
    let (id, c) = h.start(json!({}), 2).await;
    assert_eq!(h.claims().await, 2);
    let (first, second) = (h.attempt_of(id, c[0]).await, h.attempt_of(id, c[1]).await);
    let transcript = json!([
        { "sent_by": "assistant", "sent_at": "2026-06-08T18:00:06Z", "content": "Hola, ¿hablo con Ana?" },
        { "sent_by": "user", "sent_at": "2026-06-08T18:00:09Z", "content": "Sí" },
    ]);
    // The longest URL kept is 2,000 characters.
    let url = format!("https://media.example/{}", "r".repeat(2000 - 22));
    h.event_ok(&first, "ended", json!({ "answered_by": "human", "ended_by": "user", "transcript": transcript })).await;
    // A repeated final event is otherwise ignored, but the recording it brings is kept.
    h.event_ok(&first, "ended", json!({ "answered_by": "human", "recording_url": url })).await;
    // A call that never connected: no recording, no transcript, `ended_by` "".
    h.event_ok(&second, "no-answer", json!({})).await;

    let calls = h.calls(id, "").await;
    let call =
        |attempt: &str| calls["calls"].as_array().and_then(|all| all.iter().find(|c| c["id"] == json!(attempt)).cloned()).expect("call");
    let answered = call(&first);
    assert_eq!((&answered["recording_url"], &answered["transcript"]), (&json!(url), &transcript));
    let missed = call(&second);
    assert_eq!((&missed["ended_by"], &missed["ended_reason"], &missed["transcript"]), (&json!(""), &json!(""), &Value::Null));
    for left_out in ["answered_by", "recording_url", "policy_evaluation", "duration", "billed_duration"] {
        assert!(missed.get(left_out).is_none(), "{left_out} is left out when the provider gave none: {missed}");
    }
    assert_eq!(h.detail(id).await["analytics"]["calls"], 2, "the late recording counted no second call");
}
