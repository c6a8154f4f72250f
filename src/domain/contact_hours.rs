//! Calling hours in the contact's own time (contract §12.2): the campaign's `contact_hours`, the
//! zone each contact is called in (given, read from its number, or the campaign's), and whether a
//! contact's hours are open at an instant.
//!
//! The zone of a number comes from Google libphonenumber's prefix → time zone table
//! (`number_timezones/map_data.txt`, vendored verbatim with its licence): the longest prefix of the
//! number's E.164 digits that the table lists decides; a prefix listed with several zones (a US
//! toll-free number, a country's fallback entry) decides "none", and so does a zone name the bundled
//! tz database does not know.

use std::collections::HashMap;
use std::sync::OnceLock;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::contact::PhoneNumber;
use super::schedule::TimeOfDay;
use super::timezone::TimeZone;
use super::validation::{Field, Violation, Violations};

/// The hours, in every contact's own local time, during which a contact may be attempted:
/// `[start, end)`, within one day (`end` may be `24:00`, never past midnight).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ContactHours {
    #[schema(value_type = String, example = "08:00", pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]
    pub start: TimeOfDay,
    #[schema(value_type = String, example = "21:00", pattern = r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$")]
    pub end: TimeOfDay,
}

/// `contact_hours` as a client sends it; both bounds are required.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactHoursInput {
    #[serde(default)]
    #[schema(value_type = String, required = true, example = "08:00", pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]
    pub start: Field<String>,
    /// Later than `start`.
    #[serde(default)]
    #[schema(value_type = String, required = true, example = "21:00", pattern = r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$")]
    pub end: Field<String>,
}

impl ContactHours {
    /// Validates the hours as sent, the fields named under `path` (`contact_hours`).
    pub fn parse(path: &str, input: &ContactHoursInput) -> Result<ContactHours, Vec<Violation>> {
        let mut violations = Violations::default();
        let mut bound = |name: &str, value: &Field<String>| {
            let field = format!("{path}.{name}");
            match value {
                Field::Value(text) => violations.check(TimeOfDay::parse(&field, text)),
                Field::Absent => violations.check(Err(Violation::new(&field, format!("{field} is required")))),
                Field::Null => violations.check(Err(Violation::new(&field, format!("{field} must not be null")))),
            }
        };
        let start = bound("start", &input.start);
        let end = bound("end", &input.end);
        if let Some(start) = start
            && start == TimeOfDay::MIDNIGHT_END
        {
            violations.push(format!("{path}.start"), format!("{path}.start cannot be 24:00"));
        } else if let (Some(start), Some(end)) = (start, end)
            && start >= end
        {
            violations.push(
                format!("{path}.end"),
                format!("{path}.end ({end}) must be later than {path}.start ({start}); hours do not run past midnight"),
            );
        }
        violations.into_result()?;
        match (start, end) {
            (Some(start), Some(end)) => Ok(ContactHours { start, end }),
            _ => Err(Vec::new()),
        }
    }

    /// Whether a contact in `zone` may be attempted at `at`: its local wall-clock time at that
    /// instant (DST applied as the tz database says) is in `[start, end)`.
    pub fn open_at(&self, zone: &TimeZone, at: Timestamp) -> bool {
        let local = zone.zone().to_datetime(at);
        // The bounds are whole minutes, so the local time floored to its minute decides the same.
        let minute = local.hour() as u16 * 60 + local.minute() as u16;
        self.start.minutes() <= minute && minute < self.end.minutes()
    }
}

impl ContactHours {
    /// Whether the contacts counted under zone key `key` (a zone name, or `''` for
    /// `campaign_zone`) are inside these hours at `at`. A key that is not a zone (a corrupt row)
    /// counts as closed: a contact is never called at a local time nobody can tell.
    pub fn open_for_key(&self, campaign_zone: &TimeZone, key: &str, at: Timestamp) -> bool {
        match key {
            "" => self.open_at(campaign_zone, at),
            name => TimeZone::parse(name).is_some_and(|zone| self.open_at(&zone, at)),
        }
    }
}

/// What contact hours leave a claim, from the zones of the campaign's contacts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZoneGate {
    /// No hours, or every zone open: the claim is what it is without hours.
    Open,
    /// The contacts of the zone keys `closed` wait (`''` is the campaign's own zone).
    /// `queued_open`: some open zone has queued contacts. When none has, a claim looks only at
    /// due retrying contacts, rather than walking past every queued one of the closed zones.
    Closed { closed: Vec<String>, queued_open: bool },
    /// Every zone is closed: nothing to claim.
    Shut,
}

impl ZoneGate {
    /// The gate at `at` of a campaign whose contacts are in the zones `zones`: each a key (a zone
    /// name, or `''` for `campaign_zone`; see [`ContactHours::open_for_key`]) with its queued
    /// contacts.
    pub fn at<'a>(
        hours: Option<&ContactHours>,
        campaign_zone: &TimeZone,
        zones: impl IntoIterator<Item = (&'a str, i64)>,
        at: Timestamp,
    ) -> ZoneGate {
        let Some(hours) = hours else { return ZoneGate::Open };
        let (mut closed, mut any_open, mut queued_open) = (Vec::new(), false, false);
        for (key, queued) in zones {
            if hours.open_for_key(campaign_zone, key, at) {
                any_open = true;
                queued_open |= queued > 0;
            } else {
                closed.push(key.to_owned());
            }
        }
        match (closed.is_empty(), any_open) {
            (true, _) => ZoneGate::Open,
            (false, true) => ZoneGate::Closed { closed, queued_open },
            (false, false) => ZoneGate::Shut,
        }
    }
}

/// Where the zone a contact is called in comes from (§12.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TimezoneSource {
    /// The item's `timezone` field.
    Given,
    /// The one zone the number's region or area code maps to.
    Number,
    /// Neither: the campaign's timezone, whatever it is at the time.
    Campaign,
}

impl TimezoneSource {
    pub fn as_str(self) -> &'static str {
        match self {
            TimezoneSource::Given => "given",
            TimezoneSource::Number => "number",
            TimezoneSource::Campaign => "campaign",
        }
    }

    pub fn parse(text: &str) -> Option<TimezoneSource> {
        [TimezoneSource::Given, TimezoneSource::Number, TimezoneSource::Campaign].into_iter().find(|s| s.as_str() == text)
    }
}

/// A contact's own zone, as stored: `None` in place of one means the campaign's zone.
#[derive(Debug, Clone, PartialEq)]
pub struct ContactZone {
    pub zone: TimeZone,
    /// `Given` or `Number`.
    pub source: TimezoneSource,
}

impl ContactZone {
    /// The zone of a new contact: the one given, else the one its number maps to; `None` means
    /// the campaign's.
    pub fn resolve(given: Option<TimeZone>, phone: &PhoneNumber) -> Option<ContactZone> {
        match given {
            Some(zone) => Some(ContactZone { zone, source: TimezoneSource::Given }),
            None => zone_of_number(phone).map(|zone| ContactZone { zone, source: TimezoneSource::Number }),
        }
    }
}

/// The zone a contact is called in and where it comes from, for the contact resource: its own,
/// else `campaign_zone`.
pub fn zone_in_use<'a>(own: Option<&'a ContactZone>, campaign_zone: &'a TimeZone) -> (&'a TimeZone, TimezoneSource) {
    match own {
        Some(own) => (&own.zone, own.source),
        None => (campaign_zone, TimezoneSource::Campaign),
    }
}

/// The one zone a number's longest listed prefix maps to; `None` when that prefix maps to several
/// zones or none is listed.
pub fn zone_of_number(phone: &PhoneNumber) -> Option<TimeZone> {
    let digits = phone.as_str().strip_prefix('+').unwrap_or(phone.as_str());
    let table = prefix_table();
    (1..=digits.len().min(table.longest)).rev().find_map(|len| table.zones.get(&digits[..len])).and_then(Clone::clone)
}

struct PrefixTable {
    /// Prefix digits → the single zone, or `None` for a prefix listed with several zones (or an
    /// unknown one), which must stop the search rather than fall back to a shorter prefix.
    zones: HashMap<&'static str, Option<TimeZone>>,
    longest: usize,
}

fn prefix_table() -> &'static PrefixTable {
    static TABLE: OnceLock<PrefixTable> = OnceLock::new();
    TABLE.get_or_init(|| parse_map_data(include_str!("number_timezones/map_data.txt")))
}

/// Reads libphonenumber's `map_data.txt`: `#` comment lines, blank lines, and `prefix|zone&zone…`.
fn parse_map_data(text: &'static str) -> PrefixTable {
    let mut zones = HashMap::new();
    let mut longest = 0;
    for line in text.lines().map(str::trim).filter(|line| !line.is_empty() && !line.starts_with('#')) {
        let Some((prefix, names)) = line.split_once('|') else { continue };
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let zone = match names.split_once('&') {
            None => TimeZone::parse(names.trim()),
            Some(_) => None,
        };
        longest = longest.max(prefix.len());
        zones.insert(prefix, zone);
    }
    PrefixTable { zones, longest }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phone(text: &str) -> PhoneNumber {
        PhoneNumber::stored(text.to_owned()).expect("E.164")
    }

    fn zone_name(text: &str) -> Option<String> {
        zone_of_number(&phone(text)).map(|zone| zone.name().to_owned())
    }

    #[test]
    fn numbers_map_to_the_one_zone_of_their_longest_listed_prefix() {
        assert_eq!(zone_name("+525512345678").as_deref(), Some("America/Mexico_City"));
        assert_eq!(zone_name("+526641234567").as_deref(), Some("America/Tijuana"));
        assert_eq!(zone_name("+12125550123").as_deref(), Some("America/New_York"));
        assert_eq!(zone_name("+12135550123").as_deref(), Some("America/Los_Angeles"));
        assert_eq!(zone_name("+34912345678").as_deref(), Some("Europe/Madrid"));
        assert_eq!(zone_name("+34922123456").as_deref(), Some("Atlantic/Canary"));
        assert_eq!(zone_name("+33123456789").as_deref(), Some("Europe/Paris"));
    }

    #[test]
    fn a_number_of_several_zones_maps_to_none() {
        assert_eq!(zone_name("+18005550123"), None, "US toll-free: every zone of +1");
        assert_eq!(zone_name("+15005550123"), None, "a +1 prefix not listed falls back to +1, which lists many");
        assert_eq!(zone_name("+77012345678"), None, "Kazakhstan: +77 lists two zones, +770 is not listed");
        assert_eq!(zone_name("+79161234567").as_deref(), Some("Europe/Moscow"));
        assert_eq!(zone_name("+522001234567"), None, "+52200: two zones, not the country's");
    }

    #[test]
    fn the_vendored_table_is_read_whole() {
        let table = prefix_table();
        assert!(table.zones.len() > 3000, "{} prefixes", table.zones.len());
        // Every single-zone entry names a zone the bundled database knows (else it would map to none).
        let text = include_str!("number_timezones/map_data.txt");
        let unknown: Vec<&str> = text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| line.split_once('|'))
            .filter(|(_, names)| !names.contains('&') && TimeZone::parse(names).is_none())
            .map(|(_, names)| names)
            .collect();
        assert!(unknown.is_empty(), "zones jiff does not know: {unknown:?}");
    }

    #[test]
    fn the_table_format_comment_blank_and_multi_zone_lines() {
        let table = parse_map_data("# comment\n\n1|America/New_York&America/Chicago\n1212|America/New_York\n99|Nowhere/Else\n");
        assert_eq!(table.longest, 4);
        assert_eq!(table.zones.get("1"), Some(&None));
        assert_eq!(table.zones.get("99"), Some(&None), "an unknown zone maps to none");
        assert_eq!(table.zones.get("1212").and_then(|z| z.as_ref()).map(TimeZone::name), Some("America/New_York"));
    }

    #[test]
    fn a_given_zone_wins_over_the_number_s_and_none_leaves_the_campaign_s() {
        let madrid = TimeZone::parse("Europe/Madrid").expect("zone");
        let given = ContactZone::resolve(Some(madrid.clone()), &phone("+525512345678"));
        assert_eq!(given, Some(ContactZone { zone: madrid, source: TimezoneSource::Given }));
        let number = ContactZone::resolve(None, &phone("+525512345678")).expect("a zone");
        assert_eq!((number.zone.name(), number.source), ("America/Mexico_City", TimezoneSource::Number));
        assert_eq!(ContactZone::resolve(None, &phone("+18005550123")), None);
        let campaign = TimeZone::parse("America/Bogota").expect("zone");
        assert_eq!(zone_in_use(None, &campaign), (&campaign, TimezoneSource::Campaign));
        for source in [TimezoneSource::Given, TimezoneSource::Number, TimezoneSource::Campaign] {
            assert_eq!(TimezoneSource::parse(source.as_str()), Some(source));
            assert_eq!(serde_json::to_value(source).ok(), Some(serde_json::json!(source.as_str())));
        }
    }

    fn input(start: &str, end: &str) -> ContactHoursInput {
        ContactHoursInput { start: Field::Value(start.into()), end: Field::Value(end.into()) }
    }

    fn refused_field(start: &str, end: &str) -> String {
        ContactHours::parse("contact_hours", &input(start, end)).expect_err("refused")[0].field.clone()
    }

    #[test]
    fn hours_bounds() {
        let whole = ContactHours::parse("contact_hours", &input("00:00", "24:00")).expect("the whole day");
        assert_eq!((whole.start.minutes(), whole.end.minutes()), (0, 1440));
        assert!(ContactHours::parse("contact_hours", &input("23:58", "23:59")).is_ok());
        assert_eq!(refused_field("08:00", "08:00"), "contact_hours.end");
        assert_eq!(refused_field("21:00", "08:00"), "contact_hours.end", "no past-midnight hours");
        assert_eq!(refused_field("24:00", "24:00"), "contact_hours.start");
        assert_eq!(refused_field("25:00", "26:00"), "contact_hours.start");
        assert_eq!(refused_field("8:00", "21:00"), "contact_hours.start");
        assert_eq!(refused_field("08:60", "21:00"), "contact_hours.start");
        assert_eq!(refused_field("08:00", "24:01"), "contact_hours.end");
        let missing = ContactHoursInput { start: Field::Value("08:00".into()), end: Field::Absent };
        assert_eq!(ContactHours::parse("contact_hours", &missing).expect_err("no end")[0].field, "contact_hours.end");
        let null = ContactHoursInput { start: Field::Null, end: Field::Value("09:00".into()) };
        assert_eq!(ContactHours::parse("contact_hours", &null).expect_err("null start")[0].field, "contact_hours.start");
        assert!(serde_json::from_str::<ContactHoursInput>(r#"{"start":"08:00","end":"09:00","days":[]}"#).is_err(), "unknown keys");
    }

    fn at(text: &str) -> Timestamp {
        text.parse().expect("timestamp")
    }

    #[test]
    fn hours_are_read_on_the_contact_s_wall_clock_across_dst() {
        let ny = TimeZone::parse("America/New_York").expect("zone");
        let hours = ContactHours { start: TimeOfDay::parse("t", "08:00").expect("t"), end: TimeOfDay::parse("t", "09:00").expect("t") };
        // 2026-03-08: New York moves from UTC-5 to UTC-4 at 02:00 local.
        assert!(hours.open_at(&ny, at("2026-03-07T13:30:00Z")), "08:30 EST");
        assert!(!hours.open_at(&ny, at("2026-03-08T13:30:00Z")), "09:30 EDT");
        assert!(hours.open_at(&ny, at("2026-03-08T12:30:00Z")), "08:30 EDT");
        assert!(hours.open_at(&ny, at("2026-03-08T12:00:00Z")), "08:00 EDT: start included");
        assert!(!hours.open_at(&ny, at("2026-03-08T13:00:00Z")), "09:00 EDT: end excluded");
        assert!(!hours.open_at(&ny, at("2026-03-08T11:59:59Z")), "07:59:59 EDT");
        let all_day = ContactHours { start: TimeOfDay::parse("t", "00:00").expect("t"), end: TimeOfDay::MIDNIGHT_END };
        assert!(all_day.open_at(&ny, at("2026-03-08T04:59:59Z")), "23:59:59 local");
    }

    #[test]
    fn the_gate_names_the_closed_zones_and_shuts_when_none_is_open() {
        let mexico = TimeZone::parse("America/Mexico_City").expect("zone");
        let hours = ContactHours { start: TimeOfDay::parse("t", "09:00").expect("t"), end: TimeOfDay::parse("t", "18:00").expect("t") };
        // 16:30 UTC: 10:30 in Mexico City, 12:30 in New York, 17:30 in London, 01:30 in Tokyo.
        let now = at("2026-06-10T16:30:00Z");
        let zones = [("", 3), ("America/New_York", 0), ("Asia/Tokyo", 5), ("Not/AZone", 1)];
        let closed = vec!["Asia/Tokyo".to_owned(), "Not/AZone".to_owned()];
        assert_eq!(ZoneGate::at(None, &mexico, zones, now), ZoneGate::Open, "no hours");
        assert_eq!(ZoneGate::at(Some(&hours), &mexico, zones, now), ZoneGate::Closed { closed: closed.clone(), queued_open: true });
        let waiting_only_in_closed = [("", 0), ("America/New_York", 0), ("Asia/Tokyo", 5), ("Not/AZone", 1)];
        assert_eq!(ZoneGate::at(Some(&hours), &mexico, waiting_only_in_closed, now), ZoneGate::Closed { closed, queued_open: false });
        assert_eq!(ZoneGate::at(Some(&hours), &mexico, [("", 1), ("Europe/London", 1)], now), ZoneGate::Open);
        assert_eq!(ZoneGate::at(Some(&hours), &mexico, [("Asia/Tokyo", 1)], now), ZoneGate::Shut);
        assert_eq!(ZoneGate::at(Some(&hours), &mexico, [], now), ZoneGate::Open, "no contacts: nothing to hold back");
    }

    mod against_chrono_tz {
        use super::*;
        use chrono::{TimeZone as _, Timelike};
        use proptest::prelude::*;

        /// Zones on both sides of the date line, with half-hour and 45-minute offsets and DST
        /// changes of 30 minutes (Lord Howe), and zones whose rules changed (Apia, Tehran).
        const ZONES: [&str; 14] = [
            "Pacific/Auckland",
            "Pacific/Chatham",
            "Pacific/Apia",
            "Australia/Lord_Howe",
            "America/Adak",
            "America/St_Johns",
            "Europe/Madrid",
            "America/Santiago",
            "Asia/Tehran",
            "America/New_York",
            "America/Mexico_City",
            "Pacific/Kiritimati",
            "Europe/London",
            "Africa/Casablanca",
        ];

        /// Transitions of a zone between 2000 and 2035 (inputs for the test only: the verdict
        /// is checked against chrono-tz).
        fn transitions(name: &str) -> Vec<i64> {
            let zone = jiff::tz::TimeZone::get(name).expect("zone");
            let end = at("2035-01-01T00:00:00Z");
            zone.following(at("2000-01-01T00:00:00Z")).map(|t| t.timestamp()).take_while(|t| *t < end).map(|t| t.as_second()).collect()
        }

        /// The verdict from chrono-tz's wall clock at the same instant.
        fn reference(hours: &ContactHours, name: &str, second: i64) -> bool {
            let tz: chrono_tz::Tz = name.parse().expect("chrono-tz knows the zone");
            let local = tz.timestamp_opt(second, 0).single().expect("an instant has one local time");
            let minute = (local.hour() * 60 + local.minute()) as u16;
            hours.start.minutes() <= minute && minute < hours.end.minutes()
        }

        fn hours() -> impl Strategy<Value = ContactHours> {
            (0_u16..1440).prop_flat_map(|start| (Just(start), start + 1..=1440)).prop_map(|(start, end)| {
                let time = |m: u16| TimeOfDay::parse("t", &format!("{:02}:{:02}", m / 60, m % 60)).expect("in range");
                ContactHours { start: time(start), end: time(end) }
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            /// Near a DST change (within six hours either side) the verdict matches chrono-tz's.
            #[test]
            fn near_transitions_the_verdict_matches_chrono_tz(
                zone_index in 0..ZONES.len(), pick in any::<proptest::sample::Index>(), offset in -6 * 3600_i64..6 * 3600, hours in hours(),
            ) {
                let name = ZONES[zone_index];
                let changes = transitions(name);
                prop_assume!(!changes.is_empty());
                let second = changes[pick.index(changes.len())] + offset;
                let zone = TimeZone::parse(name).expect("zone");
                let instant = Timestamp::from_second(second).expect("in range");
                prop_assert_eq!(hours.open_at(&zone, instant), reference(&hours, name, second), "{} at {}", name, instant);
            }

            /// Anywhere in 1990–2035 the verdict matches chrono-tz's.
            #[test]
            fn at_any_instant_the_verdict_matches_chrono_tz(
                zone_index in 0..ZONES.len(), second in 631_152_000_i64..2_051_222_400, hours in hours(),
            ) {
                let name = ZONES[zone_index];
                let zone = TimeZone::parse(name).expect("zone");
                let instant = Timestamp::from_second(second).expect("in range");
                prop_assert_eq!(hours.open_at(&zone, instant), reference(&hours, name, second), "{} at {}", name, instant);
            }
        }
    }
}
