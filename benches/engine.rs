//! Engine throughput (issue "Engine"): one command, `cargo bench --bench engine`.
//!
//! Starts the real `outbound serve` binary as its own process over a fresh SQLite file (durable
//! commits, rate limit off, `--failed-retry-limit 0`) and measures:
//! 1. 100 phone campaigns × 10,000 contacts (simulator, latency 0, window always open,
//!    `concurrency_limit` 1000, `message_limit` 10000, `retries` 0), all activated at once: wall
//!    time from the first activate to every campaign `finished` (polling `GET /campaigns/{id}`,
//!    one request at a time every 20 ms at most), and contacts/s;
//! 2. the same with 10 campaigns, on a second fresh server;
//! 3. the server's peak VmRSS (sampled every 50 ms) during each run, and their ratio;
//! 4. on the 100-campaign server once idle: a fresh campaign of 1,000 contacts, activated; the
//!    wall time until `/calls?pageSize=1` shows an attempt (5 trials);
//! 5. a campaign of 1,000,000 contacts: `GET /campaigns/{id}` (analytics included) p50/p99 over
//!    500 requests right after activate while the engine runs it, and again once it has made the
//!    10,000 calls its `message_limit` allows in 24 h (the other 990,000 contacts wait: such a
//!    campaign cannot finish within a day); the time to those 10,000 calls is printed too;
//! 6. webhooks out (contract §8), beside step 1 (a: no subscription): step 1 again on a fresh
//!    server (`--webhook-allow-private`, retry schedule and timeout at their defaults) with one
//!    subscription to `on_call_end` and `campaign.status_changed` at a receiver inside this process,
//!    b) answering 200, then c) on another fresh server, answering 500 to everything. Each prints
//!    contacts/s and its ratio to a, and the server's peak VmRSS during the run. For b, the bench
//!    then waits until the receiver has every `on_call_end` (one per contact, distinct
//!    `webhook-id`s) and the three status changes of each campaign, and prints the time from the
//!    last campaign seen `finished` to the last new `on_call_end` received, and the peak RSS
//!    meanwhile. For c, it keeps the server up `ENGINE_WEBHOOK_OBSERVE_SECS` more (the first retries
//!    fall due 60 s after their events), then prints the backlog (the deliveries log's `pending`
//!    `total_count`, and `outbound_webhook_backlog` from `GET /metrics`, refreshed every 15 s) and
//!    the peak and final RSS over that time. The receiver is cheap: it reads the event type from a
//!    substring of the body and keeps a hash of each `on_call_end`'s `webhook-id`.
//!
//! With `retries` 0 and `--failed-retry-limit 0` a voicemail or a failed call ends the contact, so
//! every contact is attempted exactly once: contacts/s is attempts/s. The bench checks it (each
//! campaign ends with `calls` = `contactsProcessed` = `contacts`) and exits with status 1 if not,
//! or if a run does not finish within `ENGINE_TIMEOUT_SECS`. A missed target does not fail it.
//!
//! 7. compliance (contract §12), beside step 1 (a): step 1 again on a fresh server whose
//!    organization lists `ENGINE_DNC_ENTRIES` other numbers on its do-not-contact list, with
//!    `contact_hours` on every campaign (open now for their Mexico City contacts, so every contact
//!    is still attempted once and each claim checks both); contacts/s and its ratio to a;
//! 8. on that server, a campaign of `ENGINE_PLAN_CONTACTS` (a tenth in Tijuana, outside their
//!    hours; the last 1,000 listed after they were added), once its 10,000 calls are made:
//!    `GET /campaigns/{id}/plan` p50/p99 over `ENGINE_PLAN_REQUESTS`, and its counts checked.
//!
//! With `ENGINE_POSTGRES_URL=postgres://USER@HOST:PORT` it measures instead step 1 on PostgreSQL
//! (a throwaway database per run), first with one `outbound serve` process, then with two over
//! the same database (both dispatch), and prints the ratio.
//!
//! Knobs (environment): `ENGINE_POSTGRES_URL` (unset: SQLite), `ENGINE_CAMPAIGNS` (100), `ENGINE_CONTACTS` (10000 per campaign),
//! `ENGINE_SMALL_CAMPAIGNS` (10), `ENGINE_FIRST_CONTACTS` (1000), `ENGINE_FIRST_TRIALS` (5),
//! `ENGINE_ANALYTICS_CONTACTS` (1000000; 0 skips step 5), `ENGINE_ANALYTICS_REQUESTS` (500),
//! `ENGINE_WEBHOOKS` (1; 0 skips step 6), `ENGINE_WEBHOOK_OBSERVE_SECS` (60), `ENGINE_COMPLIANCE` (1; 0 skips
//! steps 7 and 8), `ENGINE_DNC_ENTRIES` (100000), `ENGINE_PLAN_CONTACTS` (1000000; 0 skips step 8), `ENGINE_PLAN_REQUESTS` (500),
//! `ENGINE_POLL_MS` (20), `ENGINE_TIMEOUT_SECS` (1800), `BENCH_SERVER_LOG` (the server's RUST_LOG,
//! default `warn`; its stderr is dropped). Step 6 runs on SQLite only.

#[path = "../tests/kit/mod.rs"]
mod kit;

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use kit::postgres::ThrowawayDatabase;
use kit::{Api, MemoryWatch, Server, env_or, machine, mib, quantile_ms, rss_kib};
use serde_json::json;

/// The campaigns' `message_limit` (the contract's maximum): attempts started per rolling 24 h.
const MESSAGE_LIMIT: usize = 10_000;

const KNOBS: [&str; 16] = [
    "ENGINE_POSTGRES_URL",
    "ENGINE_CAMPAIGNS",
    "ENGINE_CONTACTS",
    "ENGINE_SMALL_CAMPAIGNS",
    "ENGINE_FIRST_CONTACTS",
    "ENGINE_FIRST_TRIALS",
    "ENGINE_ANALYTICS_CONTACTS",
    "ENGINE_ANALYTICS_REQUESTS",
    "ENGINE_WEBHOOKS",
    "ENGINE_WEBHOOK_OBSERVE_SECS",
    "ENGINE_COMPLIANCE",
    "ENGINE_DNC_ENTRIES",
    "ENGINE_PLAN_CONTACTS",
    "ENGINE_PLAN_REQUESTS",
    "ENGINE_POLL_MS",
    "ENGINE_TIMEOUT_SECS",
];

struct Knobs {
    campaigns: usize,
    contacts: usize,
    small_campaigns: usize,
    first_contacts: usize,
    first_trials: usize,
    analytics_contacts: usize,
    analytics_requests: usize,
    webhooks: bool,
    webhook_observe: Duration,
    compliance: bool,
    dnc_entries: usize,
    plan_contacts: usize,
    plan_requests: usize,
    poll: Duration,
    timeout: Duration,
}

/// One server process over a fresh database, with an agent and a simulator integration; on
/// PostgreSQL, optionally more processes over the same database that dispatch beside it.
/// Fields drop in order: the servers are killed before their database is removed.
struct Bench {
    server: Server,
    /// Other engine processes over the same database (PostgreSQL scale-out runs).
    _others: Vec<Server>,
    watch: MemoryWatch,
    api: Api,
    agent: String,
    integration: String,
    database: Database,
    /// Settings of every campaign it creates, besides the bench's own (step 7 adds `contact_hours`).
    extra_settings: serde_json::Map<String, serde_json::Value>,
}

/// Where a bench run keeps its data.
enum Database {
    Sqlite { _dir: tempfile::TempDir },
    Postgres(ThrowawayDatabase),
}

impl Bench {
    /// A server on a fresh SQLite file.
    async fn start() -> Bench {
        Bench::start_sqlite(&[]).await
    }

    /// A server on a fresh SQLite file, with these arguments besides the usual ones.
    async fn start_sqlite(extra: &[&str]) -> Bench {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("engine.db").display());
        Bench::start_on(url, Database::Sqlite { _dir: dir }, 1, extra).await
    }

    /// `processes` servers, each with its engine, on a fresh PostgreSQL database.
    async fn start_postgres(server_url: &str, processes: usize) -> Bench {
        let database = ThrowawayDatabase::new(server_url, "outbound_engine_bench").await.unwrap_or_else(|e| panic!("{e}"));
        Bench::start_on(database.url.clone(), Database::Postgres(database), processes, &[]).await
    }

    async fn start_on(url: String, database: Database, processes: usize, extra: &[&str]) -> Bench {
        let mut args: Vec<String> =
            ["--listen", "127.0.0.1:0", "--database", &url, "--rate-limit-rps", "0", "--failed-retry-limit", "0"].map(str::to_owned).into();
        args.extend(extra.iter().map(|arg| (*arg).to_owned()));
        let start = |args: Vec<String>| async move {
            tokio::task::spawn_blocking(move || Server::start(&args, None)).await.expect("start").unwrap_or_else(|e| panic!("{e}"))
        };
        // The first creates and migrates the database; the others start once it is ready.
        let server = start(args.clone()).await;
        let mut others = Vec::new();
        for _ in 1..processes {
            others.push(start(args.clone()).await);
        }
        let watch = MemoryWatch::new(server.pid);
        let api = Api::new(&server.address, server.key.as_deref().expect("bootstrap key on a fresh database"));
        let agent = api.create_agent("Engine bench").await;
        let (integration, _) = api.create_integration(&agent, "simulator", json!({ "latency_ms": 0 })).await;
        Bench { server, _others: others, watch, api, agent, integration, database, extra_settings: Default::default() }
    }

    /// Stops the servers and drops a PostgreSQL database.
    async fn finish(self) {
        let Bench { server, _others, database, .. } = self;
        drop((server, _others));
        if let Database::Postgres(database) = database
            && let Err(err) = database.drop_database().await
        {
            eprintln!("could not drop the bench database: {err}");
        }
    }

    async fn campaign(&self, name: &str) -> i64 {
        let mut settings = json!({ "retries": 0, "concurrency_limit": 1000, "message_limit": MESSAGE_LIMIT });
        if let Some(settings) = settings.as_object_mut() {
            settings.extend(self.extra_settings.clone());
        }
        self.api.create_campaign(name, &self.agent, &self.integration, settings).await
    }

    fn peak_kib(&self) -> u64 {
        self.watch.take_peak(self.server.pid)
    }
}

/// What one throughput run measured.
struct Run {
    campaigns: usize,
    contacts: usize,
    load: Duration,
    elapsed: Duration,
    /// When the last campaign was seen finished.
    finished_at: Instant,
    peak_load_kib: u64,
    peak_run_kib: u64,
}

impl Run {
    fn rate(&self) -> f64 {
        (self.campaigns * self.contacts) as f64 / self.elapsed.as_secs_f64()
    }

    fn load_rate(&self) -> f64 {
        (self.campaigns * self.contacts) as f64 / self.load.as_secs_f64()
    }
}

/// Polls the campaigns in order, one request at a time, until each is `finished`; returns the
/// time since `started` when the last one was seen finished.
async fn wait_finished(api: &Api, ids: &[i64], started: Instant, knobs: &Knobs) -> Result<Duration, String> {
    let mut next = 0;
    let mut last_report = Instant::now();
    while next < ids.len() {
        let campaign = api.campaign(ids[next]).await;
        if campaign["status"] == "finished" {
            next += 1;
            continue;
        }
        let analytics = &campaign["analytics"];
        if started.elapsed() > knobs.timeout {
            return Err(format!(
                "campaign {} is still {} after {:.0} s (analytics {analytics})",
                ids[next],
                campaign["status"],
                started.elapsed().as_secs_f64()
            ));
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            eprintln!(
                "  … {:.0} s: {next}/{} campaigns finished; campaign {} has processed {} of {} contacts",
                started.elapsed().as_secs_f64(),
                ids.len(),
                ids[next],
                analytics["contactsProcessed"],
                analytics["contacts"]
            );
            last_report = Instant::now();
        }
        tokio::time::sleep(knobs.poll).await;
    }
    Ok(started.elapsed())
}

/// Every contact of a finished campaign attempted exactly once.
async fn check_exactly_once(api: &Api, ids: &[i64], contacts: usize, problems: &mut Vec<String>) {
    for id in ids {
        let campaign = api.campaign(*id).await;
        let analytics = &campaign["analytics"];
        let expect = Some(contacts as i64);
        for field in ["contacts", "contactsProcessed", "calls"] {
            if analytics[field].as_i64() != expect {
                problems
                    .push(format!("campaign {id}: analytics.{field} = {} (expected {contacts}); analytics {analytics}", analytics[field]));
            }
        }
        if campaign["status"] != "finished" {
            problems.push(format!("campaign {id}: status {} (expected finished)", campaign["status"]));
        }
    }
}

/// Creates `campaigns` × `contacts`, activates them all at once and waits until all are finished.
async fn throughput(bench: &Bench, label: &str, campaigns: usize, contacts: usize, knobs: &Knobs, problems: &mut Vec<String>) -> Run {
    let api = &bench.api;
    let mut ids = Vec::with_capacity(campaigns);
    for i in 0..campaigns {
        ids.push(bench.campaign(&format!("{label} {i}")).await);
    }
    eprintln!("{label}: loading {campaigns} × {contacts} contacts …");
    let load = api.load_contacts(&ids, contacts).await;
    let peak_load_kib = bench.peak_kib();
    eprintln!("{label}: loaded in {:.1} s; activating {campaigns} campaigns at once …", load.as_secs_f64());
    let started = Instant::now();
    let activations = ids.iter().map(|id| api.post_owned(format!("/campaigns/{id}/activate"), json!({})));
    for reply in futures::future::join_all(activations).await {
        assert_eq!(reply["campaign"]["status"], "active", "{reply}");
    }
    let elapsed = match wait_finished(api, &ids, started, knobs).await {
        Ok(elapsed) => elapsed,
        Err(problem) => {
            problems.push(format!("{label}: {problem}"));
            started.elapsed()
        }
    };
    let finished_at = started + elapsed;
    let peak_run_kib = bench.peak_kib();
    let run = Run { campaigns, contacts, load, elapsed, finished_at, peak_load_kib, peak_run_kib };
    eprintln!("{label}: finished in {:.1} s ({:.0} contacts/s), peak RSS {:.0} MiB", elapsed.as_secs_f64(), run.rate(), mib(peak_run_kib));
    check_exactly_once(api, &ids, contacts, problems).await;
    run
}

/// Activate → first attempt visible in `/calls`, on fresh campaigns of `first_contacts`.
async fn first_attempts(bench: &Bench, knobs: &Knobs, problems: &mut Vec<String>) -> Vec<Duration> {
    let api = &bench.api;
    let mut latencies = Vec::new();
    for trial in 0..knobs.first_trials {
        let id = bench.campaign(&format!("first attempt {trial}")).await;
        api.load_contacts(&[id], knobs.first_contacts).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = Instant::now();
        api.post(&format!("/campaigns/{id}/activate"), &json!({})).await;
        loop {
            let calls = api.get(&format!("/campaigns/{id}/calls?pageSize=1")).await;
            if calls["total_count"].as_i64().unwrap_or(0) > 0 {
                latencies.push(started.elapsed());
                break;
            }
            if started.elapsed() > Duration::from_secs(30) {
                problems.push(format!("first attempt: campaign {id} shows no call 30 s after activate"));
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if let Err(problem) = wait_finished(api, &[id], started, knobs).await {
            problems.push(format!("first attempt: {problem}"));
        }
    }
    latencies.sort();
    latencies
}

/// `GET /campaigns/{id}` latencies, sorted.
async fn detail_latencies(api: &Api, id: i64, requests: usize) -> Vec<Duration> {
    let mut latencies = Vec::with_capacity(requests);
    for _ in 0..requests {
        let started = Instant::now();
        let campaign = api.campaign(id).await;
        latencies.push(started.elapsed());
        assert!(campaign["analytics"].is_object(), "analytics missing: {campaign}");
    }
    latencies.sort();
    latencies
}

struct Analytics {
    contacts: usize,
    load: Duration,
    /// Attempts the campaign can start today: `min(contacts, message_limit)`.
    budget: usize,
    running: Vec<Duration>,
    spent: Vec<Duration>,
    run: Duration,
}

/// One campaign holding `analytics_contacts`: detail latency while the engine runs it, and once its
/// 24-hour `message_limit` budget (10,000) is spent and the rest of its contacts wait. (A campaign
/// of more than 10,000 contacts cannot finish within a day: §5.2.)
async fn analytics_run(bench: &Bench, knobs: &Knobs, problems: &mut Vec<String>) -> Analytics {
    let api = &bench.api;
    let contacts = knobs.analytics_contacts;
    let budget = contacts.min(MESSAGE_LIMIT);
    let id = bench.campaign("analytics").await;
    eprintln!("analytics: loading {contacts} contacts into one campaign …");
    let load = api.load_contacts(&[id], contacts).await;
    let started = Instant::now();
    api.post(&format!("/campaigns/{id}/activate"), &json!({})).await;
    let running = detail_latencies(api, id, knobs.analytics_requests).await;
    let run = loop {
        let campaign = api.campaign(id).await;
        let analytics = &campaign["analytics"];
        if analytics["calls"].as_u64() == Some(budget as u64) {
            break started.elapsed();
        }
        if started.elapsed() > knobs.timeout {
            problems.push(format!(
                "analytics: campaign {id} has not made {budget} calls after {:.0} s: {analytics}",
                started.elapsed().as_secs_f64()
            ));
            break started.elapsed();
        }
        tokio::time::sleep(knobs.poll).await;
    };
    // Let the engine see the budget spent.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let spent = detail_latencies(api, id, knobs.analytics_requests).await;
    let campaign = api.campaign(id).await;
    let analytics = &campaign["analytics"];
    for (field, want) in [("contacts", contacts), ("calls", budget), ("contactsProcessed", budget)] {
        if analytics[field].as_u64() != Some(want as u64) {
            problems.push(format!("analytics: campaign {id}: analytics.{field} = {} (expected {want}); {analytics}", analytics[field]));
        }
    }
    let expected_status = if contacts <= MESSAGE_LIMIT { "finished" } else { "active" };
    if campaign["status"] != expected_status {
        problems.push(format!("analytics: campaign {id} is {} (expected {expected_status})", campaign["status"]));
    }
    Analytics { contacts, load, budget, running, spent, run }
}

/// A webhook receiver inside the bench process (step 6): answers every delivery with `answer`
/// and counts deliveries by event type, read from a substring of the body; of `on_call_end`
/// answered 2xx it also keeps the distinct `webhook-id`s (hashed) and when the last new one came.
struct Receiver {
    answer: StatusCode,
    calls: AtomicU64,
    status_changes: AtomicU64,
    others: AtomicU64,
    delivered_calls: Mutex<DeliveredCalls>,
}

#[derive(Default)]
struct DeliveredCalls {
    ids: HashSet<u64>,
    last_new: Option<Instant>,
}

impl Receiver {
    /// Listens on a free port of 127.0.0.1; returns it and the URL to subscribe.
    async fn serve(answer: StatusCode) -> (Arc<Receiver>, String) {
        let receiver = Arc::new(Receiver {
            answer,
            calls: AtomicU64::new(0),
            status_changes: AtomicU64::new(0),
            others: AtomicU64::new(0),
            delivered_calls: Mutex::new(DeliveredCalls::default()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("receiver listens");
        let url = format!("http://{}/events", listener.local_addr().expect("address"));
        let app = axum::Router::new().route("/events", axum::routing::post(receive)).with_state(receiver.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.expect("receiver serves") });
        (receiver, url)
    }

    /// Distinct `on_call_end` delivered, and when the last new one came.
    fn delivered_calls(&self) -> (usize, Option<Instant>) {
        let delivered = self.delivered_calls.lock().expect("delivered calls");
        (delivered.ids.len(), delivered.last_new)
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

/// `POST /events`: one delivery.
async fn receive(State(receiver): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    if contains(&body, br#""event_type":"on_call_end""#) {
        receiver.calls.fetch_add(1, Ordering::Relaxed);
        if receiver.answer.is_success() {
            let mut hasher = DefaultHasher::new();
            headers.get("webhook-id").map(|id| id.as_bytes()).unwrap_or_default().hash(&mut hasher);
            let mut delivered = receiver.delivered_calls.lock().expect("delivered calls");
            if delivered.ids.insert(hasher.finish()) {
                delivered.last_new = Some(Instant::now());
            }
        }
    } else if contains(&body, br#""event_type":"campaign.status_changed""#) {
        receiver.status_changes.fetch_add(1, Ordering::Relaxed);
    } else {
        receiver.others.fetch_add(1, Ordering::Relaxed);
    }
    receiver.answer
}

/// What one run of step 6 measured.
struct WebhookRun {
    answer: StatusCode,
    run: Run,
    receiver: Arc<Receiver>,
    /// 200: last campaign finished → last new `on_call_end` received (zero if it came before).
    lag: Option<Duration>,
    /// Peak RSS after the run: while deliveries drain (200), or over the observation (500).
    peak_after_kib: u64,
    /// RSS at the end.
    end_kib: u64,
    /// Deliveries log `pending` `total_count`, and the `outbound_webhook_backlog` gauge, at the end.
    backlog: (i64, Option<f64>),
    /// From the first activate to the last new `on_call_end` (200).
    activate_to_delivered: Option<Duration>,
}

/// `outbound_webhook_backlog` from `GET /metrics`.
async fn backlog_gauge(bench: &Bench) -> Option<f64> {
    let response = bench.api.client.get(format!("{}/metrics", bench.server.address)).send().await.ok()?;
    let text = response.text().await.ok()?;
    text.lines().find_map(|line| line.strip_prefix("outbound_webhook_backlog ")).and_then(|value| value.trim().parse().ok())
}

/// Step 6, one receiver: step 1 on a fresh server with one subscription at a receiver answering
/// `answer`; then, for a 2xx receiver, waits for every event; otherwise observes the server for
/// `ENGINE_WEBHOOK_OBSERVE_SECS` with its backlog.
async fn webhook_run(answer: StatusCode, knobs: &Knobs, problems: &mut Vec<String>) -> WebhookRun {
    let (receiver, url) = Receiver::serve(answer).await;
    let bench = Bench::start_sqlite(&["--webhook-allow-private"]).await;
    let subscription = bench.api.post("/webhooks", &json!({ "url": url, "events": ["on_call_end", "campaign.status_changed"] })).await;
    let webhook = subscription["webhook"]["id"].as_str().expect("webhook id").to_owned();
    let label = format!("webhooks, receiver answering {}, {} × {}", answer.as_u16(), knobs.campaigns, knobs.contacts);
    let run = throughput(&bench, &label, knobs.campaigns, knobs.contacts, knobs, problems).await;
    let (calls, status_changes) = (knobs.campaigns * knobs.contacts, 3 * knobs.campaigns);
    let (mut lag, mut activate_to_delivered) = (None, None);
    if answer.is_success() {
        let mut last_report = Instant::now();
        loop {
            let (delivered, last_new) = receiver.delivered_calls();
            if delivered >= calls && receiver.status_changes.load(Ordering::Relaxed) >= status_changes as u64 {
                let last_new = last_new.unwrap_or(run.finished_at);
                lag = Some(last_new.saturating_duration_since(run.finished_at));
                activate_to_delivered = Some(last_new.duration_since(run.finished_at - run.elapsed));
                break;
            }
            if run.finished_at.elapsed() > knobs.timeout {
                problems.push(format!(
                    "{label}: {delivered} of {calls} on_call_end and {} of {status_changes} campaign.status_changed received {:.0} s after \
                     the last campaign finished",
                    receiver.status_changes.load(Ordering::Relaxed),
                    run.finished_at.elapsed().as_secs_f64()
                ));
                break;
            }
            if last_report.elapsed() > Duration::from_secs(5) {
                eprintln!(
                    "  … {delivered} of {calls} on_call_end received, {:.0} s after finished",
                    run.finished_at.elapsed().as_secs_f64()
                );
                last_report = Instant::now();
            }
            tokio::time::sleep(knobs.poll).await;
        }
    } else {
        eprintln!("{label}: observing the server for {} s with its backlog …", knobs.webhook_observe.as_secs());
        tokio::time::sleep(knobs.webhook_observe).await;
    }
    let peak_after_kib = bench.peak_kib();
    let end_kib = rss_kib(bench.server.pid);
    let pending = bench.api.get(&format!("/webhooks/{webhook}/deliveries?status=pending&pageSize=1")).await["total_count"].as_i64();
    let backlog = (pending.unwrap_or(-1), backlog_gauge(&bench).await);
    eprintln!(
        "{label}: lag {lag:?}; received {} on_call_end, {} status changes, {} others; backlog {backlog:?}; peak RSS after the run {:.0} MiB",
        receiver.calls.load(Ordering::Relaxed),
        receiver.status_changes.load(Ordering::Relaxed),
        receiver.others.load(Ordering::Relaxed),
        mib(peak_after_kib)
    );
    bench.finish().await;
    WebhookRun { answer, run, receiver, lag, peak_after_kib, end_kib, backlog, activate_to_delivered }
}

/// Prints step 6 beside step 1 (`a`).
fn print_webhooks(a: &Run, runs: &[WebhookRun], knobs: &Knobs) {
    println!(
        "\nWebhooks out (step 6): step 1 again, each on a fresh server with `--webhook-allow-private` (retry delays 0s,60s,2m,4m,8m and \
         timeout 5s: the defaults), one subscription to `on_call_end` and `campaign.status_changed` at a receiver in the bench process."
    );
    println!("\n| measure | result | target |");
    println!("|---|---|---|");
    println!(
        "| a) {} × {} contacts, no subscription | {:.0} contacts/s ({:.1} s), peak RSS {:.0} MiB | |",
        a.campaigns,
        a.contacts,
        a.rate(),
        a.elapsed.as_secs_f64(),
        mib(a.peak_run_kib)
    );
    for (letter, w) in ["b", "c"].iter().zip(runs) {
        let ratio = w.run.rate() / a.rate();
        println!(
            "| {letter}) the same, receiver answers {} | {:.0} contacts/s ({:.1} s); {letter}/a = {ratio:.2} | ≥ 0.85 {} |",
            w.answer.as_u16(),
            w.run.rate(),
            w.run.elapsed.as_secs_f64(),
            verdict(ratio >= 0.85)
        );
    }
    for (letter, w) in ["b", "c"].iter().zip(runs) {
        println!(
            "| {letter}) server peak RSS during the run / after it ({}) | {:.0} / {:.0} MiB | < 200 MiB {} |",
            if w.answer.is_success() { "until every event was received" } else { "observed" },
            mib(w.run.peak_run_kib),
            mib(w.peak_after_kib),
            verdict(mib(w.run.peak_run_kib.max(w.peak_after_kib)) < 200.0)
        );
    }
    for w in runs {
        let (calls, changes, others) = (
            w.receiver.calls.load(Ordering::Relaxed),
            w.receiver.status_changes.load(Ordering::Relaxed),
            w.receiver.others.load(Ordering::Relaxed),
        );
        if let Some(lag) = w.lag {
            let (delivered, _) = w.receiver.delivered_calls();
            println!(
                "| b) last campaign finished → all {} on_call_end received ({delivered} distinct webhook-ids in {calls} deliveries; {changes} \
                 status changes, {others} others) | {:.1} s | ≤ 10 s {} |",
                w.run.campaigns * w.run.contacts,
                lag.as_secs_f64(),
                verdict(lag <= Duration::from_secs(10))
            );
            if let Some(total) = w.activate_to_delivered {
                println!(
                    "| b) deliveries, first activate → last on_call_end received | {:.0} on_call_end/s ({:.1} s) | |",
                    (w.run.campaigns * w.run.contacts) as f64 / total.as_secs_f64(),
                    total.as_secs_f64()
                );
            }
        } else if !w.answer.is_success() {
            println!(
                "| c) {} s after the run: backlog (deliveries log pending / outbound_webhook_backlog) | {} / {} ({calls} on_call_end and {changes} \
                 status-change attempts answered {}) | |",
                knobs.webhook_observe.as_secs(),
                w.backlog.0,
                w.backlog.1.map_or("?".to_owned(), |gauge| format!("{gauge:.0}")),
                w.answer.as_u16()
            );
            println!("| c) server RSS at the end of that | {:.0} MiB | < 200 MiB {} |", mib(w.end_kib), verdict(mib(w.end_kib) < 200.0));
        }
    }
}

fn verdict(met: bool) -> &'static str {
    if met { "MET" } else { "MISSED" }
}

fn main() {
    let knobs = Knobs {
        campaigns: env_or("ENGINE_CAMPAIGNS", 100),
        contacts: env_or("ENGINE_CONTACTS", 10_000),
        small_campaigns: env_or("ENGINE_SMALL_CAMPAIGNS", 10),
        first_contacts: env_or("ENGINE_FIRST_CONTACTS", 1000),
        first_trials: env_or("ENGINE_FIRST_TRIALS", 5),
        analytics_contacts: env_or("ENGINE_ANALYTICS_CONTACTS", 1_000_000),
        analytics_requests: env_or::<usize>("ENGINE_ANALYTICS_REQUESTS", 500).max(1),
        webhooks: env_or("ENGINE_WEBHOOKS", 1) == 1,
        webhook_observe: Duration::from_secs(env_or("ENGINE_WEBHOOK_OBSERVE_SECS", 60)),
        compliance: env_or("ENGINE_COMPLIANCE", 1) == 1,
        dnc_entries: env_or("ENGINE_DNC_ENTRIES", 100_000),
        plan_contacts: env_or("ENGINE_PLAN_CONTACTS", 1_000_000),
        plan_requests: env_or::<usize>("ENGINE_PLAN_REQUESTS", 500).max(1),
        poll: Duration::from_millis(env_or("ENGINE_POLL_MS", 20)),
        timeout: Duration::from_secs(env_or("ENGINE_TIMEOUT_SECS", 1800)),
    };
    if knobs.contacts > MESSAGE_LIMIT || knobs.first_contacts > MESSAGE_LIMIT {
        eprintln!(
            "ENGINE_CONTACTS and ENGINE_FIRST_CONTACTS must be at most {MESSAGE_LIMIT}: message_limit caps a campaign's attempts per 24 h"
        );
        std::process::exit(2);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    if let Ok(server_url) = std::env::var("ENGINE_POSTGRES_URL") {
        return postgres_scale_out(&runtime, &server_url, &knobs);
    }
    let mut problems = Vec::new();

    let (small, large, first, analytics) = runtime.block_on(async {
        let bench = Bench::start().await;
        let label = format!("{} × {}", knobs.small_campaigns, knobs.contacts);
        let small = throughput(&bench, &label, knobs.small_campaigns, knobs.contacts, &knobs, &mut problems).await;
        bench.finish().await;

        let bench = Bench::start().await;
        let label = format!("{} × {}", knobs.campaigns, knobs.contacts);
        let large = throughput(&bench, &label, knobs.campaigns, knobs.contacts, &knobs, &mut problems).await;
        let first = first_attempts(&bench, &knobs, &mut problems).await;
        let analytics = if knobs.analytics_contacts > 0 { Some(analytics_run(&bench, &knobs, &mut problems).await) } else { None };
        (small, large, first, analytics)
    });
    let webhooks = if knobs.webhooks {
        runtime.block_on(async {
            let ok = webhook_run(StatusCode::OK, &knobs, &mut problems).await;
            let failing = webhook_run(StatusCode::INTERNAL_SERVER_ERROR, &knobs, &mut problems).await;
            vec![ok, failing]
        })
    } else {
        Vec::new()
    };

    let compliance = if knobs.compliance { Some(runtime.block_on(compliance_run(&knobs, &mut problems))) } else { None };

    println!("\nEngine benchmark: `{}`", kit::command_line("engine", &KNOBS));
    println!("Machine: {}", machine());
    println!(
        "Server: its own process, SQLite (WAL, synchronous=FULL), `--rate-limit-rps 0 --failed-retry-limit 0`; campaigns: phone, \
         simulator (latency 0, default rates), window 00:00–24:00 UTC every day, concurrency_limit 1000, message_limit 10000, retries 0."
    );
    println!(
        "Each contact is attempted exactly once (retries 0 and --failed-retry-limit 0: a voicemail or a failed call ends it), \
         so contacts/s = attempts/s; checked: every campaign ends with calls = contactsProcessed = contacts."
    );
    println!("\n| measure | result | target |");
    println!("|---|---|---|");
    for run in [&large, &small] {
        println!(
            "| {} × {} contacts, activate → all finished | {:.0} contacts/s ({:.1} s) | ≥ 20,000/s {} |",
            run.campaigns,
            run.contacts,
            run.rate(),
            run.elapsed.as_secs_f64(),
            verdict(run.rate() >= 20_000.0)
        );
    }
    for run in [&large, &small] {
        println!(
            "| server peak RSS during the {}-campaign run | {:.0} MiB | < 200 MiB {} |",
            run.campaigns,
            mib(run.peak_run_kib),
            verdict(mib(run.peak_run_kib) < 200.0)
        );
    }
    let ratio = large.peak_run_kib as f64 / small.peak_run_kib.max(1) as f64;
    println!("| peak RSS ratio, {} vs {} campaigns | {ratio:.2}× | ≤ 1.2× {} |", large.campaigns, small.campaigns, verdict(ratio <= 1.2));
    if !first.is_empty() {
        let max = first.last().copied().unwrap_or_default();
        println!(
            "| activate → first attempt in /calls, {} trials × {} contacts | median {:.0} ms, max {:.0} ms | < 1 s {} |",
            first.len(),
            knobs.first_contacts,
            quantile_ms(&first, 0.5),
            max.as_secs_f64() * 1000.0,
            verdict(max < Duration::from_secs(1))
        );
    }
    if let Some(a) = &analytics {
        println!(
            "| GET /campaigns/{{id}} of a {}-contact campaign ({} calls made, the rest waiting), {} requests | p50 {:.2} ms, p99 {:.2} ms | < 10 ms {} |",
            a.contacts,
            a.budget,
            a.spent.len(),
            quantile_ms(&a.spent, 0.5),
            quantile_ms(&a.spent, 0.99),
            verdict(quantile_ms(&a.spent, 0.99) < 10.0)
        );
        println!(
            "| the same right after activate, while the engine runs it | p50 {:.2} ms, p99 {:.2} ms | |",
            quantile_ms(&a.running, 0.5),
            quantile_ms(&a.running, 0.99)
        );
        println!(
            "| 1 campaign of {} contacts: activate → {} calls (its 24-h message_limit) | {:.0} contacts/s ({:.1} s) | |",
            a.contacts,
            a.budget,
            a.budget as f64 / a.run.as_secs_f64(),
            a.run.as_secs_f64()
        );
    }
    println!("\nLoading (batch endpoint, 4 clients × 1000/batch), for reference:");
    for run in [&large, &small] {
        println!(
            "- {} × {}: {:.0} contacts/s ({:.1} s), server peak RSS while loading {:.0} MiB",
            run.campaigns,
            run.contacts,
            run.load_rate(),
            run.load.as_secs_f64(),
            mib(run.peak_load_kib)
        );
    }
    if let Some(a) = &analytics {
        println!("- 1 × {}: {:.0} contacts/s ({:.1} s)", a.contacts, a.contacts as f64 / a.load.as_secs_f64(), a.load.as_secs_f64());
    }
    if !webhooks.is_empty() {
        print_webhooks(&large, &webhooks, &knobs);
    }
    if let Some(compliance) = &compliance {
        print_compliance(&large, compliance, &knobs);
    }
    exit_on_problems(&problems);
}

/// `ENGINE_POSTGRES_URL` set: the throughput run on PostgreSQL, with one engine process and then
/// with two over one database (each run on a fresh database), and the ratio between them.
fn postgres_scale_out(runtime: &tokio::runtime::Runtime, server_url: &str, knobs: &Knobs) {
    let mut problems = Vec::new();
    let runs: Vec<Run> = runtime.block_on(async {
        let mut runs = Vec::new();
        for processes in [1, 2] {
            let bench = Bench::start_postgres(server_url, processes).await;
            let label = format!("PostgreSQL, {processes} process(es), {} × {}", knobs.campaigns, knobs.contacts);
            runs.push(throughput(&bench, &label, knobs.campaigns, knobs.contacts, knobs, &mut problems).await);
            bench.finish().await;
        }
        runs
    });
    println!("\nEngine benchmark on PostgreSQL: `{}`", kit::command_line("engine", &KNOBS));
    println!("Machine: {}", machine());
    println!(
        "Servers: `outbound serve` processes (API and engine each) over one fresh PostgreSQL database per run, \
         `--rate-limit-rps 0 --failed-retry-limit 0`; campaigns as in the SQLite run (simulator, latency 0, window always open, \
         concurrency_limit 1000, message_limit 10000, retries 0); the bench talks to the first process only."
    );
    println!(
        "\n| engine processes | {} × {} contacts, activate → all finished | first process's peak RSS |",
        knobs.campaigns, knobs.contacts
    );
    println!("|---|---|---|");
    for (processes, run) in [1, 2].iter().zip(&runs) {
        println!("| {processes} | {:.0} contacts/s ({:.1} s) | {:.0} MiB |", run.rate(), run.elapsed.as_secs_f64(), mib(run.peak_run_kib));
    }
    if let [one, two] = runs.as_slice() {
        println!("\nTwo processes vs one: {:.2}×", two.rate() / one.rate());
    }
    exit_on_problems(&problems);
}

/// Lists the problems found (at most 50) and exits with status 1, if there are any.
fn exit_on_problems(problems: &[String]) {
    if !problems.is_empty() {
        eprintln!("\nFAILED: {} problem(s):", problems.len());
        for problem in problems.iter().take(50) {
            eprintln!("- {problem}");
        }
        std::process::exit(1);
    }
}

/// What steps 7 and 8 measured.
struct Compliance {
    dnc_entries: usize,
    dnc_load: Duration,
    run: Run,
    plan: Option<PlanRun>,
}

struct PlanRun {
    contacts: usize,
    listed: usize,
    other_zone: usize,
    latencies: Vec<Duration>,
    plan: serde_json::Value,
}

/// Contacts in step 8's campaign whose numbers are in Tijuana, two hours behind Mexico City.
const OTHER_ZONE_SHARE: usize = 10;
/// Step 8's campaign numbers put on the list after they were added.
const PLAN_LISTED: usize = 1000;

/// Calling hours from the start of this hour to three hours on, in Mexico City (clamped to the
/// day): open for the Mexico City numbers of steps 7 and 8 for the next two hours at least, and
/// closed for Tijuana's (one or two hours behind) for the next hour at least.
fn hours_around_now() -> serde_json::Value {
    let hour = jiff::Zoned::now().in_tz("America/Mexico_City").map(|now| i64::from(now.hour())).unwrap_or(12);
    json!({ "start": format!("{hour:02}:00"), "end": format!("{:02}:00", (hour + 3).min(24)) })
}

/// POSTs `items` to `path` under `field`, 1,000 per request, from 4 clients; returns the time taken.
async fn post_in_batches(api: &Api, path: &str, field: &str, items: Vec<serde_json::Value>, created: &str) -> Duration {
    let batches: Vec<Vec<serde_json::Value>> = items.chunks(1000).map(<[_]>::to_vec).collect();
    let next = Arc::new(AtomicU64::new(0));
    let batches = Arc::new(batches);
    let started = Instant::now();
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (api, next, batches) = (api.clone(), next.clone(), batches.clone());
            let (path, field, created) = (path.to_owned(), field.to_owned(), created.to_owned());
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed) as usize;
                    let Some(batch) = batches.get(n) else { break };
                    let reply = api.post(&path, &json!({ field.as_str(): batch })).await;
                    assert_eq!(reply["summary"][created.as_str()].as_u64(), Some(batch.len() as u64), "{}", reply["summary"]);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("loader");
    }
    started.elapsed()
}

/// Step 7: step 1 again on a fresh server whose organization lists `dnc_entries` other numbers
/// (every claimed contact is looked up in that list) and whose campaigns have `contact_hours`
/// (open now for their contacts, so every contact is attempted); then step 8 on that server.
async fn compliance_run(knobs: &Knobs, problems: &mut Vec<String>) -> Compliance {
    let mut bench = Bench::start().await;
    eprintln!("compliance: listing {} numbers …", knobs.dnc_entries);
    let entries = (0..knobs.dnc_entries).map(|i| json!({ "contact": format!("+5233{i:08}"), "channel": "phone_call" })).collect();
    let dnc_load = post_in_batches(&bench.api, "/dnc", "entries", entries, "created").await;
    bench.extra_settings.insert("contact_hours".to_owned(), hours_around_now());
    let label = format!("{} × {} with a do-not-contact list and contact hours", knobs.campaigns, knobs.contacts);
    let run = throughput(&bench, &label, knobs.campaigns, knobs.contacts, knobs, problems).await;
    let plan = if knobs.plan_contacts > 0 { Some(plan_run(&bench, knobs, problems).await) } else { None };
    bench.finish().await;
    Compliance { dnc_entries: knobs.dnc_entries, dnc_load, run, plan }
}

/// Step 8: `GET /campaigns/{id}/plan` of a campaign of `plan_contacts` (a tenth in Tijuana,
/// outside their calling hours; the last 1,000 listed after they were added) once its 24-hour
/// `message_limit` is spent; checks the counts add up and each reason holds what it should.
async fn plan_run(bench: &Bench, knobs: &Knobs, problems: &mut Vec<String>) -> PlanRun {
    let api = &bench.api;
    let contacts = knobs.plan_contacts;
    let other_zone = contacts / OTHER_ZONE_SHARE;
    let local = contacts - other_zone;
    let listed = PLAN_LISTED.min(local.saturating_sub(MESSAGE_LIMIT));
    let id = bench.campaign("plan preview").await;
    eprintln!("plan: loading {contacts} contacts …");
    let items = (0..local)
        .map(|i| json!({ "contact": kit::phone(i) }))
        .chain((0..other_zone).map(|i| json!({ "contact": format!("+52664{i:07}") })))
        .collect();
    post_in_batches(api, &format!("/campaigns/{id}/contacts"), "contacts", items, "created").await;
    let entries = (local - listed..local).map(|i| json!({ "contact": kit::phone(i), "channel": "all" })).collect();
    post_in_batches(api, "/dnc", "entries", entries, "created").await;
    let started = Instant::now();
    api.post(&format!("/campaigns/{id}/activate"), &json!({})).await;
    while api.campaign(id).await["analytics"]["calls"].as_u64() != Some(MESSAGE_LIMIT as u64) {
        if started.elapsed() > knobs.timeout {
            problems.push(format!("plan: campaign {id} has not made {MESSAGE_LIMIT} calls after {:.0} s", started.elapsed().as_secs_f64()));
            break;
        }
        tokio::time::sleep(knobs.poll).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut latencies = Vec::with_capacity(knobs.plan_requests);
    for _ in 0..knobs.plan_requests {
        let sent = Instant::now();
        api.get(&format!("/campaigns/{id}/plan")).await;
        latencies.push(sent.elapsed());
    }
    latencies.sort();
    let plan = api.get(&format!("/campaigns/{id}/plan")).await["plan"].clone();
    let blocked = &plan["blocked"];
    let blocked_total: i64 = blocked.as_object().map(|b| b.values().filter_map(serde_json::Value::as_i64).sum()).unwrap_or(0);
    let remaining = (contacts - MESSAGE_LIMIT) as i64;
    let expected = [
        ("remaining", plan["remaining"].as_i64(), remaining),
        ("eligible_now + blocked", plan["eligible_now"].as_i64().map(|n| n + blocked_total), remaining),
        ("blocked.suppressed", blocked["suppressed"].as_i64(), listed as i64),
        ("blocked.contact_hours", blocked["contact_hours"].as_i64(), other_zone as i64),
        ("blocked.message_limit", blocked["message_limit"].as_i64(), remaining - (listed + other_zone) as i64),
    ];
    for (what, got, want) in expected {
        if got != Some(want) {
            problems.push(format!("plan: {what} = {got:?} (expected {want}); plan {plan}"));
        }
    }
    PlanRun { contacts, listed, other_zone, latencies, plan }
}

/// Prints steps 7 and 8 beside step 1 (`a`).
fn print_compliance(a: &Run, c: &Compliance, knobs: &Knobs) {
    let b = &c.run;
    println!(
        "\nCompliance (steps 7 and 8): step 1 again on a fresh server whose organization lists {} other numbers (`POST /dnc`, \
         1,000 per request: {:.0} entries/s) and whose campaigns have `contact_hours` open now for their contacts (Mexico City):",
        c.dnc_entries,
        c.dnc_entries as f64 / c.dnc_load.as_secs_f64()
    );
    println!("\n| measure | result | target |");
    println!("|---|---|---|");
    println!("| a) step 1, activate → all finished | {:.0} contacts/s ({:.1} s) | |", a.rate(), a.elapsed.as_secs_f64());
    let ratio = b.rate() / a.rate();
    println!(
        "| b) with the list and contact hours | {:.0} contacts/s ({:.1} s), peak RSS {:.0} MiB: b/a = {ratio:.2} | ≥ 0.85 {} |",
        b.rate(),
        b.elapsed.as_secs_f64(),
        mib(b.peak_run_kib),
        verdict(ratio >= 0.85)
    );
    if let Some(p) = &c.plan {
        let p99 = quantile_ms(&p.latencies, 0.99);
        println!(
            "| GET /campaigns/{{id}}/plan of a {}-contact campaign ({} in a zone outside its hours, {} listed, {} calls made), {} requests | \
             p50 {:.2} ms, p99 {p99:.2} ms | p99 < 50 ms {} |",
            p.contacts,
            p.other_zone,
            p.listed,
            MESSAGE_LIMIT,
            knobs.plan_requests,
            quantile_ms(&p.latencies, 0.5),
            verdict(p99 < 50.0)
        );
        println!("\nThe plan: {}", p.plan);
    }
}
