//! Pacing of hand-offs per integration (`max_per_second`, PROVIDERS.md §1): a GCRA whose state,
//! the theoretical arrival time of the next hand-off, is kept with the integration, so that every
//! campaign and every process using it shares one pace.

/// How late a hand-off may start and still keep its slot (the engine polls every 100 ms, plus the
/// time its work takes): also the most credit an idle integration builds up. Any 60 s then hold
/// at most `max_per_second` × 60.25 + 1 hand-offs.
const SLACK_MICROS: f64 = 250_000.0;

/// How many of `wanted` hand-offs may start at `now` (microseconds since the epoch) given the
/// stored theoretical arrival time `tat`, and the new one to store. Each slot follows the last
/// by one interval, not the poll that took it, so a late poll loses nothing.
pub fn admit(tat: Option<i64>, now: i64, per_second: f64, wanted: u32) -> (u32, i64) {
    let interval = (1e6 / per_second).max(1.0);
    let earliest = now as f64 - SLACK_MICROS;
    let start = tat.map_or(earliest, |tat| (tat as f64).max(earliest));
    if start > now as f64 || wanted == 0 {
        return (0, start as i64);
    }
    let available = ((now as f64 - start) / interval).floor() + 1.0;
    let granted = available.min(f64::from(wanted)) as u32;
    (granted, (start + f64::from(granted) * interval).round() as i64)
}

/// How many of `wanted` hand-offs the pace allows at `at` (what a claim may take).
pub fn allowed(tat: Option<i64>, at: jiff::Timestamp, per_second: f64, wanted: i64) -> i64 {
    i64::from(admit(tat, at.as_microsecond(), per_second, u32::try_from(wanted.max(0)).unwrap_or(u32::MAX)).0)
}

/// The state to store once `taken` hand-offs started at `at`.
pub fn after_taking(tat: Option<i64>, at: jiff::Timestamp, per_second: f64, taken: i64) -> i64 {
    admit(tat, at.as_microsecond(), per_second, u32::try_from(taken.max(0)).unwrap_or(u32::MAX)).1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_per_second_keeps_its_slots_a_second_apart() {
        let (granted, tat) = admit(None, 0, 1.0, 10);
        assert_eq!((granted, tat), (1, 750_000), "the first at once (a quarter second of credit)");
        assert_eq!(admit(Some(tat), 749_999, 1.0, 10).0, 0);
        assert_eq!(admit(Some(tat), 750_000, 1.0, 10), (1, 1_750_000));
        // A poll 200 ms late still takes its slot, and the next stays a second after it.
        assert_eq!(admit(Some(1_750_000), 1_950_000, 1.0, 10), (1, 2_750_000));
    }

    #[test]
    fn an_idle_integration_gets_a_quarter_second_of_credit_at_most() {
        assert_eq!(admit(Some(0), 60_000_000, 80.0, 1000).0, 21);
        assert_eq!(admit(Some(0), 60_000_000, 1.0, 1000).0, 1);
    }

    #[test]
    fn sixty_seconds_of_late_polls_hold_the_rate() {
        for per_second in [1.0, 5.0, 50.0, 80.0, 333.0] {
            // Polls every 107 ms (100 ms and the work of a tick), each wanting far more than allowed.
            let (mut tat, mut total) = (None, 0_u64);
            for poll in 0..=560 {
                let (granted, next) = admit(tat, poll * 107_000, per_second, 100_000);
                tat = Some(next);
                total += u64::from(granted);
            }
            let allowed = per_second * 59.92;
            assert!((total as f64) <= allowed * 1.005 + 1.0, "{per_second}/s gave {total} in 60 s");
            assert!((total as f64) >= allowed * 0.99 - 1.0, "{per_second}/s gave only {total} in 60 s");
        }
    }

    #[test]
    fn taking_less_than_allowed_keeps_the_rest() {
        let (granted, tat) = admit(None, 0, 10.0, 1);
        assert_eq!(granted, 1);
        assert_eq!(admit(Some(tat), 0, 10.0, 5).0, 2);
    }
}
