//! Real-provider throughput and pacing (PROVIDERS.md §1–§3): one command, `cargo bench --bench
//! providers`.
//!
//! Starts the real `outbound serve` (the bench profile's binary) on a fresh SQLite file
//! (`--rate-limit-rps 0 --failed-retry-limit 0`, `--public-url` its own address) beside the mock
//! providers of `tests/kit/providers_mock.rs` (an axum server in this process playing Twilio's
//! Calls.json and the WhatsApp Cloud API, answering each hand-off at once and posting its signed
//! callbacks back at once), and measures:
//! a) `PROVIDERS_CONTACTS` contacts (100,000) through the mock Twilio: one `twilio` integration at
//!    `max_per_second` 10000 (the most a config takes), shared by as many campaigns as
//!    `message_limit` (at most 10,000 attempts per campaign per 24 h) requires, window always
//!    open, `concurrency_limit` 1000, `retries` 0 (so every contact is called exactly once):
//!    hand-offs/s (creates the mock received, from the first to the last), callbacks/s
//!    (callbacks the server acknowledged, from activation until the last of them), contacts/s
//!    (activation until every campaign is `finished`) and the server's peak VmRSS;
//! b) the same through the mock Graph API (`whatsapp_cloud`, template campaigns), on a fresh
//!    server; the mock first checks the callback URL's verification `GET`;
//! b2) the same through the mock Vapi (`vapi`: `status-update`s then the `end-of-call-report`,
//!    authenticated by the `X-Vapi-Secret` the hand-off asked for) and the mock Retell (`retell`:
//!    `call_started`, `call_ended`, `call_analyzed`, signed `x-retell-signature`), each on a
//!    fresh server, also measuring final reports/s (end-of-call reports, `call_analyzed`);
//! c) pacing, on a fresh server: three `twilio` integrations at `max_per_second` 50, 5 and 1
//!    (Twilio's default), each shared by two campaigns with more contacts than the window can
//!    take, all running at once; once an integration's first create arrived and
//!    `PROVIDERS_WARMUP_SECS` (5) passed, the creates the mock received in the next
//!    `PROVIDERS_PACE_SECS` (60) seconds, and their ratio to `max_per_second` × that time
//!    (target: within 2%), with the most creates in any one second (the pace allows 0.25 s of
//!    burst).
//!
//! It prints one markdown table row per measure. It checks, besides: every contact handed off
//! exactly once in a) and b) (creates = distinct attempt ids = contacts, every campaign
//! `finished` with `calls` and `contactsProcessed`, or `messages`, `sent`, `delivered` and `read`
//! = its contacts), no problem seen by the mock (a bad create, a refused callback), every
//! callback acknowledged; any failure is printed and makes it exit 1. A missed pacing target
//! does not fail it.
//!
//! Knobs (environment): `PROVIDERS_CONTACTS` (100000), `PROVIDERS_PACE_SECS` (60),
//! `PROVIDERS_WARMUP_SECS` (5), `PROVIDERS_STEPS` (`twilio,whatsapp,vapi,retell,pacing`: which
//! steps run),
//! `PROVIDERS_TIMEOUT_SECS` (1800 per step), `BENCH_SERVER_LOG` (the server's `RUST_LOG`, `warn`;
//! its log goes to a temp dir that is printed when a step fails). A quick run:
//! `PROVIDERS_CONTACTS=2000 PROVIDERS_PACE_SECS=10 cargo bench --bench providers`.

#[path = "../tests/kit/mod.rs"]
mod kit;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use kit::mock::Watch;
use kit::providers_mock::{ProvidersMock, creates_within, hex32, most_within};
use kit::{Api, MemoryWatch, Server, env_or, mib};
use serde_json::json;

const KNOBS: [&str; 6] =
    ["PROVIDERS_CONTACTS", "PROVIDERS_PACE_SECS", "PROVIDERS_WARMUP_SECS", "PROVIDERS_STEPS", "PROVIDERS_TIMEOUT_SECS", "BENCH_SERVER_LOG"];
/// The campaigns' `message_limit` (the contract's maximum).
const MESSAGE_LIMIT: usize = 10_000;
/// No create nor acknowledged callback for this long fails a step.
const STALL: Duration = Duration::from_secs(120);
const PHONE_NUMBER_ID: &str = "106540352242922";

/// A server on a fresh SQLite file with the mock providers beside it.
struct Setup {
    server: Server,
    watch: MemoryWatch,
    api: Api,
    agent: String,
    mock: Arc<ProvidersMock>,
    mock_url: String,
    dir: tempfile::TempDir,
}

impl Setup {
    async fn start(name: &str) -> Setup {
        let dir = tempfile::tempdir().expect("temp dir");
        let database = format!("sqlite://{}", dir.path().join("providers.db").display());
        let listen = format!("127.0.0.1:{}", kit::free_port());
        let args: Vec<String> = [
            "--listen",
            &listen,
            "--public-url",
            &format!("http://{listen}"),
            "--database",
            &database,
            "--rate-limit-rps",
            "0",
            "--failed-retry-limit",
            "0",
        ]
        .map(str::to_owned)
        .into();
        let server = kit::start_server(&args, &dir.path().join("server.log")).await;
        let watch = MemoryWatch::new(server.pid);
        let api = Api::new(&server.address, server.key.as_deref().expect("bootstrap key on a fresh database"));
        let agent = api.create_agent(name).await;
        let mock = ProvidersMock::new(0);
        let mock_url = mock.serve().await;
        Setup { server, watch, api, agent, mock, mock_url, dir }
    }

    /// A `twilio` integration at `per_second` on a new mock account; returns its id and the sid.
    async fn twilio(&self, seed: u64, per_second: f64) -> (String, String) {
        let (sid, token) = (format!("AC{}", hex32(seed)), hex32(seed ^ 0x5eed));
        self.mock.add_twilio(&sid, &token);
        let config = json!({
            "account_sid": sid, "auth_token": token, "from": "+15005550006", "twiml_url": format!("{}/twiml", self.mock_url),
            "api_base": self.mock_url, "max_per_second": per_second, "machine_detection": "Enable", "record": false,
        });
        let integration = self.api.create_integration_of(&self.agent, "phone_call", "twilio", config).await;
        (integration["id"].as_str().expect("id").to_owned(), sid)
    }

    /// A `whatsapp_cloud` integration at `per_second`, its callback URL checked by the mock.
    async fn whatsapp(&self, per_second: f64, failures: &mut Vec<String>) -> String {
        let (token, secret, verify) = (hex32(1), hex32(2), "verify-me");
        let config = json!({
            "phone_number_id": PHONE_NUMBER_ID, "access_token": token, "app_secret": secret, "verify_token": verify,
            "api_base": self.mock_url, "max_per_second": per_second,
        });
        let integration = self.api.create_integration_of(&self.agent, "whatsapp", "whatsapp_cloud", config).await;
        let callback_url = integration["callback_url"].as_str().expect("callback_url");
        if let Err(err) = self.mock.add_whatsapp(PHONE_NUMBER_ID, &token, &secret, verify, callback_url).await {
            failures.push(format!("WhatsApp callback URL verification: {err}"));
        }
        integration["id"].as_str().expect("id").to_owned()
    }

    /// A `vapi` integration at `per_second` on a mock org.
    async fn vapi(&self, per_second: f64) -> String {
        let api_key = hex32(3);
        self.mock.add_vapi(&api_key);
        let config = json!({
            "api_key": api_key, "assistant_id": "4a170597-a0c2-4657-8c32-cb93f080cead",
            "phone_number_id": "c6ea6cb0-0dfb-4a65-918f-6a33abb54b64", "server_secret": hex32(4),
            "api_base": self.mock_url, "max_per_second": per_second,
        });
        let integration = self.api.create_integration_of(&self.agent, "phone_call", "vapi", config).await;
        integration["id"].as_str().expect("id").to_owned()
    }

    /// A `retell` integration at `per_second`, its agent's webhook URL set to the callback URL.
    async fn retell(&self, per_second: f64) -> String {
        let api_key = format!("key_{}", hex32(5));
        let config = json!({
            "api_key": api_key, "from_number": "+14157774444", "agent_id": "oBeDLoLOeuAbiuaMFXRtDOLriTJ5tSxD",
            "api_base": self.mock_url, "max_per_second": per_second,
        });
        let integration = self.api.create_integration_of(&self.agent, "phone_call", "retell", config).await;
        self.mock.add_retell(&api_key, integration["callback_url"].as_str().expect("callback_url"));
        integration["id"].as_str().expect("id").to_owned()
    }

    /// `count` campaigns on `integration` with `per_campaign` contacts each, loaded.
    async fn campaigns(&self, integration: &str, whatsapp: bool, count: usize, per_campaign: usize) -> Vec<i64> {
        let settings = if whatsapp {
            json!({ "integration_type": "whatsapp", "template": "order_update", "retries": 0, "message_limit": MESSAGE_LIMIT })
        } else {
            json!({ "retries": 0, "concurrency_limit": 1000, "message_limit": MESSAGE_LIMIT })
        };
        let mut ids = Vec::with_capacity(count);
        for i in 0..count {
            ids.push(self.api.create_campaign(&format!("providers {i}"), &self.agent, integration, settings.clone()).await);
        }
        self.api.load_contacts(&ids, per_campaign).await;
        ids
    }

    async fn activate(&self, ids: &[i64]) {
        for id in ids {
            self.api.post(&format!("/campaigns/{id}/activate"), &json!({})).await;
        }
    }

    /// Polls the campaigns in order until each is `finished`; `Err` at the deadline or a stall.
    async fn wait_finished(&self, ids: &[i64], started: Instant, timeout: Duration) -> Result<(), String> {
        let mut watch = Watch::new(started, timeout, STALL, self.mock.progress());
        let mut next = 0;
        while next < ids.len() {
            let campaign = self.api.campaign(ids[next]).await;
            if campaign["status"] == "finished" {
                next += 1;
                continue;
            }
            if let Some(why) = watch.verdict_at(self.mock.progress(), &campaign) {
                return Err(why);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// The mock's problems, and a kept temp dir with the server's log, as failures.
    fn failures(self, failures: &mut Vec<String>, step: &str) {
        let record = self.mock.record.lock().expect("record");
        if record.problem_count > 0 {
            failures.push(format!("{step}: the mock saw {} problems, e.g. {:?}", record.problem_count, record.problems.first()));
        }
        drop(record);
        if !failures.is_empty() {
            eprintln!("{step}: kept {} (server.log, providers.db)", self.dir.keep().display());
        }
    }
}

/// The provider a throughput step runs through.
#[derive(Clone, Copy, PartialEq)]
enum Through {
    Twilio,
    Whatsapp,
    Vapi,
    Retell,
}

impl Through {
    fn name(self) -> &'static str {
        match self {
            Through::Twilio => "Twilio",
            Through::Whatsapp => "WhatsApp Cloud API",
            Through::Vapi => "Vapi",
            Through::Retell => "Retell",
        }
    }

    /// What its final callbacks are called in the table.
    fn finals(self) -> &'static str {
        match self {
            Through::Twilio => "completed callbacks",
            Through::Whatsapp => "read statuses",
            Through::Vapi => "end-of-call reports",
            Through::Retell => "call_analyzed webhooks",
        }
    }
}

/// a), b) and b2): `contacts` contacts through one provider; returns the table rows.
async fn throughput(through: Through, contacts: usize, timeout: Duration, failures: &mut Vec<String>) -> Vec<String> {
    let name = through.name();
    let whatsapp = through == Through::Whatsapp;
    let setup = Setup::start(&format!("{name} bench")).await;
    let mut step_failures = Vec::new();
    let (integration, account) = match through {
        Through::Whatsapp => (setup.whatsapp(10_000.0, &mut step_failures).await, PHONE_NUMBER_ID.to_owned()),
        Through::Twilio => setup.twilio(1, 10_000.0).await,
        Through::Vapi => (setup.vapi(10_000.0).await, hex32(3)),
        Through::Retell => (setup.retell(10_000.0).await, format!("key_{}", hex32(5))),
    };
    let campaigns = contacts.div_ceil(MESSAGE_LIMIT).max(1);
    let per_campaign = contacts.div_ceil(campaigns);
    let total = campaigns * per_campaign;
    eprintln!("{name}: loading {campaigns} campaigns × {per_campaign} contacts …");
    let ids = setup.campaigns(&integration, whatsapp, campaigns, per_campaign).await;
    setup.watch.take_peak(setup.server.pid);
    let started = Instant::now();
    setup.activate(&ids).await;
    if let Err(why) = setup.wait_finished(&ids, started, timeout).await {
        step_failures.push(format!("{name}: {why}"));
    }
    let finished = started.elapsed();
    // Callbacks may still be on their way (a WhatsApp contact is done once `sent`): wait while
    // they keep being acknowledged.
    let (mut last_acked, mut moved_at) = (setup.mock.callback_counts().acked, Instant::now());
    while setup.mock.pending.load(Ordering::Relaxed) > 0 && moved_at.elapsed() < STALL && started.elapsed() < timeout {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let acked = setup.mock.callback_counts().acked;
        if acked != last_acked {
            (last_acked, moved_at) = (acked, Instant::now());
        }
    }
    let callbacks_done = started.elapsed();
    let peak = setup.watch.take_peak(setup.server.pid);
    let times = setup.mock.create_times(&account);
    let callbacks = setup.mock.callback_counts();
    let distinct = setup.mock.distinct.load(Ordering::Relaxed);
    let creates = setup.mock.creates.load(Ordering::Relaxed);
    if creates != total as u64 || distinct != total as u64 {
        step_failures.push(format!("{name}: {creates} creates of {distinct} attempt ids for {total} contacts (each once expected)"));
    }
    if setup.mock.pending.load(Ordering::Relaxed) > 0 || callbacks.acked != callbacks.callbacks {
        step_failures.push(format!("{name}: {} of {} callbacks acknowledged", callbacks.acked, callbacks.callbacks));
    }
    // Every contact processed: called (phone), or sent, delivered and read (WhatsApp).
    let counted: &[&str] = if whatsapp { &["messages", "sent", "delivered", "read"] } else { &["calls", "contactsProcessed"] };
    for id in &ids {
        let campaign = setup.api.campaign(*id).await;
        let analytics = &campaign["analytics"];
        let short: Vec<String> = counted
            .iter()
            .filter(|field| analytics[**field].as_u64() != Some(per_campaign as u64))
            .map(|field| format!("{field} {}", analytics[*field]))
            .collect();
        if campaign["status"] != "finished" || !short.is_empty() {
            step_failures.push(format!(
                "{name}: campaign {id} is {} with {} of {per_campaign} contacts",
                campaign["status"],
                short.join(", ")
            ));
        }
    }
    let span = match (times.first(), times.last()) {
        (Some(first), Some(last)) if last > first => (*last - *first).as_secs_f64(),
        _ => f64::NAN,
    };
    let rows = vec![
        format!("| {name}: hand-offs/s ({creates} creates, first → last create, {span:.1} s) | {:.0} |", times.len() as f64 / span),
        format!(
            "| {name}: callbacks/s ({} acknowledged of {} POSTs, activation → last acknowledged, {:.1} s) | {:.0} |",
            callbacks.acked,
            callbacks.posts,
            callbacks_done.as_secs_f64(),
            callbacks.acked as f64 / callbacks_done.as_secs_f64()
        ),
        format!(
            "| {name}: {}/s ({} acknowledged, activation → last acknowledged, {:.1} s) | {:.0} |",
            through.finals(),
            callbacks.finals_acked,
            callbacks_done.as_secs_f64(),
            callbacks.finals_acked as f64 / callbacks_done.as_secs_f64()
        ),
        format!(
            "| {name}: contacts/s ({total} contacts in {campaigns} campaigns, activation → all finished, {:.1} s) | {:.0} |",
            finished.as_secs_f64(),
            total as f64 / finished.as_secs_f64()
        ),
        format!("| {name}: server peak RSS during the run | {:.0} MiB |", mib(peak)),
    ];
    for row in &rows {
        println!("{row}");
    }
    setup.failures(&mut step_failures, name);
    failures.extend(step_failures);
    rows
}

/// c): three integrations at 50/s, 5/s and 1/s over `window` after `warmup`; returns the rows.
async fn pacing(window: Duration, warmup: Duration, failures: &mut Vec<String>) -> Vec<String> {
    let setup = Setup::start("Pacing bench").await;
    let mut step_failures = Vec::new();
    let rates = [50.0_f64, 5.0, 1.0];
    let mut paced = Vec::new();
    for (i, rate) in rates.iter().enumerate() {
        let (integration, account) = setup.twilio(100 + i as u64, *rate).await;
        // Enough contacts to outlast the window, over two campaigns.
        let needed = (rate * (warmup + window).as_secs_f64() * 1.2) as usize + 20;
        let per_campaign = needed.div_ceil(2);
        if per_campaign > MESSAGE_LIMIT {
            step_failures.push(format!(
                "pacing: {rate}/s over {} s needs {per_campaign} contacts per campaign, over message_limit",
                window.as_secs()
            ));
            continue;
        }
        eprintln!("pacing {rate}/s: loading 2 campaigns × {per_campaign} contacts …");
        let ids = setup.campaigns(&integration, false, 2, per_campaign).await;
        paced.push((*rate, account, ids, 2 * per_campaign));
    }
    for (_, _, ids, _) in &paced {
        setup.activate(ids).await;
    }
    let started = Instant::now();
    eprintln!("pacing: activated; measuring for {} s after {} s of warm-up …", window.as_secs(), warmup.as_secs());
    // Wait until every integration's window has passed.
    let mut rows = Vec::new();
    for (rate, account, _, loaded) in &paced {
        let first = loop {
            if let Some(first) = setup.mock.create_times(account).first().copied() {
                break first;
            }
            if started.elapsed() > STALL {
                step_failures.push(format!("pacing {rate}/s: no create in {} s", STALL.as_secs()));
                break started;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let from = first + warmup;
        let until = from + window + Duration::from_millis(500);
        if let Some(wait) = until.checked_duration_since(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
        let times = setup.mock.create_times(account);
        let count = creates_within(&times, from, window);
        let ratio = count as f64 / (rate * window.as_secs_f64());
        let most = most_within(&times, Duration::from_secs(1));
        if times.len() >= *loaded {
            step_failures.push(format!("pacing {rate}/s: the campaigns ran out of contacts before the window ended"));
        }
        rows.push(format!(
            "| pacing: creates in {} s at max_per_second {rate} (after {} s of warm-up); ratio to {rate} × {} s (target 0.98–1.02) | {count} ({ratio:.3}) |",
            window.as_secs(),
            warmup.as_secs(),
            window.as_secs()
        ));
        rows.push(format!("| pacing: most creates in any 1 s at max_per_second {rate} (the whole run) | {most} |"));
    }
    for row in &rows {
        println!("{row}");
    }
    setup.failures(&mut step_failures, "pacing");
    failures.extend(step_failures);
    rows
}

fn main() {
    let contacts: usize = env_or("PROVIDERS_CONTACTS", 100_000);
    let window = Duration::from_secs(env_or("PROVIDERS_PACE_SECS", 60));
    let warmup = Duration::from_secs(env_or("PROVIDERS_WARMUP_SECS", 5));
    let steps: String = env_or("PROVIDERS_STEPS", "twilio,whatsapp,vapi,retell,pacing".to_owned());
    let timeout = Duration::from_secs(env_or("PROVIDERS_TIMEOUT_SECS", 1800));
    println!("Providers bench: `{}`", kit::command_line("providers", &KNOBS));
    println!("Machine: {}", kit::machine());
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let mut failures = Vec::new();
    let rows: Vec<String> = runtime.block_on(async {
        let mut rows = Vec::new();
        for step in steps.split(',').map(str::trim) {
            match step {
                "twilio" => rows.extend(throughput(Through::Twilio, contacts, timeout, &mut failures).await),
                "whatsapp" => rows.extend(throughput(Through::Whatsapp, contacts, timeout, &mut failures).await),
                "vapi" => rows.extend(throughput(Through::Vapi, contacts, timeout, &mut failures).await),
                "retell" => rows.extend(throughput(Through::Retell, contacts, timeout, &mut failures).await),
                "pacing" => rows.extend(pacing(window, warmup, &mut failures).await),
                other => failures.push(format!("PROVIDERS_STEPS: unknown step {other:?} (twilio, whatsapp, vapi, retell, pacing)")),
            }
        }
        rows
    });
    println!("\n| measure | result |\n|---|---:|");
    for row in rows {
        println!("{row}");
    }
    if !failures.is_empty() {
        eprintln!("\nFAILED:");
        for failure in &failures {
            eprintln!("- {failure}");
        }
        std::process::exit(1);
    }
}
