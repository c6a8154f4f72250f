//! Charts drawn on the server as SVG: no chart library, no script, readable without colour
//! (every bar carries its number) and by screen readers (a title and a description).

use std::fmt::Write;

use jiff::Timestamp;
use jiff::tz::TimeZone;

pub struct Bar {
    label: &'static str,
    value: i64,
}

impl Bar {
    pub fn new(label: &'static str, value: i64) -> Bar {
        Bar { label, value }
    }
}

const WIDTH: i64 = 600;
const LABEL_WIDTH: i64 = 110;
const ROW: i64 = 30;

/// Horizontal bars scaled to the largest, each with its label and value: funnels and breakdowns.
pub fn funnel(title: &str, bars: &[Bar]) -> String {
    let height = ROW * bars.len() as i64 + 10;
    let largest = bars.iter().map(|b| b.value).max().unwrap_or(0).max(1);
    let description: Vec<String> = bars.iter().map(|b| format!("{} {}", b.label, b.value)).collect();
    let mut svg = format!(
        r#"<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{title}: {}"><title>{title}</title>"#,
        description.join(", ")
    );
    let room = WIDTH - LABEL_WIDTH - 80;
    for (i, bar) in bars.iter().enumerate() {
        let y = 5 + ROW * i as i64;
        let width = (bar.value.max(0) * room / largest).max(1);
        let _ = write!(
            svg,
            r##"<text x="0" y="{}">{}</text><rect x="{LABEL_WIDTH}" y="{}" width="{width}" height="20" rx="3" fill="#0b5cad"/><text x="{}" y="{}">{}</text>"##,
            y + 15,
            bar.label,
            y,
            LABEL_WIDTH + width + 6,
            y + 15,
            bar.value
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Attempts started per hour from `since` to `now`, one column per hour (zero where none), the
/// hours labelled in the campaign's zone every 6 hours.
pub fn per_hour(hours: &[(Timestamp, i64)], since: Timestamp, now: Timestamp, zone: &TimeZone) -> String {
    let first = since.as_second().div_euclid(3600);
    let last = now.as_second().div_euclid(3600);
    let count = usize::try_from(last - first + 1).unwrap_or(1).clamp(1, 24 * 14);
    let mut columns = vec![0_i64; count];
    for (hour, value) in hours {
        if let Ok(i) = usize::try_from(hour.as_second().div_euclid(3600) - first)
            && i < count
        {
            columns[i] += value;
        }
    }
    let total: i64 = columns.iter().sum();
    let largest = columns.iter().copied().max().unwrap_or(0).max(1);
    let (height, base) = (160_i64, 130_i64);
    let step = WIDTH as f64 / count as f64;
    let label_every = if count > 36 { 12 } else { 6 };
    let mut svg = format!(
        r#"<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="Attempts per hour: {total} in the last {count} hours, at most {} in one hour"><title>Attempts per hour</title>"#,
        columns.iter().max().unwrap_or(&0)
    );
    let _ = write!(svg, r##"<line x1="0" y1="{base}" x2="{WIDTH}" y2="{base}" stroke="#4a5361"/>"##);
    for (i, value) in columns.iter().enumerate() {
        let x = i as f64 * step;
        if *value > 0 {
            let h = (value * (base - 10) / largest).max(1);
            let _ = write!(
                svg,
                r##"<rect x="{x:.1}" y="{}" width="{:.1}" height="{h}" fill="#0b5cad"><title>{value}</title></rect>"##,
                base - h,
                (step - 1.0).max(1.0)
            );
        }
        let at = Timestamp::from_second((first + i as i64) * 3600).unwrap_or(since).to_zoned(zone.clone());
        if at.hour() % label_every == 0 {
            let _ = write!(svg, r#"<text x="{x:.1}" y="{}">{}</text>"#, base + 18, at.strftime("%a %H:00"));
        }
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn funnel_bars_carry_their_numbers() {
        let svg = funnel("Phone funnel", &[Bar::new("Contacts", 10), Bar::new("Processed", 5)]);
        assert!(svg.contains("aria-label=\"Phone funnel: Contacts 10, Processed 5\""));
        assert!(svg.contains(">10</text>") && svg.contains(">5</text>"));
    }

    #[test]
    fn hours_without_attempts_are_zero_columns() {
        let now: Timestamp = "2026-06-08T12:30:00Z".parse().expect("time");
        let since: Timestamp = "2026-06-08T10:00:00Z".parse().expect("time");
        let hour: Timestamp = "2026-06-08T11:00:00Z".parse().expect("time");
        let svg = per_hour(&[(hour, 7)], since, now, &TimeZone::UTC);
        assert!(svg.contains("7 in the last 3 hours"));
        assert_eq!(svg.matches("<rect").count(), 1);
    }
}
