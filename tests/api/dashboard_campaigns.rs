//! The dashboard's campaign forms, CSV upload and export (contract §11), through HTTP as a browser
//! sends them: every form goes through the API's rules, so what the API stores (read back
//! through the API) is what the form said, and what it refuses is shown beside the field it names.

use base64::Engine;
use jiff::SignedDuration;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::helpers::{Browser, Page, Setup, TestApp};

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// A form's fields; a name given twice is a checkbox group.
type Fields = Vec<(String, String)>;

/// Sets `name` to `value` (replacing every earlier value), or removes it when `value` is None.
fn set(fields: &mut Fields, name: &str, value: Option<&str>) {
    fields.retain(|(n, _)| n != name);
    if let Some(value) = value {
        fields.push((name.to_owned(), value.to_owned()));
    }
}

async fn post(browser: &Browser, path: &str, fields: &[(String, String)]) -> Page {
    let pairs: Vec<(&str, &str)> = fields.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    browser.post_form(path, &pairs).await
}

/// One week's fields: `(day, start, stop)` for each active day; the others inactive with times.
fn week(key: &str, active: &[(&str, &str, &str)]) -> Fields {
    let mut fields = Fields::new();
    for day in DAYS {
        match active.iter().find(|(d, _, _)| *d == day) {
            Some((_, start, stop)) => {
                fields.push((format!("{key}.{day}.active"), "on".into()));
                fields.push((format!("{key}.{day}.startTime"), (*start).into()));
                fields.push((format!("{key}.{day}.stopTime"), (*stop).into()));
            }
            None => {
                fields.push((format!("{key}.{day}.startTime"), "09:00".into()));
                fields.push((format!("{key}.{day}.stopTime"), "18:00".into()));
            }
        }
    }
    fields
}

/// A complete new-campaign form for the setup's phone integration, as a browser sends it.
fn phone_form(setup: &Setup) -> Fields {
    let mut fields: Fields = [
        ("name", "June reactivation"),
        ("description", "Customers who left in Q1"),
        ("agent_id", setup.agent.as_str()),
        ("integration_id", setup.phone.as_str()),
        ("timezone", "America/Bogota"),
        ("retries", "2"),
        ("message_limit", "300"),
        ("concurrency_limit", "4"),
        ("first_message", "Hi {name}, this is Outbound."),
        ("template", ""),
        ("template_alt", ""),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_owned(), v.to_owned()))
    .collect();
    fields.extend(week("scheduling", &[("mon", "08:30", "17:00"), ("tue", "09:00", "18:00"), ("sat", "22:00", "02:00")]));
    fields.extend(week("cycles.schedule", &[]));
    for (name, value) in [("cycles.mode", "cooldown"), ("cycles.max_iterations", "3"), ("cycles.cooldown_minutes", "60")] {
        fields.push((name.to_owned(), value.to_owned()));
    }
    for (name, value) in [("cycles.filter_tags", ""), ("cycles.schedule_start_date", ""), ("cycles.schedule_end_date", "")] {
        fields.push((name.to_owned(), value.to_owned()));
    }
    fields
}

/// The form of `phone_form` with cycles on in scheduled mode.
fn with_scheduled_cycles(mut fields: Fields) -> Fields {
    fields.retain(|(n, _)| !n.starts_with("cycles."));
    fields.extend(week("cycles.schedule", &[("tue", "10:00", "12:00"), ("thu", "15:00", "19:30")]));
    for (name, value) in [
        ("cycles.enabled", "on"),
        ("cycles.mode", "scheduled"),
        ("cycles.max_iterations", "4"),
        ("cycles.cooldown_minutes", "15"),
        ("cycles.filter_statuses", "converted"),
        ("cycles.filter_statuses", "voicemail"),
        ("cycles.filter_tags", "vip, do not call"),
        ("cycles.schedule_start_date", "2026-07-01"),
        ("cycles.schedule_end_date", "2026-07-31"),
    ] {
        fields.push((name.to_owned(), value.to_owned()));
    }
    fields
}

async fn campaign_count(app: &TestApp) -> i64 {
    let (status, body) = app.get("/campaigns?archived=true").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["total_count"].as_i64().expect("total_count")
}

async fn campaign(app: &TestApp, id: i64) -> Value {
    let (status, body) = app.get(&format!("/campaigns/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["campaign"].clone()
}

/// The id a create form redirected to.
fn created_id(page: &Page) -> i64 {
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    let location = page.location.as_deref().expect("a Location");
    location.strip_prefix("/campaigns/").and_then(|id| id.parse().ok()).unwrap_or_else(|| panic!("redirect to {location}"))
}

/// The opening tag of the element with this `id` (panics when there is none).
fn tag_with_id<'a>(page: &'a Page, id: &str) -> &'a str {
    let at = page.body.find(&format!(" id=\"{id}\"")).unwrap_or_else(|| panic!("no element with id {id}:\n{}", page.body));
    let start = page.body[..at].rfind('<').expect("tag start");
    let end = at + page.body[at..].find('>').expect("tag end");
    &page.body[start..=end]
}

/// The input `id` is marked invalid and described by an error that says `message`.
#[track_caller]
fn shows_error_beside(page: &Page, id: &str, message: &str) {
    let tag = tag_with_id(page, id);
    // A group (a week, a list of checkboxes) is a fieldset, which ARIA gives no invalid state.
    if !tag.starts_with("<fieldset") {
        assert!(tag.contains("aria-invalid=\"true\""), "{id} is not marked invalid: {tag}");
    }
    let error_id = format!("{id}-error");
    assert!(tag.contains(&error_id), "{id} is not described by its error: {tag}");
    let error = tag_with_id(page, &error_id);
    let text_start = page.body.find(error).expect("error element") + error.len();
    let text = &page.body[text_start..text_start + page.body[text_start..].find("</p>").expect("error end")];
    assert!(text.contains(message), "the error beside {id} says {text:?}, not {message:?}");
    // And the summary at the top links to the input.
    page.shows("The campaign was not saved").shows(&format!("<a href=\"#{id}\">"));
}

#[tokio::test]
async fn the_new_campaign_form_labels_every_field() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    let browser = Browser::signed_in(&app.base, &app.key).await;
    let page = browser.get("/campaigns/new").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let mut names = vec![
        "name",
        "description",
        "agent_id",
        "integration_id",
        "timezone",
        "retries",
        "message_limit",
        "concurrency_limit",
        "first_message",
        "template",
        "template_alt",
        "cycles.enabled",
        "cycles.mode",
        "cycles.max_iterations",
        "cycles.cooldown_minutes",
        "cycles.filter_statuses",
        "cycles.filter_tags",
        "cycles.schedule_start_date",
        "cycles.schedule_end_date",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect::<Vec<_>>();
    for key in ["scheduling", "cycles.schedule"] {
        for day in DAYS {
            for part in ["active", "startTime", "stopTime"] {
                names.push(format!("{key}.{day}.{part}"));
            }
        }
    }
    for name in &names {
        page.shows(&format!("name=\"{name}\""));
    }
    // Every input, select and textarea but the hidden token has a label pointing at it.
    let mut controls = 0;
    for opening in ["<input", "<select", "<textarea"] {
        for (at, _) in page.body.match_indices(opening) {
            let tag = &page.body[at..at + page.body[at..].find('>').expect("tag end")];
            if tag.contains("type=\"hidden\"") {
                continue;
            }
            let id = tag.split(" id=\"").nth(1).and_then(|rest| rest.split('"').next()).unwrap_or_else(|| panic!("no id: {tag}"));
            page.shows(&format!("<label for=\"{id}\""));
            controls += 1;
        }
    }
    assert!(controls >= names.len(), "{controls} labelled controls");
    // Times and dates use the browser's pickers; the agent and integrations of the organization are offered.
    assert_eq!(page.body.matches("type=\"time\"").count(), 28);
    assert_eq!(page.body.matches("type=\"date\"").count(), 2);
    // The first integration and its agent are chosen to begin with.
    page.shows(&format!("<option value=\"{}\" selected>", setup.agent));
    page.shows(&format!("<option value=\"{}\" data-channel=\"phone_call\" data-agent=\"{}\" selected>", setup.phone, setup.agent));
    page.shows(&format!("<option value=\"{}\" data-channel=\"whatsapp\"", setup.whatsapp)).shows("<option value=\"America/Mexico_City\">");
    for status in ["queue", "voicemail", "converted"] {
        page.shows(&format!("value=\"{status}\""));
    }
}

#[tokio::test]
async fn a_created_campaign_holds_what_the_form_said() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    let browser = Browser::signed_in(&app.base, &app.key).await;

    let id = created_id(&post(&browser, "/campaigns/new", &with_scheduled_cycles(phone_form(&setup))).await);
    let c = campaign(&app, id).await;
    assert_eq!(c["name"], "June reactivation");
    assert_eq!(c["description"], "Customers who left in Q1");
    assert_eq!(c["agent"]["id"], json!(setup.agent));
    assert_eq!(c["integration"], json!({ "id": setup.phone, "type": "phone_call" }));
    assert_eq!((&c["timezone"], &c["retries"], &c["message_limit"]), (&json!("America/Bogota"), &json!(2), &json!(300)));
    assert_eq!((&c["concurrency_limit"], &c["first_message"]), (&json!(4), &json!("Hi {name}, this is Outbound.")));
    assert_eq!(c["template"], Value::Null);
    let off = |start: &str, stop: &str| json!({ "startTime": start, "stopTime": stop, "active": false });
    assert_eq!(
        c["scheduling"],
        json!({
            "mon": { "startTime": "08:30", "stopTime": "17:00", "active": true },
            "tue": { "startTime": "09:00", "stopTime": "18:00", "active": true },
            "wed": off("09:00", "18:00"), "thu": off("09:00", "18:00"), "fri": off("09:00", "18:00"),
            "sat": { "startTime": "22:00", "stopTime": "02:00", "active": true },
            "sun": off("09:00", "18:00"),
        })
    );
    let cycles = &c["cycles"];
    assert_eq!((&cycles["enabled"], &cycles["mode"]), (&json!(true), &json!("scheduled")));
    assert_eq!((&cycles["max_iterations"], &cycles["cooldown_minutes"]), (&json!(4), &json!(15)));
    assert_eq!(cycles["filter_statuses"], json!(["converted", "voicemail"]));
    assert_eq!((&cycles["schedule_start_date"], &cycles["schedule_end_date"]), (&json!("2026-07-01"), &json!("2026-07-31")));
    assert_eq!(cycles["schedule"]["tue"], json!({ "startTime": "10:00", "stopTime": "12:00", "active": true }));
    assert_eq!(cycles["schedule"]["thu"], json!({ "startTime": "15:00", "stopTime": "19:30", "active": true }));
    assert_eq!(cycles["schedule"]["mon"]["active"], false);
    // filter_tags is input-only in the API; the list shows it.
    let (_, list) = app.get("/campaigns").await;
    let listed = list["campaigns"].as_array().expect("campaigns").iter().find(|item| item["id"] == id).expect("listed").clone();
    assert_eq!(listed["cycle_filter_tags"], json!(["vip", "do not call"]));
    // The redirect leads to the campaign's page.
    browser.get(&format!("/campaigns/{id}")).await.shows("June reactivation");

    // A WhatsApp campaign: the phone-only inputs left empty are not sent; cycles left off.
    let mut form = phone_form(&setup);
    for (name, value) in [
        ("integration_id", Some(setup.whatsapp.as_str())),
        ("concurrency_limit", Some("")),
        ("first_message", Some("")),
        ("template", Some("promo_june_v1")),
    ] {
        set(&mut form, name, value);
    }
    let id = created_id(&post(&browser, "/campaigns/new", &form).await);
    let c = campaign(&app, id).await;
    assert_eq!(
        (&c["integration"]["type"], &c["template"], &c["concurrency_limit"]),
        (&json!("whatsapp"), &json!("promo_june_v1"), &Value::Null)
    );
    assert_eq!(c["cycles"]["enabled"], false);
}

#[tokio::test]
async fn refusals_are_shown_beside_the_field_they_name_and_nothing_is_created() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    let browser = Browser::signed_in(&app.base, &app.key).await;
    let before = campaign_count(&app).await;

    // Several broken rules at once: each beside its own input, the typed values kept.
    let mut form = with_scheduled_cycles(phone_form(&setup));
    set(&mut form, "name", Some("   "));
    set(&mut form, "scheduling.wed.active", Some("on"));
    set(&mut form, "scheduling.wed.startTime", Some("10:00"));
    set(&mut form, "scheduling.wed.stopTime", Some("10:00"));
    set(&mut form, "cycles.max_iterations", Some("13"));
    let page = post(&browser, "/campaigns/new", &form).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.body);
    shows_error_beside(&page, "f-name", "name must not be empty");
    shows_error_beside(&page, "f-scheduling-wed-stopTime", "scheduling.wed.stopTime must differ from startTime");
    shows_error_beside(&page, "f-cycles-max_iterations", "cycles.max_iterations must be between 2 and 12, got 13");
    assert!(!tag_with_id(&page, "f-retries").contains("aria-invalid"), "only the fields at fault are marked");
    page.shows(">Customers who left in Q1</textarea>").shows("value=\"13\"");
    page.shows(&format!("<option value=\"{}\" data-channel=\"phone_call\" data-agent=\"{}\" selected>", setup.phone, setup.agent));

    // A number that is not one: the API's own type error, beside it.
    let mut form = phone_form(&setup);
    set(&mut form, "retries", Some("two"));
    let page = post(&browser, "/campaigns/new", &form).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.body);
    shows_error_beside(&page, "f-retries", "retries");
    page.shows("value=\"two\"");

    // Out of range, and a channel-only field for the other channel.
    let mut form = phone_form(&setup);
    set(&mut form, "retries", Some("6"));
    let page = post(&browser, "/campaigns/new", &form).await;
    shows_error_beside(&page, "f-retries", "retries must be between 0 and 5, got 6");
    let mut form = phone_form(&setup);
    set(&mut form, "integration_id", Some(&setup.whatsapp));
    let page = post(&browser, "/campaigns/new", &form).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.body);
    shows_error_beside(&page, "f-first_message", "first_message is only for phone_call campaigns");
    shows_error_beside(&page, "f-concurrency_limit", "concurrency_limit is only for phone_call campaigns");

    // The store's refusals (another agent's integration, an unknown agent) name their field too.
    let other_agent = app.create_agent("Support bot").await;
    let mut form = phone_form(&setup);
    set(&mut form, "agent_id", Some(&other_agent));
    let page = post(&browser, "/campaigns/new", &form).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.body);
    shows_error_beside(&page, "f-integration_id", "integration_id names no integration of this organization owned by agent_id");
    set(&mut form, "agent_id", Some("6f0b2c8c-2a7e-4f5e-9b6a-3a2e8b9c4d10"));
    shows_error_beside(&post(&browser, "/campaigns/new", &form).await, "f-agent_id", "agent_id names no agent of this organization");
    // No agent or integration chosen.
    set(&mut form, "agent_id", Some(""));
    set(&mut form, "integration_id", Some(""));
    let page = post(&browser, "/campaigns/new", &form).await;
    shows_error_beside(&page, "f-agent_id", "agent_id is required");
    shows_error_beside(&page, "f-integration_id", "integration_id is required");

    // Scheduled mode needs a schedule; a cycle schedule in cooldown mode is refused.
    let mut form = with_scheduled_cycles(phone_form(&setup));
    for day in DAYS {
        set(&mut form, &format!("cycles.schedule.{day}.active"), None);
    }
    let page = post(&browser, "/campaigns/new", &form).await;
    shows_error_beside(&page, "f-cycles-schedule", "cycles.schedule is required when cycles.mode is scheduled");
    let mut form = with_scheduled_cycles(phone_form(&setup));
    set(&mut form, "cycles.mode", Some("cooldown"));
    let page = post(&browser, "/campaigns/new", &form).await;
    shows_error_beside(&page, "f-cycles-schedule", "cycles.schedule is only allowed when cycles.mode is scheduled");

    assert_eq!(campaign_count(&app).await, before, "no refused form created a campaign");
}

#[tokio::test]
async fn edge_values_are_accepted() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    let browser = Browser::signed_in(&app.base, &app.key).await;
    let mut form = with_scheduled_cycles(phone_form(&setup));
    for (name, value) in [
        ("retries", "5"),
        ("message_limit", "10000"),
        ("concurrency_limit", "1000"),
        ("cycles.max_iterations", "12"),
        ("cycles.cooldown_minutes", "0"),
        ("scheduling.sun.active", "on"),
        ("scheduling.sun.startTime", "00:00"),
        // The time picker cannot say 24:00: midnight as the stop time is the end of the day.
        ("scheduling.sun.stopTime", "00:00"),
        ("cycles.schedule_end_date", "2026-07-01"),
    ] {
        set(&mut form, name, Some(value));
    }
    let id = created_id(&post(&browser, "/campaigns/new", &form).await);
    let c = campaign(&app, id).await;
    assert_eq!((&c["retries"], &c["message_limit"], &c["concurrency_limit"]), (&json!(5), &json!(10000), &json!(1000)));
    assert_eq!((&c["cycles"]["max_iterations"], &c["cycles"]["cooldown_minutes"]), (&json!(12), &json!(0)));
    assert_eq!(c["scheduling"]["sun"], json!({ "startTime": "00:00", "stopTime": "24:00", "active": true }));
    assert_eq!((&c["cycles"]["schedule_start_date"], &c["cycles"]["schedule_end_date"]), (&json!("2026-07-01"), &json!("2026-07-01")));
    // And one past them is refused, beside the field.
    set(&mut form, "cycles.max_iterations", Some("1"));
    shows_error_beside(&post(&browser, "/campaigns/new", &form).await, "f-cycles-max_iterations", "between 2 and 12, got 1");
}

/// A phone campaign with cooldown cycles, created through the API.
async fn api_campaign(app: &TestApp, setup: &Setup) -> i64 {
    let body = setup.phone(json!({
        "description": "From the API", "first_message": "Hola",
        "cycles": { "enabled": true, "max_iterations": 3, "cooldown_minutes": 30, "filter_statuses": ["converted"], "filter_tags": ["vip"] },
    }));
    app.create_campaign(body).await["id"].as_i64().expect("id")
}

/// The edit form as `Fields::of` fills it for the campaign of `api_campaign`, with changes.
fn edit_form(name: &str) -> Fields {
    let mut fields: Fields = [
        ("name", name),
        ("description", ""),
        ("timezone", "America/Mexico_City"),
        ("retries", "3"),
        ("message_limit", "250"),
        ("concurrency_limit", "10"),
        ("first_message", "Hola {name}"),
        ("cycles.max_iterations", "6"),
        ("cycles.cooldown_minutes", "45"),
        ("cycles.filter_statuses", "voicemail"),
        ("cycles.filter_tags", ""),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_owned(), v.to_owned()))
    .collect();
    fields.extend(week("scheduling", &[("mon", "10:00", "16:00"), ("fri", "10:00", "16:00")]));
    fields
}

#[tokio::test]
async fn editing_changes_the_campaign_and_shows_fixed_fields_read_only() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    let id = api_campaign(&app, &setup).await;
    let browser = Browser::signed_in(&app.base, &app.key).await;

    let page = browser.get(&format!("/campaigns/{id}/edit")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    page.shows("value=\"Q2 Reactivation\"").shows(">From the API</textarea>").shows(">Hola</textarea>");
    page.shows("name=\"cycles.filter_statuses\" value=\"converted\" checked").shows("value=\"vip\"");
    // The fixed fields are shown, read-only, and not sent.
    for (id, text) in
        [("f-agent-fixed", "Sales bot"), ("f-integration-fixed", setup.phone.as_str()), ("f-cycles-fixed", "On, cooldown mode")]
    {
        let tag = tag_with_id(&page, id);
        assert!(tag.contains("readonly") && tag.contains(text) && !tag.contains("name="), "{tag}");
        page.shows(&format!("<label for=\"{id}\">"));
    }
    for name in
        ["agent_id", "integration_id", "integration_type", "cycles.enabled", "cycles.mode", "template", "cycles.schedule.mon.active"]
    {
        assert!(!page.body.contains(&format!("name=\"{name}\"")), "the edit form has {name}");
    }

    let done = post(&browser, &format!("/campaigns/{id}/edit"), &edit_form("Q2 Reactivation (edited)")).await;
    assert_eq!(
        (done.status, done.location.as_deref()),
        (StatusCode::SEE_OTHER, Some(format!("/campaigns/{id}").as_str())),
        "{}",
        done.body
    );
    let c = campaign(&app, id).await;
    assert_eq!((&c["name"], &c["description"], &c["retries"]), (&json!("Q2 Reactivation (edited)"), &Value::Null, &json!(3)));
    assert_eq!(c["first_message"], "Hola {name}");
    assert_eq!((&c["cycles"]["max_iterations"], &c["cycles"]["cooldown_minutes"]), (&json!(6), &json!(45)));
    assert_eq!((&c["cycles"]["enabled"], &c["cycles"]["mode"]), (&json!(true), &json!("cooldown")));
    assert_eq!(c["cycles"]["filter_statuses"], json!(["voicemail"]));
    assert_eq!(c["scheduling"]["mon"], json!({ "startTime": "10:00", "stopTime": "16:00", "active": true }));
    assert_eq!(c["scheduling"]["tue"]["active"], false);

    // A refused edit: the message beside the field, the campaign unchanged.
    let mut form = edit_form("Another name");
    set(&mut form, "retries", Some("9"));
    set(&mut form, "message_limit", Some(""));
    let page = post(&browser, &format!("/campaigns/{id}/edit"), &form).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.body);
    shows_error_beside(&page, "f-retries", "retries must be between 0 and 5, got 9");
    shows_error_beside(&page, "f-message_limit", "message_limit must not be null");
    page.shows("value=\"Another name\"");
    assert_eq!(campaign(&app, id).await, c, "a refused edit changed the campaign");

    // A campaign without cycles has none to edit; a WhatsApp one has its template instead.
    let whatsapp = app.create_campaign(setup.whatsapp(json!({}))).await["id"].as_i64().expect("id");
    let page = browser.get(&format!("/campaigns/{whatsapp}/edit")).await;
    page.shows("name=\"template\"").shows("value=\"promo_june_v1\"");
    assert!(!page.body.contains("name=\"first_message\"") && !page.body.contains("name=\"cycles.max_iterations\""), "{}", page.body);
    let mut form = edit_form("Promo July");
    form.retain(|(n, _)| !n.starts_with("cycles.") && n != "concurrency_limit" && n != "first_message");
    form.push(("template".into(), "promo_july_v2".into()));
    form.push(("template_alt".into(), String::new()));
    created_id(&post(&browser, &format!("/campaigns/{whatsapp}/edit"), &form).await);
    let c = campaign(&app, whatsapp).await;
    assert_eq!((&c["name"], &c["template"], &c["template_alt"]), (&json!("Promo July"), &json!("promo_july_v2"), &Value::Null));
}

#[tokio::test]
async fn a_finished_campaign_refuses_edits_with_the_apis_message() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    let day = json!({ "startTime": "00:00", "stopTime": "24:00" });
    let always = json!({ "mon": day, "tue": day, "wed": day, "thu": day, "fri": day, "sat": day, "sun": day });
    let id = app.create_campaign(setup.phone(json!({ "scheduling": always, "retries": 0 }))).await["id"].as_i64().expect("id");
    let (status, body) = app.post(&format!("/campaigns/{id}/contacts"), json!({ "contacts": [{ "contact": "+525520000001" }] })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = app.post(&format!("/campaigns/{id}/activate"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for _ in 0..10 {
        app.settle().await;
        app.clock.advance(SignedDuration::from_mins(31));
    }
    assert_eq!(campaign(&app, id).await["status"], "finished");

    let browser = Browser::signed_in(&app.base, &app.key).await;
    let page = browser.get(&format!("/campaigns/{id}/edit")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    page.shows("This campaign is finished");
    let before = campaign(&app, id).await;
    let mut form = edit_form("Too late");
    form.retain(|(n, _)| !n.starts_with("cycles."));
    let page = post(&browser, &format!("/campaigns/{id}/edit"), &form).await;
    assert_eq!(page.status, StatusCode::CONFLICT, "{}", page.body);
    page.shows("the campaign is finished and can no longer change");
    assert_eq!(campaign(&app, id).await, before);
}

#[tokio::test]
async fn another_organizations_campaign_is_not_found() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    let id = api_campaign(&app, &setup).await;
    let other = Browser::signed_in(&app.base, &app.new_key("other").await).await;

    for path in [format!("/campaigns/{id}/edit"), format!("/campaigns/{id}/export.csv"), "/campaigns/abc/edit".to_owned()] {
        let page = other.get(&path).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "GET {path}: {}", page.body);
    }
    let page = post(&other, &format!("/campaigns/{id}/edit"), &edit_form("Mine now")).await;
    assert_eq!(page.status, StatusCode::NOT_FOUND, "{}", page.body);
    let upload = reqwest::multipart::Form::new()
        .part("file", reqwest::multipart::Part::bytes(b"contact\n+525512345678\n".to_vec()).file_name("c.csv"))
        .text("if_duplicate", "skip");
    let page = other.post_multipart(&format!("/campaigns/{id}/upload"), upload).await;
    assert_eq!(page.status, StatusCode::NOT_FOUND, "{}", page.body);
    let c = campaign(&app, id).await;
    assert_eq!((&c["name"], &c["analytics"]), (&json!("Q2 Reactivation"), &Value::Null), "{c}");
    // Nor is another organization's agent offered or taken on create.
    let page = other.get("/campaigns/new").await;
    assert!(!page.body.contains(&setup.agent) && !page.body.contains(&setup.phone), "{}", page.body);
}

#[tokio::test]
async fn forms_without_the_session_token_or_from_another_site_are_refused() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    let id = api_campaign(&app, &setup).await;
    let browser = Browser::signed_in(&app.base, &app.key).await;
    let before = (campaign_count(&app).await, campaign(&app, id).await);
    let (create, edit) = (phone_form(&setup), edit_form("Forged"));
    let create: Vec<(&str, &str)> = create.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let edit: Vec<(&str, &str)> = edit.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let edit_path = format!("/campaigns/{id}/edit");
    for (path, fields) in [("/campaigns/new", &create), (edit_path.as_str(), &edit)] {
        let page = browser.post_form_raw(path, fields, None).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "no token, {path}: {}", page.body);
        let mut with_token = fields.clone();
        with_token.push(("csrf", browser.csrf.as_str()));
        let page = browser.post_form_raw(path, &with_token, Some("https://evil.example")).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "foreign origin, {path}: {}", page.body);
        let mut wrong = fields.clone();
        wrong.push(("csrf", "0123456789abcdef0123456789abcdef"));
        assert_eq!(browser.post_form_raw(path, &wrong, None).await.status, StatusCode::FORBIDDEN, "wrong token, {path}");
    }
    // An upload without the header token.
    let upload = reqwest::multipart::Form::new().part("file", reqwest::multipart::Part::bytes(b"contact\n+525512345678\n".to_vec()));
    let response = browser
        .client
        .post(format!("{}/campaigns/{id}/upload", app.base))
        .header("Cookie", &browser.cookie)
        .multipart(upload)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!((campaign_count(&app).await, campaign(&app, id).await), before, "a refused form changed something");
}

/// The CSV in a page's `data:text/csv;base64,…` download link.
fn report_of(page: &Page) -> String {
    let start = page.body.find("href=\"data:text/csv;base64,").unwrap_or_else(|| panic!("no report link:\n{}", page.body));
    let rest = &page.body[start + "href=\"data:text/csv;base64,".len()..];
    let encoded = &rest[..rest.find('"').expect("href end")];
    assert!(rest.contains("download=\"rejected-rows.csv\""), "the link downloads rejected-rows.csv");
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(encoded).expect("base64")).expect("UTF-8")
}

fn upload_form(csv: String, if_duplicate: &str) -> reqwest::multipart::Form {
    reqwest::multipart::Form::new()
        .part("file", reqwest::multipart::Part::bytes(csv.into_bytes()).file_name("contacts.csv").mime_str("text/csv").expect("mime"))
        .text("if_duplicate", if_duplicate.to_owned())
}

/// The number shown for one count of the upload result.
fn count(page: &Page, name: &str) -> u64 {
    let marker = format!("data-count=\"{name}\">");
    let at = page.body.find(&marker).unwrap_or_else(|| panic!("no {name} count:\n{}", page.body)) + marker.len();
    page.body[at..at + page.body[at..].find('<').expect("count end")].parse().expect("a count")
}

#[tokio::test]
async fn an_upload_adds_the_rows_and_reports_those_not_created() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    let id = api_campaign(&app, &setup).await;
    let browser = Browser::signed_in(&app.base, &app.key).await;
    // The campaign's page offers the upload, with its token for the script.
    browser
        .get(&format!("/campaigns/{id}"))
        .await
        .shows(&format!("action=\"/campaigns/{id}/upload\""))
        .shows("data-upload=\"upload-result\"");

    let long_name = "n".repeat(1001);
    let csv = format!(
        "contact,name,tags,plan\n\
         +525512345678,Ana,vip|new,gold\n\
         12,Bad number,,\n\
         +525512345679,Luis,,silver\n\
         +525512345678,Ana again,,\n\
         +525512345680,{long_name},,\n\
         ,No number,,\n"
    );
    let page = browser.post_multipart(&format!("/campaigns/{id}/upload"), upload_form(csv, "skip")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!((count(&page, "created"), count(&page, "updated"), count(&page, "skipped"), count(&page, "failed")), (2, 0, 1, 3));
    let report = report_of(&page);
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(lines[0], "line,contact,status,reason");
    assert_eq!(lines[1], "3,12,failed,INVALID_PHONE_NUMBER", "{report}");
    assert!(lines[2].starts_with("5,+525512345678,skipped_duplicate,duplicate of contact "), "{report}");
    assert_eq!(lines[3], "6,+525512345680,failed,contacts[4].name must be at most 1000 characters", "{report}");
    assert_eq!(lines[4], "7,,failed,MISSING_CONTACT", "{report}");
    assert_eq!(lines.len(), 5, "{report}");
    page.shows("<td data-label=\"Line\">3</td>");

    let (status, body) = app.get(&format!("/campaigns/{id}/contacts")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let contacts = body["contacts"].as_array().expect("contacts");
    assert_eq!(contacts.len(), 2, "{body}");
    assert_eq!((&contacts[0]["name"], &contacts[0]["tags"]), (&json!("Ana"), &json!(["vip", "new"])));
    assert_eq!(contacts[0]["extracted_data"], json!({ "plan": "gold" }));

    // Duplicates updated (from a spreadsheet's export, with its byte order mark).
    let csv = "\u{feff}contact,name\n+525512345678,Ana María\n+525512345681,Eva\n".to_owned();
    let page = browser.post_multipart(&format!("/campaigns/{id}/upload"), upload_form(csv, "update")).await;
    assert_eq!((count(&page, "created"), count(&page, "updated")), (1, 1), "{}", page.body);
    assert!(report_of(&page).contains("2,+525512345678,updated,updated contact "));
    let csv = "contact\n+525512345682\n".to_owned();
    let page = browser.post_multipart(&format!("/campaigns/{id}/upload"), upload_form(csv, "skip")).await;
    assert_eq!(count(&page, "created"), 1);
    assert!(!page.body.contains("data:text/csv"), "every row was created: no report\n{}", page.body);

    // A file larger than the API's 5 MiB body limit is taken; its oversized row is refused alone.
    let csv = format!("contact,notes\n+525512345683,{}\n+525512345684,short\n", "x".repeat(6 * 1024 * 1024));
    let page = browser.post_multipart(&format!("/campaigns/{id}/upload"), upload_form(csv, "skip")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!((count(&page, "created"), count(&page, "failed")), (1, 1));
    assert!(report_of(&page).contains("2,+525512345683,failed,contacts[0].extracted_data is "), "{}", report_of(&page));

    // A file without a contact column, and an if_duplicate the API does not know.
    let page = browser.post_multipart(&format!("/campaigns/{id}/upload"), upload_form("phone\n+525512345690\n".into(), "skip")).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.body);
    page.shows("the CSV needs a `contact` column");
    let page = browser.post_multipart(&format!("/campaigns/{id}/upload"), upload_form("contact\n+525512345691\n".into(), "merge")).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.body);
    page.shows("if_duplicate");
    let (_, body) = app.get(&format!("/campaigns/{id}/contacts")).await;
    assert_eq!(body["total_count"], 5, "{body}");
}

/// GETs the export with the session; status, headers and body.
async fn export(browser: &Browser, id: i64) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let response = browser
        .client
        .get(format!("{}/campaigns/{id}/export.csv", browser.base))
        .header("Cookie", &browser.cookie)
        .send()
        .await
        .expect("sent");
    let (status, headers) = (response.status(), response.headers().clone());
    (status, headers, response.text().await.expect("body"))
}

#[tokio::test]
async fn the_export_lists_every_contact_with_its_outcome() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    let day = json!({ "startTime": "00:00", "stopTime": "24:00" });
    let always = json!({ "mon": day, "tue": day, "wed": day, "thu": day, "fri": day, "sat": day, "sun": day });
    let body = setup.phone(json!({ "scheduling": always, "retries": 0, "timezone": "America/Bogota", "message_limit": 10000 }));
    let id = app.create_campaign(body).await["id"].as_i64().expect("id");
    let first = json!({ "contact": "+525520000000", "name": "Ana, \"la jefa\"", "f_id": "crm-1", "context": "VIP",
        "tags": ["vip", "new"], "extracted_data": { "plan": "gold" } });
    let mut contacts = vec![first];
    contacts.extend((1..1000).map(|i| json!({ "contact": format!("+5255{:08}", 20_000_000 + i) })));
    let (status, body) = app.post(&format!("/campaigns/{id}/contacts"), json!({ "contacts": contacts })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let more: Vec<Value> = (1000..1005).map(|i| json!({ "contact": format!("+5255{:08}", 20_000_000 + i) })).collect();
    let (status, body) = app.post(&format!("/campaigns/{id}/contacts"), json!({ "contacts": more })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let browser = Browser::signed_in(&app.base, &app.key).await;

    let (status, headers, csv) = export(&browser, id).await;
    assert_eq!(status, StatusCode::OK, "{csv}");
    assert_eq!(headers["content-type"], "text/csv; charset=utf-8");
    assert!(headers["content-disposition"].to_str().expect("ascii").starts_with("attachment;"), "{headers:?}");
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let header: Vec<String> = reader.headers().expect("header").iter().map(str::to_owned).collect();
    assert_eq!(
        header,
        [
            "id",
            "contact",
            "name",
            "f_id",
            "status",
            "failed_reason",
            "call_count",
            "last_call_at (America/Bogota)",
            "context",
            "tags",
            "extracted_data"
        ]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("a record")).collect();
    assert_eq!(rows.len(), 1005, "every page of contacts");
    assert_eq!(
        rows[0].iter().skip(1).collect::<Vec<_>>(),
        ["+525520000000", "Ana, \"la jefa\"", "crm-1", "queue", "", "0", "", "VIP", "vip|new", "{\"plan\":\"gold\"}"]
    );
    assert_eq!(&rows[1004][1], "+525520001004");

    // Once called, the first contact's outcome, as the API shows it (times in the campaign's zone).
    let (status, body) = app.post(&format!("/campaigns/{id}/activate"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for _ in 0..3 {
        app.settle().await;
        app.clock.advance(SignedDuration::from_mins(31));
    }
    let (_, _, csv) = export(&browser, id).await;
    let rows: Vec<csv::StringRecord> = csv::Reader::from_reader(csv.as_bytes()).records().map(|r| r.expect("a record")).collect();
    assert_eq!(rows.len(), 1005);
    let (_, list) = app.get(&format!("/campaigns/{id}/contacts?pageSize=1")).await;
    let api = &list["contacts"][0];
    assert_ne!(&rows[0][6], "0", "the first contact was called: {:?}", &rows[0]);
    assert_eq!(&rows[0][4], api["status"].as_str().expect("status"));
    assert_eq!(&rows[0][6], api["call_count"].to_string());
    assert_eq!(&rows[0][7], api["last_call_at"].as_str().unwrap_or_default());
}

#[tokio::test]
async fn the_campaign_page_shows_its_plan_now() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    let id = api_campaign(&app, &setup).await;
    let numbers = ["+525520000001", "+525520000002", "+525520000003"];
    let contacts: Vec<Value> = numbers.iter().map(|n| json!({ "contact": n })).collect();
    let (status, body) = app.post(&format!("/campaigns/{id}/contacts"), json!({ "contacts": contacts })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = app.post("/dnc", json!({ "entries": [{ "contact": numbers[2] }] })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let browser = Browser::signed_in(&app.base, &app.key).await;
    let page = browser.get(&format!("/campaigns/{id}")).await;
    page.shows("Plan now").shows("<dt>Waiting</dt><dd>3</dd>").shows("<dt>Eligible now</dt><dd>2</dd>");
    page.shows("<dt>Do not contact</dt><dd>1</dd>").shows("<dt>Estimated finish</dt><dd>not yet known");
    assert!(!page.body.contains("<dt>Waiting to retry</dt>"), "reasons that hold nobody are left out");
}
