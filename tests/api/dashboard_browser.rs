//! The dashboard in a real browser (headless Chromium through chromedriver, WebDriver):
//! sign in, create a campaign through the form, upload a CSV, activate it with the simulator,
//! watch the progress reach `finished` without a reload, sign out. Screenshots at 1440 px and
//! 375 px go to `target/dashboard/`, and no page scrolls sideways at 375 px.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them); without them the
//! test is skipped with a notice, unless `CI` or `OUTBOUND_REQUIRE_CHROMIUM=1` is set.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use jiff::SignedDuration;
use serde_json::json;

use super::helpers::TestApp;

/// chromedriver on a port of its own, killed with the test.
struct Driver(Child, u16);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn required() -> bool {
    std::env::var_os("CI").is_some() || std::env::var("OUTBOUND_REQUIRE_CHROMIUM").is_ok_and(|v| v == "1")
}

fn start_driver() -> Option<Driver> {
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port");
    match Command::new("chromedriver").arg(format!("--port={port}")).stdout(Stdio::piped()).stderr(Stdio::null()).spawn() {
        Ok(mut child) => {
            // chromedriver says when it listens: read its output up to that line, no waiting by time.
            // The rest of its output is drained, so that it never writes into a closed pipe.
            let stdout = child.stdout.take().expect("piped stdout");
            let (ready, listening) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if line.contains("started successfully") {
                        let _ = ready.send(());
                    }
                }
            });
            assert!(listening.recv().is_ok(), "chromedriver stopped before it was ready");
            Some(Driver(child, port))
        }
        Err(err) if required() => panic!("chromedriver is required here (CI or OUTBOUND_REQUIRE_CHROMIUM=1) but cannot start: {err}"),
        Err(err) => {
            eprintln!("skipped: chromedriver cannot start ({err}); install chromium and chromium-driver to run the browser test");
            None
        }
    }
}

async fn connect(port: u16) -> Client {
    let capabilities = json!({
        "goog:chromeOptions": {
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1440,900"],
        }
    });
    let capabilities = capabilities.as_object().expect("object").clone();
    let mut builder = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
    builder.capabilities(capabilities);
    builder.connect(&format!("http://127.0.0.1:{port}")).await.expect("a WebDriver session")
}

fn screenshots_dir() -> PathBuf {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"), PathBuf::from);
    let dir = target.join("dashboard");
    std::fs::create_dir_all(&dir).expect("screenshot directory");
    dir
}

/// The input a visible `<label>` with this text names.
fn labelled(text: &str) -> String {
    format!("//*[@id=//label[normalize-space(.)='{text}']/@for]")
}

async fn no_sideways_scroll(browser: &Client, page: &str) {
    let fits = browser
        .execute("return document.documentElement.scrollWidth <= document.documentElement.clientWidth;", vec![])
        .await
        .expect("script");
    assert_eq!(fits, json!(true), "{page} scrolls sideways at 375 px");
}

async fn screenshot(browser: &Client, width: u32, name: &str) -> PathBuf {
    browser.set_window_size(width, 1000).await.expect("window size");
    let png = browser.screenshot().await.expect("screenshot");
    let path = screenshots_dir().join(format!("{name}-{width}.png"));
    std::fs::write(&path, png).expect("write screenshot");
    path
}

#[tokio::test]
async fn a_campaign_runs_from_the_browser() {
    let Some(app) = TestApp::spawn().await else { return };
    let Some(driver) = start_driver() else { return };
    // Monday 10:00 in Mexico City: inside the default window whatever zone the form defaults to.
    app.clock.set("2026-06-08T16:00:00Z".parse().expect("time"));
    let agent = app.create_agent("Sales bot").await;
    app.create_integration(&agent, "phone_call").await;
    let csv = tempfile::NamedTempFile::with_suffix(".csv").expect("csv file");
    std::fs::write(csv.path(), "contact,name,plan\n+525512345001,Ana,gold\n+525512345002,Luis,silver\nnot-a-number,Bad,x\n").expect("csv");

    let browser = connect(driver.1).await;
    let run = async {
        browser.goto(&app.url("/campaigns")).await.expect("open");
        // Signed out: the sign-in page.
        browser.find(Locator::Id("key")).await.expect("key input").send_keys(&app.key).await.expect("type key");
        browser.find(Locator::Css("form button[type=submit]")).await.expect("sign in").click().await.expect("click");
        browser.wait().for_element(Locator::LinkText("New campaign")).await.expect("campaign list").click().await.expect("new");

        browser.wait().for_element(Locator::XPath(&labelled("Name"))).await.expect("name").send_keys("Browser run").await.expect("type");
        browser.find(Locator::Css("main form button[type=submit]")).await.expect("create").click().await.expect("click");

        // The campaign page: upload the CSV (the progress bar and the result without a reload).
        let file = browser.wait().for_element(Locator::Id("file")).await.expect("file input");
        file.send_keys(&csv.path().display().to_string()).await.expect("choose file");
        browser.find(Locator::Css("form[data-upload] button[type=submit]")).await.expect("upload").click().await.expect("click");
        let result = browser
            .wait()
            .at_most(Duration::from_secs(30))
            .for_element(Locator::XPath("//*[@id='upload-result'][contains(., 'created')]"))
            .await
            .expect("upload result");
        let text = result.text().await.expect("text");
        assert!(text.contains('2') && text.contains('1'), "2 created, 1 failed: {text}");

        let campaign_url = browser.current_url().await.expect("url");
        let id = campaign_url.path().trim_start_matches("/campaigns/").to_owned();
        browser.execute("window.notReloaded = true;", vec![]).await.expect("mark the page");
        browser.find(Locator::XPath("//button[normalize-space(.)='Activate']")).await.expect("activate").click().await.expect("click");
        browser.wait().for_element(Locator::Css("[data-status='active']")).await.expect("active");
        browser.execute("window.notReloaded = true;", vec![]).await.expect("mark the page");

        // The simulator runs the campaign to its end; the page follows by itself.
        for _ in 0..200 {
            app.settle().await;
            let (_, body) = app.get(&format!("/campaigns/{id}")).await;
            if body["campaign"]["status"] == "finished" {
                break;
            }
            app.clock.advance(SignedDuration::from_mins(1));
        }
        browser
            .wait()
            .at_most(Duration::from_secs(30))
            .for_element(Locator::Css("[data-status='finished']"))
            .await
            .expect("the page shows finished without a reload");
        let still = browser.execute("return window.notReloaded === true;", vec![]).await.expect("script");
        assert_eq!(still, json!(true), "the page was reloaded");
        let processed = browser.find(Locator::Css("[data-processed]")).await.expect("processed").text().await.expect("text");
        assert_eq!(processed, "2");

        let wide = screenshot(&browser, 1440, "campaign").await;
        let narrow = screenshot(&browser, 375, "campaign").await;
        no_sideways_scroll(&browser, "the campaign page").await;
        browser.goto(&app.url("/campaigns")).await.expect("list");
        screenshot(&browser, 375, "campaigns").await;
        no_sideways_scroll(&browser, "the campaign list").await;
        browser.goto(&app.url("/campaigns/new")).await.expect("form");
        no_sideways_scroll(&browser, "the new-campaign form").await;
        screenshot(&browser, 1440, "campaigns").await;
        let entry = json!({ "entries": [{ "contact": "+525512345678", "channel": "whatsapp", "reason": "asked to stop on a call" }] });
        assert_eq!(app.post("/dnc", entry).await.0, reqwest::StatusCode::CREATED);
        browser.goto(&app.url("/dnc")).await.expect("do-not-contact page");
        screenshot(&browser, 375, "dnc").await;
        no_sideways_scroll(&browser, "the do-not-contact page").await;
        eprintln!("screenshots: {} and {}", wide.display(), narrow.display());

        browser.set_window_size(1440, 900).await.expect("window size");
        browser.find(Locator::XPath("//button[normalize-space(.)='Sign out']")).await.expect("sign out").click().await.expect("click");
        browser.wait().for_element(Locator::Id("key")).await.expect("back at sign-in");
        browser.goto(&app.url("/campaigns")).await.expect("list");
        browser.wait().for_element(Locator::Id("key")).await.expect("signed out for good");
    };
    run.await;
    browser.close().await.expect("close the browser");
}
