//! Pure types and rules of the contract. No I/O; everything else depends on this module.

pub mod agent;
pub mod analytics;
pub mod attempt;
pub mod campaign;
pub mod contact;
pub mod ids;
pub mod integration;
pub mod outcome;
pub mod schedule;
pub mod validation;
pub mod window;
