//! HTTP-level tests: each starts the real server on port 0 and speaks HTTP to it.

mod helpers;

mod idempotency;
mod rate_limit;

mod agents_integrations;
mod auth;
mod campaign_create;
mod campaign_list;
mod campaign_update;
mod cli;
mod contacts;
mod engine;
mod engine_cycles;
mod engine_dispatch;
mod engine_events;
mod engine_lists;
mod engine_outcomes;
mod engine_webhook;
mod engine_whatsapp;
mod errors;
mod lifecycle;
mod openapi;
