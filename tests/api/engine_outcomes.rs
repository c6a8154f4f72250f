//! Phone outcomes, retries and analytics (§5.5, §5.7, §3.3): every outcome kind, voicemail and
//! failed retries spaced by the retry interval, the attempt timeout, and analytics recomputed
//! independently from the calls and contacts lists.

use std::collections::HashSet;

use jiff::SignedDuration;
use serde_json::{Value, json};

use super::engine::{Harness, Provider, accepting_provider, idempotency_key, rate, retry_settings};
use super::helpers::start_time;

#[tokio::test]
async fn a_campaign_runs_to_finished_with_analytics_matching_its_calls_and_contacts() {
    let Some(h) = Harness::webhook("phone_call").await else { return };
    let (id, c) = h.start(json!({ "retries": 1 }), 8).await;
    assert_eq!(h.claims().await, 8);

    let human = |billed: i64| json!({ "answered_by": "human", "duration": billed, "billed_duration": billed, "ended_by": "user" });
    h.finish(id, c[0], "ended", human(60)).await;
    h.finish(id, c[1], "ended", json!({ "answered_by": "human", "converted": true, "billed_duration": 30 })).await;
    h.finish(id, c[2], "ended", json!({ "answered_by": "unknown", "billed_duration": 5 })).await;
    h.finish(id, c[3], "ended", json!({ "answered_by": "machine", "billed_duration": 10 })).await;
    h.finish(id, c[4], "ended", json!({ "answered_by": "machine", "billed_duration": 10 })).await;
    h.finish(id, c[5], "no-answer", json!({})).await;
    h.finish(id, c[6], "failed", json!({ "ended_reason": "carrier_error" })).await;
    h.finish(id, c[7], "ended", json!({})).await; // ended with nobody answering: a failure
    assert_eq!(h.claims().await, 0, "retries wait for the retry interval");
    assert_eq!(h.statuses(id).await, ["answered", "converted", "answered", "retrying", "retrying", "retrying", "retrying", "retrying"]);
    let after_first: Vec<(i64, i64)> =
        h.contacts(id).await.iter().map(|c| (c["retries"].as_i64().unwrap(), c["failed_retries"].as_i64().unwrap())).collect();
    assert_eq!(after_first, [(0, 0), (0, 0), (0, 0), (1, 0), (1, 0), (0, 1), (0, 1), (0, 1)]);

    h.advance_mins(30);
    assert_eq!(h.claims().await, 5);
    h.finish(id, c[3], "ended", json!({ "answered_by": "machine", "billed_duration": 10 })).await;
    h.finish(id, c[4], "ended", human(60)).await;
    h.finish(id, c[5], "busy", json!({})).await;
    h.finish(id, c[6], "ended", json!({ "answered_by": "human", "converted": true })).await;
    h.finish(id, c[7], "no-answer", json!({})).await;
    h.settle().await;

    let campaign = h.detail(id).await;
    assert_eq!((&campaign["status"], &campaign["ended_at"]), (&json!("finished"), &json!("2026-06-08T18:30:00Z")), "{campaign:#}");
    let contacts = h.contacts(id).await;
    let statuses: Vec<&str> = contacts.iter().map(|c| c["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["answered", "converted", "answered", "voicemail", "answered", "failed", "converted", "failed"]);
    let counts: Vec<(i64, i64)> =
        contacts.iter().map(|c| (c["call_count"].as_i64().unwrap(), c["billed_duration"].as_i64().unwrap())).collect();
    assert_eq!(counts, [(1, 60), (1, 30), (1, 5), (2, 20), (2, 70), (2, 0), (2, 0), (2, 0)]);
    assert_eq!(contacts[0]["last_call_at"], "2026-06-08 12:00:00");
    assert_eq!(contacts[4]["last_call_at"], "2026-06-08 12:30:00");

    // Analytics recomputed from the calls list and the contacts list.
    let calls = h.calls(id, "?pageSize=100").await;
    let calls = calls["calls"].as_array().expect("calls");
    let finished: Vec<&Value> =
        calls.iter().filter(|c| ["ended", "busy", "no-answer", "failed"].contains(&c["status"].as_str().unwrap())).collect();
    let by = |who: &str| finished.iter().filter(|c| c["answered_by"] == who).count();
    let processed: HashSet<i64> = finished.iter().map(|c| c["contact"]["id"].as_i64().unwrap()).collect();
    let answered: HashSet<i64> =
        finished.iter().filter(|c| c["answered_by"] == "human").map(|c| c["contact"]["id"].as_i64().unwrap()).collect();
    let status_count = |s: &str| statuses.iter().filter(|x| **x == s).count();
    let (n, total) = (finished.len(), contacts.len());
    let expected = json!({
        "contacts": total, "calls": n,
        "callsAnsweredByHuman": by("human"), "callsAnsweredByHumanRate": rate(by("human"), n),
        "callsAnsweredByMachine": by("machine"), "callsAnsweredByMachineRate": rate(by("machine"), n),
        "callsAnsweredByUnknown": by("unknown"), "callsAnsweredByUnknownRate": rate(by("unknown"), n),
        "contactsProcessed": processed.len(), "contactsProcessedRate": rate(processed.len(), total),
        "contactsFailed": status_count("failed"), "contactsFailedRate": rate(status_count("failed"), total),
        "contactsVoicemail": status_count("voicemail"), "contactsVoicemailRate": rate(status_count("voicemail"), total),
        "contactsAnswered": answered.len(), "contactsAnsweredRate": rate(answered.len(), total),
        "contactsConverted": status_count("converted"), "contactsConvertedRate": rate(status_count("converted"), total),
    });
    assert_eq!(campaign["analytics"], expected);
    // And the figures themselves, worked out by hand.
    assert_eq!((n, by("human"), by("machine"), by("unknown")), (13, 4, 3, 1));
    assert_eq!(expected["callsAnsweredByHumanRate"], 0.3077);
    assert_eq!(expected["callsAnsweredByMachineRate"], 0.2308);
    assert_eq!(expected["callsAnsweredByUnknownRate"], 0.0769);
    assert_eq!(
        (processed.len(), answered.len(), status_count("failed"), status_count("voicemail"), status_count("converted")),
        (8, 4, 2, 1, 2)
    );
    assert_eq!(expected["contactsVoicemailRate"], 0.125);
}

#[tokio::test]
async fn voicemail_retries_wait_the_retry_interval_up_to_the_campaign_retries() {
    let Some(h) = Harness::simulator("phone_call", json!({ "answer_rate": 1.0, "machine_rate": 1.0 })).await else { return };
    let (id, c) = h.start(json!({ "retries": 2 }), 1).await;
    assert_eq!(h.claims().await, 1);
    let contact = h.contact(id, c[0]).await;
    assert_eq!((&contact["status"], &contact["retries"], &contact["call_count"]), (&json!("retrying"), &json!(1), &json!(1)));

    h.advance_mins(29);
    assert_eq!(h.claims().await, 0, "29 minutes: not yet");
    h.advance_mins(1);
    assert_eq!(h.claims().await, 1, "30 minutes: the retry");
    let contact = h.contact(id, c[0]).await;
    assert_eq!((&contact["status"], &contact["retries"], &contact["call_count"]), (&json!("retrying"), &json!(2), &json!(2)));
    assert_eq!(contact["last_call_at"], "2026-06-08 12:30:00");

    h.advance_mins(30);
    assert_eq!(h.claims().await, 1);
    let contact = h.contact(id, c[0]).await;
    assert_eq!((&contact["status"], &contact["retries"], &contact["call_count"]), (&json!("voicemail"), &json!(2), &json!(3)));
    let campaign = h.detail(id).await;
    assert_eq!(campaign["status"], "finished");
    let a = &campaign["analytics"];
    assert_eq!((&a["calls"], &a["callsAnsweredByMachine"], &a["callsAnsweredByMachineRate"]), (&json!(3), &json!(3), &json!(1.0)));
    assert_eq!((&a["contactsVoicemail"], &a["contactsProcessed"], &a["contactsAnswered"]), (&json!(1), &json!(1), &json!(0)));
    h.advance_mins(60);
    assert_eq!(h.claims().await, 0, "voicemail is final");

    // With retries 0 a voicemail is final at once.
    let (other, c) = h.start(json!({ "retries": 0 }), 1).await;
    assert_eq!(h.claims().await, 1);
    let contact = h.contact(other, c[0]).await;
    assert_eq!((&contact["status"], &contact["retries"], &contact["call_count"]), (&json!("voicemail"), &json!(0), &json!(1)));
    assert_eq!(h.status(other).await, "finished");
}

#[tokio::test]
async fn failed_calls_retry_up_to_the_server_failed_retry_limit() {
    let Some(h) = Harness::new(retry_settings(10, 2), "phone_call", Provider::Simulator(json!({ "answer_rate": 0.0 }))).await else {
        return;
    };
    let (id, c) = h.start(json!({ "retries": 0 }), 1).await;
    assert_eq!(h.claims().await, 1);
    let calls = h.calls(id, "").await;
    assert_eq!((&calls["calls"][0]["status"], &calls["calls"][0]["answered_by"]), (&json!("no-answer"), &json!(null)));
    let contact = h.contact(id, c[0]).await;
    assert_eq!((&contact["status"], &contact["failed_retries"]), (&json!("retrying"), &json!(1)));

    h.advance_mins(9);
    assert_eq!(h.claims().await, 0, "the configured interval is 10 minutes");
    h.advance_mins(1);
    assert_eq!(h.claims().await, 1);
    let contact = h.contact(id, c[0]).await;
    assert_eq!((&contact["status"], &contact["failed_retries"]), (&json!("retrying"), &json!(2)));
    h.advance_mins(10);
    assert_eq!(h.claims().await, 1);
    let contact = h.contact(id, c[0]).await;
    assert_eq!((&contact["status"], &contact["failed_retries"], &contact["call_count"]), (&json!("failed"), &json!(2), &json!(3)));
    let campaign = h.detail(id).await;
    assert_eq!(campaign["status"], "finished");
    let a = &campaign["analytics"];
    assert_eq!((&a["calls"], &a["contactsFailed"], &a["contactsFailedRate"]), (&json!(3), &json!(1), &json!(1.0)));
    assert_eq!((&a["callsAnsweredByHuman"], &a["contactsProcessed"]), (&json!(0), &json!(1)));
    h.advance_mins(60);
    assert_eq!(h.claims().await, 0, "failed is final");
}

#[tokio::test]
async fn an_attempt_without_a_final_event_is_closed_as_failed_at_its_deadline() {
    let Some(h) = Harness::new(retry_settings(30, 1), "phone_call", Provider::Webhook(accepting_provider().await)).await else { return };
    let (id, c) = h.start(json!({}), 1).await;
    assert_eq!(h.claims().await, 1);
    let first = h.attempt_of(id, c[0]).await;
    h.event_ok(&first, "in-progress", json!({})).await;

    h.clock.set(start_time() + SignedDuration::from_mins(119));
    assert_eq!(h.settle().await.timed_out, 0);
    assert_eq!(h.contact(id, c[0]).await["status"], "sending");
    h.clock.set(start_time() + SignedDuration::from_hours(2));
    let report = h.settle().await;
    assert_eq!((report.timed_out, report.claimed), (1, 0));
    let call = h.calls(id, "").await["calls"][0].clone();
    assert_eq!(
        (&call["id"], &call["status"], &call["ended_reason"], &call["ended_by"]),
        (&json!(first), &json!("failed"), &json!("timeout"), &json!("system"))
    );
    let contact = h.contact(id, c[0]).await;
    assert_eq!((&contact["status"], &contact["failed_retries"]), (&json!("retrying"), &json!(1)));
    assert_eq!(h.detail(id).await["analytics"]["calls"], 1);

    // A late final event changes nothing: the first final event won.
    h.event_ok(&first, "ended", json!({ "answered_by": "human", "billed_duration": 40 })).await;
    let contact = h.contact(id, c[0]).await;
    assert_eq!((&contact["status"], &contact["billed_duration"]), (&json!("retrying"), &json!(0)));
    let campaign = h.detail(id).await;
    assert_eq!((&campaign["analytics"]["callsAnsweredByHuman"], &campaign["analytics"]["contactsAnswered"]), (&json!(0), &json!(0)));

    // The retry is a new attempt with a new id.
    h.advance_mins(30);
    assert_eq!(h.claims().await, 1);
    let keys: Vec<String> = h.received().await.iter().map(idempotency_key).collect();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0], first);
    assert_ne!(keys[1], first);
    assert_eq!(h.attempt_of(id, c[0]).await, keys[1]);
}
