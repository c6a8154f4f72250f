//! Contacts of a campaign (§3): batch add with per-item results, E.164 normalization in the
//! campaign's region, duplicates (skip/update), batch limits, structural errors, list paging and
//! filters, the contact object, retrieve, delete, and Idempotency-Key on add (§7).

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::helpers::{Setup, TestApp, assert_error, assert_matches_altur, post_with_key};

/// A phone campaign with `extra` fields; returns its id.
async fn campaign(app: &TestApp, setup: &Setup, extra: Value) -> i64 {
    app.create_campaign(setup.phone(extra)).await["id"].as_i64().expect("campaign id")
}

/// POST /campaigns/{id}/contacts; a 201 body is checked against Altur's schema.
async fn add(app: &TestApp, id: i64, body: Value) -> (StatusCode, Value) {
    let (status, body) = app.post(&format!("/campaigns/{id}/contacts"), body).await;
    if status.is_success() {
        assert_matches_altur("CampaignContactBatchResponse", &body);
    }
    (status, body)
}

/// Adds `contacts` (default `if_duplicate`), asserts 201 and returns the body.
async fn add_ok(app: &TestApp, id: i64, contacts: Value) -> Value {
    let (status, body) = add(app, id, json!({ "contacts": contacts })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["success"], true, "{body}");
    body
}

/// The id (a string in batch results) of result `index`, as an integer.
#[track_caller]
fn result_id(batch: &Value, index: usize) -> i64 {
    let id = batch["results"][index]["id"].as_str().unwrap_or_else(|| panic!("results[{index}].id is a string in {batch}"));
    id.parse().expect("numeric id")
}

/// GET /campaigns/{id}/contacts with `query` ("" or "?…"); a 200 body is checked against Altur's schema.
async fn list(app: &TestApp, id: i64, query: &str) -> (StatusCode, Value) {
    let (status, body) = app.get(&format!("/campaigns/{id}/contacts{query}")).await;
    if status.is_success() {
        assert_matches_altur("CampaignContactsResponse", &body);
    }
    (status, body)
}

async fn total_count(app: &TestApp, id: i64) -> i64 {
    let (status, body) = list(app, id, "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["total_count"].as_i64().expect("total_count")
}

/// GET /campaigns/{id}/contacts/{contact_id}; a 200 body is checked against Altur's schema.
async fn get_contact(app: &TestApp, id: i64, contact_id: &str) -> (StatusCode, Value) {
    let (status, body) = app.get(&format!("/campaigns/{id}/contacts/{contact_id}")).await;
    if status.is_success() {
        assert_matches_altur("CampaignContactDetailResponse", &body);
        assert_eq!(body["success"], true, "{body}");
    }
    (status, body)
}

/// The stored contact, asserting 200.
async fn contact(app: &TestApp, id: i64, contact_id: i64) -> Value {
    let (status, body) = get_contact(app, id, &contact_id.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["contact"].clone()
}

async fn campaign_status(app: &TestApp, id: i64) -> String {
    let (status, body) = app.get(&format!("/campaigns/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["campaign"]["status"].as_str().expect("status").to_owned()
}

/// A valid US number, distinct for every `i` below 10 000.
fn us_number(i: usize) -> String {
    format!("+1212555{i:04}")
}

#[tokio::test]
async fn a_mixed_batch_reports_every_item_in_order() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    let id = campaign(&app, &setup, json!({})).await;

    let first = add_ok(&app, id, json!([{ "contact": "+525587654321", "name": "Ana" }])).await;
    assert_eq!(first["summary"], json!({ "created": 1, "updated": 0, "skipped_duplicate": 0, "failed": 0 }));
    let existing = result_id(&first, 0);

    let batch = add_ok(
        &app,
        id,
        json!([
            { "contact": "+525512345678", "name": "Luis" },
            { "contact": "+525587654321", "name": "Ana again" },
            { "contact": "55 1234 5678", "name": "Luis again" },
            { "name": "No number" },
            { "contact": "" },
            { "contact": "12" },
            { "contact": null },
            { "contact": "   " },
            { "contact": "not a number" },
        ]),
    )
    .await;
    assert_eq!(batch["summary"], json!({ "created": 1, "updated": 0, "skipped_duplicate": 2, "failed": 6 }), "{batch}");
    let results = batch["results"].as_array().expect("results");
    assert_eq!(results.len(), 9);
    for (i, result) in results.iter().enumerate() {
        assert_eq!(result["index"], i, "{batch}");
    }
    let created = result_id(&batch, 0);
    assert!(created > existing, "ids grow: {created} after {existing}");
    assert_eq!(results[0], json!({ "index": 0, "status": "created", "id": created.to_string(), "contact": "+525512345678" }));
    // Already in the campaign (earlier batch): the existing contact's id.
    assert_eq!(results[1], json!({ "index": 1, "status": "skipped_duplicate", "id": existing.to_string(), "contact": "+525587654321" }));
    // Twice in this batch: the later item is the duplicate and carries the id just created.
    assert_eq!(results[2], json!({ "index": 2, "status": "skipped_duplicate", "id": created.to_string(), "contact": "+525512345678" }));
    for index in [3, 4, 6, 7] {
        assert_eq!(results[index], json!({ "index": index, "status": "failed", "error": "MISSING_CONTACT" }));
    }
    assert_eq!(results[5], json!({ "index": 5, "status": "failed", "contact": "12", "error": "INVALID_PHONE_NUMBER" }));
    assert_eq!(results[8], json!({ "index": 8, "status": "failed", "contact": "not a number", "error": "INVALID_PHONE_NUMBER" }));

    assert_eq!(total_count(&app, id).await, 2);
    // The skipped duplicates left the stored contacts unchanged.
    assert_eq!(contact(&app, id, existing).await["name"], "Ana");
    assert_eq!(contact(&app, id, created).await["name"], "Luis");
}

#[tokio::test]
async fn numbers_without_plus_are_read_in_the_region_of_the_campaign_timezone() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;

    // Default timezone America/Mexico_City → MX.
    let mx = campaign(&app, &setup, json!({})).await;
    let batch = add_ok(&app, mx, json!([{ "contact": "55 1234 5678" }, { "contact": "+52 55 1234 5678" }, { "contact": "+1 (415) 555-2671" }, { "contact": "81 1234 5678" }]))
            .await;
    assert_eq!(batch["results"][0]["contact"], "+525512345678");
    assert_eq!(batch["results"][0]["status"], "created");
    assert_eq!(batch["results"][1]["status"], "skipped_duplicate", "the same number written with +52: {batch}");
    assert_eq!(batch["results"][1]["contact"], "+525512345678");
    assert_eq!(batch["results"][1]["id"], batch["results"][0]["id"]);
    assert_eq!(batch["results"][2]["contact"], "+14155552671", "a + number is read as written, whatever the zone");
    assert_eq!(batch["results"][3]["contact"], "+528112345678", "a Monterrey number");
    assert_eq!(contact(&app, mx, result_id(&batch, 0)).await["contact"], "+525512345678");

    // America/New_York → US.
    let us = campaign(&app, &setup, json!({ "timezone": "America/New_York" })).await;
    let batch = add_ok(&app, us, json!([{ "contact": "(415) 555-2671" }, { "contact": "81 1234 5678" }])).await;
    assert_eq!(batch["results"][0], json!({ "index": 0, "status": "created", "id": batch["results"][0]["id"], "contact": "+14155552671" }));
    assert_eq!(batch["results"][1]["error"], "INVALID_PHONE_NUMBER", "valid in MX, but 811 is no US area code: {batch}");
    assert_eq!(batch["results"][1]["contact"], "81 1234 5678", "a failed item echoes the number as sent");

    // UTC has no region: a number needs its +.
    let utc = campaign(&app, &setup, json!({ "timezone": "UTC" })).await;
    let batch = add_ok(&app, utc, json!([{ "contact": "4155552671" }, { "contact": "+14155552671" }])).await;
    assert_eq!(batch["results"][0], json!({ "index": 0, "status": "failed", "contact": "4155552671", "error": "INVALID_PHONE_NUMBER" }));
    assert_eq!(batch["results"][1]["status"], "created");
    assert_eq!(batch["results"][1]["contact"], "+14155552671");
    assert_eq!(batch["summary"], json!({ "created": 1, "updated": 0, "skipped_duplicate": 0, "failed": 1 }));

    // A WhatsApp campaign takes phone numbers the same way.
    let wa = app.create_campaign(setup.whatsapp(json!({}))).await["id"].as_i64().expect("id");
    let batch = add_ok(&app, wa, json!([{ "contact": "55 8765 4321" }])).await;
    assert_eq!(batch["results"][0]["contact"], "+525587654321");
    assert_eq!(batch["results"][0]["status"], "created");
}

#[tokio::test]
async fn if_duplicate_update_overwrites_and_skip_leaves_the_contact_alone() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    let id = campaign(&app, &setup, json!({})).await;
    let original = json!({
        "contact": "+525512345678", "name": "Luis", "context": "VIP since 2019", "f_id": "crm-1",
        "extracted_data": { "plan": "gold" }, "tags": ["vip", "mx"]
    });
    let batch = add_ok(&app, id, json!([original])).await;
    let contact_id = result_id(&batch, 0);
    let before = contact(&app, id, contact_id).await;

    // skip (the default, and explicit) changes nothing.
    for body in [
        json!({ "contacts": [{ "contact": "55 1234 5678", "name": "Other" }] }),
        json!({ "contacts": [{ "contact": "55 1234 5678", "name": "Other" }], "if_duplicate": "skip" }),
    ] {
        let (status, batch) = add(&app, id, body).await;
        assert_eq!(status, StatusCode::CREATED, "{batch}");
        assert_eq!(batch["summary"], json!({ "created": 0, "updated": 0, "skipped_duplicate": 1, "failed": 0 }));
        assert_eq!(batch["results"][0]["id"], contact_id.to_string());
        assert_eq!(contact(&app, id, contact_id).await, before);
    }

    // update overwrites the five client fields.
    let replacement = json!({
        "contact": "+52 55 1234 5678", "name": "Luis M.", "context": "moved", "f_id": "crm-2",
        "extracted_data": { "plan": "silver", "score": 7 }, "tags": ["lead"]
    });
    let (status, batch) = add(&app, id, json!({ "contacts": [replacement], "if_duplicate": "update" })).await;
    assert_eq!(status, StatusCode::CREATED, "{batch}");
    assert_eq!(batch["summary"], json!({ "created": 0, "updated": 1, "skipped_duplicate": 0, "failed": 0 }));
    assert_eq!(batch["results"][0], json!({ "index": 0, "status": "updated", "id": contact_id.to_string(), "contact": "+525512345678" }));
    let after = contact(&app, id, contact_id).await;
    assert_eq!(after["name"], "Luis M.");
    assert_eq!(after["context"], "moved");
    assert_eq!(after["f_id"], "crm-2");
    assert_eq!(after["extracted_data"], json!({ "plan": "silver", "score": 7 }));
    assert_eq!(after["tags"], json!(["lead"]));
    assert_eq!(
        (after["id"].clone(), after["contact"].clone(), after["status"].clone()),
        (json!(contact_id), json!("+525512345678"), json!("queue"))
    );

    // Fields absent from the item are cleared (the server's documented decision).
    let (status, batch) = add(&app, id, json!({ "contacts": [{ "contact": "+525512345678" }], "if_duplicate": "update" })).await;
    assert_eq!((status, batch["results"][0]["status"].clone()), (StatusCode::CREATED, json!("updated")), "{batch}");
    let cleared = contact(&app, id, contact_id).await;
    assert_eq!(
        (&cleared["name"], &cleared["context"], &cleared["f_id"], &cleared["extracted_data"], &cleared["tags"]),
        (&Value::Null, &Value::Null, &Value::Null, &json!({}), &json!([]))
    );

    // Twice within one update batch: the first creates, the later one updates it.
    let (status, batch) = add(
        &app,
        id,
        json!({ "contacts": [{ "contact": "+525587654321", "name": "First" }, { "contact": "+525587654321", "name": "Second" }], "if_duplicate": "update" }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{batch}");
    assert_eq!(batch["summary"], json!({ "created": 1, "updated": 1, "skipped_duplicate": 0, "failed": 0 }));
    assert_eq!(batch["results"][1]["id"], batch["results"][0]["id"]);
    assert_eq!(contact(&app, id, result_id(&batch, 0)).await["name"], "Second");
    assert_eq!(total_count(&app, id).await, 2);

    // Anything but skip/update is refused, and nothing is stored.
    for bad in [json!("merge"), json!("UPDATE"), json!(1), json!(null)] {
        let (status, body) = add(&app, id, json!({ "contacts": [{ "contact": "+14155552671" }], "if_duplicate": bad })).await;
        assert_error(status, &body, 400, "INVALID_REQUEST", Some("if_duplicate"));
    }
    assert_eq!(total_count(&app, id).await, 2);
}

#[tokio::test]
async fn a_batch_holds_1_to_1000_items() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    let id = campaign(&app, &setup, json!({})).await;

    let thousand: Vec<Value> = (0..1000).map(|i| json!({ "contact": us_number(i) })).collect();
    let batch = add_ok(&app, id, json!(thousand)).await;
    assert_eq!(batch["summary"], json!({ "created": 1000, "updated": 0, "skipped_duplicate": 0, "failed": 0 }), "every number is valid");
    let results = batch["results"].as_array().expect("results");
    assert_eq!(results.len(), 1000);
    let ids: Vec<i64> = (0..1000).map(|i| result_id(&batch, i)).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids in the order added");
    assert_eq!(results[999]["contact"], us_number(999));
    assert_eq!(total_count(&app, id).await, 1000);

    // One item is the smallest batch.
    let batch = add_ok(&app, id, json!([{ "contact": "+14155552671" }])).await;
    assert_eq!(batch["summary"]["created"], 1);

    let too_many: Vec<Value> = (0..1001).map(|i| json!({ "contact": format!("+1646555{i:04}") })).collect();
    let (status, body) = add(&app, id, json!({ "contacts": too_many })).await;
    assert_error(status, &body, 400, "INVALID_REQUEST", Some("contacts"));
    assert!(body["message"].as_str().is_some_and(|m| m.contains("1000")), "the message names the limit: {body}");
    let (status, body) = add(&app, id, json!({ "contacts": [] })).await;
    assert_error(status, &body, 400, "INVALID_REQUEST", Some("contacts"));
    for bad in [json!({ "contacts": null }), json!({ "contacts": "+14155552671" }), json!({ "contacts": { "contact": "+14155552671" } })] {
        let (status, body) = add(&app, id, bad).await;
        assert_error(status, &body, 400, "INVALID_REQUEST", Some("contacts"));
    }
    assert_eq!(total_count(&app, id).await, 1001, "no refused batch stored anything");
}

#[tokio::test]
async fn a_batch_without_contacts_is_refused_naming_the_field() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    let id = campaign(&app, &setup, json!({})).await;
    for body in [json!({}), json!({ "if_duplicate": "update" })] {
        let (status, body) = add(&app, id, body).await;
        // A missing required field is one field at fault (§0.1), as on every other endpoint.
        assert_error(status, &body, 400, "INVALID_REQUEST", Some("contacts"));
    }
    assert_eq!(total_count(&app, id).await, 0);
    assert_eq!(campaign_status(&app, id).await, "pending");
}

#[tokio::test]
async fn a_structural_error_in_one_item_rejects_the_whole_batch() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    let id = campaign(&app, &setup, json!({})).await;
    let valid = |i: usize| json!({ "contact": us_number(i), "name": format!("Contact {i}") });

    let unknown_field = json!([valid(0), valid(1), valid(2), { "contact": us_number(3), "nickname": "Lu" }]);
    let wrong_type_last = json!([valid(0), valid(1), valid(2), { "contact": us_number(3), "name": 5 }]);
    let cases: Vec<(Value, &str)> = vec![
        (unknown_field, "contacts[3].nickname"),
        (wrong_type_last, "contacts[3].name"),
        (json!([valid(0), valid(1), { "contact": us_number(2), "name": 5 }]), "contacts[2].name"),
        (json!([valid(0), { "contact": us_number(1), "tags": ["ok", 7] }]), "contacts[1].tags[1]"),
        (json!([valid(0), { "contact": us_number(1), "tags": "vip" }]), "contacts[1].tags"),
        (json!([{ "contact": 5215512345678_i64 }, valid(1)]), "contacts[0].contact"),
        (json!([valid(0), { "contact": us_number(1), "extracted_data": ["x"] }]), "contacts[1].extracted_data"),
        (json!([valid(0), { "contact": us_number(1), "f_id": 42 }]), "contacts[1].f_id"),
        (json!([valid(0), { "contact": us_number(1), "context": { "a": 1 } }]), "contacts[1].context"),
        (json!([valid(0), "+14155552671"]), "contacts[1]"),
        // An array is not an object, though serde would read a struct's fields from one by position.
        (json!([valid(0), [us_number(1), "Ana"]]), "contacts[1]"),
        // Size limits (§0.3): name, context, f_id and each tag at most 1,000 characters, at
        // most 50 tags, extracted_data at most 16 KiB of compact JSON nested at most 32 levels.
        (json!([valid(0), { "contact": us_number(1), "name": "é".repeat(1001) }]), "contacts[1].name"),
        (json!([valid(0), { "contact": us_number(1), "context": "x".repeat(1001) }]), "contacts[1].context"),
        (json!([valid(0), { "contact": us_number(1), "f_id": "x".repeat(1001) }]), "contacts[1].f_id"),
        (json!([valid(0), { "contact": us_number(1), "tags": ["vip", "x".repeat(1001)] }]), "contacts[1].tags[1]"),
        (json!([valid(0), { "contact": us_number(1), "tags": (0..51).map(|i| format!("t{i}")).collect::<Vec<_>>() }]), "contacts[1].tags"),
        (json!([valid(0), { "contact": us_number(1), "tags": ["vip", "  "] }]), "contacts[1].tags[1]"),
        (json!([valid(0), { "contact": us_number(1), "extracted_data": data_of_bytes(16 * 1024 + 1) }]), "contacts[1].extracted_data"),
        (json!([valid(0), { "contact": us_number(1), "extracted_data": nested(33) }]), "contacts[1].extracted_data"),
    ];

    for (contacts, field) in cases {
        let (status, body) = add(&app, id, json!({ "contacts": contacts })).await;
        assert_error(status, &body, 400, "INVALID_REQUEST", Some(field));
    }
    assert_eq!(total_count(&app, id).await, 0, "nothing stored");
    assert_eq!(campaign_status(&app, id).await, "pending");

    // The accepted edges of the same rules.
    let batch = add_ok(
        &app,
        id,
        json!([
            { "contact": us_number(0), "name": "é".repeat(1000), "tags": [], "extracted_data": {}, "f_id": null, "context": null },
            { "contact": us_number(1), "name": null, "tags": null, "extracted_data": null },
            { "contact": us_number(2), "context": "x".repeat(1000), "f_id": "f".repeat(1000),
              "tags": (0..50).map(|i| format!("{i}{}", "t".repeat(990))).collect::<Vec<_>>(),
              "extracted_data": data_of_bytes(16 * 1024) },
            { "contact": us_number(3), "extracted_data": nested(32) },
        ]),
    )
    .await;
    assert_eq!(batch["summary"]["created"], 4, "{batch}");
    let stored = contact(&app, id, result_id(&batch, 0)).await;
    assert_eq!(stored["name"], "é".repeat(1000));
    let stored = contact(&app, id, result_id(&batch, 1)).await;
    assert_eq!((stored.get("name"), &stored["tags"], &stored["extracted_data"]), (None, &json!([]), &json!({})));
    let stored = contact(&app, id, result_id(&batch, 2)).await;
    assert_eq!((stored["tags"].as_array().map(Vec::len), &stored["extracted_data"]), (Some(50), &data_of_bytes(16 * 1024)));
    assert_eq!(contact(&app, id, result_id(&batch, 3)).await["extracted_data"], nested(32));
}

/// An `extracted_data` object of exactly `bytes` bytes as compact JSON.
fn data_of_bytes(bytes: usize) -> Value {
    // `{"k":"…"}` is 8 bytes around the string.
    json!({ "k": "x".repeat(bytes - 8) })
}

/// An `extracted_data` object nested `levels` deep, itself being the first level.
fn nested(levels: usize) -> Value {
    (1..levels).fold(json!({ "leaf": 1 }), |inner, _| json!({ "n": inner }))
}

#[tokio::test]
async fn unknown_campaigns_and_other_organizations_get_404() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    let id = campaign(&app, &setup, json!({})).await;
    let batch = add_ok(&app, id, json!([{ "contact": "+14155552671" }])).await;
    let contact_id = result_id(&batch, 0);
    let body = json!({ "contacts": [{ "contact": "+525512345678" }] });

    let missing = id + 1000;
    let (status, err) = add(&app, missing, body.clone()).await;
    assert_error(status, &err, 404, "NOT_FOUND", None);
    let (status, err) = list(&app, missing, "").await;
    assert_error(status, &err, 404, "NOT_FOUND", None);
    let (status, err) = get_contact(&app, missing, &contact_id.to_string()).await;
    assert_error(status, &err, 404, "NOT_FOUND", None);
    let (status, err) = app.call(Method::DELETE, &format!("/campaigns/{missing}/contacts/{contact_id}"), None).await;
    assert_error(status, &err, 404, "NOT_FOUND", None);

    // Another organization sees exactly what a missing campaign shows.
    let globex = app.new_key("globex").await;
    let calls = [
        (Method::POST, format!("/campaigns/{id}/contacts"), Some(body.clone())),
        (Method::GET, format!("/campaigns/{id}/contacts"), None),
        (Method::GET, format!("/campaigns/{id}/contacts/{contact_id}"), None),
        (Method::DELETE, format!("/campaigns/{id}/contacts/{contact_id}"), None),
    ];
    for (method, path, request) in calls {
        let (status, err) = app.call_with_key(method.clone(), &path, request, Some(&globex)).await;
        assert_error(status, &err, 404, "NOT_FOUND", None);
        assert!(!err.to_string().contains("+14155552671"), "{method} {path} leaks nothing: {err}");
    }
    assert_eq!(total_count(&app, id).await, 1, "the other organization stored and deleted nothing");
    assert_eq!(contact(&app, id, contact_id).await["contact"], "+14155552671");

    // A non-numeric campaign id is a bad parameter.
    let (status, err) = app.post("/campaigns/abc/contacts", body).await;
    assert_error(status, &err, 400, "INVALID_REQUEST", Some("id"));
}

#[tokio::test]
async fn the_first_created_contact_makes_a_pending_campaign_ready() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    let id = campaign(&app, &setup, json!({})).await;
    assert_eq!(campaign_status(&app, id).await, "pending");

    // A batch where every item fails creates nothing and leaves it pending.
    let batch = add_ok(&app, id, json!([{ "contact": "12" }, { "contact": "" }, { "name": "x" }])).await;
    assert_eq!(batch["summary"], json!({ "created": 0, "updated": 0, "skipped_duplicate": 0, "failed": 3 }));
    assert_eq!(campaign_status(&app, id).await, "pending");
    assert_eq!(total_count(&app, id).await, 0);

    let batch = add_ok(&app, id, json!([{ "contact": "12" }, { "contact": "+525512345678" }])).await;
    assert_eq!(batch["summary"], json!({ "created": 1, "updated": 0, "skipped_duplicate": 0, "failed": 1 }));
    assert_eq!(campaign_status(&app, id).await, "ready");
    // More contacts keep it ready.
    add_ok(&app, id, json!([{ "contact": "+525587654321" }])).await;
    assert_eq!(campaign_status(&app, id).await, "ready");

    // An active campaign takes contacts and stays active.
    let active = campaign(&app, &setup, json!({})).await;
    let (status, body) = app.post(&format!("/campaigns/{active}/activate"), json!({})).await;
    assert_eq!((status, body["campaign"]["status"].clone()), (StatusCode::OK, json!("active")), "{body}");
    let batch = add_ok(&app, active, json!([{ "contact": "+525512345678", "name": "Late joiner" }])).await;
    assert_eq!(batch["summary"]["created"], 1, "{batch}");
    assert_eq!(campaign_status(&app, active).await, "active");
    assert_eq!(total_count(&app, active).await, 1);

    // So does a paused (inactive) one.
    let (status, _) = app.post(&format!("/campaigns/{active}/pause"), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let batch = add_ok(&app, active, json!([{ "contact": "+525587654321" }])).await;
    assert_eq!(batch["summary"]["created"], 1, "{batch}");
    assert_eq!(campaign_status(&app, active).await, "inactive");
}

#[tokio::test]
async fn the_contact_object_has_every_field_with_its_defaults() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    let id = campaign(&app, &setup, json!({})).await;
    let batch = add_ok(
        &app,
        id,
        json!([
            { "contact": "55 1234 5678", "name": "Luis", "context": "Asked for a call back", "f_id": "crm-77",
              "extracted_data": { "plan": "gold", "nested": { "n": 1 } }, "tags": ["vip", "mx", "vip"] },
            { "contact": "+525587654321" },
        ]),
    )
    .await;
    let full = result_id(&batch, 0);
    let bare = result_id(&batch, 1);

    let (status, body) = get_contact(&app, id, &full.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({ "success": true, "contact": {
            "id": full, "f_id": "crm-77", "name": "Luis", "contact": "+525512345678", "status": "queue",
            "context": "Asked for a call back", "retries": 0, "failed_retries": 0, "has_follow_up": false,
            "call_count": 0, "billed_duration": 0,
            "extracted_data": { "plan": "gold", "nested": { "n": 1 } }, "tags": ["vip", "mx"], "failed_reason": null,
            "timezone": "America/Mexico_City", "timezone_source": "number"
        } }),
        "every field, exactly; duplicate tags collapsed; no call yet, so no last_call_at"
    );
    assert_eq!(
        contact(&app, id, bare).await,
        json!({
            "id": bare, "contact": "+525587654321", "status": "queue",
            "retries": 0, "failed_retries": 0, "has_follow_up": false,
            "call_count": 0, "billed_duration": 0, "extracted_data": {}, "tags": [], "failed_reason": null,
            "timezone": "America/Mexico_City", "timezone_source": "number"
        }),
        "absent f_id, name, context and last_call_at are left out (§0.2), extracted_data {{}} and tags []"
    );

    // The list shows the same objects.
    let (status, page) = list(&app, id, "").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["contacts"], json!([contact(&app, id, full).await, contact(&app, id, bare).await]));

    // Unknown contact, another campaign's contact, a non-numeric id.
    let (status, body) = get_contact(&app, id, &(bare + 100).to_string()).await;
    assert_error(status, &body, 404, "CONTACT_NOT_FOUND", None);
    let other = campaign(&app, &setup, json!({})).await;
    let elsewhere = result_id(&add_ok(&app, other, json!([{ "contact": "+14155552671" }])).await, 0);
    let (status, body) = get_contact(&app, id, &elsewhere.to_string()).await;
    assert_error(status, &body, 404, "CONTACT_NOT_FOUND", None);
    let (status, body) = get_contact(&app, other, &full.to_string()).await;
    assert_error(status, &body, 404, "CONTACT_NOT_FOUND", None);
    for bad in ["abc", "1.5", "-3"] {
        let (status, body) = get_contact(&app, id, bad).await;
        assert_error(status, &body, 400, "INVALID_REQUEST", Some("contact_id"));
    }
}

#[tokio::test]
async fn list_filters_and_query_parameters_are_checked() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    let id = campaign(&app, &setup, json!({})).await;

    // An empty campaign lists nothing.
    let (status, page) = list(&app, id, "").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(
        page,
        json!({ "total_count": 0, "contacts": [],
            "pagination": { "has_next": false, "has_previous": false } })
    );

    let contacts: Vec<Value> = (0..5).map(|i| json!({ "contact": us_number(i) })).collect();
    add_ok(&app, id, json!(contacts)).await;

    let (status, page) = list(&app, id, "?status=queue").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["total_count"], 5);
    assert_eq!(page["contacts"].as_array().expect("contacts").len(), 5);
    for status_name in ["answered", "failed", "converted", "sent"] {
        let (status, page) = list(&app, id, &format!("?status={status_name}")).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!((&page["total_count"], &page["contacts"]), (&json!(0), &json!([])), "status={status_name}");
        assert_eq!(page["pagination"]["has_next"], false);
    }

    // pageSize 1..=100.
    for (query, count) in [("?pageSize=1", 1), ("?pageSize=100", 5), ("?pageSize=100&pageIndex=0&status=queue", 5)] {
        let (status, page) = list(&app, id, query).await;
        assert_eq!(status, StatusCode::OK, "{query}: {page}");
        assert_eq!(page["contacts"].as_array().expect("contacts").len(), count, "{query}");
    }
    // pageIndex 0..=25000: the last one is an empty page.
    let (status, page) = list(&app, id, "?pageIndex=25000").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(
        page,
        json!({ "total_count": 5, "contacts": [],
            "pagination": { "has_next": false, "has_previous": true, "previous_page": 24999 } })
    );

    for (query, field) in [
        ("?status=bogus", "status"),
        ("?status=QUEUE", "status"),
        ("?status=", "status"),
        ("?pageSize=0", "pageSize"),
        ("?pageSize=101", "pageSize"),
        ("?pageSize=ten", "pageSize"),
        ("?pageSize=-1", "pageSize"),
        ("?pageIndex=25001", "pageIndex"),
        ("?pageIndex=-1", "pageIndex"),
        ("?pageIndex=1.5", "pageIndex"),
        ("?page=2", "page"),
        ("?page_size=10", "page_size"),
        ("?cursor=abc", "cursor"),
        ("?pageSize=10&pageSize=20", "pageSize"),
    ] {
        let (status, body) = list(&app, id, query).await;
        assert_error(status, &body, 400, "INVALID_REQUEST", Some(field));
    }
}

#[tokio::test]
async fn paging_covers_every_contact_once_oldest_first() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    let id = campaign(&app, &setup, json!({})).await;

    // 30 contacts over three batches, in a known order.
    let mut added: Vec<(i64, String)> = Vec::new();
    for range in [0..10, 10..25, 25..30] {
        let contacts: Vec<Value> = range.clone().map(|i| json!({ "contact": format!("+52551234{i:04}") })).collect();
        let batch = add_ok(&app, id, json!(contacts)).await;
        assert_eq!(batch["summary"]["created"], range.len(), "{batch}");
        for (i, n) in range.enumerate() {
            added.push((result_id(&batch, i), format!("+52551234{n:04}")));
        }
    }
    assert!(added.windows(2).all(|w| w[0].0 < w[1].0), "ids ascend in the order added");

    let mut seen: Vec<(i64, String)> = Vec::new();
    for index in 0..5u32 {
        let (status, page) = list(&app, id, &format!("?pageSize=7&pageIndex={index}")).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(page["total_count"], 30, "page {index}");
        let contacts = page["contacts"].as_array().expect("contacts");
        assert_eq!(contacts.len(), if index < 4 { 7 } else { 2 }, "page {index}");
        for c in contacts {
            seen.push((c["id"].as_i64().expect("id"), c["contact"].as_str().expect("contact").to_owned()));
        }
        let last = index == 4;
        // Links to no page are left out (§0.2).
        let mut expected = json!({ "has_next": !last, "has_previous": index > 0 });
        if !last {
            expected["next_page"] = json!(index + 1);
        }
        if index > 0 {
            expected["previous_page"] = json!(index - 1);
        }
        assert_eq!(page["pagination"], expected, "page {index}");
    }
    assert_eq!(seen, added, "every contact exactly once, oldest first");

    // Past the end: empty, no next page.
    let (status, page) = list(&app, id, "?pageSize=7&pageIndex=5").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["contacts"], json!([]));
    assert_eq!(page["pagination"], json!({ "has_next": false, "has_previous": true, "previous_page": 4 }));
    // An exact fit has no next page either.
    let (_, page) = list(&app, id, "?pageSize=10&pageIndex=2").await;
    assert_eq!(page["contacts"].as_array().expect("contacts").len(), 10);
    assert_eq!(page["pagination"]["has_next"], false);
    // The default page size (50) shows all 30.
    let (_, page) = list(&app, id, "").await;
    assert_eq!(page["contacts"].as_array().expect("contacts").len(), 30);
    assert_eq!(page["pagination"]["has_next"], false);
}

#[tokio::test]
async fn deleting_a_queued_contact_frees_its_number() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    let id = campaign(&app, &setup, json!({})).await;
    let batch = add_ok(&app, id, json!([{ "contact": "+525512345678", "name": "Luis" }, { "contact": "+525587654321" }])).await;
    let luis = result_id(&batch, 0);
    let other = result_id(&batch, 1);
    assert_eq!(total_count(&app, id).await, 2);

    let path = format!("/campaigns/{id}/contacts/{luis}");
    let (status, body) = app.call(Method::DELETE, &path, None).await;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, Value::Null));
    let (status, body) = get_contact(&app, id, &luis.to_string()).await;
    assert_error(status, &body, 404, "CONTACT_NOT_FOUND", None);
    assert_eq!(total_count(&app, id).await, 1);
    let (_, page) = list(&app, id, "?status=queue").await;
    assert_eq!(page["total_count"], 1, "the per-status count went down too");
    assert_eq!(page["contacts"][0]["id"], other);

    // A second delete, an unknown id, another campaign's contact, a bad id.
    let (status, body) = app.call(Method::DELETE, &path, None).await;
    assert_error(status, &body, 404, "CONTACT_NOT_FOUND", None);
    let second = campaign(&app, &setup, json!({})).await;
    let (status, body) = app.call(Method::DELETE, &format!("/campaigns/{second}/contacts/{other}"), None).await;
    assert_error(status, &body, 404, "CONTACT_NOT_FOUND", None);
    let (status, body) = app.call(Method::DELETE, &format!("/campaigns/{id}/contacts/abc"), None).await;
    assert_error(status, &body, 400, "INVALID_REQUEST", Some("contact_id"));
    assert_eq!(total_count(&app, id).await, 1);

    // The number can be added again: a new contact, not a duplicate.
    let batch = add_ok(&app, id, json!([{ "contact": "55 1234 5678" }])).await;
    assert_eq!(batch["summary"], json!({ "created": 1, "updated": 0, "skipped_duplicate": 0, "failed": 0 }));
    let again = result_id(&batch, 0);
    assert!(again > other, "a fresh id: {again}");
    let stored = contact(&app, id, again).await;
    assert_eq!((&stored["contact"], &stored["name"]), (&json!("+525512345678"), &Value::Null));
    assert_eq!(total_count(&app, id).await, 2);

    // Deleting every contact leaves an empty list; the campaign keeps its status.
    for contact_id in [other, again] {
        let (status, _) = app.call(Method::DELETE, &format!("/campaigns/{id}/contacts/{contact_id}"), None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
    }
    let (_, page) = list(&app, id, "").await;
    assert_eq!((&page["total_count"], &page["contacts"]), (&json!(0), &json!([])));
}

#[tokio::test]
async fn a_retried_batch_with_the_same_idempotency_key_is_replayed() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    let id = campaign(&app, &setup, json!({})).await;
    let path = format!("/campaigns/{id}/contacts");
    let body = json!({ "contacts": [{ "contact": "+525512345678", "name": "Luis" }, { "contact": "+525587654321" }, { "contact": "12" }] });

    let first = post_with_key(&app, "batch-2026-06-08-001", &app.key, &path, &body).await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert!(!first.replayed);
    let first_json = first.json();
    assert_matches_altur("CampaignContactBatchResponse", &first_json);
    assert_eq!(first_json["summary"], json!({ "created": 2, "updated": 0, "skipped_duplicate": 0, "failed": 1 }));

    // The retry gets the same answer (not "skipped_duplicate" twice) and stores nothing.
    let second = post_with_key(&app, "batch-2026-06-08-001", &app.key, &path, &body).await;
    assert_eq!(second.status, StatusCode::CREATED);
    assert!(second.replayed, "Idempotent-Replayed: true");
    assert_eq!(second.body, first.body, "byte-identical replay");
    assert_eq!(total_count(&app, id).await, 2);

    // The same body without the key runs afresh: both numbers are duplicates now.
    let plain = add_ok(&app, id, body["contacts"].clone()).await;
    assert_eq!(plain["summary"], json!({ "created": 0, "updated": 0, "skipped_duplicate": 2, "failed": 1 }));

    // Same key, another body → 422, nothing stored.
    let other = json!({ "contacts": [{ "contact": "+14155552671" }] });
    let reused = post_with_key(&app, "batch-2026-06-08-001", &app.key, &path, &other).await;
    assert_error(reused.status, &reused.json(), 422, "IDEMPOTENCY_KEY_REUSED", Some("Idempotency-Key"));
    assert_eq!(total_count(&app, id).await, 2);

    // A batch refused on input stores nothing under its key: the corrected one may reuse it.
    let refused =
        post_with_key(&app, "batch-2026-06-08-002", &app.key, &path, &json!({ "contacts": [{ "contact": "+14155552671", "nick": "x" }] }))
            .await;
    assert_error(refused.status, &refused.json(), 400, "INVALID_REQUEST", Some("contacts[0].nick"));
    let corrected = post_with_key(&app, "batch-2026-06-08-002", &app.key, &path, &other).await;
    assert_eq!(corrected.status, StatusCode::CREATED);
    assert!(!corrected.replayed);
    assert_eq!(corrected.json()["summary"]["created"], 1);
    assert_eq!(total_count(&app, id).await, 3);
}
