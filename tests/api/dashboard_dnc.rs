//! The dashboard's do-not-contact page (§11, §12.1): the list newest first with its source,
//! filtered by number (read as the API reads it) and stored channel, and paged; a number added
//! through the form (source `dashboard`, or "already listed"); refusals beside their field with
//! nothing stored; removal by entry; a number's history; the opt-out keywords replaced; CSRF;
//! another organization's entries never shown. What the page does is read back through the API.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::helpers::{Browser, Page, TestApp};

const ANA: &str = "+525512345678";
const BETO: &str = "+525587654321";
const CARLA: &str = "+14155552671";

fn encoded(contact: &str) -> String {
    contact.replace('+', "%2B")
}

async fn add(app: &TestApp, entries: Value) {
    let (status, body) = app.post("/dnc", json!({ "entries": entries })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

async fn total(app: &TestApp, query: &str) -> i64 {
    let (status, body) = app.get(&format!("/dnc{query}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["total_count"].as_i64().expect("total_count")
}

async fn history(app: &TestApp, contact: &str) -> Vec<Value> {
    let (status, body) = app.get(&format!("/dnc/{}/history", encoded(contact))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["history"].as_array().expect("history").clone()
}

async fn keywords(app: &TestApp) -> Value {
    let (status, body) = app.get("/settings/opt-out-keywords").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["keywords"].clone()
}

/// A number as a row of the list shows it (its link to its history).
fn row(contact: &str) -> String {
    format!(">{contact}</a>")
}

#[track_caller]
fn position(page: &Page, text: &str) -> usize {
    page.body.find(text).unwrap_or_else(|| panic!("{text:?} not in the page:\n{}", page.body))
}

#[track_caller]
fn assert_hides(page: &Page, text: &str) {
    assert!(!page.body.contains(text), "the page shows {text:?}:\n{}", page.body);
}

/// Follows a form's redirect; returns the page it leads to.
async fn follow(browser: &Browser, answer: &Page, to: &str) -> Page {
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    let location = answer.location.as_deref().unwrap_or_default();
    assert!(location.starts_with(to), "redirected to {location:?}, not {to:?}");
    let page = browser.get(location).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    page
}

#[tokio::test]
async fn the_list_shows_entries_newest_first_with_their_source_filtered_and_paged() {
    let Some(app) = TestApp::spawn().await else { return };
    let browser = Browser::signed_in(&app.base, &app.key).await;
    let empty = browser.get("/dnc").await;
    assert_eq!(empty.status, StatusCode::OK);
    empty.shows("No entries.").shows("aria-current=\"page\">Do not contact").shows("<label for=\"contact\">");
    empty.shows("<label for=\"filter-contact\">").shows("<label for=\"keywords-input\">");

    add(&app, json!([{ "contact": ANA, "reason": "asked on a call" }])).await;
    add(&app, json!([{ "contact": BETO, "channel": "whatsapp" }])).await;
    add(&app, json!([{ "contact": CARLA, "channel": "phone_call" }])).await;
    let page = browser.get("/dnc").await;
    assert_eq!(page.status, StatusCode::OK);
    page.shows("3 entries").shows("asked on a call").shows("data-label=\"Source\">api<").shows("2026-06-08 18:00 UTC");
    assert!(position(&page, &row(CARLA)) < position(&page, &row(BETO)), "newest first");
    assert!(position(&page, &row(BETO)) < position(&page, &row(ANA)), "newest first");
    page.shows(&format!("href=\"/dnc/{}/history\"", encoded(ANA)));

    // A number is read as the API reads it: here in the organization's region (US).
    let by_number = browser.get("/dnc?contact=(415)+555-2671").await;
    assert_eq!(by_number.status, StatusCode::OK, "{}", by_number.body);
    by_number.shows("1 entry").shows(&row(CARLA)).shows("value=\"(415) 555-2671\"");
    assert_hides(&by_number, &row(ANA));
    let by_channel = browser.get("/dnc?channel=whatsapp").await;
    by_channel.shows("1 entry").shows(&row(BETO)).shows("<option value=\"whatsapp\" selected>");
    assert_hides(&by_channel, &row(CARLA));
    let by_all = browser.get("/dnc?channel=all").await;
    by_all.shows(&row(ANA));
    assert_hides(&by_all, &row(BETO));
    browser.get(&format!("/dnc?contact={}&channel=whatsapp", encoded(ANA))).await.shows("No entries match.");

    let invalid = browser.get("/dnc?contact=12").await;
    assert_eq!(invalid.status, StatusCode::BAD_REQUEST);
    invalid.shows("id=\"filter-contact-error\"").shows("contact must be a phone number").shows("aria-invalid=\"true\"");
    assert_hides(&invalid, &row(ANA));
    let invalid = browser.get("/dnc?channel=sms").await;
    assert_eq!(invalid.status, StatusCode::BAD_REQUEST);
    invalid.shows("id=\"filter-channel-error\"").shows("channel must be phone_call, whatsapp or all");

    // Paged 25 at a time, the filters kept in the links.
    let batch: Vec<Value> = (0..24).map(|i| json!({ "contact": format!("+5255{:08}", 30_000_000 + i), "channel": "whatsapp" })).collect();
    add(&app, Value::Array(batch)).await;
    let first = browser.get("/dnc").await;
    first.shows("27 entries").shows("Page 1 of 2").shows("href=\"/dnc?page=2\"");
    assert_hides(&first, &row(ANA));
    let second = browser.get("/dnc?page=2").await;
    second.shows("Page 2 of 2").shows(&row(BETO)).shows(&row(ANA));
    assert_hides(&second, &row(CARLA));
    let whatsapp = browser.get("/dnc?channel=whatsapp").await;
    whatsapp.shows("25 entries").shows("Page 1 of 1");
}

#[tokio::test]
async fn a_number_is_added_through_the_form_with_the_source_dashboard() {
    let Some(app) = TestApp::spawn().await else { return };
    let browser = Browser::signed_in(&app.base, &app.key).await;
    let fields = [("contact", "+52 55 1234 5678"), ("channel", "whatsapp"), ("reason", "asked by phone")];
    let added = browser.post_form("/dnc", &fields).await;
    let page = follow(&browser, &added, "/dnc?added=").await;
    page.shows(&format!("<code>{ANA}</code> added for <code>whatsapp</code>")).shows("data-label=\"Source\">dashboard<");
    let changes = history(&app, ANA).await;
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(
        (&changes[0]["action"], &changes[0]["channel"], &changes[0]["reason"], &changes[0]["source"], &changes[0]["key_prefix"]),
        (&json!("added"), &json!("whatsapp"), &json!("asked by phone"), &json!("dashboard"), &Value::Null)
    );

    // The same number and channel again: already listed, nothing changed.
    let again = browser.post_form("/dnc", &[("contact", ANA), ("channel", "whatsapp"), ("reason", "other")]).await;
    follow(&browser, &again, "/dnc?added=").await.shows(&format!("<code>{ANA}</code> is already listed for <code>whatsapp</code>"));
    assert_eq!(history(&app, ANA).await.len(), 1);
    // A notice is shown only for a number (its link is anyone's to send).
    let spoofed = browser.get("/dnc?added=%3Cb%3Ewon%3C%2Fb%3E&on=all").await;
    assert_eq!(spoofed.status, StatusCode::OK);
    assert_hides(&spoofed, "won");
    // Another channel is another entry.
    let all = browser.post_form("/dnc", &[("contact", ANA), ("channel", "all"), ("reason", "")]).await;
    follow(&browser, &all, "/dnc?added=").await.shows("added for <code>all</code>");
    assert_eq!(total(&app, "").await, 2);

    // Refusals beside their field, what was typed kept, nothing stored.
    let invalid = browser.post_form("/dnc", &[("contact", "12"), ("channel", "all")]).await;
    assert_eq!(invalid.status, StatusCode::BAD_REQUEST, "{}", invalid.body);
    invalid.shows("id=\"contact-error\"").shows("contact must be a phone number").shows("value=\"12\"").shows("aria-invalid=\"true\"");
    let blank = browser.post_form("/dnc", &[("contact", "  "), ("channel", "all")]).await;
    assert_eq!(blank.status, StatusCode::BAD_REQUEST);
    blank.shows("id=\"contact-error\"").shows("contact is required");
    let long = "r".repeat(1001);
    let too_long = browser.post_form("/dnc", &[("contact", BETO), ("channel", "phone_call"), ("reason", &long)]).await;
    assert_eq!(too_long.status, StatusCode::BAD_REQUEST, "{}", too_long.body);
    too_long.shows("id=\"reason-error\"").shows("reason must be at most 1000 characters, got 1001").shows(&long);
    too_long.shows(&format!("value=\"{BETO}\"")).shows("<option value=\"phone_call\" selected>");
    let channel = browser.post_form("/dnc", &[("contact", BETO), ("channel", "sms")]).await;
    assert_eq!(channel.status, StatusCode::BAD_REQUEST);
    channel.shows("id=\"channel-error\"").shows("channel must be phone_call, whatsapp or all");
    assert_eq!(total(&app, "").await, 2, "nothing stored");
    assert!(history(&app, BETO).await.is_empty());

    let longest = "r".repeat(1000);
    let accepted = browser.post_form("/dnc", &[("contact", BETO), ("channel", "phone_call"), ("reason", &longest)]).await;
    follow(&browser, &accepted, "/dnc?added=").await.shows(&longest);
    assert_eq!(history(&app, BETO).await[0]["reason"], json!(longest));
}

#[tokio::test]
async fn an_entry_is_removed_by_its_button_and_the_history_shows_who() {
    let Some(app) = TestApp::spawn().await else { return };
    let browser = Browser::signed_in(&app.base, &app.key).await;
    add(&app, json!([{ "contact": ANA, "channel": "whatsapp", "reason": "replied" }, { "contact": ANA }, { "contact": BETO }])).await;
    let page = browser.get("/dnc").await;
    page.shows("name=\"contact\" value=\"+525512345678\"").shows("aria-label=\"Remove +525512345678 for whatsapp\"");

    let removed = browser.post_form("/dnc/remove", &[("contact", ANA), ("channel", "whatsapp")]).await;
    let page = follow(&browser, &removed, "/dnc?removed=").await;
    page.shows(&format!("<code>{ANA}</code> removed for <code>whatsapp</code>"));
    assert_eq!(total(&app, &format!("?contact={}", encoded(ANA))).await, 1, "the entry for every channel stays");
    let changes = history(&app, ANA).await;
    let last = changes.last().expect("a change");
    assert_eq!(
        (&last["action"], &last["channel"], &last["reason"], &last["source"], &last["key_prefix"]),
        (&json!("removed"), &json!("whatsapp"), &json!("replied"), &json!("dashboard"), &Value::Null)
    );
    let again = browser.post_form("/dnc/remove", &[("contact", ANA), ("channel", "whatsapp")]).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND, "{}", again.body);

    // The number's history page: each change with its source and the API key's prefix.
    let prefix = &app.key[3..11];
    let page = browser.get(&format!("/dnc/{}/history", encoded(ANA))).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    page.shows("Listed now for: <code>all</code>").shows("data-label=\"Action\">removed<").shows("data-label=\"Source\">dashboard<");
    page.shows("data-label=\"Source\">api<").shows(&format!("<code>{prefix}</code>")).shows("data-label=\"Reason\">replied<");
    assert!(position(&page, ">added<") < position(&page, ">removed<"), "oldest first");
    browser.get("/dnc/%2B14155552671/history").await.shows("This number was never listed.").shows("Not listed now.");
    assert_eq!(browser.get("/dnc/12/history").await.status, StatusCode::BAD_REQUEST);

    // An entry for every channel is removed as the API's `channel=all` removes.
    let all = browser.post_form("/dnc/remove", &[("contact", ANA), ("channel", "all")]).await;
    follow(&browser, &all, "/dnc?removed=").await.shows(&format!("Every entry of <code>{ANA}</code> removed."));
    assert_eq!(total(&app, &format!("?contact={}", encoded(ANA))).await, 0);
    assert_eq!(history(&app, ANA).await.last().expect("a change")["source"], "dashboard");
    assert_eq!(total(&app, "").await, 1, "the other number stays");
    let invalid = browser.post_form("/dnc/remove", &[("contact", "12"), ("channel", "all")]).await;
    assert_eq!(invalid.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_opt_out_keywords_are_shown_and_replaced_through_the_form() {
    let Some(app) = TestApp::spawn().await else { return };
    let browser = Browser::signed_in(&app.base, &app.key).await;
    let page = browser.get("/dnc").await;
    page.shows("These are the defaults.").shows("STOP\nBAJA\nALTO\nCANCELAR\nPARAR\nUNSUBSCRIBE</textarea>");

    let saved = browser.post_form("/dnc/keywords", &[("keywords", "Stop\r\n  no, gracias \r\n\r\nBAJA\r\nstop\r\n")]).await;
    let page = follow(&browser, &saved, "/dnc?keywords=saved").await;
    page.shows("Opt-out keywords saved.").shows("Stop\nno, gracias\nBAJA</textarea>");
    assert_hides(&page, "These are the defaults.");
    assert_eq!(keywords(&app).await, json!(["Stop", "no, gracias", "BAJA"]));

    // Refusals beside the field, what was typed kept, nothing changed.
    let empty = browser.post_form("/dnc/keywords", &[("keywords", " \n\n")]).await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST, "{}", empty.body);
    empty.shows("id=\"keywords-error\"").shows("keywords must hold 1 to 50 items, got 0");
    let long = format!("baja\n\n{}", "k".repeat(41));
    let too_long = browser.post_form("/dnc/keywords", &[("keywords", &long)]).await;
    assert_eq!(too_long.status, StatusCode::BAD_REQUEST);
    too_long.shows("id=\"keywords-error\"").shows("keywords[1] must be 1 to 40 characters").shows("(line 3)").shows(&"k".repeat(41));
    let fifty_one: Vec<String> = (0..51).map(|i| format!("k{i}")).collect();
    let too_many = browser.post_form("/dnc/keywords", &[("keywords", &fifty_one.join("\n"))]).await;
    assert_eq!(too_many.status, StatusCode::BAD_REQUEST);
    too_many.shows("keywords must hold 1 to 50 items, got 51");
    assert_eq!(keywords(&app).await, json!(["Stop", "no, gracias", "BAJA"]), "nothing changed");

    let longest = "k".repeat(40);
    let fifty = [vec![longest.clone()], fifty_one[1..50].to_vec()].concat();
    let accepted = browser.post_form("/dnc/keywords", &[("keywords", &fifty.join("\n"))]).await;
    follow(&browser, &accepted, "/dnc?keywords=saved").await;
    let stored = keywords(&app).await;
    assert_eq!(stored.as_array().map(Vec::len), Some(50));
    assert_eq!(stored[0], json!(longest));
}

#[tokio::test]
async fn forms_without_their_csrf_token_change_nothing() {
    let Some(app) = TestApp::spawn().await else { return };
    add(&app, json!([{ "contact": ANA }])).await;
    let browser = Browser::signed_in(&app.base, &app.key).await;
    let forms: [(&str, Vec<(&str, &str)>); 3] = [
        ("/dnc", vec![("contact", BETO), ("channel", "all")]),
        ("/dnc/remove", vec![("contact", ANA), ("channel", "all")]),
        ("/dnc/keywords", vec![("keywords", "alto")]),
    ];
    for (path, fields) in &forms {
        let missing = browser.post_form_raw(path, fields, None).await;
        assert_eq!(missing.status, StatusCode::FORBIDDEN, "{path}: {}", missing.body);
        let mut wrong = fields.clone();
        wrong.push(("csrf", "0123456789abcdef0123456789abcdef"));
        assert_eq!(browser.post_form_raw(path, &wrong, None).await.status, StatusCode::FORBIDDEN, "{path}");
    }
    assert_eq!(total(&app, "").await, 1);
    assert_eq!(history(&app, ANA).await.len(), 1);
    assert!(history(&app, BETO).await.is_empty());
    assert_eq!(keywords(&app).await[0], "STOP");
}

#[tokio::test]
async fn another_organizations_entries_are_never_shown_or_removed() {
    let Some(app) = TestApp::spawn().await else { return };
    add(&app, json!([{ "contact": ANA, "reason": "acme's reason" }])).await;
    let other_key = app.new_key("other").await;
    let other = Browser::signed_in(&app.base, &other_key).await;

    let page = other.get("/dnc").await;
    page.shows("No entries.");
    assert_hides(&page, ANA);
    other.get(&format!("/dnc?contact={}", encoded(ANA))).await.shows("No entries match.");
    let history_page = other.get(&format!("/dnc/{}/history", encoded(ANA))).await;
    history_page.shows("This number was never listed.");
    assert_hides(&history_page, "acme's reason");
    let removed = other.post_form("/dnc/remove", &[("contact", ANA), ("channel", "all")]).await;
    assert_eq!(removed.status, StatusCode::NOT_FOUND, "{}", removed.body);
    assert_eq!(history(&app, ANA).await.len(), 1, "acme's entry untouched");

    // The other organization's own entry and keywords stay its own.
    let added = other.post_form("/dnc", &[("contact", BETO), ("channel", "all")]).await;
    assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.body);
    let saved = other.post_form("/dnc/keywords", &[("keywords", "alto")]).await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER);
    let acme = Browser::signed_in(&app.base, &app.key).await;
    let page = acme.get("/dnc").await;
    page.shows("1 entry").shows(&row(ANA)).shows("These are the defaults.");
    assert_hides(&page, BETO);
    assert_eq!(total(&app, "").await, 1);
    let (_, theirs) = app.call_with_key(Method::GET, "/dnc", None, Some(&other_key)).await;
    assert_eq!(theirs["total_count"], 1, "{theirs}");
    assert_eq!(theirs["entries"][0]["source"], "dashboard");
}
