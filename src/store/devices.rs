//! Rows of paired devices, broker users and pairing lock-outs. Pending pairing requests
//! live in the hub's memory (`devices::pairing`), never here.
//!
//! Secrets never arrive here in the clear: callers hand in SHA-256 digests of the
//! random passwords they issued (high-entropy secrets need no slow hash).

use rusqlite::{OptionalExtension, params};

use super::{CameraRow, Db, db_err};
use crate::error::{Error, ErrorKind, Result};

/// A device the owner accepted, as it described itself when it asked to pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDevice {
    pub id: String,
    pub kind: String,
    pub model: String,
    pub firmware: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeviceRow {
    pub id: String,
    pub kind: String,
    pub model: String,
    pub firmware: String,
    pub paired_ms: i64,
    pub unpaired_ms: Option<i64>,
    pub last_seen_ms: Option<i64>,
    pub availability: String,
    pub connections: i64,
    pub failed_connections: i64,
    pub camera_id: Option<i64>,
}

impl DeviceRow {
    fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(DeviceRow {
            id: r.get(0)?,
            kind: r.get(1)?,
            model: r.get(2)?,
            firmware: r.get(3)?,
            paired_ms: r.get(4)?,
            unpaired_ms: r.get(5)?,
            last_seen_ms: r.get(6)?,
            availability: r.get(7)?,
            connections: r.get(8)?,
            failed_connections: r.get(9)?,
            camera_id: r.get(10)?,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct MqttUserRow {
    pub name: String,
    pub password_hash: Vec<u8>,
    pub read_only: bool,
}

/// What a wrong setup code did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WrongCode {
    /// This many wrong codes in a row so far.
    Counted(i64),
    /// The limit was reached: the id is locked until then and its request is gone.
    Locked { until_ms: i64 },
}

const DEVICE_COLUMNS: &str = "d.id, d.kind, d.model, d.firmware, d.paired_ms, d.unpaired_ms, d.last_seen_ms, d.availability,
     d.connections, d.failed_connections, c.id";

impl Db {
    // ---- pairing ----

    /// Until when `device_id` is locked out, if it is.
    pub fn pairing_lock(&mut self, device_id: &str, now_ms: i64) -> Result<Option<i64>> {
        let until: Option<Option<i64>> = self
            .conn
            .query_row("SELECT locked_until_ms FROM pairing_failures WHERE device_id = ?1", params![device_id], |r| r.get(0))
            .optional()
            .map_err(db_err("reading pairing lock"))?;
        Ok(until.flatten().filter(|&u| u > now_ms))
    }

    /// Counts a wrong setup code; the `max_wrong`-th in a row locks the id until
    /// `now_ms + lockout_ms` (the limits are the caller's policy).
    pub fn wrong_setup_code(&mut self, device_id: &str, now_ms: i64, max_wrong: i64, lockout_ms: i64) -> Result<WrongCode> {
        self.conn
            .execute(
                "INSERT INTO pairing_failures (device_id, failures) VALUES (?1, 1)
                 ON CONFLICT(device_id) DO UPDATE SET failures = failures + 1",
                params![device_id],
            )
            .map_err(db_err("counting wrong code"))?;
        let failures: i64 = self
            .conn
            .query_row("SELECT failures FROM pairing_failures WHERE device_id = ?1", params![device_id], |r| r.get(0))
            .map_err(db_err("counting wrong code"))?;
        if failures < max_wrong {
            return Ok(WrongCode::Counted(failures));
        }
        let until = now_ms + lockout_ms;
        self.conn
            .execute(
                "UPDATE pairing_failures SET failures = 0, locked_until_ms = ?2 WHERE device_id = ?1",
                params![device_id, until],
            )
            .map_err(db_err("locking device id"))?;
        Ok(WrongCode::Locked { until_ms: until })
    }

    /// The owner accepted `device`: it is paired with this password digest and its
    /// wrong-code count is forgotten. Pairing again after an unpairing reuses the row (its
    /// counters stay); a device paired now is refused (Conflict), so two answers for one id
    /// never replace each other's credentials.
    pub fn complete_pairing(&mut self, device: &NewDevice, password_hash: &[u8], now_ms: i64) -> Result<()> {
        if self.device_password_hash(&device.id)?.is_some() {
            return Err(Error::new(ErrorKind::Conflict, format!("{} is paired already; unpair it first", device.id)));
        }
        self.conn
            .execute(
                "INSERT INTO devices (id, kind, model, firmware, password_hash, paired_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT(id) DO UPDATE SET kind = excluded.kind, model = excluded.model, firmware = excluded.firmware,
                    password_hash = excluded.password_hash, paired_ms = excluded.paired_ms, unpaired_ms = NULL,
                    availability = 'unknown'",
                params![device.id, device.kind, device.model, device.firmware, password_hash, now_ms],
            )
            .and_then(|_| self.conn.execute("DELETE FROM pairing_failures WHERE device_id = ?1", params![device.id]))
            .map_err(db_err("saving paired device"))?;
        Ok(())
    }

    // ---- devices ----

    /// The password digest of a paired device; None when unknown or unpaired.
    pub fn device_password_hash(&mut self, device_id: &str) -> Result<Option<Vec<u8>>> {
        let h: Option<Option<Vec<u8>>> = self
            .conn
            .query_row("SELECT password_hash FROM devices WHERE id = ?1", params![device_id], |r| r.get(0))
            .optional()
            .map_err(db_err("reading device"))?;
        Ok(h.flatten())
    }

    /// Counts a connection attempt of a known device.
    pub fn count_device_connection(&mut self, device_id: &str, ok: bool, now_ms: i64) -> Result<()> {
        let r = if ok {
            self.conn.execute(
                "UPDATE devices SET connections = connections + 1, last_seen_ms = ?2 WHERE id = ?1",
                params![device_id, now_ms],
            )
        } else {
            self.conn.execute("UPDATE devices SET failed_connections = failed_connections + 1 WHERE id = ?1", params![device_id])
        };
        r.map_err(db_err("counting connection"))?;
        Ok(())
    }

    /// A message from the device: it was seen now, and maybe told its availability.
    pub fn device_seen(&mut self, device_id: &str, now_ms: i64, online: Option<bool>) -> Result<()> {
        let avail = online.map(|o| if o { "online" } else { "offline" });
        self.conn
            .execute(
                "UPDATE devices SET last_seen_ms = ?2, availability = COALESCE(?3, availability)
                 WHERE id = ?1 AND password_hash IS NOT NULL",
                params![device_id, now_ms, avail],
            )
            .map_err(db_err("updating device"))?;
        Ok(())
    }

    pub fn devices(&mut self) -> Result<Vec<DeviceRow>> {
        let sql =
            format!("SELECT {DEVICE_COLUMNS} FROM devices d LEFT JOIN cameras c ON c.device_id = d.id ORDER BY d.paired_ms");
        let mut st = self.conn.prepare_cached(&sql).map_err(db_err("listing devices"))?;
        let rows = st.query_map([], DeviceRow::from_row).map_err(db_err("listing devices"))?;
        rows.collect::<std::result::Result<_, _>>().map_err(db_err("listing devices"))
    }

    pub fn device(&mut self, device_id: &str) -> Result<Option<DeviceRow>> {
        let sql = format!("SELECT {DEVICE_COLUMNS} FROM devices d LEFT JOIN cameras c ON c.device_id = d.id WHERE d.id = ?1");
        self.conn.query_row(&sql, params![device_id], DeviceRow::from_row).optional().map_err(db_err("reading device"))
    }

    /// The camera a device offers, if it announced one.
    pub fn device_camera(&mut self, device_id: &str) -> Result<Option<CameraRow>> {
        self.conn
            .query_row(
                &format!("SELECT {} FROM cameras WHERE device_id = ?1", super::cameras::CAMERA_COLS),
                params![device_id],
                CameraRow::from_row,
            )
            .optional()
            .map_err(db_err("reading device camera"))
    }

    /// Revokes a device's credentials. Its camera row stays (recordings keep their
    /// camera) but is no longer started. Returns the camera id, if it had one.
    pub fn unpair_device(&mut self, device_id: &str, now_ms: i64) -> Result<Option<i64>> {
        let n = self
            .conn
            .execute(
                "UPDATE devices SET password_hash = NULL, unpaired_ms = ?2, availability = 'unknown'
                 WHERE id = ?1 AND password_hash IS NOT NULL",
                params![device_id, now_ms],
            )
            .map_err(db_err("unpairing device"))?;
        if n == 0 {
            return Err(Error::not_found(format!("no paired device {device_id:?}")));
        }
        Ok(self.device_camera(device_id)?.map(|c| c.id))
    }

    /// The camera a paired device offers, created or updated from its `config`. A name
    /// another camera has already gets the device id appended.
    pub fn put_paired_camera(&mut self, device_id: &str, name: &str, url: &str, sub: &str, now_ms: i64) -> Result<CameraRow> {
        let id = match self.device_camera(device_id)?.map(|c| c.id) {
            Some(id) => {
                self.conn
                    .execute("UPDATE cameras SET url = ?2, substream_url = ?3 WHERE id = ?1", params![id, url, sub])
                    .map_err(db_err("updating device camera"))?;
                id
            }
            None => {
                let taken = self.camera_by_name(name)?.is_some();
                let name = if taken { format!("{name} ({device_id})") } else { name.to_string() };
                self.conn
                    .execute(
                        "INSERT INTO cameras (name, source, url, substream_url, created_ms, device_id)
                         VALUES (?1, 'paired', ?2, ?3, ?4, ?5)",
                        params![name, url, sub, now_ms, device_id],
                    )
                    .map_err(db_err("saving device camera"))?;
                self.conn.last_insert_rowid()
            }
        };
        self.camera(id)?.ok_or_else(|| Error::internal("camera row vanished"))
    }

    pub fn camera(&mut self, id: i64) -> Result<Option<CameraRow>> {
        self.conn
            .query_row(
                &format!("SELECT {} FROM cameras WHERE id = ?1", super::cameras::CAMERA_COLS),
                params![id],
                CameraRow::from_row,
            )
            .optional()
            .map_err(db_err("reading camera"))
    }

    /// Cameras of devices that are paired now.
    pub fn paired_cameras(&mut self) -> Result<Vec<CameraRow>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT c.id, c.name, c.source, c.url, c.substream_url, c.recording_mode FROM cameras c
                 JOIN devices d ON d.id = c.device_id WHERE d.password_hash IS NOT NULL ORDER BY c.id",
            )
            .map_err(db_err("listing paired cameras"))?;
        let rows = st.query_map([], CameraRow::from_row).map_err(db_err("listing paired cameras"))?;
        rows.collect::<std::result::Result<_, _>>().map_err(db_err("listing paired cameras"))
    }

    // ---- broker users ----

    pub fn add_mqtt_user(&mut self, name: &str, password_hash: &[u8], read_only: bool, now_ms: i64) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO mqtt_users (name, password_hash, read_only, created_ms) VALUES (?1, ?2, ?3, ?4)",
                params![name, password_hash, read_only, now_ms],
            )
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
                    Error::new(ErrorKind::Conflict, format!("broker user {name:?} exists already"))
                }
                e => db_err("saving broker user")(e),
            })?;
        Ok(())
    }

    pub fn mqtt_user(&mut self, name: &str) -> Result<Option<MqttUserRow>> {
        self.conn
            .query_row("SELECT name, password_hash, read_only FROM mqtt_users WHERE name = ?1", params![name], |r| {
                Ok(MqttUserRow { name: r.get(0)?, password_hash: r.get(1)?, read_only: r.get(2)? })
            })
            .optional()
            .map_err(db_err("reading broker user"))
    }

    /// A paired device's new password digest; false when the device is not paired.
    pub fn set_device_password(&mut self, device_id: &str, password_hash: &[u8]) -> Result<bool> {
        let n = self
            .conn
            .execute(
                "UPDATE devices SET password_hash = ?2 WHERE id = ?1 AND password_hash IS NOT NULL",
                params![device_id, password_hash],
            )
            .map_err(db_err("rotating a device password"))?;
        Ok(n == 1)
    }

    /// Removes every broker user; returns their names.
    pub fn delete_all_mqtt_users(&mut self) -> Result<Vec<String>> {
        let names: Vec<String> = {
            let mut st =
                self.conn.prepare("SELECT name FROM mqtt_users ORDER BY name").map_err(db_err("listing broker users"))?;
            let rows = st.query_map([], |r| r.get(0)).map_err(db_err("listing broker users"))?;
            rows.collect::<rusqlite::Result<_>>().map_err(db_err("listing broker users"))?
        };
        self.conn.execute("DELETE FROM mqtt_users", []).map_err(db_err("deleting broker users"))?;
        Ok(names)
    }

    pub fn delete_mqtt_user(&mut self, name: &str) -> Result<bool> {
        let n =
            self.conn.execute("DELETE FROM mqtt_users WHERE name = ?1", params![name]).map_err(db_err("deleting broker user"))?;
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::PairingPolicy;

    const P: PairingPolicy = PairingPolicy::SPEC;

    fn dev(id: &str) -> NewDevice {
        NewDevice { id: id.into(), kind: "camera".into(), model: "sim".into(), firmware: "1".into() }
    }

    #[test]
    fn five_wrong_codes_lock_the_id_for_fifteen_minutes_and_pairing_forgets_them() {
        let mut db = Db::open_in_memory_at(super::super::LATEST_VERSION);
        for i in 1..P.max_wrong_codes {
            assert_eq!(db.wrong_setup_code("cam-1", 10, P.max_wrong_codes, P.lockout_ms).unwrap(), WrongCode::Counted(i));
        }
        assert_eq!(db.pairing_lock("cam-1", 10).unwrap(), None, "not locked before the fifth");
        assert_eq!(
            db.wrong_setup_code("cam-1", 10, P.max_wrong_codes, P.lockout_ms).unwrap(),
            WrongCode::Locked { until_ms: 10 + P.lockout_ms }
        );
        assert_eq!(db.pairing_lock("cam-1", 10 + P.lockout_ms - 1).unwrap(), Some(10 + P.lockout_ms));
        assert_eq!(db.pairing_lock("cam-1", 10 + P.lockout_ms).unwrap(), None, "the lock ends on time");
        assert_eq!(db.pairing_lock("cam-2", 20).unwrap(), None, "other ids are not affected");
        // After the lock the count starts afresh; a pairing forgets it.
        assert_eq!(db.wrong_setup_code("cam-1", 11 + P.lockout_ms, 5, P.lockout_ms).unwrap(), WrongCode::Counted(1));
        assert_eq!(db.wrong_setup_code("cam-1", 11 + P.lockout_ms, 5, P.lockout_ms).unwrap(), WrongCode::Counted(2));
        db.complete_pairing(&dev("cam-1"), b"digest", 12 + P.lockout_ms).unwrap();
        db.unpair_device("cam-1", 13 + P.lockout_ms).unwrap();
        assert_eq!(db.wrong_setup_code("cam-1", 14 + P.lockout_ms, 5, P.lockout_ms).unwrap(), WrongCode::Counted(1));
    }

    #[test]
    fn pairing_unpairing_and_the_camera_of_a_device() {
        let mut db = Db::open_in_memory_at(super::super::LATEST_VERSION);
        db.complete_pairing(&dev("cam-1"), b"digest", 5).unwrap();
        assert_eq!(db.device_password_hash("cam-1").unwrap().as_deref(), Some(&b"digest"[..]));
        let e = db.complete_pairing(&dev("cam-1"), b"other", 6).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Conflict, "a paired device keeps its credentials");
        assert_eq!(db.device_password_hash("cam-1").unwrap().as_deref(), Some(&b"digest"[..]));
        db.sync_config_cameras(&[("Porch".into(), "rtsp://a/".into(), String::new())], 6).unwrap();
        let cam = db.put_paired_camera("cam-1", "Porch", "rtsp://b/main", "rtsp://b/sub", 7).unwrap();
        assert_eq!(cam.name, "Porch (cam-1)");
        assert_eq!(cam.source, "paired");
        let again = db.put_paired_camera("cam-1", "Other", "rtsp://c/main", "", 8).unwrap();
        assert_eq!((again.id, again.url.as_str()), (cam.id, "rtsp://c/main"));
        assert_eq!(db.paired_cameras().unwrap().len(), 1);
        db.count_device_connection("cam-1", true, 9).unwrap();
        db.count_device_connection("cam-1", false, 9).unwrap();
        db.device_seen("cam-1", 10, Some(false)).unwrap();
        let d = db.device("cam-1").unwrap().unwrap();
        assert_eq!((d.connections, d.failed_connections, d.availability.as_str()), (1, 1, "offline"));
        assert_eq!(d.camera_id, Some(cam.id));
        assert_eq!(db.unpair_device("cam-1", 11).unwrap(), Some(cam.id));
        assert_eq!(db.device_password_hash("cam-1").unwrap(), None);
        assert!(db.paired_cameras().unwrap().is_empty());
        assert_eq!(db.unpair_device("cam-1", 12).unwrap_err().kind(), ErrorKind::NotFound);
        // And it may pair again, keeping its row (and counters).
        db.complete_pairing(&dev("cam-1"), b"digest2", 14).unwrap();
        assert_eq!(db.paired_cameras().unwrap().len(), 1);
        let d = db.device("cam-1").unwrap().unwrap();
        assert_eq!((d.paired_ms, d.unpaired_ms, d.connections), (14, None, 1));
    }

    #[test]
    fn broker_users_are_unique() {
        let mut db = Db::open_in_memory_at(super::super::LATEST_VERSION);
        db.add_mqtt_user("ha", b"h", true, 1).unwrap();
        assert_eq!(db.add_mqtt_user("ha", b"h", true, 1).unwrap_err().kind(), ErrorKind::Conflict);
        assert!(db.mqtt_user("ha").unwrap().unwrap().read_only);
        assert!(db.delete_mqtt_user("ha").unwrap());
        assert!(db.mqtt_user("ha").unwrap().is_none());
    }
}

// ---- fence: hosts a device's config may name, refused configs, revocations ----

/// What the owner sees of a device's config check: why its last config was refused (None
/// once one was accepted) and the private hosts approved for it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceFence {
    pub config_refused: Option<String>,
    pub approved_hosts: Vec<String>,
}

impl Db {
    /// Hosts the owner approved for `device_id`'s config, in the order approved.
    pub fn device_hosts(&mut self, device_id: &str) -> Result<Vec<String>> {
        let mut st = self
            .conn
            .prepare_cached("SELECT host FROM device_hosts WHERE device_id = ?1 ORDER BY approved_ms, host")
            .map_err(db_err("listing device hosts"))?;
        let rows = st.query_map(params![device_id], |r| r.get(0)).map_err(db_err("listing device hosts"))?;
        rows.collect::<std::result::Result<_, _>>().map_err(db_err("listing device hosts"))
    }

    /// Approves `host` (an IP literal, checked by the caller) for `device_id`'s config.
    /// Approving it again keeps the first approval.
    pub fn approve_device_host(&mut self, device_id: &str, host: &str, now_ms: i64) -> Result<()> {
        if self.device(device_id)?.is_none() {
            return Err(Error::not_found(format!("no device {device_id:?}")));
        }
        self.conn
            .execute(
                "INSERT OR IGNORE INTO device_hosts (device_id, host, approved_ms) VALUES (?1, ?2, ?3)",
                params![device_id, host, now_ms],
            )
            .map_err(db_err("approving device host"))?;
        Ok(())
    }

    /// Withdraws an approval; false when there was none.
    pub fn remove_device_host(&mut self, device_id: &str, host: &str) -> Result<bool> {
        let n = self
            .conn
            .execute("DELETE FROM device_hosts WHERE device_id = ?1 AND host = ?2", params![device_id, host])
            .map_err(db_err("removing device host"))?;
        Ok(n > 0)
    }

    /// Why the device's last config was refused; None clears it (a config was accepted).
    pub fn set_config_refused(&mut self, device_id: &str, reason: Option<&str>) -> Result<()> {
        self.conn
            .execute("UPDATE devices SET config_refused = ?2 WHERE id = ?1", params![device_id, reason])
            .map_err(db_err("saving config refusal"))?;
        Ok(())
    }

    /// The config check of every device, by id (devices with nothing to show are left out).
    pub fn device_fences(&mut self) -> Result<std::collections::HashMap<String, DeviceFence>> {
        let mut out: std::collections::HashMap<String, DeviceFence> = std::collections::HashMap::new();
        {
            let mut st = self
                .conn
                .prepare_cached("SELECT id, config_refused FROM devices WHERE config_refused IS NOT NULL")
                .map_err(db_err("listing config refusals"))?;
            let rows = st
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                .map_err(db_err("listing config refusals"))?;
            for row in rows {
                let (id, reason) = row.map_err(db_err("listing config refusals"))?;
                out.entry(id).or_default().config_refused = Some(reason);
            }
        }
        let mut st = self
            .conn
            .prepare_cached("SELECT device_id, host FROM device_hosts ORDER BY approved_ms, host")
            .map_err(db_err("listing device hosts"))?;
        let rows =
            st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))).map_err(db_err("listing device hosts"))?;
        for row in rows {
            let (id, host) = row.map_err(db_err("listing device hosts"))?;
            out.entry(id).or_default().approved_hosts.push(host);
        }
        Ok(out)
    }

    /// Unpaired: its approvals and refusal go with its credentials (pairing again starts
    /// from nothing approved).
    pub fn forget_device_fence(&mut self, device_id: &str) -> Result<()> {
        self.conn
            .execute("DELETE FROM device_hosts WHERE device_id = ?1", params![device_id])
            .and_then(|_| self.conn.execute("UPDATE devices SET config_refused = NULL WHERE id = ?1", params![device_id]))
            .map_err(db_err("forgetting device hosts"))?;
        Ok(())
    }

    /// Records that `username`'s broker login was revoked by an admin command; the running
    /// hub polls these and drops the login's live connections. Returns the row's id.
    pub fn add_revocation(&mut self, username: &str, now_ms: i64) -> Result<i64> {
        self.conn
            .execute("INSERT INTO revocations (username, at_ms) VALUES (?1, ?2)", params![username, now_ms])
            .map_err(db_err("saving revocation"))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// The newest revocation's id (0 when none): where a starting hub begins polling.
    pub fn last_revocation_id(&mut self) -> Result<i64> {
        self.conn
            .query_row("SELECT COALESCE(MAX(id), 0) FROM revocations", [], |r| r.get(0))
            .map_err(db_err("reading revocations"))
    }

    /// Revocations after `after_id`, oldest first (at most `limit`).
    pub fn revocations_after(&mut self, after_id: i64, limit: i64) -> Result<Vec<(i64, String)>> {
        let mut st = self
            .conn
            .prepare_cached("SELECT id, username FROM revocations WHERE id > ?1 ORDER BY id LIMIT ?2")
            .map_err(db_err("reading revocations"))?;
        let rows =
            st.query_map(params![after_id, limit], |r| Ok((r.get(0)?, r.get(1)?))).map_err(db_err("reading revocations"))?;
        rows.collect::<std::result::Result<_, _>>().map_err(db_err("reading revocations"))
    }
}

#[cfg(test)]
mod fence_tests {
    use super::*;

    fn paired(db: &mut Db, id: &str) {
        db.conn
            .execute(
                "INSERT INTO devices (id, kind, model, firmware, password_hash, paired_ms) VALUES (?1, 'camera', 'm', '1', x'00', 1)",
                params![id],
            )
            .unwrap();
    }

    #[test]
    fn approved_hosts_and_refusals_are_kept_per_device() {
        let mut db = Db::open_in_memory_at(super::super::LATEST_VERSION);
        paired(&mut db, "cam-1");
        paired(&mut db, "cam-2");
        assert_eq!(db.approve_device_host("nope", "10.0.0.5", 1).unwrap_err().kind(), ErrorKind::NotFound);
        db.approve_device_host("cam-1", "10.0.0.5", 2).unwrap();
        db.approve_device_host("cam-1", "10.0.0.5", 3).unwrap();
        db.approve_device_host("cam-1", "10.0.0.6", 4).unwrap();
        assert_eq!(db.device_hosts("cam-1").unwrap(), ["10.0.0.5", "10.0.0.6"]);
        assert!(db.device_hosts("cam-2").unwrap().is_empty());
        db.set_config_refused("cam-2", Some("host 8.8.8.8 is not the device's address")).unwrap();
        let f = db.device_fences().unwrap();
        assert_eq!(f["cam-1"].approved_hosts, ["10.0.0.5", "10.0.0.6"]);
        assert_eq!(f["cam-1"].config_refused, None);
        assert_eq!(f["cam-2"].config_refused.as_deref(), Some("host 8.8.8.8 is not the device's address"));
        db.set_config_refused("cam-2", None).unwrap();
        assert!(!db.device_fences().unwrap().contains_key("cam-2"));
        assert!(db.remove_device_host("cam-1", "10.0.0.5").unwrap());
        assert!(!db.remove_device_host("cam-1", "10.0.0.5").unwrap());
        db.set_config_refused("cam-1", Some("x")).unwrap();
        db.forget_device_fence("cam-1").unwrap();
        assert!(db.device_fences().unwrap().is_empty());
    }

    #[test]
    fn revocations_are_read_after_a_mark() {
        let mut db = Db::open_in_memory_at(super::super::LATEST_VERSION);
        assert_eq!(db.last_revocation_id().unwrap(), 0);
        let a = db.add_revocation("ha", 1).unwrap();
        let start = db.last_revocation_id().unwrap();
        assert_eq!(start, a);
        let b = db.add_revocation("grafana", 2).unwrap();
        let c = db.add_revocation("ha", 3).unwrap();
        assert_eq!(db.revocations_after(start, 10).unwrap(), [(b, "grafana".to_string()), (c, "ha".to_string())]);
        assert_eq!(db.revocations_after(start, 1).unwrap().len(), 1);
        assert!(db.revocations_after(c, 10).unwrap().is_empty());
    }
}
