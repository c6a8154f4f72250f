//! What both stores read and decide alike: rows made into domain values (over [`StoredRow`], one
//! mapper per kind of row), the campaign list's paging and filters, status sets as SQL lists, the
//! settings keys SQL reads, and response bodies packed for Idempotency-Key records. The rules
//! themselves live in `domain`; each backend writes only its SQL and its transactions.

use crate::store::ExpiredAttempt;
use std::collections::HashMap;

use jiff::Timestamp;
use uuid::Uuid;

use super::{
    ApiKeyInfo, AttemptReport, Delivery, DeliveryOutcome, DueDelivery, EventHeader, EventSource, EventSubject, SessionRecord,
    WebhookSummary, from_micros, to_micros,
};
use super::{
    Attempt, AttemptContact, CampaignCursor, CampaignFilter, Dispatch, DispatchContact, IdempotencyRecord, OrgId, PageDirection,
    RunningCampaign, StoreError, StoreResult, StoredResponse, from_millis, from_seconds, to_seconds,
};
use super::{DncChange, DncEntry};
use crate::domain::agent::Agent;
use crate::domain::analytics::CampaignCounters;
use crate::domain::attempt::{AnsweredBy, AttemptStatus, ContactProgress, FailedReason};
use crate::domain::campaign::CampaignSettings;
use crate::domain::campaign::{AgentRef, Campaign, CampaignStatus, Channel, ContactStatus, IntegrationRef};
use crate::domain::contact::{Contact, PhoneNumber};
use crate::domain::contact_hours::{ContactZone, TimezoneSource};
use crate::domain::dnc::{DncAction, DncChannel, DncSource};
use crate::domain::integration::{Health, Integration, Provider, ProviderConfig};
use crate::domain::outcome::{AttemptState, ContactData, ContactState};
use crate::domain::plan::WaitingGroup;
use crate::domain::timezone::TimeZone;
use crate::domain::webhook::{self, DeliveryStatus, EventBody, EventType, NewEvent, Subscription, Webhook, envelope, format_occurred_at};

pub(crate) const MINUTES_PER_DAY: i64 = 24 * 60;
/// How far back the per-minute start counts (`campaign_starts`) are kept: the daily cap sums only
/// the last [`MINUTES_PER_DAY`], but the dashboard's attempts-per-hour chart reads a week of them.
pub(crate) const START_COUNTS_KEPT_MINUTES: i64 = 7 * MINUTES_PER_DAY;

pub(crate) fn parse_uuid(text: &str) -> StoreResult<Uuid> {
    Uuid::parse_str(text).map_err(|e| StoreError::Corrupt(format!("bad uuid {text:?}: {e}")))
}

pub(crate) fn parse_channel(text: &str) -> StoreResult<Channel> {
    Channel::parse(text).ok_or_else(|| StoreError::Corrupt(format!("bad channel {text:?}")))
}

pub(crate) fn parse_campaign_status(text: &str) -> StoreResult<CampaignStatus> {
    CampaignStatus::parse(text).ok_or_else(|| StoreError::Corrupt(format!("bad status {text:?}")))
}

pub(crate) fn parse_contact_status(text: &str) -> StoreResult<ContactStatus> {
    ContactStatus::parse(text).ok_or_else(|| StoreError::Corrupt(format!("bad contact status {text:?}")))
}

pub(crate) fn parse_attempt_status(text: &str) -> StoreResult<AttemptStatus> {
    AttemptStatus::parse(text).ok_or_else(|| StoreError::Corrupt(format!("bad attempt status {text:?}")))
}

pub(crate) fn provider_config(provider_name: &str, config: &str) -> StoreResult<(Provider, ProviderConfig)> {
    let provider = Provider::parse(provider_name).ok_or_else(|| StoreError::Corrupt(format!("bad provider {provider_name:?}")))?;
    Ok((provider, ProviderConfig::from_stored(provider, config)?))
}

/// A do-not-contact entry read from `contact`, `channel`, `reason`, `source` and `created_at`.
pub(crate) fn dnc_entry_from_row(row: &impl StoredRow) -> StoreResult<DncEntry> {
    Ok(DncEntry {
        contact: PhoneNumber::stored(row.text("contact")?).map_err(|text| StoreError::Corrupt(format!("bad number {text:?}")))?,
        channel: parse_dnc_channel(&row.text("channel")?)?,
        reason: row.opt_text("reason")?,
        source: parse_dnc_source(&row.text("source")?)?,
        created_at: from_seconds(row.int("created_at")?)?,
    })
}

/// A change of the do-not-contact list read from `at`, `action`, `channel`, `reason`, `source`
/// and `key_prefix`.
pub(crate) fn dnc_change_from_row(row: &impl StoredRow) -> StoreResult<DncChange> {
    let action = row.text("action")?;
    Ok(DncChange {
        at: from_seconds(row.int("at")?)?,
        action: DncAction::parse(&action).ok_or_else(|| StoreError::Corrupt(format!("bad do-not-contact action {action:?}")))?,
        channel: parse_dnc_channel(&row.text("channel")?)?,
        reason: row.opt_text("reason")?,
        source: parse_dnc_source(&row.text("source")?)?,
        key_prefix: row.opt_text("key_prefix")?,
    })
}

fn parse_dnc_channel(text: &str) -> StoreResult<DncChannel> {
    DncChannel::parse(text).ok_or_else(|| StoreError::Corrupt(format!("bad do-not-contact channel {text:?}")))
}

fn parse_dnc_source(text: &str) -> StoreResult<DncSource> {
    DncSource::parse(text).ok_or_else(|| StoreError::Corrupt(format!("bad do-not-contact source {text:?}")))
}

/// The opt-out keywords stored as a JSON array; `None` (the defaults) when the column is NULL.
pub(crate) fn keywords_from(stored: Option<String>) -> StoreResult<Option<Vec<String>>> {
    stored.map(|json| serde_json::from_str(&json).map_err(StoreError::from)).transpose()
}

/// An expired attempt read from `a.id`, `a.provider_id`, `a.held_event`, `c.integration_id`,
/// `i.provider` and `i.config`.
pub(crate) fn expired_attempt_from_row(row: &impl StoredRow) -> StoreResult<ExpiredAttempt> {
    let held = row.opt_text("held_event")?.map(|held| serde_json::from_str(&held)).transpose()?;
    Ok(ExpiredAttempt {
        attempt_id: row.text("id")?,
        provider_id: row.opt_text("provider_id")?,
        held,
        integration_id: row.text("integration_id")?,
        provider: provider_config(&row.text("provider")?, &row.text("config")?)?.1,
    })
}

/// An integration's provider config as stored (credentials sealed: see `ProviderConfig::seal`).
pub(crate) fn config_json(config: &ProviderConfig) -> StoreResult<String> {
    Ok(serde_json::to_string(config)?)
}

pub(crate) fn opt_to_seconds(at: Option<Timestamp>) -> Option<i64> {
    at.map(to_seconds)
}

/// The counters read from a campaign row, with the per-status counts stored as a JSON object.
pub(crate) fn with_status_counts(mut counters: CampaignCounters, status_counts: Option<&str>) -> StoreResult<CampaignCounters> {
    let status_counts: HashMap<String, i64> = status_counts.map(serde_json::from_str).transpose()?.unwrap_or_default();
    counters.set_status_counts(|status| status_counts.get(status.as_str()).copied().unwrap_or(0));
    Ok(counters)
}

/// A row of either backend, read by column name into the few types both store alike (integers,
/// text, flags), so that rows become domain values in one place.
pub(crate) trait StoredRow {
    fn int(&self, column: &str) -> StoreResult<i64>;
    fn opt_int(&self, column: &str) -> StoreResult<Option<i64>>;
    fn text(&self, column: &str) -> StoreResult<String>;
    fn opt_text(&self, column: &str) -> StoreResult<Option<String>>;
    fn flag(&self, column: &str) -> StoreResult<bool>;
}

macro_rules! stored_row {
    ($($row:ty => $get:path),*) => {$(
        impl StoredRow for $row {
            fn int(&self, column: &str) -> StoreResult<i64> {
                Ok($get(self, column)?)
            }
            fn opt_int(&self, column: &str) -> StoreResult<Option<i64>> {
                Ok($get(self, column)?)
            }
            fn text(&self, column: &str) -> StoreResult<String> {
                Ok($get(self, column)?)
            }
            fn opt_text(&self, column: &str) -> StoreResult<Option<String>> {
                Ok($get(self, column)?)
            }
            fn flag(&self, column: &str) -> StoreResult<bool> {
                Ok($get(self, column)?)
            }
        }
    )*};
}
stored_row!(sqlx::postgres::PgRow => sqlx::Row::try_get, rusqlite::Row<'_> => rusqlite::Row::get);

pub(crate) fn opt_seconds(row: &impl StoredRow, column: &str) -> StoreResult<Option<Timestamp>> {
    row.opt_int(column)?.map(from_seconds).transpose()
}

/// A campaign read with the columns of each backend's `select_campaigns!`.
pub(crate) fn campaign_from_row(row: &impl StoredRow) -> StoreResult<Campaign> {
    let counters = CampaignCounters {
        contacts: row.int("contact_count")?,
        calls: row.int("calls")?,
        calls_human: row.int("calls_human")?,
        calls_machine: row.int("calls_machine")?,
        calls_unknown: row.int("calls_unknown")?,
        messages: row.int("messages")?,
        contacts_processed: row.int("contacts_processed")?,
        contacts_answered: row.int("contacts_answered")?,
        ..CampaignCounters::default()
    };
    Ok(Campaign {
        id: row.int("id")?,
        agent: AgentRef { id: parse_uuid(&row.text("agent_id")?)?, name: row.text("agent_name")? },
        integration: IntegrationRef { id: row.text("integration_id")?, channel: parse_channel(&row.text("channel")?)? },
        status: parse_campaign_status(&row.text("status")?)?,
        archived: row.flag("archived")?,
        created_at: from_seconds(row.int("created_at")?)?,
        started_at: opt_seconds(row, "started_at")?,
        ended_at: opt_seconds(row, "ended_at")?,
        settings: serde_json::from_str(&row.text("settings")?)?,
        current_iteration: row.int("current_iteration")?,
        last_iteration_at: opt_seconds(row, "last_iteration_at")?,
        next_cycle_at: opt_seconds(row, "next_cycle_at")?,
        paused_in_cooldown: row.flag("paused_in_cooldown")?,
        counters: with_status_counts(counters, row.opt_text("status_counts")?.as_deref())?,
    })
}

pub(crate) fn agent_from_row(row: &impl StoredRow) -> StoreResult<Agent> {
    Ok(Agent { id: parse_uuid(&row.text("id")?)?, name: row.text("name")?, created_at: from_seconds(row.int("created_at")?)? })
}

pub(crate) fn integration_from_row(row: &impl StoredRow) -> StoreResult<Integration> {
    let (provider, config) = provider_config(&row.text("provider")?, &row.text("config")?)?;
    Ok(Integration {
        id: row.text("id")?,
        agent_id: parse_uuid(&row.text("agent_id")?)?,
        channel: parse_channel(&row.text("channel")?)?,
        provider,
        config,
        secret: row.text("secret")?,
        created_at: from_seconds(row.int("created_at")?)?,
        health: match (row.opt_text("health_reason")?, row.opt_int("health_since")?) {
            (Some(reason), Some(since)) => Health::Failing { reason, since: from_seconds(since)? },
            _ => Health::Ok,
        },
    })
}

/// The owner and channel of the integration a new campaign names, read as `integration_agent`
/// and `channel` (NULL when there is no such integration).
pub(crate) fn integration_ref(row: &impl StoredRow) -> StoreResult<Option<(Uuid, Channel)>> {
    match (row.opt_text("integration_agent")?, row.opt_text("channel")?) {
        (Some(owner), Some(channel)) => Ok(Some((parse_uuid(&owner)?, parse_channel(&channel)?))),
        _ => Ok(None),
    }
}

/// A time zone name as stored; a name that is not a zone is a corrupt row, never another zone.
pub(crate) fn timezone_from(name: &str) -> StoreResult<TimeZone> {
    TimeZone::parse(name).ok_or_else(|| StoreError::Corrupt(format!("bad time zone {name:?}")))
}

/// The `phone` column: a number stored in E.164, or a corrupt row.
fn phone_from(row: &impl StoredRow) -> StoreResult<PhoneNumber> {
    PhoneNumber::stored(row.text("phone")?).map_err(|text| StoreError::Corrupt(format!("bad phone number {text:?}")))
}

pub(crate) fn opt_millis(row: &impl StoredRow, column: &str) -> StoreResult<Option<Timestamp>> {
    row.opt_int(column)?.map(from_millis).transpose()
}

/// A JSON column read into its type; `None` when the column is NULL.
fn opt_json<T: serde::de::DeserializeOwned>(row: &impl StoredRow, column: &str) -> StoreResult<Option<T>> {
    Ok(row.opt_text(column)?.map(|text| serde_json::from_str(&text)).transpose()?)
}

fn json<T: serde::de::DeserializeOwned>(row: &impl StoredRow, column: &str) -> StoreResult<T> {
    Ok(serde_json::from_str(&row.text(column)?)?)
}

fn answered_by(row: &impl StoredRow) -> StoreResult<Option<AnsweredBy>> {
    Ok(row.opt_text("answered_by")?.as_deref().and_then(AnsweredBy::parse))
}

/// The keys of the settings JSON that SQL reads by name. Renaming a settings field changes its
/// key; `settings_keys_name_the_serialized_fields` fails then, not the SQL silently.
pub(crate) const SETTINGS_RETRIES: &str = "retries";
pub(crate) const SETTINGS_TIMEZONE: &str = "timezone";
pub(crate) const SETTINGS_NAME: &str = "name";

/// A running campaign read with the columns of each backend's running-campaign query.
pub(crate) fn running_from_row(row: &impl StoredRow) -> StoreResult<RunningCampaign> {
    let (_, provider) = provider_config(&row.text("provider")?, &row.text("config")?)?;
    Ok(RunningCampaign {
        campaign: campaign_from_row(row)?,
        provider,
        secret: row.text("secret")?,
        in_flight: row.int("in_flight")?,
        unfinished: row.int("unfinished")?,
        queued: row.int("queued")?,
        next_retry_at: opt_millis(row, "next_retry_at")?,
        integration_failing: row.opt_text("health_reason")?.is_some(),
    })
}

/// A group of a plan's remaining contacts, read as `zone` ('' for the campaign's own), `status`,
/// `due` and `count`.
pub(crate) fn waiting_group_from_row(row: &impl StoredRow) -> StoreResult<WaitingGroup> {
    let zone = row.text("zone")?;
    Ok(WaitingGroup {
        zone: (!zone.is_empty()).then_some(zone),
        status: parse_contact_status(&row.text("status")?)?,
        due: row.flag("due")?,
        count: row.int("count")?,
    })
}

/// Contacts waiting in the campaigns of one status, read as `status` and `waiting`.
pub(crate) fn waiting_from_row(row: &impl StoredRow) -> StoreResult<(CampaignStatus, i64)> {
    Ok((parse_campaign_status(&row.text("status")?)?, row.int("waiting")?))
}

/// The columns [`dispatch_contact_from_row`] reads, of the contacts table as `ct`.
macro_rules! dispatch_contact_columns {
    () => {
        "ct.id AS contact_id, ct.f_id, ct.name, ct.phone, ct.context, ct.extracted_data, ct.tags"
    };
}
pub(crate) use dispatch_contact_columns;

pub(crate) fn dispatch_contact_from_row(row: &impl StoredRow) -> StoreResult<DispatchContact> {
    Ok(DispatchContact {
        id: row.int("contact_id")?,
        f_id: row.opt_text("f_id")?,
        name: row.opt_text("name")?,
        contact: phone_from(row)?,
        context: row.opt_text("context")?,
        extracted_data: json(row, "extracted_data")?,
        tags: json(row, "tags")?,
    })
}

/// An attempt to hand off, read with `attempt_id`, `campaign_id`, `iteration`, `handoff_tries`,
/// `template` and the contact's [`dispatch_contact_columns`].
pub(crate) fn dispatch_from_row(row: &impl StoredRow) -> StoreResult<Dispatch> {
    Ok(Dispatch {
        attempt_id: row.text("attempt_id")?,
        campaign_id: row.int("campaign_id")?,
        iteration: row.int("iteration")?,
        tries: row.int("handoff_tries")?,
        in_doubt: false,
        template: row.opt_text("template")?,
        contact: dispatch_contact_from_row(row)?,
    })
}

/// The columns [`contact_from_row`] reads: a contact as the API shows it.
macro_rules! contact_columns {
    () => {
        "id, phone, name, context, extracted_data, f_id, tags, status, retries, failed_retries, \
         has_follow_up, call_count, billed_duration, last_call_at, failed_reason, timezone, timezone_source"
    };
}
pub(crate) use contact_columns;

pub(crate) fn contact_from_row(row: &impl StoredRow) -> StoreResult<Contact> {
    Ok(Contact {
        id: row.int("id")?,
        phone: phone_from(row)?,
        name: row.opt_text("name")?,
        context: row.opt_text("context")?,
        extracted_data: json(row, "extracted_data")?,
        f_id: row.opt_text("f_id")?,
        tags: json(row, "tags")?,
        status: parse_contact_status(&row.text("status")?)?,
        retries: row.int("retries")?,
        failed_retries: row.int("failed_retries")?,
        has_follow_up: row.flag("has_follow_up")?,
        call_count: row.int("call_count")?,
        billed_duration: row.int("billed_duration")?,
        last_call_at: opt_seconds(row, "last_call_at")?,
        failed_reason: failed_reason(row)?,
        timezone: contact_zone(row)?,
    })
}

/// The `timezone` and `timezone_source` columns: the contact's own zone, `None` for the campaign's.
fn contact_zone(row: &impl StoredRow) -> StoreResult<Option<ContactZone>> {
    match (row.opt_text("timezone")?, row.opt_text("timezone_source")?) {
        (None, None) => Ok(None),
        (Some(name), Some(source)) => match TimezoneSource::parse(&source) {
            Some(source @ (TimezoneSource::Given | TimezoneSource::Number)) => {
                Ok(Some(ContactZone { zone: timezone_from(&name)?, source }))
            }
            _ => Err(StoreError::Corrupt(format!("bad timezone_source {source:?}"))),
        },
        (name, source) => Err(StoreError::Corrupt(format!("timezone {name:?} with timezone_source {source:?}"))),
    }
}

/// The `timezone` and `timezone_source` columns of a contact's own zone (both NULL for the campaign's).
pub(crate) fn zone_columns(zone: Option<&ContactZone>) -> (Option<&str>, Option<&'static str>) {
    zone.map_or((None, None), |zone| (Some(zone.zone.name()), Some(zone.source.as_str())))
}

/// A zone's key in `campaign_zones` (and `COALESCE(contacts.timezone, '')`): its name, or `''`
/// for the campaign's own zone.
pub(crate) fn zone_key(zone: Option<&ContactZone>) -> &str {
    zone.map_or("", |zone| zone.zone.name())
}

/// Queued contacts per zone key, from the zone keys of contacts entering (`+1`) or leaving (`-1`)
/// `queue`: one `campaign_zones` change per zone instead of one per contact.
pub(crate) fn zone_deltas<'a>(keys: impl IntoIterator<Item = (&'a str, i64)>) -> Vec<(&'a str, i64)> {
    let mut deltas: Vec<(&str, i64)> = Vec::new();
    for (key, delta) in keys {
        match deltas.iter_mut().find(|(k, _)| *k == key) {
            Some((_, sum)) => *sum += delta,
            None => deltas.push((key, delta)),
        }
    }
    deltas
}

/// `campaign_zones` rows as the plan preview reads them: `None` for the campaign's own zone.
pub(crate) fn zone_count_from_row(row: &impl StoredRow) -> StoreResult<(Option<String>, i64)> {
    let key = row.text("timezone")?;
    Ok(((!key.is_empty()).then_some(key), row.int("queued")?))
}

fn failed_reason(row: &impl StoredRow) -> StoreResult<Option<FailedReason>> {
    row.opt_text("failed_reason")?
        .map(|text| FailedReason::parse(&text).ok_or_else(|| StoreError::Corrupt(format!("bad failed_reason {text:?}"))))
        .transpose()
}

/// The columns of an attempt with its contact, as `/calls` and `/messages` show it (attempts as
/// `a`, contacts as `ct`).
pub(crate) const ATTEMPT_COLUMNS: &str = "a.id, a.status, a.answered_by, a.template, a.created_at, a.started_at, a.ended_at, \
     a.sent_at, a.delivered_at, a.read_at, a.ended_by, a.ended_reason, a.duration, a.billed_duration, a.extracted_data, a.tags, \
     a.recording_url, a.transcript, a.provider_id, ct.id AS contact_id, ct.f_id, ct.name, ct.phone, ct.status AS contact_status";

pub(crate) fn attempt_from_row(row: &impl StoredRow) -> StoreResult<Attempt> {
    let contact = match row.opt_int("contact_id")? {
        Some(id) => Some(AttemptContact {
            id,
            f_id: row.opt_text("f_id")?,
            name: row.opt_text("name")?,
            phone: phone_from(row)?,
            status: parse_contact_status(&row.text("contact_status")?)?,
        }),
        None => None,
    };
    Ok(Attempt {
        id: row.text("id")?,
        provider_id: row.opt_text("provider_id")?,
        status: parse_attempt_status(&row.text("status")?)?,
        answered_by: answered_by(row)?,
        template: row.opt_text("template")?,
        created_at: from_millis(row.int("created_at")?)?,
        started_at: opt_millis(row, "started_at")?,
        ended_at: opt_millis(row, "ended_at")?,
        sent_at: opt_millis(row, "sent_at")?,
        delivered_at: opt_millis(row, "delivered_at")?,
        read_at: opt_millis(row, "read_at")?,
        ended_by: row.opt_text("ended_by")?,
        ended_reason: row.opt_text("ended_reason")?,
        duration: row.opt_int("duration")?,
        billed_duration: row.opt_int("billed_duration")?,
        extracted_data: opt_json(row, "extracted_data")?.unwrap_or_default(),
        tags: opt_json(row, "tags")?.unwrap_or_default(),
        recording_url: row.opt_text("recording_url")?,
        transcript: opt_json(row, "transcript")?,
        contact,
    })
}

/// An attempt as events change it, read with its campaign's channel, integration, status and
/// voicemail retries (`voicemail_retries`, the settings' `retries`).
pub(crate) fn attempt_state_from_row(row: &impl StoredRow) -> StoreResult<AttemptState> {
    Ok(AttemptState {
        org_id: row.int("org_id")?,
        campaign_id: row.int("campaign_id")?,
        contact_id: row.int("contact_id")?,
        channel: parse_channel(&row.text("channel")?)?,
        integration_id: row.text("integration_id")?,
        campaign_finished: parse_campaign_status(&row.text("campaign_status")?)? == CampaignStatus::Finished,
        voicemail_retries: row.int("voicemail_retries")?,
        status: parse_attempt_status(&row.text("status")?)?,
        open: row.flag("open")?,
        changed: false,
        answered_by: answered_by(row)?,
        converted: row.flag("converted")?,
        started_at: row.opt_int("started_at")?,
        ended_at: row.opt_int("ended_at")?,
        sent_at: row.opt_int("sent_at")?,
        delivered_at: row.opt_int("delivered_at")?,
        read_at: row.opt_int("read_at")?,
        duration: row.opt_int("duration")?,
        billed_duration: row.opt_int("billed_duration")?,
        ended_by: row.opt_text("ended_by")?,
        ended_reason: row.opt_text("ended_reason")?,
        extracted_data: opt_json(row, "extracted_data")?,
        tags: opt_json(row, "tags")?,
        new_recording_url: None,
        new_transcript: None,
    })
}

/// A contact as events change it; with its data and tags when `with_data` (the columns
/// `extracted_data` and `tags` are then read too).
pub(crate) fn contact_state_from_row(row: &impl StoredRow, with_data: bool) -> StoreResult<ContactState> {
    Ok(ContactState {
        progress: ContactProgress {
            status: parse_contact_status(&row.text("status")?)?,
            retries: row.int("retries")?,
            failed_retries: row.int("failed_retries")?,
            next_attempt_at: opt_millis(row, "next_attempt_at")?,
            failed_reason: failed_reason(row)?,
        },
        last_attempt_id: row.opt_text("last_attempt_id")?,
        processed: row.flag("processed")?,
        answered: row.flag("answered")?,
        billed_duration: row.int("billed_duration")?,
        data: match with_data {
            true => Some(ContactData { extracted_data: json(row, "extracted_data")?, tags: json(row, "tags")? }),
            false => None,
        },
        changed: false,
    })
}

/// A value bound to a statement's parameter.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SqlValue {
    Int(i64),
    Text(String),
}

/// The campaign list's conditions on the campaigns table `c`, in order: each clause is followed
/// by its parameter when it has one, then by its closing text (`("c.org_id = ", Int(org), "")`);
/// each backend writes them with its own placeholders. `name_contains` is the backend's opening
/// of "the lowercased name contains" (closed by `) > 0`): SQL has no portable spelling of it.
pub(crate) fn campaign_conditions(
    org: OrgId,
    filter: &CampaignFilter,
    name_contains: &'static str,
) -> Vec<(&'static str, Option<SqlValue>, &'static str)> {
    let mut conditions = vec![("c.org_id = ", Some(SqlValue::Int(org)), "")];
    if !filter.include_archived {
        conditions.push(("c.archived = FALSE", None, ""));
    }
    if let Some(agent) = filter.agent_id {
        conditions.push(("c.agent_id = ", Some(SqlValue::Text(agent.to_string())), ""));
    }
    if let Some(status) = filter.status {
        conditions.push(("c.status = ", Some(SqlValue::Text(status.as_str().to_owned())), ""));
    }
    if let Some(channel) = filter.channel {
        conditions.push(("c.channel = ", Some(SqlValue::Text(channel.as_str().to_owned())), ""));
    }
    if let Some(text) = filter.name_contains.as_deref().filter(|t| !t.is_empty()) {
        conditions.push((name_contains, Some(SqlValue::Text(text.to_lowercase())), ") > 0"));
    }
    let bounds = [
        ("c.created_at >= ", filter.created_after),
        ("c.created_at <= ", filter.created_before),
        ("c.started_at >= ", filter.started_after),
        ("c.started_at <= ", filter.started_before),
        ("c.ended_at >= ", filter.ended_after),
        ("c.ended_at <= ", filter.ended_before),
    ];
    for (clause, bound) in bounds {
        if let Some(at) = bound {
            conditions.push((clause, Some(SqlValue::Int(to_seconds(at))), ""));
        }
    }
    conditions
}

/// How one page of the newest-first campaign list is read, whichever way its cursor points: the
/// backends write the SQL, this decides its clauses and what the rows read mean.
pub(crate) struct CampaignPaging {
    cursor: Option<CampaignCursor>,
    page_size: usize,
}

/// Whether the list goes on past a page: known from its rows, or to be asked of the database
/// beyond an edge `(created_at, id)`.
pub(crate) enum Neighbours {
    Known {
        has_next: bool,
        has_previous: bool,
    },
    /// `has_next` is whether a campaign older than `edge` exists.
    AskOlder {
        edge: (i64, i64),
        has_previous: bool,
    },
    /// `has_previous` is whether a campaign newer than `edge` exists.
    AskNewer {
        edge: (i64, i64),
        has_next: bool,
    },
}

impl CampaignPaging {
    pub(crate) fn new(cursor: Option<CampaignCursor>, page_size: u32) -> Self {
        CampaignPaging { cursor, page_size: page_size as usize }
    }

    fn backwards(&self) -> bool {
        matches!(self.cursor, Some(CampaignCursor { direction: PageDirection::Before, .. }))
    }

    /// The condition after the cursor (` AND (c.created_at, c.id) < (` with its two values), if any.
    pub(crate) fn after_cursor(&self) -> Option<(&'static str, i64, i64)> {
        let clause = if self.backwards() { " AND (c.created_at, c.id) > (" } else { " AND (c.created_at, c.id) < (" };
        self.cursor.map(|cursor| (clause, cursor.created_at, cursor.id))
    }

    pub(crate) fn order(&self) -> &'static str {
        if self.backwards() { " ORDER BY c.created_at ASC, c.id ASC" } else { " ORDER BY c.created_at DESC, c.id DESC" }
    }

    /// One row more than the page, to tell whether the list goes on in the cursor's direction.
    pub(crate) fn limit(&self) -> i64 {
        i64::try_from(self.page_size).unwrap_or(i64::MAX).saturating_add(1)
    }

    /// The page, newest first, from the rows the query returned, and what is known beyond it.
    pub(crate) fn page(&self, mut rows: Vec<Campaign>) -> (Vec<Campaign>, Neighbours) {
        let more_in_direction = rows.len() > self.page_size;
        rows.truncate(self.page_size);
        if self.backwards() {
            rows.reverse();
        }
        let edge = |c: &Campaign| (to_seconds(c.created_at), c.id);
        let neighbours = match (rows.first(), rows.last()) {
            (Some(_), Some(last)) if self.backwards() => Neighbours::AskOlder { edge: edge(last), has_previous: more_in_direction },
            (Some(first), Some(_)) if self.cursor.is_some() => Neighbours::AskNewer { edge: edge(first), has_next: more_in_direction },
            (Some(_), Some(_)) => Neighbours::Known { has_next: more_in_direction, has_previous: false },
            // An empty page (an empty list, or a cursor past the end) has nowhere to go.
            _ => Neighbours::Known { has_next: false, has_previous: false },
        };
        (rows, neighbours)
    }
}

/// A set of statuses as an SQL list of literals (`'queue', 'sending'`): status sets are named
/// once, in `domain`, and queries are built from them.
pub(crate) fn sql_list(statuses: impl IntoIterator<Item = &'static str>) -> String {
    statuses.into_iter().map(|status| format!("'{status}'")).collect::<Vec<_>>().join(", ")
}

pub(crate) fn minute_of(at: Timestamp) -> i64 {
    at.as_second().div_euclid(60)
}

/// An hour of attempts started, read as `hour` (a [`minute_of`] divided by 60) and `count`: the
/// hour's first instant and its count.
pub(crate) fn hour_count_from_row(row: &impl StoredRow) -> StoreResult<(Timestamp, i64)> {
    let hour = row.int("hour")?;
    let start = hour.checked_mul(3600).ok_or_else(|| StoreError::Corrupt(format!("bad hour {hour}")))?;
    Ok((from_seconds(start)?, row.int("count")?))
}

/// First byte of a packed response body. A body that starts with any other byte is stored as it
/// is: every body stored before packing existed is JSON, and JSON text never starts with NUL.
const PACKED: u8 = 0;
/// A packed body's header: [`PACKED`], the dictionary's version, the body's length (u32, LE).
const PACKED_HEADER: usize = 6;
/// Typical response bodies (a batch's answer, a refused action, a campaign's detail), as the API
/// sends them (a test in `tests/api/idempotency.rs` holds each to the shape of a live body). Bodies
/// are LZ4-compressed against them: most of a response's bytes are field names and values that
/// recur, so a 1.2 KB campaign keeps 170 to 310 bytes. Records packed with a dictionary can only
/// be read with the same bytes: never edit one; add a new version beside it, and keep the old
/// ones for reading the records packed before.
const DICTIONARY_V4: &[u8] = include_bytes!("response_dictionary_v4.json");
/// The third dictionary, from before campaigns showed `contact_hours` (§12.2); read, never written.
const DICTIONARY_V3: &[u8] = include_bytes!("response_dictionary_v3.json");
/// The second dictionary, from before absent values were left out of Altur's objects (§0.2);
/// read, never written.
const DICTIONARY_V2: &[u8] = include_bytes!("response_dictionary_v2.json");
/// The first dictionary, with an error body the API did not send; read, never written.
const DICTIONARY_V1: &[u8] = include_bytes!("response_dictionary_v1.json");
/// The dictionary new records are packed with.
const DICTIONARY: (u8, &[u8]) = (4, DICTIONARY_V4);
/// Larger than any response: a corrupt length must not make a huge allocation.
const MAX_UNPACKED_BODY: usize = 1 << 28;

/// A response body as the stores keep it: compressed when that is smaller (see [`DICTIONARY_V4`]).
/// Fewer bytes per record means fewer pages written and synced with each commit.
pub(crate) fn pack_body(body: &[u8]) -> Vec<u8> {
    let Ok(length) = u32::try_from(body.len()) else { return body.to_vec() };
    let mut packed = vec![0; PACKED_HEADER + lz4_flex::block::get_maximum_output_size(body.len())];
    packed[0] = PACKED;
    packed[1] = DICTIONARY.0;
    packed[2..PACKED_HEADER].copy_from_slice(&length.to_le_bytes());
    match lz4_flex::block::compress_into_with_dict(body, &mut packed[PACKED_HEADER..], DICTIONARY.1) {
        // A body that starts with the marker is always packed, so that it reads back unchanged.
        Ok(size) if PACKED_HEADER + size < body.len() || body.first() == Some(&PACKED) => {
            packed.truncate(PACKED_HEADER + size);
            packed
        }
        _ => body.to_vec(),
    }
}

/// A stored record read back from its columns.
pub(crate) fn idempotency_record(fingerprint: Vec<u8>, status: i64, body: Vec<u8>) -> StoreResult<IdempotencyRecord> {
    let status = u16::try_from(status).map_err(|_| StoreError::Corrupt(format!("bad status {status}")))?;
    Ok(IdempotencyRecord { fingerprint, response: StoredResponse { status, body: unpack_body(body)? } })
}

/// The body [`pack_body`] was given.
fn unpack_body(stored: Vec<u8>) -> StoreResult<Vec<u8>> {
    if stored.first() != Some(&PACKED) {
        return Ok(stored);
    }
    let corrupt = |why: &str| StoreError::Corrupt(format!("stored response body: {why}"));
    let dictionary = match stored.get(1) {
        Some(1) => DICTIONARY_V1,
        Some(2) => DICTIONARY_V2,
        Some(3) => DICTIONARY_V3,
        Some(4) => DICTIONARY_V4,
        _ => return Err(corrupt("unknown dictionary")),
    };
    let length =
        stored.get(2..PACKED_HEADER).and_then(|bytes| bytes.try_into().ok()).map(u32::from_le_bytes).ok_or_else(|| corrupt("no length"))?;
    let length = usize::try_from(length).ok().filter(|&length| length <= MAX_UNPACKED_BODY).ok_or_else(|| corrupt("length too large"))?;
    let mut body = vec![0; length];
    match lz4_flex::block::decompress_into_with_dict(&stored[PACKED_HEADER..], &mut body, dictionary) {
        Ok(size) if size == length => Ok(body),
        Ok(_) => Err(corrupt("length does not match")),
        Err(err) => Err(corrupt(&err.to_string())),
    }
}

/// `SELECT` of the columns [`api_key_info_from_row`] reads, from `api_keys k` and their
/// organizations `o`: every list of keys, the operator's and an organization's own.
macro_rules! select_api_key_infos {
    () => {
        "SELECT k.prefix, o.name, o.public_id, k.created_at, k.last_used_at, k.revoked_at FROM api_keys k \
         JOIN organizations o ON o.id = k.org_id"
    };
}
pub(crate) use select_api_key_infos;

/// A key as `outbound keys list` shows it, read as `prefix`, `name` (the organization's),
/// `public_id`, `created_at`, `last_used_at` and `revoked_at`.
pub(crate) fn api_key_info_from_row(row: &impl StoredRow) -> StoreResult<ApiKeyInfo> {
    Ok(ApiKeyInfo {
        prefix: row.text("prefix")?,
        organization: row.text("name")?,
        project_id: row.text("public_id")?,
        created_at: from_seconds(row.int("created_at")?)?,
        last_used_at: opt_seconds(row, "last_used_at")?,
        revoked_at: opt_seconds(row, "revoked_at")?,
    })
}

/// A dashboard session, read as `org_id`, `name` (the organization's), `key_id`, `created_at`,
/// `last_seen_at` and `key_revoked`.
pub(crate) fn session_from_row(row: &impl StoredRow) -> StoreResult<SessionRecord> {
    Ok(SessionRecord {
        org_id: row.int("org_id")?,
        organization: row.text("name")?,
        key_id: row.int("key_id")?,
        created_at: from_seconds(row.int("created_at")?)?,
        last_seen_at: from_seconds(row.int("last_seen_at")?)?,
        key_revoked: row.flag("key_revoked")?,
    })
}

/// A subscription as `outbound webhooks list` shows it, read with [`WEBHOOK_COLUMNS`] plus the
/// organization's `name` and the counts `pending` and `failed`.
pub(crate) fn webhook_summary_from_row(row: &impl StoredRow) -> StoreResult<WebhookSummary> {
    Ok(WebhookSummary {
        webhook: webhook_from_row(row)?,
        organization: row.text("organization")?,
        pending: row.int("pending")?,
        failed: row.int("failed")?,
    })
}

/// The columns [`webhook_from_row`] reads, of the webhooks table as `w`.
pub(crate) const WEBHOOK_COLUMNS: &str = "w.id, w.url, w.events, w.filters, w.description, w.enabled, w.secret, w.created_at, w.updated_at";

pub(crate) fn webhook_from_row(row: &impl StoredRow) -> StoreResult<Webhook> {
    Ok(Webhook {
        id: row.text("id")?,
        url: row.text("url")?,
        events: json(row, "events")?,
        filters: opt_json(row, "filters")?,
        description: row.opt_text("description")?,
        enabled: row.flag("enabled")?,
        secret: row.text("secret")?,
        created_at: from_seconds(row.int("created_at")?)?,
        updated_at: from_seconds(row.int("updated_at")?)?,
    })
}

/// A subscription and its organization's public id, read as `id`, `events`, `filters` and `public_id`.
pub(crate) fn subscription_from_row(row: &impl StoredRow) -> StoreResult<(Subscription, String)> {
    let subscription = Subscription { id: row.text("id")?, events: json(row, "events")?, filters: opt_json(row, "filters")? };
    Ok((subscription, row.text("public_id")?))
}

/// A delivery row to insert: one event for one subscription.
pub(crate) struct NewDelivery {
    pub webhook_id: String,
    pub event_id: String,
    pub event_type: &'static str,
    pub attempt_id: Option<String>,
    pub attempt_status: Option<&'static str>,
    pub previous_status: Option<&'static str>,
    pub payload: Option<String>,
    pub created_at: i64,
}

/// The deliveries `events` make for the subscriptions that want them (`only`: to that one alone).
pub(crate) fn new_deliveries(subscriptions: &[(Subscription, String)], events: &[NewEvent], only: Option<&str>) -> Vec<NewDelivery> {
    let mut rows = Vec::new();
    for event in events {
        for (subscription, project_id) in subscriptions {
            let wanted = match only {
                Some(id) => subscription.id == id,
                None => subscription.wants(event),
            };
            if !wanted {
                continue;
            }
            let (attempt_id, attempt_status, previous_status, payload) = match &event.body {
                EventBody::Data { data, timezone } => {
                    let occurred_at = format_occurred_at(event.occurred_at, timezone.clone());
                    (None, None, None, Some(envelope(&event.event_id, event.event_type, &occurred_at, project_id, data)))
                }
                EventBody::Attempt { attempt_id, status, previous } => {
                    (Some(attempt_id.clone()), Some(status.as_str()), previous.map(AttemptStatus::as_str), None)
                }
            };
            rows.push(NewDelivery {
                webhook_id: subscription.id.clone(),
                event_id: event.event_id.clone(),
                event_type: event.event_type.as_str(),
                attempt_id,
                attempt_status,
                previous_status,
                payload,
                created_at: to_micros(event.occurred_at),
            });
        }
    }
    rows
}

/// `campaign.status_changed` of a campaign read only as its stored settings (adding contacts
/// moves `pending` to `ready` without reading the whole campaign).
pub(crate) fn status_changed_of_settings(
    campaign_id: i64,
    settings: &str,
    status: CampaignStatus,
    previous: CampaignStatus,
    at: Timestamp,
) -> StoreResult<Vec<NewEvent>> {
    let settings: CampaignSettings = serde_json::from_str(settings)?;
    Ok(webhook::status_changed_of(campaign_id, &settings.name, settings.timezone, status, previous, at).into_iter().collect())
}

/// The columns [`delivery_from_row`] reads (deliveries as `d`, organizations as `o`).
pub(crate) const DELIVERY_COLUMNS: &str = "d.id, d.event_id, d.event_type, d.status, d.attempts, d.last_status_code, d.last_error, \
     d.next_attempt_at, d.created_at, d.delivered_at, d.payload, d.attempt_id, d.attempt_status, d.previous_status, o.public_id";

fn parse_event_type(text: &str) -> StoreResult<EventType> {
    EventType::parse(text).ok_or_else(|| StoreError::Corrupt(format!("bad event type {text:?}")))
}

fn opt_micros(row: &impl StoredRow, column: &str) -> StoreResult<Option<Timestamp>> {
    row.opt_int(column)?.map(from_micros).transpose()
}

/// An event's header, read as `event_id`, `event_type`, `created_at` and `public_id`.
fn event_header_from_row(row: &impl StoredRow) -> StoreResult<EventHeader> {
    Ok(EventHeader {
        event_id: row.text("event_id")?,
        event_type: parse_event_type(&row.text("event_type")?)?,
        occurred_at: from_micros(row.int("created_at")?)?,
        project_id: row.text("public_id")?,
    })
}

/// An event's body, read as `payload`, or `attempt_id`, `attempt_status` and `previous_status`.
fn event_source_from_row(row: &impl StoredRow) -> StoreResult<EventSource> {
    if let Some(payload) = row.opt_text("payload")? {
        return Ok(EventSource::Stored(payload));
    }
    let (Some(attempt_id), Some(status)) = (row.opt_text("attempt_id")?, row.opt_text("attempt_status")?) else {
        return Err(StoreError::Corrupt("a delivery with neither a payload nor an attempt".to_owned()));
    };
    let previous = row.opt_text("previous_status")?.map(|s| parse_attempt_status(&s)).transpose()?;
    Ok(EventSource::Attempt { subject: EventSubject { attempt_id, status: parse_attempt_status(&status)?, previous }, report: None })
}

pub(crate) fn delivery_from_row(row: &impl StoredRow) -> StoreResult<Delivery> {
    let status = row.text("status")?;
    let status = DeliveryStatus::parse(&status).ok_or_else(|| StoreError::Corrupt(format!("bad delivery status {status:?}")))?;
    Ok(Delivery {
        id: row.int("id")?,
        event: event_header_from_row(row)?,
        status,
        attempts: row.int("attempts")?,
        last_status_code: row.opt_int("last_status_code")?,
        last_error: row.opt_text("last_error")?,
        next_attempt_at: opt_micros(row, "next_attempt_at")?,
        delivered_at: opt_micros(row, "delivered_at")?,
        body: event_source_from_row(row)?,
    })
}

/// The columns [`due_delivery_from_row`] reads (deliveries as `d`, webhooks as `w`, organizations
/// as `o`): the secret is the one the event was created under.
pub(crate) const DUE_DELIVERY_COLUMNS: &str = "d.id, d.webhook_id, w.url, \
     CASE WHEN w.rotated_at IS NOT NULL AND d.created_at < w.rotated_at THEN w.previous_secret ELSE w.secret END AS signing_secret, \
     o.public_id, d.event_id, d.event_type, d.created_at, d.attempts, d.payload, d.attempt_id, d.attempt_status, d.previous_status";

pub(crate) fn due_delivery_from_row(row: &impl StoredRow) -> StoreResult<DueDelivery> {
    Ok(DueDelivery {
        id: row.int("id")?,
        webhook_id: row.text("webhook_id")?,
        url: row.text("url")?,
        secret: row.text("signing_secret")?,
        event: event_header_from_row(row)?,
        attempts: row.int("attempts")?,
        body: event_source_from_row(row)?,
    })
}

/// A campaign as attempts' events show it, read as `name`, `timezone`, `agent_id` and `agent_name`.
pub(crate) struct ReportCampaign {
    pub name: String,
    pub timezone: TimeZone,
    pub agent_id: Uuid,
    pub agent_name: String,
    /// The number its integration calls from, when it has one.
    pub caller_number: Option<String>,
}

/// Read with `provider` and `config` of the campaign's integration.
pub(crate) fn report_campaign_from_row(row: &impl StoredRow) -> StoreResult<ReportCampaign> {
    let (_, config) = provider_config(&row.text("provider")?, &row.text("config")?)?;
    Ok(ReportCampaign {
        name: row.text("name")?,
        timezone: timezone_from(&row.text("timezone")?)?,
        agent_id: parse_uuid(&row.text("agent_id")?)?,
        agent_name: row.text("agent_name")?,
        caller_number: config.caller_number().map(str::to_owned),
    })
}

/// An attempt with its campaign's id, read with [`ATTEMPT_COLUMNS`] and `campaign_id`.
pub(crate) fn attempt_of_report_from_row(row: &impl StoredRow) -> StoreResult<(Attempt, i64)> {
    Ok((attempt_from_row(row)?, row.int("campaign_id")?))
}

impl ReportCampaign {
    /// The report of one of this campaign's attempts.
    pub(crate) fn report(&self, attempt: Attempt, campaign_id: i64, contact: Contact) -> AttemptReport {
        AttemptReport {
            attempt,
            contact,
            campaign_id,
            campaign_name: self.name.clone(),
            timezone: self.timezone.clone(),
            agent_id: self.agent_id,
            agent_name: self.agent_name.clone(),
            caller_number: self.caller_number.clone(),
        }
    }
}

/// What a delivery result writes: status, next attempt (micros), delivered at (micros), status
/// code, error.
pub(crate) struct DeliveryWrite {
    pub status: &'static str,
    pub next_attempt_at: Option<i64>,
    pub delivered_at: Option<i64>,
    pub status_code: Option<i64>,
    pub error: Option<String>,
    /// Whether the attempt counts (a delivery not yet due is put back without one).
    pub attempted: bool,
}

pub(crate) fn delivery_write(outcome: &DeliveryOutcome) -> DeliveryWrite {
    match outcome {
        DeliveryOutcome::Delivered { status_code, at } => DeliveryWrite {
            status: DeliveryStatus::Delivered.as_str(),
            next_attempt_at: None,
            delivered_at: Some(to_micros(*at)),
            status_code: Some(i64::from(*status_code)),
            error: None,
            attempted: true,
        },
        DeliveryOutcome::Failed { status_code, error, retry_at } => DeliveryWrite {
            status: if retry_at.is_some() { DeliveryStatus::Pending.as_str() } else { DeliveryStatus::Failed.as_str() },
            next_attempt_at: retry_at.map(to_micros),
            delivered_at: None,
            status_code: status_code.map(i64::from),
            error: Some(error.clone()),
            attempted: true,
        },
        DeliveryOutcome::NotYet { until } => DeliveryWrite {
            status: DeliveryStatus::Pending.as_str(),
            next_attempt_at: Some(to_micros(*until)),
            delivered_at: None,
            status_code: None,
            error: None,
            attempted: false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_keys_name_the_serialized_fields() {
        let input = serde_json::json!({"name": "n", "agent_id": uuid::Uuid::nil(), "integration_id": "i", "integration_type": "phone_call",
            "timezone": "Europe/Madrid", "retries": 3});
        let new = crate::domain::campaign::parse_new_campaign(&serde_json::from_value(input).expect("input")).expect("valid");
        let stored = serde_json::to_value(&new.settings).expect("serializes");
        assert_eq!(stored[SETTINGS_RETRIES], 3);
        assert_eq!(stored[SETTINGS_TIMEZONE], "Europe/Madrid");
        assert_eq!(stored[SETTINGS_NAME], "n");
    }

    const CAMPAIGN: &[u8] = br#"{"success":true,"campaign":{"id":42,"name":"Winter collections","description":"second notice","status":"pending","archived":false,"integration":{"id":"iph_Qk3vB8dLmW2xZt9sRy1a","type":"phone_call"},"agent":{"id":"5f0b7c1e-8a43-4d9e-b2a1-7c6d5e4f3a21","name":"Collections bot"},"created_at":"2026-12-01T08:30:00Z","started_at":null,"ended_at":null,"timezone":"Europe/Madrid","retries":2,"message_limit":500,"concurrency_limit":5,"first_message":"Hola {name}","template":null,"template_alt":null,"scheduling":{"mon":{"startTime":"10:00","stopTime":"19:00","active":true},"tue":{"startTime":"10:00","stopTime":"19:00","active":true},"wed":{"startTime":"10:00","stopTime":"19:00","active":true},"thu":{"startTime":"10:00","stopTime":"19:00","active":true},"fri":{"startTime":"10:00","stopTime":"14:00","active":true},"sat":{"startTime":"09:00","stopTime":"18:00","active":false},"sun":{"startTime":"09:00","stopTime":"18:00","active":false}},"cycles":{"enabled":true,"mode":"cooldown","max_iterations":3,"cooldown_minutes":120,"filter_statuses":["converted"],"schedule":null,"schedule_start_date":null,"schedule_end_date":null,"current_iteration":0,"last_iteration_at":null,"next_cycle_at":null},"analytics":null}}"#;

    /// A campaign created with the defaults, as most are.
    const DEFAULT_CAMPAIGN: &[u8] = br#"{"success":true,"campaign":{"id":90817,"name":"Spring renewals","description":null,"status":"pending","archived":false,"integration":{"id":"iph_7HqW2mXcV9bLp4KdZs0e","type":"phone_call"},"agent":{"id":"0c9d8e7f-6a5b-4c3d-9e2f-1a0b9c8d7e6f","name":"Renewals"},"created_at":"2027-03-14T11:02:45Z","started_at":null,"ended_at":null,"timezone":"America/Bogota","retries":1,"message_limit":250,"concurrency_limit":10,"first_message":null,"template":null,"template_alt":null,"scheduling":{"mon":{"startTime":"09:00","stopTime":"18:00","active":true},"tue":{"startTime":"09:00","stopTime":"18:00","active":true},"wed":{"startTime":"09:00","stopTime":"18:00","active":true},"thu":{"startTime":"09:00","stopTime":"18:00","active":true},"fri":{"startTime":"09:00","stopTime":"18:00","active":true},"sat":{"startTime":"09:00","stopTime":"18:00","active":false},"sun":{"startTime":"09:00","stopTime":"18:00","active":false}},"cycles":{"enabled":false,"mode":"cooldown","max_iterations":3,"cooldown_minutes":60,"filter_statuses":[],"schedule":null,"schedule_start_date":null,"schedule_end_date":null,"current_iteration":0,"last_iteration_at":null,"next_cycle_at":null},"analytics":null}}"#;

    #[test]
    fn a_packed_body_reads_back_unchanged_and_a_campaign_keeps_a_fraction_of_its_bytes() {
        for (campaign, at_most) in [(DEFAULT_CAMPAIGN, 200), (CAMPAIGN, 400)] {
            let packed = pack_body(campaign);
            assert_eq!(packed[0], PACKED);
            assert!(packed.len() <= at_most, "{} bytes packed from {}", packed.len(), campaign.len());
            assert_eq!(unpack_body(packed).expect("unpacks"), campaign);
        }
    }

    #[test]
    fn bodies_that_do_not_shrink_and_bodies_stored_before_packing_read_as_they_are() {
        for body in [&b""[..], b"{}", b"[1]"] {
            assert_eq!(pack_body(body), body);
            assert_eq!(unpack_body(body.to_vec()).expect("as it is"), body);
        }
        // A body that starts with the marker is packed whatever its size, so it cannot be misread.
        let marked = [PACKED, 1, 2, 3];
        assert_eq!(pack_body(&marked)[0], PACKED);
        assert_eq!(unpack_body(pack_body(&marked)).expect("unpacks"), marked);
    }

    #[test]
    fn bodies_packed_with_earlier_dictionaries_still_read_back() {
        for (version, dictionary) in [(1, DICTIONARY_V1), (2, DICTIONARY_V2), (3, DICTIONARY_V3)] {
            let mut packed = vec![PACKED, version];
            packed.extend_from_slice(&u32::try_from(CAMPAIGN.len()).expect("small").to_le_bytes());
            packed.extend(lz4_flex::block::compress_with_dict(CAMPAIGN, dictionary));
            assert_eq!(unpack_body(packed).expect("unpacks"), CAMPAIGN, "version {version}");
        }
        assert_eq!(pack_body(CAMPAIGN)[1], 4, "new records use the fourth");
    }

    #[test]
    fn a_damaged_packed_body_is_an_error_not_a_wrong_answer() {
        let packed = pack_body(CAMPAIGN);
        let mut unknown_dictionary = packed.clone();
        unknown_dictionary[1] = 5;
        let mut longer = packed.clone();
        longer[2] = longer[2].wrapping_add(1);
        let mut huge = packed.clone();
        huge[2..PACKED_HEADER].copy_from_slice(&u32::MAX.to_le_bytes());
        let truncated = packed[..packed.len() - 3].to_vec();
        for damaged in [unknown_dictionary, longer, huge, truncated, vec![PACKED, 1, 0]] {
            assert!(matches!(unpack_body(damaged), Err(StoreError::Corrupt(_))));
        }
    }
}
