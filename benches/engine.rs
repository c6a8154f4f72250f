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
//!    campaign cannot finish within a day); the time to those 10,000 calls is printed too.
//!
//! With `retries` 0 and `--failed-retry-limit 0` a voicemail or a failed call ends the contact, so
//! every contact is attempted exactly once: contacts/s is attempts/s. The bench checks it (each
//! campaign ends with `calls` = `contactsProcessed` = `contacts`) and exits with status 1 if not,
//! or if a run does not finish within `ENGINE_TIMEOUT_SECS`. A missed target does not fail it.
//!
//! With `ENGINE_POSTGRES_URL=postgres://USER@HOST:PORT` it measures instead step 1 on PostgreSQL
//! (a throwaway database per run), first with one `outbound serve` process, then with two over
//! the same database (both dispatch), and prints the ratio.
//!
//! Knobs (environment): `ENGINE_POSTGRES_URL` (unset: SQLite), `ENGINE_CAMPAIGNS` (100), `ENGINE_CONTACTS` (10000 per campaign),
//! `ENGINE_SMALL_CAMPAIGNS` (10), `ENGINE_FIRST_CONTACTS` (1000), `ENGINE_FIRST_TRIALS` (5),
//! `ENGINE_ANALYTICS_CONTACTS` (1000000; 0 skips step 5), `ENGINE_ANALYTICS_REQUESTS` (500),
//! `ENGINE_POLL_MS` (20), `ENGINE_TIMEOUT_SECS` (1800), `BENCH_SERVER_LOG` (the server's RUST_LOG,
//! default `warn`; its stderr is dropped).

#[path = "../tests/kit/mod.rs"]
mod kit;

use std::time::{Duration, Instant};

use kit::postgres::ThrowawayDatabase;
use kit::{Api, MemoryWatch, Server, env_or, machine, mib, quantile_ms};
use serde_json::json;

/// The campaigns' `message_limit` (the contract's maximum): attempts started per rolling 24 h.
const MESSAGE_LIMIT: usize = 10_000;

const KNOBS: [&str; 10] = [
    "ENGINE_POSTGRES_URL",
    "ENGINE_CAMPAIGNS",
    "ENGINE_CONTACTS",
    "ENGINE_SMALL_CAMPAIGNS",
    "ENGINE_FIRST_CONTACTS",
    "ENGINE_FIRST_TRIALS",
    "ENGINE_ANALYTICS_CONTACTS",
    "ENGINE_ANALYTICS_REQUESTS",
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
}

/// Where a bench run keeps its data.
enum Database {
    Sqlite { _dir: tempfile::TempDir },
    Postgres(ThrowawayDatabase),
}

impl Bench {
    /// A server on a fresh SQLite file.
    async fn start() -> Bench {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("engine.db").display());
        Bench::start_on(url, Database::Sqlite { _dir: dir }, 1).await
    }

    /// `processes` servers, each with its engine, on a fresh PostgreSQL database.
    async fn start_postgres(server_url: &str, processes: usize) -> Bench {
        let database = ThrowawayDatabase::new(server_url, "outbound_engine_bench").await.unwrap_or_else(|e| panic!("{e}"));
        Bench::start_on(database.url.clone(), Database::Postgres(database), processes).await
    }

    async fn start_on(url: String, database: Database, processes: usize) -> Bench {
        let args: Vec<String> =
            ["--listen", "127.0.0.1:0", "--database", &url, "--rate-limit-rps", "0", "--failed-retry-limit", "0"].map(str::to_owned).into();
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
        Bench { server, _others: others, watch, api, agent, integration, database }
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
        let settings = json!({ "retries": 0, "concurrency_limit": 1000, "message_limit": MESSAGE_LIMIT });
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
    let peak_run_kib = bench.peak_kib();
    let run = Run { campaigns, contacts, load, elapsed, peak_load_kib, peak_run_kib };
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
