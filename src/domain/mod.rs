//! Pure types and rules of the contract. No I/O; everything else depends on this module.

pub mod agent;
pub mod analytics;
pub mod attempt;
pub mod campaign;
pub mod contact;
pub mod contact_hours;
pub mod credentials;
pub mod dnc;
pub mod ids;
pub mod integration;
pub mod outcome;
pub mod pacing;
pub mod plan;
pub mod schedule;
pub mod timezone;
pub mod validation;
pub mod webhook;
pub mod window;

/// `at` without its fraction of a second: resources keep their times in whole seconds, and a
/// response must show what a later read will.
pub fn whole_seconds(at: jiff::Timestamp) -> jiff::Timestamp {
    jiff::Timestamp::from_second(at.as_second()).unwrap_or(at)
}
