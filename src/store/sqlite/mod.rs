//! SQLite store: WAL with `synchronous=FULL`, so a 2xx means the write survives a power cut.
//!
//! SQLite has one writer at a time and every commit pays an fsync. All writes therefore go through
//! a single writer task that groups the jobs waiting in its queue into one transaction (group
//! commit): each job runs in its own savepoint, so one refused job never undoes another, and every
//! caller hears back only after the shared COMMIT is durable. Reads use read-only connections that
//! WAL lets run beside the writer: a pool for most, and for the reads on every request's path
//! (API key, campaign by id) connections used on the caller's own thread (`point_reads`).

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;
use jiff::Timestamp;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, QueryBuilder, Row, Sqlite};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::shared::{
    StoredRow, agent_from_row, campaign_from_row, config_json, integration_from_row, opt_seconds, opt_to_seconds, parse_channel,
    push_campaign_filters,
};
use super::{
    AddContactsOutcome, ApiKeyInfo, ApiKeyRecord, BatchItem, CampaignChange, CampaignCursor, CampaignFilter, CampaignPage, ContactLookup,
    ContactPage, CreateCampaignOutcome, DeleteOutcome, DynStore, IdempotencyClaim, IdempotencyRecord, Modified, OrgId, PageDirection,
    ResponseRecorder, Store, StoreError, StoreResult, StoredResponse, from_seconds, to_seconds,
};
use super::{AttemptPage, AttemptQuery, ClaimRequest, Dispatch, EventOutcome, HandoffResult, RunningCampaign};
use crate::domain::agent::Agent;
use crate::domain::analytics::CampaignCounters;
use crate::domain::attempt::{AttemptEvent, RetrySettings};
use crate::domain::campaign::{AgentRef, Campaign, CampaignStatus, Channel, ContactStatus, IntegrationRef, NewCampaign};
use crate::domain::contact::IfDuplicate;
use crate::domain::ids::{NewApiKey, new_integration_id, new_signing_secret};
use crate::domain::integration::{Integration, NewIntegration};

mod contacts;
mod engine;
mod point_reads;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Most jobs one transaction takes; bounds the latency a batch adds to its first job.
const MAX_JOBS_PER_COMMIT: usize = 512;
const READ_CONNECTIONS: u32 = 8;

type Completion = Box<dyn FnOnce(bool) + Send>;
type Job = Box<dyn for<'c> FnOnce(&'c mut SqliteConnection, &'c mut Batch) -> BoxFuture<'c, Completion> + Send>;

/// Opens a job's savepoint: the batch's first, or releasing the previous job's in the same round trip.
const OPEN_SAVEPOINT: [&str; 2] = ["SAVEPOINT job", "RELEASE job; SAVEPOINT job"];
/// The same, then looks for a live record under an Idempotency-Key.
const OPEN_SAVEPOINT_AND_FIND_KEY: [&str; 2] = [
    "SAVEPOINT job; SELECT 1 FROM idempotency_keys WHERE org_id = ? AND key = ? AND created_at >= ?",
    "RELEASE job; SAVEPOINT job; SELECT 1 FROM idempotency_keys WHERE org_id = ? AND key = ? AND created_at >= ?",
];

/// What one transaction of the writer carries besides its jobs' own statements.
#[derive(Default)]
struct Batch {
    /// The last job's savepoint, released when the next job opens its own (or by `COMMIT`).
    savepoint_open: bool,
    /// Responses to store under their Idempotency-Keys, inserted together when the batch commits.
    records: Vec<(IdempotencyClaim, StoredResponse)>,
}

impl Batch {
    /// Which of `statements` ([`OPEN_SAVEPOINT`] or [`OPEN_SAVEPOINT_AND_FIND_KEY`]) opens the
    /// next job's savepoint.
    fn open_savepoint(&mut self, statements: [&'static str; 2]) -> &'static str {
        let [first, after_another] = statements;
        if std::mem::replace(&mut self.savepoint_open, true) { after_another } else { first }
    }

    fn holds_key(&self, claim: &IdempotencyClaim) -> bool {
        self.records.iter().any(|(held, _)| held.org_id == claim.org_id && held.key == claim.key)
    }
}

pub struct SqliteStore {
    reads: SqlitePool,
    point_reads: point_reads::PointReads,
    jobs: mpsc::Sender<Job>,
}

impl SqliteStore {
    pub async fn open(url: &str) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            // Savepoints (one per writer job) keep their undo pages here: memory, not a temp file.
            .pragma("temp_store", "MEMORY");
        // The writer touches contacts, attempts and their indexes on every claim and outcome: a
        // larger page cache than the default 2 MiB keeps their hot pages (bounded: 16 MiB).
        let mut writer = SqliteConnection::connect_with(&options.clone().pragma("cache_size", "-16384")).await?;
        MIGRATOR.run(&mut writer).await?;
        // No ping before each use: a broken connection fails its query and is replaced anyway, and the
        // ping is a second thread round trip on every read.
        let point_reads = point_reads::PointReads::new(options.get_filename());
        let reads = SqlitePoolOptions::new()
            .max_connections(READ_CONNECTIONS)
            .test_before_acquire(false)
            .connect_with(options.read_only(true))
            .await?;
        let (jobs, queue) = mpsc::channel(MAX_JOBS_PER_COMMIT * 4);
        tokio::spawn(run_writer(writer, queue));
        Ok(SqliteStore { reads, point_reads, jobs })
    }

    pub async fn open_dyn(url: &str) -> StoreResult<DynStore> {
        Ok(std::sync::Arc::new(Self::open(url).await?))
    }

    /// Runs `work` inside the writer's next transaction and returns its result once committed.
    async fn write<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, StoreResult<T>> + Send + 'static,
    {
        self.write_recorded(None, work).await
    }

    /// [`Self::write`], storing the response `record` renders under its Idempotency-Key in the
    /// same transaction as the writes of `work`.
    async fn write_recorded<T, F>(&self, record: Option<ResponseRecorder<T>>, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, StoreResult<T>> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |conn, batch| {
            Box::pin(async move {
                let outcome = in_savepoint(conn, batch, record, work).await;
                Box::new(move |committed: bool| {
                    let _ = reply.send(if committed { outcome } else { Err(StoreError::CommitFailed) });
                }) as Completion
            })
        });
        self.jobs.send(job).await.map_err(|_| StoreError::Unavailable)?;
        answer.await.map_err(|_| StoreError::Unavailable)?
    }
}

/// Runs one job in a savepoint of the writer's transaction, so that a refused job undoes only its
/// own writes, and adds its recorded response to the batch, to be committed with them.
///
/// Each statement is a round trip to the connection's thread, which costs more than most of these
/// statements, so a job makes as few as it can: opening its savepoint releases the previous job's
/// (and `COMMIT` the last one's); an Idempotency-Key's look-up rides with `SAVEPOINT` and its
/// record is inserted with the batch's `COMMIT`, so a keyed job makes as many round trips as one
/// without a key. The look-up (in the database, then among the batch's records) decides: the
/// writer holds the database's write lock for its whole transaction, so no other connection can
/// add a record meanwhile.
async fn in_savepoint<T, F>(conn: &mut SqliteConnection, batch: &mut Batch, record: Option<ResponseRecorder<T>>, work: F) -> StoreResult<T>
where
    F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, StoreResult<T>>,
{
    let opened = match &record {
        Some(ResponseRecorder { claim, .. }) => sqlx::query(batch.open_savepoint(OPEN_SAVEPOINT_AND_FIND_KEY))
            .bind(claim.org_id)
            .bind(&claim.key)
            .bind(to_seconds(claim.expired_before))
            .fetch_optional(&mut *conn)
            .await
            .map(|live| live.is_some() || batch.holds_key(claim)),
        None => sqlx::query(batch.open_savepoint(OPEN_SAVEPOINT)).execute(&mut *conn).await.map(|_| false),
    };
    match opened {
        // Which savepoint is open is unknown: the next job opens its own without a release.
        Err(err) => {
            batch.savepoint_open = false;
            return Err(err.into());
        }
        Ok(true) => return Err(StoreError::IdempotencyKeyTaken),
        Ok(false) => {}
    }
    let outcome = work(&mut *conn).await;
    if outcome.is_err() {
        sqlx::query("ROLLBACK TO job").execute(&mut *conn).await?;
    } else if let (Ok(value), Some(recorder)) = (&outcome, record)
        && let Some(response) = (recorder.render)(value)
    {
        batch.records.push((recorder.claim, response));
    }
    outcome
}

async fn run_writer(mut conn: SqliteConnection, mut queue: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_JOBS_PER_COMMIT);
    while queue.recv_many(&mut batch, MAX_JOBS_PER_COMMIT).await > 0 {
        let mut completions = Vec::with_capacity(batch.len());
        let mut carried = Batch::default();
        let began = sqlx::query("BEGIN IMMEDIATE").execute(&mut conn).await;
        if let Err(err) = &began {
            tracing::error!(error = %err, "sqlite writer could not begin a transaction");
        }
        for job in batch.drain(..) {
            if began.is_ok() {
                completions.push(job(&mut conn, &mut carried).await);
            }
        }
        let committed = began.is_ok() && commit(&mut conn, &carried).await;
        metrics::histogram!("outbound_store_commit_batch_size").record(completions.len() as f64);
        for completion in completions {
            completion(committed);
        }
    }
    let _ = conn.close().await;
}

/// Inserts the batch's Idempotency-Key records (replacing expired ones: [`in_savepoint`] has
/// checked that no live one holds their keys) and commits, in one round trip.
async fn commit(conn: &mut SqliteConnection, batch: &Batch) -> bool {
    let committed = if batch.records.is_empty() {
        sqlx::query("COMMIT").execute(&mut *conn).await
    } else {
        // At most MAX_JOBS_PER_COMMIT rows of 6 values: well under SQLite's 32,766 bound values.
        let mut statement =
            QueryBuilder::<Sqlite>::new("INSERT INTO idempotency_keys (org_id, key, fingerprint, created_at, status, body) ");
        statement.push_values(&batch.records, |mut row, (claim, response)| {
            row.push_bind(claim.org_id)
                .push_bind(claim.key.as_str())
                .push_bind(claim.fingerprint.as_slice())
                .push_bind(to_seconds(claim.at))
                .push_bind(i64::from(response.status))
                .push_bind(response.body.as_slice());
        });
        statement.push(
            " ON CONFLICT (org_id, key) DO UPDATE SET fingerprint = excluded.fingerprint, created_at = excluded.created_at, \
             status = excluded.status, body = excluded.body; COMMIT",
        );
        // Its text changes with the number of rows: not worth keeping prepared.
        statement.build().persistent(false).execute(&mut *conn).await
    };
    match committed {
        Ok(_) => true,
        Err(err) => {
            tracing::error!(error = %err, "sqlite commit failed; rolling back the batch");
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            false
        }
    }
}

/// `SELECT <campaign columns>[, extra columns] FROM campaigns c JOIN agents a`: every campaign read.
macro_rules! select_campaigns {
    ($($extra:literal)?) => {
        concat!(
            "SELECT c.id, c.agent_id, a.name AS agent_name, c.integration_id, c.channel, c.status, c.archived, \
             c.created_at, c.started_at, c.ended_at, c.settings, c.current_iteration, c.last_iteration_at, c.next_cycle_at, \
             c.paused_in_cooldown, c.contact_count, c.calls, c.calls_human, c.calls_machine, c.calls_unknown, c.messages, \
             c.contacts_processed, c.contacts_answered, \
             (SELECT json_group_object(status, count) FROM campaign_contact_counts WHERE campaign_id = c.id) AS status_counts",
            $(", ", $extra,)?
            " FROM campaigns c JOIN agents a ON a.id = c.agent_id"
        )
    };
}
pub(super) use select_campaigns;
const CAMPAIGN_COLUMNS: &str = select_campaigns!();
const CAMPAIGN_BY_ID: &str = concat!(select_campaigns!(), " WHERE c.org_id = ? AND c.id = ?");

impl SqliteStore {
    async fn campaigns_exist_beyond(&self, org: OrgId, filter: &CampaignFilter, edge: (i64, i64), older: bool) -> StoreResult<bool> {
        let mut query = QueryBuilder::<Sqlite>::new("SELECT EXISTS (SELECT 1 FROM campaigns c");
        push_campaign_filters(&mut query, org, filter);
        query.push(if older { " AND (c.created_at, c.id) < (" } else { " AND (c.created_at, c.id) > (" });
        query.push_bind(edge.0).push(", ").push_bind(edge.1).push("))");
        Ok(query.build_query_scalar::<bool>().fetch_one(&self.reads).await?)
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.reads).await?;
        self.write(|_| Box::pin(async { Ok(()) })).await
    }

    fn data_version(&self) -> StoreResult<Option<u64>> {
        self.point_reads.data_version().map(Some)
    }

    async fn find_api_key(&self, prefix: &str) -> StoreResult<Option<ApiKeyRecord>> {
        let sql = "SELECT id, org_id, key_hash, revoked_at IS NOT NULL AS revoked FROM api_keys WHERE prefix = ?";
        self.point_reads.row(sql, [prefix], |row| {
            Ok(ApiKeyRecord { id: row.int("id")?, org_id: row.int("org_id")?, hash: row.text("key_hash")?, revoked: row.flag("revoked")? })
        })
    }

    async fn touch_api_key(&self, key_id: i64, at: Timestamp) -> StoreResult<()> {
        self.write(move |conn| {
            Box::pin(async move {
                sqlx::query("UPDATE api_keys SET last_used_at = ? WHERE id = ?")
                    .bind(to_seconds(at))
                    .bind(key_id)
                    .execute(&mut *conn)
                    .await?;
                Ok(())
            })
        })
        .await
    }

    async fn create_api_key(&self, organization: &str, key: &NewApiKey, at: Timestamp) -> StoreResult<()> {
        let (organization, prefix, hash) = (organization.to_owned(), key.prefix.clone(), key.hash.clone());
        self.write(move |conn| Box::pin(async move { insert_key(conn, &organization, &prefix, &hash, at).await })).await
    }

    async fn bootstrap_organization(&self, organization: &str, key: &NewApiKey, at: Timestamp) -> StoreResult<bool> {
        let (organization, prefix, hash) = (organization.to_owned(), key.prefix.clone(), key.hash.clone());
        self.write(move |conn| {
            Box::pin(async move {
                let any: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM organizations)").fetch_one(&mut *conn).await?;
                if any {
                    return Ok(false);
                }
                insert_key(conn, &organization, &prefix, &hash, at).await?;
                Ok(true)
            })
        })
        .await
    }

    async fn list_api_keys(&self, organization: Option<&str>) -> StoreResult<Vec<ApiKeyInfo>> {
        let rows = sqlx::query(
            "SELECT k.prefix, o.name, k.created_at, k.last_used_at, k.revoked_at FROM api_keys k \
             JOIN organizations o ON o.id = k.org_id WHERE ?1 IS NULL OR o.name = ?1 ORDER BY o.name, k.created_at, k.id",
        )
        .bind(organization)
        .fetch_all(&self.reads)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ApiKeyInfo {
                    prefix: row.try_get("prefix")?,
                    organization: row.try_get("name")?,
                    created_at: from_seconds(row.try_get("created_at")?)?,
                    last_used_at: opt_seconds(row, "last_used_at")?,
                    revoked_at: opt_seconds(row, "revoked_at")?,
                })
            })
            .collect()
    }

    async fn revoke_api_key(&self, prefix: &str, at: Timestamp) -> StoreResult<bool> {
        let prefix = prefix.to_owned();
        self.write(move |conn| {
            Box::pin(async move {
                let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM api_keys WHERE prefix = ?)")
                    .bind(&prefix)
                    .fetch_one(&mut *conn)
                    .await?;
                sqlx::query("UPDATE api_keys SET revoked_at = ? WHERE prefix = ? AND revoked_at IS NULL")
                    .bind(to_seconds(at))
                    .bind(&prefix)
                    .execute(&mut *conn)
                    .await?;
                Ok(exists)
            })
        })
        .await
    }

    async fn create_agent(&self, org: OrgId, name: &str, at: Timestamp, record: Option<ResponseRecorder<Agent>>) -> StoreResult<Agent> {
        let agent = Agent { id: Uuid::new_v4(), name: name.to_owned(), created_at: from_seconds(to_seconds(at))? };
        self.write_recorded(record, move |conn| {
            Box::pin(async move {
                sqlx::query("INSERT INTO agents (id, org_id, name, created_at) VALUES (?, ?, ?, ?)")
                    .bind(agent.id.to_string())
                    .bind(org)
                    .bind(&agent.name)
                    .bind(to_seconds(agent.created_at))
                    .execute(&mut *conn)
                    .await?;
                Ok(agent)
            })
        })
        .await
    }

    async fn get_agent(&self, org: OrgId, id: Uuid) -> StoreResult<Option<Agent>> {
        let row = sqlx::query("SELECT id, name, created_at FROM agents WHERE org_id = ? AND id = ?")
            .bind(org)
            .bind(id.to_string())
            .fetch_optional(&self.reads)
            .await?;
        row.as_ref().map(agent_from_row).transpose()
    }

    async fn list_agents(&self, org: OrgId) -> StoreResult<Vec<Agent>> {
        let rows = sqlx::query("SELECT id, name, created_at FROM agents WHERE org_id = ? ORDER BY created_at, rowid")
            .bind(org)
            .fetch_all(&self.reads)
            .await?;
        rows.iter().map(agent_from_row).collect()
    }

    async fn create_integration(
        &self,
        org: OrgId,
        new: NewIntegration,
        at: Timestamp,
        record: Option<ResponseRecorder<Integration>>,
    ) -> StoreResult<Integration> {
        let integration = Integration {
            id: new_integration_id(new.channel),
            agent_id: new.agent_id,
            channel: new.channel,
            provider: new.provider,
            config: new.config,
            secret: new_signing_secret(),
            created_at: from_seconds(to_seconds(at))?,
        };
        let config = config_json(&integration.config)?;
        self.write_recorded(record, move |conn| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO integrations (id, org_id, agent_id, channel, provider, config, secret, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(&integration.id)
                .bind(org)
                .bind(integration.agent_id.to_string())
                .bind(integration.channel.as_str())
                .bind(integration.provider.as_str())
                .bind(config)
                .bind(&integration.secret)
                .bind(to_seconds(integration.created_at))
                .execute(&mut *conn)
                .await?;
                Ok(integration)
            })
        })
        .await
    }

    async fn get_integration(&self, org: OrgId, id: &str) -> StoreResult<Option<Integration>> {
        let row =
            sqlx::query("SELECT * FROM integrations WHERE org_id = ? AND id = ?").bind(org).bind(id).fetch_optional(&self.reads).await?;
        row.as_ref().map(integration_from_row).transpose()
    }

    async fn list_integrations(&self, org: OrgId) -> StoreResult<Vec<Integration>> {
        let rows =
            sqlx::query("SELECT * FROM integrations WHERE org_id = ? ORDER BY created_at, rowid").bind(org).fetch_all(&self.reads).await?;
        rows.iter().map(integration_from_row).collect()
    }

    async fn create_campaign(
        &self,
        org: OrgId,
        new: NewCampaign,
        at: Timestamp,
        record: Option<ResponseRecorder<CreateCampaignOutcome>>,
    ) -> StoreResult<CreateCampaignOutcome> {
        let settings_json = serde_json::to_string(&new.settings)?;
        let created_at = from_seconds(to_seconds(at))?;
        self.write_recorded(record, move |conn| Box::pin(insert_campaign(conn, org, new, settings_json, created_at))).await
    }

    async fn get_campaign(&self, org: OrgId, id: i64) -> StoreResult<Option<Campaign>> {
        self.point_reads.row(CAMPAIGN_BY_ID, [org, id], |row| campaign_from_row(row))
    }

    async fn list_campaigns(
        &self,
        org: OrgId,
        filter: &CampaignFilter,
        cursor: Option<CampaignCursor>,
        page_size: u32,
    ) -> StoreResult<CampaignPage> {
        let mut count = QueryBuilder::<Sqlite>::new("SELECT COUNT(*) FROM campaigns c");
        push_campaign_filters(&mut count, org, filter);
        let total_count: i64 = count.build_query_scalar().fetch_one(&self.reads).await?;

        let backwards = matches!(cursor, Some(CampaignCursor { direction: PageDirection::Before, .. }));
        let mut page = QueryBuilder::<Sqlite>::new(CAMPAIGN_COLUMNS);
        push_campaign_filters(&mut page, org, filter);
        if let Some(cursor) = cursor {
            page.push(if backwards { " AND (c.created_at, c.id) > (" } else { " AND (c.created_at, c.id) < (" });
            page.push_bind(cursor.created_at).push(", ").push_bind(cursor.id).push(")");
        }
        page.push(if backwards { " ORDER BY c.created_at ASC, c.id ASC" } else { " ORDER BY c.created_at DESC, c.id DESC" });
        page.push(" LIMIT ").push_bind(i64::from(page_size) + 1);
        let rows = page.build().fetch_all(&self.reads).await?;
        let more_in_direction = rows.len() > page_size as usize;
        let mut campaigns = rows.iter().take(page_size as usize).map(campaign_from_row).collect::<StoreResult<Vec<_>>>()?;
        if backwards {
            campaigns.reverse();
        }
        let key = |c: &Campaign| (to_seconds(c.created_at), c.id);
        let (has_next, has_previous) = match (campaigns.first(), campaigns.last()) {
            (Some(_), Some(last)) if backwards => (self.campaigns_exist_beyond(org, filter, key(last), true).await?, more_in_direction),
            (Some(first), Some(_)) if cursor.is_some() => {
                (more_in_direction, self.campaigns_exist_beyond(org, filter, key(first), false).await?)
            }
            (Some(_), Some(_)) => (more_in_direction, false),
            // An empty page (an empty list, or a cursor past the end) has nowhere to go.
            _ => (false, false),
        };
        Ok(CampaignPage { total_count, campaigns, has_next, has_previous })
    }

    async fn modify_campaign(
        &self,
        org: OrgId,
        id: i64,
        change: CampaignChange,
        record: Option<ResponseRecorder<Modified>>,
    ) -> StoreResult<Modified> {
        self.write_recorded(record, move |conn| {
            Box::pin(async move {
                let row = sqlx::query(CAMPAIGN_BY_ID).bind(org).bind(id).fetch_optional(&mut *conn).await?;
                let outcome = match row {
                    None => Modified::NotFound,
                    Some(row) => {
                        let mut campaign = campaign_from_row(&row)?;
                        let iteration = campaign.current_iteration;
                        match change(&mut campaign) {
                            Err(refusal) => Modified::Refused(refusal),
                            Ok(()) => {
                                // Activating or resuming out of a cooldown starts the next iteration.
                                if iteration >= 1 && campaign.current_iteration > iteration {
                                    engine::queue_eligible_contacts(conn, &campaign).await?;
                                    campaign = reload_campaign(conn, campaign).await?;
                                }
                                update_campaign(conn, &campaign).await?;
                                Modified::Done(Box::new(campaign))
                            }
                        }
                    }
                };
                Ok(outcome)
            })
        })
        .await
    }

    async fn add_contacts(
        &self,
        org: OrgId,
        campaign_id: i64,
        items: Vec<BatchItem>,
        if_duplicate: IfDuplicate,
        at: Timestamp,
        record: Option<ResponseRecorder<AddContactsOutcome>>,
    ) -> StoreResult<AddContactsOutcome> {
        self.write_recorded(record, move |conn| Box::pin(contacts::add_contacts(conn, org, campaign_id, items, if_duplicate, at))).await
    }

    async fn list_contacts(
        &self,
        org: OrgId,
        campaign_id: i64,
        status: Option<ContactStatus>,
        page_size: u32,
        page_index: u32,
    ) -> StoreResult<Option<ContactPage>> {
        let mut conn = self.reads.acquire().await?;
        contacts::list_contacts(&mut conn, org, campaign_id, status, page_size, page_index).await
    }

    async fn get_contact(&self, org: OrgId, campaign_id: i64, contact_id: i64) -> StoreResult<ContactLookup> {
        let mut conn = self.reads.acquire().await?;
        contacts::get_contact(&mut conn, org, campaign_id, contact_id).await
    }

    async fn delete_contact(&self, org: OrgId, campaign_id: i64, contact_id: i64) -> StoreResult<DeleteOutcome> {
        self.write(move |conn| Box::pin(async move { contacts::delete_contact(conn, org, campaign_id, contact_id).await })).await
    }

    async fn find_idempotency_record(&self, org: OrgId, key: &str, expired_before: Timestamp) -> StoreResult<Option<IdempotencyRecord>> {
        let row = sqlx::query("SELECT fingerprint, status, body FROM idempotency_keys WHERE org_id = ? AND key = ? AND created_at >= ?")
            .bind(org)
            .bind(key)
            .bind(to_seconds(expired_before))
            .fetch_optional(&self.reads)
            .await?;
        row.map(|row| {
            let status: i64 = row.try_get("status")?;
            let status = u16::try_from(status).map_err(|_| StoreError::Corrupt(format!("bad status {status}")))?;
            Ok(IdempotencyRecord {
                fingerprint: row.try_get("fingerprint")?,
                response: StoredResponse { status, body: row.try_get("body")? },
            })
        })
        .transpose()
    }

    async fn complete_idempotency_key(&self, claim: &IdempotencyClaim, response: StoredResponse) -> StoreResult<()> {
        let record = ResponseRecorder { claim: claim.clone(), render: Box::new(move |_: &()| Some(response)) };
        self.write_recorded(Some(record), |_| Box::pin(async { Ok(()) })).await
    }

    async fn purge_idempotency_keys(&self, created_before: Timestamp) -> StoreResult<u64> {
        self.write(move |conn| {
            Box::pin(async move {
                let done = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < ?")
                    .bind(to_seconds(created_before))
                    .execute(&mut *conn)
                    .await?;
                Ok(done.rows_affected())
            })
        })
        .await
    }

    async fn running_campaigns(&self) -> StoreResult<Vec<RunningCampaign>> {
        engine::running_campaigns(&mut *self.reads.acquire().await?).await
    }

    async fn running_campaign(&self, campaign_id: i64) -> StoreResult<Option<RunningCampaign>> {
        engine::running_campaign(&mut *self.reads.acquire().await?, campaign_id).await
    }

    async fn claim_attempts(&self, claims: Vec<ClaimRequest>) -> StoreResult<Vec<Dispatch>> {
        self.write(move |conn| {
            Box::pin(async move {
                let mut dispatches = Vec::new();
                for claim in claims {
                    dispatches.extend(engine::claim_attempts(conn, claim).await?);
                }
                Ok(dispatches)
            })
        })
        .await
    }

    async fn take_due_handoffs(&self, at: Timestamp, lease_until: Timestamp, limit: u32) -> StoreResult<Vec<Dispatch>> {
        self.write(move |conn| Box::pin(engine::take_due_handoffs(conn, at, lease_until, limit))).await
    }

    async fn record_handoffs(&self, results: Vec<HandoffResult>) -> StoreResult<()> {
        self.write(move |conn| Box::pin(engine::record_handoffs(conn, results))).await
    }

    async fn apply_events(
        &self,
        integration_id: Option<String>,
        events: Vec<AttemptEvent>,
        at: Timestamp,
        retry: RetrySettings,
    ) -> StoreResult<Vec<EventOutcome>> {
        self.write(move |conn| Box::pin(async move { engine::apply_events(conn, integration_id.as_deref(), &events, at, retry).await }))
            .await
    }

    async fn expired_attempts(&self, at: Timestamp, limit: u32) -> StoreResult<Vec<String>> {
        engine::expired_attempts(&mut *self.reads.acquire().await?, at, limit).await
    }

    async fn advance_iteration(&self, campaign_id: i64, at: Timestamp) -> StoreResult<Option<CampaignStatus>> {
        self.write(move |conn| Box::pin(engine::advance_iteration(conn, campaign_id, at))).await
    }

    async fn release_leases(&self, at: Timestamp) -> StoreResult<u64> {
        self.write(move |conn| Box::pin(engine::release_leases(conn, at))).await
    }

    async fn integration_secret(&self, integration_id: &str) -> StoreResult<Option<(Channel, String)>> {
        engine::integration_secret(&mut *self.reads.acquire().await?, integration_id).await
    }

    async fn list_attempts(&self, org: OrgId, campaign_id: i64, query: &AttemptQuery) -> StoreResult<Option<AttemptPage>> {
        engine::list_attempts(&mut *self.reads.acquire().await?, org, campaign_id, query).await
    }
}

/// Looks up the agent and its integration (one query) and inserts the campaign.
async fn insert_campaign(
    conn: &mut SqliteConnection,
    org: OrgId,
    new: NewCampaign,
    settings_json: String,
    created_at: Timestamp,
) -> StoreResult<CreateCampaignOutcome> {
    let row = sqlx::query(
        "SELECT a.name AS agent_name, i.channel, i.agent_id AS integration_agent FROM agents a \
         LEFT JOIN integrations i ON i.id = ? AND i.org_id = a.org_id WHERE a.org_id = ? AND a.id = ?",
    )
    .bind(&new.integration_id)
    .bind(org)
    .bind(new.agent_id.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(CreateCampaignOutcome::AgentNotFound) };
    let agent_id = new.agent_id.to_string();
    let (Some(channel), Some(owner)) =
        (row.try_get::<Option<String>, _>("channel")?, row.try_get::<Option<String>, _>("integration_agent")?)
    else {
        return Ok(CreateCampaignOutcome::IntegrationNotFound);
    };
    if owner != agent_id {
        return Ok(CreateCampaignOutcome::IntegrationNotFound);
    }
    let channel = parse_channel(&channel)?;
    if channel != new.channel {
        return Ok(CreateCampaignOutcome::WrongIntegrationType(channel));
    }
    let done = sqlx::query(
        "INSERT INTO campaigns (org_id, agent_id, integration_id, channel, status, created_at, settings) VALUES (?, ?, ?, ?, 'pending', ?, ?)",
    )
    .bind(org)
    .bind(&agent_id)
    .bind(&new.integration_id)
    .bind(channel.as_str())
    .bind(to_seconds(created_at))
    .bind(settings_json)
    .execute(&mut *conn)
    .await?;
    Ok(CreateCampaignOutcome::Created(Box::new(Campaign {
        id: done.last_insert_rowid(),
        agent: AgentRef { id: new.agent_id, name: row.try_get("agent_name")? },
        integration: IntegrationRef { id: new.integration_id, channel },
        status: CampaignStatus::Pending,
        archived: false,
        created_at,
        started_at: None,
        ended_at: None,
        settings: new.settings,
        current_iteration: 0,
        last_iteration_at: None,
        next_cycle_at: None,
        paused_in_cooldown: false,
        counters: CampaignCounters::default(),
    })))
}

pub(super) async fn update_campaign(conn: &mut SqliteConnection, campaign: &Campaign) -> StoreResult<()> {
    sqlx::query(
        "UPDATE campaigns SET status = ?, archived = ?, started_at = ?, ended_at = ?, settings = ?, current_iteration = ?, \
         last_iteration_at = ?, next_cycle_at = ?, paused_in_cooldown = ? WHERE id = ?",
    )
    .bind(campaign.status.as_str())
    .bind(campaign.archived)
    .bind(opt_to_seconds(campaign.started_at))
    .bind(opt_to_seconds(campaign.ended_at))
    .bind(serde_json::to_string(&campaign.settings)?)
    .bind(campaign.current_iteration)
    .bind(opt_to_seconds(campaign.last_iteration_at))
    .bind(opt_to_seconds(campaign.next_cycle_at))
    .bind(campaign.paused_in_cooldown)
    .bind(campaign.id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The campaign with its counters read again (after a change to its contacts), keeping the
/// changes made to `campaign` in memory.
async fn reload_campaign(conn: &mut SqliteConnection, campaign: Campaign) -> StoreResult<Campaign> {
    let row = sqlx::query(concat!(select_campaigns!(), " WHERE c.id = ?")).bind(campaign.id).fetch_one(&mut *conn).await?;
    Ok(Campaign { counters: campaign_from_row(&row)?.counters, ..campaign })
}

/// Creates the organization when it is new, then the key.
async fn insert_key(conn: &mut SqliteConnection, organization: &str, prefix: &str, hash: &str, at: Timestamp) -> StoreResult<()> {
    sqlx::query("INSERT INTO organizations (name, created_at) VALUES (?, ?) ON CONFLICT (name) DO NOTHING")
        .bind(organization)
        .bind(to_seconds(at))
        .execute(&mut *conn)
        .await?;
    sqlx::query("INSERT INTO api_keys (org_id, prefix, key_hash, created_at) SELECT id, ?, ?, ? FROM organizations WHERE name = ?")
        .bind(prefix)
        .bind(hash)
        .bind(to_seconds(at))
        .bind(organization)
        .execute(&mut *conn)
        .await?;
    Ok(())
}
