//! Calling hours in the contact's own time (§12.2): the campaign's `contact_hours` (edges, PATCH
//! set and clear), the contact's `timezone` and `timezone_source` (given, from the number, the
//! campaign's), and the engine calling a contact only while both the campaign window and the
//! contact's own hours are open, DST included; the per-zone queued counts the plan preview reads.

use jiff::Timestamp;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::engine::{Harness, always_open};
use super::helpers::{TestApp, assert_error, assert_matches_altur};

/// A Mexico City number (its area code maps to America/Mexico_City).
const MEXICO_CITY: &str = "+525512345678";
/// A Tijuana number (America/Tijuana: UTC-7 in summer, an hour behind Mexico City).
const TIJUANA: &str = "+526641234567";
/// A US toll-free number: every zone of +1, so none.
const TOLL_FREE: &str = "+18002752273";

fn at(text: &str) -> Timestamp {
    text.parse().expect("timestamp")
}

fn hours(start: &str, end: &str) -> Value {
    json!({ "start": start, "end": end })
}

async fn organization(app: &TestApp) -> i64 {
    app.store.find_api_key(&app.key[3..11]).await.expect("key lookup").expect("the app's key").org_id
}

/// The campaign's queued contacts per zone, as the plan preview reads them.
async fn zone_counts(app: &TestApp, id: i64) -> Vec<(Option<String>, i64)> {
    app.store.zone_queue_counts(organization(app).await, id).await.expect("zone counts")
}

fn zone(name: &str, queued: i64) -> (Option<String>, i64) {
    (Some(name.to_owned()), queued)
}

#[tokio::test]
async fn contact_hours_takes_its_edges_and_refuses_the_rest_on_create_and_patch() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    let campaign = app.create_campaign(setup.phone(json!({}))).await;
    assert_eq!(campaign["contact_hours"], Value::Null, "off by default");
    let whole = app.create_campaign(setup.phone(json!({ "contact_hours": hours("00:00", "24:00") }))).await;
    assert_eq!(whole["contact_hours"], hours("00:00", "24:00"));
    let id = campaign["id"].as_i64().expect("id");

    let refused = [
        (hours("08:00", "08:00"), "contact_hours.end"),
        (hours("21:00", "08:00"), "contact_hours.end"),
        (hours("24:00", "24:00"), "contact_hours.start"),
        (hours("25:00", "26:00"), "contact_hours.start"),
        (hours("8:00", "21:00"), "contact_hours.start"),
        (hours("08:60", "21:00"), "contact_hours.start"),
        (hours("08:00", "24:01"), "contact_hours.end"),
        (json!({ "start": "08:00" }), "contact_hours.end"),
    ];
    for (value, field) in refused {
        let (status, body) = app.post("/campaigns", setup.phone(json!({ "contact_hours": value }))).await;
        assert_error(status, &body, 400, "INVALID_REQUEST", Some(field));
        let (status, body) = app.patch(&format!("/campaigns/{id}"), json!({ "contact_hours": value })).await;
        assert_error(status, &body, 400, "INVALID_REQUEST", Some(field));
    }
    let (status, body) =
        app.patch(&format!("/campaigns/{id}"), json!({ "contact_hours": { "start": "08:00", "end": "21:00", "days": 5 } })).await;
    assert_eq!((status, &body["error"]), (StatusCode::BAD_REQUEST, &json!("INVALID_REQUEST")), "{body}");
    assert!(body["field"].as_str().is_some_and(|f| f.starts_with("contact_hours")), "{body}");
    let (status, body) = app.patch(&format!("/campaigns/{id}"), json!({ "contact_hours": "08:00-21:00" })).await;
    assert_error(status, &body, 400, "INVALID_REQUEST", Some("contact_hours"));
    assert_eq!(app.get(&format!("/campaigns/{id}")).await.1["campaign"]["contact_hours"], Value::Null, "nothing changed");

    // PATCH sets, leaves alone when absent, clears with null.
    let (status, body) = app.patch(&format!("/campaigns/{id}"), json!({ "contact_hours": hours("08:00", "21:00") })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_matches_altur("CampaignDetailResponse", &body);
    assert_eq!(body["campaign"]["contact_hours"], hours("08:00", "21:00"));
    let (_, body) = app.patch(&format!("/campaigns/{id}"), json!({ "retries": 2 })).await;
    assert_eq!(body["campaign"]["contact_hours"], hours("08:00", "21:00"));
    let (_, list) = app.get("/campaigns").await;
    assert_matches_altur("CampaignsResponse", &list);
    let listed = list["campaigns"].as_array().expect("campaigns").iter().find(|c| c["id"] == id).cloned().expect("listed");
    assert_eq!(listed["contact_hours"], hours("08:00", "21:00"));
    let (_, body) = app.patch(&format!("/campaigns/{id}"), json!({ "contact_hours": null })).await;
    assert_eq!(body["campaign"]["contact_hours"], Value::Null);
}

#[tokio::test]
async fn contacts_show_the_zone_they_are_called_in_and_where_it_comes_from() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    let id = app.create_campaign(setup.phone(json!({ "timezone": "America/Bogota" }))).await["id"].as_i64().expect("id");
    let items = json!([
        { "contact": MEXICO_CITY, "timezone": "Europe/Madrid" },
        { "contact": TIJUANA },
        { "contact": TOLL_FREE, "timezone": null },
    ]);
    let (status, body) = app.post(&format!("/campaigns/{id}/contacts"), json!({ "contacts": items })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_matches_altur("CampaignContactBatchResponse", &body);
    let zones = |list: &Value| -> Vec<(String, String)> {
        list["contacts"]
            .as_array()
            .expect("contacts")
            .iter()
            .map(|c| (c["timezone"].as_str().expect("zone").to_owned(), c["timezone_source"].as_str().expect("source").to_owned()))
            .collect()
    };
    let pair = |zone: &str, source: &str| (zone.to_owned(), source.to_owned());
    let (status, list) = app.get(&format!("/campaigns/{id}/contacts")).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_matches_altur("CampaignContactsResponse", &list);
    assert_eq!(zones(&list), [pair("Europe/Madrid", "given"), pair("America/Tijuana", "number"), pair("America/Bogota", "campaign")]);
    let toll_free = list["contacts"][2]["id"].as_i64().expect("id");
    let (_, one) = app.get(&format!("/campaigns/{id}/contacts/{toll_free}")).await;
    assert_matches_altur("CampaignContactDetailResponse", &one);
    assert_eq!((&one["contact"]["timezone"], &one["contact"]["timezone_source"]), (&json!("America/Bogota"), &json!("campaign")));
    assert_eq!(
        zone_counts(&app, id).await,
        [(None, 1), zone("America/Tijuana", 1), zone("Europe/Madrid", 1)],
        "queued per zone; None is the campaign's"
    );

    // A campaign-sourced contact follows the campaign's timezone; the others keep theirs.
    let (status, body) = app.patch(&format!("/campaigns/{id}"), json!({ "timezone": "Asia/Tokyo" })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, list) = app.get(&format!("/campaigns/{id}/contacts")).await;
    assert_eq!(zones(&list), [pair("Europe/Madrid", "given"), pair("America/Tijuana", "number"), pair("Asia/Tokyo", "campaign")]);

    // `if_duplicate: update` gives a contact the zone its item names, and keeps it when none is named.
    let update = json!({ "if_duplicate": "update", "contacts": [
        { "contact": TIJUANA, "timezone": "America/Mexico_City" }, { "contact": MEXICO_CITY, "name": "Ana" },
    ] });
    let (status, body) = app.post(&format!("/campaigns/{id}/contacts"), update).await;
    assert_eq!((status, &body["summary"]["updated"]), (StatusCode::CREATED, &json!(2)), "{body}");
    let (_, list) = app.get(&format!("/campaigns/{id}/contacts")).await;
    assert_eq!(zones(&list), [pair("Europe/Madrid", "given"), pair("America/Mexico_City", "given"), pair("Asia/Tokyo", "campaign")]);
    assert_eq!(list["contacts"][0]["name"], "Ana");
    assert_eq!(
        zone_counts(&app, id).await,
        [(None, 1), zone("America/Mexico_City", 1), zone("America/Tijuana", 0), zone("Europe/Madrid", 1)],
        "the updated contact moved to its new zone"
    );

    // Deleting a queued contact takes it off its zone's count.
    let (status, _) = app.call(reqwest::Method::DELETE, &format!("/campaigns/{id}/contacts/{toll_free}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(zone_counts(&app, id).await[0], (None, 0));
    let other = app.new_key("other").await;
    let org = app.store.find_api_key(&other[3..11]).await.expect("lookup").expect("key").org_id;
    assert!(app.store.zone_queue_counts(org, id).await.expect("counts").is_empty(), "another organization's campaign");
}

#[tokio::test]
async fn a_bad_timezone_refuses_the_whole_batch_and_stores_nothing() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    let id = app.create_campaign(setup.phone(json!({}))).await["id"].as_i64().expect("id");
    for bad in [json!("Mars/Olympus"), json!("+01:00"), json!(""), json!("europe/madrid "), json!(5)] {
        let items = json!([{ "contact": MEXICO_CITY }, { "contact": TIJUANA, "timezone": bad }]);
        let (status, body) = app.post(&format!("/campaigns/{id}/contacts"), json!({ "contacts": items })).await;
        assert_error(status, &body, 400, "INVALID_REQUEST", Some("contacts[1].timezone"));
    }
    let (_, list) = app.get(&format!("/campaigns/{id}/contacts")).await;
    assert_eq!(list["total_count"], 0, "{list}");
    assert!(zone_counts(&app, id).await.is_empty());
    let (status, body) =
        app.post(&format!("/campaigns/{id}/contacts"), json!({ "contacts": [{ "contact": TIJUANA, "timezone": "UTC" }] })).await;
    assert_eq!((status, &body["summary"]["created"]), (StatusCode::CREATED, &json!(1)), "{body}");
}

/// A harness campaign open around the clock in Mexico City with these hours, activated.
async fn campaign_with_hours(h: &Harness, extra: Value) -> i64 {
    let id = h.campaign(extra).await;
    h.action(id, "activate").await;
    id
}

fn item(contact: &str) -> Value {
    json!({ "contact": contact })
}

#[tokio::test]
async fn the_engine_calls_a_contact_only_inside_its_own_hours() {
    let Some(h) = Harness::webhook("phone_call").await else { return };
    let id = campaign_with_hours(&h, json!({ "contact_hours": hours("09:00", "18:00") })).await;
    let ids = h.add(id, vec![item(MEXICO_CITY), item(TIJUANA)]).await;

    // 15:30 UTC: 09:30 in Mexico City (UTC-6), 08:30 in Tijuana (UTC-7 in June).
    h.clock.set(at("2026-06-09T15:30:00Z"));
    assert_eq!(h.claims().await, 1);
    assert_eq!(h.statuses(id).await, ["sending", "queue"]);
    assert_eq!(zone_counts(&h, id).await, [zone("America/Mexico_City", 0), zone("America/Tijuana", 1)]);
    h.clock.set(at("2026-06-09T15:59:59Z"));
    assert_eq!(h.claims().await, 0, "08:59:59 in Tijuana");

    // Tijuana's hours open an hour later.
    h.clock.set(at("2026-06-09T16:00:00Z"));
    assert_eq!(h.claims().await, 1);
    assert_eq!(h.statuses(id).await, ["sending", "sending"]);
    assert_eq!(h.contact(id, ids[1]).await["last_call_at"], "2026-06-09 10:00:00", "in the campaign's timezone");
    assert_eq!(zone_counts(&h, id).await, [zone("America/Mexico_City", 0), zone("America/Tijuana", 0)]);

    // Every zone closed (00:30 in Mexico City): nothing is claimed.
    for contact in ids {
        h.finish(id, contact, "ended", json!({ "answered_by": "human" })).await;
    }
    h.add(id, vec![item("+525587654321")]).await;
    h.clock.set(at("2026-06-10T06:30:00Z"));
    assert_eq!(h.claims().await, 0);
    h.clock.set(at("2026-06-10T15:00:00Z"));
    assert_eq!(h.claims().await, 1, "09:00 in Mexico City");
}

#[tokio::test]
async fn a_retrying_contact_waits_for_its_hours_too() {
    let Some(h) = Harness::webhook("phone_call").await else { return };
    let id = campaign_with_hours(&h, json!({ "contact_hours": hours("09:00", "18:00"), "retries": 1 })).await;
    let ids = h.add(id, vec![item(TIJUANA)]).await;
    h.clock.set(at("2026-06-09T16:00:00Z")); // 09:00 in Tijuana
    assert_eq!(h.claims().await, 1);
    h.finish(id, ids[0], "ended", json!({ "answered_by": "machine" })).await;
    assert_eq!(h.statuses(id).await, ["retrying"]);
    // Due 30 minutes later, but 18:00 in Tijuana is past its hours.
    h.clock.set(at("2026-06-10T01:00:00Z"));
    assert_eq!(h.claims().await, 0, "18:00 in Tijuana");
    h.clock.set(at("2026-06-10T16:00:00Z"));
    assert_eq!(h.claims().await, 1, "09:00 in Tijuana the next day");
}

#[tokio::test]
async fn hours_follow_the_contact_s_wall_clock_across_the_march_dst_change() {
    let Some(h) = Harness::webhook("phone_call").await else { return };
    let id = campaign_with_hours(&h, json!({ "timezone": "America/New_York", "contact_hours": hours("08:00", "09:00") })).await;
    // New York moves from UTC-5 to UTC-4 on Sunday 2027-03-14 at 02:00 local.
    let first = h.add(id, vec![item("+12127365000")]).await;
    h.clock.set(at("2027-03-13T12:59:00Z"));
    assert_eq!(h.claims().await, 0, "07:59 EST");
    h.clock.set(at("2027-03-13T13:30:00Z"));
    assert_eq!(h.claims().await, 1, "08:30 EST");
    h.finish(id, first[0], "ended", json!({ "answered_by": "human" })).await;

    h.add(id, vec![item("+12127365001")]).await;
    h.clock.set(at("2027-03-14T13:30:00Z"));
    assert_eq!(h.claims().await, 0, "09:30 EDT (it would be 08:30 at the winter offset)");
    h.clock.set(at("2027-03-15T12:30:00Z"));
    assert_eq!(h.claims().await, 1, "08:30 EDT (it would be 07:30 at the winter offset)");
}

#[tokio::test]
async fn both_the_campaign_window_and_the_contact_s_hours_must_be_open() {
    let Some(h) = Harness::webhook("phone_call").await else { return };
    // Window 09:00–18:00 in Mexico City every day (15:00–24:00 UTC in June); the Madrid contact's
    // hours 10:00–12:00 (08:00–10:00 UTC): never both open.
    let day = json!({ "startTime": "09:00", "stopTime": "18:00" });
    let week = json!({ "mon": day, "tue": day, "wed": day, "thu": day, "fri": day, "sat": day, "sun": day });
    let id = campaign_with_hours(&h, json!({ "scheduling": week, "contact_hours": hours("10:00", "12:00") })).await;
    h.add(id, vec![json!({ "contact": MEXICO_CITY, "timezone": "Europe/Madrid" })]).await;
    h.clock.set(at("2026-06-09T08:30:00Z"));
    assert_eq!(h.claims().await, 0, "hours open (10:30 in Madrid), window closed (02:30 in Mexico City)");
    h.clock.set(at("2026-06-09T16:00:00Z"));
    assert_eq!(h.claims().await, 0, "window open (10:00 in Mexico City), hours closed (18:00 in Madrid)");

    let (status, body) = h.patch(&format!("/campaigns/{id}"), json!({ "contact_hours": hours("17:00", "24:00") })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    h.clock.set(at("2026-06-09T16:01:00Z"));
    assert_eq!(h.claims().await, 1, "both open: 10:01 in Mexico City, 18:01 in Madrid");
}

#[tokio::test]
async fn campaign_zone_contacts_follow_a_patched_campaign_timezone_in_the_engine() {
    let Some(h) = Harness::webhook("phone_call").await else { return };
    let id = campaign_with_hours(&h, json!({ "scheduling": always_open(), "contact_hours": hours("09:00", "18:00") })).await;
    h.add(id, vec![item(TOLL_FREE)]).await;
    // 15:30 UTC: 09:30 in Mexico City, 00:30 in Tokyo.
    let (status, body) = h.patch(&format!("/campaigns/{id}"), json!({ "timezone": "Asia/Tokyo" })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    h.clock.set(at("2026-06-09T15:30:00Z"));
    assert_eq!(h.claims().await, 0, "00:30 in Tokyo, the campaign's zone now");
    h.clock.set(at("2026-06-10T00:00:00Z"));
    assert_eq!(h.claims().await, 1, "09:00 in Tokyo");
}

#[tokio::test]
async fn a_new_iteration_counts_its_queued_contacts_per_zone_again() {
    let Some(h) = Harness::webhook("phone_call").await else { return };
    let cycles = json!({ "enabled": true, "max_iterations": 2, "cooldown_minutes": 0 });
    let id = campaign_with_hours(&h, json!({ "cycles": cycles, "contact_hours": hours("09:00", "18:00") })).await;
    let ids = h.add(id, vec![item(MEXICO_CITY), item(TIJUANA)]).await;
    h.clock.set(at("2026-06-09T16:00:00Z")); // 10:00 in Mexico City, 09:00 in Tijuana
    assert_eq!(h.claims().await, 2);
    for contact in ids {
        h.finish(id, contact, "ended", json!({ "answered_by": "human" })).await;
    }
    assert_eq!(zone_counts(&h, id).await, [zone("America/Mexico_City", 0), zone("America/Tijuana", 0)]);

    // Midnight in Mexico City: the second iteration queues both contacts again, and neither is called.
    h.clock.set(at("2026-06-10T06:00:00Z"));
    assert_eq!(h.claims().await, 0);
    assert_eq!(h.detail(id).await["cycles"]["current_iteration"], 2);
    assert_eq!(h.statuses(id).await, ["queue", "queue"]);
    assert_eq!(zone_counts(&h, id).await, [zone("America/Mexico_City", 1), zone("America/Tijuana", 1)]);
    h.clock.set(at("2026-06-10T15:00:00Z"));
    assert_eq!(h.claims().await, 1, "09:00 in Mexico City, 08:00 in Tijuana");
    assert_eq!(zone_counts(&h, id).await, [zone("America/Mexico_City", 0), zone("America/Tijuana", 1)]);
}

#[tokio::test]
async fn with_only_closed_zones_queued_a_due_retry_of_an_open_zone_is_still_claimed() {
    let Some(h) = Harness::webhook("phone_call").await else { return };
    let id = campaign_with_hours(&h, json!({ "contact_hours": hours("10:00", "18:00") })).await;
    // 16:00 UTC: 10:00 in Mexico City, 09:00 in Tijuana.
    h.clock.set(at("2026-06-09T16:00:00Z"));
    let mexico = h.add(id, vec![item(MEXICO_CITY)]).await;
    assert_eq!(h.claims().await, 1);
    h.finish(id, mexico[0], "busy", json!({})).await;
    assert_eq!(h.statuses(id).await, ["retrying"]);
    // Queued contacts now wait only in Tijuana, still closed when the retry falls due (30 minutes on).
    let tijuana = ["+526641234567", "+526641234568", "+526641234569"].map(item).to_vec();
    h.add(id, tijuana).await;
    h.clock.set(at("2026-06-09T16:30:00Z"));
    assert_eq!(zone_counts(&h, id).await, [zone("America/Mexico_City", 0), zone("America/Tijuana", 3)]);
    assert_eq!(h.claims().await, 1, "the due retry of Mexico City");
    assert_eq!(h.statuses(id).await, ["sending", "queue", "queue", "queue"]);
    h.clock.set(at("2026-06-09T17:00:00Z"));
    assert_eq!(h.claims().await, 3, "10:00 in Tijuana");
}
