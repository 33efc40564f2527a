//! What the timeline and the storage page read: events and recordings a page at a time,
//! recorded time as contiguous spans, and storage (disk, bytes per camera, the write rate
//! and how many days fit at it).
//!
//! Paging: `limit` (1..=1000, default 100) and an opaque `cursor` (the `next` of the page
//! before, null at the end). A cursor names the last row of its page (time and id), so a
//! row inserted meanwhile never makes another appear twice or not at all.

use axum::Json;
use axum::extract::{Query, State};
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiResult, AppState, Items, Session, err, parse_time, session};
use crate::clock::rfc3339;
use crate::error::{Error, ErrorKind};
use crate::recorder::Retention;
use crate::store::{CameraBytes, EventRow, Role, SegmentQuery, SegmentRow, Written};

pub const DEFAULT_LIMIT: i64 = 100;
pub const MAX_LIMIT: i64 = 1000;
/// Segments closer than this are one span on the timeline.
pub const SPAN_GAP_MS: i64 = 2_000;
/// The longest range `/api/recordings/spans` answers for, and how many segments it reads.
const MAX_SPAN_RANGE_MS: i64 = 31 * 86_400_000;
const MAX_SPAN_SEGMENTS: i64 = 200_000;
/// The write rate is measured over this much of the most recent time...
const RATE_WINDOW_MS: i64 = 86_400_000;
/// ...and a forecast needs at least this much of it.
const RATE_MIN_MS: i64 = 10 * 60_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    camera: Option<i64>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

type PageParams = Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>;

/// A page of a list.
#[derive(Serialize)]
pub struct Page<T> {
    items: Vec<T>,
    next: Option<String>,
}

/// Recordings and events are for members and the owner, and a camera not shared with the
/// user does not exist for them.
fn visible(s: &Session, camera: Option<i64>) -> ApiResult<()> {
    match camera {
        Some(id) => super::camera_access(s, id, Role::Member),
        None => super::require(s, Role::Member),
    }
}

/// The store query of a page, and the position its cursor names.
fn page_query(s: &Session, q: PageParams, kind: char) -> ApiResult<(SegmentQuery, Option<(i64, i64)>)> {
    let Query(q) = q.map_err(|e| err(ErrorKind::Invalid, &e.body_text()))?;
    visible(s, q.camera)?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(err(ErrorKind::Invalid, &format!("limit: between 1 and {MAX_LIMIT}, got {limit}")));
    }
    let at = q.cursor.as_deref().map(|c| decode_cursor(c, kind)).transpose()?;
    let query = SegmentQuery {
        camera_id: q.camera,
        since_ms: parse_time("since", &q.since)?,
        until_ms: parse_time("until", &q.until)?,
        limit: Some(limit + 1),
        only: s.only(),
    };
    Ok((query, at))
}

/// `kind` tells lists apart: an events cursor is refused by the recordings list.
pub fn encode_cursor(kind: char, start_ms: i64, id: i64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{kind}:{start_ms}:{id}"))
}

pub fn decode_cursor(c: &str, kind: char) -> ApiResult<(i64, i64)> {
    let bad = || err(ErrorKind::Invalid, "cursor: not a cursor of this list (pass the `next` of the previous page)");
    if c.len() > 64 {
        return Err(bad());
    }
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(c).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let mut parts = text.split(':');
    let (Some(k), Some(t), Some(id), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else { return Err(bad()) };
    if k.len() != 1 || !k.starts_with(kind) {
        return Err(bad());
    }
    Ok((t.parse().map_err(|_| bad())?, id.parse().map_err(|_| bad())?))
}

/// Cuts the extra row a page query asked for; the cursor of the next page if there was one.
fn paged<R>(mut rows: Vec<R>, limit: i64, key: impl Fn(&R) -> (i64, i64), kind: char) -> (Vec<R>, Option<String>) {
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next = more.then(|| rows.last().map(key)).flatten().map(|(t, id)| encode_cursor(kind, t, id));
    (rows, next)
}

#[derive(Serialize)]
pub struct RecordingInfo {
    id: i64,
    camera_id: i64,
    start: String,
    end: String,
    bytes: u64,
    partial: bool,
    /// The file, relative to the data dir.
    path: String,
    url: String,
}

/// `GET /api/recordings`: oldest first.
pub async fn list_recordings(
    State(st): State<AppState>,
    ext: Option<axum::Extension<Session>>,
    q: PageParams,
) -> ApiResult<Json<Page<RecordingInfo>>> {
    let s = session(ext)?;
    let (query, after) = page_query(&s, q, 'r')?;
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT + 1) - 1;
    let rows = st.store.call(move |db| db.segments_page(&query, after)).await?;
    let (rows, next) = paged(rows, limit, |r| (r.segment.start_ms, r.id), 'r');
    let items = rows
        .into_iter()
        .map(|SegmentRow { id, segment: s }| RecordingInfo {
            id,
            camera_id: s.camera_id,
            start: rfc3339(s.start_ms),
            end: rfc3339(s.end_ms),
            bytes: s.bytes,
            partial: s.partial,
            path: s.path,
            url: format!("/api/recordings/{id}/media"),
        })
        .collect();
    Ok(Json(Page { items, next }))
}

#[derive(Serialize)]
pub struct EventInfo {
    id: i64,
    camera_id: i64,
    start: String,
    end: Option<String>,
    score: f64,
    zones: serde_json::Value,
    /// Where the clip begins (pre-roll included), once it has one.
    clip_start: Option<String>,
    clip_bytes: Option<u64>,
    clip_url: Option<String>,
    thumbnail_url: Option<String>,
}

/// `GET /api/events`: newest first.
pub async fn list_events(
    State(st): State<AppState>,
    ext: Option<axum::Extension<Session>>,
    q: PageParams,
) -> ApiResult<Json<Page<EventInfo>>> {
    let s = session(ext)?;
    let (query, before) = page_query(&s, q, 'e')?;
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT + 1) - 1;
    let rows = st.store.call(move |db| db.events_page(&query, before)).await?;
    let (rows, next) = paged(rows, limit, |e| (e.start_ms, e.id), 'e');
    let items = rows
        .into_iter()
        .map(|e: EventRow| EventInfo {
            id: e.id,
            camera_id: e.camera_id,
            start: rfc3339(e.start_ms),
            end: e.end_ms.map(rfc3339),
            score: (e.peak_score * 1000.0).round() / 1000.0,
            zones: serde_json::from_str(&e.zones_json).unwrap_or_default(),
            clip_start: e.clip_start_ms.map(rfc3339),
            clip_bytes: e.clip_bytes,
            clip_url: e.clip_path.as_ref().map(|_| format!("/api/events/{}/clip", e.id)),
            thumbnail_url: e.thumb_path.as_ref().map(|_| format!("/api/events/{}/thumbnail", e.id)),
        })
        .collect();
    Ok(Json(Page { items, next }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpanQuery {
    camera: Option<i64>,
    since: Option<String>,
    until: Option<String>,
}

#[derive(Serialize)]
pub struct SpanInfo {
    camera_id: i64,
    start: String,
    end: String,
}

/// `GET /api/recordings/spans`: recorded time, segments closer than 2 s joined. Without
/// `until`: now; without `since`: a day before `until`; at most 31 days.
pub async fn spans(
    State(st): State<AppState>,
    ext: Option<axum::Extension<Session>>,
    q: Result<Query<SpanQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Items<SpanInfo>>> {
    let s = session(ext)?;
    let Query(q) = q.map_err(|e| err(ErrorKind::Invalid, &e.body_text()))?;
    visible(&s, q.camera)?;
    let until = parse_time("until", &q.until)?.unwrap_or_else(|| st.clock.now_ms());
    let since = parse_time("since", &q.since)?.unwrap_or(until - 86_400_000);
    if since > until {
        return Err(err(ErrorKind::Invalid, "since: must not be after until"));
    }
    if until - since > MAX_SPAN_RANGE_MS {
        return Err(err(ErrorKind::Invalid, "until: at most 31 days after since"));
    }
    let query = SegmentQuery {
        camera_id: q.camera,
        since_ms: Some(since),
        until_ms: Some(until),
        limit: Some(MAX_SPAN_SEGMENTS),
        only: s.only(),
    };
    let spans = st.store.call(move |db| db.recorded_spans(&query, SPAN_GAP_MS)).await?;
    let items = spans
        .into_iter()
        .map(|s| SpanInfo { camera_id: s.camera_id, start: rfc3339(s.start_ms), end: rfc3339(s.end_ms) })
        .collect();
    Ok(Json(Items { items }))
}

#[derive(Serialize, Debug, PartialEq)]
pub struct CameraStorage {
    camera_id: i64,
    name: String,
    bytes: u64,
    recordings_bytes: u64,
    clips_bytes: u64,
}

#[derive(Serialize, Debug)]
pub struct StorageInfo {
    total_bytes: u64,
    free_bytes: u64,
    /// Media the hub keeps (segments and clips), from its rows.
    used_bytes: u64,
    cameras: Vec<CameraStorage>,
    write_bytes_per_day: u64,
    /// 0: no age limit.
    retain_days: u32,
    forecast_days: Option<f64>,
    /// What ends the forecast: "disk" (space runs out first) or "retention" (media is
    /// deleted by age first); null without a forecast.
    limited_by: Option<&'static str>,
}

/// Bytes a day at the recent write rate, and whether enough time is covered for a forecast.
fn write_rate(w: Written, now_ms: i64) -> (f64, bool) {
    let Some(oldest) = w.oldest_start_ms else { return (0.0, false) };
    let covered = now_ms - oldest.max(now_ms - RATE_WINDOW_MS);
    if covered <= 0 {
        return (0.0, false);
    }
    (w.bytes as f64 * 86_400_000.0 / covered as f64, covered >= RATE_MIN_MS)
}

/// Days of recording that fit in what retention lets the media grow to, at `per_day`.
fn forecast(total: u64, free: u64, used: u64, per_day: f64, r: &Retention) -> (Option<f64>, Option<&'static str>) {
    if per_day <= 0.0 {
        return (None, None);
    }
    let budget = if r.max_bytes > 0 {
        r.max_bytes.min(used + free)
    } else {
        let reserve = (total as f64 * r.min_free_percent / 100.0) as u64;
        (used + free).saturating_sub(reserve)
    };
    let days = budget as f64 / per_day;
    if r.retain_days > 0 && days >= f64::from(r.retain_days) {
        (Some(f64::from(r.retain_days)), Some("retention"))
    } else {
        (Some((days * 10.0).floor() / 10.0), Some("disk"))
    }
}

/// `GET /api/storage`.
pub async fn storage(State(st): State<AppState>, ext: Option<axum::Extension<Session>>) -> ApiResult<Json<StorageInfo>> {
    let s = session(ext)?;
    super::require(&s, Role::Member)?;
    let now = st.clock.now_ms();
    let (by_camera, used, written) = st
        .store
        .call(move |db| Ok((db.media_bytes_by_camera()?, db.media_bytes_total()?, db.media_written_since(now - RATE_WINDOW_MS)?)))
        .await?;
    let dir = st.store.data_dir().to_path_buf();
    let (total, free) = crate::error::blocking("reading disk space", move || crate::recorder::disk_space(&dir))
        .await?
        .map_err(|e: Error| ApiError(e.context("data dir")))?;
    let (per_day, enough) = write_rate(written, now);
    let (forecast_days, limited_by) = if enough { forecast(total, free, used, per_day, &st.retention) } else { (None, None) };
    let cameras = by_camera
        .into_iter()
        .filter(|c| s.sees(c.camera_id))
        .map(|c: CameraBytes| CameraStorage {
            camera_id: c.camera_id,
            name: c.name,
            bytes: c.recordings_bytes + c.clips_bytes,
            recordings_bytes: c.recordings_bytes,
            clips_bytes: c.clips_bytes,
        })
        .collect();
    Ok(Json(StorageInfo {
        total_bytes: total,
        free_bytes: free,
        used_bytes: used,
        cameras,
        write_bytes_per_day: per_day.round() as u64,
        retain_days: st.retention.retain_days,
        forecast_days,
        limited_by,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GB: u64 = 1_000_000_000;

    #[test]
    fn cursors_round_trip_and_refuse_other_lists_and_junk() {
        let c = encode_cursor('e', 1_700_000_000_123, 42);
        assert_eq!(decode_cursor(&c, 'e').ok(), Some((1_700_000_000_123, 42)));
        assert!(decode_cursor(&c, 'r').is_err(), "an events cursor is not a recordings cursor");
        for junk in ["", "x", "!!!", &"A".repeat(100), &base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("e:1:2:3")] {
            assert!(decode_cursor(junk, 'e').is_err(), "{junk:?}");
        }
    }

    #[test]
    fn the_write_rate_covers_the_last_day_or_what_there_is() {
        let now = 10 * 86_400_000;
        // A day and more of media: the last day's bytes are the rate.
        assert_eq!(write_rate(Written { bytes: 5 * GB, oldest_start_ms: Some(0) }, now), (5.0 * GB as f64, true));
        // Six hours of media: scaled up to a day.
        let six_h = Written { bytes: GB, oldest_start_ms: Some(now - 6 * 3_600_000) };
        assert_eq!(write_rate(six_h, now), (4.0 * GB as f64, true));
        // Five minutes are too few for a forecast; nothing at all gives no rate.
        assert!(!write_rate(Written { bytes: 1000, oldest_start_ms: Some(now - 300_000) }, now).1);
        assert_eq!(write_rate(Written { bytes: 0, oldest_start_ms: None }, now), (0.0, false));
    }

    #[test]
    fn the_forecast_says_which_limit_binds() {
        let keep_10_percent = Retention { retain_days: 14, max_bytes: 0, min_free_percent: 10.0 };
        // 100 GB disk, 30 used, 40 free, 10 reserved: 60 GB at 5 GB a day = 12 days < 14.
        assert_eq!(forecast(100 * GB, 40 * GB, 30 * GB, 5.0 * GB as f64, &keep_10_percent), (Some(12.0), Some("disk")));
        // At 1 GB a day 60 days would fit, but retention deletes after 14.
        assert_eq!(forecast(100 * GB, 40 * GB, 30 * GB, GB as f64, &keep_10_percent), (Some(14.0), Some("retention")));
        // A size cap binds before the disk does: 20 GB at 3 GB a day.
        let capped = Retention { retain_days: 0, max_bytes: 20 * GB, min_free_percent: 10.0 };
        assert_eq!(forecast(100 * GB, 40 * GB, 30 * GB, 3.0 * GB as f64, &capped), (Some(6.6), Some("disk")));
        assert_eq!(forecast(100 * GB, 40 * GB, 30 * GB, 0.0, &capped), (None, None));
    }
}
