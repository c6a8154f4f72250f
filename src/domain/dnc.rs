//! The organization's do-not-contact list (contract §12.1): which entries suppress a number on a
//! channel, and where an entry came from.

use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;
use utoipa::ToSchema;

use super::campaign::Channel;
use super::contact::{ItemError, MAX_BATCH, PhoneNumber};
use super::validation::{self, Field, Violation};

/// The channel an entry suppresses: one of the campaign channels, or every channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DncChannel {
    PhoneCall,
    Whatsapp,
    All,
}

impl DncChannel {
    pub fn as_str(self) -> &'static str {
        match self {
            DncChannel::PhoneCall => "phone_call",
            DncChannel::Whatsapp => "whatsapp",
            DncChannel::All => "all",
        }
    }

    pub fn parse(text: &str) -> Option<DncChannel> {
        match text {
            "phone_call" => Some(DncChannel::PhoneCall),
            "whatsapp" => Some(DncChannel::Whatsapp),
            "all" => Some(DncChannel::All),
            _ => None,
        }
    }

    /// The stored channels whose entries suppress a number on `channel`: its own and `all`.
    pub fn suppressing(channel: Channel) -> [&'static str; 2] {
        [channel.as_str(), DncChannel::All.as_str()]
    }
}

impl From<Channel> for DncChannel {
    fn from(channel: Channel) -> Self {
        match channel {
            Channel::PhoneCall => DncChannel::PhoneCall,
            Channel::Whatsapp => DncChannel::Whatsapp,
        }
    }
}

/// Where a change to the list came from (`source` in the list and its history).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DncSource {
    Api,
    Dashboard,
    Csv,
    OptOutReply,
    Provider,
}

impl DncSource {
    pub fn as_str(self) -> &'static str {
        match self {
            DncSource::Api => "api",
            DncSource::Dashboard => "dashboard",
            DncSource::Csv => "csv",
            DncSource::OptOutReply => "opt_out_reply",
            DncSource::Provider => "provider",
        }
    }

    pub fn parse(text: &str) -> Option<DncSource> {
        [DncSource::Api, DncSource::Dashboard, DncSource::Csv, DncSource::OptOutReply, DncSource::Provider]
            .into_iter()
            .find(|source| source.as_str() == text)
    }
}

/// The longest `reason` of an entry, in characters.
pub const MAX_REASON_CHARS: usize = 1000;
/// Opt-out keywords an organization may keep, and the longest one, in characters.
pub const MAX_KEYWORDS: usize = 50;
pub const MAX_KEYWORD_CHARS: usize = 40;
/// The opt-out keywords of an organization that has not set its own (§12.1).
pub const DEFAULT_OPT_OUT_KEYWORDS: [&str; 6] = ["STOP", "BAJA", "ALTO", "CANCELAR", "PARAR", "UNSUBSCRIBE"];

/// One entry as a client sends it (`POST /dnc`).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DncEntryInput {
    /// Missing, `null` or blank: a failed item (`MISSING_CONTACT`), not a refused batch.
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "+525512345678")]
    pub contact: Field<String>,
    /// Default `all`.
    #[serde(default)]
    pub channel: Option<DncChannel>,
    #[serde(default)]
    #[schema(max_length = 1000)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DncBatchInput {
    #[serde(deserialize_with = "validation::objects")]
    #[schema(min_items = 1, max_items = 1000)]
    pub entries: Vec<DncEntryInput>,
    /// ISO 3166 alpha-2 code of the region that reads numbers written without `+`; default: the
    /// region of the organization's first campaign's timezone, else US.
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z]{2}$", example = "MX")]
    pub region: Option<String>,
}

/// An entry ready to be stored: its number in E.164.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDncEntry {
    pub contact: PhoneNumber,
    pub channel: DncChannel,
    pub reason: Option<String>,
}

/// One entry of a batch after validation: an entry to store, or why not (with the text sent,
/// empty when there was none) and the channel it named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DncItem {
    Valid(NewDncEntry),
    Failed { error: ItemError, sent: String, channel: DncChannel },
}

/// What became of one entry of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DncResult {
    pub index: usize,
    pub status: DncItemStatus,
    /// E.164, or the text sent when it could not be read (`None` when none was sent).
    pub contact: Option<String>,
    pub channel: DncChannel,
    pub error: Option<ItemError>,
}

/// The entries of a batch a store inserts: the first of each number and channel, in order (a
/// later one is `existing` whatever the list held).
pub fn distinct_entries(items: &[DncItem]) -> Vec<&NewDncEntry> {
    let mut seen = std::collections::HashSet::new();
    items
        .iter()
        .filter_map(|item| match item {
            DncItem::Valid(entry) => seen.insert((entry.contact.as_str(), entry.channel)).then_some(entry),
            DncItem::Failed { .. } => None,
        })
        .collect()
}

/// Each item's result, in order, once the store inserted what it could of [`distinct_entries`]:
/// `inserted` tells whether a number and channel was new to the list.
pub fn resolve_batch(items: &[DncItem], inserted: impl Fn(&str, DncChannel) -> bool) -> Vec<DncResult> {
    let mut claimed = std::collections::HashSet::new();
    items
        .iter()
        .enumerate()
        .map(|(index, item)| match item {
            DncItem::Failed { error, sent, channel } => DncResult {
                index,
                status: DncItemStatus::Failed,
                contact: (!sent.is_empty()).then(|| sent.clone()),
                channel: *channel,
                error: Some(*error),
            },
            DncItem::Valid(entry) => {
                let key = (entry.contact.as_str(), entry.channel);
                let created = inserted(key.0, key.1) && claimed.insert(key);
                let status = if created { DncItemStatus::Created } else { DncItemStatus::Existing };
                DncResult { index, status, contact: Some(entry.contact.as_str().to_owned()), channel: entry.channel, error: None }
            }
        })
        .collect()
}

/// What adding an entry did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DncItemStatus {
    Created,
    /// The list already held the number on that channel (stored before, or earlier in the batch):
    /// nothing changed.
    Existing,
    Failed,
}

impl DncItemStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DncItemStatus::Created => "created",
            DncItemStatus::Existing => "existing",
            DncItemStatus::Failed => "failed",
        }
    }
}

/// A change in an entry's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DncAction {
    Added,
    Removed,
}

impl DncAction {
    pub fn as_str(self) -> &'static str {
        match self {
            DncAction::Added => "added",
            DncAction::Removed => "removed",
        }
    }

    pub fn parse(text: &str) -> Option<DncAction> {
        [DncAction::Added, DncAction::Removed].into_iter().find(|action| action.as_str() == text)
    }
}

/// The region a batch's `region` names: two letters of ISO 3166 (any case) that the numbering
/// plans know.
pub fn parse_region(text: &str) -> Result<phonenumber::country::Id, Violation> {
    let refused = || Violation::new("region", format!("region must be an ISO 3166 alpha-2 code such as MX or US, got {text:?}"));
    if text.len() != 2 || !text.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(refused());
    }
    text.to_ascii_uppercase().parse().map_err(|_| refused())
}

/// The region of numbers written without `+` when a batch names none: the one of the
/// organization's first campaign's timezone (`first_timezone`), else US.
pub fn default_region(first_timezone: Option<&str>) -> phonenumber::country::Id {
    first_timezone.and_then(super::contact::region_of_timezone).unwrap_or(phonenumber::country::Id::US)
}

/// Checks the size of a batch (1 to [`MAX_BATCH`] entries).
pub fn check_batch_size(count: usize) -> Result<(), Violation> {
    if count == 0 || count > MAX_BATCH {
        return Err(Violation::new("entries", format!("entries must hold 1 to {MAX_BATCH} items, got {count}")));
    }
    Ok(())
}

/// Validates one entry. `Ok(Err(_))` is a per-item failure; `Err(_)` rejects the batch (its
/// `field` is `entries[i].…`).
pub fn parse_entry(index: usize, item: &DncEntryInput, region: phonenumber::country::Id) -> Result<DncItem, Violation> {
    let reason = match &item.reason {
        Some(reason) => Some(validation::max_chars(&format!("entries[{index}].reason"), reason, MAX_REASON_CHARS)?),
        None => None,
    };
    let channel = item.channel.unwrap_or(DncChannel::All);
    Ok(match parse_contact(&item.contact, region) {
        Ok(contact) => DncItem::Valid(NewDncEntry { contact, channel, reason }),
        Err((error, sent)) => DncItem::Failed { error, sent, channel },
    })
}

/// A number as a client wrote it (a body's `contact`, a path, a CSV cell): E.164, or the item
/// error and the text sent.
pub fn parse_contact(raw: &Field<String>, region: phonenumber::country::Id) -> Result<PhoneNumber, (ItemError, String)> {
    match raw {
        Field::Value(raw) if !raw.trim().is_empty() => {
            PhoneNumber::parse(raw, Some(region)).ok_or_else(|| (ItemError::InvalidPhoneNumber, raw.clone()))
        }
        _ => Err((ItemError::MissingContact, String::new())),
    }
}

/// The keywords of a `PUT /settings/opt-out-keywords`, as stored: 1 to [`MAX_KEYWORDS`] given,
/// each trimmed and 1 to [`MAX_KEYWORD_CHARS`] characters; a keyword that matches the same
/// replies as an earlier one (same text once case and accents are folded) is dropped.
pub fn parse_keywords(keywords: &[String]) -> Result<Vec<String>, Violation> {
    if keywords.is_empty() || keywords.len() > MAX_KEYWORDS {
        return Err(Violation::new("keywords", format!("keywords must hold 1 to {MAX_KEYWORDS} items, got {}", keywords.len())));
    }
    let mut kept: Vec<String> = Vec::with_capacity(keywords.len());
    let mut folded: Vec<String> = Vec::with_capacity(keywords.len());
    for (i, keyword) in keywords.iter().enumerate() {
        let field = format!("keywords[{i}]");
        let keyword = validation::text(&field, keyword, 1, MAX_KEYWORD_CHARS).map_err(|v| {
            Violation::new(v.field, format!("{field} must be 1 to {MAX_KEYWORD_CHARS} characters once trimmed: {}", v.message))
        })?;
        let key = fold(&keyword);
        if !folded.contains(&key) {
            folded.push(key);
            kept.push(keyword);
        }
    }
    Ok(kept)
}

/// The organization's keywords: those stored, or the defaults.
pub fn keywords_or_default(stored: Option<Vec<String>>) -> Vec<String> {
    stored.unwrap_or_else(|| DEFAULT_OPT_OUT_KEYWORDS.iter().map(|k| (*k).to_owned()).collect())
}

/// A text as keyword matching sees it: trimmed, accents dropped (NFD, combining marks removed),
/// lower case.
fn fold(text: &str) -> String {
    text.trim().nfd().filter(|c| !is_combining_mark(*c)).flat_map(char::to_lowercase).collect()
}

/// Whether a reply's whole text is one of `keywords` (trimmed, ignoring case and accents):
/// ` Baja ` and `CANCELÁR` opt out, `please stop` does not.
pub fn is_opt_out(text: &str, keywords: &[String]) -> bool {
    let text = fold(text);
    !text.is_empty() && keywords.iter().any(|keyword| fold(keyword) == text)
}

/// The number of a reply's sender as a provider gives it (WhatsApp: digits without `+`).
pub fn sender_number(sender: &str) -> Option<PhoneNumber> {
    let sender = sender.trim();
    if sender.starts_with('+') { PhoneNumber::parse(sender, None) } else { PhoneNumber::parse(&format!("+{sender}"), None) }
}

/// The entry an attempt event's `opt_out` adds: the contact's stored number, for the attempt's
/// channel.
pub fn provider_opt_out(stored_phone: String, channel: Channel) -> Option<DncItem> {
    let contact = PhoneNumber::stored(stored_phone).ok()?;
    Some(DncItem::Valid(NewDncEntry { contact, channel: channel.into(), reason: None }))
}

/// The entries that inbound replies add (`sender`, `text`): a `whatsapp` entry for each sender
/// whose whole reply is one of the organization's `keywords`, the reply kept as its reason.
pub fn opt_out_entries<'a>(replies: impl IntoIterator<Item = (&'a str, &'a str)>, keywords: &[String]) -> Vec<DncItem> {
    replies
        .into_iter()
        .filter(|(_, text)| is_opt_out(text, keywords))
        .filter_map(|(sender, text)| {
            let contact = sender_number(sender)?;
            Some(DncItem::Valid(NewDncEntry { contact, channel: DncChannel::Whatsapp, reason: Some(format!("replied {:?}", text.trim())) }))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_number_is_suppressed_on_a_channel_by_its_own_entries_and_the_all_ones() {
        assert_eq!(DncChannel::suppressing(Channel::PhoneCall), ["phone_call", "all"]);
        assert_eq!(DncChannel::suppressing(Channel::Whatsapp), ["whatsapp", "all"]);
        for channel in [DncChannel::PhoneCall, DncChannel::Whatsapp, DncChannel::All] {
            assert_eq!(DncChannel::parse(channel.as_str()), Some(channel));
        }
        assert_eq!(DncChannel::parse("sms"), None);
        assert_eq!(DncSource::parse("opt_out_reply"), Some(DncSource::OptOutReply));
        assert_eq!(DncSource::parse("web"), None);
    }

    fn keywords(list: &[&str]) -> Vec<String> {
        list.iter().map(|k| (*k).to_owned()).collect()
    }

    #[test]
    fn a_reply_opts_out_when_its_whole_text_is_a_keyword_ignoring_case_and_accents() {
        let defaults = keywords_or_default(None);
        for reply in ["Baja", " stop ", "CANCELÁR", "cancelar\n", "Unsubscribe", "párar"] {
            assert!(is_opt_out(reply, &defaults), "{reply:?}");
        }
        for reply in ["please stop", "stop!", "", "   ", "bajas", "ALTO AHÍ"] {
            assert!(!is_opt_out(reply, &defaults), "{reply:?}");
        }
        // The organization's own keywords, written with accents, match without them too.
        assert!(is_opt_out("no mas", &keywords(&["No más"])));
        assert!(!is_opt_out("stop", &keywords(&["No más"])));
    }

    #[test]
    fn keywords_are_trimmed_folded_and_bounded() {
        assert_eq!(parse_keywords(&keywords(&[" Stop ", "STOP", "baja", "Bája", "x"])), Ok(keywords(&["Stop", "baja", "x"])));
        let forty = "k".repeat(40);
        assert_eq!(parse_keywords(std::slice::from_ref(&forty)), Ok(vec![forty]));
        let fifty: Vec<String> = (0..50).map(|i| format!("k{i}")).collect();
        assert_eq!(parse_keywords(&fifty).map(|k| k.len()), Ok(50));
        let field = |list: &[String]| parse_keywords(list).err().map(|v| v.field);
        assert_eq!(field(&[]), Some("keywords".to_owned()));
        let fifty_one: Vec<String> = (0..51).map(|i| format!("k{i}")).collect();
        assert_eq!(field(&fifty_one), Some("keywords".to_owned()));
        assert_eq!(field(&keywords(&["ok", &"k".repeat(41)])), Some("keywords[1]".to_owned()));
        assert_eq!(field(&keywords(&["ok", "   "])), Some("keywords[1]".to_owned()));
    }

    #[test]
    fn entries_are_read_in_the_region_given_with_their_channel_and_reason() {
        let mx = parse_region("mx").expect("MX");
        assert_eq!(mx, phonenumber::country::Id::MX);
        assert!(parse_region("MEX").is_err() && parse_region("ZZ").is_err() && parse_region("1A").is_err());
        assert_eq!(default_region(Some("America/Mexico_City")), phonenumber::country::Id::MX);
        assert_eq!(default_region(Some("UTC")), phonenumber::country::Id::US);
        assert_eq!(default_region(None), phonenumber::country::Id::US);
        let input = |contact: Option<&str>, reason: Option<String>| DncEntryInput {
            contact: contact.map_or(Field::Absent, |c| Field::Value(c.to_owned())),
            channel: None,
            reason,
        };
        let Ok(DncItem::Valid(entry)) = parse_entry(0, &input(Some("55 1234 5678"), Some("asked".into())), mx) else {
            panic!("a valid entry")
        };
        assert_eq!((entry.contact.as_str(), entry.channel, entry.reason.as_deref()), ("+525512345678", DncChannel::All, Some("asked")));
        let failed = |error, sent: &str| Ok(DncItem::Failed { error, sent: sent.to_owned(), channel: DncChannel::All });
        assert_eq!(parse_entry(1, &input(None, None), mx), failed(ItemError::MissingContact, ""));
        assert_eq!(parse_entry(1, &input(Some("12"), None), mx), failed(ItemError::InvalidPhoneNumber, "12"));
        assert!(parse_entry(2, &input(Some("+525512345678"), Some("r".repeat(1000))), mx).is_ok());
        let refused = parse_entry(2, &input(Some("+525512345678"), Some("r".repeat(1001))), mx);
        assert_eq!(refused.err().map(|v| v.field), Some("entries[2].reason".to_owned()));
        assert!(check_batch_size(1).is_ok() && check_batch_size(1000).is_ok());
        assert!(check_batch_size(0).is_err() && check_batch_size(1001).is_err());
    }

    #[test]
    fn a_sender_is_read_as_an_international_number() {
        assert_eq!(sender_number("14155552671").as_ref().map(PhoneNumber::as_str), Some("+14155552671"));
        assert_eq!(sender_number(" +525512345678").as_ref().map(PhoneNumber::as_str), Some("+525512345678"));
        assert_eq!(sender_number("12"), None);
    }

    #[test]
    fn the_first_entry_of_a_number_and_channel_is_created_and_later_ones_exist() {
        let entry = |phone: &str, channel| {
            DncItem::Valid(NewDncEntry { contact: PhoneNumber::stored(phone.to_owned()).expect("E.164"), channel, reason: None })
        };
        let items = [
            entry("+525512345678", DncChannel::All),
            entry("+525512345678", DncChannel::Whatsapp),
            entry("+525512345678", DncChannel::All),
            DncItem::Failed { error: ItemError::InvalidPhoneNumber, sent: "12".into(), channel: DncChannel::PhoneCall },
            entry("+14155552671", DncChannel::All),
        ];
        assert_eq!(distinct_entries(&items).len(), 3);
        // The store had +1415… already: its insert did nothing.
        let results = resolve_batch(&items, |phone, _| phone != "+14155552671");
        let statuses: Vec<DncItemStatus> = results.iter().map(|r| r.status).collect();
        use DncItemStatus::*;
        assert_eq!(statuses, [Created, Created, Existing, Failed, Existing]);
        assert_eq!(
            (results[3].contact.as_deref(), results[3].channel, results[3].error),
            (Some("12"), DncChannel::PhoneCall, Some(ItemError::InvalidPhoneNumber))
        );
    }

    #[test]
    fn replies_that_are_keywords_add_their_senders_for_whatsapp() {
        let entries =
            opt_out_entries([("14155552671", " Baja "), ("14155552672", "please stop"), ("12", "stop")], &keywords_or_default(None));
        assert_eq!(entries.len(), 1, "a non-keyword reply and an unreadable sender add nothing");
        let DncItem::Valid(entry) = &entries[0] else { panic!("a valid entry") };
        assert_eq!(
            (entry.contact.as_str(), entry.channel, entry.reason.as_deref()),
            ("+14155552671", DncChannel::Whatsapp, Some("replied \"Baja\""))
        );
    }
}
