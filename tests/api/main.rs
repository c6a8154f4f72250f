//! HTTP-level tests: each starts the real server on port 0 and speaks HTTP to it. Every test
//! runs on SQLite (`sqlite::…`) and on PostgreSQL (`postgres::…`, skipped with a notice when
//! PostgreSQL is not reachable, unless `CI` or `OUTBOUND_REQUIRE_POSTGRES=1` is set); the CLI
//! tests, which run the binary on a database file, only on SQLite.

// Every test file is compiled once per backend, on purpose.
#![allow(clippy::duplicate_mod)]

mod helpers;

mod cli;
mod postgres;
mod sqlite;
