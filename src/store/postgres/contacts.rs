//! Contacts on PostgreSQL: batches written with array-valued statements (`UNNEST`) in the
//! request's transaction, counts kept per status so that totals never scan the table.

use std::collections::HashMap;

use sqlx::Row;
use sqlx::postgres::{PgConnection, PgRow};

use super::super::shared::parse_contact_status;
use super::super::{AddContactsOutcome, BatchItem, ContactLookup, ContactPage, DeleteOutcome, ItemResult, ItemStatus, OrgId, StoreResult};
use super::engine::add_counts;
use super::{opt_seconds, to_seconds};
use crate::domain::campaign::ContactStatus;
use crate::domain::contact::{Contact, IfDuplicate, NewContact};

macro_rules! contact_columns {
    () => {
        "id, phone, name, context, extracted_data, f_id, tags, status, retries, failed_retries, \
         has_follow_up, call_count, billed_duration, last_call_at"
    };
}

fn contact_from_row(row: &PgRow) -> StoreResult<Contact> {
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
        status: parse_contact_status(row.try_get("status")?)?,
        retries: row.try_get("retries")?,
        failed_retries: row.try_get("failed_retries")?,
        has_follow_up: row.try_get("has_follow_up")?,
        call_count: row.try_get("call_count")?,
        billed_duration: row.try_get("billed_duration")?,
        last_call_at: opt_seconds(row, "last_call_at")?,
    })
}

/// The campaign's status, when it belongs to `org`, with its row locked for the transaction:
/// writes to a campaign's contacts and counters take turns.
async fn lock_campaign(conn: &mut PgConnection, org: OrgId, campaign_id: i64) -> StoreResult<Option<String>> {
    Ok(sqlx::query_scalar("SELECT status FROM campaigns WHERE org_id = $1 AND id = $2 FOR UPDATE")
        .bind(org)
        .bind(campaign_id)
        .fetch_optional(&mut *conn)
        .await?)
}

pub(super) async fn add_contacts(
    conn: &mut PgConnection,
    org: OrgId,
    campaign_id: i64,
    items: Vec<BatchItem>,
    if_duplicate: IfDuplicate,
    at: jiff::Timestamp,
) -> StoreResult<AddContactsOutcome> {
    match lock_campaign(conn, org, campaign_id).await?.as_deref() {
        None => return Ok(AddContactsOutcome::CampaignNotFound),
        Some("finished") => return Ok(AddContactsOutcome::CampaignFinished),
        Some(_) => {}
    }
    let phones: Vec<&str> = items.iter().filter_map(|item| item.as_ref().ok()).map(|c| c.phone.as_str()).collect();
    let mut ids = existing_ids(conn, campaign_id, &phones).await?;

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
    ids.extend(insert_contacts(conn, campaign_id, &to_insert, at).await?);
    for (phone, index) in &new_phones {
        results[*index] = Some(ItemResult {
            index: *index,
            status: ItemStatus::Created,
            id: ids.get(*phone).copied(),
            contact: Some((*phone).to_owned()),
            error: None,
        });
    }
    let mut updates: Vec<(i64, &NewContact)> = Vec::new();
    for (index, contact) in duplicates {
        let id = ids.get(&contact.phone).copied();
        let status = match (if_duplicate, id) {
            (IfDuplicate::Update, Some(id)) => {
                updates.push((id, contact));
                ItemStatus::Updated
            }
            _ => ItemStatus::SkippedDuplicate,
        };
        results[index] = Some(ItemResult { index, status, id, contact: Some(contact.phone.clone()), error: None });
    }
    overwrite_contacts(conn, &updates).await?;
    let created = i64::try_from(to_insert.len()).unwrap_or(i64::MAX);
    if created > 0 {
        add_counts(conn, campaign_id, &[(ContactStatus::Queue, created)]).await?;
        sqlx::query(
            "UPDATE campaigns SET contact_count = contact_count + $1, \
             status = CASE WHEN status = 'pending' THEN 'ready' ELSE status END WHERE id = $2",
        )
        .bind(created)
        .bind(campaign_id)
        .execute(&mut *conn)
        .await?;
    }
    Ok(AddContactsOutcome::Added(results.into_iter().flatten().collect()))
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
    for contact in contacts {
        phones.push(contact.phone.as_str());
        names.push(contact.name.as_deref());
        context.push(contact.context.as_deref());
        extracted.push(serde_json::to_string(&contact.extracted_data)?);
        f_ids.push(contact.f_id.as_deref());
        tags.push(serde_json::to_string(&contact.tags)?);
    }
    let rows = sqlx::query(
        "INSERT INTO contacts (campaign_id, phone, name, context, extracted_data, f_id, tags, created_at) \
         SELECT $1, v.phone, v.name, v.context, v.extracted, v.f_id, v.tags, $2 \
         FROM UNNEST($3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[]) \
           WITH ORDINALITY AS v(phone, name, context, extracted, f_id, tags, n) ORDER BY v.n \
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
    .fetch_all(&mut *conn)
    .await?;
    let mut ids = HashMap::with_capacity(rows.len());
    for row in rows {
        ids.insert(row.try_get("phone")?, row.try_get("id")?);
    }
    Ok(ids)
}

/// `if_duplicate: update` replaces the five client fields with the item's (absent ones clear).
/// Applied in the order of the batch: a number repeated in a batch keeps its last item.
async fn overwrite_contacts(conn: &mut PgConnection, updates: &[(i64, &NewContact)]) -> StoreResult<()> {
    if updates.is_empty() {
        return Ok(());
    }
    // One row per contact (an UPDATE changes a row once): the last item wins, as sequential updates.
    let mut last: HashMap<i64, &NewContact> = HashMap::with_capacity(updates.len());
    for (id, contact) in updates {
        last.insert(*id, contact);
    }
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

pub(super) async fn list_contacts(
    conn: &mut PgConnection,
    org: OrgId,
    campaign_id: i64,
    status: Option<ContactStatus>,
    page_size: u32,
    page_index: u32,
) -> StoreResult<Option<ContactPage>> {
    let campaign =
        sqlx::query("SELECT contact_count, settings::jsonb ->> 'timezone' AS timezone FROM campaigns WHERE org_id = $1 AND id = $2")
            .bind(org)
            .bind(campaign_id)
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
    Ok(Some(ContactPage { total_count, contacts, timezone: campaign.try_get("timezone")? }))
}

pub(super) async fn get_contact(conn: &mut PgConnection, org: OrgId, campaign_id: i64, contact_id: i64) -> StoreResult<ContactLookup> {
    let timezone: Option<String> = sqlx::query_scalar("SELECT settings::jsonb ->> 'timezone' FROM campaigns WHERE org_id = $1 AND id = $2")
        .bind(org)
        .bind(campaign_id)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(timezone) = timezone else { return Ok(ContactLookup::CampaignNotFound) };
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
    let row = sqlx::query("SELECT status, processed, answered FROM contacts WHERE campaign_id = $1 AND id = $2 FOR UPDATE")
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
