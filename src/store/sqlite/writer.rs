//! The single writer of a SQLite database: one thread that owns the read-write connection and
//! runs every write, grouping the jobs waiting in its queue into one transaction (group commit),
//! each job in a savepoint of its own; the responses kept under Idempotency-Keys are inserted
//! after the jobs, and every caller hears back only after the shared COMMIT is durable. A second
//! thread copies committed WAL pages into the database file (checkpoints) beside it.

use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};

use super::super::shared::pack_body;
use super::super::{IdempotencyClaim, ResponseRecorder, StoreError, StoreResult, StoredResponse, to_seconds};
use crate::metrics;

/// Most jobs one transaction takes; bounds the latency a batch adds to its first job.
const MAX_JOBS_PER_COMMIT: usize = 512;
/// Distinct statements the writer keeps prepared (the engine's and the API's together).
const WRITER_STATEMENTS: usize = 256;
/// Least time between two checkpoints by [`run_checkpointer`]: each one syncs the database file.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(100);
/// WAL pages after which the writer checkpoints by itself (16 MiB), should [`run_checkpointer`]
/// fall behind; that checkpoint then has little left to copy, and the WAL restarts from its
/// beginning.
const WRITER_CHECKPOINT_PAGES: i64 = 4000;

type Completion = Box<dyn FnOnce(bool) + Send>;
/// A write, run on the writer's thread inside its open transaction; says how to answer once the
/// transaction has committed (`true`) or not.
type Job = Box<dyn FnOnce(&Connection, &mut Batch) -> Completion + Send>;

/// What the jobs of one transaction leave for it.
#[derive(Default)]
struct Batch {
    /// The transaction must not commit (see [`in_savepoint`]).
    broken: bool,
    /// Responses to store under their Idempotency-Keys once every job has run (see [`recorded`]).
    records: Vec<(IdempotencyClaim, StoredResponse)>,
}

impl Batch {
    /// Whether a job of this transaction already kept a response under the claim's key.
    fn holds(&self, claim: &IdempotencyClaim) -> bool {
        self.records.iter().any(|(kept, _)| kept.org_id == claim.org_id && kept.key == claim.key)
    }
}

const FIND_RECORD_AGE: &str = "SELECT created_at FROM idempotency_keys WHERE org_id = ? AND key = ?";
/// An expired record is deleted before its key is used again (see [`recorded`]), so that the
/// table's rowids follow the order records were written in, which is the order [`PURGE_RECORDS`]
/// expires them in.
const DELETE_RECORD: &str = "DELETE FROM idempotency_keys WHERE org_id = ? AND key = ?";
const RECORD_COLUMNS: usize = 6;
/// Most records one `INSERT` statement stores; a batch's records go in statements of 64, 32, …, 1
/// rows, so that few statement texts are kept prepared and each statement opens its cursors once.
const MAX_RECORDS_PER_INSERT: usize = 64;

/// `INSERT INTO idempotency_keys … VALUES (…), (…), …` with `rows` rows.
fn insert_records_sql(rows: usize) -> String {
    let row = format!("({})", ["?"; RECORD_COLUMNS].join(", "));
    format!("INSERT INTO idempotency_keys (org_id, key, fingerprint, created_at, status, body) VALUES {}", vec![row; rows].join(", "))
}

/// The insert statements' texts, built once: index `i` holds `2^i` rows.
static INSERT_RECORDS: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
    std::iter::successors(Some(1), |rows| (rows * 2 <= MAX_RECORDS_PER_INSERT).then_some(rows * 2)).map(insert_records_sql).collect()
});
/// The writer's queue: [`Writer::write`] hands it a job and waits for the commit.
pub(super) struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Opens the writer's connection on `path` (creating the file), lets `prepare` run on it (the
    /// migrations, before any job), then starts the writer and checkpointer threads.
    pub(super) fn start(path: &Path, prepare: impl FnOnce(&mut Connection) -> StoreResult<()>) -> StoreResult<Writer> {
        let mut writer = open_writer(path)?;
        prepare(&mut writer)?;
        let checkpointer = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
        let (jobs, queue) = mpsc::channel(MAX_JOBS_PER_COMMIT * 4);
        let (checkpoint_due, due) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("sqlite-writer".to_owned())
            .spawn(move || run_writer(writer, queue, checkpoint_due))
            .map_err(|_| StoreError::Unavailable)?;
        std::thread::Builder::new()
            .name("sqlite-checkpoint".to_owned())
            .spawn(move || run_checkpointer(checkpointer, due))
            .map_err(|_| StoreError::Unavailable)?;
        Ok(Writer { jobs })
    }

    /// Runs `work` inside the writer's next transaction, storing the response `record` renders
    /// under its Idempotency-Key in the same transaction, and returns its result once committed.
    pub(super) async fn write<T, F>(&self, record: Option<ResponseRecorder<T>>, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |conn, batch| {
            let outcome = in_savepoint(conn, batch, record, work);
            Box::new(move |committed: bool| {
                let _ = reply.send(if committed { outcome } else { Err(StoreError::CommitFailed) });
            })
        });
        // Counted once it has a place in the queue (a caller gone while waiting for one leaves no count).
        let place = self.jobs.reserve().await.map_err(|_| StoreError::Unavailable)?;
        metrics::writer_queued();
        place.send(job);
        answer.await.map_err(|_| StoreError::Unavailable)?
    }
}

/// The writer's connection: WAL with `synchronous=FULL`, so that a commit survives a power cut.
/// It creates the database file when there is none.
fn open_writer(path: &Path) -> StoreResult<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0))?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Savepoints (one per job) keep their undo pages here: memory, not a temp file.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // The writer touches contacts, attempts and their indexes on every claim and outcome: a
    // larger page cache than the default 2 MiB keeps their hot pages (bounded: 16 MiB).
    conn.pragma_update(None, "cache_size", -16384)?;
    conn.pragma_update(None, "wal_autocheckpoint", WRITER_CHECKPOINT_PAGES)?;
    conn.set_prepared_statement_cache_capacity(WRITER_STATEMENTS);
    Ok(conn)
}

/// Runs one statement of fixed text, kept prepared.
fn run(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// Runs one job in a savepoint of the writer's transaction, so that a refused job undoes only its
/// own writes. Sets `batch.broken` when the job's savepoint could not be closed, or the
/// transaction ended under it: its writes may be partly in, so the batch must not commit.
fn in_savepoint<T>(
    conn: &Connection,
    batch: &mut Batch,
    record: Option<ResponseRecorder<T>>,
    work: impl FnOnce(&Connection) -> StoreResult<T>,
) -> StoreResult<T> {
    // Outside a transaction, a savepoint would commit on its release: nothing more may run.
    if batch.broken || conn.is_autocommit() {
        batch.broken = true;
        return Err(StoreError::CommitFailed);
    }
    run(conn, "SAVEPOINT job")?;
    let outcome = recorded(conn, batch, record, work);
    let closed = match outcome {
        Ok(_) => run(conn, "RELEASE job"),
        Err(_) => run(conn, "ROLLBACK TO job").and_then(|()| run(conn, "RELEASE job")),
    };
    if let Err(err) = closed {
        batch.broken = true;
        return Err(err.into());
    }
    outcome
}

/// Runs `work` unless its Idempotency-Key holds a live record, and leaves the response `record`
/// renders for [`store_records`] to insert after the batch's jobs, in the same transaction. The
/// writer holds the database's write lock for the whole transaction, so no other connection can
/// add a record meanwhile, and a job earlier in the batch has left its own in `batch`. A new key
/// costs one probe of the key's index (which deletes an expired record), a repeat never runs its work, and the records' inserts
/// run outside the jobs' savepoints, which would each copy the pages an insert touches.
fn recorded<T>(
    conn: &Connection,
    batch: &mut Batch,
    record: Option<ResponseRecorder<T>>,
    work: impl FnOnce(&Connection) -> StoreResult<T>,
) -> StoreResult<T> {
    let Some(ResponseRecorder { claim, render }) = record else { return work(conn) };
    if batch.holds(&claim) {
        return Err(StoreError::IdempotencyKeyTaken);
    }
    let age = conn.prepare_cached(FIND_RECORD_AGE)?.query_row(params![claim.org_id, claim.key], |row| row.get::<_, i64>(0)).optional()?;
    match age {
        Some(created) if created >= to_seconds(claim.expired_before) => return Err(StoreError::IdempotencyKeyTaken),
        Some(_) => {
            conn.prepare_cached(DELETE_RECORD)?.execute(params![claim.org_id, claim.key])?;
        }
        None => {}
    }
    let value = work(conn)?;
    if let Some(response) = render(&value) {
        batch.records.push((claim, response));
    }
    Ok(value)
}

/// Inserts the responses the batch's jobs kept. One that cannot be stored breaks the batch: its
/// job's writes must not commit without it (no job can be undone alone any more).
fn store_records(conn: &Connection, batch: &mut Batch) {
    let records = std::mem::take(&mut batch.records);
    if batch.broken || records.is_empty() {
        return;
    }
    if let Err(err) = insert_records(conn, &records) {
        tracing::error!(error = %err, records = records.len(), "idempotency records could not be stored: the batch rolls back");
        batch.broken = true;
    }
}

/// Inserts `records`, largest statements first: 100 records take 64 + 32 + 4 rows.
fn insert_records(conn: &Connection, mut records: &[(IdempotencyClaim, StoredResponse)]) -> rusqlite::Result<()> {
    for (size, sql) in INSERT_RECORDS.iter().enumerate().rev().map(|(power, sql)| (1 << power, sql)) {
        while records.len() >= size {
            let (chunk, rest) = records.split_at(size);
            let mut insert = conn.prepare_cached(sql)?;
            for (row, (claim, response)) in chunk.iter().enumerate() {
                let first = row * RECORD_COLUMNS + 1;
                insert.raw_bind_parameter(first, claim.org_id)?;
                insert.raw_bind_parameter(first + 1, claim.key.as_str())?;
                insert.raw_bind_parameter(first + 2, claim.fingerprint.as_slice())?;
                insert.raw_bind_parameter(first + 3, to_seconds(claim.at))?;
                insert.raw_bind_parameter(first + 4, i64::from(response.status))?;
                insert.raw_bind_parameter(first + 5, pack_body(&response.body))?;
            }
            insert.raw_execute()?;
            records = rest;
        }
    }
    Ok(())
}

/// Takes the jobs waiting in the queue (at most [`MAX_JOBS_PER_COMMIT`]) into one transaction
/// (group commit) and answers each once it has committed. It runs on a thread of its own, with
/// the statements on that thread too: handing each statement to another thread and back would
/// cost more than most of them.
///
/// `checkpoint_due` hears of every commit (coalesced), for [`run_checkpointer`].
fn run_writer(conn: Connection, mut queue: mpsc::Receiver<Job>, checkpoint_due: SyncSender<()>) {
    let mut jobs = Vec::with_capacity(MAX_JOBS_PER_COMMIT);
    while let Some(first) = queue.blocking_recv() {
        jobs.push(first);
        while jobs.len() < MAX_JOBS_PER_COMMIT
            && let Ok(job) = queue.try_recv()
        {
            jobs.push(job);
        }
        metrics::writer_took(jobs.len());
        let started = Instant::now();
        let mut batch = Batch::default();
        let began = run(&conn, "BEGIN IMMEDIATE");
        if let Err(err) = &began {
            tracing::error!(error = %err, "sqlite writer could not begin a transaction");
        }
        // Without a transaction the jobs are dropped unrun: their callers hear that the store failed.
        let completions: Vec<Completion> = jobs.drain(..).filter(|_| began.is_ok()).map(|job| job(&conn, &mut batch)).collect();
        store_records(&conn, &mut batch);
        let committed = began.is_ok() && commit(&conn, batch.broken);
        metrics::commit(started.elapsed(), completions.len());
        for completion in completions {
            completion(committed);
        }
        // Full: a checkpoint is due already.
        let _ = checkpoint_due.try_send(());
    }
}

/// Copies committed WAL pages into the database file on a connection and thread of its own, so
/// that commits do not wait for it as they would for SQLite's automatic checkpoint: a PASSIVE
/// checkpoint neither waits for nor blocks the writer or the readers. It runs after commits, at
/// most every [`CHECKPOINT_INTERVAL`], and stops with the writer.
fn run_checkpointer(conn: Connection, due: Receiver<()>) {
    while due.recv().is_ok() {
        if let Err(err) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %err, "sqlite checkpoint failed; the writer's own checkpoint bounds the WAL");
        }
        std::thread::sleep(CHECKPOINT_INTERVAL);
    }
}

fn commit(conn: &Connection, broken: bool) -> bool {
    let committed = if broken {
        Err("a job's savepoint could not be closed, or its record stored".to_owned())
    } else {
        run(conn, "COMMIT").map_err(|err| err.to_string())
    };
    match committed {
        Ok(()) => true,
        Err(err) => {
            tracing::error!(error = %err, "sqlite commit failed; rolling back the batch");
            let _ = run(conn, "ROLLBACK");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;

    use super::*;
    use crate::store::shared::idempotency_record;

    /// Pages committed to the WAL reach the database file through the checkpointer alone: the
    /// writer's own checkpoint is off here.
    #[test]
    fn the_checkpointer_copies_committed_pages_into_the_database_file() -> StoreResult<()> {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("checkpoint.db");
        let writer = Connection::open(&path)?;
        writer.pragma_update(None, "journal_mode", "wal")?;
        writer.pragma_update(None, "wal_autocheckpoint", 0)?;
        writer.execute_batch(
            "CREATE TABLE t (x BLOB); \
             WITH RECURSIVE n (i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100) INSERT INTO t SELECT zeroblob(4000) FROM n;",
        )?;
        let file_size = || std::fs::metadata(&path).map(|m| m.len()).expect("database file");
        let before = file_size();

        let (due, heard) = std::sync::mpsc::sync_channel(1);
        due.send(()).expect("the checkpointer listens");
        drop(due);
        run_checkpointer(Connection::open(&path)?, heard);

        assert!(file_size() > before + 100 * 4000, "the rows' pages are in the database file: {before} → {}", file_size());
        Ok(())
    }

    /// 100 records take statements of 64, 32 and 4 rows; each reads back as it was given.
    #[test]
    fn a_batch_of_records_is_stored_whole_in_a_few_statements() -> StoreResult<()> {
        let conn = Connection::open_in_memory()?;
        conn.execute_batch(
            "CREATE TABLE idempotency_keys (org_id INTEGER NOT NULL, key TEXT NOT NULL, fingerprint BLOB NOT NULL, \
             created_at INTEGER NOT NULL, status INTEGER NOT NULL, body BLOB NOT NULL, PRIMARY KEY (org_id, key))",
        )?;
        let at = Timestamp::from_second(1_800_000_000).expect("a time");
        let record = |n: usize| {
            let claim = IdempotencyClaim { org_id: 1, key: format!("key-{n}"), fingerprint: [n as u8; 32], at, expired_before: at };
            (claim, StoredResponse { status: 201, body: format!("{{\"n\":{n}}}").into_bytes() })
        };
        insert_records(&conn, &(0..100).map(record).collect::<Vec<_>>())?;

        let mut rows = conn.prepare("SELECT key, fingerprint, status, body FROM idempotency_keys ORDER BY rowid")?;
        let stored: Vec<(String, Vec<u8>, i64, Vec<u8>)> =
            rows.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)))?.collect::<Result<_, _>>()?;
        assert_eq!(stored.len(), 100);
        for (n, (key, fingerprint, status, body)) in stored.into_iter().enumerate() {
            let (claim, response) = record(n);
            assert_eq!((key, fingerprint, status), (claim.key, claim.fingerprint.to_vec(), 201));
            assert_eq!(idempotency_record(Vec::new(), status, body)?.response.body, response.body);
        }
        // A key stored twice fails the whole statement: the batch then rolls back.
        assert!(insert_records(&conn, &[record(7)]).is_err());
        Ok(())
    }
}
