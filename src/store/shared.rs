//! Backend-independent pieces of the stores: parsing stored text into the domain, and the
//! decisions of the engine's writes (which template a claim uses, how events change attempts,
//! contacts and counters). Each backend reads rows and writes the results in its own SQL.

use std::collections::HashMap;

use jiff::Timestamp;
use uuid::Uuid;

use super::{CampaignFilter, IdempotencyRecord, OrgId, StoreError, StoreResult, StoredResponse, from_seconds, to_seconds};
use crate::domain::agent::Agent;
use crate::domain::analytics::CampaignCounters;
use crate::domain::attempt::AttemptStatus;
use crate::domain::campaign::{AgentRef, Campaign, CampaignStatus, Channel, ContactStatus, IntegrationRef};
use crate::domain::integration::{Integration, Provider, ProviderConfig};

pub(crate) const MINUTES_PER_DAY: i64 = 24 * 60;

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
    let config = match provider {
        Provider::Simulator => ProviderConfig::Simulator(serde_json::from_str(config)?),
        Provider::Webhook => ProviderConfig::Webhook(serde_json::from_str(config)?),
    };
    Ok((provider, config))
}

/// An integration's provider config as stored.
pub(crate) fn config_json(config: &ProviderConfig) -> StoreResult<String> {
    Ok(match config {
        ProviderConfig::Simulator(c) => serde_json::to_string(c)?,
        ProviderConfig::Webhook(c) => serde_json::to_string(c)?,
    })
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
    ($($row:ty),*) => {$(
        impl StoredRow for $row {
            fn int(&self, column: &str) -> StoreResult<i64> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
            fn opt_int(&self, column: &str) -> StoreResult<Option<i64>> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
            fn text(&self, column: &str) -> StoreResult<String> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
            fn opt_text(&self, column: &str) -> StoreResult<Option<String>> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
            fn flag(&self, column: &str) -> StoreResult<bool> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
        }
    )*};
}
stored_row!(sqlx::sqlite::SqliteRow, sqlx::postgres::PgRow);

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
    })
}

/// Appends the campaign list's filters to a query whose FROM clause names the campaigns table `c`.
pub(crate) fn push_campaign_filters<DB: sqlx::Database>(query: &mut sqlx::QueryBuilder<DB>, org: OrgId, filter: &CampaignFilter)
where
    for<'t> i64: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> String: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> &'static str: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
{
    query.push(" WHERE c.org_id = ").push_bind(org);
    if !filter.include_archived {
        query.push(" AND c.archived = FALSE");
    }
    if let Some(agent) = filter.agent_id {
        query.push(" AND c.agent_id = ").push_bind(agent.to_string());
    }
    if let Some(status) = filter.status {
        query.push(" AND c.status = ").push_bind(status.as_str());
    }
    if let Some(channel) = filter.channel {
        query.push(" AND c.channel = ").push_bind(channel.as_str());
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
            query.push(" AND ").push(clause).push_bind(to_seconds(at));
        }
    }
}

pub(crate) fn minute_of(at: Timestamp) -> i64 {
    at.as_second().div_euclid(60)
}

/// First byte of a packed response body. A body that starts with any other byte is stored as it
/// is: every body stored before packing existed is JSON, and JSON text never starts with NUL.
const PACKED: u8 = 0;
/// A packed body's header: [`PACKED`], the dictionary's version, the body's length (u32, LE).
const PACKED_HEADER: usize = 6;
/// Typical response bodies (a campaign's detail, a contacts batch's answer, an error). Bodies
/// are LZ4-compressed against them: most of a response's bytes are field names and values that
/// recur, so a 1.2 KB campaign keeps 170 to 310 bytes. Records packed with a dictionary can only
/// be read with the same bytes: never edit this file; add a new version beside it instead.
const DICTIONARY_V1: &[u8] = include_bytes!("response_dictionary_v1.json");
/// Larger than any response: a corrupt length must not make a huge allocation.
const MAX_UNPACKED_BODY: usize = 1 << 28;

/// A response body as the stores keep it: compressed when that is smaller (see [`DICTIONARY_V1`]).
/// Fewer bytes per record means fewer pages written and synced with each commit.
pub(crate) fn pack_body(body: &[u8]) -> Vec<u8> {
    let Ok(length) = u32::try_from(body.len()) else { return body.to_vec() };
    let mut packed = vec![0; PACKED_HEADER + lz4_flex::block::get_maximum_output_size(body.len())];
    packed[0] = PACKED;
    packed[1] = 1;
    packed[2..PACKED_HEADER].copy_from_slice(&length.to_le_bytes());
    match lz4_flex::block::compress_into_with_dict(body, &mut packed[PACKED_HEADER..], DICTIONARY_V1) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn a_damaged_packed_body_is_an_error_not_a_wrong_answer() {
        let packed = pack_body(CAMPAIGN);
        let mut unknown_dictionary = packed.clone();
        unknown_dictionary[1] = 2;
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
