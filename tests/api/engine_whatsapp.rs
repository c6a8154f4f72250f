//! WhatsApp campaigns (§5.5, §5.7): the funnel from provider events (forward only, `failed`
//! only before delivery), `template_alt` on a retry after a failed send, and the simulator.

use serde_json::{Value, json};

use super::engine::{Harness, Provider, accepting_provider, numbers, rate, retry_settings};

#[tokio::test]
async fn the_funnel_follows_events_and_never_moves_back() {
    let Some(h) = Harness::new(retry_settings(30, 0), "whatsapp", Provider::Webhook(accepting_provider().await)).await else { return };
    let (id, c) = h.start(json!({}), 7).await;
    assert_eq!(h.claims().await, 7);
    let a: Vec<String> = {
        let messages = h.attempts(id).await;
        messages.iter().map(|m| m["id"].as_str().expect("id").to_owned()).collect()
    };
    assert!(a.iter().all(|id| id.starts_with("msg_")), "{a:?}");
    for (i, status, extra) in [
        (0, "sent", json!({})),
        (1, "sent", json!({})),
        (1, "delivered", json!({})),
        (1, "failed", json!({})), // after delivery: ignored
        (2, "read", json!({})),
        (2, "delivered", json!({})), // late: ignored
        (2, "sent", json!({})),      // late: ignored
        (3, "sent", json!({})),
        (3, "delivered", json!({})),
        (3, "read", json!({})),
        (3, "accepted", json!({})),
        (4, "accepted", json!({ "converted": true })),
        (5, "read", json!({})),
        (5, "rejected", json!({})),
        (5, "accepted", json!({})), // the answer is already in
        (6, "failed", json!({ "ended_reason": "undeliverable" })),
    ] {
        h.event_ok(&a[i], status, extra).await;
    }
    let (code, body) = h.event(&a[0], "ended", json!({})).await;
    super::helpers::assert_error(code, &body, 400, "INVALID_REQUEST", Some("status"));
    h.settle().await;

    let statuses = h.statuses(id).await;
    assert_eq!(statuses, ["sent", "delivered", "read", "accepted", "converted", "rejected", "failed"]);
    let campaign = h.detail(id).await;
    assert_eq!(campaign["status"], "finished");
    let count = |set: &[&str]| statuses.iter().filter(|s| set.contains(&s.as_str())).count();
    let accepted = count(&["accepted", "converted"]);
    let read = accepted + count(&["read", "rejected"]);
    let delivered = read + count(&["delivered"]);
    let sent = delivered + count(&["sent"]);
    let (failed, rejected, converted, total) = (count(&["failed"]), count(&["rejected"]), count(&["converted"]), c.len());
    assert_eq!((sent, delivered, read, accepted, rejected, failed, converted), (6, 5, 4, 2, 1, 1, 1));
    assert_eq!(
        campaign["analytics"],
        json!({ "contacts": 7, "messages": 7, "sent": sent, "delivered": delivered, "read": read, "accepted": accepted,
            "rejected": rejected, "failed": failed, "converted": converted,
            "sentRate": rate(sent, total), "deliveredRate": rate(delivered, total), "readRate": rate(read, total),
            "acceptedRate": rate(accepted, total), "rejectedRate": rate(rejected, total), "failedRate": rate(failed, total),
            "convertedRate": rate(converted, total) })
    );
    assert_eq!(campaign["analytics"]["sentRate"], 0.8571);

    let messages = h.attempts(id).await;
    let shown: Vec<&str> = messages.iter().map(|m| m["status"].as_str().expect("status")).collect();
    assert_eq!(shown, ["sent", "delivered", "read", "read", "read", "read", "failed"], "accepted and rejected show as read");
    assert!(messages.iter().all(|m| m["template"] == "promo_june_v1"));
    assert!(messages[0]["sent_at"].is_string() && messages[0]["delivered_at"].is_null() && messages[0]["read_at"].is_null());
    assert!(messages[1]["delivered_at"].is_string() && messages[1]["read_at"].is_null());
    assert!(messages[3]["sent_at"].is_string() && messages[3]["delivered_at"].is_string() && messages[3]["read_at"].is_string());
    assert_eq!(messages[6]["sent_at"], json!(null));
    assert_eq!(h.contact(id, c[1]).await["failed_retries"], 0, "a failure after delivery is no failure");
}

#[tokio::test]
async fn a_failed_send_is_retried_with_template_alt() {
    let Some(h) = Harness::webhook("whatsapp").await else { return };
    let (id, c) = h.start(json!({ "template": "promo_v1", "template_alt": "promo_v1_alt" }), 1).await;
    assert_eq!(h.claims().await, 1);
    let first = h.attempt_of(id, c[0]).await;
    h.event_ok(&first, "failed", json!({})).await;
    let contact = h.contact(id, c[0]).await;
    assert_eq!((&contact["status"], &contact["failed_retries"]), (&json!("retrying"), &json!(1)));
    h.advance_mins(29);
    assert_eq!(h.claims().await, 0);
    h.advance_mins(1);
    assert_eq!(h.claims().await, 1);

    let bodies: Vec<Value> = h.received().await.iter().map(|r| r.body_json().expect("json")).collect();
    assert_eq!(bodies.len(), 2);
    assert_eq!((&bodies[0]["template"], &bodies[1]["template"]), (&json!("promo_v1"), &json!("promo_v1_alt")));
    assert_eq!(bodies[0]["channel"], "whatsapp");
    assert!(bodies[0].get("first_message").is_none(), "{:#}", bodies[0]);
    let messages = h.messages(id, "").await;
    let items: Vec<(Value, Value)> =
        messages["messages"].as_array().expect("messages").iter().map(|m| (m["status"].clone(), m["template"].clone())).collect();
    assert_eq!(items, [(json!("failed"), json!("promo_v1")), (json!("queued"), json!("promo_v1_alt"))]);

    let second = h.attempt_of(id, c[0]).await;
    h.event_ok(&second, "sent", json!({})).await;
    h.event_ok(&second, "delivered", json!({})).await;
    h.settle().await;
    let campaign = h.detail(id).await;
    assert_eq!(campaign["status"], "finished");
    let a = &campaign["analytics"];
    assert_eq!((&a["messages"], &a["sent"], &a["delivered"], &a["failed"]), (&json!(2), &json!(1), &json!(1), &json!(0)));

    // Without template_alt the retry keeps the template.
    let (plain, pc) = h.start(json!({ "template": "promo_v2" }), 1).await;
    assert_eq!(h.claims().await, 1);
    let attempt = h.attempt_of(plain, pc[0]).await;
    h.event_ok(&attempt, "failed", json!({})).await;
    h.advance_mins(30);
    assert_eq!(h.claims().await, 1);
    let templates: Vec<Value> =
        h.messages(plain, "").await["messages"].as_array().expect("messages").iter().map(|m| m["template"].clone()).collect();
    assert_eq!(templates, [json!("promo_v2"), json!("promo_v2")]);
}

#[tokio::test]
async fn the_simulator_drives_the_funnel_through_the_event_path() {
    let Some(h) =
        Harness::simulator("whatsapp", json!({ "delivery_rate": 1.0, "read_rate": 1.0, "accept_rate": 1.0, "convert_rate": 0.0 })).await
    else {
        return;
    };
    let (id, _) = h.start(json!({}), 4).await;
    assert_eq!(h.claims().await, 4);
    let campaign = h.detail(id).await;
    assert_eq!(campaign["status"], "finished");
    let a = &campaign["analytics"];
    assert_eq!(
        (&a["messages"], &a["sent"], &a["delivered"], &a["read"], &a["accepted"]),
        (&json!(4), &json!(4), &json!(4), &json!(4), &json!(4))
    );
    assert_eq!((&a["rejected"], &a["failed"], &a["acceptedRate"]), (&json!(0), &json!(0), &json!(1.0)));
    assert_eq!(h.statuses(id).await, ["accepted"; 4]);
    let messages = h.messages(id, "?status=read").await;
    assert_eq!(messages["total_count"], 4);
    let m = &messages["messages"][0];
    assert!(m["sent_at"].is_string() && m["delivered_at"].is_string() && m["read_at"].is_string(), "{m:#}");

    // Never delivered: a failed send, retried once, then failed.
    let undelivered = h.create_integration_with(&h.agent, "whatsapp", "simulator", json!({ "delivery_rate": 0.0 })).await;
    let body = h.campaign_body(json!({ "integration_id": undelivered["id"] }));
    let other = h.create_campaign(body).await["id"].as_i64().expect("id");
    h.add(other, numbers(2)).await;
    h.action(other, "activate").await;
    assert_eq!(h.claims().await, 2);
    assert_eq!(h.statuses(other).await, ["retrying", "retrying"]);
    h.advance_mins(30);
    assert_eq!(h.claims().await, 2);
    let campaign = h.detail(other).await;
    assert_eq!(campaign["status"], "finished");
    let a = &campaign["analytics"];
    assert_eq!((&a["messages"], &a["sent"], &a["failed"], &a["failedRate"]), (&json!(4), &json!(0), &json!(2), &json!(1.0)));
    assert_eq!(h.messages(other, "?status=failed").await["total_count"], 4);
}

#[tokio::test]
async fn a_failure_reported_after_sent_but_before_delivery_is_retried() {
    let Some(h) = Harness::webhook("whatsapp").await else { return };
    let (id, c) = h.start(json!({ "template_alt": "promo_june_alt" }), 2).await;
    assert_eq!(h.claims().await, 2);
    let first = h.attempt_of(id, c[0]).await;
    h.event_ok(&first, "sent", json!({})).await;
    assert_eq!(h.contact(id, c[0]).await["status"], "sent");
    // Sent, then not deliverable: a failed send (failed counts until delivery).
    h.event_ok(&first, "failed", json!({ "ended_reason": "undeliverable" })).await;
    assert_eq!(h.messages(id, "?status=failed").await["total_count"], 1);
    let contact = h.contact(id, c[0]).await;
    assert_eq!((&contact["status"], &contact["failed_retries"]), (&json!("retrying"), &json!(1)), "{contact:#}");
    h.advance_mins(30);
    assert_eq!(h.claims().await, 1, "the failed send is retried");
    let bodies: Vec<Value> = h.received().await.iter().map(|r| r.body_json().expect("json")).collect();
    assert_eq!(bodies.last().expect("retry")["template"], "promo_june_alt");
}
