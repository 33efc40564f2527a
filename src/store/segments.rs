//! Segment rows, the garbage list, and retention: choosing the oldest media (segments
//! and finished events' clips) and moving it to the garbage list in one step.

use rusqlite::{OptionalExtension, params};

use super::{Db, db_err};
use crate::error::Result;

impl Db {
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

    pub fn collect_old_media_with(
        &mut self,
        before_ms: i64,
        free_bytes: u64,
        cap: usize,
        take_queued: bool,
    ) -> Result<Vec<String>> {
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
            .query_map(params![cap as i64, take_queued], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(3)?, r.get::<_, Option<i64>>(4)?.unwrap_or(0)))
            })
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
                    .query_row("SELECT clip_path, thumb_path FROM events WHERE id = ?1", params![id], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                    .map_err(db_err("reading clip"))?;
                self.conn
                    .execute(
                        "UPDATE events SET clip_path = NULL, clip_bytes = NULL, thumb_path = NULL WHERE id = ?1",
                        params![id],
                    )
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

/// A time range query, for segments and events alike.
#[derive(Debug, Clone, Default)]
pub struct SegmentQuery {
    pub camera_id: Option<i64>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub limit: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{FinishedEvent, LATEST_VERSION};

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
            db.insert_segment(&Segment {
                camera_id: cam,
                path: format!("s{start}"),
                start_ms: start,
                end_ms: start + 10,
                bytes: 100,
                partial: false,
            })
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
}
