//! Contacts on SQLite: batches written inside the writer's transaction with statements kept
//! prepared, counts kept per status so that totals never scan the table.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use rusqlite::{Connection, OptionalExtension, params};

use super::super::shared::{
    SETTINGS_TIMEZONE, StoredRow, contact_columns, contact_from_row, parse_campaign_status, parse_channel, parse_contact_status,
    timezone_from, zone_columns, zone_count_from_row, zone_deltas, zone_key,
};
use super::super::{AddContactsOutcome, BatchItem, ContactLookup, ContactPage, DeleteOutcome, OrgId, StoreResult};
use super::attempts::{add_counts, add_zone_counts};
use super::{all_rows, first_row, to_seconds};
use crate::domain::campaign::{CampaignStatus, Channel, ContactStatus};
use crate::domain::contact::{BatchPlan, IfDuplicate, NewContact, suppress_items};
use crate::domain::contact_hours::TimezoneSource;
use crate::domain::dnc::DncChannel;

/// The campaign's status and channel, when it belongs to `org`.
fn campaign_status(conn: &Connection, org: OrgId, campaign_id: i64) -> StoreResult<Option<(CampaignStatus, Channel)>> {
    first_row(conn, "SELECT status, channel FROM campaigns WHERE org_id = ? AND id = ?", [org, campaign_id], |row| {
        Ok((parse_campaign_status(&row.text("status")?)?, parse_channel(&row.text("channel")?)?))
    })
}

/// The numbers among `phones` that the organization's do-not-contact list suppresses on `channel`.
pub(super) fn suppressed_numbers<'a>(
    conn: &Connection,
    org: OrgId,
    channel: Channel,
    phones: impl IntoIterator<Item = &'a str>,
) -> StoreResult<HashSet<String>> {
    let [own, all] = DncChannel::suppressing(channel);
    let phones = serde_json::to_string(&phones.into_iter().collect::<Vec<_>>())?;
    // One statement for the batch: a probe of the (org, number, channel) index per number.
    let mut lookup = conn.prepare_cached(
        "SELECT DISTINCT contact FROM dnc_entries WHERE org_id = ?1 AND contact IN (SELECT value FROM json_each(?2)) AND channel IN (?3, ?4)",
    )?;
    let suppressed = lookup.query_map(params![org, phones, own, all], |row| row.get::<_, String>(0))?.collect::<Result<_, _>>()?;
    Ok(suppressed)
}

pub(super) fn add_contacts(
    conn: &Connection,
    org: OrgId,
    campaign_id: i64,
    mut items: Vec<BatchItem>,
    if_duplicate: IfDuplicate,
    at: jiff::Timestamp,
) -> StoreResult<AddContactsOutcome> {
    let Some((status, channel)) = campaign_status(conn, org, campaign_id)? else { return Ok(AddContactsOutcome::CampaignNotFound) };
    if !status.accepts_contacts() {
        return Ok(AddContactsOutcome::CampaignFinished);
    }
    let suppressed = suppressed_numbers(conn, org, channel, items.iter().filter_map(|item| item.as_ref().ok()).map(|c| c.phone.as_str()))?;
    suppress_items(&mut items, &suppressed);
    let phones: Vec<&str> = items.iter().filter_map(|item| item.as_ref().ok()).map(|c| c.phone.as_str()).collect();
    let mut ids = existing_ids(conn, campaign_id, &phones)?;
    let plan = BatchPlan::new(&items, |phone| ids.contains_key(phone));
    let created = i64::try_from(plan.new.len()).unwrap_or(i64::MAX);
    ids.extend(insert_contacts(conn, campaign_id, &plan.new, at)?);
    add_zone_counts(conn, campaign_id, &zone_deltas(plan.new.iter().map(|c| (zone_key(c.timezone.as_ref()), 1))))?;
    let (updates, results) = plan.resolve(&ids, if_duplicate);
    for (id, contact) in updates {
        overwrite_contact(conn, campaign_id, id, contact)?;
    }
    if created > 0 {
        add_counts(conn, campaign_id, [(ContactStatus::Queue, created)])?;
        conn.prepare_cached("UPDATE campaigns SET contact_count = contact_count + ?, status = ? WHERE id = ?")?.execute(params![
            created,
            status.with_contacts().as_str(),
            campaign_id
        ])?;
        super::webhooks::record_status_change(conn, org, campaign_id, status.with_contacts(), status, at)?;
    }
    Ok(AddContactsOutcome::Added(results))
}

/// The ids of the campaign's contacts with these numbers.
fn existing_ids(conn: &Connection, campaign_id: i64, phones: &[&str]) -> StoreResult<HashMap<String, i64>> {
    let mut lookup = conn.prepare_cached("SELECT id FROM contacts WHERE campaign_id = ? AND phone = ?")?;
    let mut ids = HashMap::with_capacity(phones.len());
    for phone in phones {
        if let Some(id) = lookup.query_row(params![campaign_id, phone], |row| row.get(0)).optional()? {
            ids.insert((*phone).to_owned(), id);
        }
    }
    Ok(ids)
}

/// Inserts the contacts and returns their ids by number.
fn insert_contacts(conn: &Connection, campaign_id: i64, contacts: &[&NewContact], at: jiff::Timestamp) -> StoreResult<Vec<(String, i64)>> {
    let mut insert = conn.prepare_cached(
        "INSERT INTO contacts (campaign_id, phone, name, context, extracted_data, f_id, tags, created_at, timezone, timezone_source) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )?;
    let mut ids = Vec::with_capacity(contacts.len());
    for contact in contacts {
        let (timezone, timezone_source) = zone_columns(contact.timezone.as_ref());
        insert.execute(params![
            campaign_id,
            contact.phone.as_str(),
            contact.name,
            contact.context,
            serde_json::to_string(&contact.extracted_data)?,
            contact.f_id,
            serde_json::to_string(&contact.tags)?,
            to_seconds(at),
            timezone,
            timezone_source,
        ])?;
        ids.push((contact.phone.as_str().to_owned(), conn.last_insert_rowid()));
    }
    Ok(ids)
}

/// `if_duplicate: update` replaces the five client fields with the item's (absent ones clear), and
/// the zone when the item gives one (the number, hence its zone, is the same); a queued contact
/// moves to its new zone's count.
fn overwrite_contact(conn: &Connection, campaign_id: i64, id: i64, contact: &NewContact) -> StoreResult<()> {
    if let Some(given) = contact.timezone.as_ref().filter(|zone| zone.source == TimezoneSource::Given) {
        let (status, old) = conn
            .prepare_cached("SELECT status, COALESCE(timezone, '') FROM contacts WHERE id = ?")?
            .query_row([id], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)))?;
        let queued = i64::from(parse_contact_status(&status)? == ContactStatus::Queue);
        let new = given.zone.name();
        if old != new {
            // The new zone gets its row even when the contact is not queued: a retrying
            // contact's zone must be among the campaign's zones for the claim.
            add_zone_counts(conn, campaign_id, &[(old.as_str(), -queued), (new, queued)])?;
        }
        conn.prepare_cached("UPDATE contacts SET timezone = ?, timezone_source = ? WHERE id = ?")?.execute(params![
            new,
            given.source.as_str(),
            id
        ])?;
    }
    conn.prepare_cached("UPDATE contacts SET name = ?, context = ?, extracted_data = ?, f_id = ?, tags = ? WHERE id = ?")?.execute(
        params![
            contact.name,
            contact.context,
            serde_json::to_string(&contact.extracted_data)?,
            contact.f_id,
            serde_json::to_string(&contact.tags)?,
            id,
        ],
    )?;
    Ok(())
}

/// The campaign's contact count and timezone, when it belongs to `org`.
static CAMPAIGN_OF_CONTACTS: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT contact_count, json_extract(settings, '$.{SETTINGS_TIMEZONE}') AS timezone FROM campaigns WHERE org_id = ? AND id = ?")
});
/// One page: the inner query walks only the (campaign, id) index; rows are read for one page.
const CONTACTS_PAGE: &str = concat!(
    "SELECT ",
    contact_columns!(),
    " FROM contacts WHERE id IN (SELECT id FROM contacts WHERE campaign_id = ? ORDER BY id LIMIT ? OFFSET ?) ORDER BY id"
);
/// One page of the contacts in one status, walking the (campaign, status, id) index.
const CONTACTS_PAGE_BY_STATUS: &str = concat!(
    "SELECT ",
    contact_columns!(),
    " FROM contacts WHERE id IN (SELECT id FROM contacts WHERE campaign_id = ? AND status = ? ORDER BY id LIMIT ? OFFSET ?) ORDER BY id"
);
const CONTACT_BY_ID: &str = concat!("SELECT ", contact_columns!(), " FROM contacts WHERE campaign_id = ? AND id = ?");

pub(super) fn list_contacts(
    conn: &Connection,
    org: OrgId,
    campaign_id: i64,
    status: Option<ContactStatus>,
    page_size: u32,
    page_index: u32,
) -> StoreResult<Option<ContactPage>> {
    let campaign = first_row(conn, &CAMPAIGN_OF_CONTACTS, [org, campaign_id], |row| {
        Ok((row.int("contact_count")?, timezone_from(&row.text("timezone")?)?))
    })?;
    let Some((contact_count, timezone)) = campaign else { return Ok(None) };
    let (limit, offset) = (i64::from(page_size), i64::from(page_size) * i64::from(page_index));
    let (total_count, contacts) = match status {
        None => (contact_count, all_rows(conn, CONTACTS_PAGE, params![campaign_id, limit, offset], |row| contact_from_row(row))?),
        Some(status) => {
            let count = first_row(
                conn,
                "SELECT count FROM campaign_contact_counts WHERE campaign_id = ? AND status = ?",
                params![campaign_id, status.as_str()],
                |row| row.int("count"),
            )?;
            let page = params![campaign_id, status.as_str(), limit, offset];
            (count.unwrap_or(0), all_rows(conn, CONTACTS_PAGE_BY_STATUS, page, |row| contact_from_row(row))?)
        }
    };
    Ok(Some(ContactPage { total_count, contacts, timezone }))
}

pub(super) fn get_contact(conn: &Connection, org: OrgId, campaign_id: i64, contact_id: i64) -> StoreResult<ContactLookup> {
    let timezone = first_row(conn, &CAMPAIGN_OF_CONTACTS, [org, campaign_id], |row| timezone_from(&row.text("timezone")?))?;
    let Some(timezone) = timezone else { return Ok(ContactLookup::CampaignNotFound) };
    match first_row(conn, CONTACT_BY_ID, [campaign_id, contact_id], |row| contact_from_row(row))? {
        Some(contact) => Ok(ContactLookup::Found { contact: Box::new(contact), timezone }),
        None => Ok(ContactLookup::ContactNotFound),
    }
}

pub(super) fn delete_contact(conn: &Connection, org: OrgId, campaign_id: i64, contact_id: i64) -> StoreResult<DeleteOutcome> {
    if campaign_status(conn, org, campaign_id)?.is_none() {
        return Ok(DeleteOutcome::CampaignNotFound);
    }
    let found = first_row(
        conn,
        "SELECT status, processed, answered, COALESCE(timezone, '') AS zone FROM contacts WHERE campaign_id = ? AND id = ?",
        [campaign_id, contact_id],
        |row| Ok((row.text("status")?, row.int("processed")?, row.int("answered")?, row.text("zone")?)),
    )?;
    let Some((status, processed, answered, zone)) = found else { return Ok(DeleteOutcome::ContactNotFound) };
    let status = parse_contact_status(&status)?;
    if !status.is_deletable() {
        return Ok(DeleteOutcome::NotDeletable(status));
    }
    conn.prepare_cached("DELETE FROM contacts WHERE id = ?")?.execute([contact_id])?;
    add_counts(conn, campaign_id, [(status, -1)])?;
    if status == ContactStatus::Queue {
        add_zone_counts(conn, campaign_id, &[(zone.as_str(), -1)])?;
    }
    // The analytics that count contacts ever processed or answered count only contacts still there.
    conn.prepare_cached(
        "UPDATE campaigns SET contact_count = contact_count - 1, contacts_processed = contacts_processed - ?, \
         contacts_answered = contacts_answered - ? WHERE id = ?",
    )?
    .execute([processed, answered, campaign_id])?;
    Ok(DeleteOutcome::Deleted)
}

/// The queued contacts of each zone of a campaign of `org` (`None`: the campaign's own zone);
/// every zone its contacts have had is listed, at 0 when none of them is queued.
pub(super) fn zone_queue_counts(conn: &Connection, org: OrgId, campaign_id: i64) -> StoreResult<Vec<(Option<String>, i64)>> {
    all_rows(
        conn,
        "SELECT z.timezone, z.queued FROM campaign_zones z JOIN campaigns c ON c.id = z.campaign_id \
         WHERE c.org_id = ? AND z.campaign_id = ? ORDER BY z.timezone",
        [org, campaign_id],
        |row| zone_count_from_row(row),
    )
}
