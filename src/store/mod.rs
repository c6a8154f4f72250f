//! Persistence, so that SQLite (embedded) and PostgreSQL (scale-out) serve the same API and run the
//! same tests. The store is split by who uses it: [`TenantStore`] for the API's handlers (every
//! method takes the organization first: there is no un-scoped way for a handler to reach a
//! campaign, agent or integration), [`KeyStore`] for authentication, [`KeyAdmin`] for the CLI,
//! [`IdempotencyStore`], [`EngineStore`] for the engine, [`CallbackStore`] for provider events
//! (scoped by the integration that signs them), [`WebhookStore`] for the API's webhook
//! subscriptions, [`DeliveryStore`] for the webhook delivery worker, [`DncStore`] for the
//! do-not-contact list, [`RateLimitStore`] and [`Health`]. Each consumer
//! holds only its part; [`Store`] is their sum, for the code that wires a process together.

pub mod postgres;
mod shared;
pub mod sqlite;

use std::collections::HashMap;
use std::panic::Location;
use std::sync::Arc;

use async_trait::async_trait;
use jiff::Timestamp;
use uuid::Uuid;

use crate::domain::agent::Agent;
use crate::domain::attempt::{AnsweredBy, AttemptEvent, AttemptStatus, RetrySettings, TranscriptEntry};
use crate::domain::campaign::{
    Campaign, CampaignError, CampaignStatus, Channel, ContactStatus, LifecycleError, NewCampaign, ReferenceError,
};
use crate::domain::contact::ContactSearch;
pub use crate::domain::contact::{BatchItem, ItemResult, ItemStatus};
use crate::domain::contact::{Contact, IfDuplicate, PhoneNumber};
use crate::domain::dnc::{DncAction, DncChannel, DncItem, DncResult, DncSource};
use crate::domain::ids::NewApiKey;
use crate::domain::integration::{Integration, NewIntegration, ProviderConfig};
pub use crate::domain::outcome::EventOutcome;
use crate::domain::timezone::TimeZone;
use crate::domain::webhook::{DeliveryStatus, EventType, Webhook, WebhookChange};

pub type OrgId = i64;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error at {location}: {source}")]
    Database { source: sqlx::Error, location: &'static Location<'static> },
    #[error("database error at {location}: {source}")]
    Sqlite { source: rusqlite::Error, location: &'static Location<'static> },
    #[error("database migration failed: {0}")]
    Migration(String),
    #[error("stored data could not be read: {0}")]
    Corrupt(String),
    #[error("the transaction could not be committed")]
    CommitFailed,
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://USER@HOST/DATABASE")]
    UnsupportedUrl(String),
    #[error("the store is shutting down")]
    Unavailable,
    #[error("this store does not support {0}")]
    Unsupported(&'static str),
    /// A live record already holds the request's Idempotency-Key (the request is a repeat, or a
    /// duplicate that ran at the same time on another process committed first): this request's
    /// writes were rolled back.
    #[error("the Idempotency-Key was taken by a concurrent request")]
    IdempotencyKeyTaken,
}

impl From<sqlx::Error> for StoreError {
    #[track_caller]
    fn from(source: sqlx::Error) -> Self {
        StoreError::Database { source, location: Location::caller() }
    }
}

impl From<rusqlite::Error> for StoreError {
    #[track_caller]
    fn from(source: rusqlite::Error) -> Self {
        StoreError::Sqlite { source, location: Location::caller() }
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(err: serde_json::Error) -> Self {
        StoreError::Corrupt(err.to_string())
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// What authentication needs to know about a key.
#[derive(Debug, Clone)]
pub struct ApiKeyRecord {
    pub id: i64,
    pub org_id: OrgId,
    pub hash: String,
    pub revoked: bool,
}

/// A key as `outbound keys list` shows it (never the key itself).
#[derive(Debug, Clone)]
pub struct ApiKeyInfo {
    pub prefix: String,
    pub organization: String,
    /// The organization's public id, `project_id` in webhook events.
    pub project_id: String,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

/// A position in the newest-first campaign list: `(created_at, id)` of an edge item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CampaignCursor {
    pub direction: PageDirection,
    pub created_at: i64,
    pub id: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageDirection {
    /// Items older than the cursor (the next page).
    After,
    /// Items newer than the cursor (the previous page).
    Before,
}

#[derive(Debug, Clone, Default)]
pub struct CampaignFilter {
    pub agent_id: Option<Uuid>,
    pub status: Option<CampaignStatus>,
    pub channel: Option<Channel>,
    pub created_after: Option<Timestamp>,
    pub created_before: Option<Timestamp>,
    pub started_after: Option<Timestamp>,
    pub started_before: Option<Timestamp>,
    pub ended_after: Option<Timestamp>,
    pub ended_before: Option<Timestamp>,
    pub include_archived: bool,
    /// Only campaigns whose name contains this text, ignoring case (the dashboard's search).
    pub name_contains: Option<String>,
}

#[derive(Debug, Clone)]
pub struct CampaignPage {
    pub total_count: i64,
    /// Newest first.
    pub campaigns: Vec<Campaign>,
    pub has_next: bool,
    pub has_previous: bool,
}

/// A rule of the domain refused a change.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    Campaign(CampaignError),
    Lifecycle(LifecycleError),
}

/// A change applied to a campaign inside the store's transaction (read, decide, write).
pub type CampaignChange = Box<dyn FnOnce(&mut Campaign) -> Result<(), Refusal> + Send>;

#[derive(Debug)]
pub enum CreateCampaignOutcome {
    Created(Box<Campaign>),
    /// The agent or integration named cannot take the campaign.
    Refused(ReferenceError),
}

pub enum Modified {
    Done(Box<Campaign>),
    Refused(Refusal),
    NotFound,
}

/// The database itself: whether it answers, and whether anything changed since a read.
#[async_trait]
pub trait Health: Send + Sync + 'static {
    /// Answers once the database can serve requests.
    async fn ping(&self) -> StoreResult<()>;

    /// A number that stays the same until something is committed to the database, by this
    /// process or any other, so that what was read under it may be served again while it holds.
    /// `None` when the store cannot tell without a round trip (PostgreSQL): then nothing read is
    /// reused.
    fn data_version(&self) -> StoreResult<Option<u64>> {
        Ok(None)
    }
}

/// What authentication reads and writes of an API key, found by the key's own prefix.
#[async_trait]
pub trait KeyStore: Send + Sync + 'static {
    async fn find_api_key(&self, prefix: &str) -> StoreResult<Option<ApiKeyRecord>>;
    async fn touch_api_key(&self, key_id: i64, at: Timestamp) -> StoreResult<()>;
}

/// Key administration, for the operator's CLI (never reachable from the HTTP API).
#[async_trait]
pub trait KeyAdmin: Send + Sync + 'static {
    /// Creates the organization when it is new, then the key.
    async fn create_api_key(&self, organization: &str, key: &NewApiKey, at: Timestamp) -> StoreResult<()>;
    /// Creates organization and key only when the database holds no organization yet.
    async fn bootstrap_organization(&self, organization: &str, key: &NewApiKey, at: Timestamp) -> StoreResult<bool>;
    async fn list_api_keys(&self, organization: Option<&str>) -> StoreResult<Vec<ApiKeyInfo>>;
    /// Returns false when no key has that prefix.
    async fn revoke_api_key(&self, prefix: &str, at: Timestamp) -> StoreResult<bool>;
}

/// One organization's agents, integrations, campaigns, contacts and attempts: every method takes
/// the organization first, so a handler holding only this cannot read another tenant's rows.
#[async_trait]
pub trait TenantStore: Send + Sync + 'static {
    async fn create_agent(&self, org: OrgId, name: &str, at: Timestamp, record: Option<ResponseRecorder<Agent>>) -> StoreResult<Agent>;
    async fn get_agent(&self, org: OrgId, id: Uuid) -> StoreResult<Option<Agent>>;
    async fn list_agents(&self, org: OrgId) -> StoreResult<Vec<Agent>>;

    async fn create_integration(
        &self,
        org: OrgId,
        new: NewIntegration,
        at: Timestamp,
        record: Option<ResponseRecorder<Integration>>,
    ) -> StoreResult<Integration>;
    async fn get_integration(&self, org: OrgId, id: &str) -> StoreResult<Option<Integration>>;
    async fn list_integrations(&self, org: OrgId) -> StoreResult<Vec<Integration>>;
    /// Replaces the integration's config (credentials already sealed) and resets its health;
    /// `None` when not found.
    async fn update_integration(&self, org: OrgId, id: &str, config: ProviderConfig) -> StoreResult<Option<Integration>>;

    /// Checks the agent and integration and stores the campaign, in one transaction.
    async fn create_campaign(
        &self,
        org: OrgId,
        new: NewCampaign,
        at: Timestamp,
        record: Option<ResponseRecorder<CreateCampaignOutcome>>,
    ) -> StoreResult<CreateCampaignOutcome>;
    async fn get_campaign(&self, org: OrgId, id: i64) -> StoreResult<Option<Campaign>>;
    async fn list_campaigns(
        &self,
        org: OrgId,
        filter: &CampaignFilter,
        cursor: Option<CampaignCursor>,
        page_size: u32,
    ) -> StoreResult<CampaignPage>;
    /// Reads the campaign, applies `change` and writes the result, atomically.
    async fn modify_campaign(
        &self,
        org: OrgId,
        id: i64,
        at: Timestamp,
        change: CampaignChange,
        record: Option<ResponseRecorder<Modified>>,
    ) -> StoreResult<Modified>;

    /// Adds a batch in one transaction: every accepted item is stored, or none is.
    async fn add_contacts(
        &self,
        org: OrgId,
        campaign_id: i64,
        items: Vec<BatchItem>,
        if_duplicate: IfDuplicate,
        at: Timestamp,
        record: Option<ResponseRecorder<AddContactsOutcome>>,
    ) -> StoreResult<AddContactsOutcome>;
    /// A page of a campaign's contacts, oldest first; `None` when the campaign is not found.
    async fn list_contacts(
        &self,
        org: OrgId,
        campaign_id: i64,
        status: Option<ContactStatus>,
        page_size: u32,
        page_index: u32,
    ) -> StoreResult<Option<ContactPage>>;
    async fn get_contact(&self, org: OrgId, campaign_id: i64, contact_id: i64) -> StoreResult<ContactLookup>;
    async fn delete_contact(&self, org: OrgId, campaign_id: i64, contact_id: i64) -> StoreResult<DeleteOutcome>;
    /// What a plan preview of the campaign at `at` is made of (§12.3); `None` when the campaign is
    /// not the organization's. Reads counters and indexes only, never every contact.
    async fn plan_counts(
        &self,
        org: OrgId,
        campaign_id: i64,
        at: Timestamp,
    ) -> StoreResult<Option<(Campaign, crate::domain::plan::PlanCounts)>>;
    /// The campaign's contacts in `queue` per zone they are called in (§12.2), from the counts
    /// kept with every change (no scan): `None` stands for the campaign's own zone. Every zone its
    /// contacts have had is listed, at 0 when none is queued; empty for a campaign not found.
    async fn zone_queue_counts(&self, org: OrgId, campaign_id: i64) -> StoreResult<Vec<(Option<String>, i64)>>;

    /// A page of a campaign's attempts, oldest first; `None` when the campaign is not found.
    async fn list_attempts(&self, org: OrgId, campaign_id: i64, query: &AttemptQuery) -> StoreResult<Option<AttemptPage>>;
}

/// Responses kept under Idempotency-Keys (contract §7); each record belongs to its organization.
#[async_trait]
pub trait IdempotencyStore: Send + Sync + 'static {
    /// The response kept under `key`, unless there is none or it was created before `expired_before`.
    async fn find_idempotency_record(&self, org: OrgId, key: &str, expired_before: Timestamp) -> StoreResult<Option<IdempotencyRecord>>;
    /// Keeps the response of a request that wrote nothing else.
    async fn complete_idempotency_key(&self, claim: &IdempotencyClaim, response: StoredResponse) -> StoreResult<()>;
    /// Deletes keys created before `created_before`; returns how many.
    async fn purge_idempotency_keys(&self, created_before: Timestamp) -> StoreResult<u64>;
}

/// An integration found broken, by a hand-off (the engine) or a callback (the API).
#[async_trait]
pub trait IntegrationHealthStore: Send + Sync + 'static {
    /// Stops the integration's dispatch: its health becomes `failing` for `reason` (kept from
    /// the first failure until its config is patched).
    async fn mark_integration_failing(&self, integration_id: &str, reason: &str, at: Timestamp) -> StoreResult<()>;
}

/// What the engine reads and writes (contract §5): every organization's running campaigns.
#[async_trait]
pub trait EngineStore: IntegrationHealthStore {
    /// Campaigns that are `active` or in `cooldown` and not archived, with what dispatch needs.
    async fn running_campaigns(&self) -> StoreResult<Vec<RunningCampaign>>;
    /// One campaign as the engine sees it, whatever its status (re-sends of a paused campaign).
    async fn running_campaign(&self, campaign_id: i64) -> StoreResult<Option<RunningCampaign>>;
    /// Claims the next contacts of each campaign named and records an attempt for each, in one
    /// transaction that re-checks every campaign's status and budgets.
    async fn claim_attempts(&self, claims: Vec<ClaimRequest>) -> StoreResult<Vec<Dispatch>>;
    /// Takes the lease on attempts whose handoff is due (a re-send after a crash or a provider
    /// error) and returns them, with the same attempt ids.
    async fn take_due_handoffs(&self, at: Timestamp, lease_until: Timestamp, limit: u32) -> StoreResult<Vec<Dispatch>>;
    /// The numbers among `numbers` that the do-not-contact list of the campaign's organization
    /// suppresses on the campaign's channel, read just before they are handed off (§12.1).
    async fn suppressed_numbers(&self, campaign_id: i64, numbers: Vec<String>) -> StoreResult<std::collections::HashSet<String>>;
    /// Records what providers said to handoffs: accepted, or to be re-sent later.
    async fn record_handoffs(&self, results: Vec<HandoffResult>) -> StoreResult<()>;
    /// Applies events the engine itself decided (timeouts, refused handoffs, the simulator's
    /// outcomes), each idempotently.
    async fn apply_events(&self, events: Vec<AttemptEvent>, at: Timestamp, retry: RetrySettings) -> StoreResult<Vec<EventOutcome>>;
    /// Open attempts whose deadline has passed, with what closing them needs.
    async fn expired_attempts(&self, at: Timestamp, limit: u32) -> StoreResult<Vec<ExpiredAttempt>>;
    /// Ends the campaign's iteration when no contact is left to attempt, or starts the next one
    /// when its time has come. Returns the campaign's status afterwards when it changed.
    async fn advance_iteration(&self, campaign_id: i64, at: Timestamp) -> StoreResult<Option<CampaignStatus>>;
    /// Contacts waiting for an attempt (`queue` or `retrying`) in unarchived campaigns, per
    /// campaign status, read from the counts kept per campaign (no scan of the contacts).
    async fn waiting_contacts(&self) -> StoreResult<Vec<(CampaignStatus, i64)>>;
    /// On start-up, makes due now the unconfirmed handoffs whose leases died with a previous run
    /// of this process, where the store can tell them apart from live ones. Returns how many.
    async fn release_leases(&self, at: Timestamp) -> StoreResult<u64>;
}

/// Provider events, which carry no API key: they are scoped by the integration whose secret
/// signs them, and touch only that integration's attempts.
#[async_trait]
pub trait CallbackStore: IntegrationHealthStore {
    /// The integration callbacks are addressed to (any organization's: the signature scopes them).
    async fn callback_integration(&self, integration_id: &str) -> StoreResult<Option<Integration>>;
    /// Keeps texts contacts sent back through the integration (the opt-out rule reads them).
    async fn record_inbound(&self, integration_id: &str, texts: Vec<InboundMessage>) -> StoreResult<()>;
    /// The integration's attempts known by these provider ids, as provider id → attempt id.
    async fn attempts_by_provider_id(&self, integration_id: &str, provider_ids: &[String]) -> StoreResult<HashMap<String, String>>;
    /// Applies events of the integration's attempts, each idempotently; an attempt of another
    /// integration is [`EventOutcome::UnknownAttempt`].
    async fn apply_integration_events(
        &self,
        integration_id: &str,
        events: Vec<AttemptEvent>,
        at: Timestamp,
        retry: RetrySettings,
    ) -> StoreResult<Vec<EventOutcome>>;
    /// Keeps provisional outcomes with the integration's open attempts and brings each one's
    /// deadline and due time (the expiry scan reads both) forward to its `until`; the engine
    /// applies it then unless a final event came
    /// (PROVIDERS.md §4, §5). A later provisional outcome replaces an earlier one.
    async fn hold_events(&self, integration_id: &str, held: Vec<HeldEvent>) -> StoreResult<()>;
}

/// Who changed the do-not-contact list: the source, and for the API the prefix of the key used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DncOrigin {
    pub source: DncSource,
    pub key_prefix: Option<String>,
}

impl DncOrigin {
    /// A change from `source` without a key (everything but the API).
    pub fn from(source: DncSource) -> Self {
        DncOrigin { source, key_prefix: None }
    }
}

/// An entry of the do-not-contact list, as listed.
#[derive(Debug, Clone, PartialEq)]
pub struct DncEntry {
    pub contact: PhoneNumber,
    pub channel: DncChannel,
    pub reason: Option<String>,
    pub source: DncSource,
    pub created_at: Timestamp,
}

/// Which entries a list shows: those of one number, of one stored channel, or both.
#[derive(Debug, Clone, Default)]
pub struct DncFilter {
    pub contact: Option<PhoneNumber>,
    pub channel: Option<DncChannel>,
}

#[derive(Debug, Clone)]
pub struct DncPage {
    pub total_count: i64,
    /// Newest first.
    pub entries: Vec<DncEntry>,
}

/// One change of a number's entries.
#[derive(Debug, Clone, PartialEq)]
pub struct DncChange {
    pub at: Timestamp,
    pub action: DncAction,
    pub channel: DncChannel,
    pub reason: Option<String>,
    pub source: DncSource,
    pub key_prefix: Option<String>,
}

/// One organization's do-not-contact list and opt-out keywords (contract §12.1): every method
/// takes the organization first, as in [`TenantStore`].
#[async_trait]
pub trait DncStore: Send + Sync + 'static {
    /// Adds a batch in one transaction: each valid entry new to the list (number and channel) is
    /// stored with an `added` history row; one the list holds changes nothing. Results in the
    /// items' order (see [`crate::domain::dnc::resolve_batch`]).
    async fn add_dnc_entries(
        &self,
        org: OrgId,
        items: Vec<DncItem>,
        origin: DncOrigin,
        at: Timestamp,
        record: Option<ResponseRecorder<Vec<DncResult>>>,
    ) -> StoreResult<Vec<DncResult>>;
    /// A page of the list, newest first (by id), with the count of entries that match.
    async fn list_dnc_entries(&self, org: OrgId, filter: &DncFilter, page_size: u32, page_index: u32) -> StoreResult<DncPage>;
    /// Removes the number's entry on `channel`, or every entry of the number for
    /// [`DncChannel::All`], each with a `removed` history row; returns the entries removed.
    async fn remove_dnc_entries(
        &self,
        org: OrgId,
        contact: &PhoneNumber,
        channel: DncChannel,
        origin: DncOrigin,
        at: Timestamp,
    ) -> StoreResult<Vec<DncEntry>>;
    /// Every change of the number's entries, oldest first.
    async fn dnc_history(&self, org: OrgId, contact: &PhoneNumber) -> StoreResult<Vec<DncChange>>;
    /// The organization's opt-out keywords; `None` when it keeps the defaults.
    async fn opt_out_keywords(&self, org: OrgId) -> StoreResult<Option<Vec<String>>>;
    async fn set_opt_out_keywords(&self, org: OrgId, keywords: Vec<String>) -> StoreResult<()>;
    /// The timezone of the organization's first campaign, whose region reads numbers written
    /// without `+` (see [`crate::domain::dnc::default_region`]).
    async fn first_campaign_timezone(&self, org: OrgId) -> StoreResult<Option<String>>;
    /// The organization with this name (the operator's `outbound dnc import --org`).
    async fn organization_named(&self, name: &str) -> StoreResult<Option<OrgId>>;
}

/// A provider's provisional outcome of an attempt, final at `until` unless a final event comes.
#[derive(Debug, Clone)]
pub struct HeldEvent {
    pub event: AttemptEvent,
    pub until: Timestamp,
}

/// An open attempt past its deadline.
#[derive(Debug, Clone)]
pub struct ExpiredAttempt {
    pub attempt_id: String,
    /// The provider's id of the call, when it was handed off and answered with one.
    pub provider_id: Option<String>,
    /// The provider's provisional outcome, when one was held (see [`CallbackStore::hold_events`]).
    pub held: Option<AttemptEvent>,
    pub integration_id: String,
    /// The integration's provider config, to ask the provider (Vapi) what became of the call.
    pub provider: ProviderConfig,
}

/// One organization's webhook subscriptions and their deliveries log (§8.1, §8.2): every method
/// takes the organization first, as in [`TenantStore`].
#[async_trait]
pub trait WebhookStore: Send + Sync + 'static {
    async fn create_webhook(&self, org: OrgId, webhook: Webhook, record: Option<ResponseRecorder<Webhook>>) -> StoreResult<Webhook>;
    async fn get_webhook(&self, org: OrgId, id: &str) -> StoreResult<Option<Webhook>>;
    /// Newest first.
    async fn list_webhooks(&self, org: OrgId, page_size: u32, page_index: u32) -> StoreResult<WebhookPage>;
    async fn update_webhook(&self, org: OrgId, id: &str, change: WebhookChange, at: Timestamp) -> StoreResult<Option<Webhook>>;
    /// Deletes the subscription and its deliveries (pending ones are dropped); false when not found.
    async fn delete_webhook(&self, org: OrgId, id: &str) -> StoreResult<bool>;
    /// Gives the subscription a new secret for the events created from `at` on.
    async fn rotate_webhook_secret(
        &self,
        org: OrgId,
        id: &str,
        secret: String,
        at: Timestamp,
        record: Option<ResponseRecorder<Option<Webhook>>>,
    ) -> StoreResult<Option<Webhook>>;
    /// Queues a `webhook.test` event to this subscription only; its event id, or `None` when
    /// there is no such subscription.
    async fn queue_test_event(
        &self,
        org: OrgId,
        id: &str,
        at: Timestamp,
        record: Option<ResponseRecorder<Option<String>>>,
    ) -> StoreResult<Option<String>>;
    /// A page of a subscription's deliveries, newest first; `None` when the subscription is not found.
    async fn list_deliveries(
        &self,
        org: OrgId,
        webhook_id: &str,
        status: Option<DeliveryStatus>,
        page_size: u32,
        page_index: u32,
    ) -> StoreResult<Option<DeliveryPage>>;
    /// Makes a failed delivery due at `at` for one more attempt.
    async fn retry_delivery(
        &self,
        org: OrgId,
        webhook_id: &str,
        delivery_id: i64,
        at: Timestamp,
        record: Option<ResponseRecorder<RetryOutcome>>,
    ) -> StoreResult<RetryOutcome>;
}

/// Webhook administration, for the operator's CLI (never reachable from the HTTP API).
#[async_trait]
pub trait WebhookAdmin: Send + Sync + 'static {
    /// Every organization's subscriptions (or one organization's), with their deliveries pending and failed.
    async fn webhook_overview(&self, organization: Option<&str>) -> StoreResult<Vec<WebhookSummary>>;
    /// Makes a subscription's failed deliveries (or the one named) due at once, for one more
    /// attempt each; returns how many.
    async fn retry_failed_deliveries(&self, webhook_id: &str, delivery_id: Option<i64>) -> StoreResult<u64>;
}

/// A subscription as `outbound webhooks list` shows it.
#[derive(Debug, Clone)]
pub struct WebhookSummary {
    pub webhook: Webhook,
    pub organization: String,
    pub pending: i64,
    pub failed: i64,
}

/// What the webhook delivery worker reads and writes: every organization's pending deliveries.
#[async_trait]
pub trait DeliveryStore: Send + Sync + 'static {
    /// Takes the lease of subscriptions with deliveries due (those no other live process holds,
    /// and not in `busy`), renews those it holds, and takes up to `limit` due deliveries of each.
    async fn take_deliveries(&self, take: DeliveryTake) -> StoreResult<Vec<DueDelivery>>;
    /// What the events of these attempts are rendered from, by attempt id, for those that exist.
    async fn attempt_reports(&self, attempt_ids: Vec<String>) -> StoreResult<std::collections::HashMap<String, AttemptReport>>;
    /// Records what delivery attempts came to.
    async fn record_deliveries(&self, results: Vec<DeliveryResult>) -> StoreResult<()>;
    /// On start-up, frees the leases a previous run of this process left, where the store can tell
    /// them apart from live ones (SQLite; on PostgreSQL they wait for their leases to run out).
    async fn release_delivery_leases(&self) -> StoreResult<u64> {
        Ok(0)
    }
    /// Deletes delivered and failed deliveries of events that occurred before `before`.
    async fn purge_deliveries(&self, before: Timestamp) -> StoreResult<u64>;
    /// Deliveries pending, over every subscription.
    async fn delivery_backlog(&self) -> StoreResult<i64>;
}

/// A rate limit shared by every process on the database (contract §6).
#[async_trait]
pub trait RateLimitStore: Send + Sync + 'static {
    /// Whether this store keeps a rate limit shared by every process on its database. SQLite
    /// does not: one process owns a SQLite file, so its limit stays in that process.
    fn keeps_rate_limits(&self) -> bool {
        false
    }
    /// One GCRA step for a rate-limit key, atomically: with `now`, the emission `interval` and the
    /// `tolerance` (all nanoseconds), admits the request and stores the new theoretical arrival
    /// time, or refuses it and leaves the stored one. Keys are API key ids, not tenant data.
    async fn take_rate_limit(&self, _key: &str, _now: i64, _interval: i64, _tolerance: i64) -> StoreResult<RateLimitStep> {
        Err(StoreError::Unsupported("a shared rate limit"))
    }
    /// Deletes rate-limit keys that are full again (theoretical arrival time before `now`, in
    /// unix nanoseconds). Returns how many.
    async fn purge_rate_limits(&self, _now: i64) -> StoreResult<u64> {
        Ok(0)
    }
}

/// A dashboard sign-in session (contract §11), stored by the hash of its id only.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub id_hash: String,
    pub org_id: OrgId,
    /// The API key it was opened with: revoking that key ends the session.
    pub key_id: i64,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub org_id: OrgId,
    /// The organization's name, shown in the dashboard's header.
    pub organization: String,
    pub key_id: i64,
    pub created_at: Timestamp,
    pub last_seen_at: Timestamp,
    /// The key it was opened with has been revoked since.
    pub key_revoked: bool,
}

/// What the dashboard keeps besides the tenant's data: its sessions and the organization's own
/// API keys (scoped to one organization, unlike the operator's [`KeyAdmin`]).
#[async_trait]
pub trait DashboardStore: Send + Sync + 'static {
    async fn create_session(&self, session: &NewSession) -> StoreResult<()>;
    async fn find_session(&self, id_hash: &str) -> StoreResult<Option<SessionRecord>>;
    async fn touch_session(&self, id_hash: &str, at: Timestamp) -> StoreResult<()>;
    async fn delete_session(&self, id_hash: &str) -> StoreResult<()>;
    /// Removes sessions last seen before `idle_before` or created before `created_before`
    /// (strictly: one at a bound is kept); returns how many.
    async fn purge_sessions(&self, idle_before: Timestamp, created_before: Timestamp) -> StoreResult<u64>;
    /// The organization's keys, newest first.
    async fn list_org_api_keys(&self, org: OrgId) -> StoreResult<Vec<ApiKeyInfo>>;
    async fn create_org_api_key(&self, org: OrgId, key: &NewApiKey, at: Timestamp) -> StoreResult<()>;
    /// Revokes the organization's key with this prefix (and so its sessions); false when the
    /// organization has no such key.
    async fn revoke_org_api_key(&self, org: OrgId, prefix: &str, at: Timestamp) -> StoreResult<bool>;
    /// Attempts started per hour from `since` on, oldest first, hours without any left out
    /// (from the per-minute start counts the daily cap keeps, for 7 days).
    async fn attempts_per_hour(&self, org: OrgId, campaign_id: i64, since: Timestamp) -> StoreResult<Vec<(Timestamp, i64)>>;
    /// Up to `limit` of the campaign's contacts that match, in the order of the index searched
    /// (number, or name); `None` when the campaign is not the organization's.
    async fn search_contacts(&self, org: OrgId, campaign_id: i64, search: &ContactSearch, limit: u32) -> StoreResult<Option<Vec<Contact>>>;
}

/// Every part of a store, for the code that wires the process together (`server`, `cli`, the
/// engine's constructor); each consumer keeps only the part it needs.
pub trait Store:
    Health
    + KeyStore
    + KeyAdmin
    + TenantStore
    + IdempotencyStore
    + EngineStore
    + CallbackStore
    + WebhookStore
    + DeliveryStore
    + WebhookAdmin
    + RateLimitStore
    + DashboardStore
    + DncStore
{
}

impl<T> Store for T where
    T: Health
        + KeyStore
        + KeyAdmin
        + TenantStore
        + IdempotencyStore
        + EngineStore
        + CallbackStore
        + WebhookStore
        + DeliveryStore
        + WebhookAdmin
        + RateLimitStore
        + DashboardStore
        + DncStore
{
}

#[derive(Debug, Clone)]
pub struct WebhookPage {
    pub total_count: i64,
    pub webhooks: Vec<Webhook>,
}

/// A delivery as the deliveries log shows it.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: i64,
    pub event: EventHeader,
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<Timestamp>,
    pub delivered_at: Option<Timestamp>,
    pub body: EventSource,
}

/// What every delivery of an event shares.
#[derive(Debug, Clone)]
pub struct EventHeader {
    pub event_id: String,
    pub event_type: EventType,
    pub occurred_at: Timestamp,
    /// The organization's public id.
    pub project_id: String,
}

/// Where an event's body comes from.
#[derive(Debug, Clone)]
pub enum EventSource {
    /// Rendered when the event happened (campaign events, `webhook.test`).
    Stored(String),
    /// An attempt's event, rendered from the attempt each time it is sent (and when the log shows
    /// it): the attempt, the status the event reports and the one before; with the attempt's
    /// report when it was read (`None` when the attempt no longer exists).
    Attempt { subject: EventSubject, report: Option<Box<AttemptReport>> },
}

impl EventSource {
    /// The attempts these events are about, each once.
    pub fn subjects<'a>(sources: impl IntoIterator<Item = &'a EventSource>) -> Vec<String> {
        let mut ids: Vec<String> = sources
            .into_iter()
            .filter_map(|source| match source {
                EventSource::Attempt { subject, .. } => Some(subject.attempt_id.clone()),
                EventSource::Stored(_) => None,
            })
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Gives an attempt's event its report, from `reports` by attempt id.
    pub fn attach(&mut self, reports: &std::collections::HashMap<String, AttemptReport>) {
        if let EventSource::Attempt { subject, report } = self {
            *report = reports.get(&subject.attempt_id).cloned().map(Box::new);
        }
    }
}

/// The attempt an attempt's event is about.
#[derive(Debug, Clone)]
pub struct EventSubject {
    pub attempt_id: String,
    pub status: AttemptStatus,
    pub previous: Option<AttemptStatus>,
}

#[derive(Debug, Clone)]
pub struct DeliveryPage {
    pub total_count: i64,
    pub deliveries: Vec<Delivery>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RetryOutcome {
    Retried,
    NotFailed(DeliveryStatus),
    NotFound,
}

/// What one take of due deliveries may take, and for how long.
#[derive(Debug, Clone)]
pub struct DeliveryTake {
    /// The process taking them.
    pub owner: String,
    pub at: Timestamp,
    /// Until when the subscriptions it takes or holds are its own (renewed at every take; another
    /// process takes them over afterwards).
    pub subscriptions_until: Timestamp,
    /// Until when each delivery taken is its own: another process may send it again afterwards.
    pub deliveries_until: Timestamp,
    /// Deliveries of one subscription taken at most.
    pub limit: u32,
    /// Subscriptions not to take from now (their queue in this process is full).
    pub busy: Vec<String>,
}

/// A delivery taken to be sent.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    pub id: i64,
    pub webhook_id: String,
    pub url: String,
    /// The secret the event was created under.
    pub secret: String,
    pub event: EventHeader,
    pub attempts: i64,
    /// An attempt's event comes without its report: [`DeliveryStore::attempt_reports`] reads them.
    pub body: EventSource,
}

/// An attempt with what its webhook events show of its contact, campaign and agent.
#[derive(Debug, Clone)]
pub struct AttemptReport {
    pub attempt: Attempt,
    pub contact: Contact,
    pub campaign_id: i64,
    pub campaign_name: String,
    pub timezone: TimeZone,
    pub agent_id: Uuid,
    pub agent_name: String,
    /// The number the call was made from, when the provider has one of its own.
    pub caller_number: Option<String>,
}

/// What one delivery attempt came to.
#[derive(Debug, Clone)]
pub struct DeliveryResult {
    pub id: i64,
    pub outcome: DeliveryOutcome,
}

#[derive(Debug, Clone)]
pub enum DeliveryOutcome {
    Delivered {
        status_code: u16,
        at: Timestamp,
    },
    /// Failed; tried again at `retry_at`, or `failed` for good when `None`.
    Failed {
        status_code: Option<u16>,
        error: String,
        retry_at: Option<Timestamp>,
    },
    /// Not attempted: not due before `until` (a schedule whose first attempt waits).
    NotYet {
        until: Timestamp,
    },
}

/// What one GCRA step of [`RateLimitStore::take_rate_limit`] did, with the theoretical arrival time (unix
/// nanoseconds) it leaves behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimitStep {
    /// Admitted; the key's new theoretical arrival time.
    Admitted(i64),
    /// Refused; the key's unchanged theoretical arrival time.
    Refused(i64),
}

/// A campaign the engine dispatches for.
#[derive(Debug, Clone)]
pub struct RunningCampaign {
    pub campaign: Campaign,
    pub provider: ProviderConfig,
    pub secret: String,
    /// Attempts in flight (contacts `sending`).
    pub in_flight: i64,
    /// Contacts `queue`, `sending` or `retrying`: the iteration ends when none is left.
    pub unfinished: i64,
    pub queued: i64,
    /// The earliest retry time among `retrying` contacts.
    pub next_retry_at: Option<Timestamp>,
    /// The integration's health is `failing`: nothing is handed off (PROVIDERS.md §1).
    pub integration_failing: bool,
}

/// What one claim may take.
#[derive(Debug, Clone)]
pub struct ClaimRequest {
    pub campaign_id: i64,
    pub limit: u32,
    pub at: Timestamp,
    /// Until when the claimer holds the handoff (re-sent by anyone after that).
    pub lease_until: Timestamp,
    /// When the attempt is closed as failed without a final event.
    pub deadline: Timestamp,
    /// The integration's pace, shared with every claim on it (real providers only).
    pub pace: Option<Pace>,
}

/// An integration's `max_per_second`, applied by [`crate::domain::pacing::admit`] to its stored
/// state inside the claim's transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Pace {
    pub integration_id: String,
    pub per_second: f64,
}

/// A contact as a provider receives it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DispatchContact {
    pub id: i64,
    pub f_id: Option<String>,
    pub name: Option<String>,
    pub contact: PhoneNumber,
    pub context: Option<String>,
    pub extracted_data: serde_json::Map<String, serde_json::Value>,
    pub tags: Vec<String>,
}

/// A text a contact sent back, as kept.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundMessage {
    pub sender: String,
    pub body: String,
    /// The attempt it answers, when the contact quoted one of ours.
    pub attempt_id: Option<String>,
    pub received_at: Timestamp,
}

/// An attempt to hand to its provider.
#[derive(Debug, Clone, PartialEq)]
pub struct Dispatch {
    pub attempt_id: String,
    pub campaign_id: i64,
    pub iteration: i64,
    /// Handoffs already tried (0 on the first send).
    pub tries: i64,
    /// The previous hand-off's lease ran out with nobody knowing whether the provider got it (a
    /// crash): only a provider that dedupes on the attempt id may be sent it again.
    pub in_doubt: bool,
    pub template: Option<String>,
    pub contact: DispatchContact,
}

#[derive(Debug, Clone, PartialEq)]
pub enum HandoffResult {
    /// The provider has it (under `provider_id`); closed as failed if no final event comes by `deadline`.
    Accepted { attempt_id: String, provider_id: Option<String>, deadline: Timestamp },
    /// Handed off again at `at`, with a new `deadline` when given.
    RetryAt { attempt_id: String, at: Timestamp, deadline: Option<Timestamp> },
}

#[derive(Debug, Clone, Default)]
pub struct AttemptQuery {
    pub channel: Option<Channel>,
    pub status: Option<AttemptStatus>,
    pub answered_by: Option<AnsweredBy>,
    pub start: Option<Timestamp>,
    pub end: Option<Timestamp>,
    pub page_size: u32,
    pub page_index: u32,
}

#[derive(Debug, Clone)]
pub struct AttemptPage {
    pub total_count: i64,
    pub attempts: Vec<Attempt>,
}

/// A call or message as `/calls` and `/messages` show it.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub id: String,
    /// The provider's own id (Twilio's `sid`, a `wamid`), once it accepted the attempt.
    pub provider_id: Option<String>,
    pub status: AttemptStatus,
    pub answered_by: Option<AnsweredBy>,
    pub template: Option<String>,
    pub created_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
    pub sent_at: Option<Timestamp>,
    pub delivered_at: Option<Timestamp>,
    pub read_at: Option<Timestamp>,
    pub ended_by: Option<String>,
    pub ended_reason: Option<String>,
    pub duration: Option<i64>,
    pub billed_duration: Option<i64>,
    pub extracted_data: serde_json::Map<String, serde_json::Value>,
    pub tags: Vec<String>,
    pub recording_url: Option<String>,
    pub transcript: Option<Vec<TranscriptEntry>>,
    pub contact: Option<AttemptContact>,
}

#[derive(Debug, Clone)]
pub struct AttemptContact {
    pub id: i64,
    pub f_id: Option<String>,
    pub name: Option<String>,
    pub phone: PhoneNumber,
    pub status: ContactStatus,
}

/// A response kept for replay under an Idempotency-Key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

/// A request running under an Idempotency-Key: what its record will hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyClaim {
    pub org_id: OrgId,
    pub key: String,
    pub fingerprint: [u8; 32],
    pub at: Timestamp,
    /// Records created before this have expired and may be replaced.
    pub expired_before: Timestamp,
}

/// A completed request kept under its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    pub fingerprint: Vec<u8>,
    pub response: StoredResponse,
}

/// Writes a request's response into its Idempotency-Key record inside the same transaction as
/// the request's own writes: either both are committed or neither. `render` answers `None` for a
/// response that is not kept (a 400), leaving the claim to be released.
pub struct ResponseRecorder<T> {
    pub claim: IdempotencyClaim,
    pub render: RenderResponse<T>,
}

/// Renders the response of a request from what its writes returned; `None` when it is not kept.
pub type RenderResponse<T> = Box<dyn FnOnce(&T) -> Option<StoredResponse> + Send>;

#[derive(Debug, Clone, PartialEq)]
pub enum AddContactsOutcome {
    Added(Vec<ItemResult>),
    CampaignFinished,
    CampaignNotFound,
}

#[derive(Debug, Clone)]
pub struct ContactPage {
    pub total_count: i64,
    pub contacts: Vec<Contact>,
    /// The campaign's timezone, in which `last_call_at` is shown.
    pub timezone: TimeZone,
}

#[derive(Debug, Clone)]
pub enum ContactLookup {
    Found { contact: Box<Contact>, timezone: TimeZone },
    ContactNotFound,
    CampaignNotFound,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DeleteOutcome {
    Deleted,
    NotDeletable(ContactStatus),
    ContactNotFound,
    CampaignNotFound,
}

pub type DynStore = Arc<dyn Store>;

/// The SQLite database file a URL names; `None` for other databases.
pub fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    url.starts_with("sqlite:").then(|| sqlite::database_path(url).ok()).flatten()
}

/// Opens the store a database URL names, creating and migrating the database when needed.
pub async fn open(url: &str) -> StoreResult<DynStore> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::SqliteStore::open(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(postgres::PostgresStore::open(url).await?))
    } else {
        Err(StoreError::UnsupportedUrl(url.to_owned()))
    }
}

pub(crate) fn to_micros(at: Timestamp) -> i64 {
    at.as_microsecond()
}

pub(crate) fn from_micros(micros: i64) -> StoreResult<Timestamp> {
    Timestamp::from_microsecond(micros).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(crate) fn to_millis(at: Timestamp) -> i64 {
    at.as_millisecond()
}

pub(crate) fn from_millis(millis: i64) -> StoreResult<Timestamp> {
    Timestamp::from_millisecond(millis).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Whole seconds: the precision of every stored resource timestamp.
pub(crate) fn to_seconds(at: Timestamp) -> i64 {
    at.as_second()
}

pub(crate) fn from_seconds(seconds: i64) -> StoreResult<Timestamp> {
    Timestamp::from_second(seconds).map_err(|e| StoreError::Corrupt(e.to_string()))
}
