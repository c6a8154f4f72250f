//! A throwaway PostgreSQL database for a run: named here, created by the first `outbound serve`
//! that opens it, dropped at the end. Plus the rules the test suites share for PostgreSQL and
//! Redis that may be missing (the same as `tests/api/helpers.rs`): reachable, or skipped with a
//! `SKIPPED: …` line, unless `CI` or `OUTBOUND_REQUIRE_POSTGRES=1` (`OUTBOUND_REQUIRE_REDIS=1`)
//! is set, which makes unreachability a failure. Part of the kit (`mod.rs`), and included alone by
//! `tests/api/helpers.rs`, whose databases these are too.

// Each user of this file uses a different part of it.
#![allow(dead_code)]

use std::time::Duration;

use rand::Rng;
use sqlx::Connection;

pub struct ThrowawayDatabase {
    admin_url: String,
    name: String,
    /// What to pass as `--database`.
    pub url: String,
}

impl ThrowawayDatabase {
    /// A new database name on the server at `server_url` (`postgres://USER@HOST:PORT`), once the
    /// server answers.
    pub async fn new(server_url: &str, prefix: &str) -> Result<ThrowawayDatabase, String> {
        ThrowawayDatabase::beside(&format!("{}/postgres", server_url.trim_end_matches('/')), prefix).await
    }

    /// A new database name on the server of `admin_url` (a full URL naming a database that exists,
    /// e.g. `postgres://postgres@127.0.0.1:5432/test`), once that database answers.
    pub async fn beside(admin_url: &str, prefix: &str) -> Result<ThrowawayDatabase, String> {
        let connected = tokio::time::timeout(Duration::from_secs(5), sqlx::PgConnection::connect(admin_url)).await;
        let admin = match connected {
            Ok(Ok(admin)) => admin,
            Ok(Err(err)) => return Err(format!("PostgreSQL not reachable at {admin_url}: {err}")),
            Err(_) => return Err(format!("PostgreSQL not reachable at {admin_url}: timed out")),
        };
        let _ = admin.close().await;
        let name = format!("{prefix}_{:016x}", rand::rng().random::<u64>());
        let mut url = url::Url::parse(admin_url).map_err(|e| format!("{admin_url} is not a URL: {e}"))?;
        url.set_path(&format!("/{name}"));
        Ok(ThrowawayDatabase { url: url.to_string(), admin_url: admin_url.to_owned(), name })
    }

    /// Creates the database now (instead of letting the first server that opens it create it).
    pub async fn create(&self) -> Result<(), String> {
        let mut admin = sqlx::PgConnection::connect(&self.admin_url).await.map_err(|e| e.to_string())?;
        let statement = format!("CREATE DATABASE \"{}\"", self.name);
        sqlx::query(sqlx::AssertSqlSafe(statement)).execute(&mut admin).await.map_err(|e| e.to_string())?;
        admin.close().await.map_err(|e| e.to_string())
    }

    /// `drop_database` from synchronous code, even inside a runtime (a `Drop`): on a thread and a
    /// runtime of its own. Best effort: a failure is printed.
    pub fn drop_blocking(self) {
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
            runtime.block_on(self.drop_database())
        });
        match dropped.join() {
            Ok(Ok(())) => {}
            Ok(Err(err)) => eprintln!("could not drop a test database: {err}"),
            Err(_) => eprintln!("could not drop a test database: the thread dropping it panicked"),
        }
    }

    pub async fn drop_database(self) -> Result<(), String> {
        let mut admin = sqlx::PgConnection::connect(&self.admin_url).await.map_err(|e| e.to_string())?;
        let statement = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        sqlx::query(sqlx::AssertSqlSafe(statement)).execute(&mut admin).await.map_err(|e| e.to_string())?;
        admin.close().await.map_err(|e| e.to_string())
    }
}

/// Whether a PostgreSQL that cannot be reached fails a test instead of skipping it.
pub fn postgres_required() -> bool {
    std::env::var_os("CI").is_some() || std::env::var("OUTBOUND_REQUIRE_POSTGRES").is_ok_and(|v| v == "1")
}

/// Whether a Redis that cannot be reached fails a test instead of skipping its Redis part.
pub fn redis_required() -> bool {
    std::env::var_os("CI").is_some() || std::env::var("OUTBOUND_REQUIRE_REDIS").is_ok_and(|v| v == "1")
}

/// Where PostgreSQL tests create their databases (a database that exists on that server).
pub fn test_postgres_url() -> String {
    std::env::var("OUTBOUND_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// The Redis tests use.
pub fn test_redis_url() -> String {
    std::env::var("OUTBOUND_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A throwaway database beside `test_postgres_url()` for a test; `None` (after a `SKIPPED:` line on
/// stderr) when PostgreSQL is not reachable and not required; a panic when it is required.
pub async fn for_test(prefix: &str) -> Option<ThrowawayDatabase> {
    match ThrowawayDatabase::beside(&test_postgres_url(), prefix).await {
        Ok(database) => Some(database),
        Err(err) if postgres_required() => panic!("{err}"),
        Err(err) => {
            eprintln!("SKIPPED: {err}");
            None
        }
    }
}

/// `test_redis_url()` when Redis answers PING; `None` (after a `SKIPPED:` line naming `what`, what
/// is skipped)
/// when it does not and is not required; a panic when it is required.
pub async fn redis_for_test(what: &str) -> Option<String> {
    let url = test_redis_url();
    let reached = async {
        let client = redis::Client::open(url.as_str())?;
        let mut connection = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut connection).await
    };
    let problem = match tokio::time::timeout(Duration::from_secs(3), reached).await {
        Ok(Ok(_)) => return Some(url),
        Ok(Err(err)) => err.to_string(),
        Err(_) => "timed out after 3 s".to_owned(),
    };
    if redis_required() {
        panic!("Redis not reachable at {url}: {problem}");
    }
    eprintln!("SKIPPED: Redis not reachable at {url} ({what})");
    None
}
