//! The do-not-contact list and opt-out keywords on SQLite (contract §12.1): entries added in the
//! writer's transaction with statements kept prepared (a CSV import adds 1000 per job), every
//! change kept in `dnc_history`.

use std::collections::HashSet;

use async_trait::async_trait;
use jiff::Timestamp;
use rusqlite::types::Value;
use rusqlite::{Connection, params, params_from_iter};

use super::{SqliteStore, all_rows, first_row, to_seconds};
use crate::domain::contact::PhoneNumber;
use crate::domain::dnc::{DncAction, DncChannel, DncItem, DncResult, distinct_entries, resolve_batch};
use crate::store::shared::{SETTINGS_TIMEZONE, StoredRow, dnc_change_from_row, dnc_entry_from_row, keywords_from};
use crate::store::{DncChange, DncEntry, DncFilter, DncOrigin, DncPage, DncStore, OrgId, ResponseRecorder, StoreResult};

const INSERT_ENTRY: &str =
    "INSERT INTO dnc_entries (org_id, contact, channel, reason, source, created_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING";
const INSERT_CHANGE: &str =
    "INSERT INTO dnc_history (org_id, contact, action, channel, reason, source, key_prefix, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)";

/// Adds the batch's entries new to the list, each with its `added` history row; the items' results.
pub(super) fn add_entries(
    conn: &Connection,
    org: OrgId,
    items: &[DncItem],
    origin: &DncOrigin,
    at: Timestamp,
) -> StoreResult<Vec<DncResult>> {
    let mut insert = conn.prepare_cached(INSERT_ENTRY)?;
    let mut history = conn.prepare_cached(INSERT_CHANGE)?;
    let (source, at) = (origin.source.as_str(), to_seconds(at));
    let mut inserted = HashSet::new();
    for entry in distinct_entries(items) {
        let (contact, channel) = (entry.contact.as_str(), entry.channel.as_str());
        if insert.execute(params![org, contact, channel, entry.reason, source, at])? == 1 {
            history.execute(params![org, contact, DncAction::Added.as_str(), channel, entry.reason, source, origin.key_prefix, at])?;
            inserted.insert((contact, entry.channel));
        }
    }
    Ok(resolve_batch(items, |contact, channel| inserted.contains(&(contact, channel))))
}

/// `WHERE` of a list: the organization, then the number and the channel when filtered on.
fn list_conditions(org: OrgId, filter: &DncFilter) -> (String, Vec<Value>) {
    let mut sql = " WHERE org_id = ?".to_owned();
    let mut values = vec![Value::Integer(org)];
    if let Some(contact) = &filter.contact {
        sql.push_str(" AND contact = ?");
        values.push(Value::Text(contact.as_str().to_owned()));
    }
    if let Some(channel) = filter.channel {
        sql.push_str(" AND channel = ?");
        values.push(Value::Text(channel.as_str().to_owned()));
    }
    (sql, values)
}

fn list_entries(conn: &Connection, org: OrgId, filter: &DncFilter, page_size: u32, page_index: u32) -> StoreResult<DncPage> {
    let (conditions, values) = list_conditions(org, filter);
    let count = format!("SELECT COUNT(*) FROM dnc_entries{conditions}");
    let total_count: i64 = conn.prepare_cached(&count)?.query_row(params_from_iter(values.iter()), |row| row.get(0))?;
    let page =
        format!("SELECT contact, channel, reason, source, created_at FROM dnc_entries{conditions} ORDER BY id DESC LIMIT ? OFFSET ?");
    let mut values = values;
    values.push(Value::Integer(i64::from(page_size)));
    values.push(Value::Integer(i64::from(page_size) * i64::from(page_index)));
    let entries = all_rows(conn, &page, params_from_iter(values), |row| dnc_entry_from_row(row))?;
    Ok(DncPage { total_count, entries })
}

fn remove_entries(
    conn: &Connection,
    org: OrgId,
    contact: &str,
    channel: DncChannel,
    origin: &DncOrigin,
    at: Timestamp,
) -> StoreResult<Vec<DncEntry>> {
    // `all` removes every entry of the number; another channel only its own entry.
    let only = (channel != DncChannel::All).then_some(channel.as_str());
    let removed = all_rows(
        conn,
        "DELETE FROM dnc_entries WHERE org_id = ?1 AND contact = ?2 AND (?3 IS NULL OR channel = ?3) \
         RETURNING contact, channel, reason, source, created_at",
        params![org, contact, only],
        |row| dnc_entry_from_row(row),
    )?;
    let mut history = conn.prepare_cached(INSERT_CHANGE)?;
    for entry in &removed {
        history.execute(params![
            org,
            contact,
            DncAction::Removed.as_str(),
            entry.channel.as_str(),
            entry.reason,
            origin.source.as_str(),
            origin.key_prefix,
            to_seconds(at)
        ])?;
    }
    Ok(removed)
}

/// The organization's keywords (`None`: the defaults), read in the transaction that uses them.
pub(super) fn keywords(conn: &Connection, org: OrgId) -> StoreResult<Option<Vec<String>>> {
    let stored = first_row(conn, "SELECT opt_out_keywords FROM organizations WHERE id = ?", [org], |row| row.opt_text("opt_out_keywords"))?;
    keywords_from(stored.flatten())
}

#[async_trait]
impl DncStore for SqliteStore {
    async fn add_dnc_entries(
        &self,
        org: OrgId,
        items: Vec<DncItem>,
        origin: DncOrigin,
        at: Timestamp,
        record: Option<ResponseRecorder<Vec<DncResult>>>,
    ) -> StoreResult<Vec<DncResult>> {
        self.write_recorded(record, move |conn| add_entries(conn, org, &items, &origin, at)).await
    }

    async fn list_dnc_entries(&self, org: OrgId, filter: &DncFilter, page_size: u32, page_index: u32) -> StoreResult<DncPage> {
        let filter = filter.clone();
        self.reads.read(move |conn| list_entries(conn, org, &filter, page_size, page_index)).await
    }

    async fn remove_dnc_entries(
        &self,
        org: OrgId,
        contact: &PhoneNumber,
        channel: DncChannel,
        origin: DncOrigin,
        at: Timestamp,
    ) -> StoreResult<Vec<DncEntry>> {
        let contact = contact.as_str().to_owned();
        self.write(move |conn| remove_entries(conn, org, &contact, channel, &origin, at)).await
    }

    async fn dnc_history(&self, org: OrgId, contact: &PhoneNumber) -> StoreResult<Vec<DncChange>> {
        let contact = contact.as_str().to_owned();
        self.reads
            .read(move |conn| {
                all_rows(
                    conn,
                    "SELECT at, action, channel, reason, source, key_prefix FROM dnc_history WHERE org_id = ? AND contact = ? ORDER BY id",
                    params![org, contact],
                    |row| dnc_change_from_row(row),
                )
            })
            .await
    }

    async fn opt_out_keywords(&self, org: OrgId) -> StoreResult<Option<Vec<String>>> {
        self.reads.read(move |conn| keywords(conn, org)).await
    }

    async fn set_opt_out_keywords(&self, org: OrgId, keywords: Vec<String>) -> StoreResult<()> {
        let json = serde_json::to_string(&keywords)?;
        self.write(move |conn| {
            conn.prepare_cached("UPDATE organizations SET opt_out_keywords = ? WHERE id = ?")?.execute(params![json, org])?;
            Ok(())
        })
        .await
    }

    async fn first_campaign_timezone(&self, org: OrgId) -> StoreResult<Option<String>> {
        let sql = format!(
            "SELECT json_extract(settings, '$.{SETTINGS_TIMEZONE}') AS timezone FROM campaigns WHERE org_id = ? ORDER BY id LIMIT 1"
        );
        Ok(self.reads.row(&sql, [org], |row| row.opt_text("timezone"))?.flatten())
    }

    async fn organization_named(&self, name: &str) -> StoreResult<Option<OrgId>> {
        self.reads.row("SELECT id FROM organizations WHERE name = ?", [name], |row| row.int("id"))
    }
}
