//! The do-not-contact list (§12.1) through HTTP: batch add with per-entry results and its
//! bounds, the list with its filters and paging, removal by channel and of every entry, each
//! number's history with its sources, the opt-out keywords, and `opt_out: true` on a signed
//! attempt event. The inbound WhatsApp reply path is in `providers_whatsapp.rs`.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::engine::Harness;
use super::helpers::{TestApp, assert_error};

const ANA: &str = "+525512345678";
const BETO: &str = "+525587654321";

async fn add(app: &TestApp, body: Value) -> Value {
    let (status, body) = app.post("/dnc", body).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

async fn list(app: &TestApp, query: &str) -> Value {
    let (status, body) = app.get(&format!("/dnc{query}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn history(app: &TestApp, contact: &str) -> Vec<Value> {
    let (status, body) = app.get(&format!("/dnc/{}/history", contact.replace('+', "%2B"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["history"].as_array().expect("history").clone()
}

async fn delete(app: &TestApp, contact: &str, query: &str) -> (StatusCode, Value) {
    app.call(Method::DELETE, &format!("/dnc/{}{query}", contact.replace('+', "%2B")), None).await
}

fn entries(count: usize) -> Vec<Value> {
    (0..count).map(|i| json!({ "contact": format!("+5255{:08}", 30_000_000 + i) })).collect()
}

#[tokio::test]
async fn a_batch_gives_each_entry_its_result_normalised_and_existing_ones_change_nothing() {
    let Some(app) = TestApp::spawn().await else { return };
    let body = add(
        &app,
        json!({ "entries": [
            { "contact": "+52 55 1234 5678", "reason": "asked on a call" },
            { "contact": ANA, "channel": "whatsapp" },
            { "contact": "+525512345678" },
            { "contact": "12" },
            {},
            { "contact": "(415) 555-2671", "channel": "phone_call" },
        ] }),
    )
    .await;
    assert_eq!(body["success"], true);
    assert_eq!(body["summary"], json!({ "created": 3, "existing": 1, "failed": 2 }));
    let results = body["results"].as_array().expect("results");
    let seen: Vec<(&Value, &Value, &Value, &Value)> =
        results.iter().map(|r| (&r["status"], &r["contact"], &r["channel"], &r["error"])).collect();
    assert_eq!(
        seen,
        [
            (&json!("created"), &json!(ANA), &json!("all"), &Value::Null),
            (&json!("created"), &json!(ANA), &json!("whatsapp"), &Value::Null),
            (&json!("existing"), &json!(ANA), &json!("all"), &Value::Null),
            (&json!("failed"), &json!("12"), &json!("all"), &json!("INVALID_PHONE_NUMBER")),
            (&json!("failed"), &Value::Null, &json!("all"), &json!("MISSING_CONTACT")),
            // No campaign yet: numbers without + are read in the US.
            (&json!("created"), &json!("+14155552671"), &json!("phone_call"), &Value::Null),
        ]
    );
    assert!(results.iter().enumerate().all(|(i, r)| r["index"] == i));

    // Again: every valid entry exists, nothing is added, and no history row is written.
    let again = add(&app, json!({ "entries": [{ "contact": ANA, "reason": "other" }, { "contact": ANA, "channel": "whatsapp" }] })).await;
    assert_eq!(again["summary"], json!({ "created": 0, "existing": 2, "failed": 0 }));
    assert_eq!(list(&app, "").await["total_count"], 3);
    let ana = history(&app, ANA).await;
    assert_eq!(ana.len(), 2, "{ana:?}");
    assert_eq!(ana[0]["reason"], "asked on a call");
}

#[tokio::test]
async fn numbers_without_plus_are_read_in_the_region_given_or_the_first_campaigns() {
    let Some(app) = TestApp::spawn().await else { return };
    let body = add(&app, json!({ "entries": [{ "contact": "55 1234 5678" }], "region": "mx" })).await;
    assert_eq!(body["results"][0]["contact"], ANA);
    for region in ["MEX", "ZZ", "1", ""] {
        let (status, err) = app.post("/dnc", json!({ "entries": [{ "contact": BETO }], "region": region })).await;
        assert_error(status, &err, 400, "INVALID_REQUEST", Some("region"));
    }
    // Once the organization has a campaign in Mexico City, its region is the default.
    let setup = app.setup().await;
    app.create_campaign(setup.phone(json!({ "timezone": "America/Mexico_City" }))).await;
    let body = add(&app, json!({ "entries": [{ "contact": "55 8765 4321" }] })).await;
    assert_eq!(body["results"][0]["contact"], BETO);
}

#[tokio::test]
async fn a_structural_fault_refuses_the_whole_batch_and_stores_nothing() {
    let Some(app) = TestApp::spawn().await else { return };
    let cases = [
        (json!({ "entries": [{ "contact": ANA }, { "contact": BETO, "channel": "sms" }] }), "entries[1].channel"),
        (json!({ "entries": [{ "contact": ANA, "name": "Ana" }] }), "entries[0].name"),
        (json!({ "entries": [{ "contact": 5255 }] }), "entries[0].contact"),
        (json!({ "entries": [{ "contact": ANA, "reason": "r".repeat(1001) }] }), "entries[0].reason"),
        (json!({ "entries": [] }), "entries"),
        (json!({ "entries": entries(1001) }), "entries"),
        (json!({ "entries": [{ "contact": ANA }], "extra": true }), "extra"),
        (json!({}), "entries"),
    ];
    for (body, field) in cases {
        let (status, err) = app.post("/dnc", body).await;
        assert_error(status, &err, 400, "INVALID_REQUEST", Some(field));
    }
    assert_eq!(list(&app, "").await["total_count"], 0);
    assert!(history(&app, ANA).await.is_empty());

    // The edges accepted: one entry, 1000 entries, a reason of 1000 characters.
    let one = add(&app, json!({ "entries": [{ "contact": ANA, "reason": "r".repeat(1000) }] })).await;
    assert_eq!(one["summary"]["created"], 1);
    let thousand = add(&app, json!({ "entries": entries(1000) })).await;
    assert_eq!(thousand["summary"]["created"], 1000);
    assert_eq!(list(&app, "?pageSize=1").await["total_count"], 1001);
}

#[tokio::test]
async fn the_list_is_newest_first_filtered_by_number_and_stored_channel_and_paged() {
    let Some(app) = TestApp::spawn().await else { return };
    add(&app, json!({ "entries": [{ "contact": ANA, "channel": "phone_call", "reason": "r1" }, { "contact": BETO }] })).await;
    add(&app, json!({ "entries": [{ "contact": ANA, "channel": "whatsapp" }] })).await;

    let all = list(&app, "").await;
    assert_eq!(all["success"], true);
    assert_eq!(all["total_count"], 3);
    let shown: Vec<(&Value, &Value)> = all["entries"].as_array().expect("entries").iter().map(|e| (&e["contact"], &e["channel"])).collect();
    assert_eq!(shown, [(&json!(ANA), &json!("whatsapp")), (&json!(BETO), &json!("all")), (&json!(ANA), &json!("phone_call"))]);
    let oldest = &all["entries"][2];
    assert_eq!((&oldest["reason"], &oldest["source"]), (&json!("r1"), &json!("api")));
    assert_eq!(oldest["created_at"], "2026-06-08T18:00:00Z");
    assert_eq!(all["entries"][1]["reason"], Value::Null);

    let ana = list(&app, "?contact=%2B52%2055%201234%205678").await;
    assert_eq!(ana["total_count"], 2);
    let whatsapp = list(&app, &format!("?contact={}&channel=whatsapp", ANA.replace('+', "%2B"))).await;
    assert_eq!(whatsapp["total_count"], 1);
    // `all` filters on the stored value: only entries stored for every channel.
    let every = list(&app, "?channel=all").await;
    assert_eq!((&every["total_count"], &every["entries"][0]["contact"]), (&json!(1), &json!(BETO)));

    let page = list(&app, "?pageSize=2&pageIndex=1").await;
    assert_eq!(page["entries"].as_array().map(Vec::len), Some(1));
    assert_eq!(page["pagination"]["has_previous"], true);
    assert_eq!(page["pagination"]["has_next"], false);
    let first = list(&app, "?pageSize=2").await;
    assert_eq!((&first["pagination"]["has_next"], &first["pagination"]["next_page"]), (&json!(true), &json!(1)));

    for (query, field) in [
        ("?contact=12", "contact"),
        ("?channel=sms", "channel"),
        ("?pageSize=0", "pageSize"),
        ("?pageSize=101", "pageSize"),
        ("?pageIndex=25001", "pageIndex"),
        ("?number=1", "number"),
    ] {
        let (status, err) = app.get(&format!("/dnc{query}")).await;
        assert_error(status, &err, 400, "INVALID_REQUEST", Some(field));
    }
    assert_eq!(list(&app, "?pageSize=100&pageIndex=25000").await["entries"], json!([]));
}

#[tokio::test]
async fn delete_removes_one_channel_or_every_entry_and_404s_when_none() {
    let Some(app) = TestApp::spawn().await else { return };
    add(
        &app,
        json!({ "entries": [{ "contact": ANA, "channel": "phone_call", "reason": "r1" }, { "contact": ANA, "channel": "whatsapp" },
        { "contact": ANA }] }),
    )
    .await;

    let (status, _) = delete(&app, ANA, "?channel=whatsapp").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(list(&app, "").await["total_count"], 2);
    let (status, err) = delete(&app, ANA, "?channel=whatsapp").await;
    assert_error(status, &err, 404, "NOT_FOUND", None);
    let (status, err) = delete(&app, ANA, "?channel=sms").await;
    assert_error(status, &err, 400, "INVALID_REQUEST", Some("channel"));
    let (status, err) = delete(&app, "12", "").await;
    assert_error(status, &err, 400, "INVALID_REQUEST", Some("contact"));

    // Without a channel (or with `all`): every entry of the number.
    let (status, _) = delete(&app, "+52 55 1234 5678", "").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(list(&app, "").await["total_count"], 0);
    let (status, err) = delete(&app, ANA, "?channel=all").await;
    assert_error(status, &err, 404, "NOT_FOUND", None);

    let changes = history(&app, ANA).await;
    let seen: Vec<(&Value, &Value)> = changes.iter().map(|c| (&c["action"], &c["channel"])).collect();
    assert_eq!(
        seen,
        [
            (&json!("added"), &json!("phone_call")),
            (&json!("added"), &json!("whatsapp")),
            (&json!("added"), &json!("all")),
            (&json!("removed"), &json!("whatsapp")),
            (&json!("removed"), &json!("phone_call")),
            (&json!("removed"), &json!("all")),
        ]
    );
    assert_eq!(changes[4]["reason"], "r1", "a removal keeps the removed entry's reason");
    let prefix = &app.key[3..11];
    assert!(changes.iter().all(|c| c["source"] == "api" && c["key_prefix"] == prefix), "{changes:?}");
    assert!(changes.iter().all(|c| c["at"] == "2026-06-08T18:00:00Z"));
    // A number never listed has an empty history.
    assert!(history(&app, BETO).await.is_empty());
}

#[tokio::test]
async fn lists_are_per_organization() {
    let Some(app) = TestApp::spawn().await else { return };
    add(&app, json!({ "entries": [{ "contact": ANA }] })).await;
    let other = app.new_key("globex").await;
    let (status, body) = app.call_with_key(Method::GET, "/dnc", None, Some(&other)).await;
    assert_eq!((status, &body["total_count"]), (StatusCode::OK, &json!(0)));
    let (status, _) = app.call_with_key(Method::DELETE, &format!("/dnc/{}", ANA.replace('+', "%2B")), None, Some(&other)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, body) = app.call_with_key(Method::GET, &format!("/dnc/{}/history", ANA.replace('+', "%2B")), None, Some(&other)).await;
    assert_eq!(body["history"], json!([]));
}

#[tokio::test]
async fn opt_out_keywords_default_and_are_replaced_within_bounds() {
    let Some(app) = TestApp::spawn().await else { return };
    let (status, body) = app.get("/settings/opt-out-keywords").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({ "success": true, "keywords": ["STOP", "BAJA", "ALTO", "CANCELAR", "PARAR", "UNSUBSCRIBE"] }));

    let put = |keywords: Value| app.call(Method::PUT, "/settings/opt-out-keywords", Some(json!({ "keywords": keywords })));
    let (status, body) = put(json!([" Basta ", "BASTA", "básta", "x"])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["keywords"], json!(["Basta", "x"]), "trimmed, and repeats once folded dropped");
    assert_eq!(app.get("/settings/opt-out-keywords").await.1["keywords"], json!(["Basta", "x"]));

    let fifty: Vec<String> = (0..50).map(|i| format!("k{i}")).collect();
    assert_eq!(put(json!(fifty)).await.1["keywords"].as_array().map(Vec::len), Some(50));
    let forty = "k".repeat(40);
    assert_eq!(put(json!([forty])).await.1["keywords"], json!([forty]));

    let fifty_one: Vec<String> = (0..51).map(|i| format!("k{i}")).collect();
    for (keywords, field) in [
        (json!([]), "keywords"),
        (json!(fifty_one), "keywords"),
        (json!(["ok", "k".repeat(41)]), "keywords[1]"),
        (json!(["  "]), "keywords[0]"),
    ] {
        let (status, err) = put(keywords).await;
        assert_error(status, &err, 400, "INVALID_REQUEST", Some(field));
    }
    let (status, err) = app.call(Method::PUT, "/settings/opt-out-keywords", Some(json!({ "keywords": ["a"], "more": 1 }))).await;
    assert_error(status, &err, 400, "INVALID_REQUEST", Some("more"));
    assert_eq!(app.get("/settings/opt-out-keywords").await.1["keywords"], json!([forty]), "nothing refused was stored");
}

#[tokio::test]
async fn an_event_with_opt_out_lists_the_number_for_the_attempts_channel_and_applies_as_usual() {
    let Some(h) = Harness::webhook("phone_call").await else { return };
    let (id, c) = h.start(json!({}), 2).await;
    assert_eq!(h.claims().await, 2);
    let first = h.attempt_of(id, c[0]).await;
    let number = h.contact(id, c[0]).await["contact"].as_str().expect("number").to_owned();
    h.event_ok(&first, "ended", json!({ "answered_by": "human", "opt_out": true })).await;
    assert_eq!(h.contact(id, c[0]).await["status"], "answered");
    // A repeat adds nothing more.
    h.event_ok(&first, "ended", json!({ "answered_by": "human", "opt_out": true })).await;

    let listed = list(&h.app, "").await;
    assert_eq!(listed["total_count"], 1);
    let entry = &listed["entries"][0];
    assert_eq!((&entry["contact"], &entry["channel"], &entry["source"]), (&json!(number), &json!("phone_call"), &json!("provider")));
    let changes = history(&h.app, &number).await;
    assert_eq!(changes.len(), 1);
    assert_eq!((&changes[0]["source"], &changes[0]["key_prefix"]), (&json!("provider"), &Value::Null));

    // `opt_out: false` (and none) lists nothing; a non-boolean is refused.
    let second = h.attempt_of(id, c[1]).await;
    let (status, err) = h.event(&second, "ended", json!({ "opt_out": "yes" })).await;
    assert_error(status, &err, 400, "INVALID_REQUEST", Some("opt_out"));
    h.event_ok(&second, "ended", json!({ "answered_by": "human", "opt_out": false })).await;
    assert_eq!(list(&h.app, "").await["total_count"], 1);
}
