//! Camera rows (configured and paired) and each camera's motion settings.

use rusqlite::{OptionalExtension, params};

use super::{Db, db_err};
use crate::error::{Error, Result};

impl Db {
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
            .query_row(
                "SELECT id, name, source, url, substream_url FROM cameras WHERE name = ?1",
                params![name],
                CameraRow::from_row,
            )
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
    pub(super) fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(CameraRow { id: r.get(0)?, name: r.get(1)?, source: r.get(2)?, url: r.get(3)?, substream_url: r.get(4)? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LATEST_VERSION;

    #[test]
    fn config_cameras_keep_their_ids() {
        let mut db = Db::open_in_memory_at(LATEST_VERSION);
        let a = db.sync_config_cameras(&[("A".into(), "rtsp://h/a".into(), String::new())], 0).unwrap();
        let b = db
            .sync_config_cameras(
                &[("B".into(), "rtsp://h/b".into(), String::new()), ("A".into(), "rtsp://h/a2".into(), String::new())],
                0,
            )
            .unwrap();
        assert_eq!(a[0].id, b[1].id);
        assert_eq!(b[1].url, "rtsp://h/a2");
    }
}
