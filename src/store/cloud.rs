//! The cloud relay's upload queue.
//!
//! One row per object to put. Object names are chosen when a row is queued and never
//! change, so a retry after an ambiguous failure (the server stored the object but the
//! answer was lost) overwrites the same object: the bucket never holds a clip twice.
//! An index row waits for the data row it describes (`after`), so the index never points
//! at an object that is not there. Rows stay after they are done: they are how the relay
//! knows which events' clips went up already.

use rusqlite::{OptionalExtension, params};

use super::{Db, db_err};
use crate::error::{Error, Result};

/// What a row uploads. The kind decides the [`Payload`]: a clip or a piece is a file
/// ([`Payload::File`]), an index entry is lines held in the row ([`Payload::Index`]);
/// reading a row checks that they agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadKind {
    /// An event's full clip (a file under the data dir, kept after upload).
    Clip,
    /// A piece of an event in progress (a file under the data dir, deleted after upload).
    Piece,
    /// JSON lines of the index (held in the row).
    Index,
}

impl UploadKind {
    pub fn as_str(self) -> &'static str {
        match self {
            UploadKind::Clip => "clip",
            UploadKind::Piece => "piece",
            UploadKind::Index => "index",
        }
    }
    fn parse(s: &str) -> Option<UploadKind> {
        match s {
            "clip" => Some(UploadKind::Clip),
            "piece" => Some(UploadKind::Piece),
            "index" => Some(UploadKind::Index),
            _ => None,
        }
    }
}

/// A data object and the index lines that describe it, queued together.
#[derive(Debug, Clone)]
pub struct NewUpload {
    pub object: String,
    pub kind: UploadKind,
    /// File relative to the data dir.
    pub path: String,
    pub event_id: i64,
    pub bytes: u64,
    pub index_object: String,
    pub index_body: String,
}

/// What an upload sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// A clip or a piece: a file, relative to the data dir.
    File { path: String },
    /// JSON lines of the index, held in the row.
    Index { body: String },
}

impl Payload {
    /// The kind and payload of queue row `id` from its `kind`, `path` and `body` columns:
    /// a clip or a piece has a path and no body, an index entry a body and no path.
    /// Anything else is a corrupt row, refused with its id.
    fn decode(id: i64, kind: &str, path: Option<String>, body: Option<String>) -> Result<(UploadKind, Payload)> {
        let corrupt = |what: String| Error::internal(format!("database: upload queue row {id} is corrupt: {what}"));
        let kind = UploadKind::parse(kind).ok_or_else(|| corrupt(format!("unknown kind {kind:?}")))?;
        match (kind, path, body) {
            (UploadKind::Clip | UploadKind::Piece, Some(path), None) => Ok((kind, Payload::File { path })),
            (UploadKind::Index, None, Some(body)) => Ok((kind, Payload::Index { body })),
            (kind, path, body) => {
                let has = |v: &Option<String>| if v.is_some() { "a" } else { "no" };
                Err(corrupt(format!("kind {} with {} path and {} body", kind.as_str(), has(&path), has(&body))))
            }
        }
    }
}

/// A row due for upload.
#[derive(Debug, Clone, PartialEq)]
pub struct Upload {
    pub id: i64,
    pub object: String,
    pub kind: UploadKind,
    /// Always the one `kind` calls for.
    pub payload: Payload,
    pub event_id: Option<i64>,
    pub bytes: u64,
    pub attempts: i64,
}

/// Queue figures for the API and metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueStatus {
    pub pending: u64,
    pub bytes_pending: u64,
    pub failed: u64,
    pub uploaded: u64,
    pub last_success_ms: Option<i64>,
    pub last_error: Option<String>,
    /// When the oldest pending row was queued.
    pub oldest_pending_ms: Option<i64>,
}

impl Db {
    /// Queues a data object and its index object in one step.
    pub fn cloud_enqueue(&mut self, u: &NewUpload, now_ms: i64) -> Result<i64> {
        self.in_savepoint(|db| {
            let id: i64 = db
                .conn
                .query_row(
                    "INSERT INTO cloud_queue (object, kind, path, event_id, bytes, created_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
                    params![u.object, u.kind.as_str(), u.path, u.event_id, u.bytes as i64, now_ms],
                    |r| r.get(0),
                )
                .map_err(db_err("queueing an upload"))?;
            db.conn
                .execute(
                    "INSERT INTO cloud_queue (object, kind, body, after, event_id, bytes, created_ms)
                     VALUES (?1, 'index', ?2, ?3, ?4, ?5, ?6)",
                    params![u.index_object, u.index_body, id, u.event_id, u.index_body.len() as i64, now_ms],
                )
                .map_err(db_err("queueing an index entry"))?;
            Ok(id)
        })
    }

    /// The next row to upload at `now_ms`: small ones (pieces and index entries, which
    /// matter most while an event goes on) before full clips, oldest first. An index row
    /// is due only once the object it describes is up. A corrupt row (see [`Payload`])
    /// must not hold up the rows behind it: it is given up (with its index row), logged
    /// with its id, and the next row is looked at.
    pub fn cloud_next(&mut self, now_ms: i64) -> Result<Option<Upload>> {
        loop {
            let Some(due) = self.cloud_next_row(now_ms)? else { return Ok(None) };
            match due {
                Ok(upload) => return Ok(Some(upload)),
                Err((id, e)) => {
                    tracing::error!(row = id, error = %e, "upload queue: giving up a corrupt row");
                    self.cloud_give_up(id, &e.to_string())?;
                }
            }
        }
    }

    /// The first due row, decoded, or its id and why it cannot be.
    #[allow(clippy::type_complexity)]
    fn cloud_next_row(&mut self, now_ms: i64) -> Result<Option<std::result::Result<Upload, (i64, Error)>>> {
        let row: Option<(i64, String, String, Option<String>, Option<String>, Option<i64>, i64, i64)> = self
            .conn
            .query_row(
                "SELECT q.id, q.object, q.kind, q.path, q.body, q.event_id, q.bytes, q.attempts FROM cloud_queue q
                 WHERE q.done_ms IS NULL AND q.failed = 0 AND q.next_ms <= ?1
                   AND (q.after IS NULL OR EXISTS (SELECT 1 FROM cloud_queue a WHERE a.id = q.after AND a.done_ms IS NOT NULL))
                 ORDER BY q.kind = 'clip', q.id LIMIT 1",
                params![now_ms],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?)),
            )
            .optional()
            .map_err(db_err("reading the upload queue"))?;
        let Some((id, object, kind, path, body, event_id, bytes, attempts)) = row else { return Ok(None) };
        Ok(Some(match Payload::decode(id, &kind, path, body) {
            Ok((kind, payload)) => Ok(Upload { id, object, kind, payload, event_id, bytes: bytes as u64, attempts }),
            Err(e) => Err((id, e)),
        }))
    }

    /// When the earliest row waiting for a retry is due, if any.
    pub fn cloud_next_retry_ms(&mut self) -> Result<Option<i64>> {
        self.conn
            .query_row("SELECT MIN(next_ms) FROM cloud_queue WHERE done_ms IS NULL AND failed = 0", [], |r| r.get(0))
            .map_err(db_err("reading the upload queue"))
    }

    pub fn cloud_done(&mut self, id: i64, now_ms: i64) -> Result<()> {
        self.conn
            .execute("UPDATE cloud_queue SET done_ms = ?2, last_error = NULL WHERE id = ?1", params![id, now_ms])
            .map_err(db_err("marking an upload done"))?;
        Ok(())
    }

    /// Records a failed attempt; the row is due again at `next_ms`.
    pub fn cloud_retry(&mut self, id: i64, error: &str, next_ms: i64) -> Result<()> {
        self.conn
            .execute(
                "UPDATE cloud_queue SET attempts = attempts + 1, last_error = ?2, next_ms = ?3 WHERE id = ?1",
                params![id, error, next_ms],
            )
            .map_err(db_err("recording a failed upload"))?;
        Ok(())
    }

    /// Gives up on a row for good (its file is gone), and on the index rows waiting for it.
    pub fn cloud_give_up(&mut self, id: i64, error: &str) -> Result<()> {
        self.in_savepoint(|db| {
            db.conn
                .execute("UPDATE cloud_queue SET failed = 1, last_error = ?2 WHERE id = ?1 OR after = ?1", params![id, error])
                .map_err(db_err("giving up an upload"))?;
            Ok(())
        })
    }

    pub fn cloud_status(&mut self) -> Result<QueueStatus> {
        self.conn
            .query_row(
                "SELECT
                   (SELECT COUNT(*) FROM cloud_queue WHERE done_ms IS NULL AND failed = 0),
                   (SELECT COALESCE(SUM(bytes), 0) FROM cloud_queue WHERE done_ms IS NULL AND failed = 0),
                   (SELECT COUNT(*) FROM cloud_queue WHERE failed = 1),
                   (SELECT COUNT(*) FROM cloud_queue WHERE done_ms IS NOT NULL),
                   (SELECT MAX(done_ms) FROM cloud_queue),
                   (SELECT last_error FROM cloud_queue WHERE last_error IS NOT NULL ORDER BY next_ms DESC, id DESC LIMIT 1),
                   (SELECT MIN(created_ms) FROM cloud_queue WHERE done_ms IS NULL AND failed = 0)",
                [],
                |r| {
                    Ok(QueueStatus {
                        pending: r.get::<_, i64>(0)? as u64,
                        bytes_pending: r.get::<_, i64>(1)? as u64,
                        failed: r.get::<_, i64>(2)? as u64,
                        uploaded: r.get::<_, i64>(3)? as u64,
                        last_success_ms: r.get(4)?,
                        last_error: r.get(5)?,
                        oldest_pending_ms: r.get(6)?,
                    })
                },
            )
            .map_err(db_err("reading the upload queue"))
    }

    /// Finished events with a clip that was never queued, that started at or after
    /// `since_ms` (a crash between finishing an event and queueing its clip, or clips
    /// recovered after one).
    pub fn cloud_unqueued_clips(&mut self, since_ms: i64) -> Result<Vec<i64>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT e.id FROM events e
                 WHERE e.clip_path IS NOT NULL AND e.end_ms IS NOT NULL AND e.start_ms >= ?1
                   AND NOT EXISTS (SELECT 1 FROM cloud_queue q WHERE q.event_id = e.id AND q.kind = 'clip')
                 ORDER BY e.id",
            )
            .map_err(db_err("finding clips to upload"))?;
        let rows = st.query_map(params![since_ms], |r| r.get(0)).map_err(db_err("finding clips to upload"))?;
        rows.collect::<std::result::Result<_, _>>().map_err(db_err("finding clips to upload"))
    }

    /// Files of pieces that are still to be uploaded (relative to the data dir).
    pub fn cloud_pending_piece_paths(&mut self) -> Result<Vec<String>> {
        let mut st = self
            .conn
            .prepare_cached("SELECT path FROM cloud_queue WHERE kind = 'piece' AND done_ms IS NULL AND failed = 0")
            .map_err(db_err("listing pieces"))?;
        let rows = st.query_map([], |r| r.get(0)).map_err(db_err("listing pieces"))?;
        rows.collect::<std::result::Result<_, _>>().map_err(db_err("listing pieces"))
    }

    /// The time the relay was first switched on (set now if it never was): clips of
    /// events before it are not sent.
    pub fn cloud_since_ms(&mut self, now_ms: i64) -> Result<i64> {
        let existing: Option<String> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'cloud_since_ms'", [], |r| r.get(0))
            .optional()
            .map_err(db_err("reading cloud start"))?;
        if let Some(v) = existing {
            return v.parse().map_err(|_| Error::internal(format!("database: meta cloud_since_ms is not a number: {v:?}")));
        }
        self.conn
            .execute("INSERT INTO meta (key, value) VALUES ('cloud_since_ms', ?1)", params![now_ms.to_string()])
            .map_err(db_err("writing cloud start"))?;
        Ok(now_ms)
    }

    /// A camera's name and an event's camera, for an index entry.
    pub fn event_for_cloud(&mut self, event_id: i64) -> Result<Option<CloudEvent>> {
        self.conn
            .query_row(
                "SELECT e.camera_id, c.name, e.start_ms, COALESCE(e.clip_start_ms, e.start_ms), e.end_ms, e.clip_path, e.clip_bytes
                 FROM events e JOIN cameras c ON c.id = e.camera_id WHERE e.id = ?1",
                params![event_id],
                |r| {
                    Ok(CloudEvent {
                        camera_id: r.get(0)?,
                        camera: r.get(1)?,
                        start_ms: r.get(2)?,
                        clip_start_ms: r.get(3)?,
                        end_ms: r.get(4)?,
                        clip_path: r.get(5)?,
                        clip_bytes: r.get::<_, Option<i64>>(6)?.map(|b| b as u64),
                    })
                },
            )
            .optional()
            .map_err(db_err("reading an event"))
    }

    pub fn camera_name(&mut self, camera_id: i64) -> Result<Option<String>> {
        self.conn
            .query_row("SELECT name FROM cameras WHERE id = ?1", params![camera_id], |r| r.get(0))
            .optional()
            .map_err(db_err("reading a camera"))
    }
}

/// What an index entry of an event's clip needs.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudEvent {
    pub camera_id: i64,
    pub camera: String,
    pub start_ms: i64,
    pub clip_start_ms: i64,
    pub end_ms: Option<i64>,
    pub clip_path: Option<String>,
    pub clip_bytes: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LATEST_VERSION;

    fn upload(n: u8, kind: UploadKind, event_id: i64) -> NewUpload {
        NewUpload {
            object: format!("{n:032x}"),
            kind,
            path: format!("clips/1/{n}.mp4"),
            event_id,
            bytes: 1000 * u64::from(n),
            index_object: format!("{:032x}", 0x100 + u32::from(n)),
            index_body: format!("{{\"id\":\"{n}\"}}\n"),
        }
    }

    #[test]
    fn index_rows_wait_for_their_object_and_pieces_go_first() {
        let mut db = Db::open_in_memory_at(LATEST_VERSION);
        let clip = db.cloud_enqueue(&upload(1, UploadKind::Clip, 7), 10).unwrap();
        let piece = db.cloud_enqueue(&upload(2, UploadKind::Piece, 8), 11).unwrap();
        // The piece goes before the older clip; its index waits for it.
        let next = db.cloud_next(100).unwrap().unwrap();
        assert_eq!((next.id, next.kind), (piece, UploadKind::Piece));
        db.cloud_done(piece, 101).unwrap();
        let next = db.cloud_next(102).unwrap().unwrap();
        assert_eq!(next.kind, UploadKind::Index);
        assert_eq!(next.payload, Payload::Index { body: "{\"id\":\"2\"}\n".into() });
        db.cloud_done(next.id, 103).unwrap();
        let next = db.cloud_next(104).unwrap().unwrap();
        assert_eq!(next.id, clip);
        let st = db.cloud_status().unwrap();
        assert_eq!((st.pending, st.bytes_pending, st.uploaded), (2, 1000 + 11, 2));
        assert_eq!(st.last_success_ms, Some(103));
    }

    #[test]
    fn the_kind_decides_the_payload_and_a_corrupt_row_is_refused_by_its_id() {
        let mut db = Db::open_in_memory_at(LATEST_VERSION);
        let piece = db.cloud_enqueue(&upload(2, UploadKind::Piece, 8), 11).unwrap();
        let next = db.cloud_next(100).unwrap().unwrap();
        assert_eq!((next.id, next.payload), (piece, Payload::File { path: "clips/1/2.mp4".into() }));
        for (path, body) in [(None, None), (Some("clips/1/2.mp4"), Some("{}")), (None, Some("{}"))] {
            let e = Payload::decode(piece, "piece", path.map(str::to_string), body.map(str::to_string)).unwrap_err();
            assert!(e.to_string().contains(&format!("row {piece} is corrupt")), "{e}");
        }
        db.cloud_done(piece, 101).unwrap();
        let index = db.cloud_next(102).unwrap().unwrap();
        assert_eq!((index.kind, index.payload), (UploadKind::Index, Payload::Index { body: "{\"id\":\"2\"}\n".into() }));
        // A corrupt row is given up, naming itself, and does not hold up the next one.
        let clip = db.cloud_enqueue(&upload(3, UploadKind::Clip, 9), 12).unwrap();
        db.conn.execute("UPDATE cloud_queue SET path = 'clips/1/2.mp4' WHERE id = ?1", params![index.id]).unwrap();
        let next = db.cloud_next(102).unwrap().unwrap();
        assert_eq!(next.id, clip, "the queue goes on past the corrupt row");
        let st = db.cloud_status().unwrap();
        assert_eq!(st.failed, 1);
        let e = st.last_error.unwrap_or_default();
        assert!(e.contains(&format!("row {} is corrupt: kind index with a path and a body", index.id)), "{e}");
    }

    #[test]
    fn a_retry_waits_for_its_time_and_giving_up_takes_the_index_along() {
        let mut db = Db::open_in_memory_at(LATEST_VERSION);
        let clip = db.cloud_enqueue(&upload(1, UploadKind::Clip, 7), 10).unwrap();
        db.cloud_retry(clip, "connection refused", 5_000).unwrap();
        assert_eq!(db.cloud_next(4_999).unwrap(), None);
        assert_eq!(db.cloud_next_retry_ms().unwrap(), Some(0)); // the index row (not due: waits)
        let again = db.cloud_next(5_000).unwrap().unwrap();
        assert_eq!((again.id, again.attempts), (clip, 1));
        assert_eq!(db.cloud_status().unwrap().last_error.as_deref(), Some("connection refused"));
        db.cloud_give_up(clip, "file deleted").unwrap();
        assert_eq!(db.cloud_next(i64::MAX).unwrap(), None);
        let st = db.cloud_status().unwrap();
        assert_eq!((st.pending, st.failed), (0, 2));
    }

    #[test]
    fn object_names_are_unique() {
        let mut db = Db::open_in_memory_at(LATEST_VERSION);
        db.cloud_enqueue(&upload(1, UploadKind::Clip, 7), 10).unwrap();
        assert!(db.cloud_enqueue(&upload(1, UploadKind::Clip, 7), 10).is_err());
        // The failed step left nothing behind.
        assert_eq!(db.cloud_status().unwrap().pending, 2);
    }

    #[test]
    fn retention_spares_queued_clips_unless_told_the_disk_is_full() {
        use crate::store::FinishedEvent;
        let mut db = Db::open_in_memory_at(LATEST_VERSION);
        let cam = db.sync_config_cameras(&[("Porch".into(), "rtsp://h/a".into(), String::new())], 0).unwrap()[0].id;
        let ev = db.insert_event(cam, 5).unwrap();
        db.finish_event(&FinishedEvent {
            id: ev,
            end_ms: 20,
            clip_path: Some("c1.mp4".into()),
            clip_bytes: Some(100),
            ..Default::default()
        })
        .unwrap();
        let q = db.cloud_enqueue(&NewUpload { path: "c1.mp4".into(), ..upload(1, UploadKind::Clip, ev) }, 30).unwrap();
        assert_eq!(db.cloud_unqueued_clips(0).unwrap(), Vec::<i64>::new());
        // Past its age and over the size limit, but still queued: kept.
        assert!(db.collect_old_media(i64::MAX, 1000, 100).unwrap().is_empty());
        // The disk is about to fill: it goes, and its upload (and index entry) are given up.
        assert_eq!(db.collect_old_media_with(i64::MIN, 1000, 100, true).unwrap(), ["c1.mp4"]);
        let st = db.cloud_status().unwrap();
        assert_eq!((st.pending, st.failed), (0, 2));
        assert!(st.last_error.unwrap().contains("disk was full"));
        // Once uploaded, a clip is ordinary media again.
        let ev2 = db.insert_event(cam, 40).unwrap();
        db.finish_event(&FinishedEvent {
            id: ev2,
            end_ms: 50,
            clip_path: Some("c2.mp4".into()),
            clip_bytes: Some(100),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(db.cloud_unqueued_clips(0).unwrap(), [ev2]);
        assert_eq!(db.cloud_unqueued_clips(41).unwrap(), Vec::<i64>::new(), "events before the relay began are not sent");
        let q2 = db.cloud_enqueue(&upload(2, UploadKind::Clip, ev2), 60).unwrap();
        db.cloud_done(q2, 61).unwrap();
        assert_eq!(db.collect_old_media(i64::MAX, 0, 100).unwrap(), ["c2.mp4"]);
        let _ = q;
    }

    #[test]
    fn the_start_time_is_kept() {
        let mut db = Db::open_in_memory_at(LATEST_VERSION);
        assert_eq!(db.cloud_since_ms(5).unwrap(), 5);
        assert_eq!(db.cloud_since_ms(9).unwrap(), 5);
    }
}
