//! Dispatch (§5.1, §5.2, §2.8): the scheduling window in the campaign's timezone (weekdays, a
//! window past midnight, another zone), `message_limit` over a rolling 24 hours,
//! `concurrency_limit`, pause, resume and archive, and an active campaign without contacts.

use jiff::SignedDuration;
use reqwest::StatusCode;
use serde_json::json;

use super::engine::{Harness, always_open, local, numbers, numbers_from};
use super::helpers::{assert_error, start_time};

/// Every call answered by a human, not converted.
fn answered() -> serde_json::Value {
    json!({ "answer_rate": 1.0, "machine_rate": 0.0, "convert_rate": 0.0 })
}

#[tokio::test]
async fn nothing_is_dispatched_outside_the_default_weekday_window() {
    let Some(h) = Harness::simulator("phone_call", answered()).await else { return };
    let mut body = h.campaign_body(json!({}));
    body.as_object_mut().expect("object").remove("scheduling");
    let id = h.create_campaign(body).await["id"].as_i64().expect("id");
    let contacts = h.add(id, numbers(3)).await;

    // Monday 18:00 local: the window (09:00–18:00) has just closed.
    h.clock.set(local("2026-06-08T18:00"));
    h.action(id, "activate").await;
    assert_eq!(h.claims().await, 0);
    for closed in ["2026-06-08T23:59", "2026-06-13T12:00", "2026-06-14T12:00", "2026-06-15T08:59"] {
        h.clock.set(local(closed));
        assert_eq!(h.claims().await, 0, "window closed at {closed} local");
    }
    assert_eq!(h.statuses(id).await, ["queue", "queue", "queue"]);
    assert_eq!(h.calls(id, "").await["total_count"], 0);

    // Monday 09:00 local: open.
    h.clock.set(local("2026-06-15T09:00"));
    assert_eq!(h.claims().await, 3);
    let contact = h.contact(id, contacts[0]).await;
    assert_eq!(
        (&contact["status"], &contact["call_count"], &contact["last_call_at"]),
        (&json!("answered"), &json!(1), &json!("2026-06-15 09:00:00"))
    );
    assert_eq!(h.status(id).await, "finished");
}

#[tokio::test]
async fn a_window_past_midnight_dispatches_until_its_stop_time_on_the_next_day() {
    let Some(h) = Harness::webhook("phone_call").await else { return };
    // Only Monday is active, 22:00 to 02:00 the next morning; one call at a time.
    let id = h.campaign(json!({ "scheduling": { "mon": { "startTime": "22:00", "stopTime": "02:00" } }, "concurrency_limit": 1 })).await;
    let contacts = h.add(id, numbers(4)).await;
    h.action(id, "activate").await; // Monday 12:00 local
    assert_eq!(h.claims().await, 0);
    h.clock.set(local("2026-06-08T21:59"));
    assert_eq!(h.claims().await, 0, "before the window opens");

    h.clock.set(local("2026-06-08T23:00"));
    assert_eq!(h.claims().await, 1, "Monday 23:00 is inside");
    h.finish(id, contacts[0], "ended", json!({ "answered_by": "human" })).await;

    h.clock.set(local("2026-06-09T01:30"));
    assert_eq!(h.claims().await, 1, "Tuesday 01:30 still belongs to Monday's window");
    h.finish(id, contacts[1], "ended", json!({ "answered_by": "human" })).await;

    for closed in ["2026-06-09T02:00", "2026-06-09T23:00", "2026-06-15T21:59"] {
        h.clock.set(local(closed));
        assert_eq!(h.claims().await, 0, "closed at {closed} local");
    }
    h.clock.set(local("2026-06-15T22:00"));
    assert_eq!(h.claims().await, 1, "next Monday 22:00 opens again");

    let last: Vec<_> = h.contacts(id).await.iter().map(|c| c["last_call_at"].clone()).collect();
    assert_eq!(last, [json!("2026-06-08 23:00:00"), json!("2026-06-09 01:30:00"), json!("2026-06-15 22:00:00"), json!(null)]);
    assert_eq!(h.statuses(id).await, ["answered", "answered", "sending", "queue"]);
}

#[tokio::test]
async fn the_window_and_last_call_at_follow_the_campaign_timezone() {
    let Some(h) = Harness::simulator("phone_call", answered()).await else { return };
    let mut body = h.campaign_body(json!({ "timezone": "Asia/Tokyo" }));
    body.as_object_mut().expect("object").remove("scheduling");
    let id = h.create_campaign(body).await["id"].as_i64().expect("id");
    let contacts = h.add(id, numbers(1)).await;
    h.action(id, "activate").await;
    // 2026-06-08T18:00Z is Tuesday 03:00 in Tokyo: closed, although it is Monday noon in Mexico City.
    assert_eq!(h.claims().await, 0);
    h.clock.set("2026-06-08T23:59:00Z".parse().expect("ts"));
    assert_eq!(h.claims().await, 0, "Tuesday 08:59 in Tokyo");
    h.clock.set("2026-06-09T00:00:00Z".parse().expect("ts"));
    assert_eq!(h.claims().await, 1, "Tuesday 09:00 in Tokyo");
    assert_eq!(h.contact(id, contacts[0]).await["last_call_at"], "2026-06-09 09:00:00");
}

#[tokio::test]
async fn message_limit_caps_the_attempts_started_in_any_rolling_24_hours() {
    let Some(h) = Harness::webhook("phone_call").await else { return };
    let t0 = start_time();
    let id = h.campaign(json!({ "message_limit": 3 })).await;
    let first = h.add(id, numbers(2)).await;
    h.action(id, "activate").await;
    assert_eq!(h.claims().await, 2, "two calls at T0");
    let more = h.add(id, numbers_from(2, 4)).await;
    for contact in &first {
        h.finish(id, *contact, "ended", json!({ "answered_by": "human" })).await;
    }

    h.clock.set(t0 + SignedDuration::from_hours(10));
    assert_eq!(h.claims().await, 1, "one left of the budget at T0+10h");
    h.finish(id, more[0], "ended", json!({ "answered_by": "human" })).await;
    h.advance_mins(1);
    assert_eq!(h.claims().await, 0, "budget spent");

    // T0's minute still counts up to T0+24h included (counted by whole minutes, conservatively).
    for mins in [23 * 60, 24 * 60 - 1, 24 * 60] {
        h.clock.set(t0 + SignedDuration::from_mins(mins));
        assert_eq!(h.claims().await, 0, "T0+{mins}min");
    }
    h.clock.set(t0 + SignedDuration::from_mins(24 * 60 + 1));
    assert_eq!(h.claims().await, 2, "T0's two calls left the window; the one at T0+10h still counts");
    assert_eq!(h.statuses(id).await, ["answered", "answered", "answered", "sending", "sending", "queue"]);
    h.clock.set(t0 + SignedDuration::from_mins(34 * 60));
    assert_eq!(h.claims().await, 0, "T0+10h's call counts until T0+34h included");
    h.clock.set(t0 + SignedDuration::from_mins(34 * 60 + 1));
    assert_eq!(h.claims().await, 1);
    assert_eq!(h.calls(id, "").await["total_count"], 6);
}

#[tokio::test]
async fn concurrency_limit_caps_the_calls_in_flight() {
    let Some(h) = Harness::webhook("phone_call").await else { return };
    let (id, contacts) = h.start(json!({ "concurrency_limit": 3 }), 5).await;
    assert_eq!(h.claims().await, 3);
    assert_eq!(h.claims().await, 0, "no slot left");
    h.advance_mins(10);
    assert_eq!(h.claims().await, 0, "still no slot 10 minutes later");
    assert_eq!(h.statuses(id).await, ["sending", "sending", "sending", "queue", "queue"]);
    assert_eq!(h.calls(id, "?status=in-progress").await["total_count"], 3);
    assert_eq!(h.received().await.len(), 3);

    // A ringing call is still in flight; a finished one frees its slot.
    let attempt = h.attempt_of(id, contacts[1]).await;
    h.event_ok(&attempt, "ringing", json!({})).await;
    assert_eq!(h.claims().await, 0);
    h.event_ok(&attempt, "ended", json!({ "answered_by": "human" })).await;
    assert_eq!(h.claims().await, 1, "one slot freed");
    assert_eq!(h.statuses(id).await, ["sending", "answered", "sending", "sending", "queue"]);
    assert_eq!(h.claims().await, 0);
    assert_eq!(h.received().await.len(), 4);
}

#[tokio::test]
async fn pause_and_archive_stop_dispatch_while_calls_in_flight_finish() {
    let Some(h) = Harness::webhook("phone_call").await else { return };
    let (id, contacts) = h.start(json!({ "concurrency_limit": 2 }), 5).await;
    assert_eq!(h.claims().await, 2);

    let paused = h.action(id, "pause").await;
    assert_eq!(paused["status"], "inactive");
    h.finish(id, contacts[0], "ended", json!({ "answered_by": "human" })).await;
    assert_eq!(h.contact(id, contacts[0]).await["status"], "answered", "an in-flight call finishes while paused");
    assert_eq!(h.claims().await, 0, "paused: nothing new although a slot is free");
    h.advance_mins(45);
    assert_eq!(h.claims().await, 0);
    assert_eq!(h.status(id).await, "inactive");

    assert_eq!(h.action(id, "resume").await["status"], "active");
    assert_eq!(h.claims().await, 1, "resumed: the free slot is used");
    assert_eq!(h.statuses(id).await, ["answered", "sending", "sending", "queue", "queue"]);

    let archived = h.action(id, "archive").await;
    assert_eq!((&archived["archived"], &archived["status"]), (&json!(true), &json!("active")));
    h.finish(id, contacts[1], "ended", json!({ "answered_by": "machine" })).await;
    assert_eq!(h.claims().await, 0, "archived: never dispatches");
    h.advance_mins(60);
    assert_eq!(h.claims().await, 0);
    assert_eq!(h.statuses(id).await, ["answered", "retrying", "sending", "queue", "queue"]);
    assert_eq!(h.received().await.len(), 3);

    // An archived campaign only takes `archive` (a no-op).
    assert_eq!(h.action(id, "archive").await["archived"], true);
    for action in ["pause", "resume", "activate"] {
        let (status, body) = h.post(&format!("/campaigns/{id}/{action}"), json!({})).await;
        assert_error(status, &body, 409, "INVALID_STATUS_TRANSITION", None);
        assert_eq!(body["valid_targets"], json!(["archive"]), "{body}");
    }
}

#[tokio::test]
async fn an_active_campaign_without_contacts_stays_active_until_contacts_come() {
    let Some(h) = Harness::simulator("phone_call", answered()).await else { return };
    let id = h.campaign(json!({})).await;
    assert_eq!(h.claims().await, 0, "a pending campaign is not run");
    let activated = h.action(id, "activate").await;
    assert_eq!(activated["status"], "active");
    h.settle().await;
    h.advance_mins(90);
    h.settle().await;
    let campaign = h.detail(id).await;
    assert_eq!((&campaign["status"], &campaign["analytics"]["contacts"]), (&json!("active"), &json!(0)));

    // A ready campaign is not dispatched before it is activated.
    let ready = h.campaign(json!({})).await;
    h.add(ready, numbers_from(100, 1)).await;
    assert_eq!(h.claims().await, 0);
    assert_eq!(h.status(ready).await, "ready");

    h.add(id, numbers(2)).await;
    assert_eq!(h.claims().await, 2);
    let campaign = h.detail(id).await;
    assert_eq!((&campaign["status"], &campaign["analytics"]["calls"]), (&json!("finished"), &json!(2)));
    assert_eq!(h.status(ready).await, "ready");
    let (status, _) = h.post(&format!("/campaigns/{id}/contacts"), json!({ "contacts": numbers_from(50, 1) })).await;
    assert_eq!(status, StatusCode::CONFLICT, "a finished campaign takes no contacts");
}

#[tokio::test]
async fn changes_to_a_running_campaign_apply_to_attempts_not_yet_started() {
    let Some(h) = Harness::webhook("phone_call").await else { return };
    let (id, c) = h.start(json!({ "concurrency_limit": 1 }), 5).await;
    assert_eq!(h.claims().await, 1);
    let (status, body) = h.patch(&format!("/campaigns/{id}"), json!({ "concurrency_limit": 3 })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(h.claims().await, 2, "room for two more");

    // Close the window (Saturday only): the call in flight finishes, nothing new starts.
    let saturday = json!({ "sat": { "startTime": "09:00", "stopTime": "18:00" } });
    let (status, body) = h.patch(&format!("/campaigns/{id}"), json!({ "scheduling": saturday })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    h.finish(id, c[0], "ended", json!({ "answered_by": "human" })).await;
    assert_eq!(h.claims().await, 0);
    let (status, body) = h.patch(&format!("/campaigns/{id}"), json!({ "scheduling": always_open(), "message_limit": 4 })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(h.claims().await, 1, "open again, but the new message_limit allows one more");
    assert_eq!(h.statuses(id).await, ["answered", "sending", "sending", "sending", "queue"]);
}
