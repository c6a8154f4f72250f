//! The dashboard's settings pages (§11): agents, integrations (provider config forms, the signing
//! secret shown once, editing with credentials kept), webhooks (create, test, deliveries with
//! retry, delete) and the organization's API keys (created once, revoked; revoking the session's
//! own key signs it out). Each page renders; what a form creates is what the API then shows; a
//! refusal is the API's, beside its field, with nothing created; another organization's ids are
//! not found; a form without its CSRF token changes nothing.

use jiff::SignedDuration;
use outbound::api::ApiSettings;
use outbound::webhooks::WebhookSettings;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::helpers::{Browser, Page, TestApp, test_keyring};

const SID: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "twilio-token-from-the-form-9876";

/// The text of `body` between `start` and the next `end`.
#[track_caller]
fn between<'a>(body: &'a str, start: &str, end: &str) -> &'a str {
    let from = body.find(start).unwrap_or_else(|| panic!("{start:?} not in the page:\n{body}")) + start.len();
    let to = body[from..].find(end).unwrap_or_else(|| panic!("{end:?} not after {start:?}")) + from;
    &body[from..to]
}

#[track_caller]
fn assert_redirect(page: &Page, to: &str) {
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    let location = page.location.as_deref().unwrap_or_default();
    assert!(location.starts_with(to), "redirected to {location:?}, not {to:?}");
}

#[track_caller]
fn assert_hides(page: &Page, text: &str) {
    assert!(!page.body.contains(text), "the page shows {text:?}:\n{}", page.body);
}

async fn count(app: &TestApp, path: &str, key: &str) -> usize {
    let (status, body) = app.get(path).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body[key].as_array().expect("a list").len()
}

fn twilio_form<'a>(agent: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut fields = vec![
        ("agent_id", agent),
        ("type", "phone_call"),
        ("provider", "twilio"),
        ("twilio.account_sid", SID),
        ("twilio.auth_token", TOKEN),
        ("twilio.from", "+14155550199"),
        ("twilio.twiml_url", "https://agent.example/twiml"),
        // Another provider's fieldset is sent too (every fieldset is in the form) and ignored.
        ("webhook.url", "https://ignored.example/"),
    ];
    for (name, value) in extra {
        fields.retain(|(n, _)| n != name);
        fields.push((name, value));
    }
    fields
}

#[tokio::test]
async fn agents_are_listed_and_created_through_the_apis_rules() {
    let Some(app) = TestApp::spawn().await else { return };
    let browser = Browser::signed_in(&app.base, &app.key).await;
    let page = browser.get("/agents").await;
    assert_eq!(page.status, StatusCode::OK);
    page.shows("New agent").shows("No agents yet").shows("Created (UTC)").shows("<label for=\"name\">");

    let created = browser.post_form("/agents", &[("name", "  Sales bot  ")]).await;
    assert_redirect(&created, "/agents?created=");
    let (_, agents) = app.get("/agents").await;
    assert_eq!(agents["agents"][0]["name"], "Sales bot", "trimmed as the API trims: {agents}");
    let id = agents["agents"][0]["id"].as_str().expect("id");
    let page = browser.get(created.location.as_deref().expect("location")).await;
    page.shows("Agent “Sales bot” created").shows(id).shows("data-label=\"Created (UTC)\">2026-06-08 18:00 UTC");

    let long = "x".repeat(256);
    let refused = browser.post_form("/agents", &[("name", &long)]).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    refused.shows("id=\"name-error\"").shows("name must be").shows(&format!("value=\"{long}\"")).shows("aria-invalid=\"true\"");
    assert_eq!(count(&app, "/agents", "agents").await, 1, "nothing created");

    let forged = browser.post_form_raw("/agents", &[("name", "Forged")], None).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let cross_site = browser.post_form_raw("/agents", &[("name", "Forged"), ("csrf", &browser.csrf)], Some("https://evil.example")).await;
    assert_eq!(cross_site.status, StatusCode::FORBIDDEN);
    assert_eq!(count(&app, "/agents", "agents").await, 1, "no forged agent");
}

#[tokio::test]
async fn an_integration_is_created_from_its_providers_fields_and_its_secret_shown_once() {
    let Some(app) = TestApp::spawn().await else { return };
    let agent = app.create_agent("Caller").await;
    let browser = Browser::signed_in(&app.base, &app.key).await;
    let page = browser.get("/integrations").await;
    assert_eq!(page.status, StatusCode::OK);
    page.shows("New integration").shows("Caller").shows("name=\"twilio.auth_token\"").shows("name=\"whatsapp_cloud.app_secret\"");
    page.shows("<label for=\"twilio-account_sid\">").shows("name=\"config_json\"");

    let created = browser.post_form("/integrations", &twilio_form(&agent, &[])).await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    created.shows("shown only this once");
    let secret = between(&created.body, "<p class=\"secret\" id=\"secret\">", "<").to_owned();
    let (_, list) = app.get("/integrations").await;
    let integration = &list["integrations"][0];
    let id = integration["id"].as_str().expect("id").to_owned();
    assert_eq!(
        (&integration["provider"], &integration["type"], &integration["agent_id"]),
        (&json!("twilio"), &json!("phone_call"), &json!(agent))
    );
    assert_eq!(integration["config"]["auth_token"], "••••••••9876");
    assert_eq!(integration["config"]["account_sid"], SID);
    assert_eq!(integration["config"]["twiml_url"], "https://agent.example/twiml");
    // The secret shown is the integration's: events signed with it are taken (an unknown attempt
    // is then 404), events signed otherwise are not.
    let event = json!({ "attempt_id": "cll_unknown", "status": "ringing" });
    assert_eq!(app.post_event(&id, &secret, &event).await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.post_event(&id, "c2VjcmV0LW90aGVyLXRoYW4tdGhlLXJlYWwtb25lISE=", &event).await.0, StatusCode::UNAUTHORIZED);

    // Never shown again: the pages show the config masked.
    for path in ["/integrations".to_owned(), format!("/integrations/{id}")] {
        let page = browser.get(&path).await;
        assert_eq!(page.status, StatusCode::OK);
        page.shows(&id).shows("••••••••9876").shows(&format!("/api/v1.0/integrations/{id}/events")).shows(">ok<");
        assert_hides(&page, &secret);
        assert_hides(&page, TOKEN);
    }

    // The JSON config, for what the fields do not cover.
    let json_config = r#"{ "url": "https://runtime.example/attempts", "timeout_ms": 2500 }"#;
    let fields = [("agent_id", agent.as_str()), ("type", "whatsapp"), ("provider", "webhook"), ("config_json", json_config)];
    let created = browser.post_form("/integrations", &fields).await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    let (_, list) = app.get("/integrations").await;
    assert_eq!(list["integrations"][1]["config"], json!({ "url": "https://runtime.example/attempts", "timeout_ms": 2500 }));
}

/// The voice platforms' fieldsets: a Vapi and a Retell integration from their fields (blank
/// optional fields left out, the HMAC checkbox), credentials masked, a refusal beside its field.
#[tokio::test]
async fn vapi_and_retell_integrations_are_created_from_their_fields() {
    let Some(app) = TestApp::spawn().await else { return };
    let agent = app.create_agent("Caller").await;
    let browser = Browser::signed_in(&app.base, &app.key).await;
    let page = browser.get("/integrations").await;
    page.shows("Vapi assistant (phone calls)").shows("name=\"vapi.server_secret\"").shows("name=\"retell.from_number\"");

    let vapi = [
        ("agent_id", agent.as_str()),
        ("type", "phone_call"),
        ("provider", "vapi"),
        ("vapi.api_key", "vapi-private-key-4321"),
        ("vapi.assistant_id", "4a170597-a0c2-4657-8c32-cb93f080cead"),
        ("vapi.phone_number_id", "c6ea6cb0-0dfb-4a65-918f-6a33abb54b64"),
        ("vapi.server_secret", "server-secret-8765"),
        ("vapi.server_hmac", "on"),
        ("vapi.success_key", ""),
    ];
    let created = browser.post_form("/integrations", &vapi).await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    let retell = [
        ("agent_id", agent.as_str()),
        ("type", "phone_call"),
        ("provider", "retell"),
        ("retell.api_key", "key_retell_1111"),
        ("retell.from_number", "+14157774444"),
        ("retell.agent_id", ""),
    ];
    let created = browser.post_form("/integrations", &retell).await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    let (_, list) = app.get("/integrations").await;
    let by_provider = |provider: &str| {
        list["integrations"].as_array().expect("a list").iter().find(|i| i["provider"] == provider).expect("created").clone()
    };
    let config = by_provider("vapi")["config"].clone();
    assert_eq!(
        [&config["api_key"], &config["server_secret"], &config["server_hmac"], &config["success_key"]],
        [&json!("••••••••4321"), &json!("••••••••8765"), &json!(true), &Value::Null]
    );
    let config = by_provider("retell")["config"].clone();
    assert_eq!(
        [&config["api_key"], &config["from_number"], &config["agent_id"]],
        [&json!("••••••••1111"), &json!("+14157774444"), &Value::Null]
    );

    let mut bad = retell.to_vec();
    bad[4] = ("retell.from_number", "4157774444");
    let refused = browser.post_form("/integrations", &bad).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    refused.shows("id=\"retell-from_number-error\"").shows("config.from_number must be an E.164 number");
    assert_eq!(count(&app, "/integrations", "integrations").await, 2, "nothing more created");
}

#[tokio::test]
async fn a_refused_integration_shows_the_apis_error_beside_its_field_and_keeps_the_input() {
    let Some(app) = TestApp::spawn().await else { return };
    let agent = app.create_agent("Caller").await;
    let browser = Browser::signed_in(&app.base, &app.key).await;

    let refused = browser.post_form("/integrations", &twilio_form(&agent, &[("twilio.account_sid", "AC123")])).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    refused.shows("id=\"twilio-account_sid-error\"").shows("config.account_sid must be AC followed by 32 hexadecimal digits");
    refused.shows("value=\"AC123\"").shows("value=\"+14155550199\"").shows("Nothing was saved");
    assert!(refused.body.contains("<option value=\"twilio\" selected>"), "the provider chosen stays chosen");

    let refused = browser.post_form("/integrations", &twilio_form(&agent, &[("type", "whatsapp")])).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    refused.shows("id=\"provider-error\"").shows("provider twilio serves phone_call integrations, not whatsapp");

    let refused = browser.post_form("/integrations", &twilio_form(&agent, &[("twilio.timeout_s", "soon")])).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    refused.shows("id=\"twilio-timeout_s-error\"").shows("value=\"soon\"");

    let refused = browser.post_form("/integrations", &twilio_form("", &[])).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    refused.shows("id=\"agent_id-error\"").shows("agent_id is required");

    let fields = [("agent_id", agent.as_str()), ("type", "phone_call"), ("provider", "webhook"), ("config_json", "{ nope")];
    let refused = browser.post_form("/integrations", &fields).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    refused.shows("id=\"config_json-error\"").shows("not valid JSON").shows("{ nope</textarea>");

    let forged = browser.post_form_raw("/integrations", &twilio_form(&agent, &[]), None).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(count(&app, "/integrations", "integrations").await, 0, "nothing created");
}

#[tokio::test]
async fn an_integrations_config_is_edited_and_a_blank_credential_keeps_its_stored_value() {
    let Some(app) = TestApp::spawn().await else { return };
    let agent = app.create_agent("Caller").await;
    let config = json!({ "account_sid": SID, "auth_token": TOKEN, "from": "+14155550199", "twiml_url": "https://agent.example/twiml" });
    let integration = app.create_integration_with(&agent, "phone_call", "twilio", config).await;
    let id = integration["id"].as_str().expect("id");
    let browser = Browser::signed_in(&app.base, &app.key).await;
    let path = format!("/integrations/{id}");

    let page = browser.get(&path).await;
    assert_eq!(page.status, StatusCode::OK);
    page.shows(&format!("value=\"{SID}\"")).shows("Stored: ••••••••9876. Leave blank to keep it");
    page.shows("name=\"twilio.auth_token\" type=\"password\" autocomplete=\"new-password\" value=\"\"");
    assert_hides(&page, TOKEN);
    assert_hides(&page, integration["secret"].as_str().expect("secret"));

    let edit = [
        ("twilio.account_sid", SID),
        ("twilio.auth_token", ""),
        ("twilio.from", "+14155550100"),
        ("twilio.twiml_url", "https://agent.example/twiml"),
        ("twilio.timeout_s", "45"),
        ("twilio.machine_detection", "off"),
        ("twilio.record", "on"),
    ];
    let saved = browser.post_form(&path, &edit).await;
    assert_redirect(&saved, &format!("{path}?saved=1"));
    let (_, body) = app.get(&path).await;
    let config = &body["integration"]["config"];
    assert_eq!(
        (&config["from"], &config["auth_token"], &config["timeout_s"], &config["machine_detection"], &config["record"]),
        (&json!("+14155550100"), &json!("••••••••9876"), &json!(45), &json!(null), &json!(true)),
        "{config}"
    );
    browser.get(&format!("{path}?saved=1")).await.shows("Config saved").shows("value=\"+14155550100\"");

    let mut rotated = edit.to_vec();
    rotated[1] = ("twilio.auth_token", "a-new-token-5555");
    assert_redirect(&browser.post_form(&path, &rotated).await, &path);
    let (_, body) = app.get(&path).await;
    assert_eq!(body["integration"]["config"]["auth_token"], "••••••••5555");

    let mut bad = edit.to_vec();
    bad[2] = ("twilio.from", "555");
    let refused = browser.post_form(&path, &bad).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    refused.shows("id=\"twilio-from-error\"").shows("config.from must be an E.164 number").shows("value=\"555\"");
    let (_, after) = app.get(&path).await;
    assert_eq!(after["integration"]["config"]["from"], "+14155550100", "unchanged");

    let forged = browser.post_form_raw(&path, &bad, None).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
}

/// A receiver that answers every POST with 500: each delivery fails.
async fn failing_receiver() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(500)).mount(&server).await;
    server
}

async fn deliveries(app: &TestApp, webhook: &str) -> Vec<Value> {
    let (status, body) = app.get(&format!("/webhooks/{webhook}/deliveries")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["deliveries"].as_array().expect("deliveries").clone()
}

#[tokio::test]
async fn a_webhook_is_created_tested_retried_and_deleted() {
    // One attempt per delivery, so that a failure is final at once.
    let settings = ApiSettings {
        rate_limit_rps: None,
        webhooks: WebhookSettings { retry_delays: vec![SignedDuration::ZERO], allow_private: true, ..WebhookSettings::default() },
        keyring: test_keyring(),
        ..ApiSettings::default()
    };
    let Some(app) = TestApp::spawn_with(settings).await else { return };
    let receiver = failing_receiver().await;
    let url = format!("{}/hook", receiver.uri());
    let browser = Browser::signed_in(&app.base, &app.key).await;
    let page = browser.get("/webhooks").await;
    assert_eq!(page.status, StatusCode::OK);
    page.shows("New webhook").shows("value=\"campaign.status_changed\"").shows("value=\"webhook.test\"").shows("No webhooks yet");

    let fields = [
        ("url", url.as_str()),
        ("events", "webhook.test"),
        ("events", "campaign.status_changed"),
        ("status", "finished"),
        ("description", "CRM sync"),
        ("enabled", "on"),
    ];
    let created = browser.post_form("/webhooks", &fields).await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    created.shows("shown only this once");
    let secret = between(&created.body, "<p class=\"secret\" id=\"secret\">", "<").to_owned();
    let (_, list) = app.get("/webhooks").await;
    let webhook = &list["webhooks"][0];
    let id = webhook["id"].as_str().expect("id").to_owned();
    assert_eq!(
        (&webhook["url"], &webhook["events"], &webhook["filters"], &webhook["description"], &webhook["enabled"]),
        (
            &json!(url),
            &json!(["webhook.test", "campaign.status_changed"]),
            &json!({ "status": ["finished"] }),
            &json!("CRM sync"),
            &json!(true)
        )
    );
    created.shows(&id);

    let path = format!("/webhooks/{id}");
    let page = browser.get(&path).await;
    page.shows(&url).shows("Send test event").shows("No deliveries");
    assert_hides(&page, &secret);
    browser.get("/webhooks").await.shows(&url).shows("CRM sync");

    let tested = browser.post_form(&format!("{path}/test"), &[]).await;
    assert_redirect(&tested, &format!("{path}?tested=evt_"));
    browser.get(tested.location.as_deref().expect("location")).await.shows("queued").shows("webhook.test").shows(">pending<");
    assert_eq!(app.deliver().await, 1);
    let requests = receiver.received_requests().await.expect("recording");
    let signature = requests[0].headers.get("x-altur-signature").and_then(|v| v.to_str().ok()).expect("signed");
    assert!(outbound::domain::ids::verify_signature(&secret, &requests[0].body, signature), "signed with the secret shown");

    let failed = &deliveries(&app, &id).await[0];
    assert_eq!(failed["status"], "failed", "{failed}");
    let delivery = failed["id"].as_str().expect("delivery id");
    let retry = format!("{path}/deliveries/{delivery}/retry");
    browser.get(&path).await.shows(">failed<").shows(&format!("action=\"{retry}\"")).shows(">Retry<");
    assert_eq!(browser.post_form_raw(&retry, &[], None).await.status, StatusCode::FORBIDDEN);
    assert_eq!(deliveries(&app, &id).await[0]["status"], "failed", "no retry without the token");
    assert_redirect(&browser.post_form(&retry, &[]).await, &format!("{path}?retried={delivery}"));
    assert_eq!(deliveries(&app, &id).await[0]["status"], "pending");
    let again = browser.post_form(&retry, &[]).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST, "only a failed delivery is retried: {}", again.body);
    again.shows("only a failed delivery can be retried");
    assert_eq!(app.deliver().await, 1);
    assert_eq!(receiver.received_requests().await.expect("recording").len(), 2);

    let refused = browser.post_form("/webhooks", &[("url", "ftp://files.example/"), ("description", "kept")]).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    refused.shows("id=\"url-error\"").shows("id=\"events-error\"").shows("value=\"ftp://files.example/\"").shows("value=\"kept\"");
    let refused = browser.post_form("/webhooks", &[("url", url.as_str()), ("events", "call.ended")]).await;
    refused.shows("id=\"events-error\"").shows("call.ended");
    assert_eq!(count(&app, "/webhooks", "webhooks").await, 1, "nothing created");

    assert_eq!(browser.post_form_raw(&format!("{path}/delete"), &[], None).await.status, StatusCode::FORBIDDEN);
    assert_eq!(app.get(&path).await.0, StatusCode::OK);
    assert_redirect(&browser.post_form(&format!("{path}/delete"), &[]).await, "/webhooks?deleted=1");
    assert_eq!(app.get(&path).await.0, StatusCode::NOT_FOUND);
    browser.get("/webhooks?deleted=1").await.shows("Webhook deleted");
}

#[tokio::test]
async fn another_organizations_ids_are_not_found() {
    let Some(app) = TestApp::spawn().await else { return };
    let agent = app.create_agent("Acme bot").await;
    let integration = app.create_integration(&agent, "phone_call").await;
    let (status, body) = app.post("/webhooks", json!({ "url": "https://hooks.example/in", "events": ["webhook.test"] })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let webhook = body["webhook"]["id"].as_str().expect("id").to_owned();
    let (_, sent) = app.post(&format!("/webhooks/{webhook}/test"), json!({})).await;
    assert!(sent["event_id"].is_string(), "{sent}");
    let delivery = deliveries(&app, &webhook).await[0]["id"].as_str().expect("delivery").to_owned();
    let acme_prefix = app.key[3..11].to_owned();

    let other_key = app.new_key("other").await;
    let other = Browser::signed_in(&app.base, &other_key).await;
    for path in [format!("/integrations/{integration}"), format!("/webhooks/{webhook}"), "/integrations/iph_nope".to_owned()] {
        let page = other.get(&path).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{path}: {}", page.body);
        assert_hides(&page, "Acme bot");
    }
    let posts = [
        format!("/integrations/{integration}"),
        format!("/webhooks/{webhook}/test"),
        format!("/webhooks/{webhook}/delete"),
        format!("/webhooks/{webhook}/deliveries/{delivery}/retry"),
        format!("/keys/{acme_prefix}/revoke"),
    ];
    for path in posts {
        let page = other.post_form(&path, &[("simulator.answer_rate", "1")]).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{path}: {}", page.body);
    }
    let refused = other.post_form("/integrations", &[("agent_id", &agent), ("type", "phone_call"), ("provider", "simulator")]).await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND, "{}", refused.body);
    refused.shows("id=\"agent_id-error\"").shows("not found");

    for (path, hidden) in
        [("/agents", "Acme bot"), ("/integrations", integration.as_str()), ("/webhooks", "hooks.example"), ("/keys", &acme_prefix)]
    {
        let page = other.get(path).await;
        assert_eq!(page.status, StatusCode::OK);
        assert_hides(&page, hidden);
    }
    // Nothing of acme's changed, and the other organization got nothing.
    assert_eq!(app.get(&format!("/webhooks/{webhook}")).await.0, StatusCode::OK);
    assert_eq!(deliveries(&app, &webhook).await.len(), 1, "the test event sent with the API only");
    assert_eq!(app.get("/agents").await.0, StatusCode::OK, "acme's key still works");
    let (_, others) = app.call_with_key(Method::GET, "/integrations", None, Some(&other_key)).await;
    assert_eq!(others["total_count"], 0, "{others}");
}

#[tokio::test]
async fn api_keys_are_listed_created_once_and_revoked() {
    let Some(app) = TestApp::spawn().await else { return };
    let signed_out = Browser::new(&app.base).get("/keys").await;
    assert_redirect(&signed_out, "/sign-in?next=%2Fkeys");
    // The browser signs in with a key of its own; `app.key` stays for the API.
    let session_key = app.new_key("acme").await;
    let session_prefix = session_key[3..11].to_owned();
    let api_prefix = app.key[3..11].to_owned();
    let browser = Browser::signed_in(&app.base, &session_key).await;
    let page = browser.get("/keys").await;
    assert_eq!(page.status, StatusCode::OK);
    page.shows(&format!("ob_{session_prefix}_…</code> <span class=\"badge\">this session</span>")).shows(&format!("ob_{api_prefix}_…"));
    page.shows("Create key").shows("Last used (UTC)").shows("You are signed in with this key: revoking it signs you out");

    let forged = browser.post_form_raw("/keys", &[], None).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let created = browser.post_form("/keys", &[]).await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    created.shows("shown only this once");
    let new_key = between(&created.body, "<p class=\"secret\" id=\"new-key\">", "<").to_owned();
    assert!(new_key.starts_with("ob_") && new_key.len() == 44, "{new_key}");
    assert_eq!(app.call_with_key(Method::GET, "/agents", None, Some(&new_key)).await.0, StatusCode::OK, "the new key works");
    let keys = browser.get("/keys").await;
    keys.shows(&format!("ob_{}_…", &new_key[3..11]));
    assert_hides(&keys, &new_key);
    assert_eq!(keys.body.matches("/revoke\"").count(), 3, "the forged create made no key");

    let revoked = browser.post_form(&format!("/keys/{}/revoke", &new_key[3..11]), &[]).await;
    assert_redirect(&revoked, &format!("/keys?revoked={}", &new_key[3..11]));
    assert_eq!(app.call_with_key(Method::GET, "/agents", None, Some(&new_key)).await.0, StatusCode::UNAUTHORIZED);
    browser.get(revoked.location.as_deref().expect("location")).await.shows("revoked: requests with it are refused").shows(">revoked<");
    assert_eq!(browser.post_form("/keys/zzzzzzzz/revoke", &[]).await.status, StatusCode::NOT_FOUND);
    assert_eq!(browser.post_form("/keys/not-a-key/revoke", &[]).await.status, StatusCode::NOT_FOUND);

    let forged = browser.post_form_raw(&format!("/keys/{api_prefix}/revoke"), &[], None).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(app.get("/agents").await.0, StatusCode::OK, "not revoked without the token");

    // Revoking the session's own key signs this browser out at its next request.
    assert_redirect(&browser.post_form(&format!("/keys/{session_prefix}/revoke"), &[]).await, "/keys?revoked=");
    assert_redirect(&browser.get("/keys").await, "/sign-in");
    assert_eq!(app.get("/agents").await.0, StatusCode::OK, "the other keys still work");
}
