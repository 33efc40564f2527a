//! Camera rows (configured, paired and added from the API), each camera's motion
//! settings and recording-mode override, renaming and removal.
//!
//! A removed camera keeps its row, marked with `removed_ms`: its recordings and events
//! keep their camera and retention removes them as usual. (Deleting rows of cameras with
//! nothing recorded would race the recorder, which indexes the segment a stopping camera
//! closes a moment later.) Names are unique among the cameras not removed, so a removed
//! camera's name can be given to a new one at once.

use std::collections::HashMap;

use rusqlite::{OptionalExtension, params};

use super::{Db, db_err};
use crate::config::RecordingMode;
use crate::error::{Error, ErrorKind, Result};

/// The columns [`CameraRow::from_row`] reads, in order.
pub(super) const CAMERA_COLS: &str = "id, name, source, url, substream_url, recording_mode";

impl Db {
    /// Makes sure each configured camera has a row (matched by name) with its current
    /// URLs, and returns them all in config order. New rows are created at `now_ms`.
    pub fn sync_config_cameras(&mut self, cams: &[(String, String, String)], now_ms: i64) -> Result<Vec<CameraRow>> {
        let mut out = Vec::new();
        for (name, url, sub) in cams {
            self.conn
                .execute(
                    "INSERT INTO cameras (name, source, url, substream_url, created_ms) VALUES (?1, 'config', ?2, ?3, ?4)
                     ON CONFLICT(name) WHERE removed_ms IS NULL
                     DO UPDATE SET url = excluded.url, substream_url = excluded.substream_url",
                    params![name, url, sub, now_ms],
                )
                .map_err(db_err("saving camera"))?;
            out.push(self.camera_by_name(name)?.ok_or_else(|| Error::internal("camera row vanished"))?);
        }
        Ok(out)
    }

    /// The camera (not removed) of this name.
    pub fn camera_by_name(&mut self, name: &str) -> Result<Option<CameraRow>> {
        self.conn
            .query_row(
                &format!("SELECT {CAMERA_COLS} FROM cameras WHERE name = ?1 AND removed_ms IS NULL"),
                params![name],
                CameraRow::from_row,
            )
            .optional()
            .map_err(db_err("reading camera"))
    }

    /// Every camera row, removed ones included (their recordings still refer to them).
    pub fn cameras(&mut self) -> Result<Vec<CameraRow>> {
        self.camera_list("SELECT {COLS} FROM cameras ORDER BY id", "listing cameras")
    }

    /// The cameras added from the API and not removed, to start at boot.
    pub fn added_cameras(&mut self) -> Result<Vec<CameraRow>> {
        self.camera_list(
            "SELECT {COLS} FROM cameras WHERE source = 'added' AND removed_ms IS NULL ORDER BY id",
            "listing added cameras",
        )
    }

    fn camera_list(&mut self, sql: &str, what: &str) -> Result<Vec<CameraRow>> {
        let sql = sql.replace("{COLS}", CAMERA_COLS);
        let mut st = self.conn.prepare_cached(&sql).map_err(db_err(what))?;
        let rows = st.query_map([], CameraRow::from_row).map_err(db_err(what))?;
        rows.collect::<std::result::Result<_, _>>().map_err(db_err(what))
    }

    /// A camera that has not been removed.
    pub fn live_camera(&mut self, id: i64) -> Result<Option<CameraRow>> {
        self.conn
            .query_row(
                &format!("SELECT {CAMERA_COLS} FROM cameras WHERE id = ?1 AND removed_ms IS NULL"),
                params![id],
                CameraRow::from_row,
            )
            .optional()
            .map_err(db_err("reading camera"))
    }

    /// A camera added from the API (`source = 'added'`). The name must be free.
    pub fn add_camera(&mut self, name: &str, url: &str, substream_url: &str, now_ms: i64) -> Result<CameraRow> {
        if self.camera_by_name(name)?.is_some() {
            return Err(name_taken(name));
        }
        self.conn
            .execute(
                "INSERT INTO cameras (name, source, url, substream_url, created_ms) VALUES (?1, 'added', ?2, ?3, ?4)",
                params![name, url, substream_url, now_ms],
            )
            .map_err(db_err("adding camera"))?;
        let id = self.conn.last_insert_rowid();
        self.live_camera(id)?.ok_or_else(|| Error::internal("camera row vanished"))
    }

    pub fn rename_camera(&mut self, id: i64, name: &str) -> Result<CameraRow> {
        if self.camera_by_name(name)?.is_some_and(|c| c.id != id) {
            return Err(name_taken(name));
        }
        let n = self
            .conn
            .execute("UPDATE cameras SET name = ?2 WHERE id = ?1 AND removed_ms IS NULL", params![id, name])
            .map_err(db_err("renaming camera"))?;
        if n == 0 {
            return Err(Error::not_found(format!("no camera {id}")));
        }
        self.live_camera(id)?.ok_or_else(|| Error::internal("camera row vanished"))
    }

    /// The camera's own recording mode (`None`: the config's `recording.mode`).
    pub fn set_camera_recording_mode(&mut self, id: i64, mode: Option<RecordingMode>) -> Result<CameraRow> {
        let n = self
            .conn
            .execute(
                "UPDATE cameras SET recording_mode = ?2 WHERE id = ?1 AND removed_ms IS NULL",
                params![id, mode.map(mode_str)],
            )
            .map_err(db_err("saving recording mode"))?;
        if n == 0 {
            return Err(Error::not_found(format!("no camera {id}")));
        }
        self.live_camera(id)?.ok_or_else(|| Error::internal("camera row vanished"))
    }

    /// Marks a camera removed at `now_ms`; its row stays for its recordings' sake.
    pub fn remove_camera(&mut self, id: i64, now_ms: i64) -> Result<()> {
        let n = self
            .conn
            .execute("UPDATE cameras SET removed_ms = ?2 WHERE id = ?1 AND removed_ms IS NULL", params![id, now_ms])
            .map_err(db_err("removing camera"))?;
        if n == 0 {
            return Err(Error::not_found(format!("no camera {id}")));
        }
        Ok(())
    }

    /// The cameras not removed, by id.
    pub fn live_cameras(&mut self) -> Result<Vec<CameraRow>> {
        self.camera_list("SELECT {COLS} FROM cameras WHERE removed_ms IS NULL ORDER BY id", "listing cameras")
    }

    /// Bytes on disk per camera: its segments and its event clips.
    pub fn camera_storage_bytes(&mut self) -> Result<HashMap<i64, u64>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT camera_id, SUM(b) FROM (
                     SELECT camera_id, bytes AS b FROM segments
                     UNION ALL SELECT camera_id, COALESCE(clip_bytes, 0) FROM events
                 ) GROUP BY camera_id",
            )
            .map_err(db_err("summing storage per camera"))?;
        let rows = st
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?.max(0) as u64)))
            .map_err(db_err("summing storage per camera"))?;
        rows.collect::<std::result::Result<_, _>>().map_err(db_err("summing storage per camera"))
    }

    /// The camera's detector settings as JSON (`{}` = defaults).
    pub fn camera_motion(&mut self, camera_id: i64) -> Result<Option<String>> {
        self.conn
            .query_row("SELECT motion FROM cameras WHERE id = ?1 AND removed_ms IS NULL", params![camera_id], |r| r.get(0))
            .optional()
            .map_err(db_err("reading motion settings"))
    }

    pub fn set_camera_motion(&mut self, camera_id: i64, json: &str) -> Result<()> {
        let n = self
            .conn
            .execute("UPDATE cameras SET motion = ?2 WHERE id = ?1 AND removed_ms IS NULL", params![camera_id, json])
            .map_err(db_err("saving motion settings"))?;
        if n == 0 {
            return Err(Error::not_found(format!("no camera {camera_id}")));
        }
        Ok(())
    }
}

fn name_taken(name: &str) -> Error {
    Error::new(ErrorKind::Conflict, format!("name: a camera named {name:?} exists already"))
}

fn mode_str(m: RecordingMode) -> &'static str {
    match m {
        RecordingMode::Continuous => "continuous",
        RecordingMode::Events => "events",
        RecordingMode::Off => "off",
    }
}

fn mode_of(s: &str) -> Option<RecordingMode> {
    match s {
        "continuous" => Some(RecordingMode::Continuous),
        "events" => Some(RecordingMode::Events),
        "off" => Some(RecordingMode::Off),
        _ => None,
    }
}

#[derive(Debug, Clone)]
pub struct CameraRow {
    pub id: i64,
    pub name: String,
    /// "config" | "paired" | "added"
    pub source: String,
    /// May hold credentials: never shown as is (`config::redact_url`, or stripped).
    pub url: String,
    pub substream_url: String,
    /// The camera's own recording mode (`None`: the config's).
    pub recording_mode: Option<RecordingMode>,
}

impl CameraRow {
    pub(super) fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        let mode: Option<String> = r.get(5)?;
        Ok(CameraRow {
            id: r.get(0)?,
            name: r.get(1)?,
            source: r.get(2)?,
            url: r.get(3)?,
            substream_url: r.get(4)?,
            recording_mode: mode.as_deref().and_then(mode_of),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{LATEST_VERSION, Segment};

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

    #[test]
    fn added_cameras_are_renamed_retuned_and_removed() {
        let mut db = Db::open_in_memory_at(LATEST_VERSION);
        db.sync_config_cameras(&[("Porch".into(), "rtsp://h/a".into(), String::new())], 0).unwrap();
        let e = db.add_camera("Porch", "rtsp://h/b", "", 1).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Conflict);
        assert!(e.message().contains("Porch"), "{e}");
        let yard = db.add_camera("Yard", "rtsp://u:secret@h/y", "", 1).unwrap();
        assert_eq!((yard.source.as_str(), yard.recording_mode), ("added", None));
        assert_eq!(db.added_cameras().unwrap().len(), 1);
        assert_eq!(db.rename_camera(yard.id, "Porch").unwrap_err().kind(), ErrorKind::Conflict);
        assert_eq!(db.rename_camera(yard.id, "Garden").unwrap().name, "Garden");
        let row = db.set_camera_recording_mode(yard.id, Some(RecordingMode::Continuous)).unwrap();
        assert_eq!(row.recording_mode, Some(RecordingMode::Continuous));
        assert_eq!(db.set_camera_recording_mode(yard.id, None).unwrap().recording_mode, None);

        db.remove_camera(yard.id, 5).unwrap();
        assert_eq!(db.remove_camera(yard.id, 5).unwrap_err().kind(), ErrorKind::NotFound);
        assert!(db.live_cameras().unwrap().iter().all(|c| c.id != yard.id));

        // The row stays, marked, for its recordings, and its name is free again.
        let side = db.add_camera("Side", "rtsp://h/s", "", 6).unwrap();
        db.insert_segment(&Segment {
            camera_id: side.id,
            path: "recordings/x/1.mp4".into(),
            start_ms: 0,
            end_ms: 10,
            bytes: 700,
            partial: false,
        })
        .unwrap();
        assert_eq!(db.camera_storage_bytes().unwrap().get(&side.id), Some(&700));
        db.remove_camera(side.id, 7).unwrap();
        assert!(db.cameras().unwrap().iter().any(|c| c.id == side.id), "kept for its recordings");
        assert!(db.live_camera(side.id).unwrap().is_none());
        assert!(db.added_cameras().unwrap().is_empty());
        assert_eq!(db.rename_camera(side.id, "X").unwrap_err().kind(), ErrorKind::NotFound);
        let again = db.add_camera("Side", "rtsp://h/s2", "", 8).unwrap();
        assert_ne!(again.id, side.id);
    }
}
