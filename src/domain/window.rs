//! When a [`WeekSchedule`] is open, in a campaign's time zone: the predicate the dispatcher asks on
//! every decision, and the next opening or closing instant an idle campaign sleeps until.
//!
//! Everything is defined on local civil time. An instant is open when its civil datetime in the zone
//! lies inside a day's window: `[day start, day stop)` on the same day, or `[day start, next day stop)`
//! when the stop is earlier than the start (past midnight; `24:00` is the next midnight). Hence across
//! DST changes the repeated hour of a fold is open twice if its civil times are in the window, and
//! civil times skipped by a gap never happen: a window that lies wholly inside a gap is closed that day,
//! and one that starts inside a gap opens at the transition (the first instant whose civil time is past
//! its start).

use jiff::Timestamp;
use jiff::civil::{Date, DateTime, Time};
use jiff::tz::{AmbiguousOffset, TimeZone};

use super::schedule::{DayWindow, WeekSchedule};

/// Local dates a search may land on (a campaign's start and end dates), both ends inclusive; `None` is open-ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DateRange {
    pub first: Option<Date>,
    pub last: Option<Date>,
}

impl DateRange {
    /// Every date.
    pub const ANY: DateRange = DateRange { first: None, last: None };

    pub fn contains(&self, date: Date) -> bool {
        self.first.is_none_or(|first| first <= date) && self.last.is_none_or(|last| date <= last)
    }
}

/// Days searched past the later of `from` and the range's first date. One week is enough for any
/// weekly window to recur; two cover the week whose only occurrence a DST gap swallowed whole
/// (a Sunday 02:00–03:00 in New York on a spring-forward day).
const SEARCH_DAYS: i32 = 15;

impl WeekSchedule {
    /// Whether the schedule is open at `at`, read in `tz`. One zone conversion, no allocation.
    pub fn is_open_at(&self, tz: &TimeZone, at: Timestamp) -> bool {
        self.is_open_civil(tz.to_datetime(at))
    }

    /// Whether a local civil datetime lies in today's window, or in yesterday's window that runs past midnight.
    fn is_open_civil(&self, local: DateTime) -> bool {
        let days = self.days();
        let today = local.weekday().to_monday_zero_offset() as usize;
        // Windows are whole minutes, so flooring the local time to its minute decides the same.
        let minute = local.hour() as u16 * 60 + local.minute() as u16;
        let DayWindow { start, stop, active } = *days[today];
        if active && start.minutes() <= minute && (minute < stop.minutes() || stop < start) {
            return true;
        }
        let yesterday = days[(today + 6) % 7];
        yesterday.active && yesterday.stop < yesterday.start && minute < yesterday.stop.minutes()
    }

    /// The earliest instant at or after `from` that is open and whose local date lies in `dates`: `from` itself
    /// when it qualifies. `None` when none comes within about two weeks of the later of `from` and `dates.first`
    /// (no active day, the range already over, or every remaining window before `dates.last` skipped).
    ///
    /// Cost: a few zone conversions per day searched, stopping at the first day that has an opening.
    pub fn next_opening(&self, tz: &TimeZone, from: Timestamp, dates: DateRange) -> Option<Timestamp> {
        let from_local = tz.to_datetime(from);
        if dates.contains(from_local.date()) && self.is_open_civil(from_local) {
            return Some(from);
        }
        let from_date = from_local.date();
        if self.days().iter().all(|day| !day.active) || dates.last.is_some_and(|last| last.tomorrow().is_ok_and(|next| next < from_date)) {
            return None;
        }
        let base = dates.first.map_or(from_date, |first| first.max(from_date));
        // Qualifying instants form runs; the earliest one after `from` starts a run. A run starts where the
        // civil time reaches a window start or the range's first midnight, or at a zone transition (a gap
        // jumping past a start, a fold stepping back into a window).
        let mut best = Best::new(from);
        let qualifies = |t: Timestamp| {
            let local = tz.to_datetime(t);
            (dates.contains(local.date()) && self.is_open_civil(local)).then(|| local.date())
        };
        if let Some(first) = dates.first {
            for t in instants_at(tz, Some(first.to_datetime(Time::midnight()))).into_iter().flatten() {
                best.offer(t, qualifies);
            }
        }
        for date in search_dates(base) {
            if best.settled_before(date) {
                break;
            }
            let window = self.window_on(date);
            if window.active {
                for t in instants_at(tz, at_minute(date, window.start.minutes())).into_iter().flatten() {
                    best.offer(t, qualifies);
                }
            }
        }
        best.offer_transitions(tz, base, qualifies);
        best.found.map(|(t, _)| t)
    }

    /// When open at `from`, the first later instant at which it is closed; `None` if it never closes
    /// (every civil minute of the week covered). When closed at `from`, `from` itself.
    pub fn next_closing(&self, tz: &TimeZone, from: Timestamp) -> Option<Timestamp> {
        let from_local = tz.to_datetime(from);
        if !self.is_open_civil(from_local) {
            return Some(from);
        }
        // A closed run starts where the civil time reaches a window's stop, or at a zone transition.
        let mut best = Best::new(from);
        let closed = |t: Timestamp| {
            let local = tz.to_datetime(t);
            (!self.is_open_civil(local)).then(|| local.date())
        };
        let base = from_local.date();
        for date in search_dates(base) {
            if best.settled_before(date) {
                break;
            }
            let window = self.window_on(date);
            if window.active {
                let stop_date = if window.stop < window.start { date.tomorrow().ok() } else { Some(date) };
                let stops = stop_date.map(|d| instants_at(tz, at_minute(d, window.stop.minutes())));
                for t in stops.into_iter().flatten().flatten() {
                    best.offer(t, closed);
                }
            }
        }
        best.offer_transitions(tz, base, closed);
        best.found.map(|(t, _)| t)
    }

    fn window_on(&self, date: Date) -> DayWindow {
        *self.days()[date.weekday().to_monday_zero_offset() as usize]
    }
}

/// Local dates from the day before `base`, for [`SEARCH_DAYS`] days past it.
fn search_dates(base: Date) -> impl Iterator<Item = Date> {
    std::iter::successors(base.yesterday().ok(), |date| date.tomorrow().ok()).take(SEARCH_DAYS as usize + 2)
}

/// The earliest candidate instant after `from` passing a check, with its local date.
struct Best {
    from: Timestamp,
    found: Option<(Timestamp, Date)>,
}

impl Best {
    fn new(from: Timestamp) -> Best {
        Best { from, found: None }
    }

    /// Whether every instant whose local date is `date` or later comes after the best found: its date is two
    /// days back (a fold can't bring it after).
    fn settled_before(&self, date: Date) -> bool {
        self.found.is_some_and(|(_, found)| found.tomorrow().is_ok_and(|next| next < date))
    }

    fn offer(&mut self, t: Timestamp, check: impl Fn(Timestamp) -> Option<Date>) {
        if t > self.from
            && self.found.is_none_or(|(found, _)| t < found)
            && let Some(date) = check(t)
        {
            self.found = Some((t, date));
        }
    }

    /// Offers the zone's transitions from `from` (or two days before `base` if later) up to the best found so
    /// far, or to the end of the search.
    fn offer_transitions(&mut self, tz: &TimeZone, base: Date, check: impl Fn(Timestamp) -> Option<Date>) {
        let midnight = |days: i32| {
            let date = base.checked_add(jiff::Span::new().days(days)).ok()?;
            tz.to_ambiguous_timestamp(date.to_datetime(Time::midnight())).compatible().ok()
        };
        let lower = midnight(-2).map_or(self.from, |t| t.max(self.from));
        let end = midnight(SEARCH_DAYS + 2);
        // `following` is strictly after its argument: start a second early so a transition at `lower` counts.
        let lower = lower.checked_sub(jiff::SignedDuration::from_secs(1)).unwrap_or(lower);
        for transition in tz.following(lower) {
            let t = transition.timestamp();
            if self.found.is_some_and(|(found, _)| t >= found) || end.is_none_or(|end| t >= end) {
                break;
            }
            self.offer(t, &check);
        }
    }
}

/// `date` at `minutes` past midnight; 1440 is the next midnight.
fn at_minute(date: Date, minutes: u16) -> Option<DateTime> {
    if minutes >= 24 * 60 {
        return date.tomorrow().ok().map(|next| next.to_datetime(Time::midnight()));
    }
    Some(date.at((minutes / 60) as i8, (minutes % 60) as i8, 0, 0))
}

/// The instants whose local civil time is `local`: one, two in a fold, none in a gap (the transition
/// that jumps over it is offered on its own).
fn instants_at(tz: &TimeZone, local: Option<DateTime>) -> [Option<Timestamp>; 2] {
    let Some(local) = local else { return [None, None] };
    match tz.to_ambiguous_timestamp(local).offset() {
        AmbiguousOffset::Unambiguous { offset } => [offset.to_timestamp(local).ok(), None],
        AmbiguousOffset::Fold { before, after } => [before.to_timestamp(local).ok(), after.to_timestamp(local).ok()],
        AmbiguousOffset::Gap { .. } => [None, None],
    }
}

/// Checked against a reference written apart: per local date, the window's civil `[start, end)` pair, and an
/// instant is open when its civil datetime lies in the pair of its date or the day before; the next opening or
/// closing is found by stepping whole minutes (every change in the zones tested falls on a whole UTC minute).
#[cfg(test)]
mod tests {
    use std::ops::Range;
    use std::sync::LazyLock;

    use jiff::civil::{Date, DateTime, Time, Weekday, date};
    use jiff::tz::{AmbiguousOffset, TimeZone};
    use jiff::{SignedDuration, Timestamp};
    use proptest::prelude::*;

    use super::DateRange;
    use crate::domain::schedule::{DayWindow, TimeOfDay, WeekSchedule};

    const ZONES: [&str; 7] =
        ["America/New_York", "Europe/London", "America/Mexico_City", "Australia/Lord_Howe", "Pacific/Chatham", "America/Santiago", "UTC"];

    static TZS: LazyLock<Vec<TimeZone>> = LazyLock::new(|| ZONES.iter().map(|name| TimeZone::get(name).expect("zone")).collect());

    fn zone_named(name: &str) -> TimeZone {
        TZS[ZONES.iter().position(|z| *z == name).expect("listed zone")].clone()
    }

    fn ts(text: &str) -> Timestamp {
        text.parse().expect("timestamp")
    }

    fn minutes(m: u16) -> TimeOfDay {
        TimeOfDay::parse("t", &format!("{:02}:{:02}", m / 60, m % 60)).expect("time of day")
    }

    /// Mon..Sun, each `""` (inactive) or `"HH:MM-HH:MM"`.
    fn week(days: [&str; 7]) -> WeekSchedule {
        let day = |text: &str| match text.split_once('-') {
            None => DayWindow { start: minutes(9 * 60), stop: minutes(18 * 60), active: false },
            Some((start, stop)) => DayWindow {
                start: TimeOfDay::parse("t", start).expect("start"),
                stop: TimeOfDay::parse("t", stop).expect("stop"),
                active: true,
            },
        };
        let [mon, tue, wed, thu, fri, sat, sun] = days.map(day);
        WeekSchedule { mon, tue, wed, thu, fri, sat, sun }
    }

    // ---- The reference: civil [start, end) pairs per local date, and minute stepping. ----

    fn ref_day(week: &WeekSchedule, day: Date) -> &DayWindow {
        match day.weekday() {
            Weekday::Monday => &week.mon,
            Weekday::Tuesday => &week.tue,
            Weekday::Wednesday => &week.wed,
            Weekday::Thursday => &week.thu,
            Weekday::Friday => &week.fri,
            Weekday::Saturday => &week.sat,
            Weekday::Sunday => &week.sun,
        }
    }

    /// The civil interval `[start, end)` of the window that starts on `day`.
    fn ref_interval(week: &WeekSchedule, day: Date) -> Option<(DateTime, DateTime)> {
        let window = ref_day(week, day);
        if !window.active {
            return None;
        }
        let midnight = day.to_datetime(Time::midnight());
        let start = midnight + SignedDuration::from_mins(window.start.minutes().into());
        let stop_midnight = if window.stop < window.start { midnight + SignedDuration::from_hours(24) } else { midnight };
        Some((start, stop_midnight + SignedDuration::from_mins(window.stop.minutes().into())))
    }

    fn ref_open_civil(week: &WeekSchedule, local: DateTime) -> bool {
        // A window lasts under 48 hours, so only those starting the day before or on the same day can hold `local`.
        ref_open_in([ref_interval(week, local.date().yesterday().expect("date")), ref_interval(week, local.date())], local)
    }

    fn ref_open_in(intervals: [Option<(DateTime, DateTime)>; 2], local: DateTime) -> bool {
        let holds = |interval: Option<(DateTime, DateTime)>| matches!(interval, Some((start, end)) if start <= local && local < end);
        holds(intervals[0]) || holds(intervals[1])
    }

    fn ref_in_range(range: DateRange, day: Date) -> bool {
        range.first.is_none_or(|first| first <= day) && range.last.is_none_or(|last| day <= last)
    }

    fn ref_qualifies(week: &WeekSchedule, tz: &TimeZone, t: Timestamp, range: DateRange) -> bool {
        let local = tz.to_datetime(t);
        ref_in_range(range, local.date()) && ref_open_civil(week, local)
    }

    /// The whole minute after `t`. Every opening and closing in the zones tested falls on a whole UTC minute
    /// (whole-minute offsets, transitions and window bounds), so stepping minutes misses none.
    fn next_minute(t: Timestamp) -> Timestamp {
        Timestamp::from_second((t.as_second().div_euclid(60) + 1) * 60).expect("timestamp")
    }

    const REF_HORIZON: SignedDuration = SignedDuration::from_hours(24 * 16);

    fn ref_next_opening(week: &WeekSchedule, tz: &TimeZone, from: Timestamp, range: DateRange) -> Option<Timestamp> {
        if ref_qualifies(week, tz, from, range) {
            return Some(from);
        }
        let mut t = next_minute(from);
        let mut end = from + REF_HORIZON;
        if let Some(first) = range.first {
            // Nothing qualifies before the day before `first` starts: skip there.
            let eve = (first - SignedDuration::from_hours(24)).to_zoned(tz.clone()).expect("zoned").timestamp();
            t = t.max(Timestamp::from_second(eve.as_second().div_euclid(60) * 60).expect("timestamp"));
            end = end.max(eve + REF_HORIZON);
        }
        while t <= end {
            if ref_qualifies(week, tz, t, range) {
                return Some(t);
            }
            t += SignedDuration::from_mins(1);
        }
        None
    }

    fn ref_next_closing(week: &WeekSchedule, tz: &TimeZone, from: Timestamp) -> Option<Timestamp> {
        let open = |t| ref_open_civil(week, tz.to_datetime(t));
        if !open(from) {
            return Some(from);
        }
        let mut t = next_minute(from);
        while t <= from + REF_HORIZON {
            if !open(t) {
                return Some(t);
            }
            t += SignedDuration::from_mins(1);
        }
        None
    }

    // ---- Exhaustive: every minute of 2026, against the reference, in each zone. ----

    /// Schedules, and whether to check every minute of the year with them. The others aim at DST changes (on
    /// Sundays, or at Saturday midnight in Santiago): every minute of the days around each change, and a sample
    /// of the rest of the year.
    fn schedules() -> Vec<(&'static str, WeekSchedule, bool)> {
        vec![
            ("default", WeekSchedule::default(), true),
            ("wraps", week(["", "09:00-24:00", "00:00-03:00", "12:00-13:30", "22:00-02:00", "23:00-01:30", "22:00-02:00"]), true),
            ("whole days", week(["00:00-24:00", "", "00:00-24:00", "00:00-24:00", "18:00-24:00", "00:00-24:00", "00:00-24:00"]), false),
            ("gap starts", week(["01:30-02:30", "", "", "", "", "23:00-24:00", "02:30-03:30"]), false),
            ("gap stops", week(["", "02:30-03:30", "", "", "", "22:00-00:30", "01:30-02:30"]), false),
            ("gap whole", week(["", "", "08:00-08:01", "", "", "23:30-02:15", "02:00-03:00"]), false),
            ("fold hour", week(["", "", "", "", "", "", "01:00-02:00"]), false),
            ("fold re-entry", week(["", "", "", "", "23:59-00:01", "00:00-00:30", "00:30-01:30"]), false),
            ("half hours", week(["", "", "", "", "", "23:45-01:45", "02:15-02:45"]), false),
            ("chatham", week(["", "", "", "", "", "22:00-03:00", "03:00-04:00"]), false),
            ("always", week(["00:00-24:00"; 7]), false),
        ]
    }

    /// For each index, the first index at or after it where `flags` holds (`u32::MAX` when none).
    fn next_true(flags: impl DoubleEndedIterator<Item = bool> + ExactSizeIterator) -> Vec<u32> {
        let mut next = vec![u32::MAX; flags.len() + 1];
        for (i, flag) in flags.enumerate().rev() {
            next[i] = if flag { i as u32 } else { next[i + 1] };
        }
        next
    }

    fn exhaustive_year(zone: &str) {
        let tz = zone_named(zone);
        let t0 = ts("2025-12-29T00:00:00Z");
        let at = |i: usize| t0 + SignedDuration::from_mins(i as i64);
        let index = |t: Timestamp| (t.duration_since(t0).as_secs() / 60) as usize;
        let day = SignedDuration::from_hours(24);
        // Every instant whose local time is in 2026 in some zone; the table runs 20 days on so that searches end in it.
        let year = index(ts("2025-12-31T10:00:00Z"))..index(ts("2027-01-01T12:00:00Z"));
        let len = year.end + 20 * 1440;
        let locals: Vec<DateTime> = (0..len).map(|i| tz.to_datetime(at(i))).collect();
        // Each minute's local date as an index into `dates`, which starts two days before the first.
        let dates: Vec<Date> = std::iter::successors(Some(date(2025, 12, 26)), |d| d.tomorrow().ok()).take(len / 1440 + 6).collect();
        let mut day_of = Vec::with_capacity(len);
        for local in &locals {
            let last = day_of.last().copied().unwrap_or(0);
            day_of.push(if dates[last] == local.date() {
                last
            } else {
                dates.iter().position(|d| *d == local.date()).expect("date in table")
            });
        }
        // Anchors: the zone's transitions in 2026, or two fixed dates where there is none.
        let mut anchors: Vec<usize> =
            tz.following(at(year.start)).map(|tr| index(tr.timestamp())).take_while(|i| year.contains(i)).collect();
        if anchors.is_empty() {
            anchors = vec![index(ts("2026-03-08T12:00:00Z")), index(ts("2026-11-01T12:00:00Z"))];
        }
        let around = |i: usize, days: usize| i.saturating_sub(days * 1440).max(year.start)..(i + days * 1440).min(year.end);
        // Date ranges on, around, from and until an anchor's local date.
        let ranges_at = |anchor: usize| {
            let d = locals[anchor].date();
            [
                DateRange { first: Some(d), last: Some(d) },
                DateRange { first: Some(d - day), last: Some(d + day) },
                DateRange { first: Some(d + day), last: None },
                DateRange { first: None, last: Some(d - day) },
            ]
        };

        for (name, week, full) in schedules() {
            let intervals: Vec<_> = dates.iter().map(|&d| ref_interval(&week, d)).collect();
            if !full {
                for i in year.clone().step_by(151) {
                    assert_eq!(week.is_open_at(&tz, at(i)), ref_open_civil(&week, locals[i]), "{zone} {name}: is_open_at({})", at(i));
                }
            }
            // Full schedules: the whole year in one piece. The others: the 4 days around each anchor, with the reference's
            // table from 5 days before it (for the date ranges). The table runs 20 days past the minutes checked, so that
            // every search ends in it.
            let pieces: Vec<(Range<usize>, Range<usize>, Vec<usize>)> = if full {
                vec![(year.clone(), year.start..(year.end + 20 * 1440).min(len), anchors.clone())]
            } else {
                anchors.iter().map(|&a| (around(a, 2), around(a, 5).start..(a + 25 * 1440).min(len), vec![a])).collect()
            };
            for (checked, table, piece_anchors) in pieces {
                let open: Vec<bool> =
                    table.clone().map(|i| ref_open_in([intervals[day_of[i] - 1], intervals[day_of[i]]], locals[i])).collect();
                for i in checked.clone() {
                    if week.is_open_at(&tz, at(i)) != open[i - table.start] {
                        panic!("{zone} {name}: is_open_at({}) = {} (local {})", at(i), !open[i - table.start], locals[i]);
                    }
                }

                // The reference answer from minute `i` plus `second` seconds: `from` itself when `holds` (the state
                // is constant through a minute), else the next minute where the table (from `offset`) holds.
                let expect = |next: &[u32], offset: usize, i: usize, second: i64, holds: bool| {
                    let from = at(i) + SignedDuration::from_secs(second);
                    let j = next[i - offset + 1];
                    (from, if holds { Some(from) } else { (j != u32::MAX).then(|| at(j as usize + offset)) })
                };
                let next_open = next_true(open.iter().copied());
                let next_closed = next_true(open.iter().map(|o| !o));
                for i in checked.clone().step_by(if full { 37 } else { 23 }) {
                    let second = if i % 2 == 0 { 0 } else { (i as i64 * 13) % 60 };
                    let holds = open[i - table.start];
                    let (from, want) = expect(&next_open, table.start, i, second, holds);
                    assert_eq!(week.next_opening(&tz, from, DateRange::ANY), want, "{zone} {name}: next_opening from {from}");
                    let (from, want) = expect(&next_closed, table.start, i, second, !holds);
                    assert_eq!(week.next_closing(&tz, from), want, "{zone} {name}: next_closing from {from}");
                }

                for range in piece_anchors.iter().flat_map(|&a| ranges_at(a)) {
                    let anchor = range.first.or(range.last).expect("bounded range");
                    let near = around(index(anchor.to_zoned(tz.clone()).expect("zoned").timestamp()), 3);
                    let sub = near.start..(near.end + 20 * 1440).min(table.end);
                    let qualifies: Vec<bool> =
                        sub.clone().map(|i| open[i - table.start] && ref_in_range(range, locals[i].date())).collect();
                    let next_q = next_true(qualifies.iter().copied());
                    let mut starts: Vec<usize> = near.clone().step_by(37).collect();
                    if range.first.is_some() {
                        // From far before the range: nothing qualifies before `sub`, whose first local dates are days before `first`.
                        starts.push(year.start);
                    }
                    for i in starts {
                        let (from, want) = if i < sub.start {
                            let j = next_q[0];
                            (at(i), (j != u32::MAX).then(|| at(j as usize + sub.start)))
                        } else {
                            expect(&next_q, sub.start, i, (i as i64 * 7) % 60, qualifies[i - sub.start])
                        };
                        assert_eq!(week.next_opening(&tz, from, range), want, "{zone} {name}: next_opening from {from} in {range:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn every_minute_of_2026_in_new_york() {
        exhaustive_year("America/New_York");
    }

    #[test]
    fn every_minute_of_2026_in_london() {
        exhaustive_year("Europe/London");
    }

    #[test]
    fn every_minute_of_2026_in_mexico_city() {
        exhaustive_year("America/Mexico_City");
    }

    #[test]
    fn every_minute_of_2026_on_lord_howe() {
        exhaustive_year("Australia/Lord_Howe");
    }

    #[test]
    fn every_minute_of_2026_on_chatham() {
        exhaustive_year("Pacific/Chatham");
    }

    #[test]
    fn every_minute_of_2026_in_santiago() {
        exhaustive_year("America/Santiago");
    }

    #[test]
    fn every_minute_of_2026_in_utc() {
        exhaustive_year("UTC");
    }

    // ---- Random schedules, zones and instants (biased to the hours around DST changes), against the reference. ----

    /// Each zone's transitions from 2024 to 2027.
    static TRANSITIONS: LazyLock<Vec<Vec<Timestamp>>> = LazyLock::new(|| {
        let end = ts("2028-01-01T00:00:00Z");
        TZS.iter().map(|tz| tz.following(ts("2024-01-01T00:00:00Z")).map(|tr| tr.timestamp()).take_while(|t| *t < end).collect()).collect()
    });

    fn arb_minute() -> impl Strategy<Value = u16> {
        prop_oneof![
            3 => (0u16..96).prop_map(|quarter| quarter * 15),
            2 => 0u16..1440,
            // Around midnight and the usual DST hours.
            2 => prop::sample::select(vec![0u16, 1, 30, 59, 60, 90, 119, 120, 135, 150, 165, 180, 210, 225, 239, 1380, 1410, 1439]),
        ]
    }

    fn arb_day() -> impl Strategy<Value = DayWindow> {
        (any::<bool>(), arb_minute(), prop_oneof![4 => arb_minute(), 1 => Just(1440u16)]).prop_map(|(active, start, stop)| {
            // start == stop is invalid: make it the whole day, or up to the next midnight written as 00:00.
            let stop = if stop != start {
                stop
            } else if start == 0 {
                1440
            } else {
                0
            };
            DayWindow { start: minutes(start), stop: minutes(stop), active }
        })
    }

    fn arb_week() -> impl Strategy<Value = WeekSchedule> {
        prop::array::uniform7(arb_day()).prop_map(|[mon, tue, wed, thu, fri, sat, sun]| WeekSchedule { mon, tue, wed, thu, fri, sat, sun })
    }

    /// A zone (index into `ZONES`) and a whole-second instant in 2024–2027, half the time within 36 hours of a transition.
    fn arb_instant() -> impl Strategy<Value = (usize, Timestamp)> {
        let (low, high) = (ts("2024-01-01T00:00:00Z").as_second(), ts("2028-01-01T00:00:00Z").as_second());
        (0..ZONES.len(), any::<bool>(), any::<prop::sample::Index>(), -129_600i64..129_600, low..high, any::<bool>()).prop_map(
            move |(zone, near, pick, offset, uniform, whole_minute)| {
                let transitions = &TRANSITIONS[zone];
                let second = if near && !transitions.is_empty() { pick.get(transitions).as_second() + offset } else { uniform };
                let second = if whole_minute { second.div_euclid(60) * 60 } else { second };
                (zone, Timestamp::from_second(second).expect("timestamp"))
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn is_open_at_matches_reference(week in arb_week(), (zone, at) in arb_instant()) {
            let tz = &TZS[zone];
            // A spread of instants over the following five days, at odd second offsets.
            for step in 0..64 {
                let t = at + SignedDuration::from_secs(step * 6_737);
                prop_assert_eq!(week.is_open_at(tz, t), ref_open_civil(&week, tz.to_datetime(t)), "{} at {}", ZONES[zone], t);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn next_opening_matches_reference(
            week in arb_week(),
            (zone, from) in arb_instant(),
            first in prop::option::of(-3i64..8),
            last in prop::option::of(-2i64..10),
        ) {
            let tz = &TZS[zone];
            let today = tz.to_datetime(from).date();
            let day = |offset: i64| today + SignedDuration::from_hours(24 * offset);
            let range = DateRange { first: first.map(day), last: last.map(day) };
            prop_assert_eq!(week.next_opening(tz, from, range), ref_next_opening(&week, tz, from, range), "{} from {} in {:?}", ZONES[zone], from, range);
        }

        #[test]
        fn next_closing_matches_reference(week in arb_week(), (zone, from) in arb_instant()) {
            let tz = &TZS[zone];
            prop_assert_eq!(week.next_closing(tz, from), ref_next_closing(&week, tz, from), "{} from {}", ZONES[zone], from);
        }
    }

    // ---- Named cases. ----

    #[test]
    fn spring_forward_swallows_a_window_inside_the_gap() {
        // New York, Sunday 2026-03-08: 02:00 EST is followed by 03:00 EDT (07:00Z); civil 02:xx never happens.
        let (tz, sunday) = (zone_named("America/New_York"), week(["", "", "", "", "", "", "02:00-03:00"]));
        let mut t = ts("2026-03-08T05:00:00Z");
        while t < ts("2026-03-09T04:00:00Z") {
            assert!(!sunday.is_open_at(&tz, t), "open at {t}");
            assert!(!ref_open_civil(&sunday, tz.to_datetime(t)), "reference open at {t}");
            t += SignedDuration::from_secs(30);
        }
        let next = ts("2026-03-15T02:00:00-04:00");
        assert_eq!(sunday.next_opening(&tz, ts("2026-03-07T12:00:00-05:00"), DateRange::ANY), Some(next));
        assert_eq!(ref_next_opening(&sunday, &tz, ts("2026-03-07T12:00:00-05:00"), DateRange::ANY), Some(next));
        // From the Monday before, the only window in reach is swallowed: the next is 13 days away.
        assert_eq!(sunday.next_opening(&tz, ts("2026-03-02T09:00:00-05:00"), DateRange::ANY), Some(next));
        assert_eq!(
            sunday.next_opening(&tz, ts("2026-03-02T09:00:00-05:00"), DateRange { first: None, last: Some(date(2026, 3, 14)) }),
            None
        );
    }

    #[test]
    fn a_start_inside_the_gap_opens_at_the_transition() {
        let tz = zone_named("America/New_York");
        let transition = ts("2026-03-08T07:00:00Z");
        let late = week(["", "", "", "", "", "", "02:30-03:30"]);
        assert!(!late.is_open_at(&tz, transition - SignedDuration::from_secs(1)));
        assert!(late.is_open_at(&tz, transition));
        assert_eq!(late.next_opening(&tz, ts("2026-03-08T00:00:00-05:00"), DateRange::ANY), Some(transition));
        assert_eq!(late.next_closing(&tz, transition), Some(ts("2026-03-08T03:30:00-04:00")));
        // A window whose stop falls in the gap closes at the transition.
        let early = week(["", "", "", "", "", "", "01:30-02:30"]);
        assert_eq!(early.next_opening(&tz, ts("2026-03-08T00:00:00-05:00"), DateRange::ANY), Some(ts("2026-03-08T01:30:00-05:00")));
        assert_eq!(early.next_closing(&tz, ts("2026-03-08T01:45:00-05:00")), Some(transition));
        // Lord Howe moves 30 minutes, 02:00 to 02:30 (+10:30 to +11): 02:15–02:45 opens at the transition.
        let lord_howe = zone_named("Australia/Lord_Howe");
        let half = week(["", "", "", "", "", "", "02:15-02:45"]);
        let transition = ts("2026-10-03T15:30:00Z");
        assert_eq!(lord_howe.to_datetime(transition).to_string(), "2026-10-04T02:30:00");
        assert_eq!(half.next_opening(&lord_howe, ts("2026-10-03T12:00:00Z"), DateRange::ANY), Some(transition));
        assert_eq!(half.next_closing(&lord_howe, transition), Some(ts("2026-10-04T02:45:00+11:00")));
    }

    #[test]
    fn fall_back_fold_hour_is_open_for_two_real_hours() {
        // New York, Sunday 2026-11-01: 01:00–02:00 EDT (05:00Z–06:00Z), then 01:00–02:00 EST (06:00Z–07:00Z).
        let (tz, fold) = (zone_named("America/New_York"), week(["", "", "", "", "", "", "01:00-02:00"]));
        assert!(!fold.is_open_at(&tz, ts("2026-11-01T04:59:59Z")));
        for open in ["2026-11-01T05:00:00Z", "2026-11-01T05:59:59Z", "2026-11-01T06:00:00Z", "2026-11-01T06:59:59Z"] {
            assert!(fold.is_open_at(&tz, ts(open)), "closed at {open}");
        }
        assert!(!fold.is_open_at(&tz, ts("2026-11-01T07:00:00Z")));
        assert_eq!(fold.next_opening(&tz, ts("2026-10-31T12:00:00Z"), DateRange::ANY), Some(ts("2026-11-01T05:00:00Z")));
        assert_eq!(fold.next_closing(&tz, ts("2026-11-01T05:00:00Z")), Some(ts("2026-11-01T07:00:00Z")));
        // 01:15–01:45 happens twice: it reopens at 01:15 EST.
        let twice = week(["", "", "", "", "", "", "01:15-01:45"]);
        assert_eq!(twice.next_closing(&tz, ts("2026-11-01T01:20:00-04:00")), Some(ts("2026-11-01T01:45:00-04:00")));
        assert_eq!(twice.next_opening(&tz, ts("2026-11-01T01:45:00-04:00"), DateRange::ANY), Some(ts("2026-11-01T01:15:00-05:00")));
        // 00:30–01:30 closes at 01:30 EDT and opens again when the clock falls back to 01:00 EST, not at a start time.
        let reentry = week(["", "", "", "", "", "", "00:30-01:30"]);
        assert_eq!(reentry.next_closing(&tz, ts("2026-11-01T00:45:00-04:00")), Some(ts("2026-11-01T01:30:00-04:00")));
        assert_eq!(reentry.next_opening(&tz, ts("2026-11-01T01:30:00-04:00"), DateRange::ANY), Some(ts("2026-11-01T06:00:00Z")));
        assert_eq!(reentry.next_closing(&tz, ts("2026-11-01T06:00:00Z")), Some(ts("2026-11-01T01:30:00-05:00")));
    }

    #[test]
    fn sunday_night_wraps_into_monday() {
        let (tz, sunday) = (TimeZone::UTC, week(["", "", "", "", "", "", "22:00-02:00"]));
        // 2026-01-04 is a Sunday.
        assert!(!sunday.is_open_at(&tz, ts("2026-01-04T21:59:59Z")));
        assert!(sunday.is_open_at(&tz, ts("2026-01-04T22:00:00Z")));
        assert!(sunday.is_open_at(&tz, ts("2026-01-05T01:59:59Z")));
        assert!(!sunday.is_open_at(&tz, ts("2026-01-05T02:00:00Z")));
        // Monday's own window is off; Sunday's runs into it all the same.
        assert!(!sunday.is_open_at(&tz, ts("2026-01-05T22:30:00Z")));
        assert_eq!(sunday.next_closing(&tz, ts("2026-01-04T23:00:00Z")), Some(ts("2026-01-05T02:00:00Z")));
        assert_eq!(sunday.next_opening(&tz, ts("2026-01-05T02:00:00Z"), DateRange::ANY), Some(ts("2026-01-11T22:00:00Z")));
        // A range starting on the Monday opens at its midnight, inside Sunday's window.
        let monday = DateRange { first: Some(date(2026, 1, 5)), last: None };
        assert_eq!(sunday.next_opening(&tz, ts("2026-01-01T00:00:00Z"), monday), Some(ts("2026-01-05T00:00:00Z")));
        // A range ending on the Sunday stops at midnight: the window's Monday part is outside it.
        let until_sunday = DateRange { first: None, last: Some(date(2026, 1, 4)) };
        assert_eq!(sunday.next_opening(&tz, ts("2026-01-05T00:30:00Z"), until_sunday), None);
        assert_eq!(sunday.next_opening(&tz, ts("2026-01-04T12:00:00Z"), until_sunday), Some(ts("2026-01-04T22:00:00Z")));
    }

    #[test]
    fn stop_at_24_00_runs_to_midnight() {
        let (tz, friday) = (zone_named("Europe/London"), week(["", "", "", "", "18:00-24:00", "", ""]));
        // 2026-07-03 is a Friday (BST, +01:00).
        assert!(friday.is_open_at(&tz, ts("2026-07-03T23:59:59+01:00")));
        assert!(!friday.is_open_at(&tz, ts("2026-07-04T00:00:00+01:00")));
        assert_eq!(friday.next_closing(&tz, ts("2026-07-03T20:00:00+01:00")), Some(ts("2026-07-04T00:00:00+01:00")));
        // Followed by a day starting at 00:00 it does not close at midnight.
        let weekend = week(["", "", "", "", "18:00-24:00", "00:00-03:00", ""]);
        assert_eq!(weekend.next_closing(&tz, ts("2026-07-03T20:00:00+01:00")), Some(ts("2026-07-04T03:00:00+01:00")));
    }

    #[test]
    fn a_whole_week_never_closes_and_an_empty_one_never_opens() {
        let tz = zone_named("America/New_York");
        let always = week(["00:00-24:00"; 7]);
        for at in ["2026-03-08T07:00:00Z", "2026-11-01T06:30:00Z", "2026-06-01T12:00:00Z"] {
            assert!(always.is_open_at(&tz, ts(at)));
            assert_eq!(always.next_closing(&tz, ts(at)), None);
            assert_eq!(always.next_opening(&tz, ts(at), DateRange::ANY), Some(ts(at)));
        }
        let never = week([""; 7]);
        assert!(!never.is_open_at(&tz, ts("2026-06-01T12:00:00Z")));
        assert_eq!(never.next_opening(&tz, ts("2026-06-01T12:00:00Z"), DateRange::ANY), None);
        assert_eq!(never.next_closing(&tz, ts("2026-06-01T12:00:00Z")), Some(ts("2026-06-01T12:00:00Z")));
    }

    #[test]
    fn date_ranges_bound_the_search() {
        let (tz, default) = (zone_named("America/New_York"), WeekSchedule::default());
        let wednesday = ts("2026-06-03T12:00:00-04:00");
        let range = |first: Option<Date>, last: Option<Date>| DateRange { first, last };
        // Open now, and today is in range.
        assert_eq!(default.next_opening(&tz, wednesday, range(Some(date(2026, 6, 3)), Some(date(2026, 6, 3)))), Some(wednesday));
        // Over: the last date has passed.
        assert_eq!(default.next_opening(&tz, wednesday, range(None, Some(date(2026, 6, 2)))), None);
        // An empty range.
        assert_eq!(default.next_opening(&tz, wednesday, range(Some(date(2026, 6, 5)), Some(date(2026, 6, 4)))), None);
        // Not started: the first weekday on or after `first`, however far.
        assert_eq!(default.next_opening(&tz, wednesday, range(Some(date(2027, 1, 2)), None)), Some(ts("2027-01-04T09:00:00-05:00")));
        // A range of weekend days only: never open.
        assert_eq!(default.next_opening(&tz, wednesday, range(Some(date(2026, 6, 6)), Some(date(2026, 6, 7)))), None);
    }

    #[test]
    fn a_range_starting_on_a_midnight_that_does_not_exist_opens_at_the_transition() {
        // Santiago springs forward at Saturday 24:00 (-04) to Sunday 01:00 (-03): 2026-09-06 00:00 does not exist.
        let tz = zone_named("America/Santiago");
        let first = date(2026, 9, 6);
        assert!(matches!(tz.to_ambiguous_timestamp(first.to_datetime(Time::midnight())).offset(), AmbiguousOffset::Gap { .. }));
        let weekend = week(["", "", "", "", "", "22:00-03:00", "00:00-24:00"]);
        let range = DateRange { first: Some(first), last: None };
        assert_eq!(weekend.next_opening(&tz, ts("2026-09-05T12:00:00-04:00"), range), Some(ts("2026-09-06T04:00:00Z")));
        assert_eq!(ref_next_opening(&weekend, &tz, ts("2026-09-05T12:00:00-04:00"), range), Some(ts("2026-09-06T04:00:00Z")));
    }
}
