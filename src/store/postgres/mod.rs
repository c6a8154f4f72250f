//! PostgreSQL store: every write is its own transaction on a connection of a `PgPool`.
//!
//! Transactions that read and then write a campaign (its status, budgets or counters) lock its
//! row first (`SELECT … FOR UPDATE`), so that concurrent writers see each other's counters; rows
//! that change together are always locked in the same order (campaigns, then attempts, then
//! contacts, each by id) so that two transactions never wait on each other.

use crate::store::{DncOrigin, ExpiredAttempt, HeldEvent, IntegrationHealthStore};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use sqlx::migrate::MigrateDatabase;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{Postgres, QueryBuilder, Row};
use uuid::Uuid;

use super::shared::{
    CampaignPaging, Neighbours, SqlValue, StoredRow, agent_from_row, api_key_info_from_row, campaign_conditions, campaign_from_row,
    config_json, idempotency_record, integration_from_row, integration_ref, opt_to_seconds, pack_body, select_api_key_infos,
};
use super::{
    AddContactsOutcome, ApiKeyInfo, ApiKeyRecord, AttemptPage, AttemptQuery, BatchItem, CampaignChange, CampaignCursor, CampaignFilter,
    CampaignPage, ClaimRequest, ContactLookup, ContactPage, CreateCampaignOutcome, DeleteOutcome, Dispatch, EventOutcome, HandoffResult,
    IdempotencyClaim, IdempotencyRecord, Modified, OrgId, RateLimitStep, ResponseRecorder, RunningCampaign, StoreError, StoreResult,
    StoredResponse, to_seconds,
};
use super::{CallbackStore, EngineStore, Health, IdempotencyStore, InboundMessage, KeyAdmin, KeyStore, RateLimitStore, TenantStore};
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
mod webhooks;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

const MAX_CONNECTIONS: u32 = 16;
/// Serializes `bootstrap_organization` across processes (any constant shared by all of them).
const BOOTSTRAP_LOCK: i64 = 0x6f75_7462_6f75_6e64;

pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects (creating the database when it does not exist yet) and runs the migrations.
    pub async fn open(url: &str) -> StoreResult<Self> {
        // Creating needs the right to; a database that exists but cannot be checked is reported by
        // the connection below.
        if let Ok(false) = Postgres::database_exists(url).await {
            Postgres::create_database(url).await?;
        }
        // Notices ("relation … already exists, skipping" on every start) are not worth a log line.
        let options = url.parse::<PgConnectOptions>()?.options([("client_min_messages", "warning")]);
        let pool =
            PgPoolOptions::new().max_connections(MAX_CONNECTIONS).acquire_timeout(Duration::from_secs(10)).connect_with(options).await?;
        MIGRATOR.run(&pool).await.map_err(|err| StoreError::Migration(err.to_string()))?;
        Ok(PostgresStore { pool })
    }
}

/// Appends the campaign list's conditions as a `WHERE` clause.
fn push_campaign_filters(query: &mut QueryBuilder<Postgres>, org: OrgId, filter: &CampaignFilter) {
    let name_contains = "strpos(lower(c.settings::jsonb->>'name'), ";
    for (i, (clause, value, close)) in campaign_conditions(org, filter, name_contains).into_iter().enumerate() {
        query.push(if i == 0 { " WHERE " } else { " AND " }).push(clause);
        match value {
            Some(SqlValue::Int(value)) => query.push_bind(value),
            Some(SqlValue::Text(value)) => query.push_bind(value),
            None => query,
        };
        query.push(close);
    }
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
             (SELECT json_object_agg(status, count)::text FROM campaign_contact_counts WHERE campaign_id = c.id) AS status_counts"
    };
}
pub(super) use {campaign_columns, select_campaigns};
const CAMPAIGN_COLUMNS: &str = select_campaigns!();
const CAMPAIGN_BY_ID: &str = concat!(select_campaigns!(), " WHERE c.org_id = $1 AND c.id = $2");

impl PostgresStore {
    async fn campaigns_exist_beyond(&self, org: OrgId, filter: &CampaignFilter, edge: (i64, i64), older: bool) -> StoreResult<bool> {
        let mut query = QueryBuilder::<Postgres>::new("SELECT EXISTS (SELECT 1 FROM campaigns c");
        push_campaign_filters(&mut query, org, filter);
        query.push(if older { " AND (c.created_at, c.id) < (" } else { " AND (c.created_at, c.id) > (" });
        query.push_bind(edge.0).push(", ").push_bind(edge.1).push("))");
        Ok(query.build_query_scalar::<bool>().fetch_one(&self.pool).await?)
    }
}

impl PostgresStore {
    /// Applies provider events, each idempotently; `integration_id` (when given) must own the attempt.
    async fn apply_events_of(
        &self,
        integration_id: Option<String>,
        events: Vec<AttemptEvent>,
        at: Timestamp,
        retry: RetrySettings,
    ) -> StoreResult<Vec<EventOutcome>> {
        let mut tx = self.pool.begin().await?;
        let (outcomes, finished) = attempts::apply_events(&mut tx, integration_id.as_deref(), &events, at, retry).await?;
        tx.commit().await?;
        // Counted once committed: a transaction that rolls back closed nothing.
        metrics::attempts_finished(&finished);
        Ok(outcomes)
    }
}

#[async_trait]
impl Health for PostgresStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

#[async_trait]
impl KeyStore for PostgresStore {
    async fn find_api_key(&self, prefix: &str) -> StoreResult<Option<ApiKeyRecord>> {
        let row = sqlx::query("SELECT id, org_id, key_hash, revoked_at IS NOT NULL AS revoked FROM api_keys WHERE prefix = $1")
            .bind(prefix)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            Ok(ApiKeyRecord {
                id: row.try_get("id")?,
                org_id: row.try_get("org_id")?,
                hash: row.try_get("key_hash")?,
                revoked: row.try_get("revoked")?,
            })
        })
        .transpose()
    }

    async fn touch_api_key(&self, key_id: i64, at: Timestamp) -> StoreResult<()> {
        sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2").bind(to_seconds(at)).bind(key_id).execute(&self.pool).await?;
        Ok(())
    }
}

#[async_trait]
impl KeyAdmin for PostgresStore {
    async fn create_api_key(&self, organization: &str, key: &NewApiKey, at: Timestamp) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        insert_key(&mut tx, organization, &key.prefix, &key.hash, at).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn bootstrap_organization(&self, organization: &str, key: &NewApiKey, at: Timestamp) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(BOOTSTRAP_LOCK).execute(&mut *tx).await?;
        let any: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM organizations)").fetch_one(&mut *tx).await?;
        if any {
            return Ok(false);
        }
        insert_key(&mut tx, organization, &key.prefix, &key.hash, at).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn list_api_keys(&self, organization: Option<&str>) -> StoreResult<Vec<ApiKeyInfo>> {
        let rows =
            sqlx::query(concat!(select_api_key_infos!(), " WHERE $1::text IS NULL OR o.name = $1 ORDER BY o.name, k.created_at, k.id"))
                .bind(organization)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(api_key_info_from_row).collect()
    }

    async fn revoke_api_key(&self, prefix: &str, at: Timestamp) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        let exists = revoke_key(&mut tx, None, prefix, at).await?;
        tx.commit().await?;
        Ok(exists)
    }
}

#[async_trait]
impl TenantStore for PostgresStore {
    async fn create_agent(&self, org: OrgId, name: &str, at: Timestamp, record: Option<ResponseRecorder<Agent>>) -> StoreResult<Agent> {
        let agent = Agent::new(name.to_owned(), at);
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO agents (id, org_id, name, created_at) VALUES ($1, $2, $3, $4)")
            .bind(agent.id.to_string())
            .bind(org)
            .bind(&agent.name)
            .bind(to_seconds(agent.created_at))
            .execute(&mut *tx)
            .await?;
        record_response(&mut tx, record, &agent).await?;
        tx.commit().await?;
        Ok(agent)
    }

    async fn get_agent(&self, org: OrgId, id: Uuid) -> StoreResult<Option<Agent>> {
        let row = sqlx::query("SELECT id, name, created_at FROM agents WHERE org_id = $1 AND id = $2")
            .bind(org)
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(agent_from_row).transpose()
    }

    async fn list_agents(&self, org: OrgId) -> StoreResult<Vec<Agent>> {
        let rows = sqlx::query("SELECT id, name, created_at FROM agents WHERE org_id = $1 ORDER BY created_at, seq")
            .bind(org)
            .fetch_all(&self.pool)
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
        let integration = new.create(at);
        let config = config_json(&integration.config)?;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO integrations (id, org_id, agent_id, channel, provider, config, secret, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&integration.id)
        .bind(org)
        .bind(integration.agent_id.to_string())
        .bind(integration.channel.as_str())
        .bind(integration.provider.as_str())
        .bind(config)
        .bind(&integration.secret)
        .bind(to_seconds(integration.created_at))
        .execute(&mut *tx)
        .await?;
        record_response(&mut tx, record, &integration).await?;
        tx.commit().await?;
        Ok(integration)
    }

    async fn update_integration(&self, org: OrgId, id: &str, config: ProviderConfig) -> StoreResult<Option<Integration>> {
        // A new config is a fix: the integration's dispatch resumes (PROVIDERS.md §1).
        let row = sqlx::query(
            "UPDATE integrations SET config = $1, health_reason = NULL, health_since = NULL WHERE org_id = $2 AND id = $3 RETURNING *",
        )
        .bind(config_json(&config)?)
        .bind(org)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(integration_from_row).transpose()
    }

    async fn get_integration(&self, org: OrgId, id: &str) -> StoreResult<Option<Integration>> {
        let row =
            sqlx::query("SELECT * FROM integrations WHERE org_id = $1 AND id = $2").bind(org).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(integration_from_row).transpose()
    }

    async fn list_integrations(&self, org: OrgId) -> StoreResult<Vec<Integration>> {
        let rows =
            sqlx::query("SELECT * FROM integrations WHERE org_id = $1 ORDER BY created_at, seq").bind(org).fetch_all(&self.pool).await?;
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
        let mut tx = self.pool.begin().await?;
        let outcome = insert_campaign(&mut tx, org, new, settings_json, at).await?;
        record_response(&mut tx, record, &outcome).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    async fn get_campaign(&self, org: OrgId, id: i64) -> StoreResult<Option<Campaign>> {
        let row = sqlx::query(CAMPAIGN_BY_ID).bind(org).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(campaign_from_row).transpose()
    }

    async fn list_campaigns(
        &self,
        org: OrgId,
        filter: &CampaignFilter,
        cursor: Option<CampaignCursor>,
        page_size: u32,
    ) -> StoreResult<CampaignPage> {
        let mut count = QueryBuilder::<Postgres>::new("SELECT COUNT(*) FROM campaigns c");
        push_campaign_filters(&mut count, org, filter);
        let total_count: i64 = count.build_query_scalar().fetch_one(&self.pool).await?;

        let paging = CampaignPaging::new(cursor, page_size);
        let mut page = QueryBuilder::<Postgres>::new(CAMPAIGN_COLUMNS);
        push_campaign_filters(&mut page, org, filter);
        if let Some((clause, created_at, id)) = paging.after_cursor() {
            page.push(clause).push_bind(created_at).push(", ").push_bind(id).push(")");
        }
        page.push(paging.order()).push(" LIMIT ").push_bind(paging.limit());
        let rows = page.build().fetch_all(&self.pool).await?;
        let (campaigns, neighbours) = paging.page(rows.iter().map(campaign_from_row).collect::<StoreResult<Vec<_>>>()?);
        let (has_next, has_previous) = match neighbours {
            Neighbours::Known { has_next, has_previous } => (has_next, has_previous),
            Neighbours::AskOlder { edge, has_previous } => (self.campaigns_exist_beyond(org, filter, edge, true).await?, has_previous),
            Neighbours::AskNewer { edge, has_next } => (has_next, self.campaigns_exist_beyond(org, filter, edge, false).await?),
        };
        Ok(CampaignPage { total_count, campaigns, has_next, has_previous })
    }

    async fn modify_campaign(
        &self,
        org: OrgId,
        id: i64,
        at: Timestamp,
        change: CampaignChange,
        record: Option<ResponseRecorder<Modified>>,
    ) -> StoreResult<Modified> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(concat!(select_campaigns!(), " WHERE c.org_id = $1 AND c.id = $2 FOR UPDATE OF c"))
            .bind(org)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let outcome = match row {
            None => Modified::NotFound,
            Some(row) => {
                let mut campaign = campaign_from_row(&row)?;
                let (iteration, previous) = (campaign.current_iteration, campaign.status);
                match change(&mut campaign) {
                    Err(refusal) => Modified::Refused(refusal),
                    Ok(()) => {
                        if campaign.began_iteration_since(iteration) {
                            attempts::queue_eligible_contacts(&mut tx, &campaign).await?;
                            campaign = reload_campaign(&mut tx, campaign).await?;
                        }
                        update_campaign(&mut tx, &campaign).await?;
                        let events: Vec<_> = crate::domain::webhook::status_changed(&campaign, previous, at).into_iter().collect();
                        webhooks::record_events(&mut tx, org, &events, None).await?;
                        Modified::Done(Box::new(campaign))
                    }
                }
            }
        };
        record_response(&mut tx, record, &outcome).await?;
        tx.commit().await?;
        Ok(outcome)
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
        let mut tx = self.pool.begin().await?;
        let outcome = contacts::add_contacts(&mut tx, org, campaign_id, items, if_duplicate, at).await?;
        record_response(&mut tx, record, &outcome).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    async fn list_contacts(
        &self,
        org: OrgId,
        campaign_id: i64,
        status: Option<ContactStatus>,
        page_size: u32,
        page_index: u32,
    ) -> StoreResult<Option<ContactPage>> {
        // One snapshot for the count and the page.
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *tx).await?;
        let page = contacts::list_contacts(&mut tx, org, campaign_id, status, page_size, page_index).await?;
        tx.commit().await?;
        Ok(page)
    }

    async fn get_contact(&self, org: OrgId, campaign_id: i64, contact_id: i64) -> StoreResult<ContactLookup> {
        let mut conn = self.pool.acquire().await?;
        contacts::get_contact(&mut conn, org, campaign_id, contact_id).await
    }

    async fn delete_contact(&self, org: OrgId, campaign_id: i64, contact_id: i64) -> StoreResult<DeleteOutcome> {
        let mut tx = self.pool.begin().await?;
        let outcome = contacts::delete_contact(&mut tx, org, campaign_id, contact_id).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    async fn plan_counts(&self, org: OrgId, campaign_id: i64, at: Timestamp) -> StoreResult<Option<(Campaign, PlanCounts)>> {
        plan::plan_counts(&mut *self.pool.acquire().await?, org, campaign_id, at).await
    }

    async fn zone_queue_counts(&self, org: OrgId, campaign_id: i64) -> StoreResult<Vec<(Option<String>, i64)>> {
        let mut conn = self.pool.acquire().await?;
        contacts::zone_queue_counts(&mut conn, org, campaign_id).await
    }

    async fn list_attempts(&self, org: OrgId, campaign_id: i64, query: &AttemptQuery) -> StoreResult<Option<AttemptPage>> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *tx).await?;
        let page = attempts::list_attempts(&mut tx, org, campaign_id, query).await?;
        tx.commit().await?;
        Ok(page)
    }
}

#[async_trait]
impl IdempotencyStore for PostgresStore {
    async fn find_idempotency_record(&self, org: OrgId, key: &str, expired_before: Timestamp) -> StoreResult<Option<IdempotencyRecord>> {
        let row = sqlx::query("SELECT fingerprint, status, body FROM idempotency_keys WHERE org_id = $1 AND key = $2 AND created_at >= $3")
            .bind(org)
            .bind(key)
            .bind(to_seconds(expired_before))
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| idempotency_record(row.try_get("fingerprint")?, row.try_get("status")?, row.try_get("body")?)).transpose()
    }

    async fn complete_idempotency_key(&self, claim: &IdempotencyClaim, response: StoredResponse) -> StoreResult<()> {
        let mut conn = self.pool.acquire().await?;
        insert_record(&mut conn, claim, &response).await
    }

    async fn purge_idempotency_keys(&self, created_before: Timestamp) -> StoreResult<u64> {
        let done =
            sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1").bind(to_seconds(created_before)).execute(&self.pool).await?;
        Ok(done.rows_affected())
    }
}

#[async_trait]
impl IntegrationHealthStore for PostgresStore {
    async fn mark_integration_failing(&self, integration_id: &str, reason: &str, at: Timestamp) -> StoreResult<()> {
        attempts::mark_integration_failing(&mut *self.pool.acquire().await?, integration_id, reason, at).await
    }
}

#[async_trait]
impl EngineStore for PostgresStore {
    async fn running_campaigns(&self) -> StoreResult<Vec<RunningCampaign>> {
        attempts::running_campaigns(&mut *self.pool.acquire().await?).await
    }

    async fn running_campaign(&self, campaign_id: i64) -> StoreResult<Option<RunningCampaign>> {
        attempts::running_campaign(&mut *self.pool.acquire().await?, campaign_id).await
    }

    async fn suppressed_numbers(&self, campaign_id: i64, numbers: Vec<String>) -> StoreResult<HashSet<String>> {
        let mut conn = self.pool.acquire().await?;
        let campaign =
            sqlx::query("SELECT org_id, channel FROM campaigns WHERE id = $1").bind(campaign_id).fetch_optional(&mut *conn).await?;
        let Some(campaign) = campaign else { return Ok(HashSet::new()) };
        let channel = super::shared::parse_channel(campaign.try_get("channel")?)?;
        let numbers: Vec<&str> = numbers.iter().map(String::as_str).collect();
        contacts::suppressed_numbers(&mut conn, campaign.try_get("org_id")?, channel, &numbers).await
    }

    async fn claim_attempts(&self, claims: Vec<ClaimRequest>) -> StoreResult<Vec<Dispatch>> {
        let mut tx = self.pool.begin().await?;
        // Every campaign's row is locked up front, in id order (see the module's comment).
        let mut ids: Vec<i64> = claims.iter().map(|c| c.campaign_id).collect();
        ids.sort_unstable();
        ids.dedup();
        attempts::lock_campaigns(&mut tx, &ids).await?;
        let mut dispatches = Vec::new();
        for claim in claims {
            dispatches.extend(attempts::claim_attempts(&mut tx, claim).await?);
        }
        tx.commit().await?;
        Ok(dispatches)
    }

    async fn take_due_handoffs(&self, at: Timestamp, lease_until: Timestamp, limit: u32) -> StoreResult<Vec<Dispatch>> {
        let mut tx = self.pool.begin().await?;
        let dispatches = attempts::take_due_handoffs(&mut tx, at, lease_until, limit).await?;
        tx.commit().await?;
        Ok(dispatches)
    }

    async fn record_handoffs(&self, results: Vec<HandoffResult>) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        attempts::record_handoffs(&mut tx, results).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn apply_events(&self, events: Vec<AttemptEvent>, at: Timestamp, retry: RetrySettings) -> StoreResult<Vec<EventOutcome>> {
        self.apply_events_of(None, events, at, retry).await
    }

    async fn expired_attempts(&self, at: Timestamp, limit: u32) -> StoreResult<Vec<ExpiredAttempt>> {
        attempts::expired_attempts(&mut *self.pool.acquire().await?, at, limit).await
    }

    async fn advance_iteration(&self, campaign_id: i64, at: Timestamp) -> StoreResult<Option<CampaignStatus>> {
        let mut tx = self.pool.begin().await?;
        let status = attempts::advance_iteration(&mut tx, campaign_id, at).await?;
        tx.commit().await?;
        Ok(status)
    }

    async fn waiting_contacts(&self) -> StoreResult<Vec<(CampaignStatus, i64)>> {
        attempts::waiting_contacts(&mut *self.pool.acquire().await?).await
    }

    /// Nothing: other live processes hold leases on this database too, and voiding theirs would
    /// send their handoffs twice. A dead process's leases run out (`--lease`) and are then taken
    /// over by whichever process takes due handoffs first.
    async fn release_leases(&self, _at: Timestamp) -> StoreResult<u64> {
        Ok(0)
    }
}

#[async_trait]
impl CallbackStore for PostgresStore {
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
        let row = sqlx::query("SELECT * FROM integrations WHERE id = $1").bind(integration_id).fetch_optional(&self.pool).await?;
        row.as_ref().map(integration_from_row).transpose()
    }

    async fn record_inbound(&self, integration_id: &str, texts: Vec<InboundMessage>) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        for text in &texts {
            sqlx::query("INSERT INTO inbound_messages (integration_id, sender, body, attempt_id, received_at) VALUES ($1, $2, $3, $4, $5)")
                .bind(integration_id)
                .bind(&text.sender)
                .bind(&text.body)
                .bind(&text.attempt_id)
                .bind(super::to_millis(text.received_at))
                .execute(&mut *tx)
                .await?;
        }
        let org: Option<OrgId> =
            sqlx::query_scalar("SELECT org_id FROM integrations WHERE id = $1").bind(integration_id).fetch_optional(&mut *tx).await?;
        if let Some(org) = org {
            let keywords = keywords_or_default(dnc::keywords(&mut tx, org).await?);
            for text in &texts {
                let opted_out = opt_out_entries([(text.sender.as_str(), text.body.as_str())], &keywords);
                if !opted_out.is_empty() {
                    dnc::add_entries(&mut tx, org, &opted_out, &DncOrigin::from(DncSource::OptOutReply), text.received_at).await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn hold_events(&self, integration_id: &str, held: Vec<HeldEvent>) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        attempts::hold_events(&mut tx, integration_id, held).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn attempts_by_provider_id(&self, integration_id: &str, provider_ids: &[String]) -> StoreResult<HashMap<String, String>> {
        let rows = sqlx::query(
            "SELECT a.provider_id, a.id FROM attempts a JOIN campaigns c ON c.id = a.campaign_id \
             WHERE a.provider_id = ANY($1) AND c.integration_id = $2",
        )
        .bind(provider_ids)
        .bind(integration_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|row| Ok((row.try_get("provider_id")?, row.try_get("id")?))).collect()
    }
}

#[async_trait]
impl RateLimitStore for PostgresStore {
    fn keeps_rate_limits(&self) -> bool {
        true
    }

    async fn take_rate_limit(&self, key: &str, now: i64, interval: i64, tolerance: i64) -> StoreResult<RateLimitStep> {
        // One statement: the upsert admits when the stored time minus the tolerance is not after
        // now (a missing row counts as now), and the outer select sees the row as it was before,
        // which is what a refusal reports.
        let row = sqlx::query(
            "WITH step AS (
                 INSERT INTO rate_limits (key, tat) VALUES ($1, $2 + $3)
                 ON CONFLICT (key) DO UPDATE SET tat = GREATEST(rate_limits.tat, $2) + $3
                 WHERE rate_limits.tat - $4 <= $2
                 RETURNING tat
             )
             SELECT (SELECT tat FROM step) AS admitted, (SELECT tat FROM rate_limits WHERE key = $1) AS current",
        )
        .bind(key)
        .bind(now)
        .bind(interval)
        .bind(tolerance)
        .fetch_one(&self.pool)
        .await?;
        let admitted: Option<i64> = row.try_get("admitted")?;
        let current: Option<i64> = row.try_get("current")?;
        match (admitted, current) {
            (Some(tat), _) => Ok(RateLimitStep::Admitted(tat)),
            (None, Some(tat)) => Ok(RateLimitStep::Refused(tat)),
            // Refused by a row another process inserted after this statement's snapshot was taken:
            // that row is at most one interval past the tolerance.
            (None, None) => Ok(RateLimitStep::Refused(now + tolerance + interval)),
        }
    }

    async fn purge_rate_limits(&self, now: i64) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM rate_limits WHERE tat < $1").bind(now).execute(&self.pool).await?;
        Ok(done.rows_affected())
    }
}

/// Looks up the agent and its integration (one query) and inserts the campaign.
async fn insert_campaign(
    conn: &mut PgConnection,
    org: OrgId,
    new: NewCampaign,
    settings_json: String,
    at: Timestamp,
) -> StoreResult<CreateCampaignOutcome> {
    let row = sqlx::query(
        "SELECT a.name AS agent_name, i.channel, i.agent_id AS integration_agent FROM agents a \
         LEFT JOIN integrations i ON i.id = $1 AND i.org_id = a.org_id WHERE a.org_id = $2 AND a.id = $3",
    )
    .bind(&new.integration_id)
    .bind(org)
    .bind(new.agent_id.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    let found = row.map(|row| Ok::<_, StoreError>((row.text("agent_name")?, integration_ref(&row)?))).transpose()?;
    let agent_name = match new.check_references(found.as_ref().map(|(name, _)| name.as_str()), found.as_ref().and_then(|(_, i)| *i)) {
        Ok(name) => name.to_owned(),
        Err(refused) => return Ok(CreateCampaignOutcome::Refused(refused)),
    };
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO campaigns (org_id, agent_id, integration_id, channel, status, created_at, settings) \
         VALUES ($1, $2, $3, $4, 'pending', $5, $6) RETURNING id",
    )
    .bind(org)
    .bind(new.agent_id.to_string())
    .bind(&new.integration_id)
    .bind(new.channel.as_str())
    .bind(to_seconds(at))
    .bind(settings_json)
    .fetch_one(&mut *conn)
    .await?;
    Ok(CreateCampaignOutcome::Created(Box::new(new.create(id, agent_name, at))))
}

pub(super) async fn update_campaign(conn: &mut PgConnection, campaign: &Campaign) -> StoreResult<()> {
    sqlx::query(
        "UPDATE campaigns SET status = $1, archived = $2, started_at = $3, ended_at = $4, settings = $5, current_iteration = $6, \
         last_iteration_at = $7, next_cycle_at = $8, paused_in_cooldown = $9 WHERE id = $10",
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
async fn reload_campaign(conn: &mut PgConnection, campaign: Campaign) -> StoreResult<Campaign> {
    let row = sqlx::query(concat!(select_campaigns!(), " WHERE c.id = $1")).bind(campaign.id).fetch_one(&mut *conn).await?;
    Ok(Campaign { counters: campaign_from_row(&row)?.counters, ..campaign })
}

/// Stores the rendered response under its key, inside the caller's transaction.
async fn record_response<T>(conn: &mut PgConnection, record: Option<ResponseRecorder<T>>, value: &T) -> StoreResult<()> {
    let Some(recorder) = record else { return Ok(()) };
    match (recorder.render)(value) {
        Some(response) => insert_record(conn, &recorder.claim, &response).await,
        // A repeat whose own response would not be kept still gets the first one's.
        None if holds_live_record(conn, &recorder.claim).await? => Err(StoreError::IdempotencyKeyTaken),
        None => Ok(()),
    }
}

async fn holds_live_record(conn: &mut PgConnection, claim: &IdempotencyClaim) -> StoreResult<bool> {
    let found = sqlx::query("SELECT 1 FROM idempotency_keys WHERE org_id = $1 AND key = $2 AND created_at >= $3")
        .bind(claim.org_id)
        .bind(&claim.key)
        .bind(to_seconds(claim.expired_before))
        .fetch_optional(&mut *conn)
        .await?;
    Ok(found.is_some())
}

/// Stores a response under its key, replacing an expired record with the same key. A live record
/// means the request is a repeat (or a duplicate on another process committed first): the
/// caller's transaction must roll back, so that its writes are never kept twice.
async fn insert_record(conn: &mut PgConnection, claim: &IdempotencyClaim, response: &StoredResponse) -> StoreResult<()> {
    let done = sqlx::query(
        "INSERT INTO idempotency_keys (org_id, key, fingerprint, created_at, status, body) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (org_id, key) DO UPDATE SET fingerprint = excluded.fingerprint, created_at = excluded.created_at, \
         status = excluded.status, body = excluded.body WHERE idempotency_keys.created_at < $7",
    )
    .bind(claim.org_id)
    .bind(&claim.key)
    .bind(claim.fingerprint.as_slice())
    .bind(to_seconds(claim.at))
    .bind(i64::from(response.status))
    .bind(pack_body(&response.body))
    .bind(to_seconds(claim.expired_before))
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::IdempotencyKeyTaken);
    }
    Ok(())
}

/// Creates the organization when it is new, then the key.
async fn insert_key(conn: &mut PgConnection, organization: &str, prefix: &str, hash: &str, at: Timestamp) -> StoreResult<()> {
    sqlx::query("INSERT INTO organizations (name, created_at, public_id) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING")
        .bind(organization)
        .bind(to_seconds(at))
        .bind(new_project_id())
        .execute(&mut *conn)
        .await?;
    let org: OrgId = sqlx::query_scalar("SELECT id FROM organizations WHERE name = $1").bind(organization).fetch_one(&mut *conn).await?;
    insert_org_key(conn, org, prefix, hash, at).await
}

/// Stores a key of an existing organization: its prefix and hash, never the key itself. The
/// operator's CLI and the dashboard both create keys through here.
async fn insert_org_key(conn: &mut PgConnection, org: OrgId, prefix: &str, hash: &str, at: Timestamp) -> StoreResult<()> {
    sqlx::query("INSERT INTO api_keys (org_id, prefix, key_hash, created_at) VALUES ($1, $2, $3, $4)")
        .bind(org)
        .bind(prefix)
        .bind(hash)
        .bind(to_seconds(at))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Revokes the key with this prefix (only `org`'s, when given); a key revoked already keeps its
/// first revocation's time. False when there is no such key.
async fn revoke_key(conn: &mut PgConnection, org: Option<OrgId>, prefix: &str, at: Timestamp) -> StoreResult<bool> {
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM api_keys WHERE prefix = $1 AND ($2::bigint IS NULL OR org_id = $2))")
            .bind(prefix)
            .bind(org)
            .fetch_one(&mut *conn)
            .await?;
    sqlx::query("UPDATE api_keys SET revoked_at = $3 WHERE prefix = $1 AND ($2::bigint IS NULL OR org_id = $2) AND revoked_at IS NULL")
        .bind(prefix)
        .bind(org)
        .bind(to_seconds(at))
        .execute(&mut *conn)
        .await?;
    Ok(exists)
}
