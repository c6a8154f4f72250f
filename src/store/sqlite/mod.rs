//! SQLite store: WAL with `synchronous=FULL`, so a 2xx means the write survives a power cut.
//!
//! SQLite has one writer at a time and every commit pays an fsync. All writes therefore go through
//! a single writer thread (`writer`) that groups the jobs waiting in its queue into one transaction (group
//! commit): each job runs in its own savepoint, so one refused job never undoes another, the
//! responses kept under Idempotency-Keys are inserted after the jobs (compressed, several rows per
//! statement: their bytes are most of what a key costs a commit), and every caller hears back
//! only after the shared COMMIT is durable. Reads use read-only connections that
//! WAL lets run beside the writer (`reads`). One driver, rusqlite, serves all of it, migrations
//! included (`rusqlite_migration`, counting applied steps in `user_version`).

use crate::store::{DncOrigin, ExpiredAttempt, HeldEvent, IntegrationHealthStore};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use jiff::Timestamp;
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use rusqlite_migration::{M, Migrations};
use uuid::Uuid;

use super::shared::{
    CampaignPaging, Neighbours, SqlValue, StoredRow, agent_from_row, api_key_info_from_row, campaign_conditions, campaign_from_row,
    config_json, idempotency_record, integration_from_row, integration_ref, opt_to_seconds, select_api_key_infos,
};
use super::{
    AddContactsOutcome, ApiKeyInfo, ApiKeyRecord, BatchItem, CampaignChange, CampaignCursor, CampaignFilter, CampaignPage, ContactLookup,
    ContactPage, CreateCampaignOutcome, DeleteOutcome, IdempotencyClaim, IdempotencyRecord, Modified, OrgId, ResponseRecorder, StoreError,
    StoreResult, StoredResponse, to_seconds,
};
use super::{AttemptPage, AttemptQuery, ClaimRequest, Dispatch, EventOutcome, HandoffResult, InboundMessage, RunningCampaign};
use super::{CallbackStore, EngineStore, Health, IdempotencyStore, KeyAdmin, KeyStore, RateLimitStore, TenantStore};
use crate::domain::agent::Agent;
use crate::domain::attempt::{AttemptEvent, RetrySettings};
use crate::domain::campaign::{Campaign, CampaignStatus, ContactStatus, NewCampaign};
use crate::domain::contact::IfDuplicate;
use crate::domain::dnc::{DncSource, keywords_or_default, opt_out_entries};
use crate::domain::ids::{NewApiKey, new_project_id};
use crate::domain::integration::{Integration, NewIntegration, ProviderConfig};
use crate::domain::plan::PlanCounts;
use crate::metrics;

mod attempts;
mod contacts;
mod dashboard;
mod dnc;
mod plan;
mod reads;
mod webhooks;
mod writer;

/// The schema, one step per file; the database's `user_version` counts the steps applied.
const MIGRATION_STEPS: &[M<'static>] = &[
    M::up(include_str!("../../../migrations/sqlite/0001_init.sql")),
    M::up(include_str!("../../../migrations/sqlite/0002_idempotency.sql")),
    M::up(include_str!("../../../migrations/sqlite/0003_contacts.sql")),
    M::up(include_str!("../../../migrations/sqlite/0004_engine.sql")),
    M::up(include_str!("../../../migrations/sqlite/0005_idempotency_expiry_by_rowid.sql")),
    M::up(include_str!("../../../migrations/sqlite/0006_attempt_media.sql")),
    M::up(include_str!("../../../migrations/sqlite/0007_webhooks.sql")),
    M::up(include_str!("../../../migrations/sqlite/0008_providers.sql")),
    M::up(include_str!("../../../migrations/sqlite/0009_dashboard.sql")),
    M::up(include_str!("../../../migrations/sqlite/0010_held_events.sql")),
    M::up(include_str!("../../../migrations/sqlite/0011_do_not_contact.sql")),
    M::up(include_str!("../../../migrations/sqlite/0012_contact_timezones.sql")),
];
const MIGRATIONS: Migrations<'static> = Migrations::from_slice(MIGRATION_STEPS);

/// Deletes, oldest first, the records written before the first one still live: a scan in rowid
/// (write) order that stops there, so it reads little more than it deletes, and no index on the
/// records' age costs every keyed request a third b-tree insert. A record written later but
/// dated earlier (the clock stepped back) is kept until the ones before it expire; look-ups
/// treat it as absent meanwhile.
const PURGE_RECORDS: &str = "DELETE FROM idempotency_keys WHERE rowid < coalesce(\
     (SELECT rowid FROM idempotency_keys WHERE created_at >= ? ORDER BY rowid LIMIT 1), \
     (SELECT max(rowid) + 1 FROM idempotency_keys))";

pub struct SqliteStore {
    reads: Arc<reads::Reads>,
    writer: writer::Writer,
}

impl SqliteStore {
    /// Opens `sqlite://PATH` (creating the file when missing) and brings its schema up to date.
    pub async fn open(url: &str) -> StoreResult<Self> {
        let path = database_path(url)?;
        let writer = writer::Writer::start(&path, migrate)?;
        Ok(SqliteStore { reads: Arc::new(reads::Reads::new(&path)), writer })
    }

    /// Runs `work` inside the writer's next transaction and returns its result once committed.
    async fn write<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        self.writer.write(None, work).await
    }

    /// [`Self::write`], storing the response `record` renders under its Idempotency-Key in the
    /// same transaction as the writes of `work`.
    async fn write_recorded<T, F>(&self, record: Option<ResponseRecorder<T>>, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        self.writer.write(record, work).await
    }
}

/// The file a `sqlite://PATH` (or `sqlite:PATH`) URL names. Query parameters are not read.
pub(super) fn database_path(url: &str) -> StoreResult<PathBuf> {
    let rest =
        url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).ok_or_else(|| StoreError::UnsupportedUrl(url.to_owned()))?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path == ":memory:" {
        return Err(StoreError::UnsupportedUrl(url.to_owned()));
    }
    if !query.is_empty() {
        tracing::warn!(parameters = query, "SQLite URL parameters are ignored: the store sets its own (WAL, synchronous=FULL)");
    }
    Ok(PathBuf::from(path))
}

/// Applies the migrations the database has not had yet. A database created before the schema's
/// steps were counted in `user_version` (by sqlx, whose `_sqlx_migrations` table lists the steps
/// applied) is first marked with that count, so that no step runs twice.
fn migrate(conn: &mut Connection) -> StoreResult<()> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let from_sqlx = conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'")?.exists([])?;
    if version == 0 && from_sqlx {
        let applied: i64 = conn.query_row("SELECT COUNT(*) FROM _sqlx_migrations WHERE success", [], |row| row.get(0))?;
        conn.pragma_update(None, "user_version", applied)?;
    }
    MIGRATIONS.to_latest(conn).map_err(|err| StoreError::Migration(err.to_string()))
}

/// `SELECT <campaign columns>[, extra columns] FROM campaigns c JOIN agents a`: every campaign read.
macro_rules! select_campaigns {
    ($($extra:literal)?) => {
        concat!(
            "SELECT ", campaign_columns!(),
            $(", ", $extra,)?
            " FROM campaigns c JOIN agents a ON a.id = c.agent_id"
        )
    };
}
/// The columns [`campaign_from_row`] reads (campaigns as `c`, agents as `a`).
macro_rules! campaign_columns {
    () => {
        "c.id, c.agent_id, a.name AS agent_name, c.integration_id, c.channel, c.status, c.archived, \
             c.created_at, c.started_at, c.ended_at, c.settings, c.current_iteration, c.last_iteration_at, c.next_cycle_at, \
             c.paused_in_cooldown, c.contact_count, c.calls, c.calls_human, c.calls_machine, c.calls_unknown, c.messages, \
             c.contacts_processed, c.contacts_answered, \
             (SELECT json_group_object(status, count) FROM campaign_contact_counts WHERE campaign_id = c.id) AS status_counts"
    };
}
pub(super) use {campaign_columns, select_campaigns};
const CAMPAIGN_COLUMNS: &str = select_campaigns!();
const CAMPAIGN_BY_ID: &str = concat!(select_campaigns!(), " WHERE c.org_id = ? AND c.id = ?");

/// Appends the campaign list's conditions as a `WHERE` clause, and their values to `params`.
fn push_campaign_filters(sql: &mut String, params: &mut Vec<Value>, org: OrgId, filter: &CampaignFilter) {
    // SQLite's lower() folds ASCII letters only.
    let name_contains = "instr(lower(json_extract(c.settings, '$.name')), ";
    for (i, (clause, value, close)) in campaign_conditions(org, filter, name_contains).into_iter().enumerate() {
        sql.push_str(if i == 0 { " WHERE " } else { " AND " });
        sql.push_str(clause);
        if let Some(value) = value {
            sql.push('?');
            params.push(match value {
                SqlValue::Int(value) => Value::Integer(value),
                SqlValue::Text(value) => Value::Text(value),
            });
        }
        sql.push_str(close);
    }
}

fn campaigns_exist_beyond(conn: &Connection, org: OrgId, filter: &CampaignFilter, edge: (i64, i64), older: bool) -> StoreResult<bool> {
    let (mut sql, mut params) = ("SELECT EXISTS (SELECT 1 FROM campaigns c".to_owned(), Vec::new());
    push_campaign_filters(&mut sql, &mut params, org, filter);
    sql.push_str(if older { " AND (c.created_at, c.id) < (?, ?))" } else { " AND (c.created_at, c.id) > (?, ?))" });
    params.extend([Value::Integer(edge.0), Value::Integer(edge.1)]);
    Ok(conn.prepare_cached(&sql)?.query_row(params_from_iter(params), |row| row.get(0))?)
}

fn list_campaigns(
    conn: &Connection,
    org: OrgId,
    filter: &CampaignFilter,
    cursor: Option<CampaignCursor>,
    page_size: u32,
) -> StoreResult<CampaignPage> {
    let (mut count, mut params) = ("SELECT COUNT(*) FROM campaigns c".to_owned(), Vec::new());
    push_campaign_filters(&mut count, &mut params, org, filter);
    let total_count: i64 = conn.prepare_cached(&count)?.query_row(params_from_iter(params), |row| row.get(0))?;

    let paging = CampaignPaging::new(cursor, page_size);
    let (mut page, mut params) = (CAMPAIGN_COLUMNS.to_owned(), Vec::new());
    push_campaign_filters(&mut page, &mut params, org, filter);
    if let Some((clause, created_at, id)) = paging.after_cursor() {
        page.push_str(clause);
        page.push_str("?, ?)");
        params.extend([Value::Integer(created_at), Value::Integer(id)]);
    }
    page.push_str(paging.order());
    page.push_str(" LIMIT ?");
    params.push(Value::Integer(paging.limit()));
    let (campaigns, neighbours) = paging.page(all_rows(conn, &page, params_from_iter(params), |row| campaign_from_row(row))?);
    let (has_next, has_previous) = match neighbours {
        Neighbours::Known { has_next, has_previous } => (has_next, has_previous),
        Neighbours::AskOlder { edge, has_previous } => (campaigns_exist_beyond(conn, org, filter, edge, true)?, has_previous),
        Neighbours::AskNewer { edge, has_next } => (has_next, campaigns_exist_beyond(conn, org, filter, edge, false)?),
    };
    Ok(CampaignPage { total_count, campaigns, has_next, has_previous })
}

impl SqliteStore {
    /// Applies provider events, each idempotently; `integration_id` (when given) must own the attempt.
    async fn apply_events_of(
        &self,
        integration_id: Option<String>,
        events: Vec<AttemptEvent>,
        at: Timestamp,
        retry: RetrySettings,
    ) -> StoreResult<Vec<EventOutcome>> {
        let (outcomes, finished) =
            self.write(move |conn| attempts::apply_events(conn, integration_id.as_deref(), &events, at, retry)).await?;
        // Counted once committed: a batch that rolls back closed nothing.
        metrics::attempts_finished(&finished);
        Ok(outcomes)
    }
}

#[async_trait]
impl Health for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        self.reads.row("SELECT 1", [], |_| Ok(()))?;
        self.write(|_| Ok(())).await
    }

    fn data_version(&self) -> StoreResult<Option<u64>> {
        self.reads.data_version().map(Some)
    }
}

#[async_trait]
impl KeyStore for SqliteStore {
    async fn find_api_key(&self, prefix: &str) -> StoreResult<Option<ApiKeyRecord>> {
        let sql = "SELECT id, org_id, key_hash, revoked_at IS NOT NULL AS revoked FROM api_keys WHERE prefix = ?";
        self.reads.row(sql, [prefix], |row| {
            Ok(ApiKeyRecord { id: row.int("id")?, org_id: row.int("org_id")?, hash: row.text("key_hash")?, revoked: row.flag("revoked")? })
        })
    }

    async fn touch_api_key(&self, key_id: i64, at: Timestamp) -> StoreResult<()> {
        self.write(move |conn| {
            conn.prepare_cached("UPDATE api_keys SET last_used_at = ? WHERE id = ?")?.execute(params![to_seconds(at), key_id])?;
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl KeyAdmin for SqliteStore {
    async fn create_api_key(&self, organization: &str, key: &NewApiKey, at: Timestamp) -> StoreResult<()> {
        let (organization, prefix, hash) = (organization.to_owned(), key.prefix.clone(), key.hash.clone());
        self.write(move |conn| insert_key(conn, &organization, &prefix, &hash, at)).await
    }

    async fn bootstrap_organization(&self, organization: &str, key: &NewApiKey, at: Timestamp) -> StoreResult<bool> {
        let (organization, prefix, hash) = (organization.to_owned(), key.prefix.clone(), key.hash.clone());
        self.write(move |conn| {
            if conn.prepare_cached("SELECT 1 FROM organizations")?.exists([])? {
                return Ok(false);
            }
            insert_key(conn, &organization, &prefix, &hash, at)?;
            Ok(true)
        })
        .await
    }

    async fn list_api_keys(&self, organization: Option<&str>) -> StoreResult<Vec<ApiKeyInfo>> {
        let organization = organization.map(str::to_owned);
        self.reads
            .read(move |conn| {
                all_rows(
                    conn,
                    concat!(select_api_key_infos!(), " WHERE ?1 IS NULL OR o.name = ?1 ORDER BY o.name, k.created_at, k.id"),
                    [organization],
                    |row| api_key_info_from_row(row),
                )
            })
            .await
    }

    async fn revoke_api_key(&self, prefix: &str, at: Timestamp) -> StoreResult<bool> {
        let prefix = prefix.to_owned();
        self.write(move |conn| revoke_key(conn, None, &prefix, at)).await
    }
}

#[async_trait]
impl TenantStore for SqliteStore {
    async fn create_agent(&self, org: OrgId, name: &str, at: Timestamp, record: Option<ResponseRecorder<Agent>>) -> StoreResult<Agent> {
        let agent = Agent::new(name.to_owned(), at);
        self.write_recorded(record, move |conn| {
            conn.prepare_cached("INSERT INTO agents (id, org_id, name, created_at) VALUES (?, ?, ?, ?)")?.execute(params![
                agent.id.to_string(),
                org,
                agent.name,
                to_seconds(agent.created_at)
            ])?;
            Ok(agent)
        })
        .await
    }

    async fn get_agent(&self, org: OrgId, id: Uuid) -> StoreResult<Option<Agent>> {
        self.reads.row("SELECT id, name, created_at FROM agents WHERE org_id = ? AND id = ?", params![org, id.to_string()], |row| {
            agent_from_row(row)
        })
    }

    async fn list_agents(&self, org: OrgId) -> StoreResult<Vec<Agent>> {
        self.reads
            .read(move |conn| {
                all_rows(conn, "SELECT id, name, created_at FROM agents WHERE org_id = ? ORDER BY created_at, rowid", [org], |row| {
                    agent_from_row(row)
                })
            })
            .await
    }

    async fn create_integration(
        &self,
        org: OrgId,
        new: NewIntegration,
        at: Timestamp,
        record: Option<ResponseRecorder<Integration>>,
    ) -> StoreResult<Integration> {
        let integration = new.create(at);
        let config = config_json(&integration.config)?;
        self.write_recorded(record, move |conn| {
            conn.prepare_cached(
                "INSERT INTO integrations (id, org_id, agent_id, channel, provider, config, secret, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            )?
            .execute(params![
                integration.id,
                org,
                integration.agent_id.to_string(),
                integration.channel.as_str(),
                integration.provider.as_str(),
                config,
                integration.secret,
                to_seconds(integration.created_at),
            ])?;
            Ok(integration)
        })
        .await
    }

    async fn get_integration(&self, org: OrgId, id: &str) -> StoreResult<Option<Integration>> {
        self.reads.row("SELECT * FROM integrations WHERE org_id = ? AND id = ?", params![org, id], |row| integration_from_row(row))
    }

    async fn list_integrations(&self, org: OrgId) -> StoreResult<Vec<Integration>> {
        self.reads
            .read(move |conn| {
                all_rows(conn, "SELECT * FROM integrations WHERE org_id = ? ORDER BY created_at, rowid", [org], |row| {
                    integration_from_row(row)
                })
            })
            .await
    }

    async fn update_integration(&self, org: OrgId, id: &str, config: ProviderConfig) -> StoreResult<Option<Integration>> {
        let config = config_json(&config)?;
        let id = id.to_owned();
        self.write(move |conn| {
            // A new config is a fix: the integration's dispatch resumes (PROVIDERS.md §1).
            conn.prepare_cached(
                "UPDATE integrations SET config = ?, health_reason = NULL, health_since = NULL WHERE org_id = ? AND id = ?",
            )?
            .execute(params![config, org, id])?;
            first_row(conn, "SELECT * FROM integrations WHERE org_id = ? AND id = ?", params![org, id], |row| integration_from_row(row))
        })
        .await
    }

    async fn create_campaign(
        &self,
        org: OrgId,
        new: NewCampaign,
        at: Timestamp,
        record: Option<ResponseRecorder<CreateCampaignOutcome>>,
    ) -> StoreResult<CreateCampaignOutcome> {
        let settings_json = serde_json::to_string(&new.settings)?;
        self.write_recorded(record, move |conn| insert_campaign(conn, org, new, settings_json, at)).await
    }

    async fn get_campaign(&self, org: OrgId, id: i64) -> StoreResult<Option<Campaign>> {
        self.reads.row(CAMPAIGN_BY_ID, [org, id], |row| campaign_from_row(row))
    }

    async fn list_campaigns(
        &self,
        org: OrgId,
        filter: &CampaignFilter,
        cursor: Option<CampaignCursor>,
        page_size: u32,
    ) -> StoreResult<CampaignPage> {
        let filter = filter.clone();
        self.reads.read(move |conn| list_campaigns(conn, org, &filter, cursor, page_size)).await
    }

    async fn modify_campaign(
        &self,
        org: OrgId,
        id: i64,
        at: Timestamp,
        change: CampaignChange,
        record: Option<ResponseRecorder<Modified>>,
    ) -> StoreResult<Modified> {
        self.write_recorded(record, move |conn| {
            let Some(mut campaign) = first_row(conn, CAMPAIGN_BY_ID, [org, id], |row| campaign_from_row(row))? else {
                return Ok(Modified::NotFound);
            };
            let (iteration, previous) = (campaign.current_iteration, campaign.status);
            if let Err(refusal) = change(&mut campaign) {
                return Ok(Modified::Refused(refusal));
            }
            if campaign.began_iteration_since(iteration) {
                attempts::queue_eligible_contacts(conn, &campaign)?;
                campaign = reload_campaign(conn, campaign)?;
            }
            update_campaign(conn, &campaign)?;
            let events: Vec<_> = crate::domain::webhook::status_changed(&campaign, previous, at).into_iter().collect();
            webhooks::record_events(conn, org, &events, None)?;
            Ok(Modified::Done(Box::new(campaign)))
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
        self.write_recorded(record, move |conn| contacts::add_contacts(conn, org, campaign_id, items, if_duplicate, at)).await
    }

    async fn list_contacts(
        &self,
        org: OrgId,
        campaign_id: i64,
        status: Option<ContactStatus>,
        page_size: u32,
        page_index: u32,
    ) -> StoreResult<Option<ContactPage>> {
        self.reads.read(move |conn| contacts::list_contacts(conn, org, campaign_id, status, page_size, page_index)).await
    }

    async fn get_contact(&self, org: OrgId, campaign_id: i64, contact_id: i64) -> StoreResult<ContactLookup> {
        self.reads.read(move |conn| contacts::get_contact(conn, org, campaign_id, contact_id)).await
    }

    async fn delete_contact(&self, org: OrgId, campaign_id: i64, contact_id: i64) -> StoreResult<DeleteOutcome> {
        self.write(move |conn| contacts::delete_contact(conn, org, campaign_id, contact_id)).await
    }

    async fn plan_counts(&self, org: OrgId, campaign_id: i64, at: Timestamp) -> StoreResult<Option<(Campaign, PlanCounts)>> {
        self.reads.read(move |conn| plan::plan_counts(conn, org, campaign_id, at)).await
    }

    async fn zone_queue_counts(&self, org: OrgId, campaign_id: i64) -> StoreResult<Vec<(Option<String>, i64)>> {
        self.reads.read(move |conn| contacts::zone_queue_counts(conn, org, campaign_id)).await
    }

    async fn list_attempts(&self, org: OrgId, campaign_id: i64, query: &AttemptQuery) -> StoreResult<Option<AttemptPage>> {
        let query = query.clone();
        self.reads.read(move |conn| attempts::list_attempts(conn, org, campaign_id, &query)).await
    }
}

#[async_trait]
impl IdempotencyStore for SqliteStore {
    async fn find_idempotency_record(&self, org: OrgId, key: &str, expired_before: Timestamp) -> StoreResult<Option<IdempotencyRecord>> {
        let sql = "SELECT fingerprint, status, body FROM idempotency_keys WHERE org_id = ? AND key = ? AND created_at >= ?";
        self.reads.row(sql, params![org, key, to_seconds(expired_before)], |row| {
            idempotency_record(row.get("fingerprint")?, row.get("status")?, row.get("body")?)
        })
    }

    async fn complete_idempotency_key(&self, claim: &IdempotencyClaim, response: StoredResponse) -> StoreResult<()> {
        let record = ResponseRecorder { claim: claim.clone(), render: Box::new(move |_: &()| Some(response)) };
        self.write_recorded(Some(record), |_| Ok(())).await
    }

    async fn purge_idempotency_keys(&self, created_before: Timestamp) -> StoreResult<u64> {
        self.write(move |conn| {
            let deleted = conn.prepare_cached(PURGE_RECORDS)?.execute([to_seconds(created_before)])?;
            Ok(deleted as u64)
        })
        .await
    }
}

#[async_trait]
impl IntegrationHealthStore for SqliteStore {
    async fn mark_integration_failing(&self, integration_id: &str, reason: &str, at: Timestamp) -> StoreResult<()> {
        let (id, reason) = (integration_id.to_owned(), reason.to_owned());
        self.write(move |conn| attempts::mark_integration_failing(conn, &id, &reason, at)).await
    }
}

#[async_trait]
impl EngineStore for SqliteStore {
    async fn running_campaigns(&self) -> StoreResult<Vec<RunningCampaign>> {
        self.reads.read(attempts::running_campaigns).await
    }

    async fn running_campaign(&self, campaign_id: i64) -> StoreResult<Option<RunningCampaign>> {
        self.reads.read(move |conn| attempts::running_campaign(conn, campaign_id)).await
    }

    async fn suppressed_numbers(&self, campaign_id: i64, numbers: Vec<String>) -> StoreResult<HashSet<String>> {
        self.reads
            .read(move |conn| {
                let campaign = first_row(conn, "SELECT org_id, channel FROM campaigns WHERE id = ?", [campaign_id], |row| {
                    Ok((row.int("org_id")?, super::shared::parse_channel(&row.text("channel")?)?))
                })?;
                let Some((org, channel)) = campaign else { return Ok(HashSet::new()) };
                contacts::suppressed_numbers(conn, org, channel, numbers.iter().map(String::as_str))
            })
            .await
    }

    async fn claim_attempts(&self, claims: Vec<ClaimRequest>) -> StoreResult<Vec<Dispatch>> {
        self.write(move |conn| {
            let mut dispatches = Vec::new();
            for claim in claims {
                dispatches.extend(attempts::claim_attempts(conn, claim)?);
            }
            Ok(dispatches)
        })
        .await
    }

    async fn take_due_handoffs(&self, at: Timestamp, lease_until: Timestamp, limit: u32) -> StoreResult<Vec<Dispatch>> {
        self.write(move |conn| attempts::take_due_handoffs(conn, at, lease_until, limit)).await
    }

    async fn record_handoffs(&self, results: Vec<HandoffResult>) -> StoreResult<()> {
        self.write(move |conn| attempts::record_handoffs(conn, results)).await
    }

    async fn apply_events(&self, events: Vec<AttemptEvent>, at: Timestamp, retry: RetrySettings) -> StoreResult<Vec<EventOutcome>> {
        self.apply_events_of(None, events, at, retry).await
    }

    async fn expired_attempts(&self, at: Timestamp, limit: u32) -> StoreResult<Vec<ExpiredAttempt>> {
        self.reads.read(move |conn| attempts::expired_attempts(conn, at, limit)).await
    }

    async fn advance_iteration(&self, campaign_id: i64, at: Timestamp) -> StoreResult<Option<CampaignStatus>> {
        self.write(move |conn| attempts::advance_iteration(conn, campaign_id, at)).await
    }

    async fn waiting_contacts(&self) -> StoreResult<Vec<(CampaignStatus, i64)>> {
        self.reads.read(attempts::waiting_contacts).await
    }

    async fn release_leases(&self, at: Timestamp) -> StoreResult<u64> {
        self.write(move |conn| attempts::release_leases(conn, at)).await
    }
}

impl RateLimitStore for SqliteStore {}

#[async_trait]
impl CallbackStore for SqliteStore {
    async fn apply_integration_events(
        &self,
        integration_id: &str,
        events: Vec<AttemptEvent>,
        at: Timestamp,
        retry: RetrySettings,
    ) -> StoreResult<Vec<EventOutcome>> {
        self.apply_events_of(Some(integration_id.to_owned()), events, at, retry).await
    }

    async fn callback_integration(&self, integration_id: &str) -> StoreResult<Option<Integration>> {
        self.reads.row("SELECT * FROM integrations WHERE id = ?", [integration_id], |row| integration_from_row(row))
    }

    async fn record_inbound(&self, integration_id: &str, texts: Vec<InboundMessage>) -> StoreResult<()> {
        let integration_id = integration_id.to_owned();
        self.write(move |conn| {
            let mut insert = conn.prepare_cached(
                "INSERT INTO inbound_messages (integration_id, sender, body, attempt_id, received_at) VALUES (?, ?, ?, ?, ?)",
            )?;
            for text in &texts {
                insert.execute(params![integration_id, text.sender, text.body, text.attempt_id, super::to_millis(text.received_at)])?;
            }
            let org = first_row(conn, "SELECT org_id FROM integrations WHERE id = ?", [&integration_id], |row| row.int("org_id"))?;
            let Some(org) = org else { return Ok(()) };
            let keywords = keywords_or_default(dnc::keywords(conn, org)?);
            for text in &texts {
                let opted_out = opt_out_entries([(text.sender.as_str(), text.body.as_str())], &keywords);
                if !opted_out.is_empty() {
                    dnc::add_entries(conn, org, &opted_out, &DncOrigin::from(DncSource::OptOutReply), text.received_at)?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn hold_events(&self, integration_id: &str, held: Vec<HeldEvent>) -> StoreResult<()> {
        let integration_id = integration_id.to_owned();
        self.write(move |conn| attempts::hold_events(conn, &integration_id, held)).await
    }

    async fn attempts_by_provider_id(&self, integration_id: &str, provider_ids: &[String]) -> StoreResult<HashMap<String, String>> {
        let (integration_id, provider_ids) = (integration_id.to_owned(), provider_ids.to_vec());
        self.reads
            .read(move |conn| {
                let mut found = HashMap::new();
                for provider_id in provider_ids {
                    let attempt = first_row(
                        conn,
                        "SELECT a.id FROM attempts a JOIN campaigns c ON c.id = a.campaign_id WHERE a.provider_id = ? AND c.integration_id = ?",
                        params![provider_id, integration_id],
                        |row| row.text("id"),
                    )?;
                    if let Some(attempt) = attempt {
                        found.insert(provider_id, attempt);
                    }
                }
                Ok(found)
            })
            .await
    }
}

/// The first row `sql` returns for `params`, made into a value by `read`.
pub(super) fn first_row<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    read: impl FnOnce(&rusqlite::Row<'_>) -> StoreResult<T>,
) -> StoreResult<Option<T>> {
    conn.prepare_cached(sql)?.query_row(params, |row| Ok(read(row))).optional()?.transpose()
}

/// Every row `sql` returns for `params`, each made into a value by `read`.
pub(super) fn all_rows<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    mut read: impl FnMut(&rusqlite::Row<'_>) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    let mut statement = conn.prepare_cached(sql)?;
    let mut rows = statement.query(params)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(read(row)?);
    }
    Ok(out)
}

/// Looks up the agent and its integration (one query) and inserts the campaign.
fn insert_campaign(
    conn: &Connection,
    org: OrgId,
    new: NewCampaign,
    settings_json: String,
    at: Timestamp,
) -> StoreResult<CreateCampaignOutcome> {
    let found = first_row(
        conn,
        "SELECT a.name AS agent_name, i.channel, i.agent_id AS integration_agent FROM agents a \
         LEFT JOIN integrations i ON i.id = ? AND i.org_id = a.org_id WHERE a.org_id = ? AND a.id = ?",
        params![new.integration_id, org, new.agent_id.to_string()],
        |row| Ok((row.text("agent_name")?, integration_ref(row)?)),
    )?;
    let agent_name = match new.check_references(found.as_ref().map(|(name, _)| name.as_str()), found.as_ref().and_then(|(_, i)| *i)) {
        Ok(name) => name.to_owned(),
        Err(refused) => return Ok(CreateCampaignOutcome::Refused(refused)),
    };
    conn.prepare_cached(
        "INSERT INTO campaigns (org_id, agent_id, integration_id, channel, status, created_at, settings) VALUES (?, ?, ?, ?, 'pending', ?, ?)",
    )?
    .execute(params![org, new.agent_id.to_string(), new.integration_id, new.channel.as_str(), to_seconds(at), settings_json])?;
    Ok(CreateCampaignOutcome::Created(Box::new(new.create(conn.last_insert_rowid(), agent_name, at))))
}

pub(super) fn update_campaign(conn: &Connection, campaign: &Campaign) -> StoreResult<()> {
    conn.prepare_cached(
        "UPDATE campaigns SET status = ?, archived = ?, started_at = ?, ended_at = ?, settings = ?, current_iteration = ?, \
         last_iteration_at = ?, next_cycle_at = ?, paused_in_cooldown = ? WHERE id = ?",
    )?
    .execute(params![
        campaign.status.as_str(),
        campaign.archived,
        opt_to_seconds(campaign.started_at),
        opt_to_seconds(campaign.ended_at),
        serde_json::to_string(&campaign.settings)?,
        campaign.current_iteration,
        opt_to_seconds(campaign.last_iteration_at),
        opt_to_seconds(campaign.next_cycle_at),
        campaign.paused_in_cooldown,
        campaign.id,
    ])?;
    Ok(())
}

/// The campaign with its counters read again (after a change to its contacts), keeping the
/// changes made to `campaign` in memory.
fn reload_campaign(conn: &Connection, campaign: Campaign) -> StoreResult<Campaign> {
    let read = first_row(conn, concat!(select_campaigns!(), " WHERE c.id = ?"), [campaign.id], |row| campaign_from_row(row))?;
    let counters = read.ok_or_else(|| StoreError::Corrupt(format!("campaign {} vanished while changed", campaign.id)))?.counters;
    Ok(Campaign { counters, ..campaign })
}

/// Creates the organization when it is new, then the key.
fn insert_key(conn: &Connection, organization: &str, prefix: &str, hash: &str, at: Timestamp) -> StoreResult<()> {
    conn.prepare_cached("INSERT INTO organizations (name, created_at, public_id) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING")?
        .execute(params![organization, to_seconds(at), new_project_id()])?;
    let org = conn.prepare_cached("SELECT id FROM organizations WHERE name = ?")?.query_row([organization], |row| row.get(0))?;
    insert_org_key(conn, org, prefix, hash, at)
}

/// Stores a key of an existing organization: its prefix and hash, never the key itself. The
/// operator's CLI and the dashboard both create keys through here.
fn insert_org_key(conn: &Connection, org: OrgId, prefix: &str, hash: &str, at: Timestamp) -> StoreResult<()> {
    conn.prepare_cached("INSERT INTO api_keys (org_id, prefix, key_hash, created_at) VALUES (?, ?, ?, ?)")?.execute(params![
        org,
        prefix,
        hash,
        to_seconds(at)
    ])?;
    Ok(())
}

/// Revokes the key with this prefix (only `org`'s, when given); a key revoked already keeps its
/// first revocation's time. False when there is no such key.
fn revoke_key(conn: &Connection, org: Option<OrgId>, prefix: &str, at: Timestamp) -> StoreResult<bool> {
    let exists =
        conn.prepare_cached("SELECT 1 FROM api_keys WHERE prefix = ?1 AND (?2 IS NULL OR org_id = ?2)")?.exists(params![prefix, org])?;
    conn.prepare_cached("UPDATE api_keys SET revoked_at = ?3 WHERE prefix = ?1 AND (?2 IS NULL OR org_id = ?2) AND revoked_at IS NULL")?
        .execute(params![prefix, org, to_seconds(at)])?;
    Ok(exists)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database that sqlx migrated (steps listed in `_sqlx_migrations`, `user_version` 0) is
    /// taken as it is: no step runs twice, and a later step would run once.
    #[test]
    fn a_database_migrated_by_sqlx_keeps_its_schema_and_counts_its_steps() -> StoreResult<()> {
        let mut conn = Connection::open_in_memory()?;
        conn.execute_batch(
            "CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, installed_on TIMESTAMP NOT NULL \
             DEFAULT CURRENT_TIMESTAMP, success BOOLEAN NOT NULL, checksum BLOB NOT NULL, execution_time BIGINT NOT NULL)",
        )?;
        for (step, sql) in [
            include_str!("../../../migrations/sqlite/0001_init.sql"),
            include_str!("../../../migrations/sqlite/0002_idempotency.sql"),
            include_str!("../../../migrations/sqlite/0003_contacts.sql"),
            include_str!("../../../migrations/sqlite/0004_engine.sql"),
            include_str!("../../../migrations/sqlite/0005_idempotency_expiry_by_rowid.sql"),
        ]
        .into_iter()
        .enumerate()
        {
            conn.execute_batch(sql)?;
            conn.execute("INSERT INTO _sqlx_migrations VALUES (?, 'step', 0, TRUE, x'00', 1)", [step as i64 + 1])?;
        }
        migrate(&mut conn)?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
        assert_eq!(version, MIGRATION_STEPS.len() as i64);
        // A fresh database gets every step.
        let mut fresh = Connection::open_in_memory()?;
        migrate(&mut fresh)?;
        assert!(fresh.prepare("SELECT 1 FROM sqlite_master WHERE name = 'attempts'")?.exists([])?);
        Ok(())
    }

    /// SQLite is compiled into the binary (rusqlite's `bundled`): the library running is the one
    /// built against, not whatever the host has installed (Debian's is older and slower).
    #[test]
    fn the_sqlite_running_is_the_one_compiled_in() {
        assert_eq!(rusqlite::version_number(), rusqlite::ffi::SQLITE_VERSION_NUMBER, "running SQLite {}", rusqlite::version());
    }

    #[test]
    fn database_urls_name_a_file() {
        assert_eq!(database_path("sqlite://outbound.db").ok(), Some(PathBuf::from("outbound.db")));
        assert_eq!(database_path("sqlite:///var/lib/outbound.db?mode=rwc").ok(), Some(PathBuf::from("/var/lib/outbound.db")));
        assert_eq!(database_path("sqlite:data.db").ok(), Some(PathBuf::from("data.db")));
        for refused in ["sqlite://", "sqlite::memory:", "postgres://x"] {
            assert!(matches!(database_path(refused), Err(StoreError::UnsupportedUrl(_))), "{refused}");
        }
    }
}
