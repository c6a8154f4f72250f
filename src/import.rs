//! `outbound contacts import`: streams a CSV of any size through the batch endpoint.
//!
//! Rows are read lazily and sent in batches of up to 1000, one batch after another so that
//! contacts keep the file's order (the order they are called in); memory stays flat whatever the
//! file size. Each batch carries its own Idempotency-Key, so a
//! retry after a timeout or a crash of the server neither loses nor duplicates rows; 429s wait
//! for `Retry-After`, 5xx and network errors back off and retry.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use futures::{StreamExt, stream};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Map, Value, json};

use crate::domain::contact::{IfDuplicate, MAX_BATCH};

/// Columns with a meaning of their own; any other column goes into `extracted_data`.
const KNOWN_COLUMNS: [&str; 5] = ["contact", "name", "context", "f_id", "tags"];
/// Tags in one cell are separated by this character.
pub const TAG_SEPARATOR: char = '|';
const MAX_ATTEMPTS: u32 = 8;

pub struct ImportOptions {
    pub url: String,
    pub key: String,
    pub campaign: i64,
    pub file: PathBuf,
    pub if_duplicate: IfDuplicate,
    pub batch_size: usize,
    pub report: Option<PathBuf>,
}

/// What happened to one CSV row that was not simply created.
#[derive(Debug, Clone)]
pub struct RowOutcome {
    pub line: u64,
    pub contact: String,
    pub status: String,
    pub reason: String,
}

#[derive(Debug, Default)]
pub struct ImportReport {
    pub rows: u64,
    pub created: u64,
    pub updated: u64,
    pub skipped: u64,
    pub failed: u64,
    /// Rows that were not created, in file order.
    pub outcomes: Vec<RowOutcome>,
}

struct Row {
    line: u64,
    contact: String,
    item: Value,
}

pub async fn import(options: &ImportOptions) -> anyhow::Result<ImportReport> {
    if options.batch_size == 0 || options.batch_size > MAX_BATCH {
        bail!("--batch-size must be between 1 and {MAX_BATCH}");
    }
    let file = std::fs::File::open(&options.file).with_context(|| format!("cannot open {}", options.file.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(std::io::BufReader::new(file));
    let headers: Vec<String> = reader.headers().context("cannot read the CSV header")?.iter().map(|h| h.trim().to_owned()).collect();
    if !headers.iter().any(|h| h == "contact") {
        bail!("the CSV needs a `contact` column (found: {})", headers.join(", "));
    }
    let progress = ProgressBar::new(size).with_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg} ({eta})").unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let client = reqwest::Client::builder().timeout(Duration::from_secs(120)).build()?;
    let run = crate::domain::ids::random_base62(12);
    let endpoint = format!("{}/api/v1.0/campaigns/{}/contacts", options.url.trim_end_matches('/'), options.campaign);

    let mut records = reader.into_records();
    let mut batch_number = 0usize;
    let batches = stream::iter(std::iter::from_fn(|| {
        let mut rows = Vec::with_capacity(options.batch_size);
        for record in records.by_ref() {
            match record {
                Ok(record) => {
                    let line = record.position().map_or(0, |p| p.line());
                    progress.set_position(record.position().map_or(0, |p| p.byte()));
                    rows.push(Ok(row_from_record(&headers, &record, line)));
                }
                Err(err) => rows.push(Err(anyhow::anyhow!("CSV error: {err}"))),
            }
            if rows.len() == options.batch_size {
                break;
            }
        }
        if rows.is_empty() {
            return None;
        }
        batch_number += 1;
        Some((batch_number, rows))
    }));
    let mut report = ImportReport::default();
    let mut sent = batches
        .then(|(number, rows)| {
            let client = &client;
            let endpoint = &endpoint;
            let key = format!("import-{run}-{number}");
            async move {
                send_rows(client, endpoint, &options.key, &key, options.if_duplicate, rows.into_iter().collect::<anyhow::Result<_>>()?)
                    .await
            }
        })
        .boxed();
    while let Some(batch) = sent.next().await {
        let batch = batch?;
        report.rows += batch.rows;
        report.created += batch.created;
        report.updated += batch.updated;
        report.skipped += batch.skipped;
        report.failed += batch.failed;
        report.outcomes.extend(batch.outcomes);
        progress.set_message(format!("{} rows", report.rows));
    }
    progress.finish_and_clear();
    if let Some(path) = &options.report {
        write_report(path, &report)?;
    }
    Ok(report)
}

fn row_from_record(headers: &[String], record: &csv::StringRecord, line: u64) -> Row {
    let mut item = Map::new();
    let mut extracted = Map::new();
    let mut contact = String::new();
    for (header, value) in headers.iter().zip(record.iter()) {
        match header.as_str() {
            "contact" => {
                contact = value.trim().to_owned();
                item.insert("contact".into(), json!(contact));
            }
            "tags" => {
                let tags: Vec<&str> = value.split(TAG_SEPARATOR).map(str::trim).filter(|t| !t.is_empty()).collect();
                item.insert("tags".into(), json!(tags));
            }
            name if KNOWN_COLUMNS.contains(&name) => {
                if !value.is_empty() {
                    item.insert(name.to_owned(), json!(value));
                }
            }
            other => {
                if !value.is_empty() {
                    extracted.insert(other.to_owned(), json!(value));
                }
            }
        }
    }
    if !extracted.is_empty() {
        item.insert("extracted_data".into(), Value::Object(extracted));
    }
    Row { line, contact, item: Value::Object(item) }
}

#[derive(Default)]
struct BatchReport {
    rows: u64,
    created: u64,
    updated: u64,
    skipped: u64,
    failed: u64,
    outcomes: Vec<RowOutcome>,
}

/// Sends one batch until it is accepted. A row the server rejects as malformed (a 400 naming
/// `contacts[i]`) is reported as failed and the rest of the batch is sent again.
async fn send_rows(
    client: &reqwest::Client,
    endpoint: &str,
    api_key: &str,
    idempotency_key: &str,
    if_duplicate: IfDuplicate,
    mut rows: Vec<Row>,
) -> anyhow::Result<BatchReport> {
    let mut report = BatchReport { rows: rows.len() as u64, ..BatchReport::default() };
    let mut round = 0;
    while !rows.is_empty() {
        let key = if round == 0 { idempotency_key.to_owned() } else { format!("{idempotency_key}-{round}") };
        let body = json!({ "contacts": rows.iter().map(|r| &r.item).collect::<Vec<_>>(), "if_duplicate": if_duplicate });
        let (status, reply) = post_with_retries(client, endpoint, api_key, &key, &body).await?;
        if status == reqwest::StatusCode::CREATED {
            tally(&mut report, &rows, &reply);
            break;
        }
        let field = reply["field"].as_str().unwrap_or_default();
        let index = field.strip_prefix("contacts[").and_then(|rest| rest.split(']').next()).and_then(|i| i.parse::<usize>().ok());
        match index.filter(|i| status == reqwest::StatusCode::BAD_REQUEST && *i < rows.len()) {
            Some(index) => {
                let row = rows.remove(index);
                report.failed += 1;
                report.outcomes.push(RowOutcome {
                    line: row.line,
                    contact: row.contact,
                    status: "failed".into(),
                    reason: reply["message"].as_str().unwrap_or("rejected").to_owned(),
                });
                round += 1;
            }
            None => bail!("the server refused a batch ({status}): {}", reply["message"].as_str().unwrap_or("no message")),
        }
    }
    report.outcomes.sort_by_key(|o| o.line);
    Ok(report)
}

fn tally(report: &mut BatchReport, rows: &[Row], reply: &Value) {
    let results = reply["results"].as_array().map(Vec::as_slice).unwrap_or_default();
    for result in results {
        let Some(row) = result["index"].as_u64().and_then(|i| rows.get(i as usize)) else { continue };
        let status = result["status"].as_str().unwrap_or_default();
        match status {
            "created" => report.created += 1,
            "updated" => report.updated += 1,
            "skipped_duplicate" => report.skipped += 1,
            _ => report.failed += 1,
        }
        if status != "created" {
            let reason = match status {
                "skipped_duplicate" => format!("duplicate of contact {}", result["id"].as_str().unwrap_or("?")),
                "updated" => format!("updated contact {}", result["id"].as_str().unwrap_or("?")),
                _ => result["error"].as_str().unwrap_or("failed").to_owned(),
            };
            report.outcomes.push(RowOutcome { line: row.line, contact: row.contact.clone(), status: status.to_owned(), reason });
        }
    }
}

async fn post_with_retries(
    client: &reqwest::Client,
    endpoint: &str,
    api_key: &str,
    key: &str,
    body: &Value,
) -> anyhow::Result<(reqwest::StatusCode, Value)> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let sent = client
            .post(endpoint)
            .header("Authorization", format!("api-key {api_key}"))
            .header("Idempotency-Key", key)
            .json(body)
            .send()
            .await;
        let wait = match sent {
            Ok(response) => {
                let status = response.status();
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .map(Duration::from_secs);
                let reply: Value = response.json().await.unwrap_or(Value::Null);
                let busy = status == reqwest::StatusCode::CONFLICT && reply["error"] == "IDEMPOTENCY_KEY_IN_USE";
                if status == reqwest::StatusCode::TOO_MANY_REQUESTS || busy || status.is_server_error() {
                    retry_after.unwrap_or_else(|| backoff(attempt))
                } else {
                    return Ok((status, reply));
                }
            }
            Err(err) if attempt < MAX_ATTEMPTS => {
                tracing::warn!(error = %err, attempt, "batch not delivered; retrying with the same Idempotency-Key");
                backoff(attempt)
            }
            Err(err) => return Err(err).context("the server could not be reached"),
        };
        if attempt >= MAX_ATTEMPTS {
            bail!("a batch was still refused after {MAX_ATTEMPTS} attempts");
        }
        tokio::time::sleep(wait).await;
    }
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(200 * 2u64.pow(attempt.min(6)))
}

fn write_report(path: &PathBuf, report: &ImportReport) -> anyhow::Result<()> {
    let mut writer = csv::Writer::from_path(path).with_context(|| format!("cannot write {}", path.display()))?;
    writer.write_record(["line", "contact", "status", "reason"])?;
    for outcome in &report.outcomes {
        writer.write_record([outcome.line.to_string(), outcome.contact.clone(), outcome.status.clone(), outcome.reason.clone()])?;
    }
    writer.flush()?;
    Ok(())
}

/// Counts per status and the first rows that were not created, for the terminal.
pub fn summary(report: &ImportReport, shown: usize) -> String {
    let mut text = format!(
        "{} rows: {} created, {} updated, {} skipped (duplicates), {} failed\n",
        report.rows, report.created, report.updated, report.skipped, report.failed
    );
    for outcome in report.outcomes.iter().filter(|o| o.status != "updated").take(shown) {
        text.push_str(&format!("  line {}: {} {} ({})\n", outcome.line, outcome.contact, outcome.status, outcome.reason));
    }
    if report.outcomes.len() > shown {
        text.push_str(&format!("  … {} more; write them all with --report FILE\n", report.outcomes.len() - shown));
    }
    text
}
