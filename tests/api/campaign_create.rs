//! POST /campaigns (§2.1): the seed examples, defaults, and every validation rule with an
//! accepted edge value and a rejected one.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::helpers::{TestApp, assert_error, assert_matches_altur};

#[tokio::test]
async fn seed_examples_create_and_retrieve() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    // Altur's phone example, ids replaced by ours.
    let phone = json!({
        "name": "Q2 Reactivation",
        "agent_id": setup.agent,
        "integration_id": setup.phone,
        "integration_type": "phone_call",
        "timezone": "America/Mexico_City",
        "first_message": "Hi, am I speaking with {name}?",
        "cycles": { "enabled": true, "mode": "cooldown", "max_iterations": 3, "cooldown_minutes": 30, "filter_statuses": ["converted"] }
    });
    let created = app.create_campaign(phone).await;
    assert_eq!(created["status"], "pending");
    assert_eq!(created["archived"], false);
    assert_eq!(created["integration"], json!({ "id": setup.phone, "type": "phone_call" }));
    assert_eq!(created["agent"], json!({ "id": setup.agent, "name": "Sales bot" }));
    assert_eq!(created["created_at"], "2026-06-08T18:00:00Z");
    assert_eq!(created["retries"], 1);
    assert_eq!(created["message_limit"], 250);
    assert_eq!(created["concurrency_limit"], 10);
    assert_eq!(created["template"], Value::Null);
    assert_eq!(created["scheduling"]["mon"], json!({ "startTime": "09:00", "stopTime": "18:00", "active": true }));
    assert_eq!(created["scheduling"]["sun"]["active"], false);
    assert_eq!(
        created["cycles"],
        json!({ "enabled": true, "mode": "cooldown", "max_iterations": 3, "cooldown_minutes": 30, "filter_statuses": ["converted"],
                "schedule_start_date": null, "schedule_end_date": null,
                "current_iteration": 0, "last_iteration_at": null, "next_cycle_at": null })
    );
    let (status, fetched) = app.get(&format!("/campaigns/{}", created["id"])).await;
    assert_eq!(status, StatusCode::OK);
    assert_matches_altur("CampaignDetailResponse", &fetched);
    assert_eq!(fetched["campaign"], created);

    // Altur's WhatsApp example.
    let whatsapp = json!({
        "name": "Promo June",
        "agent_id": setup.agent,
        "integration_id": setup.whatsapp,
        "integration_type": "whatsapp",
        "template": "promo_june_v1"
    });
    let created = app.create_campaign(whatsapp).await;
    assert_eq!(created["template"], "promo_june_v1");
    assert_eq!(created["concurrency_limit"], Value::Null);
    assert_eq!(created["first_message"], Value::Null);
    assert_eq!(created["cycles"]["enabled"], false);
    assert_eq!(created["timezone"], "America/Mexico_City");
    let (status, fetched) = app.get(&format!("/campaigns/{}", created["id"])).await;
    assert_eq!(status, StatusCode::OK);
    assert_matches_altur("CampaignDetailResponse", &fetched);
    assert_eq!(fetched["campaign"], created);
}

/// The `cycles` object of a campaign created without cycles (or with a disabled block): no
/// `schedule` (left out when absent, §0.2).
fn default_cycles() -> Value {
    json!({ "enabled": false, "mode": "cooldown", "max_iterations": 3, "cooldown_minutes": 60, "filter_statuses": [],
            "schedule_start_date": null, "schedule_end_date": null,
            "current_iteration": 0, "last_iteration_at": null, "next_cycle_at": null })
}

/// (startTime, stopTime) windows a day accepts, past midnight and the whole day included.
const GOOD_WINDOWS: [(&str, &str); 5] =
    [("00:00", "24:00"), ("09:00", "23:59"), ("22:00", "02:00"), ("23:59", "00:00"), ("00:00", "00:01")];

/// (startTime, stopTime, the time at fault) windows a day refuses.
const BAD_WINDOWS: [(&str, &str, &str); 9] = [
    ("24:00", "09:00", "startTime"),
    ("09:00", "24:01", "stopTime"),
    ("9:00", "18:00", "startTime"),
    ("09:60", "18:00", "startTime"),
    ("25:00", "18:00", "startTime"),
    ("09:00", "09:00", "stopTime"),
    ("00:00", "00:00", "stopTime"),
    ("09:00", "18:00:00", "stopTime"),
    ("09:00", "", "stopTime"),
];

/// POSTs `body` and expects exactly one violation: this status, `error` key and `field`.
async fn refused(app: &TestApp, body: Value, status: u16, key: &str, field: &str) {
    let (got, response) = app.post("/campaigns", body.clone()).await;
    assert!(
        got.as_u16() == status && response["error"] == json!(key) && response["field"] == json!(field),
        "POST {body}\nexpected {status} {key} field {field}, got {got} {response}"
    );
    assert_error(got, &response, status, key, Some(field));
    assert_eq!(response["details"], Value::Null, "a single violation has no details: {response}");
}

/// How many campaigns the organization has (none is archived in these tests).
async fn count(app: &TestApp) -> i64 {
    let (status, body) = app.get("/campaigns").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["total_count"].as_i64().expect("total_count")
}

#[tokio::test]
async fn name_and_description_lengths() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;

    let longest = "é".repeat(255);
    let created = app.create_campaign(setup.phone(json!({ "name": longest }))).await;
    assert_eq!(created["name"], json!(longest), "255 characters (510 bytes) are accepted");
    let created = app.create_campaign(setup.phone(json!({ "name": format!("  {longest}\t\n") }))).await;
    assert_eq!(created["name"], json!(longest), "surrounding whitespace does not count and is not stored");
    let created = app.create_campaign(setup.phone(json!({ "name": " x " }))).await;
    assert_eq!(created["name"], "x");
    for bad in [json!("   "), json!(""), json!("é".repeat(256)), json!(format!(" {} ", "a".repeat(256))), Value::Null, json!(42)] {
        refused(&app, setup.phone(json!({ "name": bad })), 400, "INVALID_REQUEST", "name").await;
    }

    let longest = "ü".repeat(10_000);
    let created = app.create_campaign(setup.phone(json!({ "description": longest }))).await;
    assert_eq!(created["description"], json!(longest));
    let created = app.create_campaign(setup.phone(json!({ "description": null }))).await;
    assert_eq!(created["description"], Value::Null);
    refused(&app, setup.phone(json!({ "description": "ü".repeat(10_001) })), 400, "INVALID_REQUEST", "description").await;
    refused(&app, setup.phone(json!({ "description": ["a"] })), 400, "INVALID_REQUEST", "description").await;

    assert_eq!(count(&app).await, 5, "refused requests created nothing");
}

#[tokio::test]
async fn agent_and_integration_must_exist_belong_together_and_match_the_type() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    let other_agent = app.create_agent("Other bot").await;
    let other_phone = app.create_integration(&other_agent, "phone_call").await;
    let other_key = app.new_key("globex").await;
    let (status, body) = app.call_with_key(Method::POST, "/agents", Some(json!({ "name": "Theirs" })), Some(&other_key)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let foreign_agent = body["agent"]["id"].as_str().expect("agent id").to_owned();

    // Accepted: an upper-case spelling of the agent's UUID is the same UUID.
    let created = app.create_campaign(setup.phone(json!({ "agent_id": setup.agent.to_uppercase() }))).await;
    assert_eq!(created["agent"]["id"], json!(setup.agent));
    let created = app.create_campaign(setup.whatsapp(json!({}))).await;
    assert_eq!(created["integration"], json!({ "id": setup.whatsapp, "type": "whatsapp" }));

    for bad in [json!("not-a-uuid"), json!(""), json!("6cy951e6-0000-4000-8000-000000000000"), Value::Null, json!(7)] {
        refused(&app, setup.phone(json!({ "agent_id": bad })), 400, "INVALID_REQUEST", "agent_id").await;
    }
    refused(&app, setup.phone(json!({ "agent_id": "2f1c3a7e-8b4d-4e2a-9c6f-1a2b3c4d5e6f" })), 404, "AGENT_NOT_FOUND", "agent_id").await;
    // Another organization's agent is as unknown as a made-up one.
    refused(&app, setup.phone(json!({ "agent_id": foreign_agent })), 404, "AGENT_NOT_FOUND", "agent_id").await;

    refused(&app, setup.phone(json!({ "integration_id": "iph_000000000000000000zz" })), 404, "INTEGRATION_NOT_FOUND", "integration_id")
        .await;
    // An integration of this organization that belongs to another agent.
    refused(&app, setup.phone(json!({ "integration_id": other_phone })), 404, "INTEGRATION_NOT_FOUND", "integration_id").await;

    refused(&app, setup.phone(json!({ "integration_type": "whatsapp" })), 400, "INVALID_INTEGRATION_TYPE", "integration_type").await;
    let whatsapp_as_phone =
        json!({ "name": "x", "agent_id": setup.agent, "integration_id": setup.whatsapp, "integration_type": "phone_call" });
    refused(&app, whatsapp_as_phone, 400, "INVALID_INTEGRATION_TYPE", "integration_type").await;
    for bad in ["sms", "PHONE_CALL", "phone", ""] {
        refused(&app, setup.phone(json!({ "integration_type": bad })), 400, "INVALID_REQUEST", "integration_type").await;
    }

    for required in ["name", "agent_id", "integration_id", "integration_type"] {
        let mut body = setup.phone(json!({}));
        body.as_object_mut().expect("object").remove(required);
        refused(&app, body, 400, "INVALID_REQUEST", required).await;
    }

    assert_eq!(count(&app).await, 2, "refused requests created nothing");
}

#[tokio::test]
async fn timezone_must_be_an_iana_name() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    for (sent, stored) in [
        (json!("Asia/Kolkata"), "Asia/Kolkata"),
        (json!("UTC"), "UTC"),
        (json!("America/Mexico_City"), "America/Mexico_City"),
        (Value::Null, "America/Mexico_City"),
    ] {
        let created = app.create_campaign(setup.phone(json!({ "timezone": sent }))).await;
        assert_eq!(created["timezone"], stored, "sent {sent}");
    }
    assert_eq!(app.create_campaign(setup.phone(json!({}))).await["timezone"], "America/Mexico_City", "default");
    for bad in [json!("Mars/Olympus"), json!("+05:00"), json!("-06:00"), json!(""), json!("America/Mexico City"), json!(5)] {
        refused(&app, setup.phone(json!({ "timezone": bad })), 400, "INVALID_REQUEST", "timezone").await;
    }
    assert_eq!(count(&app).await, 5, "refused requests created nothing");
}

#[tokio::test]
async fn numeric_limits_accept_their_bounds_and_refuse_one_past() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    let mut created_count = 0;
    for (field, low, high, default) in [("retries", 0, 5, 1), ("message_limit", 1, 10_000, 250), ("concurrency_limit", 1, 1000, 10)] {
        for ok in [low, high] {
            let created = app.create_campaign(setup.phone(json!({ field: ok }))).await;
            assert_eq!(created[field], ok, "{field}");
            created_count += 1;
        }
        // null on create means "use the default".
        let created = app.create_campaign(setup.phone(json!({ field: null }))).await;
        assert_eq!(created[field], default, "{field} null");
        created_count += 1;
        for bad in [json!(low - 1), json!(high + 1), json!(2.5), json!("3"), json!(-9_000_000_000_i64)] {
            refused(&app, setup.phone(json!({ field: bad })), 400, "INVALID_REQUEST", field).await;
        }
    }
    // The same ranges hold on WhatsApp (concurrency_limit aside, see the channel rules).
    for (field, ok, bad) in [("retries", 5, 6), ("message_limit", 10_000, 0)] {
        assert_eq!(app.create_campaign(setup.whatsapp(json!({ field: ok }))).await[field], ok);
        created_count += 1;
        refused(&app, setup.whatsapp(json!({ field: bad })), 400, "INVALID_REQUEST", field).await;
    }
    let created = app.create_campaign(setup.phone(json!({}))).await;
    assert_eq!(
        (created["retries"].clone(), created["message_limit"].clone(), created["concurrency_limit"].clone()),
        (json!(1), json!(250), json!(10))
    );
    created_count += 1;
    assert_eq!(count(&app).await, created_count, "refused requests created nothing");
}

#[tokio::test]
async fn channel_only_fields_are_refused_on_the_other_channel_even_null_or_empty() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;

    let created = app.create_campaign(setup.phone(json!({ "first_message": "Hi, am I speaking with {name}?" }))).await;
    assert_eq!(created["first_message"], "Hi, am I speaking with {name}?");
    let created = app.create_campaign(setup.whatsapp(json!({ "template_alt": "promo_june_retry" }))).await;
    assert_eq!((created["template"].clone(), created["template_alt"].clone()), (json!("promo_june_v1"), json!("promo_june_retry")));
    assert_eq!(created["concurrency_limit"], Value::Null);

    for field in ["template", "template_alt"] {
        for value in [json!("promo_june_v1"), Value::Null, json!("")] {
            refused(&app, setup.phone(json!({ field: value })), 400, "INVALID_REQUEST", field).await;
        }
    }
    for value in [json!("Hi {name}"), Value::Null, json!("")] {
        refused(&app, setup.whatsapp(json!({ "first_message": value })), 400, "INVALID_REQUEST", "first_message").await;
    }
    for value in [json!(5), Value::Null, json!(10)] {
        refused(&app, setup.whatsapp(json!({ "concurrency_limit": value })), 400, "INVALID_REQUEST", "concurrency_limit").await;
    }
    refused(&app, setup.whatsapp(json!({ "cycles": { "enabled": true } })), 400, "INVALID_REQUEST", "cycles.enabled").await;
    refused(
        &app,
        setup.whatsapp(json!({ "cycles": { "enabled": true, "mode": "cooldown", "max_iterations": 3 } })),
        400,
        "INVALID_REQUEST",
        "cycles.enabled",
    )
    .await;

    // A disabled cycles block is accepted and ignored on either channel, whatever it holds.
    let disabled = json!({ "enabled": false, "max_iterations": 99, "cooldown_minutes": -5, "mode": "scheduled" });
    for body in [
        setup.phone(json!({ "cycles": disabled })),
        setup.whatsapp(json!({ "cycles": disabled })),
        setup.phone(json!({ "cycles": { "max_iterations": 99 } })),
        setup.whatsapp(json!({ "cycles": {} })),
    ] {
        let created = app.create_campaign(body.clone()).await;
        assert_eq!(created["cycles"], default_cycles(), "sent {body}");
    }

    assert_eq!(count(&app).await, 6, "refused requests created nothing");
}

#[tokio::test]
async fn whatsapp_templates_hold_1_to_512_characters() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    let mut created_count = 0;
    for field in ["template", "template_alt"] {
        for ok in ["t".to_owned(), "ñ".repeat(512)] {
            assert_eq!(app.create_campaign(setup.whatsapp(json!({ field: ok }))).await[field], json!(ok), "{field}");
            created_count += 1;
        }
        // Not needed to create (only to activate): null is accepted.
        assert_eq!(app.create_campaign(setup.whatsapp(json!({ field: null }))).await[field], Value::Null, "{field}");
        created_count += 1;
        for bad in [json!(""), json!("ñ".repeat(513)), json!(1)] {
            refused(&app, setup.whatsapp(json!({ field: bad })), 400, "INVALID_REQUEST", field).await;
        }
    }
    assert_eq!(count(&app).await, created_count, "refused requests created nothing");
}

#[tokio::test]
async fn scheduling_times_of_day() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    for (start, stop) in GOOD_WINDOWS {
        let created = app.create_campaign(setup.phone(json!({ "scheduling": { "mon": { "startTime": start, "stopTime": stop } } }))).await;
        assert_eq!(created["scheduling"]["mon"], json!({ "startTime": start, "stopTime": stop, "active": true }), "{start}-{stop}");
    }
    for (start, stop, at_fault) in BAD_WINDOWS {
        let body = setup.phone(json!({ "scheduling": { "mon": { "startTime": start, "stopTime": stop } } }));
        refused(&app, body, 400, "INVALID_REQUEST", &format!("scheduling.mon.{at_fault}")).await;
    }
    // Another day than Monday names its own key; a time must be a string.
    refused(
        &app,
        setup.phone(json!({ "scheduling": { "fri": { "startTime": "08:00", "stopTime": "24:30" } } })),
        400,
        "INVALID_REQUEST",
        "scheduling.fri.stopTime",
    )
    .await;
    refused(
        &app,
        setup.phone(json!({ "scheduling": { "tue": { "startTime": 900, "stopTime": "18:00" } } })),
        400,
        "INVALID_REQUEST",
        "scheduling.tue.startTime",
    )
    .await;
    assert_eq!(count(&app).await, GOOD_WINDOWS.len() as i64, "refused requests created nothing");
}

#[tokio::test]
async fn scheduling_week_shape() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    let window = json!({ "startTime": "10:00", "stopTime": "14:00" });

    // Omitted days are inactive; the response lists all seven; `active` defaults to true.
    let created = app.create_campaign(setup.phone(json!({ "scheduling": { "sat": window } }))).await;
    let week = created["scheduling"].as_object().expect("scheduling object");
    let mut keys: Vec<&str> = week.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["fri", "mon", "sat", "sun", "thu", "tue", "wed"]);
    for day in ["mon", "tue", "wed", "thu", "fri", "sun"] {
        assert_eq!(week[day]["active"], false, "{day} was omitted");
    }
    assert_eq!(week["sat"], json!({ "startTime": "10:00", "stopTime": "14:00", "active": true }));

    // An inactive day needs no times; explicit active flags are kept.
    let body = setup.phone(json!({ "scheduling": {
        "mon": { "active": false },
        "tue": { "startTime": "08:00", "stopTime": "12:00", "active": false },
        "wed": { "startTime": "08:00", "stopTime": "12:00", "active": true }
    } }));
    let created = app.create_campaign(body).await;
    assert_eq!(created["scheduling"]["mon"]["active"], false);
    assert_eq!(created["scheduling"]["tue"], json!({ "startTime": "08:00", "stopTime": "12:00", "active": false }));
    assert_eq!(created["scheduling"]["wed"], json!({ "startTime": "08:00", "stopTime": "12:00", "active": true }));

    // null on create means the default week.
    let created = app.create_campaign(setup.phone(json!({ "scheduling": null }))).await;
    assert_eq!(created["scheduling"]["mon"], json!({ "startTime": "09:00", "stopTime": "18:00", "active": true }));
    assert_eq!(created["scheduling"]["sat"]["active"], false);

    // No active day at all.
    refused(&app, setup.phone(json!({ "scheduling": {} })), 400, "INVALID_REQUEST", "scheduling").await;
    let all_off = json!({ "mon": { "startTime": "09:00", "stopTime": "18:00", "active": false }, "sun": { "active": false } });
    refused(&app, setup.phone(json!({ "scheduling": all_off })), 400, "INVALID_REQUEST", "scheduling").await;
    // An active day (explicitly or by default) needs both times.
    refused(
        &app,
        setup.phone(json!({ "scheduling": { "mon": { "stopTime": "18:00" } } })),
        400,
        "INVALID_REQUEST",
        "scheduling.mon.startTime",
    )
    .await;
    refused(
        &app,
        setup.phone(json!({ "scheduling": { "mon": { "startTime": "09:00", "active": true } } })),
        400,
        "INVALID_REQUEST",
        "scheduling.mon.stopTime",
    )
    .await;
    let (status, body) = app.post("/campaigns", setup.phone(json!({ "scheduling": { "mon": { "active": true } } }))).await;
    assert_error(status, &body, 400, "INVALID_REQUEST", Some("scheduling.mon.startTime"));
    let details: Vec<&str> =
        body["details"].as_array().expect("details for two violations").iter().filter_map(|d| d["field"].as_str()).collect();
    assert_eq!(details, ["scheduling.mon.startTime", "scheduling.mon.stopTime"], "{body}");
    // Unknown keys, in a day and as a day.
    refused(
        &app,
        setup.phone(json!({ "scheduling": { "mon": { "startTime": "09:00", "stopTime": "18:00", "open": true } } })),
        400,
        "INVALID_REQUEST",
        "scheduling.mon.open",
    )
    .await;
    refused(&app, setup.phone(json!({ "scheduling": { "monday": window } })), 400, "INVALID_REQUEST", "scheduling.monday").await;
    refused(
        &app,
        setup.phone(json!({ "scheduling": { "mon": { "startTime": "09:00", "stopTime": "18:00", "active": "yes" } } })),
        400,
        "INVALID_REQUEST",
        "scheduling.mon.active",
    )
    .await;
    refused(&app, setup.phone(json!({ "scheduling": "weekdays" })), 400, "INVALID_REQUEST", "scheduling").await;

    assert_eq!(count(&app).await, 3, "refused requests created nothing");
}

#[tokio::test]
async fn cycles_ranges_statuses_tags_and_mode() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    let cycles = |extra: Value| setup.phone(json!({ "cycles": super::helpers::merge(json!({ "enabled": true }), extra) }));
    let mut created_count = 0;

    let created = app.create_campaign(cycles(json!({}))).await;
    let mut expected = default_cycles();
    expected["enabled"] = json!(true);
    assert_eq!(created["cycles"], expected, "enabled with every default");
    created_count += 1;

    for (field, low, high) in [("max_iterations", 2, 12), ("cooldown_minutes", 0, 1440)] {
        for ok in [low, high] {
            assert_eq!(app.create_campaign(cycles(json!({ field: ok }))).await["cycles"][field], ok, "{field}");
            created_count += 1;
        }
        for bad in [json!(low - 1), json!(high + 1), Value::Null, json!("5")] {
            refused(&app, cycles(json!({ field: bad })), 400, "INVALID_REQUEST", &format!("cycles.{field}")).await;
        }
    }

    let every_status = [
        "queue",
        "sending",
        "sent",
        "delivered",
        "read",
        "accepted",
        "rejected",
        "voicemail",
        "answered",
        "failed",
        "retrying",
        "converted",
    ];
    let created = app.create_campaign(cycles(json!({ "filter_statuses": every_status }))).await;
    assert_eq!(created["cycles"]["filter_statuses"], json!(every_status));
    let created = app.create_campaign(cycles(json!({ "filter_statuses": [] }))).await;
    assert_eq!(created["cycles"]["filter_statuses"], json!([]));
    created_count += 2;
    for (bad, field) in [
        (json!(["pending"]), "cycles.filter_statuses[0]"),
        (json!(["converted", "Converted"]), "cycles.filter_statuses[1]"),
        (json!(["answered", "voicemail", ""]), "cycles.filter_statuses[2]"),
        (json!("converted"), "cycles.filter_statuses"),
    ] {
        refused(&app, cycles(json!({ "filter_statuses": bad })), 400, "INVALID_REQUEST", field).await;
    }

    // Tags are stored (the list shows them) but never returned in the detail response, which
    // create_campaign's schema check enforces.
    let longest_tag = "t".repeat(1000);
    let tagged = app.create_campaign(cycles(json!({ "filter_tags": ["vip", longest_tag] }))).await;
    created_count += 1;
    let (status, list) = app.get("/campaigns").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let item = list["campaigns"].as_array().expect("campaigns").iter().find(|c| c["id"] == tagged["id"]).expect("tagged campaign listed");
    assert_eq!(item["cycle_filter_tags"], json!(["vip", longest_tag]));
    for (bad, field) in [
        (json!([""]), "cycles.filter_tags[0]"),
        (json!(["vip", "t".repeat(1001)]), "cycles.filter_tags[1]"),
        (json!(["vip", 5]), "cycles.filter_tags[1]"),
    ] {
        refused(&app, cycles(json!({ "filter_tags": bad })), 400, "INVALID_REQUEST", field).await;
    }

    for bad in [json!("hourly"), json!("Cooldown"), json!("")] {
        refused(&app, cycles(json!({ "mode": bad })), 400, "INVALID_REQUEST", "cycles.mode").await;
    }
    refused(&app, cycles(json!({ "enabled": "yes" })), 400, "INVALID_REQUEST", "cycles.enabled").await;

    assert_eq!(count(&app).await, created_count, "refused requests created nothing");
}

#[tokio::test]
async fn cooldown_mode_refuses_schedule_fields() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    let week = json!({ "mon": { "startTime": "09:00", "stopTime": "12:00" } });
    for mode in [None, Some("cooldown")] {
        let block = |extra: Value| {
            let mut cycles = super::helpers::merge(json!({ "enabled": true }), extra);
            if let Some(mode) = mode {
                cycles["mode"] = json!(mode);
            }
            setup.phone(json!({ "cycles": cycles }))
        };
        refused(&app, block(json!({ "schedule": week })), 400, "SCHEDULED_MODE_ONLY", "cycles.schedule").await;
        refused(&app, block(json!({ "schedule_start_date": "2026-07-01" })), 400, "SCHEDULED_MODE_ONLY", "cycles.schedule_start_date")
            .await;
        refused(&app, block(json!({ "schedule_end_date": "2026-07-31" })), 400, "SCHEDULED_MODE_ONLY", "cycles.schedule_end_date").await;
        // Null values are the absence of a schedule: accepted.
        let created = app.create_campaign(block(json!({ "schedule": null, "schedule_start_date": null, "schedule_end_date": null }))).await;
        assert_eq!(created["cycles"]["mode"], "cooldown");
        assert_eq!(created["cycles"]["schedule"], Value::Null);
    }
    // A disabled block with scheduled-mode fields is ignored, not refused.
    let created = app
        .create_campaign(setup.phone(json!({ "cycles": { "enabled": false, "schedule": week, "schedule_start_date": "2026-07-01" } })))
        .await;
    assert_eq!(created["cycles"], default_cycles());
    assert_eq!(count(&app).await, 3, "refused requests created nothing");
}

#[tokio::test]
async fn scheduled_mode_needs_a_schedule_and_ordered_dates() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    let scheduled =
        |extra: Value| setup.phone(json!({ "cycles": super::helpers::merge(json!({ "enabled": true, "mode": "scheduled" }), extra) }));
    let week = json!({ "sat": { "startTime": "10:00", "stopTime": "12:00" } });
    let mut created_count = 0;

    let created = app
        .create_campaign(scheduled(json!({ "schedule": week, "schedule_start_date": "2026-07-01", "schedule_end_date": "2026-07-01" })))
        .await;
    created_count += 1;
    let cycles = &created["cycles"];
    assert_eq!((cycles["enabled"].clone(), cycles["mode"].clone()), (json!(true), json!("scheduled")));
    assert_eq!((cycles["schedule_start_date"].clone(), cycles["schedule_end_date"].clone()), (json!("2026-07-01"), json!("2026-07-01")));
    assert_eq!(cycles["schedule"].as_object().expect("schedule lists the week").len(), 7);
    assert_eq!(cycles["schedule"]["sat"], json!({ "startTime": "10:00", "stopTime": "12:00", "active": true }));
    assert_eq!(cycles["schedule"]["mon"]["active"], false);
    // Dates are optional, one without the other included.
    let created = app.create_campaign(scheduled(json!({ "schedule": week, "schedule_start_date": "2026-02-28" }))).await;
    assert_eq!(
        (created["cycles"]["schedule_start_date"].clone(), created["cycles"]["schedule_end_date"].clone()),
        (json!("2026-02-28"), Value::Null)
    );
    let created = app.create_campaign(scheduled(json!({ "schedule": week, "schedule_end_date": "2028-02-29" }))).await;
    assert_eq!(created["cycles"]["schedule_end_date"], "2028-02-29");
    created_count += 2;

    refused(&app, scheduled(json!({})), 400, "INVALID_REQUEST", "cycles.schedule").await;
    refused(&app, scheduled(json!({ "schedule": null })), 400, "INVALID_REQUEST", "cycles.schedule").await;
    refused(
        &app,
        scheduled(json!({ "schedule": week, "schedule_start_date": "2026-07-02", "schedule_end_date": "2026-07-01" })),
        400,
        "INVALID_REQUEST",
        "cycles.schedule_end_date",
    )
    .await;
    for bad in ["2026-13-01", "2026-02-29", "2026-7-01", "2026-07-01T00:00:00Z", "01/07/2026", ""] {
        refused(
            &app,
            scheduled(json!({ "schedule": week, "schedule_start_date": bad })),
            400,
            "INVALID_REQUEST",
            "cycles.schedule_start_date",
        )
        .await;
        refused(&app, scheduled(json!({ "schedule": week, "schedule_end_date": bad })), 400, "INVALID_REQUEST", "cycles.schedule_end_date")
            .await;
    }

    // cycles.schedule follows the rules of §2.5 under its own prefix.
    for (start, stop) in GOOD_WINDOWS {
        let created = app.create_campaign(scheduled(json!({ "schedule": { "mon": { "startTime": start, "stopTime": stop } } }))).await;
        assert_eq!(created["cycles"]["schedule"]["mon"], json!({ "startTime": start, "stopTime": stop, "active": true }));
        created_count += 1;
    }
    for (start, stop, at_fault) in BAD_WINDOWS {
        let body = scheduled(json!({ "schedule": { "mon": { "startTime": start, "stopTime": stop } } }));
        refused(&app, body, 400, "INVALID_REQUEST", &format!("cycles.schedule.mon.{at_fault}")).await;
    }
    refused(&app, scheduled(json!({ "schedule": {} })), 400, "INVALID_REQUEST", "cycles.schedule").await;
    refused(&app, scheduled(json!({ "schedule": { "sun": { "active": false } } })), 400, "INVALID_REQUEST", "cycles.schedule").await;
    refused(
        &app,
        scheduled(json!({ "schedule": { "sun": { "stopTime": "12:00" } } })),
        400,
        "INVALID_REQUEST",
        "cycles.schedule.sun.startTime",
    )
    .await;
    refused(
        &app,
        scheduled(json!({ "schedule": { "monday": { "startTime": "09:00", "stopTime": "12:00" } } })),
        400,
        "INVALID_REQUEST",
        "cycles.schedule.monday",
    )
    .await;
    refused(
        &app,
        scheduled(json!({ "schedule": { "mon": { "startTime": "09:00", "stopTime": "12:00", "open": true } } })),
        400,
        "INVALID_REQUEST",
        "cycles.schedule.mon.open",
    )
    .await;

    assert_eq!(count(&app).await, created_count, "refused requests created nothing");
}

#[tokio::test]
async fn several_violations_are_all_listed_in_details() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;

    let (status, body) = app.post("/campaigns", setup.phone(json!({ "retries": 6, "message_limit": 0 }))).await;
    assert_error(status, &body, 400, "INVALID_REQUEST", Some("retries"));
    let details = body["details"].as_array().expect("details array");
    assert_eq!(details.len(), 2, "{body}");
    assert_eq!(details[0]["field"], "retries");
    assert_eq!(details[1]["field"], "message_limit");
    assert_eq!(details[0]["message"], body["message"], "field/message describe the first violation");
    assert!(details.iter().all(|d| d["message"].as_str().is_some_and(|m| !m.is_empty())), "{body}");

    // Violations in nested blocks are listed too.
    let body = setup.phone(
        json!({ "name": " ", "timezone": "Mars/Olympus", "cycles": { "enabled": true, "max_iterations": 1, "cooldown_minutes": 1441 } }),
    );
    let (status, body) = app.post("/campaigns", body).await;
    assert_error(status, &body, 400, "INVALID_REQUEST", Some("name"));
    let fields: Vec<&str> = body["details"].as_array().expect("details array").iter().filter_map(|d| d["field"].as_str()).collect();
    for field in ["name", "timezone", "cycles.max_iterations", "cycles.cooldown_minutes"] {
        assert!(fields.contains(&field), "{field} missing from {body}");
    }

    // An empty body misses every required field.
    let (status, body) = app.post("/campaigns", json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "INVALID_REQUEST");
    let fields: Vec<&str> = body["details"].as_array().expect("details array").iter().filter_map(|d| d["field"].as_str()).collect();
    for field in ["name", "agent_id", "integration_id", "integration_type"] {
        assert!(fields.contains(&field), "{field} missing from {body}");
    }
    assert_eq!(body["field"].as_str(), fields.first().copied(), "field names the first violation: {body}");

    // One violation: details is null.
    let (status, body) = app.post("/campaigns", setup.phone(json!({ "retries": 6 }))).await;
    assert_error(status, &body, 400, "INVALID_REQUEST", Some("retries"));
    assert_eq!(body["details"], Value::Null);

    assert_eq!(count(&app).await, 0, "refused requests created nothing");
}

/// Well-formed JSON whose value has the wrong type for an enum field is a wrong-type error that
/// names the field (§0.1), not "malformed JSON". Every case is tried before failing, to list them all.
#[tokio::test]
async fn non_string_enum_values_name_their_field() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    let mut wrong = Vec::new();
    for (body, field) in [
        (setup.phone(json!({ "cycles": { "enabled": true, "filter_statuses": [3] } })), "cycles.filter_statuses[0]"),
        (setup.phone(json!({ "cycles": { "enabled": true, "filter_statuses": ["converted", null] } })), "cycles.filter_statuses[1]"),
        (setup.phone(json!({ "cycles": { "enabled": true, "mode": 1 } })), "cycles.mode"),
        (setup.phone(json!({ "cycles": { "enabled": true, "mode": ["cooldown"] } })), "cycles.mode"),
        (setup.phone(json!({ "integration_type": 5 })), "integration_type"),
        (setup.phone(json!({ "integration_type": true })), "integration_type"),
    ] {
        let (status, response) = app.post("/campaigns", body.clone()).await;
        if status != StatusCode::BAD_REQUEST || response["error"] != "INVALID_REQUEST" || response["field"] != json!(field) {
            wrong.push(format!("POST {body}\n  expected 400 INVALID_REQUEST field {field}, got {status} {response}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert_eq!(count(&app).await, 0, "refused requests created nothing");
}

/// Objects must be objects: serde would read a struct's fields from an array by position.
#[tokio::test]
async fn arrays_are_refused_where_objects_belong() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    for (extra, field) in [
        (json!({ "scheduling": [] }), "scheduling"),
        (json!({ "scheduling": { "mon": ["09:00", "18:00", true] } }), "scheduling.mon"),
        (json!({ "cycles": [true, "cooldown"] }), "cycles"),
        (json!({ "cycles": { "enabled": true, "mode": "scheduled", "schedule": [] } }), "cycles.schedule"),
    ] {
        refused(&app, setup.phone(extra), 400, "INVALID_REQUEST", field).await;
    }
    assert_eq!(count(&app).await, 0, "nothing created");
}

#[tokio::test]
async fn first_message_holds_at_most_4000_characters() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    let longest = "ñ".repeat(4000);
    assert_eq!(app.create_campaign(setup.phone(json!({ "first_message": longest }))).await["first_message"], json!(longest));
    refused(&app, setup.phone(json!({ "first_message": "ñ".repeat(4001) })), 400, "INVALID_REQUEST", "first_message").await;
    assert_eq!(count(&app).await, 1, "the refused request created nothing");
}
