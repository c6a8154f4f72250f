//! Weekly windows (`scheduling`, `cycles.schedule`): seven days, each with a local start and stop
//! time in the campaign's timezone. A stop earlier than the start runs past midnight.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::validation::{Field, Violation, Violations, object_field};

/// Minutes since local midnight, `00:00` to `24:00` (the latter only as a stop time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TimeOfDay(u16);

impl TimeOfDay {
    pub const MIDNIGHT_END: TimeOfDay = TimeOfDay(24 * 60);

    pub fn parse(field: &str, text: &str) -> Result<Self, Violation> {
        let invalid = || Violation::new(field, format!("{field} must be a time of day HH:MM (00:00 to 24:00), got {text:?}"));
        let bytes = text.as_bytes();
        if bytes.len() != 5 || bytes[2] != b':' {
            return Err(invalid());
        }
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit()).then(|| s.parse::<u16>().ok()).flatten();
        let (Some(hours), Some(minutes)) = (digits(&text[..2]), digits(&text[3..])) else {
            return Err(invalid());
        };
        if minutes > 59 || hours > 24 || (hours == 24 && minutes != 0) {
            return Err(invalid());
        }
        Ok(TimeOfDay(hours * 60 + minutes))
    }

    pub fn minutes(self) -> u16 {
        self.0
    }

    /// `HH:MM`, written digit by digit: a campaign carries up to 28 of these and every read
    /// serializes them, so no formatter machinery.
    fn ascii(self) -> [u8; 5] {
        let digit = |n: u16| b'0' + (n % 10) as u8;
        let (hours, minutes) = (self.0 / 60, self.0 % 60);
        [digit(hours / 10), digit(hours), b':', digit(minutes / 10), digit(minutes)]
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(std::str::from_utf8(&self.ascii()).map_err(|_| fmt::Error)?)
    }
}

impl Serialize for TimeOfDay {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let ascii = self.ascii();
        serializer.serialize_str(std::str::from_utf8(&ascii).map_err(serde::ser::Error::custom)?)
    }
}

impl<'de> Deserialize<'de> for TimeOfDay {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        TimeOfDay::parse("time", &text).map_err(|v| serde::de::Error::custom(v.message))
    }
}

/// One day of a week schedule, as stored and returned (always complete).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DayWindow {
    #[serde(rename = "startTime")]
    #[schema(value_type = String, example = "09:00")]
    pub start: TimeOfDay,
    #[serde(rename = "stopTime")]
    #[schema(value_type = String, example = "18:00")]
    pub stop: TimeOfDay,
    pub active: bool,
}

pub const DAY_KEYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

const DEFAULT_START: TimeOfDay = TimeOfDay(9 * 60);
const DEFAULT_STOP: TimeOfDay = TimeOfDay(18 * 60);

/// A full week, Monday first. Always lists all seven days.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WeekSchedule {
    pub mon: DayWindow,
    pub tue: DayWindow,
    pub wed: DayWindow,
    pub thu: DayWindow,
    pub fri: DayWindow,
    pub sat: DayWindow,
    pub sun: DayWindow,
}

impl Default for WeekSchedule {
    /// Monday to Friday 09:00–18:00; the weekend inactive.
    fn default() -> Self {
        let on = DayWindow { start: DEFAULT_START, stop: DEFAULT_STOP, active: true };
        let off = DayWindow { active: false, ..on };
        WeekSchedule { mon: on, tue: on, wed: on, thu: on, fri: on, sat: off, sun: off }
    }
}

impl WeekSchedule {
    /// Days Monday first.
    pub fn days(&self) -> [&DayWindow; 7] {
        [&self.mon, &self.tue, &self.wed, &self.thu, &self.fri, &self.sat, &self.sun]
    }

    /// Validates a schedule as sent by a client. `path` prefixes field names (`scheduling`).
    pub fn parse(path: &str, input: &WeekScheduleInput) -> Result<WeekSchedule, Vec<Violation>> {
        let mut violations = Violations::default();
        let days = [&input.mon, &input.tue, &input.wed, &input.thu, &input.fri, &input.sat, &input.sun];
        let mut parsed = [DayWindow { start: DEFAULT_START, stop: DEFAULT_STOP, active: false }; 7];
        for ((key, day), out) in DAY_KEYS.iter().zip(days).zip(parsed.iter_mut()) {
            if let Field::Value(day) = day
                && let Some(window) = parse_day(&format!("{path}.{key}"), day, &mut violations)
            {
                *out = window;
            }
        }
        if violations.is_empty() && parsed.iter().all(|d| !d.active) {
            violations.push(path, format!("{path} must have at least one active day"));
        }
        violations.into_result()?;
        let [mon, tue, wed, thu, fri, sat, sun] = parsed;
        Ok(WeekSchedule { mon, tue, wed, thu, fri, sat, sun })
    }
}

fn parse_day(path: &str, day: &DayInput, violations: &mut Violations) -> Option<DayWindow> {
    let active = match day.active {
        Field::Value(active) => active,
        Field::Absent => true,
        Field::Null => {
            violations.push(format!("{path}.active"), format!("{path}.active must be true or false"));
            return None;
        }
    };
    let time = |name: &str, value: &Field<String>, violations: &mut Violations| -> Option<Option<TimeOfDay>> {
        let field = format!("{path}.{name}");
        match value {
            Field::Value(text) => violations.check(TimeOfDay::parse(&field, text)).map(Some),
            Field::Absent | Field::Null if active => {
                violations.push(&field, format!("{field} is required on an active day"));
                None
            }
            Field::Absent | Field::Null => Some(None),
        }
    };
    let start = time("startTime", &day.start_time, violations);
    let stop = time("stopTime", &day.stop_time, violations);
    let (start, stop) = (start?, stop?);
    if start == Some(TimeOfDay::MIDNIGHT_END) {
        violations.push(format!("{path}.startTime"), format!("{path}.startTime cannot be 24:00"));
        return None;
    }
    if let (Some(start), Some(stop)) = (start, stop)
        && start == stop
    {
        violations.push(
            format!("{path}.stopTime"),
            format!("{path}.stopTime must differ from startTime ({start}); use 00:00–24:00 for the whole day"),
        );
        return None;
    }
    Some(DayWindow { start: start.unwrap_or(DEFAULT_START), stop: stop.unwrap_or(DEFAULT_STOP), active })
}

/// A week schedule as a client sends it: any day may be left out (it is then inactive).
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WeekScheduleInput {
    #[serde(default, deserialize_with = "object_field")]
    #[schema(value_type = Option<DayInput>)]
    pub mon: Field<DayInput>,
    #[serde(default, deserialize_with = "object_field")]
    #[schema(value_type = Option<DayInput>)]
    pub tue: Field<DayInput>,
    #[serde(default, deserialize_with = "object_field")]
    #[schema(value_type = Option<DayInput>)]
    pub wed: Field<DayInput>,
    #[serde(default, deserialize_with = "object_field")]
    #[schema(value_type = Option<DayInput>)]
    pub thu: Field<DayInput>,
    #[serde(default, deserialize_with = "object_field")]
    #[schema(value_type = Option<DayInput>)]
    pub fri: Field<DayInput>,
    #[serde(default, deserialize_with = "object_field")]
    #[schema(value_type = Option<DayInput>)]
    pub sat: Field<DayInput>,
    #[serde(default, deserialize_with = "object_field")]
    #[schema(value_type = Option<DayInput>)]
    pub sun: Field<DayInput>,
}

/// One day as a client sends it. `active` defaults to true; times are required on active days.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DayInput {
    #[serde(default, rename = "startTime")]
    #[schema(value_type = Option<String>, example = "09:00", pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]
    pub start_time: Field<String>,
    #[serde(default, rename = "stopTime")]
    #[schema(value_type = Option<String>, example = "18:00", pattern = r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$")]
    pub stop_time: Field<String>,
    #[serde(default)]
    #[schema(value_type = bool)]
    pub active: Field<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(start: &str, stop: &str) -> Field<DayInput> {
        Field::Value(DayInput { start_time: Field::Value(start.into()), stop_time: Field::Value(stop.into()), active: Field::Absent })
    }

    #[test]
    fn time_of_day_bounds() {
        assert_eq!(TimeOfDay::parse("t", "00:00").map(|t| t.minutes()), Ok(0));
        assert_eq!(TimeOfDay::parse("t", "23:59").map(|t| t.minutes()), Ok(1439));
        assert_eq!(TimeOfDay::parse("t", "24:00").map(|t| t.minutes()), Ok(1440));
        for bad in ["24:01", "25:00", "9:00", "09:60", "09-00", "0900", "ab:cd", "+9:00", ""] {
            assert!(TimeOfDay::parse("t", bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn time_of_day_is_written_as_it_was_read() {
        for text in ["00:00", "00:01", "09:05", "12:30", "23:59", "24:00"] {
            let time = TimeOfDay::parse("t", text).expect("valid");
            assert_eq!(time.to_string(), text);
            assert_eq!(serde_json::to_string(&time).ok(), Some(format!("\"{text}\"")));
        }
    }

    #[test]
    fn omitted_days_are_inactive_and_output_is_complete() {
        let input = WeekScheduleInput { sat: day("22:00", "02:00"), ..Default::default() };
        let week = WeekSchedule::parse("scheduling", &input).expect("valid");
        assert!(week.sat.active && week.sat.stop < week.sat.start);
        assert!(!week.mon.active && !week.sun.active);
    }

    #[test]
    fn equal_times_and_empty_weeks_are_rejected() {
        let equal = WeekScheduleInput { mon: day("09:00", "09:00"), ..Default::default() };
        let err = WeekSchedule::parse("scheduling", &equal).expect_err("equal times");
        assert_eq!(err[0].field, "scheduling.mon.stopTime");
        let err = WeekSchedule::parse("scheduling", &WeekScheduleInput::default()).expect_err("no day");
        assert_eq!(err[0].field, "scheduling");
        let start_24 = WeekScheduleInput { mon: day("24:00", "09:00"), ..Default::default() };
        assert_eq!(WeekSchedule::parse("s", &start_24).expect_err("24:00 start")[0].field, "s.mon.startTime");
    }

    #[test]
    fn whole_day_window_is_accepted() {
        let input = WeekScheduleInput { sun: day("00:00", "24:00"), ..Default::default() };
        assert!(WeekSchedule::parse("scheduling", &input).is_ok());
    }
}
