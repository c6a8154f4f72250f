//! Contacts on PostgreSQL: batches written with array-valued statements (`UNNEST`) in the
//! request's transaction, counts kept per status so that totals never scan the table.

use std::collections::{HashMap, HashSet};

use sqlx::Row;
use sqlx::postgres::PgConnection;

use super::super::shared::{
    SETTINGS_TIMEZONE, contact_columns, contact_from_row, parse_campaign_status, parse_channel, parse_contact_status, timezone_from,
    zone_columns, zone_count_from_row, zone_deltas, zone_key,
};
use super::super::{AddContactsOutcome, BatchItem, ContactLookup, ContactPage, DeleteOutcome, OrgId, StoreResult};
use super::attempts::{add_counts, add_zone_counts};
use super::to_seconds;
use crate::domain::campaign::{CampaignStatus, Channel, ContactStatus};
use crate::domain::contact::{BatchPlan, IfDuplicate, NewContact, suppress_items};
use crate::domain::contact_hours::TimezoneSource;
use crate::domain::dnc::DncChannel;

/// The campaign's status and channel, when it belongs to `org`, with its row locked for the
/// transaction: writes to a campaign's contacts and counters take turns.
async fn lock_campaign(conn: &mut PgConnection, org: OrgId, campaign_id: i64) -> StoreResult<Option<(CampaignStatus, Channel)>> {
    let row = sqlx::query("SELECT status, channel FROM campaigns WHERE org_id = $1 AND id = $2 FOR UPDATE")
        .bind(org)
        .bind(campaign_id)
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|row| Ok((parse_campaign_status(row.try_get("status")?)?, parse_channel(row.try_get("channel")?)?))).transpose()
}

/// The numbers among `phones` that the organization's do-not-contact list suppresses on `channel`.
pub(super) async fn suppressed_numbers(
    conn: &mut PgConnection,
    org: OrgId,
    channel: Channel,
    phones: &[&str],
) -> StoreResult<HashSet<String>> {
    if phones.is_empty() {
        return Ok(HashSet::new());
    }
    let suppressed: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT contact FROM dnc_entries WHERE org_id = $1 AND contact = ANY($2) AND channel = ANY($3)")
            .bind(org)
            .bind(phones)
            .bind(DncChannel::suppressing(channel))
            .fetch_all(&mut *conn)
            .await?;
    Ok(suppressed.into_iter().collect())
}

pub(super) async fn add_contacts(
    conn: &mut PgConnection,
    org: OrgId,
    campaign_id: i64,
    mut items: Vec<BatchItem>,
    if_duplicate: IfDuplicate,
    at: jiff::Timestamp,
) -> StoreResult<AddContactsOutcome> {
    let Some((status, channel)) = lock_campaign(conn, org, campaign_id).await? else { return Ok(AddContactsOutcome::CampaignNotFound) };
    if !status.accepts_contacts() {
        return Ok(AddContactsOutcome::CampaignFinished);
    }
    let numbers: Vec<&str> = items.iter().filter_map(|item| item.as_ref().ok()).map(|c| c.phone.as_str()).collect();
    let suppressed = suppressed_numbers(conn, org, channel, &numbers).await?;
    suppress_items(&mut items, &suppressed);
    let phones: Vec<&str> = items.iter().filter_map(|item| item.as_ref().ok()).map(|c| c.phone.as_str()).collect();
    let mut ids = existing_ids(conn, campaign_id, &phones).await?;
    let plan = BatchPlan::new(&items, |phone| ids.contains_key(phone));
    let created = i64::try_from(plan.new.len()).unwrap_or(i64::MAX);
    ids.extend(insert_contacts(conn, campaign_id, &plan.new, at).await?);
    add_zone_counts(conn, campaign_id, &zone_deltas(plan.new.iter().map(|c| (zone_key(c.timezone.as_ref()), 1)))).await?;
    let (updates, results) = plan.resolve(&ids, if_duplicate);
    overwrite_contacts(conn, campaign_id, &updates).await?;
    if created > 0 {
        add_counts(conn, campaign_id, &[(ContactStatus::Queue, created)]).await?;
        sqlx::query("UPDATE campaigns SET contact_count = contact_count + $1, status = $2 WHERE id = $3")
            .bind(created)
            .bind(status.with_contacts().as_str())
            .bind(campaign_id)
            .execute(&mut *conn)
            .await?;
        super::webhooks::record_status_change(conn, org, campaign_id, status.with_contacts(), status, at).await?;
    }
    Ok(AddContactsOutcome::Added(results))
}

async fn existing_ids(conn: &mut PgConnection, campaign_id: i64, phones: &[&str]) -> StoreResult<HashMap<String, i64>> {
    if phones.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = sqlx::query("SELECT id, phone FROM contacts WHERE campaign_id = $1 AND phone = ANY($2)")
        .bind(campaign_id)
        .bind(phones)
        .fetch_all(&mut *conn)
        .await?;
    let mut ids = HashMap::with_capacity(rows.len());
    for row in rows {
        ids.insert(row.try_get("phone")?, row.try_get("id")?);
    }
    Ok(ids)
}

/// Inserts the contacts in their order (ids ascending, as on SQLite); returns their ids by number.
async fn insert_contacts(
    conn: &mut PgConnection,
    campaign_id: i64,
    contacts: &[&NewContact],
    at: jiff::Timestamp,
) -> StoreResult<HashMap<String, i64>> {
    if contacts.is_empty() {
        return Ok(HashMap::new());
    }
    let mut phones = Vec::with_capacity(contacts.len());
    let mut names = Vec::with_capacity(contacts.len());
    let mut context = Vec::with_capacity(contacts.len());
    let mut extracted = Vec::with_capacity(contacts.len());
    let mut f_ids = Vec::with_capacity(contacts.len());
    let mut tags = Vec::with_capacity(contacts.len());
    let (mut zones, mut zone_sources) = (Vec::with_capacity(contacts.len()), Vec::with_capacity(contacts.len()));
    for contact in contacts {
        phones.push(contact.phone.as_str());
        names.push(contact.name.as_deref());
        context.push(contact.context.as_deref());
        extracted.push(serde_json::to_string(&contact.extracted_data)?);
        f_ids.push(contact.f_id.as_deref());
        tags.push(serde_json::to_string(&contact.tags)?);
        let (zone, source) = zone_columns(contact.timezone.as_ref());
        zones.push(zone);
        zone_sources.push(source);
    }
    let rows = sqlx::query(
        "INSERT INTO contacts (campaign_id, phone, name, context, extracted_data, f_id, tags, created_at, timezone, timezone_source) \
         SELECT $1, v.phone, v.name, v.context, v.extracted, v.f_id, v.tags, $2, v.timezone, v.timezone_source \
         FROM UNNEST($3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[]) \
           WITH ORDINALITY AS v(phone, name, context, extracted, f_id, tags, timezone, timezone_source, n) ORDER BY v.n \
         RETURNING id, phone",
    )
    .bind(campaign_id)
    .bind(to_seconds(at))
    .bind(&phones)
    .bind(&names)
    .bind(&context)
    .bind(&extracted)
    .bind(&f_ids)
    .bind(&tags)
    .bind(&zones)
    .bind(&zone_sources)
    .fetch_all(&mut *conn)
    .await?;
    let mut ids = HashMap::with_capacity(rows.len());
    for row in rows {
        ids.insert(row.try_get("phone")?, row.try_get("id")?);
    }
    Ok(ids)
}

/// `if_duplicate: update` replaces the five client fields with the item's (absent ones clear),
/// and the zone when the item gives one (the number, hence its zone, is the same); a queued
/// contact moves to its new zone's count. Applied in the order of the batch: a number repeated in
/// a batch keeps its last item (and the last zone given).
async fn overwrite_contacts(conn: &mut PgConnection, campaign_id: i64, updates: &[(i64, &NewContact)]) -> StoreResult<()> {
    if updates.is_empty() {
        return Ok(());
    }
    // One row per contact (an UPDATE changes a row once): the last item wins, as sequential updates.
    let mut last: HashMap<i64, &NewContact> = HashMap::with_capacity(updates.len());
    let mut given: HashMap<i64, &str> = HashMap::new();
    for (id, contact) in updates {
        last.insert(*id, contact);
        if let Some(zone) = contact.timezone.as_ref().filter(|zone| zone.source == TimezoneSource::Given) {
            given.insert(*id, zone.zone.name());
        }
    }
    move_to_given_zones(conn, campaign_id, &given).await?;
    let mut ids = Vec::with_capacity(last.len());
    let mut names = Vec::with_capacity(last.len());
    let mut context = Vec::with_capacity(last.len());
    let mut extracted = Vec::with_capacity(last.len());
    let mut f_ids = Vec::with_capacity(last.len());
    let mut tags = Vec::with_capacity(last.len());
    for (id, contact) in last {
        ids.push(id);
        names.push(contact.name.as_deref());
        context.push(contact.context.as_deref());
        extracted.push(serde_json::to_string(&contact.extracted_data)?);
        f_ids.push(contact.f_id.as_deref());
        tags.push(serde_json::to_string(&contact.tags)?);
    }
    sqlx::query(
        "UPDATE contacts SET name = v.name, context = v.context, extracted_data = v.extracted, f_id = v.f_id, tags = v.tags \
         FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[]) \
           AS v(id, name, context, extracted, f_id, tags) WHERE contacts.id = v.id",
    )
    .bind(&ids)
    .bind(&names)
    .bind(&context)
    .bind(&extracted)
    .bind(&f_ids)
    .bind(&tags)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Gives contacts the zones their items named (`given`), moving the queued ones' counts.
async fn move_to_given_zones(conn: &mut PgConnection, campaign_id: i64, given: &HashMap<i64, &str>) -> StoreResult<()> {
    if given.is_empty() {
        return Ok(());
    }
    let (ids, zones): (Vec<i64>, Vec<&str>) = given.iter().map(|(id, zone)| (*id, *zone)).unzip();
    let before = sqlx::query("SELECT id, status, COALESCE(timezone, '') AS zone FROM contacts WHERE id = ANY($1)")
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await?;
    let mut moves: Vec<(String, i64)> = Vec::new();
    for row in &before {
        let old: String = row.try_get("zone")?;
        let new = given.get(&row.try_get::<i64, _>("id")?).copied().unwrap_or_default();
        if old != new {
            let queued = i64::from(parse_contact_status(row.try_get("status")?)? == ContactStatus::Queue);
            // The new zone gets its row even when the contact is not queued: a retrying
            // contact's zone must be among the campaign's zones for the claim.
            moves.extend([(new.to_owned(), queued), (old, -queued)]);
        }
    }
    add_zone_counts(conn, campaign_id, &zone_deltas(moves.iter().map(|(key, delta)| (key.as_str(), *delta)))).await?;
    sqlx::query(
        "UPDATE contacts SET timezone = v.timezone, timezone_source = 'given' \
         FROM UNNEST($1::bigint[], $2::text[]) AS v(id, timezone) WHERE contacts.id = v.id",
    )
    .bind(&ids)
    .bind(&zones)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The queued contacts of each zone of a campaign of `org` (`None`: the campaign's own zone);
/// every zone its contacts have had is listed, at 0 when none of them is queued.
pub(super) async fn zone_queue_counts(conn: &mut PgConnection, org: OrgId, campaign_id: i64) -> StoreResult<Vec<(Option<String>, i64)>> {
    sqlx::query(
        "SELECT z.timezone, z.queued FROM campaign_zones z JOIN campaigns c ON c.id = z.campaign_id \
         WHERE c.org_id = $1 AND z.campaign_id = $2 ORDER BY z.timezone",
    )
    .bind(org)
    .bind(campaign_id)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(zone_count_from_row)
    .collect()
}

pub(super) async fn list_contacts(
    conn: &mut PgConnection,
    org: OrgId,
    campaign_id: i64,
    status: Option<ContactStatus>,
    page_size: u32,
    page_index: u32,
) -> StoreResult<Option<ContactPage>> {
    let campaign = sqlx::query("SELECT contact_count, settings::jsonb ->> $3 AS timezone FROM campaigns WHERE org_id = $1 AND id = $2")
        .bind(org)
        .bind(campaign_id)
        .bind(SETTINGS_TIMEZONE)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(campaign) = campaign else { return Ok(None) };
    let total_count: i64 = match status {
        None => campaign.try_get("contact_count")?,
        Some(status) => sqlx::query_scalar("SELECT count FROM campaign_contact_counts WHERE campaign_id = $1 AND status = $2")
            .bind(campaign_id)
            .bind(status.as_str())
            .fetch_optional(&mut *conn)
            .await?
            .unwrap_or(0),
    };
    let offset = i64::from(page_size) * i64::from(page_index);
    let query = concat!(
        "SELECT ",
        contact_columns!(),
        " FROM contacts WHERE campaign_id = $1 AND ($2::text IS NULL OR status = $2) ORDER BY id LIMIT $3 OFFSET $4"
    );
    let rows = sqlx::query(query)
        .bind(campaign_id)
        .bind(status.map(ContactStatus::as_str))
        .bind(i64::from(page_size))
        .bind(offset)
        .fetch_all(&mut *conn)
        .await?;
    let contacts = rows.iter().map(contact_from_row).collect::<StoreResult<Vec<_>>>()?;
    Ok(Some(ContactPage { total_count, contacts, timezone: timezone_from(campaign.try_get("timezone")?)? }))
}

pub(super) async fn get_contact(conn: &mut PgConnection, org: OrgId, campaign_id: i64, contact_id: i64) -> StoreResult<ContactLookup> {
    let timezone: Option<String> = sqlx::query_scalar("SELECT settings::jsonb ->> $3 FROM campaigns WHERE org_id = $1 AND id = $2")
        .bind(org)
        .bind(campaign_id)
        .bind(SETTINGS_TIMEZONE)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(timezone) = timezone else { return Ok(ContactLookup::CampaignNotFound) };
    let timezone = timezone_from(&timezone)?;
    let query = concat!("SELECT ", contact_columns!(), " FROM contacts WHERE campaign_id = $1 AND id = $2");
    match sqlx::query(query).bind(campaign_id).bind(contact_id).fetch_optional(&mut *conn).await? {
        Some(row) => Ok(ContactLookup::Found { contact: Box::new(contact_from_row(&row)?), timezone }),
        None => Ok(ContactLookup::ContactNotFound),
    }
}

pub(super) async fn delete_contact(conn: &mut PgConnection, org: OrgId, campaign_id: i64, contact_id: i64) -> StoreResult<DeleteOutcome> {
    if lock_campaign(conn, org, campaign_id).await?.is_none() {
        return Ok(DeleteOutcome::CampaignNotFound);
    }
    let row = sqlx::query(
        "SELECT status, processed, answered, COALESCE(timezone, '') AS zone FROM contacts WHERE campaign_id = $1 AND id = $2 FOR UPDATE",
    )
    .bind(campaign_id)
    .bind(contact_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(DeleteOutcome::ContactNotFound) };
    let status = parse_contact_status(row.try_get("status")?)?;
    if !status.is_deletable() {
        return Ok(DeleteOutcome::NotDeletable(status));
    }
    sqlx::query("DELETE FROM contacts WHERE id = $1").bind(contact_id).execute(&mut *conn).await?;
    add_counts(conn, campaign_id, &[(status, -1)]).await?;
    if status == ContactStatus::Queue {
        add_zone_counts(conn, campaign_id, &[(row.try_get("zone")?, -1)]).await?;
    }
    // The analytics that count contacts ever processed or answered count only contacts still there.
    sqlx::query(
        "UPDATE campaigns SET contact_count = contact_count - 1, contacts_processed = contacts_processed - $1, \
         contacts_answered = contacts_answered - $2 WHERE id = $3",
    )
    .bind(i64::from(row.try_get::<bool, _>("processed")?))
    .bind(i64::from(row.try_get::<bool, _>("answered")?))
    .bind(campaign_id)
    .execute(&mut *conn)
    .await?;
    Ok(DeleteOutcome::Deleted)
}
