//! CSV imports: `outbound contacts import` streams a CSV of any size through the batch endpoint;
//! `outbound dnc import` adds a CSV to an organization's do-not-contact list in the database.
//! Both are one importer ([`run`]): the file read lazily ([`Rows`], with the columns of each
//! kind), sent in batches of up to 1000 one after another, a progress bar, and the report of
//! every row not simply created ([`ImportReport`], [`summary`], [`write_report`]).
//!
//! Contacts keep the file's order (the order they are called in); memory stays flat whatever the
//! file size. Each contacts batch carries its own Idempotency-Key, so a
//! retry after a timeout or a crash of the server neither loses nor duplicates rows; 429s wait
//! for `Retry-After`, 5xx and network errors back off and retry.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::domain::contact::{IfDuplicate, ItemError, ItemResult, ItemStatus, MAX_BATCH};
use crate::domain::dnc::{DncEntryInput, DncItemStatus, DncResult, DncSource, default_region, parse_entry};
use crate::store::{DncOrigin, DncStore, OrgId};

/// Columns with a meaning of their own; any other column goes into `extracted_data`.
const KNOWN_COLUMNS: [&str; 6] = ["contact", "name", "context", "f_id", "tags", "timezone"];
/// The columns of a do-not-contact CSV (`channel` and `reason` optional).
const DNC_COLUMNS: [&str; 3] = ["contact", "channel", "reason"];

/// What a CSV holds, and so how its rows become items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Columns {
    /// Contacts of a campaign: `contact,name,context,f_id,tags,timezone`, any other column into `extracted_data`.
    Contacts,
    /// Do-not-contact entries: `contact,channel,reason`, no other column.
    Dnc,
}
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

/// Counts of the rows sent and the report rows of those not created.
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

/// The importer both CSV imports share: reads `file` as `columns` in batches of `batch_size`,
/// hands each batch to `send` (which answers its counts and report rows) one after another, shows
/// a progress bar, and writes the report rows to `report` when asked.
pub async fn run<F, Fut>(
    file: &Path,
    columns: Columns,
    batch_size: usize,
    report: Option<&Path>,
    mut send: F,
) -> anyhow::Result<ImportReport>
where
    F: FnMut(usize, Vec<Row>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<ImportReport>>,
{
    if batch_size == 0 || batch_size > MAX_BATCH {
        bail!("--batch-size must be between 1 and {MAX_BATCH}");
    }
    let opened = std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let size = opened.metadata().map(|m| m.len()).unwrap_or(0);
    let mut rows = Rows::new(std::io::BufReader::new(opened), columns)?;
    let progress = ProgressBar::new(size).with_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg} ({eta})").unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut total = ImportReport::default();
    let mut batch_number = 0usize;
    loop {
        let batch = rows.next_batch(batch_size).map_err(|err| anyhow::anyhow!("CSV error: {err}"))?;
        progress.set_position(rows.byte());
        if batch.is_empty() {
            break;
        }
        batch_number += 1;
        total.add(send(batch_number, batch).await?);
        progress.set_message(format!("{} rows", total.rows));
    }
    progress.finish_and_clear();
    if let Some(path) = report {
        let file = std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
        write_report(file, &total.outcomes).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(total)
}

/// `outbound contacts import`: the CSV's contacts through a running server's batch endpoint.
pub async fn import(options: &ImportOptions) -> anyhow::Result<ImportReport> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(120)).build()?;
    let run_id = crate::domain::ids::random_base62(12);
    let endpoint = format!("{}/api/v1.0/campaigns/{}/contacts", options.url.trim_end_matches('/'), options.campaign);
    let (client, endpoint) = (&client, &endpoint);
    run(&options.file, Columns::Contacts, options.batch_size, options.report.as_deref(), |batch_number, batch| {
        let idempotency_key = format!("import-{run_id}-{batch_number}");
        async move {
            let mut round = 0;
            send_batch(batch, |contacts| {
                // The batch sent again without a refused row is another request: another key.
                let key = if round == 0 { idempotency_key.clone() } else { format!("{idempotency_key}-{round}") };
                round += 1;
                let body = json!({ "contacts": contacts, "if_duplicate": options.if_duplicate });
                async move {
                    let (status, reply) = post_with_retries(client, endpoint, &options.key, &key, &body).await?;
                    answer(status, &reply)
                }
            })
            .await
        }
    })
    .await
}

/// `outbound dnc import`: the CSV's entries added to an organization's do-not-contact list in the
/// database, source `csv`, numbers without `+` read in the organization's region (§12.1).
pub async fn import_dnc(
    store: &dyn DncStore,
    org: OrgId,
    file: &Path,
    batch_size: usize,
    report: Option<&Path>,
    now: impl Fn() -> jiff::Timestamp,
) -> anyhow::Result<ImportReport> {
    let region = default_region(store.first_campaign_timezone(org).await?.as_deref());
    let now = &now;
    run(file, Columns::Dnc, batch_size, report, |_, batch| async move {
        let mut report = ImportReport { rows: batch.len() as u64, ..ImportReport::default() };
        // A malformed row (a bad channel, a reason too long) fails alone; the others are added.
        let mut items = Vec::with_capacity(batch.len());
        let mut lines = Vec::with_capacity(batch.len());
        for row in batch {
            let parsed = serde_json::from_value::<DncEntryInput>(row.item.clone())
                .map_err(|err| err.to_string())
                .and_then(|entry| parse_entry(items.len(), &entry, region).map_err(|v| v.message));
            match parsed {
                Ok(item) => {
                    items.push(item);
                    lines.push(row);
                }
                Err(reason) => report.fail(row, reason),
            }
        }
        if !items.is_empty() {
            let results = store.add_dnc_entries(org, items, DncOrigin::from(DncSource::Csv), now(), None).await?;
            report.tally(&lines, &results);
        }
        report.outcomes.sort_by_key(|o| o.line);
        Ok(report)
    })
    .await
}

/// One CSV row as an item of its batch (the contacts endpoint's contact item, a do-not-contact
/// entry), with the line it came from.
pub struct Row {
    pub(crate) line: u64,
    pub(crate) contact: String,
    pub(crate) item: Value,
}

/// A CSV's rows, read lazily, each turned into the API's contact item (`contact,name,context,
/// f_id,tags`, `|` between tags, any other column into `extracted_data`). The CLI and the
/// dashboard's upload both read files through this.
pub(crate) struct Rows<R> {
    columns: Columns,
    headers: Vec<String>,
    records: csv::StringRecordsIntoIter<R>,
    byte: u64,
}

impl<R: std::io::Read> Rows<R> {
    /// Reads the header; a CSV without a `contact` column (or, of do-not-contact entries, with a
    /// column of another name) is refused before any row is sent.
    pub(crate) fn new(reader: R, columns: Columns) -> anyhow::Result<Rows<R>> {
        let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(reader);
        let headers: Vec<String> = reader.headers().context("cannot read the CSV header")?.iter().map(|h| h.trim().to_owned()).collect();
        if !headers.iter().any(|h| h == "contact") {
            bail!("the CSV needs a `contact` column (found: {})", headers.join(", "));
        }
        if let Some(unknown) = headers.iter().find(|h| columns == Columns::Dnc && !DNC_COLUMNS.contains(&h.as_str())) {
            bail!("unknown column `{unknown}`: a do-not-contact CSV has the columns {}", DNC_COLUMNS.join(","));
        }
        Ok(Rows { columns, headers, records: reader.into_records(), byte: 0 })
    }

    /// Bytes read so far, for a progress bar.
    pub(crate) fn byte(&self) -> u64 {
        self.byte
    }

    /// The next rows, up to `size`; empty at the end of the file.
    pub(crate) fn next_batch(&mut self, size: usize) -> Result<Vec<Row>, csv::Error> {
        self.by_ref().take(size).collect()
    }
}

impl<R: std::io::Read> Iterator for Rows<R> {
    type Item = Result<Row, csv::Error>;

    fn next(&mut self) -> Option<Self::Item> {
        let record = match self.records.next()? {
            Ok(record) => record,
            Err(err) => return Some(Err(err)),
        };
        let line = record.position().map_or(0, |p| p.line());
        self.byte = record.position().map_or(self.byte, |p| p.byte());
        Some(Ok(match self.columns {
            Columns::Contacts => row_from_record(&self.headers, &record, line),
            Columns::Dnc => dnc_row_from_record(&self.headers, &record, line),
        }))
    }
}

/// A do-not-contact row as an entry: `contact`, and `channel` and `reason` unless empty.
fn dnc_row_from_record(headers: &[String], record: &csv::StringRecord, line: u64) -> Row {
    let mut item = Map::new();
    let mut contact = String::new();
    for (header, value) in headers.iter().zip(record.iter()) {
        if header == "contact" {
            contact = value.trim().to_owned();
            item.insert("contact".into(), json!(contact));
        } else if !value.trim().is_empty() {
            let value = if header == "channel" { value.trim() } else { value };
            item.insert(header.clone(), json!(value));
        }
    }
    Row { line, contact, item: Value::Object(item) }
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

/// A batch the endpoint refused: the status, `field` and `message` of its error envelope.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the server refused a batch ({status}): {message}")]
pub(crate) struct Refused {
    pub(crate) status: u16,
    pub(crate) field: Option<String>,
    pub(crate) message: String,
}

impl Refused {
    /// The row of `rows` this refusal is about, when it is a 400 naming `contacts[i]…` (or any
    /// other array's item): that
    /// row alone is malformed and the others can be sent again without it.
    fn row(&self, rows: usize) -> Option<usize> {
        let field = self.field.as_deref()?;
        let index = field.split_once('[').and_then(|(_, rest)| rest.split(']').next()).and_then(|i| i.parse::<usize>().ok())?;
        (self.status == 400 && index < rows).then_some(index)
    }
}

/// Sends one batch through `post` until it is accepted. A row the endpoint rejects as malformed
/// (a 400 naming `contacts[i]`) is reported as failed and the rest of the batch is sent again;
/// any other refusal ends the import. `post` sends the `contacts` array and answers the per-item
/// results of an accepted batch or the refusal; its own error (the network, a store) ends the
/// import too.
pub(crate) async fn send_batch<E, F, Fut>(mut rows: Vec<Row>, mut post: F) -> Result<ImportReport, E>
where
    E: From<Refused>,
    F: FnMut(Value) -> Fut,
    Fut: std::future::Future<Output = Result<Result<Vec<ItemResult>, Refused>, E>>,
{
    let mut report = ImportReport { rows: rows.len() as u64, ..ImportReport::default() };
    while !rows.is_empty() {
        let contacts = Value::Array(rows.iter().map(|r| r.item.clone()).collect());
        match post(contacts).await? {
            Ok(results) => {
                report.tally(&rows, &results);
                break;
            }
            Err(refused) => {
                let Some(index) = refused.row(rows.len()) else { return Err(refused.into()) };
                report.fail(rows.remove(index), refused.message);
            }
        }
    }
    report.outcomes.sort_by_key(|o| o.line);
    Ok(report)
}

/// How a report counts one item's result.
pub(crate) enum Tally {
    Created,
    /// Counted as updated, with its report row's status and reason.
    Updated(&'static str, String),
    /// Counted as skipped (a duplicate, an entry already listed).
    Skipped(&'static str, String),
    Failed(&'static str, String),
}

/// A batch's per-item result as the importer counts it.
pub(crate) trait Tallied {
    fn index(&self) -> usize;
    fn tally(&self) -> Tally;
}

impl Tallied for ItemResult {
    fn index(&self) -> usize {
        self.index
    }

    fn tally(&self) -> Tally {
        let id = || self.id.map_or_else(|| "?".to_owned(), |id| id.to_string());
        let status = self.status.as_str();
        match self.status {
            ItemStatus::Created => Tally::Created,
            ItemStatus::SkippedDuplicate => Tally::Skipped(status, format!("duplicate of contact {}", id())),
            ItemStatus::Updated => Tally::Updated(status, format!("updated contact {}", id())),
            ItemStatus::Failed => Tally::Failed(status, self.error.map_or("failed", ItemError::as_str).to_owned()),
        }
    }
}

impl Tallied for DncResult {
    fn index(&self) -> usize {
        self.index
    }

    fn tally(&self) -> Tally {
        let status = self.status.as_str();
        match self.status {
            DncItemStatus::Created => Tally::Created,
            DncItemStatus::Existing => Tally::Skipped(status, format!("already listed for {}", self.channel.as_str())),
            DncItemStatus::Failed => Tally::Failed(status, self.error.map_or("failed", ItemError::as_str).to_owned()),
        }
    }
}

impl ImportReport {
    /// Counts and report rows of an accepted batch, from its per-item results: every row that
    /// was not simply created gets a report row saying why.
    fn tally(&mut self, rows: &[Row], results: &[impl Tallied]) {
        for result in results {
            let Some(row) = rows.get(result.index()) else { continue };
            let (status, reason) = match result.tally() {
                Tally::Created => {
                    self.created += 1;
                    continue;
                }
                Tally::Updated(status, reason) => {
                    self.updated += 1;
                    (status, reason)
                }
                Tally::Skipped(status, reason) => {
                    self.skipped += 1;
                    (status, reason)
                }
                Tally::Failed(status, reason) => {
                    self.failed += 1;
                    (status, reason)
                }
            };
            self.outcomes.push(RowOutcome { line: row.line, contact: row.contact.clone(), status: status.to_owned(), reason });
        }
    }

    /// A row refused before its batch was sent (or by the batch's endpoint), with why.
    fn fail(&mut self, row: Row, reason: String) {
        self.failed += 1;
        self.outcomes.push(RowOutcome { line: row.line, contact: row.contact, status: "failed".into(), reason });
    }

    /// Adds the counts and report rows of a later batch.
    pub(crate) fn add(&mut self, batch: ImportReport) {
        self.rows += batch.rows;
        self.created += batch.created;
        self.updated += batch.updated;
        self.skipped += batch.skipped;
        self.failed += batch.failed;
        self.outcomes.extend(batch.outcomes);
    }
}

/// One per-item result as the batch endpoint writes it (`id` is a string there).
#[derive(Deserialize)]
struct WireResult {
    index: usize,
    status: ItemStatus,
    id: Option<String>,
    contact: Option<String>,
    error: Option<ItemError>,
}

/// The per-item results of a 201, or the refusal of any other answer.
fn answer(status: reqwest::StatusCode, reply: &Value) -> anyhow::Result<Result<Vec<ItemResult>, Refused>> {
    if status != reqwest::StatusCode::CREATED {
        return Ok(Err(Refused {
            status: status.as_u16(),
            field: reply["field"].as_str().map(str::to_owned),
            message: reply["message"].as_str().unwrap_or("rejected").to_owned(),
        }));
    }
    let results: Vec<WireResult> = serde_json::from_value(reply["results"].clone()).context("the server's batch answer has no results")?;
    Ok(Ok(results
        .into_iter()
        .map(|r| ItemResult {
            index: r.index,
            status: r.status,
            id: r.id.and_then(|id| id.parse().ok()),
            contact: r.contact,
            error: r.error,
        })
        .collect()))
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

/// The report of rows not created (`line,contact,status,reason`), as `--report` writes it and
/// the dashboard's upload offers it for download.
pub(crate) fn write_report(writer: impl std::io::Write, outcomes: &[RowOutcome]) -> csv::Result<()> {
    let mut writer = csv::Writer::from_writer(writer);
    writer.write_record(["line", "contact", "status", "reason"])?;
    for outcome in outcomes {
        writer.write_record([outcome.line.to_string(), outcome.contact.clone(), outcome.status.clone(), outcome.reason.clone()])?;
    }
    writer.flush()?;
    Ok(())
}

/// Counts per status and the first rows that were not created, for the terminal.
pub fn summary(report: &ImportReport, columns: Columns, shown: usize) -> String {
    let mut text = match columns {
        Columns::Contacts => format!(
            "{} rows: {} created, {} updated, {} skipped (duplicates), {} failed\n",
            report.rows, report.created, report.updated, report.skipped, report.failed
        ),
        Columns::Dnc => {
            format!(
                "{} rows: {} created, {} existing (already listed), {} failed\n",
                report.rows, report.created, report.skipped, report.failed
            )
        }
    };
    for outcome in report.outcomes.iter().filter(|o| o.status != "updated").take(shown) {
        text.push_str(&format!("  line {}: {} {} ({})\n", outcome.line, outcome.contact, outcome.status, outcome.reason));
    }
    if report.outcomes.len() > shown {
        text.push_str(&format!("  … {} more; write them all with --report FILE\n", report.outcomes.len() - shown));
    }
    text
}
