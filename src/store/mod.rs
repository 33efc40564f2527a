//! The one SQLite file, `homehub.db` in the data dir.
//!
//! Owns: the connection, the schema and its upgrades, the data-dir lock, and every SQL
//! statement. It is the only module that imports rusqlite. May not touch: media files
//! (the recorder owns those; the store only records their paths).
//!
//! The connection lives on one dedicated thread. Callers hand it closures over [`Db`]
//! ([`Store::call`] from async code, [`Store::call_blocking`] from threads); the thread
//! runs whatever is queued inside one transaction, each closure in its own savepoint,
//! so a burst of writes costs one fsync (SD cards wear) and one failing job rolls back
//! only itself. A closure's result is delivered after the commit: when a caller hears
//! "ok", the row is durable.

mod cloud;
mod devices;
mod schema;

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::{Error, ErrorKind, Result};

pub use cloud::{CloudEvent, NewUpload, QueueStatus, Upload, UploadKind};
pub use devices::{AuditRow, DeviceRow, MqttUserRow, PendingRequest, WrongCode};
pub use schema::LATEST_VERSION;

pub const DB_FILE: &str = "homehub.db";
const LOCK_FILE: &str = "homehub.lock";

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
    conn: Connection,
    /// Results of this batch's jobs, handed out after its commit.
    pending: Vec<Deliver>,
}

fn db_err(what: &str) -> impl FnOnce(rusqlite::Error) -> Error + '_ {
    move |e| Error::internal(format!("database: {what}: {e}"))
}

/// The advisory lock that keeps two hubs from sharing a data dir. Held for as long as
/// the value lives; the OS drops it when the process dies, so a crash never leaves it.
pub struct DirLock {
    _file: File,
}

impl DirLock {
    pub fn acquire(data_dir: &Path) -> Result<DirLock> {
        let path = data_dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::internal(format!("opening {}: {e}", path.display())))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let holder = fs::read_to_string(&path).unwrap_or_default();
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!("data dir {} is in use by another homehub (pid {})", data_dir.display(), holder.trim()),
                ));
            }
            Err(fs::TryLockError::Error(e)) => return Err(Error::internal(format!("locking {}: {e}", path.display()))),
        }
        file.set_len(0).and_then(|_| write!(file, "{}", std::process::id())).map_err(|e| Error::internal(format!("writing {}: {e}", path.display())))?;
        Ok(DirLock { _file: file })
    }

    /// The pid written by the hub that holds the lock, if one does now.
    pub fn holder(data_dir: &Path) -> Option<u32> {
        let path = data_dir.join(LOCK_FILE);
        let file = File::open(&path).ok()?;
        if file.try_lock_shared().is_ok() {
            return None; // nobody holds it
        }
        fs::read_to_string(&path).ok()?.trim().parse().ok()
    }
}

/// Makes the data dir (0700) if needed and tightens it if it exists.
pub fn prepare_data_dir(data_dir: &Path) -> Result<()> {
    fs::create_dir_all(data_dir).map_err(|e| Error::internal(format!("creating data dir {}: {e}", data_dir.display())))?;
    fs::set_permissions(data_dir, fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::internal(format!("chmod 0700 {}: {e}", data_dir.display())))
}

impl Store {
    /// Opens (creating or upgrading) the database in `data_dir` and starts its thread.
    /// The caller must hold the [`DirLock`].
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
    fn open_in_memory_at(version: u32) -> Db {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("PRAGMA foreign_keys = ON;").unwrap();
        schema::upgrade(&mut conn, version).unwrap();
        Db { conn, pending: Vec::new() }
    }

    fn in_savepoint<R>(&mut self, f: impl FnOnce(&mut Db) -> Result<R>) -> Result<R> {
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
            Ok(()) => self.conn.execute_batch("COMMIT").map_err(|e| Error::internal(e.to_string())),
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

    // ---- cameras ----

    /// Makes sure each configured camera has a row (matched by name) with its current
    /// URLs, and returns them all in config order. New rows are created at `now_ms`.
    pub fn sync_config_cameras(&mut self, cams: &[(String, String, String)], now_ms: i64) -> Result<Vec<CameraRow>> {
        let mut out = Vec::new();
        for (name, url, sub) in cams {
            self.conn
                .execute(
                    "INSERT INTO cameras (name, source, url, substream_url, created_ms) VALUES (?1, 'config', ?2, ?3, ?4)
                     ON CONFLICT(name) DO UPDATE SET url = excluded.url, substream_url = excluded.substream_url",
                    params![name, url, sub, now_ms],
                )
                .map_err(db_err("saving camera"))?;
            out.push(self.camera_by_name(name)?.ok_or_else(|| Error::internal("camera row vanished"))?);
        }
        Ok(out)
    }

    pub fn camera_by_name(&mut self, name: &str) -> Result<Option<CameraRow>> {
        self.conn
            .query_row("SELECT id, name, source, url, substream_url FROM cameras WHERE name = ?1", params![name], CameraRow::from_row)
            .optional()
            .map_err(db_err("reading camera"))
    }

    pub fn cameras(&mut self) -> Result<Vec<CameraRow>> {
        let mut st = self
            .conn
            .prepare_cached("SELECT id, name, source, url, substream_url FROM cameras ORDER BY id")
            .map_err(db_err("listing cameras"))?;
        let rows = st.query_map([], CameraRow::from_row).map_err(db_err("listing cameras"))?;
        rows.collect::<std::result::Result<_, _>>().map_err(db_err("listing cameras"))
    }

    // ---- segments ----

    pub fn insert_segment(&mut self, s: &Segment) -> Result<i64> {
        self.conn
            .execute(
                "INSERT INTO segments (camera_id, path, start_ms, end_ms, bytes, partial) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![s.camera_id, s.path, s.start_ms, s.end_ms, s.bytes as i64, s.partial],
            )
            .map_err(db_err("inserting segment"))?;
        Ok(self.conn.last_insert_rowid())
    }

    pub fn segments(&mut self, q: &SegmentQuery) -> Result<Vec<SegmentRow>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT id, camera_id, path, start_ms, end_ms, bytes, partial FROM segments
                 WHERE (?1 IS NULL OR camera_id = ?1) AND (?2 IS NULL OR end_ms >= ?2) AND (?3 IS NULL OR start_ms <= ?3)
                 ORDER BY start_ms, id LIMIT ?4",
            )
            .map_err(db_err("listing segments"))?;
        let rows = st
            .query_map(params![q.camera_id, q.since_ms, q.until_ms, q.limit.unwrap_or(i64::MAX)], SegmentRow::from_row)
            .map_err(db_err("listing segments"))?;
        rows.collect::<std::result::Result<_, _>>().map_err(db_err("listing segments"))
    }

    pub fn segment(&mut self, id: i64) -> Result<Option<SegmentRow>> {
        self.conn
            .query_row(
                "SELECT id, camera_id, path, start_ms, end_ms, bytes, partial FROM segments WHERE id = ?1",
                params![id],
                SegmentRow::from_row,
            )
            .optional()
            .map_err(db_err("reading segment"))
    }

    pub fn segment_paths(&mut self) -> Result<Vec<String>> {
        let mut st = self.conn.prepare_cached("SELECT path FROM segments").map_err(db_err("listing paths"))?;
        let rows = st.query_map([], |r| r.get(0)).map_err(db_err("listing paths"))?;
        rows.collect::<std::result::Result<_, _>>().map_err(db_err("listing paths"))
    }

    /// Bytes of everything retention manages: segments and finished events' clips.
    pub fn media_bytes_total(&mut self) -> Result<u64> {
        let n: i64 = self
            .conn
            .query_row(
                "SELECT (SELECT COALESCE(SUM(bytes), 0) FROM segments) + (SELECT COALESCE(SUM(clip_bytes), 0) FROM events)",
                [],
                |r| r.get(0),
            )
            .map_err(db_err("summing media"))?;
        Ok(n as u64)
    }

    /// Moves the oldest media to the garbage list, in one step: segment rows go, events
    /// keep their row but lose their clip and thumbnail; the paths are listed for
    /// deletion. Picks what ended before `before_ms`, then more (oldest first) until
    /// `free_bytes` are covered. Clips of events still going on are never picked, and
    /// clips still waiting to go to the cloud only when `take_queued` (the disk would
    /// fill otherwise): their uploads are then given up, and said so loudly.
    pub fn collect_old_media(&mut self, before_ms: i64, free_bytes: u64, cap: usize) -> Result<Vec<String>> {
        self.collect_old_media_with(before_ms, free_bytes, cap, false)
    }

    pub fn collect_old_media_with(&mut self, before_ms: i64, free_bytes: u64, cap: usize, take_queued: bool) -> Result<Vec<String>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT 0, id, start_ms, end_ms, bytes FROM segments
                 UNION ALL
                 SELECT 1, id, COALESCE(clip_start_ms, start_ms), end_ms, clip_bytes FROM events e
                   WHERE clip_path IS NOT NULL AND end_ms IS NOT NULL
                     AND (?2 OR NOT EXISTS (SELECT 1 FROM cloud_queue q
                          WHERE q.event_id = e.id AND q.kind = 'clip' AND q.done_ms IS NULL AND q.failed = 0))
                 ORDER BY 3, 1, 2 LIMIT ?1",
            )
            .map_err(db_err("choosing old media"))?;
        let rows: Vec<(i64, i64, i64, i64)> = st
            .query_map(params![cap as i64, take_queued], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(3)?, r.get::<_, Option<i64>>(4)?.unwrap_or(0))))
            .map_err(db_err("choosing old media"))?
            .collect::<std::result::Result<_, _>>()
            .map_err(db_err("choosing old media"))?;
        drop(st);
        let mut freed = 0u64;
        let mut paths = Vec::new();
        for (kind, id, end_ms, bytes) in rows {
            if end_ms >= before_ms && freed >= free_bytes {
                break;
            }
            freed += bytes as u64;
            let gone: Vec<String> = if kind == 0 {
                let p: String = self
                    .conn
                    .query_row("DELETE FROM segments WHERE id = ?1 RETURNING path", params![id], |r| r.get(0))
                    .map_err(db_err("deleting segment"))?;
                vec![p]
            } else {
                let (clip, thumb): (Option<String>, Option<String>) = self
                    .conn
                    .query_row("SELECT clip_path, thumb_path FROM events WHERE id = ?1", params![id], |r| Ok((r.get(0)?, r.get(1)?)))
                    .map_err(db_err("reading clip"))?;
                self.conn
                    .execute("UPDATE events SET clip_path = NULL, clip_bytes = NULL, thumb_path = NULL WHERE id = ?1", params![id])
                    .map_err(db_err("dropping clip"))?;
                let lost = self
                    .conn
                    .execute(
                        "UPDATE cloud_queue SET failed = 1, last_error = 'deleted locally before upload: the disk was full'
                         WHERE done_ms IS NULL AND failed = 0 AND (event_id = ?1 AND kind = 'clip'
                           OR after IN (SELECT id FROM cloud_queue WHERE event_id = ?1 AND kind = 'clip'))",
                        params![id],
                    )
                    .map_err(db_err("dropping an upload"))?;
                if lost > 0 {
                    tracing::error!(
                        event = id,
                        "DISK FULL: deleting the clip of event {id} before it reached the cloud; it is lost"
                    );
                }
                [clip, thumb].into_iter().flatten().collect()
            };
            for p in gone {
                self.conn
                    .execute("INSERT OR IGNORE INTO garbage (path) VALUES (?1)", params![p])
                    .map_err(db_err("listing garbage"))?;
                paths.push(p);
            }
        }
        Ok(paths)
    }

    pub fn garbage(&mut self) -> Result<Vec<String>> {
        let mut st = self.conn.prepare_cached("SELECT path FROM garbage").map_err(db_err("listing garbage"))?;
        let rows = st.query_map([], |r| r.get(0)).map_err(db_err("listing garbage"))?;
        rows.collect::<std::result::Result<_, _>>().map_err(db_err("listing garbage"))
    }

    /// Forgets garbage entries whose files are gone.
    pub fn garbage_done(&mut self, paths: &[String]) -> Result<()> {
        for p in paths {
            self.conn.execute("DELETE FROM garbage WHERE path = ?1", params![p]).map_err(db_err("clearing garbage"))?;
        }
        Ok(())
    }

    pub fn delete_segment_rows(&mut self, paths: &[String]) -> Result<()> {
        for p in paths {
            self.conn.execute("DELETE FROM segments WHERE path = ?1", params![p]).map_err(db_err("deleting segment"))?;
        }
        Ok(())
    }

    // ---- motion settings and events ----

    /// The camera's detector settings as JSON (`{}` = defaults).
    pub fn camera_motion(&mut self, camera_id: i64) -> Result<Option<String>> {
        self.conn
            .query_row("SELECT motion FROM cameras WHERE id = ?1", params![camera_id], |r| r.get(0))
            .optional()
            .map_err(db_err("reading motion settings"))
    }

    pub fn set_camera_motion(&mut self, camera_id: i64, json: &str) -> Result<()> {
        let n = self
            .conn
            .execute("UPDATE cameras SET motion = ?2 WHERE id = ?1", params![camera_id, json])
            .map_err(db_err("saving motion settings"))?;
        if n == 0 {
            return Err(Error::not_found(format!("no camera {camera_id}")));
        }
        Ok(())
    }

    pub fn insert_event(&mut self, camera_id: i64, start_ms: i64) -> Result<i64> {
        self.conn
            .execute("INSERT INTO events (camera_id, start_ms) VALUES (?1, ?2)", params![camera_id, start_ms])
            .map_err(db_err("inserting event"))?;
        Ok(self.conn.last_insert_rowid())
    }

    pub fn set_event_clip_start(&mut self, id: i64, clip_start_ms: i64) -> Result<()> {
        self.conn
            .execute("UPDATE events SET clip_start_ms = ?2 WHERE id = ?1", params![id, clip_start_ms])
            .map_err(db_err("updating event"))?;
        Ok(())
    }

    /// Closes an event. Clip and thumbnail paths are given only once their files are durable.
    pub fn finish_event(&mut self, e: &FinishedEvent) -> Result<()> {
        self.conn
            .execute(
                "UPDATE events SET end_ms = ?2, peak_score = MAX(peak_score, ?3), zones = ?4, clip_path = ?5, clip_bytes = ?6,
                 thumb_path = ?7 WHERE id = ?1",
                params![e.id, e.end_ms, e.peak_score, e.zones_json, e.clip_path, e.clip_bytes.map(|b| b as i64), e.thumb_path],
            )
            .map_err(db_err("finishing event"))?;
        Ok(())
    }

    pub fn events(&mut self, q: &SegmentQuery) -> Result<Vec<EventRow>> {
        let mut st = self
            .conn
            .prepare_cached(&format!(
                "SELECT {EVENT_COLS} FROM events
                 WHERE (?1 IS NULL OR camera_id = ?1) AND (?2 IS NULL OR COALESCE(end_ms, start_ms) >= ?2) AND (?3 IS NULL OR start_ms <= ?3)
                 ORDER BY start_ms, id LIMIT ?4"
            ))
            .map_err(db_err("listing events"))?;
        let rows = st
            .query_map(params![q.camera_id, q.since_ms, q.until_ms, q.limit.unwrap_or(i64::MAX)], EventRow::from_row)
            .map_err(db_err("listing events"))?;
        rows.collect::<std::result::Result<_, _>>().map_err(db_err("listing events"))
    }

    pub fn event(&mut self, id: i64) -> Result<Option<EventRow>> {
        self.conn
            .query_row(&format!("SELECT {EVENT_COLS} FROM events WHERE id = ?1"), params![id], EventRow::from_row)
            .optional()
            .map_err(db_err("reading event"))
    }

    /// Events that never got an end (the hub stopped during them).
    pub fn open_events(&mut self) -> Result<Vec<EventRow>> {
        let mut st = self
            .conn
            .prepare_cached(&format!("SELECT {EVENT_COLS} FROM events WHERE end_ms IS NULL ORDER BY id"))
            .map_err(db_err("listing open events"))?;
        let rows = st.query_map([], EventRow::from_row).map_err(db_err("listing open events"))?;
        rows.collect::<std::result::Result<_, _>>().map_err(db_err("listing open events"))
    }

    pub fn clip_paths(&mut self) -> Result<Vec<String>> {
        let mut st = self
            .conn
            .prepare_cached("SELECT clip_path FROM events WHERE clip_path IS NOT NULL UNION ALL SELECT thumb_path FROM events WHERE thumb_path IS NOT NULL")
            .map_err(db_err("listing clips"))?;
        let rows = st.query_map([], |r| r.get(0)).map_err(db_err("listing clips"))?;
        rows.collect::<std::result::Result<_, _>>().map_err(db_err("listing clips"))
    }

    pub fn event_count(&mut self) -> Result<u64> {
        let n: i64 = self.conn.query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0)).map_err(db_err("counting events"))?;
        Ok(n as u64)
    }

    // ---- users and sessions ----

    pub fn add_user(&mut self, email: &str, role: Role, password_hash: &str, now_ms: i64) -> Result<i64> {
        match self.conn.execute(
            "INSERT INTO users (email, role, password_hash, created_ms) VALUES (?1, ?2, ?3, ?4)",
            params![email, role.as_str(), password_hash, now_ms],
        ) {
            Ok(_) => Ok(self.conn.last_insert_rowid()),
            Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation => {
                Err(Error::new(ErrorKind::Conflict, format!("user {email} exists already")))
            }
            Err(e) => Err(Error::internal(format!("database: adding user: {e}"))),
        }
    }

    pub fn user_by_email(&mut self, email: &str) -> Result<Option<UserRow>> {
        self.conn
            .query_row("SELECT id, email, role, password_hash FROM users WHERE email = ?1", params![email], UserRow::from_row)
            .optional()
            .map_err(db_err("reading user"))
    }

    pub fn add_session(&mut self, token_hash: &[u8], user_id: i64, now_ms: i64, expires_ms: i64) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO sessions (token_hash, user_id, created_ms, expires_ms) VALUES (?1, ?2, ?3, ?4)",
                params![token_hash, user_id, now_ms, expires_ms],
            )
            .map_err(db_err("adding session"))?;
        Ok(())
    }

    /// The user of a live session.
    pub fn session_user(&mut self, token_hash: &[u8], now_ms: i64) -> Result<Option<UserRow>> {
        self.conn
            .query_row(
                "SELECT u.id, u.email, u.role, u.password_hash FROM sessions s JOIN users u ON u.id = s.user_id
                 WHERE s.token_hash = ?1 AND s.expires_ms > ?2",
                params![token_hash, now_ms],
                UserRow::from_row,
            )
            .optional()
            .map_err(db_err("reading session"))
    }

    pub fn delete_session(&mut self, token_hash: &[u8]) -> Result<()> {
        self.conn.execute("DELETE FROM sessions WHERE token_hash = ?1", params![token_hash]).map_err(db_err("deleting session"))?;
        Ok(())
    }

    pub fn delete_expired_sessions(&mut self, now_ms: i64) -> Result<usize> {
        self.conn.execute("DELETE FROM sessions WHERE expires_ms <= ?1", params![now_ms]).map_err(db_err("expiring sessions"))
    }

    pub fn audit(&mut self, actor: &str, action: &str, detail: &str, now_ms: i64) -> Result<()> {
        self.conn
            .execute("INSERT INTO audit (at_ms, actor, action, detail) VALUES (?1, ?2, ?3, ?4)", params![now_ms, actor, action, detail])
            .map_err(db_err("writing audit"))?;
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Owner,
    Member,
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Member => "member",
            Role::Viewer => "viewer",
        }
    }
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "owner" => Some(Role::Owner),
            "member" => Some(Role::Member),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct CameraRow {
    pub id: i64,
    pub name: String,
    pub source: String,
    pub url: String,
    pub substream_url: String,
}

impl CameraRow {
    fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(CameraRow { id: r.get(0)?, name: r.get(1)?, source: r.get(2)?, url: r.get(3)?, substream_url: r.get(4)? })
    }
}

#[derive(Debug, Clone)]
pub struct Segment {
    pub camera_id: i64,
    /// Relative to the data dir.
    pub path: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub bytes: u64,
    /// Cut short (camera lost or hub crash) rather than closed at its planned length.
    pub partial: bool,
}

/// A stored segment: its row id and what it holds.
#[derive(Debug, Clone)]
pub struct SegmentRow {
    pub id: i64,
    pub segment: Segment,
}

impl SegmentRow {
    fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(SegmentRow {
            id: r.get(0)?,
            segment: Segment {
                camera_id: r.get(1)?,
                path: r.get(2)?,
                start_ms: r.get(3)?,
                end_ms: r.get(4)?,
                bytes: r.get::<_, i64>(5)? as u64,
                partial: r.get(6)?,
            },
        })
    }
}

const EVENT_COLS: &str = "id, camera_id, start_ms, end_ms, peak_score, zones, clip_start_ms, clip_path, clip_bytes, thumb_path";

#[derive(Debug, Clone)]
pub struct EventRow {
    pub id: i64,
    pub camera_id: i64,
    pub start_ms: i64,
    pub end_ms: Option<i64>,
    pub peak_score: f64,
    pub zones_json: String,
    pub clip_start_ms: Option<i64>,
    pub clip_path: Option<String>,
    pub clip_bytes: Option<u64>,
    pub thumb_path: Option<String>,
}

impl EventRow {
    fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(EventRow {
            id: r.get(0)?,
            camera_id: r.get(1)?,
            start_ms: r.get(2)?,
            end_ms: r.get(3)?,
            peak_score: r.get(4)?,
            zones_json: r.get(5)?,
            clip_start_ms: r.get(6)?,
            clip_path: r.get(7)?,
            clip_bytes: r.get::<_, Option<i64>>(8)?.map(|b| b as u64),
            thumb_path: r.get(9)?,
        })
    }
}

#[derive(Debug, Clone, Default)]
pub struct FinishedEvent {
    pub id: i64,
    pub end_ms: i64,
    pub peak_score: f64,
    pub zones_json: String,
    pub clip_path: Option<String>,
    pub clip_bytes: Option<u64>,
    pub thumb_path: Option<String>,
}

/// A time range query, for segments and events alike.
#[derive(Debug, Clone, Default)]
pub struct SegmentQuery {
    pub camera_id: Option<i64>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub limit: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct UserRow {
    pub id: i64,
    pub email: String,
    pub role: Role,
    pub password_hash: String,
}

impl UserRow {
    fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        let role: String = r.get(2)?;
        Ok(UserRow {
            id: r.get(0)?,
            email: r.get(1)?,
            role: Role::parse(&role).unwrap_or(Role::Viewer),
            password_hash: r.get(3)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_round_trip_and_retention_uses_the_garbage_list() {
        let mut db = Db::open_in_memory_at(LATEST_VERSION);
        let cams = db.sync_config_cameras(&[("Porch".into(), "rtsp://h/a".into(), String::new())], 0).unwrap();
        let cam = cams[0].id;
        for i in 0..5 {
            db.insert_segment(&Segment {
                camera_id: cam,
                path: format!("recordings/{cam}/{i}.mp4"),
                start_ms: i * 10_000,
                end_ms: i * 10_000 + 10_000,
                bytes: 100,
                partial: false,
            })
            .unwrap();
        }
        assert_eq!(db.media_bytes_total().unwrap(), 500);
        // Everything that ended before 25 s, and nothing more.
        let gone = db.collect_old_media(25_000, 0, 1000).unwrap();
        assert_eq!(gone, vec![format!("recordings/{cam}/0.mp4"), format!("recordings/{cam}/1.mp4")]);
        // Then enough to free 150 bytes more: two more segments.
        let gone = db.collect_old_media(0, 150, 1000).unwrap();
        assert_eq!(gone.len(), 2);
        assert_eq!(db.garbage().unwrap().len(), 4);
        assert_eq!(db.segments(&SegmentQuery::default()).unwrap().len(), 1);
        db.garbage_done(&gone).unwrap();
        assert_eq!(db.garbage().unwrap().len(), 2);
    }

    #[test]
    fn retention_takes_clips_and_segments_oldest_first_but_not_open_events() {
        let mut db = Db::open_in_memory_at(LATEST_VERSION);
        let cam = db.sync_config_cameras(&[("Porch".into(), "rtsp://h/a".into(), String::new())], 0).unwrap()[0].id;
        let seg = |db: &mut Db, start: i64| {
            db.insert_segment(&Segment { camera_id: cam, path: format!("s{start}"), start_ms: start, end_ms: start + 10, bytes: 100, partial: false })
                .unwrap();
        };
        seg(&mut db, 0);
        let old_event = db.insert_event(cam, 5).unwrap();
        db.set_event_clip_start(old_event, 1).unwrap();
        db.finish_event(&FinishedEvent {
            id: old_event,
            end_ms: 20,
            clip_path: Some("c1.mp4".into()),
            clip_bytes: Some(100),
            thumb_path: Some("c1.jpg".into()),
            zones_json: "[]".into(),
            ..Default::default()
        })
        .unwrap();
        seg(&mut db, 30);
        let open = db.insert_event(cam, 2).unwrap(); // still going on: untouchable
        assert_eq!(db.media_bytes_total().unwrap(), 300);
        let gone = db.collect_old_media(i64::MIN, 150, 100).unwrap();
        assert_eq!(gone, vec!["s0".to_string(), "c1.mp4".to_string(), "c1.jpg".to_string()]);
        let e = db.event(old_event).unwrap().unwrap();
        assert!(e.clip_path.is_none() && e.thumb_path.is_none(), "the event stays, its clip goes");
        assert_eq!(db.media_bytes_total().unwrap(), 100);
        assert!(db.event(open).unwrap().unwrap().end_ms.is_none());
    }

    #[test]
    fn config_cameras_keep_their_ids() {
        let mut db = Db::open_in_memory_at(LATEST_VERSION);
        let a = db.sync_config_cameras(&[("A".into(), "rtsp://h/a".into(), String::new())], 0).unwrap();
        let b = db
            .sync_config_cameras(&[("B".into(), "rtsp://h/b".into(), String::new()), ("A".into(), "rtsp://h/a2".into(), String::new())], 0)
            .unwrap();
        assert_eq!(a[0].id, b[1].id);
        assert_eq!(b[1].url, "rtsp://h/a2");
    }

    #[test]
    fn sessions_expire_and_users_are_unique() {
        let mut db = Db::open_in_memory_at(LATEST_VERSION);
        let uid = db.add_user("a@example.com", Role::Owner, "h", 0).unwrap();
        assert_eq!(db.add_user("A@example.com", Role::Viewer, "h", 0).unwrap_err().kind(), ErrorKind::Conflict);
        db.add_session(b"tok", uid, 0, 100).unwrap();
        assert_eq!(db.session_user(b"tok", 50).unwrap().unwrap().email, "a@example.com");
        assert!(db.session_user(b"tok", 100).unwrap().is_none());
        assert!(db.session_user(b"other", 50).unwrap().is_none());
    }

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

    #[test]
    fn a_second_lock_on_the_same_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _a = DirLock::acquire(dir.path()).unwrap();
        let e = DirLock::acquire(dir.path()).err().expect("second lock must fail");
        assert_eq!(e.kind(), ErrorKind::Conflict);
        assert!(e.to_string().contains("in use"));
    }
}
