//! Event rows: made when motion starts, closed (with clip and thumbnail paths once
//! those files are durable) when it ends.

use rusqlite::{OptionalExtension, params};

use super::{Db, SegmentQuery, db_err};
use crate::error::Result;

impl Db {
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

    /// Events started per camera per UTC day (days since the epoch) since `since_ms`.
    pub fn events_per_day(&mut self, since_ms: i64) -> Result<Vec<(i64, i64, i64)>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT camera_id, start_ms / 86400000 AS day, COUNT(*) FROM events WHERE start_ms >= ?1
                 GROUP BY camera_id, day ORDER BY camera_id, day",
            )
            .map_err(db_err("counting events per day"))?;
        let rows = st
            .query_map(params![since_ms], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(db_err("counting events per day"))?;
        rows.collect::<std::result::Result<_, _>>().map_err(db_err("counting events per day"))
    }

    /// One page of events, newest first: those before `before` (the start and id of the
    /// previous page's last row), at most `q.limit`.
    pub fn events_page(&mut self, q: &SegmentQuery, before: Option<(i64, i64)>) -> Result<Vec<EventRow>> {
        let (before_start, before_id) = before.unzip();
        let mut st = self
            .conn
            .prepare_cached(&format!(
                "SELECT {EVENT_COLS} FROM events
                 WHERE (?1 IS NULL OR camera_id = ?1) AND (?2 IS NULL OR COALESCE(end_ms, start_ms) >= ?2) AND (?3 IS NULL OR start_ms <= ?3)
                   AND (?4 IS NULL OR start_ms < ?4 OR (start_ms = ?4 AND id < ?5)) AND {}
                 ORDER BY start_ms DESC, id DESC LIMIT ?6",
                super::segments::only_clause(7)
            ))
            .map_err(db_err("listing events"))?;
        let rows = st
            .query_map(
                params![q.camera_id, q.since_ms, q.until_ms, before_start, before_id, q.limit.unwrap_or(i64::MAX), q.only_json()],
                EventRow::from_row,
            )
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
