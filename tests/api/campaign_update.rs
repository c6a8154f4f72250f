//! PATCH /campaigns/{id} (§2.7): partial updates, immutable fields, cycles merged field by field,
//! whole-week schedules, channel rules; every refused update leaves the campaign unchanged.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::helpers::{Setup, TestApp, assert_error, assert_matches_altur, merge};

fn path(id: &Value) -> String {
    format!("/campaigns/{}", id.as_i64().expect("campaign id"))
}

async fn fetch(app: &TestApp, id: &Value) -> Value {
    let (status, body) = app.get(&path(id)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_matches_altur("CampaignDetailResponse", &body);
    body["campaign"].clone()
}

/// PATCHes `body`, expects 200 with a valid detail response that GET then shows; returns it.
async fn patched(app: &TestApp, id: &Value, body: Value) -> Value {
    let (status, response) = app.patch(&path(id), body.clone()).await;
    assert_eq!(status, StatusCode::OK, "PATCH {body}: {response}");
    assert_matches_altur("CampaignDetailResponse", &response);
    let campaign = response["campaign"].clone();
    assert_eq!(fetch(app, id).await, campaign, "GET shows what PATCH {body} returned");
    campaign
}

/// PATCHes `body`, expects this single-violation error, and checks the campaign did not change.
async fn refused(app: &TestApp, id: &Value, body: Value, status: u16, key: &str, field: &str) {
    let before = fetch(app, id).await;
    let (got, response) = app.patch(&path(id), body.clone()).await;
    assert!(
        got.as_u16() == status && response["error"] == json!(key) && response["field"] == json!(field),
        "PATCH {body}\nexpected {status} {key} field {field}, got {got} {response}"
    );
    assert_error(got, &response, status, key, Some(field));
    assert_eq!(response["details"], Value::Null, "a single violation has no details: {response}");
    assert_eq!(fetch(app, id).await, before, "refused PATCH {body} changed the campaign");
}

/// A phone campaign with cycles in cooldown mode.
fn with_cycles(setup: &Setup) -> Value {
    setup.phone(json!({ "cycles": {
        "enabled": true, "max_iterations": 5, "cooldown_minutes": 30,
        "filter_statuses": ["converted", "voicemail"], "filter_tags": ["vip"]
    } }))
}

async fn listed_tags(app: &TestApp, id: &Value) -> Value {
    let (status, list) = app.get("/campaigns").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let item = list["campaigns"].as_array().expect("campaigns").iter().find(|c| &c["id"] == id).expect("campaign listed");
    item["cycle_filter_tags"].clone()
}

#[tokio::test]
async fn accepted_edges_change_only_the_fields_sent() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    let created = app.create_campaign(setup.phone(json!({ "description": "first", "first_message": "Hi {name}" }))).await;
    let id = created["id"].clone();

    assert_eq!(patched(&app, &id, json!({})).await, created, "an empty PATCH changes nothing");

    let longest = "é".repeat(255);
    let cases = [
        ("name", json!(format!("  {longest} ")), json!(longest)),
        ("name", json!("x"), json!("x")),
        ("description", json!("ü".repeat(10_000)), json!("ü".repeat(10_000))),
        ("description", Value::Null, Value::Null),
        ("description", json!("again"), json!("again")),
        ("timezone", json!("Asia/Kolkata"), json!("Asia/Kolkata")),
        ("timezone", json!("UTC"), json!("UTC")),
        ("retries", json!(0), json!(0)),
        ("retries", json!(5), json!(5)),
        ("message_limit", json!(1), json!(1)),
        ("message_limit", json!(10_000), json!(10_000)),
        ("concurrency_limit", json!(1), json!(1)),
        ("concurrency_limit", json!(1000), json!(1000)),
        ("first_message", json!("Hello again, {name}"), json!("Hello again, {name}")),
        ("first_message", Value::Null, Value::Null),
    ];
    let mut expected = created;
    for (field, sent, stored) in cases {
        let campaign = patched(&app, &id, json!({ field: sent })).await;
        expected[field] = stored;
        assert_eq!(campaign, expected, "PATCH {field}: {sent}");
    }

    // Several fields at once.
    let campaign = patched(&app, &id, json!({ "name": "Both", "retries": 3, "timezone": "Europe/Madrid" })).await;
    expected["name"] = json!("Both");
    expected["retries"] = json!(3);
    expected["timezone"] = json!("Europe/Madrid");
    assert_eq!(campaign, expected);
}

#[tokio::test]
async fn bad_and_null_values_are_refused_and_change_nothing() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    let id = app.create_campaign(setup.phone(json!({ "description": "kept" }))).await["id"].clone();

    let cases = [
        (json!({ "name": "   " }), "name"),
        (json!({ "name": "a".repeat(256) }), "name"),
        (json!({ "name": null }), "name"),
        (json!({ "description": "ü".repeat(10_001) }), "description"),
        (json!({ "timezone": "Mars/Olympus" }), "timezone"),
        (json!({ "timezone": "+05:00" }), "timezone"),
        (json!({ "timezone": "" }), "timezone"),
        (json!({ "timezone": null }), "timezone"),
        (json!({ "retries": -1 }), "retries"),
        (json!({ "retries": 6 }), "retries"),
        (json!({ "retries": null }), "retries"),
        (json!({ "message_limit": 0 }), "message_limit"),
        (json!({ "message_limit": 10_001 }), "message_limit"),
        (json!({ "message_limit": null }), "message_limit"),
        (json!({ "concurrency_limit": 0 }), "concurrency_limit"),
        (json!({ "concurrency_limit": 1001 }), "concurrency_limit"),
        (json!({ "concurrency_limit": null }), "concurrency_limit"),
        (json!({ "scheduling": null }), "scheduling"),
        (json!({ "cycles": null }), "cycles"),
        (json!({ "nickname": "x" }), "nickname"),
        (json!({ "retries": "2" }), "retries"),
        // One bad field refuses the whole request: the valid name is not applied either.
        (json!({ "name": "New name", "retries": 9 }), "retries"),
        (json!({ "description": null, "message_limit": 0 }), "message_limit"),
    ];
    for (body, field) in cases {
        refused(&app, &id, body, 400, "INVALID_REQUEST", field).await;
    }

    let (status, body) = app.patch(&path(&id), json!({ "retries": 9, "message_limit": 0 })).await;
    assert_error(status, &body, 400, "INVALID_REQUEST", Some("retries"));
    assert_eq!(body["details"].as_array().map(Vec::len), Some(2), "{body}");
    assert_eq!(fetch(&app, &id).await["retries"], 1);
}

#[tokio::test]
async fn immutable_fields_accept_their_value_and_refuse_any_other() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    let other_agent = app.create_agent("Other bot").await;
    let created = app.create_campaign(setup.phone(json!({}))).await;
    let id = created["id"].clone();

    let same = json!({
        "agent_id": setup.agent, "integration_id": setup.phone, "integration_type": "phone_call",
        "cycles": { "enabled": false, "mode": "cooldown" }
    });
    assert_eq!(patched(&app, &id, same).await, created, "current values are accepted and change nothing");
    assert_eq!(patched(&app, &id, json!({ "agent_id": setup.agent.to_uppercase() })).await, created, "the same UUID");
    let renamed = patched(&app, &id, json!({ "agent_id": setup.agent, "name": "Renamed" })).await;
    assert_eq!(renamed["name"], "Renamed", "an immutable field at its value does not block the rest");

    for (body, field) in [
        (json!({ "agent_id": other_agent }), "agent_id"),
        (json!({ "agent_id": "not-a-uuid" }), "agent_id"),
        (json!({ "agent_id": null }), "agent_id"),
        (json!({ "integration_id": setup.whatsapp }), "integration_id"),
        (json!({ "integration_id": "iph_000000000000000000zz" }), "integration_id"),
        (json!({ "integration_type": "whatsapp" }), "integration_type"),
        (json!({ "cycles": { "enabled": true } }), "cycles.enabled"),
        (json!({ "cycles": { "mode": "scheduled" } }), "cycles.mode"),
        (json!({ "name": "Not applied", "integration_type": "whatsapp" }), "integration_type"),
    ] {
        refused(&app, &id, body, 400, "IMMUTABLE_FIELD", field).await;
    }

    // On a campaign with cycles, enabled and mode are just as fixed.
    let cycling = app.create_campaign(with_cycles(&setup)).await;
    let id = cycling["id"].clone();
    assert_eq!(patched(&app, &id, json!({ "cycles": { "enabled": true, "mode": "cooldown" } })).await, cycling);
    refused(&app, &id, json!({ "cycles": { "enabled": false } }), 400, "IMMUTABLE_FIELD", "cycles.enabled").await;
    refused(&app, &id, json!({ "cycles": { "mode": "scheduled" } }), 400, "IMMUTABLE_FIELD", "cycles.mode").await;
    refused(&app, &id, json!({ "cycles": { "mode": "scheduled", "max_iterations": 4 } }), 400, "IMMUTABLE_FIELD", "cycles.mode").await;
}

#[tokio::test]
async fn cycle_fields_on_a_campaign_without_cycles() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    let week = json!({ "mon": { "startTime": "09:00", "stopTime": "12:00" } });
    for created in [app.create_campaign(setup.phone(json!({}))).await, app.create_campaign(setup.whatsapp(json!({}))).await] {
        let id = created["id"].clone();
        for accepted in
            [json!({}), json!({ "enabled": false }), json!({ "mode": "cooldown" }), json!({ "enabled": false, "mode": "cooldown" })]
        {
            assert_eq!(patched(&app, &id, json!({ "cycles": accepted })).await, created, "cycles {accepted}");
        }
        for (field, value) in [
            ("max_iterations", json!(4)),
            ("cooldown_minutes", json!(30)),
            ("filter_statuses", json!(["converted"])),
            ("filter_tags", json!(["vip"])),
            ("schedule", week.clone()),
            ("schedule_start_date", json!("2026-07-01")),
            ("schedule_end_date", json!("2026-07-31")),
        ] {
            let field_path = format!("cycles.{field}");
            refused(&app, &id, json!({ "cycles": { field: value } }), 400, "CYCLES_NOT_ENABLED", &field_path).await;
            refused(&app, &id, json!({ "cycles": { "enabled": false, field: value } }), 400, "CYCLES_NOT_ENABLED", &field_path).await;
        }
        refused(
            &app,
            &id,
            json!({ "name": "Not applied", "cycles": { "max_iterations": 4 } }),
            400,
            "CYCLES_NOT_ENABLED",
            "cycles.max_iterations",
        )
        .await;
    }
}

#[tokio::test]
async fn cycles_are_merged_field_by_field_in_cooldown_mode() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    let created = app.create_campaign(with_cycles(&setup)).await;
    let id = created["id"].clone();
    let mut expected = created["cycles"].clone();

    for (field, sent) in [
        ("cooldown_minutes", json!(120)),
        ("cooldown_minutes", json!(0)),
        ("cooldown_minutes", json!(1440)),
        ("max_iterations", json!(2)),
        ("max_iterations", json!(12)),
        ("filter_statuses", json!(["answered"])),
        ("filter_statuses", json!([])),
        ("filter_statuses", json!(["converted", "failed"])),
    ] {
        let campaign = patched(&app, &id, json!({ "cycles": { field: sent } })).await;
        expected[field] = sent.clone();
        assert_eq!(campaign["cycles"], expected, "PATCH cycles.{field}: {sent}");
    }
    assert_eq!(listed_tags(&app, &id).await, json!(["vip"]), "untouched tags are kept");
    let campaign = patched(&app, &id, json!({ "cycles": { "filter_tags": ["gold", "t".repeat(1000)] } })).await;
    assert_eq!(campaign["cycles"], expected);
    assert_eq!(listed_tags(&app, &id).await, json!(["gold", "t".repeat(1000)]));
    // Null schedule fields are the absence of a schedule, fine in cooldown mode.
    let campaign =
        patched(&app, &id, json!({ "cycles": { "schedule": null, "schedule_start_date": null, "schedule_end_date": null } })).await;
    assert_eq!(campaign["cycles"], expected);

    for (cycles, key, field) in [
        (json!({ "max_iterations": 1 }), "INVALID_REQUEST", "cycles.max_iterations"),
        (json!({ "max_iterations": 13 }), "INVALID_REQUEST", "cycles.max_iterations"),
        (json!({ "max_iterations": null }), "INVALID_REQUEST", "cycles.max_iterations"),
        (json!({ "cooldown_minutes": -1 }), "INVALID_REQUEST", "cycles.cooldown_minutes"),
        (json!({ "cooldown_minutes": 1441 }), "INVALID_REQUEST", "cycles.cooldown_minutes"),
        (json!({ "filter_statuses": ["bogus"] }), "INVALID_REQUEST", "cycles.filter_statuses[0]"),
        (json!({ "filter_statuses": ["converted", "pending"] }), "INVALID_REQUEST", "cycles.filter_statuses[1]"),
        (json!({ "filter_tags": [""] }), "INVALID_REQUEST", "cycles.filter_tags[0]"),
        (json!({ "filter_tags": ["ok", "t".repeat(1001)] }), "INVALID_REQUEST", "cycles.filter_tags[1]"),
        (json!({ "cooldown_minutes": 15, "max_iterations": 20 }), "INVALID_REQUEST", "cycles.max_iterations"),
        (json!({ "schedule": { "mon": { "startTime": "09:00", "stopTime": "12:00" } } }), "SCHEDULED_MODE_ONLY", "cycles.schedule"),
        (json!({ "schedule_start_date": "2026-07-01" }), "SCHEDULED_MODE_ONLY", "cycles.schedule_start_date"),
        (json!({ "schedule_end_date": "2026-07-31" }), "SCHEDULED_MODE_ONLY", "cycles.schedule_end_date"),
        (json!({ "max_iterations": 4, "schedule_end_date": "2026-07-31" }), "SCHEDULED_MODE_ONLY", "cycles.schedule_end_date"),
        (json!({ "colour": "red" }), "INVALID_REQUEST", "cycles.colour"),
    ] {
        refused(&app, &id, json!({ "cycles": cycles }), 400, key, field).await;
    }
    assert_eq!(listed_tags(&app, &id).await, json!(["gold", "t".repeat(1000)]), "refused tags changed nothing");
}

#[tokio::test]
async fn scheduled_mode_schedule_is_replaced_and_dates_stay_ordered() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    let cycles = json!({ "enabled": true, "mode": "scheduled", "schedule": { "mon": { "startTime": "09:00", "stopTime": "12:00" } },
                         "schedule_start_date": "2026-07-01", "schedule_end_date": "2026-07-31" });
    let created = app.create_campaign(setup.phone(json!({ "cycles": cycles }))).await;
    let id = created["id"].clone();

    // The schedule replaces the whole week: Monday, left out, becomes inactive.
    let campaign = patched(&app, &id, json!({ "cycles": { "schedule": { "sat": { "startTime": "22:00", "stopTime": "02:00" } } } })).await;
    let schedule = &campaign["cycles"]["schedule"];
    assert_eq!(schedule.as_object().expect("schedule").len(), 7);
    assert_eq!(schedule["mon"]["active"], false);
    assert_eq!(schedule["sat"], json!({ "startTime": "22:00", "stopTime": "02:00", "active": true }));
    assert_eq!(
        (campaign["cycles"]["schedule_start_date"].clone(), campaign["cycles"]["schedule_end_date"].clone()),
        (json!("2026-07-01"), json!("2026-07-31"))
    );

    // Start equal to end is fine; the order is checked against the stored value too.
    let campaign = patched(&app, &id, json!({ "cycles": { "schedule_start_date": "2026-07-31" } })).await;
    assert_eq!(campaign["cycles"]["schedule_start_date"], "2026-07-31");
    refused(&app, &id, json!({ "cycles": { "schedule_end_date": "2026-07-30" } }), 400, "INVALID_REQUEST", "cycles.schedule_end_date")
        .await;
    refused(&app, &id, json!({ "cycles": { "schedule_start_date": "2026-08-01" } }), 400, "INVALID_REQUEST", "cycles.schedule_end_date")
        .await;
    let campaign =
        patched(&app, &id, json!({ "cycles": { "schedule_start_date": "2026-06-01", "schedule_end_date": "2026-06-01" } })).await;
    assert_eq!(
        (campaign["cycles"]["schedule_start_date"].clone(), campaign["cycles"]["schedule_end_date"].clone()),
        (json!("2026-06-01"), json!("2026-06-01"))
    );
    // Clearing a date is allowed.
    let campaign = patched(&app, &id, json!({ "cycles": { "schedule_end_date": null } })).await;
    assert_eq!(campaign["cycles"]["schedule_end_date"], Value::Null);
    assert_eq!(campaign["cycles"]["schedule_start_date"], "2026-06-01");

    for (cycles, field) in [
        (json!({ "schedule": null }), "cycles.schedule"),
        (json!({ "schedule": {} }), "cycles.schedule"),
        (json!({ "schedule": { "mon": { "startTime": "24:00", "stopTime": "02:00" } } }), "cycles.schedule.mon.startTime"),
        (json!({ "schedule": { "mon": { "startTime": "09:00", "stopTime": "09:00" } } }), "cycles.schedule.mon.stopTime"),
        (json!({ "schedule": { "monday": { "startTime": "09:00", "stopTime": "12:00" } } }), "cycles.schedule.monday"),
        (json!({ "schedule_start_date": "2026-13-01" }), "cycles.schedule_start_date"),
        (json!({ "schedule_end_date": "2026-7-1" }), "cycles.schedule_end_date"),
    ] {
        refused(&app, &id, json!({ "cycles": cycles }), 400, "INVALID_REQUEST", field).await;
    }
}

#[tokio::test]
async fn scheduling_replaces_the_whole_week() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    let id = app.create_campaign(setup.phone(json!({}))).await["id"].clone();

    let campaign = patched(&app, &id, json!({ "scheduling": { "sat": { "startTime": "10:00", "stopTime": "14:00" } } })).await;
    let week = campaign["scheduling"].as_object().expect("scheduling");
    assert_eq!(week.len(), 7);
    for day in ["mon", "tue", "wed", "thu", "fri", "sun"] {
        assert_eq!(week[day]["active"], false, "{day} left out of the new week");
    }
    assert_eq!(week["sat"], json!({ "startTime": "10:00", "stopTime": "14:00", "active": true }));

    let campaign = patched(&app, &id, json!({ "scheduling": { "mon": { "startTime": "00:00", "stopTime": "24:00" }, "sun": { "startTime": "22:00", "stopTime": "02:00" } } }))
        .await;
    assert_eq!(campaign["scheduling"]["mon"], json!({ "startTime": "00:00", "stopTime": "24:00", "active": true }));
    assert_eq!(campaign["scheduling"]["sun"], json!({ "startTime": "22:00", "stopTime": "02:00", "active": true }));
    assert_eq!(campaign["scheduling"]["sat"]["active"], false);

    for (week, field) in [
        (json!({}), "scheduling"),
        (json!({ "mon": { "startTime": "09:00", "stopTime": "18:00", "active": false } }), "scheduling"),
        (json!({ "mon": { "startTime": "24:00", "stopTime": "02:00" } }), "scheduling.mon.startTime"),
        (json!({ "mon": { "startTime": "09:00", "stopTime": "24:01" } }), "scheduling.mon.stopTime"),
        (json!({ "mon": { "startTime": "9:00", "stopTime": "18:00" } }), "scheduling.mon.startTime"),
        (json!({ "mon": { "startTime": "09:00", "stopTime": "09:00" } }), "scheduling.mon.stopTime"),
        (json!({ "mon": { "stopTime": "18:00" } }), "scheduling.mon.startTime"),
        (json!({ "mon": { "startTime": "09:00", "stopTime": "18:00", "open": true } }), "scheduling.mon.open"),
        (json!({ "monday": { "startTime": "09:00", "stopTime": "18:00" } }), "scheduling.monday"),
    ] {
        refused(&app, &id, json!({ "scheduling": week }), 400, "INVALID_REQUEST", field).await;
    }
}

#[tokio::test]
async fn channel_rules_apply_as_on_create() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;

    let phone = app.create_campaign(setup.phone(json!({}))).await["id"].clone();
    for field in ["template", "template_alt"] {
        for value in [json!("promo_june_v1"), Value::Null, json!("")] {
            refused(&app, &phone, json!({ field: value }), 400, "INVALID_REQUEST", field).await;
        }
    }

    let whatsapp = app.create_campaign(setup.whatsapp(json!({ "template_alt": "alt_v1" }))).await;
    let id = whatsapp["id"].clone();
    for (field, value) in [
        ("first_message", json!("Hi {name}")),
        ("first_message", Value::Null),
        ("first_message", json!("")),
        ("concurrency_limit", json!(5)),
        ("concurrency_limit", Value::Null),
    ] {
        refused(&app, &id, json!({ field: value }), 400, "INVALID_REQUEST", field).await;
    }
    refused(&app, &id, json!({ "cycles": { "enabled": true } }), 400, "IMMUTABLE_FIELD", "cycles.enabled").await;
    let mut expected = whatsapp;
    for field in ["template", "template_alt"] {
        for (sent, stored) in [(json!("t"), json!("t")), (json!("ñ".repeat(512)), json!("ñ".repeat(512))), (Value::Null, Value::Null)] {
            let campaign = patched(&app, &id, json!({ field: sent })).await;
            expected[field] = stored;
            assert_eq!(campaign, expected, "PATCH {field}: {sent}");
        }
        for bad in [json!(""), json!("ñ".repeat(513))] {
            refused(&app, &id, json!({ field: bad }), 400, "INVALID_REQUEST", field).await;
        }
    }
    assert_eq!(expected["concurrency_limit"], Value::Null);
}

#[tokio::test]
async fn unknown_foreign_and_archived_campaigns() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    let created = app.create_campaign(setup.phone(json!({}))).await;
    let id = created["id"].clone();

    let (status, body) = app.patch("/campaigns/999999", json!({ "name": "x" })).await;
    assert_error(status, &body, 404, "NOT_FOUND", None);

    // Another organization's campaign answers exactly as a missing one, and stays unchanged.
    let other_key = app.new_key("globex").await;
    let call = |method: Method, path: String, body: Option<Value>| {
        let key = other_key.clone();
        let app = &app;
        async move { app.call_with_key(method, &path, body, Some(&key)).await }
    };
    let (status, body) = call(Method::POST, "/agents".into(), Some(json!({ "name": "Theirs" }))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let agent = body["agent"]["id"].as_str().expect("agent id").to_owned();
    let (status, body) =
        call(Method::POST, "/integrations".into(), Some(json!({ "agent_id": agent, "type": "phone_call", "provider": "simulator" }))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let integration = body["integration"]["id"].as_str().expect("integration id").to_owned();
    let theirs = json!({ "name": "Theirs", "agent_id": agent, "integration_id": integration, "integration_type": "phone_call" });
    let (status, body) = call(Method::POST, "/campaigns".into(), Some(theirs)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let foreign = body["campaign"]["id"].clone();
    let (status, body) = app.patch(&path(&foreign), json!({ "name": "Hijacked" })).await;
    assert_error(status, &body, 404, "NOT_FOUND", None);
    let (status, body) = call(Method::GET, path(&foreign), None).await;
    assert_eq!((status, body["campaign"]["name"].clone()), (StatusCode::OK, json!("Theirs")));

    // An archived campaign can still be patched, and stays archived.
    let (status, body) = app.post(&format!("{}/archive", path(&id)), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let campaign = patched(&app, &id, json!({ "name": "Archived but renamed", "retries": 4 })).await;
    assert_eq!(campaign["archived"], true);
    assert_eq!(campaign["status"], "pending");
    assert_eq!((campaign["name"].clone(), campaign["retries"].clone()), (json!("Archived but renamed"), json!(4)));
    assert_eq!(campaign, merge(created, json!({ "name": "Archived but renamed", "retries": 4, "archived": true })));
    refused(&app, &id, json!({ "retries": 6 }), 400, "INVALID_REQUEST", "retries").await;
}

/// `GET /campaigns/{id}` and the key check may be answered from memory (on SQLite, while the
/// database is unchanged): a change made through the API, or committed by another process on the
/// same database, shows in the very next request.
#[tokio::test]
async fn reads_after_a_change_by_this_or_another_process_see_it() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    let created = app.create_campaign(setup.phone(json!({ "name": "First" }))).await;
    let id = created["id"].clone();
    for _ in 0..2 {
        assert_eq!(fetch(&app, &id).await["name"], "First");
    }
    patched(&app, &id, json!({ "name": "Second" })).await;
    assert_eq!(fetch(&app, &id).await["name"], "Second");

    // Another process: a second store on the same database renames the campaign, then revokes
    // a key this server has just accepted.
    let other = outbound::store::open(&app.database_url).await.expect("second store on the same database");
    let org = other.find_api_key(&app.key[3..11]).await.expect("key lookup").expect("the app's key").org_id;
    let campaign_id = id.as_i64().expect("campaign id");
    let rename = Box::new(|campaign: &mut outbound::domain::campaign::Campaign| {
        campaign.settings.name = "Third".to_owned();
        Ok(())
    });
    assert!(matches!(
        other.modify_campaign(org, campaign_id, super::helpers::start_time(), rename, None).await.expect("rename"),
        outbound::store::Modified::Done(_)
    ));
    assert_eq!(fetch(&app, &id).await["name"], "Third");

    let second_key = app.new_key("acme-second").await;
    let (status, _) = app.call_with_key(Method::GET, &path(&id), None, Some(&second_key)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another organization's key is accepted, the campaign is not theirs");
    assert!(other.revoke_api_key(&second_key[3..11], jiff::Timestamp::now()).await.expect("revoke"));
    let (status, body) = app.call_with_key(Method::GET, &path(&id), None, Some(&second_key)).await;
    assert_error(status, &body, 401, "UNAUTHORIZED", None);
    assert_eq!(fetch(&app, &id).await["name"], "Third", "the first key still works");
}
