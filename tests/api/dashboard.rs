//! The dashboard (§11): sign-in, sessions (idle and absolute expiry, revocation, sign-out), CSRF,
//! tenant scoping, the campaign list and a campaign's page with its live progress and lifecycle
//! buttons, through the real server like a browser.

use jiff::SignedDuration;
use reqwest::StatusCode;
use serde_json::json;

use outbound::clock::Clock;

use super::helpers::{Browser, TestApp};

#[tokio::test]
async fn sign_in_with_a_key_opens_a_session_and_a_wrong_key_shows_a_message() {
    let Some(app) = TestApp::spawn().await else { return };
    let browser = Browser::new(&app.base);
    let page = browser.get("/sign-in").await;
    assert_eq!(page.status, StatusCode::OK);
    page.shows("<label for=\"key\">API key</label>").shows("Sign in");

    let wrong = browser.post_form("/sign-in", &[("key", "ob_AAAAAAAA_wrongwrongwrongwrongwrongwrongwr")]).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    wrong.shows("That API key is not valid");
    assert!(wrong.set_cookie.is_none());
    let garbage = browser.post_form("/sign-in", &[("key", "not a key")]).await;
    assert_eq!(garbage.status, StatusCode::UNAUTHORIZED);

    let page = browser.post_form("/sign-in", &[("key", &app.key), ("next", "/campaigns?status=active")]).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location.as_deref(), Some("/campaigns?status=active"));
    let cookie = page.set_cookie.expect("cookie");
    assert!(cookie.starts_with("outbound_session="), "{cookie}");
    for flag in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=604800"] {
        assert!(cookie.contains(flag), "{flag} in {cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain http: {cookie}");
    // The id is 256 random bits: 43 base64url characters.
    let id = cookie.split(';').next().and_then(|pair| pair.split_once('=')).map(|(_, id)| id.to_owned()).expect("id");
    assert_eq!(id.len(), 43);

    // Only local targets are followed.
    let page = browser.post_form("/sign-in", &[("key", &app.key), ("next", "//evil.example/x")]).await;
    assert_eq!(page.location.as_deref(), Some("/campaigns"));
}

#[tokio::test]
async fn pages_need_a_session_and_send_back_to_sign_in() {
    let Some(app) = TestApp::spawn().await else { return };
    let browser = Browser::new(&app.base);
    let page = browser.get("/campaigns?status=active").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location.as_deref(), Some("/sign-in?next=%2Fcampaigns%3Fstatus%3Dactive"));
    let root = browser.get("/").await;
    assert_eq!(root.status, StatusCode::SEE_OTHER);
    // htmx polling is told where to go instead of getting the sign-in page as a fragment.
    let polled = browser.send_with_header("/campaigns/1/progress", "HX-Request", "true").await;
    assert_eq!(polled.status, StatusCode::UNAUTHORIZED);
    // A made-up cookie is no session.
    let mut forged = Browser::new(&app.base);
    forged.cookie = "outbound_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into();
    assert_eq!(forged.get("/campaigns").await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn sessions_end_after_12_idle_hours_or_7_days() {
    let Some(app) = TestApp::spawn().await else { return };
    let browser = Browser::signed_in(&app.base, &app.key).await;
    // Idle for just under 12 hours: still in (and the visit counts as activity).
    app.clock.advance(SignedDuration::from_secs(12 * 3600 - 1));
    assert_eq!(browser.get("/campaigns").await.status, StatusCode::OK);
    app.clock.advance(SignedDuration::from_hours(12));
    assert_eq!(browser.get("/campaigns").await.status, StatusCode::SEE_OTHER, "12 idle hours end it");

    // Active every 11 hours: the session lasts 7 days from sign-in, not one second more.
    let browser = Browser::signed_in(&app.base, &app.key).await;
    let mut elapsed = 0;
    while elapsed + 11 < 7 * 24 {
        app.clock.advance(SignedDuration::from_hours(11));
        elapsed += 11;
        assert_eq!(browser.get("/campaigns").await.status, StatusCode::OK, "at {elapsed} h");
    }
    app.clock.advance(SignedDuration::from_hours(7 * 24 - elapsed));
    assert_eq!(browser.get("/campaigns").await.status, StatusCode::SEE_OTHER, "7 days end it");
}

#[tokio::test]
async fn revoking_the_key_ends_its_sessions_at_the_next_request() {
    let Some(app) = TestApp::spawn().await else { return };
    let browser = Browser::signed_in(&app.base, &app.key).await;
    let other_key = app.new_key("acme").await;
    let other = Browser::signed_in(&app.base, &other_key).await;
    let prefix = outbound::domain::ids::api_key_prefix(&app.key).expect("prefix");
    assert!(app.store.revoke_api_key(prefix, app.clock.now()).await.expect("revoke"));
    assert_eq!(browser.get("/campaigns").await.status, StatusCode::SEE_OTHER);
    assert_eq!(other.get("/campaigns").await.status, StatusCode::OK, "a session of another key goes on");
    // And the revoked key cannot sign in again.
    let page = Browser::new(&app.base).post_form("/sign-in", &[("key", &app.key)]).await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn sign_out_ends_the_session_and_needs_the_token() {
    let Some(app) = TestApp::spawn().await else { return };
    let browser = Browser::signed_in(&app.base, &app.key).await;
    let refused = browser.post_form_raw("/sign-out", &[], None).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(browser.get("/campaigns").await.status, StatusCode::OK, "a refused sign-out changes nothing");
    let page = browser.post_form("/sign-out", &[]).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location.as_deref(), Some("/sign-in"));
    assert!(page.set_cookie.as_deref().is_some_and(|c| c.contains("Max-Age=0")));
    // The old cookie is worth nothing now, even if a browser kept it.
    assert_eq!(browser.get("/campaigns").await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn cross_site_forms_are_refused_and_change_nothing() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    let id = app.create_campaign(setup.phone(json!({}))).await["id"].as_i64().expect("id");
    let browser = Browser::signed_in(&app.base, &app.key).await;
    let path = format!("/campaigns/{id}/actions/archive");
    // No token; a wrong token; the right token from another site's page.
    let none = browser.post_form_raw(&path, &[], None).await;
    let wrong = browser.post_form_raw(&path, &[("csrf", "0123456789abcdef0123456789abcdef")], None).await;
    let foreign = browser.post_form_raw(&path, &[("csrf", &browser.csrf)], Some("https://evil.example")).await;
    for page in [&none, &wrong, &foreign] {
        assert_eq!(page.status, StatusCode::FORBIDDEN);
        page.shows("cross-site request");
    }
    let (_, body) = app.get(&format!("/campaigns/{id}")).await;
    assert_eq!(body["campaign"]["archived"], false);
    // The same form from this site's own page works.
    let origin = app.base.clone();
    let same = browser.post_form_raw(&path, &[("csrf", &browser.csrf)], Some(&origin)).await;
    assert_eq!(same.status, StatusCode::SEE_OTHER);
    let (_, body) = app.get(&format!("/campaigns/{id}")).await;
    assert_eq!(body["campaign"]["archived"], true);
}

#[tokio::test]
async fn the_list_filters_searches_and_pages_only_this_organizations_campaigns() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    for i in 0..27 {
        app.clock.advance(SignedDuration::from_secs(1));
        app.create_campaign(setup.phone(json!({ "name": format!("Reactivation {i:02}") }))).await;
    }
    app.create_campaign(setup.whatsapp(json!({ "name": "Promo June" }))).await;
    let other_key = app.new_key("other").await;
    let other = Browser::signed_in(&app.base, &other_key).await;
    let browser = Browser::signed_in(&app.base, &app.key).await;

    let page = browser.get("/campaigns").await;
    page.shows("28 campaigns").shows("Promo June").shows("Reactivation 26").shows(">Older</a>");
    assert!(!page.body.contains("Reactivation 02"), "newest first, 25 a page");
    let older = page.body.split("href=\"").find(|s| s.contains("cursor=")).and_then(|s| s.split('"').next()).expect("older link");
    let older = browser.get(&older.replace("&amp;", "&")).await;
    older.shows("Reactivation 02").shows("Reactivation 00").shows(">Newer</a>");

    browser.get("/campaigns?channel=whatsapp").await.shows("1 campaign<").shows("Promo June");
    browser.get("/campaigns?q=PROMO").await.shows("1 campaign<");
    browser.get("/campaigns?q=activation+1").await.shows("10 campaigns");
    browser.get("/campaigns?status=active").await.shows("0 campaigns").shows("No campaign matches");
    browser.get("/campaigns?q=nothing+like+this").await.shows("0 campaigns");
    other.get("/campaigns").await.shows("0 campaigns");
    // A cursor that was not issued here is an error page, not a crash.
    assert_eq!(browser.get("/campaigns?cursor=forged").await.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_campaign_page_shows_settings_progress_and_only_the_actions_that_change_something() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    let campaign =
        app.create_campaign(setup.phone(json!({ "name": "Page <b>test</b>", "timezone": "America/Mexico_City", "retries": 0 }))).await;
    let id = campaign["id"].as_i64().expect("id");
    let browser = Browser::signed_in(&app.base, &app.key).await;
    let page = browser.get(&format!("/campaigns/{id}")).await;
    assert_eq!(page.status, StatusCode::OK);
    page.shows("Page &#60;b&#62;test&#60;/b&#62;").shows("America/Mexico_City").shows("Attempts per hour").shows("Phone funnel");
    let actions = |body: &str| -> Vec<String> {
        body.split(&format!("/campaigns/{id}/actions/")).skip(1).filter_map(|s| s.split('"').next()).map(str::to_owned).collect()
    };
    assert_eq!(actions(&page.body), ["activate", "archive"]);
    assert!(page.body.contains("hx-trigger=\"every 2s\""), "a pending campaign is polled");

    let (status, _) = app.post(&format!("/campaigns/{id}/contacts"), json!({ "contacts": [{ "contact": "+525512345678" }] })).await;
    assert_eq!(status, StatusCode::CREATED);
    let done = browser.post_form(&format!("/campaigns/{id}/actions/activate"), &[]).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    let progress = browser.get(&format!("/campaigns/{id}/progress")).await;
    assert_eq!(progress.status, StatusCode::OK);
    progress.shows("data-status=\"active\"").shows("of 1 contacts processed");
    assert_eq!(actions(&progress.body), ["pause", "archive"], "activate and resume would change nothing now");

    // The simulator finishes it; the live part then stops polling.
    for _ in 0..50 {
        app.settle().await;
        let (_, body) = app.get(&format!("/campaigns/{id}")).await;
        if body["campaign"]["status"] == "finished" {
            break;
        }
        app.clock.advance(SignedDuration::from_mins(1));
    }
    let progress = browser.get(&format!("/campaigns/{id}/progress")).await;
    progress.shows("data-status=\"finished\"").shows("data-processed=\"1\"");
    assert!(!progress.body.contains("hx-trigger"), "a finished campaign is not polled");
    assert_eq!(actions(&progress.body), ["archive"]);
    let page = browser.get(&format!("/campaigns/{id}")).await;
    page.shows("+525512345678");

    // An action the campaign does not take now is refused with the API's message.
    let refused = browser.post_form(&format!("/campaigns/{id}/actions/pause"), &[]).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    let unknown = browser.post_form(&format!("/campaigns/{id}/actions/explode"), &[]).await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn another_organizations_campaign_is_not_found() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    let id = app.create_campaign(setup.phone(json!({}))).await["id"].as_i64().expect("id");
    let other_key = app.new_key("other").await;
    let other = Browser::signed_in(&app.base, &other_key).await;
    for path in [format!("/campaigns/{id}"), format!("/campaigns/{id}/progress"), "/campaigns/abc".into(), "/campaigns/999999".into()] {
        let page = other.get(&path).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{path}");
        page.shows("does not exist in your organization");
    }
    let page = other.post_form(&format!("/campaigns/{id}/actions/archive"), &[]).await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    let (_, body) = app.get(&format!("/campaigns/{id}")).await;
    assert_eq!(body["campaign"]["archived"], false);
}

#[tokio::test]
async fn assets_are_served_under_content_hashes_and_cached_for_good() {
    let Some(app) = TestApp::spawn().await else { return };
    let browser = Browser::signed_in(&app.base, &app.key).await;
    let page = browser.get("/campaigns").await;
    let assets: Vec<&str> = page.body.split("\"/assets/").skip(1).filter_map(|s| s.split('"').next()).collect();
    assert_eq!(assets.len(), 3, "css, htmx and the app's script: {assets:?}");
    let mut total = 0;
    for name in &assets {
        let response = app.client.get(app.url(&format!("/assets/{name}"))).send().await.expect("asset");
        assert_eq!(response.status(), StatusCode::OK);
        let cache = response.headers().get("cache-control").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        assert_eq!(cache, "public, max-age=31536000, immutable");
        total += response.bytes().await.expect("bytes").len();
    }
    assert!(total < 150_000, "JS + CSS = {total} bytes");
    // A browser that takes gzip gets it (a third of the bytes or less).
    let htmx = assets.iter().find(|name| name.starts_with("htmx.")).expect("htmx");
    let plain = app.client.get(app.url(&format!("/assets/{htmx}"))).send().await.expect("asset").bytes().await.expect("bytes").len();
    let zipped = app.client.get(app.url(&format!("/assets/{htmx}"))).header("Accept-Encoding", "gzip").send().await.expect("asset");
    assert_eq!(zipped.headers().get("content-encoding").and_then(|v| v.to_str().ok()), Some("gzip"));
    let zipped = zipped.bytes().await.expect("bytes").len();
    assert!(zipped * 3 < plain, "gzip {zipped} of {plain} bytes");
    let stale = app.client.get(app.url("/assets/app.00000000.css")).send().await.expect("asset");
    assert_eq!(stale.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn contacts_are_found_by_the_beginning_of_their_number_or_name() {
    let Some(app) = TestApp::spawn().await else { return };
    let setup = app.setup().await;
    let id = app.create_campaign(setup.phone(json!({}))).await["id"].as_i64().expect("id");
    let contacts = json!({ "contacts": [
        { "contact": "+525511110001", "name": "Ana María" },
        { "contact": "+525511110002", "name": "anabel" },
        { "contact": "+525522220003", "name": "Luis" },
        { "contact": "+14155550100", "name": "Ann" },
    ]});
    let (status, _) = app.post(&format!("/campaigns/{id}/contacts"), contacts).await;
    assert_eq!(status, StatusCode::CREATED);
    let browser = Browser::signed_in(&app.base, &app.key).await;
    let search = |q: &str| format!("/campaigns/{id}?contacts_q={}", url_encode(q));
    let page = browser.get(&search("+52 55 1111")).await;
    page.shows("2 matches").shows("+525511110001").shows("+525511110002");
    assert!(!page.body.contains("+525522220003"));
    // Digits without the +, and separators, are a number too.
    browser.get(&search("1 (415) 555")).await.shows("1 match;").shows("+14155550100");
    // A name's beginning, ignoring case: "ana" is Ana María and anabel, not Ann.
    let page = browser.get(&search("ANA")).await;
    page.shows("2 matches").shows("Ana María").shows("anabel");
    assert!(!page.body.contains(">Ann<"));
    browser.get(&search("zz")).await.shows("0 matches");
    // An empty search is the plain list.
    browser.get(&search("  ")).await.shows("4 contacts");
    let other = Browser::signed_in(&app.base, &app.new_key("other").await).await;
    assert_eq!(other.get(&search("ana")).await.status, StatusCode::NOT_FOUND);
}

fn url_encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}
