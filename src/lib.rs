//! Outbound: an engine for outbound AI-voice and WhatsApp campaigns with an Altur-compatible API.
//!
//! Layout: `domain` holds the contract's types and rules (no I/O); `store` persists them behind
//! one trait; `api` serves HTTP; `dashboard` serves the web pages beside it, through the same
//! rules and store calls; `server` and `cli` wire them into the `outbound` binary.

pub mod api;
pub mod cli;
pub mod clock;
pub mod dashboard;
pub mod domain;
pub mod engine;
pub mod import;
pub mod metrics;
pub mod providers;
pub mod server;
pub mod store;
pub mod webhooks;
