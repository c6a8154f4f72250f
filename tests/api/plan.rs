//! The plan preview (§12.3): every remaining contact counted once, in `eligible_now` or under the
//! first reason that holds it, with no side effect.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::engine::{Harness, numbers};
use super::helpers::assert_error;

async fn plan(h: &Harness, id: i64) -> Value {
    let (status, body) = h.get(&format!("/campaigns/{id}/plan")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["success"], true);
    let plan = body["plan"].clone();
    let blocked: i64 = plan["blocked"].as_object().expect("blocked").values().map(|n| n.as_i64().expect("count")).sum();
    assert_eq!(plan["eligible_now"].as_i64().expect("eligible") + blocked, plan["remaining"].as_i64().expect("remaining"), "{plan}");
    plan
}

/// The blocked counts that are not zero.
fn blocked(plan: &Value) -> Value {
    let blocked = plan["blocked"].as_object().expect("blocked");
    Value::Object(blocked.iter().filter(|(_, n)| **n != 0).map(|(k, n)| (k.clone(), n.clone())).collect())
}

async fn suppress(h: &Harness, number: &Value) {
    let (status, body) = h.post("/dnc", json!({ "entries": [{ "contact": number, "channel": "all" }] })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn each_remaining_contact_is_counted_once_under_the_first_reason_that_holds_it() {
    let Some(h) = Harness::webhook("phone_call").await else { return };
    let id = h.campaign(json!({ "concurrency_limit": 2 })).await;
    let contacts = numbers(6);
    let c = h.add(id, contacts.clone()).await;

    // Before launch: what activating it would do.
    let before = plan(&h, id).await;
    assert_eq!((&before["remaining"], &before["eligible_now"]), (&json!(6), &json!(2)));
    assert_eq!(blocked(&before), json!({ "concurrency": 4 }));
    assert_eq!(before["by_status"]["queue"], 6);
    assert_eq!(before["by_status"]["answered"], 0, "every status is listed");
    assert_eq!(before["estimated_finish_at"], Value::Null, "no call has been timed yet");
    assert_eq!(before["at"], "2026-06-08T18:00:00Z");

    suppress(&h, &contacts[5]["contact"]).await;
    assert_eq!(blocked(&plan(&h, id).await), json!({ "suppressed": 1, "concurrency": 3 }));

    h.action(id, "activate").await;
    assert_eq!(h.claims().await, 2);
    let running = plan(&h, id).await;
    assert_eq!((&running["remaining"], &running["eligible_now"]), (&json!(4), &json!(0)));
    assert_eq!(blocked(&running), json!({ "suppressed": 1, "concurrency": 3 }), "both attempts in flight");
    assert_eq!(running["by_status"]["sending"], 2);

    let ended = json!({ "started_at": "2026-06-08T18:00:00Z", "ended_at": "2026-06-08T18:01:00Z" });
    h.finish(id, c[0], "busy", ended.clone()).await;
    h.finish(id, c[1], "ended", super::helpers::merge(ended, json!({ "answered_by": "human" }))).await;
    let after = plan(&h, id).await;
    assert_eq!((&after["remaining"], &after["eligible_now"]), (&json!(5), &json!(2)));
    assert_eq!(blocked(&after), json!({ "suppressed": 1, "retry_wait": 1, "concurrency": 1 }));
    assert_eq!((&after["by_status"]["retrying"], &after["by_status"]["answered"]), (&json!(1), &json!(1)));
    assert!(after["estimated_finish_at"].is_string(), "timed from the closed calls: {after}");

    // Nothing was changed by looking: the next tick claims what the plan said.
    let detail = h.detail(id).await;
    plan(&h, id).await;
    assert_eq!(h.detail(id).await, detail);
    assert_eq!(h.claims().await, 2);
    let listed = h.contact(id, c[5]).await;
    assert_eq!(listed["failed_reason"], Value::Null, "only a claim fails a listed contact");

    // Once the retry time is reached the retrying contact is a candidate like the others.
    h.advance_mins(30);
    let due = plan(&h, id).await;
    assert_eq!(due["blocked"]["retry_wait"], 0, "{due}");
}

#[tokio::test]
async fn a_closed_window_holds_every_contact_not_listed_and_the_plan_names_its_next_opening() {
    let Some(h) = Harness::webhook("phone_call").await else { return };
    // Mondays 09:00–17:00 in Mexico City; the test clock is Monday 12:00 there.
    let closed = json!({ "startTime": "09:00", "stopTime": "17:00", "active": false });
    let monday = json!({ "startTime": "09:00", "stopTime": "17:00", "active": true });
    let scheduling = json!({ "mon": monday, "tue": closed, "wed": closed, "thu": closed, "fri": closed, "sat": closed, "sun": closed });
    let id = h.campaign(json!({ "scheduling": scheduling, "timezone": "America/Mexico_City" })).await;
    let contacts = numbers(3);
    h.add(id, contacts.clone()).await;
    suppress(&h, &contacts[0]["contact"]).await;

    let open = plan(&h, id).await;
    assert_eq!(blocked(&open), json!({ "suppressed": 1 }));
    assert_eq!(open["eligible_now"], 2);
    assert_eq!(open["next_window_opens_at"], "2026-06-15T15:00:00Z", "the opening after the current window");

    h.advance_mins(5 * 60); // 17:00 there: closed
    let shut = plan(&h, id).await;
    assert_eq!((&shut["eligible_now"], blocked(&shut)), (&json!(0), json!({ "suppressed": 1, "window_closed": 2 })));
    assert_eq!(shut["next_window_opens_at"], "2026-06-15T15:00:00Z");
}

#[tokio::test]
async fn the_daily_message_limit_holds_the_contacts_beyond_it_when_it_is_the_tighter_cap() {
    let Some(h) = Harness::webhook("phone_call").await else { return };
    let id = h.campaign(json!({ "concurrency_limit": 10, "message_limit": 3 })).await;
    h.add(id, numbers(5)).await;
    let plan_before = plan(&h, id).await;
    assert_eq!((&plan_before["eligible_now"], blocked(&plan_before)), (&json!(3), json!({ "message_limit": 2 })));
    h.action(id, "activate").await;
    assert_eq!(h.claims().await, 3);
    let spent = plan(&h, id).await;
    assert_eq!((&spent["eligible_now"], blocked(&spent)), (&json!(0), json!({ "message_limit": 2 })));
}

#[tokio::test]
async fn contacts_added_between_cycles_wait_for_the_cooldown() {
    let Some(h) = Harness::simulator("phone_call", json!({ "answer_rate": 0.0 })).await else { return };
    let cycles = json!({ "enabled": true, "mode": "cooldown", "max_iterations": 2, "cooldown_minutes": 30 });
    let (id, _) = h.start(json!({ "cycles": cycles }), 2).await;
    for _ in 0..4 {
        h.settle().await;
        h.advance_mins(31);
        if h.status(id).await == "cooldown" {
            break;
        }
    }
    assert_eq!(h.status(id).await, "cooldown");
    h.add(id, super::engine::numbers_from(10, 2)).await;
    let cooling = plan(&h, id).await;
    assert_eq!((&cooling["remaining"], blocked(&cooling)), (&json!(2), json!({ "cycle_cooldown": 2 })));
}

#[tokio::test]
async fn only_the_organizations_own_campaigns_are_planned() {
    let Some(h) = Harness::webhook("phone_call").await else { return };
    let id = h.campaign(json!({})).await;
    let other = h.new_key("globex").await;
    let (status, body) = h.call_with_key(Method::GET, &format!("/campaigns/{id}/plan"), None, Some(&other)).await;
    assert_error(status, &body, 404, "NOT_FOUND", None);
    let (status, body) = h.get("/campaigns/999999/plan").await;
    assert_error(status, &body, 404, "NOT_FOUND", None);
    let (status, body) = h.get("/campaigns/abc/plan").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}
