//! Contacts at scale (issue "Contacts"): one command, `cargo bench --bench contacts`.
//!
//! Starts the real `outbound serve` binary as its own process over a fresh SQLite file (durable
//! commits, rate limit off), then measures:
//! 1. 1,000,000 contacts added to one campaign through `POST /campaigns/{id}/contacts`
//!    (batches of 1000, a few clients in parallel): contacts stored per second;
//! 2. `outbound contacts import` of a 1,000,000-row CSV into a second campaign, end to end;
//! 3. the server's resident memory (VmRSS, sampled every 50 ms) during both;
//! 4. `GET …/contacts?pageSize=100&pageIndex=5000` on the first campaign: p50/p99 latency.
//!
//! `BENCH_CONTACTS` (default 1000000) scales the run down for a quick check.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_outbound");
const BATCH: usize = 1000;
const CLIENTS: usize = 4;

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| status.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

/// Samples the server's RSS until stopped; returns the peak in KiB.
fn watch_memory(pid: u32, stop: Arc<AtomicBool>, peak: Arc<AtomicU64>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(50));
        }
    })
}

/// A valid Mexican mobile-style number for row `i` (10 national digits).
fn phone(i: usize) -> String {
    format!("+5255{:08}", i)
}

async fn json_call(client: &reqwest::Client, method: reqwest::Method, url: &str, key: &str, body: Option<Value>) -> Value {
    let mut request = client.request(method, url).header("Authorization", format!("api-key {key}"));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request sent");
    let status = response.status();
    let value: Value = response.json().await.expect("JSON reply");
    assert!(status.is_success(), "{status}: {value}");
    value
}

fn main() {
    let total: usize = std::env::var("BENCH_CONTACTS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let database = format!("sqlite://{}", dir.path().join("contacts.db").display());
    let mut server = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--rate-limit-rps", "0", "--database", &database])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("server starts");
    let pid = server.id();
    let mut key = String::new();
    let mut address = String::new();
    for line in BufReader::new(server.stdout.take().expect("stdout")).lines().map_while(Result::ok) {
        if line.trim().starts_with("ob_") {
            key = line.trim().to_owned();
        }
        if let Some(rest) = line.strip_prefix("outbound listening on ") {
            address = rest.to_owned();
            break;
        }
    }
    assert!(!key.is_empty() && !address.is_empty(), "server did not start");
    let api = format!("{address}/api/v1.0");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let watcher = watch_memory(pid, stop.clone(), peak.clone());

    let results = runtime.block_on(async {
        let client = reqwest::Client::new();
        let agent = json_call(&client, reqwest::Method::POST, &format!("{api}/agents"), &key, Some(json!({ "name": "Bench" }))).await;
        let agent = agent["agent"]["id"].as_str().expect("agent").to_owned();
        let integration = json_call(
            &client,
            reqwest::Method::POST,
            &format!("{api}/integrations"),
            &key,
            Some(json!({ "agent_id": agent, "type": "phone_call", "provider": "simulator" })),
        )
        .await;
        let integration = integration["integration"]["id"].as_str().expect("integration").to_owned();
        let campaign =
            |name: &str| json!({ "name": name, "agent_id": agent, "integration_id": integration, "integration_type": "phone_call" });
        let first = json_call(&client, reqwest::Method::POST, &format!("{api}/campaigns"), &key, Some(campaign("batch"))).await;
        let first = first["campaign"]["id"].as_i64().expect("id");
        let second = json_call(&client, reqwest::Method::POST, &format!("{api}/campaigns"), &key, Some(campaign("import"))).await;
        let second = second["campaign"]["id"].as_i64().expect("id");

        // 1. Batch endpoint.
        let next = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let workers: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let (client, next, url, key) = (client.clone(), next.clone(), format!("{api}/campaigns/{first}/contacts"), key.clone());
                tokio::spawn(async move {
                    loop {
                        let batch = next.fetch_add(1, Ordering::Relaxed) as usize;
                        if batch * BATCH >= total {
                            break;
                        }
                        let items: Vec<Value> = (batch * BATCH..((batch + 1) * BATCH).min(total))
                            .map(|i| json!({ "contact": phone(i), "name": format!("Contact {i}") }))
                            .collect();
                        let reply = json_call(&client, reqwest::Method::POST, &url, &key, Some(json!({ "contacts": items }))).await;
                        assert_eq!(reply["summary"]["created"].as_u64(), Some(items.len() as u64), "{}", reply["summary"]);
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.await.expect("worker");
        }
        let batch_secs = started.elapsed().as_secs_f64();
        let listed = json_call(&client, reqwest::Method::GET, &format!("{api}/campaigns/{first}/contacts?pageSize=1"), &key, None).await;
        assert_eq!(listed["total_count"].as_u64(), Some(total as u64));
        let batch_peak = peak.swap(0, Ordering::Relaxed);

        // 2. CSV import, end to end.
        let csv = dir.path().join("contacts.csv");
        {
            let mut file = std::io::BufWriter::new(std::fs::File::create(&csv).expect("csv"));
            writeln!(file, "contact,name,context,f_id,tags,amount_due").expect("write");
            for i in 0..total {
                writeln!(file, "{},Contact {i},owes since May,crm-{i},vip|late,{}", phone(i), i % 5000).expect("write");
            }
        }
        let started = Instant::now();
        let import = tokio::process::Command::new(BIN)
            .args(["contacts", "import", "--campaign", &second.to_string(), "--url", &address, "--key", &key])
            .arg("--file")
            .arg(&csv)
            .output()
            .await
            .expect("import runs");
        let import_secs = started.elapsed().as_secs_f64();
        let summary = String::from_utf8_lossy(&import.stdout).to_string();
        assert!(import.status.success(), "{summary}");
        let import_peak = peak.load(Ordering::Relaxed);

        // 3. Deep page.
        let pages = (total / 100).saturating_sub(1).min(5000);
        let url = format!("{api}/campaigns/{first}/contacts?pageSize=100&pageIndex={pages}");
        let mut latencies = Vec::new();
        for _ in 0..200 {
            let started = Instant::now();
            let page = json_call(&client, reqwest::Method::GET, &url, &key, None).await;
            latencies.push(started.elapsed());
            assert_eq!(page["contacts"].as_array().map(Vec::len), Some(100));
        }
        latencies.sort();
        (batch_secs, batch_peak, import_secs, import_peak, summary, pages, latencies)
    });
    stop.store(true, Ordering::Relaxed);
    let _ = watcher.join();
    let _ = server.kill();
    let _ = server.wait();

    let (batch_secs, batch_peak, import_secs, import_peak, summary, page_index, latencies) = results;
    let p = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)].as_secs_f64() * 1000.0;
    let batch_rate = total as f64 / batch_secs;
    let import_rate = total as f64 / import_secs;
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!("\nContacts benchmark: {total} contacts, SQLite (WAL, synchronous=FULL), server as its own process");
    println!("| measure | result | target |");
    println!("|---|---|---|");
    println!(
        "| batch endpoint, {CLIENTS} clients × 1000/batch | {batch_rate:.0} contacts/s ({batch_secs:.1} s) | ≥ 50,000/s {} |",
        if batch_rate >= 50_000.0 { "MET" } else { "MISSED" }
    );
    println!("| CSV import end to end (`outbound contacts import`) | {import_rate:.0} rows/s ({import_secs:.1} s) | |");
    println!(
        "| server peak RSS during batch adds | {:.0} MiB | < 200 MiB {} |",
        mib(batch_peak),
        if mib(batch_peak) < 200.0 { "MET" } else { "MISSED" }
    );
    println!(
        "| server peak RSS during the import | {:.0} MiB | < 200 MiB {} |",
        mib(import_peak),
        if mib(import_peak) < 200.0 { "MET" } else { "MISSED" }
    );
    println!(
        "| GET contacts pageSize=100 pageIndex={page_index}, 200 requests | p50 {:.2} ms, p99 {:.2} ms | p99 < 50 ms {} |",
        p(0.50),
        p(0.99),
        if p(0.99) < 50.0 { "MET" } else { "MISSED" }
    );
    println!("\nimport said: {}", summary.lines().next().unwrap_or_default());
}
