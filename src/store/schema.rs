//! Schema versions. `PRAGMA user_version` holds the version; each step from N to N+1
//! runs in its own transaction, so a power cut mid-upgrade leaves version N intact.
//! Steps are append-only: never edit a released step, add a new one.

use rusqlite::Connection;

use crate::error::{Error, Result};

const STEPS: &[&str] = &[
    // 0 -> 1: the foundation.
    "CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) STRICT;
    CREATE TABLE cameras (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        source TEXT NOT NULL CHECK (source IN ('config', 'paired')),
        url TEXT NOT NULL,
        substream_url TEXT NOT NULL DEFAULT '',
        created_ms INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE segments (
        id INTEGER PRIMARY KEY,
        camera_id INTEGER NOT NULL REFERENCES cameras (id),
        path TEXT NOT NULL UNIQUE,
        start_ms INTEGER NOT NULL,
        end_ms INTEGER NOT NULL,
        bytes INTEGER NOT NULL,
        CHECK (end_ms >= start_ms)
    ) STRICT;
    CREATE INDEX segments_by_camera_start ON segments (camera_id, start_ms);
    CREATE TABLE garbage (
        path TEXT PRIMARY KEY
    ) STRICT;
    CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        email TEXT NOT NULL UNIQUE COLLATE NOCASE,
        role TEXT NOT NULL CHECK (role IN ('owner', 'member', 'viewer')),
        password_hash TEXT NOT NULL,
        created_ms INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE sessions (
        token_hash BLOB PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        created_ms INTEGER NOT NULL,
        expires_ms INTEGER NOT NULL
    ) STRICT;",
    // 1 -> 2: partial segments are told apart; an audit trail for security events;
    // retention scans segments oldest first across cameras.
    "ALTER TABLE segments ADD COLUMN partial INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX segments_by_start ON segments (start_ms);
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        at_ms INTEGER NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT ''
    ) STRICT;",
    // 2 -> 3: motion events with their clips, and per-camera detector settings (JSON).
    "ALTER TABLE cameras ADD COLUMN motion TEXT NOT NULL DEFAULT '{}';
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        camera_id INTEGER NOT NULL REFERENCES cameras (id),
        start_ms INTEGER NOT NULL,
        end_ms INTEGER,
        peak_score REAL NOT NULL DEFAULT 0,
        zones TEXT NOT NULL DEFAULT '[]',
        clip_start_ms INTEGER,
        clip_path TEXT,
        clip_bytes INTEGER,
        thumb_path TEXT,
        CHECK (end_ms IS NULL OR end_ms >= start_ms)
    ) STRICT;
    CREATE INDEX events_by_camera_start ON events (camera_id, start_ms);",
    // 3 -> 4: paired devices and their MQTT credentials, broker users for integrations,
    // pending pairing requests, wrong-code counters and seen nonces.
    "CREATE TABLE devices (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        model TEXT NOT NULL DEFAULT '',
        firmware TEXT NOT NULL DEFAULT '',
        password_hash BLOB,
        paired_ms INTEGER NOT NULL,
        unpaired_ms INTEGER,
        last_seen_ms INTEGER,
        availability TEXT NOT NULL DEFAULT 'unknown' CHECK (availability IN ('unknown', 'online', 'offline')),
        connections INTEGER NOT NULL DEFAULT 0,
        failed_connections INTEGER NOT NULL DEFAULT 0,
        CHECK ((password_hash IS NULL) = (unpaired_ms IS NOT NULL))
    ) STRICT;
    ALTER TABLE cameras ADD COLUMN device_id TEXT REFERENCES devices (id);
    CREATE UNIQUE INDEX cameras_by_device ON cameras (device_id) WHERE device_id IS NOT NULL;
    CREATE TABLE mqtt_users (
        name TEXT PRIMARY KEY,
        password_hash BLOB NOT NULL,
        read_only INTEGER NOT NULL,
        created_ms INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE pairing_requests (
        device_id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        model TEXT NOT NULL,
        firmware TEXT NOT NULL,
        nonce BLOB NOT NULL,
        recipient TEXT NOT NULL,
        proof BLOB NOT NULL,
        received_ms INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE pairing_nonces (
        nonce BLOB PRIMARY KEY,
        seen_ms INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE pairing_failures (
        device_id TEXT PRIMARY KEY,
        failures INTEGER NOT NULL,
        locked_until_ms INTEGER
    ) STRICT;",
    // v5: the cloud relay's upload queue. A row is one object to put; its name is chosen
    // when it is queued, so a retry after an ambiguous failure overwrites, never duplicates.
    "CREATE TABLE cloud_queue (
        id INTEGER PRIMARY KEY,
        object TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL CHECK (kind IN ('clip', 'piece', 'index')),
        path TEXT,
        body TEXT,
        after INTEGER REFERENCES cloud_queue (id),
        event_id INTEGER,
        bytes INTEGER NOT NULL,
        created_ms INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_ms INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        done_ms INTEGER,
        failed INTEGER NOT NULL DEFAULT 0
    ) STRICT;
    CREATE INDEX cloud_queue_open ON cloud_queue (done_ms, failed, next_ms);
    CREATE INDEX cloud_queue_event ON cloud_queue (event_id, kind);",
    // v6: cameras added from the API (source 'added'), a per-camera recording mode
    // (NULL: the config's), and removal that keeps the row while recordings refer to it
    // (`removed_ms`); names are unique among the cameras not removed. SQLite changes a
    // CHECK only by rebuilding the table (its documented 12-step procedure; `upgrade`
    // runs steps with foreign keys off and checks them before each commit).
    "CREATE TABLE cameras_v6 (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        source TEXT NOT NULL CHECK (source IN ('config', 'paired', 'added')),
        url TEXT NOT NULL,
        substream_url TEXT NOT NULL DEFAULT '',
        created_ms INTEGER NOT NULL,
        motion TEXT NOT NULL DEFAULT '{}',
        device_id TEXT REFERENCES devices (id),
        recording_mode TEXT CHECK (recording_mode IN ('continuous', 'events', 'off')),
        removed_ms INTEGER
    ) STRICT;
    INSERT INTO cameras_v6 (id, name, source, url, substream_url, created_ms, motion, device_id)
        SELECT id, name, source, url, substream_url, created_ms, motion, device_id FROM cameras;
    DROP TABLE cameras;
    ALTER TABLE cameras_v6 RENAME TO cameras;
    CREATE UNIQUE INDEX cameras_by_device ON cameras (device_id) WHERE device_id IS NOT NULL;
    CREATE UNIQUE INDEX cameras_by_name ON cameras (name) WHERE removed_ms IS NULL;",
    // v7: pairing v2 keeps pending requests in memory (bounded, per connection), so the
    // v1 request and nonce tables go; the audit trail is bounded (the oldest rows are
    // rolled up per action into `audit_rollup`); the one Prometheus scrape token (stored
    // as SHA-256); revocations made by admin commands beside a running hub (`mqtt-user
    // remove`), which the hub polls; private hosts the owner allowed a device's config to
    // name besides its own address, and why its last config was refused.
    "DROP TABLE pairing_requests;
    DROP TABLE pairing_nonces;
    CREATE TABLE audit_rollup (
        action TEXT PRIMARY KEY,
        count INTEGER NOT NULL,
        first_ms INTEGER NOT NULL,
        last_ms INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE metrics_token (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        token_hash BLOB NOT NULL,
        created_ms INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE revocations (
        id INTEGER PRIMARY KEY,
        username TEXT NOT NULL,
        at_ms INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE device_hosts (
        device_id TEXT NOT NULL REFERENCES devices (id),
        host TEXT NOT NULL,
        approved_ms INTEGER NOT NULL,
        PRIMARY KEY (device_id, host)
    ) STRICT;
    ALTER TABLE devices ADD COLUMN config_refused TEXT;",
    // v8: people. Sessions get a public id (to list and revoke them), the address and
    // browser they came from and when they were last used (idle expiry); cameras are
    // shared per user; TOTP second factors (the secret sealed with the hub's key file,
    // never readable from this file alone) with hashed one-time recovery codes; one-time
    // setup tokens (hashed) for the first owner; hub settings (`require_totp`) in `meta`.
    "CREATE TABLE sessions_v8 (
        token_hash BLOB PRIMARY KEY,
        public_id TEXT NOT NULL UNIQUE,
        user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        created_ms INTEGER NOT NULL,
        expires_ms INTEGER NOT NULL,
        last_seen_ms INTEGER NOT NULL,
        address TEXT NOT NULL DEFAULT '',
        agent TEXT NOT NULL DEFAULT ''
    ) STRICT;
    INSERT INTO sessions_v8 (token_hash, public_id, user_id, created_ms, expires_ms, last_seen_ms)
        SELECT token_hash, lower(hex(randomblob(8))), user_id, created_ms, expires_ms, created_ms FROM sessions;
    DROP TABLE sessions;
    ALTER TABLE sessions_v8 RENAME TO sessions;
    CREATE INDEX sessions_by_user ON sessions (user_id);
    ALTER TABLE users ADD COLUMN totp_sealed BLOB;
    ALTER TABLE users ADD COLUMN totp_enabled INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE users ADD COLUMN totp_last_step INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE recovery_codes (
        user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        code_hash BLOB NOT NULL,
        used_ms INTEGER,
        PRIMARY KEY (user_id, code_hash)
    ) STRICT;
    CREATE TABLE camera_shares (
        user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        camera_id INTEGER NOT NULL REFERENCES cameras (id),
        PRIMARY KEY (user_id, camera_id)
    ) STRICT;
    CREATE TABLE setup_tokens (
        token_hash BLOB PRIMARY KEY,
        created_ms INTEGER NOT NULL,
        expires_ms INTEGER NOT NULL
    ) STRICT;",
];

pub const LATEST_VERSION: u32 = STEPS.len() as u32;

pub fn version(conn: &Connection) -> Result<u32> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| Error::internal(format!("database: reading schema version: {e}")))
}

/// Brings the schema up to `target`, one transaction per step.
pub fn upgrade(conn: &mut Connection, target: u32) -> Result<()> {
    let mut v = version(conn)?;
    if v > LATEST_VERSION {
        return Err(Error::invalid(format!(
            "database schema version {v} is newer than this homehub understands ({LATEST_VERSION}); upgrade homehub"
        )));
    }
    if v >= target {
        return Ok(());
    }
    // A step that rebuilds a table drops the old one, which foreign keys would refuse;
    // the pragma cannot change inside a transaction, so keys are off while steps run and
    // each step's result is checked before it commits.
    let fk: i64 = conn
        .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
        .map_err(|e| Error::internal(format!("database: reading foreign_keys: {e}")))?;
    let set_fk = |conn: &Connection, on: bool| {
        conn.execute_batch(if on { "PRAGMA foreign_keys = ON" } else { "PRAGMA foreign_keys = OFF" })
            .map_err(|e| Error::internal(format!("database: setting foreign_keys: {e}")))
    };
    set_fk(conn, false)?;
    let upgraded = (|| {
        while v < target {
            let tx = conn.transaction().map_err(|e| Error::internal(format!("database: upgrade begin: {e}")))?;
            tx.execute_batch(STEPS[v as usize])
                .and_then(|_| foreign_keys_hold(&tx))
                .and_then(|_| tx.execute_batch(&format!("PRAGMA user_version = {}", v + 1)))
                .and_then(|_| tx.commit())
                .map_err(|e| Error::internal(format!("database: upgrading schema {v} -> {}: {e}", v + 1)))?;
            v += 1;
            tracing::info!(version = v, "database schema upgraded");
        }
        Ok(())
    })();
    set_fk(conn, fk != 0)?;
    upgraded
}

/// Fails when a row refers to a row that does not exist.
fn foreign_keys_hold(conn: &Connection) -> rusqlite::Result<()> {
    let broken: Option<String> = conn
        .query_row("PRAGMA foreign_key_check", [], |r| r.get::<_, String>(0))
        .map(Some)
        .or_else(|e| if e == rusqlite::Error::QueryReturnedNoRows { Ok(None) } else { Err(e) })?;
    match broken {
        Some(table) => Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY),
            Some(format!("a row of {table} refers to a missing row")),
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema_of(conn: &Connection) -> Vec<(String, String)> {
        let mut st = conn.prepare("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name").unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(|r| r.unwrap()).collect()
    }

    fn columns(conn: &Connection, table: &str) -> Vec<String> {
        let mut st = conn.prepare(&format!("PRAGMA table_info({table})")).unwrap();
        st.query_map([], |r| r.get::<_, String>(1)).unwrap().map(|r| r.unwrap()).collect()
    }

    #[test]
    fn every_step_upgrades_with_data_in_place() {
        // Stop at each version, put data in, and go on to the latest.
        for stop in 1..LATEST_VERSION {
            let mut conn = Connection::open_in_memory().unwrap();
            upgrade(&mut conn, stop).unwrap();
            assert_eq!(version(&conn).unwrap(), stop);
            conn.execute_batch(
                "INSERT INTO cameras (name, source, url, created_ms) VALUES ('Porch', 'config', 'rtsp://h/a', 1);
                 INSERT INTO segments (camera_id, path, start_ms, end_ms, bytes) VALUES (1, 'recordings/1/a.mp4', 0, 10, 5);",
            )
            .unwrap();
            upgrade(&mut conn, LATEST_VERSION).unwrap();
            assert_eq!(version(&conn).unwrap(), LATEST_VERSION);
            let (path, partial): (String, i64) =
                conn.query_row("SELECT path, partial FROM segments", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
            assert_eq!(path, "recordings/1/a.mp4");
            assert_eq!(partial, 0);
            // The camera survived the v6 rebuild with its id, under its old source.
            let (name, source, mode): (String, String, Option<String>) = conn
                .query_row("SELECT name, source, recording_mode FROM cameras WHERE id = 1", [], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .unwrap();
            assert_eq!((name.as_str(), source.as_str(), mode), ("Porch", "config", None));
        }
    }

    #[test]
    fn upgraded_and_fresh_schemas_have_the_same_tables_and_columns() {
        let mut fresh = Connection::open_in_memory().unwrap();
        upgrade(&mut fresh, LATEST_VERSION).unwrap();
        let mut old = Connection::open_in_memory().unwrap();
        upgrade(&mut old, 1).unwrap();
        upgrade(&mut old, LATEST_VERSION).unwrap();
        let names = |c: &Connection| schema_of(c).into_iter().map(|(n, _)| n).collect::<Vec<_>>();
        assert_eq!(names(&fresh), names(&old));
        for table in [
            "cameras",
            "segments",
            "users",
            "sessions",
            "audit",
            "garbage",
            "meta",
            "events",
            "devices",
            "mqtt_users",
            "pairing_requests",
            "pairing_nonces",
            "pairing_failures",
            "cloud_queue",
            "recovery_codes",
            "camera_shares",
            "setup_tokens",
        ] {
            assert_eq!(columns(&fresh, table), columns(&old, table), "table {table}");
        }
    }

    #[test]
    fn v6_rebuilds_cameras_with_foreign_keys_on_and_keeps_them_on() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("PRAGMA foreign_keys = ON").unwrap();
        upgrade(&mut conn, 5).unwrap();
        conn.execute_batch(
            "INSERT INTO devices (id, kind, password_hash, paired_ms) VALUES ('cam-1', 'camera', x'00', 1);
             INSERT INTO cameras (name, source, url, created_ms, device_id, motion)
                 VALUES ('Porch', 'paired', 'rtsp://h/a', 1, 'cam-1', '{\"sensitivity\":7}');
             INSERT INTO segments (camera_id, path, start_ms, end_ms, bytes) VALUES (1, 'recordings/1/a.mp4', 0, 10, 5);
             INSERT INTO events (camera_id, start_ms) VALUES (1, 5);",
        )
        .unwrap();
        upgrade(&mut conn, LATEST_VERSION).unwrap();
        let fk: i64 = conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0)).unwrap();
        assert_eq!(fk, 1, "foreign keys are back on after the upgrade");
        let (motion, device): (String, String) =
            conn.query_row("SELECT motion, device_id FROM cameras WHERE id = 1", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
        assert_eq!((motion.as_str(), device.as_str()), ("{\"sensitivity\":7}", "cam-1"));
        assert!(
            conn.execute("INSERT INTO segments (camera_id, path, start_ms, end_ms, bytes) VALUES (9, 'x', 0, 1, 1)", []).is_err()
        );
        conn.execute("INSERT INTO cameras (name, source, url, created_ms) VALUES ('Yard', 'added', 'rtsp://h/y', 2)", [])
            .unwrap();
        let dup =
            conn.execute("INSERT INTO cameras (name, source, url, created_ms) VALUES ('Yard', 'added', 'rtsp://h/z', 2)", []);
        assert!(dup.is_err(), "names are unique among cameras not removed");
        conn.execute("UPDATE cameras SET removed_ms = 3 WHERE name = 'Yard'", []).unwrap();
        conn.execute("INSERT INTO cameras (name, source, url, created_ms) VALUES ('Yard', 'added', 'rtsp://h/z', 4)", [])
            .unwrap();
        let bad = conn.execute("INSERT INTO cameras (name, source, url, created_ms) VALUES ('X', 'cloud', 'rtsp://h/x', 4)", []);
        assert!(bad.is_err(), "source is still checked");
    }

    #[test]
    fn a_newer_database_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(&format!("PRAGMA user_version = {}", LATEST_VERSION + 1)).unwrap();
        let e = upgrade(&mut conn, LATEST_VERSION).unwrap_err();
        assert!(e.to_string().contains("newer"));
    }

    #[test]
    fn a_failing_step_leaves_the_previous_version() {
        let mut conn = Connection::open_in_memory().unwrap();
        upgrade(&mut conn, 1).unwrap();
        // Make step 2 fail: the table it creates exists already.
        conn.execute_batch("CREATE TABLE audit (x INTEGER)").unwrap();
        assert!(upgrade(&mut conn, LATEST_VERSION).is_err());
        assert_eq!(version(&conn).unwrap(), 1);
        assert!(!columns(&conn, "segments").contains(&"partial".to_string()));
    }
}
