//! The PostgreSQL sink: `key<TAB>value` records into a table's key and value columns,
//! upserted (`INSERT .. ON CONFLICT (key) DO UPDATE`) or appended, exactly once with
//! checkpoints.
//!
//! **Exactly once.** The file sink's two-phase commit with PostgreSQL as the storage:
//! a subtask *stages* each epoch's rows (the records between two barriers) in
//! `weir_sink_staging`, tagged (job, sink, attempt, subtask, epoch), and has them
//! committed before it acknowledges the barrier, so a completed checkpoint's rows are
//! durable in the database. When checkpoint `k` completes, one transaction *applies*
//! the subtask's staged epochs `<= k` to the table, oldest first, each after inserting
//! its row into `weir_sink_applied` (primary key job, sink, epoch, subtask): an epoch
//! whose row exists was applied before, and is skipped. That table is the audit too.
//! A restore from `k` applies the staged epochs `<= k` of the attempt that completed
//! `k` (what its commit may not have reached) and deletes every earlier attempt's other
//! staged rows.
//!
//! **Fencing.** `weir_sink_fence` holds, per (job, sink), the newest attempt that
//! opened it. A restore raises it first, in its transaction; every stage and commit
//! transaction reads it `FOR SHARE` and is refused ([`PgError::Superseded`]) if it names
//! a newer attempt. The row lock orders them: a zombie's stage or commit either ends
//! before the restore (which then settles what it did) or sees the new attempt.
//!
//! Staging in the database rather than in the checkpoint keeps checkpoints small, makes
//! the commit a statement on the server (no rows re-sent), and checks every record
//! against the table's column types at the barrier (a cast in the staging statement),
//! so a record the table cannot hold fails the subtask that received it, naming it,
//! before its checkpoint can complete: nothing is dropped silently.

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use postgres::{Client, Config, NoTls, Transaction};
use thiserror::Error;
use weir_types::plan::Connector;

use crate::{ConnectorError, Options, Secret, SecretRef};

/// The kind's name in plans and manifests.
pub const KIND: &str = "postgres";

/// How rows reach the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `INSERT .. ON CONFLICT (key) DO UPDATE`: the newest value per key (the key
    /// column needs a unique index).
    Upsert,
    /// Plain inserts, in record order.
    Append,
}

/// The sink's options (see [`PgOptions::parse`]).
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Server host (`host`, default `localhost`).
    pub host: String,
    /// Server port (`port`, default 5432).
    pub port: u16,
    /// Role (`user`, default `postgres`).
    pub user: String,
    /// Database (`database`, default `postgres`).
    pub database: String,
    /// `password-file` or `password-env`; none: the server must not ask for one.
    pub password: Option<SecretRef>,
    /// Target table, optionally schema-qualified (`table`, required).
    pub table: String,
    /// Column receiving the record's key (`key-column`, default `key`).
    pub key_column: String,
    /// Column receiving the record's value (`value-column`, default `value`).
    pub value_column: String,
    /// `mode`: `upsert` (default) or `append`.
    pub mode: Mode,
    /// Rows are staged in one `COPY` once this many bytes are buffered
    /// (`batch-bytes`, default 1 MiB), and at every barrier.
    pub batch_bytes: usize,
    /// Idle connections kept per sink and TaskManager (`pool-size`, default 4).
    pub pool_size: usize,
    /// `connect-timeout-ms`, default 5000.
    pub connect_timeout_ms: u64,
    /// Where records the table cannot hold go: `on-error = fail` (default: the job
    /// fails, naming the record) or `dead-letter` (into the table `dead-letter-table`,
    /// default `weir_sink_dead_letters`, created if missing, exactly once with the
    /// epoch that held them).
    pub dead_letters: Option<String>,
}

impl PgOptions {
    /// Reads and checks a `postgres` connector's options; refuses unknown ones and a
    /// password given as an option.
    pub fn parse(c: &Connector) -> Result<Self, ConnectorError> {
        let mut o = Options::new(c);
        let dead_letter_table = o.optional("dead-letter-table").map(str::to_string);
        let opts = PgOptions {
            host: o.optional("host").unwrap_or("localhost").to_string(),
            port: o.parsed("port", 5432)?,
            user: o.optional("user").unwrap_or("postgres").to_string(),
            database: o.optional("database").unwrap_or("postgres").to_string(),
            password: o.secret("password", "password-file", "password-env")?,
            table: o.required("table")?.to_string(),
            key_column: o.optional("key-column").unwrap_or("key").to_string(),
            value_column: o.optional("value-column").unwrap_or("value").to_string(),
            mode: match o.choice("mode", &["upsert", "append"], "upsert")? {
                "append" => Mode::Append,
                _ => Mode::Upsert,
            },
            batch_bytes: o.parsed("batch-bytes", 1 << 20)?,
            pool_size: o.parsed("pool-size", 4)?,
            connect_timeout_ms: o.parsed("connect-timeout-ms", 5000)?,
            dead_letters: match o.choice("on-error", &["fail", "dead-letter"], "fail")? {
                "dead-letter" => Some(dead_letter_table.clone().unwrap_or_else(|| "weir_sink_dead_letters".into())),
                _ => None,
            },
        };
        if opts.dead_letters.is_none() && dead_letter_table.is_some() {
            return Err(ConnectorError::Option { kind: KIND.into(), problem: "`dead-letter-table` needs `on-error = dead-letter`".into() });
        }
        o.finish()?;
        if opts.key_column == opts.value_column {
            return Err(ConnectorError::Option { kind: KIND.into(), problem: "`key-column` and `value-column` name the same column".into() });
        }
        Ok(opts)
    }

    fn at(&self) -> String {
        format!("{}:{}/{} as {}", self.host, self.port, self.database, self.user)
    }
}

/// Why the PostgreSQL sink failed. Messages name the server, table, epoch or record
/// concerned and never a password.
#[derive(Debug, Error)]
pub enum PgError {
    /// No connection could be opened (unreachable, wrong password, no such database).
    #[error("cannot connect to PostgreSQL at {at}: {cause}")]
    Connect {
        /// host:port/database as user.
        at: String,
        /// The client's error (the server's message for a refused login).
        cause: String,
    },
    /// The target table cannot be written as configured.
    #[error("table {table}: {problem}")]
    Table {
        /// The table as configured.
        table: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A statement failed.
    #[error("{what}: {cause}")]
    Db {
        /// What the sink was doing.
        what: String,
        /// The server's or client's error.
        cause: String,
    },
    /// Sending rows failed.
    #[error("{what}: {source}")]
    Io {
        /// What the sink was doing.
        what: String,
        /// The client's error.
        source: std::io::Error,
    },
    /// A record cannot be written at all (not UTF-8 text).
    #[error("record {n} of epoch {epoch}: {problem}")]
    Record {
        /// The epoch.
        epoch: u64,
        /// Its position in the epoch (from 0).
        n: u64,
        /// Why.
        problem: String,
    },
    /// A newer attempt of the job opened the sink: this one may neither stage nor
    /// commit (a zombie).
    #[error("attempt {attempt} of job {job} writing sink {sink:?}: attempt {current} superseded it")]
    Superseded {
        /// The job.
        job: String,
        /// The sink's uid.
        sink: String,
        /// This attempt.
        attempt: u32,
        /// The attempt that holds the fence.
        current: u32,
    },
    /// The password could not be read.
    #[error(transparent)]
    Secret(Box<ConnectorError>),
}

fn db(what: impl Into<String>) -> impl FnOnce(postgres::Error) -> PgError {
    let what = what.into();
    move |e| PgError::Db { what, cause: cause(&e) }
}

/// The server's message (its `Display` says only "db error"), else the client's
/// error and its causes.
fn cause(e: &postgres::Error) -> String {
    if let Some(d) = e.as_db_error() {
        let mut s = format!("{}: {}", d.severity(), d.message());
        if let Some(detail) = d.detail() {
            s += &format!(" ({detail})");
        }
        return s;
    }
    let mut s = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        s += &format!(": {inner}");
        source = inner.source();
    }
    s
}

/// A few connections to one server, reused by a sink's subtasks and commits.
pub struct Pool {
    config: Config,
    at: String,
    idle: Mutex<Vec<Client>>,
    max_idle: usize,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Config's Debug would show the password.
        f.debug_struct("Pool").field("at", &self.at).finish_non_exhaustive()
    }
}

impl Pool {
    /// A pool for `opts`' server; reads the password (on this TaskManager).
    pub fn new(opts: &PgOptions) -> Result<Self, PgError> {
        let mut config = Config::new();
        config
            .host(&opts.host)
            .port(opts.port)
            .user(&opts.user)
            .dbname(&opts.database)
            .application_name("weir")
            .connect_timeout(Duration::from_millis(opts.connect_timeout_ms));
        if let Some(secret) = &opts.password {
            let password: Secret = secret.read(KIND).map_err(|e| PgError::Secret(Box::new(e)))?;
            config.password(password.expose());
        }
        Ok(Pool { config, at: opts.at(), idle: Mutex::new(Vec::new()), max_idle: opts.pool_size.max(1) })
    }

    fn connect(&self) -> Result<Client, PgError> {
        self.config.connect(NoTls).map_err(|e| PgError::Connect { at: self.at.clone(), cause: cause(&e) })
    }

    /// Runs `f` in a transaction on a pooled connection and commits. A connection
    /// found closed (the server restarted since it was pooled) is replaced and `f`
    /// run again once; every transaction of the sink is safe to repeat.
    fn transaction<T>(&self, mut f: impl FnMut(&mut Transaction<'_>) -> Result<T, PgError>) -> Result<T, PgError> {
        let pooled = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let (mut client, fresh) = match pooled {
            Some(c) if !c.is_closed() => (c, false),
            _ => (self.connect()?, true),
        };
        let mut run = |client: &mut Client| -> Result<T, PgError> {
            let mut tx = client.transaction().map_err(db("begin"))?;
            let out = f(&mut tx)?;
            tx.commit().map_err(db("commit"))?;
            Ok(out)
        };
        let out = match run(&mut client) {
            Err(_) if !fresh && client.is_closed() => {
                client = self.connect()?;
                run(&mut client)
            }
            out => out,
        };
        if !client.is_closed() {
            let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
            if idle.len() < self.max_idle {
                idle.push(client);
            }
        }
        out
    }
}

/// `"name"`, quoted as an SQL identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The sink of one plan node on one TaskManager: its pool, the resolved table and the
/// attempt it writes for. Shared by the node's local subtasks and their commits.
#[derive(Debug)]
pub struct PgSink {
    pool: Pool,
    job: String,
    sink: String,
    attempt: u32,
    mode: Mode,
    batch_bytes: usize,
    /// The table, quoted as the server prints it.
    table: String,
    key_column: String,
    value_column: String,
    /// The columns' types, as `format_type` names them (casts in every statement).
    key_type: String,
    value_type: String,
    /// The dead-letter table (quoted), with `on-error = dead-letter`.
    dead_letters: Option<String>,
}

/// Runs `f` under a savepoint: its error is returned and undone, the transaction goes
/// on. (Explicit statements: the client's nested transactions leave a savepoint behind
/// at each rollback, and thousands of them exhaust the server's shared memory.)
fn attempt<T>(
    tx: &mut Transaction<'_>,
    f: impl FnOnce(&mut Transaction<'_>) -> Result<T, postgres::Error>,
) -> Result<Result<T, postgres::Error>, PgError> {
    tx.batch_execute("SAVEPOINT weir_attempt").map_err(db("opening a savepoint"))?;
    let result = f(tx);
    let undo = if result.is_ok() { "RELEASE SAVEPOINT weir_attempt" } else { "ROLLBACK TO SAVEPOINT weir_attempt; RELEASE SAVEPOINT weir_attempt" };
    tx.batch_execute(undo).map_err(db("closing a savepoint"))?;
    Ok(result)
}

/// A record the table cannot hold: (n, key, value, the server's reason).
type DeadLetter = (i64, String, String, String);

/// What [`PgSink::recover`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Epochs of the restored checkpoint's owner applied by the restore, as
    /// (subtask, epoch, rows).
    pub applied: Vec<(u32, u64, u64)>,
    /// Epochs applied past the restored checkpoint (a fallback past checkpoints that
    /// cannot be read): their records are written again, at-least-once for that gap.
    pub past: Vec<u64>,
}

impl PgSink {
    /// Connects, checks the table and its columns (and, for upserts, a unique index
    /// on the key column), and creates the sink's bookkeeping tables if missing.
    /// `sink` is the node's uid; `attempt` the job's attempt.
    pub fn open(opts: &PgOptions, job: &str, sink: &str, attempt: u32) -> Result<Self, PgError> {
        let pool = Pool::new(opts)?;
        let table_error = |problem: String| PgError::Table { table: opts.table.clone(), problem };
        let (table, key_type, value_type) = pool.transaction(|tx| {
            let found: Option<String> = tx
                .query_one("SELECT to_regclass($1)::text", &[&opts.table])
                .and_then(|r| r.try_get(0))
                .map_err(db(format!("looking up table {}", opts.table)))?;
            let Some(table) = found else {
                return Err(table_error(format!("does not exist in database {:?} at {}:{}", opts.database, opts.host, opts.port)));
            };
            let column_type = |tx: &mut Transaction<'_>, column: &str| -> Result<String, PgError> {
                let rows = tx
                    .query(
                        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute \
                         WHERE attrelid = $1::text::regclass AND attname = $2 AND attnum > 0 AND NOT attisdropped",
                        &[&table, &column],
                    )
                    .map_err(db(format!("looking up column {column:?} of {table}")))?;
                match rows.first() {
                    Some(r) => r.try_get(0).map_err(db("reading a column type")),
                    None => Err(table_error(format!("has no column {column:?}"))),
                }
            };
            let key_type = column_type(tx, &opts.key_column)?;
            let value_type = column_type(tx, &opts.value_column)?;
            if opts.mode == Mode::Upsert {
                let unique = tx
                    .query(
                        "SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] \
                         WHERE i.indrelid = $1::text::regclass AND i.indisunique AND i.indnkeyatts = 1 AND a.attname = $2",
                        &[&table, &opts.key_column],
                    )
                    .map_err(db(format!("looking up the indexes of {table}")))?;
                if unique.is_empty() {
                    return Err(table_error(format!(
                        "mode upsert needs a unique index (or primary key) on column {:?} alone; add one, or use mode append",
                        opts.key_column
                    )));
                }
            }
            // Concurrent `CREATE TABLE IF NOT EXISTS` of one table can fail; the lock
            // serializes TaskManagers opening sinks at once.
            tx.batch_execute(
                "SELECT pg_advisory_xact_lock(7765727);
                 CREATE TABLE IF NOT EXISTS weir_sink_fence (
                     job text NOT NULL, sink text NOT NULL, attempt integer NOT NULL,
                     PRIMARY KEY (job, sink));
                 CREATE TABLE IF NOT EXISTS weir_sink_staging (
                     job text NOT NULL, sink text NOT NULL, attempt integer NOT NULL, subtask integer NOT NULL,
                     epoch bigint NOT NULL, n bigint NOT NULL, key text NOT NULL, value text NOT NULL,
                     PRIMARY KEY (job, sink, attempt, subtask, epoch, n));
                 CREATE TABLE IF NOT EXISTS weir_sink_applied (
                     job text NOT NULL, sink text NOT NULL, epoch bigint NOT NULL, subtask integer NOT NULL,
                     attempt integer NOT NULL, rows bigint NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(),
                     PRIMARY KEY (job, sink, epoch, subtask));
                 ALTER TABLE weir_sink_staging ADD COLUMN IF NOT EXISTS error text;",
            )
            .map_err(db("creating the sink's tables weir_sink_fence, weir_sink_staging, weir_sink_applied"))?;
            if let Some(dlt) = &opts.dead_letters {
                tx.batch_execute(&format!(
                    "CREATE TABLE IF NOT EXISTS {} (
                         job text NOT NULL, sink text NOT NULL, epoch bigint, subtask integer, n bigint NOT NULL,
                         key text NOT NULL, value text NOT NULL, error text NOT NULL, at timestamptz NOT NULL DEFAULT now())",
                    ident(dlt)
                ))
                .map_err(db(format!("creating the dead-letter table {dlt}")))?;
            }
            Ok((table, key_type, value_type))
        })?;
        Ok(PgSink {
            pool,
            job: job.to_string(),
            sink: sink.to_string(),
            attempt,
            mode: opts.mode,
            batch_bytes: opts.batch_bytes.max(1),
            table,
            key_column: ident(&opts.key_column),
            value_column: ident(&opts.value_column),
            key_type,
            value_type,
            dead_letters: opts.dead_letters.as_deref().map(ident),
        })
    }

    /// The table, as the server names it.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Refuses a superseded attempt; holds the fence row shared until the transaction
    /// ends, so a restore's raise waits for it.
    fn check_fence(&self, tx: &mut Transaction<'_>) -> Result<(), PgError> {
        let row = tx
            .query_opt("SELECT attempt FROM weir_sink_fence WHERE job = $1 AND sink = $2 FOR SHARE", &[&self.job, &self.sink])
            .map_err(db("reading the sink's fence"))?;
        let current: i32 = match row {
            Some(r) => r.try_get(0).map_err(db("reading the sink's fence"))?,
            None => -1,
        };
        match u32::try_from(current) {
            Ok(current) if current > self.attempt => {
                Err(PgError::Superseded { job: self.job.clone(), sink: self.sink.clone(), attempt: self.attempt, current })
            }
            _ => Ok(()),
        }
    }

    /// Settles what earlier attempts left before this one writes, after a restore of
    /// checkpoint `restored` (0: none) completed by attempt `owner` (`None`: a savepoint
    /// or nothing): raises the fence to this attempt, applies the owner's staged
    /// epochs `<= restored` not yet applied, deletes every earlier attempt's other staged
    /// rows. Idempotent and safe to run concurrently: every TaskManager with a subtask
    /// of the sink runs it.
    pub fn recover(&self, restored: u64, owner: Option<u32>) -> Result<Recovered, PgError> {
        let attempt = self.attempt as i32;
        self.pool.transaction(|tx| {
            let current: i32 = tx
                .query_one(
                    "INSERT INTO weir_sink_fence (job, sink, attempt) VALUES ($1, $2, $3) \
                     ON CONFLICT (job, sink) DO UPDATE SET attempt = GREATEST(weir_sink_fence.attempt, EXCLUDED.attempt) \
                     RETURNING attempt",
                    &[&self.job, &self.sink, &attempt],
                )
                .and_then(|r| r.try_get(0))
                .map_err(db("raising the sink's fence"))?;
            if current > attempt {
                return Err(PgError::Superseded { job: self.job.clone(), sink: self.sink.clone(), attempt: self.attempt, current: current as u32 });
            }
            let mut out = Recovered::default();
            if let Some(owner) = owner.filter(|o| *o < self.attempt) {
                out.applied = self.apply_staged(tx, owner, None, restored)?;
            }
            tx.execute("DELETE FROM weir_sink_staging WHERE job = $1 AND sink = $2 AND attempt < $3", &[&self.job, &self.sink, &attempt])
                .map_err(db("deleting earlier attempts' staged rows"))?;
            let restored = restored as i64;
            let past = tx
                .query(
                    "SELECT DISTINCT epoch FROM weir_sink_applied WHERE job = $1 AND sink = $2 AND epoch > $3 AND attempt < $4 ORDER BY epoch",
                    &[&self.job, &self.sink, &restored, &attempt],
                )
                .map_err(db("reading applied epochs"))?;
            out.past =
                past.iter().map(|r| r.try_get::<_, i64>(0).map(|e| e as u64)).collect::<Result<_, _>>().map_err(db("reading applied epochs"))?;
            Ok(out)
        })
    }

    /// Applies attempt `attempt`'s staged epochs `<= upto` (of one subtask, or all),
    /// oldest first, each once: its `weir_sink_applied` row is inserted first, and an
    /// epoch that has one is skipped. Returns (subtask, epoch, rows) applied.
    fn apply_staged(&self, tx: &mut Transaction<'_>, attempt: u32, subtask: Option<u32>, upto: u64) -> Result<Vec<(u32, u64, u64)>, PgError> {
        let (attempt, subtask, upto) = (attempt as i32, subtask.map(|s| s as i32), upto as i64);
        let epochs = tx
            .query(
                "SELECT subtask, epoch, count(*) FROM weir_sink_staging \
                 WHERE job = $1 AND sink = $2 AND attempt = $3 AND ($4::integer IS NULL OR subtask = $4) AND epoch <= $5 \
                 GROUP BY subtask, epoch ORDER BY epoch, subtask",
                &[&self.job, &self.sink, &attempt, &subtask, &upto],
            )
            .map_err(db("listing staged epochs"))?;
        let from = "FROM weir_sink_staging WHERE job = $1 AND sink = $2 AND attempt = $3 AND subtask = $4 AND epoch = $5";
        let apply = self.apply_statement(&format!("{from} AND error IS NULL"));
        let park = self.dead_letters.as_ref().map(|dlt| {
            format!("INSERT INTO {dlt} (job, sink, epoch, subtask, n, key, value, error) SELECT job, sink, epoch, subtask, n, key, value, error {from} AND error IS NOT NULL")
        });
        let mut applied = Vec::new();
        for row in epochs {
            let (s, epoch, rows): (i32, i64, i64) = (row.get(0), row.get(1), row.get(2));
            let fresh = tx
                .execute(
                    "INSERT INTO weir_sink_applied (job, sink, epoch, subtask, attempt, rows) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                    &[&self.job, &self.sink, &epoch, &s, &attempt, &rows],
                )
                .map_err(db(format!("recording epoch {epoch} of subtask {s} as applied")))?;
            if fresh == 1 {
                tx.execute(apply.as_str(), &[&self.job, &self.sink, &attempt, &s, &epoch])
                    .map_err(db(format!("applying epoch {epoch} of subtask {s} to {}", self.table)))?;
                if let Some(park) = &park {
                    let parked = tx
                        .execute(park.as_str(), &[&self.job, &self.sink, &attempt, &s, &epoch])
                        .map_err(db(format!("dead-lettering records of epoch {epoch} of subtask {s}")))?;
                    if parked > 0 {
                        tracing::warn!(job = %self.job, sink = %self.sink, epoch, subtask = s, records = parked, "records the table cannot hold were dead-lettered");
                    }
                }
                applied.push((s as u32, epoch as u64, rows as u64));
            } else {
                tracing::info!(job = %self.job, sink = %self.sink, epoch, subtask = s, "epoch already applied: skipped");
            }
            tx.execute(&format!("DELETE {from}"), &[&self.job, &self.sink, &attempt, &s, &epoch])
                .map_err(db(format!("deleting the staged rows of epoch {epoch}")))?;
        }
        Ok(applied)
    }

    /// `INSERT INTO` the table the rows of `from` (a `FROM ..` clause over relation with
    /// columns n, key and value), cast to the columns' types.
    fn apply_statement(&self, from: &str) -> String {
        let (t, k, v, kt, vt) = (&self.table, &self.key_column, &self.value_column, &self.key_type, &self.value_type);
        match self.mode {
            Mode::Append => format!("INSERT INTO {t} ({k}, {v}) SELECT CAST(key AS {kt}), CAST(value AS {vt}) {from} ORDER BY n"),
            // One row per key and statement: ON CONFLICT cannot update a row twice.
            Mode::Upsert => format!(
                "INSERT INTO {t} ({k}, {v}) SELECT DISTINCT ON (CAST(key AS {kt})) CAST(key AS {kt}), CAST(value AS {vt}) {from} \
                 ORDER BY CAST(key AS {kt}), n DESC ON CONFLICT ({k}) DO UPDATE SET {v} = EXCLUDED.{v}"
            ),
        }
    }

    /// Copies `rows` (COPY text lines `n<TAB>key<TAB>value`) into a temporary table.
    fn copy_rows(&self, tx: &mut Transaction<'_>, rows: &[u8]) -> Result<(), PgError> {
        tx.batch_execute("CREATE TEMP TABLE IF NOT EXISTS weir_rows (n bigint, key text, value text) ON COMMIT DELETE ROWS")
            .map_err(db("creating the temporary table"))?;
        let mut w = tx.copy_in("COPY weir_rows (n, key, value) FROM STDIN").map_err(db("copying rows"))?;
        w.write_all(rows).map_err(|source| PgError::Io { what: "copying rows".into(), source })?;
        w.finish().map_err(db("copying rows"))?;
        Ok(())
    }

    /// Stages `rows` of `subtask`'s epoch `epoch`; then, if `close_as` is set, closes
    /// the epoch under that id (an attempt's first epoch takes the id of the
    /// checkpoint that closes it). Every value is cast to its column's type here.
    pub fn stage(&self, subtask: u32, epoch: u64, rows: &[u8], close_as: Option<u64>) -> Result<(), PgError> {
        let (attempt, s, e) = (self.attempt as i32, subtask as i32, epoch as i64);
        let (kt, vt) = (&self.key_type, &self.value_type);
        let insert = format!(
            "INSERT INTO weir_sink_staging (job, sink, attempt, subtask, epoch, n, key, value) \
             SELECT $1, $2, $3, $4, $5, n, CAST(CAST(key AS {kt}) AS text), CAST(CAST(value AS {vt}) AS text) FROM weir_rows \
             ON CONFLICT DO NOTHING"
        );
        let what = format!(
            "staging epoch {epoch} of subtask {subtask}: a record {} cannot hold (key column {} {kt}, value column {} {vt})",
            self.table, self.key_column, self.value_column
        );
        self.pool.transaction(|tx| {
            self.check_fence(tx)?;
            if !rows.is_empty() {
                self.copy_rows(tx, rows)?;
                for (n, key, value, error) in self.screened(tx, &insert, &[&self.job, &self.sink, &attempt, &s, &e], &what)? {
                    tx.execute(
                        "INSERT INTO weir_sink_staging (job, sink, attempt, subtask, epoch, n, key, value, error) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
                        &[&self.job, &self.sink, &attempt, &s, &e, &n, &key, &value, &error],
                    )
                    .map_err(db(format!("staging a dead letter of epoch {epoch}")))?;
                }
            }
            if let Some(closed) = close_as.filter(|c| *c != epoch) {
                tx.execute(
                    "UPDATE weir_sink_staging SET epoch = $6 WHERE job = $1 AND sink = $2 AND attempt = $3 AND subtask = $4 AND epoch = $5",
                    &[&self.job, &self.sink, &attempt, &s, &e, &(closed as i64)],
                )
                .map_err(db(format!("closing epoch {epoch} as {closed}")))?;
            }
            Ok(())
        })
    }

    /// Applies `subtask`'s staged epochs `<= upto` (checkpoint `upto` completed), in
    /// one transaction; (subtask, epoch, rows) applied. Refused once superseded.
    pub fn commit(&self, subtask: u32, upto: u64) -> Result<Vec<(u32, u64, u64)>, PgError> {
        self.pool.transaction(|tx| {
            self.check_fence(tx)?;
            self.apply_staged(tx, self.attempt, Some(subtask), upto)
        })
    }

    /// Without checkpoints: writes `rows` to the table at once.
    pub fn write_direct(&self, rows: &[u8]) -> Result<(), PgError> {
        let apply = self.apply_statement("FROM weir_rows");
        self.pool.transaction(|tx| {
            self.copy_rows(tx, rows)?;
            let dead = self.screened(tx, &apply, &[], &format!("writing to {}", self.table))?;
            if let Some(dlt) = &self.dead_letters {
                for (n, key, value, error) in &dead {
                    tx.execute(
                        &format!("INSERT INTO {dlt} (job, sink, n, key, value, error) VALUES ($1, $2, $3, $4, $5, $6)"),
                        &[&self.job, &self.sink, n, key, value, error],
                    )
                    .map_err(db("writing a dead letter"))?;
                }
            }
            Ok(())
        })
    }

    /// Runs `statement` over the rows in `weir_rows`. With dead letters, a failure
    /// that comes from records the table's column types cannot hold takes those
    /// records out of `weir_rows` and runs it again: they are returned, the rest is
    /// written. (A savepoint per record, only once a batch failed.) Otherwise, and
    /// for any other failure, the error names `what`.
    fn screened(
        &self,
        tx: &mut Transaction<'_>,
        statement: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
        what: &str,
    ) -> Result<Vec<DeadLetter>, PgError> {
        if self.dead_letters.is_none() {
            tx.execute(statement, params).map_err(db(what))?;
            return Ok(Vec::new());
        }
        if attempt(tx, |tx| tx.execute(statement, params))?.is_ok() {
            return Ok(Vec::new());
        }
        let check = format!("SELECT CAST(CAST($1::text AS {}) AS text), CAST(CAST($2::text AS {}) AS text)", self.key_type, self.value_type);
        let mut dead = Vec::new();
        for row in tx.query("SELECT n, key, value FROM weir_rows ORDER BY n", &[]).map_err(db("reading rows back"))? {
            let (n, key, value): (i64, String, String) = (row.get(0), row.get(1), row.get(2));
            if let Err(e) = attempt(tx, |tx| tx.query_one(check.as_str(), &[&key, &value]))? {
                dead.push((n, key, value, cause(&e)));
            }
        }
        let ns: Vec<i64> = dead.iter().map(|d| d.0).collect();
        tx.execute("DELETE FROM weir_rows WHERE n = ANY($1)", &[&ns]).map_err(db("setting dead letters aside"))?;
        // With no record at fault this fails again, with the statement's own error.
        tx.execute(statement, params).map_err(db(what))?;
        Ok(dead)
    }

    /// A writer for one subtask, starting after checkpoint `restored`.
    pub fn writer(self: &Arc<Self>, subtask: u32, restored: u64, transactional: bool) -> PgWriter {
        PgWriter { sink: self.clone(), subtask, epoch: restored + 1, n: 0, buf: Vec::new(), transactional, closed: false }
    }
}

/// One subtask's side of a [`PgSink`]: buffers the open epoch's rows as COPY text and
/// stages them in batches and at barriers.
#[derive(Debug)]
pub struct PgWriter {
    sink: Arc<PgSink>,
    subtask: u32,
    /// The open epoch's id (until a barrier names it).
    epoch: u64,
    /// Rows of the open epoch so far.
    n: u64,
    buf: Vec<u8>,
    transactional: bool,
    /// The last epoch was closed after the end of the input.
    closed: bool,
}

/// Appends `s` to a COPY text line, escaped.
fn copy_text(buf: &mut Vec<u8>, s: &str) {
    for b in s.bytes() {
        match b {
            b'\\' => buf.extend_from_slice(b"\\\\"),
            b'\t' => buf.extend_from_slice(b"\\t"),
            b'\n' => buf.extend_from_slice(b"\\n"),
            b'\r' => buf.extend_from_slice(b"\\r"),
            _ => buf.push(b),
        }
    }
}

impl PgWriter {
    /// The sink it writes for.
    pub fn sink(&self) -> &Arc<PgSink> {
        &self.sink
    }

    /// Adds one record; stages (or, without checkpoints, writes) once the buffer is full.
    pub fn write(&mut self, key: &[u8], value: &[u8]) -> Result<(), PgError> {
        let text = |bytes, what| {
            std::str::from_utf8(bytes).map_err(|e| PgError::Record {
                epoch: self.epoch,
                n: self.n,
                problem: format!("its {what} is not UTF-8 text: {e}"),
            })
        };
        let (key, value) = (text(key, "key")?, text(value, "value")?);
        self.buf.extend_from_slice(self.n.to_string().as_bytes());
        self.buf.push(b'\t');
        copy_text(&mut self.buf, key);
        self.buf.push(b'\t');
        copy_text(&mut self.buf, value);
        self.buf.push(b'\n');
        self.n += 1;
        if self.buf.len() >= self.sink.batch_bytes {
            self.flush(None)?;
        }
        Ok(())
    }

    fn flush(&mut self, close_as: Option<u64>) -> Result<(), PgError> {
        if self.transactional {
            self.sink.stage(self.subtask, self.epoch, &self.buf, close_as)?;
        } else if !self.buf.is_empty() {
            self.sink.write_direct(&self.buf)?;
        }
        self.buf.clear();
        Ok(())
    }

    /// Barrier `checkpoint`: the open epoch is staged as its, durably, before the
    /// subtask acknowledges it.
    pub fn barrier(&mut self, checkpoint: u64) -> Result<(), PgError> {
        self.flush(Some(checkpoint))?;
        self.epoch = checkpoint + 1;
        self.n = 0;
        Ok(())
    }

    /// End of input: without checkpoints the rest is written; with them it waits for
    /// the final checkpoint ([`PgWriter::close_last`]).
    pub fn finish(&mut self) -> Result<(), PgError> {
        if self.transactional { Ok(()) } else { self.flush(None) }
    }

    /// A checkpoint after the end of the input closes the last epoch as its, once.
    pub fn close_last(&mut self, checkpoint: u64) -> Result<(), PgError> {
        if self.transactional && !self.closed {
            self.flush(Some(checkpoint))?;
            self.closed = true;
        }
        Ok(())
    }

    /// Applies every staged epoch up to `checkpoint`, which completed.
    pub fn commit(&mut self, checkpoint: u64) -> Result<(), PgError> {
        if self.transactional {
            self.sink.commit(self.subtask, checkpoint)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_testkit::Postgres;

    fn options(pg: &Postgres, pairs: &[(&str, &str)]) -> Result<PgOptions, ConnectorError> {
        let mut options: std::collections::BTreeMap<String, String> = [
            ("host", "127.0.0.1".to_string()),
            ("port", pg.port().to_string()),
            ("password-file", pg.dir().join("pw").to_string_lossy().into_owned()),
            ("table", "sums".into()),
            ("key-column", "k".into()),
            ("value-column", "v".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        for (k, v) in pairs {
            options.insert(k.to_string(), v.to_string());
        }
        PgOptions::parse(&Connector { kind: KIND.into(), options })
    }

    fn table(pg: &Postgres) -> String {
        pg.psql("SELECT k || '=' || v FROM sums ORDER BY k")
    }

    fn audit(pg: &Postgres) -> String {
        pg.psql("SELECT epoch || '/' || subtask || '/a' || attempt || ':' || rows FROM weir_sink_applied ORDER BY epoch, subtask")
    }

    #[test]
    fn epochs_are_applied_once_at_their_checkpoint_and_a_restore_applies_the_owners() -> Result<(), Box<dyn std::error::Error>> {
        let pg = Postgres::start();
        pg.psql("CREATE TABLE sums (k text PRIMARY KEY, v bigint)");
        let opts = options(&pg, &[])?;
        let a0 = Arc::new(PgSink::open(&opts, "j", "out", 0)?);
        assert_eq!(a0.recover(0, None)?, Recovered::default());
        let mut w = a0.writer(0, 0, true);
        for (k, v) in [("a", "1"), ("b", "2"), ("a", "3")] {
            w.write(k.as_bytes(), v.as_bytes())?;
        }
        w.barrier(1)?;
        w.write(b"b", b"7")?;
        w.barrier(2)?;
        w.write(b"c", b"9")?;
        assert_eq!(table(&pg), "", "nothing before a checkpoint completes");
        w.commit(1)?;
        assert_eq!(table(&pg), "a=3\nb=2\n", "the newest value per key of epoch 1");
        // A replayed commit is skipped.
        w.commit(1)?;
        assert_eq!(audit(&pg), "1/0/a0:3\n");
        drop(w);
        // Attempt 1 restores checkpoint 2 (attempt 0 completed it, its commit never
        // ran): epoch 2 is applied by the restore, the open epoch 3 discarded.
        let a1 = Arc::new(PgSink::open(&opts, "j", "out", 1)?);
        let r = a1.recover(2, Some(0))?;
        assert_eq!(r.applied, vec![(0, 2, 1)]);
        assert_eq!(table(&pg), "a=3\nb=7\n");
        assert_eq!(pg.psql("SELECT count(*) FROM weir_sink_staging"), "0\n");
        // Attempt 1's first epoch is closed by checkpoint 5 (ids go on above the newest).
        let mut w = a1.writer(0, 2, true);
        w.write(b"c", b"10")?;
        w.barrier(5)?;
        w.commit(5)?;
        assert_eq!(table(&pg), "a=3\nb=7\nc=10\n");
        assert_eq!(audit(&pg), "1/0/a0:3\n2/0/a0:1\n5/0/a1:1\n", "each epoch applied once");
        // Settling again changes nothing.
        assert_eq!(a1.recover(2, Some(0))?.applied, vec![]);
        Ok(())
    }

    /// The zombie: attempt 0 goes on after attempt 1 restored checkpoint 1 and raised
    /// the fence. It can neither commit nor stage; nothing of it becomes visible.
    #[test]
    fn a_superseded_attempt_can_neither_commit_nor_stage() -> Result<(), Box<dyn std::error::Error>> {
        let pg = Postgres::start();
        pg.psql("CREATE TABLE sums (k text, v bigint)");
        let opts = options(&pg, &[("mode", "append")])?;
        let zombie = Arc::new(PgSink::open(&opts, "j", "out", 0)?);
        zombie.recover(0, None)?;
        let mut z = zombie.writer(0, 0, true);
        z.write(b"a", b"1")?;
        z.barrier(1)?;
        z.write(b"a", b"2")?;
        z.barrier(2)?;
        let next = Arc::new(PgSink::open(&opts, "j", "out", 1)?);
        assert_eq!(next.recover(1, Some(0))?.applied, vec![(0, 1, 1)]);
        assert!(matches!(z.commit(2), Err(PgError::Superseded { current: 1, .. })), "commit");
        z.write(b"a", b"3")?;
        let e = z.barrier(3).expect_err("stage refused");
        assert!(e.to_string().contains("attempt 0 of job j writing sink \"out\": attempt 1 superseded it"), "{e}");
        assert!(matches!(zombie.recover(1, Some(0)), Err(PgError::Superseded { .. })), "a late restore of the old attempt");
        assert_eq!(pg.psql("SELECT k || v FROM sums"), "a1\n");
        assert_eq!(pg.psql("SELECT count(*) FROM weir_sink_staging"), "0\n");
        Ok(())
    }

    #[test]
    fn bad_configurations_and_records_are_clear_errors() -> Result<(), Box<dyn std::error::Error>> {
        let pg = Postgres::start();
        pg.psql("CREATE TABLE sums (k text PRIMARY KEY, v bigint); CREATE TABLE log (k text, v bigint)");
        let wrong = pg.dir().join("wrong");
        std::fs::write(&wrong, "not-the-password")?;
        let e = PgSink::open(&options(&pg, &[("password-file", &wrong.to_string_lossy())])?, "j", "out", 0).expect_err("wrong password");
        let text = e.to_string();
        assert!(text.contains("password authentication failed for user \"postgres\""), "{text}");
        assert!(!text.contains("not-the-password"), "{text}");
        let e = PgSink::open(&options(&pg, &[("table", "nosuch")])?, "j", "out", 0).expect_err("no table");
        assert!(e.to_string().starts_with("table nosuch: does not exist"), "{e}");
        let e = PgSink::open(&options(&pg, &[("value-column", "value")])?, "j", "out", 0).expect_err("no column");
        assert_eq!(e.to_string(), "table sums: has no column \"value\"");
        let e = PgSink::open(&options(&pg, &[("table", "log")])?, "j", "out", 0).expect_err("upsert without a unique key");
        assert!(e.to_string().contains("mode upsert needs a unique index"), "{e}");
        assert!(options(&pg, &[("password", "x")]).is_err_and(|e| e.to_string().contains("password-file")));
        assert!(options(&pg, &[("mode", "merge")]).is_err_and(|e| e.to_string().contains("expected one of upsert, append")));

        // A value the column cannot hold fails the barrier that stages it, naming it;
        // the checkpoint cannot complete, nothing is applied.
        let sink = Arc::new(PgSink::open(&options(&pg, &[])?, "j", "out", 0)?);
        sink.recover(0, None)?;
        let mut w = sink.writer(0, 0, true);
        w.write(b"a", b"1")?;
        w.write(b"b", b"twelve")?;
        let e = w.barrier(1).expect_err("not a bigint");
        let text = e.to_string();
        assert!(text.contains("staging epoch 1 of subtask 0") && text.contains("invalid input syntax for type bigint: \"twelve\""), "{text}");
        assert!(w.write(b"c", &[0xff]).is_err_and(|e| e.to_string().contains("value is not UTF-8")));
        assert_eq!(table(&pg), "");
        Ok(())
    }

    /// `on-error = dead-letter`: records the table's types cannot hold go to the
    /// dead-letter table with the server's reason, the others to the table, both when
    /// their checkpoint completes and once (a replayed commit parks nothing twice).
    #[test]
    fn records_the_table_cannot_hold_are_dead_lettered_exactly_once() -> Result<(), Box<dyn std::error::Error>> {
        let pg = Postgres::start();
        pg.psql("CREATE TABLE sums (k text PRIMARY KEY, v smallint)");
        assert!(options(&pg, &[("dead-letter-table", "dl")]).is_err_and(|e| e.to_string().contains("needs `on-error = dead-letter`")));
        let opts = options(&pg, &[("on-error", "dead-letter"), ("dead-letter-table", "dl")])?;
        let sink = Arc::new(PgSink::open(&opts, "j", "out", 0)?);
        sink.recover(0, None)?;
        let mut w = sink.writer(0, 0, true);
        for (k, v) in [("a", "1"), ("b", "twelve"), ("c", "40000"), ("d", "4")] {
            w.write(k.as_bytes(), v.as_bytes())?;
        }
        w.barrier(1)?;
        let parked = || pg.psql("SELECT epoch || ' ' || key || '=' || value || ': ' || error FROM dl ORDER BY n");
        assert_eq!(parked(), "", "nothing before the checkpoint completes");
        w.commit(1)?;
        w.commit(1)?;
        assert_eq!(table(&pg), "a=1\nd=4\n");
        assert_eq!(
            parked(),
            "1 b=twelve: ERROR: invalid input syntax for type smallint: \"twelve\"\n1 c=40000: ERROR: value \"40000\" is out of range for type smallint\n"
        );
        assert_eq!(audit(&pg), "1/0/a0:4\n", "the audit counts every record of the epoch, parked or written");
        // Without checkpoints, too.
        let mut w = sink.writer(1, 0, false);
        w.write(b"e", b"x")?;
        w.write(b"f", b"6")?;
        w.finish()?;
        assert_eq!(table(&pg), "a=1\nd=4\nf=6\n");
        assert_eq!(pg.psql("SELECT key FROM dl WHERE epoch IS NULL"), "e\n");
        Ok(())
    }

    /// Without checkpoints rows go straight to the table; text needing escapes arrives
    /// as it was.
    #[test]
    fn without_checkpoints_rows_are_written_directly() -> Result<(), Box<dyn std::error::Error>> {
        let pg = Postgres::start();
        pg.psql("CREATE TABLE words (k text PRIMARY KEY, v text)");
        let sink = Arc::new(PgSink::open(&options(&pg, &[("table", "words"), ("batch-bytes", "8")])?, "j", "out", 0)?);
        let mut w = sink.writer(0, 0, false);
        w.write(b"tab\there", b"back\\slash")?;
        w.write(b"line", b"one\ntwo")?;
        w.finish()?;
        assert_eq!(pg.psql("SELECT k || '|' || replace(v, E'\\n', '/') FROM words ORDER BY k"), "line|one/two\ntab\there|back\\slash\n");
        Ok(())
    }
}
