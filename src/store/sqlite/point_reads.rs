//! The reads every request makes, run on the calling thread.
//!
//! sqlx runs each SQLite connection on a thread of its own, so each of its queries is two
//! hand-offs between threads; on a small machine those wake-ups cost more than the query. The
//! reads on every request's path (its API key, a campaign by id) are primary-key lookups of a few
//! microseconds that WAL never makes wait for the writer, so they run here instead, synchronously,
//! on read-only connections of their own with prepared statements kept per connection. Being
//! reads of the database itself, they see every commit at once, this process's or another's
//! (`outbound keys revoke`, for one): nothing is cached.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::store::shared::StoredRow;
use crate::store::{StoreError, StoreResult};

/// Idle connections kept; one per thread that reads at once is enough (no read awaits).
const MAX_IDLE: usize = 16;
/// A WAL reader waits only while another connection recovers the log after a crash, and rarely
/// at that; the wait blocks the calling thread, so it is kept short.
const BUSY_TIMEOUT: Duration = Duration::from_secs(2);

pub(super) struct PointReads {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl PointReads {
    pub(super) fn new(path: &Path) -> Self {
        PointReads { path: path.to_owned(), idle: Mutex::new(Vec::new()) }
    }

    /// The first row `sql` returns for `params`, made into a value by `read`.
    pub(super) fn row<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        read: impl FnOnce(&rusqlite::Row<'_>) -> StoreResult<T>,
    ) -> StoreResult<Option<T>> {
        let conn = self.take()?;
        let found = conn
            .prepare_cached(sql)
            .and_then(|mut statement| statement.query_row(params, |row| Ok(read(row))).optional())
            .map_err(StoreError::from);
        self.give_back(conn);
        found?.transpose()
    }

    fn take(&self) -> StoreResult<Connection> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match idle {
            Some(conn) => Ok(conn),
            None => {
                let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
                let conn = Connection::open_with_flags(&self.path, flags)?;
                conn.busy_timeout(BUSY_TIMEOUT)?;
                Ok(conn)
            }
        }
    }

    fn give_back(&self, conn: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }
}

impl StoredRow for rusqlite::Row<'_> {
    fn int(&self, column: &str) -> StoreResult<i64> {
        Ok(self.get(column)?)
    }
    fn opt_int(&self, column: &str) -> StoreResult<Option<i64>> {
        Ok(self.get(column)?)
    }
    fn text(&self, column: &str) -> StoreResult<String> {
        Ok(self.get(column)?)
    }
    fn opt_text(&self, column: &str) -> StoreResult<Option<String>> {
        Ok(self.get(column)?)
    }
    fn flag(&self, column: &str) -> StoreResult<bool> {
        Ok(self.get(column)?)
    }
}
