//! The store thread and the connection: [`Store`] (the handle callers hold), [`Db`]
//! (what their closures see), batching of queued jobs into one transaction with a
//! savepoint each, opening the file, and the `meta` table.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rusqlite::{Connection, OptionalExtension, params};

use super::schema::{self, LATEST_VERSION};
use crate::error::{Error, Result};

pub const DB_FILE: &str = "homehub.db";

type Job = Box<dyn FnOnce(&mut Db) + Send>;

enum Msg {
    Job(Job),
    /// Finish what is queued, checkpoint the WAL into the file and end the thread.
    Close,
}

/// A handle to the store thread. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    tx: std_mpsc::Sender<Msg>,
    data_dir: PathBuf,
    /// The store thread, joined by [`Store::close`]; it returns the checkpoint's result.
    thread: Arc<Mutex<Option<JoinHandle<Result<()>>>>>,
}

/// The connection, seen only inside store jobs.
pub struct Db {
    pub(super) conn: Connection,
    /// Results of this batch's jobs, handed out after its commit.
    pending: Vec<Deliver>,
}

pub(super) fn db_err(what: &str) -> impl FnOnce(rusqlite::Error) -> Error + '_ {
    move |e| Error::internal(format!("database: {what}: {e}"))
}

impl Store {
    /// Opens (creating or upgrading) the database in `data_dir` and starts its thread.
    /// The caller must hold the [`DirLock`](super::DirLock).
    pub fn open(data_dir: &Path) -> Result<Store> {
        let db = Db::open(&data_dir.join(DB_FILE))?;
        Store::spawn(db, data_dir)
    }

    fn spawn(mut db: Db, data_dir: &Path) -> Result<Store> {
        let (tx, rx) = std_mpsc::channel::<Msg>();
        let thread = std::thread::Builder::new()
            .name("store".into())
            .spawn(move || {
                let mut closing = false;
                while let Ok(Msg::Job(first)) = rx.recv() {
                    let mut batch = vec![first];
                    while batch.len() < 64 {
                        match rx.try_recv() {
                            Ok(Msg::Job(j)) => batch.push(j),
                            Ok(Msg::Close) => {
                                closing = true;
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    db.run_batch(batch);
                    if closing {
                        break;
                    }
                }
                // Closed, or every handle gone: checkpoint so the WAL does not linger.
                db.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);").map_err(db_err("checkpointing the WAL"))
            })
            .map_err(|e| Error::internal(format!("starting the database thread: {e}")))?;
        Ok(Store { tx, data_dir: data_dir.to_path_buf(), thread: Arc::new(Mutex::new(Some(thread))) })
    }

    /// Runs what is queued, checkpoints the WAL into the database file and joins the
    /// store thread (blocking). Calls made afterwards through any handle fail with
    /// "database closed". A second `close` returns at once.
    pub fn close(&self) -> Result<()> {
        let Some(thread) = crate::sync::lock(&self.thread).take() else { return Ok(()) };
        let _ = self.tx.send(Msg::Close);
        thread.join().map_err(|_| Error::internal("the database thread panicked"))?
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Runs `f` on the store thread and waits for it (and its commit) without blocking
    /// the async runtime.
    pub async fn call<R, F>(&self, f: F) -> Result<R>
    where
        F: FnOnce(&mut Db) -> Result<R> + Send + 'static,
        R: Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(f, move |r| {
            let _ = tx.send(r);
        })?;
        rx.await.map_err(|_| Error::internal("database closed"))?
    }

    /// Like [`Store::call`], for plain threads.
    pub fn call_blocking<R, F>(&self, f: F) -> Result<R>
    where
        F: FnOnce(&mut Db) -> Result<R> + Send + 'static,
        R: Send + 'static,
    {
        let (tx, rx) = std_mpsc::sync_channel(1);
        self.submit(f, move |r| {
            let _ = tx.send(r);
        })?;
        rx.recv().map_err(|_| Error::internal("database closed"))?
    }

    fn submit<R, F, D>(&self, f: F, deliver: D) -> Result<()>
    where
        F: FnOnce(&mut Db) -> Result<R> + Send + 'static,
        R: Send + 'static,
        D: FnOnce(Result<R>) + Send + 'static,
    {
        let job: Job = Box::new(move |db: &mut Db| {
            let r = db.in_savepoint(f);
            db.pending.push(Box::new(move |commit: &Result<()>| {
                deliver(match commit {
                    Ok(()) => r,
                    Err(e) => Err(Error::internal(format!("database commit: {e}"))),
                })
            }));
        });
        self.tx.send(Msg::Job(job)).map_err(|_| Error::internal("database closed"))
    }
}

type Deliver = Box<dyn FnOnce(&Result<()>) + Send>;

impl Db {
    /// Opens the file (0600), sets WAL and foreign keys, and upgrades the schema.
    pub fn open(path: &Path) -> Result<Db> {
        if !path.exists() {
            OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| Error::internal(format!("creating {}: {e}", path.display())))?;
        }
        let conn = Connection::open(path).map_err(|e| Error::internal(format!("opening {}: {e}", path.display())))?;
        let mut db = Db { conn, pending: Vec::new() };
        db.conn
            .execute_batch(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = NORMAL;
                 PRAGMA foreign_keys = ON;
                 PRAGMA busy_timeout = 5000;",
            )
            .map_err(db_err("setting pragmas"))?;
        schema::upgrade(&mut db.conn, LATEST_VERSION)?;
        // WAL and shm files are made by SQLite with the db file's mode, but be explicit.
        for suffix in ["", "-wal", "-shm"] {
            let p = PathBuf::from(format!("{}{suffix}", path.display()));
            if p.exists() {
                fs::set_permissions(&p, fs::Permissions::from_mode(0o600))
                    .map_err(|e| Error::internal(format!("chmod 0600 {}: {e}", p.display())))?;
            }
        }
        Ok(db)
    }

    #[cfg(test)]
    pub(super) fn open_in_memory_at(version: u32) -> Db {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("PRAGMA foreign_keys = ON;").unwrap();
        schema::upgrade(&mut conn, version).unwrap();
        Db { conn, pending: Vec::new() }
    }

    pub(super) fn in_savepoint<R>(&mut self, f: impl FnOnce(&mut Db) -> Result<R>) -> Result<R> {
        self.conn.execute_batch("SAVEPOINT job").map_err(db_err("savepoint"))?;
        let r = f(self);
        let end = if r.is_ok() { "RELEASE job" } else { "ROLLBACK TO job; RELEASE job" };
        if let Err(e) = self.conn.execute_batch(end) {
            return Err(Error::internal(format!("database: ending savepoint: {e}")));
        }
        r
    }

    fn run_batch(&mut self, batch: Vec<Job>) {
        let began = self.conn.execute_batch("BEGIN IMMEDIATE").map_err(|e| e.to_string());
        for job in batch {
            job(self);
        }
        let commit: Result<()> = match began {
            Ok(()) => self.conn.execute_batch("COMMIT").map_err(db_err("committing")),
            Err(e) => Err(Error::internal(e)),
        };
        if commit.is_err() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        for d in std::mem::take(&mut self.pending) {
            d(&commit);
        }
    }

    // ---- meta ----

    /// The hub's random id, made once.
    pub fn hub_id(&mut self) -> Result<String> {
        let existing: Option<String> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'hub_id'", [], |r| r.get(0))
            .optional()
            .map_err(db_err("reading hub id"))?;
        if let Some(id) = existing {
            return Ok(id);
        }
        let id = hex::encode(rand::random::<[u8; 16]>());
        self.conn
            .execute("INSERT INTO meta (key, value) VALUES ('hub_id', ?1)", params![id])
            .map_err(db_err("writing hub id"))?;
        Ok(id)
    }

    pub fn integrity_ok(&mut self) -> Result<bool> {
        let r: String = self.conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).map_err(db_err("integrity check"))?;
        Ok(r == "ok")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::store::Role;

    #[test]
    fn batches_commit_and_a_failing_job_rolls_back_only_itself() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let ok = store.call_blocking(|db| db.add_user("a@x", Role::Owner, "h", 0));
        assert!(ok.is_ok());
        let dup = store.call_blocking(|db| db.add_user("a@x", Role::Owner, "h", 0));
        assert_eq!(dup.unwrap_err().kind(), ErrorKind::Conflict);
        let failing = store.call_blocking(|db| {
            db.add_user("b@x", Role::Owner, "h", 0)?;
            Err::<(), _>(Error::invalid("no"))
        });
        assert!(failing.is_err());
        assert!(store.call_blocking(|db| db.user_by_email("b@x")).unwrap().is_none());
        let mode = fs::metadata(dir.path().join(DB_FILE)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
