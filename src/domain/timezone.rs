//! Time zones by IANA name, parsed once where a name comes in (a request, a stored setting), so
//! that no later reader re-parses one or falls back to another zone.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An IANA time zone such as `America/Mexico_City`, resolved against the bundled tz database.
/// Fixed offsets and POSIX strings are not zone names and are refused.
#[derive(Debug, Clone)]
pub struct TimeZone {
    name: String,
    zone: jiff::tz::TimeZone,
}

impl TimeZone {
    /// The zone a name stands for; its canonical name is kept when the name is an alias.
    pub fn parse(name: &str) -> Option<TimeZone> {
        if name.is_empty() || name.starts_with(['+', '-']) {
            return None;
        }
        let zone = jiff::tz::TimeZone::get(name).ok()?;
        Some(TimeZone { name: zone.iana_name().unwrap_or(name).to_owned(), zone })
    }

    /// UTC, the zone of events that belong to no campaign.
    pub fn utc() -> TimeZone {
        TimeZone { name: "UTC".to_owned(), zone: jiff::tz::TimeZone::UTC }
    }

    /// Every name [`TimeZone::parse`] takes as it is spelled in the database, sorted.
    pub fn names() -> Vec<String> {
        let mut names: Vec<String> =
            jiff::tz::db().available().map(|name| name.as_str().to_owned()).filter(|name| TimeZone::parse(name).is_some()).collect();
        names.sort();
        names
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn zone(&self) -> &jiff::tz::TimeZone {
        &self.zone
    }
}

impl PartialEq for TimeZone {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Serialize for TimeZone {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.name)
    }
}

impl<'de> Deserialize<'de> for TimeZone {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        TimeZone::parse(&name).ok_or_else(|| serde::de::Error::custom(format!("{name:?} is not an IANA time zone")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_names_are_parsed_once_and_fixed_offsets_refused() {
        let madrid = TimeZone::parse("Europe/Madrid").expect("a zone");
        assert_eq!(madrid.name(), "Europe/Madrid");
        assert!(TimeZone::parse("UTC").is_some());
        for refused in ["", "+01:00", "-05", "Mars/Olympus", "europe/madrid "] {
            assert!(TimeZone::parse(refused).is_none(), "{refused:?}");
        }
    }

    #[test]
    fn a_stored_zone_that_is_not_one_fails_to_read_instead_of_falling_back() {
        let zone: TimeZone = serde_json::from_str("\"America/Bogota\"").expect("reads");
        assert_eq!(serde_json::to_string(&zone).expect("writes"), "\"America/Bogota\"");
        assert!(serde_json::from_str::<TimeZone>("\"Nowhere/Else\"").is_err());
    }
}
