//! Contacts on SQLite: batches written inside the writer's transaction with statements kept
//! prepared, counts kept per status so that totals never scan the table.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, params};
use sqlx::sqlite::{SqliteConnection, SqliteRow};
use sqlx::{QueryBuilder, Row, Sqlite};

use super::super::{AddContactsOutcome, BatchItem, ContactLookup, DeleteOutcome, ItemResult, ItemStatus, OrgId, StoreError, StoreResult};
use super::engine::add_counts;
use super::{first_row, opt_seconds, to_seconds};
use crate::domain::campaign::ContactStatus;
use crate::domain::contact::{Contact, IfDuplicate, NewContact};
use crate::store::shared::StoredRow;

pub(super) const CONTACT_COLUMNS: &str = "id, phone, name, context, extracted_data, f_id, tags, status, retries, failed_retries, \
     has_follow_up, call_count, billed_duration, last_call_at";

pub(super) fn contact_from_row(row: &SqliteRow) -> StoreResult<Contact> {
    let status: String = row.try_get("status")?;
    let extracted: String = row.try_get("extracted_data")?;
    let tags: String = row.try_get("tags")?;
    Ok(Contact {
        id: row.try_get("id")?,
        phone: row.try_get("phone")?,
        name: row.try_get("name")?,
        context: row.try_get("context")?,
        extracted_data: serde_json::from_str(&extracted)?,
        f_id: row.try_get("f_id")?,
        tags: serde_json::from_str(&tags)?,
        status: ContactStatus::parse(&status).ok_or_else(|| StoreError::Corrupt(format!("bad contact status {status:?}")))?,
        retries: row.try_get("retries")?,
        failed_retries: row.try_get("failed_retries")?,
        has_follow_up: row.try_get("has_follow_up")?,
        call_count: row.try_get("call_count")?,
        billed_duration: row.try_get("billed_duration")?,
        last_call_at: opt_seconds(row, "last_call_at")?,
    })
}

/// The campaign's status, when it belongs to `org`.
fn campaign_status(conn: &Connection, org: OrgId, campaign_id: i64) -> StoreResult<Option<String>> {
    first_row(conn, "SELECT status FROM campaigns WHERE org_id = ? AND id = ?", [org, campaign_id], |row| row.text("status"))
}

pub(super) fn add_contacts(
    conn: &Connection,
    org: OrgId,
    campaign_id: i64,
    items: Vec<BatchItem>,
    if_duplicate: IfDuplicate,
    at: jiff::Timestamp,
) -> StoreResult<AddContactsOutcome> {
    match campaign_status(conn, org, campaign_id)?.as_deref() {
        None => return Ok(AddContactsOutcome::CampaignNotFound),
        Some("finished") => return Ok(AddContactsOutcome::CampaignFinished),
        Some(_) => {}
    }
    let phones: Vec<&str> = items.iter().filter_map(|item| item.as_ref().ok()).map(|c| c.phone.as_str()).collect();
    let mut ids = existing_ids(conn, campaign_id, &phones)?;

    // The first item with a number not yet in the campaign creates it; later ones are duplicates.
    let mut results: Vec<Option<ItemResult>> = vec![None; items.len()];
    let mut new_phones: HashMap<&str, usize> = HashMap::new();
    let mut to_insert: Vec<&NewContact> = Vec::new();
    let mut duplicates: Vec<(usize, &NewContact)> = Vec::new();
    for (index, item) in items.iter().enumerate() {
        match item {
            Err((error, raw)) => {
                let contact = (!raw.is_empty()).then(|| raw.clone());
                results[index] = Some(ItemResult { index, status: ItemStatus::Failed, id: None, contact, error: Some(*error) });
            }
            Ok(contact) if ids.contains_key(&contact.phone) || new_phones.contains_key(contact.phone.as_str()) => {
                duplicates.push((index, contact));
            }
            Ok(contact) => {
                new_phones.insert(&contact.phone, index);
                to_insert.push(contact);
            }
        }
    }
    ids.extend(insert_contacts(conn, campaign_id, &to_insert, at)?);
    for (phone, index) in &new_phones {
        results[*index] = Some(ItemResult {
            index: *index,
            status: ItemStatus::Created,
            id: ids.get(*phone).copied(),
            contact: Some((*phone).to_owned()),
            error: None,
        });
    }
    for (index, contact) in duplicates {
        let id = ids.get(&contact.phone).copied();
        let status = match (if_duplicate, id) {
            (IfDuplicate::Update, Some(id)) => {
                overwrite_contact(conn, id, contact)?;
                ItemStatus::Updated
            }
            _ => ItemStatus::SkippedDuplicate,
        };
        results[index] = Some(ItemResult { index, status, id, contact: Some(contact.phone.clone()), error: None });
    }
    let created = i64::try_from(to_insert.len()).unwrap_or(i64::MAX);
    if created > 0 {
        add_counts(conn, campaign_id, [(ContactStatus::Queue, created)])?;
        conn.prepare_cached(
            "UPDATE campaigns SET contact_count = contact_count + ?, \
             status = CASE WHEN status = 'pending' THEN 'ready' ELSE status END WHERE id = ?",
        )?
        .execute([created, campaign_id])?;
    }
    Ok(AddContactsOutcome::Added(results.into_iter().flatten().collect()))
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
        "INSERT INTO contacts (campaign_id, phone, name, context, extracted_data, f_id, tags, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )?;
    let mut ids = Vec::with_capacity(contacts.len());
    for contact in contacts {
        insert.execute(params![
            campaign_id,
            contact.phone,
            contact.name,
            contact.context,
            serde_json::to_string(&contact.extracted_data)?,
            contact.f_id,
            serde_json::to_string(&contact.tags)?,
            to_seconds(at),
        ])?;
        ids.push((contact.phone.clone(), conn.last_insert_rowid()));
    }
    Ok(ids)
}

/// `if_duplicate: update` replaces the five client fields with the item's (absent ones clear).
fn overwrite_contact(conn: &Connection, id: i64, contact: &NewContact) -> StoreResult<()> {
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

pub(super) async fn list_contacts(
    conn: &mut SqliteConnection,
    org: OrgId,
    campaign_id: i64,
    status: Option<ContactStatus>,
    page_size: u32,
    page_index: u32,
) -> StoreResult<Option<super::super::ContactPage>> {
    let campaign =
        sqlx::query("SELECT contact_count, json_extract(settings, '$.timezone') AS timezone FROM campaigns WHERE org_id = ? AND id = ?")
            .bind(org)
            .bind(campaign_id)
            .fetch_optional(&mut *conn)
            .await?;
    let Some(campaign) = campaign else { return Ok(None) };
    let total_count: i64 = match status {
        None => campaign.try_get("contact_count")?,
        Some(status) => sqlx::query_scalar("SELECT count FROM campaign_contact_counts WHERE campaign_id = ? AND status = ?")
            .bind(campaign_id)
            .bind(status.as_str())
            .fetch_optional(&mut *conn)
            .await?
            .unwrap_or(0),
    };
    let offset = i64::from(page_size) * i64::from(page_index);
    // The inner query walks only the (campaign, [status,] id) index; rows are read for one page.
    let mut query = QueryBuilder::<Sqlite>::new("SELECT ");
    query.push(CONTACT_COLUMNS).push(" FROM contacts WHERE id IN (SELECT id FROM contacts WHERE campaign_id = ").push_bind(campaign_id);
    if let Some(status) = status {
        query.push(" AND status = ").push_bind(status.as_str());
    }
    query.push(" ORDER BY id LIMIT ").push_bind(i64::from(page_size)).push(" OFFSET ").push_bind(offset).push(") ORDER BY id");
    let rows = query.build().fetch_all(&mut *conn).await?;
    let contacts = rows.iter().map(contact_from_row).collect::<StoreResult<Vec<_>>>()?;
    Ok(Some(super::super::ContactPage { total_count, contacts, timezone: campaign.try_get("timezone")? }))
}

pub(super) async fn get_contact(conn: &mut SqliteConnection, org: OrgId, campaign_id: i64, contact_id: i64) -> StoreResult<ContactLookup> {
    let timezone: Option<String> =
        sqlx::query_scalar("SELECT json_extract(settings, '$.timezone') FROM campaigns WHERE org_id = ? AND id = ?")
            .bind(org)
            .bind(campaign_id)
            .fetch_optional(&mut *conn)
            .await?;
    let Some(timezone) = timezone else { return Ok(ContactLookup::CampaignNotFound) };
    let mut query = QueryBuilder::<Sqlite>::new("SELECT ");
    query.push(CONTACT_COLUMNS).push(" FROM contacts WHERE campaign_id = ").push_bind(campaign_id).push(" AND id = ").push_bind(contact_id);
    match query.build().fetch_optional(&mut *conn).await? {
        Some(row) => Ok(ContactLookup::Found { contact: Box::new(contact_from_row(&row)?), timezone }),
        None => Ok(ContactLookup::ContactNotFound),
    }
}

pub(super) fn delete_contact(conn: &Connection, org: OrgId, campaign_id: i64, contact_id: i64) -> StoreResult<DeleteOutcome> {
    if campaign_status(conn, org, campaign_id)?.is_none() {
        return Ok(DeleteOutcome::CampaignNotFound);
    }
    let found = first_row(
        conn,
        "SELECT status, processed, answered FROM contacts WHERE campaign_id = ? AND id = ?",
        [campaign_id, contact_id],
        |row| Ok((row.text("status")?, row.int("processed")?, row.int("answered")?)),
    )?;
    let Some((status, processed, answered)) = found else { return Ok(DeleteOutcome::ContactNotFound) };
    let status = ContactStatus::parse(&status).ok_or_else(|| StoreError::Corrupt(format!("bad contact status {status:?}")))?;
    if !status.is_deletable() {
        return Ok(DeleteOutcome::NotDeletable(status));
    }
    conn.prepare_cached("DELETE FROM contacts WHERE id = ?")?.execute([contact_id])?;
    add_counts(conn, campaign_id, [(status, -1)])?;
    // The analytics that count contacts ever processed or answered count only contacts still there.
    conn.prepare_cached(
        "UPDATE campaigns SET contact_count = contact_count - 1, contacts_processed = contacts_processed - ?, \
         contacts_answered = contacts_answered - ? WHERE id = ?",
    )?
    .execute([processed, answered, campaign_id])?;
    Ok(DeleteOutcome::Deleted)
}
