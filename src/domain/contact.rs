//! Contacts (contract §3): phone numbers normalized to E.164, batch items validated one by one.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::campaign::ContactStatus;
use super::contact_hours::ContactZone;
use super::timezone::TimeZone;
use super::validation::{self, Field};

pub const MAX_BATCH: usize = 1000;
/// The longest `name`, `context`, `f_id` and tag of a contact (§0.3), in characters.
pub const MAX_TEXT_CHARS: usize = 1000;
pub const MAX_TAGS: usize = 50;
/// `extracted_data` as compact JSON, in bytes (§0.3): one contacts page stays a few MiB at most.
pub const MAX_DATA_BYTES: usize = 16 * 1024;
/// Nesting levels of `extracted_data`, the object itself being the first.
pub const MAX_DATA_DEPTH: usize = 32;

/// Checks a contact's (or an event's) `extracted_data` against the size rules of §0.3; the
/// error says what is wrong, for a 400 naming `field`.
pub fn check_extracted_data(field: &str, data: &serde_json::Map<String, serde_json::Value>) -> Result<(), String> {
    fn depth(value: &serde_json::Value) -> usize {
        match value {
            serde_json::Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
            serde_json::Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
            _ => 0,
        }
    }
    let levels = 1 + data.values().map(depth).max().unwrap_or(0);
    if levels > MAX_DATA_DEPTH {
        return Err(format!("{field} is nested {levels} levels deep; at most {MAX_DATA_DEPTH} are kept"));
    }
    let bytes = serde_json::to_vec(data).map(|json| json.len()).unwrap_or(usize::MAX);
    if bytes > MAX_DATA_BYTES {
        return Err(format!("{field} is {bytes} bytes as compact JSON; at most {MAX_DATA_BYTES} (16 KiB) are kept"));
    }
    Ok(())
}

/// Trims and dedupes tags (first occurrence kept), checking the rules of §0.3: at most
/// [`MAX_TAGS`], each 1 to [`MAX_TEXT_CHARS`] characters. The error names the offending field.
pub fn clean_tags(field: &str, tags: &[String]) -> Result<Vec<String>, (String, String)> {
    if tags.len() > MAX_TAGS {
        return Err((field.to_owned(), format!("{field} holds at most {MAX_TAGS} tags, got {}", tags.len())));
    }
    let mut clean: Vec<String> = Vec::with_capacity(tags.len());
    for (i, tag) in tags.iter().enumerate() {
        let tag = tag.trim();
        if tag.is_empty() || tag.chars().count() > MAX_TEXT_CHARS {
            let at = format!("{field}[{i}]");
            return Err((at.clone(), format!("{at} must be 1 to {MAX_TEXT_CHARS} characters")));
        }
        if !clean.iter().any(|t| t == tag) {
            clean.push(tag.to_owned());
        }
    }
    Ok(clean)
}

/// The country whose numbering plan reads numbers written without `+`, from the campaign's
/// timezone (the tz database's `zone.tab`: America/Mexico_City → MX).
pub fn region_of_timezone(timezone: &str) -> Option<phonenumber::country::Id> {
    static REGIONS: OnceLock<HashMap<&'static str, &'static str>> = OnceLock::new();
    let regions = REGIONS.get_or_init(|| include_str!("zone_regions.tsv").lines().filter_map(|line| line.split_once('\t')).collect());
    regions.get(timezone).and_then(|code| code.parse().ok())
}

/// A phone number in E.164 (`+525512345678`). Made only where a number comes in: parsed from
/// what a client wrote ([`PhoneNumber::parse`]) or read back from storage
/// ([`PhoneNumber::stored`]), so no later code checks one again.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct PhoneNumber(String);

impl PhoneNumber {
    /// A valid number written with `+` and its country code, or in the numbering plan of
    /// `region`; `None` when it is not a valid number.
    pub fn parse(raw: &str, region: Option<phonenumber::country::Id>) -> Option<PhoneNumber> {
        let text = raw.trim();
        if text.is_empty() || text.len() > 64 {
            return None;
        }
        let region = if text.starts_with('+') { None } else { Some(region?) };
        let number = phonenumber::parse(region, text).ok()?;
        number.is_valid().then(|| PhoneNumber(number.format().mode(phonenumber::Mode::E164).to_string()))
    }

    /// A number read back from storage, where only parsed numbers are written: its E.164 shape
    /// (`+` and 6 to 15 digits) is checked, not its numbering plan again. A text of another shape
    /// is given back.
    pub fn stored(text: String) -> Result<PhoneNumber, String> {
        let e164 =
            text.strip_prefix('+').is_some_and(|digits| (6..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()));
        if e164 { Ok(PhoneNumber(text)) } else { Err(text) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<PhoneNumber> for String {
    fn from(phone: PhoneNumber) -> String {
        phone.0
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IfDuplicate {
    #[default]
    Skip,
    Update,
}

/// One contact as a client sends it.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactInput {
    /// Missing, `null` or blank: a failed item (`MISSING_CONTACT`), not a refused batch.
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "+525512345678")]
    pub contact: Field<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>, max_length = 1000)]
    pub name: Field<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>, max_length = 1000)]
    pub context: Field<String>,
    /// At most 16 KiB as compact JSON, nested at most 32 levels (§0.3).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub extracted_data: Field<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    #[schema(value_type = Option<String>, max_length = 1000)]
    pub f_id: Field<String>,
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>, max_items = 50)]
    pub tags: Field<Vec<String>>,
    /// The contact's own IANA zone (ext, §12.2); left out or `null`: the one its number maps to,
    /// else the campaign's.
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "America/Tijuana")]
    pub timezone: Field<String>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactBatchInput {
    #[serde(deserialize_with = "validation::objects")]
    pub contacts: Vec<ContactInput>,
    #[serde(default)]
    pub if_duplicate: IfDuplicate,
}

/// A contact ready to be stored.
#[derive(Debug, Clone, PartialEq)]
pub struct NewContact {
    pub phone: PhoneNumber,
    pub name: Option<String>,
    pub context: Option<String>,
    pub extracted_data: serde_json::Map<String, serde_json::Value>,
    pub f_id: Option<String>,
    pub tags: Vec<String>,
    /// Its own zone (given or from its number); `None`: the campaign's.
    pub timezone: Option<ContactZone>,
}

/// Why one item of a batch was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ItemError {
    MissingContact,
    InvalidPhoneNumber,
    /// The number is on the organization's do-not-contact list for the campaign's channel (§12.1).
    ContactSuppressed,
}

impl ItemError {
    /// The error key as the API writes it (and import reports show it).
    pub fn as_str(self) -> &'static str {
        match self {
            ItemError::MissingContact => "MISSING_CONTACT",
            ItemError::InvalidPhoneNumber => "INVALID_PHONE_NUMBER",
            ItemError::ContactSuppressed => "CONTACT_SUPPRESSED",
        }
    }
}

/// One item of an add-contacts batch after validation: a contact to store, or why not (with
/// the text sent, empty when there was none).
pub type BatchItem = Result<NewContact, (ItemError, String)>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ItemStatus {
    Created,
    Updated,
    SkippedDuplicate,
    Failed,
}

impl ItemStatus {
    /// The status as the API writes it (and import reports show it).
    pub fn as_str(self) -> &'static str {
        match self {
            ItemStatus::Created => "created",
            ItemStatus::Updated => "updated",
            ItemStatus::SkippedDuplicate => "skipped_duplicate",
            ItemStatus::Failed => "failed",
        }
    }
}

/// What became of one item of a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemResult {
    pub index: usize,
    pub status: ItemStatus,
    pub id: Option<i64>,
    /// The E.164 number stored, or the text sent when it could not be read.
    pub contact: Option<String>,
    pub error: Option<ItemError>,
}

/// Turns the items whose number `suppressed` holds into `CONTACT_SUPPRESSED` failures (§12.1):
/// nothing of them is stored, not even as an update of a contact the campaign already has.
pub fn suppress_items(items: &mut [BatchItem], suppressed: &std::collections::HashSet<String>) {
    for item in items.iter_mut() {
        if let Ok(contact) = item
            && suppressed.contains(contact.phone.as_str())
        {
            *item = Err((ItemError::ContactSuppressed, contact.phone.as_str().to_owned()));
        }
    }
}

/// What a batch does to a campaign's contacts (§3.1). The first item with a number the campaign
/// does not have creates the contact; the later items with that number, and items whose number
/// the campaign has, are duplicates: updated or skipped, as `if_duplicate` says.
pub struct BatchPlan<'a> {
    items: &'a [BatchItem],
    /// The contacts to create, in the order of their items.
    pub new: Vec<&'a NewContact>,
}

impl<'a> BatchPlan<'a> {
    /// `exists` tells whether the campaign already has a contact with a number.
    pub fn new(items: &'a [BatchItem], exists: impl Fn(&str) -> bool) -> Self {
        let mut seen = std::collections::HashSet::new();
        let new = items
            .iter()
            .filter_map(|item| item.as_ref().ok())
            .filter(|contact| !exists(contact.phone.as_str()) && seen.insert(contact.phone.as_str()))
            .collect();
        BatchPlan { items, new }
    }

    /// Once the new contacts are stored, with `ids` the id of every number of the batch (those
    /// the campaign had and those just created): the contacts to overwrite (with their ids) and
    /// each item's result, in the items' order.
    pub fn resolve(self, ids: &HashMap<String, i64>, if_duplicate: IfDuplicate) -> (Vec<(i64, &'a NewContact)>, Vec<ItemResult>) {
        let mut created: std::collections::HashSet<&str> = self.new.iter().map(|c| c.phone.as_str()).collect();
        let mut updates = Vec::new();
        let results = self
            .items
            .iter()
            .enumerate()
            .map(|(index, item)| match item {
                Err((error, raw)) => {
                    let contact = (!raw.is_empty()).then(|| raw.clone());
                    ItemResult { index, status: ItemStatus::Failed, id: None, contact, error: Some(*error) }
                }
                Ok(contact) => {
                    let id = ids.get(contact.phone.as_str()).copied();
                    let status = match (created.remove(contact.phone.as_str()), if_duplicate, id) {
                        (true, _, _) => ItemStatus::Created,
                        (false, IfDuplicate::Update, Some(id)) => {
                            updates.push((id, contact));
                            ItemStatus::Updated
                        }
                        (false, _, _) => ItemStatus::SkippedDuplicate,
                    };
                    ItemResult { index, status, id, contact: Some(contact.phone.as_str().to_owned()), error: None }
                }
            })
            .collect();
        (updates, results)
    }
}

/// A structural fault inside an item rejects the whole batch (contract §3.1).
#[derive(Debug, Clone, PartialEq)]
pub struct BatchError {
    pub field: String,
    pub message: String,
}

/// Validates one item. `Ok(Err(_))` is a per-item failure; `Err(_)` rejects the batch.
pub fn parse_item(
    index: usize,
    item: &ContactInput,
    region: Option<phonenumber::country::Id>,
) -> Result<Result<NewContact, (ItemError, String)>, BatchError> {
    let path = |field: &str| format!("contacts[{index}].{field}");
    let text = |field: &str, value: &Field<String>, max: usize| -> Result<Option<String>, BatchError> {
        if let Some(text) = value.value() {
            validation::no_nul(&path(field), text).map_err(|v| BatchError { field: v.field, message: v.message })?;
        }
        match value {
            Field::Value(v) if v.chars().count() > max => {
                Err(BatchError { field: path(field), message: format!("{} must be at most {max} characters", path(field)) })
            }
            Field::Value(v) => Ok(Some(v.clone())),
            _ => Ok(None),
        }
    };
    let name = text("name", &item.name, MAX_TEXT_CHARS)?;
    let context = text("context", &item.context, MAX_TEXT_CHARS)?;
    let f_id = text("f_id", &item.f_id, MAX_TEXT_CHARS)?;
    let tags = match &item.tags {
        Field::Value(tags) => clean_tags(&path("tags"), tags).map_err(|(field, message)| BatchError { field, message })?,
        _ => Vec::new(),
    };
    let given_zone = match &item.timezone {
        Field::Value(name) => Some(TimeZone::parse(name).ok_or_else(|| BatchError {
            field: path("timezone"),
            message: format!("{} must be an IANA zone name such as America/Mexico_City, got {name:?}", path("timezone")),
        })?),
        _ => None,
    };
    let extracted_data = item.extracted_data.value().cloned().unwrap_or_default();
    check_extracted_data(&path("extracted_data"), &extracted_data)
        .map_err(|message| BatchError { field: path("extracted_data"), message })?;
    let raw = match &item.contact {
        Field::Value(raw) if !raw.trim().is_empty() => raw,
        _ => return Ok(Err((ItemError::MissingContact, String::new()))),
    };
    Ok(match PhoneNumber::parse(raw, region) {
        Some(phone) => {
            let timezone = ContactZone::resolve(given_zone, &phone);
            Ok(NewContact { phone, name, context, extracted_data, f_id, tags, timezone })
        }
        None => Err((ItemError::InvalidPhoneNumber, raw.clone())),
    })
}

/// A stored contact.
#[derive(Debug, Clone, PartialEq)]
pub struct Contact {
    pub id: i64,
    pub phone: PhoneNumber,
    pub name: Option<String>,
    pub context: Option<String>,
    pub extracted_data: serde_json::Map<String, serde_json::Value>,
    pub f_id: Option<String>,
    pub tags: Vec<String>,
    pub status: ContactStatus,
    pub retries: i64,
    pub failed_retries: i64,
    pub has_follow_up: bool,
    pub call_count: i64,
    pub billed_duration: i64,
    pub last_call_at: Option<jiff::Timestamp>,
    /// Why the contact failed for good (ext), `None` otherwise.
    pub failed_reason: Option<super::attempt::FailedReason>,
    /// Its own zone; `None`: the campaign's (§12.2).
    pub timezone: Option<ContactZone>,
}

/// What the dashboard's contact search looks for: a prefix, so that an index answers it on a
/// campaign of millions of contacts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContactSearch {
    /// An E.164 number's beginning (`+52155`).
    NumberStart(String),
    /// A name's beginning, ignoring case (ASCII letters).
    NameStart(String),
}

impl ContactSearch {
    /// What the user typed: a number's beginning when it is digits (spaces, dashes, dots and
    /// brackets ignored, `+` added), else a name's; `None` when it is empty.
    pub fn parse(text: &str) -> Option<ContactSearch> {
        let text = text.trim();
        let digits: String = text.chars().filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')')).collect();
        let bare = digits.strip_prefix('+').unwrap_or(&digits);
        if text.is_empty() {
            None
        } else if !bare.is_empty() && bare.chars().all(|c| c.is_ascii_digit()) {
            Some(ContactSearch::NumberStart(format!("+{bare}")))
        } else {
            Some(ContactSearch::NameStart(text.to_lowercase()))
        }
    }

    /// The range `[low, high)` of stored values that start with the prefix: every character a
    /// stored value can hold after the prefix sorts below `high`'s last one.
    pub fn range(&self) -> (String, String) {
        let prefix = match self {
            ContactSearch::NumberStart(prefix) | ContactSearch::NameStart(prefix) => prefix,
        };
        (prefix.clone(), format!("{prefix}\u{10FFFF}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_search_is_a_number_when_it_is_digits_else_a_name() {
        assert_eq!(ContactSearch::parse(" +52 (55) 1.2-3 "), Some(ContactSearch::NumberStart("+5255123".into())));
        assert_eq!(ContactSearch::parse("1415"), Some(ContactSearch::NumberStart("+1415".into())));
        assert_eq!(ContactSearch::parse("ANA María"), Some(ContactSearch::NameStart("ana maría".into())));
        // A lone "+" has no digit: it is read as a name, not as every number.
        assert_eq!(ContactSearch::parse("+"), Some(ContactSearch::NameStart("+".into())));
        assert_eq!(ContactSearch::parse("   "), None);
        let (low, high) = ContactSearch::NumberStart("+52".into()).range();
        assert!(low.as_str() <= "+525512345678" && "+525512345678" < high.as_str() && "+53" > high.as_str());
    }

    #[test]
    fn item_names_are_the_api_names() {
        for status in [ItemStatus::Created, ItemStatus::Updated, ItemStatus::SkippedDuplicate, ItemStatus::Failed] {
            assert_eq!(serde_json::to_value(status).ok(), Some(serde_json::json!(status.as_str())));
        }
        for error in [ItemError::MissingContact, ItemError::InvalidPhoneNumber, ItemError::ContactSuppressed] {
            assert_eq!(serde_json::to_value(error).ok(), Some(serde_json::json!(error.as_str())));
        }
    }

    #[test]
    fn a_stored_number_is_taken_only_in_e164_shape() {
        for kept in ["+123456", "+525512345678", "+123456789012345"] {
            assert_eq!(PhoneNumber::stored(kept.to_owned()).as_ref().map(PhoneNumber::as_str), Ok(kept));
        }
        for refused in ["+12345", "+1234567890123456", "525512345678", "+52 55 1234 5678", "+52551234567x", ""] {
            assert_eq!(PhoneNumber::stored(refused.to_owned()), Err(refused.to_owned()));
        }
    }

    /// A short test number ("+1") as a number of E.164 shape ("+00000001").
    fn padded(short: &str) -> String {
        format!("+{:0>8}", short.trim_start_matches('+'))
    }

    fn contact(phone: &str) -> BatchItem {
        Ok(NewContact {
            phone: PhoneNumber::stored(padded(phone)).expect("E.164"),
            name: None,
            context: None,
            extracted_data: serde_json::Map::new(),
            f_id: None,
            tags: Vec::new(),
            timezone: None,
        })
    }

    /// Stores a plan as a store would: new numbers get ids after the existing ones.
    fn run(items: &[BatchItem], existing: &[&str], if_duplicate: IfDuplicate) -> (Vec<i64>, Vec<(ItemStatus, Option<i64>)>) {
        let mut ids: HashMap<String, i64> = existing.iter().enumerate().map(|(i, p)| (padded(p), i as i64 + 1)).collect();
        let plan = BatchPlan::new(items, |phone| ids.contains_key(phone));
        let first_new = ids.len() as i64 + 1;
        ids.extend(plan.new.iter().enumerate().map(|(i, c)| (c.phone.as_str().to_owned(), first_new + i as i64)));
        let (updates, results) = plan.resolve(&ids, if_duplicate);
        (updates.iter().map(|(id, _)| *id).collect(), results.iter().map(|r| (r.status, r.id)).collect())
    }

    #[test]
    fn a_suppressed_number_fails_even_where_it_would_update_a_contact() {
        let mut items = [contact("+1"), contact("+2"), Err((ItemError::MissingContact, String::new()))];
        suppress_items(&mut items, &std::collections::HashSet::from([padded("+2")]));
        let (updates, results) = run(&items, &["+2"], IfDuplicate::Update);
        assert!(updates.is_empty(), "nothing of a suppressed item is stored");
        assert_eq!(results, [(ItemStatus::Created, Some(2)), (ItemStatus::Failed, None), (ItemStatus::Failed, None)]);
        assert_eq!(items[1], Err((ItemError::ContactSuppressed, padded("+2"))), "the number as stored, E.164");
    }

    #[test]
    fn the_first_item_of_a_new_number_creates_it_and_later_ones_are_duplicates() {
        let items = [contact("+1"), contact("+2"), contact("+1"), Err((ItemError::InvalidPhoneNumber, "x".to_owned())), contact("+9")];
        let (updates, results) = run(&items, &["+9"], IfDuplicate::Skip);
        assert!(updates.is_empty());
        assert_eq!(
            results,
            [
                (ItemStatus::Created, Some(2)),
                (ItemStatus::Created, Some(3)),
                (ItemStatus::SkippedDuplicate, Some(2)),
                (ItemStatus::Failed, None),
                (ItemStatus::SkippedDuplicate, Some(1)),
            ]
        );
        let (updates, results) = run(&items, &["+9"], IfDuplicate::Update);
        assert_eq!(updates, [2, 1], "the batch's own repeat and the existing number are overwritten, in order");
        assert_eq!(results[2].0, ItemStatus::Updated);
        assert_eq!(results[4].0, ItemStatus::Updated);
    }

    proptest::proptest! {
        /// Every item has one result, in order; each number is created at most once and only
        /// when the campaign did not have it.
        #[test]
        fn a_batch_plan_accounts_for_every_item(phones in proptest::collection::vec(0_u8..6, 0..40), existing in proptest::collection::vec(0_u8..6, 0..4)) {
            let items: Vec<BatchItem> = phones.iter().map(|p| contact(&format!("+{p}"))).collect();
            let existing: Vec<String> = existing.iter().map(|p| format!("+{p}")).collect();
            let existing: Vec<&str> = existing.iter().map(String::as_str).collect();
            let (_, results) = run(&items, &existing, IfDuplicate::Skip);
            proptest::prop_assert_eq!(results.len(), items.len());
            let mut distinct: Vec<&u8> = phones.iter().collect();
            distinct.sort();
            distinct.dedup();
            let new = distinct.iter().filter(|p| !existing.contains(&format!("+{p}").as_str())).count();
            proptest::prop_assert_eq!(results.iter().filter(|(s, _)| *s == ItemStatus::Created).count(), new);
            proptest::prop_assert!(results.iter().all(|(_, id)| id.is_some()));
        }
    }

    #[test]
    fn numbers_without_plus_are_read_in_the_campaign_region() {
        let mx = region_of_timezone("America/Mexico_City");
        assert_eq!(mx, Some(phonenumber::country::Id::MX));
        assert_eq!(PhoneNumber::parse("55 1234 5678", mx).as_ref().map(PhoneNumber::as_str), Some("+525512345678"));
        assert_eq!(PhoneNumber::parse("+52 55 1234 5678", None).as_ref().map(PhoneNumber::as_str), Some("+525512345678"));
        assert_eq!(PhoneNumber::parse("+1 (415) 555-2671", mx).as_ref().map(PhoneNumber::as_str), Some("+14155552671"));
        let us = region_of_timezone("America/New_York");
        assert_eq!(PhoneNumber::parse("(415) 555-2671", us).as_ref().map(PhoneNumber::as_str), Some("+14155552671"));
        assert_eq!(PhoneNumber::parse("12", mx), None);
        assert_eq!(PhoneNumber::parse("not a number", mx), None);
        assert_eq!(PhoneNumber::parse("55 1234 5678", None), None, "no region: a + is needed");
        assert_eq!(region_of_timezone("UTC"), None);
    }
}
