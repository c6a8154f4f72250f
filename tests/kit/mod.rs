//! The system-test kit: what the system tests (`tests/system/`) and the load benches
//! (`benches/*.rs`) share, included by each with `#[path = "…/tests/kit/mod.rs"] mod kit;`. It
//! starts the real `outbound serve` binary as its own process (as `benches/contacts.rs` does),
//! talks to its API, loads contacts, watches its memory and collects violations; [`mock`] is the
//! mock webhook provider, [`providers_mock`] a mock of the real providers' APIs (Twilio's Calls.json
//! and the WhatsApp Cloud API, with their signed callbacks), [`postgres`] a throwaway PostgreSQL
//! database (and the skip-or-fail rules for PostgreSQL and Redis), and [`crash`],
//! [`provider_crash`] and [`scaleout`] are the scenarios with their checks, parametrised by size:
//! the system tests run them small on every change, `cargo bench --bench crash`, `cargo bench
//! --bench provider_crash` and `cargo bench --bench scaleout` large.

// Each user of the kit uses a different part of it.
#![allow(dead_code)]

pub mod crash;
pub mod mock;
pub mod postgres;
pub mod provider_crash;
pub mod providers_mock;
pub mod scaleout;

use std::collections::BTreeMap;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_outbound");
/// Contacts per `POST /campaigns/{id}/contacts` (the endpoint's maximum).
pub const BATCH: usize = 1000;
/// Batches in flight at once while loading contacts.
pub const LOAD_CLIENTS: usize = 4;

/// An environment knob with a default.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(raw) => raw.parse().unwrap_or_else(|_| panic!("{name}={raw:?} is not a valid value")),
        Err(_) => default,
    }
}

/// A scenario's seed: `knob` from the environment when set (to replay a run), else a random one.
pub fn seed(knob: &str) -> u64 {
    env_or(knob, rand::Rng::random(&mut rand::rng()))
}

/// `N cores, <model name>` from `nproc` and `/proc/cpuinfo`.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| info.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).map(|m| m.trim().to_owned()))
        .unwrap_or_else(|| "unknown CPU".to_owned());
    format!("{cores} cores (nproc), {model}")
}

/// A free TCP port on 127.0.0.1 (for a server that must come back on the same address).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// A running `outbound serve` process.
pub struct Server {
    child: Child,
    pub pid: u32,
    /// `http://127.0.0.1:PORT`
    pub address: String,
    /// The bootstrap API key, printed only by the first start on a fresh database.
    pub key: Option<String>,
}

impl Server {
    /// Starts `outbound serve ARGS` and returns once it listens. Its stderr (JSON logs at `warn`)
    /// is appended to `log` when given, else dropped.
    pub fn start(args: &[String], log: Option<&Path>) -> Result<Server, String> {
        let stderr = match log {
            Some(path) => Stdio::from(
                std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(|e| format!("open {}: {e}", path.display()))?,
            ),
            None => Stdio::null(),
        };
        let mut child = Command::new(BIN)
            .arg("serve")
            .args(args)
            .env("RUST_LOG", std::env::var("BENCH_SERVER_LOG").unwrap_or_else(|_| "warn".to_owned()))
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot start {BIN}: {e}"))?;
        let pid = child.id();
        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let (mut key, mut address) = (None, None);
        for line in lines.by_ref().map_while(Result::ok) {
            if line.trim().starts_with("ob_") {
                key = Some(line.trim().to_owned());
            }
            if let Some(rest) = line.strip_prefix("outbound listening on ") {
                address = Some(rest.trim().to_owned());
                break;
            }
        }
        let Some(address) = address else {
            let _ = child.kill();
            let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
            return Err(format!("`outbound serve {}` exited before listening ({status})", args.join(" ")));
        };
        // Keep draining stdout so a later print never meets a closed pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Ok(Server { child, pid, address, key })
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The exit status if the process has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The resident set of a process in KiB (0 once it is gone).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| status.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

/// Samples a process's VmRSS every 50 ms on its own thread, keeping the peak.
pub struct MemoryWatch {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MemoryWatch {
    pub fn new(pid: u32) -> MemoryWatch {
        let (stop, peak) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let thread = {
            let (stop, peak) = (stop.clone(), peak.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        MemoryWatch { stop, peak, thread: Some(thread) }
    }

    /// The peak since the last call (or since the start), in KiB; starts a new window.
    pub fn take_peak(&self, pid: u32) -> u64 {
        self.peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
        self.peak.swap(0, Ordering::Relaxed)
    }
}

impl Drop for MemoryWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// A client of one server's `/api/v1.0`.
#[derive(Clone)]
pub struct Api {
    pub client: reqwest::Client,
    /// `http://127.0.0.1:PORT/api/v1.0`
    pub base: String,
    pub key: String,
}

impl Api {
    pub fn new(address: &str, key: &str) -> Api {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("HTTP client");
        Api { client, base: format!("{address}/api/v1.0"), key: key.to_owned() }
    }

    /// One request; the status and the JSON body (`null` when there is none).
    pub async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Result<(StatusCode, Value), String> {
        let mut request =
            self.client.request(method.clone(), format!("{}{path}", self.base)).header("Authorization", format!("api-key {}", self.key));
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| format!("{method} {path}: {e}"))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| format!("{method} {path}: reading the body: {e}"))?;
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Ok((status, value))
    }

    /// One request that must succeed (2xx); panics with the reply otherwise.
    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Value {
        let (status, value) = self.send(method.clone(), path, body).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(status.is_success(), "{method} {path} answered {status}: {value}");
        value
    }

    pub async fn get(&self, path: &str) -> Value {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Value {
        self.call(Method::POST, path, Some(body)).await
    }

    /// `post` with owned arguments, for futures that outlive the caller's temporaries.
    pub async fn post_owned(&self, path: String, body: Value) -> Value {
        self.post(&path, &body).await
    }

    pub async fn create_agent(&self, name: &str) -> String {
        let reply = self.post("/agents", &json!({ "name": name })).await;
        reply["agent"]["id"].as_str().expect("agent id").to_owned()
    }

    /// A phone integration; returns its id and its signing secret.
    pub async fn create_integration(&self, agent: &str, provider: &str, config: Value) -> (String, String) {
        let integration = self.create_integration_of(agent, "phone_call", provider, config).await;
        (integration["id"].as_str().expect("integration id").to_owned(), integration["secret"].as_str().expect("secret").to_owned())
    }

    /// An integration of `channel` (`phone_call`, `whatsapp`); returns the integration as created
    /// (`id`, `secret`, `callback_url`, the masked `config`, …).
    pub async fn create_integration_of(&self, agent: &str, channel: &str, provider: &str, config: Value) -> Value {
        let body = json!({ "agent_id": agent, "type": channel, "provider": provider, "config": config });
        self.post("/integrations", &body).await["integration"].take()
    }

    /// A phone campaign with the window open at every instant (UTC, 00:00–24:00 every day).
    pub async fn create_campaign(&self, name: &str, agent: &str, integration: &str, settings: Value) -> i64 {
        let mut body = json!({
            "name": name, "agent_id": agent, "integration_id": integration, "integration_type": "phone_call",
            "timezone": "UTC", "scheduling": always_open(),
        });
        if let (Some(body), Value::Object(settings)) = (body.as_object_mut(), settings) {
            body.extend(settings);
        }
        let reply = self.post("/campaigns", &body).await;
        reply["campaign"]["id"].as_i64().expect("campaign id")
    }

    /// `GET /campaigns/{id}` → the campaign object.
    pub async fn campaign(&self, id: i64) -> Value {
        self.get(&format!("/campaigns/{id}")).await["campaign"].take()
    }

    /// Adds `per_campaign` contacts (`phone(0..per_campaign)`) to each campaign through the batch
    /// endpoint, `BATCH` per request and `LOAD_CLIENTS` requests at a time; returns the wall time.
    pub async fn load_contacts(&self, campaigns: &[i64], per_campaign: usize) -> Duration {
        let batches_per_campaign = per_campaign.div_ceil(BATCH);
        let total_batches = batches_per_campaign * campaigns.len();
        let next = Arc::new(AtomicU64::new(0));
        let campaigns: Arc<[i64]> = campaigns.into();
        let started = Instant::now();
        let workers: Vec<_> = (0..LOAD_CLIENTS)
            .map(|_| {
                let (api, next, campaigns) = (self.clone(), next.clone(), campaigns.clone());
                tokio::spawn(async move {
                    loop {
                        let n = next.fetch_add(1, Ordering::Relaxed) as usize;
                        if n >= total_batches {
                            break;
                        }
                        let (campaign, batch) = (campaigns[n / batches_per_campaign], n % batches_per_campaign);
                        let items: Vec<Value> = (batch * BATCH..((batch + 1) * BATCH).min(per_campaign))
                            .map(|i| json!({ "contact": phone(i), "name": format!("Contact {i}") }))
                            .collect();
                        let reply = api.post(&format!("/campaigns/{campaign}/contacts"), &json!({ "contacts": items })).await;
                        assert_eq!(reply["summary"]["created"].as_u64(), Some(items.len() as u64), "{}", reply["summary"]);
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.await.expect("loader");
        }
        started.elapsed()
    }
}

/// Every day 00:00–24:00.
pub fn always_open() -> Value {
    let day = json!({ "startTime": "00:00", "stopTime": "24:00", "active": true });
    json!({ "mon": day, "tue": day, "wed": day, "thu": day, "fri": day, "sat": day, "sun": day })
}

/// A valid Mexican mobile-style number for row `i` (10 national digits).
pub fn phone(i: usize) -> String {
    format!("+5255{i:08}")
}

/// The `q` quantile of sorted durations, in milliseconds.
pub fn quantile_ms(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

/// The command line that ran this bench, with the knobs that were set.
pub fn command_line(bench: &str, knobs: &[&str]) -> String {
    let set: Vec<String> = knobs.iter().filter_map(|k| std::env::var(k).ok().map(|v| format!("{k}={v}"))).collect();
    let prefix = if set.is_empty() { String::new() } else { format!("{} ", set.join(" ")) };
    format!("{prefix}cargo bench --bench {bench}")
}

/// Starts a server without blocking the runtime, retrying while its port is not yet free again.
pub async fn start_server(args: &[String], log: &Path) -> Server {
    let mut tries = 0;
    loop {
        let (args, log) = (args.to_vec(), log.to_owned());
        match tokio::task::spawn_blocking(move || Server::start(&args, Some(&log))).await.expect("start") {
            Ok(server) => return server,
            Err(err) if tries < 40 => {
                tries += 1;
                eprintln!("  server did not start ({err}); retrying");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(err) => panic!("{err}"),
        }
    }
}

/// The last `lines` lines of a log file.
pub fn log_tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Pages through a list endpoint (`pageSize` 100) and returns the items under `field`.
pub async fn all_pages(api: &Api, path: &str, field: &str) -> Vec<Value> {
    let mut items = Vec::new();
    for page in 0.. {
        let mut reply = api.get(&format!("{path}?pageSize=100&pageIndex={page}")).await;
        let batch = reply[field].as_array_mut().map(std::mem::take).unwrap_or_default();
        let done = batch.len() < 100 || !reply["pagination"]["has_next"].as_bool().unwrap_or(false);
        items.extend(batch);
        if done {
            break;
        }
    }
    items
}

/// Problems by kind, with the first few examples of each.
#[derive(Default)]
pub struct Violations {
    pub by_kind: BTreeMap<String, (usize, Vec<String>)>,
}

impl Violations {
    pub fn add(&mut self, kind: &str, example: String) {
        let entry = self.by_kind.entry(kind.to_owned()).or_default();
        entry.0 += 1;
        if entry.1.len() < 5 {
            entry.1.push(example);
        }
    }

    /// A campaign's analytics against the `(field, expected)` pairs that follow from what happened.
    pub fn check_analytics(&mut self, id: i64, analytics: &Value, checks: &[(&str, i64)]) {
        for (field, want) in checks {
            if analytics[*field].as_i64() != Some(*want) {
                self.add(
                    "analytics differ from what happened",
                    format!("campaign {id}: analytics.{field} = {}, expected {want}", analytics[*field]),
                );
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.by_kind.is_empty()
    }

    /// One line per kind with its count and first example, for a test's failure message.
    pub fn summary(&self) -> String {
        let mut lines = vec![format!("{} kind(s) of violation:", self.by_kind.len())];
        for (kind, (count, examples)) in &self.by_kind {
            lines.push(format!("- {kind}: {count} (e.g. {})", examples.first().map_or("", String::as_str)));
        }
        lines.join("\n")
    }

    pub fn count(&self, kind: &str) -> usize {
        self.by_kind.get(kind).map_or(0, |e| e.0)
    }

    /// Prints every kind with its count and examples on stderr.
    pub fn print(&self) {
        eprintln!("\nFAILED: {} kind(s) of violation:", self.by_kind.len());
        for (kind, (count, examples)) in &self.by_kind {
            eprintln!("- {kind}: {count}");
            for example in examples {
                eprintln!("    {example}");
            }
        }
    }
}

/// The message of a caught panic.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// `OK`, or `VIOLATED ×count`.
pub fn ok(count: usize) -> String {
    if count == 0 { "OK".to_owned() } else { format!("VIOLATED ×{count}") }
}
