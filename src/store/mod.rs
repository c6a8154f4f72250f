//! Persistence behind one trait, so that SQLite (embedded) and PostgreSQL (scale-out) serve the
//! same API and run the same tests. Every tenant-owned read or write takes the organization first:
//! there is no un-scoped way to reach a campaign, agent or integration.

pub mod sqlite;

use std::panic::Location;
use std::sync::Arc;

use async_trait::async_trait;
use jiff::Timestamp;
use uuid::Uuid;

use crate::domain::agent::Agent;
use crate::domain::campaign::{Campaign, CampaignError, CampaignStatus, Channel, ContactStatus, LifecycleError, NewCampaign};
use crate::domain::contact::{Contact, IfDuplicate, ItemError, NewContact};
use crate::domain::ids::NewApiKey;
use crate::domain::integration::{Integration, NewIntegration};

pub type OrgId = i64;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error at {location}: {source}")]
    Database { source: sqlx::Error, location: &'static Location<'static> },
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("stored data could not be read: {0}")]
    Corrupt(String),
    #[error("the transaction could not be committed")]
    CommitFailed,
    #[error("unsupported database URL {0:?}: use sqlite://PATH")]
    UnsupportedUrl(String),
    #[error("the store is shutting down")]
    Unavailable,
}

impl From<sqlx::Error> for StoreError {
    #[track_caller]
    fn from(source: sqlx::Error) -> Self {
        StoreError::Database { source, location: Location::caller() }
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
    AgentNotFound,
    /// Unknown, or owned by another agent.
    IntegrationNotFound,
    /// The integration's real channel differs from `integration_type`.
    WrongIntegrationType(Channel),
}

pub enum Modified {
    Done(Box<Campaign>),
    Refused(Refusal),
    NotFound,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Answers once the database can serve requests.
    async fn ping(&self) -> StoreResult<()>;

    async fn find_api_key(&self, prefix: &str) -> StoreResult<Option<ApiKeyRecord>>;
    async fn touch_api_key(&self, key_id: i64, at: Timestamp) -> StoreResult<()>;
    /// Creates the organization when it is new, then the key.
    async fn create_api_key(&self, organization: &str, key: &NewApiKey, at: Timestamp) -> StoreResult<()>;
    /// Creates organization and key only when the database holds no organization yet.
    async fn bootstrap_organization(&self, organization: &str, key: &NewApiKey, at: Timestamp) -> StoreResult<bool>;
    async fn list_api_keys(&self, organization: Option<&str>) -> StoreResult<Vec<ApiKeyInfo>>;
    /// Returns false when no key has that prefix.
    async fn revoke_api_key(&self, prefix: &str, at: Timestamp) -> StoreResult<bool>;

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

    /// The response kept under `key`, unless there is none or it was created before `expired_before`.
    async fn find_idempotency_record(&self, org: OrgId, key: &str, expired_before: Timestamp) -> StoreResult<Option<IdempotencyRecord>>;
    /// Keeps the response of a request that wrote nothing else.
    async fn complete_idempotency_key(&self, claim: &IdempotencyClaim, response: StoredResponse) -> StoreResult<()>;
    /// Deletes keys created before `created_before`; returns how many.
    async fn purge_idempotency_keys(&self, created_before: Timestamp) -> StoreResult<u64>;
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

pub type RenderResponse<T> = Box<dyn FnOnce(&T) -> Option<StoredResponse> + Send>;

/// One item of an add-contacts batch after validation: a contact to store, or why not.
pub type BatchItem = Result<NewContact, (ItemError, String)>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ItemStatus {
    Created,
    Updated,
    SkippedDuplicate,
    Failed,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ItemResult {
    pub index: usize,
    pub status: ItemStatus,
    pub id: Option<i64>,
    /// The E.164 number stored, or the text sent when it could not be read.
    pub contact: Option<String>,
    pub error: Option<ItemError>,
}

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
    pub timezone: String,
}

#[derive(Debug, Clone)]
pub enum ContactLookup {
    Found { contact: Box<Contact>, timezone: String },
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

/// Opens the store a database URL names, creating and migrating the database when needed.
pub async fn open(url: &str) -> StoreResult<DynStore> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::SqliteStore::open(url).await?))
    } else {
        Err(StoreError::UnsupportedUrl(url.to_owned()))
    }
}

/// Whole seconds: the precision of every stored resource timestamp.
pub(crate) fn to_seconds(at: Timestamp) -> i64 {
    at.as_second()
}

pub(crate) fn from_seconds(seconds: i64) -> StoreResult<Timestamp> {
    Timestamp::from_second(seconds).map_err(|e| StoreError::Corrupt(e.to_string()))
}
