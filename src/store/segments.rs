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

    /// One page of recordings, oldest first: those after `after` (the start and id of the
    /// previous page's last row), at most `q.limit`.
    pub fn segments_page(&mut self, q: &SegmentQuery, after: Option<(i64, i64)>) -> Result<Vec<SegmentRow>> {
        let (after_start, after_id) = after.unzip();
        let mut st = self
            .conn
            .prepare_cached(&format!(
                "SELECT id, camera_id, path, start_ms, end_ms, bytes, partial FROM segments
                 WHERE (?1 IS NULL OR camera_id = ?1) AND (?2 IS NULL OR end_ms >= ?2) AND (?3 IS NULL OR start_ms <= ?3)
                   AND (?4 IS NULL OR start_ms > ?4 OR (start_ms = ?4 AND id > ?5)) AND {}
                 ORDER BY start_ms, id LIMIT ?6",
                only_clause(7)
            ))
            .map_err(db_err("listing segments"))?;
        let rows = st
            .query_map(
                params![q.camera_id, q.since_ms, q.until_ms, after_start, after_id, q.limit.unwrap_or(i64::MAX), q.only_json()],
                SegmentRow::from_row,
            )
            .map_err(db_err("listing segments"))?;
        rows.collect::<std::result::Result<_, _>>().map_err(db_err("listing segments"))
    }

    /// Recorded time as contiguous spans per camera (by camera, then time): segments
    /// closer than `max_gap_ms` are one span. At most `q.limit` segments are read.
    pub fn recorded_spans(&mut self, q: &SegmentQuery, max_gap_ms: i64) -> Result<Vec<Span>> {
        let mut st = self
            .conn
            .prepare_cached(&format!(
                "SELECT camera_id, start_ms, end_ms FROM segments
                 WHERE (?1 IS NULL OR camera_id = ?1) AND (?2 IS NULL OR end_ms >= ?2) AND (?3 IS NULL OR start_ms <= ?3)
                   AND {}
                 ORDER BY camera_id, start_ms LIMIT ?4",
                only_clause(5)
            ))
            .map_err(db_err("listing recorded spans"))?;
        let rows = st
            .query_map(params![q.camera_id, q.since_ms, q.until_ms, q.limit.unwrap_or(i64::MAX), q.only_json()], |r| {
                Ok(Span { camera_id: r.get(0)?, start_ms: r.get(1)?, end_ms: r.get(2)? })
            })
            .map_err(db_err("listing recorded spans"))?;
        let segs: Vec<Span> = rows.collect::<std::result::Result<_, _>>().map_err(db_err("listing recorded spans"))?;
        Ok(merge_spans(segs, max_gap_ms))
    }

    /// Bytes of media per camera, from the rows: segments and finished events' clips.
    /// Every camera with a row or media, by id.
    pub fn media_bytes_by_camera(&mut self) -> Result<Vec<CameraBytes>> {
        let mut st = self
            .conn
            .prepare_cached(
                "WITH ids AS (SELECT id AS camera_id FROM cameras UNION SELECT camera_id FROM segments UNION SELECT camera_id FROM events)
                 SELECT ids.camera_id, c.name,
                   (SELECT COALESCE(SUM(bytes), 0) FROM segments s WHERE s.camera_id = ids.camera_id),
                   (SELECT COALESCE(SUM(clip_bytes), 0) FROM events e WHERE e.camera_id = ids.camera_id)
                 FROM ids LEFT JOIN cameras c ON c.id = ids.camera_id ORDER BY ids.camera_id",
            )
            .map_err(db_err("summing media per camera"))?;
        let rows = st
            .query_map([], |r| {
                let id: i64 = r.get(0)?;
                Ok(CameraBytes {
                    camera_id: id,
                    name: r.get::<_, Option<String>>(1)?.unwrap_or_else(|| format!("camera {id}")),
                    recordings_bytes: r.get::<_, i64>(2)? as u64,
                    clips_bytes: r.get::<_, i64>(3)? as u64,
                })
            })
            .map_err(db_err("summing media per camera"))?;
        rows.collect::<std::result::Result<_, _>>().map_err(db_err("summing media per camera"))
    }

    /// What was written from `since_ms` on: the bytes of segments and clips that ended
    /// then or later, and when the oldest media still listed began (None: there is none).
    pub fn media_written_since(&mut self, since_ms: i64) -> Result<Written> {
        self.conn
            .query_row(
                "SELECT
                   (SELECT COALESCE(SUM(bytes), 0) FROM segments WHERE end_ms >= ?1)
                     + (SELECT COALESCE(SUM(clip_bytes), 0) FROM events WHERE clip_bytes IS NOT NULL AND end_ms >= ?1),
                   (SELECT MIN(t) FROM (SELECT MIN(start_ms) AS t FROM segments
                      UNION ALL SELECT MIN(COALESCE(clip_start_ms, start_ms)) FROM events WHERE clip_bytes IS NOT NULL))",
                params![since_ms],
                |r| Ok(Written { bytes: r.get::<_, i64>(0)? as u64, oldest_start_ms: r.get(1)? }),
            )
            .map_err(db_err("summing recent writes"))
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

/// Contiguous recorded time of one camera.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub camera_id: i64,
    pub start_ms: i64,
    pub end_ms: i64,
}

/// Joins spans sorted by camera and start whose gap is under `max_gap_ms` (overlaps too).
pub fn merge_spans(sorted: Vec<Span>, max_gap_ms: i64) -> Vec<Span> {
    let mut out: Vec<Span> = Vec::new();
    for s in sorted {
        match out.last_mut() {
            Some(last) if last.camera_id == s.camera_id && s.start_ms - last.end_ms < max_gap_ms => {
                last.end_ms = last.end_ms.max(s.end_ms);
            }
            _ => out.push(s),
        }
    }
    out
}

/// Media bytes of one camera, from the rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CameraBytes {
    pub camera_id: i64,
    pub name: String,
    pub recordings_bytes: u64,
    pub clips_bytes: u64,
}

/// Bytes written recently, and since when anything has been kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub bytes: u64,
    pub oldest_start_ms: Option<i64>,
}

/// A time range query, for segments and events alike.
#[derive(Debug, Clone, Default)]
pub struct SegmentQuery {
    pub camera_id: Option<i64>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub limit: Option<i64>,
    /// Only these cameras (a member's shares); None: every camera.
    pub only: Option<Vec<i64>>,
}

impl SegmentQuery {
    /// `only` as the JSON array the SQL reads with `json_each`.
    pub(super) fn only_json(&self) -> Option<String> {
        self.only.as_ref().map(|ids| serde_json::to_string(ids).unwrap_or_else(|_| "[]".into()))
    }
}

/// The clause that keeps rows of `only`'s cameras (parameter `?N` holds `only_json`).
pub(super) fn only_clause(n: usize) -> String {
    format!("(?{n} IS NULL OR camera_id IN (SELECT value FROM json_each(?{n})))")
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

    fn seg(db: &mut Db, cam: i64, start: i64, end: i64, bytes: u64) -> i64 {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        db.insert_segment(&Segment {
            camera_id: cam,
            path: format!("r/{cam}/{n}"),
            start_ms: start,
            end_ms: end,
            bytes,
            partial: false,
        })
        .unwrap()
    }

    #[test]
    fn pages_list_every_segment_once_oldest_first_and_events_newest_first() {
        let mut db = Db::open_in_memory_at(LATEST_VERSION);
        let cam = db.sync_config_cameras(&[("Porch".into(), "rtsp://h/a".into(), String::new())], 0).unwrap()[0].id;
        // Ties on the start time are broken by id, so none is lost at a page boundary.
        let mut ids: Vec<i64> = (0..7).map(|i| seg(&mut db, cam, (i / 2) * 1000, (i / 2) * 1000 + 900, 1)).collect();
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = db.segments_page(&SegmentQuery { limit: Some(3), ..Default::default() }, after).unwrap();
            seen.extend(page.iter().map(|r| r.id));
            match page.last() {
                Some(r) if page.len() == 3 => after = Some((r.segment.start_ms, r.id)),
                _ => break,
            }
        }
        assert_eq!(seen, ids);
        let evs: Vec<i64> = (0..5).map(|i| db.insert_event(cam, 500 * (i / 2)).unwrap()).collect();
        let mut seen = Vec::new();
        let mut before = None;
        loop {
            let page = db.events_page(&SegmentQuery { limit: Some(2), ..Default::default() }, before).unwrap();
            seen.extend(page.iter().map(|e| e.id));
            match page.last() {
                Some(e) if page.len() == 2 => before = Some((e.start_ms, e.id)),
                _ => break,
            }
        }
        ids = evs.into_iter().rev().collect();
        assert_eq!(seen, ids, "newest first");
    }

    #[test]
    fn spans_join_segments_closer_than_the_gap_per_camera() {
        let mut db = Db::open_in_memory_at(LATEST_VERSION);
        let cams = db
            .sync_config_cameras(
                &[("A".into(), "rtsp://h/a".into(), String::new()), ("B".into(), "rtsp://h/b".into(), String::new())],
                0,
            )
            .unwrap();
        let (a, b) = (cams[0].id, cams[1].id);
        seg(&mut db, a, 0, 10_000, 1);
        seg(&mut db, a, 11_999, 20_000, 1); // gap 1.999 s: joined
        seg(&mut db, a, 22_000, 30_000, 1); // gap 2 s: a new span
        seg(&mut db, b, 5_000, 9_000, 1);
        let spans = db.recorded_spans(&SegmentQuery::default(), 2_000).unwrap();
        let want = [(a, 0, 20_000), (a, 22_000, 30_000), (b, 5_000, 9_000)].map(|(camera_id, start_ms, end_ms)| Span {
            camera_id,
            start_ms,
            end_ms,
        });
        assert_eq!(spans, want);
        let only_b = db.recorded_spans(&SegmentQuery { camera_id: Some(b), ..Default::default() }, 2_000).unwrap();
        assert_eq!(only_b, want[2..]);
    }

    #[test]
    fn bytes_per_camera_and_recent_writes_come_from_the_rows() {
        let mut db = Db::open_in_memory_at(LATEST_VERSION);
        let cams = db
            .sync_config_cameras(
                &[("A".into(), "rtsp://h/a".into(), String::new()), ("B".into(), "rtsp://h/b".into(), String::new())],
                0,
            )
            .unwrap();
        let (a, b) = (cams[0].id, cams[1].id);
        assert_eq!(db.media_written_since(0).unwrap(), Written { bytes: 0, oldest_start_ms: None });
        seg(&mut db, a, 1_000, 2_000, 100);
        seg(&mut db, a, 5_000, 6_000, 50);
        let e = db.insert_event(b, 3_000).unwrap();
        db.set_event_clip_start(e, 2_500).unwrap();
        db.finish_event(&FinishedEvent {
            id: e,
            end_ms: 4_000,
            clip_bytes: Some(30),
            clip_path: Some("c".into()),
            zones_json: "[]".into(),
            ..Default::default()
        })
        .unwrap();
        db.insert_event(b, 7_000).unwrap(); // open: no clip yet
        let by = db.media_bytes_by_camera().unwrap();
        assert_eq!(
            by,
            [
                CameraBytes { camera_id: a, name: "A".into(), recordings_bytes: 150, clips_bytes: 0 },
                CameraBytes { camera_id: b, name: "B".into(), recordings_bytes: 0, clips_bytes: 30 }
            ]
        );
        assert_eq!(db.media_written_since(0).unwrap(), Written { bytes: 180, oldest_start_ms: Some(1_000) });
        assert_eq!(db.media_written_since(3_000).unwrap().bytes, 80, "what ended from 3 s on");
    }
}
