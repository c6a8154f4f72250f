//! Reads, on read-only connections that WAL lets run beside the writer, with statements kept
//! prepared per connection.
//!
//! The reads on every request's path (its API key, a campaign by id) are primary-key lookups of
//! a few microseconds that WAL never makes wait for the writer: they run on the calling thread
//! ([`Reads::row`]), since handing them to another thread and back would cost more than the
//! query. Reads of many rows (pages, lists, the engine's scans) run on tokio's blocking threads
//! ([`Reads::read`]), each in one read transaction, so that a page and its count agree. Being
//! reads of the database itself, they see every commit at once, this process's or another's
//! (`outbound keys revoke`, for one).
//!
//! They also tell, for the API's read cache, whether anything was committed since an earlier
//! moment ([`Reads::data_version`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::store::{StoreError, StoreResult};

/// Idle connections kept; one per thread that reads at once is enough (no read awaits).
const MAX_IDLE: usize = 16;
/// A WAL reader waits only while another connection recovers the log after a crash, and rarely
/// at that; the wait blocks the calling thread, so it is kept short.
const BUSY_TIMEOUT: Duration = Duration::from_secs(2);

pub(super) struct Reads {
    path: PathBuf,
    idle: Mutex<Vec<Reader>>,
    /// Moves on whenever a reader finds that something was committed since it last looked.
    generation: AtomicU64,
}

struct Reader {
    conn: Connection,
    /// `PRAGMA data_version` when this connection last looked; `None` before it first did.
    seen_version: Option<i64>,
}

impl Reads {
    pub(super) fn new(path: &Path) -> Self {
        Reads { path: path.to_owned(), idle: Mutex::new(Vec::new()), generation: AtomicU64::new(0) }
    }

    /// A number that stays the same until something is committed to the database, by any
    /// connection of any process: what was read under one value may be reused while the value
    /// holds.
    ///
    /// SQLite's `PRAGMA data_version` tells one connection whether others committed since it
    /// last asked; with several connections, whichever sees a change first moves the shared
    /// generation on. A commit made after a value was returned is therefore seen by the next
    /// call on any connection: either that connection has not looked since the commit (it sees
    /// the change now) or it has, and moved the generation on then.
    pub(super) fn data_version(&self) -> StoreResult<u64> {
        let mut reader = self.take()?;
        let version = self.data_version_on(&mut reader);
        self.give_back(reader);
        version
    }

    fn data_version_on(&self, reader: &mut Reader) -> StoreResult<u64> {
        let version: i64 = reader.conn.prepare_cached("PRAGMA data_version")?.query_row([], |row| row.get(0))?;
        if reader.seen_version != Some(version) {
            reader.seen_version = Some(version);
            self.generation.fetch_add(1, Ordering::SeqCst);
        }
        Ok(self.generation.load(Ordering::SeqCst))
    }

    /// The first row `sql` returns for `params`, made into a value by `read`.
    pub(super) fn row<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        read: impl FnOnce(&rusqlite::Row<'_>) -> StoreResult<T>,
    ) -> StoreResult<Option<T>> {
        let reader = self.take()?;
        let found = super::first_row(&reader.conn, sql, params, read);
        self.give_back(reader);
        found
    }

    /// Runs `read` on a blocking thread, in a read transaction of its own.
    pub(super) async fn read<T, F>(self: &Arc<Self>, read: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let reads = self.clone();
        let run = move || {
            let reader = reads.take()?;
            let outcome = (|| {
                let snapshot = reader.conn.unchecked_transaction()?;
                let value = read(&snapshot)?;
                snapshot.finish()?;
                Ok(value)
            })();
            reads.give_back(reader);
            outcome
        };
        tokio::task::spawn_blocking(run).await.map_err(|_| StoreError::Unavailable)?
    }

    fn take(&self) -> StoreResult<Reader> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match idle {
            Some(reader) => Ok(reader),
            None => {
                let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
                let conn = Connection::open_with_flags(&self.path, flags)?;
                conn.busy_timeout(BUSY_TIMEOUT)?;
                Ok(Reader { conn, seen_version: None })
            }
        }
    }

    fn give_back(&self, reader: Reader) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(reader);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_version_moves_on_at_every_commit_and_only_then() -> StoreResult<()> {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("versions.db");
        let writer = Connection::open(&path)?;
        writer.pragma_update(None, "journal_mode", "wal")?;
        writer.execute("CREATE TABLE t (x INTEGER)", [])?;
        let reads = Reads::new(&path);
        let (mut one, mut two) = (reads.take()?, reads.take()?);

        // Each connection's first look moves the generation on; after that it holds.
        reads.data_version_on(&mut one)?;
        let settled = reads.data_version_on(&mut two)?;
        assert_eq!(reads.data_version_on(&mut one)?, settled, "nothing was committed");
        assert_eq!(reads.data_version_on(&mut two)?, settled);

        // A commit is seen by whichever connection looks next, then by the other without a
        // further move.
        writer.execute("INSERT INTO t VALUES (1)", [])?;
        let after = reads.data_version_on(&mut two)?;
        assert!(after > settled, "a commit moves the version on");
        assert_eq!(reads.data_version_on(&mut one)?, after + 1, "the other connection sees it too");
        let latest = reads.data_version_on(&mut two)?;
        assert_eq!(reads.data_version_on(&mut one)?, latest);
        assert_eq!(reads.data_version_on(&mut two)?, latest);
        Ok(())
    }
}
