//! Iterations and cycles (§5.5, §2.6, §2.8): cooldown mode with `filter_statuses` and
//! `filter_tags`, scheduled mode, `max_iterations`, activate and resume out of a cooldown, a
//! cycle campaign with nobody eligible, and contacts added to a running iteration.

use jiff::SignedDuration;
use serde_json::{Value, json};

use super::engine::{Harness, Provider, accepting_provider, numbers, numbers_from, retry_settings};
use super::helpers::{assert_error, start_time};

fn cycles(extra: Value) -> Value {
    super::helpers::merge(json!({ "enabled": true, "mode": "cooldown", "max_iterations": 3, "cooldown_minutes": 30 }), extra)
}

fn call_counts(contacts: &[Value]) -> Vec<i64> {
    contacts.iter().map(|c| c["call_count"].as_i64().expect("call_count")).collect()
}

#[tokio::test]
async fn cooldown_cycles_requeue_only_eligible_contacts_until_max_iterations() {
    // No failed retries: a failed call is final for the iteration.
    let Some(h) = Harness::new(retry_settings(30, 0), "phone_call", Provider::Webhook(accepting_provider().await)).await else { return };
    let id =
        h.campaign(json!({ "retries": 1, "cycles": cycles(json!({ "filter_statuses": ["answered"], "filter_tags": ["dnc"] })) })).await;
    let mut contacts = numbers(6);
    contacts[4]["tags"] = json!(["dnc"]);
    let c = h.add(id, contacts).await;
    let activated = h.action(id, "activate").await;
    assert_eq!(activated["cycles"]["current_iteration"], 1);
    assert_eq!(h.claims().await, 6);

    h.finish(id, c[0], "ended", json!({ "answered_by": "human" })).await; // answered: filtered by status
    h.finish(id, c[1], "ended", json!({ "answered_by": "human", "converted": true })).await; // converted: never again
    h.finish(id, c[2], "ended", json!({ "answered_by": "machine" })).await; // voicemail retry
    h.finish(id, c[3], "no-answer", json!({})).await; // failed: eligible
    h.finish(id, c[4], "no-answer", json!({})).await; // failed, tagged dnc when added
    h.finish(id, c[5], "busy", json!({ "tags": ["dnc"] })).await; // failed, tagged dnc by the event
    h.settle().await;
    assert_eq!(h.status(id).await, "active", "a retry is pending");
    h.advance_mins(30);
    assert_eq!(h.claims().await, 1);
    let retried = h.contact(id, c[2]).await;
    assert_eq!((&retried["retries"], &retried["call_count"]), (&json!(1), &json!(2)));
    h.finish(id, c[2], "ended", json!({ "answered_by": "machine" })).await; // voicemail: eligible
    h.settle().await;

    let end_of_first = start_time() + SignedDuration::from_mins(30);
    let campaign = h.detail(id).await;
    assert_eq!(campaign["status"], "cooldown", "{campaign:#}");
    assert_eq!(campaign["cycles"]["current_iteration"], 1);
    assert_eq!(campaign["cycles"]["next_cycle_at"], "2026-06-08T19:00:00Z");
    assert_eq!(campaign["ended_at"], json!(null));
    assert_eq!(h.statuses(id).await, ["answered", "converted", "voicemail", "failed", "failed", "failed"]);

    h.clock.set(end_of_first + SignedDuration::from_mins(29));
    let report = h.settle().await;
    assert_eq!((report.iterations, report.claimed), (0, 0), "cooldown not over");
    assert_eq!(h.status(id).await, "cooldown");

    h.clock.set(end_of_first + SignedDuration::from_mins(30));
    let report = h.settle().await;
    assert_eq!(report.claimed, 2, "only the voicemail and the untagged failed contact come back");
    let campaign = h.detail(id).await;
    assert_eq!((&campaign["status"], &campaign["cycles"]["current_iteration"]), (&json!("active"), &json!(2)));
    assert_eq!(campaign["cycles"]["last_iteration_at"], "2026-06-08T19:00:00Z");
    assert_eq!(campaign["cycles"]["next_cycle_at"], json!(null));
    let contacts = h.contacts(id).await;
    assert_eq!(h.statuses(id).await, ["answered", "converted", "sending", "sending", "failed", "failed"]);
    assert_eq!(call_counts(&contacts), [1, 1, 3, 2, 1, 1]);
    assert_eq!(contacts[2]["retries"], 0, "retry counters reset for the new iteration");
    assert_eq!(contacts[5]["tags"], json!(["dnc"]));

    h.finish(id, c[2], "ended", json!({ "answered_by": "human" })).await; // answered: filtered now
    h.finish(id, c[3], "busy", json!({})).await;
    h.settle().await;
    let campaign = h.detail(id).await;
    assert_eq!((&campaign["status"], &campaign["cycles"]["next_cycle_at"]), (&json!("cooldown"), &json!("2026-06-08T19:30:00Z")));

    h.advance_mins(30);
    assert_eq!(h.claims().await, 1, "third iteration: only the failed contact");
    h.finish(id, c[3], "no-answer", json!({})).await;
    h.settle().await;
    let campaign = h.detail(id).await;
    assert_eq!(campaign["status"], "finished", "max_iterations reached although a contact is still eligible");
    assert_eq!((&campaign["cycles"]["current_iteration"], &campaign["ended_at"]), (&json!(3), &json!("2026-06-08T19:30:00Z")));
    assert_eq!(campaign["cycles"]["next_cycle_at"], json!(null));
    let contacts = h.contacts(id).await;
    assert_eq!(call_counts(&contacts), [1, 1, 3, 3, 1, 1]);
    assert_eq!(campaign["analytics"]["calls"], 10);
    let iterations: Vec<i64> =
        h.received().await.iter().map(|r| r.body_json::<Value>().expect("json")["iteration"].as_i64().expect("iteration")).collect();
    assert_eq!(iterations, [1, 1, 1, 1, 1, 1, 1, 2, 2, 3]);
    h.advance_mins(120);
    assert_eq!(h.claims().await, 0);
}

#[tokio::test]
async fn scheduled_cycles_start_at_the_next_opening_of_the_cycle_schedule() {
    let Some(h) = Harness::new(retry_settings(30, 0), "phone_call", Provider::Simulator(json!({ "answer_rate": 0.0 }))).await else {
        return;
    };
    let wednesday = json!({ "wed": { "startTime": "10:00", "stopTime": "12:00" } });
    let scheduled =
        |extra: Value| cycles(super::helpers::merge(json!({ "mode": "scheduled", "max_iterations": 2, "schedule": wednesday }), extra));
    let (next_wed, _) = h.start(json!({ "cycles": scheduled(json!({})) }), 1).await;
    let (later, _) = h.start(json!({ "cycles": scheduled(json!({ "schedule_start_date": "2026-06-15" })) }), 1).await;
    let (none_left, _) = h.start(json!({ "cycles": scheduled(json!({ "schedule_end_date": "2026-06-09" })) }), 1).await;
    assert_eq!(h.claims().await, 3);

    let campaign = h.detail(next_wed).await;
    assert_eq!(campaign["status"], "cooldown");
    assert_eq!(campaign["cycles"]["next_cycle_at"], "2026-06-10T16:00:00Z", "Wednesday 10:00 in Mexico City");
    let campaign = h.detail(later).await;
    assert_eq!(campaign["cycles"]["next_cycle_at"], "2026-06-17T16:00:00Z", "the first Wednesday on or after the start date");
    let campaign = h.detail(none_left).await;
    assert_eq!((&campaign["status"], &campaign["cycles"]["current_iteration"]), (&json!("finished"), &json!(1)), "no opening left");

    h.clock.set("2026-06-10T15:59:00Z".parse().expect("ts"));
    assert_eq!(h.settle().await.iterations, 0);
    assert_eq!(h.status(next_wed).await, "cooldown");
    h.clock.set("2026-06-10T16:00:00Z".parse().expect("ts"));
    assert_eq!(h.claims().await, 1);
    let campaign = h.detail(next_wed).await;
    assert_eq!(campaign["status"], "finished", "second and last iteration done");
    assert_eq!(campaign["cycles"]["current_iteration"], 2);
    assert_eq!(campaign["cycles"]["last_iteration_at"], "2026-06-10T16:00:00Z");
    assert_eq!(campaign["ended_at"], "2026-06-10T16:00:00Z");
    assert_eq!(h.contacts(next_wed).await[0]["last_call_at"], "2026-06-10 10:00:00");
    assert_eq!(h.status(later).await, "cooldown");
}

#[tokio::test]
async fn an_iteration_ending_inside_a_cycle_window_waits_for_the_next_opening() {
    let Some(h) = Harness::new(retry_settings(30, 0), "phone_call", Provider::Simulator(json!({ "answer_rate": 0.0 }))).await else {
        return;
    };
    let day = json!({ "startTime": "09:00", "stopTime": "18:00" });
    let weekdays = json!({ "mon": day, "tue": day, "wed": day, "thu": day, "fri": day });
    let (id, c) = h.start(json!({ "cycles": cycles(json!({ "mode": "scheduled", "schedule": weekdays })) }), 1).await;
    // The first iteration ends on Monday 12:00 local, inside Monday's 09:00–18:00 cycle window.
    assert_eq!(h.claims().await, 1);
    let campaign = h.detail(id).await;
    assert_eq!(campaign["status"], "cooldown", "{campaign:#}");
    assert_eq!(campaign["cycles"]["next_cycle_at"], "2026-06-09T15:00:00Z", "Tuesday 09:00 local, the next time the window opens");
    assert_eq!(h.contact(id, c[0]).await["call_count"], 1, "not called again in the window it was just called in");
}

#[tokio::test]
async fn activate_or_resume_out_of_a_cooldown_starts_the_next_iteration_at_once() {
    let Some(h) = Harness::new(retry_settings(30, 0), "phone_call", Provider::Simulator(json!({ "answer_rate": 0.0 }))).await else {
        return;
    };
    let (id, c) = h.start(json!({ "cycles": cycles(json!({ "cooldown_minutes": 60 })) }), 1).await;
    assert_eq!(h.claims().await, 1);
    assert_eq!(h.detail(id).await["cycles"]["next_cycle_at"], "2026-06-08T19:00:00Z");
    h.advance_mins(5);

    let campaign = h.action(id, "activate").await;
    assert_eq!((&campaign["status"], &campaign["cycles"]["current_iteration"]), (&json!("active"), &json!(2)));
    assert_eq!(campaign["cycles"]["last_iteration_at"], "2026-06-08T18:05:00Z");
    assert_eq!(campaign["cycles"]["next_cycle_at"], json!(null));
    assert_eq!(h.contact(id, c[0]).await["status"], "queue");
    assert_eq!(h.claims().await, 1);
    let campaign = h.detail(id).await;
    assert_eq!((&campaign["status"], &campaign["cycles"]["next_cycle_at"]), (&json!("cooldown"), &json!("2026-06-08T19:05:00Z")));

    // Paused in a cooldown: the cooldown's end starts nothing; resume starts the next iteration.
    assert_eq!(h.action(id, "pause").await["status"], "inactive");
    h.advance_mins(120);
    assert_eq!(h.settle().await, Default::default());
    assert_eq!(h.contact(id, c[0]).await["call_count"], 2);
    let campaign = h.action(id, "resume").await;
    assert_eq!((&campaign["status"], &campaign["cycles"]["current_iteration"]), (&json!("active"), &json!(3)));
    assert_eq!(h.claims().await, 1);
    let campaign = h.detail(id).await;
    assert_eq!(campaign["status"], "finished", "three iterations of max 3");
    assert_eq!(h.contact(id, c[0]).await["call_count"], 3);

    let (status, body) = h.post(&format!("/campaigns/{id}/activate"), json!({})).await;
    assert_error(status, &body, 409, "INVALID_STATUS_TRANSITION", None);
    assert_eq!((&body["current_status"], &body["valid_targets"]), (&json!("finished"), &json!(["archive"])));
}

#[tokio::test]
async fn a_cycle_campaign_with_nobody_eligible_finishes_after_its_first_iteration() {
    let Some(h) = Harness::simulator("phone_call", json!({ "answer_rate": 1.0, "machine_rate": 0.0, "convert_rate": 0.0 })).await else {
        return;
    };
    let (filtered, _) = h.start(json!({ "cycles": cycles(json!({ "filter_statuses": ["answered"] })) }), 2).await;
    let (open, _) = h.start(json!({ "cycles": cycles(json!({})) }), 2).await;
    assert_eq!(h.claims().await, 4);
    let campaign = h.detail(filtered).await;
    assert_eq!((&campaign["status"], &campaign["cycles"]["current_iteration"]), (&json!("finished"), &json!(1)));
    assert_eq!(campaign["ended_at"], "2026-06-08T18:00:00Z");
    // Without the filter, answered contacts are eligible again.
    let campaign = h.detail(open).await;
    assert_eq!((&campaign["status"], &campaign["cycles"]["next_cycle_at"]), (&json!("cooldown"), &json!("2026-06-08T18:30:00Z")));
    h.advance_mins(30);
    assert_eq!(h.claims().await, 2);
    assert_eq!(h.detail(open).await["cycles"]["current_iteration"], 2);
}

#[tokio::test]
async fn contacts_added_to_an_active_campaign_join_the_current_iteration() {
    let Some(h) = Harness::webhook("phone_call").await else { return };
    let (id, c) = h.start(json!({ "cycles": cycles(json!({})) }), 1).await;
    assert_eq!(h.claims().await, 1);
    let added = h.add(id, numbers_from(1, 2)).await;
    assert_eq!(h.claims().await, 2);
    assert_eq!(h.detail(id).await["cycles"]["current_iteration"], 1);
    let iterations: Vec<Value> = h.received().await.iter().map(|r| r.body_json::<Value>().expect("json")["iteration"].clone()).collect();
    assert_eq!(iterations, [json!(1), json!(1), json!(1)]);
    for contact in [c[0], added[0], added[1]] {
        h.finish(id, contact, "ended", json!({ "answered_by": "human" })).await;
    }
    h.settle().await;
    let campaign = h.detail(id).await;
    assert_eq!((&campaign["status"], &campaign["cycles"]["current_iteration"]), (&json!("cooldown"), &json!(1)));
    assert_eq!(campaign["analytics"]["contactsAnswered"], 3);
}

#[tokio::test]
async fn a_zero_minute_cooldown_runs_the_iterations_back_to_back() {
    let Some(h) = Harness::simulator("phone_call", json!({ "answer_rate": 1.0, "machine_rate": 0.0, "convert_rate": 0.0 })).await else {
        return;
    };
    let (id, c) = h.start(json!({ "cycles": cycles(json!({ "cooldown_minutes": 0, "max_iterations": 3 })) }), 1).await;
    let report = h.settle().await;
    assert_eq!(report.claimed, 3, "three iterations in one settle");
    let campaign = h.detail(id).await;
    assert_eq!((&campaign["status"], &campaign["cycles"]["current_iteration"]), (&json!("finished"), &json!(3)));
    assert_eq!(campaign["cycles"]["last_iteration_at"], "2026-06-08T18:00:00Z");
    assert_eq!(h.contact(id, c[0]).await["call_count"], 3);
    assert_eq!(campaign["analytics"]["calls"], 3);
}
