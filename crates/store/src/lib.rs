//! One database layer over PostgreSQL (production) and SQLite (the embedded
//! default): a diesel `MultiConnection` behind an r2d2 pool, the backend chosen by
//! the URL scheme, per-backend embedded migrations, and blocking queries kept off
//! the async workers.

mod error;

pub use error::StoreError;

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool, PooledConnection};
use diesel::{Connection, PgConnection, RunQueryDsl, SqliteConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness};
use futures_util::future::BoxFuture;
use service_kit::config::DatabaseConfig;
use std::time::Duration;

/// A connection to either backend. Queries written against it run on both, as long
/// as they stay in the common subset (ids and JSON as text, UTC timestamps).
#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Postgresql(PgConnection),
    Sqlite(SqliteConnection),
}

pub type DbPool = Pool<ConnectionManager<DbConnection>>;
pub type PooledDb = PooledConnection<ConnectionManager<DbConnection>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    /// The backend a URL names, and the connection string diesel wants for it.
    /// Chosen by scheme, never by trying one after the other.
    pub fn parse(url: &str) -> Result<(Backend, String), StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok((Backend::Postgres, url.to_owned()))
        } else if let Some(path) = url.strip_prefix("sqlite://") {
            Self::sqlite_path(path)
        } else if url.contains("://") {
            Err(StoreError::Config(
                "database.url: unsupported scheme (expected postgres://, postgresql://, sqlite:// or a file path)"
                    .into(),
            ))
        } else {
            Self::sqlite_path(url)
        }
    }

    fn sqlite_path(path: &str) -> Result<(Backend, String), StoreError> {
        if path.is_empty() || path.contains(":memory:") {
            // Every pooled connection would get its own empty database.
            return Err(StoreError::Config(
                "database.url: SQLite needs a file path (in-memory databases cannot be pooled)"
                    .into(),
            ));
        }
        Ok((Backend::Sqlite, path.to_owned()))
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Postgres => "postgres",
            Backend::Sqlite => "sqlite",
        }
    }
}

/// A service's migrations, one folder per backend. `embed_migrations!` yields a
/// constant, so each field is a function returning it:
/// `Migrations { postgres: || PG, sqlite: || SQLITE }`.
pub struct Migrations {
    pub postgres: fn() -> EmbeddedMigrations,
    pub sqlite: fn() -> EmbeddedMigrations,
}

/// Settings applied to every new connection.
#[derive(Debug)]
struct ConnectionSetup;

impl CustomizeConnection<DbConnection, diesel::r2d2::Error> for ConnectionSetup {
    fn on_acquire(&self, conn: &mut DbConnection) -> Result<(), diesel::r2d2::Error> {
        set_up(conn).map_err(diesel::r2d2::Error::QueryError)
    }
}

fn set_up(conn: &mut DbConnection) -> diesel::QueryResult<()> {
    match conn {
        // busy_timeout makes a writer wait for the lock instead of failing at
        // once (first, so that switching a new file to WAL waits too); WAL
        // lets readers run beside the one writer.
        DbConnection::Sqlite(c) => c.batch_execute(
            "PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; \
             PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;",
        ),
        DbConnection::Postgresql(c) => c.batch_execute("SET TIME ZONE 'UTC'"),
    }
}

/// Key of the advisory lock that serializes migrations across replicas.
const MIGRATION_LOCK_KEY: i64 = 0x0053_5041_504f_5254; // "SPAPORT" in ASCII

/// A pooled database handle; cheap to clone.
#[derive(Clone)]
pub struct Database {
    pool: DbPool,
    backend: Backend,
    /// For SQLite: the file and its identity when the pool opened it.
    sqlite_file: Option<(std::path::PathBuf, FileIdentity)>,
}

/// (device, inode): an open SQLite connection keeps using a file that was deleted
/// or replaced, silently writing where nobody will read; readiness compares this.
type FileIdentity = (u64, u64);

fn file_identity(path: &std::path::Path) -> std::io::Result<FileIdentity> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path)?;
    Ok((meta.dev(), meta.ino()))
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("backend", &self.backend)
            .finish()
    }
}

impl Database {
    /// Opens the pool. Fails (naming the backend, never the password) when the
    /// database cannot be reached within `connect_timeout_secs`.
    pub async fn connect(config: &DatabaseConfig) -> Result<Database, StoreError> {
        let config = config.clone();
        blocking(move || Self::connect_blocking(&config)).await
    }

    fn connect_blocking(config: &DatabaseConfig) -> Result<Database, StoreError> {
        let (backend, url) = Backend::parse(config.url.expose())?;
        if backend == Backend::Sqlite {
            create_parent_dir(&url)?;
        }
        let pool = Pool::builder()
            .max_size(config.pool_size)
            .min_idle(Some(1))
            // No `SELECT 1` before every checkout: it is a round trip per request.
            // A connection that broke (the server restarted) fails its next
            // query, which answers 503, and the pool then drops it.
            .test_on_check_out(false)
            .connection_timeout(Duration::from_secs(config.connect_timeout_secs.max(1)))
            .connection_customizer(Box::new(ConnectionSetup))
            .build(ConnectionManager::<DbConnection>::new(url.clone()))
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot connect to {}: {e}", backend.name()))
            })?;
        let sqlite_file = match backend {
            Backend::Sqlite => {
                let path = std::path::PathBuf::from(&url);
                let identity = file_identity(&path).map_err(|e| {
                    StoreError::Unavailable(format!("database file {}: {e}", path.display()))
                })?;
                Some((path, identity))
            }
            Backend::Postgres => None,
        };
        Ok(Database {
            pool,
            backend,
            sqlite_file,
        })
    }

    /// Connects and, when configured to, applies pending migrations.
    pub async fn connect_and_migrate(
        config: &DatabaseConfig,
        migrations: &'static Migrations,
    ) -> Result<Database, StoreError> {
        let db = Self::connect(config).await?;
        if config.migrate_on_start {
            db.migrate(migrations).await?;
        }
        Ok(db)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Runs `f` with a pooled connection on the blocking thread pool.
    pub async fn run<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let pool = self.pool.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let mut conn = pool.get().map_err(StoreError::from)?;
            f(&mut conn)
        })
        .await;
        match outcome {
            Ok(result) => result,
            Err(join) => {
                Err(StoreError::Unavailable(format!("database task failed: {join}")).into())
            }
        }
    }

    /// Runs `f` inside a transaction. On SQLite the transaction takes the write
    /// lock up front (`BEGIN IMMEDIATE`), so read-check-write sequences cannot
    /// interleave with another writer.
    pub async fn transaction<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + From<diesel::result::Error> + Send + 'static,
    {
        self.run(move |conn| match conn {
            DbConnection::Postgresql(_) => conn.transaction(f),
            DbConnection::Sqlite(_) => {
                // Begin through the inner connection's transaction manager, which the
                // multi-connection delegates to: a nested `transaction` inside `f`
                // then becomes a savepoint, as usual.
                sqlite_tx(conn, |c| {
                    AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")
                })?;
                match f(conn) {
                    Ok(value) => {
                        sqlite_tx(conn, AnsiTransactionManager::commit_transaction)?;
                        Ok(value)
                    }
                    Err(e) => {
                        if let Err(rollback) =
                            sqlite_tx(conn, AnsiTransactionManager::rollback_transaction)
                        {
                            tracing::warn!(error = %rollback, "rollback failed");
                        }
                        Err(e)
                    }
                }
            }
        })
        .await
    }

    /// Applies pending migrations; returns the versions applied. Replicas that
    /// start together are serialized: by an advisory lock on PostgreSQL, by the
    /// write lock on SQLite.
    pub async fn migrate(
        &self,
        migrations: &'static Migrations,
    ) -> Result<Vec<String>, StoreError> {
        self.run(move |conn| migrate_connection(conn, migrations))
            .await
    }

    /// Reachability for `/readyz`: reads a real table, so a database that is gone,
    /// unreadable or unmigrated is not "ready".
    pub async fn ping(&self) -> Result<(), StoreError> {
        if let Some((path, identity)) = &self.sqlite_file {
            match file_identity(path) {
                Ok(now) if now == *identity => {}
                Ok(_) => return Err(StoreError::Unavailable("database file was replaced".into())),
                Err(e) => return Err(StoreError::Unavailable(format!("database file: {e}"))),
            }
        }
        self.run(|conn| {
            diesel::sql_query("SELECT version FROM __diesel_schema_migrations LIMIT 1")
                .execute(conn)
                .map(|_| ())
                .map_err(StoreError::from)
        })
        .await
    }

    pub fn pool(&self) -> &DbPool {
        &self.pool
    }
}

fn migrate_connection(
    conn: &mut DbConnection,
    migrations: &Migrations,
) -> Result<Vec<String>, StoreError> {
    let applied = match conn {
        DbConnection::Postgresql(pg) => {
            pg.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))?;
            let result = pg
                .run_pending_migrations((migrations.postgres)())
                .map(|versions| versions.iter().map(ToString::to_string).collect::<Vec<_>>())
                .map_err(|e| e.to_string());
            let unlock =
                pg.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"));
            let applied = result.map_err(StoreError::Migration)?;
            unlock?;
            applied
        }
        // SQLite has no advisory lock: the write lock, taken up front by
        // `BEGIN IMMEDIATE`, serializes replicas instead. A second replica waits
        // (busy_timeout, 5 s; past that it fails to start and is restarted) and
        // then reads the first one's bookkeeping, so it never re-runs a
        // migration that was applied while it was deciding what to run. Each
        // migration's own transaction nests inside as a savepoint, so a run is
        // all or nothing: a failed migration undoes the ones before it too.
        DbConnection::Sqlite(lite) => lite.immediate_transaction(|lite| {
            lite.run_pending_migrations((migrations.sqlite)())
                .map(|versions| versions.iter().map(ToString::to_string).collect::<Vec<_>>())
                .map_err(|e| StoreError::Migration(e.to_string()))
        })?,
    };
    if !applied.is_empty() {
        tracing::info!(migrations = ?applied, "applied migrations");
    }
    Ok(applied)
}

/// SQLite creates the file, but not the folders above it.
fn create_parent_dir(path: &str) -> Result<(), StoreError> {
    match std::path::Path::new(path).parent() {
        Some(parent) if !parent.as_os_str().is_empty() => {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Config(format!(
                    "database.url: cannot create {}: {e}",
                    parent.display()
                ))
            })
        }
        _ => Ok(()),
    }
}

fn sqlite_tx(
    conn: &mut DbConnection,
    op: impl FnOnce(&mut SqliteConnection) -> diesel::QueryResult<()>,
) -> diesel::QueryResult<()> {
    match conn {
        DbConnection::Sqlite(c) => op(c),
        DbConnection::Postgresql(_) => Ok(()),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Unavailable(format!("database task failed: {e}")))?
}

/// `/readyz` sees the database through this.
impl service_kit::ReadinessCheck for Database {
    fn name(&self) -> &'static str {
        "database"
    }

    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move { self.ping().await.map_err(|e| e.to_string()) })
    }
}

/// The `migrate` subcommand: apply pending migrations over one direct connection
/// and report them. No pool: a pool's background threads could still be opening a
/// connection when the process exits, racing libpq's teardown.
pub async fn migrate(
    config: &DatabaseConfig,
    migrations: &'static Migrations,
) -> Result<Vec<String>, StoreError> {
    let url = config.url.expose().to_owned();
    let applied = blocking(move || {
        let (backend, url) = Backend::parse(&url)?;
        let unavailable = |e: diesel::ConnectionError| {
            StoreError::Unavailable(format!("cannot connect to {}: {e}", backend.name()))
        };
        let mut conn = match backend {
            Backend::Postgres => {
                DbConnection::Postgresql(PgConnection::establish(&url).map_err(unavailable)?)
            }
            Backend::Sqlite => {
                create_parent_dir(&url)?;
                DbConnection::Sqlite(SqliteConnection::establish(&url).map_err(unavailable)?)
            }
        };
        set_up(&mut conn)?;
        migrate_connection(&mut conn, migrations)
    })
    .await?;
    if applied.is_empty() {
        tracing::info!("database is up to date");
    }
    Ok(applied)
}
