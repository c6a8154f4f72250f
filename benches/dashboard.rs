//! Dashboard pages, rendered server-side (issue "The dashboard"): one command,
//! `cargo bench --bench dashboard`.
//!
//! Starts the real server in this process over a fresh SQLite file, with an organization of
//! `DASH_CAMPAIGNS` campaigns (default 1,000) of which one holds `DASH_CONTACTS` contacts (default
//! 1,000,000), loaded through the API in batches of 1,000; the engine (simulator, in this process,
//! on a clock the bench moves) then runs that campaign for `DASH_DAYS` days (default 7) at its
//! `message_limit` of 10,000 a day, so its calls table, analytics and attempts-per-hour chart
//! have a week of history. Then, signed in like a browser, it requests every page
//! `DASH_REQUESTS` times (default 300) one after another and prints p50 / p99 / max per page, the
//! live-progress fragment among them, and the bytes a first visit to the campaign page transfers
//! (the page, its style sheet and scripts). Target: every page p99 < 50 ms, progress p99 < 5 ms.
//! A page answering anything but 200 exits with status 1; a missed target does not.

use std::sync::Arc;
use std::time::Instant;

use hdrhistogram::Histogram;
use jiff::{SignedDuration, Timestamp};
use outbound::api::ApiSettings;
use outbound::clock::{Clock, ManualClock};
use outbound::domain::ids::NewApiKey;
use outbound::engine::{Engine, EngineSettings};
use outbound::server::RunningServer;
use serde_json::{Value, json};

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn fail(message: String) -> ! {
    eprintln!("FAILED: {message}");
    std::process::exit(1)
}

struct Api {
    client: reqwest::Client,
    base: String,
    key: String,
}

impl Api {
    async fn post(&self, path: &str, body: &Value) -> Value {
        let response = self
            .client
            .post(format!("{}/api/v1.0{path}", self.base))
            .header("Authorization", format!("api-key {}", self.key))
            .json(body)
            .send()
            .await
            .unwrap_or_else(|err| fail(format!("POST {path}: {err}")));
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            fail(format!("POST {path}: {status} {body}"));
        }
        body
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    let campaigns = knob("DASH_CAMPAIGNS", 1_000);
    let contacts = knob("DASH_CONTACTS", 1_000_000);
    let days = knob("DASH_DAYS", 7);
    let requests = knob("DASH_REQUESTS", 300);
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("outbound.db").display());
    let store = outbound::store::open(&url).await.expect("open store");
    let start: Timestamp = "2026-06-01T00:00:00Z".parse().expect("time");
    let clock = Arc::new(ManualClock::new(start));
    let settings = ApiSettings { rate_limit_rps: None, ..ApiSettings::default() };
    let keyring = settings.keyring.clone();
    let server = RunningServer::start("127.0.0.1:0", store.clone(), clock.clone(), settings).await.expect("server");
    let base = format!("http://{}", server.addr);
    let engine =
        Engine::new(store.clone(), clock.clone(), EngineSettings { public_url: base.clone(), keyring, ..EngineSettings::default() });
    let key = NewApiKey::generate();
    store.create_api_key("bench", &key, clock.now()).await.expect("key");
    let api = Api { client: reqwest::Client::new(), base: base.clone(), key: key.key.clone() };

    println!("# Dashboard pages: {campaigns} campaigns, one of {contacts} contacts, {days} days of its calls");
    println!("Machine: {} cores; SQLite file under {}", std::thread::available_parallelism().map_or(0, |n| n.get()), dir.path().display());
    let agent = api.post("/agents", &json!({ "name": "Bench agent" })).await["agent"]["id"].as_str().expect("agent").to_owned();
    let integration =
        api.post("/integrations", &json!({ "agent_id": agent, "type": "phone_call", "provider": "simulator" })).await["integration"]["id"]
            .as_str()
            .expect("integration")
            .to_owned();
    let always = json!({ "startTime": "00:00", "stopTime": "24:00", "active": true });
    let campaign = |name: String| {
        json!({
            "name": name, "agent_id": agent, "integration_id": integration, "integration_type": "phone_call",
            "timezone": "America/Mexico_City", "retries": 0, "message_limit": 10000, "concurrency_limit": 1000,
            "scheduling": { "mon": always, "tue": always, "wed": always, "thu": always, "fri": always, "sat": always, "sun": always },
        })
    };
    let loading = Instant::now();
    for i in 1..campaigns {
        api.post("/campaigns", &campaign(format!("Campaign {i:04}"))).await;
    }
    let big = api.post("/campaigns", &campaign("The big one".into())).await["campaign"]["id"].as_i64().expect("id");
    println!("{campaigns} campaigns created in {:.1} s", loading.elapsed().as_secs_f64());
    let loading = Instant::now();
    let batches = contacts.div_ceil(1000);
    futures::StreamExt::for_each_concurrent(futures::stream::iter(0..batches), 4, |batch| {
        let api = &api;
        async move {
            let items: Vec<Value> = (0..1000)
                .map(|i| batch * 1000 + i)
                .filter(|n| *n < contacts)
                .map(|n| json!({ "contact": format!("+5255{:08}", n), "name": format!("Contact {n}") }))
                .collect();
            api.post(&format!("/campaigns/{big}/contacts"), &json!({ "contacts": items })).await;
        }
    })
    .await;
    println!("{contacts} contacts loaded in {:.1} s", loading.elapsed().as_secs_f64());
    api.post(&format!("/campaigns/{big}/activate"), &json!({})).await;
    let running = Instant::now();
    for _ in 0..days * 24 * 6 {
        engine.settle().await.expect("engine");
        clock.advance(SignedDuration::from_mins(10));
    }
    println!("{days} days of calls run in {:.1} s", running.elapsed().as_secs_f64());

    // Signed in as a browser is.
    let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let signed = browser.post(format!("{base}/sign-in")).form(&[("key", key.key.as_str())]).send().await.expect("sign in");
    let cookie = signed
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_owned)
        .unwrap_or_else(|| fail("no session cookie".into()));
    let small = big - 1;
    let pages = [
        ("campaign list", "/campaigns".to_owned()),
        ("campaign list, search", "/campaigns?q=campaign+09".to_owned()),
        ("campaign list, page 20", String::new()),
        ("campaign page (1M contacts)", format!("/campaigns/{big}")),
        ("campaign page, contacts page 20,000", format!("/campaigns/{big}?contacts_page=20000")),
        ("campaign page, contacts filtered", format!("/campaigns/{big}?contacts_status=queue")),
        ("campaign page, contact search by number", format!("/campaigns/{big}?contacts_q=%2B52550050")),
        ("campaign page, contact search by name", format!("/campaigns/{big}?contacts_q=contact+77")),
        ("live progress (1M contacts)", format!("/campaigns/{big}/progress")),
        ("campaign page (empty)", format!("/campaigns/{small}")),
        ("new campaign form", "/campaigns/new".to_owned()),
        ("edit form", format!("/campaigns/{big}/edit")),
        ("agents", "/agents".to_owned()),
        ("integrations", "/integrations".to_owned()),
        ("webhooks", "/webhooks".to_owned()),
        ("API keys", "/keys".to_owned()),
    ];
    let get = |path: String| {
        let (browser, cookie, base) = (&browser, &cookie, &base);
        async move {
            let response = browser.get(format!("{base}{path}")).header("Cookie", cookie).send().await.expect("page");
            let status = response.status();
            let body = response.text().await.expect("body");
            if status != reqwest::StatusCode::OK {
                fail(format!("GET {path}: {status}"));
            }
            body
        }
    };
    // Page 20 of the list: follow the "Older" link 19 times.
    let mut list_page = "/campaigns".to_owned();
    for _ in 0..19 {
        let body = get(list_page.clone()).await;
        list_page = body
            .split("href=\"")
            .filter_map(|s| s.split('"').next())
            .filter(|href| href.contains("cursor="))
            .last()
            .map(|href| href.replace("&amp;", "&"))
            .unwrap_or_else(|| fail("no older page".into()));
    }
    println!("\n| page | requests | p50 ms | p99 ms | max ms | bytes |\n|---|---:|---:|---:|---:|---:|");
    for (name, path) in pages {
        let path = if path.is_empty() { list_page.clone() } else { path };
        let mut histogram = Histogram::<u64>::new(3).expect("histogram");
        let mut bytes = 0;
        get(path.clone()).await;
        for _ in 0..requests {
            let started = Instant::now();
            bytes = get(path.clone()).await.len();
            histogram.record(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX)).expect("record");
        }
        let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
        println!("| {name} | {requests} | {:.2} | {:.2} | {:.2} | {bytes} |", ms(0.5), ms(0.99), histogram.max() as f64 / 1000.0);
    }

    // A first visit to the campaign page: the page, then every asset it names; as sent to a
    // client that takes no compression, and to a browser (gzip).
    let page = get(format!("/campaigns/{big}")).await;
    for encoding in ["identity", "gzip"] {
        let fetch = |path: String| {
            let request = browser.get(format!("{base}{path}")).header("Cookie", &cookie).header("Accept-Encoding", encoding);
            async move { request.send().await.expect("fetch").bytes().await.expect("bytes").len() }
        };
        let sent = fetch(format!("/campaigns/{big}")).await;
        let (mut total, mut parts) = (sent, vec![format!("page {sent} B")]);
        for asset in page.split("\"/assets/").skip(1).filter_map(|s| s.split('"').next()) {
            let sent = fetch(format!("/assets/{asset}")).await;
            total += sent;
            parts.push(format!("{asset} {sent} B"));
        }
        println!(
            "\nFirst visit to the campaign page, {encoding}: {total} bytes ({}); assets cached for good afterwards.",
            parts.join(", ")
        );
    }
    server.shutdown().await.expect("shutdown");
}
