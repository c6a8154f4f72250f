//! Suppression by the do-not-contact list (§12.1): a listed number is refused when added on its
//! channel, a contact already queued fails at its next claim with `failed_reason` `suppressed`,
//! and a number listed after its claim is closed unsent at the hand-off. Removing the entry
//! revives nothing.

use jiff::SignedDuration;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::engine::{Harness, Provider, numbers, retry_settings};

/// Lists `entries` (`(number, channel)`) on the organization of `key`; asserts they are created.
async fn suppress_with(h: &Harness, key: &str, entries: &[(&str, &str)]) {
    let entries: Vec<Value> = entries.iter().map(|(contact, channel)| json!({ "contact": contact, "channel": channel })).collect();
    let count = entries.len();
    let (status, body) = h.call_with_key(Method::POST, "/dnc", Some(json!({ "entries": entries })), Some(key)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["summary"]["created"], count, "{body}");
}

async fn suppress(h: &Harness, entries: &[(&str, &str)]) {
    suppress_with(h, &h.key.clone(), entries).await;
}

fn number(i: usize) -> String {
    numbers(i + 1)[i]["contact"].as_str().expect("number").to_owned()
}

/// The requests the mock provider received for `number`.
async fn sent_to(h: &Harness, number: &str) -> usize {
    h.received().await.iter().filter(|r| String::from_utf8_lossy(&r.body).contains(number)).count()
}

#[tokio::test]
async fn a_listed_number_is_refused_on_its_channel_and_by_an_all_entry_but_not_on_another_channel() {
    let Some(h) = Harness::webhook("phone_call").await else { return };
    let (phone_only, whatsapp_only, every, free) = (number(1), number(2), number(3), number(4));
    suppress(&h, &[(&phone_only, "phone_call"), (&whatsapp_only, "whatsapp"), (&every, "all")]).await;
    // Another organization's list suppresses nothing here.
    let other_key = h.new_key("globex").await;
    suppress_with(&h, &other_key, &[(&free, "all")]).await;

    let id = h.campaign(json!({})).await;
    let items: Vec<Value> = [&phone_only, &whatsapp_only, &every, &free].iter().map(|n| json!({ "contact": n })).collect();
    let (status, body) = h.post(&format!("/campaigns/{id}/contacts"), json!({ "contacts": items })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["summary"], json!({ "created": 2, "updated": 0, "skipped_duplicate": 0, "failed": 2 }));
    for (index, listed) in [(0, &phone_only), (2, &every)] {
        assert_eq!(
            body["results"][index],
            json!({ "index": index, "status": "failed", "contact": listed, "error": "CONTACT_SUPPRESSED" }),
            "{body}"
        );
    }
    assert_eq!(body["results"][1]["status"], "created");
    assert_eq!(body["results"][3]["status"], "created");
    assert_eq!(h.contacts(id).await.len(), 2, "nothing of a suppressed item is stored");

    // On a WhatsApp campaign the phone entry does not count; the whatsapp and all ones do.
    let whatsapp = h.create_integration_with(&h.agent, "whatsapp", "simulator", json!({})).await;
    let body = merge_whatsapp(&h, &whatsapp);
    let campaign = h.create_campaign(body).await["id"].as_i64().expect("id");
    let items: Vec<Value> = [&phone_only, &whatsapp_only, &every].iter().map(|n| json!({ "contact": n })).collect();
    let (_, body) = h.post(&format!("/campaigns/{campaign}/contacts"), json!({ "contacts": items })).await;
    let statuses: Vec<&str> = (0..3).map(|i| body["results"][i]["status"].as_str().expect("status")).collect();
    assert_eq!(statuses, ["created", "failed", "failed"], "{body}");
}

fn merge_whatsapp(h: &Harness, integration: &Value) -> Value {
    json!({ "name": "Promo", "agent_id": h.agent, "integration_id": integration["id"], "integration_type": "whatsapp",
        "template": "promo_june_v1" })
}

#[tokio::test]
async fn a_number_listed_after_it_was_added_is_neither_updated_nor_attempted() {
    let Some(h) = Harness::webhook("phone_call").await else { return };
    let id = h.campaign(json!({})).await;
    let c = h.add(id, numbers(3)).await;
    suppress(&h, &[(&number(1), "phone_call")]).await;

    // `if_duplicate: update` of a listed number is refused like an add: the contact keeps its name.
    let (_, body) = h
        .post(
            &format!("/campaigns/{id}/contacts"),
            json!({ "contacts": [{ "contact": number(1), "name": "New" }], "if_duplicate": "update" }),
        )
        .await;
    assert_eq!(body["results"][0]["error"], "CONTACT_SUPPRESSED", "{body}");
    assert_eq!(h.contact(id, c[1]).await["name"], "Contact 1");

    h.action(id, "activate").await;
    assert_eq!(h.claims().await, 2, "the listed contact is not attempted");
    assert_eq!(sent_to(&h, &number(1)).await, 0);
    assert_eq!(h.received().await.len(), 2);
    let listed = h.contact(id, c[1]).await;
    assert_eq!((&listed["status"], &listed["failed_reason"], &listed["call_count"]), (&json!("failed"), &json!("suppressed"), &json!(0)));
    assert_eq!(h.contact(id, c[0]).await["failed_reason"], Value::Null);
    assert_eq!(h.calls(id, "").await["total_count"], 2, "no attempt was recorded for it");

    // Removing the entry does not revive it.
    let (status, body) = h.call(Method::DELETE, &format!("/dnc/{}?channel=phone_call", number(1).replace('+', "%2B")), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    h.advance_mins(60);
    assert_eq!(h.claims().await, 0);
    assert_eq!(h.contact(id, c[1]).await["status"], "failed");
    assert_eq!(h.detail(id).await["analytics"]["contactsFailed"], 1);
}

#[tokio::test]
async fn a_retrying_contact_listed_while_it_waits_fails_at_its_retry() {
    let Some(h) = Harness::webhook("phone_call").await else { return };
    let (id, c) = h.start(json!({}), 2).await;
    assert_eq!(h.claims().await, 2);
    h.finish(id, c[0], "busy", json!({})).await;
    h.finish(id, c[1], "busy", json!({})).await;
    assert_eq!(h.contact(id, c[0]).await["status"], "retrying");
    suppress(&h, &[(&number(0), "all")]).await;

    h.advance_mins(30);
    assert_eq!(h.claims().await, 1, "only the contact not listed is retried");
    let listed = h.contact(id, c[0]).await;
    assert_eq!((&listed["status"], &listed["failed_reason"], &listed["call_count"]), (&json!("failed"), &json!("suppressed"), &json!(1)));
    assert_eq!(sent_to(&h, &number(0)).await, 1, "only its first call");
}

#[tokio::test]
async fn a_number_listed_between_its_claim_and_its_hand_off_is_closed_unsent() {
    // The provider throttles the first hand-off: the attempt is claimed and waits to be re-sent.
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(503)).up_to_n_times(1).with_priority(1).mount(&server).await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).with_priority(2).mount(&server).await;
    let Some(h) = Harness::new(retry_settings(30, 1), "phone_call", Provider::Webhook(server)).await else { return };
    let (id, c) = h.start(json!({}), 1).await;
    assert_eq!(h.claims().await, 1);
    assert_eq!(h.received().await.len(), 1);
    suppress(&h, &[(&number(0), "phone_call")]).await;

    h.clock.advance(SignedDuration::from_secs(1));
    h.settle().await;
    assert_eq!(h.received().await.len(), 1, "the re-send never goes out");
    let contact = h.contact(id, c[0]).await;
    assert_eq!((&contact["status"], &contact["failed_reason"]), (&json!("failed"), &json!("suppressed")));
    let call = &h.calls(id, "").await["calls"][0];
    assert_eq!((&call["status"], &call["ended_reason"]), (&json!("failed"), &json!("suppressed")));
    h.settle().await;
    assert_eq!(h.status(id).await, "finished");
}

#[tokio::test]
async fn a_later_cycle_does_not_revive_a_suppressed_contact() {
    let Some(h) = Harness::simulator("phone_call", json!({ "answer_rate": 0.0 })).await else { return };
    let id = h.campaign(json!({ "cycles": { "enabled": true, "mode": "cooldown", "cooldown_minutes": 10, "max_iterations": 2 } })).await;
    let c = h.add(id, numbers(2)).await;
    suppress(&h, &[(&number(0), "all")]).await;
    h.action(id, "activate").await;
    for _ in 0..6 {
        h.settle().await;
        h.advance_mins(31);
    }
    let listed = h.contact(id, c[0]).await;
    assert_eq!((&listed["status"], &listed["failed_reason"], &listed["call_count"]), (&json!("failed"), &json!("suppressed"), &json!(0)));
    assert!(h.contact(id, c[1]).await["call_count"].as_i64().expect("count") >= 2, "the other contact ran both cycles");
}
